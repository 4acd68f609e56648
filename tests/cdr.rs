//! Call detail records (`cdr:`), end to end: SIPp calls with mixed outcomes (answered with
//! RTP, busy, cancelled, failover past a 503) through trunkline; the CDR file holds exactly one
//! record per call with the right codes, attempts, who hung up, durations close to SIPp's and
//! media quality for the answered ones; CSV; a sink that cannot write (/dev/full) costs the
//! calls nothing and is counted; a CDR path in a missing directory is refused at `check` and
//! at start.

mod common;

#[path = "support/tone.rs"]
mod tone;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The dial plan: each outcome its own number and trunks.
fn cdr_config(net: &Net, cdr: &str) -> String {
    let t = [
        Trunk {
            name: "pbx",
            port: net.trunk(0),
        },
        Trunk {
            name: "busy",
            port: net.trunk(1),
        },
        Trunk {
            name: "cancel",
            port: net.trunk(2),
        },
        Trunk {
            name: "down",
            port: net.trunk(3),
        },
    ];
    let rules: [(&str, &[&str]); 4] = [
        ("^1000$", &["pbx"]),
        ("^2000$", &["busy"]),
        ("^3000$", &["cancel"]),
        ("^4000$", &["down", "pbx"]),
    ];
    with_metrics(net, &config_yaml_rules(net, &t, &rules), cdr)
}

/// The JSON records of `path` once it holds `n` lines (at most `limit` to wait).
fn records(path: &Path, n: usize, limit: Duration) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    poll_until(Instant::now() + limit, Duration::from_millis(50), || {
        lines = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        lines.len() >= n
    });
    lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// Runs `calls` UAC calls of `scenario` to `number` against a UAS running `uas` on trunk port
/// `port`. Each run has its own UAC port: the scenarios' Via branches repeat from one run to
/// the next, and trunkline would take a new run's INVITE for a retransmission of the last
/// run's (same branch, same sent-by) while that transaction lingers (RFC 3261 §17.2.3).
#[allow(clippy::too_many_arguments)]
fn run_calls(
    net: &Net,
    tl: &Trunkline,
    name: &str,
    (scenario, uas): (&str, &str),
    port: u16,
    number: &str,
    calls: u32,
    uas_args: &[&str],
) {
    let callee = Sipp::uas(
        net,
        &format!("{name}-uas"),
        uas,
        port,
        net.sipp_media(1),
        calls,
    )
    .args(uas_args)
    .spawn();
    wait_udp_bound(port, Duration::from_secs(5));
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let uac_port = net.spare(10 + run).to_string();
    let caller = Sipp::uac(net, &format!("{name}-uac"), scenario, calls, 20)
        .args(&["-s", number, "-p", &uac_port])
        .run(Duration::from_secs(40));
    caller.assert_all_ok(u64::from(calls), &tl.log_tail(30));
    callee
        .wait(Duration::from_secs(15))
        .assert_all_ok(u64::from(calls), &tl.log_tail(30));
}

/// UAC runs so far in this process (each its own port).
static RUNS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

fn of<'a>(recs: &'a [serde_json::Value], callee: &str) -> Vec<&'a serde_json::Value> {
    recs.iter().filter(|r| r["callee"] == callee).collect()
}

