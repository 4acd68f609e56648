use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn bucket_allows_burst_then_rate() {
    let t0 = Instant::now();
    let mut l = SourceLimiter::new(10, 20);
    let a = ip("192.0.2.1");
    let ok = (0..100).filter(|_| l.allow(a, t0)).count();
    assert_eq!(ok, 20, "the burst, then nothing at the same instant");
    // 10/s: half a second later, 5 more.
    let t = t0 + Duration::from_millis(500);
    let ok = (0..100).filter(|_| l.allow(a, t)).count();
    assert_eq!(ok, 5);
    // Over 10 s of a steady 100/s flood, about 10/s get through.
    let mut ok = 0;
    for i in 1..=1000u64 {
        if l.allow(a, t + Duration::from_millis(10 * i)) {
            ok += 1;
        }
    }
    assert!((99..=101).contains(&ok), "{ok} of 1000 in 10 s at 10/s");
    // Another source is not affected.
    assert!(l.allow(ip("192.0.2.2"), t + Duration::from_secs(10)));
}

#[test]
fn bucket_refills_to_burst_only() {
    let t0 = Instant::now();
    let mut l = SourceLimiter::new(5, 5);
    let a = ip("2001:db8::1");
    assert_eq!((0..10).filter(|_| l.allow(a, t0)).count(), 5);
    // A long quiet time refills up to the burst, not beyond.
    let t = t0 + Duration::from_secs(3600);
    assert_eq!((0..10).filter(|_| l.allow(a, t)).count(), 5);
}

#[test]
fn exempt_and_mapped_addresses() {
    let t0 = Instant::now();
    let mut l = SourceLimiter::new(1, 1);
    l.set_exempt([ip("10.0.0.9")]);
    assert_eq!((0..50).filter(|_| l.allow(ip("10.0.0.9"), t0)).count(), 50);
    // The IPv4-mapped form is the same source, exempt or not.
    assert_eq!(
        (0..50)
            .filter(|_| l.allow(ip("::ffff:10.0.0.9"), t0))
            .count(),
        50
    );
    assert!(l.allow(ip("::ffff:10.0.0.8"), t0));
    assert!(!l.allow(ip("10.0.0.8"), t0), "one bucket for both forms");
    assert_eq!(l.tracked(), 1);
}

/// An attacker holds a whole IPv6 /64 (SLAAC, privacy addresses): its addresses share one
/// bucket; another /64 has its own; an exempt trunk on IPv6 is its exact address only.
#[test]
fn ipv6_sources_count_by_slash_64() {
    let t0 = Instant::now();
    let mut l = SourceLimiter::new(1, 5);
    let ok = (0..100u16)
        .filter(|&i| l.allow(ip(&format!("2001:db8:0:1:{i:x}::{:x}", i * 7 + 1)), t0))
        .count();
    assert_eq!(ok, 5, "100 addresses of one /64: one burst");
    assert_eq!(l.tracked(), 1);
    assert!(
        l.allow(ip("2001:db8:0:2::1"), t0),
        "the next /64 is another source"
    );
    l.set_exempt([ip("2001:db8:0:3::5")]);
    assert_eq!(
        (0..50)
            .filter(|_| l.allow(ip("2001:db8:0:3::5"), t0))
            .count(),
        50
    );
    let ok = (0..50)
        .filter(|_| l.allow(ip("2001:db8:0:3::6"), t0))
        .count();
    assert_eq!(ok, 5, "the trunk's neighbours are not exempt");
}

