//! What crosses between a call's legs by policy (`headers:` and `identity:` of a trunk): an
//! untrusted peer's identity claims never cross, in the INVITE or later; a user's request for
//! privacy keeps its identity from untrusted peers; a trunk's `remove`, `keep` and `add`.

mod flows_common;

use std::sync::Arc;

use flows_common::*;
use signaling::b2bua::HeaderPolicy;
use signaling::message::Request;

/// Leg A's INVITE with `extra` header lines.
fn invite_plus(call_id: &str, extra: &str) -> Vec<u8> {
    String::from_utf8(invite(call_id, SDP_A))
        .unwrap()
        .replace("Content-Type:", &format!("{extra}Content-Type:"))
        .into_bytes()
}

fn policy(trusted: bool) -> Arc<HeaderPolicy> {
    Arc::new(HeaderPolicy {
        trusted,
        ..HeaderPolicy::default()
    })
}

const IDENTITY: &str = "P-Asserted-Identity: <sip:+15550001111@carrier>\r\n\
Remote-Party-ID: <sip:+15550001111@carrier>;party=calling\r\n\
P-Preferred-Identity: <sip:+15550001111@carrier>\r\n";

fn has_identity(r: &Request) -> bool {
    [
        "P-Asserted-Identity",
        "Remote-Party-ID",
        "P-Preferred-Identity",
    ]
    .iter()
    .any(|h| r.headers.get(h).is_some())
}

#[test]
fn a_trusted_trunks_identity_crosses_an_untrusted_ones_does_not() {
    for (trunk, headers, crosses) in [
        (true, None, true),
        (true, Some(policy(true)), true),
        (true, Some(policy(false)), false),
        (false, None, false),
    ] {
        let mut w = tuned_world(vec![target("pbx", PBX)], false);
        w.policy.a_trunk = trunk;
        w.policy.a_headers = headers.clone();
        w.feed(A, &invite_plus("id-1", IDENTITY));
        let inv = w.take_request(PBX, "INVITE");
        assert_eq!(
            has_identity(&inv),
            crosses,
            "trunk {trunk}, policy {headers:?}: {inv:?}"
        );
    }
}

#[test]
fn an_untrusted_callers_later_requests_assert_nothing_either() {
    let mut w = tuned_world(vec![target("pbx", PBX)], false);
    let (_inv, tag) = answered_call(&mut w, "id-2");
    w.sent().clear();
    let update = String::from_utf8(a_request("UPDATE", "id-2", 2, &tag, ""))
        .unwrap()
        .replace(
            "Content-Length:",
            &format!("{IDENTITY}Subject: hello\r\nContent-Length:"),
        );
    w.feed(A, update.as_bytes());
    let up = w.take_request(PBX, "UPDATE");
    assert!(!has_identity(&up), "{up:?}");
    assert_eq!(up.headers.get("Subject"), Some("hello"), "the rest crosses");
}

#[test]
fn an_untrusted_callees_answers_assert_nothing() {
    let mut w = tuned_world(vec![target("pbx", PBX)], false);
    w.policy.b_headers = Some(policy(false));
    w.feed(A, &invite("id-3", SDP_A));
    let inv = w.take_request(PBX, "INVITE");
    let mut ok = resp_with(&inv, 200, "OK", "btag", SDP_B, "<sip:bob@127.0.0.1:5080>");
    if let signaling::message::SipMessage::Response(r) = &mut ok {
        r.headers
            .push("P-Asserted-Identity", "<sip:boss@pbx>".to_string());
    }
    w.feed_msg(PBX, &ok);
    let a_ok = w
        .take_responses(A)
        .into_iter()
        .find(|r| r.status == 200)
        .expect("200");
    assert_eq!(a_ok.headers.get("P-Asserted-Identity"), None);
}

