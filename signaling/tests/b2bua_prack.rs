//! Reliable provisional responses (RFC 3262) per leg, in virtual time: leg B offers 100rel
//! (per trunk), PRACKs each reliable provisional once; leg A gets trunkline's own reliable
//! provisionals when it supports 100rel (own RSeq, retransmitted until its PRACK, one at a
//! time, a 2xx held behind one with SDP) and unreliable ones when it does not.

mod flows_common;

use std::time::{Duration, Instant};

use flows_common::*;
use signaling::b2bua::{
    CallEvent, CallRef, Leg, MediaRefusal, Policy, Rel100Mode, RouteOutcome, StaticPolicy,
};
use signaling::message::{Request, Response, SipMessage};
use signaling::Peer;

/// Leg A's INVITE with `extra` header lines (e.g. `Supported: 100rel\r\n`).
fn invite_plus(call_id: &str, extra: &str) -> Vec<u8> {
    String::from_utf8(invite(call_id, SDP_A))
        .unwrap()
        .replace(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\n{extra}"),
        )
        .into_bytes()
}

/// A reliable provisional from the trunk: `status` with RSeq `rseq`, To tag `btag`, and SDP
/// when `sdp`.
fn reliable(inv: &Request, status: u16, rseq: u32, sdp: bool) -> SipMessage {
    let body = if sdp { SDP_B } else { "" };
    let mut m = resp_with(
        inv,
        status,
        "Early",
        "btag",
        body,
        "<sip:early@127.0.0.1:5080>",
    );
    if let SipMessage::Response(r) = &mut m {
        r.headers.push("Require", "100rel");
        r.headers.push("RSeq", rseq.to_string());
        r.headers.push("Record-Route", "<sip:rr.b.example;lr>");
    }
    m
}

fn rseq_of(r: &Response) -> Option<u32> {
    r.headers.get("RSeq").and_then(|v| v.parse().ok())
}

/// Leg A's PRACK for RSeq `rseq` of its INVITE (CSeq 1).
fn a_prack(call_id: &str, cseq: u32, to_tag: &str, rseq: u32) -> Vec<u8> {
    String::from_utf8(a_request("PRACK", call_id, cseq, to_tag, ""))
        .unwrap()
        .replace(
            "Content-Length: 0",
            &format!("RAck: {rseq} 1 INVITE\r\nContent-Length: 0"),
        )
        .into_bytes()
}

fn provisionals(w: &mut World) -> Vec<Response> {
    w.take_responses(A)
        .into_iter()
        .filter(|r| r.status > 100 && r.status < 200)
        .collect()
}

#[test]
fn leg_b_offers_100rel_and_pracks_each_reliable_provisional_once() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite("rel-1", SDP_A));
    let inv = w.take_request(PBX, "INVITE");
    assert_eq!(inv.headers.get("Supported"), Some("100rel"));
    let seq = inv.cseq().unwrap().seq;
    w.feed_msg(PBX, &reliable(&inv, 183, 7, true));
    let prack = w.take_request(PBX, "PRACK");
    assert_eq!(
        prack.headers.get("RAck"),
        Some(format!("7 {seq} INVITE").as_str())
    );
    assert_eq!(
        prack.uri, "sip:early@127.0.0.1:5080",
        "the early dialog's target"
    );
    assert_eq!(prack.headers.get("Route"), Some("<sip:rr.b.example;lr>"));
    assert_eq!(prack.to().unwrap().tag(), Some("btag"));
    assert_eq!(prack.cseq().unwrap().seq, seq + 1);
    // The caller did not offer 100rel: its 183 is unreliable, with leg B's (anchored) SDP.
    let p = provisionals(&mut w);
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].status, p[0].body.as_slice()), (183, SDP_B.as_bytes()));
    assert!(p[0].headers.get("RSeq").is_none() && p[0].headers.get("Require").is_none());
    // A retransmission (same RSeq) is neither PRACKed again nor relayed again.
    w.feed_msg(PBX, &reliable(&inv, 183, 7, true));
    assert!(requests(&w.take_to(PBX), "PRACK").is_empty());
    assert!(provisionals(&mut w).is_empty());
    // The next one is.
    w.feed_msg(PBX, &reliable(&inv, 180, 8, false));
    let prack2 = w.take_request(PBX, "PRACK");
    assert_eq!(
        prack2.headers.get("RAck"),
        Some(format!("8 {seq} INVITE").as_str())
    );
    assert_eq!(provisionals(&mut w).len(), 1);
    w.feed_msg(PBX, &resp_with(&prack, 200, "OK", "btag", "", ""));
    w.feed_msg(PBX, &resp_with(&prack2, 200, "OK", "btag", "", ""));
    w.feed_msg(
        PBX,
        &resp_with(&inv, 200, "OK", "btag", SDP_B, "<sip:bob@127.0.0.1:5080>"),
    );
    let ack = w.take_request(PBX, "ACK");
    assert_eq!(
        ack.cseq().unwrap().seq,
        seq,
        "the ACK repeats the INVITE's CSeq"
    );
    assert!(w.take_responses(A).iter().any(|r| r.status == 200));
}

