//! An active/standby pair (`cluster:` with `role: standby` and `shared_address`): node a
//! (active) and node b (standby) in network namespaces of their own, joined to this test's
//! namespace by veth pairs; the service address 10.99.0.1 is node a's. The callers, the
//! callees and Redis (Debian's `redis-server`, started here; missing, the test fails) are in
//! the test's namespace at 10.99.9.1. Calls are set up through node a with RTP both ways;
//! node a is killed with SIGKILL, the test moves the address to node b's namespace (what
//! keepalived would do) and re-routes it, and every call carries RTP both ways again within
//! 2 s, each caller's BYE is answered 200 and reaches its callee as a BYE in the callee's
//! dialog with a higher CSeq, and no call record is left in Redis. Needs root (network
//! namespaces, veth); CI runs as root.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{ProcGuard, SpawnGroup};
use common::rawsip::{recv_until, reply, rtp_packet, sdp, ssrc_of, Msg, Uac, Uas};
use common::*;

const SHARED: &str = "10.99.0.1";
const PEERS: &str = "10.99.9.1";
const CALLS: usize = 30;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip(8) runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", ns, "ip"];
    all.extend_from_slice(args);
    ip(&all);
}

/// The two nodes' namespaces (deleted on drop), each joined to this one by a veth pair:
/// node `i` is 10.99.<i+1>.2, this side 10.99.<i+1>.1.
struct Topology {
    ns: [String; 2],
}

impl Topology {
    fn new() -> Topology {
        let pid = std::process::id();
        let ns = [format!("tlha-a-{pid}"), format!("tlha-b-{pid}")];
        ip(&["addr", "add", &format!("{PEERS}/32"), "dev", "lo"]);
        for (i, n) in ns.iter().enumerate() {
            let (here, there) = (format!("10.99.{}.1", i + 1), format!("10.99.{}.2", i + 1));
            let dev = format!("tlha{i}");
            ip(&["netns", "add", n]);
            ip(&[
                "link", "add", &dev, "type", "veth", "peer", "name", "eth0", "netns", n,
            ]);
            ip(&["addr", "add", &format!("{here}/24"), "dev", &dev]);
            ip(&["link", "set", &dev, "up"]);
            in_ns(n, &["link", "set", "lo", "up"]);
            in_ns(n, &["addr", "add", &format!("{there}/24"), "dev", "eth0"]);
            in_ns(n, &["link", "set", "eth0", "up"]);
            in_ns(n, &["route", "add", "default", "via", &here]);
        }
        Topology { ns }
    }

    /// The shared address is node `i`'s: on its loopback, and routed to it from here.
    fn give_address(&self, i: usize) {
        in_ns(
            &self.ns[i],
            &["addr", "add", &format!("{SHARED}/32"), "dev", "lo"],
        );
        let via = format!("10.99.{}.2", i + 1);
        ip(&["route", "replace", &format!("{SHARED}/32"), "via", &via]);
    }

    fn take_address(&self, i: usize) {
        in_ns(
            &self.ns[i],
            &["addr", "del", &format!("{SHARED}/32"), "dev", "lo"],
        );
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn redis(net: &Net, port: u16) -> ProcGuard {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            PEERS,
            "--protected-mode",
            "no",
        ])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::fs::File::create(net.dir.join("redis.log")).expect("log"))
        .stderr(std::process::Stdio::null())
        .spawn_group()
        .expect("redis-server is not installed: run scripts/install-deps.sh");
    wait_tcp_listening(port, Duration::from_secs(10));
    child
}

