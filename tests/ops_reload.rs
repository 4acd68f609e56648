//! Operations: live dial-plan reload (issue 4, "What to build" 2 and its acceptance check).
//! The configuration file is reloaded on SIGHUP, on `POST /reload` and when the file changes;
//! the new file is parsed and validated whole before the swap, new calls use it at once, calls
//! in progress finish where they started, and an invalid file changes nothing: the old plan
//! keeps serving, the error is logged as FILE:LINE:COLUMN and
//! `trunkline_config_reloads_total{result="failure"}` counts it.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Plan A routes everything to `pbx` (trunk port 0); plan B adds `pbx2` (trunk port 1) and
/// routes everything there.
fn plan(net: &Net, second_trunk: bool) -> String {
    let t0 = Trunk {
        name: "pbx",
        port: net.trunk(0),
    };
    let t1 = Trunk {
        name: "pbx2",
        port: net.trunk(1),
    };
    let yaml = if second_trunk {
        config_yaml(net, &[t0, t1], &["pbx2"])
    } else {
        config_yaml(net, &[t0], &["pbx"])
    };
    with_metrics(net, &yaml, "")
}

/// Plan B with its route's `]` missing (a YAML syntax error), and the 1-based line of it.
fn broken(net: &Net) -> (String, usize) {
    let good = plan(net, true);
    let bad = good.replace("route: [pbx2]", "route: [pbx2");
    assert_ne!(good, bad);
    let line = bad
        .lines()
        .position(|l| l.contains("route: [pbx2"))
        .expect("route line")
        + 1;
    (bad, line)
}

/// Polls /metrics until `f` holds (at most `limit`); returns the last scrape.
fn wait_metrics(net: &Net, limit: Duration, what: &str, f: impl Fn(&str) -> bool) -> String {
    let mut m = String::new();
    let ok = poll_until(Instant::now() + limit, Duration::from_millis(50), || {
        m = scrape(net);
        f(&m)
    });
    assert!(ok, "{what}: not within {limit:?}; /metrics:\n{m}");
    m
}

fn reloads(m: &str, result: &str) -> f64 {
    metric(m, "trunkline_config_reloads_total", &[("result", result)]).unwrap_or(-1.0)
}
fn generation(m: &str) -> f64 {
    metric(m, "trunkline_config_generation", &[]).unwrap_or(-1.0)
}
fn answered(m: &str, trunk: &str) -> f64 {
    metric(
        m,
        "trunkline_calls_total",
        &[("trunk", trunk), ("status_class", "2xx")],
    )
    .unwrap_or(0.0)
}

/// The log without terminal colour sequences (ESC [ ... m).
fn without_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The log names the file and the line of the error, as FILE:LINE:COLUMN.
fn assert_logged_position(tl: &Trunkline, net: &Net, line: usize) {
    let log = tl.log_text();
    let prefix = format!("{}:{line}:", net.config_path().display());
    let found = log.lines().any(|l| {
        l.contains("reload failed")
            && l.split(&prefix).nth(1).is_some_and(|rest| {
                let col: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                !col.is_empty() && rest[col.len()..].starts_with(':')
            })
    });
    assert!(
        found,
        "no `reload failed ... {prefix}COLUMN:` line in the log:\n{}",
        tl.log_tail(30)
    );
}

/// A UAS on trunk port `i` that takes up to `max` calls (stopped by the test).
fn uas(net: &Net, i: u16, max: u32) -> SippRun {
    let run = Sipp::uas(
        net,
        &format!("uas{i}"),
        "uas_basic.xml",
        net.trunk(i),
        net.sipp_media(i + 1),
        max,
    )
    .spawn();
    wait_udp_bound(net.trunk(i), Duration::from_secs(5));
    run
}

