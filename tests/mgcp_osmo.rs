//! The MGCP call agent core against a real media gateway: osmo-mgw (Debian `osmo-mgw`), in a
//! private network namespace. trunkline's `mgcp` crate drives it over real UDP: AUEP, CRCX
//! (wildcard endpoint, then the second connection on the endpoint it chose), MDCX (modes), RTP
//! both ways through the gateway byte for byte, DLCX with its connection statistics, and the
//! gateway's errors. A missing osmo-mgw fails the test (scripts/install-deps.sh installs it).
//! osmo-mgw's behaviour is described in ../shared/peers/osmo-mgw/NOTES.md.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::osmo::*;
use common::*;
use mgcp::{Agent, ConnectionParams, Event, Response, Timers, Verb};

/// The call agent's thin I/O shell: one socket, the sans-IO agent, virtual deadlines from it.
struct Ca {
    sock: UdpSocket,
    agent: Agent,
    gw: SocketAddr,
}

impl Ca {
    fn new(timers: Timers) -> Ca {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind CA");
        Ca {
            sock,
            agent: Agent::new(4711, timers),
            gw: SocketAddr::from(([127, 0, 0, 1], MGW_PORT)),
        }
    }

    /// Send a command and run the agent until its transaction ends.
    fn call(&mut self, cmd: mgcp::Command) -> Option<Response> {
        let txid = self.agent.send(self.gw, cmd, Instant::now());
        let mut buf = [0u8; 4096];
        loop {
            while let Some(t) = self.agent.poll_transmit() {
                self.sock.send_to(&t.bytes, t.to).expect("send MGCP");
            }
            if let Some(ev) = self.agent.poll_event() {
                match ev {
                    Event::Response {
                        txid: t, response, ..
                    } if t == txid => return Some(response),
                    Event::Timeout { txid: t, .. } if t == txid => return None,
                    other => panic!("unexpected {other:?}"),
                }
            }
            let wait = self
                .agent
                .poll_timeout()
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_millis(1));
            self.sock.set_read_timeout(Some(wait)).unwrap();
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => self.agent.handle_datagram(from, &buf[..n], Instant::now()),
                Err(_) => self.agent.handle_timeout(Instant::now()),
            }
        }
    }
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
    )
}

/// The gateway's media address from its SDP.
fn media_of(r: &Response) -> SocketAddr {
    let sdp = r.sdp.as_deref().expect("SDP in the response");
    let ip = sdp
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line")
        .trim();
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse::<u16>().ok())
        .expect("m=audio port");
    format!("{ip}:{port}").parse().expect("media address")
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0xd5u8; 172];
    p[0] = 0x80;
    p[1] = 0;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// RTP packets (172 bytes, version 2) arriving within `limit`; anything else (osmo-mgw's
