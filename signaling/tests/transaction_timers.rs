//! Transaction layer in virtual time: every timer of the four state machines (RFC 3261 §17,
//! RFC 6026), retransmission absorption, ACK generation and matching, reliable transports,
//! transport errors and leak checks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use signaling::message::{Request, Response, SipMessage};
use signaling::parse;
use signaling::transaction::{TimerConfig, Transactions, Transmit, TuEvent, TxId, TxState};
use signaling::{Peer, Transport};

const T2: Duration = Duration::from_secs(4);
const T4: Duration = Duration::from_secs(5);
const T64: Duration = Duration::from_secs(32);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn udp(a: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: a.parse::<SocketAddr>().unwrap(),
    }
}

fn tcp(a: &str) -> Peer {
    Peer {
        transport: Transport::Tcp,
        addr: a.parse::<SocketAddr>().unwrap(),
    }
}

fn uas() -> Peer {
    udp("192.0.2.2:5060")
}

fn uac() -> Peer {
    udp("192.0.2.1:5060")
}

fn parse_req(text: &str) -> Request {
    match parse::parse(text.replace('\n', "\r\n").as_bytes()).unwrap() {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => panic!("not a request"),
    }
}

fn request(method: &str, branch: &str, call_id: &str, cseq: u32) -> Request {
    parse_req(&format!(
        "{method} sip:bob@192.0.2.2 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}
Max-Forwards: 70
Route: <sip:proxy.example.com;lr>
From: \"Alice\" <sip:alice@example.com>;tag=ft1
To: <sip:bob@example.com>
Call-ID: {call_id}
CSeq: {cseq} {method}
Content-Length: 0

"
    ))
}

fn invite(branch: &str) -> Request {
    request("INVITE", branch, "call-1@192.0.2.1", 1)
}

/// A response built as a UAS would (§8.2.6.2): Via, From, Call-ID, CSeq copied, To with a tag.
fn response(req: &Request, status: u16) -> Response {
    let mut r = Response {
        status,
        reason: "Reason".into(),
        headers: Default::default(),
        body: Vec::new(),
    };
    for v in req.headers.get_all("Via") {
        r.headers.push("Via", v.to_string());
    }
    r.headers
        .push("From", req.headers.get("From").unwrap().to_string());
    let mut to = req.headers.get("To").unwrap().to_string();
    if status > 100 && !to.contains("tag=") {
        to.push_str(";tag=uas-tag");
    }
    r.headers.push("To", to);
    r.headers
        .push("Call-ID", req.headers.get("Call-ID").unwrap().to_string());
    r.headers
        .push("CSeq", req.headers.get("CSeq").unwrap().to_string());
    r
}

fn resp_msg(req: &Request, status: u16) -> SipMessage {
    SipMessage::Response(response(req, status))
}

fn drain(t: &mut Transactions) -> Vec<Transmit> {
    std::iter::from_fn(|| t.poll_transmit()).collect()
}

fn events(t: &mut Transactions) -> Vec<TuEvent> {
    std::iter::from_fn(|| t.poll_event()).collect()
}

fn parse_bytes(b: &[u8]) -> SipMessage {
    parse::parse(b).expect("we emit parseable messages")
}

fn status_of(tr: &Transmit) -> u16 {
    match parse_bytes(&tr.data) {
        SipMessage::Response(r) => r.status,
        SipMessage::Request(_) => 0,
    }
}

/// Run the timers until `end`, recording (offset from `base`, transmit) for each send and the
/// events with their offsets.
#[allow(clippy::type_complexity)]
fn run_until(
    t: &mut Transactions,
    base: Instant,
    end: Instant,
) -> (Vec<(Duration, Transmit)>, Vec<(Duration, TuEvent)>) {
    let mut sent = Vec::new();
    let mut evs = Vec::new();
    let mut guard = 0;
    while let Some(at) = t.poll_timeout() {
        if at > end {
            break;
        }
        guard += 1;
        assert!(guard < 10_000, "timer loop does not converge");
        t.handle_timeout(at);
        for tr in drain(t) {
            sent.push((at - base, tr));
        }
        for e in events(t) {
            evs.push((at - base, e));
        }
    }
    (sent, evs)
}

fn new_layer() -> Transactions {
    Transactions::new(TimerConfig::default())
}

fn server_tx(evs: &[TuEvent]) -> TxId {
    evs.iter()
        .find_map(|e| match e {
            TuEvent::Request { tx, .. } => Some(*tx),
            _ => None,
        })
        .expect("a Request event")
}

