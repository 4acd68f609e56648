//! SIP over TLS end to end (RFC 3261 §26.2.1, §18 framing over TLS): trunkline with a TLS
//! listener and TLS trunks, against real TLS peers on loopback, each test in its own network
//! namespace (see `common`). Certificates are made at test time with rcgen (a test CA and
//! leaves for 127.0.0.1); nothing secret is kept in the repository.
//!
//! Peers: a rustls client/server in this file playing minimal UAC/UAS, SIPp over UDP on the
//! other leg, and `openssl s_client` (OpenSSL, not rustls) as a second TLS implementation.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Certificates

/// A throw-away certificate authority.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("ca key");
        Pki {
            ca: CertifiedIssuer::self_signed(p, key).expect("ca cert"),
        }
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A leaf for `sans` (IP addresses become IP SANs) with common name `cn`: (cert PEM, key PEM).
    fn leaf(&self, cn: &str, sans: &[&str]) -> (String, String) {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("leaf key");
        let cert = p.signed_by(&key, &self.ca).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a leaf for 127.0.0.1 as `name.crt`/`name.key` plus `ca.pem` into `dir`.
    fn write_leaf(&self, dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        let (c, k) = self.leaf(cn, &["127.0.0.1", "localhost"]);
        let (cp, kp) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&kp, k).expect("write key");
        std::fs::write(&cp, c).expect("write cert");
        std::fs::write(dir.join("ca.pem"), self.ca_pem()).expect("write ca");
        (cp, kp)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("add root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn server_config(cert_pem: &str, key_pem: &str) -> Arc<rustls::ServerConfig> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("cert pem");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key pem");
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server cert"),
    )
}

// ---------------------------------------------------------------------------------------------
// A SIP stream over TLS (either side)

struct SipStream<C> {
    tls: rustls::StreamOwned<C, TcpStream>,
    buf: Vec<u8>,
}

type Client = SipStream<rustls::ClientConnection>;
type Server = SipStream<rustls::ServerConnection>;