/// keep-alive) is skipped.
fn rtp_in(sock: &UdpSocket, want: usize, limit: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < want {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if n == 172 && buf[0] & 0xc0 == 0x80 => {
                got.push((from, buf[..n].to_vec()))
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    got
}

/// Readiness: AUEP until the gateway answers (bounded: 10 s); the call agent and the answer.
fn ready(net: &Net) -> (Ca, Response) {
    let mut ca = Ca::new(Timers {
        max_sends: 3,
        ..Timers::default()
    });
    let t0 = Instant::now();
    loop {
        if let Some(r) = ca.call(mgcp::Command::new(Verb::Auep, "rtpbridge/1@mgw")) {
            return (ca, r);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "osmo-mgw did not answer AUEP within 10 s (log: {})",
            net.dir.join("osmo-mgw.log").display()
        );
    }
}

#[test]
fn call_agent_drives_osmo_mgw() {
    isolated("call_agent_drives_osmo_mgw", true, |net| {
        let _mgw = start_mgw(net);
        let (mut ca, auep) = ready(net);
        assert_eq!(auep.code, 200, "AUEP: {auep:?}");

        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        // CRCX on any free endpoint, leg A, receive-only until the other side is known
        let r1 = ca
            .call(
                mgcp::Command::new(Verb::Crcx, "rtpbridge/*@mgw")
                    .with("C", "tl0001")
                    .with("L", "p:20, a:PCMU")
                    .with("M", "recvonly")
                    .with_sdp(&sdp(pa)),
            )
            .expect("CRCX answered");
        assert_eq!(r1.code, 200, "CRCX 1: {r1:?}");
        let endpoint = r1.param("Z").expect("Z: the endpoint chosen").to_string();
        assert!(
            endpoint.starts_with("rtpbridge/") && endpoint.ends_with("@mgw"),
            "{endpoint}"
        );
        let conn1 = r1.param("I").expect("I: connection id").to_string();
        let m1 = media_of(&r1);
        // second connection on the same endpoint, leg B
        let r2 = ca
            .call(
                mgcp::Command::new(Verb::Crcx, &endpoint)
                    .with("C", "tl0001")
                    .with("L", "p:20, a:PCMU")
                    .with("M", "sendrecv")
                    .with_sdp(&sdp(pb)),
            )
            .expect("CRCX 2 answered");
        assert_eq!(r2.code, 200, "CRCX 2: {r2:?}");
        let conn2 = r2.param("I").expect("I:").to_string();
        assert_ne!(conn1, conn2);
        let m2 = media_of(&r2);
        assert_ne!(m1, m2, "one port per connection");
        // A answers: conn1 to sendrecv
        let r = ca
            .call(
                mgcp::Command::new(Verb::Mdcx, &endpoint)
                    .with("C", "tl0001")
                    .with("I", &conn1)
                    .with("M", "sendrecv"),
            )
            .expect("MDCX answered");
        assert_eq!(r.code, 200, "MDCX: {r:?}");

        // RTP both ways through the gateway, unchanged
        for i in 0..10u16 {
            a.send_to(&rtp(100 + i, 0xa), m1).unwrap();
            b.send_to(&rtp(900 + i, 0xb), m2).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let at_b = rtp_in(&b, 10, Duration::from_secs(2));
        let at_a = rtp_in(&a, 10, Duration::from_secs(2));
        assert_eq!(at_b.len(), 10, "A -> B through the gateway");
        assert_eq!(at_a.len(), 10, "B -> A through the gateway");
        for (i, (from, p)) in at_b.iter().enumerate() {
            assert_eq!(*from, m2, "leaves from conn2's port");
            assert_eq!(p, &rtp(100 + i as u16, 0xa), "unchanged");
        }
        for (from, _) in &at_a {
            assert_eq!(*from, m1);
        }

        // hold: conn1 recvonly -> B's media no longer reaches A; A's still reaches B
        let r = ca
            .call(
                mgcp::Command::new(Verb::Mdcx, &endpoint)
                    .with("C", "tl0001")
                    .with("I", &conn1)
                    .with("M", "recvonly"),
            )
            .expect("MDCX answered");
        assert_eq!(r.code, 200);
        for i in 0..5u16 {
            a.send_to(&rtp(200 + i, 0xa), m1).unwrap();
            b.send_to(&rtp(950 + i, 0xb), m2).unwrap();
        }
        assert_eq!(rtp_in(&b, 5, Duration::from_secs(2)).len(), 5);
        assert!(rtp_in(&a, 1, Duration::from_millis(500)).is_empty(), "held");

        // MDCX without a connection id: the gateway's error (515), answered, not a timeout
        let r = ca
            .call(mgcp::Command::new(Verb::Mdcx, &endpoint).with("C", "tl0001"))
            .expect("MDCX answered");
        assert_eq!(r.code, 515, "{r:?}");

        // DLCX with the connection's statistics
        let r = ca
            .call(
                mgcp::Command::new(Verb::Dlcx, &endpoint)
                    .with("C", "tl0001")
                    .with("I", &conn1),
            )
            .expect("DLCX answered");
        assert_eq!(r.code, 250, "DLCX: {r:?}");
        let p = ConnectionParams::parse(r.param("P").expect("P: connection parameters"));
        assert!(
            p.packets_received.unwrap_or(0) >= 15,
            "conn1 received A's 15 packets: {p:?}"
        );
        // the rest of the endpoint, then an error for a connection that is gone
        let r = ca
            .call(mgcp::Command::new(Verb::Dlcx, &endpoint).with("C", "tl0001"))
            .expect("DLCX answered");
        assert!(r.is_success(), "DLCX endpoint: {r:?}");
        let r = ca
            .call(
                mgcp::Command::new(Verb::Dlcx, &endpoint)
                    .with("C", "tl0001")
                    .with("I", &conn1),
            )
            .expect("DLCX answered");
        assert!(r.code >= 500, "a deleted connection: {r:?}");
    });
}

#[path = "support/tone.rs"]
mod tone;

/// A call from a SIP caller to a trunk that is an MGCP gateway: trunkline, as call agent,
/// creates a connection on osmo-mgw with the relay's SDP, answers the caller with the
/// gateway's media (anchored), signals the dialled digits, and deletes the connection at BYE;
/// the gateway's own counters (DLCX `P:`) show the caller's RTP arrived through the relay, and
/// tshark decodes trunkline's MGCP (CRCX, RQNT, DLCX) without a malformed packet.
#[test]
fn sip_call_to_an_mgcp_gateway_trunk() {
    require_sipp();
    isolated("sip_call_to_an_mgcp_gateway_trunk", true, |net| {
        let _mgw = start_mgw(net);
        ready(net);
        let yaml = format!(
            "listen:\n  - {{ transport: udp, address: 127.0.0.1:{} }}\n\
             media:\n  address: 127.0.0.1\n  ports: {}\n\
             trunks:\n  pstn: {{ address: 127.0.0.1:{MGW_PORT}, mgcp: {{ endpoint: 'rtpbridge/*@mgw' }} }}\n\
             dialplan:\n  - match: {{}}\n    route: [pstn]\n",
            net.sip(),
            net.media_range()
        );
        let mut tl = Trunkline::start(net, &with_metrics(net, &yaml, ""));
        std::fs::write(net.dir.join("tone.wav"), tone::tone_wav()).expect("tone.wav");
        require_tshark();
        let pcap = net.dir.join("mgcp.pcapng");
        let cap = capture_filtered(
            &pcap,
            &net.dir.join("tshark.log"),
            &format!("udp port {MGW_PORT}"),
        );
        Sipp::uac(net, "caller", "uac_rtp.xml", 1, 1)
            .args(&["-s", "+15551234"])
            .run(Duration::from_secs(30))
            .assert_all_ok(1, "call answered through the MGCP gateway");
        // the DLCX answer is logged with the gateway's counters
        let received = dlcx_packets_received(&tl, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no DLCX logged:\n{}", tl.log_tail(40)));
        assert!(
            received >= 50,
            "the gateway received the caller's RTP through the relay: {received} packets"
        );
        // An independent dissector reads trunkline's MGCP: well formed, the expected commands
        // and the gateway's answers.
        // (the capture ring hands packets over in blocks: let the last one be retired)
        std::thread::sleep(Duration::from_millis(1500));
        stop_capture(cap);
        let out = std::process::Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args([
                "-Y",
                "mgcp",
                "-T",
                "fields",
                "-e",
                "mgcp.req.verb",
                "-e",
                "mgcp.rsp.rspcode",
                "-e",
                "_ws.malformed",
            ])
            .output()
            .expect("tshark -r");
        let text = String::from_utf8_lossy(&out.stdout);
        let verbs: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split('\t').next())
            .filter(|v| !v.is_empty())
            .collect();
        for v in ["CRCX", "RQNT", "DLCX"] {
            assert!(
                verbs.contains(&v),
                "tshark saw no {v} from trunkline: {verbs:?}\n{text}"
            );
        }
        let codes: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split('\t').nth(1))
            .filter(|c| !c.is_empty())
            .collect();
        assert!(
            codes.contains(&"200") && codes.contains(&"250"),
            "gateway answers: {codes:?}"
        );
        assert!(
            text.lines()
                .all(|l| l.split('\t').nth(2).unwrap_or("").is_empty()),
            "tshark flags malformed MGCP:\n{text}"
        );
        let m = scrape(net);
        assert_eq!(
            metric(
                &m,
                "trunkline_calls_total",
                &[("trunk", "pstn"), ("status_class", "2xx")]
            ),
            Some(1.0),
            "{m}"
        );
        tl.assert_alive();
    });
}