/// The acceptance check. During a 2000-call SIPp run at 200 calls/s: the file gains a
/// second trunk and the route moves to it, then SIGHUP: new calls reach the new trunk and no
/// call fails. Then the file is broken and SIGHUP'd: trunkline keeps serving with the plan it
/// had (calls go on reaching the new trunk and succeeding), the failure is counted once and
/// logged with file:line:column.
///
/// SIGHUP follows each rewrite within microseconds, so it is SIGHUP that reloads (the log says
/// which trigger did) and the file watch, polling each second, then finds nothing new: the
/// counters move by exactly one each.
#[test]
fn sighup_reload_under_200_cps_load() {
    isolated("sighup_reload_under_200_cps_load", false, |net| {
        let calls = 2000u32;
        let mut tl = Trunkline::start(net, &plan(net, false));
        let uas0 = uas(net, 0, calls);
        let uas1 = uas(net, 1, calls);
        let t0 = Instant::now();
        let caller = Sipp::uac(net, "uac", "uac_basic.xml", calls, 200)
            .pause_ms(200)
            .spawn();

        // ~2.5 s of calls on plan A, then plan B by SIGHUP.
        std::thread::sleep(Duration::from_millis(2500));
        let m = scrape(net);
        assert!(answered(&m, "pbx") > 100.0, "calls flowing on plan A:\n{m}");
        assert_eq!(answered(&m, "pbx2"), 0.0);
        replace_config(net, &plan(net, true), false);
        tl.signal(libc::SIGHUP);
        let m = wait_metrics(net, Duration::from_secs(2), "SIGHUP reload", |m| {
            generation(m) == 2.0
        });
        let t_reload = t0.elapsed();
        assert_eq!(reloads(&m, "success"), 1.0, "{m}");
        assert_eq!(reloads(&m, "failure"), 0.0, "{m}");

        // ~2 s on plan B, then a broken file by SIGHUP.
        std::thread::sleep(Duration::from_millis(2000));
        let before_bad = scrape(net);
        assert!(
            answered(&before_bad, "pbx2") > 100.0,
            "new calls reach the new trunk:\n{before_bad}"
        );
        let (bad, bad_line) = broken(net);
        replace_config(net, &bad, false);
        tl.signal(libc::SIGHUP);
        let m = wait_metrics(net, Duration::from_secs(2), "failed reload counted", |m| {
            reloads(m, "failure") >= 1.0
        });
        let t_bad = t0.elapsed();
        assert_eq!(reloads(&m, "failure"), 1.0, "{m}");
        assert_eq!(reloads(&m, "success"), 1.0, "{m}");
        assert_eq!(generation(&m), 2.0, "a failed reload changes nothing");
        tl.assert_alive();

        let caller = caller.wait(Duration::from_secs(60));
        let total = t0.elapsed();
        // Let the last BYEs complete on the callee side, then stop the callees.
        std::thread::sleep(Duration::from_millis(1500));
        let uas0 = uas0.stop();
        let uas1 = uas1.stop();
        tl.assert_alive();
        let end = scrape(net);
        eprintln!(
            "{calls} calls at 200/s in {total:?}: SIGHUP reload at {t_reload:?}, broken file at \
             {t_bad:?}; pbx took {} calls, pbx2 {} (pbx2 {} before the broken file)",
            uas0.incoming,
            uas1.incoming,
            answered(&before_bad, "pbx2")
        );
        let ctx = format!("trunkline log tail:\n{}", tl.log_tail(20));
        caller.assert_all_ok(calls as u64, &ctx);
        for u in [&uas0, &uas1] {
            assert_eq!(
                (u.failed, u.successful),
                (0, u.incoming),
                "{}: every call it got succeeded\n{}",
                u.name,
                u.errors
            );
        }
        assert!(uas0.incoming > 0 && uas1.incoming > 0);
        assert_eq!(uas0.incoming + uas1.incoming, calls as u64);
        // No new call reached the old trunk once the reload was in; calls kept reaching the
        // new one after the broken file (the old plan kept serving).
        assert_eq!(answered(&end, "pbx"), answered(&before_bad, "pbx"));
        assert_eq!(answered(&end, "pbx"), uas0.incoming as f64);
        assert_eq!(answered(&end, "pbx2"), uas1.incoming as f64);
        assert!(
            answered(&end, "pbx2") - answered(&m, "pbx2") > 200.0,
            "calls after the broken file:\n{end}"
        );
        assert_eq!(
            metric(&end, "trunkline_calls_total", &[]),
            Some(calls as f64),
            "every call answered (no other status class):\n{end}"
        );
        assert_eq!(reloads(&end, "failure"), 1.0);
        assert_eq!(generation(&end), 2.0);
        assert_logged_position(&tl, net, bad_line);
        let log = without_ansi(&tl.log_text());
        assert!(
            log.contains("configuration reloaded") && log.contains("trigger=\"SIGHUP\""),
            "{}",
            tl.log_tail(30)
        );
        assert!(!log.contains("file change"), "{}", tl.log_tail(30));
    });
}

