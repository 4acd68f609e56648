//! Issue 8, resource exhaustion on the SIP stream listeners: idle TCP connections beyond the
//! per-source and global caps are refused, idle and half-sent ones are closed by their
//! timeouts, and a real client still gets through; silent sockets on the TLS port are closed
//! by the handshake timeout and do not lock a real TLS client out. Attackers use their own
//! loopback addresses (127.0.0.66 and up) inside the test's network namespace.

mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sec::*;
use common::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// The harness's configuration with one UDP trunk `pbx` and every call routed to it.
fn pbx_yaml(net: &Net) -> String {
    config_yaml(
        net,
        &[Trunk {
            name: "pbx",
            port: net.trunk(0),
        }],
        &["pbx"],
    )
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
/// real client from another address gets its OPTIONS answered over TCP; at the global cap
/// (40) a new connection closes the oldest one that never sent a message, so a real client
/// still gets in; the idle timeout closes the held ones (a trunk's, over the per-source cap,
/// are kept); an unfinished message is closed after partial_message_timeout. Every refusal
/// and close is counted by reason.
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
            let trunk: Vec<TcpStream> = (0..12)
                .map(|_| connect_from(ip(5), sip).expect("trunk connects"))
                .collect();
            // Global cap 40: .66: 8, trunk: 12 (counted, never refused), .67-.69: 24 -> the
            // last 4 close the 4 oldest connections that never said anything (.66's first).
            let mut more = Vec::new();
            for src in 67..=69 {
                for _ in 0..8 {
                    more.push(connect_from(ip(src), sip).expect("connect"));
                }
            }
            assert_eq!(
                wait_open_at_most(&flood, 4, soon()),
                4,
                "at limits.tcp.max_connections the oldest silent connections make room"
            );
            assert!(more.iter().all(is_open), "the newest are kept");
            assert!(is_open(&flood[7]) && !is_open(&flood[0]), "oldest first");
            // A real client at the cap: admitted (another silent one goes), served.
            let mut real = connect_from(ip(1), sip).expect("real client connects");
            assert_eq!(
                tcp_options(&mut real, 3, Duration::from_secs(5)),
                Some(200),
                "a real client while idle sockets fill the global cap"
            );
            assert_eq!(wait_open_at_most(&flood, 3, soon()), 3);
            assert!(trunk.iter().all(is_open), "trunk connections are exempt");
            // Half a message: closed after partial_message_timeout (1 s), before the idle timeout.
            let mut half = connect_from(ip(71), sip).expect("connect");
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
            // Idle: every held attacker connection is closed once idle_timeout (4 s) has passed
            // (the real client's too: it carries no call or registration).
            flood.extend(more);
            flood.push(real);
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
            assert_eq!(
                refused("global_limit"),
                0.0,
                "there was always a silent one to close"
            );
            assert_eq!(
                closed("evicted"),
                6.0,
                "4 for .69, 1 for the real client, 1 for .71"
            );
            assert_eq!(closed("idle"), 8.0 + 24.0 - 6.0 + 1.0);
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
                &pbx_yaml(net)
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
            let deadline = t0 + Duration::from_secs(8);
            let mut open = 0;
            for s in silent.iter_mut() {
                let left = deadline.saturating_duration_since(Instant::now());
                if !closed_within(s, left) {
                    open += 1;
                }
            }
            assert_eq!(
                open, 0,
                "silent TLS sockets still open after 8 s (handshake_timeout 2 s)"
            );
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

// ---------------------------------------------------------------------------------------------
// A call keeps its connection

/// Reads one SIP message from a TCP stream (Content-Length framed) within `limit`.
fn read_tcp_msg(s: &mut TcpStream, pending: &mut Vec<u8>, limit: Duration) -> Option<String> {
    use std::io::Read;
    let end = Instant::now() + limit;
    loop {
        let text = String::from_utf8_lossy(pending).into_owned();
        if let Some(h) = text.find("\r\n\r\n") {
            let len: usize = header(&text, "Content-Length", Some("l"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if pending.len() >= h + 4 + len {
                let msg: Vec<u8> = pending.drain(..h + 4 + len).collect();
                return Some(String::from_utf8_lossy(&msg).into_owned());
            }
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).ok()?;
        let mut buf = [0u8; 8192];
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// A response to `req` (copying Via, From, To with `tag`, Call-ID, CSeq).
fn answer(req: &str, code: &str, tag: &str, contact: &str, body: &str) -> String {
    let mut r = format!("SIP/2.0 {code}\r\n");
    for line in req.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                r.push_str(line);
                r.push_str("\r\n");
            }
            "to" | "t" => {
                r.push_str(line);
                if !line.contains(";tag=") {
                    r.push_str(&format!(";tag={tag}"));
                }
                r.push_str("\r\n");
            }
            _ => {}
        }
    }
    r.push_str(&format!("Contact: <{contact}>\r\n"));
    if !body.is_empty() {
        r.push_str("Content-Type: application/sdp\r\n");
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r
}

/// With `idle_timeout: 1`, a caller's TCP connection that carries an answered call stays open
/// through 2.5 quiet seconds (and its BYE goes through), while an idle connection opened
/// beside it is closed.
#[test]
fn a_tcp_connection_with_a_call_outlives_the_idle_timeout() {
    isolated(
        "a_tcp_connection_with_a_call_outlives_the_idle_timeout",
        true,
        |net| {
            let uas = std::net::UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind uas");
            uas.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let yaml = with_metrics(net, &pbx_yaml(net), "limits:\n  tcp: { idle_timeout: 1 }\n");
            let mut tl = Trunkline::start(net, &yaml);
            let sip = net.sip_addr();
            let mut caller = connect_from(ip(2), sip).expect("caller connects");
            let idle = connect_from(ip(2), sip).expect("second connection");
            let me = caller.local_addr().unwrap();
            let sdp = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";
            let dialog = |method: &str, cseq: u32, branch: &str, to: &str, body: &str| {
                format!(
                    "{method} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch={branch}\r\nMax-Forwards: 70\r\n\
                     From: <sip:caller@{me}>;tag=tc1\r\nTo: {to}\r\nCall-ID: sec-tcp-call@127.0.0.1\r\n\
                     CSeq: {cseq} {}\r\nContact: <sip:caller@{me};transport=tcp>\r\n{}Content-Length: {}\r\n\r\n{body}",
                    method.split(' ').next().unwrap_or(""),
                    if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" },
                    body.len()
                )
            };
            let to0 = format!("<sip:100@{sip}>");
            std::io::Write::write_all(
                &mut caller,
                dialog(
                    &format!("INVITE sip:100@{sip};transport=tcp"),
                    1,
                    "z9hG4bK-tc1",
                    &to0,
                    sdp,
                )
                .as_bytes(),
            )
            .unwrap();
            // The trunk answers.
            let mut buf = [0u8; 65536];
            let end = Instant::now() + Duration::from_secs(5);
            let (invite, from) = loop {
                assert!(Instant::now() < end, "no INVITE at the trunk");
                if let Ok((n, from)) = uas.recv_from(&mut buf) {
                    let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if m.starts_with("INVITE ") {
                        break (m, from);
                    }
                }
            };
            let uas_sdp = "v=0\r\no=u 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7100 RTP/AVP 0\r\n";
            let contact = format!("sip:uas@127.0.0.1:{}", net.trunk(0));
            uas.send_to(
                answer(&invite, "200 OK", "uas1", &contact, uas_sdp).as_bytes(),
                from,
            )
            .unwrap();
            // The caller gets the 200 over TCP and ACKs it.
            let mut pending = Vec::new();
            let ok = loop {
                let m = read_tcp_msg(&mut caller, &mut pending, Duration::from_secs(5))
                    .expect("a response over TCP");
                if status_code(m.as_bytes()).is_some_and(|c| c >= 200) {
                    break m;
                }
            };
            assert_eq!(status_code(ok.as_bytes()), Some(200), "{ok}");
            let to = header(&ok, "To", Some("t")).expect("To").to_string();
            let target = header(&ok, "Contact", Some("m"))
                .and_then(|c| c.split_once('<'))
                .and_then(|(_, r)| r.split_once('>'))
                .map(|(u, _)| u.to_string())
                .expect("Contact");
            std::io::Write::write_all(
                &mut caller,
                dialog(&format!("ACK {target}"), 1, "z9hG4bK-tc2", &to, "").as_bytes(),
            )
            .unwrap();
            // 2.5 quiet seconds: the idle connection goes, the call's stays.
            let quiet = Instant::now() + Duration::from_millis(2500);
            assert_eq!(wait_open_at_most(std::slice::from_ref(&idle), 0, quiet), 0);
            while Instant::now() < quiet {
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(is_open(&caller), "the call's connection was closed as idle");
            // BYE over it: relayed to the trunk and answered.
            std::io::Write::write_all(
                &mut caller,
                dialog(&format!("BYE {target}"), 2, "z9hG4bK-tc3", &to, "").as_bytes(),
            )
            .unwrap();
            let end = Instant::now() + Duration::from_secs(5);
            loop {
                assert!(Instant::now() < end, "no BYE at the trunk");
                if let Ok((n, from)) = uas.recv_from(&mut buf) {
                    let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if m.starts_with("BYE ") {
                        uas.send_to(answer(&m, "200 OK", "uas1", &contact, "").as_bytes(), from)
                            .unwrap();
                        break;
                    }
                }
            }
            let r = loop {
                let m = read_tcp_msg(&mut caller, &mut pending, Duration::from_secs(5))
                    .expect("the BYE's answer over TCP");
                if header(&m, "CSeq", None).is_some_and(|c| c.ends_with("BYE")) {
                    break m;
                }
            };
            assert_eq!(status_code(r.as_bytes()), Some(200), "{r}");
            tl.assert_alive();
        },
    );
}

/// The value of Digest parameter `name` in a challenge.
fn digest_param(challenge: &str, name: &str) -> Option<String> {
    let at = challenge.find(&format!("{name}="))? + name.len() + 1;
    let rest = &challenge[at..];
    Some(match rest.strip_prefix('"') {
        Some(q) => q.split('"').next()?.to_string(),
        None => rest.split([',', ' ']).next()?.to_string(),
    })
}

/// With `idle_timeout: 1`, the TCP connection a phone registered over (Digest, qop=auth)
/// stays open through 2.5 quiet seconds; a connection from the same address that only sent
/// an OPTIONS is closed.
#[test]
fn a_tcp_connection_with_a_registration_outlives_the_idle_timeout() {
    isolated(
        "a_tcp_connection_with_a_registration_outlives_the_idle_timeout",
        true,
        |net| {
            let yaml = with_metrics(
                net,
                &pbx_yaml(net),
                "registrar:\n  domains: [127.0.0.1]\n  users:\n    alice: { password: s3cret }\nlimits:\n  tcp: { idle_timeout: 1 }\n",
            );
            let mut tl = Trunkline::start(net, &yaml);
            let sip = net.sip_addr();
            let mut phone = connect_from(ip(2), sip).expect("phone connects");
            let mut other = connect_from(ip(2), sip).expect("second connection");
            assert_eq!(
                tcp_options(&mut other, 9, Duration::from_secs(5)),
                Some(200)
            );
            let me = phone.local_addr().unwrap();
            let uri = "sip:127.0.0.1";
            let register = |cseq: u32, auth: &str| {
                format!(
                    "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK-reg{cseq}\r\n\
                     Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=r1\r\nTo: <sip:alice@127.0.0.1>\r\n\
                     Call-ID: sec-reg@127.0.0.2\r\nCSeq: {cseq} REGISTER\r\n\
                     Contact: <sip:alice@{me};transport=tcp>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
                )
            };
            let mut pending = Vec::new();
            std::io::Write::write_all(&mut phone, register(1, "").as_bytes()).unwrap();
            let r = read_tcp_msg(&mut phone, &mut pending, Duration::from_secs(5))
                .expect("REGISTER answered");
            assert_eq!(status_code(r.as_bytes()), Some(401), "{r}");
            let ch = header(&r, "WWW-Authenticate", None).expect("challenge");
            let (realm, nonce) = (
                digest_param(ch, "realm").expect("realm"),
                digest_param(ch, "nonce").expect("nonce"),
            );
            let ha1 = md5_hex(format!("alice:{realm}:s3cret").as_bytes());
            let ha2 = md5_hex(format!("REGISTER:{uri}").as_bytes());
            let (nc, cnonce) = ("00000001", "0a4f113b");
            let resp = md5_hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes());
            let auth = format!(
                "Authorization: Digest username=\"alice\", realm=\"{realm}\", nonce=\"{nonce}\", \
                 uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"\r\n"
            );
            std::io::Write::write_all(&mut phone, register(2, &auth).as_bytes()).unwrap();
            let r = read_tcp_msg(&mut phone, &mut pending, Duration::from_secs(5))
                .expect("REGISTER answered");
            assert_eq!(status_code(r.as_bytes()), Some(200), "{r}");
            // 2.5 quiet seconds: the OPTIONS-only connection goes, the registered one stays.
            let quiet = Instant::now() + Duration::from_millis(2500);
            assert_eq!(wait_open_at_most(std::slice::from_ref(&other), 0, quiet), 0);
            while Instant::now() < quiet {
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(
                is_open(&phone),
                "the registered phone's connection was closed as idle"
            );
            assert_eq!(
                tcp_options(&mut phone, 10, Duration::from_secs(5)),
                Some(200),
                "and it still carries requests"
            );
            tl.assert_alive();
        },
    );
}

/// 30 connections from one source, each with an unframeable message: each is closed and
/// counted, but the log gets one line for that source (the rest are counted as suppressed).
#[test]
fn malformed_tcp_input_is_counted_not_logged_per_connection() {
    isolated(
        "malformed_tcp_input_is_counted_not_logged_per_connection",
        true,
        |net| {
            let yaml = with_metrics(net, &pbx_yaml(net), "");
            let mut tl = Trunkline::start(net, &yaml);
            let sip = net.sip_addr();
            let mut socks = Vec::new();
            for _ in 0..30 {
                let mut s = connect_from(ip(66), sip).expect("connect");
                std::io::Write::write_all(
                    &mut s,
                    b"OPTIONS sip:x SIP/2.0\r\nContent-Length: banana\r\n\r\n",
                )
                .expect("send");
                socks.push(s);
            }
            let left = wait_open_at_most(&socks, 0, Instant::now() + Duration::from_secs(5));
            assert_eq!(left, 0, "unframeable connections are closed");
            let m = net.metrics_addr();
            let mut closed = 0.0;
            poll_until(
                Instant::now() + Duration::from_secs(5),
                Duration::from_millis(20),
                || {
                    closed = metric_value(
                        m,
                        "trunkline_stream_connections_closed_total",
                        &[("transport", "TCP"), ("reason", "unframeable")],
                    );
                    closed >= 30.0
                },
            );
            assert_eq!(closed, 30.0);
            let suppressed = metric_value(m, "trunkline_log_lines_suppressed_total", &[]);
            assert_eq!(suppressed, 29.0);
            let log = tl.log_text();
            let lines = log
                .lines()
                .filter(|l| l.contains("127.0.0.66") && l.contains("unframeable"))
                .count();
            assert_eq!(lines, 1, "log lines about 127.0.0.66:\n{}", tl.log_tail(40));
            tl.assert_alive();
        },
    );
}

/// A trunkline limited to 128 file descriptors and 160 idle TCP connections from ten
/// sources: the SIP accept loop runs out of descriptors, backs off (counted) instead of
/// spinning, and once the idle timeout has closed the held ones a real client is served.
#[test]
fn tcp_accept_backs_off_when_out_of_descriptors() {
    isolated(
        "tcp_accept_backs_off_when_out_of_descriptors",
        true,
        |net| {
            raise_nofile();
            let yaml = with_metrics(net, &pbx_yaml(net), "limits:\n  tcp: { idle_timeout: 2 }\n");
            let mut tl = spawn_with_nofile(128, || Trunkline::start(net, &yaml));
            let sip = net.sip_addr();
            let flood: Vec<TcpStream> = (0..160u32)
                .map(|i| connect_from(ip(66 + (i % 10) as u8), sip).expect("connect"))
                .collect();
            let pid = tl.pid();
            let (c0, t0) = (cpu_seconds(pid), Instant::now());
            let window = t0 + Duration::from_millis(1500);
            while Instant::now() < window {
                std::thread::sleep(Duration::from_millis(50));
            }
            let used = (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64();
            assert!(
                used < 0.5,
                "{used:.2} core-seconds per second while out of descriptors"
            );
            let mut real = connect_from(ip(1), sip).expect("real client connects");
            assert_eq!(
                tcp_options(&mut real, 1, Duration::from_secs(10)),
                Some(200),
                "a real client once the idle connections are gone"
            );
            let errors = metric_value(
                net.metrics_addr(),
                "trunkline_accept_errors_total",
                &[("listener", "tcp"), ("reason", "resources")],
            );
            assert!(errors >= 1.0, "accept errors counted: {errors}");
            drop(flood);
            tl.assert_alive();
        },
    );
}

/// A client that pipelines 6,000 OPTIONS over TCP and never reads the answers (a 4 KB
/// receive buffer): trunkline closes it once 1,024 answers are queued instead of buffering
/// without bound, and serves others meanwhile.
#[test]
fn a_peer_that_never_reads_is_closed() {
    isolated("a_peer_that_never_reads_is_closed", true, |net| {
        let yaml = with_metrics(net, &pbx_yaml(net), "");
        let mut tl = Trunkline::start(net, &yaml);
        let sip = net.sip_addr();
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        s.bind(&SocketAddr::new(ip(66), 0).into()).unwrap();
        s.connect(&sip.into()).unwrap();
        let mut sink: TcpStream = s.into();
        let me = sink.local_addr().unwrap();
        let mut burst = String::new();
        for n in 0..6000u32 {
            burst.push_str(&format!(
                "OPTIONS sip:{sip};transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK-nr{n}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:nr@{me}>;tag=nr\r\nTo: <sip:{sip}>\r\n\
                 Call-ID: nr-{n}@127.0.0.66\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ));
        }
        sink.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The write may fail once trunkline has closed the connection: that is the point.
        let _ = std::io::Write::write_all(&mut sink, burst.as_bytes());
        let mut closed = 0.0;
        poll_until(
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                closed = metric_value(
                    net.metrics_addr(),
                    "trunkline_stream_connections_closed_total",
                    &[("transport", "TCP"), ("reason", "write_backlog")],
                );
                closed >= 1.0
            },
        );
        assert_eq!(closed, 1.0, "a peer that never reads is closed");
        let mut real = connect_from(ip(1), sip).expect("real client connects");
        assert_eq!(tcp_options(&mut real, 1, Duration::from_secs(5)), Some(200));
        drop(sink);
        tl.assert_alive();
    });
}

/// 3,000 idle TCP connections (47 sources, 64 each): trunkline holds little memory per
/// connection, and gives most of it back once they are gone.
#[test]
fn idle_connections_cost_little_memory_and_return_it() {
    isolated(
        "idle_connections_cost_little_memory_and_return_it",
        true,
        |net| {
            raise_nofile();
            let yaml = with_metrics(net, &pbx_yaml(net), "");
            let mut tl = spawn_with_nofile(8192, || Trunkline::start(net, &yaml));
            let pid = tl.pid();
            let sip = net.sip_addr();
            let before = rss_bytes(pid);
            let t_start = Instant::now();
            let mut conns = Vec::new();
            for i in 0..3000u32 {
                conns.push(connect_from(ip(66 + (i / 64) as u8), sip).expect("connect"));
            }
            let tcp_connections = || {
                metric_value(
                    net.metrics_addr(),
                    "trunkline_stream_connections",
                    &[("transport", "TCP")],
                )
            };
            assert!(
                poll_until(
                    Instant::now() + Duration::from_secs(10),
                    Duration::from_millis(50),
                    || tcp_connections() >= 3000.0
                ),
                "3,000 connections not all accepted"
            );
            let held = rss_bytes(pid);
            let per_conn = held.saturating_sub(before) / 3000;
            drop(conns);
            assert!(
                poll_until(
                    Instant::now() + Duration::from_secs(10),
                    Duration::from_millis(50),
                    || tcp_connections() <= 0.0
                ),
                "connections not released"
            );
            let mut after = 0;
            poll_until(
                Instant::now() + Duration::from_secs(5),
                Duration::from_millis(100),
                || {
                    after = rss_bytes(pid);
                    after <= before + (held - before) / 2
                },
            );
            eprintln!(
                "rss before {before} held {held} ({per_conn} B/conn) after {after}; {:?}",
                t_start.elapsed()
            );
            assert!(per_conn < 16 * 1024, "{per_conn} bytes per idle connection");
            assert!(
            after <= before + (held - before) / 2,
            "memory not returned: before {before}, with 3,000 connections {held}, after {after}"
        );
            tl.assert_alive();
        },
    );
}

/// The same flood with a per-source cap too high to help (500): 1,100 silent sockets are more
/// handshakes than a listener keeps (1,024); the oldest are closed for newer ones, so a real
/// TLS client still gets in.
#[test]
fn silent_tls_sockets_from_many_sources_evict_the_oldest() {
    isolated(
        "silent_tls_sockets_from_many_sources_evict_the_oldest",
        true,
        |net| {
            raise_nofile();
            let (cert, key, roots) = tls_files(net);
            let tls_port = net.base + 51;
            let tls = SocketAddr::from(([127, 0, 0, 1], tls_port));
            let yaml = with_metrics(
                net,
                &pbx_yaml(net)
                .replace(
                    "media:\n",
                    &format!(
                        "  - {{ transport: tls, address: 127.0.0.1:{tls_port}, cert: {cert}, key: {key} }}\nmedia:\n"
                    ),
                ),
                "limits:\n  tcp: { max_per_source: 500, handshake_timeout: 10 }\n",
            );
            let mut tl = spawn_with_nofile(4096, || Trunkline::start(net, &yaml));
            let mut silent: Vec<TcpStream> = Vec::new();
            for src in 66..77u8 {
                let batch: Vec<TcpStream> = (0..100)
                    .map(|_| connect_from(ip(src), tls).expect("connect"))
                    .collect();
                silent.extend(batch);
                // Until trunkline has taken them from the accept queue (bounded).
                wait_until(Instant::now() + Duration::from_secs(2), || {
                    metric_value(
                        net.metrics_addr(),
                        "trunkline_stream_connections",
                        &[("transport", "TLS")],
                    ) >= (silent.len().min(1024) as f64)
                });
            }
            let r = tls_options(tls, &roots, Duration::from_secs(3));
            assert_eq!(r, Ok(200), "a real TLS client during the attack");
            let evicted = metric_value(
                net.metrics_addr(),
                "trunkline_stream_connections_refused_total",
                &[("transport", "TLS"), ("reason", "handshakes_pending")],
            );
            assert!(evicted >= 70.0, "oldest handshakes closed: {evicted}");
            drop(silent);
            tl.assert_alive();
        },
    );
}

/// The test clients' Digest MD5 (`common::sec::md5_hex`).
#[test]
fn md5_known_answers() {
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(
        md5_hex(b"The quick brown fox jumps over the lazy dog"),
        "9e107d9d372bb6826bd81d3542a419d6"
    );
}