// ------------------------------------------------------------------------------------------------
// INVITE client (§17.1.1, RFC 6026 §8.4)

#[test]
fn timer_a_doubles_without_cap_and_timer_b_times_out() {
    let mut t = new_layer();
    let base = Instant::now();
    let id = t.send_request(invite("z9hG4bKa1"), uas(), base);
    assert_eq!(drain(&mut t).len(), 1);
    assert_eq!(t.state(id), Some(TxState::Calling));
    let (sent, evs) = run_until(&mut t, base, base + Duration::from_secs(100));
    let times: Vec<u64> = sent.iter().map(|(d, _)| d.as_millis() as u64).collect();
    // A = T1, 2T1, 4T1, 8T1, 16T1, 32T1: gaps 0.5, 1, 2, 4, 8, 16 s (beyond T2: no cap).
    assert_eq!(times, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert!(sent.iter().all(|(_, tr)| tr.to == uas()));
    assert_eq!(evs, vec![(T64, TuEvent::Timeout { tx: id })]);
    assert_eq!(t.len(), 0);
    assert_eq!(t.poll_timeout(), None);
    let s = t.stats();
    assert_eq!(s.retransmissions_sent, 6);
    assert_eq!(s.timeouts, 1);
    assert_eq!(s.client_created, 1);
}

#[test]
fn provisional_stops_timer_a_and_non_2xx_is_acked_by_the_transaction() {
    let mut t = new_layer();
    let base = Instant::now();
    let inv = invite("z9hG4bKa2");
    let id = t.send_request(inv.clone(), uas(), base);
    drain(&mut t);
    t.handle_message(resp_msg(&inv, 180), uas(), base + ms(200));
    assert_eq!(t.state(id), Some(TxState::Proceeding));
    assert!(
        matches!(&events(&mut t)[..], [TuEvent::Response { tx, resp }] if *tx == id && resp.status == 180)
    );
    // No retransmissions in Proceeding (and Timer B no longer applies, §17.1.1.2).
    let (sent, evs) = run_until(&mut t, base, base + ms(60_000));
    assert!(sent.is_empty() && evs.is_empty());
    assert_eq!(t.state(id), Some(TxState::Proceeding));

    let now = base + ms(61_000);
    t.handle_message(resp_msg(&inv, 486), uas(), now);
    assert_eq!(t.state(id), Some(TxState::Completed));
    let evs = events(&mut t);
    assert!(matches!(&evs[..], [TuEvent::Response { resp, .. }] if resp.status == 486));
    let out = drain(&mut t);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, uas());
    // §17.1.1.3 ACK: same Request-URI, Call-ID, From, single Via equal to the INVITE's top Via,
    // To of the response, CSeq number of the INVITE with method ACK, Route copied.
    let SipMessage::Request(ack) = parse_bytes(&out[0].data) else {
        panic!("ACK expected")
    };
    assert_eq!(ack.method.as_str(), "ACK");
    assert_eq!(ack.uri, inv.uri);
    assert_eq!(
        ack.headers.get_all("Via").collect::<Vec<_>>(),
        vec![inv.headers.get("Via").unwrap()]
    );
    assert_eq!(ack.headers.get("From"), inv.headers.get("From"));
    assert_eq!(ack.headers.get("Call-ID"), inv.headers.get("Call-ID"));
    assert_eq!(
        ack.headers.get("To"),
        Some("<sip:bob@example.com>;tag=uas-tag")
    );
    assert_eq!(ack.headers.get("CSeq"), Some("1 ACK"));
    assert_eq!(ack.headers.get("Route"), inv.headers.get("Route"));

    // A retransmitted 486 re-sends the ACK and is not passed up.
    t.handle_message(resp_msg(&inv, 486), uas(), now + ms(500));
    let again = drain(&mut t);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].data, out[0].data);
    assert!(events(&mut t).is_empty());

    // Timer D: 32 s on UDP.
    t.handle_timeout(now + ms(31_999));
    assert_eq!(t.state(id), Some(TxState::Completed));
    t.handle_timeout(now + Duration::from_secs(32));
    assert_eq!(t.len(), 0);
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn invite_2xx_moves_to_accepted_and_retransmissions_go_up_until_timer_m() {
    let mut t = new_layer();
    let base = Instant::now();
    let inv = invite("z9hG4bKa3");
    let id = t.send_request(inv.clone(), uas(), base);
    drain(&mut t);
    t.handle_message(resp_msg(&inv, 200), uas(), base + ms(100));
    assert_eq!(t.state(id), Some(TxState::Accepted));
    // No ACK from the transaction for a 2xx (the TU sends it).
    assert!(drain(&mut t).is_empty());
    assert_eq!(events(&mut t).len(), 1);
    // A 2xx retransmission (or another fork's 2xx) is passed up in Accepted.
    t.handle_message(resp_msg(&inv, 200), uas(), base + ms(600));
    assert!(
        matches!(&events(&mut t)[..], [TuEvent::Response { tx, resp }] if *tx == id && resp.status == 200)
    );
    // A late non-2xx is swallowed.
    t.handle_message(resp_msg(&inv, 486), uas(), base + ms(700));
    assert!(events(&mut t).is_empty());
    // No retransmission of the INVITE in Accepted; Timer M = 64*T1.
    let (sent, _) = run_until(&mut t, base, base + ms(100) + T64 - ms(1));
    assert!(sent.is_empty());
    assert_eq!(t.state(id), Some(TxState::Accepted));
    t.handle_timeout(base + ms(100) + T64);
    assert_eq!(t.len(), 0);
    // After Timer M the 2xx is stray.
    t.handle_message(resp_msg(&inv, 200), uas(), base + ms(40_000));
    assert!(events(&mut t).is_empty());
    assert_eq!(t.stats().stray_responses, 1);
}

