//! The B2BUA core's decisions, bound to the live configuration and the media relay.

use std::sync::Arc;
use std::time::Instant;

use config::{Action, Config, RouteQuery, TransportKind};
use signaling::b2bua::{
    CallEvent, CallRef, CarrierTrunk, HeaderPolicy, Leg, MediaRefusal, Policy, RedirectMode,
    ReferMode, Rel100Mode, RouteOutcome, SessionTimer, Target, TimerChoice,
};
use signaling::registrar::RegistrarSettings;
use signaling::{Peer, Request, Transport};

use crate::limits::{self, Overload, SourceLimiter, TrunkLimits, TrunkUsage, UaBlockList};
use crate::metrics::Metrics;

mod headers;
mod media;
mod media_policy;
mod plan;
mod registrar;
mod replica;
pub use media::{set_counter, Media, MediaNotice};
pub use registrar::mailbox_limits;

pub struct LivePolicy {
    /// The configuration new calls are routed with; swapped atomically on reload. Calls in
    /// progress keep the targets they were given at INVITE time.
    pub config: Arc<Config>,
    pub media: Option<Media>,
    pub metrics: Arc<Metrics>,
    pub guard: Guard,
    /// The trunk each call came from, for the `direction="inbound"` call metrics.
    sources: CallSources,
    /// The registrar settings of `config`, built at first use after each configuration change
    /// ([`LivePolicy::config_changed`]).
    registrar: Option<Option<Arc<RegistrarSettings>>>,
    /// Where calls to MGCP gateway trunks go (the bridge's loopback SIP address), if running.
    /// Each MGCP gateway's SIP address in the bridge (loopback): where its calls go and
    /// where its lines' calls come from.
    pub mgcp_bridge: Arc<std::collections::HashMap<String, std::net::SocketAddr>>,
    /// The cluster link's counters (`cluster:`), for metrics.
    pub cluster: Option<Arc<crate::cluster::ClusterStats>>,
    /// Which trunks register and are probed, and which probed trunks are down.
    pub health: crate::carriers::TrunkHealth,
    /// The addresses of trunks named by DNS (written by the resolver thread).
    pub dns: Arc<crate::dns::DnsTable>,
    /// Call detail records (`cdr:`), when configured.
    pub cdr: Option<crate::cdr::Cdrs>,
    /// Media quality reports for the capture stream (`capture:`), when configured.
    pub quality: Option<crate::hep::quality::QualityReports>,
    /// Earliest next [`LivePolicy::drain_media_soon`] drain.
    next_drain: Option<Instant>,
    /// The trunks' header policies of `config`.
    header_policies: headers::HeaderPolicies,
}

/// Which trunk each call came from. The core routes a new INVITE and then, before it handles
/// anything else, reports exactly one of: the call's first attempt (which names the call), a
/// rejection, or a redirect; the source noted at routing is attached then.
#[derive(Debug, Default)]
struct CallSources {
    pending: Option<String>,
    of: std::collections::HashMap<u64, String>,
}

impl CallSources {
    /// The source of the call an event is about (taken when the call is over).
    fn source_for(&mut self, ev: &CallEvent) -> Option<String> {
        match ev {
            CallEvent::Attempt { call, .. } => {
                if let Some(s) = self.pending.take() {
                    self.of.insert(*call, s);
                }
                None
            }
            CallEvent::Finished { call: 0, .. } | CallEvent::Rejected { .. } => self.pending.take(),
            CallEvent::Finished { call, .. } => self.of.remove(call),
            CallEvent::Ended { call, .. } => {
                self.of.remove(call);
                None
            }
            CallEvent::TrunkRegistration { .. }
            | CallEvent::TrunkProbe { .. }
            | CallEvent::Transferred { .. }
            | CallEvent::Record(_) => None,
        }
    }
}

/// Overload and abuse state (`limits:` and the trunks' `max_calls`/`max_cps`).
pub struct Guard {
    /// The configuration (by address) and DNS generation the screening state below was
    /// built from.
    built_for: (usize, u64),
    sources: Option<SourceLimiter>,
    ua_block: UaBlockList,
    usage: TrunkUsage,
    overload: Overload,
    rate_limited: [prometheus::IntCounter; 2],
    ua_blocked: [prometheus::IntCounter; 2],
}

