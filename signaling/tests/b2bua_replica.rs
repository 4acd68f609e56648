//! Confirmed calls replicated to another node (`replicate_calls`, `take_call_changes`,
//! `adopt_call`): a record when a call is answered and when its dialogs change, a removal when
//! it ends, and a second core that adopts the record carries the call on: the peers' BYE and
//! re-INVITE are answered and relayed in the right dialogs with CSeqs the peers accept.

mod flows_common;

use flows_common::*;
use signaling::b2bua::{AdoptError, CallChange, CallEvent, CallReplica, Hangup, CSEQ_STEP};

type W = signaling::testing::World<Tuned>;

fn node() -> W {
    let mut w = tuned_world(vec![target("pbx", PBX)], false);
    w.core.replicate_calls();
    w.policy.replicas = Some(Vec::new());
    w
}

fn changes(w: &mut W) -> Vec<CallChange> {
    let now = w.now;
    w.core.take_call_changes(now, &mut w.policy)
}

/// The record of the one call that changed.
fn written(w: &mut W) -> CallReplica {
    match changes(w).as_slice() {
        [CallChange::Write { replica, .. }] => (**replica).clone(),
        other => panic!("one record expected, got {other:?}"),
    }
}

#[test]
fn an_answered_call_is_recorded_and_its_record_removed_when_it_ends() {
    let mut w = node();
    let (b_inv, a_tag) = answered_call(&mut w, "rep-1");
    let r = written(&mut w);
    assert_eq!(r.a.call_id, "rep-1");
    assert_eq!(r.a.remote_tag.as_deref(), Some("atag-rep-1"));
    assert_eq!(r.a.local_tag, a_tag);
    assert_eq!(r.a.remote_target, "sip:alice@127.0.0.1:5070");
    assert_eq!(r.a.remote_cseq, Some(1));
    assert_eq!(Some(r.b.call_id.as_str()), b_inv.call_id());
    assert_eq!(r.b.remote_tag.as_deref(), Some("btag"));
    assert_eq!(r.b.remote_target, "sip:bob@127.0.0.1:5080");
    assert_eq!(r.b.local_cseq, b_inv.cseq().unwrap().seq);
    assert_eq!(r.b_trunk.as_deref(), Some("pbx"));
    assert_eq!(r.media, b"media:rep-1");
    assert_eq!(CallReplica::decode(&r.encode()), Ok(r.clone()));
    assert!(changes(&mut w).is_empty(), "nothing changed since");

    // An in-dialog request changes the record (its CSeq).
    w.feed(A, &a_request("INFO", "rep-1", 2, &a_tag, ""));
    let info = w.take_request(PBX, "INFO");
    w.respond(PBX, &info, 200);
    let r2 = written(&mut w);
    assert_eq!(r2.a.remote_cseq, Some(2));
    assert_eq!(r2.b.local_cseq, r.b.local_cseq + 1);

    w.feed(A, &a_request("BYE", "rep-1", 3, &a_tag, ""));
    let bye = w.take_request(PBX, "BYE");
    w.respond(PBX, &bye, 200);
    w.drain();
    assert!(
        matches!(changes(&mut w).as_slice(), [CallChange::Remove { .. }]),
        "its record goes"
    );
    assert!(changes(&mut w).is_empty());
}

