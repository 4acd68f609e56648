//! Two trunkline nodes sharing the location service through Redis (`cluster:`; Debian's
//! `redis-server`, started here; missing, the test fails). A phone registers at node b; a
//! carrier's call for the user arriving at node a goes through node b (trusted as a peer) to
//! the phone. Node b is killed with SIGKILL and restarted with no store of its own: it reads
//! its bindings back from Redis, and the next call through node a reaches the phone again
//! without a new REGISTER. Redis is killed: both nodes say `trunkline_cluster_up 0` and the
//! call still goes through (what the nodes know stays); Redis restarts empty: the nodes
//! reconnect and node b writes its binding again.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::process::{ProcGuard, SpawnGroup};
use common::rawsip::{recv_until, sdp};
use common::*;
use signaling::digest_client::{Credentials, DigestClient, RequestParts};
use signaling::parse::parse;
use signaling::SipMessage;

const NODE_A: [u8; 4] = [127, 0, 0, 1];
const NODE_B: [u8; 4] = [127, 0, 0, 2];

fn redis(net: &Net) -> (ProcGuard, u16) {
    redis_on(net, net.spare(200))
}

fn redis_on(net: &Net, port: u16) -> (ProcGuard, u16) {
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::fs::File::create(net.dir.join("redis.log")).expect("log"))
        .stderr(std::process::Stdio::null())
        .spawn_group()
        .expect("redis-server is not installed: run scripts/install-deps.sh");
    wait_tcp_listening(port, Duration::from_secs(10));
    (child, port)
}

/// Node `name` at `ip`, metrics on `metrics`, media ports `media`; its carrier trunk at
/// 127.0.0.1:`carrier` and every call routed to it.
fn node(net: &Net, name: &str, ip: [u8; 4], metrics: u16, media: &str, redis: u16) -> String {
    node_with(
        net,
        name,
        ip,
        (metrics, media, redis),
        net.uac(),
        "",
        "carrier",
    )
}

fn node_with(
    net: &Net,
    name: &str,
    ip: [u8; 4],
    (metrics, media, redis): (u16, &str, u16),
    carrier: u16,
    more_trunks: &str,
    route: &str,
) -> String {
    let ip = std::net::Ipv4Addr::from(ip);
    let (a, b) = (
        std::net::Ipv4Addr::from(NODE_A),
        std::net::Ipv4Addr::from(NODE_B),
    );
    let other = if name == "a" { ("b", b) } else { ("a", a) };
    format!(
        "listen:\n  - {{ transport: udp, address: {ip}:{sip} }}\n\
         media:\n  address: 127.0.0.1\n  ports: {media}\n\
         trunks:\n  carrier: {{ address: 127.0.0.1:{carrier}, transport: udp }}\n{more_trunks}\
         dialplan:\n  - route: [{route}]\n\
         metrics:\n  listen: 127.0.0.1:{metrics}\n\
         registrar:\n  domains: [example.com]\n  keepalive: 0\n  users:\n    alice: {{ password: s3cret }}\n\
         cluster:\n  redis: redis://127.0.0.1:{redis}/0\n  node: {name}\n  peers: {{ {o}: {oip}:{sip} }}\n",
        sip = net.sip(),
        o = other.0,
        oip = other.1,
    )
}

fn metric_at(port: u16, name: &str) -> Option<f64> {
    let (code, body) = http(SocketAddr::from(([127, 0, 0, 1], port)), "GET", "/metrics");
    assert_eq!(code, 200);
    metric(&body, name, &[])
}