#[test]
fn a_caller_with_100rel_gets_reliable_provisionals_until_it_pracks() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite_plus("rel-2", "Supported: 100rel\r\n"));
    let inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&inv, 180, "Ringing", "btag", "", ""));
    let p = provisionals(&mut w);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].headers.get("Require"), Some("100rel"));
    let rseq = rseq_of(&p[0]).expect("RSeq");
    assert!((1..=0x7fff_ffff).contains(&rseq));
    let a_tag = p[0].to().unwrap().tag().unwrap().to_string();
    // Retransmitted at T1, then 2·T1, with the same RSeq.
    w.advance(Duration::from_millis(500));
    let r1 = provisionals(&mut w);
    assert_eq!(r1.iter().map(rseq_of).collect::<Vec<_>>(), vec![Some(rseq)]);
    w.advance(Duration::from_millis(999));
    assert!(provisionals(&mut w).is_empty(), "next one after 2·T1");
    w.advance(Duration::from_millis(1));
    assert_eq!(provisionals(&mut w).len(), 1);
    // A 183 with SDP waits for the PRACK (one reliable provisional at a time).
    w.feed_msg(PBX, &resp_with(&inv, 183, "Progress", "btag", SDP_B, ""));
    assert!(provisionals(&mut w).is_empty());
    // A PRACK for another RSeq: 481; for this one: 200, answered here, not relayed.
    w.feed(A, &a_prack("rel-2", 2, &a_tag, rseq.wrapping_add(5)));
    assert_eq!(w.final_to(A).status, 481);
    w.feed(A, &a_prack("rel-2", 3, &a_tag, rseq));
    let rs = w.take_responses(A);
    assert!(rs
        .iter()
        .any(|r| r.status == 200 && r.cseq().unwrap().method.as_str() == "PRACK"));
    assert!(
        requests(&w.take_to(PBX), "PRACK").is_empty(),
        "leg A's PRACK is not leg B's"
    );
    // Then the 183 goes, reliably, with the next RSeq.
    let p183: Vec<&Response> = rs.iter().filter(|r| r.status == 183).collect();
    assert_eq!(p183.len(), 1, "{rs:?}");
    assert_eq!(rseq_of(p183[0]), Some(rseq.wrapping_add(1)));
    assert_eq!(p183[0].body, SDP_B.as_bytes());
    // The 2xx is held until that 183 (it carried SDP) is PRACKed.
    w.feed_msg(
        PBX,
        &resp_with(&inv, 200, "OK", "btag", SDP_B, "<sip:bob@127.0.0.1:5080>"),
    );
    w.take_request(PBX, "ACK");
    assert!(w.take_responses(A).iter().all(|r| r.status != 200));
    w.feed(A, &a_prack("rel-2", 4, &a_tag, rseq.wrapping_add(1)));
    let rs = w.take_responses(A);
    let oks: Vec<String> = rs
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.cseq().unwrap().method.as_str().to_string())
        .collect();
    assert_eq!(oks, vec!["PRACK", "INVITE"]);
    // No more retransmissions of either provisional.
    w.feed(A, &a_request("ACK", "rel-2", 1, &a_tag, ""));
    w.advance(Duration::from_secs(40));
    assert!(provisionals(&mut w).is_empty());
    assert_eq!(w.core.active_calls(), 1);
}

