//! The core's interface to its user: legs, targets, what routing and the media relay decide
//! ([`Policy`]), the events the core reports, its static settings and counters.

use super::*;

/// Which side of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leg {
    /// The caller's side, answered by trunkline.
    A,
    /// The callee's side, placed by trunkline.
    B,
}

impl Leg {
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }
}

/// One place to try for leg B.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub trunk: String,
    pub peer: Peer,
    /// Host part (`host:port`) used in the Request-URI and To of leg B.
    pub host: String,
}

/// What the dial plan decided for a new call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOutcome {
    /// Place leg B at these targets in failover order.
    Route {
        targets: Vec<Target>,
        to_user: String,
        from_user: String,
        /// The From display name leg B carries instead of the caller's (`None`: the caller's).
        from_display: Option<String>,
    },
    /// Answer leg A with a 3xx listing these contacts.
    Redirect { code: u16, contacts: Vec<String> },
    /// Answer leg A with this final status.
    Reject { code: u16, reason: String },
    /// Answer leg A 503 Service Unavailable with `Retry-After: retry_after` (seconds): an
    /// overload or a limit rather than a routing decision (RFC 3261 §21.5.4, §20.33).
    Unavailable { retry_after: u32 },
    /// Look `user` up in the location service (the dial plan rewrote what was dialled into a
    /// served user): the call goes to its bindings, or gets the lookup's 404/480.
    Locate { user: String },
}

/// What the core does with a 3xx a trunk answered leg B's INVITE with (per trunk,
/// [`Policy::redirect_mode`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedirectMode {
    /// Leg A gets the 3xx with its Contacts (the redirect target's, not the trunk's path).
    #[default]
    Relay,
    /// Each Contact, best q first, is routed by the dial plan (trunks) or the location service
    /// (served users) and tried as the call's next targets; never its host as such.
    Follow,
    /// The 3xx counts as a failed target: the route's next target is tried.
    Reject,
}

/// Reliable provisional responses (RFC 3262) on leg B, per trunk ([`Policy::rel100_mode`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rel100Mode {
    /// Leg B's INVITE says `Supported: 100rel`; reliable provisionals are PRACKed.
    #[default]
    Supported,
    /// Leg B's INVITE says `Require: 100rel`.
    Required,
    /// Neither (a reliable provisional is still PRACKed: RFC 3262 §4 binds any UAC that gets one).
    Off,
}

/// What a REFER from a leg does (`refer:` of its trunk, [`Policy::refer_mode`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReferMode {
    /// Relayed to the other leg, Refer-To and Referred-By naming trunkline only (default).
    #[default]
    Relay,
    /// Declined (603): the leg may not transfer its calls.
    Reject,
    /// Carried out by trunkline (`handoff.rs`): leg B's REFER is accepted, its target called
    /// and connected to leg A, the transferor let go. (A REFER from leg A is relayed.)
    Handle,
}

/// Session timer settings of a leg (RFC 4028): the interval trunkline asks for and the
/// shortest one it accepts (`Min-SE`, at least 90 s: RFC 4028 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimer {
    /// Session-Expires trunkline asks for and answers with at most (seconds).
    pub expires: u32,
    /// Min-SE: a shorter Session-Expires from the peer gets 422 (seconds).
    pub min_se: u32,
}

/// A trunk's session timer ([`Policy::session_timer`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimerChoice {
    /// The core's default ([`CoreConfig::session_timer`]).
    #[default]
    Inherit,
    /// No session timer on this leg: its Session-Expires are not asked for nor answered.
    Off,
    On(SessionTimer),
}

/// Why the media side refused an SDP offer.
#[derive(Clone, Debug, PartialEq)]
pub enum MediaRefusal {
    /// The offer itself is unusable (bad SDP, unsupported address, ...): 488 Not Acceptable Here
    /// (RFC 3261 §21.4.26).
    NotAcceptable(String),
    /// The relay has no room now (ports exhausted, stopped): 503 with `Retry-After` (seconds),
    /// a condition of the server, not of the offer (RFC 3261 §21.5.4).
    Unavailable { retry_after: u32, detail: String },
}

