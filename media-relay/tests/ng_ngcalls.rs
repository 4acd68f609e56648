//! ng protocol over real loopback UDP, driven by the shared rtpengine peer script
//! `shared/peers/kamailio-rtpengine/ngcalls.py` (the same client used against rtpengine).
//!
//! The script is looked for under `$TRUNKLINE_SHARED/peers/kamailio-rtpengine/`, beside the
//! repository (`../shared/...`) and at `/work/shared/...`; on a machine without it, the tests
//! run our own independent client `tests/ngclient.py` (same command line and output), so they
//! never skip. They FAIL when python3 is missing: they are the proof that an ng client in
//! another process really works with us (Kamailio's rtpengine module is the other proof,
//! `tests/kamailio_ng.rs`).

use media_relay::control::fake::FakeDataPlane;
use media_relay::control::MediaCalls;
use media_relay::ng::{self, NgHandler, Value};
use media_relay::{Backend, DataPlane, Relay, RelayConfig};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn script() -> PathBuf {
    let rel = "peers/kamailio-rtpengine/ngcalls.py";
    let mut places = Vec::new();
    if let Some(dir) = std::env::var_os("TRUNKLINE_SHARED") {
        places.push(PathBuf::from(dir).join(rel));
    }
    places.push(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared")
            .join(rel),
    );
    places.push(PathBuf::from("/work/shared").join(rel));
    if let Some(p) = places.into_iter().find(|p| p.is_file()) {
        return p;
    }
    let own = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ngclient.py");
    eprintln!(
        "the shared ngcalls.py is not on this machine; using {}",
        own.display()
    );
    own
}

/// Run ngcalls.py with `args`, at most 60 s; return its stdout lines. Panics on failure.
fn ngcalls(ng: SocketAddr, args: &[&str]) -> Vec<String> {
    let mut child = Command::new("python3")
        .arg(script())
        .arg("--ng")
        .arg(ng.to_string())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed to run the ng client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait ngcalls.py").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ngcalls.py did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("ngcalls.py output");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "ngcalls.py failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_string).collect()
}

/// "pa ra pb rb" lines.
fn parse_lines(lines: &[String]) -> Vec<[u16; 4]> {
    lines
        .iter()
        .map(|l| {
            let v: Vec<u16> = l
                .split_whitespace()
                .map(|x| x.parse().expect("port number"))
                .collect();
            assert_eq!(v.len(), 4, "line {l:?}");
            [v[0], v[1], v[2], v[3]]
        })
        .collect()
}

fn start(dp: Arc<dyn DataPlane>) -> (Arc<Mutex<MediaCalls>>, ng::NgServer) {
    let calls = Arc::new(Mutex::new(MediaCalls::new(dp)));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = ng::serve(sock, NgHandler::new(calls.clone())).unwrap();
    (calls, server)
}

#[test]
fn ngcalls_against_fake_data_plane() {
    let dp = Arc::new(FakeDataPlane::new(LOOPBACK, 30000, 100));
    let (calls, server) = start(dp.clone());
    let lines = ngcalls(server.local_addr(), &["--calls", "5"]);
    let rows = parse_lines(&lines);
    assert_eq!(rows.len(), 5, "{lines:?}");
    let mut seen = std::collections::HashSet::new();
    for (i, [pa, ra, pb, rb]) in rows.iter().copied().enumerate() {
        assert_eq!(pa, 40000 + 2 * i as u16);
        assert_eq!(pb, 50000 + 2 * i as u16);
        // The fake hands out pairs (a, a + 2) from 30000 in steps of 4.
        assert!((30000..30400).contains(&ra) && (30000..30400).contains(&rb));
        assert_eq!(rb, ra + 2, "A-facing and B-facing port of one pair");
        assert!(
            seen.insert(ra) && seen.insert(rb),
            "ports reused across calls"
        );
        // Each leg's remote is the party that leg faces.
        let local = |p| SocketAddr::new(LOOPBACK, p);
        assert_eq!(dp.remote(ra), Some((local(pa), Some(local(pa + 1)))));
        assert_eq!(dp.remote(rb), Some((local(pb), Some(local(pb + 1)))));
    }
    assert_eq!(dp.open_pairs(), 5);
    assert_eq!(calls.lock().unwrap().len(), 5);

    let lines = ngcalls(server.local_addr(), &["--calls", "5", "--delete"]);
    assert!(lines.is_empty());
    assert_eq!(dp.open_pairs(), 0);
    assert!(calls.lock().unwrap().is_empty());
    server.shutdown();
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    p
}

/// Send RTP from `from` to the relay port until `to` receives one (the first packets may arrive
/// before the worker applied the remote). Returns what `to` received.
fn relay_one(from: &UdpSocket, relay_port: u16, to: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    for seq in 0..50u16 {
        from.send_to(&rtp(seq), SocketAddr::new(LOOPBACK, relay_port))
            .unwrap();
        if let Ok((n, src)) = to.recv_from(&mut buf) {
            assert_eq!(src.ip(), LOOPBACK);
            return buf[..n].to_vec();
        }
    }
    panic!("no RTP relayed through port {relay_port}");
}

