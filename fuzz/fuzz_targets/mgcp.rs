//! Fuzz the MGCP codec and the call agent's transaction layer.
//!
//! Invariants: nothing panics; a message that parses encodes into text that parses again to
//! the same message; the agent, fed the datagram as a gateway's, never panics and answers only
//! what it may (a command's error answer carries its transaction id).
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use mgcp::{parse, Agent, Message, Timers};

fuzz_target!(|data: &[u8]| {
    if let Ok(msgs) = parse(data) {
        for m in msgs {
            let text = match &m {
                Message::Command(c) => c.encode(),
                Message::Response(r) => r.encode(),
            };
            let again = parse(text.as_bytes()).expect("encoded message re-parses");
            assert_eq!(again.len(), 1, "one message encodes to one: {text:?}");
            assert_eq!(again[0], m, "round trip of {text:?}");
        }
    }
    let gw: SocketAddr = "127.0.0.1:2427".parse().unwrap();
    let mut a = Agent::new(1, Timers::default());
    let now = Instant::now();
    a.send(gw, mgcp::Command::new(mgcp::Verb::Auep, "x@gw"), now);
    a.handle_datagram(gw, data, now);
    while a.poll_transmit().is_some() {}
    while a.poll_event().is_some() {}
});