#[test]
fn a_call_that_is_never_answered_leaves_no_record() {
    let mut w = node();
    w.feed(A, &invite("rep-2", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.respond(PBX, &b_inv, 486);
    w.drain();
    assert!(changes(&mut w).is_empty());
}

#[test]
fn without_replicable_media_a_call_has_no_record() {
    let mut w = node();
    w.policy.replicas = None;
    answered_call(&mut w, "rep-3");
    assert!(changes(&mut w).is_empty());
}

/// A call answered on node 1, its record adopted by node 2.
fn taken_over(call_id: &str) -> (W, CallReplica, String) {
    let mut n1 = node();
    let (_, a_tag) = answered_call(&mut n1, call_id);
    let r = written(&mut n1);
    let mut n2 = node();
    let now = n2.now;
    let copy = CallReplica::decode(&r.encode()).expect("record");
    n2.core
        .adopt_call(copy, now, &mut n2.policy)
        .expect("adopted");
    assert_eq!(
        n2.policy.replicas.as_deref(),
        Some(
            &[b"media:"
                .iter()
                .chain(call_id.as_bytes())
                .copied()
                .collect::<Vec<u8>>()][..]
        ),
        "its media was handed to the policy"
    );
    (n2, r, a_tag)
}

#[test]
fn the_adopting_node_relays_the_callers_bye_with_a_cseq_the_callee_accepts() {
    let (mut n2, r, a_tag) = taken_over("rep-4");
    assert_eq!(n2.core.stats().calls_adopted, 1);
    assert_eq!(
        n2.core.find_call("rep-4", "atag-rep-4").map(|_| ()),
        Some(()),
        "found by leg A's dialog"
    );
    let now = n2.now;
    assert_eq!(
        n2.core.adopt_call(r.clone(), now, &mut n2.policy),
        Err(AdoptError::Exists),
        "adopted once"
    );
    assert!(matches!(
        changes(&mut n2).as_slice(),
        [CallChange::Write { .. }]
    ));

    n2.feed(A, &a_request("BYE", "rep-4", 2, &a_tag, ""));
    assert_eq!(n2.final_to(A).status, 200);
    let bye = n2.take_request(PBX, "BYE");
    assert_eq!(
        bye.uri, "sip:bob@127.0.0.1:5080",
        "the callee's remote target"
    );
    assert_eq!(bye.call_id(), Some(r.b.call_id.as_str()));
    let cseq = bye.cseq().unwrap().seq;
    assert!(cseq > r.b.local_cseq, "{cseq} after {}", r.b.local_cseq);
    assert_eq!(cseq, r.b.local_cseq + CSEQ_STEP + 1);
    assert_eq!(bye.from().unwrap().tag(), Some(r.b.local_tag.as_str()));
    assert_eq!(bye.to().unwrap().tag(), Some("btag"));
    n2.respond(PBX, &bye, 200);
    n2.drain();
    assert!(matches!(
        changes(&mut n2).as_slice(),
        [CallChange::Remove { .. }]
    ));
    assert_eq!(n2.core.find_call("rep-4", "atag-rep-4"), None, "gone");
    // Its CDR, written where it ended, says what the record said.
    let rec = n2
        .policy
        .inner
        .events
        .iter()
        .find_map(|e| match e {
            CallEvent::Record(r) => Some(r.clone()),
            _ => None,
        })
        .expect("a CDR");
    assert_eq!((rec.a_call_id.as_str(), rec.final_code), ("rep-4", 200));
    assert_eq!(rec.b_call_id, r.b.call_id);
    assert_eq!(rec.attempts.len(), 1);
    assert_eq!(rec.attempts[0].trunk, "pbx");
    assert_eq!(rec.hangup, Hangup::Caller);
    assert_eq!(
        (rec.caller.as_str(), rec.callee.as_str()),
        (r.parties[0].as_str(), r.parties[1].as_str())
    );
    assert!(rec.answered.is_some());
}

#[test]
fn the_adopting_node_relays_the_callees_reinvite_and_bye() {
    let (mut n2, r, _) = taken_over("rep-5");
    let b_inv_like = {
        // Leg B's requests name the dialog as node 1 set it up.
        let mut h = signaling::message::Headers::with_capacity(4);
        h.push("From", format!("<sip:x@127.0.0.1>;tag={}", r.b.local_tag));
        h.push("To", "<sip:bob@127.0.0.1:5080>".to_string());
        h.push("Call-ID", r.b.call_id.clone());
        h.push("CSeq", "1 INVITE".to_string());
        signaling::message::Request {
            method: signaling::message::Method::Invite,
            uri: "sip:bob@127.0.0.1:5080".into(),
            headers: h,
            body: Vec::new(),
        }
    };
    n2.feed(PBX, &b_request("INVITE", &b_inv_like, 2, SDP_B));
    let re = n2.take_request(A, "INVITE");
    assert_eq!(re.call_id(), Some("rep-5"));
    assert_eq!(re.uri, "sip:alice@127.0.0.1:5070");
    assert!(re.cseq().unwrap().seq > r.a.local_cseq);
    n2.feed_msg(
        A,
        &resp_with(
            &re,
            200,
            "OK",
            &r.a.local_tag,
            SDP_A,
            "<sip:alice@127.0.0.1:5070>",
        ),
    );
    let ok = n2.final_to(PBX);
    assert_eq!(ok.status, 200, "the re-INVITE's answer reaches the callee");
    n2.feed(PBX, &b_request("BYE", &b_inv_like, 3, ""));
    assert_eq!(n2.final_to(PBX).status, 200);
    let bye = n2.take_request(A, "BYE");
    assert_eq!(bye.call_id(), Some("rep-5"));
    assert_eq!(bye.to().unwrap().tag(), Some("atag-rep-5"));
}