#[test]
fn every_call_gets_one_record_with_its_outcome() {
    require_sipp();
    isolated(
        "every_call_gets_one_record_with_its_outcome",
        false,
        |net| {
            std::fs::create_dir_all(net.dir.join("cdr")).expect("mkdir");
            let path = net.dir.join("cdr/cdr.jsonl");
            std::fs::write(net.dir.join("tone.wav"), tone::tone_wav()).expect("tone.wav");
            let yaml = cdr_config(net, &format!("cdr: {{ file: {} }}\n", path.display()));
            let mut tl = Trunkline::start(net, &yaml);
            let (answered, busy, cancelled, failover) = (6u32, 10u32, 10u32, 10u32);
            // Answered, with RTP the callee echoes: 2.5 s between ACK and BYE in the scenario.
            let rtp = ("uac_rtp.xml", "uas_basic.xml");
            run_calls(
                net,
                &tl,
                "rtp",
                rtp,
                net.trunk(0),
                "1000",
                answered,
                &["-rtp_echo"],
            );
            let b = ("uac_busy.xml", "uas_busy.xml");
            run_calls(net, &tl, "busy", b, net.trunk(1), "2000", busy, &[]);
            let c = ("uac_cancel.xml", "uas_cancel.xml");
            run_calls(net, &tl, "cancel", c, net.trunk(2), "3000", cancelled, &[]);
            // Failover: "down" answers 503, "pbx" answers.
            let down = Sipp::uas(
                net,
                "down-uas",
                "uas_unavailable.xml",
                net.trunk(3),
                net.sipp_media(2),
                failover,
            )
            .spawn();
            wait_udp_bound(net.trunk(3), Duration::from_secs(5));
            let basic = ("uac_basic.xml", "uas_basic.xml");
            run_calls(net, &tl, "fo", basic, net.trunk(0), "4000", failover, &[]);
            down.wait(Duration::from_secs(10))
                .assert_all_ok(u64::from(failover), "503 trunk");
            // No route: refused 404 by trunkline itself, before they become calls.
            let unrouted = 5u32;
            let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let uac_port = net.spare(10 + run).to_string();
            Sipp::uac(net, "nr-uac", "uac_notfound.xml", unrouted, 20)
                .args(&["-s", "9999", "-p", &uac_port])
                .run(Duration::from_secs(30))
                .assert_all_ok(u64::from(unrouted), &tl.log_tail(30));

            let total = (answered + busy + cancelled + failover + unrouted) as usize;
            let recs = records(&path, total, Duration::from_secs(10));
            assert_eq!(recs.len(), total, "{}", tl.log_tail(30));
            // One per call: every leg A Call-ID once.
            let ids: std::collections::BTreeSet<String> =
                recs.iter().map(|r| r["call_id"].to_string()).collect();
            assert_eq!(ids.len(), total);
            for r in of(&recs, "1000") {
                assert_eq!(r["final_code"], 200, "{r}");
                assert_eq!(r["hangup"], "caller", "{r}");
                assert_eq!(
                    r["attempts"],
                    serde_json::json!([{"trunk": "pbx", "code": 200}])
                );
                let billable = r["billable_ms"].as_u64().expect("billable_ms");
                assert!(
                    (2500..2600).contains(&billable),
                    "SIPp holds the call 2500 ms: {r}"
                );
                assert_eq!(r["billsec"], 3);
                assert!(r["answer"].is_string() && r["ringing"].is_string(), "{r}");
                assert_eq!(r["a"]["codec"], "PCMU", "{r}");
                // The caller played 100 packets; the callee echoed them back.
                for leg in ["a", "b"] {
                    let pk = r[leg]["packets_in"].as_u64().unwrap_or(0);
                    assert!(pk >= 90, "leg {leg} received {pk}: {r}");
                    assert!(r[leg]["mos_in"].as_f64().is_some_and(|m| m > 4.0), "{r}");
                    assert!(r[leg]["jitter_in_ms"].is_number(), "{r}");
                }
                assert!(r["b_call_id"].as_str().is_some_and(|s| !s.contains("uac-")));
            }
            assert_eq!(of(&recs, "1000").len(), answered as usize);
            for r in of(&recs, "2000") {
                assert_eq!(
                    (r["final_code"].as_u64(), r["hangup"].as_str()),
                    (Some(486), Some("callee")),
                    "{r}"
                );
                assert_eq!(
                    r["attempts"],
                    serde_json::json!([{"trunk": "busy", "code": 486}])
                );
                assert_eq!(r["billable_ms"], 0);
                assert!(r["answer"].is_null());
            }
            assert_eq!(of(&recs, "2000").len(), busy as usize);
            for r in of(&recs, "3000") {
                assert_eq!(
                    (r["final_code"].as_u64(), r["hangup"].as_str()),
                    (Some(487), Some("caller")),
                    "{r}"
                );
                assert_eq!(r["attempts"][0]["trunk"], "cancel");
            }
            assert_eq!(of(&recs, "3000").len(), cancelled as usize);
            for r in of(&recs, "4000") {
                assert_eq!(r["final_code"], 200, "{r}");
                assert_eq!(
                    r["attempts"],
                    serde_json::json!([{"trunk": "down", "code": 503}, {"trunk": "pbx", "code": 200}]),
                    "{r}"
                );
                assert_eq!(r["dest_trunk"], "pbx");
            }
            assert_eq!(of(&recs, "4000").len(), failover as usize);
            for r in of(&recs, "9999") {
                assert_eq!(
                    (r["final_code"].as_u64(), r["hangup"].as_str()),
                    (Some(404), Some("refused")),
                    "{r}"
                );
                assert_eq!(r["attempts"], serde_json::json!([]));
                assert!(r["dest_trunk"].is_null(), "{r}");
            }
            assert_eq!(of(&recs, "9999").len(), unrouted as usize);
            let b_ids: std::collections::BTreeSet<String> =
                recs.iter().map(|r| r["b_call_id"].to_string()).collect();
            assert_eq!(b_ids.len(), total, "every record has its own b_call_id");
            // The grep-able line per call end.
            let log = tl.log_text();
            assert_eq!(
                log.matches("call ended").count(),
                total,
                "{}",
                tl.log_tail(10)
            );
            let m = scrape(net);
            let written = metric(
                &m,
                "trunkline_cdr_records_total",
                &[("sink", "file"), ("result", "written")],
            );
            assert_eq!(written, Some(total as f64), "{m}");
            tl.assert_alive();
        },
    );
}