/// alice's phone: REGISTER to `node` with Digest (SHA-256 as offered first); true on 200.
fn register(phone: &UdpSocket, node: SocketAddr, cseq: u32) -> bool {
    let me = phone.local_addr().expect("local");
    let req = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKcl{cseq}\r\n\
             Max-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=ph\r\n\
             Call-ID: cluster-reg\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@{me}>;expires=600\r\n\
             {auth}Content-Length: 0\r\n\r\n"
        )
    };
    let answer = |text: &str| -> Option<signaling::message::Response> {
        phone.send_to(text.as_bytes(), node).ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 8192];
        while Instant::now() < deadline {
            let Ok((n, _)) = phone.recv_from(&mut buf) else {
                continue;
            };
            if let Ok(SipMessage::Response(r)) = parse(&buf[..n]) {
                if r.status >= 200 {
                    return Some(r);
                }
            }
        }
        None
    };
    let Some(ch) = answer(&req(cseq, "")) else {
        return false;
    };
    let mut c = DigestClient::new(Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
        realm: None,
    });
    let parts = RequestParts {
        method: "REGISTER",
        uri: "sip:example.com",
        body: b"",
    };
    let Ok(a) = c.answer(&ch, &parts, None, "c0ffee") else {
        return false;
    };
    let auth = format!("{}: {}\r\n", a.header, a.value);
    answer(&req(cseq + 1, &auth)).is_some_and(|r| r.status == 200)
}

/// The carrier calls alice at node a; the INVITE that reaches the phone.
fn call(net: &Net, carrier: &UdpSocket, phone: &UdpSocket, n: u32) -> String {
    let body = sdp("127.0.0.1", net.spare(50));
    let p = net.uac();
    let invite = format!(
        "INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKcc{n}\r\n\
         Max-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:+15550001@127.0.0.1>;tag=c{n}\r\n\
         Call-ID: cluster-call-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:carrier@127.0.0.1:{p}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    carrier
        .send_to(invite.as_bytes(), SocketAddr::from((NODE_A, net.sip())))
        .expect("INVITE");
    recv_until(phone, Duration::from_secs(10), "INVITE at the phone", |m| {
        m.is_request("INVITE")
    })
    .text
}

#[test]
fn a_call_at_one_node_reaches_a_phone_registered_at_the_other() {
    isolated(
        "a_call_at_one_node_reaches_a_phone_registered_at_the_other",
        false,
        |net| {
            let (_redis, rport) = redis(net);
            let (ma, mb) = (net.metrics(), net.metrics() + 1);
            let base = net.sip() - 60;
            let (ra, rb) = (
                format!("{}-{}", base + 1000, base + 1499),
                format!("{}-{}", base + 1500, base + 1999),
            );
            let at = |ip| SocketAddr::from((ip, net.sip()));
            let ya = node(net, "a", NODE_A, ma, &ra, rport);
            let yb = node(net, "b", NODE_B, mb, &rb, rport);
            let _a = Trunkline::start_named(net, "node-a", &ya, at(NODE_A), &[]);
            let b = Trunkline::start_named(net, "node-b", &yb, at(NODE_B), &[]);

            let phone = UdpSocket::bind("127.0.0.1:0").expect("phone");
            phone
                .set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            assert!(register(&phone, at(NODE_B), 1), "alice registers at node b");
            let shared = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(50),
                || metric_at(ma, "trunkline_cluster_remote_aors") == Some(1.0),
            );
            assert!(shared, "node a learns alice's binding at b");
            assert_eq!(metric_at(ma, "trunkline_cluster_up"), Some(1.0));

            let carrier = UdpSocket::bind(("127.0.0.1", net.uac())).expect("carrier");
            let inv = call(net, &carrier, &phone, 1);
            let phone_addr = phone.local_addr().expect("local");
            assert!(
                inv.starts_with(&format!("INVITE sip:alice@{phone_addr}")),
                "node b sends it to the contact: {inv}"
            );
            assert!(inv.contains("127.0.0.2"), "through node b: {inv}");

            // node b dies and comes back with nothing but Redis
            b.signal(libc::SIGKILL);
            drop(b);
            let _b = Trunkline::start_named(net, "node-b", &yb, at(NODE_B), &[]);
            let back = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(50),
                || metric_at(mb, "trunkline_registered_contacts") == Some(1.0),
            );
            assert!(back, "node b reads its binding back from Redis");
            let inv = call(net, &carrier, &phone, 2);
            assert!(
                inv.starts_with(&format!("INVITE sip:alice@{phone_addr}"))
                    && inv.contains("127.0.0.2"),
                "through the restarted node b, no new REGISTER: {inv}"
            );

            // Redis goes away: the nodes carry on with what they know
            drop(_redis);
            let down = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(50),
                || {
                    metric_at(ma, "trunkline_cluster_up") == Some(0.0)
                        && metric_at(mb, "trunkline_cluster_up") == Some(0.0)
                },
            );
            assert!(down, "both nodes see Redis gone");
            let inv = call(net, &carrier, &phone, 3);
            assert!(inv.contains("127.0.0.2"), "still through node b: {inv}");
            // ... and comes back empty: node b writes its binding again
            let (_redis, _) = redis_on(net, rport);
            let keys = poll_until(
                Instant::now() + Duration::from_secs(15),
                Duration::from_millis(100),
                || {
                    let out = std::process::Command::new("redis-cli")
                        .args(["-p", &rport.to_string(), "KEYS", "tl:loc:*"])
                        .output();
                    out.is_ok_and(|o| {
                        String::from_utf8_lossy(&o.stdout).trim() == "tl:loc:b:alice@example.com"
                    })
                },
            );
            assert!(keys, "node b's record is back in Redis");
            assert_eq!(metric_at(ma, "trunkline_cluster_up"), Some(1.0));
            assert_eq!(
                metric_at(mb, "trunkline_cluster_write_queue"),
                Some(0.0),
                "no lag"
            );
        },
    );
}

