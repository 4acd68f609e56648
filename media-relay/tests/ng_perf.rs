//! Throughput measurements for the control side (ignored by default; they print numbers):
//!
//! ```text
//! cargo test --release -p media-relay --test ng_perf -- --ignored --nocapture --test-threads 1
//! ```

use media_relay::control::fake::FakeDataPlane;
use media_relay::control::MediaCalls;
use media_relay::ng::{self, NgHandler, Value};
use media_relay::sdp::Sdp;
use media_relay::{Backend, Relay, RelayConfig};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

const SDP: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\ns=-\r\n\
c=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n\
a=sendrecv\r\n";

#[test]
#[ignore]
fn sdp_parse_rewrite_rate() {
    let n = 200_000;
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        let s = Sdp::parse(SDP.as_bytes()).unwrap();
        bytes += s.rewrite(LOOPBACK, &[30000], None).unwrap().len();
    }
    let dt = t.elapsed();
    println!(
        "sdp parse+rewrite: {n} in {dt:?} = {:.0}/s ({:.2} us each, {bytes} bytes out)",
        n as f64 / dt.as_secs_f64(),
        dt.as_secs_f64() * 1e6 / n as f64
    );
}

#[test]
#[ignore]
fn ng_handler_call_rate() {
    let dp = Arc::new(FakeDataPlane::new(LOOPBACK, 10000, 1000));
    let mut h = NgHandler::new(Arc::new(Mutex::new(MediaCalls::new(dp))));
    let n = 50_000u32;
    let t0 = Instant::now();
    let now = Instant::now();
    for i in 0..n {
        let cid = format!("c{i}");
        for (k, cmd) in ["offer", "answer", "delete"].iter().enumerate() {
            let mut d = format!("{i}-{k} ").into_bytes();
            Value::dict([
                ("command", Value::str(cmd)),
                ("call-id", Value::str(&cid)),
                ("from-tag", Value::str("a")),
                ("to-tag", Value::str("b")),
                ("sdp", Value::str(SDP)),
            ])
            .encode_into(&mut d);
            let r = h.handle(&d, now).unwrap();
            assert!(r.windows(12).any(|w| w == b"6:result2:ok"), "{cmd}");
        }
    }
    let dt = t0.elapsed();
    println!(
        "ng offer+answer+delete in process: {n} calls in {dt:?} = {:.0} calls/s",
        f64::from(n) / dt.as_secs_f64()
    );
}

#[test]
#[ignore]
fn ngcalls_py_500_calls_real_relay() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/peers/kamailio-rtpengine/ngcalls.py");
    let relay = Arc::new(
        Relay::start(RelayConfig {
            address: LOOPBACK,
            port_min: 37000,
            port_max: 39999,
            backend: Backend::Auto,
            workers: 1,
            timeout: Duration::from_secs(60),
            strict_source: false,
        })
        .unwrap(),
    );
    let calls = Arc::new(Mutex::new(MediaCalls::new(relay.clone())));
    let server = ng::serve(
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        NgHandler::new(calls.clone()),
    )
    .unwrap();
    let ng = server.local_addr().to_string();
    for args in [&["--calls", "500"][..], &["--calls", "500", "--delete"][..]] {
        let t = Instant::now();
        let out = Command::new("python3")
            .arg(&script)
            .args(["--ng", &ng])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        println!(
            "ngcalls.py {args:?} against trunkline ng: {:?}",
            t.elapsed()
        );
    }
    server.shutdown();
}
