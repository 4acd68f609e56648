//! The location service survives restarts (`registrar.store`): phones register (raw REGISTERs
//! answered with Digest by `signaling::digest_client`, SHA-256 as trunkline offers it first),
//! trunkline is killed with SIGKILL while registrations keep coming, and after a restart every
//! binding committed more than a second before the kill is back, the file is no worse for it,
//! and a carrier's call to a user reaches the phone with no new REGISTER. A store file that is
//! garbage is moved aside and trunkline starts empty.

mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::rawsip::{recv_until, sdp, Msg};
use common::*;
use signaling::digest_client::{Credentials, DigestClient, RequestParts};
use signaling::parse::parse;
use signaling::SipMessage;

const USERS: usize = 400;

fn yaml(net: &Net) -> String {
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    let base = config_yaml(net, &t, &["pbx"]);
    let mut users = String::new();
    for i in 0..USERS {
        users.push_str(&format!("    u{i}: {{ password: pw{i} }}\n"));
    }
    let store = net.dir.join("location.db");
    with_metrics(
        net,
        &base,
        &format!(
            "registrar:\n  domains: [127.0.0.1]\n  keepalive: 0\n  store: {}\n  users:\n{users}",
            store.display()
        ),
    )
}

/// One phone: its socket (the binding's address) and a REGISTER with Digest.
struct Phone {
    sock: UdpSocket,
    user: String,
    tl: SocketAddr,
    cseq: std::cell::Cell<u32>,
}

impl Phone {
    fn new(i: usize, tl: SocketAddr) -> Phone {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind phone");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        Phone {
            sock,
            user: format!("u{i}"),
            tl,
            cseq: std::cell::Cell::new(0),
        }
    }

    fn request(&self, cseq: u32, auth: &str) -> String {
        let me = self.sock.local_addr().expect("local");
        let u = &self.user;
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{u}x{cseq}\r\n\
             Max-Forwards: 70\r\nTo: <sip:{u}@127.0.0.1>\r\nFrom: <sip:{u}@127.0.0.1>;tag={u}\r\n\
             Call-ID: reg-{u}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{u}@{me}>;expires=3600\r\n\
             {auth}Content-Length: 0\r\n\r\n"
        )
    }

    /// The final response to `text` within `limit` (None: none came).
    fn exchange(&self, text: &str, limit: Duration) -> Option<signaling::message::Response> {
        let _ = self.sock.send_to(text.as_bytes(), self.tl);
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 8192];
        while Instant::now() < deadline {
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            if let Ok(SipMessage::Response(r)) = parse(&buf[..n]) {
                if r.status >= 200 {
                    return Some(r);
                }
            }
        }
        None
    }

    /// Challenge, then credentials: true when the 200 came.
    fn register(&self, limit: Duration) -> bool {
        let cseq = self.cseq.get() + 2;
        self.cseq.set(cseq);
        let Some(ch) = self.exchange(&self.request(cseq - 1, ""), limit) else {
            return false;
        };
        let mut c = DigestClient::new(Credentials {
            username: self.user.clone(),
            password: format!("pw{}", &self.user[1..]),
            realm: None,
        });
        let parts = RequestParts {
            method: "REGISTER",
            uri: "sip:127.0.0.1",
            body: b"",
        };
        let Ok(a) = c.answer(&ch, &parts, None, "c0ffee") else {
            return false;
        };
        assert!(a.value.contains("algorithm=SHA-256"), "{}", a.value);
        let auth = format!("{}: {}\r\n", a.header, a.value);
        self.exchange(&self.request(cseq, &auth), limit)
            .is_some_and(|r| r.status == 200)
    }
}

