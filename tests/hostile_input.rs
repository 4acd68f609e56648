//! Hostile input over UDP: the RFC 4475 torture messages, then thousands of mutated and random
//! datagrams. trunkline must answer as the RFC says (or drop), forward nothing invalid, and keep
//! serving (ARCHITECTURE.md invariant 2: nothing panics on network input).
//!
//! Both tests run only inside a private network namespace: the messages name hosts such as
//! 192.0.2.1 or host5.example.com in their Via headers, and whatever trunkline might send there
//! must not leave loopback.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// The RFC 4475 corpus: the signaling crate's copy if present, else the shared one.
fn corpus_dir() -> PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let local = root.join("signaling/tests/rfc4475");
    if local.is_dir() {
        return local;
    }
    root.join("../shared/sip-corpus/rfc4475")
}

/// `TC_BADINV01_I.dat` -> `badinv01`.
fn key_of(file: &str) -> String {
    let stem = file.trim_end_matches(".dat");
    let stem = stem.strip_prefix("TC_").unwrap_or(stem);
    let stem = stem
        .strip_suffix("_I")
        .or_else(|| stem.strip_suffix("_V"))
        .unwrap_or(stem);
    stem.to_ascii_lowercase()
}

/// RFC 4475 §3.1.2: invalid messages. A request is answered 400 where a response can be
/// built, else dropped; an invalid response is dropped. Never forwarded.
const INVALID: &[&str] = &[
    "badinv01",
    "clerr",
    "ncl",
    "scalar02",
    "scalarlg",
    "quotbal",
    "ltgtruri",
    "lwsruri",
    "lwsstart",
    "trws",
    "escruri",
    "baddate",
    "regbadct",
    "badaspec",
    "baddn",
    "badvers",
    "mismatch01",
    "mismatch02",
    "bigcode",
];

/// RFC 4475 §3.3: parse fine, then the application answers with this code. Never forwarded.
const APP_REJECT: &[(&str, u16)] = &[
    ("insuf", 400),
    ("multi01", 400),
    ("mcl01", 400),
    ("unkscm", 416),
    ("bext01", 420),
];

/// A captured datagram or stream chunk with its arrival time.
struct Got {
    at: Instant,
    data: Vec<u8>,
}

/// UDP catchers (and one TCP listener) on the ports responses may be sent to: 5060 (a Via
/// without port, and the source port of every message sent here) and 5050 (quotbal's Via).
fn start_catchers(tx: mpsc::Sender<Got>) -> UdpSocket {
    let main = UdpSocket::bind("127.0.0.1:5060").expect("bind 5060");
    for sock in [
        main.try_clone().expect("clone"),
        UdpSocket::bind("127.0.0.1:5050").expect("bind 5050"),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, _)) = sock.recv_from(&mut buf) {
                if tx
                    .send(Got {
                        at: Instant::now(),
                        data: buf[..n].to_vec(),
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    if let Ok(l) = TcpListener::bind("127.0.0.1:5060") {
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    use std::io::Read;
                    let mut s = s;
                    let mut buf = vec![0u8; 65535];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0
                            || tx
                                .send(Got {
                                    at: Instant::now(),
                                    data: buf[..n].to_vec(),
                                })
                                .is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
    }
    main
}

/// A UDP sink standing in for the trunk: records everything trunkline forwards.
fn start_trunk_sink(port: u16) -> mpsc::Receiver<Got> {
    let (tx, rx) = mpsc::channel();
    let sock = UdpSocket::bind(("127.0.0.1", port)).expect("bind trunk sink");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            if tx
                .send(Got {
                    at: Instant::now(),
                    data: buf[..n].to_vec(),
                })
                .is_err()
            {
                break;
            }
        }
    });
    rx
}

fn call_id_of(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    header(&text, "Call-ID", Some("i")).map(|s| s.to_string())
}

fn first_line(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(100)
        .collect()
}

/// The configuration both tests use: trunkline on UDP/TCP 5070, trunk `sink` on 5080 for
/// everything, trunk `callee` on 5090 for number 1000.
fn hostile_config(net: &Net) -> String {
    format!(
        "listen:\n  - {{ transport: udp, address: 127.0.0.1:5070 }}\n  - {{ transport: tcp, address: 127.0.0.1:5070 }}\n\
         media:\n  address: 127.0.0.1\n  ports: {}\n\
         trunks:\n  sink: {{ address: 127.0.0.1:5080, transport: udp }}\n  callee: {{ address: 127.0.0.1:5090, transport: udp }}\n\
         dialplan:\n  - match: {{ to_user: '^1000$' }}\n    route: [callee]\n  - match: {{ to_user: '.*' }}\n    route: [sink]\n",
        net.media_range()
    )
}

