//! Issue 8, forged MGCP: an attacker who learns a CRCX's transaction id (here it sees every
//! command, the strongest off-path attacker) answers it first with its own SDP from
//! 127.0.0.66 and from the gateway's IP with another port; trunkline takes only the gateway's
//! answer (the real osmo-mgw, behind a 300 ms delay standing for a distant gateway), so the
//! caller's media reaches the gateway and not the attacker. A NTFY from the attacker gets no
//! answer. A missing osmo-mgw fails the test (scripts/install-deps.sh installs it).

mod common;

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::osmo::*;
use common::sec::*;
use common::*;

/// The gateway address trunkline is configured with: the delay shim in front of osmo-mgw.
const GW_PORT: u16 = 2500;
const ATTACKER_MEDIA: &str = "127.0.0.66:6666";

/// What the shim saw.
#[derive(Default)]
struct Seen {
    /// trunkline's MGCP socket.
    agent: Option<SocketAddr>,
    /// Transaction ids of the CRCX commands, each answered first by the attacker.
    crcx: Vec<String>,
}

/// Forwards trunkline's commands to osmo-mgw at once and osmo-mgw's answers 300 ms later;
/// on every CRCX the attacker (who sees the command) sends its forged 200 at once.
fn shim(stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) -> std::thread::JoinHandle<()> {
    let front = UdpSocket::bind(("127.0.0.1", GW_PORT)).expect("bind shim");
    let back = UdpSocket::bind("127.0.0.1:0").expect("bind shim back");
    let forgers = [
        UdpSocket::bind(("127.0.0.66", GW_PORT)).expect("bind attacker"),
        UdpSocket::bind("127.0.0.1:0").expect("bind attacker on the gateway's IP"),
    ];
    front
        .set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    back.set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let mgw = SocketAddr::from(([127, 0, 0, 1], MGW_PORT));
    std::thread::spawn(move || {
        let mut later: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        let mut buf = [0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = front.recv_from(&mut buf) {
                let data = buf[..n].to_vec();
                let _ = back.send_to(&data, mgw);
                let text = String::from_utf8_lossy(&data).into_owned();
                let mut s = seen.lock().unwrap();
                s.agent = Some(from);
                if let Some(rest) = text.strip_prefix("CRCX ") {
                    let txid = rest.split_whitespace().next().unwrap_or("0").to_string();
                    let forged = format!(
                        "200 {txid} OK\r\nI: 6666\r\nZ: rtpbridge/1@mgw\r\n\r\nv=0\r\n\
                         o=- 1 1 IN IP4 127.0.0.66\r\ns=-\r\nc=IN IP4 127.0.0.66\r\nt=0 0\r\n\
                         m=audio 6666 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
                    );
                    for f in &forgers {
                        let _ = f.send_to(forged.as_bytes(), from);
                    }
                    s.crcx.push(txid);
                }
            }
            if let Ok(n) = back.recv(&mut buf) {
                later.push_back((
                    Instant::now() + Duration::from_millis(300),
                    buf[..n].to_vec(),
                ));
            }
            let agent = seen.lock().unwrap().agent;
            while later.front().is_some_and(|(t, _)| *t <= Instant::now()) {
                if let (Some((_, d)), Some(to)) = (later.pop_front(), agent) {
                    let _ = front.send_to(&d, to);
                }
            }
        }
    })
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Waits for a final response to `method` on `sock` (provisionals skipped).
fn final_response(sock: &UdpSocket, method: &str, limit: Duration) -> String {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 65536];
    while Instant::now() < end {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            let code = status_code(m.as_bytes()).unwrap_or(0);
            if code >= 200 && header(&m, "CSeq").is_some_and(|c| c.ends_with(method)) {
                return m;
            }
        }
    }
    panic!("no final response to {method} within {limit:?}");
}

