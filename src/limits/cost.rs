//! Cost of the pre-parse screening per request (run: `cargo test --release --bin trunkline
//! screen_cost -- --ignored --nocapture`).
use super::*;

#[test]
#[ignore]
fn screen_cost() {
    let invite = b"INVITE sip:+15551234567@192.0.2.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-abc-1;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@198.51.100.7>;tag=1928301774\r\n\
To: <sip:+15551234567@192.0.2.1>\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@198.51.100.7:5060>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
Supported: replaces, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\r\n";
    let list = UaBlockList::new(config::DEFAULT_USER_AGENT_BLOCK);
    let mut lim = SourceLimiter::new(1_000_000, 1_000_000);
    let t0 = Instant::now();
    let n = 1_000_000u32;
    let mut passed = 0u32;
    for i in 0..n {
        let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + (i & 1023)));
        if lim.allow(ip, t0) && !blocked_user_agent(std::hint::black_box(invite), &list) {
            passed += 1;
        }
    }
    let per = t0.elapsed().as_nanos() as f64 / f64::from(n);
    let t1 = Instant::now();
    for _ in 0..n {
        assert!(!blocked_user_agent(std::hint::black_box(invite), &list));
    }
    let ua = t1.elapsed().as_nanos() as f64 / f64::from(n);
    eprintln!("of which the UA scan: {ua:.0} ns");
    eprintln!("screening (bucket of 1024 sources + UA scan of a 12-header INVITE without UA): {per:.0} ns per request");
    assert_eq!(passed, n);
}
