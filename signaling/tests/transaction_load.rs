//! Load through the transaction layer in virtual time: many concurrent transactions of every
//! kind, interleaved, with retransmissions; everything must end (no leak) and the heap of timers
//! must stay bounded. Prints the rate (run with `--release --nocapture` for numbers).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use signaling::message::{Request, Response, SipMessage};
use signaling::parse;
use signaling::transaction::{TimerConfig, Transactions, TuEvent};
use signaling::{Peer, Transport};

fn peer(i: u32) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 5060)),
    }
}

fn template(method: &str) -> Request {
    let text = format!(
        "{method} sip:bob@192.0.2.2 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtemplate\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=ft1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: template\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    match parse::parse(text.as_bytes()).unwrap() {
        SipMessage::Request(r) => r,
        _ => unreachable!(),
    }
}

fn with_ids(t: &Request, branch: &str, call_id: &str) -> Request {
    let mut r = t.clone();
    r.headers
        .set("Via", format!("SIP/2.0/UDP 192.0.2.1:5060;branch={branch}"));
    r.headers.set("Call-ID", call_id.to_string());
    r
}

fn response(req: &Request, status: u16) -> Response {
    let mut r = Response {
        status,
        reason: "R".into(),
        headers: Default::default(),
        body: Vec::new(),
    };
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if let Some(v) = req.headers.get(name) {
            r.headers.push(name, v.to_string());
        }
    }
    r
}

#[test]
fn thousands_of_interleaved_transactions_all_end() {
    let n: u32 = if cfg!(debug_assertions) {
        2_000
    } else {
        100_000
    };
    let mut t = Transactions::new(TimerConfig::default());
    let base = Instant::now();
    let inv = template("INVITE");
    let bye = template("BYE");
    let started = Instant::now();
    let mut sent = 0usize;
    let mut evs = 0usize;
    let mut max_heap_ratio_ok = true;
    let mut pending_bye: Option<(Request, Peer)> = None;
    for i in 0..n {
        // 1000 new transactions of each side per virtual second.
        let now = base + Duration::from_micros(u64::from(i) * 1000);
        let p = peer(i % 4096);
        let call = format!("c{i}");
        // Client INVITE answered by 180 then 200 (and the 200 retransmitted once).
        let req = with_ids(&inv, &format!("z9hG4bKci{i}"), &call);
        t.send_request(req.clone(), p, now);
        let r180 = SipMessage::Response(response(&req, 180));
        t.handle_message(r180, p, now);
        let r200 = SipMessage::Response(response(&req, 200));
        t.handle_message(r200.clone(), p, now);
        t.handle_message(r200, p, now);
        // Server INVITE rejected, the request retransmitted, then ACKed.
        let sreq = with_ids(&inv, &format!("z9hG4bKsi{i}"), &call);
        t.handle_message(SipMessage::Request(sreq.clone()), p, now);
        let mut sid = None;
        while let Some(e) = t.poll_event() {
            evs += 1;
            if let TuEvent::Request { tx, .. } = e {
                sid = Some(tx);
            }
        }
        let sid = sid.expect("server tx");
        t.send_response(sid, response(&sreq, 486), now);
        t.handle_message(SipMessage::Request(sreq.clone()), p, now);
        let mut ack = sreq.clone();
        ack.method = signaling::Method::Ack;
        ack.headers.set("CSeq", "1 ACK");
        t.handle_message(SipMessage::Request(ack), p, now);
        // Client BYE answered by the peer of the previous iteration (1 ms later, virtual).
        let b = with_ids(&bye, &format!("z9hG4bKcb{i}"), &call);
        t.send_request(b.clone(), p, now);
        if let Some((prev, pp)) = pending_bye.replace((b, p)) {
            let r = SipMessage::Response(response(&prev, 200));
            t.handle_message(r, pp, now);
        }
        // Fire what is due up to now.
        t.handle_timeout(now);
        while t.poll_transmit().is_some() {
            sent += 1;
        }
        while t.poll_event().is_some() {
            evs += 1;
        }
        if i % 1000 == 999 {
            // Lazy deletion must not let stale timers pile up without bound.
            max_heap_ratio_ok &= t.pending_timers() <= 8 * (t.len() + 1) + 1024;
        }
    }
    if let Some((prev, pp)) = pending_bye.take() {
        let r = SipMessage::Response(response(&prev, 200));
        t.handle_message(r, pp, base + Duration::from_micros(u64::from(n) * 1000));
    }
    let peak = t.len();
    let end = base + Duration::from_secs(3600);
    while let Some(at) = t.poll_timeout() {
        if at > end {
            break;
        }
        t.handle_timeout(at);
        while t.poll_transmit().is_some() {
            sent += 1;
        }
        while t.poll_event().is_some() {
            evs += 1;
        }
    }
    let elapsed = started.elapsed();
    assert!(max_heap_ratio_ok);
    assert_eq!(t.len(), 0, "leaked transactions");
    assert_eq!(t.poll_timeout(), None);
    let s = t.stats();
    assert_eq!(s.client_created, 2 * u64::from(n));
    assert_eq!(s.server_created, u64::from(n));
    assert_eq!(s.timeouts, 0);
    assert_eq!(s.ack_timeouts, 0);
    let total = 3 * u64::from(n);
    println!(
        "{total} transactions ({peak} live at peak), {sent} transmits, {evs} events in {elapsed:?}: {:.0} tx/s",
        total as f64 / elapsed.as_secs_f64()
    );
}
