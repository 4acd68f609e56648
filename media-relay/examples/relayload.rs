//! Load harness for the relay data plane.
//!
//! Starts a `Relay` with N pairs signalled like `ngcalls.py` does for rtpengine (a side =
//! 127.0.0.1:(base_a + 2i), b side = 127.0.0.1:(base_b + 2i)), writes `pa ra pb rb` lines for
//! `rtpblast`, then runs for `--seconds` and prints its own CPU time (getrusage), the packets it
//! relayed, CPU per packet and RSS before/after opening the pairs.
//!
//! ```text
//! cargo run --release -p media-relay --example relayload -- --calls 500 --backend io_uring \
//!     --seconds 13 --out /tmp/calls.txt &
//! sleep 1; /tmp/rtpblast --pps 50 --seconds 10 < /tmp/calls.txt
//! ```

use std::io::Write;
use std::time::{Duration, Instant};

use media_relay::{Backend, DataPlane, Relay, RelayConfig};

fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let mut calls = 500usize;
    let mut backend = Backend::Auto;
    let mut workers = 0usize;
    let mut seconds = 13.0f64;
    let mut out = String::from("/tmp/calls.txt");
    let mut base_a = 40000u16;
    let mut base_b = 50000u16;
    let mut port_min = 30000u16;
    let mut port_max = 39999u16;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        let v = &args[i + 1];
        match args[i].as_str() {
            "--calls" => calls = v.parse().expect("--calls N"),
            "--backend" => {
                backend = match v.as_str() {
                    "epoll" => Backend::Epoll,
                    "io_uring" | "iouring" => Backend::IoUring,
                    _ => Backend::Auto,
                }
            }
            "--workers" => workers = v.parse().expect("--workers N"),
            "--seconds" => seconds = v.parse().expect("--seconds S"),
            "--out" => out = v.clone(),
            "--base-a" => base_a = v.parse().expect("--base-a P"),
            "--base-b" => base_b = v.parse().expect("--base-b P"),
            "--port-min" => port_min = v.parse().expect("--port-min P"),
            "--port-max" => port_max = v.parse().expect("--port-max P"),
            o => panic!("unknown option {o}"),
        }
        i += 2;
    }
    let rss0 = rss_kib();
    let relay = Relay::start(RelayConfig {
        address: "127.0.0.1".parse().unwrap(),
        port_min,
        port_max,
        backend,
        workers,
        timeout: Duration::from_secs(3600),
        strict_source: false,
    })
    .expect("relay start");
    let rss1 = rss_kib();
    let mut lines = String::new();
    let t0 = Instant::now();
    let mut pairs = Vec::with_capacity(calls);
    for i in 0..calls {
        let pa = base_a + 2 * i as u16;
        let pb = base_b + 2 * i as u16;
        let p = relay.open_pair().expect("open_pair");
        relay
            .set_remote(p.a, format!("127.0.0.1:{pa}").parse().unwrap(), None)
            .unwrap();
        relay
            .set_remote(p.b, format!("127.0.0.1:{pb}").parse().unwrap(), None)
            .unwrap();
        lines.push_str(&format!("{pa} {} {pb} {}\n", p.a, p.b));
        pairs.push(p);
    }
    let setup = t0.elapsed();
    // Let the workers register everything, then measure memory.
    for p in pairs.iter().step_by((calls / 8).max(1)) {
        let _ = relay.stats(p.a);
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss2 = rss_kib();
    std::fs::File::create(&out)
        .and_then(|mut f| f.write_all(lines.as_bytes()))
        .expect("write --out file");
    eprintln!(
        "relayload: backend={} workers={} calls={} setup={:.1}ms rss_start={}KiB rss_relay={}KiB rss_pairs={}KiB per_pair={:.0}B",
        relay.backend_name(),
        relay.workers(),
        calls,
        setup.as_secs_f64() * 1e3,
        rss0,
        rss1,
        rss2,
        (rss2.saturating_sub(rss1) as f64 * 1024.0) / calls.max(1) as f64
    );
    let cpu0 = cpu_secs();
    let tot0 = relay.totals();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let t = relay.totals();
    let pk = t.packets_out - tot0.packets_out;
    let mut mos_sum = 0.0;
    let mut mos_n = 0;
    for p in pairs.iter().take(50) {
        if let Some(m) = relay.stats(p.a).and_then(|s| s.mos) {
            mos_sum += m;
            mos_n += 1;
        }
    }
    println!(
        "relayload: backend={} calls={} wall={:.2}s cpu={:.3}s relayed={} in={} dropped_foreign={} dropped_no_dest={} dropped_not_ready={} send_errors={} cpu_per_packet_us={:.2} pps={:.0} cpu_util={:.1}% rss_per_pair_B={:.0} mos_avg={:.2}",
        relay.backend_name(),
        calls,
        wall,
        cpu,
        pk,
        t.packets_in - tot0.packets_in,
        t.dropped_foreign_source,
        t.dropped_no_destination,
        t.dropped_not_ready,
        t.send_errors,
        if pk > 0 { cpu * 1e6 / pk as f64 } else { 0.0 },
        pk as f64 / wall,
        cpu * 100.0 / wall,
        (rss2.saturating_sub(rss1) as f64 * 1024.0) / calls.max(1) as f64,
        if mos_n > 0 { mos_sum / mos_n as f64 } else { 0.0 },
    );
    relay.shutdown();
}