#[test]
fn idle_buckets_are_swept_and_table_is_bounded() {
    let t0 = Instant::now();
    let mut l = SourceLimiter::new(100, 100);
    for i in 0..1000u32 {
        let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        assert!(l.allow(a, t0));
    }
    assert_eq!(l.tracked(), 1000);
    // After the sweep period every bucket has refilled: all forgotten.
    l.allow(ip("192.0.2.1"), t0 + SWEEP_EVERY);
    assert_eq!(l.tracked(), 1, "only the new source");
    // A flood from more sources than the table holds: the extra ones pass untracked, the
    // table never grows past its bound, and a limited source stays limited.
    let t1 = t0 + SWEEP_EVERY + Duration::from_millis(1);
    let hot = ip("192.0.2.1");
    while l.allow(hot, t1) {}
    for i in 0..(MAX_SOURCES as u32 + 100) {
        let a = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
        assert!(l.allow(a, t1));
    }
    assert_eq!(l.tracked(), MAX_SOURCES);
    assert!(l.untracked >= 100);
    assert!(!l.allow(hot, t1));
}

fn msg(ua: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\n\
         {ua}From: <sip:100@x>;tag=1\r\nContent-Length: 0\r\n\r\nUser-Agent: body\r\n"
    )
    .into_bytes()
}

#[test]
fn user_agent_block_list() {
    let list = UaBlockList::new(&["friendly-scanner", "SIPVicious", "sipcli"]);
    assert!(blocked_user_agent(
        &msg("User-Agent: friendly-scanner\r\n"),
        &list
    ));
    assert!(blocked_user_agent(
        &msg("user-agent :  my sipvicious 0.3\r\n"),
        &list
    ));
    assert!(blocked_user_agent(
        &msg("USER-AGENT:SIPCLI/v1.8\r\n"),
        &list
    ));
    // Not blocked: another UA, no UA, a UA only in the body, a response, an empty list.
    assert!(!blocked_user_agent(&msg("User-Agent: Linphone\r\n"), &list));
    assert!(!blocked_user_agent(&msg(""), &list));
    assert!(!blocked_user_agent(
        &msg("X-User-Agent: friendly-scanner\r\n"),
        &list
    ));
    let resp = b"SIP/2.0 200 OK\r\nUser-Agent: friendly-scanner\r\n\r\n";
    assert!(!blocked_user_agent(resp, &list));
    assert!(!blocked_user_agent(
        &msg("User-Agent: friendly-scanner\r\n"),
        &UaBlockList::new::<&str>(&[])
    ));
    // Bare LF line ends, and hostile input never panics.
    assert!(blocked_user_agent(
        b"INVITE sip:x SIP/2.0\nUser-Agent: sipcli\n\n",
        &list
    ));
    for bad in [
        &b""[..],
        b"\n",
        b"X\nUser-Agent",
        b"X\nUser-Agent:",
        b"X\r\nuser-agent\xff:\xfe",
    ] {
        let _ = blocked_user_agent(bad, &list);
    }
    assert_eq!(user_agent(b"X\nUser-Agent:"), Some(&b""[..]));
}

#[test]
fn find_newline_matches_a_byte_scan() {
    let mut data = Vec::new();
    let mut x = 0x1234_5678_u32;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        // Many newlines and bytes close to it (0x0a +/- 1, 0x8a) to try the word trick.
        data.push([b'\n', 0x0b, 0x09, 0x8a, b'a', 0, 0xff, b'U'][(x % 8) as usize]);
    }
    for from in 0..data.len() + 2 {
        let want = data
            .get(from..)
            .and_then(|d| d.iter().position(|&b| b == b'\n').map(|p| from + p));
        assert_eq!(find_newline(&data, from), want, "from {from}");
    }
    assert_eq!(find_newline(b"", 0), None);
    assert_eq!(find_newline(b"abcdefghijklmnop\n", 0), Some(16));
}

const TL: TrunkLimits = TrunkLimits {
    max_calls: Some(2),
    max_cps: None,
};

#[test]
fn trunk_calls_counted_once_and_released() {
    let now = Instant::now();
    let mut u = TrunkUsage::default();
    assert_eq!(u.check("c", TL, now), Ok(()));
    u.attempt(1, "c", TL, now);
    // A retransmitted/duplicate attempt event for the same trunk does not count twice.
    u.attempt(1, "c", TL, now);
    assert_eq!(u.active("c"), 1);
    u.attempt(2, "c", TL, now);
    assert_eq!(u.check("c", TL, now), Err(Limit::Calls));
    u.release(1);
    u.release(1);
    assert_eq!(u.active("c"), 1, "release is idempotent");
    assert_eq!(u.check("c", TL, now), Ok(()));
    u.release(2);
    assert_eq!(u.active("c"), 0);
    assert_eq!(u.calls(), 0);
}