impl Guard {
    pub fn new(metrics: &Metrics) -> Guard {
        Guard {
            built_for: (0, u64::MAX),
            sources: None,
            ua_block: UaBlockList::default(),
            usage: TrunkUsage::default(),
            overload: Overload::new(config::Limits::default().overload_queue as usize),
            rate_limited: [
                metrics.requests_rate_limited.clone(),
                metrics
                    .messages_rejected
                    .with_label_values(&["rate_limited"]),
            ],
            ua_blocked: [
                metrics.requests_blocked.with_label_values(&["user_agent"]),
                metrics.messages_rejected.with_label_values(&["user_agent"]),
            ],
        }
    }

    /// Follow the configuration in use (a pointer check per batch; rebuilt after a reload).
    fn follow(&mut self, cfg: &Config, dns: &crate::dns::DnsTable) {
        let key = (cfg as *const Config as usize, dns.generation());
        if self.built_for == key {
            return;
        }
        let config_changed = self.built_for.0 != key.0;
        self.built_for = key;
        if !config_changed {
            // only the trunks' resolved addresses changed
            if let Some(s) = &mut self.sources {
                // the MGCP bridge's SIP sockets are on loopback: its lines' calls are a trunk's
                let bridge = cfg
                    .trunks
                    .values()
                    .filter(|t| t.mgcp.is_some())
                    .map(|_| std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
                    .take(1);
                s.set_exempt(static_trunk_ips(cfg).chain(dns.ips()).chain(bridge));
            }
            return;
        }
        let l = &cfg.limits;
        self.ua_block = UaBlockList::new(&l.user_agent_block);
        self.sources = match l.source_rate {
            None => None,
            Some(rate) => match self.sources.take() {
                Some(s) if s.same(rate, l.source_burst) => Some(s),
                _ => Some(SourceLimiter::new(rate, l.source_burst)),
            },
        };
        if let Some(s) = &mut self.sources {
            // the MGCP bridge's SIP sockets are on loopback: its lines' calls are a trunk's
            let bridge = cfg
                .trunks
                .values()
                .filter(|t| t.mgcp.is_some())
                .map(|_| std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
                .take(1);
            s.set_exempt(static_trunk_ips(cfg).chain(dns.ips()).chain(bridge));
        }
        self.overload.queue_high = l.overload_queue as usize;
    }
}

/// Where a trunk is now: its `ip:port`, or what its name resolves to (in SRV order; the
/// core tries them in turn before the route's next trunk). Empty: a name not resolved.
pub fn trunk_addresses(
    dns: &crate::dns::DnsTable,
    t: &config::Trunk,
) -> Arc<[std::net::SocketAddr]> {
    if let Some(a) = t.address.socket() {
        return Arc::from([a]);
    }
    match dns.get(&t.name) {
        Some(crate::dns::Resolved::Ready(a)) => a,
        _ => Arc::from([]),
    }
}

/// The IP addresses of the trunks given as `ip:port`.
pub fn static_trunk_ips(cfg: &Config) -> impl Iterator<Item = std::net::IpAddr> + '_ {
    cfg.trunks
        .values()
        .filter_map(|t| t.address.socket())
        .map(|a| a.ip())
}

pub fn transport_of(t: TransportKind) -> Transport {
    match t {
        TransportKind::Udp => Transport::Udp,
        TransportKind::Tcp => Transport::Tcp,
        TransportKind::Tls => Transport::Tls,
    }
}

/// A trunk's `max_calls`/`max_cps` (none for a trunk the configuration no longer has).
fn trunk_limits(cfg: &Config, name: &str) -> TrunkLimits {
    cfg.trunks
        .get(name)
        .map(|t| TrunkLimits {
            max_calls: t.max_calls,
            max_cps: t.max_cps,
        })
        .unwrap_or_default()
}

/// `lim` as this node's share of the cluster's, with `cluster:` (see
/// [`crate::cluster::ClusterStats::share`]); as it is without.
fn shared(lim: TrunkLimits, cluster: Option<&crate::cluster::ClusterStats>) -> TrunkLimits {
    let Some(c) = cluster else { return lim };
    TrunkLimits {
        max_calls: lim.max_calls.map(|m| c.share(m)),
        max_cps: lim.max_cps.map(|m| c.share(m)),
    }
}

impl LivePolicy {
    pub fn new(config: Arc<Config>, media: Option<Media>, metrics: Arc<Metrics>) -> LivePolicy {
        let guard = Guard::new(&metrics);
        let mut p = LivePolicy {
            config,
            media,
            metrics,
            guard,
            sources: CallSources::default(),
            registrar: None,
            mgcp_bridge: Default::default(),
            cluster: None,
            health: Default::default(),
            dns: Default::default(),
            cdr: None,
            quality: None,
            next_drain: None,
            header_policies: Default::default(),
        };
        p.guard.follow(&p.config, &p.dns);
        p
    }