impl MediaRefusal {
    /// The status, reason phrase and optional Retry-After to answer the offer with.
    pub fn answer(&self) -> (u16, &'static str, Option<u32>) {
        match self {
            MediaRefusal::NotAcceptable(_) => (488, "Not Acceptable Here", None),
            MediaRefusal::Unavailable { retry_after, .. } => {
                (503, "Service Unavailable", Some(*retry_after))
            }
        }
    }
}

impl std::fmt::Display for MediaRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaRefusal::NotAcceptable(d) => f.write_str(d),
            MediaRefusal::Unavailable { detail, .. } => f.write_str(detail),
        }
    }
}

/// Identity of a call as the media side knows it: leg A's Call-ID and From tag.
#[derive(Clone, Copy, Debug)]
pub struct CallRef<'a> {
    pub id: u64,
    pub call_id: &'a str,
    pub from_tag: &'a str,
    /// The signalling peer of leg A and of leg B (the target being tried or answered): the
    /// media side lets a NATed endpoint's media come from that IP.
    pub peers: [SocketAddr; 2],
    /// The trunk of leg B: the one its dialog is with, or the target being tried.
    pub b_trunk: Option<&'a str>,
}

impl CallRef<'_> {
    /// The signalling peer of `leg`.
    pub fn peer(&self, leg: Leg) -> SocketAddr {
        match leg {
            Leg::A => self.peers[0],
            Leg::B => self.peers[1],
        }
    }
}

/// What happened to a call, for metrics and logs.
#[derive(Clone, Debug, PartialEq)]
pub enum CallEvent {
    /// Leg B was tried at a target.
    Attempt { call: u64, trunk: String },
    /// The call got its final answer on leg A: `status` is what leg A was answered (200 for an
    /// answered call). `post_dial_delay` is INVITE to first ringing/answer.
    Finished {
        call: u64,
        trunk: Option<String>,
        status: u16,
        post_dial_delay: Option<Duration>,
    },
    /// A confirmed call ended (BYE from either side, media timeout, shutdown).
    Ended { call: u64, duration: Duration },
    /// A transfer trunkline carried out (`refer: handle`) ended: `status` 200 when its target
    /// took the call, else the target's (or trunkline's) final status.
    Transferred { call: u64, status: u16 },
    /// A request was rejected before it became a call.
    Rejected { status: u16, reason: String },
    /// A registration with a trunk (`register:`) was answered, failed, or ended.
    TrunkRegistration {
        trunk: String,
        event: crate::carrier::RegEvent,
    },
    /// A probed trunk (`probe:`) went down (`up: false`) or came back.
    TrunkProbe { trunk: String, up: bool },
    /// A call is over and its media about to be released: its CDR. Exactly one per call
    /// (routed INVITE), just before [`Policy::media_release`] for it.
    Record(Box<CallRecord>),
}

