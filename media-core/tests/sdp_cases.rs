//! Data-driven SDP rewrite cases: `tests/data/sdp/NAME.in.sdp` (+ `NAME.out.sdp`).
//!
//! An input file starts with `#` header lines giving the rewrite parameters:
//!
//! ```text
//! # relay=203.0.113.1 ports=30000,30002
//! # origin=4242,1        (optional: rewrite with a fresh OriginState(sess_id, first_version))
//! # error                (optional: the body must be refused; no .out.sdp file)
//! ```
//!
//! The rest of the file is the SDP body exactly as given to the parser (LF or CRLF). The expected
//! output file is written with LF for readability; the rewritten body must use CRLF only, and
//! equal the expected file with its LFs turned into CRLFs.

use media_core::sdp::{OriginState, Sdp};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

struct Case {
    relay: IpAddr,
    ports: Vec<u16>,
    origin: Option<(u64, u64)>,
    error: bool,
    body: Vec<u8>,
}

fn parse_case(path: &Path) -> Case {
    let raw = std::fs::read(path).unwrap();
    let mut relay = None;
    let mut ports = Vec::new();
    let mut origin = None;
    let mut error = false;
    let mut rest = &raw[..];
    while rest.first() == Some(&b'#') {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = std::str::from_utf8(&rest[1..end]).unwrap().trim();
        for tok in line.split_whitespace() {
            match tok.split_once('=') {
                Some(("relay", v)) => relay = Some(v.parse().unwrap()),
                Some(("ports", v)) => {
                    ports = v
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| p.parse().unwrap())
                        .collect()
                }
                Some(("origin", v)) => {
                    let (a, b) = v.split_once(',').unwrap();
                    origin = Some((a.parse().unwrap(), b.parse().unwrap()));
                }
                None if tok == "error" => error = true,
                _ => panic!("{}: unknown header token {tok}", path.display()),
            }
        }
        rest = rest.get(end + 1..).unwrap_or(&[]);
    }
    Case {
        relay: relay.unwrap_or_else(|| panic!("{}: no relay= header", path.display())),
        ports,
        origin,
        error,
        body: rest.to_vec(),
    }
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sdp")
}

#[test]
fn sdp_rewrite_cases() {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.sdp"))
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 15,
        "expected many cases, found {}",
        inputs.len()
    );
    let mut failures = Vec::new();
    for input in &inputs {
        let name = input
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".in.sdp", "");
        let case = parse_case(input);
        let mut st = case.origin.map(|(id, v)| OriginState::new(id, v));
        let result =
            Sdp::parse(&case.body).and_then(|s| s.rewrite(case.relay, &case.ports, st.as_mut()));
        if case.error {
            if let Ok(out) = result {
                failures.push(format!(
                    "{name}: expected an error, got:\n{}",
                    String::from_utf8_lossy(&out)
                ));
            }
            continue;
        }
        let out = match result {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{name}: error {e}"));
                continue;
            }
        };
        for (i, w) in out.windows(2).enumerate() {
            if w[1] == b'\n' && w[0] != b'\r' {
                failures.push(format!("{name}: bare LF at byte {}", i + 1));
            }
        }
        if out.first() == Some(&b'\n') || !out.ends_with(b"\r\n") {
            failures.push(format!("{name}: output does not end with CRLF"));
        }
        let expected_path = data_dir().join(format!("{name}.out.sdp"));
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()))
            .replace("\r\n", "\n")
            .replace('\n', "\r\n");
        let got = String::from_utf8_lossy(&out);
        if got != expected {
            failures.push(format!(
                "{name}: mismatch\n--- expected\n{expected}--- got\n{got}"
            ));
        }
        // A rewrite of a rewrite is stable (idempotent on addresses and ports).
        let again = Sdp::parse(&out).and_then(|s| s.rewrite(case.relay, &case.ports, None));
        if again.as_deref() != Ok(&out[..]) && case.origin.is_none() {
            failures.push(format!("{name}: rewriting the output again changed it"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