    /// The trunk `from` belongs to: one given as that `ip:port`, or one whose name resolves
    /// to it (RFC 3263 trunks are recognised by any address they resolve to).
    fn trunk_of(&self, from: Peer) -> Option<&str> {
        if from.addr.ip().is_loopback() {
            if let Some((name, _)) = self.mgcp_bridge.iter().find(|(_, a)| **a == from.addr) {
                return self
                    .config
                    .trunks
                    .get_key_value(name)
                    .map(|(k, _)| k.as_str());
            }
        }
        if let Some(t) = self
            .config
            .trunks
            .values()
            .find(|t| t.address.socket() == Some(from.addr))
        {
            return Some(t.name.as_str());
        }
        let owner = self.dns.owner(from.addr)?;
        self.config
            .trunks
            .get_key_value(&owner)
            .map(|(k, _)| k.as_str())
    }

    fn trunk_limits(&self, name: &str) -> TrunkLimits {
        shared(trunk_limits(&self.config, name), self.cluster.as_deref())
    }

    /// Screen a received message before it is parsed: `false` drops it unanswered. Requests
    /// from a source over `limits.source_rate` (trunks exempt) and requests whose User-Agent
    /// is on `limits.user_agent_block` are dropped; a scanner learns nothing, not even that
    /// something listens. Responses always pass (they answer our own requests).
    pub fn screen(&mut self, data: &[u8], from: Peer, now: Instant) -> bool {
        self.guard.follow(&self.config, &self.dns);
        if !limits::is_request(data) {
            return true;
        }
        if let Some(s) = &mut self.guard.sources {
            if !s.allow(from.addr.ip(), now) {
                self.guard.rate_limited.iter().for_each(|c| c.inc());
                return false;
            }
        }
        if limits::blocked_user_agent(data, &self.guard.ua_block) {
            self.guard.ua_blocked.iter().for_each(|c| c.inc());
            return false;
        }
        true
    }

    /// The input queue holds `queued` messages: update the overload state (logged and exported
    /// when it changes).
    pub fn set_queue_depth(&mut self, queued: usize) {
        self.guard.follow(&self.config, &self.dns);
        let was = self.guard.overload.is_on();
        let on = self.guard.overload.update(queued);
        if on != was {
            self.metrics.overloaded.set(on as i64);
            if on {
                tracing::warn!(
                    queued,
                    "overloaded: new calls get 503 until the queue drains"
                );
            } else {
                tracing::info!(queued, "overload over");
            }
        }
    }

    /// Release the trunk slots of calls the core no longer knows (a safety net for an end path
    /// that reported nothing).
    pub fn reconcile(&mut self, mut alive: impl FnMut(u64) -> bool) {
        if let Some(c) = &mut self.cdr {
            c.reconcile(&mut alive);
        }
        self.sources.of.retain(|id, _| alive(*id));
        self.guard.usage.retain(alive);
    }

