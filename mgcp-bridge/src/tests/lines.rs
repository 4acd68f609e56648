//! Phone lines: calls from a line into SIP, calls to a line, NTFY checks, RSIP.

use super::*;

const LINE1: &str = "aaln/1@gw1";
const SDP_GW: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0\r\n";

fn lines_bridge() -> Bridge {
    let mut g = Gateway::trunking(GW.parse().unwrap(), ME.parse().unwrap(), "ds/*@gw1");
    g.endpoint = None;
    g.endpoints = Some("aaln/*@gw1".into());
    g.lines = vec![
        ("+15551230001".into(), LINE1.into()),
        ("+15551230002".into(), "aaln/2@gw1".into()),
    ];
    g.digit_map = DigitMap::parse("(0T|[1-7]xxx|9x.T)").unwrap();
    g.ring_time = Duration::from_secs(5);
    Bridge::new(
        HashMap::from([("gw1".to_string(), g)]),
        Some(CORE.parse().unwrap()),
        [9; 32],
    )
}

fn requests(out: &[Out]) -> Vec<Request> {
    out.iter()
        .filter_map(|o| match o {
            Out::Sip(_, _, b) => match parse(b).ok()? {
                SipMessage::Request(r) => Some(r),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The command of `verb` on `ep` in `out`.
fn cmd(out: &[Out], verb: Verb, ep: &str) -> mgcp::Command {
    mgcp_out(out)
        .into_iter()
        .find(|c| c.verb == verb && c.endpoint.eq_ignore_ascii_case(ep))
        .unwrap_or_else(|| panic!("no {verb} on {ep} in {out:?}"))
}

/// Answer every command in `out` 200 (with `sdp` for CRCX), gathering what follows.
fn ack_all(b: &mut Bridge, out: &[Out], now: Instant) -> Vec<Out> {
    let mut next = Vec::new();
    for c in mgcp_out(out) {
        let text = if c.verb == Verb::Crcx {
            format!("200 OK\r\nI: C0{}\r\n\r\n{SDP_GW}", c.txid % 100)
        } else {
            "200 OK\r\n".to_string()
        };
        next.extend(gw_answer(b, c.txid, &text, now));
    }
    next
}

fn ntfy(b: &mut Bridge, ep: &str, x: &str, events: &str, now: Instant) -> (u16, Vec<Out>) {
    static TXID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(770_000);
    let txid = TXID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let msg = format!("NTFY {txid} {ep} MGCP 1.0\r\nX: {x}\r\nO: {events}\r\n");
    let out = b.handle_mgcp(msg.as_bytes(), GW.parse().unwrap(), now);
    let code = out
        .iter()
        .find_map(|o| match o {
            Out::Mgcp(_, bytes) => match mgcp::parse(bytes).ok()?.remove(0) {
                mgcp::Message::Response(r) if r.txid == txid => Some(r.code),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or(0);
    (code, out)
}

/// Start the bridge and arm its lines: the RQNT for line 1 (its X:).
fn armed(b: &mut Bridge, t0: Instant) -> String {
    let out = b.handle_timeout(t0);
    assert_eq!(cmd(&out, Verb::Auep, "aaln/*@gw1").verb, Verb::Auep);
    let rqnt = cmd(&out, Verb::Rqnt, LINE1);
    assert_eq!(rqnt.param("R"), Some("L/hd(N)"));
    ack_all(b, &out, t0);
    assert_eq!(b.line_state(LINE1), Some(LineState::Idle));
    rqnt.param("X").unwrap().to_string()
}

fn response(req: &Request, status: u16, tag: &str, sdp: Option<&str>) -> Vec<u8> {
    let mut r = make_response(req, status, "X", Some(tag));
    r.headers.push("Contact", format!("<sip:core@{CORE}>"));
    if let Some(sdp) = sdp {
        r.headers.push("Content-Type", "application/sdp");
        r.body = sdp.as_bytes().to_vec();
    }
    SipMessage::Response(r).to_bytes()
}

#[test]
fn a_line_dials_into_sip_and_hangs_up() {
    let t0 = Instant::now();
    let mut b = lines_bridge();
    let core: SocketAddr = CORE.parse().unwrap();
    let x = armed(&mut b, t0);
    // off-hook: dial tone, digits collected with the map
    let (code, out) = ntfy(&mut b, LINE1, &x, "L/hd", t0);
    assert_eq!(code, 200);
    let dial = cmd(&out, Verb::Rqnt, LINE1);
    assert_eq!(dial.param("S"), Some("L/dl"));
    assert_eq!(dial.param("D"), Some("(0T|[1-7]xxx|9x.T)"));
    assert!(dial.param("R").unwrap().contains("D/[0-9#*T](D)"));
    assert_eq!(b.line_state(LINE1), Some(LineState::Dialling));
    // a replay of the off-hook with the old X: refused, no effect
    assert_eq!(ntfy(&mut b, LINE1, &x, "L/hd", t0).0, 538);
    let x2 = dial.param("X").unwrap().to_string();
    let (code, out) = ntfy(&mut b, LINE1, &x2, "D/1,D/0,D/0,D/1", t0);
    assert_eq!(code, 200);
    let crcx = cmd(&out, Verb::Crcx, LINE1);
    assert_eq!(crcx.param("M"), Some("recvonly"));
    let out = ack_all(&mut b, &out, t0);
    let invite = requests(&out).remove(0);
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(invite.uri, format!("sip:1001@{CORE}"));
    assert!(invite
        .headers
        .get("From")
        .unwrap()
        .contains("+15551230001@gw1"));
    assert!(String::from_utf8_lossy(&invite.body).contains("m=audio 41000"));
    assert_eq!(b.calls_total.get(&("gw1".into(), "inbound")), Some(&1));
    // ringing: ringback on the line; the INVITE is no longer retransmitted
    let out = b.handle_sip(&response(&invite, 180, "c1", None), core, "gw1", t0);
    assert_eq!(cmd(&out, Verb::Rqnt, LINE1).param("S"), Some("L/rt"));
    ack_all(&mut b, &out, t0);
    let later = b.handle_timeout(t0 + Duration::from_secs(5));
    assert!(requests(&later).is_empty(), "{later:?}");
    let t5 = t0 + Duration::from_secs(5);
    assert!(
        b.poll_timeout().is_some_and(|t| t > t5),
        "no timer stuck in the past"
    );
    // answered: ACK, and the connection gets the relay's SDP, both ways
    let relay = SDP_GW.replace("41000", "30000");
    let ok = response(&invite, 200, "c1", Some(&relay));
    let out = b.handle_sip(&ok, core, "gw1", t0);
    let ack = requests(&out).remove(0);
    assert_eq!(ack.method, Method::Ack);
    assert!(ack.headers.get("To").unwrap().contains("tag=c1"));
    let mdcx = cmd(&out, Verb::Mdcx, LINE1);
    assert_eq!(mdcx.param("M"), Some("sendrecv"));
    assert!(mdcx.sdp.as_deref().unwrap().contains("m=audio 30000"));
    // a retransmitted 200 is ACKed again, no second MDCX
    let again = b.handle_sip(&ok, core, "gw1", t0);
    assert_eq!(requests(&again)[0].method, Method::Ack);
    assert!(mgcp_out(&again).is_empty());
    let hu = cmd(&out, Verb::Rqnt, LINE1);
    ack_all(&mut b, &out, t0);
    // on-hook: BYE to the core, DLCX, armed again
    let (code, out) = ntfy(&mut b, LINE1, hu.param("X").unwrap(), "L/hu", t0);
    assert_eq!(code, 200);
    let bye = requests(&out).remove(0);
    assert_eq!(bye.method, Method::Bye);
    assert!(bye.headers.get("To").unwrap().contains("tag=c1"));
    assert_eq!(bye.uri, format!("sip:core@{CORE}"));
    assert_eq!(
        cmd(&out, Verb::Dlcx, LINE1).param("I"),
        Some(crcx_conn(&crcx).as_str())
    );
    assert_eq!(cmd(&out, Verb::Rqnt, LINE1).param("R"), Some("L/hd(N)"));
}

fn crcx_conn(c: &mgcp::Command) -> String {
    format!("C0{}", c.txid % 100)
}

#[test]
fn digits_that_match_nothing_get_reorder_and_failures_get_tones() {
    let t0 = Instant::now();
    let mut b = lines_bridge();
    let core: SocketAddr = CORE.parse().unwrap();
    let x = armed(&mut b, t0);
    let (_, out) = ntfy(&mut b, LINE1, &x, "L/hd", t0);
    let x2 = cmd(&out, Verb::Rqnt, LINE1).param("X").unwrap().to_string();
    ack_all(&mut b, &out, t0);
    // "55" then the timer: over-qualified, no INVITE, reorder
    let (code, out) = ntfy(&mut b, LINE1, &x2, "D/5,D/5,D/T", t0);
    assert_eq!(code, 200);
    assert!(requests(&out).is_empty());
    let ro = cmd(&out, Verb::Rqnt, LINE1);
    assert_eq!(ro.param("S"), Some("L/ro"));
    assert_eq!(b.line_state(LINE1), Some(LineState::Hanging));
    ack_all(&mut b, &out, t0);
    let (_, out) = ntfy(&mut b, LINE1, ro.param("X").unwrap(), "L/hu", t0);
    ack_all(&mut b, &out, t0);
    assert_eq!(b.line_state(LINE1), Some(LineState::Idle));
    // a busy callee: busy tone, connection deleted
    let x = cmd(&out, Verb::Rqnt, LINE1).param("X").unwrap().to_string();
    let (_, out) = ntfy(&mut b, LINE1, &x, "L/hd", t0);
    let x = cmd(&out, Verb::Rqnt, LINE1).param("X").unwrap().to_string();
    ack_all(&mut b, &out, t0);
    let (_, out) = ntfy(&mut b, LINE1, &x, "D/9,D/1,D/T", t0);
    let out = ack_all(&mut b, &out, t0);
    let invite = requests(&out).remove(0);
    assert_eq!(
        invite.uri,
        format!("sip:91@{CORE}"),
        "the timer is not dialled"
    );
    let out = b.handle_sip(&response(&invite, 486, "c2", None), core, "gw1", t0);
    assert_eq!(requests(&out)[0].method, Method::Ack);
    assert_eq!(cmd(&out, Verb::Rqnt, LINE1).param("S"), Some("L/bz"));
    assert_eq!(cmd(&out, Verb::Dlcx, LINE1).verb, Verb::Dlcx);
}

#[test]
fn notifies_for_unknown_endpoints_or_stale_ids_are_refused() {
    let t0 = Instant::now();
    let mut b = lines_bridge();
    let x = armed(&mut b, t0);
    assert_eq!(ntfy(&mut b, "aaln/9@gw1", &x, "L/hd", t0).0, 500);
    assert_eq!(ntfy(&mut b, LINE1, "0BAD", "L/hd", t0).0, 538);
    assert_eq!(ntfy(&mut b, LINE1, &x, "L/hd,,", t0).0, 538);
    assert_eq!(b.bad_notifies, 3);
    assert_eq!(b.line_state(LINE1), Some(LineState::Idle));
    // garbage from the gateway: answered (510) or dropped, the line keeps working
    for i in 0..1000u32 {
        let junk = format!("NTFY {i} {LINE1} MGCP 1.0\r\nX: {x}\r\nO: \u{1}(((\r\n");
        b.handle_mgcp(junk.as_bytes(), GW.parse().unwrap(), t0);
        b.handle_mgcp(&i.to_be_bytes(), GW.parse().unwrap(), t0);
    }
    assert_eq!(ntfy(&mut b, LINE1, &x, "L/hd", t0).0, 200);
}

/// The core's INVITE for line 1.
fn invite_line(call_id: &str, to: &str) -> Vec<u8> {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:{to}@gw1{HOST_SUFFIX} SIP/2.0\r\nVia: SIP/2.0/UDP {CORE};branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 69\r\nFrom: \"Alice\" <sip:+15550009999@x>;tag=f1\r\nTo: <sip:{to}@gw1{HOST_SUFFIX}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:tl@{CORE}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

#[test]
fn a_call_to_a_line_rings_it_and_off_hook_answers() {
    let t0 = Instant::now();
    let mut b = lines_bridge();
    let core: SocketAddr = CORE.parse().unwrap();
    armed(&mut b, t0);
    let out = b.handle_sip(&invite_line("in1", "+15551230001"), core, "gw1", t0);
    assert_eq!(sip_out(&out)[0].status, 100);
    let crcx = cmd(&out, Verb::Crcx, LINE1);
    assert!(crcx.sdp.as_deref().unwrap().contains("m=audio 30000"));
    let out = ack_all(&mut b, &out, t0);
    assert_eq!(sip_out(&out)[0].status, 180);
    let ring = cmd(&out, Verb::Rqnt, LINE1);
    assert_eq!(ring.param("S"), Some("L/rg,L/ci(,\"+15550009999\",)"));
    assert_eq!(ring.param("R"), Some("L/hd(N)"));
    assert_eq!(b.line_state(LINE1), Some(LineState::Ringing));
    // the line is busy for a second call
    let out = b.handle_sip(&invite_line("in2", "15551230001"), core, "gw1", t0);
    assert_eq!(sip_out(&out)[0].status, 486);
    ack_all(&mut b, &out, t0);
    // off-hook answers: MDCX sendrecv, then 200 with the gateway's SDP
    let (_, out) = ntfy(&mut b, LINE1, ring.param("X").unwrap(), "L/hd", t0);
    let mdcx = cmd(&out, Verb::Mdcx, LINE1);
    assert_eq!(mdcx.param("M"), Some("sendrecv"));
    let out = ack_all(&mut b, &out, t0);
    let ok = &sip_out(&out)[0];
    assert_eq!(ok.status, 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("m=audio 41000"));
    assert_eq!(b.line_state(LINE1), Some(LineState::Talking));
    // BYE from SIP: 200, DLCX, the line waits for on-hook
    let to_tag = ok.headers.get("To").unwrap().to_string();
    let bye = format!(
        "BYE sip:+15551230001@{ME} SIP/2.0\r\nVia: SIP/2.0/UDP {CORE};branch=z9hG4bKbye\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15550009999@x>;tag=f1\r\nTo: {to_tag}\r\nCall-ID: in1\r\n\
         CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let out = b.handle_sip(bye.as_bytes(), core, "gw1", t0);
    assert_eq!(sip_out(&out)[0].status, 200);
    assert_eq!(cmd(&out, Verb::Dlcx, LINE1).verb, Verb::Dlcx);
    assert_eq!(cmd(&out, Verb::Rqnt, LINE1).param("R"), Some("L/hu(N)"));
    assert_eq!(b.line_state(LINE1), Some(LineState::Hanging));
}

#[test]
fn an_unanswered_line_gets_480_and_rsip_ends_calls() {
    let t0 = Instant::now();
    let mut b = lines_bridge();
    let core: SocketAddr = CORE.parse().unwrap();
    armed(&mut b, t0);
    let out = b.handle_sip(&invite_line("in3", "+15551230001"), core, "gw1", t0);
    ack_all(&mut b, &out, t0);
    let t5 = t0 + Duration::from_secs(5);
    assert!(b.poll_timeout().is_some_and(|t| t <= t5));
    let out = b.handle_timeout(t5);
    assert_eq!(sip_out(&out)[0].status, 480);
    assert_eq!(cmd(&out, Verb::Dlcx, LINE1).verb, Verb::Dlcx);
    assert_eq!(cmd(&out, Verb::Rqnt, LINE1).param("R"), Some("L/hd(N)"));
    ack_all(&mut b, &out, t5);
    // answered call, then the gateway restarts: BYE to the core, the line re-armed
    let out = b.handle_sip(&invite_line("in4", "+15551230001"), core, "gw1", t5);
    let out = ack_all(&mut b, &out, t5);
    let x = cmd(&out, Verb::Rqnt, LINE1).param("X").unwrap().to_string();
    let (_, out) = ntfy(&mut b, LINE1, &x, "L/hd", t5);
    ack_all(&mut b, &out, t5);
    assert_eq!(b.line_state(LINE1), Some(LineState::Talking));
    let rsip = b"RSIP 5001 aaln/*@gw1 MGCP 1.0\r\nRM: restart\r\n";
    let out = b.handle_mgcp(rsip, GW.parse().unwrap(), t5);
    let bye = requests(&out).remove(0);
    assert_eq!((&bye.method, bye.call_id()), (&Method::Bye, Some("in4")));
    assert!(
        mgcp_out(&out).iter().all(|c| c.verb != Verb::Dlcx),
        "the gateway deleted them"
    );
    assert_eq!(cmd(&out, Verb::Rqnt, LINE1).param("R"), Some("L/hd(N)"));
    assert_eq!(cmd(&out, Verb::Auep, "aaln/*@gw1").verb, Verb::Auep);
    assert_eq!(b.rsips.get(&("gw1".into(), "restart".into())), Some(&1));
    assert_eq!(b.line_state(LINE1), Some(LineState::Unarmed));
    // an unknown restart method: 536
    let bad = b"RSIP 5002 aaln/*@gw1 MGCP 1.0\r\nRM: sideways\r\n";
    let out = b.handle_mgcp(bad, GW.parse().unwrap(), t5);
    assert!(
        matches!(&out[..], [Out::Mgcp(_, r)] if r.starts_with(b"536 5002")),
        "{out:?}"
    );
}

/// A call abandoned before the core answered (on-hook during the INVITE): its INVITE and
/// CANCEL running out later must not touch the line's next call, and the bridge forgets it.
#[test]
fn an_abandoned_call_timing_out_leaves_the_next_call_alone() {
    let t0 = Instant::now();
    let mut b = lines_bridge();
    let x = armed(&mut b, t0);
    let (_, out) = ntfy(&mut b, LINE1, &x, "L/hd", t0);
    let x = cmd(&out, Verb::Rqnt, LINE1).param("X").unwrap().to_string();
    ack_all(&mut b, &out, t0);
    let (_, out) = ntfy(&mut b, LINE1, &x, "D/1,D/0,D/0,D/1", t0);
    let x = cmd(&out, Verb::Rqnt, LINE1).param("X").unwrap().to_string();
    let out = ack_all(&mut b, &out, t0);
    assert_eq!(requests(&out)[0].method, Method::Invite);
    // the core never answers; the line hangs up: CANCEL, DLCX, armed again
    let (_, out) = ntfy(&mut b, LINE1, &x, "L/hu", t0);
    assert_eq!(requests(&out)[0].method, Method::Cancel);
    let x = cmd(&out, Verb::Rqnt, LINE1).param("X").unwrap().to_string();
    ack_all(&mut b, &out, t0);
    // the next call, 20 s later, is placed too (its INVITE unanswered for now)
    let t1 = t0 + Duration::from_secs(20);
    let (_, out) = ntfy(&mut b, LINE1, &x, "L/hd", t1);
    let x = cmd(&out, Verb::Rqnt, LINE1).param("X").unwrap().to_string();
    ack_all(&mut b, &out, t1);
    let (_, out) = ntfy(&mut b, LINE1, &x, "D/2,D/0,D/0,D/2", t1);
    let out = ack_all(&mut b, &out, t1);
    let second = requests(&out).remove(0);
    assert_eq!(second.method, Method::Invite);
    assert_eq!(b.line_state(LINE1), Some(LineState::Calling));
    // the abandoned requests are retransmitted, then given up (32 s): the new call is untouched
    let mut t = t1;
    while t < t0 + Duration::from_secs(40) {
        t += Duration::from_millis(500);
        let out = b.handle_timeout(t);
        assert!(
            mgcp_out(&out).iter().all(|c| c.verb != Verb::Dlcx),
            "{out:?}"
        );
    }
    assert_eq!(b.line_state(LINE1), Some(LineState::Calling));
    assert_eq!(b.by_sip.len(), 1, "only the current call is remembered");
    assert!(b.by_sip.contains_key(second.call_id().unwrap()));
}

/// The core answers the CANCEL of an abandoned call (200, then 487 to the INVITE): nothing is
/// retransmitted any more, the 487 is ACKed and the call forgotten.
#[test]
fn an_answered_cancel_is_not_retransmitted() {
    let t0 = Instant::now();
    let mut b = lines_bridge();
    let core: SocketAddr = CORE.parse().unwrap();
    let x = armed(&mut b, t0);
    let (_, out) = ntfy(&mut b, LINE1, &x, "L/hd", t0);
    let x = cmd(&out, Verb::Rqnt, LINE1).param("X").unwrap().to_string();
    ack_all(&mut b, &out, t0);
    let (_, out) = ntfy(&mut b, LINE1, &x, "D/1,D/0,D/0,D/1", t0);
    let x = cmd(&out, Verb::Rqnt, LINE1).param("X").unwrap().to_string();
    let out = ack_all(&mut b, &out, t0);
    let invite = requests(&out).remove(0);
    b.handle_sip(&response(&invite, 100, "c9", None), core, "gw1", t0);
    let (_, out) = ntfy(&mut b, LINE1, &x, "L/hu", t0);
    let cancel = requests(&out).remove(0);
    assert_eq!(cancel.method, Method::Cancel);
    b.handle_sip(&response(&cancel, 200, "c9", None), core, "gw1", t0);
    let out = b.handle_sip(&response(&invite, 487, "c9", None), core, "gw1", t0);
    assert_eq!(requests(&out)[0].method, Method::Ack);
    assert!(b.sip_tx.is_empty(), "nothing left to retransmit");
    assert!(b.by_sip.is_empty(), "the call is forgotten");
    let later = b.handle_timeout(t0 + Duration::from_secs(2));
    assert!(requests(&later).is_empty(), "{later:?}");
}

/// RFC 3435 534 (codec negotiation failure) from the gateway: the caller gets 488, on a line
/// and on a trunking endpoint, never a silent call.
#[test]
fn no_common_codec_is_488() {
    let t0 = Instant::now();
    let mut b = lines_bridge();
    let core: SocketAddr = CORE.parse().unwrap();
    armed(&mut b, t0);
    let out = b.handle_sip(&invite_line("nc1", "+15551230001"), core, "gw1", t0);
    let crcx = cmd(&out, Verb::Crcx, LINE1);
    let out = gw_answer(&mut b, crcx.txid, "534 No common codec\r\n", t0);
    assert_eq!(sip_out(&out)[0].status, 488);
    assert_eq!(cmd(&out, Verb::Rqnt, LINE1).param("R"), Some("L/hd(N)"));
    let mut t = bridge();
    let out = t.handle_sip(&invite("nc2", "z9hG4bKnc2", ""), core, "pstn", t0);
    let crcx = mgcp_out(&out)[0].txid;
    let out = gw_answer(&mut t, crcx, "534 No common codec\r\n", t0);
    assert_eq!(sip_out(&out)[0].status, 488);
}

/// RSIP graceful: the endpoints take no new calls (503 to SIP, reorder on off-hook) until
/// cancel-graceful or a restart; nothing in progress is cut.
#[test]
fn a_graceful_restart_takes_no_new_calls() {
    let t0 = Instant::now();
    let mut b = lines_bridge();
    let core: SocketAddr = CORE.parse().unwrap();
    let x = armed(&mut b, t0);
    let out = b.handle_mgcp(
        b"RSIP 6001 aaln/*@gw1 MGCP 1.0\r\nRM: graceful\r\n",
        GW.parse().unwrap(),
        t0,
    );
    assert!(requests(&out).is_empty(), "nothing is cut");
    let out = b.handle_sip(&invite_line("g1", "+15551230001"), core, "gw1", t0);
    assert_eq!(sip_out(&out)[0].status, 503);
    assert!(mgcp_out(&out).is_empty());
    let (code, out) = ntfy(&mut b, LINE1, &x, "L/hd", t0);
    assert_eq!(code, 200);
    assert_eq!(cmd(&out, Verb::Rqnt, LINE1).param("S"), Some("L/ro"));
    b.handle_mgcp(
        b"RSIP 6002 aaln/*@gw1 MGCP 1.0\r\nRM: cancel-graceful\r\n",
        GW.parse().unwrap(),
        t0,
    );
    let out = b.handle_sip(&invite_line("g2", "+15551230002"), core, "gw1", t0);
    assert_eq!(cmd(&out, Verb::Crcx, "aaln/2@gw1").verb, Verb::Crcx);
    assert_eq!(b.rsips.get(&("gw1".into(), "graceful".into())), Some(&1));
}