fn tl_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5070))
}

/// RFC 4475 over UDP: invalid messages get 4xx or nothing and are never forwarded; valid ones
/// never get 400; insuf/multi01/mcl01 → 400, unkscm → 416, bext01 → 420 (with Unsupported);
/// trunkline still answers OPTIONS afterwards.
#[test]
fn rfc4475_torture_messages() {
    isolated("rfc4475_torture_messages", true, |net| {
        assert!(net.isolated);
        let dir = corpus_dir();
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "dat"))
            .map(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (key_of(&name), std::fs::read(&p).expect("read corpus file"))
            })
            .collect();
        assert!(
            files.len() >= 45,
            "only {} corpus files in {}",
            files.len(),
            dir.display()
        );
        let rejected = |k: &str| INVALID.contains(&k) || APP_REJECT.iter().any(|(n, _)| *n == k);
        // Phase 1 (must never be forwarded) first, so that anything reaching the trunk in that
        // phase is a violation; then the valid ones.
        files.sort_by_key(|(k, _)| (!rejected(k), k.clone()));

        let (tx, rx) = mpsc::channel();
        let sender = start_catchers(tx);
        let trunk = start_trunk_sink(5080);
        let mut tl = Trunkline::start_at(net, &hostile_config(net), tl_addr());

        // (file key, its Call-ID, when it was sent, whether it is a request)
        let mut sent: Vec<(String, Option<String>, Instant, bool)> = Vec::new();
        let mut phase1_end = None;
        for (k, data) in &files {
            if phase1_end.is_none() && !rejected(k) {
                std::thread::sleep(Duration::from_millis(500));
                phase1_end = Some(Instant::now());
            }
            // The send time is taken before sending: an answer can reach the catcher thread (and
            // be stamped) before send_to returns, and must still count as after its request.
            let at = Instant::now();
            sender.send_to(data, tl_addr()).expect("send");
            sent.push((k.clone(), call_id_of(data), at, !data.starts_with(b"SIP/")));
            std::thread::sleep(Duration::from_millis(120)); // pacing
        }
        // The answers still in flight (their absence is what is checked for most files).
        std::thread::sleep(Duration::from_millis(600));
        let phase1_end = phase1_end.expect("some valid files");

        // Attribute everything trunkline sent back to the latest message sent before it arrived
        // with the same Call-ID (a response file too: answering a response is a violation),
        // else to the latest request sent before it.
        // A retransmission (byte-identical, RFC 3261 §17.2.1 timer G) belongs to the owner of
        // its first copy, whatever was sent in between.
        let mut responses: HashMap<String, Vec<(u16, String)>> = HashMap::new();
        let mut first_owner: HashMap<Vec<u8>, String> = HashMap::new();
        while let Ok(g) = rx.try_recv() {
            let code = status_code(&g.data);
            if let Some(owner) = first_owner.get(&g.data) {
                let text = String::from_utf8_lossy(&g.data).into_owned();
                responses
                    .entry(owner.clone())
                    .or_default()
                    .push((code.unwrap_or(0), text));
                continue;
            }
            let before: Vec<&(String, Option<String>, Instant, bool)> =
                sent.iter().filter(|(_, _, t, _)| *t <= g.at).collect();
            let owner = call_id_of(&g.data)
                .and_then(|cid| {
                    before
                        .iter()
                        .rev()
                        .find(|(_, c, _, _)| c.as_deref() == Some(cid.as_str()))
                })
                .or_else(|| before.iter().rev().find(|(_, _, _, is_req)| *is_req))
                .map(|(k, _, _, _)| k.clone())
                .unwrap_or_else(|| "<before first>".into());
            let text = String::from_utf8_lossy(&g.data).into_owned();
            first_owner.insert(g.data.clone(), owner.clone());
            responses
                .entry(owner)
                .or_default()
                .push((code.unwrap_or(0), text));
        }
        let mut failures = Vec::new();
        for (k, _) in &files {
            let got = responses.get(k).cloned().unwrap_or_default();
            let codes: Vec<u16> = got.iter().map(|(c, _)| *c).collect();
            if let Some((_, want)) = APP_REJECT.iter().find(|(n, _)| n == k) {
                let finals: Vec<u16> = codes.iter().copied().filter(|c| *c >= 200).collect();
                if finals.is_empty() || finals.iter().any(|c| c != want) {
                    failures.push(format!("{k}: want {want}, got {codes:?}"));
                }
                if *want == 420 {
                    let has_unsupported = got
                        .iter()
                        .any(|(c, t)| *c == 420 && header(t, "Unsupported", None).is_some());
                    if !has_unsupported {
                        failures.push(format!("{k}: 420 without an Unsupported header"));
                    }
                }
            } else if INVALID.contains(&k.as_str()) {
                let is_response = files
                    .iter()
                    .find(|(n, _)| n == k)
                    .is_some_and(|(_, d)| d.starts_with(b"SIP/"));
                if is_response && !codes.is_empty() {
                    failures.push(format!(
                        "{k} (an invalid response): must be dropped, got {codes:?}:\n{}",
                        truncate(&got[0].1, 400)
                    ));
                }
                // RFC 4475 §3.1.2: 400 where a response can be built; §3.1.2.16: badvers is
                // answered 505. A 100 Trying from the INVITE server transaction before the
                // final answer is allowed (RFC 3261 §17.2.1); no other 1xx, 2xx, 3xx, 5xx, 6xx.
                let final_ok = |c: u16| (400..500).contains(&c) || (k == "badvers" && c == 505);
                if let Some((_, t)) = got.iter().find(|(c, _)| *c != 100 && !final_ok(*c)) {
                    failures.push(format!(
                        "{k} (invalid): only 4xx (or nothing), got {codes:?}; first offender:\n{}",
                        truncate(t, 400)
                    ));
                }
            } else if codes.contains(&400) {
                let why = got
                    .iter()
                    .find(|(c, _)| *c == 400)
                    .map(|(_, t)| first_line(t.as_bytes()))
                    .unwrap_or_default();
                failures.push(format!("{k} (valid): got 400 ({why})"));
            }
        }
        // Nothing reached the trunk while only invalid/rejected messages were being sent.
        let mut leaked = Vec::new();
        while let Ok(g) = trunk.try_recv() {
            if g.at < phase1_end {
                leaked.push(first_line(&g.data));
            }
        }
        if !leaked.is_empty() {
            failures.push(format!(
                "forwarded to the trunk during the invalid phase: {leaked:?}"
            ));
        }
        tl.assert_alive();
        let opt = options_status(tl.addr, Duration::from_secs(3));
        if opt != Some(200) {
            failures.push(format!("OPTIONS after the corpus: {opt:?}"));
        }
        let mut summary: Vec<String> = files
            .iter()
            .map(|(k, _)| {
                let c: Vec<u16> = responses
                    .get(k)
                    .map(|v| v.iter().map(|(c, _)| *c).collect())
                    .unwrap_or_default();
                format!("{k}: {c:?}")
            })
            .collect();
        summary.sort();
        eprintln!("responses per file:\n  {}", summary.join("\n  "));
        assert!(
            failures.is_empty(),
            "{} RFC 4475 expectation(s) failed:\n  {}\ntrunkline log tail:\n{}",
            failures.len(),
            failures.join("\n  "),
            tl.log_tail(40)
        );
    });
}