impl<C, S> SipStream<C>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    fn send(&mut self, msg: &str) {
        self.tls.write_all(msg.as_bytes()).expect("tls write");
        self.tls.flush().expect("tls flush");
    }

    /// The next SIP message (framed by Content-Length, RFC 3261 §18.3), or None at EOF or
    /// after `wait`.
    fn recv(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let cl: usize = header(&format!("{head}\r\n\r\n"), "Content-Length", Some("l"))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + cl {
                    let msg: Vec<u8> = self.buf.drain(..end + 4 + cl).collect();
                    return Some(String::from_utf8_lossy(&msg).to_string());
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.tls
                .sock
                .set_read_timeout(Some(left.max(Duration::from_millis(10))))
                .ok()?;
            let mut chunk = [0u8; 8192];
            match self.tls.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
    }

    /// The next response to `method` with a final status (1xx collected into `provisional`).
    fn final_response(&mut self, method: &str, provisional: &mut Vec<u16>) -> String {
        loop {
            let m = self
                .recv(Duration::from_secs(15))
                .unwrap_or_else(|| panic!("no final response to {method}"));
            let Some(code) = status_code(m.as_bytes()) else {
                panic!("expected a response to {method}, got:\n{m}");
            };
            let cseq = header(&m, "CSeq", None).unwrap_or("");
            if !cseq.ends_with(method) {
                continue;
            }
            if code < 200 {
                provisional.push(code);
                continue;
            }
            return m;
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// A TLS client connection to `addr`, verifying its certificate against `cfg` for `name`.
fn connect(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<Client, String> {
    let sock = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    Ok(SipStream {
        tls,
        buf: Vec::new(),
    })
}

impl Client {
    /// The leaf certificate the server presented.
    fn server_leaf(&self) -> Vec<u8> {
        self.tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .expect("server certificate")
    }
}

fn options(local: SocketAddr, to: SocketAddr, n: u32) -> String {
    format!(
        "OPTIONS sips:{to} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {local};branch=z9hG4bK-tls-opt-{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sips:probe@{local}>;tag=tlsprobe{n}\r\n\
         To: <sips:{to}>\r\n\
         Call-ID: tls-opt-{n}@127.0.0.1\r\n\
         CSeq: {n} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The URI inside the first `<...>` of a header value.
fn angle_uri(v: &str) -> &str {
    v.split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(u, _)| u)
        .unwrap_or(v)
}

// ---------------------------------------------------------------------------------------------
// trunkline configuration

fn tls_port(net: &Net) -> u16 {
    net.base + 51
}

fn tls_addr(net: &Net) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], tls_port(net)))
}

/// UDP on the usual SIP port, TLS on [`tls_port`] with `cert`/`key`, one trunk line as given
/// (YAML flow mapping body), every call routed to it.
fn yaml(net: &Net, cert: &str, key: &str, trunk: &str) -> String {
    format!(
        "listen:\n\
         \x20 - {{ transport: udp, address: 127.0.0.1:{sip} }}\n\
         \x20 - {{ transport: tls, address: 127.0.0.1:{tls}, cert: {cert}, key: {key} }}\n\
         media:\n\
         \x20 address: 127.0.0.1\n\
         \x20 ports: {media}\n\
         trunks:\n\
         \x20 trunk: {{ {trunk} }}\n\
         dialplan:\n\
         \x20 - match: {{ to_user: '.*' }}\n\
         \x20   route: [trunk]\n",
        sip = net.sip(),
        tls = tls_port(net),
        media = net.media_range(),
    )
}

fn udp_trunk(net: &Net) -> String {
    format!("address: 127.0.0.1:{}, transport: udp", net.trunk(0))
}

// ---------------------------------------------------------------------------------------------
// Tests

/// A rustls client sends OPTIONS over TLS and gets 200 on the same connection, with its Via
/// intact; the certificate verifies for 127.0.0.1 and fails for another name.
#[test]
fn options_over_tls() {
    isolated("options_over_tls", false, |net| {
        let pki = Pki::new("trunkline test CA");
        pki.write_leaf(&net.dir, "server", "trunkline");
        let mut tl = Trunkline::start(net, &yaml(net, "server.crt", "server.key", &udp_trunk(net)));
        // A connection that never starts its handshake is dropped after limits.tcp.handshake_timeout (default 5 s).
        let mut stalled = TcpStream::connect(tls_addr(net)).expect("tcp connect");
        let stalled_at = Instant::now();
        let cfg = client_config(&pki.ca_pem());
        let mut c = connect(tls_addr(net), &cfg, "127.0.0.1").expect("tls connect");
        let local = c.tls.sock.local_addr().expect("local");
        for n in 1..=3 {
            c.send(&options(local, tls_addr(net), n));
            let r = c.final_response("OPTIONS", &mut Vec::new());
            assert_eq!(status_code(r.as_bytes()), Some(200), "{r}");
            let via = header(&r, "Via", Some("v")).expect("via");
            assert!(via.starts_with("SIP/2.0/TLS "), "{via}");
            assert!(
                via.contains(&format!("branch=z9hG4bK-tls-opt-{n}")),
                "{via}"
            );
        }
        // Name checks are real: the certificate is not valid for another name.
        let e = connect(tls_addr(net), &cfg, "other.example").err();
        assert!(
            e.is_some_and(|e| e.contains("handshake")),
            "wrong name accepted"
        );
        // A client of another CA refuses it.
        let other = client_config(&Pki::new("other CA").ca_pem());
        assert!(connect(tls_addr(net), &other, "127.0.0.1").is_err());
        // Plain SIP and garbage on the TLS port: the connection is closed, nothing else.
        for junk in [
            options(local, tls_addr(net), 9).into_bytes(),
            vec![0x16; 4096],
        ] {
            let mut raw = TcpStream::connect(tls_addr(net)).expect("tcp connect");
            raw.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let _ = raw.write_all(&junk);
            let mut sink = [0u8; 4096];
            let t0 = Instant::now();
            loop {
                match raw.read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(4), "not closed");
        }
        // The established connection is unaffected.
        c.send(&options(local, tls_addr(net), 10));
        let r = c.final_response("OPTIONS", &mut Vec::new());
        assert_eq!(status_code(r.as_bytes()), Some(200), "{r}");
        stalled
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut sink = [0u8; 64];
        let closed = matches!(stalled.read(&mut sink), Ok(0) | Err(_));
        let after = stalled_at.elapsed();
        assert!(
            closed && after >= Duration::from_secs(4) && after < Duration::from_secs(8),
            "stalled handshake closed={closed} after {after:?}"
        );
        tl.assert_alive();
    });
}

/// OpenSSL's `s_client` (a TLS stack other than rustls) verifies trunkline's certificate for
/// 127.0.0.1 and gets 200 to OPTIONS.
#[test]
fn openssl_s_client_options() {
    isolated("openssl_s_client_options", false, |net| {
        let pki = Pki::new("trunkline test CA");
        pki.write_leaf(&net.dir, "server", "trunkline");
        let mut tl = Trunkline::start(net, &yaml(net, "server.crt", "server.key", &udp_trunk(net)));
        let local: SocketAddr = "127.0.0.1:5999".parse().expect("addr");
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(tls_addr(net).to_string())
            .arg("-CAfile")
            .arg(net.dir.join("ca.pem"))
            .args(["-verify_ip", "127.0.0.1", "-verify_return_error", "-quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn_group()
            .expect("openssl s_client (Debian package openssl)");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(options(local, tls_addr(net), 7).as_bytes())
            .expect("write to s_client");
        let mut stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&chunk[..n]);
                if find(&all, b"\r\n\r\n").is_some() {
                    break;
                }
            }
            let _ = tx.send(all);
        });
        let got = rx.recv_timeout(Duration::from_secs(15)).unwrap_or_default();
        drop(stdin);
        let _ = child.kill();
        let out = child.wait_with_output().expect("s_client output");
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("SIP/2.0 200 "),
            "s_client got:\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("branch=z9hG4bK-tls-opt-7"), "{text}");
        tl.assert_alive();
    });
}