    /// Calls in progress to or from `trunk` (what its `max_calls` counts).
    pub fn active_calls(&self, trunk: &str) -> u32 {
        self.guard.usage.active(trunk)
    }

    /// Refresh the limit gauges (before a scrape).
    pub fn refresh_limit_metrics(&self) {
        for (name, t) in &self.config.trunks {
            self.metrics
                .trunk_active_calls
                .with_label_values(&[name])
                .set(i64::from(self.guard.usage.active(name)));
            // A limited trunk's rejection series exist from the start (at 0), so rate() and
            // alerts see them before the first hit.
            for (limit, set) in [
                ("calls", t.max_calls.is_some()),
                ("cps", t.max_cps.is_some()),
            ] {
                if set {
                    self.metrics
                        .trunk_limit_rejections
                        .with_label_values(&[name, limit])
                        .inc_by(0);
                }
            }
        }
        for (name, n) in self.guard.usage.each_active() {
            if !self.config.trunks.contains_key(name) {
                self.metrics
                    .trunk_active_calls
                    .with_label_values(&[name])
                    .set(i64::from(n));
            }
        }
        let tracked = self.guard.sources.as_ref().map_or(0, |s| s.tracked());
        self.metrics.rate_limit_sources.set(tracked as i64);
    }

    /// The relay's final stats of closed pairs into the quality histograms and the CDRs
    /// waiting for them; CDRs that waited too long are written without.
    pub fn drain_media(&mut self, now: Instant) {
        let closed = match &self.media {
            Some(m) => m.take_closed(&self.metrics),
            None => Vec::new(),
        };
        if let Some(c) = &mut self.cdr {
            for x in &closed {
                c.on_closed(x);
            }
            c.expire(now);
        }
        if let Some(q) = &mut self.quality {
            for x in &closed {
                q.closed(x);
            }
            q.expire(now);
        }
    }

    /// CDRs wait for media stats (the core loop drains the relay's soon).
    pub fn cdr_waiting(&self) -> bool {
        self.cdr.as_ref().is_some_and(crate::cdr::Cdrs::waiting)
    }

    /// [`LivePolicy::drain_media`] when CDRs or quality reports wait for closed pairs' stats
    /// and the last drain is at least [`crate::cdr::DRAIN_EVERY`] ago (the relay reports
    /// closed pairs at that pace anyway): called after every batch of inputs, it must cost
    /// nothing most of the time.
    pub fn drain_media_soon(&mut self, now: Instant) {
        let waiting = self.cdr_waiting()
            || self
                .quality
                .as_ref()
                .is_some_and(crate::hep::quality::QualityReports::waiting);
        if !waiting || self.next_drain.is_some_and(|t| now < t) {
            return;
        }
        self.next_drain = Some(now + crate::cdr::DRAIN_EVERY);
        self.drain_media(now);
    }

    /// `config` was replaced (reload): settings derived from it are rebuilt at next use.
    pub fn config_changed(&mut self) {
        self.registrar = None;
        self.header_policies.reset();
    }

    /// Process-level admission of a new call: overload, then `limits.max_calls`.
    fn admission(&self) -> Option<RouteOutcome> {
        // Process overload first (RFC 7339 §1: shed new work early, with Retry-After).
        if self.guard.overload.is_on() {
            self.metrics
                .overload_rejections
                .with_label_values(&["queue"])
                .inc();
            return Some(self.unavailable());
        }
        let max_calls = self.config.limits.max_calls;
        let max_calls = max_calls.map(|m| self.cluster.as_ref().map_or(m, |c| c.share(m)));
        if let Some(max) = max_calls {
            if self.guard.usage.calls() >= max as usize {
                self.metrics
                    .overload_rejections
                    .with_label_values(&["calls"])
                    .inc();
                return Some(self.unavailable());
            }
        }
        None
    }

    fn unavailable(&self) -> RouteOutcome {
        RouteOutcome::Unavailable {
            retry_after: self.config.limits.retry_after,
        }
    }

