//! RFC 4475 "SIP Torture Test Messages": every message of the corpus gets the verdict the RFC
//! section expects (see `/work/shared/sip-corpus/rfc4475/README.md`), plus a bounded mutation
//! test (bit flips, truncations, insertions, deletions) that nothing panics and whatever parses
//! re-serialises and re-parses to the same message.

use std::path::PathBuf;

use signaling::check::{admission, check_response};
use signaling::headers::{NameAddr, Via};
use signaling::parse::{bad_request_response, parse};
use signaling::uri::Uri;
use signaling::{Method, SipMessage};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rfc4475")
}

fn load(name: &str) -> Vec<u8> {
    let dir = corpus_dir();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let f = p.file_name().unwrap().to_string_lossy().to_string();
        let stem = f.trim_end_matches(".dat").trim_start_matches("TC_");
        let stem = stem
            .strip_suffix("_V")
            .or_else(|| stem.strip_suffix("_I"))
            .unwrap_or(stem);
        if stem.eq_ignore_ascii_case(name) {
            return std::fs::read(p).unwrap();
        }
    }
    panic!("no corpus file for {name}");
}

fn all_files() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// What trunkline does with a message as a UAS.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Parsed and admitted (request) or parsed and well-formed (response).
    Accepted,
    /// Request that failed to parse: answered with this status if the headers allow.
    ParseReject { status: u16, answered: bool },
    /// Request parsed but refused by admission with this status.
    Refused(u16),
    /// Response that failed to parse or check: dropped.
    Dropped,
}

fn outcome(b: &[u8]) -> Outcome {
    match parse(b) {
        Ok(SipMessage::Request(r)) => match admission(&r) {
            Ok(()) => Outcome::Accepted,
            Err(rej) => Outcome::Refused(rej.status),
        },
        Ok(SipMessage::Response(r)) => match check_response(&r) {
            Ok(()) => Outcome::Accepted,
            Err(_) => Outcome::Dropped,
        },
        Err(e) if e.is_request => Outcome::ParseReject {
            status: e.status,
            answered: bad_request_response(&e).is_some(),
        },
        Err(_) => Outcome::Dropped,
    }
}

/// RFC 4475 §3.1.1 (valid), §3.2, §3.4 and the §3.3 messages that are processed normally.
const ACCEPTED: &[&str] = &[
    // 3.1.1
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    // 3.2
    "badbranch",
    // 3.3 handled further up (registrar, auth) or dropped later (bcast: a response)
    "unksm2",
    "regaut01",
    "cparam01",
    "cparam02",
    "regescrt",
    "bcast",
    // 3.4
    "inv2543",
];

/// RFC 4475 §3.1.2 invalid requests: 400 (parse or admission).
const BAD_REQUESTS: &[&str] = &[
    "badinv01",
    "clerr",
    "ncl",
    "scalar02",
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
    "mismatch01",
    "mismatch02",
];

/// RFC 4475 §3.1.2 invalid responses: dropped.
const BAD_RESPONSES: &[&str] = &["scalarlg", "bigcode"];

#[test]
fn corpus_is_complete_and_byte_exact() {
    let files = all_files();
    assert_eq!(files.len(), 49);
    for (name, bytes) in &files {
        let orig = std::fs::read(format!("/work/shared/sip-corpus/rfc4475/{name}"));
        if let Ok(orig) = orig {
            assert_eq!(&orig, bytes, "{name} differs from the shared corpus");
        }
    }
    let listed = ACCEPTED.len() + BAD_REQUESTS.len() + BAD_RESPONSES.len() + 1 /* badvers */ + 9 /* app */;
    assert_eq!(listed, 49);
}

#[test]
fn valid_messages_are_accepted() {
    for name in ACCEPTED {
        assert_eq!(outcome(&load(name)), Outcome::Accepted, "{name}");
    }
}

#[test]
fn invalid_requests_get_400() {
    for name in BAD_REQUESTS {
        match outcome(&load(name)) {
            Outcome::ParseReject {
                status: 400,
                answered,
            } => {
                // Every one of these carries Via, From, To, Call-ID and CSeq lines, so a 400
                // can be built (RFC 3261 §8.2.6).
                assert!(answered, "{name}: no 400 could be built");
            }
            Outcome::Refused(400) => {}
            other => panic!("{name}: expected 400, got {other:?}"),
        }
    }
}