/// A caller over TLS (rustls client playing a UAC) calls through trunkline to SIPp answering
/// over UDP: 180 and 200 come back over the TLS connection with a `sips:` Contact, then ACK
/// and BYE over the same connection; the callee sees neither the caller's Call-ID nor its tag.
#[test]
fn tls_caller_to_udp_trunk() {
    isolated("tls_caller_to_udp_trunk", false, |net| {
        let pki = Pki::new("trunkline test CA");
        pki.write_leaf(&net.dir, "server", "trunkline");
        let mut tl = Trunkline::start(net, &yaml(net, "server.crt", "server.key", &udp_trunk(net)));
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

        let cfg = client_config(&pki.ca_pem());
        let mut c = connect(tls_addr(net), &cfg, "127.0.0.1").expect("tls connect");
        let me = c.tls.sock.local_addr().expect("local");
        let to = tls_addr(net);
        let media = net.spare(0);
        let sdp = format!(
            "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {media} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
        );
        let common = |method: &str, cseq: u32, branch: &str, to_tag: &str| {
            format!(
                "Via: SIP/2.0/TLS {me};branch=z9hG4bK-uac-tls-{branch}\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sips:caller@{me}>;tag=uac-tls-1\r\n\
                 To: <sips:1000@{to}>{to_tag}\r\n\
                 Call-ID: uac-tls-call-1@127.0.0.1\r\n\
                 CSeq: {cseq} {method}\r\n\
                 Contact: <sips:uac-contact@{me}>\r\n"
            )
        };
        c.send(&format!(
            "INVITE sips:1000@{to} SIP/2.0\r\n{}Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            common("INVITE", 1, "inv", ""),
            sdp.len()
        ));
        let mut prov = Vec::new();
        let ok = c.final_response("INVITE", &mut prov);
        assert_eq!(status_code(ok.as_bytes()), Some(200), "{ok}");
        assert!(prov.contains(&180), "180 Ringing not relayed: {prov:?}");
        let via = header(&ok, "Via", Some("v")).expect("via");
        assert!(via.starts_with("SIP/2.0/TLS ") && via.contains("z9hG4bK-uac-tls-inv"));
        let contact = angle_uri(header(&ok, "Contact", Some("m")).expect("contact")).to_string();
        assert!(
            contact.starts_with("sips:"),
            "a TLS leg's Contact must be sips: (RFC 3261 §8.1.1.8): {contact}"
        );
        assert!(ok.contains("m=audio "), "200 without SDP:\n{ok}");
        let to_hdr = header(&ok, "To", Some("t")).expect("to");
        let tag = to_hdr
            .split(";tag=")
            .nth(1)
            .expect("to tag")
            .split(';')
            .next()
            .unwrap_or("");
        let to_tag = format!(";tag={tag}");
        c.send(&format!(
            "ACK {contact} SIP/2.0\r\n{}Content-Length: 0\r\n\r\n",
            common("ACK", 1, "ack", &to_tag)
        ));
        // The call stays up a moment (nothing to wait for: the ACK is not answered).
        std::thread::sleep(Duration::from_millis(300));
        c.send(&format!(
            "BYE {contact} SIP/2.0\r\n{}Content-Length: 0\r\n\r\n",
            common("BYE", 2, "bye", &to_tag)
        ));
        let bye_ok = c.final_response("BYE", &mut Vec::new());
        assert_eq!(status_code(bye_ok.as_bytes()), Some(200), "{bye_ok}");
        let callee = callee.wait(Duration::from_secs(15));
        tl.assert_alive();
        callee.assert_all_ok(1, &format!("trunkline log:\n{}", tl.log_tail(30)));
    });
}