fn call_keys(redis: u16) -> usize {
    let out = Command::new("redis-cli")
        .args([
            "-h",
            PEERS,
            "-p",
            &redis.to_string(),
            "--scan",
            "--pattern",
            "tl:call:*",
        ])
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn node_yaml(net: &Net, name: &str, standby: bool, redis: u16) -> String {
    let metrics = if name == "a" {
        "10.99.1.2"
    } else {
        "10.99.2.2"
    };
    let role = if standby {
        format!("  role: standby\n  shared_address: {SHARED}\n")
    } else {
        String::new()
    };
    format!(
        "listen:\n  - {{ transport: udp, address: {SHARED}:5060 }}\n\
         media:\n  address: {SHARED}\n  ports: {media}\n\
         trunks:\n  carrier: {{ address: {PEERS}:{uac}, transport: udp }}\n  pbx: {{ address: {PEERS}:{uas}, transport: udp }}\n\
         dialplan:\n  - route: [pbx]\n\
         metrics:\n  listen: {metrics}:9100\n  allow: [10.99.0.0/16]\n\
         cluster:\n  redis: redis://{PEERS}:{redis}/0\n  node: {name}\n{role}",
        media = net.media_range(),
        uac = net.uac(),
        uas = net.trunk(0),
    )
}

fn metric_of(node: usize, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let addr: SocketAddr = format!("10.99.{}.2:9100", node + 1).parse().unwrap();
    let (code, body) = http(addr, "GET", "/metrics");
    assert_eq!(code, 200);
    metric(&body, name, labels)
}

/// One call: the caller's dialog, the callee's INVITE, both ends' RTP sockets and the relay
/// ports each end sends to.
struct Call {
    uac: Uac,
    invite_b: Msg,
    rtp_a: UdpSocket,
    rtp_b: UdpSocket,
    to_a: u16,
    to_b: u16,
}

fn rtp_socket() -> UdpSocket {
    let s = UdpSocket::bind((PEERS, 0)).expect("bind RTP");
    s.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    s
}

fn setup(i: usize, caller: &UdpSocket, uas: &Uas) -> Call {
    let tl: SocketAddr = format!("{SHARED}:5060").parse().unwrap();
    let mut uac = Uac::new(caller.try_clone().expect("clone"), tl, &format!("ha{i}"));
    let (rtp_a, rtp_b) = (rtp_socket(), rtp_socket());
    let offer = sdp(PEERS, rtp_a.local_addr().unwrap().port());
    let cseq = uac.send("INVITE", Some(&offer));
    let invite_b = uas.recv_request("INVITE", Duration::from_secs(5));
    let to_b = invite_b.audio_port();
    let answer = sdp(PEERS, rtp_b.local_addr().unwrap().port());
    let from: SocketAddr = format!("{SHARED}:5060").parse().unwrap();
    reply(
        &uas.sock,
        from,
        &invite_b,
        200,
        &format!("b{i}"),
        Some(&answer),
    );
    let ok = uac.final_response("INVITE", cseq);
    assert_eq!(ok.code(), Some(200), "call {i} answered");
    let to_a = ok.audio_port();
    // The callee's ACK.
    recv_until(&uas.sock, Duration::from_secs(5), "B: ACK", |m| {
        m.is_request("ACK")
    });
    Call {
        uac,
        invite_b,
        rtp_a,
        rtp_b,
        to_a,
        to_b,
    }
}

/// Whether a packet from `from` through relay port `port` reaches `to`, trying until
/// `deadline`.
fn flows(from: &UdpSocket, port: u16, to: &UdpSocket, ssrc: u32, deadline: Instant) -> bool {
    let dst: SocketAddr = format!("{SHARED}:{port}").parse().unwrap();
    let mut buf = [0u8; 2048];
    let mut seq = 0u16;
    while Instant::now() < deadline {
        seq = seq.wrapping_add(1);
        let _ = from.send_to(&rtp_packet(seq, u32::from(seq) * 160, ssrc), dst);
        if let Ok((n, _)) = to.recv_from(&mut buf) {
            if ssrc_of(&buf[..n]) == Some(ssrc) {
                return true;
            }
        }
    }
    false
}

fn both_ways(c: &Call, i: usize, deadline: Instant) -> bool {
    let i = i as u32;
    flows(&c.rtp_a, c.to_a, &c.rtp_b, 0xa000 + i, deadline)
        && flows(&c.rtp_b, c.to_b, &c.rtp_a, 0xb000 + i, deadline)
}

/// The CSeq number of a request.
fn cseq_of(m: &Msg) -> u32 {
    header(&m.text, "CSeq", None)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no CSeq in {}", m.text))
}

#[test]
fn a_standby_takes_over_answered_calls_when_the_shared_address_moves() {
    assert!(
        is_root(),
        "cluster_takeover needs root (network namespaces and veth pairs)"
    );
    isolated(
        "a_standby_takes_over_answered_calls_when_the_shared_address_moves",
        true,
        |net| {
            let topo = Topology::new();
            topo.give_address(0);
            let redis_port = net.spare(200);
            let _redis = redis(net, redis_port);
            let caller = UdpSocket::bind((PEERS, net.uac())).expect("bind caller");
            let uas = Uas {
                sock: UdpSocket::bind((PEERS, net.trunk(0))).expect("bind callee"),
            };
            let mut a = Trunkline::start_in_netns(
                net,
                "a",
                &node_yaml(net, "a", false, redis_port),
                &topo.ns[0],
            );
            let mut b = Trunkline::start_in_netns(
                net,
                "b",
                &node_yaml(net, "b", true, redis_port),
                &topo.ns[1],
            );
            let up = |n: usize| {
                poll_until(
                    Instant::now() + Duration::from_secs(15),
                    Duration::from_millis(100),
                    || {
                        std::net::TcpStream::connect(format!("10.99.{}.2:9100", n + 1)).is_ok()
                            && metric_of(n, "trunkline_cluster_up", &[]) == Some(1.0)
                    },
                )
            };
            assert!(
                up(0),
                "node a up ({:?}); log:\n{}",
                metric_of(0, "trunkline_cluster_up", &[]),
                a.log_tail(40)
            );
            assert!(
                up(1),
                "node b up ({:?}); log:\n{}",
                metric_of(1, "trunkline_cluster_up", &[]),
                b.log_tail(40)
            );

            let calls: Vec<Call> = (0..CALLS).map(|i| setup(i, &caller, &uas)).collect();
            for (i, c) in calls.iter().enumerate() {
                let deadline = Instant::now() + Duration::from_secs(2);
                assert!(both_ways(c, i, deadline), "call {i}: RTP through node a");
            }
            let held = poll_until(
                Instant::now() + Duration::from_secs(5),
                Duration::from_millis(50),
                || metric_of(1, "trunkline_cluster_calls_held", &[]) == Some(CALLS as f64),
            );
            assert!(
                held,
                "node b holds every call's record; log:\n{}",
                b.log_tail(40)
            );
            assert_eq!(call_keys(redis_port), CALLS, "one record per call in Redis");

            // Node a dies; the address moves to node b.
            a.signal(libc::SIGKILL);
            assert!(
                a.wait_exit(Duration::from_secs(5)).is_some(),
                "node a is gone"
            );
            topo.take_address(0);
            let moved = Instant::now();
            topo.give_address(1);
            let deadline = moved + Duration::from_secs(2);
            for (i, c) in calls.iter().enumerate() {
                assert!(
                    both_ways(c, i, deadline),
                    "call {i}: RTP both ways through node b within 2 s of the move; log:\n{}",
                    b.log_tail(40)
                );
            }
            println!(
                "takeover: RTP of all {CALLS} calls both ways {} ms after the address moved",
                moved.elapsed().as_millis()
            );
            assert_eq!(
                metric_of(
                    1,
                    "trunkline_cluster_call_records_total",
                    &[("op", "adopted")]
                ),
                Some(CALLS as f64)
            );

            // Each caller hangs up: 200 from node b, and the callee gets the BYE in its dialog.
            for (i, mut c) in calls.into_iter().enumerate() {
                let cseq = c.uac.send("BYE", None);
                let bye = uas.recv_request("BYE", Duration::from_secs(5));
                let id = |m: &Msg| header(&m.text, "Call-ID", Some("i")).map(str::to_string);
                assert_eq!(
                    id(&bye),
                    id(&c.invite_b),
                    "call {i}: BYE in the callee's dialog"
                );
                assert!(
                    cseq_of(&bye) > cseq_of(&c.invite_b),
                    "call {i}: the callee's CSeq goes up"
                );
                let from: SocketAddr = format!("{SHARED}:5060").parse().unwrap();
                reply(&uas.sock, from, &bye, 200, &format!("b{i}"), None);
                let ok = c.uac.final_response("BYE", cseq);
                assert_eq!(ok.code(), Some(200), "call {i}: the caller's BYE answered");
            }
            let clean = poll_until(
                Instant::now() + Duration::from_secs(5),
                Duration::from_millis(50),
                || call_keys(redis_port) == 0,
            );
            assert!(
                clean,
                "no call record left in Redis ({} left)",
                call_keys(redis_port)
            );
            b.assert_alive();
        },
    );
}