#[test]
fn csv_records_and_a_sink_that_cannot_write() {
    require_sipp();
    isolated("csv_records_and_a_sink_that_cannot_write", false, |net| {
        let path = net.dir.join("cdr.csv");
        let yaml = cdr_config(
            net,
            &format!("cdr: {{ file: {}, format: csv }}\n", path.display()),
        );
        let mut tl = Trunkline::start(net, &yaml);
        let b = ("uac_busy.xml", "uas_busy.xml");
        run_calls(net, &tl, "busy", b, net.trunk(1), "2000", 5, &[]);
        let mut text = String::new();
        poll_until(
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                text = std::fs::read_to_string(&path).unwrap_or_default();
                text.lines().count() >= 6
            },
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "header + 5 records: {text}");
        assert!(lines[0].starts_with("call,call_id,b_call_id,start,"));
        let header: Vec<&str> = lines[0].split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
        for l in &lines[1..] {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), header.len(), "{l}");
            assert_eq!(f[col("final_code")], "486");
            assert_eq!(f[col("hangup")], "callee");
            assert_eq!(f[col("attempts")], "busy:486");
        }
        tl.stop();

        // A full disk: every write fails. The calls go on; each record is counted.
        let yaml = cdr_config(net, "cdr: { file: /dev/full }\n");
        let mut tl = Trunkline::start(net, &yaml);
        let basic = ("uac_basic.xml", "uas_basic.xml");
        run_calls(net, &tl, "full", basic, net.trunk(0), "1000", 5, &[]);
        let mut m = String::new();
        poll_until(
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(100),
            || {
                m = scrape(net);
                metric(
                    &m,
                    "trunkline_cdr_records_total",
                    &[("sink", "file"), ("result", "error")],
                ) == Some(5.0)
            },
        );
        assert_eq!(
            metric(
                &m,
                "trunkline_cdr_records_total",
                &[("sink", "file"), ("result", "error")]
            ),
            Some(5.0),
            "{m}"
        );
        let log = tl.log_text();
        assert_eq!(
            log.matches("records cannot be written").count(),
            1,
            "logged once: {}",
            tl.log_tail(20)
        );
        tl.assert_alive();
    });
}

#[test]
fn a_cdr_file_in_a_missing_directory_is_refused_at_check_and_at_start() {
    isolated(
        "a_cdr_file_in_a_missing_directory_is_refused_at_check_and_at_start",
        false,
        |net| {
            let missing = net.dir.join("no-such-dir/cdr.jsonl");
            let yaml = cdr_config(net, &format!("cdr: {{ file: {} }}\n", missing.display()));
            let cfg = net.dir.join("bad.yaml");
            std::fs::write(&cfg, &yaml).expect("write");
            for cmd in ["check", "run"] {
                let out = Command::new(trunkline_bin())
                    .args([cmd, "--config"])
                    .arg(&cfg)
                    .output()
                    .expect("run trunkline");
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(!out.status.success(), "{cmd}: {err}");
                assert!(
                    err.contains("cdr.file") && err.contains("directory does not exist"),
                    "{cmd}: {err}"
                );
            }
        },
    );
}

#[test]
fn calls_ended_by_shutdown_are_recorded_before_the_process_exits() {
    require_sipp();
    isolated(
        "calls_ended_by_shutdown_are_recorded_before_the_process_exits",
        false,
        |net| {
            let path = net.dir.join("cdr.jsonl");
            let yaml = cdr_config(
                net,
                &format!(
                    "cdr: {{ file: {} }}\nshutdown: {{ drain: 1 }}\n",
                    path.display()
                ),
            );
            let mut tl = Trunkline::start(net, &yaml);
            let calls = 3;
            let _callee = Sipp::uas(
                net,
                "uas",
                "uas_basic.xml",
                net.trunk(0),
                net.sipp_media(1),
                calls,
            )
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            // The caller would hang up after a minute: trunkline's shutdown comes first.
            let _caller = Sipp::uac(net, "uac", "uac_basic.xml", calls, 20)
                .args(&["-s", "1000"])
                .pause_ms(60_000)
                .spawn();
            let up = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(100),
                || {
                    metric(
                        &scrape(net),
                        "trunkline_calls_total",
                        &[("direction", "outbound"), ("status_class", "2xx")],
                    ) == Some(f64::from(calls))
                },
            );
            assert!(up, "calls not answered: {}", tl.log_tail(20));
            assert!(
                !path.exists()
                    || std::fs::read_to_string(&path)
                        .unwrap_or_default()
                        .is_empty()
            );
            tl.signal(libc::SIGTERM);
            let st = tl.wait_exit(Duration::from_secs(15));
            assert!(
                st.is_some_and(|s| s.success()),
                "{st:?}: {}",
                tl.log_tail(20)
            );
            // Written by the time the process is gone.
            let recs = records(&path, calls as usize, Duration::ZERO);
            assert_eq!(recs.len(), calls as usize, "{}", tl.log_tail(20));
            for r in &recs {
                assert_eq!(
                    (r["final_code"].as_u64(), r["hangup"].as_str()),
                    (Some(200), Some("shutdown")),
                    "{r}"
                );
                assert!(r["billable_ms"].as_u64().is_some_and(|b| b >= 1000), "{r}");
            }
        },
    );
}