    fn limit_hit(&self, trunk: &str, l: limits::Limit) {
        self.metrics
            .trunk_limit_rejections
            .with_label_values(&[trunk, l.label()])
            .inc();
    }
}

impl Policy for LivePolicy {
    fn registrar(&mut self, _now: Instant) -> Option<Arc<RegistrarSettings>> {
        match &self.registrar {
            Some(r) => r.clone(),
            None => {
                let r = registrar::settings(&self.config);
                self.registrar = Some(r.clone());
                r
            }
        }
    }

    fn credentials(
        &mut self,
        trunk: &str,
        _now: Instant,
    ) -> Option<signaling::digest_client::Credentials> {
        self.config
            .trunks
            .get(trunk)
            .and_then(crate::carriers::credentials)
    }

    fn carriers(&mut self, _now: Instant) -> Option<Arc<Vec<CarrierTrunk>>> {
        self.health.carriers(&self.config, &self.dns, &self.metrics)
    }

    fn is_trunk(&mut self, from: Peer, _now: Instant) -> bool {
        // The other cluster nodes are trusted like trunks (a call for a user registered at
        // one of them comes through it).
        self.trunk_of(from).is_some()
            || self
                .config
                .cluster
                .as_ref()
                .is_some_and(|c| c.peers.values().any(|a| *a == from.addr))
    }

    fn route_registered(
        &mut self,
        _req: &Request,
        from: Peer,
        targets: Vec<Target>,
        from_user: &str,
        now: Instant,
    ) -> RouteOutcome {
        self.sources.pending = self.trunk_of(from).map(str::to_string);
        if let Some(refused) = self.admission() {
            return refused;
        }
        if let Some(src) = self.trunk_of(from).map(str::to_string) {
            let lim = self.trunk_limits(&src);
            if let Err(l) = self.guard.usage.admit_inbound(&src, lim, now) {
                self.limit_hit(&src, l);
                return self.unavailable();
            }
        }
        RouteOutcome::Route {
            targets,
            to_user: String::new(),
            from_user: from_user.to_string(),
            from_display: None,
        }
    }

    fn route(
        &mut self,
        req: &Request,
        from: Peer,
        to_user: &str,
        from_user: &str,
        now: Instant,
    ) -> RouteOutcome {
        self.sources.pending = self.trunk_of(from).map(str::to_string);
        if let Some(refused) = self.admission() {
            return refused;
        }
        self.plan(
            &req.uri,
            from,
            to_user,
            from_user,
            &headers::Claimed::of(req),
            true,
            now,
        )
    }

    fn route_message(
        &mut self,
        req: &Request,
        from: Peer,
        to_user: &str,
        from_user: &str,
        now: Instant,
    ) -> RouteOutcome {
        // A message is not a call: no call limits, but overload sheds it like anything new.
        if self.guard.overload.is_on() {
            return self.unavailable();
        }
        self.plan(
            &req.uri,
            from,
            to_user,
            from_user,
            &headers::Claimed::of(req),
            false,
            now,
        )
    }

    fn media_offer(
        &mut self,
        call: CallRef<'_>,
        from: Leg,
        sdp: &[u8],
        _now: Instant,
    ) -> Result<Vec<u8>, MediaRefusal> {
        if let Some(c) = &mut self.cdr {
            c.note_sdp(call.id, leg_index(from), false, sdp);
        }
        let policy = media_relay::control::MediaPolicy {
            srtp: Some(self.srtp_modes(&call)),
            codecs: self.codec_policies(&call),
        };
        match &mut self.media {
            None => Ok(sdp.to_vec()),
            Some(m) => m
                .calls
                .offer_with(
                    side(from),
                    call.call_id,
                    call.from_tag,
                    sdp,
                    peers(&call, from),
                    &policy,
                )
                .map_err(|e| match e {
                    // No room in the relay is the server's condition, not the offer's: 503 with
                    // Retry-After so the caller (or its proxy) tries elsewhere or later.
                    media_relay::control::MediaError::Relay(_) => MediaRefusal::Unavailable {
                        retry_after: self.config.limits.retry_after,
                        detail: e.to_string(),
                    },
                    other => MediaRefusal::NotAcceptable(other.to_string()),
                }),
        }
    }

