//! The relay tests' harness: a relay on 127.0.0.1 per back end, UDP clients, RTP packets,
//! a signalled call between two clients.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use media_relay::relay::RelayTuning;
use media_relay::{Backend, DataPlane, LegPair, Relay, RelayConfig};

pub fn start(
    backend: Backend,
    port_min: u16,
    port_max: u16,
    timeout: Duration,
    strict: bool,
) -> Option<Relay> {
    start_tuned(
        backend,
        port_min,
        port_max,
        timeout,
        strict,
        &RelayTuning::default(),
    )
}

pub fn start_tuned(
    backend: Backend,
    port_min: u16,
    port_max: u16,
    timeout: Duration,
    strict: bool,
    tuning: &RelayTuning,
) -> Option<Relay> {
    let cfg = RelayConfig {
        address: "127.0.0.1".parse().unwrap(),
        port_min,
        port_max,
        backend,
        workers: 2,
        timeout,
        strict_source: strict,
    };
    match Relay::start_with(cfg, tuning) {
        Ok(r) => {
            println!("backend: {}", r.backend_name());
            let want = match backend {
                Backend::IoUring => "io_uring",
                Backend::Epoll => "epoll",
                Backend::Auto => r.backend_name(),
            };
            assert_eq!(r.backend_name(), want);
            Some(r)
        }
        Err(e)
            if backend == Backend::IoUring
                && std::env::var_os("TRUNKLINE_NO_IO_URING").is_some() =>
        {
            println!("SKIP (TRUNKLINE_NO_IO_URING): kernel refused io_uring: {e}");
            None
        }
        Err(e) => panic!("relay start: {e}"),
    }
}

pub fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    s
}

pub fn relay_addr(port: u16) -> SocketAddr {
    SocketAddr::new("127.0.0.1".parse().unwrap(), port)
}

pub fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p[12..20].copy_from_slice(b"payload!");
    p
}

pub fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut b = [0u8; 2048];
    let (n, from) = loop {
        match s.recv_from(&mut b) {
            Ok(x) => break x,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    };
    Some((b[..n].to_vec(), from))
}

/// Wait until `cond` holds on the relay totals (workers publish asynchronously).
pub fn wait_totals(
    r: &Relay,
    cond: impl Fn(&media_relay::RelayTotals) -> bool,
) -> media_relay::RelayTotals {
    let t0 = Instant::now();
    loop {
        let t = r.totals();
        if cond(&t) || t0.elapsed() > Duration::from_secs(2) {
            return t;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn recv_quiet(s: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    s.set_read_timeout(Some(wait)).unwrap();
    let r = recv(s);
    s.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    r
}

/// Caller X (RTP+RTCP sockets) and callee Y, signalled on a pair.
pub struct Call {
    pub pair: LegPair,
    pub x: UdpSocket,
    pub xc: UdpSocket,
    pub y: UdpSocket,
    pub yc: UdpSocket,
}

pub fn call(r: &Relay) -> Call {
    let pair = r.open_pair().unwrap();
    let (x, xc, y, yc) = (client(), client(), client(), client());
    r.set_remote(
        pair.a,
        x.local_addr().unwrap(),
        Some(xc.local_addr().unwrap()),
    )
    .unwrap();
    r.set_remote(
        pair.b,
        y.local_addr().unwrap(),
        Some(yc.local_addr().unwrap()),
    )
    .unwrap();
    Call { pair, x, xc, y, yc }
}
