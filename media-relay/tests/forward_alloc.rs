//! Invariant 5: the relay forward path allocates nothing per packet, learning (sequence
//! probation of a NATed source) and the RTP Bleed guard (dropping a sprayer) included. A
//! counting global allocator sees every allocation of the process; a burst of packets through
//! an epoll relay must cost a small constant number of allocations, not one per packet.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use media_relay::{Backend, DataPlane, Relay, RelayConfig};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn rtp(buf: &mut [u8; 172], seq: u16, ssrc: u32) {
    buf[0] = 0x80;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

#[test]
fn forwarding_allocates_nothing_per_packet() {
    let r = Relay::start(RelayConfig {
        address: "127.0.0.1".parse().unwrap(),
        port_min: 48800,
        port_max: 48899,
        backend: Backend::Epoll,
        workers: 1,
        timeout: Duration::from_secs(60),
        strict_source: false,
    })
    .expect("relay");
    let pair = r.open_pair().unwrap();
    let x = UdpSocket::bind("127.0.0.1:0").unwrap();
    let y = UdpSocket::bind("127.0.0.1:0").unwrap();
    let evil = UdpSocket::bind("127.0.0.66:0").unwrap();
    for s in [&x, &y] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    // X is behind NAT (SDP names a port it does not send from), Y sends from its SDP address.
    let nat_sdp: SocketAddr = "127.0.0.1:9".parse().unwrap();
    r.set_remote_from(pair.a, nat_sdp, None, Some(x.local_addr().unwrap().ip()))
        .unwrap();
    r.set_remote(pair.b, y.local_addr().unwrap(), None).unwrap();
    let to_a = SocketAddr::new("127.0.0.1".parse().unwrap(), pair.a);
    let to_b = SocketAddr::new("127.0.0.1".parse().unwrap(), pair.b);
    let mut p = [0u8; 172];
    let mut got = [0u8; 2048];
    // Warm up: learn both sources (X through probation), one full round trip.
    for seq in 0..3 {
        rtp(&mut p, seq, 1);
        x.send_to(&p, to_a).unwrap();
    }
    y.recv_from(&mut got).expect("X learned");
    rtp(&mut p, 0, 2);
    y.send_to(&p, to_b).unwrap();
    x.recv_from(&mut got).expect("Y's media reaches X");

    let n = 2000u16;
    let before = ALLOCS.load(Ordering::SeqCst);
    let t0 = Instant::now();
    for i in 0..n {
        rtp(&mut p, 3 + i, 1);
        x.send_to(&p, to_a).unwrap();
        rtp(&mut p, 1 + i, 2);
        y.send_to(&p, to_b).unwrap();
        rtp(&mut p, i, 66);
        evil.send_to(&p, to_a).unwrap();
        y.recv_from(&mut got).expect("X -> Y");
        x.recv_from(&mut got).expect("Y -> X");
    }
    let used = ALLOCS.load(Ordering::SeqCst) - before;
    let elapsed = t0.elapsed();
    let t = r.totals();
    assert!(t.dropped_foreign_source >= u64::from(n) / 2, "{t:?}");
    // The worker's idle tick (every 20 ms) and timeout scans may allocate a little; per packet
    // (6000 datagrams here) nothing.
    let ticks = elapsed.as_millis() as u64 / 20 + 1;
    assert!(
        used <= 16 + 4 * ticks,
        "{used} allocations for {} datagrams in {elapsed:?}",
        3 * n
    );
    r.shutdown();
}
