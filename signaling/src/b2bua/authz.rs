//! Who may do what: REGISTER, the one authorization decision for requests that start
//! something (caller authentication, the location service's answer), the answers to requests
//! whose credentials failed, per-source caps, and NAT keep-alives to registered phones.

use super::*;

/// Who sent a request that starts something, as far as routing may trust it
/// ([`B2bua::admit_caller`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Caller {
    /// No registrar that authenticates calls: every source is taken as it comes.
    Open,
    /// A configured trunk.
    Trunk,
    /// An unauthenticated source calling a served user with a live binding: the location
    /// service alone routes it.
    Local,
    /// Authenticated as registrar user `name` (of `domain`): the identity it calls with.
    User { name: String, domain: String },
}

impl Caller {
    /// May it assert identities (P-Asserted-Identity and kin) that cross to the other leg?
    pub(super) fn trusted(&self) -> bool {
        matches!(self, Caller::Trunk)
    }
}

/// A request [`B2bua::admit_caller`] let through, and the location service's answer for its
/// Request-URI (`None`: not a served domain).
pub(super) struct Admitted {
    pub(super) caller: Caller,
    pub(super) located: Option<Result<Vec<Target>, RouteOutcome>>,
    /// The caller's header policy (a trunk's `headers:`/`identity:`).
    pub(super) headers: Option<Arc<HeaderPolicy>>,
}

impl Admitted {
    fn new(caller: Caller, located: Option<Result<Vec<Target>, RouteOutcome>>) -> Admitted {
        Admitted {
            caller,
            located,
            headers: None,
        }
    }
    /// The From user leg B carries: the authenticated user's name, whatever the From said
    /// (an authenticated bob cannot call as alice); else the From's.
    pub(super) fn caller_user(&self, from: &NameAddr) -> String {
        match &self.caller {
            Caller::User { name, .. } => name.clone(),
            _ => from.uri.user().unwrap_or_default().to_string(),
        }
    }
    /// The P-Asserted-Identity trunkline sets: the authenticated user's AoR.
    pub(super) fn asserted(&self) -> Option<String> {
        match &self.caller {
            Caller::User { name, domain } => Some(cat(&["<sip:", &user_at(name), domain, ">"])),
            _ => None,
        }
    }
}

/// The user part of a Request-URI (empty when it has none).
pub(super) fn ruri_user(uri: &str) -> String {
    Uri::parse(uri)
        .ok()
        .and_then(|u| u.user().map(str::to_string))
        .unwrap_or_default()
}

/// Identity headers only trunkline or a trunk may set (RFC 3325 §5: a network "MUST remove"
/// P-Asserted-Identity from requests of untrusted sources).
pub(super) const IDENTITY_HEADERS: &[&str] = &[
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Remote-Party-ID",
];

/// Remove what an untrusted caller claims about itself; assert `user` (authenticated) instead.
pub(super) fn strip_identity(req: &mut Request, asserted: Option<String>) {
    for h in IDENTITY_HEADERS {
        req.headers.remove(h);
    }
    if let Some(a) = asserted {
        req.headers.push("P-Asserted-Identity", a);
    }
}

impl B2bua {
    /// REGISTER (RFC 3261 §10.3) to the location service; a challenge goes out once.
    pub(super) fn on_register(
        &mut self,
        tx: TxId,
        req: Request,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(settings) = policy.registrar(now) else {
            return;
        };
        let answer = match self.registrar_mut(now).register(&req, from, &settings, now) {
            Ok(a) => a,
            Err(denial) => {
                let status = self.deny(tx, &req, denial, now);
                *self.stats.registers.entry(status).or_insert(0) += 1;
                return;
            }
        };
        if answer.status == 200 && settings.keepalive > 0 && self.next_keepalive.is_none() {
            self.next_keepalive = Some(now + Duration::from_secs(u64::from(settings.keepalive)));
        }
        let tag = self.new_tag();
        let mut resp = make_response(&req, answer.status, answer.reason, Some(&tag));
        for (n, v) in answer.headers {
            resp.headers.push(n, v);
        }
        self.tx.send_response(tx, resp, now);
        *self.stats.registers.entry(answer.status).or_insert(0) += 1;
        if let Some(aor) = answer.aor.filter(|_| answer.status == 200) {
            self.deliver_held(&aor, now, policy);
            self.pa_changed(&aor, now, policy);
        }
    }