/// RFC 4475 §3.4: an RFC 2543 INVITE (no branch, no From tag, no Content-Length) "should be
/// accepted by RFC 3261 elements that want to maintain backwards compatibility": it is never
/// answered 400 and it is placed towards the trunk.
#[test]
fn rfc4475_inv2543_is_accepted() {
    isolated("rfc4475_inv2543_is_accepted", true, |net| {
        let data = std::fs::read(corpus_dir().join("TC_INV2543_I.dat")).expect("inv2543");
        let (tx, rx) = mpsc::channel();
        let sender = start_catchers(tx);
        let trunk = start_trunk_sink(5080);
        let mut tl = Trunkline::start_at(net, &hostile_config(net), tl_addr());
        sender.send_to(&data, tl_addr()).expect("send");
        // Until the INVITE reaches the trunk (a 400 would come instead of it, not after it).
        let mut forwarded: Vec<String> = Vec::new();
        wait_until(Instant::now() + Duration::from_secs(5), || {
            forwarded.extend(trunk.try_iter().map(|g| first_line(&g.data)));
            forwarded.iter().any(|l| l.starts_with("INVITE "))
        });
        tl.assert_alive();
        let codes: Vec<u16> = rx.try_iter().filter_map(|g| status_code(&g.data)).collect();
        assert!(!codes.contains(&400), "inv2543 answered {codes:?}");
        assert!(
            forwarded.iter().any(|l| l.starts_with("INVITE ")),
            "inv2543 was not placed towards the trunk (got {codes:?}, trunk saw {forwarded:?})"
        );
    });
}