#[test]
fn require_100rel_from_the_caller_is_served_not_420() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite_plus("rel-3", "Require: 100rel\r\n"));
    assert!(w.take_responses(A).iter().all(|r| r.status != 420));
    let inv = w.take_request(PBX, "INVITE");
    // Leg B's reliable 183 is PRACKed on leg B and sent reliably on leg A with our own RSeq.
    w.feed_msg(PBX, &reliable(&inv, 183, 1, true));
    w.take_request(PBX, "PRACK");
    let p = provisionals(&mut w);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].headers.get("Require"), Some("100rel"));
    assert!(rseq_of(&p[0]).is_some());
    // Another extension is still 420.
    w.feed(
        A,
        &invite_plus("rel-3b", "Require: 100rel, precondition\r\n"),
    );
    let r = w.final_to(A);
    assert_eq!(r.status, 420);
    assert_eq!(r.headers.get("Unsupported"), Some("precondition"));
}

#[test]
fn no_prack_within_64_t1_refuses_the_invite_with_500() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite_plus("rel-4", "Supported: 100rel\r\n"));
    let inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&inv, 180, "Ringing", "btag", "", ""));
    w.advance(Duration::from_secs(31));
    let rs = w.take_responses(A);
    assert!(rs.iter().all(|r| r.status < 200));
    // Sent at 0, then retransmitted at intervals doubling from T1: 0.5, 1.5, 3.5, 7.5, 15.5 s.
    assert_eq!(rs.iter().filter(|r| r.status == 180).count(), 6);
    w.advance(Duration::from_secs(2));
    let rs = w.take_responses(A);
    // 31.5 s, and at 64·T1 = 32 s the INVITE is refused.
    assert_eq!(rs.iter().filter(|r| r.status == 180).count(), 1);
    let finals: Vec<u16> = rs
        .iter()
        .filter(|r| r.status >= 200)
        .map(|r| r.status)
        .collect();
    assert!(
        !finals.is_empty() && finals.iter().all(|&s| s == 500),
        "{finals:?} (Timer G retransmits it)"
    );
    let cancel = w.take_request(PBX, "CANCEL");
    w.feed_msg(PBX, &resp_with(&cancel, 200, "OK", "btag", "", ""));
    w.feed_msg(PBX, &resp_with(&inv, 487, "Terminated", "btag", "", ""));
    w.advance(Duration::from_secs(64));
    assert_eq!(w.core.active_calls(), 0);
    assert_eq!(w.core.transactions(), 0);
}

/// [`StaticPolicy`] with one `100rel:` mode for every trunk.
struct Rel100(StaticPolicy, Rel100Mode);

impl Policy for Rel100 {
    fn route(&mut self, r: &Request, f: Peer, to: &str, fr: &str, n: Instant) -> RouteOutcome {
        self.0.route(r, f, to, fr, n)
    }
    fn media_offer(
        &mut self,
        c: CallRef<'_>,
        l: Leg,
        s: &[u8],
        n: Instant,
    ) -> Result<Vec<u8>, MediaRefusal> {
        self.0.media_offer(c, l, s, n)
    }
    fn media_answer(
        &mut self,
        c: CallRef<'_>,
        l: Leg,
        s: &[u8],
        n: Instant,
    ) -> Result<Vec<u8>, String> {
        self.0.media_answer(c, l, s, n)
    }
    fn media_release(&mut self, c: CallRef<'_>, n: Instant) {
        self.0.media_release(c, n)
    }
    fn event(&mut self, ev: CallEvent, n: Instant) {
        self.0.event(ev, n)
    }
    fn rel100_mode(&mut self, _trunk: &str, _now: Instant) -> Rel100Mode {
        self.1
    }
}