    /// Live calls (any state).
    /// NAT keep-alives (RFC 3261 OPTIONS, stateless): every `keepalive` seconds one OPTIONS
    /// to each binding registered over UDP, at the address its REGISTER came from, so the
    /// phone's NAT mapping stays open for incoming calls. Answers are absorbed.
    pub(super) fn keepalives(&mut self, now: Instant, policy: &mut dyn Policy) {
        let every = policy.registrar(now).map_or(0, |s| s.keepalive);
        let Some(reg) = &self.registrar else {
            self.next_keepalive = None;
            return;
        };
        if every == 0 {
            self.next_keepalive = None;
            return;
        }
        let period = Duration::from_secs(u64::from(every));
        match self.next_keepalive {
            Some(t) if t > now => return,
            None => {
                self.next_keepalive = Some(now + period);
                return;
            }
            Some(_) => {}
        }
        let targets = reg.udp_bindings(now);
        self.next_keepalive =
            (!targets.is_empty() || reg.binding_count(now) > 0).then_some(now + period);
        for (peer, contact) in targets {
            let via = self.via_for(peer);
            let tag = self.new_tag();
            let call_id = self.new_call_id();
            let mut h = Headers::with_capacity(8);
            h.push("Via", via);
            h.push("Max-Forwards", "70");
            h.push(
                "From",
                cat(&["<sip:keepalive@", self.our_host(peer), ">;tag=", &tag]),
            );
            h.push("To", cat(&["<", &contact, ">"]));
            h.push("Call-ID", call_id);
            h.push("CSeq", cseq_value(1, "OPTIONS"));
            h.push("Content-Length", "0");
            let req = Request {
                method: Method::Options,
                uri: contact,
                headers: h,
                body: Vec::new(),
            };
            self.tx.send_stateless(&SipMessage::Request(req), peer);
            self.stats.keepalives += 1;
        }
    }

    /// The location service, created with the nonce key every use of it shares.
    pub(super) fn registrar_mut(&mut self, now: Instant) -> &mut Registrar {
        let key = self.nonce_key;
        self.registrar
            .get_or_insert_with(|| Registrar::new(key, now))
    }

