//! The bridge's tests: trunking calls here, lines in `lines` below; one harness.

mod lines;

use super::*;

const CORE: &str = "127.0.0.1:5060";
const GW: &str = "127.0.0.1:2427";
const ME: &str = "127.0.0.1:40000";

fn bridge() -> Bridge {
    let gws = HashMap::from([("pstn".to_string(), trunking_gw())]);
    Bridge::new(gws, Some(CORE.parse().unwrap()), [7; 32])
}

fn trunking_gw() -> Gateway {
    Gateway::trunking(GW.parse().unwrap(), ME.parse().unwrap(), "aaln/*@gw")
}

fn invite(call_id: &str, branch: &str, to_tag: &str) -> Vec<u8> {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:+1555123@pstn{HOST_SUFFIX} SIP/2.0\r\nVia: SIP/2.0/UDP {CORE};branch={branch}\r\n\
         Max-Forwards: 69\r\nFrom: <sip:a@x>;tag=f1\r\nTo: <sip:+1555123@pstn{HOST_SUFFIX}>{to_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:tl@{CORE}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

fn mgcp_out(out: &[Out]) -> Vec<mgcp::Command> {
    out.iter()
        .filter_map(|o| match o {
            Out::Mgcp(_, b) => match mgcp::parse(b).ok()?.remove(0) {
                mgcp::Message::Command(c) => Some(c),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn sip_out(out: &[Out]) -> Vec<Response> {
    out.iter()
        .filter_map(|o| match o {
            Out::Sip(_, _, b) => match parse(b).ok()? {
                SipMessage::Response(r) => Some(r),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn gw_answer(b: &mut Bridge, txid: u32, text: &str, now: Instant) -> Vec<Out> {
    let msg = format!("{} {txid} {}", &text[..3], &text[4..]);
    b.handle_mgcp(msg.as_bytes(), GW.parse().unwrap(), now)
}

#[test]
fn invite_creates_a_connection_dials_and_answers_with_the_gateways_sdp() {
    let t0 = Instant::now();
    let mut b = bridge();
    let core: SocketAddr = CORE.parse().unwrap();
    let out = b.handle_sip(&invite("c1", "z9hG4bK1", ""), core, "pstn", t0);
    assert_eq!(sip_out(&out)[0].status, 100);
    let crcx = &mgcp_out(&out)[0];
    assert_eq!(
        (crcx.verb, crcx.endpoint.as_str()),
        (Verb::Crcx, "aaln/*@gw")
    );
    assert_eq!(crcx.param("M"), Some("sendrecv"));
    assert!(crcx.sdp.as_deref().unwrap().contains("m=audio 30000"));
    // a retransmitted INVITE before the answer: nothing new to the gateway
    let again = b.handle_sip(&invite("c1", "z9hG4bK1", ""), core, "pstn", t0);
    assert!(mgcp_out(&again).is_empty());
    let out = gw_answer(
        &mut b,
        crcx.txid,
        "200 OK\r\nI: 1F\r\nZ: aaln/3@gw\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 41000 RTP/AVP 0\r\n",
        t0,
    );
    let ok = &sip_out(&out)[0];
    assert_eq!(ok.status, 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("m=audio 41000"));
    let rqnt = &mgcp_out(&out)[0];
    assert_eq!(
        (rqnt.verb, rqnt.endpoint.as_str()),
        (Verb::Rqnt, "aaln/3@gw")
    );
    assert_eq!(rqnt.param("S"), Some("D/1,D/5,D/5,D/5,D/1,D/2,D/3"));
    // a retransmitted INVITE now gets the same 200
    let again = b.handle_sip(&invite("c1", "z9hG4bK1", ""), core, "pstn", t0);
    assert_eq!(sip_out(&again)[0].status, 200);
    // BYE: 200 at once, DLCX of the connection
    let bye = "BYE sip:gw@127.0.0.1:40000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb\r\n\
        Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=f1\r\nTo: <sip:b@y>;tag=t\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\n\
        Content-Length: 0\r\n\r\n";
    let out = b.handle_sip(bye.as_bytes(), core, "pstn", t0);
    assert_eq!(sip_out(&out)[0].status, 200);
    let dlcx = &mgcp_out(&out)[0];
    assert_eq!((dlcx.verb, dlcx.param("I")), (Verb::Dlcx, Some("1F")));
    assert!(b.calls.is_empty());
}

#[test]
fn refusals_timeouts_and_cancel() {
    let t0 = Instant::now();
    let mut b = bridge();
    let core: SocketAddr = CORE.parse().unwrap();
    // the gateway has no free endpoint (403, transient): 503, so the core fails over
    let out = b.handle_sip(&invite("c2", "z9hG4bK2", ""), core, "pstn", t0);
    let crcx = mgcp_out(&out)[0].txid;
    let out = gw_answer(&mut b, crcx, "403 no endpoint available\r\n", t0);
    assert_eq!(sip_out(&out)[0].status, 503);
    // no answer at all: 408 after the MGCP retransmissions
    b.handle_sip(&invite("c3", "z9hG4bK3", ""), core, "pstn", t0);
    let mut last = Vec::new();
    while let Some(t) = b.poll_timeout() {
        if t - t0 > Duration::from_secs(20) {
            break;
        }
        last.extend(b.handle_timeout(t));
    }
    assert!(sip_out(&last).iter().any(|r| r.status == 408));
    assert_eq!(b.up.get("pstn"), Some(&false), "a silent gateway is down");
    assert!(b.commands.contains_key(&("CRCX", "timeout".to_string())));
    // a down gateway's calls are refused at once (503), so the core fails over without waiting
    let out = b.handle_sip(&invite("c3b", "z9hG4bK3b", ""), core, "pstn", t0);
    assert_eq!(sip_out(&out)[0].status, 503);
    assert!(mgcp_out(&out).is_empty());
    // its next audit is answered: up again
    let t1 = t0 + AUDIT_EVERY * 2;
    let auep = mgcp_out(&b.handle_timeout(t1))
        .into_iter()
        .find(|c| c.verb == Verb::Auep)
        .expect("an audit");
    gw_answer(&mut b, auep.txid, "200 OK\r\n", t1);
    assert_eq!(b.up.get("pstn"), Some(&true));
    // CANCEL while the CRCX is out: 200 + 487, and the connection is deleted when it comes
    let out = b.handle_sip(&invite("c4", "z9hG4bK4", ""), core, "pstn", t0);
    let crcx = mgcp_out(&out)[0].txid;
    let cancel = "CANCEL sip:+1555123@pstn.mgcp.invalid SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK4\r\n\
        Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=f1\r\nTo: <sip:+1555123@pstn.mgcp.invalid>\r\nCall-ID: c4\r\n\
        CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    let out = b.handle_sip(cancel.as_bytes(), core, "pstn", t0);
    let codes: Vec<u16> = sip_out(&out).iter().map(|r| r.status).collect();
    assert_eq!(codes, vec![200, 487]);
    let out = gw_answer(&mut b, crcx, "200 OK\r\nI: 2A\r\nZ: aaln/1@gw\r\n", t0);
    let dl = mgcp_out(&out);
    assert_eq!((dl[0].verb, dl[0].param("I")), (Verb::Dlcx, Some("2A")));
    assert!(sip_out(&out).is_empty(), "no 200 after the 487");
    // a socket of no gateway, garbage
    assert!(b
        .handle_sip(&invite("c5", "z9hG4bK5", ""), core, "nope", t0)
        .is_empty());
    assert!(b
        .handle_sip(b"\x00\xffgarbage", core, "pstn", t0)
        .is_empty());
    assert!(b
        .handle_mgcp(b"\x00\xffgarbage", GW.parse().unwrap(), t0)
        .is_empty());
}

#[test]
fn idle_gateways_are_audited() {
    let t0 = Instant::now();
    let mut b = bridge();
    let out = b.handle_timeout(t0);
    let auep = &mgcp_out(&out)[0];
    assert_eq!(
        (auep.verb, auep.endpoint.as_str()),
        (Verb::Auep, "aaln/*@gw")
    );
    gw_answer(&mut b, auep.txid, "200 OK\r\n", t0);
    assert_eq!(b.up.get("pstn"), Some(&true));
    assert_eq!(b.commands.get(&("AUEP", "200".to_string())), Some(&1));
    assert_eq!(b.poll_timeout(), Some(t0 + AUDIT_EVERY));
    assert!(mgcp_out(&b.handle_timeout(t0 + Duration::from_secs(10))).is_empty());
    assert_eq!(mgcp_out(&b.handle_timeout(t0 + AUDIT_EVERY)).len(), 1);
}

#[test]
fn reinvite_modifies_the_connection() {
    let t0 = Instant::now();
    let mut b = bridge();
    let core: SocketAddr = CORE.parse().unwrap();
    let out = b.handle_sip(&invite("c6", "z9hG4bK6", ""), core, "pstn", t0);
    let crcx = mgcp_out(&out)[0].txid;
    gw_answer(
        &mut b,
        crcx,
        "200 OK\r\nI: 3B\r\nZ: aaln/2@gw\r\n\r\nv=0\r\nm=audio 41002 RTP/AVP 0\r\n",
        t0,
    );
    let out = b.handle_sip(&invite("c6", "z9hG4bK7", ";tag=x"), core, "pstn", t0);
    let mdcx = &mgcp_out(&out)[0];
    assert_eq!((mdcx.verb, mdcx.param("I")), (Verb::Mdcx, Some("3B")));
    let out = gw_answer(
        &mut b,
        mdcx.txid,
        "200 OK\r\n\r\nv=0\r\nm=audio 41002 RTP/AVP 0\r\n",
        t0,
    );
    let ok = &sip_out(&out)[0];
    assert_eq!(ok.status, 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("41002"));
}

/// A forged `200 <txid>` with the attacker's SDP, from another address (or the gateway's
/// IP with another port), is dropped: the INVITE is answered with the gateway's SDP. A
/// NTFY from elsewhere gets no answer; the gateway's own does.
#[test]
fn answers_and_ntfy_only_from_the_gateway() {
    let t0 = Instant::now();
    let mut b = bridge();
    let core: SocketAddr = CORE.parse().unwrap();
    let out = b.handle_sip(&invite("c9", "z9hG4bK9", ""), core, "pstn", t0);
    let crcx = mgcp_out(&out)[0].txid;
    let forged = format!(
        "200 {crcx} OK\r\nI: 66\r\n\r\nv=0\r\nc=IN IP4 127.0.0.66\r\nm=audio 6666 RTP/AVP 0\r\n"
    );
    for from in ["127.0.0.66:2427", "127.0.0.1:2428"] {
        let out = b.handle_mgcp(forged.as_bytes(), from.parse().unwrap(), t0);
        assert!(out.is_empty(), "nothing answers a forged datagram: {out:?}");
    }
    assert_eq!(b.foreign_datagrams, 2);
    let ntfy = b"NTFY 4242 aaln/1@gw MGCP 1.0\r\nX: 1\r\nO: L/hd\r\n";
    assert!(b
        .handle_mgcp(ntfy, "127.0.0.66:2427".parse().unwrap(), t0)
        .is_empty());
    assert_eq!(b.foreign_datagrams, 3);
    let out = b.handle_mgcp(ntfy, GW.parse().unwrap(), t0);
    assert!(
        matches!(&out[..], [Out::Mgcp(to, bytes)] if *to == GW.parse::<SocketAddr>().unwrap() && bytes.starts_with(b"200 4242")),
        "{out:?}"
    );
    let out = gw_answer(
        &mut b,
        crcx,
        "200 OK\r\nI: 1F\r\nZ: aaln/3@gw\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 41000 RTP/AVP 0\r\n",
        t0,
    );
    let ok = &sip_out(&out)[0];
    assert_eq!(ok.status, 200);
    let body = String::from_utf8_lossy(&ok.body);
    assert!(
        body.contains("m=audio 41000") && !body.contains("127.0.0.66"),
        "{body}"
    );
}

/// Two bridges with different seeds use different transaction ids and tags.
#[test]
fn ids_come_from_the_seed() {
    let gws = || HashMap::from([("pstn".to_string(), trunking_gw())]);
    let t0 = Instant::now();
    let mut a = Bridge::new(gws(), None, [1; 32]);
    let mut b = Bridge::new(gws(), None, [2; 32]);
    let ta = mgcp_out(&a.handle_timeout(t0))[0].txid;
    let tb = mgcp_out(&b.handle_timeout(t0))[0].txid;
    assert_ne!(ta, tb);
    assert_ne!(a.tag(), b.tag());
}