/// A trunk's `max_calls: 10` counts across the cluster: ten calls held up through each node
/// (20 at once) and exactly ten reach the trunk, five through each node (each node's share of
/// the limit while both heartbeats are live); the others get 503.
#[test]
fn a_trunk_limit_counts_across_the_nodes() {
    isolated("a_trunk_limit_counts_across_the_nodes", false, |net| {
        let (_redis, rport) = redis(net);
        let (ma, mb) = (net.metrics(), net.metrics() + 1);
        let base = net.sip() - 60;
        let ra = format!("{}-{}", base + 1000, base + 1499);
        let rb = format!("{}-{}", base + 1500, base + 1999);
        let at = |ip| SocketAddr::from((ip, net.sip()));
        let pbx = format!(
            "  pbx: {{ address: 127.0.0.1:{}, transport: udp, max_calls: 10 }}\n",
            net.trunk(0)
        );
        let (ca, cb) = (net.uac(), net.spare(300));
        let ya = node_with(net, "a", NODE_A, (ma, &ra, rport), ca, &pbx, "pbx");
        let yb = node_with(net, "b", NODE_B, (mb, &rb, rport), cb, &pbx, "pbx");
        let _a = Trunkline::start_named(net, "node-a", &ya, at(NODE_A), &[]);
        let _b = Trunkline::start_named(net, "node-b", &yb, at(NODE_B), &[]);
        let both = poll_until(
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(100),
            || {
                metric_at(ma, "trunkline_cluster_nodes") == Some(2.0)
                    && metric_at(mb, "trunkline_cluster_nodes") == Some(2.0)
            },
        );
        assert!(both, "both nodes see each other's heartbeat");
        require_sipp();
        let uas = Sipp::uas(
            net,
            "pbx",
            "uas_basic.xml",
            net.trunk(0),
            net.sipp_media(1),
            10,
        )
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        let hold = ["-d", "4000"];
        let to_a = Sipp::uac_to(net, "via-a", "uac_basic.xml", at(NODE_A), 10, 50)
            .args(&hold)
            .spawn();
        let to_b = Sipp::uac_to(net, "via-b", "uac_basic.xml", at(NODE_B), 10, 50)
            .args(&hold)
            .args(&["-p", &cb.to_string(), "-mp", &net.sipp_media(2).to_string()])
            .spawn();
        let (ra, rb) = (
            to_a.wait(Duration::from_secs(60)),
            to_b.wait(Duration::from_secs(60)),
        );
        let uas = uas.wait(Duration::from_secs(10));
        assert_eq!(
            (ra.successful, rb.successful),
            (5, 5),
            "each node its share: a {ra:?}, b {rb:?}"
        );
        assert_eq!((ra.failed, rb.failed), (5, 5), "the rest refused (503)");
        assert_eq!(
            uas.successful, 10,
            "exactly max_calls reach the trunk: {uas:?}"
        );
    });
}