#[test]
fn the_trunks_100rel_mode_says_what_leg_bs_invite_carries() {
    for (mode, supported, require) in [
        (Rel100Mode::Supported, Some("100rel"), None),
        (Rel100Mode::Required, None, Some("100rel")),
        (Rel100Mode::Off, None, None),
    ] {
        let policy = Rel100(
            StaticPolicy {
                targets: vec![target("pbx", PBX)],
                events: Vec::new(),
                released: Vec::new(),
            },
            mode,
        );
        let cfg = signaling::b2bua::CoreConfig {
            local_udp: Some(ME.parse().unwrap()),
            ..Default::default()
        };
        let mut w = signaling::testing::World::new(cfg, policy);
        w.feed(A, &invite("rel-5", SDP_A));
        let inv = w.take_request(PBX, "INVITE");
        assert_eq!(inv.headers.get("Supported"), supported, "{mode:?}");
        assert_eq!(inv.headers.get("Require"), require, "{mode:?}");
        // Whatever the mode, a reliable provisional that arrives is PRACKed (RFC 3262 §4).
        w.feed_msg(PBX, &reliable(&inv, 183, 3, false));
        assert_eq!(requests(&w.take_to(PBX), "PRACK").len(), 1, "{mode:?}");
    }
}

#[test]
fn a_2xx_held_behind_an_unpracked_183_ends_as_500_and_bye() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite_plus("rel-6", "Supported: 100rel\r\n"));
    let inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&inv, 183, "Progress", "btag", SDP_B, ""));
    assert_eq!(provisionals(&mut w).len(), 1);
    w.feed_msg(
        PBX,
        &resp_with(&inv, 200, "OK", "btag", SDP_B, "<sip:bob@127.0.0.1:5080>"),
    );
    w.take_request(PBX, "ACK");
    assert!(w.take_responses(A).iter().all(|r| r.status < 200), "held");
    w.advance(Duration::from_secs(33));
    let finals: Vec<u16> = w
        .take_responses(A)
        .iter()
        .filter(|r| r.status >= 200)
        .map(|r| r.status)
        .collect();
    assert!(
        !finals.is_empty() && finals.iter().all(|&s| s == 500),
        "{finals:?}"
    );
    let bye = w.take_request(PBX, "BYE");
    w.feed_msg(PBX, &resp_with(&bye, 200, "OK", "btag", "", ""));
    w.advance(Duration::from_secs(64));
    assert_eq!(w.core.active_calls(), 0);
    assert_eq!(w.policy.released.len(), 1);
}

#[test]
fn the_callee_hanging_up_while_the_2xx_is_held_ends_leg_a_with_487() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite_plus("rel-7", "Supported: 100rel\r\n"));
    let inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&inv, 183, "Progress", "btag", SDP_B, ""));
    w.feed_msg(
        PBX,
        &resp_with(&inv, 200, "OK", "btag", SDP_B, "<sip:bob@127.0.0.1:5080>"),
    );
    w.take_request(PBX, "ACK");
    w.take_to(A);
    // The callee hangs up before the caller PRACKed (so before it got its 2xx).
    let our_tag = inv.from().unwrap().tag().unwrap().to_string();
    let bye = format!(
        "BYE sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-bye7\r\n\
Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.1:5080>;tag=btag\r\nTo: <sip:a@127.0.0.1>;tag={our_tag}\r\n\
Call-ID: {}\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
        inv.call_id().unwrap()
    );
    w.feed(PBX, bye.as_bytes());
    assert_eq!(w.final_to(PBX).status, 200);
    let to_a = w.take_to(A);
    assert!(
        requests(&to_a, "BYE").is_empty(),
        "no BYE in leg A's early dialog"
    );
    let finals: Vec<u16> = to_a
        .iter()
        .filter_map(|m| match m {
            SipMessage::Response(r) if r.status >= 200 => Some(r.status),
            _ => None,
        })
        .collect();
    assert_eq!(finals, vec![487]);
    w.advance(Duration::from_secs(64));
    assert!(
        w.take_responses(A).iter().all(|r| r.status == 487),
        "no 183 or 2xx after the end"
    );
    assert_eq!(w.core.active_calls(), 0);
    assert_eq!(
        w.core.transactions(),
        0,
        "{:?}",
        w.core.describe_transactions()
    );
}