/// The decisions the core delegates. Every method gets `now`, the time of the input being
/// handled (the one the core was given): no policy reads the clock or keeps a time of its own
/// for the core to have set.
pub trait Policy {
    /// Route a new INVITE. `to_user` is the Request-URI's user part (the identity the
    /// authorization decision was made on, never To's); `from_user` is the caller's: the
    /// authenticated user's name when the caller authenticated, else From's user part.
    fn route(
        &mut self,
        req: &Request,
        from: Peer,
        to_user: &str,
        from_user: &str,
        now: Instant,
    ) -> RouteOutcome;
    /// An SDP offer arrived on leg `from`; return the SDP to send to the other leg.
    fn media_offer(
        &mut self,
        call: CallRef<'_>,
        from: Leg,
        sdp: &[u8],
        now: Instant,
    ) -> Result<Vec<u8>, MediaRefusal>;
    /// An SDP answer arrived on leg `from`; return the SDP to send to the other leg.
    fn media_answer(
        &mut self,
        call: CallRef<'_>,
        from: Leg,
        sdp: &[u8],
        now: Instant,
    ) -> Result<Vec<u8>, String>;
    /// The call is gone: release its media.
    fn media_release(&mut self, call: CallRef<'_>, now: Instant);
    /// The media of the confirmed `call` as another node can take it over (a cluster's call
    /// records, `replica.rs`): empty when the call has none; `None` when it cannot be handed
    /// on (the call is then not replicated). Default: `None`.
    fn media_export(&mut self, _call: CallRef<'_>, _now: Instant) -> Option<Vec<u8>> {
        None
    }
    /// Take over the media of a call another node exported as `media` ([`Policy::media_export`]):
    /// the same relay ports, the same remotes. False when that cannot be done. Default: false.
    fn media_adopt(&mut self, _call: CallRef<'_>, _media: &[u8], _now: Instant) -> bool {
        false
    }
    /// For metrics.
    fn event(&mut self, ev: CallEvent, now: Instant);
    /// May leg B be tried at `target` now? Asked before a failover attempt (the first target
    /// was chosen by [`Policy::route`]); a refused target is skipped like a failed one, e.g. a
    /// trunk at its call or call-rate limit.
    fn admit_target(&mut self, _target: &Target, _now: Instant) -> bool {
        true
    }
    /// Where an out-of-dialog MESSAGE (RFC 3428) goes. Default: as a call would
    /// ([`Policy::route`]); a live policy skips the call limits, a message is not a call.
    fn route_message(
        &mut self,
        req: &Request,
        from: Peer,
        to_user: &str,
        from_user: &str,
        now: Instant,
    ) -> RouteOutcome {
        self.route(req, from, to_user, from_user, now)
    }
    /// The credentials to answer `trunk`'s Digest challenges with (`auth:` of the trunk);
    /// `None`: a challenge is a failure like any other.
    fn credentials(
        &mut self,
        _trunk: &str,
        _now: Instant,
    ) -> Option<crate::digest_client::Credentials> {
        None
    }
    /// The trunks trunkline registers with or probes. Asked on every timer round: return the
    /// same `Arc` while nothing changed (a new one is reconciled trunk by trunk).
    fn carriers(&mut self, _now: Instant) -> Option<Arc<Vec<CarrierTrunk>>> {
        None
    }
    /// Whether `from` is one of the configured trunks (carriers, PBXs): their requests are not
    /// asked for a registrar user's credentials.
    fn is_trunk(&mut self, _from: Peer, _now: Instant) -> bool {
        false
    }
    /// The registrar's settings when trunkline serves REGISTER (`None`: REGISTER gets 405 and
    /// every call follows [`Policy::route`]).
    fn registrar(&mut self, _now: Instant) -> Option<Arc<RegistrarSettings>> {
        None
    }
    /// Whether leg B's INVITE to `trunk` offers or requires 100rel (`100rel:` of the trunk).
    /// Default: supported.
    fn rel100_mode(&mut self, _trunk: &str, _now: Instant) -> Rel100Mode {
        Rel100Mode::Supported
    }
    /// What a REFER from a leg does: leg B's from `trunk` (`Some`), or leg A's from `peer`
    /// (`None`: the policy knows whether the caller is a trunk). Default: relay.
    fn refer_mode(&mut self, _trunk: Option<&str>, _peer: Peer, _now: Instant) -> ReferMode {
        ReferMode::Relay
    }
    /// The header policy of a peer: leg B's `trunk` (`Some`), or leg A's `peer` (`None`: the
    /// policy knows whether the caller is a trunk). `None`: the defaults (a trunk is trusted
    /// to assert identities, anything else is not; every end-to-end header crosses).
    fn header_policy(
        &mut self,
        _trunk: Option<&str>,
        _peer: Peer,
        _now: Instant,
    ) -> Option<Arc<HeaderPolicy>> {
        None
    }
    /// Where a leg B request over 1300 bytes to UDP trunk `trunk` (at `udp`) goes over TCP
    /// instead (RFC 3261 §18.1.1; `tcp_fallback:` of the trunk): the same address, or the
    /// trunk's `_sip._tcp` one (RFC 3263). `None`: over UDP. Default: `None`.
    fn tcp_fallback(
        &mut self,
        _trunk: &str,
        _udp: SocketAddr,
        _now: Instant,
    ) -> Option<SocketAddr> {
        None
    }
    /// The session timer (RFC 4028) of a leg: leg B towards `trunk` (`Some`), or leg A from
    /// `peer` (`None`: the policy knows whether the caller is a trunk). Default: the core's
    /// [`CoreConfig::session_timer`].
    /// A digit (RFC 4733 event code, duration) came in a SIP INFO on `from` of `call`: true
    /// when the media side sends it on as the other leg's telephone-events (the INFO is then
    /// answered here, not relayed). Default: false.
    fn dtmf_info(
        &mut self,
        _call: CallRef<'_>,
        _from: Leg,
        _code: u8,
        _duration_ms: u32,
        _now: Instant,
    ) -> bool {
        false
    }
    fn session_timer(&mut self, _trunk: Option<&str>, _peer: Peer, _now: Instant) -> TimerChoice {
        TimerChoice::Inherit
    }
    /// What to do with a 3xx that `trunk` answered leg B's INVITE with (`redirect:` of the
    /// trunk). Default: relay it to leg A.
    fn redirect_mode(&mut self, _trunk: &str, _now: Instant) -> RedirectMode {
        RedirectMode::Relay
    }
    /// [`RedirectMode::Follow`]: where a Contact `uri` of a 3xx (user part `to_user`) goes, as
    /// the dial plan routes a new call from `from` (leg A's caller) with that Request-URI; the
    /// call is the same one (counted once). Only [`RouteOutcome::Route`] is followed. Default:
    /// nowhere (404).
    fn route_redirect(
        &mut self,
        _uri: &str,
        _from: Peer,
        _to_user: &str,
        _from_user: &str,
        _now: Instant,
    ) -> RouteOutcome {
        RouteOutcome::Reject {
            code: 404,
            reason: "Not Found".into(),
        }
    }
    /// A call for a served domain whose user has registered: `targets` are the bindings, best
    /// first. The policy applies its admission checks (overload, limits) and returns the route
    /// (default: as given, the Request-URI user taken from each target's `host`).
    fn route_registered(
        &mut self,
        _req: &Request,
        _from: Peer,
        targets: Vec<Target>,
        from_user: &str,
        _now: Instant,
    ) -> RouteOutcome {
        RouteOutcome::Route {
            targets,
            to_user: String::new(),
            from_user: from_user.to_string(),
            from_display: None,
        }
    }
}

/// A policy that routes every call to one target and passes SDP through unchanged (tests).
pub struct StaticPolicy {
    pub targets: Vec<Target>,
    pub events: Vec<CallEvent>,
    /// Call ids whose media was released, in order (tests check that every call releases once).
    pub released: Vec<u64>,
}

impl Policy for StaticPolicy {
    fn route(
        &mut self,
        _: &Request,
        _: Peer,
        to_user: &str,
        from_user: &str,
        _now: Instant,
    ) -> RouteOutcome {
        if self.targets.is_empty() {
            return RouteOutcome::Reject {
                code: 404,
                reason: "Not Found".into(),
            };
        }
        RouteOutcome::Route {
            targets: self.targets.clone(),
            to_user: to_user.to_string(),
            from_user: from_user.to_string(),
            from_display: None,
        }
    }
    fn media_offer(
        &mut self,
        _: CallRef<'_>,
        _: Leg,
        sdp: &[u8],
        _now: Instant,
    ) -> Result<Vec<u8>, MediaRefusal> {
        Ok(sdp.to_vec())
    }
    fn media_answer(
        &mut self,
        _: CallRef<'_>,
        _: Leg,
        sdp: &[u8],
        _now: Instant,
    ) -> Result<Vec<u8>, String> {
        Ok(sdp.to_vec())
    }
    fn media_release(&mut self, call: CallRef<'_>, _now: Instant) {
        self.released.push(call.id);
    }
    fn event(&mut self, ev: CallEvent, _now: Instant) {
        self.events.push(ev);
    }
}

/// Static settings of the core.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Our IPv4 address per transport (what goes into Via and Contact towards IPv4 peers).
    pub local_udp: Option<SocketAddr>,
    pub local_tcp: Option<SocketAddr>,
    pub local_tls: Option<SocketAddr>,
    /// Our IPv6 address per transport: towards an IPv6 peer, Via, Contact and the host of our
    /// From/To URIs name it, as an RFC 5118 reference (`[2001:db8::1]:5060`). A family without
    /// an address of its own falls back to the other's.
    pub local_udp_v6: Option<SocketAddr>,
    pub local_tcp_v6: Option<SocketAddr>,
    pub local_tls_v6: Option<SocketAddr>,
    pub timers: TimerConfig,
    /// Give up on a target that sent no response at all after this long and try the next one
    /// (a short fr_timer; Timer B still bounds the transaction).
    pub no_answer_failover: Duration,
    /// Give up on a target that is ringing (sent a provisional response) but gives no final
    /// answer after this long: CANCEL it and fail over as on 408 (RFC 3261 §16.6 step 11's
    /// Timer C, "greater than 3 minutes"; without it a callee that never answers nor stops
    /// ringing would hold the call, and the caller, forever).
    pub ringing_timeout: Duration,
    /// Seed of the core's CSPRNG (ChaCha12): tags, branches, Call-IDs, CSeqs and the Digest
    /// nonce key all come from it, so none can be predicted from another. The shell passes
    /// 32 bytes from the OS (getrandom); tests pass a fixed seed (virtual, repeatable runs).
    pub seed: [u8; 32],
    pub user_agent: String,
    /// Per-source and per-target caps.
    pub caps: Caps,
    /// Session timers (RFC 4028) on legs whose policy says [`TimerChoice::Inherit`] (callers
    /// that are no trunk, registered phones); `None`: none.
    pub session_timer: Option<SessionTimer>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            local_udp: None,
            local_tcp: None,
            local_tls: None,
            local_udp_v6: None,
            local_tcp_v6: None,
            local_tls_v6: None,
            timers: TimerConfig::default(),
            no_answer_failover: Duration::from_secs(4),
            ringing_timeout: Duration::from_secs(181),
            seed: *b"trunkline default seed: tests!!!",
            user_agent: concat!("trunkline/", env!("CARGO_PKG_VERSION")).to_string(),
            caps: Caps::default(),
            session_timer: None,
        }
    }
}

