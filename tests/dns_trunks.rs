//! Trunks named by DNS (RFC 3263), end to end against dnsmasq: NAPTR -> SRV -> A with two SRV
//! priorities and two weights, the next SRV target when one is closed (within 1 s), a changed
//! record picked up when its TTL runs out (no restart), a name that does not resolve or a
//! resolver that never answers (the next trunk takes the call), hundreds of records, and
//! inbound calls recognised by the address a trunk's name resolves to.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::rawsip::Msg;
use common::*;

/// A trunk stand-in on 127.0.0.1:`port`: answers every INVITE 486 with To tag `tag` (so the
/// caller sees who answered) and keeps the Request-URIs it saw.
struct Busy {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Busy {
    fn start(port: u16, tag: &str) -> Busy {
        let sock = UdpSocket::bind(("127.0.0.1", port)).expect("bind trunk");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (st, sn, tag) = (stop.clone(), seen.clone(), tag.to_string());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65535];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let m = Msg {
                    text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                };
                if m.is_request("INVITE") {
                    let line = m.text.lines().next().unwrap_or_default().to_string();
                    sn.lock().expect("seen").push(line);
                    // the reason phrase names the stand-in (leg A's To tag is trunkline's own)
                    let r = format!(
                        "SIP/2.0 486 {tag}\r\n{}Content-Length: 0\r\n\r\n",
                        m.reply_headers(Some(&tag))
                    );
                    let _ = sock.send_to(r.as_bytes(), from);
                }
            }
        });
        Busy {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn invites(&self) -> Vec<String> {
        self.seen.lock().expect("seen").clone()
    }

    /// Closes the socket: INVITEs to it now draw ICMP port unreachable.
    fn close(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("responder");
        }
        self.invites()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The reason phrase of a final response (which stand-in answered).
fn answered_by(resp: &str) -> String {
    let line = resp.lines().next().unwrap_or_default();
    line.splitn(3, ' ')
        .nth(2)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn call(net: &Net, user: &str, tl: &Trunkline) -> String {
    invite_once(net.sip_addr(), user, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no answer to INVITE {user}:\n{}", tl.log_tail(30)))
}

fn config(net: &Net, dns: &str, trunks: &str, dialplan: &str) -> String {
    let y = format!(
        "listen:\n  - {{ transport: udp, address: 127.0.0.1:{sip} }}\n\
         media:\n  address: 127.0.0.1\n  ports: {media}\n\
         dns: {dns}\n\
         trunks:\n{trunks}\
         dialplan:\n{dialplan}",
        sip = net.sip(),
        media = net.media_range(),
    );
    with_metrics(net, &y, "")
}

fn addresses(net: &Net, trunk: &str) -> Option<f64> {
    metric(
        &scrape(net),
        "trunkline_trunk_dns_addresses",
        &[("trunk", trunk)],
    )
}

/// `trunkline_trunk_dns_failures_total` with these labels (summed), 0 when absent.
fn dns_failures(net: &Net, labels: &[(&str, &str)]) -> f64 {
    metric(&scrape(net), "trunkline_trunk_dns_failures_total", labels).unwrap_or(0.0)
}

/// Waits (10 s at most) until a DNS failure with these labels is counted.
fn wait_dns_failure(net: &Net, labels: &[(&str, &str)], tl: &Trunkline) {
    let ok = poll_until(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(50),
        || dns_failures(net, labels) >= 1.0,
    );
    assert!(
        ok,
        "no DNS failure {labels:?} counted:\n{}",
        tl.log_tail(30)
    );
}

fn wait_resolved(net: &Net, trunk: &str, n: f64, tl: &Trunkline) {
    let ok = poll_until(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(50),
        || addresses(net, trunk) == Some(n),
    );
    assert!(
        ok,
        "{trunk} not resolved to {n} addresses:\n{}",
        tl.log_tail(30)
    );
}

#[test]
fn srv_priority_first_then_the_next_target_when_one_is_closed() {
    isolated(
        "srv_priority_first_then_the_next_target_when_one_is_closed",
        false,
        |net| {
            let dns_port = net.spare(0);
            let records = vec![
                // a NAPTR for TCP comes first by order but the trunk is UDP: RFC 3263 §4.1 skips it
                "--naptr-record=carrier.test,5,10,s,SIP+D2T,,_sip._tcp.carrier.test".to_string(),
                "--naptr-record=carrier.test,10,10,s,SIP+D2U,,_sip._udp.carrier.test".to_string(),
                format!(
                    "--srv-host=_sip._tcp.carrier.test,tcp.carrier.test,{},1,0",
                    net.closed()
                ),
                format!(
                    "--srv-host=_sip._udp.carrier.test,a.carrier.test,{},1,10",
                    net.trunk(0)
                ),
                format!(
                    "--srv-host=_sip._udp.carrier.test,c.carrier.test,{},1,30",
                    net.trunk(2)
                ),
                format!(
                    "--srv-host=_sip._udp.carrier.test,b.carrier.test,{},2,0",
                    net.trunk(1)
                ),
                "--host-record=a.carrier.test,127.0.0.1".to_string(),
                "--host-record=b.carrier.test,127.0.0.1".to_string(),
                "--host-record=c.carrier.test,127.0.0.1".to_string(),
                "--host-record=tcp.carrier.test,127.0.0.1".to_string(),
            ];
            let dns = Dnsmasq::start(net, dns_port, 30, &records);
            let y = config(
                net,
                &format!("{{ servers: [127.0.0.1:{dns_port}], timeout_ms: 1000 }}"),
                "  carrier: { address: carrier.test, transport: udp }\n",
                "  - route: [carrier]\n",
            );
            let a = Busy::start(net.trunk(0), "prio1-a");
            let c = Busy::start(net.trunk(2), "prio1-c");
            let b = Busy::start(net.trunk(1), "prio2-b");
            let tl = Trunkline::start(net, &y);
            wait_resolved(net, "carrier", 3.0, &tl);
            for i in 0..8 {
                let resp = call(net, &format!("1555000{i}"), &tl);
                let who = answered_by(&resp);
                assert!(
                    who == "prio1-a" || who == "prio1-c",
                    "call {i} answered by {who}, not a priority-1 target:\n{resp}\n{}",
                    dns.log()
                );
            }
            assert!(b.invites().is_empty(), "the priority-2 target was tried");
            // RFC 3263: the Request-URI keeps the name, not the address it resolved to.
            let seen: Vec<String> = a.invites().into_iter().chain(c.invites()).collect();
            assert_eq!(seen.len(), 8);
            assert!(seen.iter().all(|l| l.contains("@carrier.test")), "{seen:?}");
            // Both priority-1 targets closed: the call reaches priority 2 at once.
            a.close();
            c.close();
            let t0 = Instant::now();
            let resp = call(net, "15550100", &tl);
            let took = t0.elapsed();
            assert_eq!(answered_by(&resp), "prio2-b", "{resp}\n{}", tl.log_tail(30));
            assert!(
                took < Duration::from_secs(1),
                "next SRV target after {took:?}"
            );
        },
    );
}

#[test]
fn a_changed_record_is_followed_when_its_ttl_runs_out() {
    isolated(
        "a_changed_record_is_followed_when_its_ttl_runs_out",
        false,
        |net| {
            let dns_port = net.spare(0);
            let zone = |port: u16| {
                vec![
                    format!("--srv-host=_sip._udp.moving.test,host.moving.test,{port},1,0"),
                    "--host-record=host.moving.test,127.0.0.1".to_string(),
                ]
            };
            let dns = Dnsmasq::start(net, dns_port, 1, &zone(net.trunk(0)));
            let y = config(
                net,
                &format!("{{ servers: [127.0.0.1:{dns_port}] }}"),
                "  moving: { address: moving.test }\n",
                "  - route: [moving]\n",
            );
            let _old = Busy::start(net.trunk(0), "old");
            let _new = Busy::start(net.trunk(1), "new");
            let mut tl = Trunkline::start(net, &y);
            wait_resolved(net, "moving", 1.0, &tl);
            assert_eq!(answered_by(&call(net, "15550001", &tl)), "old");
            // The zone changes (dnsmasq restarted with the new record, TTL 1 s).
            drop(dns);
            let _dns = Dnsmasq::start(net, dns_port, 1, &zone(net.trunk(1)));
            let mut n = 0;
            let moved = poll_until(
                Instant::now() + Duration::from_secs(15),
                Duration::from_millis(200),
                || {
                    n += 1;
                    answered_by(&call(net, &format!("1555002{n:03}"), &tl)) == "new"
                },
            );
            assert!(
                moved,
                "the new SRV record was not used:\n{}",
                tl.log_tail(30)
            );
            tl.assert_alive();
        },
    );
}

#[test]
fn names_that_do_not_resolve_leave_the_call_to_the_next_trunk() {
    isolated(
        "names_that_do_not_resolve_leave_the_call_to_the_next_trunk",
        false,
        |net| {
            let dns_port = net.spare(0);
            let _dns = Dnsmasq::start(net, dns_port, 30, &[]);
            let y = config(
                net,
                &format!("{{ servers: [127.0.0.1:{dns_port}], timeout_ms: 500 }}"),
                &format!(
                    "  gone: {{ address: nothere.test }}\n\
                 \x20 backup: {{ address: 127.0.0.1:{} }}\n",
                    net.trunk(1)
                ),
                "  - match: { to_user: '^9' }\n    route: [gone]\n\
             \x20 - route: [gone, backup]\n",
            );
            let _backup = Busy::start(net.trunk(1), "backup");
            let mut tl = Trunkline::start(net, &y);
            wait_dns_failure(net, &[("trunk", "gone")], &tl);
            assert_eq!(
                dns_failures(net, &[("trunk", "gone"), ("reason", "no_records")]),
                dns_failures(net, &[("trunk", "gone")])
            );
            let log = tl.log_tail(50);
            assert!(log.contains("trunk unavailable until it resolves"), "{log}");
            // The unresolved trunks are skipped: the backup answers, at once.
            let t0 = Instant::now();
            assert_eq!(answered_by(&call(net, "15550001", &tl)), "backup");
            assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
            // A route of only an unresolved trunk: 503 with Retry-After.
            let resp = call(net, "9555", &tl);
            assert!(resp.starts_with("SIP/2.0 503"), "{resp}");
            assert!(header(&resp, "Retry-After", None).is_some(), "{resp}");
            tl.assert_alive();
        },
    );
}

#[test]
fn a_resolver_that_never_answers_makes_the_trunk_unavailable_not_stuck() {
    isolated(
        "a_resolver_that_never_answers_makes_the_trunk_unavailable_not_stuck",
        false,
        |net| {
            // A "name server" that reads every query and answers none.
            let silent = UdpSocket::bind(("127.0.0.1", net.spare(0))).expect("bind");
            let y = config(
                net,
                &format!(
                    "{{ servers: [127.0.0.1:{}], timeout_ms: 200 }}",
                    net.spare(0)
                ),
                &format!(
                    "  named: {{ address: carrier.test }}\n\
                     \x20 backup: {{ address: 127.0.0.1:{} }}\n",
                    net.trunk(1)
                ),
                "  - route: [named, backup]\n",
            );
            let _backup = Busy::start(net.trunk(1), "backup");
            let mut tl = Trunkline::start(net, &y);
            wait_dns_failure(net, &[("trunk", "named"), ("reason", "resolver")], &tl);
            let mut buf = [0u8; 512];
            silent
                .set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            assert!(
                silent.recv_from(&mut buf).is_ok(),
                "no query reached the resolver"
            );
            // Calls are never held up by the lookup: the backup answers at once.
            let t0 = Instant::now();
            assert_eq!(answered_by(&call(net, "15550001", &tl)), "backup");
            assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
            tl.assert_alive();
        },
    );
}

#[test]
fn hundreds_of_records_are_capped_and_calls_still_go_through() {
    isolated(
        "hundreds_of_records_are_capped_and_calls_still_go_through",
        false,
        |net| {
            let dns_port = net.spare(0);
            let mut records = vec![
                format!(
                    "--srv-host=_sip._udp.many.test,t.many.test,{},0,0",
                    net.trunk(0)
                ),
                "--host-record=t.many.test,127.0.0.1".to_string(),
            ];
            for i in 0..300u16 {
                records.push(format!(
                    "--srv-host=_sip._udp.many.test,t.many.test,{},{},0",
                    net.spare(100) + i,
                    i + 1
                ));
            }
            let _dns = Dnsmasq::start(net, dns_port, 30, &records);
            let y = config(
                net,
                &format!("{{ servers: [127.0.0.1:{dns_port}] }}"),
                "  many: { address: many.test }\n",
                "  - route: [many]\n",
            );
            let _t = Busy::start(net.trunk(0), "first");
            let mut tl = Trunkline::start(net, &y);
            wait_resolved(net, "many", 16.0, &tl);
            assert_eq!(answered_by(&call(net, "15550001", &tl)), "first");
            tl.assert_alive();
        },
    );
}

#[test]
fn inbound_calls_are_recognised_by_the_address_a_name_resolves_to() {
    isolated(
        "inbound_calls_are_recognised_by_the_address_a_name_resolves_to",
        false,
        |net| {
            let dns_port = net.spare(0);
            let records = vec![
                format!(
                    "--srv-host=_sip._udp.carrier.test,edge.carrier.test,{},1,0",
                    net.trunk(0)
                ),
                "--host-record=edge.carrier.test,127.0.0.1".to_string(),
            ];
            let _dns = Dnsmasq::start(net, dns_port, 30, &records);
            let y = config(
                net,
                &format!("{{ servers: [127.0.0.1:{dns_port}] }}"),
                &format!(
                    "  carrier: {{ address: carrier.test }}\n\
                 \x20 pbx: {{ address: 127.0.0.1:{} }}\n",
                    net.trunk(1)
                ),
                "  - match: { source_trunk: carrier }\n    route: [pbx]\n\
             \x20 - reject: { code: 403, reason: Forbidden }\n",
            );
            let _pbx = Busy::start(net.trunk(1), "pbx");
            let tl = Trunkline::start(net, &y);
            wait_resolved(net, "carrier", 1.0, &tl);
            // From the carrier's resolved address: a trunk call, routed to the PBX.
            let from_carrier = format!("127.0.0.1:{}", net.trunk(0));
            let resp = invite_once_from(
                &from_carrier,
                net.sip_addr(),
                "15550001",
                Duration::from_secs(10),
            )
            .unwrap_or_else(|| panic!("no answer:\n{}", tl.log_tail(30)));
            assert_eq!(answered_by(&resp), "pbx", "{resp}");
            // From anywhere else: not the carrier.
            let resp = call(net, "15550002", &tl);
            assert!(resp.starts_with("SIP/2.0 403"), "{resp}");
        },
    );
}

/// A name server that answers every query with a CNAME of the queried name to itself.
fn cname_loop_server(sock: UdpSocket, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        let mut answered = 0;
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if n < 17 {
                continue;
            }
            // header: same id, QR + RD + RA, one question, one answer
            let mut r = buf[..2].to_vec();
            r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
            r.extend_from_slice(&buf[12..n]); // the question as asked (no EDNS in the way)
                                              // answer: <the question's name> CNAME <the question's name>, TTL 30
            r.extend_from_slice(&[0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 30, 0, 2, 0xc0, 0x0c]);
            let _ = sock.send_to(&r, from);
            answered += 1;
        }
        answered
    })
}

