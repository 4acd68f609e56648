//! [`TrunkUsage`] driven by the real B2BUA core in virtual time: every end path of a call
//! (answer + BYE, CANCEL, BYE before the answer, failover, all targets failing, a 2xx crossing
//! a CANCEL) releases exactly what the call held.
use super::*;
use signaling::b2bua::{CallRef, CoreConfig, Leg, MediaRefusal, Policy, RouteOutcome, Target};
use signaling::message::{Request, SipMessage};
use signaling::testing::{peer, World};
use signaling::Peer;

const A: &str = "127.0.0.1:5070";
const T: [&str; 3] = ["127.0.0.1:5080", "127.0.0.1:5090", "127.0.0.1:5100"];
const NAMES: [&str; 3] = ["t0", "t1", "t2"];

struct P {
    usage: TrunkUsage,
    limits: HashMap<String, TrunkLimits>,
    targets: Vec<Target>,
    now: Instant,
}

impl Policy for P {
    fn route(&mut self, _: &Request, _: Peer, to: &str, from: &str, _now: Instant) -> RouteOutcome {
        let targets: Vec<Target> = self
            .targets
            .iter()
            .filter(|t| {
                let lim = self.limits.get(&t.trunk).copied().unwrap_or_default();
                self.usage.check(&t.trunk, lim, self.now).is_ok()
            })
            .cloned()
            .collect();
        if targets.is_empty() {
            return RouteOutcome::Unavailable { retry_after: 5 };
        }
        RouteOutcome::Route {
            targets,
            to_user: to.into(),
            from_user: from.into(),
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
        self.usage.release(call.id);
    }
    fn event(&mut self, ev: CallEvent, _now: Instant) {
        let limits = &self.limits;
        self.usage.on_event(
            &ev,
            |n| limits.get(n).copied().unwrap_or_default(),
            self.now,
        );
    }
    fn admit_target(&mut self, t: &Target, _now: Instant) -> bool {
        let lim = self.limits.get(&t.trunk).copied().unwrap_or_default();
        self.usage.check(&t.trunk, lim, self.now).is_ok()
    }
}

type W = World<P>;

fn world(n_targets: usize) -> W {
    let mut w = World::new(
        CoreConfig {
            local_udp: Some("127.0.0.1:5060".parse().unwrap()),
            ..CoreConfig::default()
        },
        P {
            usage: TrunkUsage::default(),
            limits: HashMap::new(),
            targets: (0..n_targets)
                .map(|i| Target {
                    trunk: NAMES[i].into(),
                    peer: peer(T[i]),
                    host: T[i].into(),
                })
                .collect(),
            now: Instant::now(),
        },
    )
    .with_clock(|p, now| p.now = now);
    w.policy.now = w.now;
    w
}

/// What these tests read off the world besides the shared helpers.
trait Slots {
    fn statuses_to_a(&mut self) -> Vec<(u16, Option<String>)>;
    fn active(&self) -> [u32; 3];
}

impl Slots for W {
    fn statuses_to_a(&mut self) -> Vec<(u16, Option<String>)> {
        self.take_responses(A)
            .into_iter()
            .map(|r| (r.status, r.to().and_then(|t| t.tag().map(str::to_string))))
            .collect()
    }
    fn active(&self) -> [u32; 3] {
        NAMES.map(|n| self.policy.usage.active(n))
    }
}

fn a_msg(method: &str, id: &str, cseq: u32, branch: &str, to_tag: Option<&str>) -> Vec<u8> {
    let tt = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:1@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {A};branch=z9hG4bK-{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:a@{A}>;tag=a-{id}\r\n\
         To: <sip:1@127.0.0.1>{tt}\r\n\
         Call-ID: {id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:a@{A}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn invite(w: &mut W, id: &str) {
    w.feed(A, &a_msg("INVITE", id, 1, &format!("inv-{id}"), None));
}

#[test]
fn answered_call_then_bye() {
    let mut w = world(1);
    invite(&mut w, "c1");
    let b = w.take_request(T[0], "INVITE");
    assert_eq!(w.active(), [1, 0, 0]);
    w.respond(T[0], &b, 200);
    let tag = w
        .statuses_to_a()
        .into_iter()
        .find(|(s, _)| *s == 200)
        .and_then(|(_, t)| t)
        .unwrap();
    w.feed(A, &a_msg("ACK", "c1", 1, "ack-c1", Some(&tag)));
    assert_eq!(w.active(), [1, 0, 0], "an answered call holds its slot");
    w.feed(A, &a_msg("BYE", "c1", 2, "bye-c1", Some(&tag)));
    assert_eq!(w.active(), [0, 0, 0]);
    assert_eq!(w.policy.usage.calls(), 0);
}

#[test]
fn cancel_releases_at_once() {
    let mut w = world(1);
    invite(&mut w, "c2");
    let b = w.take_request(T[0], "INVITE");
    w.respond(T[0], &b, 180);
    w.feed(A, &a_msg("CANCEL", "c2", 1, "inv-c2", None));
    assert_eq!(w.active(), [0, 0, 0], "released with the 487 to A");
    let c = w.take_request(T[0], "CANCEL");
    w.respond(T[0], &c, 200);
    w.respond(T[0], &b, 487);
    assert_eq!(w.active(), [0, 0, 0]);
    w.advance(Duration::from_secs(64));
    assert_eq!(w.core.active_calls(), 0);
    assert_eq!(w.policy.usage.calls(), 0);
}

#[test]
fn bye_before_answer_and_2xx_crossing_it_release() {
    // BYE from A while ringing (RFC 3261 §15): the core cancels leg B and reports no
    // Finished; the slot goes with the media release.
    let mut w = world(1);
    invite(&mut w, "c3");
    let b = w.take_request(T[0], "INVITE");
    w.respond(T[0], &b, 180);
    let tag = w
        .statuses_to_a()
        .into_iter()
        .find_map(|(s, t)| (s == 180).then_some(t))
        .flatten()
        .unwrap();
    w.feed(A, &a_msg("BYE", "c3", 2, "bye-c3", Some(&tag)));
    w.respond(T[0], &b, 487);
    assert_eq!(w.active(), [0, 0, 0]);
    // Same, but leg B's 200 crosses the CANCEL: the core ACKs and BYEs it.
    invite(&mut w, "c4");
    let b = w.take_request(T[0], "INVITE");
    w.respond(T[0], &b, 180);
    let tag = w
        .statuses_to_a()
        .into_iter()
        .find_map(|(s, t)| (s == 180).then_some(t))
        .flatten()
        .unwrap();
    w.feed(A, &a_msg("BYE", "c4", 2, "bye-c4", Some(&tag)));
    w.respond(T[0], &b, 200);
    let bye = w.take_request(T[0], "BYE");
    w.respond(T[0], &bye, 200);
    let c = w.take_request(T[0], "CANCEL");
    w.respond(T[0], &c, 200);
    w.advance(Duration::from_secs(64));
    assert_eq!(w.core.active_calls(), 0, "the core forgot the call");
    // The core releases the call's media (and with it the trunk slot) when the crossing
    // 2xx is ACKed and BYEd; the periodic reconcile finds nothing left to do.
    assert_eq!(w.active(), [0, 0, 0], "released with the media");
    let core = &w.core;
    w.policy.usage.retain(|id| core.has_call(id));
    assert_eq!(w.active(), [0, 0, 0]);
    assert_eq!(w.policy.usage.calls(), 0);
}

#[test]
fn failover_moves_and_failure_releases() {
    let mut w = world(2);
    invite(&mut w, "c5");
    let b0 = w.take_request(T[0], "INVITE");
    w.respond(T[0], &b0, 503);
    let b1 = w.take_request(T[1], "INVITE");
    assert_eq!(w.active(), [0, 1, 0]);
    w.respond(T[1], &b1, 486);
    assert_eq!(w.active(), [0, 0, 0]);
    // A silent first target: the no-answer timer fails over, then Timer B ends it all.
    invite(&mut w, "c6");
    w.take_request(T[0], "INVITE");
    w.advance(Duration::from_secs(5));
    w.take_request(T[1], "INVITE");
    assert_eq!(w.active(), [0, 1, 0]);
    w.advance(Duration::from_secs(64));
    assert_eq!(w.active(), [0, 0, 0]);
    assert_eq!(w.core.active_calls(), 0);
}

#[test]
fn full_trunk_is_skipped_on_failover_and_at_route() {
    let mut w = world(3);
    let one = TrunkLimits {
        max_calls: Some(1),
        max_cps: None,
    };
    w.policy.limits.insert("t1".into(), one);
    // Another call holds t1's only slot.
    w.policy.usage.attempt(999, "t1", one, w.policy.now);
    invite(&mut w, "c7");
    let b0 = w.take_request(T[0], "INVITE");
    w.respond(T[0], &b0, 503);
    // t1 is full: the failover goes straight to t2.
    let b2 = w.take_request(T[2], "INVITE");
    assert!(!w
        .sent()
        .iter()
        .any(|(p, m)| *p == peer(T[1]) && matches!(m, SipMessage::Request(_))));
    assert_eq!(w.active(), [0, 1, 1]);
    w.respond(T[2], &b2, 503);
    assert_eq!(w.active(), [0, 1, 0]);
    // Only t1 routed and full: 503 with Retry-After at once.
    let mut w1 = world(2);
    w1.policy.targets.remove(0);
    w1.policy.limits.insert("t1".into(), one);
    w1.policy.usage.attempt(999, "t1", one, w1.policy.now);
    invite(&mut w1, "c8");
    let st = w1.statuses_to_a();
    assert!(st.iter().any(|(s, _)| *s == 503), "{st:?}");
    assert_eq!(w1.core.active_calls(), 0);
}