#[test]
fn cancelled_invite_without_final_is_destroyed_after_64_t1() {
    // §9.1: no final response within 64*T1 of the CANCEL -> destroy the INVITE client tx.
    let mut t = new_layer();
    let base = Instant::now();
    let inv = invite("z9hG4bKa4");
    let id = t.send_request(inv.clone(), uas(), base);
    t.handle_message(resp_msg(&inv, 180), uas(), base + ms(100));
    events(&mut t);
    let cancel = request("CANCEL", "z9hG4bKa4", "call-1@192.0.2.1", 1);
    let cid = t.send_request(cancel.clone(), uas(), base + ms(10_000));
    t.handle_message(resp_msg(&cancel, 200), uas(), base + ms(10_050));
    assert!(
        matches!(&events(&mut t)[..], [TuEvent::Response { tx, resp }] if *tx == cid && resp.status == 200)
    );
    drain(&mut t);
    let (_, evs) = run_until(&mut t, base, base + ms(200_000));
    assert_eq!(evs, vec![(ms(10_000) + T64, TuEvent::Timeout { tx: id })]);
    assert_eq!(t.len(), 0);
}

// ------------------------------------------------------------------------------------------------
// non-INVITE client (§17.1.2)

#[test]
fn timer_e_doubles_up_to_t2_and_timer_f_times_out() {
    let mut t = new_layer();
    let base = Instant::now();
    let opt = request("OPTIONS", "z9hG4bKe1", "opt-1", 7);
    let id = t.send_request(opt, uas(), base);
    assert_eq!(t.state(id), Some(TxState::Trying));
    drain(&mut t);
    let (sent, evs) = run_until(&mut t, base, base + Duration::from_secs(100));
    let times: Vec<u64> = sent.iter().map(|(d, _)| d.as_millis() as u64).collect();
    // 0.5, 1.5, 3.5, 7.5 then every T2 = 4 s until F at 32 s.
    assert_eq!(
        times,
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g <= T2.as_millis() as u64));
    assert_eq!(evs, vec![(T64, TuEvent::Timeout { tx: id })]);
    assert_eq!(t.len(), 0);
}

#[test]
fn timer_e_in_proceeding_fires_every_t2_then_final_and_timer_k() {
    let mut t = new_layer();
    let base = Instant::now();
    let bye = request("BYE", "z9hG4bKe2", "bye-1", 2);
    let id = t.send_request(bye.clone(), uas(), base);
    drain(&mut t);
    t.handle_message(resp_msg(&bye, 100), uas(), base + ms(200));
    assert_eq!(t.state(id), Some(TxState::Proceeding));
    events(&mut t);
    let (sent, _) = run_until(&mut t, base, base + ms(9_000));
    let times: Vec<u64> = sent.iter().map(|(d, _)| d.as_millis() as u64).collect();
    // Timer E already armed for 0.5 s fires there, then every T2.
    assert_eq!(times, vec![500, 4500, 8500]);

    t.handle_message(resp_msg(&bye, 200), uas(), base + ms(9_000));
    assert_eq!(t.state(id), Some(TxState::Completed));
    assert!(matches!(&events(&mut t)[..], [TuEvent::Response { resp, .. }] if resp.status == 200));
    // Retransmitted final: absorbed, nothing sent, nothing passed up.
    t.handle_message(resp_msg(&bye, 200), uas(), base + ms(9_100));
    assert!(events(&mut t).is_empty());
    assert!(drain(&mut t).is_empty());
    // Timer K = T4.
    t.handle_timeout(base + ms(9_000) + T4 - ms(1));
    assert_eq!(t.state(id), Some(TxState::Completed));
    t.handle_timeout(base + ms(9_000) + T4);
    assert_eq!(t.len(), 0);
    assert!(drain(&mut t).is_empty());
}