#[test]
fn bad_version_gets_505() {
    // RFC 4475 §3.1.2.16 badvers: "should respond with a 505 Version Not Supported".
    let e = parse(&load("badvers")).unwrap_err();
    assert_eq!(e.status, 505);
    let r = bad_request_response(&e).unwrap();
    assert_eq!(r.status, 505);
    assert_eq!(r.call_id(), Some("badvers.31417@c.example.com"));
}

#[test]
fn invalid_responses_are_dropped() {
    for name in BAD_RESPONSES {
        assert_eq!(outcome(&load(name)), Outcome::Dropped, "{name}");
        let e = parse(&load(name)).unwrap_err();
        assert!(!e.is_request);
        assert!(bad_request_response(&e).is_none());
    }
}

#[test]
fn application_layer_verdicts() {
    // RFC 4475 §3.3.
    assert_eq!(outcome(&load("insuf")), Outcome::Refused(400));
    assert_eq!(outcome(&load("unkscm")), Outcome::Refused(416));
    assert_eq!(outcome(&load("novelsc")), Outcome::Refused(416));
    assert_eq!(outcome(&load("invut")), Outcome::Refused(415));
    assert_eq!(outcome(&load("sdp01")), Outcome::Refused(406));
    assert_eq!(outcome(&load("zeromf")), Outcome::Refused(483));
    assert_eq!(outcome(&load("bext01")), Outcome::Refused(420));
    // multi01: several To/From/Call-ID/CSeq/Max-Forwards.
    assert_eq!(outcome(&load("multi01")), Outcome::Refused(400));
    // mcl01: two different Content-Length values; the framing is ambiguous so parsing fails and
    // a 400 is built from the headers.
    assert_eq!(
        outcome(&load("mcl01")),
        Outcome::ParseReject {
            status: 400,
            answered: true
        }
    );

    let req = |n: &str| match parse(&load(n)).unwrap() {
        SipMessage::Request(r) => r,
        _ => panic!(),
    };
    let rej = admission(&req("bext01")).unwrap_err();
    assert_eq!(
        rej.headers,
        vec![(
            "Unsupported".to_string(),
            "nothingSupportsThis, nothingSupportsThisEither".to_string()
        )]
    );
    let rej = admission(&req("invut")).unwrap_err();
    assert!(rej
        .headers
        .iter()
        .any(|(n, v)| n == "Accept" && v.contains("application/sdp")));
    assert_eq!(req("zeromf").max_forwards(), Some(0));
    let rej = admission(&req("insuf")).unwrap_err();
    assert!(rej.reason.starts_with("Missing"), "{}", rej.reason);
    let rej = admission(&req("multi01")).unwrap_err();
    assert!(rej.reason.starts_with("Multiple"), "{}", rej.reason);
}