    /// The location service's answer for a request to `uri`: `None` when no registrar serves
    /// its domain (the dial plan decides); else the AoR's bindings as targets, best first, or
    /// the refusal (404 no such user, 480 not registered).
    pub(super) fn locate(
        &self,
        uri: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Option<Result<Vec<Target>, RouteOutcome>> {
        let settings = policy.registrar(now)?;
        let uri = Uri::parse(uri).ok()?;
        let found = match &self.registrar {
            Some(reg) => reg.lookup(&uri, &settings, now),
            None => Registrar::new([0; 32], now).lookup(&uri, &settings, now),
        }?;
        Some(match found {
            Ok(bindings) => Ok(bindings
                .into_iter()
                .map(|b| Target {
                    trunk: REGISTERED.to_string(),
                    peer: b.source,
                    host: b.target,
                })
                .collect()),
            Err(LookupMiss::Unknown) => Err(RouteOutcome::Reject {
                code: 404,
                reason: "Not Found".into(),
            }),
            Err(LookupMiss::Offline) => Err(RouteOutcome::Reject {
                code: 480,
                reason: "Temporarily Unavailable".into(),
            }),
        })
    }

    /// The one authorization decision for a request that starts something (INVITE, MESSAGE,
    /// SUBSCRIBE), made on the identity that routes, the Request-URI (invariant 9):
    ///
    /// * from a trunk: trusted; the location service or the dial plan routes it;
    /// * from anywhere else, to a served user with a live binding: `Local`, and only the
    ///   location service routes it (never the dial plan, so never a trunk);
    /// * anything else must authenticate as a registrar user (RFC 3261 §22.3,
    ///   `Proxy-Authorization`); a challenge is sent once and no state kept. An unknown user
    ///   and a known one who is offline get the same challenge, so answers list no users.
    ///
    /// `Err(status)`: the request was answered (a challenge, 400) or dropped (a banned
    /// source: status 0).
    pub(super) fn admit_caller(
        &mut self,
        tx: TxId,
        req: &mut Request,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Result<Admitted, u16> {
        let mut admitted = self.authorize(tx, req, from, now, policy)?;
        if admitted.caller.trusted() {
            admitted.headers = policy.header_policy(None, from, now);
        }
        if !admitted.caller.trusted() || admitted.headers.as_ref().is_some_and(|h| !h.trusted) {
            strip_identity(req, admitted.asserted());
        }
        Ok(admitted)
    }

    /// The decision of [`Self::admit_caller`], before identity headers are settled.
    fn authorize(
        &mut self,
        tx: TxId,
        req: &Request,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Result<Admitted, u16> {
        let located = self.locate(&req.uri, now, policy);
        let trunk = policy.is_trunk(from, now);
        let settings = policy.registrar(now).filter(|s| s.authenticate_calls);
        let Some(s) = settings else {
            let caller = if trunk { Caller::Trunk } else { Caller::Open };
            return Ok(Admitted::new(caller, located));
        };
        if trunk {
            let caller = Caller::Trunk;
            return Ok(Admitted::new(caller, located));
        }
        if matches!(located, Some(Ok(_))) {
            let caller = Caller::Local;
            return Ok(Admitted::new(caller, located));
        }
        match self
            .registrar_mut(now)
            .authenticate_caller(req, from, &s, now)
        {
            Ok(name) => {
                let domain = s
                    .domains
                    .first()
                    .cloned()
                    .unwrap_or_else(|| s.realm.clone());
                let caller = Caller::User { name, domain };
                Ok(Admitted::new(caller, located))
            }
            Err(denial) => Err(self.deny(tx, req, denial, now)),
        }
    }

    /// Answer (or not) a request whose credentials failed; the status sent, 0 for none.
    /// Challenges go out once with no transaction kept (a forged source gets one packet per
    /// packet it sent, not a 100 and eleven retransmissions).
    pub(super) fn deny(&mut self, tx: TxId, req: &Request, denial: Denial, now: Instant) -> u16 {
        match denial {
            Denial::Challenge(a) => {
                let tag = self.new_tag();
                let mut resp = make_response(req, a.status, a.reason, Some(&tag));
                for (n, v) in a.headers {
                    resp.headers.push(n, v);
                }
                self.tx.respond_once(tx, resp);
                *self.stats.rejected.entry("auth").or_insert(0) += 1;
                a.status
            }
            Denial::Answer(a) => {
                let tag = self.new_tag();
                let mut resp = make_response(req, a.status, a.reason, Some(&tag));
                for (n, v) in a.headers {
                    resp.headers.push(n, v);
                }
                self.tx.send_response(tx, resp, now);
                *self.stats.rejected.entry("auth").or_insert(0) += 1;
                a.status
            }
            Denial::Banned => {
                self.tx.discard(tx);
                *self.stats.rejected.entry("auth_banned").or_insert(0) += 1;
                0
            }
        }
    }

    /// 503 + Retry-After for a request over a per-source or per-target cap.
    pub(super) fn refuse_capped(&mut self, tx: TxId, req: &Request, now: Instant) {
        let retry_after = self.cfg.caps.retry_after;
        self.refuse(tx, req, Refusal::Unavailable(retry_after), now);
        *self.stats.rejected.entry("caps").or_insert(0) += 1;
    }
}
