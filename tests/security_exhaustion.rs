//! Issue 8, resource exhaustion on the SIP stream listeners: idle TCP connections beyond the
//! per-source and global caps are refused, idle and half-sent ones are closed by their
//! timeouts, and a real client still gets through; silent sockets on the TLS port are closed
//! by the handshake timeout and do not lock a real TLS client out. Attackers use their own
//! loopback addresses (127.0.0.66 and up) inside the test's network namespace.

mod common;
#[path = "common/sec.rs"]
mod sec;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sec::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A trunk on 127.0.0.5 (exempt from the per-source cap) and tight caps so that the limits
/// are reached with a few dozen sockets.
fn tcp_yaml(net: &Net) -> String {
    let base = config_yaml(net, &[], &[]).replace("trunks:\n", "");
    let base = base.replace(
        "dialplan:\n",
        &format!(
            "trunks:\n  pbx: {{ address: 127.0.0.5:{}, transport: tcp }}\ndialplan:\n",
            net.trunk(0)
        ),
    );
    let base = base.replace("route: []", "route: [pbx]");
    with_metrics(
        net,
        &base,
        "limits:\n  tcp: { max_connections: 40, max_per_source: 8, idle_timeout: 4, partial_message_timeout: 1, handshake_timeout: 2 }\n",
    )
}

/// 20 idle connections from one source: 8 are kept (max_per_source), 12 closed at once; a
/// real client from another address gets its OPTIONS answered over TCP; connections beyond
/// the global cap (40) are closed at once; the idle timeout closes the held ones (a trunk's,
/// over the per-source cap, are kept); an unfinished message is closed after
/// partial_message_timeout. Every refusal and close is counted by reason.
#[test]
fn idle_tcp_connections_are_capped_and_timed_out() {
    isolated(
        "idle_tcp_connections_are_capped_and_timed_out",
        true,
        |net| {
            raise_nofile();
            let mut tl = Trunkline::start(net, &tcp_yaml(net));
            let sip = net.sip_addr();
            let soon = || Instant::now() + Duration::from_secs(2);
            let t0 = Instant::now();
            let mut flood: Vec<TcpStream> = (0..20)
                .map(|_| connect_from(ip(66), sip).expect("connect"))
                .collect();
            // The refused ones are closed at once; the admitted ones stay open.
            assert_eq!(
                wait_open_at_most(&flood, 8, soon()),
                8,
                "20 from one source, max_per_source 8"
            );
            flood.retain(is_open);
            // A real SIP-over-TCP client is not affected.
            let mut real = connect_from(ip(1), sip).expect("real client connects");
            assert_eq!(
                tcp_options(&mut real, 1, Duration::from_secs(5)),
                Some(200),
                "a real client's OPTIONS over TCP"
            );
            drop(real);
            // The trunk may hold more than max_per_source.
            let mut trunk: Vec<TcpStream> = (0..12)
                .map(|_| connect_from(ip(5), sip).expect("trunk connects"))
                .collect();
            // Global cap: .66: 8, trunk: 12 (counted, never refused), .67-.69: 20 of 24 -> 40.
            let mut more = Vec::new();
            for src in 67..=69 {
                for _ in 0..8 {
                    more.push(connect_from(ip(src), sip).expect("connect"));
                }
            }
            assert_eq!(
                wait_open_at_most(&more, 20, soon()),
                20,
                "limits.tcp.max_connections (40) holds"
            );
            more.retain(is_open);
            assert!(trunk.iter().all(is_open), "trunk connections are exempt");
            // Half a message: closed after partial_message_timeout (1 s), before the idle timeout.
            drop(trunk.pop());
            let mut half = None;
            let until = soon();
            while half.is_none() && Instant::now() < until {
                // the trunk's slot is given back asynchronously
                let s = connect_from(ip(71), sip).expect("connect");
                std::thread::sleep(Duration::from_millis(20));
                if is_open(&s) {
                    half = Some(s);
                }
            }
            let mut half = half.expect("a slot after a trunk connection closed");
            std::io::Write::write_all(
                &mut half,
                b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.71;branch=z9hG4bKh\r\n",
            )
            .expect("send half a message");
            let h0 = Instant::now();
            assert!(
                closed_within(&mut half, Duration::from_millis(2500)),
                "an unfinished message is not held for ever"
            );
            assert!(
                h0.elapsed() >= Duration::from_millis(800),
                "{:?}",
                h0.elapsed()
            );
            // Idle: every held attacker connection is closed once idle_timeout (4 s) has passed.
            flood.extend(more);
            assert_eq!(flood.len(), 28);
            assert!(flood.iter().all(is_open) || t0.elapsed() >= Duration::from_secs(4));
            let left = wait_open_at_most(&flood, 0, t0 + Duration::from_secs(9));
            assert_eq!(left, 0, "idle connections outlived the idle timeout");
            assert!(
                t0.elapsed() >= Duration::from_millis(3900),
                "closed before idle_timeout: {:?}",
                t0.elapsed()
            );
            // The trunk's connections stay.
            assert!(
                trunk.iter().all(is_open),
                "trunk connections are not closed for idleness"
            );
            // And a new real client gets through again.
            let mut real = connect_from(ip(1), sip).expect("real client connects");
            assert_eq!(tcp_options(&mut real, 2, Duration::from_secs(5)), Some(200));
            let m = net.metrics_addr();
            let refused = |r: &str| {
                metric_value(
                    m,
                    "trunkline_stream_connections_refused_total",
                    &[("transport", "TCP"), ("reason", r)],
                )
            };
            let closed = |r: &str| {
                metric_value(
                    m,
                    "trunkline_stream_connections_closed_total",
                    &[("transport", "TCP"), ("reason", r)],
                )
            };
            assert_eq!(refused("source_limit"), 12.0);
            assert!(refused("global_limit") >= 4.0);
            assert_eq!(closed("idle"), 28.0);
            assert_eq!(closed("partial_message"), 1.0);
            tl.assert_alive();
        },
    );
}