#[test]
fn valid_message_details() {
    let req = |n: &str| match parse(&load(n)).unwrap() {
        SipMessage::Request(r) => r,
        _ => panic!(),
    };
    // wsinv: whitespace everywhere, folding, compact forms.
    let w = req("wsinv");
    assert_eq!(w.uri, "sip:vivekg@chair-dnrc.example.com;unknownparam");
    assert_eq!(w.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(w.from().unwrap().tag(), Some("98asjd8"));
    assert_eq!(
        w.from().unwrap().display_unquoted().as_deref(),
        Some("J Rosenberg \\\"")
    );
    assert_eq!(w.max_forwards(), Some(68));
    let c = w.cseq().unwrap();
    assert_eq!((c.seq, c.method), (9, Method::Invite));
    let vias = w.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].branch(), Some("390skdjuw"));
    assert!(!vias[0].has_magic_cookie());
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(w.headers.get("Subject"), Some(""));
    assert_eq!(
        w.headers.get("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        w.headers.get("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;")
    );
    let m = NameAddr::parse(w.headers.get("Contact").unwrap()).unwrap();
    assert_eq!(m.param("newparam"), Some(Some("newvalue")));
    assert_eq!(m.param("secondparam"), Some(None));
    assert_eq!(m.param("q"), Some(Some("0.33")));
    assert_eq!(w.body.len(), 150);

    // intmeth: extension method, odd URI, NUL inside a quoted display name, UTF-8 header.
    let i = req("intmeth");
    assert_eq!(
        i.method.as_str(),
        "!interesting-Method0123456789_*+`.%indeed'~"
    );
    assert_eq!(i.cseq().unwrap().method, i.method);
    let u = Uri::parse(&i.uri).unwrap();
    assert_eq!(
        u.user(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert!(i.to().unwrap().display.unwrap().contains('\0'));
    assert_eq!(
        i.headers.get("extensionHeader-!.%*+_`'~"),
        Some("\u{FEFF}\u{5927}\u{505C}\u{96FB}")
    );

    // esc01 / esc02 / escnull.
    let e = req("esc01");
    assert_eq!(
        Uri::parse(&e.uri).unwrap().user_unescaped().as_deref(),
        Some("sips:user@example.com")
    );
    assert_eq!(
        e.from().unwrap().uri.user_unescaped().as_deref(),
        Some("I have spaces")
    );
    let e2 = req("esc02");
    assert_eq!(e2.method.as_str(), "RE%47IST%45R");
    assert_eq!(e2.headers.count("Contact"), 2);
    assert_eq!(
        e2.headers.get("C%6Fntact"),
        Some("<sip:alias2@host2.example.com>")
    );
    let n = req("escnull");
    assert_eq!(
        n.to().unwrap().uri.user_unescaped().as_deref(),
        Some("null-\0-null")
    );

    // dblreq: only the first request, body cut to Content-Length 0.
    let d = req("dblreq");
    assert_eq!(d.method, Method::Register);
    assert!(d.body.is_empty());

    // mpart01: binary multipart body kept byte for byte.
    let mp = req("mpart01");
    assert_eq!(mp.body.len(), 553);
    assert!(mp.body.starts_with(b"--7a9cbec02ceef655\r\n"));

    // transports: five Vias incl. SCTP and an unknown transport.
    let t = req("transports");
    let ts: Vec<String> = t.vias().unwrap().into_iter().map(|v| v.transport).collect();
    assert_eq!(ts, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);

    // inv2543: no Content-Length on UDP: body is the rest of the datagram; no branch.
    let old = req("inv2543");
    assert_eq!(old.body.len(), 105);
    assert_eq!(old.top_via().unwrap().branch(), None);

    // semiuri: ';' in the user part.
    let s = req("semiuri");
    assert_eq!(
        Uri::parse(&s.uri).unwrap().user(),
        Some("user;par=u%40example.net")
    );
    assert_eq!(
        s.headers.get("Accept").map(|a| a.matches(',').count()),
        Some(5)
    );

    // longreq
    let l = req("longreq");
    assert_eq!(l.headers.count("Via"), 34);
    assert!(l.from().unwrap().tag().unwrap().len() > 100);

    // badbranch: a branch that is just the cookie; parses fine.
    let b = req("badbranch");
    assert_eq!(b.top_via().unwrap().branch(), Some("z9hG4bK"));

    // responses
    for (n, status, reason) in [
        ("noreason", 100, ""),
        ("unreason", 200, "= 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{43d}\u{43e}\u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{442}\u{44c} - \u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}"),
    ] {
        match parse(&load(n)).unwrap() {
            SipMessage::Response(r) => {
                assert_eq!(r.status, status);
                assert_eq!(r.reason, reason);
            }
            _ => panic!(),
        }
    }
}

/// Everything that parses must re-serialise and re-parse to the same message (Content-Length
/// aside: the emitter always writes exactly one, equal to the body length).
fn assert_round_trip(m: &SipMessage, ctx: &str) {
    let bytes = m.to_bytes();
    let m2 = parse(&bytes).unwrap_or_else(|e| {
        panic!(
            "{ctx}: re-parse failed: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let strip = |m: &SipMessage| {
        let mut m = m.clone();
        m.headers_mut().remove("Content-Length");
        m
    };
    assert_eq!(strip(m), strip(&m2), "{ctx}");
    assert_eq!(m2.content_length(), Some(m.body().len() as u32), "{ctx}");
    assert_eq!(m2.to_bytes(), bytes, "{ctx}: emit is not a fixed point");
}

/// Typed views that parse must re-parse from their own Display.
fn exercise_views(m: &SipMessage, ctx: &str) {
    let h = m.headers();
    for name in ["From", "To", "Contact", "Route", "Record-Route"] {
        for v in h.get_all(name) {
            if let Ok(list) = NameAddr::parse_list(v) {
                for na in list {
                    let s = na.to_string();
                    assert_eq!(NameAddr::parse(&s).as_ref(), Ok(&na), "{ctx}: {name} {s}");
                }
            }
        }
    }
    for v in h.get_all("Via") {
        if let Ok(list) = Via::parse_list(v) {
            for via in list {
                let s = via.to_string();
                assert_eq!(Via::parse(&s).as_ref(), Ok(&via), "{ctx}: Via {s}");
                let _ = (via.branch(), via.rport(), via.received());
            }
        }
    }
    if let SipMessage::Request(r) = m {
        assert_eq!(
            Uri::validate(&r.uri).is_ok(),
            Uri::parse(&r.uri).is_ok(),
            "{ctx}: validate/parse disagree on {}",
            r.uri
        );
        if let Ok(u) = Uri::parse(&r.uri) {
            let s = u.to_string();
            let u2 = Uri::parse(&s).unwrap_or_else(|e| panic!("{ctx}: URI {s}: {e}"));
            assert_eq!(u, u2, "{ctx}");
            assert!(u.equivalent(&u2), "{ctx}: {s}");
        }
        let _ = admission(r);
    } else if let SipMessage::Response(r) = m {
        let _ = check_response(r);
    }
    let _ = (
        m.call_id(),
        m.cseq(),
        m.from(),
        m.to(),
        m.top_via(),
        m.max_forwards(),
    );
}

#[test]
fn corpus_round_trips() {
    for (name, bytes) in all_files() {
        if let Ok(m) = parse(&bytes) {
            assert_round_trip(&m, &name);
            exercise_views(&m, &name);
        }
    }
}

/// xorshift64*: deterministic, no dependency.
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

const INTERESTING: &[u8] = b"\r\n :;,<>\"\\@?=%/\t\x00\xff\xc3";

fn mutate(rng: &mut Rng, src: &[u8]) -> Vec<u8> {
    let mut b = src.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = b.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 => b.truncate(rng.below(len + 1)),
            2 => {
                let i = rng.below(len + 1);
                let c = if rng.below(2) == 0 {
                    INTERESTING[rng.below(INTERESTING.len())]
                } else {
                    rng.next() as u8
                };
                b.insert(i, c);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(8).min(len - i);
                b.drain(i..i + n);
            }
            4 if len > 0 => {
                // duplicate a slice (duplicated headers, repeated separators)
                let i = rng.below(len);
                let n = rng.below(40).min(len - i);
                let piece = b[i..i + n].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, piece);
            }
            _ if len > 0 => {
                let i = rng.below(len);
                b[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            _ => {}
        }
    }
    b
}

#[test]
fn mutations_never_panic_and_round_trip() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let files = all_files();
    let per_file = 400;
    let mut parsed = 0usize;
    let mut total = 0usize;
    for (name, bytes) in &files {
        for k in 0..per_file {
            let m = mutate(&mut rng, bytes);
            total += 1;
            let _ = signaling::parse::frame_len(&m);
            match parse(&m) {
                Ok(msg) => {
                    parsed += 1;
                    let ctx = format!("{name} mutation {k}");
                    assert_round_trip(&msg, &ctx);
                    exercise_views(&msg, &ctx);
                }
                Err(e) => {
                    let _ = bad_request_response(&e).map(|r| r.to_bytes());
                    let _ = e.to_string();
                }
            }
        }
    }
    eprintln!("mutations: {parsed}/{total} parsed and round-tripped");
    assert_eq!(total, files.len() * per_file);
    // The mutations must leave a good share parseable, or the round-trip half tests nothing.
    assert!(
        parsed > total / 10,
        "only {parsed}/{total} mutations parsed"
    );
}
