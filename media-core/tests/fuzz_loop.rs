//! The fuzz targets of `fuzz/` (`sdp`, `ng`, `rtcp`) as a bounded mutation loop on stable Rust,
//! so the suite runs them on every test run: seeds (the SDP cases of `tests/data/sdp/`, ng
//! commands, RTCP compounds) mutated deterministically (bit flips, interesting bytes, inserted,
//! deleted, duplicated and spliced ranges, truncation), each mutant fed to the same body
//! (`media_core::fuzzing`) that libFuzzer drives. Not coverage-guided: the libFuzzer runs in
//! `fuzz/README.md` are.

use media_core::fuzzing;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = b"\x00\xff\x7f\x80 :=/\r\nedil0123456789-";

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = d.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                d[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                d[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                d.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let j = (i + 1 + rng.below(16)).min(len);
                d.drain(i..j);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let j = (i + 1 + rng.below(64)).min(len);
                let piece = d[i..j].to_vec();
                let at = rng.below(d.len() + 1);
                d.splice(at..at, piece);
            }
            5 if !other.is_empty() => {
                let i = rng.below(other.len());
                let j = (i + 1 + rng.below(64)).min(other.len());
                let at = rng.below(len + 1);
                d.splice(at..at, other[i..j].iter().copied());
            }
            6 if len > 0 => d.truncate(rng.below(len)),
            _ => {
                // a length/number field: replace a digit run's digit
                if let Some(i) = d.iter().position(u8::is_ascii_digit) {
                    d[i] = b'0' + rng.below(10) as u8;
                }
            }
        }
    }
    d
}

fn run(name: &str, seeds: &[Vec<u8>], iterations: u32, body: fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    for s in seeds {
        body(s);
    }
    for i in 0..iterations {
        let a = &seeds[rng.below(seeds.len())];
        let b = &seeds[rng.below(seeds.len())];
        let m = mutate(&mut rng, a, b);
        let r = std::panic::catch_unwind(|| body(&m));
        assert!(
            r.is_ok(),
            "{name}: mutant {i} panicked; input (escaped): {}",
            m.escape_ascii()
        );
    }
}

fn sdp_seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sdp");
    let mut seeds = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/data/sdp")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".in.sdp"))
        .collect();
    names.sort();
    for p in names {
        let raw = std::fs::read(&p).expect("read seed");
        let body: Vec<u8> = raw
            .split_inclusive(|&b| b == b'\n')
            .filter(|l| l.first() != Some(&b'#'))
            .flatten()
            .copied()
            .collect();
        seeds.push(body);
    }
    seeds
}

fn bstr(s: &[u8]) -> Vec<u8> {
    let mut v = format!("{}:", s.len()).into_bytes();
    v.extend_from_slice(s);
    v
}

fn dict(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut v = b"d".to_vec();
    for (k, val) in pairs {
        v.extend(bstr(k.as_bytes()));
        v.extend(bstr(val));
    }
    v.push(b'e');
    v
}

fn ng_seeds() -> Vec<Vec<u8>> {
    let sdp = b"v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp:4005\r\n";
    let mut seeds = vec![
        dict(&[("command", b"ping")]),
        dict(&[
            ("command", b"offer"),
            ("call-id", b"c1"),
            ("from-tag", b"a"),
            ("sdp", sdp),
        ]),
        dict(&[
            ("command", b"answer"),
            ("call-id", b"c1"),
            ("from-tag", b"a"),
            ("to-tag", b"b"),
            ("sdp", sdp),
        ]),
        dict(&[("command", b"query"), ("call-id", b"c1")]),
        dict(&[("command", b"delete"), ("call-id", b"c1"), ("from-tag", b"a")]),
        dict(&[("command", b"list"), ("limit", b"3")]),
        b"d7:command5:offer7:call-id2:c18:from-tag1:a3:sdp5:v=0\r\n13:received-froml3:IP412:198.51.100.1e7:replacel6:origin18:session-connectione5:flagsl13:trust-addressee".to_vec(),
        b"d4:listli1ei-2ed1:xi3eee5:limiti10ee".to_vec(),
    ];
    // The same with the cookie that `handle` expects first.
    let with_cookie: Vec<Vec<u8>> = seeds
        .iter()
        .map(|s| {
            let mut v = b"5b0b ".to_vec();
            v.extend_from_slice(s);
            v
        })
        .collect();
    seeds.extend(with_cookie);
    seeds
}

fn rtcp_seeds() -> Vec<Vec<u8>> {
    let mut sr = vec![0x81, 200, 0, 12];
    sr.extend_from_slice(&[0xaa; 4]); // SSRC
    sr.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]); // NTP
    sr.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 9, 0, 0, 5, 0]); // RTP ts, packets, octets
    sr.extend_from_slice(&[0xbb; 4]); // report block: SSRC
    sr.extend_from_slice(&[
        64, 0, 0, 12, 0, 0, 0, 160, 0, 0, 0, 20, 0, 1, 2, 3, 0, 0, 8, 0,
    ]);
    let rr = vec![0x80, 201, 0, 1, 0, 0, 0xaa, 0xaa];
    let sdes = vec![0x81, 202, 0, 2, 0, 0, 0, 1, 1, 1, b'x', 0];
    let mut xr = vec![0x80, 207, 0, 10, 0, 0, 0, 1, 7, 0, 0, 8];
    xr.extend_from_slice(&[0, 0, 0, 1]);
    xr.extend_from_slice(&[0; 28]);
    xr[8 + 4 + 4 + 20] = 42; // MOS-LQ
    let mut compound = sr.clone();
    compound.extend_from_slice(&sdes);
    compound.extend_from_slice(&xr);
    let mut rtp = vec![0x80, 0x00, 0x01, 0x02, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef];
    rtp.extend_from_slice(&[0xd5; 160]);
    let mut rtp_ext = vec![0x90, 0x60, 0x00, 0x03, 0, 0, 1, 0, 0, 0, 0, 1];
    rtp_ext.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0, 1, 2, 3]);
    vec![sr, rr, sdes, xr, compound, rtp, rtp_ext]
}

#[test]
fn fuzz_loop_sdp() {
    run("sdp", &sdp_seeds(), 40_000, fuzzing::sdp);
}

#[test]
fn fuzz_loop_ng() {
    run("ng", &ng_seeds(), 40_000, fuzzing::ng);
}

#[test]
fn fuzz_loop_rtcp() {
    run("rtcp", &rtcp_seeds(), 400_000, fuzzing::rtcp);
}