/// Runs `n` calls and returns how many reached trunk ports 0 and 1. Each run `k` calls from
/// its own port: the scenario's Via branches repeat per call number, and an INVITE with the
/// branch and sent-by of one answered less than 32 s ago is a retransmission that trunkline
/// rightly absorbs (RFC 6026 §8.7, the Accepted state).
fn calls_to(net: &Net, tl: &mut Trunkline, k: u16, n: u32) -> (u64, u64) {
    let a = uas(net, 0, n);
    let b = uas(net, 1, n);
    let r = Sipp::uac(net, &format!("uac{k}"), "uac_basic.xml", n, 50)
        .args(&["-p", &net.spare(k).to_string()])
        .pause_ms(0)
        .run(Duration::from_secs(30));
    // The callees' last BYE answers before they are stopped.
    std::thread::sleep(Duration::from_millis(300));
    let (a, b) = (a.stop(), b.stop());
    tl.assert_alive();
    r.assert_all_ok(n as u64, &format!("run {k}: {}", tl.log_tail(20)));
    (a.incoming, b.incoming)
}

/// `POST /reload` answers 200 with the new generation on a good file and 422 with the
/// positioned error on a bad one (which changes nothing). (The file watch may see a rewrite in
/// the moment before the POST; the answers do not depend on it.)
#[test]
fn post_reload_200_on_good_422_on_bad() {
    isolated("post_reload_200_on_good_422_on_bad", false, |net| {
        let mut tl = Trunkline::start(net, &plan(net, false));
        let admin = net.metrics_addr();
        let (code, body) = http(admin, "POST", "/reload");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("generation 2"), "{body}");

        let (bad, line) = broken(net);
        replace_config(net, &bad, false);
        let (code, body) = http(admin, "POST", "/reload");
        assert_eq!(code, 422, "{body}");
        let want = format!("{}:{line}:", net.config_path().display());
        assert!(body.contains(&want), "422 body names {want}COLUMN: {body}");
        assert_logged_position(&tl, net, line);
        let m = scrape(net);
        assert_eq!((reloads(&m, "success"), generation(&m)), (1.0, 2.0));
        assert!(reloads(&m, "failure") >= 1.0);
        assert_eq!(calls_to(net, &mut tl, 1, 5), (5, 0));

        replace_config(net, &plan(net, true), false);
        let (code, body) = http(admin, "POST", "/reload");
        assert_eq!(code, 200, "{body}");
        let gen: u64 = body
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|g| g.parse().ok())
            .unwrap_or_else(|| panic!("no generation in {body:?}"));
        assert!(gen >= 3, "{body}");
        assert_eq!(generation(&scrape(net)), gen as f64);
        assert_eq!(calls_to(net, &mut tl, 2, 5), (0, 5));
        let (code, _) = http(admin, "GET", "/reload");
        assert_eq!(code, 404, "reload is POST only");
    });
}

