//! Issue 8, the admin endpoint (`metrics.listen`): an idle-connection flood neither spins the
//! accept loop nor keeps `/health` and SIP over TCP from answering; `POST /reload` refuses
//! cross-origin requests always and needs the bearer token off loopback; sources outside
//! `metrics.allow` get no answer at all; `trunkline check` refuses an open listener without an
//! allow-list and warns about a TLS-to-plaintext failover.

mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::sec::*;
use common::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn base_yaml(net: &Net) -> String {
    config_yaml(
        net,
        &[Trunk {
            name: "pbx",
            port: net.trunk(0),
        }],
        &["pbx"],
    )
}

/// 5,000 idle connections to the metrics port of a trunkline limited to 256 file descriptors:
/// over a 3 s window it uses well under a core (no accept spin on EMFILE), `/health` answers,
/// and SIP over TCP still works.
#[test]
fn idle_admin_flood_neither_spins_nor_blocks_health() {
    isolated(
        "idle_admin_flood_neither_spins_nor_blocks_health",
        true,
        |net| {
            raise_nofile();
            let yaml = with_metrics(net, &base_yaml(net), "");
            let mut tl = spawn_with_nofile(256, || Trunkline::start(net, &yaml));
            let admin = net.metrics_addr();
            assert_eq!(
                http_from(ip(1), admin, "GET", "/health", &[], Duration::from_secs(5)).map(|r| r.0),
                Some(200)
            );
            let mut flood = Vec::with_capacity(5000);
            for i in 0..5000u32 {
                // from several addresses: no single source port range runs out
                let src = ip(66 + (i % 8) as u8);
                flood.push(connect_nonblocking(src, admin).expect("connect"));
            }
            // Wait (bounded) until the accept loop has been through the queue: evictions counted.
            let evicted = || {
                metric_value(
                    admin,
                    "trunkline_admin_requests_refused_total",
                    &[("reason", "evicted")],
                )
            };
            poll_until(
                Instant::now() + Duration::from_secs(5),
                Duration::from_millis(50),
                || evicted() >= 100.0,
            );
            let pid = tl.pid();
            let (c0, t0) = (cpu_seconds(pid), Instant::now());
            let window = t0 + Duration::from_secs(3);
            while Instant::now() < window {
                std::thread::sleep(Duration::from_millis(100));
            }
            let used = (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64();
            assert!(
            used < 0.5,
            "trunkline used {used:.2} core-seconds per second with 5,000 idle admin connections"
        );
            // /health answers while the flood is still open.
            let h = http_from(ip(1), admin, "GET", "/health", &[], Duration::from_secs(5));
            assert_eq!(h.map(|r| r.0), Some(200), "/health during the flood");
            let mut sip = TcpStream::connect(net.sip_addr()).expect("SIP over TCP connects");
            assert_eq!(
                tcp_options(&mut sip, 1, Duration::from_secs(5)),
                Some(200),
                "SIP over TCP during the flood"
            );
            let evicted = metric_value(
                admin,
                "trunkline_admin_requests_refused_total",
                &[("reason", "evicted")],
            );
            assert!(
                evicted >= 100.0,
                "idle admin connections evicted: {evicted}"
            );
            drop(flood);
            tl.assert_alive();
        },
    );
}

/// On loopback, `POST /reload` works as before but never with an `Origin` header or from
/// another site (a browser page cannot reload trunkline).
#[test]
fn loopback_reload_refuses_cross_origin() {
    isolated("loopback_reload_refuses_cross_origin", true, |net| {
        let yaml = with_metrics(net, &base_yaml(net), "");
        let mut tl = Trunkline::start(net, &yaml);
        let admin = net.metrics_addr();
        let post = |headers: &[&str]| {
            http_from(
                ip(1),
                admin,
                "POST",
                "/reload",
                headers,
                Duration::from_secs(10),
            )
            .map(|r| r.0)
        };
        assert_eq!(post(&["Origin: http://evil.example"]), Some(403));
        assert_eq!(post(&["Origin: null"]), Some(403));
        assert_eq!(post(&["Sec-Fetch-Site: cross-site"]), Some(403));
        assert_eq!(
            metric_value(
                admin,
                "trunkline_config_reloads_total",
                &[("result", "success")]
            ),
            0.0,
            "no refused request reloaded"
        );
        assert_eq!(post(&[]), Some(200), "a plain loopback reload still works");
        assert_eq!(
            metric_value(
                admin,
                "trunkline_admin_requests_refused_total",
                &[("reason", "cross_origin")]
            ),
            3.0
        );
        tl.assert_alive();
    });
}

/// A listener on 0.0.0.0 with `allow: [127.0.0.1/32]` and a token: reload needs
/// `Authorization: Bearer <token>` (401 without or with a wrong one; 403 with an Origin even
/// with the token); 127.0.0.66 is outside the allow-list and gets no answer at all, for
/// `/metrics` too. Without a token, reload is disabled (403).
#[test]
fn open_admin_listener_needs_allow_list_and_token() {
    isolated(
        "open_admin_listener_needs_allow_list_and_token",
        true,
        |net| {
            let token = "0123456789abcdef-sec-token";
            let port = net.metrics();
            let admin = SocketAddr::from(([127, 0, 0, 1], port));
            let open = |extra: &str| {
                format!(
                    "{}metrics:\n  listen: 0.0.0.0:{port}\n  allow: [127.0.0.1/32]\n{extra}",
                    base_yaml(net)
                )
            };
            let mut tl = Trunkline::start(net, &open(&format!("  reload_token: {token}\n")));
            let post = |src: IpAddr, headers: &[&str]| {
                http_from(
                    src,
                    admin,
                    "POST",
                    "/reload",
                    headers,
                    Duration::from_secs(10),
                )
                .map(|r| r.0)
            };
            let bearer = format!("Authorization: Bearer {token}");
            assert_eq!(post(ip(1), &[]), Some(401), "no token");
            assert_eq!(
                post(ip(1), &["Authorization: Bearer 0123456789abcdef-sec-tokeX"]),
                Some(401),
                "wrong token"
            );
            assert_eq!(
                post(ip(1), &[&bearer, "Origin: http://evil.example"]),
                Some(403),
                "cross-origin, even with the token"
            );
            assert_eq!(post(ip(1), &[&bearer]), Some(200), "the token reloads");
            // Outside the allow-list: closed without a byte.
            assert_eq!(post(ip(66), &[&bearer]), None);
            assert_eq!(
                http_from(
                    ip(66),
                    admin,
                    "GET",
                    "/metrics",
                    &[],
                    Duration::from_secs(5)
                ),
                None
            );
            let mut s = connect_from(ip(66), admin).expect("tcp connects");
            assert!(
                closed_within(&mut s, Duration::from_secs(2)),
                "a source outside metrics.allow is closed at once"
            );
            assert_eq!(
                metric_value(
                    admin,
                    "trunkline_config_reloads_total",
                    &[("result", "success")]
                ),
                1.0,
                "exactly the authorised reload"
            );
            assert!(
                metric_value(
                    admin,
                    "trunkline_admin_requests_refused_total",
                    &[("reason", "not_allowed")]
                ) >= 3.0
            );
            tl.stop();
            drop(tl);
            // No token: reload is off on a non-loopback listener.
            let mut tl = Trunkline::start(net, &open(""));
            assert_eq!(post(ip(1), &[]), Some(403));
            assert_eq!(post(ip(1), &[&bearer]), Some(403));
            assert_eq!(
                http_from(ip(1), admin, "GET", "/health", &[], Duration::from_secs(5)).map(|r| r.0),
                Some(200)
            );
            tl.assert_alive();
        },
    );
}

/// `trunkline check`: a metrics listener off loopback without `allow` is an error with
/// FILE:LINE:COLUMN; a route failing over from a TLS trunk to a UDP one is a warning, exit 0.
#[test]
fn check_refuses_open_admin_and_warns_on_tls_to_plaintext_failover() {
    isolated(
        "check_refuses_open_admin_and_warns_on_tls_to_plaintext_failover",
        true,
        |net| {
            let run = |yaml: &str| {
                let f = net.dir.join("check.yaml");
                std::fs::write(&f, yaml).expect("write");
                let out = std::process::Command::new(trunkline_bin())
                    .arg("check")
                    .arg("--config")
                    .arg(&f)
                    .output()
                    .expect("run check");
                (
                    out.status.success(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                    f,
                )
            };
            let base = base_yaml(net);
            let (ok, err, f) = run(&format!("{base}metrics:\n  listen: 0.0.0.0:9464\n"));
            assert!(!ok, "an open admin listener without allow passed check");
            let line = base.lines().count() + 2;
            assert!(
                err.contains(&format!("{}:{line}:11: metrics.listen", f.display())),
                "{err}"
            );
            let (ok, _, _) = run(&format!(
                "{base}metrics:\n  listen: 0.0.0.0:9464\n  allow: [10.0.0.0/8]\n"
            ));
            assert!(ok, "with an allow-list it passes");
            let tls = base
                .replace(
                    "trunks:\n",
                    "trunks:\n  sec: { address: 127.0.0.1:5061, transport: tls }\n",
                )
                .replace("route: [pbx]", "route: [sec, pbx]");
            let (ok, err, f) = run(&tls);
            assert!(ok, "a warning is not an error: {err}");
            assert!(
                err.contains(&format!("{}:", f.display()))
                    && err.contains("warning: dialplan[0].route: fails over from TLS trunk `sec` to plaintext trunk `pbx` (udp)"),
                "{err}"
            );
            let (ok, err, _) = run(&base);
            assert!(ok && !err.contains("warning"), "{err}");
        },
    );
}