// ---------------------------------------------------------------------------------------------
// TLS

fn tls_files(net: &Net) -> (String, String, rustls::RootCertStore) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "sec CA");
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("leaf");
    leaf.distinguished_name
        .push(DnType::CommonName, "trunkline");
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &ca).expect("sign");
    let (c, k) = (net.dir.join("tl.crt"), net.dir.join("tl.key"));
    std::fs::write(&c, cert.pem()).expect("write cert");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    (c.display().to_string(), k.display().to_string(), roots)
}

/// A TLS handshake and one OPTIONS over it, from 127.0.0.1; the status, or why not.
fn tls_options(
    to: SocketAddr,
    roots: &rustls::RootCertStore,
    limit: Duration,
) -> Result<u16, String> {
    use std::io::{Read, Write};
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots.clone())
        .with_no_client_auth(),
    );
    let sock = TcpStream::connect_timeout(&to, limit).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(cfg, name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let local = tls.sock.local_addr().map_err(|e| e.to_string())?;
    let req = format!(
        "OPTIONS sips:{to} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK-sectls\r\n\
         Max-Forwards: 70\r\nFrom: <sips:p@{local}>;tag=t1\r\nTo: <sips:{to}>\r\n\
         Call-ID: sectls@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes())
        .map_err(|e| format!("handshake/send: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = tls.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed".into());
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "no status".into())
}

/// 1,100 silent sockets on the TLS port from eleven attacker addresses (more than the 1,024
/// handshakes a listener takes at once): a real TLS client still completes its handshake and
/// gets its OPTIONS answered, and the silent sockets are closed by the handshake timeout.
#[test]
fn silent_tls_sockets_do_not_lock_out_a_real_client() {
    isolated(
        "silent_tls_sockets_do_not_lock_out_a_real_client",
        true,
        |net| {
            raise_nofile();
            let (cert, key, roots) = tls_files(net);
            let tls_port = net.base + 51;
            let tls = SocketAddr::from(([127, 0, 0, 1], tls_port));
            let yaml = with_metrics(
                net,
                &config_yaml(net, &[Trunk { name: "pbx", port: net.trunk(0) }], &["pbx"])
                    .replace(
                        "media:\n",
                        &format!(
                            "  - {{ transport: tls, address: 127.0.0.1:{tls_port}, cert: {cert}, key: {key} }}\nmedia:\n"
                        ),
                    ),
                "limits:\n  tcp: { max_per_source: 16, handshake_timeout: 2 }\n",
            );
            let mut tl = spawn_with_nofile(4096, || Trunkline::start(net, &yaml));
            assert_eq!(
                tls_options(tls, &roots, Duration::from_secs(5)),
                Ok(200),
                "TLS works before the attack"
            );
            let t0 = Instant::now();
            let mut silent: Vec<TcpStream> = Vec::new();
            for src in 66..77u8 {
                let batch: Vec<TcpStream> = (0..100)
                    .map(|_| connect_from(ip(src), tls).expect("connect"))
                    .collect();
                // One source at a time, and until trunkline has taken them from the accept
                // queue (bounded wait): a queue overflowing would leave client-side sockets
                // the server never saw.
                wait_open_at_most(&batch, 16, Instant::now() + Duration::from_millis(300));
                silent.extend(batch);
            }
            // The real client, while all of them are open.
            let r = tls_options(tls, &roots, Duration::from_secs(3));
            assert_eq!(r, Ok(200), "a real TLS client during the attack");
            // Every silent socket is closed by the handshake timeout (2 s), not held for 10 s.
            let deadline = t0 + Duration::from_secs(5);
            let mut open = 0;
            for s in silent.iter_mut() {
                let left = deadline.saturating_duration_since(Instant::now());
                if !closed_within(s, left) {
                    open += 1;
                }
            }
            assert_eq!(open, 0, "silent TLS sockets still open after 5 s");
            let m = net.metrics_addr();
            let refused = metric_value(
                m,
                "trunkline_stream_connections_refused_total",
                &[("transport", "TLS"), ("reason", "source_limit")],
            );
            let timed_out = metric_value(
                m,
                "trunkline_stream_connections_closed_total",
                &[("transport", "TLS"), ("reason", "handshake_timeout")],
            );
            assert!(refused >= 900.0, "refused over max_per_source: {refused}");
            assert!(timed_out >= 100.0, "handshake timeouts: {timed_out}");
            tl.assert_alive();
        },
    );
}