/// The AoRs trunkline lists (admin API).
fn registered(net: &Net) -> HashSet<String> {
    let (code, body) = http(net.metrics_addr(), "GET", "/registrations");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["registrations"]
        .as_array()
        .expect("registrations")
        .iter()
        .filter_map(|r| r["aor"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn bindings_survive_kill_9_under_registration_load() {
    isolated(
        "bindings_survive_kill_9_under_registration_load",
        false,
        |net| {
            let mut tl = Trunkline::start(net, &yaml(net));
            let tl_addr = net.sip_addr();
            // Phones register one after another as fast as trunkline answers, then refresh their
            // registrations round and round, until stopped.
            let done: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::default();
            let stop = Arc::new(AtomicBool::new(false));
            let count = Arc::new(AtomicUsize::new(0));
            let loader = {
                let (done, stop, count) = (done.clone(), stop.clone(), count.clone());
                std::thread::spawn(move || {
                    let mut phones = Vec::new();
                    for i in 0..USERS {
                        if stop.load(Ordering::SeqCst) {
                            return phones;
                        }
                        let p = Phone::new(i, tl_addr);
                        if p.register(Duration::from_millis(500)) {
                            done.lock().unwrap().push((i, Instant::now()));
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        phones.push(p);
                    }
                    for p in phones.iter().cycle() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if p.register(Duration::from_millis(500)) {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    phones
                })
            };
            // Load for at least 1.5 s (all phones registered at least once), then SIGKILL while
            // REGISTERs still arrive.
            let start = Instant::now();
            let loaded = poll_until(
                Instant::now() + Duration::from_secs(60),
                Duration::from_millis(10),
                || {
                    count.load(Ordering::SeqCst) > USERS
                        && start.elapsed() > Duration::from_millis(1500)
                },
            );
            assert!(loaded, "phones did not register: {}", tl.log_tail(30));
            let before = count.load(Ordering::SeqCst);
            tl.signal(libc::SIGKILL);
            let killed_at = Instant::now();
            assert!(tl.wait_exit(Duration::from_secs(5)).is_some(), "SIGKILL");
            stop.store(true, Ordering::SeqCst);
            let phones = loader.join().expect("loader");
            let registers = before;
            assert!(registers > USERS, "refreshes were under way at the kill");
            let done = done.lock().unwrap().clone();

            // Restart on the same store.
            let t0 = Instant::now();
            let tl = Trunkline::start(net, &yaml(net));
            let ready = t0.elapsed();
            let log = tl.log_text();
            assert!(log.contains("registrar.store loaded"), "{log}");
            assert!(
                !log.contains("corrupt"),
                "the file survived the kill: {log}"
            );
            let aside = std::fs::read_dir(&net.dir)
                .expect("dir")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .any(|n| n.contains(".corrupt-"));
            assert!(!aside, "nothing moved aside after a kill");
            let back = registered(net);
            let old: Vec<usize> = done
                .iter()
                .filter(|(_, t)| *t + Duration::from_secs(1) < killed_at)
                .map(|(i, _)| *i)
                .collect();
            let lost: Vec<&usize> = old
                .iter()
                .filter(|i| !back.contains(&format!("u{i}@127.0.0.1")))
                .collect();
            assert!(lost.is_empty(), "bindings older than 1 s lost: {lost:?}");
            let rate = registers as f64 / killed_at.duration_since(start).as_secs_f64();
            eprintln!(
                "{} phones registered, {registers} REGISTERs with Digest ({rate:.0}/s) before the \
             kill; {} bindings back after restart (ready in {ready:?})",
                done.len(),
                back.len()
            );
            assert!(back.len() <= done.len() + 1, "no binding from nowhere");

            // The carrier calls the first phone: it rings at the address it registered from,
            // with no new REGISTER.
            let carrier =
                UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind carrier (trunk) socket");
            let body = sdp("127.0.0.1", net.spare(50));
            let invite = format!(
            "INVITE sip:u0@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKcall1\r\n\
             Max-Forwards: 70\r\nTo: <sip:u0@127.0.0.1>\r\nFrom: <sip:+15550001@127.0.0.1>;tag=c1\r\n\
             Call-ID: after-restart\r\nCSeq: 1 INVITE\r\nContact: <sip:carrier@127.0.0.1:{p}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len(),
            p = net.trunk(0)
        );
            carrier
                .send_to(invite.as_bytes(), tl_addr)
                .expect("send INVITE");
            let got: Msg = recv_until(
                &phones[0].sock,
                Duration::from_secs(5),
                "INVITE at u0",
                |m| m.is_request("INVITE"),
            );
            assert!(
                got.text.starts_with("INVITE sip:u0@127.0.0.1:"),
                "{}",
                got.text
            );
            drop(tl);
        },
    );
}

#[test]
fn a_corrupt_store_is_moved_aside_and_trunkline_starts_empty() {
    isolated(
        "a_corrupt_store_is_moved_aside_and_trunkline_starts_empty",
        false,
        |net| {
            let store = net.dir.join("location.db");
            std::fs::write(&store, b"not a database\n".repeat(1000)).expect("write garbage");
            let tl = Trunkline::start(net, &yaml(net));
            let log = tl.log_text();
            assert!(log.contains("moved aside"), "{log}");
            let aside: Vec<String> = std::fs::read_dir(&net.dir)
                .expect("dir")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("location.db.corrupt-"))
                .collect();
            assert_eq!(aside.len(), 1, "{aside:?}");
            let kept = std::fs::read(net.dir.join(&aside[0])).expect("read aside");
            assert!(
                kept.starts_with(b"not a database"),
                "the old bytes are kept"
            );
            assert!(registered(net).is_empty());
            // and the new store works: a phone registers
            let p = Phone::new(7, net.sip_addr());
            assert!(p.register(Duration::from_secs(2)));
            assert_eq!(registered(net).len(), 1);
        },
    );
}