#[test]
fn failover_moves_the_slot() {
    let now = Instant::now();
    let mut u = TrunkUsage::default();
    u.attempt(7, "a", TL, now);
    u.attempt(7, "b", TL, now);
    assert_eq!((u.active("a"), u.active("b")), (0, 1));
    u.attempt(7, "c", TL, now);
    assert_eq!((u.active("b"), u.active("c")), (0, 1));
    u.release(7);
    assert_eq!(u.active("c"), 0);
}

#[test]
fn inbound_slot_follows_the_call() {
    let now = Instant::now();
    let mut u = TrunkUsage::default();
    let lim = TrunkLimits {
        max_calls: Some(1),
        max_cps: None,
    };
    // From trunk `carrier` to trunk `pbx`: both hold the call.
    assert_eq!(u.admit_inbound("carrier", lim, now), Ok(()));
    u.attempt(1, "pbx", TrunkLimits::default(), now);
    assert_eq!((u.active("carrier"), u.active("pbx")), (1, 1));
    assert_eq!(u.admit_inbound("carrier", lim, now), Err(Limit::Calls));
    // A call refused after routing (e.g. 488) gives its inbound slot back.
    u.release(1);
    assert_eq!(u.admit_inbound("carrier", lim, now), Ok(()));
    u.not_started();
    assert_eq!(u.active("carrier"), 0);
    u.not_started();
    assert_eq!(u.active("carrier"), 0, "nothing pending, nothing released");
    // A call that loops back to its own source trunk holds two slots there.
    let two = TrunkLimits {
        max_calls: Some(2),
        max_cps: None,
    };
    assert_eq!(u.admit_inbound("carrier", two, now), Ok(()));
    u.attempt(2, "carrier", two, now);
    assert_eq!(u.active("carrier"), 2);
    u.release(2);
    assert_eq!(u.active("carrier"), 0);
}

#[test]
fn cps_is_a_sliding_one_second_window() {
    let t0 = Instant::now();
    let mut u = TrunkUsage::default();
    let lim = TrunkLimits {
        max_calls: None,
        max_cps: Some(3),
    };
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut started = Vec::new();
    let mut id = 0;
    // Offer a call every 50 ms for 5 s; count what starts.
    for t in (0..5000).step_by(50) {
        if u.check("c", lim, ms(t)).is_ok() {
            id += 1;
            u.attempt(id, "c", lim, ms(t));
            u.release(id);
            started.push(t);
        }
    }
    // No window of one second ever holds more than 3 starts.
    for (i, &t) in started.iter().enumerate() {
        let n = started[i..].iter().take_while(|&&s| s < t + 1000).count();
        assert!(n <= 3, "{n} starts in [{t}, {}) ms", t + 1000);
    }
    assert_eq!(started.len(), 15, "3 per second for 5 s: {started:?}");
    assert_eq!(u.check("c", lim, ms(4999)), Err(Limit::Cps));
}

#[test]
fn retain_releases_calls_the_core_forgot() {
    let now = Instant::now();
    let mut u = TrunkUsage::default();
    u.attempt(1, "a", TL, now);
    u.attempt(2, "a", TL, now);
    u.retain(|c| c == 2);
    assert_eq!(u.active("a"), 1);
    assert_eq!(u.calls(), 1);
}

#[test]
fn overload_hysteresis() {
    let mut o = Overload::new(100);
    assert!(!o.update(100));
    assert!(o.update(101));
    assert!(o.update(60), "stays on above half");
    assert!(!o.update(50));
    assert!(!o.update(99));
}
