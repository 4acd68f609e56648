//! Operations: graceful shutdown (issue 4, "What to build" 5). On SIGTERM trunkline stops taking
//! new calls (503 with Retry-After), lets calls in progress end for `shutdown.drain`, then sends
//! BYE on both legs of the rest and exits 0.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn start(net: &Net, drain: u32) -> Trunkline {
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    let yaml = config_yaml(net, &t, &["pbx"]);
    let extra = format!("shutdown:\n  drain: {drain}\n");
    Trunkline::start(net, &with_metrics(net, &yaml, &extra))
}

/// Waits until `n` calls have been answered end to end (leg A got its 2xx), then a little for
/// the ACK to cross.
fn wait_answered(net: &Net, n: f64) {
    let mut m = String::new();
    let answered = poll_until(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            m = scrape(net);
            metric(&m, "trunkline_calls_total", &[("status_class", "2xx")]) == Some(n)
        },
    );
    assert!(answered, "calls not answered in time:\n{m}");
    // The ACK crossing leg B is not observable from here: a little time for it.
    std::thread::sleep(Duration::from_millis(300));
}

/// A call is up and nobody hangs up: SIGTERM with `shutdown.drain: 2`; an INVITE during the
/// drain is refused 503 + Retry-After; the up call gets BYE on both legs (both SIPp sides end
/// their call successfully on receiving it) only after the drain, and trunkline exits 0 soon
/// after.
#[test]
fn sigterm_drains_then_byes_and_exits_0() {
    isolated("sigterm_drains_then_byes_and_exits_0", false, |net| {
        let drain = Duration::from_secs(2);
        let mut tl = start(net, 2);
        let callee = Sipp::uas(
            net,
            "uas",
            "uas_basic.xml",
            net.trunk(0),
            net.sipp_media(1),
            1,
        )
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        // The caller waits for the BYE (SIPp's -recv_timeout of 10 s bounds the wait).
        let caller = Sipp::uac(net, "uac", "uac_callee_bye.xml", 1, 1).spawn();
        wait_answered(net, 1.0);

        let t0 = Instant::now();
        tl.signal(libc::SIGTERM);
        assert!(
            wait_until(Instant::now() + Duration::from_secs(5), || tl
                .log_text()
                .contains("SIGTERM: draining")),
            "no drain logged after SIGTERM:\n{}",
            tl.log_tail(20)
        );
        let resp = invite_once(net.sip_addr(), "late", Duration::from_secs(3))
            .expect("an answer to an INVITE during the drain");
        assert_eq!(status_code(resp.as_bytes()), Some(503), "{resp}");
        let retry_after: u32 = header(&resp, "Retry-After", None)
            .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("503 without a Retry-After (RFC 3261 §21.5.4):\n{resp}"));
        assert!(retry_after > 0);
        assert!(
            t0.elapsed() < drain,
            "the 503 came after the drain ended; the test proves nothing"
        );
        // Still serving the up call while the drain runs.
        assert!(
            tl.wait_exit(
                drain
                    .saturating_sub(Duration::from_millis(300))
                    .saturating_sub(t0.elapsed())
            )
            .is_none(),
            "trunkline exited before the drain time; log:\n{}",
            tl.log_tail(20)
        );

        let status = tl.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
            panic!(
                "trunkline still running {:?} after SIGTERM (drain {drain:?}); log:\n{}",
                t0.elapsed(),
                tl.log_tail(20)
            )
        });
        let took = t0.elapsed();
        eprintln!("SIGTERM with a call up, drain {drain:?}: exit 0 after {took:?}");
        assert_eq!(
            status.code(),
            Some(0),
            "exit status; log:\n{}",
            tl.log_tail(20)
        );
        assert!(
            took >= drain && took < drain + Duration::from_secs(3),
            "exit {took:?} after SIGTERM, drain {drain:?}"
        );
        let ctx = format!("trunkline log:\n{}", tl.log_tail(20));
        caller
            .wait(Duration::from_secs(10))
            .assert_all_ok(1, &format!("caller gets BYE after the drain; {ctx}"));
        callee
            .wait(Duration::from_secs(10))
            .assert_all_ok(1, &format!("callee gets BYE after the drain; {ctx}"));
        let log = tl.log_text();
        assert!(log.contains("SIGTERM: draining"), "log:\n{log}");
    });
}

/// Calls that end by themselves during the drain end normally (their BYE crosses), and
/// trunkline exits 0 as soon as the last one is gone, long before a 20 s drain.
#[test]
fn sigterm_exits_when_the_last_call_ends() {
    isolated("sigterm_exits_when_the_last_call_ends", false, |net| {
        let mut tl = start(net, 20);
        let n = 3;
        let callee = Sipp::uas(
            net,
            "uas",
            "uas_basic.xml",
            net.trunk(0),
            net.sipp_media(1),
            n,
        )
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        // The caller hangs up 2 s after the answer.
        let caller = Sipp::uac(net, "uac", "uac_basic.xml", n, 10)
            .pause_ms(2000)
            .spawn();
        wait_answered(net, n as f64);
        let t0 = Instant::now();
        tl.signal(libc::SIGTERM);
        let status = tl.wait_exit(Duration::from_secs(8)).unwrap_or_else(|| {
            panic!(
                "trunkline still running after its calls ended; log:\n{}",
                tl.log_tail(20)
            )
        });
        let took = t0.elapsed();
        assert_eq!(status.code(), Some(0));
        assert!(took < Duration::from_secs(5), "exit {took:?} after SIGTERM");
        let ctx = format!("trunkline log:\n{}", tl.log_tail(20));
        caller
            .wait(Duration::from_secs(10))
            .assert_all_ok(n as u64, &ctx);
        callee
            .wait(Duration::from_secs(10))
            .assert_all_ok(n as u64, &ctx);
    });
}

/// No call up: SIGTERM exits 0 at once.
#[test]
fn sigterm_idle_exits_at_once() {
    isolated("sigterm_idle_exits_at_once", false, |net| {
        let mut tl = start(net, 30);
        let t0 = Instant::now();
        tl.signal(libc::SIGTERM);
        let status = tl
            .wait_exit(Duration::from_secs(3))
            .expect("an idle trunkline exits on SIGTERM");
        assert_eq!(status.code(), Some(0));
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    });
}
