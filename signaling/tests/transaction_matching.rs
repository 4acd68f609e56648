//! Transaction matching (RFC 3261 §17.1.3, §17.2.3, §9.2, RFC 2543 fallback), Via
//! `received`/`rport` (§18.2.1, RFC 3581) and a state-transition table of the four machines.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use signaling::message::{Request, Response, SipMessage};
use signaling::parse;
use signaling::transaction::{TimerConfig, Transactions, TuEvent, TxId, TxKind, TxState};
use signaling::{Peer, Transport};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn udp(a: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: a.parse::<SocketAddr>().unwrap(),
    }
}

fn parse_req(text: &str) -> Request {
    match parse::parse(text.replace('\n', "\r\n").as_bytes()).unwrap() {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => panic!("not a request"),
    }
}

fn request(method: &str, cseq_method: &str, via: &str, to: &str) -> Request {
    parse_req(&format!(
        "{method} sip:bob@192.0.2.2 SIP/2.0
Via: {via}
Max-Forwards: 70
From: <sip:alice@example.com>;tag=ft1
To: {to}
Call-ID: match-1@example.com
CSeq: 10 {cseq_method}
Content-Length: 0

"
    ))
}

const VIA: &str = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKm1";

fn response(req: &Request, status: u16) -> Response {
    let mut r = Response {
        status,
        reason: "R".into(),
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

fn events(t: &mut Transactions) -> Vec<TuEvent> {
    std::iter::from_fn(|| t.poll_event()).collect()
}

fn drain(t: &mut Transactions) -> usize {
    std::iter::from_fn(|| t.poll_transmit()).count()
}

fn only_request(evs: Vec<TuEvent>) -> (TxId, Request, Option<TxId>) {
    match &evs[..] {
        [TuEvent::Request {
            tx, req, cancels, ..
        }] => (*tx, req.clone(), *cancels),
        other => panic!("expected one Request, got {other:?}"),
    }
}

fn src() -> Peer {
    udp("192.0.2.1:5060")
}

#[test]
fn cancel_matches_the_invite_server_transaction() {
    let mut t = Transactions::new(TimerConfig::default());
    let now = Instant::now();
    let to = "<sip:bob@example.com>";
    t.handle_message(
        SipMessage::Request(request("INVITE", "INVITE", VIA, to)),
        src(),
        now,
    );
    let (inv_tx, _, _) = only_request(events(&mut t));

    // §9.2: same branch, method CANCEL: its own transaction, pointing at the INVITE's.
    let cancel = request("CANCEL", "CANCEL", VIA, to);
    t.handle_message(SipMessage::Request(cancel.clone()), src(), now + ms(10));
    let (cancel_tx, req, cancels) = only_request(events(&mut t));
    assert_ne!(cancel_tx, inv_tx);
    assert_eq!(cancels, Some(inv_tx));
    assert_eq!(req.method.as_str(), "CANCEL");
    assert_eq!(t.kind(cancel_tx), Some(TxKind::NonInviteServer));
    // A retransmitted CANCEL is absorbed by the CANCEL transaction.
    t.handle_message(SipMessage::Request(cancel), src(), now + ms(20));
    assert!(events(&mut t).is_empty());

    // A CANCEL whose branch matches nothing: cancels None (the TU answers 481).
    let other = request(
        "CANCEL",
        "CANCEL",
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnothing",
        to,
    );
    t.handle_message(SipMessage::Request(other), src(), now + ms(30));
    let (_, _, cancels) = only_request(events(&mut t));
    assert_eq!(cancels, None);

    // Same branch but another sent-by is another transaction (§17.2.3).
    let elsewhere = request(
        "CANCEL",
        "CANCEL",
        "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKm1",
        to,
    );
    t.handle_message(SipMessage::Request(elsewhere), src(), now + ms(40));
    let (_, _, cancels) = only_request(events(&mut t));
    assert_eq!(cancels, None);
}

#[test]
fn responses_match_by_branch_and_cseq_method() {
    let mut t = Transactions::new(TimerConfig::default());
    let now = Instant::now();
    let far = udp("192.0.2.2:5060");
    let to = "<sip:bob@example.com>";
    let inv = request("INVITE", "INVITE", VIA, to);
    let inv_tx = t.send_request(inv.clone(), far, now);
    let cancel = request("CANCEL", "CANCEL", VIA, to);
    let cancel_tx = t.send_request(cancel.clone(), far, now + ms(100));
    // The 200 to the CANCEL goes to the CANCEL tx, the 487 to the INVITE tx.
    t.handle_message(
        SipMessage::Response(response(&cancel, 200)),
        far,
        now + ms(150),
    );
    t.handle_message(
        SipMessage::Response(response(&inv, 487)),
        far,
        now + ms(160),
    );
    let evs = events(&mut t);
    assert!(
        matches!(&evs[0], TuEvent::Response { tx, resp } if *tx == cancel_tx && resp.status == 200)
    );
    assert!(
        matches!(&evs[1], TuEvent::Response { tx, resp } if *tx == inv_tx && resp.status == 487)
    );
    assert_eq!(evs.len(), 2);
    // A response with an unknown branch is stray: dropped, counted.
    let mut stray = response(&inv, 200);
    stray
        .headers
        .set("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKzzz");
    t.handle_message(SipMessage::Response(stray), far, now + ms(170));
    assert!(events(&mut t).is_empty());
    assert_eq!(t.stats().stray_responses, 1);
    // A response without a Via is malformed and dropped.
    let mut bad = response(&inv, 200);
    bad.headers.remove("Via");
    t.handle_message(SipMessage::Response(bad), far, now + ms(180));
    assert!(events(&mut t).is_empty());
    assert_eq!(t.stats().malformed, 1);
}

/// RFC 4475 "badbranch", byte for byte: an OPTIONS whose branch is only the magic cookie,
/// so the branch cannot identify the transaction.
const BADBRANCH: &[u8] = include_bytes!("rfc4475/TC_BADBRANCH_V.dat");

#[test]
fn rfc2543_matching_for_a_bare_magic_cookie_branch() {
    let mut t = Transactions::new(TimerConfig::default());
    let now = Instant::now();
    let SipMessage::Request(opt) = parse::parse(BADBRANCH).unwrap() else {
        panic!("badbranch is a request")
    };
    t.handle_message(SipMessage::Request(opt.clone()), src(), now);
    let (id, _, _) = only_request(events(&mut t));
    // Identical retransmission: absorbed.
    t.handle_message(SipMessage::Request(opt.clone()), src(), now + ms(500));
    assert!(events(&mut t).is_empty());
    // Another request from the same client with the same (non-unique) branch but another
    // Call-ID is a new transaction: the branch is not trusted.
    let mut other = opt.clone();
    other.headers.set("Call-ID", "another-call");
    t.handle_message(SipMessage::Request(other), src(), now + ms(600));
    let (id2, _, _) = only_request(events(&mut t));
    assert_ne!(id, id2);
    // So is one with another From tag, or another CSeq.
    let mut other = opt.clone();
    other.headers.set("From", "sip:caller@example.org;tag=99");
    t.handle_message(SipMessage::Request(other), src(), now + ms(700));
    assert_eq!(events(&mut t).len(), 1);
    let mut other = opt.clone();
    other.headers.set("CSeq", "9 OPTIONS");
    t.handle_message(SipMessage::Request(other), src(), now + ms(800));
    assert_eq!(events(&mut t).len(), 1);
    // The response goes out and the retransmission gets it again.
    t.send_response(id, response(&opt, 200), now + ms(900));
    assert_eq!(drain(&mut t), 1);
    t.handle_message(SipMessage::Request(opt), src(), now + ms(1000));
    assert_eq!(drain(&mut t), 1);
    assert!(events(&mut t).is_empty());
}

#[test]
fn rfc2543_invite_ack_matches_by_to_tag_of_our_response() {
    let mut t = Transactions::new(TimerConfig::default());
    let now = Instant::now();
    // No branch at all (an RFC 2543 client).
    let via = "SIP/2.0/UDP 192.0.2.1:5060";
    let inv = request("INVITE", "INVITE", via, "<sip:bob@example.com>");
    t.handle_message(SipMessage::Request(inv.clone()), src(), now);
    let (id, _, _) = only_request(events(&mut t));
    t.handle_message(SipMessage::Request(inv.clone()), src(), now + ms(100));
    assert!(events(&mut t).is_empty(), "INVITE retransmission absorbed");
    t.send_response(id, response(&inv, 486), now + ms(200));
    drain(&mut t);
    assert_eq!(t.state(id), Some(TxState::Completed));
    // An ACK with a To tag that is not ours does not match: it goes up as an end-to-end ACK.
    let wrong = request("ACK", "ACK", via, "<sip:bob@example.com>;tag=someone-else");
    t.handle_message(SipMessage::Request(wrong), src(), now + ms(300));
    assert!(matches!(&events(&mut t)[..], [TuEvent::Ack { .. }]));
    assert_eq!(t.state(id), Some(TxState::Completed));
    // The ACK carrying our To tag confirms the transaction.
    let ack = request("ACK", "ACK", via, "<sip:bob@example.com>;tag=uas-tag");
    t.handle_message(SipMessage::Request(ack), src(), now + ms(400));
    assert!(events(&mut t).is_empty());
    assert_eq!(t.state(id), Some(TxState::Confirmed));
    // A legacy CANCEL (same To, no tag) finds the INVITE.
    let cancel = request("CANCEL", "CANCEL", via, "<sip:bob@example.com>");
    t.handle_message(SipMessage::Request(cancel), src(), now + ms(500));
    let (_, _, cancels) = only_request(events(&mut t));
    assert_eq!(cancels, Some(id));
}

#[test]
fn received_and_rport_are_added_to_the_top_via() {
    let mut t = Transactions::new(TimerConfig::default());
    let now = Instant::now();
    let nat = udp("203.0.113.5:40000");
    let inv = request(
        "INVITE",
        "INVITE",
        "SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKnat;rport",
        "<sip:bob@example.com>",
    );
    t.handle_message(SipMessage::Request(inv), nat, now);
    let (_, req, _) = only_request(events(&mut t));
    assert_eq!(
        req.headers.get("Via"),
        Some("SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKnat;rport=40000;received=203.0.113.5")
    );
    // The 100 Trying carries the rewritten Via and goes to the source address (RFC 3581 §4).
    let tr = t.poll_transmit().unwrap();
    assert_eq!(tr.to, nat);
    let SipMessage::Response(trying) = parse::parse(&tr.data).unwrap() else {
        panic!()
    };
    assert_eq!(trying.headers.get("Via"), req.headers.get("Via"));
    // The retransmission (original Via, without received) still matches.
    let inv = request(
        "INVITE",
        "INVITE",
        "SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKnat;rport",
        "<sip:bob@example.com>",
    );
    t.handle_message(SipMessage::Request(inv), nat, now + ms(500));
    assert!(events(&mut t).is_empty());

    // A domain name in sent-by always gets received (§18.2.1); no rport, none added.
    let opt = request(
        "OPTIONS",
        "OPTIONS",
        "SIP/2.0/TCP pc33.example.com;branch=z9hG4bKdns",
        "<sip:bob@example.com>",
    );
    t.handle_message(SipMessage::Request(opt), nat, now);
    let (_, req, _) = only_request(events(&mut t));
    assert_eq!(
        req.headers.get("Via"),
        Some("SIP/2.0/TCP pc33.example.com;branch=z9hG4bKdns;received=203.0.113.5")
    );
}

#[test]
fn requests_without_via_or_cseq_are_dropped() {
    let mut t = Transactions::new(TimerConfig::default());
    let now = Instant::now();
    let mut r = request("OPTIONS", "OPTIONS", VIA, "<sip:b@x>");
    r.headers.remove("Via");
    t.handle_message(SipMessage::Request(r), src(), now);
    let mut r = request("OPTIONS", "OPTIONS", VIA, "<sip:b@x>");
    r.headers.set("CSeq", "not-a-number OPTIONS");
    t.handle_message(SipMessage::Request(r), src(), now);
    let mut r = request("OPTIONS", "OPTIONS", VIA, "<sip:b@x>");
    r.headers.set("Via", "SIP/2.0/UDP");
    t.handle_message(SipMessage::Request(r), src(), now);
    assert!(events(&mut t).is_empty());
    assert_eq!(t.len(), 0);
    assert_eq!(t.stats().malformed, 3);
}

// ------------------------------------------------------------------------------------------------
// State-transition table

#[derive(Clone, Copy, Debug)]
enum Machine {
    InvClient,
    NonInvClient,
    InvServer,
    NonInvServer,
}

#[derive(Clone, Copy, Debug)]
enum In {
    /// A response from the network (client machines).
    Resp(u16),
    /// A response from the TU (server machines).
    Tu(u16),
    /// The request again from the network (server machines).
    Retx,
    /// An ACK with the same branch (INVITE server).
    Ack,
    /// Advance virtual time by this many ms, firing timers.
    Wait(u64),
    TransportError,
}

use In::*;
use Machine::*;

fn run(machine: Machine, inputs: &[In]) -> Option<TxState> {
    let mut t = Transactions::new(TimerConfig::default());
    let mut now = Instant::now();
    let far = udp("192.0.2.2:5060");
    let req = match machine {
        InvClient | InvServer => request("INVITE", "INVITE", VIA, "<sip:b@x>"),
        NonInvClient | NonInvServer => request("BYE", "BYE", VIA, "<sip:b@x>"),
    };
    let id: TxId = match machine {
        InvClient | NonInvClient => t.send_request(req.clone(), far, now),
        InvServer | NonInvServer => {
            t.handle_message(SipMessage::Request(req.clone()), far, now);
            only_request(events(&mut t)).0
        }
    };
    assert_eq!(
        t.kind(id),
        Some(match machine {
            InvClient => TxKind::InviteClient,
            NonInvClient => TxKind::NonInviteClient,
            InvServer => TxKind::InviteServer,
            NonInvServer => TxKind::NonInviteServer,
        })
    );
    for input in inputs {
        match *input {
            Resp(s) => t.handle_message(SipMessage::Response(response(&req, s)), far, now),
            Tu(s) => t.send_response(id, response(&req, s), now),
            Retx => t.handle_message(SipMessage::Request(req.clone()), far, now),
            Ack => {
                let ack = request("ACK", "ACK", VIA, "<sip:b@x>;tag=uas-tag");
                t.handle_message(SipMessage::Request(ack), far, now)
            }
            Wait(n) => {
                let end = now + ms(n);
                while let Some(at) = t.poll_timeout() {
                    if at > end {
                        break;
                    }
                    t.handle_timeout(at);
                }
                now = end;
            }
            TransportError => t.transport_error(far, now),
        }
        while t.poll_transmit().is_some() {}
        events(&mut t);
    }
    t.state(id)
}

#[test]
fn state_transition_table() {
    use TxState::*;
    // (machine, inputs, state afterwards; None = terminated and destroyed)
    #[rustfmt::skip]
    let table: &[(Machine, &[In], Option<TxState>)] = &[
        // INVITE client: RFC 3261 Figure 5 as updated by RFC 6026 Figure 5.
        (InvClient, &[], Some(Calling)),
        (InvClient, &[Wait(31_999)], Some(Calling)),
        (InvClient, &[Wait(32_000)], None),                         // Timer B
        (InvClient, &[Resp(100)], Some(Proceeding)),
        (InvClient, &[Resp(180), Resp(183)], Some(Proceeding)),
        (InvClient, &[Resp(180), Wait(120_000)], Some(Proceeding)), // B only in Calling
        (InvClient, &[Resp(200)], Some(Accepted)),
        (InvClient, &[Resp(180), Resp(200)], Some(Accepted)),
        (InvClient, &[Resp(200), Resp(200)], Some(Accepted)),
        (InvClient, &[Resp(200), Resp(486)], Some(Accepted)),
        (InvClient, &[Resp(200), Wait(31_999)], Some(Accepted)),
        (InvClient, &[Resp(200), Wait(32_000)], None),              // Timer M
        (InvClient, &[Resp(486)], Some(Completed)),
        (InvClient, &[Resp(180), Resp(302)], Some(Completed)),
        (InvClient, &[Resp(486), Resp(486)], Some(Completed)),
        (InvClient, &[Resp(486), Resp(200)], Some(Completed)),
        (InvClient, &[Resp(486), Wait(31_999)], Some(Completed)),
        (InvClient, &[Resp(486), Wait(32_000)], None),              // Timer D
        (InvClient, &[TransportError], None),
        (InvClient, &[Resp(180), TransportError], None),
        (InvClient, &[Resp(486), TransportError], Some(Completed)),
        // non-INVITE client: Figure 6.
        (NonInvClient, &[], Some(Trying)),
        (NonInvClient, &[Resp(100)], Some(Proceeding)),
        (NonInvClient, &[Resp(100), Resp(180)], Some(Proceeding)),
        (NonInvClient, &[Resp(200)], Some(Completed)),
        (NonInvClient, &[Resp(100), Resp(404)], Some(Completed)),
        (NonInvClient, &[Resp(200), Resp(100)], Some(Completed)),
        (NonInvClient, &[Resp(200), Wait(4_999)], Some(Completed)),
        (NonInvClient, &[Resp(200), Wait(5_000)], None),           // Timer K
        (NonInvClient, &[Wait(32_000)], None),                     // Timer F in Trying
        (NonInvClient, &[Resp(100), Wait(32_000)], None),          // Timer F in Proceeding
        (NonInvClient, &[TransportError], None),
        // INVITE server: Figure 7 as updated by RFC 6026 Figure 7.
        (InvServer, &[], Some(Proceeding)),
        (InvServer, &[Retx], Some(Proceeding)),
        (InvServer, &[Tu(180)], Some(Proceeding)),
        (InvServer, &[Wait(600_000)], Some(Proceeding)),           // waits for the TU
        (InvServer, &[Tu(200)], Some(Accepted)),
        (InvServer, &[Tu(180), Tu(200), Retx], Some(Accepted)),
        (InvServer, &[Tu(200), Tu(486)], Some(Accepted)),
        (InvServer, &[Tu(200), Ack], Some(Accepted)),
        (InvServer, &[Tu(200), Wait(31_999)], Some(Accepted)),
        (InvServer, &[Tu(200), Wait(32_000)], None),               // Timer L
        (InvServer, &[Tu(486)], Some(Completed)),
        (InvServer, &[Tu(486), Retx], Some(Completed)),
        (InvServer, &[Tu(486), Tu(200)], Some(Completed)),
        (InvServer, &[Tu(486), Wait(31_999)], Some(Completed)),
        (InvServer, &[Tu(486), Wait(32_000)], None),               // Timer H
        (InvServer, &[Tu(486), Ack], Some(Confirmed)),
        (InvServer, &[Tu(486), Ack, Ack, Retx], Some(Confirmed)),
        (InvServer, &[Tu(486), Ack, Wait(4_999)], Some(Confirmed)),
        (InvServer, &[Tu(486), Ack, Wait(5_000)], None),           // Timer I
        (InvServer, &[Ack], Some(Proceeding)),
        (InvServer, &[TransportError], Some(Proceeding)),
        (InvServer, &[Tu(486), TransportError], None),             // §17.2.4
        (InvServer, &[Tu(486), Ack, TransportError], Some(Confirmed)),
        (InvServer, &[Tu(200), TransportError], Some(Accepted)),   // TU retransmits its 2xx
        // non-INVITE server: Figure 8.
        (NonInvServer, &[], Some(Trying)),
        (NonInvServer, &[Retx], Some(Trying)),
        (NonInvServer, &[Tu(100)], Some(Proceeding)),
        (NonInvServer, &[Tu(100), Retx, Tu(180)], Some(Proceeding)),
        (NonInvServer, &[Tu(200)], Some(Completed)),
        (NonInvServer, &[Tu(100), Tu(404)], Some(Completed)),
        (NonInvServer, &[Tu(200), Retx, Tu(100)], Some(Completed)),
        (NonInvServer, &[Tu(200), Wait(31_999)], Some(Completed)),
        (NonInvServer, &[Tu(200), Wait(32_000)], None),            // Timer J
    ];
    let mut failures = Vec::new();
    for (machine, inputs, want) in table {
        let got = run(*machine, inputs);
        if got != *want {
            failures.push(format!(
                "{machine:?} {inputs:?}: want {want:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