    fn media_answer(
        &mut self,
        call: CallRef<'_>,
        from: Leg,
        sdp: &[u8],
        _now: Instant,
    ) -> Result<Vec<u8>, String> {
        if let Some(c) = &mut self.cdr {
            c.note_sdp(call.id, leg_index(from), true, sdp);
        }
        match &mut self.media {
            None => Ok(sdp.to_vec()),
            Some(m) => m
                .calls
                .answer_between(
                    side(from),
                    call.call_id,
                    call.from_tag,
                    None,
                    sdp,
                    peers(&call, from),
                )
                .map_err(|e| e.to_string()),
        }
    }

    fn media_export(&mut self, call: CallRef<'_>, _now: Instant) -> Option<Vec<u8>> {
        self.export_media(call)
    }

    fn media_adopt(&mut self, call: CallRef<'_>, media: &[u8], _now: Instant) -> bool {
        self.adopt_media(call, media)
    }

    fn media_release(&mut self, call: CallRef<'_>, now: Instant) {
        let mut pairs = Vec::new();
        let mut reported = Vec::new();
        let (mut srtp, mut transcoded) = (false, false);
        if let Some(m) = &mut self.media {
            if let Ok(infos) = m.calls.delete(call.call_id, Some(call.from_tag)) {
                for st in infos.iter().flat_map(|i| &i.streams) {
                    srtp |= st.proto.contains("SAVP");
                    transcoded |= st.transcoded;
                    pairs.extend(st.pair.map(|p| p.a));
                    if self.quality.is_some() {
                        let remote = |i: usize| st.legs.get(i).and_then(|l| l.remote);
                        reported.extend(st.pair.map(|p| (p, [remote(0), remote(1)])));
                    }
                }
            }
        }
        if let Some(q) = &mut self.quality {
            q.released(call.call_id, &reported, now);
        }
        if let Some(c) = &mut self.cdr {
            c.released(call.id, &pairs, srtp, transcoded, now);
        }
        // Every end of a call releases its media: its trunk slots go with it.
        self.guard.usage.release(call.id);
    }

    fn event(&mut self, ev: CallEvent, now: Instant) {
        if let CallEvent::Record(r) = &ev {
            let source = self
                .trunk_of(Peer {
                    transport: Transport::Udp,
                    addr: r.a_peer,
                })
                .map(str::to_string);
            let source = source.as_deref();
            match &mut self.cdr {
                Some(c) => c.record(r, source),
                // The call-end log line, without a sink.
                None => crate::cdr::log_call_end(r, source),
            }
            return;
        }
        self.health.on_event(&ev, &self.metrics);
        let source = self.sources.source_for(&ev);
        self.metrics.on_call_event(&ev, source.as_deref());
        let (cfg, cluster) = (&self.config, self.cluster.as_deref());
        let limits_of = |name: &str| shared(trunk_limits(cfg, name), cluster);
        self.guard.usage.on_event(&ev, limits_of, now);
    }

    fn redirect_mode(&mut self, trunk: &str, _now: Instant) -> RedirectMode {
        match self.config.trunks.get(trunk).map(|t| t.redirect) {
            Some(config::Redirect::Follow) => RedirectMode::Follow,
            Some(config::Redirect::Reject) => RedirectMode::Reject,
            Some(config::Redirect::Relay) | None => RedirectMode::Relay,
        }
    }

    fn dtmf_info(
        &mut self,
        call: signaling::b2bua::CallRef<'_>,
        from: Leg,
        code: u8,
        duration_ms: u32,
        _now: Instant,
    ) -> bool {
        let Some(m) = &mut self.media else {
            return false;
        };
        let digit = media_relay::transcode::Dtmf { code, duration_ms };
        m.calls
            .inject_dtmf(call.call_id, call.from_tag, side(from), digit)
            .unwrap_or(false)
    }

