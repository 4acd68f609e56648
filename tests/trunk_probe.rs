//! OPTIONS health probing of trunks (`probe:`), end to end: a primary trunk that does not answer
//! its probes is marked down after `down_after` of them, and the next call goes to the backup
//! trunk at once (the primary is not even tried); when the primary answers again (a 404 is an
//! answer) it is marked up after `up_after` probes and takes calls again.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::rawsip::reply;
use common::*;

const LIMIT: Duration = Duration::from_secs(60);

fn yaml(net: &Net) -> String {
    let y = format!(
        "listen:\n  - {{ transport: udp, address: 127.0.0.1:{sip} }}\n\
         media:\n  address: 127.0.0.1\n  ports: {media}\n\
         trunks:\n\
         \x20 primary: {{ address: 127.0.0.1:{p}, probe: {{ interval: 1, down_after: 2, up_after: 2 }} }}\n\
         \x20 backup: {{ address: 127.0.0.1:{b} }}\n\
         dialplan:\n\
         \x20 - route: [primary, backup]\n",
        sip = net.sip(),
        media = net.media_range(),
        p = net.trunk(0),
        b = net.trunk(1),
    );
    with_metrics(net, &y, "")
}

fn up(net: &Net) -> Option<f64> {
    metric(&scrape(net), "trunkline_trunk_up", &[("trunk", "primary")])
}

fn attempts(net: &Net, trunk: &str) -> f64 {
    metric(
        &scrape(net),
        "trunkline_call_attempts_total",
        &[("trunk", trunk)],
    )
    .unwrap_or(0.0)
}

/// Answers every OPTIONS on `sock` with 404 (any answer shows the trunk alive) and every INVITE
/// with 486 until `stop`; returns how many of each it answered.
fn answer_probes(sock: UdpSocket, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u32, u32)> {
    std::thread::spawn(move || {
        let (mut answered, mut invites) = (0, 0);
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut buf = vec![0u8; 65535];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let m = common::rawsip::Msg {
                text: String::from_utf8_lossy(&buf[..n]).into_owned(),
            };
            if m.is_request("OPTIONS") {
                reply(&sock, from, &m, 404, "probe", None);
                answered += 1;
            } else if m.is_request("INVITE") {
                reply(&sock, from, &m, 486, "busy", None);
                invites += 1;
            }
        }
        (answered, invites)
    })
}

#[test]
fn a_silent_trunk_is_skipped_until_it_answers_its_probes_again() {
    require_sipp();
    isolated(
        "a_silent_trunk_is_skipped_until_it_answers_its_probes_again",
        false,
        |net| {
            let mut tl = Trunkline::start(net, &yaml(net));
            // Probed trunks start up.
            assert_eq!(up(net), Some(1.0));
            // Nothing listens on the primary: two unanswered probes mark it down.
            let down = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(100),
                || up(net) == Some(0.0),
            );
            assert!(down, "primary not marked down:\n{}", tl.log_tail(20));
            assert!(
                tl.log_tail(50).contains("trunk down"),
                "{}",
                tl.log_tail(50)
            );

            // The next call goes straight to the backup: the primary is not tried.
            let callee = Sipp::uas(
                net,
                "backup",
                "uas_basic.xml",
                net.trunk(1),
                net.sipp_media(1),
                1,
            )
            .spawn();
            wait_udp_bound(net.trunk(1), Duration::from_secs(5));
            let caller = Sipp::uac(net, "uac", "uac_basic.xml", 1, 1)
                .pause_ms(100)
                .run(LIMIT);
            let callee = callee.wait(Duration::from_secs(15));
            caller.assert_all_ok(1, &tl.log_tail(30));
            callee.assert_all_ok(1, &tl.log_tail(30));
            assert_eq!(attempts(net, "primary"), 0.0, "the down trunk was tried");
            assert_eq!(attempts(net, "backup"), 1.0);

            // The primary answers again (404 to OPTIONS): up after two answered probes.
            let sock = UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind primary");
            let stop = Arc::new(AtomicBool::new(false));
            let responder = answer_probes(sock.try_clone().expect("clone"), stop.clone());
            let back = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(100),
                || up(net) == Some(1.0),
            );
            assert!(back, "primary not up again:\n{}", tl.log_tail(20));
            assert!(tl.log_tail(50).contains("trunk up"), "{}", tl.log_tail(50));
            // And it takes the next call again (answered 486 here).
            let resp = invite_once(net.sip_addr(), "15551234567", Duration::from_secs(10))
                .unwrap_or_else(|| panic!("no answer to the INVITE:\n{}", tl.log_tail(20)));
            stop.store(true, Ordering::Relaxed);
            let (answered, invites) = responder.join().expect("responder");
            assert!(answered >= 2, "probes answered: {answered}");
            assert_eq!(invites, 1, "INVITEs at the primary; caller got {resp}");
            assert!(resp.starts_with("SIP/2.0 486"), "{resp}");
            assert_eq!(attempts(net, "primary"), 1.0);
            tl.assert_alive();
        },
    );
}

#[test]
fn all_trunks_of_a_route_down_is_503_with_retry_after() {
    isolated(
        "all_trunks_of_a_route_down_is_503_with_retry_after",
        false,
        |net| {
            let y = format!(
                "listen:\n  - {{ transport: udp, address: 127.0.0.1:{sip} }}\n\
             media:\n  address: 127.0.0.1\n  ports: {media}\n\
             trunks:\n\
             \x20 only: {{ address: 127.0.0.1:{p}, probe: {{ interval: 1, down_after: 1 }} }}\n\
             dialplan:\n\
             \x20 - route: [only]\n",
                sip = net.sip(),
                media = net.media_range(),
                p = net.trunk(0),
            );
            let tl = Trunkline::start(net, &with_metrics(net, &y, ""));
            let down = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(100),
                || metric(&scrape(net), "trunkline_trunk_up", &[("trunk", "only")]) == Some(0.0),
            );
            assert!(down, "{}", tl.log_tail(20));
            let resp = invite_once(net.sip_addr(), "15551234567", Duration::from_secs(5))
                .unwrap_or_else(|| panic!("no answer to the INVITE:\n{}", tl.log_tail(20)));
            assert!(resp.starts_with("SIP/2.0 503"), "{resp}");
            assert!(
                header(&resp, "Retry-After", None).is_some(),
                "no Retry-After: {resp}"
            );
        },
    );
}