/// The reasons [`CoreStats::rejected`] counts: `parse_error` (unparseable), `admission`
/// (RFC 3261 checks), `auth` (challenged or refused credentials), `auth_banned` (dropped: the
/// source failed too often), `no_dialog` (an in-dialog request in none of ours: 481), `caps`
/// (a per-source or per-target cap: 503).
pub const REJECT_REASONS: [&str; 6] = [
    "parse_error",
    "admission",
    "auth",
    "auth_banned",
    "no_dialog",
    "caps",
];

/// Counters the shell exports.
#[derive(Clone, Debug, Default)]
pub struct CoreStats {
    pub messages_in: u64,
    pub parse_errors: u64,
    pub rejected: HashMap<&'static str, u64>,
    pub calls_started: u64,
    /// Calls taken over from another node's records (`adopt_call`).
    pub calls_adopted: u64,
    /// REGISTER requests answered, by status.
    pub registers: HashMap<u16, u64>,
    /// Out-of-dialog MESSAGEs answered, by status (relayed answers and trunkline's own).
    pub messages: HashMap<u16, u64>,
    /// NAT keep-alive OPTIONS sent to registered phones.
    pub keepalives: u64,
    /// Leg B requests resent with credentials after the trunk's 401/407.
    pub auth_retries: u64,
    /// Trunk challenges not answered: no usable challenge, or the credentials were refused.
    pub auth_refused: u64,
    /// SDP the media relay could not take (an answer or a late offer): the offer ended with
    /// 488 on the leg that made it, never a 2xx without SDP.
    pub media_failures: u64,
    /// Extra dialogs of a forked leg B INVITE (a second 2xx with another To tag, a late 2xx
    /// of a branch moved on from): ACKed and ended with BYE; and those beyond
    /// `MAX_FORKS` per call, dropped.
    pub forks_ended: u64,
    pub forks_dropped: u64,
    /// Contacts of leg B's 3xx answers followed (`redirect: follow`).
    pub redirects_followed: u64,
    /// Session refreshes (RFC 4028) trunkline sent as a leg's refresher, and answered 2xx.
    pub session_refreshes: u64,
    /// Calls ended because a leg's session expired (no refresh, or the refresh failed).
    pub sessions_expired: u64,
    /// Leg A INVITEs refused 422 (Session-Expires below Min-SE) and leg B INVITEs retried after
    /// the trunk's 422.
    pub session_too_small: u64,
    pub session_retries: u64,
    /// REFERs trunkline carried out (`refer: handle`): accepted, and connected to their target.
    pub transfers: u64,
    pub transfers_completed: u64,
    /// DTMF digits taken from SIP INFO (for the other leg's telephone-events) and sent as
    /// INFO (from the other leg's events).
    pub dtmf_info_in: u64,
    pub dtmf_info_out: u64,
}