#[test]
fn ngcalls_against_real_relay_moves_rtp() {
    let relay = Relay::start(RelayConfig {
        address: LOOPBACK,
        port_min: 36000,
        port_max: 36199,
        backend: Backend::Auto,
        workers: 1,
        timeout: Duration::from_secs(60),
        strict_source: false,
    })
    .expect("relay starts");
    let relay = Arc::new(relay);
    let (calls, server) = start(relay.clone());

    let sock_a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sock_b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&sock_a, &sock_b] {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
    let pa = sock_a.local_addr().unwrap().port().to_string();
    let pb = sock_b.local_addr().unwrap().port().to_string();
    let lines = ngcalls(
        server.local_addr(),
        &["--calls", "1", "--base-a", &pa, "--base-b", &pb],
    );
    let rows = parse_lines(&lines);
    assert_eq!(rows.len(), 1, "{lines:?}");
    let [_, ra, _, rb] = rows[0];
    assert!((36000..=36199).contains(&ra) && (36000..=36199).contains(&rb));

    // A -> relay (ra) -> B, and back through rb -> A.
    let got = relay_one(&sock_a, ra, &sock_b);
    assert_eq!(got.len(), 172);
    assert_eq!(got[0], 0x80);
    let got = relay_one(&sock_b, rb, &sock_a);
    assert_eq!(got.len(), 172);

    // The ng query over UDP reports the packets.
    let q = {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut d = b"q1 ".to_vec();
        Value::dict([
            ("command", Value::str("query")),
            ("call-id", Value::str("load-0")),
        ])
        .encode_into(&mut d);
        c.send_to(&d, server.local_addr()).unwrap();
        let mut buf = vec![0u8; 65535];
        let (n, _) = c.recv_from(&mut buf).unwrap();
        let body = buf[..n].strip_prefix(b"q1 ").expect("same cookie");
        ng::bencode::decode(body).unwrap()
    };
    assert_eq!(q.get("result"), Some(&Value::str("ok")));
    let packets = q
        .get("totals")
        .and_then(|t| t.get("RTP"))
        .and_then(|r| r.get("packets"))
        .and_then(Value::as_int)
        .unwrap();
    assert!(packets >= 2, "query totals: {q:?}");

    let lines = ngcalls(server.local_addr(), &["--calls", "1", "--delete"]);
    assert!(lines.is_empty());
    assert!(calls.lock().unwrap().is_empty());
    server.shutdown();
    drop(calls);
    if let Ok(r) = Arc::try_unwrap(relay) {
        r.shutdown();
    }
}

/// Re-INVITE through MediaCalls on the real relay: B moves its media to a new port (media follows),
/// then holds with RFC 2543 `c=0.0.0.0` (A is told `sendonly`; nothing is sent to 0.0.0.0, the
/// relay keeps B's last address).
#[test]
fn reinvite_moves_media_and_hold_on_real_relay() {
    use media_relay::control::Side;
    use media_relay::sdp::{Direction, Sdp};
    let relay = Arc::new(
        Relay::start(RelayConfig {
            address: LOOPBACK,
            port_min: 36200,
            port_max: 36299,
            backend: Backend::Auto,
            workers: 1,
            timeout: Duration::from_secs(60),
            strict_source: false,
        })
        .expect("relay starts"),
    );
    let mut mc = MediaCalls::new(relay.clone());
    let sock = || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        s
    };
    let (a, b_old, b_new) = (sock(), sock(), sock());
    let body = |ip: &str, port: u16| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
        .into_bytes()
    };
    let port = |s: &UdpSocket| s.local_addr().unwrap().port();
    let media_port = |sdp: &[u8]| Sdp::parse(sdp).unwrap().media()[0].port;

    let to_b = mc.offer("rc", "ta", &body("127.0.0.1", port(&a))).unwrap();
    let rb = media_port(&to_b);
    let to_a = mc
        .answer("rc", "ta", "tb", &body("127.0.0.1", port(&b_old)))
        .unwrap();
    let ra = media_port(&to_a);
    assert_ne!(ra, rb);
    assert_eq!(relay_one(&a, ra, &b_old).len(), 172);

    // B re-INVITEs from a new port; A answers unchanged.
    let to_a2 = mc
        .offer_from(Side::B, "rc", "ta", &body("127.0.0.1", port(&b_new)))
        .unwrap();
    assert_eq!(media_port(&to_a2), ra, "A keeps its relay port");
    mc.answer_from(Side::A, "rc", "ta", None, &body("127.0.0.1", port(&a)))
        .unwrap();
    assert_eq!(relay_one(&a, ra, &b_new).len(), 172);

    // B holds the RFC 2543 way.
    let to_a3 = mc
        .offer_from(Side::B, "rc", "ta", &body("0.0.0.0", port(&b_new)))
        .unwrap();
    let held = Sdp::parse(&to_a3).unwrap();
    assert_eq!(held.media()[0].direction, Direction::SendOnly);
    assert_eq!(
        held.media()[0].rtp_addr(),
        Some(SocketAddr::new(LOOPBACK, ra))
    );
    assert!(!String::from_utf8_lossy(&to_a3).contains("0.0.0.0"));
    // Whatever A still sends goes to B's last real address, never to 0.0.0.0.
    assert_eq!(relay_one(&a, ra, &b_new).len(), 172);

    mc.delete("rc", None).unwrap();
    drop(mc);
    if let Ok(r) = Arc::try_unwrap(relay) {
        r.shutdown();
    }
}