#[test]
fn a_cname_loop_makes_the_trunk_unavailable() {
    isolated("a_cname_loop_makes_the_trunk_unavailable", false, |net| {
        let sock = UdpSocket::bind(("127.0.0.1", net.spare(0))).expect("bind");
        let stop = Arc::new(AtomicBool::new(false));
        let server = cname_loop_server(sock, stop.clone());
        let y = config(
            net,
            &format!(
                "{{ servers: [127.0.0.1:{}], timeout_ms: 500 }}",
                net.spare(0)
            ),
            &format!(
                "  looping: {{ address: 'loop.test:5060' }}\n\
                 \x20 backup: {{ address: 127.0.0.1:{} }}\n",
                net.trunk(1)
            ),
            "  - route: [looping, backup]\n",
        );
        let _backup = Busy::start(net.trunk(1), "backup");
        let mut tl = Trunkline::start(net, &y);
        wait_dns_failure(net, &[("trunk", "looping")], &tl);
        assert_eq!(answered_by(&call(net, "15550001", &tl)), "backup");
        stop.store(true, Ordering::Relaxed);
        assert!(server.join().expect("server") >= 1);
        tl.assert_alive();
    });
}

#[test]
fn a_name_with_only_an_aaaa_record_is_reached_over_ipv6() {
    isolated(
        "a_name_with_only_an_aaaa_record_is_reached_over_ipv6",
        false,
        |net| {
            let dns_port = net.spare(0);
            let records = vec![
                format!(
                    "--srv-host=_sip._udp.v6.test,edge.v6.test,{},1,0",
                    net.trunk(0)
                ),
                "--host-record=edge.v6.test,::1".to_string(),
            ];
            let _dns = Dnsmasq::start(net, dns_port, 30, &records);
            let y = format!(
                "listen:\n  - {{ transport: udp, address: 127.0.0.1:{sip} }}\n\
             \x20 - {{ transport: udp, address: '[::1]:{sip}' }}\n\
             media:\n  address: 127.0.0.1\n  address_v6: ::1\n  ports: {media}\n\
             dns: {{ servers: [127.0.0.1:{dns_port}] }}\n\
             trunks:\n  carrier: {{ address: v6.test }}\n\
             dialplan:\n  - route: [carrier]\n",
                sip = net.sip(),
                media = net.media_range(),
            );
            let sock = UdpSocket::bind(("::1", net.trunk(0))).expect("bind [::1]");
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let tl = Trunkline::start(net, &with_metrics(net, &y, ""));
            wait_resolved(net, "carrier", 1.0, &tl);
            // The caller is on IPv4; leg B goes to the AAAA address with IPv6 Via and SDP.
            let t = std::thread::spawn(move || {
                let mut buf = vec![0u8; 65535];
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let m = Msg {
                        text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                    };
                    if m.is_request("INVITE") {
                        let r = format!(
                            "SIP/2.0 486 v6\r\n{}Content-Length: 0\r\n\r\n",
                            m.reply_headers(Some("v6"))
                        );
                        let _ = sock.send_to(r.as_bytes(), from);
                        return Some(m.text);
                    }
                }
                None
            });
            let resp = call(net, "15550001", &tl);
            let invite = t.join().expect("responder").expect("no INVITE over IPv6");
            assert_eq!(answered_by(&resp), "v6", "{resp}");
            assert!(invite.contains("Via: SIP/2.0/UDP [::1]"), "{invite}");
            assert!(invite.contains("c=IN IP6 ::1"), "{invite}");
            assert!(
                invite
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .contains("@v6.test"),
                "{invite}"
            );
        },
    );
}