#[test]
fn forged_mgcp_answers_and_ntfy_are_ignored() {
    isolated("forged_mgcp_answers_and_ntfy_are_ignored", true, |net| {
        let _mgw = start_mgw(net);
        wait_udp_bound(MGW_PORT, Duration::from_secs(10));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shim_thread = shim(stop.clone(), seen.clone());
        let attacker_media = UdpSocket::bind(ATTACKER_MEDIA).expect("bind attacker media");
        attacker_media.set_nonblocking(true).unwrap();
        let yaml = format!(
            "listen:\n  - {{ transport: udp, address: 127.0.0.1:{} }}\n\
             media:\n  address: 127.0.0.1\n  ports: {}\n\
             trunks:\n  pstn: {{ address: 127.0.0.1:{GW_PORT}, mgcp: {{ endpoint: 'rtpbridge/*@mgw' }} }}\n\
             dialplan:\n  - match: {{}}\n    route: [pstn]\n",
            net.sip(),
            net.media_range()
        );
        let mut tl = Trunkline::start(net, &with_metrics(net, &yaml, ""));
        // trunkline audits the gateway at start: its MGCP address becomes known.
        let mut agent = None;
        let audited = poll_until(
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                agent = seen.lock().unwrap().agent;
                agent.is_some()
            },
        );
        assert!(audited, "trunkline sent no MGCP to the gateway");
        let agent = agent.expect("audited");
        // A NTFY from the attacker: no answer.
        let ntfy = UdpSocket::bind("127.0.0.66:0").unwrap();
        ntfy.send_to(
            b"NTFY 777 rtpbridge/1@mgw MGCP 1.0\r\nX: 1\r\nO: L/hd\r\n",
            agent,
        )
        .unwrap();
        ntfy.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut b = [0u8; 512];
        assert!(
            ntfy.recv(&mut b).is_err(),
            "a NTFY from 127.0.0.66 was answered: {}",
            String::from_utf8_lossy(&b)
        );

        // The call.
        let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = caller.local_addr().unwrap();
        let sip = net.sip_addr();
        let sdp = format!(
            "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            rtp.local_addr().unwrap().port()
        );
        let invite = format!(
            "INVITE sip:+15551234@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-mg1;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:caller@{me}>;tag=c1\r\nTo: <sip:+15551234@{sip}>\r\n\
             Call-ID: sec-mgcp@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        caller.send_to(invite.as_bytes(), sip).unwrap();
        let ok = final_response(&caller, "INVITE", Duration::from_secs(10));
        assert_eq!(status_code(ok.as_bytes()), Some(200), "{ok}");
        assert!(
            !seen.lock().unwrap().crcx.is_empty(),
            "the attacker answered a CRCX"
        );
        let to = header(&ok, "To").expect("To");
        let contact = header(&ok, "Contact")
            .and_then(|c| c.split_once('<'))
            .and_then(|(_, r)| r.split_once('>'))
            .map(|(u, _)| u.to_string())
            .expect("Contact");
        let body = ok.split("\r\n\r\n").nth(1).unwrap_or("");
        let relay_port: u16 = body
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("m=audio in the 200");
        let ack = format!(
            "ACK {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-mg2;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:caller@{me}>;tag=c1\r\nTo: {to}\r\n\
             Call-ID: sec-mgcp@127.0.0.1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        caller.send_to(ack.as_bytes(), sip).unwrap();
        // 50 RTP packets to the relay, paced at 10 ms; the attacker's media socket listens.
        let relay = SocketAddr::from(([127, 0, 0, 1], relay_port));
        let mut stolen = 0;
        let mut next = Instant::now();
        for i in 0..50u16 {
            let mut p = vec![0xd5u8; 172];
            p[0] = 0x80;
            p[2..4].copy_from_slice(&i.to_be_bytes());
            p[4..8].copy_from_slice(&(u32::from(i) * 160).to_be_bytes());
            p[8..12].copy_from_slice(&0xcafe_u32.to_be_bytes());
            rtp.send_to(&p, relay).unwrap();
            next += Duration::from_millis(10);
            while Instant::now() < next {
                while attacker_media.recv(&mut b).is_ok() {
                    stolen += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let bye = format!(
            "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-mg3;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:caller@{me}>;tag=c1\r\nTo: {to}\r\n\
             Call-ID: sec-mgcp@127.0.0.1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        caller.send_to(bye.as_bytes(), sip).unwrap();
        let r = final_response(&caller, "BYE", Duration::from_secs(5));
        assert_eq!(status_code(r.as_bytes()), Some(200), "{r}");
        while attacker_media.recv(&mut b).is_ok() {
            stolen += 1;
        }
        assert_eq!(stolen, 0, "the caller's RTP went to the attacker");
        // The real gateway carried the call: its DLCX counters show the caller's packets.
        let received = dlcx_packets_received(&tl, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no DLCX logged:\n{}", tl.log_tail(40)));
        assert!(received >= 20, "osmo-mgw received {received} packets");
        let dropped = metric_value(
            net.metrics_addr(),
            "trunkline_mgcp_dropped_total",
            &[("reason", "unknown_source")],
        );
        assert!(dropped >= 3.0, "forged datagrams counted: {dropped}");
        stop.store(true, Ordering::Relaxed);
        let _ = shim_thread.join();
        tl.assert_alive();
    });
}