    fn rel100_mode(&mut self, trunk: &str, _now: Instant) -> Rel100Mode {
        match self.config.trunks.get(trunk).map(|t| t.rel100) {
            Some(config::Rel100::Required) => Rel100Mode::Required,
            Some(config::Rel100::Off) => Rel100Mode::Off,
            Some(config::Rel100::Supported) | None => Rel100Mode::Supported,
        }
    }

    fn refer_mode(&mut self, trunk: Option<&str>, peer: Peer, _now: Instant) -> ReferMode {
        let name = match trunk {
            Some(t) => Some(t),
            None => self.trunk_of(peer),
        };
        match name
            .and_then(|n| self.config.trunks.get(n))
            .map(|t| t.refer)
        {
            Some(config::Refer::Reject) => ReferMode::Reject,
            Some(config::Refer::Handle) => ReferMode::Handle,
            Some(config::Refer::Relay) | None => ReferMode::Relay,
        }
    }

    fn header_policy(
        &mut self,
        trunk: Option<&str>,
        peer: Peer,
        _now: Instant,
    ) -> Option<Arc<HeaderPolicy>> {
        let name = match trunk {
            Some(t) => t.to_string(),
            None => self.trunk_of(peer)?.to_string(),
        };
        self.header_policies.of(&self.config, &name)
    }

    fn tcp_fallback(
        &mut self,
        trunk: &str,
        udp: std::net::SocketAddr,
        _now: Instant,
    ) -> Option<std::net::SocketAddr> {
        let t = self.config.trunks.get(trunk).filter(|t| t.tcp_fallback)?;
        match self.dns.tcp_fallback(&t.name) {
            // Named by SRV: its `_sip._tcp` targets, of the family leg B is on.
            Some(crate::dns::Resolved::Ready(addrs)) => {
                addrs.iter().find(|a| a.is_ipv6() == udp.is_ipv6()).copied()
            }
            // Not resolved (yet): UDP, counted as oversize.
            Some(_) => None,
            // An address or host:port: the same one over TCP.
            None => Some(udp),
        }
    }

    fn session_timer(&mut self, trunk: Option<&str>, peer: Peer, _now: Instant) -> TimerChoice {
        let name = match trunk {
            Some(t) => Some(t),
            None => self.trunk_of(peer),
        };
        match name.and_then(|n| self.config.trunks.get(n)) {
            None => TimerChoice::Inherit,
            Some(t) => match t.session_timer {
                Some(s) => TimerChoice::On(SessionTimer {
                    expires: s.expires,
                    min_se: s.min_se,
                }),
                None => TimerChoice::Off,
            },
        }
    }

    fn route_redirect(
        &mut self,
        uri: &str,
        from: Peer,
        to_user: &str,
        from_user: &str,
        now: Instant,
    ) -> RouteOutcome {
        // The same call: not counted again (its targets are admitted one by one as tried).
        self.plan(
            uri,
            from,
            to_user,
            from_user,
            &headers::Claimed::default(),
            false,
            now,
        )
    }

    fn admit_target(&mut self, target: &Target, now: Instant) -> bool {
        let lim = self.trunk_limits(&target.trunk);
        match self.guard.usage.check(&target.trunk, lim, now) {
            Ok(()) => true,
            Err(l) => {
                self.limit_hit(&target.trunk, l);
                false
            }
        }
    }
}

/// The signalling peers around an SDP from leg `from`: its own (a NATed endpoint's media may
/// come from that IP) and the other leg's (the relay ports facing each leg are of its family,
/// and each leg's SDP names the relay address of its family, RFC 6157).
fn peers(call: &CallRef<'_>, from: Leg) -> media_relay::control::Peers {
    let other = match from {
        Leg::A => Leg::B,
        Leg::B => Leg::A,
    };
    media_relay::control::Peers {
        from: Some(call.peer(from).ip()),
        to: Some(call.peer(other).ip()),
    }
}

fn leg_index(l: Leg) -> usize {
    match l {
        Leg::A => 0,
        Leg::B => 1,
    }
}

fn side(l: Leg) -> media_relay::control::Side {
    match l {
        Leg::A => media_relay::control::Side::A,
        Leg::B => media_relay::control::Side::B,
    }
}