/// `tcp_fallback` on a UDP trunk named by SRV: a large INVITE (RFC 3261 §18.1.1) goes to the
/// trunk's `_sip._tcp` target (RFC 3263: SRV per transport; here another port), not to its
/// UDP one over TCP.
#[test]
fn a_large_invite_goes_to_the_trunks_tcp_srv_target() {
    isolated(
        "a_large_invite_goes_to_the_trunks_tcp_srv_target",
        false,
        |net| {
            let dns_port = net.spare(0);
            let records = vec![
                format!(
                    "--srv-host=_sip._udp.carrier.test,udp.carrier.test,{},1,0",
                    net.closed()
                ),
                format!(
                    "--srv-host=_sip._tcp.carrier.test,tcp.carrier.test,{},1,0",
                    net.trunk(1)
                ),
                "--host-record=udp.carrier.test,127.0.0.1".to_string(),
                "--host-record=tcp.carrier.test,127.0.0.1".to_string(),
            ];
            let _dns = Dnsmasq::start(net, dns_port, 30, &records);
            let y = config(
                net,
                &format!("{{ servers: [127.0.0.1:{dns_port}], timeout_ms: 1000 }}"),
                "  carrier: { address: carrier.test, transport: udp, tcp_fallback: true }\n",
                "  - route: [carrier]\n",
            )
            .replacen(
                "listen:\n",
                &format!(
                    "listen:\n  - {{ transport: tcp, address: 127.0.0.1:{} }}\n",
                    net.sip()
                ),
                1,
            );
            let mut tl = Trunkline::start(net, &y);
            wait_resolved(net, "carrier", 1.0, &tl);
            wait_resolved(net, "carrier#tcp", 1.0, &tl);
            let callee = Sipp::uas(
                net,
                "uas",
                "uas_basic.xml",
                net.trunk(1),
                net.sipp_media(1),
                1,
            )
            .args(&["-t", "t1"])
            .spawn();
            wait_tcp_listening(net.trunk(1), Duration::from_secs(5));
            let caller = Sipp::uac(net, "uac", "uac_large.xml", 1, 1)
                .pause_ms(200)
                .run(Duration::from_secs(30));
            let callee = callee.wait(Duration::from_secs(15));
            tl.assert_alive();
            let ctx = format!("trunkline log tail:\n{}", tl.log_tail(20));
            caller.assert_all_ok(1, &ctx);
            callee.assert_all_ok(1, &ctx);
        },
    );
}