/// xorshift64*: a small deterministic generator, so a failing run can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn template_invite(n: u32) -> Vec<u8> {
    let body = "v=0\r\no=g 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:garbage@127.0.0.1:5070 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-g{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:fuzz@127.0.0.1>;tag=g{n}\r\n\
         To: <sip:garbage@127.0.0.1>\r\n\
         Call-ID: g{n}@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:fuzz@127.0.0.1:5060>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One hostile datagram: a mutated template INVITE, a mutated torture message, or noise.
fn mutate(rng: &mut Rng, n: u32, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut m = match rng.below(4) {
        0 | 1 => template_invite(n),
        2 if !corpus.is_empty() => corpus[rng.below(corpus.len())].clone(),
        _ => {
            let len = rng.below(1400) + 1;
            return (0..len).map(|_| rng.next() as u8).collect();
        }
    };
    for _ in 0..=rng.below(8) {
        if m.is_empty() {
            break;
        }
        let i = rng.below(m.len());
        match rng.below(7) {
            0 => m[i] = rng.next() as u8,
            1 => m[i] = b"\r\n:;,<>\"@ \t\0%=/"[rng.below(15)],
            2 => m.truncate(i),
            3 => {
                let j = (i + rng.below(64)).min(m.len());
                m.drain(i..j);
            }
            4 => {
                let j = (i + rng.below(200)).min(m.len());
                let chunk = m[i..j].to_vec();
                let k = rng.below(m.len());
                m.splice(k..k, chunk);
            }
            5 => {
                let digits = ["0", "-1", "4294967296", "99999999999999999999", "", "1e9"];
                let d = digits[rng.below(digits.len())].as_bytes();
                m.splice(i..(i + 1).min(m.len()), d.iter().copied());
            }
            _ => {
                let junk: Vec<u8> = (0..rng.below(32)).map(|_| rng.next() as u8).collect();
                m.splice(i..i, junk);
            }
        }
    }
    m.truncate(65000);
    m
}

/// Thousands of mutated and random datagrams (bounded: 4000, ~2 s), then trunkline still
/// answers OPTIONS and still carries a call end to end.
#[test]
fn garbage_datagrams_then_a_call_works() {
    isolated("garbage_datagrams_then_a_call_works", true, |net| {
        assert!(net.isolated);
        let corpus: Vec<Vec<u8>> = std::fs::read_dir(corpus_dir())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .filter(|d| d.len() < 20000)
                    .collect()
            })
            .unwrap_or_default();
        let (tx, _rx) = mpsc::channel();
        let sender = start_catchers(tx);
        let _trunk = start_trunk_sink(5080);
        let mut tl = Trunkline::start_at(net, &hostile_config(net), tl_addr());
        let seed = 0x7472_756e_6b6c_696e_u64 ^ u64::from(std::process::id());
        eprintln!("garbage seed {seed:#x}");
        let mut rng = Rng(seed | 1);
        let t0 = Instant::now();
        for n in 0..4000u32 {
            let d = mutate(&mut rng, n, &corpus);
            let _ = sender.send_to(&d, tl_addr());
            if n % 200 == 199 {
                std::thread::sleep(Duration::from_millis(100));
                tl.assert_alive();
            }
        }
        eprintln!("4000 datagrams sent in {:?}", t0.elapsed());
        // Time for the last datagrams to crash it, if they can.
        std::thread::sleep(Duration::from_millis(300));
        tl.assert_alive();
        assert_eq!(
            options_status(tl.addr, Duration::from_secs(5)),
            Some(200),
            "OPTIONS after garbage; log tail:\n{}",
            tl.log_tail(40)
        );
        // A real call still works (number 1000 routes to the SIPp callee on 5090).
        let callee = Sipp::uas(net, "uas", "uas_basic.xml", 5090, net.sipp_media(2), 3).spawn();
        wait_udp_bound(5090, Duration::from_secs(5));
        let caller = Sipp::uac_to(net, "uac", "uac_basic.xml", tl_addr(), 3, 10)
            .pause_ms(100)
            .run(Duration::from_secs(60));
        let callee = callee.wait(Duration::from_secs(15));
        tl.assert_alive();
        let ctx = format!("call after garbage; log tail:\n{}", tl.log_tail(30));
        caller.assert_all_ok(3, &ctx);
        callee.assert_all_ok(3, &ctx);
    });
}