#[test]
fn privacy_id_keeps_the_identity_from_untrusted_trunks_only() {
    let ask = "P-Asserted-Identity: <sip:+15550001111@carrier>\r\nPrivacy: id\r\n";
    for (b_trusted, crosses) in [(true, true), (false, false)] {
        let mut w = tuned_world(vec![target("pbx", PBX)], false);
        w.policy.a_trunk = true;
        w.policy.b_headers = Some(policy(b_trusted));
        w.feed(A, &invite_plus("id-4", ask));
        let inv = w.take_request(PBX, "INVITE");
        assert_eq!(
            inv.headers.get("P-Asserted-Identity").is_some(),
            crosses,
            "{inv:?}"
        );
        assert_eq!(inv.headers.get("Privacy"), Some("id"));
    }
}

#[test]
fn a_trunks_remove_keep_and_add() {
    let extra = "Diversion: <sip:100@pbx>;reason=unconditional\r\n\
History-Info: <sip:100@pbx>;index=1\r\n\
X-Internal: 10.0.0.7\r\nUser-Agent: pbx 1.0\r\nX-Account: forged\r\n";
    let mut w = tuned_world(vec![target("carrier", PBX)], false);
    w.policy.b_headers = Some(Arc::new(HeaderPolicy {
        trusted: true,
        remove: vec!["Diversion".into(), "x-*".into()],
        keep: None,
        add: vec![("X-Account".into(), "acme-42".into())],
    }));
    w.feed(A, &invite_plus("hp-1", extra));
    let inv = w.take_request(PBX, "INVITE");
    assert_eq!(inv.headers.get("Diversion"), None);
    assert_eq!(inv.headers.get("X-Internal"), None);
    assert!(inv.headers.get("History-Info").is_some());
    assert_eq!(inv.headers.get("User-Agent"), Some("pbx 1.0"));
    let accounts: Vec<&str> = inv.headers.get_all("X-Account").collect();
    assert_eq!(accounts, ["acme-42"], "added once, the caller's dropped");

    // keep: only the listed end-to-end headers; the dialog's own are trunkline's.
    let mut w = tuned_world(vec![target("carrier", PBX)], false);
    w.policy.b_headers = Some(Arc::new(HeaderPolicy {
        trusted: true,
        remove: Vec::new(),
        keep: Some(vec!["User-Agent".into()]),
        add: Vec::new(),
    }));
    w.feed(A, &invite_plus("hp-2", extra));
    let inv = w.take_request(PBX, "INVITE");
    for gone in ["Diversion", "History-Info", "X-Internal", "X-Account"] {
        assert_eq!(inv.headers.get(gone), None, "{gone}");
    }
    assert_eq!(inv.headers.get("User-Agent"), Some("pbx 1.0"));
    for own in [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Type",
    ] {
        assert!(inv.headers.get(own).is_some(), "{own}");
    }
    // An answer passes the caller-side rules: the trunk's policy governs what it is sent.
    w.feed_msg(
        PBX,
        &resp_with(&inv, 180, "Ringing", "btag", "", "<sip:bob@127.0.0.1:5080>"),
    );
    let ringing = w.take_responses(A);
    assert!(ringing.iter().any(|r| r.status == 180), "{ringing:?}");
}

#[test]
fn a_routes_from_display_replaces_the_callers_on_leg_b() {
    for (display, from) in [
        (None, "\"Alice\" <sip:alice@127.0.0.1>"),
        (
            Some("Acme Support"),
            "\"Acme Support\" <sip:alice@127.0.0.1>",
        ),
        (Some(""), "<sip:alice@127.0.0.1>"),
    ] {
        let mut w = tuned_world(vec![target("pbx", PBX)], false);
        w.policy.from_display = display.map(str::to_string);
        w.feed(A, &invite("disp-1", SDP_A));
        let inv = w.take_request(PBX, "INVITE");
        let got = inv.headers.get("From").unwrap();
        assert!(got.starts_with(from), "{display:?}: {got}");
    }
}