// ------------------------------------------------------------------------------------------------
// INVITE server (§17.2.1, RFC 6026 §7.1)

fn incoming_invite(t: &mut Transactions, branch: &str, now: Instant) -> (TxId, Request) {
    let inv = invite(branch);
    t.handle_message(SipMessage::Request(inv.clone()), uac(), now);
    let evs = events(t);
    assert_eq!(evs.len(), 1);
    (server_tx(&evs), inv)
}

#[test]
fn invite_server_sends_100_at_once_and_resends_last_provisional() {
    let mut t = new_layer();
    let base = Instant::now();
    let (id, inv) = incoming_invite(&mut t, "z9hG4bKs1", base);
    assert_eq!(t.state(id), Some(TxState::Proceeding));
    let out = drain(&mut t);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, uac());
    let SipMessage::Response(trying) = parse_bytes(&out[0].data) else {
        panic!()
    };
    assert_eq!(trying.status, 100);
    assert_eq!(trying.headers.get("To"), inv.headers.get("To"));
    assert_eq!(trying.headers.get("CSeq"), Some("1 INVITE"));
    assert_eq!(trying.headers.get("Content-Length"), Some("0"));
    assert_eq!(trying.headers.get("Via"), inv.headers.get("Via"));

    // Retransmitted INVITE: 100 re-sent, not passed up again.
    t.handle_message(SipMessage::Request(inv.clone()), uac(), base + ms(500));
    assert!(events(&mut t).is_empty());
    assert_eq!(
        drain(&mut t).iter().map(status_of).collect::<Vec<_>>(),
        vec![100]
    );
    // After 180 from the TU the 180 is the one re-sent.
    t.send_response(id, response(&inv, 180), base + ms(600));
    assert_eq!(
        drain(&mut t).iter().map(status_of).collect::<Vec<_>>(),
        vec![180]
    );
    t.handle_message(SipMessage::Request(inv.clone()), uac(), base + ms(1500));
    assert_eq!(
        drain(&mut t).iter().map(status_of).collect::<Vec<_>>(),
        vec![180]
    );
    assert_eq!(t.stats().retransmissions_absorbed, 2);
    // No timers in Proceeding: the TU owns the pace.
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn invite_server_non_2xx_timer_g_caps_at_t2_and_timer_h_ends_without_ack() {
    let mut t = new_layer();
    let base = Instant::now();
    let (id, inv) = incoming_invite(&mut t, "z9hG4bKs2", base);
    drain(&mut t);
    t.send_response(id, response(&inv, 486), base);
    assert_eq!(t.state(id), Some(TxState::Completed));
    assert_eq!(drain(&mut t).len(), 1);
    let (sent, evs) = run_until(&mut t, base, base + Duration::from_secs(100));
    let times: Vec<u64> = sent.iter().map(|(d, _)| d.as_millis() as u64).collect();
    assert_eq!(
        times,
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert!(sent.iter().all(|(_, tr)| status_of(tr) == 486));
    assert_eq!(
        evs,
        vec![(
            T64,
            TuEvent::ServerTerminated {
                tx: id,
                ack_received: false
            }
        )]
    );
    assert_eq!(t.len(), 0);
    assert_eq!(t.stats().ack_timeouts, 1);
}

#[test]
fn ack_for_non_2xx_is_absorbed_and_timer_i_ends_confirmed() {
    let mut t = new_layer();
    let base = Instant::now();
    let (id, inv) = incoming_invite(&mut t, "z9hG4bKs3", base);
    t.send_response(id, response(&inv, 603), base + ms(10));
    drain(&mut t);
    // Retransmitted INVITE in Completed: the final response is re-sent.
    t.handle_message(SipMessage::Request(inv.clone()), uac(), base + ms(300));
    assert_eq!(
        drain(&mut t).iter().map(status_of).collect::<Vec<_>>(),
        vec![603]
    );

    // The ACK (same branch, To with our tag) confirms; it is not passed up.
    let mut ack = request("ACK", "z9hG4bKs3", "call-1@192.0.2.1", 1);
    ack.headers.set("To", "<sip:bob@example.com>;tag=uas-tag");
    t.handle_message(SipMessage::Request(ack.clone()), uac(), base + ms(700));
    assert_eq!(t.state(id), Some(TxState::Confirmed));
    assert!(events(&mut t).is_empty());
    // Timer G (due at 0.51 s, never run here) is cancelled: no more 603s.
    let (sent, evs) = run_until(&mut t, base, base + Duration::from_secs(60));
    assert!(sent.is_empty());
    assert_eq!(
        evs,
        vec![(
            ms(700) + T4,
            TuEvent::ServerTerminated {
                tx: id,
                ack_received: true
            }
        )]
    );
    assert_eq!(t.len(), 0);
}

#[test]
fn ack_retransmission_absorbed_in_confirmed() {
    let mut t = new_layer();
    let base = Instant::now();
    let (id, inv) = incoming_invite(&mut t, "z9hG4bKs4", base);
    t.send_response(id, response(&inv, 404), base);
    let ack = request("ACK", "z9hG4bKs4", "call-1@192.0.2.1", 1);
    t.handle_message(SipMessage::Request(ack.clone()), uac(), base + ms(100));
    t.handle_message(SipMessage::Request(ack), uac(), base + ms(200));
    assert_eq!(t.state(id), Some(TxState::Confirmed));
    assert!(events(&mut t).is_empty());
    assert_eq!(t.stats().retransmissions_absorbed, 1);
}

#[test]
fn invite_server_2xx_accepted_absorbs_invites_and_sends_tu_2xx_until_timer_l() {
    let mut t = new_layer();
    let base = Instant::now();
    let (id, inv) = incoming_invite(&mut t, "z9hG4bKs5", base);
    drain(&mut t);
    t.send_response(id, response(&inv, 200), base + ms(50));
    assert_eq!(t.state(id), Some(TxState::Accepted));
    assert_eq!(
        drain(&mut t).iter().map(status_of).collect::<Vec<_>>(),
        vec![200]
    );
    // RFC 6026: a retransmitted INVITE is absorbed without re-sending anything.
    t.handle_message(SipMessage::Request(inv.clone()), uac(), base + ms(500));
    assert!(drain(&mut t).is_empty());
    assert!(events(&mut t).is_empty());
    // The TU's own 2xx retransmission is sent.
    t.send_response(id, response(&inv, 200), base + ms(550));
    assert_eq!(
        drain(&mut t).iter().map(status_of).collect::<Vec<_>>(),
        vec![200]
    );
    // A non-2xx from the TU now is refused.
    t.send_response(id, response(&inv, 500), base + ms(560));
    assert!(drain(&mut t).is_empty());
    // An ACK for the 2xx (new branch) goes to the TU.
    let ack = request("ACK", "z9hG4bKs5-ack", "call-1@192.0.2.1", 1);
    t.handle_message(SipMessage::Request(ack), uac(), base + ms(600));
    assert!(matches!(&events(&mut t)[..], [TuEvent::Ack { .. }]));
    let (sent, evs) = run_until(&mut t, base, base + Duration::from_secs(60));
    assert!(sent.is_empty());
    assert_eq!(
        evs,
        vec![(
            ms(50) + T64,
            TuEvent::ServerTerminated {
                tx: id,
                ack_received: true
            }
        )]
    );
    assert_eq!(t.len(), 0);
}

#[test]
fn reliable_2xx_is_retransmitted_until_ack() {
    let mut t = new_layer();
    let base = Instant::now();
    let (id, inv) = incoming_invite(&mut t, "z9hG4bKs6", base);
    drain(&mut t);
    t.send_2xx_reliably(id, response(&inv, 200), base);
    assert_eq!(drain(&mut t).len(), 1);
    let (sent, _) = run_until(&mut t, base, base + ms(12_000));
    let times: Vec<u64> = sent.iter().map(|(d, _)| d.as_millis() as u64).collect();
    // §13.3.1.4: T1, doubling up to T2.
    assert_eq!(times, vec![500, 1500, 3500, 7500, 11500]);
    assert!(sent
        .iter()
        .all(|(_, tr)| status_of(tr) == 200 && tr.to == uac()));
    // The end-to-end ACK (own branch; Call-ID, CSeq number and From tag match) stops them.
    let ack = request("ACK", "z9hG4bKs6-ack", "call-1@192.0.2.1", 1);
    t.handle_message(SipMessage::Request(ack), uac(), base + ms(12_000));
    assert!(matches!(&events(&mut t)[..], [TuEvent::Ack { from, .. }] if *from == uac()));
    let (sent, evs) = run_until(&mut t, base, base + Duration::from_secs(60));
    assert!(sent.is_empty());
    assert_eq!(
        evs,
        vec![(
            T64,
            TuEvent::ServerTerminated {
                tx: id,
                ack_received: true
            }
        )]
    );
}

#[test]
fn reliable_2xx_without_ack_reports_ack_timeout() {
    let mut t = new_layer();
    let base = Instant::now();
    let (id, inv) = incoming_invite(&mut t, "z9hG4bKs7", base);
    drain(&mut t);
    t.send_2xx_reliably(id, response(&inv, 200), base);
    assert_eq!(drain(&mut t).len(), 1);
    // An ACK with another From tag does not match.
    let mut ack = request("ACK", "z9hG4bKs7-ack", "call-1@192.0.2.1", 1);
    ack.headers
        .set("From", "<sip:mallory@example.com>;tag=other");
    t.handle_message(SipMessage::Request(ack), uac(), base + ms(100));
    events(&mut t);
    let (sent, evs) = run_until(&mut t, base, base + Duration::from_secs(60));
    // 0.5 1.5 3.5 7.5 11.5 15.5 19.5 23.5 27.5 31.5
    assert_eq!(sent.len(), 10);
    assert_eq!(
        evs,
        vec![
            (T64, TuEvent::AckTimeout { tx: id }),
            (
                T64,
                TuEvent::ServerTerminated {
                    tx: id,
                    ack_received: false
                }
            )
        ]
    );
    assert_eq!(t.len(), 0);
}

#[test]
fn ack_received_from_tu_stops_2xx_retransmissions() {
    let mut t = new_layer();
    let base = Instant::now();
    let (id, inv) = incoming_invite(&mut t, "z9hG4bKs8", base);
    t.send_2xx_reliably(id, response(&inv, 200), base);
    drain(&mut t);
    t.ack_received("call-1@192.0.2.1", 1);
    let (sent, evs) = run_until(&mut t, base, base + Duration::from_secs(60));
    assert!(sent.is_empty());
    assert_eq!(
        evs,
        vec![(
            T64,
            TuEvent::ServerTerminated {
                tx: id,
                ack_received: true
            }
        )]
    );
}

// ------------------------------------------------------------------------------------------------
// non-INVITE server (§17.2.2)

#[test]
fn non_invite_server_absorbs_in_trying_resends_later_and_timer_j() {
    let mut t = new_layer();
    let base = Instant::now();
    let opt = request("OPTIONS", "z9hG4bKn1", "opt-2", 3);
    t.handle_message(SipMessage::Request(opt.clone()), uac(), base);
    let id = server_tx(&events(&mut t));
    assert_eq!(t.state(id), Some(TxState::Trying));
    assert!(drain(&mut t).is_empty(), "no automatic 100 for non-INVITE");
    // Trying: retransmission discarded.
    t.handle_message(SipMessage::Request(opt.clone()), uac(), base + ms(500));
    assert!(drain(&mut t).is_empty());
    assert!(events(&mut t).is_empty());
    // Proceeding: last provisional re-sent.
    t.send_response(id, response(&opt, 100), base + ms(600));
    assert_eq!(t.state(id), Some(TxState::Proceeding));
    drain(&mut t);
    t.handle_message(SipMessage::Request(opt.clone()), uac(), base + ms(1500));
    assert_eq!(
        drain(&mut t).iter().map(status_of).collect::<Vec<_>>(),
        vec![100]
    );
    // Completed: final re-sent; a second final from the TU is refused.
    t.send_response(id, response(&opt, 200), base + ms(2000));
    assert_eq!(t.state(id), Some(TxState::Completed));
    drain(&mut t);
    t.send_response(id, response(&opt, 500), base + ms(2001));
    assert!(drain(&mut t).is_empty());
    t.handle_message(SipMessage::Request(opt.clone()), uac(), base + ms(3500));
    assert_eq!(
        drain(&mut t).iter().map(status_of).collect::<Vec<_>>(),
        vec![200]
    );
    assert!(events(&mut t).is_empty());
    // Timer J = 64*T1 on UDP.
    let (sent, evs) = run_until(&mut t, base, base + Duration::from_secs(60));
    assert!(sent.is_empty());
    assert_eq!(
        evs,
        vec![(
            ms(2000) + T64,
            TuEvent::ServerTerminated {
                tx: id,
                ack_received: true
            }
        )]
    );
    // After Timer J the same request is new again.
    t.handle_message(SipMessage::Request(opt), uac(), base + ms(40_000));
    assert!(matches!(&events(&mut t)[..], [TuEvent::Request { .. }]));
    assert_eq!(t.stats().server_created, 2);
}

// ------------------------------------------------------------------------------------------------
// reliable transports: no retransmissions, D/I/J/K = 0

#[test]
fn tcp_has_no_retransmissions_and_zero_wait_timers() {
    let mut t = new_layer();
    let base = Instant::now();
    let far = tcp("192.0.2.2:5060");
    // INVITE client: no Timer A; Timer B still applies.
    let inv = invite("z9hG4bKt1");
    let id = t.send_request(inv.clone(), far, base);
    drain(&mut t);
    let (sent, evs) = run_until(&mut t, base, base + Duration::from_secs(60));
    assert!(sent.is_empty());
    assert_eq!(evs, vec![(T64, TuEvent::Timeout { tx: id })]);

    // INVITE client non-2xx: ACK sent, Timer D = 0.
    let inv = invite("z9hG4bKt2");
    let id = t.send_request(inv.clone(), far, base);
    drain(&mut t);
    t.handle_message(resp_msg(&inv, 486), far, base + ms(10));
    assert_eq!(drain(&mut t).len(), 1, "the ACK");
    assert_eq!(t.state(id), None);

    // Non-INVITE client: no Timer E; K = 0.
    let opt = request("OPTIONS", "z9hG4bKt3", "opt-t", 1);
    let id = t.send_request(opt.clone(), far, base);
    drain(&mut t);
    assert_eq!(t.poll_timeout(), Some(base + T64));
    t.handle_message(resp_msg(&opt, 200), far, base + ms(10));
    assert_eq!(t.state(id), None);

    // INVITE server: no Timer G; ACK -> Timer I = 0.
    let inv = invite("z9hG4bKt4");
    t.handle_message(SipMessage::Request(inv.clone()), far, base);
    let id = server_tx(&events(&mut t));
    drain(&mut t);
    t.send_response(id, response(&inv, 486), base);
    assert_eq!(drain(&mut t).len(), 1);
    assert_eq!(t.poll_timeout(), Some(base + T64), "only Timer H");
    t.handle_message(
        SipMessage::Request(request("ACK", "z9hG4bKt4", "call-1@192.0.2.1", 1)),
        far,
        base + ms(5),
    );
    assert_eq!(t.state(id), None);
    assert!(events(&mut t).contains(&TuEvent::ServerTerminated {
        tx: id,
        ack_received: true
    }));

    // Non-INVITE server: Timer J = 0.
    let opt = request("OPTIONS", "z9hG4bKt5", "opt-t5", 1);
    t.handle_message(SipMessage::Request(opt.clone()), far, base);
    let id = server_tx(&events(&mut t));
    t.send_response(id, response(&opt, 200), base);
    assert_eq!(t.state(id), None);

    // Reliable 2xx over TCP: sent once, still waits 64*T1 for the ACK.
    let inv = invite("z9hG4bKt6");
    t.handle_message(SipMessage::Request(inv.clone()), far, base);
    let id = server_tx(&events(&mut t));
    drain(&mut t);
    t.send_2xx_reliably(id, response(&inv, 200), base);
    assert_eq!(drain(&mut t).len(), 1);
    let (sent, evs) = run_until(&mut t, base, base + Duration::from_secs(60));
    assert!(sent.is_empty());
    assert!(evs
        .iter()
        .any(|(_, e)| *e == TuEvent::AckTimeout { tx: id }));
    assert_eq!(t.len(), 0);
    assert_eq!(t.stats().retransmissions_sent, 0);
}

// ------------------------------------------------------------------------------------------------
// transport errors

#[test]
fn transport_error_fails_pending_client_transactions_to_that_peer_only() {
    let mut t = new_layer();
    let base = Instant::now();
    let dead = udp("192.0.2.66:5060");
    let a = t.send_request(invite("z9hG4bKx1"), dead, base);
    let b = t.send_request(request("OPTIONS", "z9hG4bKx2", "o", 1), dead, base);
    let other = t.send_request(request("OPTIONS", "z9hG4bKx3", "o", 1), uas(), base);
    // A server tx towards `dead` still waiting for its TU: untouched.
    let inv = invite("z9hG4bKx4");
    t.handle_message(SipMessage::Request(inv), dead, base);
    let srv = server_tx(&events(&mut t));
    // One retransmitting a 486 (Completed) and one retransmitting a 2xx until ACK: they give up
    // (§17.2.4).
    let inv5 = invite("z9hG4bKx5");
    t.handle_message(SipMessage::Request(inv5.clone()), dead, base);
    let rejected = server_tx(&events(&mut t));
    t.send_response(rejected, response(&inv5, 486), base);
    let inv6 = request("INVITE", "z9hG4bKx6", "call-6", 1);
    t.handle_message(SipMessage::Request(inv6.clone()), dead, base);
    let answered = server_tx(&events(&mut t));
    t.send_2xx_reliably(answered, response(&inv6, 200), base);
    drain(&mut t);
    t.transport_error(dead, base + ms(10));
    assert_eq!(
        events(&mut t),
        vec![
            TuEvent::TransportError { tx: a },
            TuEvent::TransportError { tx: b },
            TuEvent::ServerTerminated {
                tx: rejected,
                ack_received: false
            },
            TuEvent::AckTimeout { tx: answered },
            TuEvent::ServerTerminated {
                tx: answered,
                ack_received: false
            },
        ]
    );
    assert_eq!(t.state(a), None);
    assert_eq!(t.state(b), None);
    assert_eq!(t.state(other), Some(TxState::Trying));
    assert_eq!(t.state(srv), Some(TxState::Proceeding));
    assert_eq!(t.stats().transport_errors, 4);
    // Their timers no longer fire: only `other` retransmits.
    let (sent, _) = run_until(&mut t, base, base + ms(2000));
    assert!(sent.iter().all(|(_, tr)| tr.to == uas()));
}

// ------------------------------------------------------------------------------------------------
// leaks

#[test]
fn no_transaction_outlives_its_timers() {
    let mut t = new_layer();
    let base = Instant::now();
    let n = 200;
    for i in 0..n {
        let now = base + ms(i * 7);
        let call = format!("leak-{i}");
        // client INVITE: half answered with 200, a quarter 486, a quarter nothing.
        let inv = request("INVITE", &format!("z9hG4bKc{i}"), &call, 1);
        t.send_request(inv.clone(), uas(), now);
        match i % 4 {
            0 | 1 => t.handle_message(resp_msg(&inv, 200), uas(), now + ms(30)),
            2 => t.handle_message(resp_msg(&inv, 486), uas(), now + ms(30)),
            _ => {}
        }
        // client non-INVITE, answered or not.
        let bye = request("BYE", &format!("z9hG4bKb{i}"), &call, 2);
        t.send_request(bye.clone(), uas(), now);
        if i % 3 != 0 {
            t.handle_message(resp_msg(&bye, 200), uas(), now + ms(20));
        }
        // server INVITE: 2xx reliably (acked or not) or 4xx (acked or not).
        let sinv = request("INVITE", &format!("z9hG4bKs{i}"), &format!("s-{call}"), 1);
        t.handle_message(SipMessage::Request(sinv.clone()), uac(), now);
        let sid = server_tx(&events(&mut t));
        if i % 2 == 0 {
            t.send_2xx_reliably(sid, response(&sinv, 200), now + ms(5));
            if i % 4 == 0 {
                let ack = request("ACK", &format!("z9hG4bKsa{i}"), &format!("s-{call}"), 1);
                t.handle_message(SipMessage::Request(ack), uac(), now + ms(50));
            }
        } else {
            t.send_response(sid, response(&sinv, 480), now + ms(5));
            if i % 3 == 0 {
                let ack = request("ACK", &format!("z9hG4bKs{i}"), &format!("s-{call}"), 1);
                t.handle_message(SipMessage::Request(ack), uac(), now + ms(50));
            }
        }
        // server non-INVITE.
        let opt = request("OPTIONS", &format!("z9hG4bKo{i}"), &call, 5);
        t.handle_message(SipMessage::Request(opt.clone()), uac(), now);
        let oid = server_tx(&events(&mut t));
        t.send_response(oid, response(&opt, 200), now + ms(1));
        drain(&mut t);
        events(&mut t);
    }
    // Nothing ends before its timers run (all UDP).
    assert_eq!(t.len() as u64, 4 * n);
    run_until(&mut t, base, base + Duration::from_secs(3600));
    assert_eq!(t.len(), 0);
    assert_eq!(t.poll_timeout(), None);
    let s = t.stats();
    assert_eq!(s.client_created, 2 * n);
    assert_eq!(s.server_created, 2 * n);
}