/// What the TLS UAS saw.
struct UasLog {
    invite: String,
    ack: String,
    bye: String,
}

/// A one-call UAS over TLS on `port`: answers INVITE with 180 and 200 (SDP), takes ACK, answers
/// BYE with 200.
fn tls_uas(
    port: u16,
    cfg: Arc<rustls::ServerConfig>,
) -> std::thread::JoinHandle<Result<UasLog, String>> {
    let lst = TcpListener::bind(("127.0.0.1", port)).expect("bind tls uas");
    std::thread::spawn(move || {
        lst.set_nonblocking(true).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let sock = loop {
            match lst.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        sock.set_nonblocking(false).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let conn = rustls::ServerConnection::new(cfg).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        let mut s: Server = SipStream {
            tls,
            buf: Vec::new(),
        };
        let wait = Duration::from_secs(15);
        let invite = s.recv(wait).ok_or("no INVITE")?;
        if !invite.starts_with("INVITE ") {
            return Err(format!("expected INVITE, got:\n{invite}"));
        }
        let h = |m: &str, n: &str, c: Option<&str>| header(m, n, c).unwrap_or("").to_string();
        let vias: String = invite
            .split("\r\n")
            .filter(|l| l.starts_with("Via:") || l.starts_with("v:"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        let base = format!(
            "{vias}From: {}\r\nTo: {};tag=tlsuas1\r\nCall-ID: {}\r\nCSeq: {}\r\n\
             Contact: <sips:callee@127.0.0.1:{port}>\r\n",
            h(&invite, "From", Some("f")),
            h(&invite, "To", Some("t")),
            h(&invite, "Call-ID", Some("i")),
            h(&invite, "CSeq", None),
        );
        s.send(&format!(
            "SIP/2.0 180 Ringing\r\n{base}Content-Length: 0\r\n\r\n"
        ));
        let sdp = "v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 5700 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
        s.send(&format!(
            "SIP/2.0 200 OK\r\n{base}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ));
        let ack = s.recv(wait).ok_or("no ACK")?;
        let bye = s.recv(wait).ok_or("no BYE")?;
        if !bye.starts_with("BYE ") {
            return Err(format!("expected BYE, got:\n{bye}"));
        }
        let vias: String = bye
            .split("\r\n")
            .filter(|l| l.starts_with("Via:") || l.starts_with("v:"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        s.send(&format!(
            "SIP/2.0 200 OK\r\n{vias}From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            h(&bye, "From", Some("f")),
            h(&bye, "To", Some("t")),
            h(&bye, "Call-ID", Some("i")),
            h(&bye, "CSeq", None),
        ));
        // Let trunkline read the 200 before the connection goes.
        std::thread::sleep(Duration::from_millis(300));
        Ok(UasLog { invite, ack, bye })
    })
}

/// Outbound TLS: SIPp calls over UDP, trunkline places leg B over TLS to a trunk whose
/// certificate it verifies against the trunk's CA file; INVITE, ACK and BYE travel on that
/// connection with a TLS Via, and the call completes on both sides.
#[test]
fn udp_caller_to_tls_trunk() {
    isolated("udp_caller_to_tls_trunk", false, |net| {
        let pki = Pki::new("trunkline test CA");
        pki.write_leaf(&net.dir, "server", "trunkline");
        let carrier = Pki::new("carrier CA");
        let (c, k) = carrier.leaf("carrier", &["127.0.0.1"]);
        std::fs::write(net.dir.join("carrier-ca.pem"), carrier.ca_pem()).expect("write");
        let uas = tls_uas(net.trunk(0), server_config(&c, &k));
        let trunk = format!(
            "address: 127.0.0.1:{}, transport: tls, tls: {{ ca: carrier-ca.pem }}",
            net.trunk(0)
        );
        let mut tl = Trunkline::start(net, &yaml(net, "server.crt", "server.key", &trunk));
        let caller = Sipp::uac(net, "uac", "uac_basic.xml", 1, 1)
            .pause_ms(200)
            .run(LIMIT);
        let seen = uas.join().expect("uas thread");
        tl.assert_alive();
        let ctx = format!("trunkline log:\n{}", tl.log_tail(30));
        caller.assert_all_ok(1, &ctx);
        let seen = seen.unwrap_or_else(|e| panic!("TLS UAS: {e}\n{ctx}"));
        let via = header(&seen.invite, "Via", Some("v")).expect("via");
        assert!(via.starts_with("SIP/2.0/TLS "), "leg B Via: {via}");
        assert!(
            !seen.invite.contains("uac-"),
            "caller leaked:\n{}",
            seen.invite
        );
        assert!(seen.ack.starts_with("ACK "), "{}", seen.ack);
        assert!(seen.bye.contains("tlsuas1"), "{}", seen.bye);
    });
}

/// A trunk whose certificate does not chain to the configured CA is not called: the handshake
/// fails (trunkline logs it) and the caller gets an error response, not a call.
#[test]
fn tls_trunk_with_untrusted_certificate_is_refused() {
    isolated(
        "tls_trunk_with_untrusted_certificate_is_refused",
        false,
        |net| {
            let pki = Pki::new("trunkline test CA");
            pki.write_leaf(&net.dir, "server", "trunkline");
            let rogue = Pki::new("rogue CA");
            let (c, k) = rogue.leaf("rogue", &["127.0.0.1"]);
            std::fs::write(
                net.dir.join("carrier-ca.pem"),
                Pki::new("carrier CA").ca_pem(),
            )
            .expect("write");
            let uas = tls_uas(net.trunk(0), server_config(&c, &k));
            let trunk = format!(
                "address: 127.0.0.1:{}, transport: tls, tls: {{ ca: carrier-ca.pem }}",
                net.trunk(0)
            );
            let tl = Trunkline::start(net, &yaml(net, "server.crt", "server.key", &trunk));
            let sock = UdpSocket::bind(("127.0.0.1", net.uac())).expect("bind");
            sock.set_read_timeout(Some(Duration::from_millis(500)))
                .expect("timeout");
            let me = sock.local_addr().expect("local");
            let to = net.sip_addr();
            let sdp = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 5600 RTP/AVP 0\r\n";
            let invite = format!(
                "INVITE sip:1000@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-rogue-1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:a@{me}>;tag=r1\r\nTo: <sip:1000@{to}>\r\n\
             Call-ID: rogue-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@{me}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            );
            sock.send_to(invite.as_bytes(), to).expect("send");
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut fin = None;
            let mut buf = [0u8; 65535];
            while Instant::now() < deadline && fin.is_none() {
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    let m = String::from_utf8_lossy(&buf[..n]).to_string();
                    if status_code(m.as_bytes()).is_some_and(|c| c >= 200) {
                        fin = Some(m);
                    }
                }
            }
            let fin = fin.unwrap_or_else(|| panic!("no final response; log:\n{}", tl.log_tail(30)));
            let code = status_code(fin.as_bytes()).unwrap_or(0);
            assert!(
                code >= 400,
                "call through an untrusted trunk answered {code}"
            );
            eprintln!("untrusted trunk: caller got {code}");
            let uas = uas.join().expect("uas thread");
            assert!(
                uas.as_ref().err().is_some_and(|e| e.contains("handshake")),
                "the rogue trunk's handshake should fail: {:?}",
                uas.as_ref().map(|u| &u.invite)
            );
            assert!(
                tl.log_tail(200).contains("tls connect failed"),
                "no log line; log:\n{}",
                tl.log_tail(30)
            );
        },
    );
}

/// Certificates are reloaded when their files change: new handshakes get the new certificate,
/// an established connection goes on, and a broken replacement keeps the previous one.
#[test]
fn certificate_reload_on_file_change() {
    isolated("certificate_reload_on_file_change", false, |net| {
        let pki = Pki::new("trunkline test CA");
        let (cert, key) = pki.write_leaf(&net.dir, "server", "first");
        let mut tl = Trunkline::start(net, &yaml(net, "server.crt", "server.key", &udp_trunk(net)));
        // Full handshakes only: a resumed TLS session shows the certificate of the session
        // it resumes, not the one the server holds now.
        let mut cfg = (*client_config(&pki.ca_pem())).clone();
        cfg.resumption = rustls::client::Resumption::disabled();
        let cfg = Arc::new(cfg);
        let mut old = connect(tls_addr(net), &cfg, "127.0.0.1").expect("connect");
        let first = old.server_leaf();

        // New key and certificate, written the way an ACME client would (key, then cert).
        let (c2, k2) = pki.leaf("second", &["127.0.0.1"]);
        let second = CertificateDer::from_pem_slice(c2.as_bytes())
            .expect("pem")
            .to_vec();
        std::fs::write(&key, &k2).expect("write key");
        std::fs::write(&cert, &c2).expect("write cert");
        let t0 = Instant::now();
        let mut now_serving = first.clone();
        poll_until(
            t0 + Duration::from_secs(10),
            Duration::from_millis(200),
            || {
                now_serving = connect(tls_addr(net), &cfg, "127.0.0.1")
                    .expect("connect")
                    .server_leaf();
                now_serving == second
            },
        );
        assert_eq!(
            now_serving,
            second,
            "new certificate not served after 10 s; log:\n{}",
            tl.log_tail(20)
        );
        eprintln!("certificate reload took {:?}", t0.elapsed());
        assert!(tl.log_tail(50).contains("tls certificate reloaded"));

        // The connection made before the reload still works.
        let local = old.tls.sock.local_addr().expect("local");
        old.send(&options(local, tls_addr(net), 40));
        let r = old.final_response("OPTIONS", &mut Vec::new());
        assert_eq!(status_code(r.as_bytes()), Some(200));

        // A broken certificate file: the previous certificate stays, an error is logged.
        std::fs::write(&cert, "not a certificate\n").expect("write junk");
        poll_until(
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(200),
            || tl.log_tail(50).contains("reload failed"),
        );
        assert!(
            tl.log_tail(50).contains("reload failed"),
            "log:\n{}",
            tl.log_tail(20)
        );
        let c = connect(tls_addr(net), &cfg, "127.0.0.1").expect("connect after bad reload");
        assert_eq!(c.server_leaf(), second);
        tl.assert_alive();
    });
}

/// `trunkline check` loads the TLS files: missing files, a key of another certificate and a
/// CA file without certificates are errors that name the file.
#[test]
fn check_validates_tls_files() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("tls_check")
        .join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).expect("mkdir");
    let pki = Pki::new("check CA");
    pki.write_leaf(&dir, "a", "a");
    pki.write_leaf(&dir, "b", "b");
    std::fs::write(dir.join("empty.pem"), "no pem here\n").expect("write");
    let net = Net {
        base: 5000,
        isolated: false,
        dir: dir.clone(),
    };
    let run = |name: &str, cert: &str, key: &str, trunk: &str| {
        let p = dir.join(name);
        std::fs::write(&p, yaml(&net, cert, key, trunk)).expect("write config");
        let out = Command::new(trunkline_bin())
            .args(["check", "--config"])
            .arg(&p)
            .output()
            .expect("run check");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let udp = udp_trunk(&net);
    let (ok, err) = run("good.yaml", "a.crt", "a.key", &udp);
    assert!(ok, "{err}");
    // Relative paths are relative to the configuration file, not the working directory.
    let (ok, err) = run("missing.yaml", "nope.crt", "a.key", &udp);
    assert!(!ok && err.contains("nope.crt"), "{err}");
    let (ok, err) = run("mismatch.yaml", "a.crt", "b.key", &udp);
    assert!(!ok && err.contains("does not belong"), "{err}");
    let (ok, err) = run("nocert.yaml", "empty.pem", "a.key", &udp);
    assert!(!ok && err.contains("no PEM CERTIFICATE"), "{err}");
    let (ok, err) = run("nokey.yaml", "a.crt", "a.crt", &udp);
    assert!(!ok && err.contains("no PEM private key"), "{err}");
    let bad_ca = "address: 127.0.0.1:5080, transport: tls, tls: { ca: empty.pem }";
    let (ok, err) = run("badca.yaml", "a.crt", "a.key", bad_ca);
    assert!(
        !ok && err.contains("trunk trunk") && err.contains("empty.pem"),
        "{err}"
    );
    let good_ca =
        "address: 127.0.0.1:5080, transport: tls, tls: { ca: ca.pem, server_name: sip.example }";
    let (ok, err) = run("goodca.yaml", "a.crt", "a.key", good_ca);
    assert!(ok, "{err}");
}

/// The shipped example `examples/carrier-pbx-tls.yaml` serves: its TLS listener presents the
/// example certificate, which verifies against the example CA for 127.0.0.1, and answers
/// OPTIONS.
#[test]
fn shipped_tls_example_serves() {
    isolated("shipped_tls_example_serves", false, |net| {
        let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut y = std::fs::read_to_string(ex.join("carrier-pbx-tls.yaml")).expect("example");
        // Files relative to the example's own directory; ports moved into this test's block.
        y = y.replace("tls/", &format!("{}/tls/", ex.display()));
        y = y.replace("127.0.0.1:5060", &net.sip_addr().to_string());
        y = y.replace("127.0.0.1:5061", &tls_addr(net).to_string());
        y = y.replace("20000-29999", &net.media_range());
        y = y.replace("127.0.0.1:9464", &format!("127.0.0.1:{}", net.spare(9)));
        let mut tl = Trunkline::start(net, &y);
        let ca = std::fs::read_to_string(ex.join("tls/example-ca.pem")).expect("ca");
        let mut c = connect(tls_addr(net), &client_config(&ca), "127.0.0.1").expect("connect");
        let local = c.tls.sock.local_addr().expect("local");
        c.send(&options(local, tls_addr(net), 1));
        let r = c.final_response("OPTIONS", &mut Vec::new());
        assert_eq!(status_code(r.as_bytes()), Some(200), "{r}");
        tl.assert_alive();
    });
}

/// Kamailio (OpenSSL, its `tls` module from Debian's kamailio-tls-modules) on both sides of
/// trunkline's TLS: SIPp calls Kamailio over UDP; Kamailio relays over TLS to trunkline's
/// listener (verifying trunkline's certificate); trunkline places leg B over TLS to Kamailio's
/// TLS listener (verifying Kamailio's against its CA file), and Kamailio hands it to a SIPp
/// UAS over UDP. The call, its ACK and BYE all cross both TLS hops.
///
/// Kamailio and its TLS module come from scripts/install-deps.sh; missing, the test fails.
#[test]
fn kamailio_tls_both_directions() {
    isolated("kamailio_tls_both_directions", false, |net| {
        let pki = Pki::new("trunkline test CA");
        pki.write_leaf(&net.dir, "server", "trunkline");
        pki.write_leaf(&net.dir, "kam", "kamailio");
        let (kam_udp, kam_tls) = (net.base + 70, net.base + 71);
        let d = net.dir.display();
        std::fs::write(
            net.dir.join("tls.cfg"),
            format!(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
                 require_certificate = no\nprivate_key = {d}/kam.key\ncertificate = {d}/kam.crt\n\
                 \n[client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\n\
                 require_certificate = yes\nca_list = {d}/ca.pem\n"
            ),
        )
        .expect("tls.cfg");
        let kcfg = format!(
            r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=1
tcp_children=2
listen=udp:127.0.0.1:{kam_udp}
listen=tls:127.0.0.1:{kam_tls}
enable_tls=yes
auto_aliases=no
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tls.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
modparam("tls", "config", "{d}/tls.cfg")
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) t_relay(); exit; }}
    if (has_totag()) {{
        if (!loose_route()) {{ route(NEXT); }}
        if (is_method("ACK") && !t_check_trans()) {{ forward(); exit; }}
        t_relay();
        exit;
    }}
    t_check_trans();
    record_route();
    route(NEXT);
    if (!t_relay()) {{ sl_reply_error(); }}
    exit;
}}
# From SIPp (UDP): on to trunkline over TLS. From trunkline (TLS): on to the SIPp UAS (UDP).
route[NEXT] {{
    if ($Rp == {kam_udp}) {{ $du = "sip:127.0.0.1:{tl_tls};transport=tls"; }}
    else {{ $du = "sip:127.0.0.1:{uas}"; }}
}}
"#,
            tl_tls = tls_port(net),
            uas = net.trunk(0),
        );
        let kpath = net.dir.join("kamailio.cfg");
        std::fs::write(&kpath, kcfg).expect("kamailio.cfg");
        let klog = net.dir.join("kamailio.log");
        let _kam = Command::new("/usr/sbin/kamailio")
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-f"])
            .arg(&kpath)
            .arg("-P")
            .arg(net.dir.join("kamailio.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&klog).expect("log"))
            .spawn_group()
            .expect("kamailio (Debian: kamailio, kamailio-tls-modules)");
        let trunk = format!("address: 127.0.0.1:{kam_tls}, transport: tls, tls: {{ ca: ca.pem }}");
        let metrics = SocketAddr::from(([127, 0, 0, 1], net.spare(9)));
        let y = yaml(net, "server.crt", "server.key", &trunk)
            + &format!("metrics:\n  listen: {metrics}\n");
        let mut tl = Trunkline::start(net, &y);
        wait_udp_bound(kam_udp, Duration::from_secs(10));
        let mut uas = Command::new("sipp")
            .args(["-sn", "uas", "-i", "127.0.0.1", "-nostdin", "-m", "1", "-p"])
            .arg(net.trunk(0).to_string())
            .args(["-mp", &net.sipp_media(1).to_string()])
            .current_dir(&net.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn_group()
            .expect("sipp");
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        let kam_addr = SocketAddr::from(([127, 0, 0, 1], kam_udp));
        let caller = Sipp::uac_to(net, "uac", "uac_basic.xml", kam_addr, 1, 1)
            .pause_ms(300)
            .run(LIMIT);
        let uas_ok = uas
            .wait_timeout(Duration::from_secs(10))
            .is_some_and(|st| st.success());
        uas.kill_group();
        tl.assert_alive();
        let ctx = format!(
            "trunkline log:\n{}\nkamailio log:\n{}",
            tl.log_tail(30),
            std::fs::read_to_string(&klog)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
        caller.assert_all_ok(1, &ctx);
        assert!(
            uas_ok,
            "SIPp UAS behind Kamailio did not complete its call\n{ctx}"
        );
        // Both legs were TLS: leg A's INVITE, ACK, BYE and leg B's responses came in over it,
        // and leg B's requests and leg A's responses went out over it.
        let rx = metric(
            metrics,
            "trunkline_sip_messages_received_total{transport=\"TLS\"}",
        );
        let tx = metric(
            metrics,
            "trunkline_sip_messages_sent_total{transport=\"TLS\"}",
        );
        eprintln!("TLS messages received {rx}, sent {tx}");
        assert!(
            rx >= 6.0 && tx >= 6.0,
            "received {rx}, sent {tx} over TLS\n{ctx}"
        );
        let udp = metric(
            metrics,
            "trunkline_sip_messages_received_total{transport=\"UDP\"}",
        );
        assert!(
            udp < 3.0,
            "the call should not have used UDP ({udp} received)"
        );
    });
}

/// The value of one Prometheus series from trunkline's /metrics (0 when absent).
fn metric(addr: SocketAddr, series: &str) -> f64 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0.0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Measurement, not a pass/fail check (ignored by default; run with `--release -- --ignored
/// --nocapture`): full TLS handshakes per second (no resumption) and sequential OPTIONS round
/// trips over one TLS connection against the same over one TCP connection.
#[test]
#[ignore]
fn tls_measure() {
    isolated("tls_measure", false, |net| {
        let pki = Pki::new("trunkline test CA");
        pki.write_leaf(&net.dir, "server", "trunkline");
        let y = yaml(net, "server.crt", "server.key", &udp_trunk(net)).replace(
            "listen:\n",
            &format!(
                "listen:\n  - {{ transport: tcp, address: 127.0.0.1:{} }}\n",
                net.sip()
            ),
        );
        let mut tl = Trunkline::start(net, &y);
        let mut cfg = (*client_config(&pki.ca_pem())).clone();
        cfg.resumption = rustls::client::Resumption::disabled();
        let cfg = Arc::new(cfg);
        let n = 300;
        let t0 = Instant::now();
        for _ in 0..n {
            let c = connect(tls_addr(net), &cfg, "127.0.0.1").expect("connect");
            drop(c);
        }
        let hs = t0.elapsed();
        eprintln!(
            "full handshakes: {n} in {hs:?}: {:.0}/s ({:.0} us each, client included)",
            n as f64 / hs.as_secs_f64(),
            hs.as_secs_f64() * 1e6 / n as f64
        );
        let m = 3000;
        let mut c = connect(tls_addr(net), &cfg, "127.0.0.1").expect("connect");
        let local = c.tls.sock.local_addr().expect("local");
        let t0 = Instant::now();
        for i in 0..m {
            c.send(&options(local, tls_addr(net), i + 1));
            let r = c.final_response("OPTIONS", &mut Vec::new());
            assert_eq!(status_code(r.as_bytes()), Some(200));
        }
        let tls_rt = t0.elapsed();
        let mut tcp = TcpStream::connect(net.sip_addr()).expect("tcp");
        tcp.set_nodelay(true).expect("nodelay");
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let local = tcp.local_addr().expect("local");
        let t0 = Instant::now();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        for i in 0..m {
            let req = options(local, net.sip_addr(), i + 1).replace("/TLS", "/TCP");
            tcp.write_all(req.as_bytes()).expect("write");
            loop {
                if let Some(end) = find(&buf, b"\r\n\r\n") {
                    buf.drain(..end + 4);
                    break;
                }
                let k = tcp.read(&mut chunk).expect("read");
                assert!(k > 0, "tcp closed");
                buf.extend_from_slice(&chunk[..k]);
            }
        }
        let tcp_rt = t0.elapsed();
        eprintln!(
            "OPTIONS round trips, sequential, one connection: TLS {:.1} us, TCP {:.1} us",
            tls_rt.as_secs_f64() * 1e6 / m as f64,
            tcp_rt.as_secs_f64() * 1e6 / m as f64
        );
        tl.assert_alive();
    });
}