/// Without any signal, a changed file is picked up by the watch (polled each second), both
/// ways: a good file is swapped in, a broken one is counted and changes nothing.
#[test]
fn file_change_reloads_without_a_signal() {
    isolated("file_change_reloads_without_a_signal", false, |net| {
        let mut tl = Trunkline::start(net, &plan(net, false));
        assert_eq!(calls_to(net, &mut tl, 3, 5), (5, 0));

        let t = Instant::now();
        replace_config(net, &plan(net, true), false);
        wait_metrics(net, Duration::from_secs(4), "file watch reload", |m| {
            generation(m) == 2.0
        });
        eprintln!("file change picked up in {:?}", t.elapsed());
        assert!(tl.log_text().contains("file change"));
        assert_eq!(calls_to(net, &mut tl, 4, 5), (0, 5));

        let (bad, line) = broken(net);
        replace_config(net, &bad, false);
        let m = wait_metrics(net, Duration::from_secs(4), "file watch failure", |m| {
            reloads(m, "failure") >= 1.0
        });
        assert_eq!((reloads(&m, "failure"), generation(&m)), (1.0, 2.0), "{m}");
        assert_logged_position(&tl, net, line);
        // Checked once: not re-tried every second while the file stays the same.
        std::thread::sleep(Duration::from_millis(2200));
        assert_eq!(reloads(&scrape(net), "failure"), 1.0);
        assert_eq!(calls_to(net, &mut tl, 5, 5), (0, 5));
    });
}

/// The file watch must not miss a save just because the modification time did not move: on
/// file systems with coarse timestamps (1 s on ext3 and many network mounts, 2 s on FAT) an
/// operator who saves a broken file and then the fix within the same tick leaves both with one
/// mtime. Simulated by giving the fix the broken file's mtime: trunkline must still pick it up.
#[test]
fn file_watch_sees_a_fix_saved_within_the_same_timestamp() {
    isolated(
        "file_watch_sees_a_fix_saved_within_the_same_timestamp",
        false,
        |net| {
            let tl = Trunkline::start(net, &plan(net, false));
            let (bad, _) = broken(net);
            replace_config(net, &bad, false);
            wait_metrics(net, Duration::from_secs(4), "broken file seen", |m| {
                reloads(m, "failure") == 1.0
            });
            replace_config(net, &plan(net, true), true);
            let m = wait_metrics(net, Duration::from_secs(4), "fix picked up", |m| {
                generation(m) == 2.0
            });
            assert_eq!(reloads(&m, "failure"), 1.0);
            assert!(tl.log_text().contains("file change"));
        },
    );
}

/// A file that parses but names a CA file that does not exist is refused whole at reload, as
/// `trunkline check` would refuse it: the old plan keeps serving and the failure is counted.
#[test]
fn reload_with_missing_tls_file_changes_nothing() {
    isolated(
        "reload_with_missing_tls_file_changes_nothing",
        false,
        |net| {
            let mut tl = Trunkline::start(net, &plan(net, false));
            let admin = net.metrics_addr();
            let bad = plan(net, true).replace(
            &format!(
                "  pbx2: {{ address: 127.0.0.1:{}, transport: udp }}",
                net.trunk(1)
            ),
            &format!(
                "  pbx2: {{ address: 127.0.0.1:{}, transport: tls, tls: {{ ca: no-such-ca.pem }} }}",
                net.trunk(1)
            ),
        );
            assert!(bad.contains("no-such-ca.pem"), "{bad}");
            replace_config(net, &bad, false);
            let (code, body) = http(admin, "POST", "/reload");
            assert_eq!(code, 422, "{body}");
            assert!(body.contains("no-such-ca.pem"), "{body}");
            let m = scrape(net);
            assert_eq!(generation(&m), 1.0, "{m}");
            assert!(reloads(&m, "failure") >= 1.0);
            assert_eq!(calls_to(net, &mut tl, 1, 5), (5, 0), "old plan serves");
        },
    );
}
