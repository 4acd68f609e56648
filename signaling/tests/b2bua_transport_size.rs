//! RFC 3261 §18.1.1 per trunk: a leg B INVITE over 1300 bytes to a UDP trunk with
//! `tcp_fallback` goes over TCP to the same address (Via and Contact say TCP; the dialog stays
//! on TCP); a small one, or one to a trunk without it, goes over UDP.

mod flows_common;

use flows_common::*;
use signaling::message::SipMessage;
use signaling::Transport;

/// Leg A's INVITE padded with a header of `pad` bytes (it crosses: not a hop header).
fn padded_invite(call_id: &str, pad: usize) -> Vec<u8> {
    String::from_utf8(invite(call_id, SDP_A))
        .unwrap()
        .replace(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\nX-Padding: {}\r\n", "x".repeat(pad)),
        )
        .into_bytes()
}

/// The transport and size of the INVITE sent to the PBX.
fn sent_invite(w: &mut signaling::testing::World<Tuned>) -> (Transport, usize, String) {
    let (peer, msg) = w
        .sent()
        .iter()
        .find(|(p, m)| {
            p.addr.to_string() == PBX
                && matches!(m, SipMessage::Request(r) if r.method.as_str() == "INVITE")
        })
        .cloned()
        .expect("an INVITE to the PBX");
    let via = match &msg {
        SipMessage::Request(r) => r.headers.get("Via").unwrap_or("").to_string(),
        _ => String::new(),
    };
    (peer.transport, msg.to_bytes().len(), via)
}

#[test]
fn a_large_invite_to_a_udp_trunk_with_tcp_fallback_goes_over_tcp() {
    let mut w = tuned_world(vec![target("pbx", PBX)], true);
    w.feed(A, &padded_invite("sz-1", 1500));
    let (t, len, via) = sent_invite(&mut w);
    assert!(len > 1300, "{len}");
    assert_eq!(t, Transport::Tcp);
    assert!(via.starts_with("SIP/2.0/TCP "), "{via}");
    // Answered over that connection: the dialog stays on TCP (the ACK goes there too).
    let inv = w
        .sent()
        .iter()
        .find_map(|(_, m)| match m {
            SipMessage::Request(r) if r.method.as_str() == "INVITE" => Some(r.clone()),
            _ => None,
        })
        .expect("INVITE");
    w.sent().clear();
    let ok = resp_with(
        &inv,
        200,
        "OK",
        "btag",
        SDP_B,
        "<sip:bob@127.0.0.1:5080;transport=tcp>",
    );
    let tcp = signaling::Peer {
        transport: Transport::Tcp,
        addr: PBX.parse().unwrap(),
    };
    w.feed_peer(tcp, &ok.to_bytes());
    let to_pbx: Vec<_> = w
        .sent()
        .iter()
        .filter(|(p, _)| p.addr == tcp.addr)
        .cloned()
        .collect();
    assert!(
        to_pbx.iter().any(|(p, m)| p.transport == Transport::Tcp
            && matches!(m, SipMessage::Request(r) if r.method.as_str() == "ACK")),
        "{to_pbx:?}"
    );
    assert!(to_pbx.iter().all(|(p, _)| p.transport == Transport::Tcp));
}

#[test]
fn small_invites_and_trunks_without_tcp_fallback_stay_on_udp() {
    let mut w = tuned_world(vec![target("pbx", PBX)], true);
    w.feed(A, &padded_invite("sz-2", 10));
    let (t, len, _) = sent_invite(&mut w);
    assert!(len <= 1300, "{len}");
    assert_eq!(t, Transport::Udp);
    let mut w = tuned_world(vec![target("pbx", PBX)], false);
    w.feed(A, &padded_invite("sz-3", 1500));
    let (t, len, via) = sent_invite(&mut w);
    assert!(len > 1300);
    assert_eq!(t, Transport::Udp, "no TCP unless the trunk takes it");
    assert!(via.starts_with("SIP/2.0/UDP "));
    assert_eq!(
        w.core.tx_stats().udp_oversize,
        1,
        "counted: the shell logs it once"
    );
}

#[test]
fn only_requests_over_1300_bytes_on_udp_are_counted_oversize() {
    let mut w = tuned_world(vec![target("pbx", PBX)], true);
    w.feed(A, &padded_invite("sz-4", 1500));
    w.feed(A, &padded_invite("sz-5", 10));
    assert_eq!(w.core.tx_stats().udp_oversize, 0, "one over TCP, one small");
}
