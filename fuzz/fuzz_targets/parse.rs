//! Fuzz the SIP parser, admission checks, typed header views and serialiser.
//!
//! Invariants: nothing panics; a message that parses re-serialises into bytes that parse again
//! to the same message (Content-Length aside, which the emitter always rewrites).
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::check::{admission, check_response};
use signaling::headers::{NameAddr, Via};
use signaling::parse::{bad_request_response, frame_len, parse};
use signaling::uri::Uri;
use signaling::SipMessage;

fuzz_target!(|data: &[u8]| {
    let _ = frame_len(data);
    let msg = match parse(data) {
        Ok(m) => m,
        Err(e) => {
            if let Some(r) = bad_request_response(&e) {
                // The 400 copies Via/From/To/Call-ID/CSeq verbatim (RFC 3261 §8.2.6.2), so it
                // may itself be malformed when one of those was the problem: only serialise it.
                let _ = parse(&r.to_bytes());
            }
            return;
        }
    };
    match &msg {
        SipMessage::Request(r) => {
            let _ = admission(r);
            if let Ok(u) = Uri::parse(&r.uri) {
                assert_eq!(Uri::parse(&u.to_string()).as_ref(), Ok(&u));
            }
        }
        SipMessage::Response(r) => {
            let _ = check_response(r);
        }
    }
    for v in msg.headers().get_all("Via") {
        if let Ok(vias) = Via::parse_list(v) {
            for via in vias {
                assert_eq!(Via::parse(&via.to_string()).as_ref(), Ok(&via));
            }
        }
    }
    for name in ["From", "To", "Contact", "Route", "Record-Route"] {
        for v in msg.headers().get_all(name) {
            if let Ok(list) = NameAddr::parse_list(v) {
                for na in list {
                    assert_eq!(NameAddr::parse(&na.to_string()).as_ref(), Ok(&na));
                }
            }
        }
    }
    let bytes = msg.to_bytes();
    let again = parse(&bytes).expect("serialised message must parse");
    let strip = |m: &SipMessage| {
        let mut m = m.clone();
        m.headers_mut().remove("Content-Length");
        m
    };
    assert_eq!(strip(&msg), strip(&again));
});
