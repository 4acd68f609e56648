//! mgcp-gw-sim: a scripted MGCP residential gateway (RFC 3435, line package `L` and DTMF
//! package `D` of RFC 3660) with N analogue lines, for testing a call agent. A test peer, not
//! part of trunkline: `cargo build --example mgcp-gw-sim`.
//!
//! ```text
//! mgcp-gw-sim --listen 127.0.0.1:2427 --domain gw1 --lines 2 [--agent 127.0.0.1:2727]
//!             [--answer-after 2] [--inter-digit 1.0] [--wav-dir DIR]
//!             [--at 0.5:offhook:1] [--at 1:dial:1:1001] [--at 9:onhook:1]
//!             [--at 3:restart] [--at 2:garbage:0:10000] [--talk 1:5] [--load SECS]
//! ```
//!
//! Actions run at their time (seconds from start), a line's actions no earlier than the
//! line is armed (its first RQNT). `--talk L:S` hangs line L up S seconds after its
//! connection goes sendrecv. `--answer-after S` takes a ringing line off-hook after S seconds.
//! The gateway answers CRCX/MDCX/DLCX/RQNT/AUEP, collects digits with the call agent's digit
//! map (`D:`; inter-digit timer, then `T`), notifies requested events, sends a tone per line
//! (PCMU, 20 ms) to each sendrecv/sendonly connection, and writes what it receives to
//! `DIR/<line>-<connection>.wav`. Everything it does is printed on stdout, one event a line.
//! `--load SECS`: a load generator instead: every armed line goes off-hook at once and back
//! on-hook when it gets dial tone, over and over; after a second of warm-up it counts the MGCP
//! transactions completed for SECS seconds and prints `load transactions=N seconds=S rate=R`.

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use mgcp::{Command, DigitMap, Match, Message, Response, Verb};

struct Conn {
    id: String,
    call: String,
    sock: UdpSocket,
    remote: Option<SocketAddr>,
    mode: String,
    seq: u16,
    ts: u32,
    next_send: Instant,
    sent: u64,
    received: u64,
    audio: Vec<u8>,
    phase: f64,
}

#[derive(Default)]
struct Line {
    n: usize,
    name: String,
    off_hook: bool,
    armed: bool,
    x: String,
    events: String,
    digit_map: Option<DigitMap>,
    collecting: Option<(String, Option<Instant>)>,
    ringing_since: Option<Instant>,
    talk_until: Option<Instant>,
    conns: Vec<Conn>,
}

struct Action {
    at: Instant,
    what: String,
    line: usize,
    arg: String,
}

struct Sim {
    sock: UdpSocket,
    domain: String,
    lines: Vec<Line>,
    agent: Option<SocketAddr>,
    answer_after: Option<Duration>,
    talk: HashMap<usize, Duration>,
    inter_digit: Duration,
    wav_dir: Option<String>,
    next_txid: u32,
    next_conn: u32,
    /// NTFY/RSIP in flight: txid -> (bytes, next resend, sends).
    pending: HashMap<u32, (Vec<u8>, Instant, u32)>,
    /// Load mode: every armed line goes off-hook at once, every line with dial tone on-hook.
    load: bool,
    /// Lines to act on after the current datagram (load mode): (line, off-hook?).
    auto: Vec<(usize, bool)>,
    /// Transactions completed: commands answered, NTFYs answered.
    commands: u64,
    notified: u64,
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn say(s: String) {
    if QUIET.load(std::sync::atomic::Ordering::Relaxed) && !s.starts_with("load ") {
        return;
    }
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{s}");
    let _ = o.flush();
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen = arg_value(&args, "--listen").unwrap_or_else(|| "127.0.0.1:2427".into());
    let domain = arg_value(&args, "--domain").unwrap_or_else(|| "gw1".into());
    let n: usize = arg_value(&args, "--lines")
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let secs = |s: String| Duration::from_secs_f64(s.parse::<f64>().unwrap_or(0.0).max(0.0));
    let start = Instant::now();
    let mut actions = Vec::new();
    let mut talk = HashMap::new();
    for (i, a) in args.iter().enumerate() {
        let Some(v) = args.get(i + 1) else { continue };
        if a == "--at" {
            let p: Vec<&str> = v.split(':').collect();
            actions.push(Action {
                at: start + secs(p.first().unwrap_or(&"0").to_string()),
                what: p.get(1).unwrap_or(&"").to_string(),
                line: p.get(2).and_then(|l| l.parse().ok()).unwrap_or(0),
                arg: p.get(3).unwrap_or(&"").to_string(),
            });
        } else if a == "--talk" {
            if let Some((l, s)) = v.split_once(':') {
                talk.insert(l.parse().unwrap_or(0), secs(s.to_string()));
            }
        }
    }
    let sock = UdpSocket::bind(&listen).expect("bind the gateway's MGCP port");
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let mut sim = Sim {
        sock,
        lines: (1..=n)
            .map(|i| Line {
                n: i,
                name: format!("aaln/{i}@{domain}"),
                ..Line::default()
            })
            .collect(),
        domain,
        agent: arg_value(&args, "--agent").and_then(|a| a.parse().ok()),
        answer_after: arg_value(&args, "--answer-after").map(secs),
        talk,
        inter_digit: arg_value(&args, "--inter-digit")
            .map(secs)
            .unwrap_or(Duration::from_secs(1)),
        wav_dir: arg_value(&args, "--wav-dir"),
        next_txid: 1000,
        next_conn: 0x100,
        pending: HashMap::new(),
        load: false,
        auto: Vec::new(),
        commands: 0,
        notified: 0,
    };
    let load_for = arg_value(&args, "--load").map(secs);
    sim.load = load_for.is_some();
    if sim.load {
        say(format!("ready {}", sim.sock.local_addr().unwrap()));
        if std::env::var_os("SIM_VERBOSE").is_none() {
            QUIET.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let mut load_start: Option<(Instant, u64)> = None;
    let mut last_tick = Instant::now();
    if !sim.load {
        say(format!("ready {}", sim.sock.local_addr().unwrap()));
    }
    let mut buf = [0u8; 65536];
    loop {
        if let Ok((len, from)) = sim.sock.recv_from(&mut buf) {
            sim.on_datagram(&buf[..len], from);
            for (li, off) in std::mem::take(&mut sim.auto) {
                if off {
                    sim.off_hook(li);
                } else {
                    sim.on_hook(li);
                }
            }
        }
        let now = Instant::now();
        if let Some(d) = load_for {
            // measured from the first transaction on, after a second of warm-up
            let total = sim.commands + sim.notified;
            match load_start {
                None if total > 0 && now >= start + Duration::from_secs(1) => {
                    load_start = Some((now, total))
                }
                Some((t, n)) if now >= t + d => {
                    let secs = (now - t).as_secs_f64();
                    say(format!(
                        "load transactions={} seconds={secs:.2} rate={:.0}",
                        total - n,
                        (total - n) as f64 / secs
                    ));
                    return;
                }
                _ => {}
            }
        }
        if now < last_tick + Duration::from_millis(1) {
            continue;
        }
        last_tick = now;
        let mut i = 0;
        while i < actions.len() {
            let a = &actions[i];
            let ready = a.line == 0 || sim.lines.get(a.line - 1).is_some_and(|l| l.armed);
            if a.at <= now && ready {
                let a = actions.remove(i);
                sim.act(&a.what, a.line, &a.arg);
            } else {
                i += 1;
            }
        }
        sim.tick(now);
    }
}

impl Sim {
    fn txid(&mut self) -> u32 {
        self.next_txid += 1;
        self.next_txid
    }

    fn send_agent(&mut self, text: String) {
        let Some(to) = self.agent else {
            say("no-agent".into());
            return;
        };
        let txid: u32 = text
            .split_whitespace()
            .nth(1)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let _ = self.sock.send_to(text.as_bytes(), to);
        self.pending.insert(
            txid,
            (
                text.into_bytes(),
                Instant::now() + Duration::from_millis(500),
                1,
            ),
        );
    }

    fn notify(&mut self, li: usize, observed: &str) {
        let (name, x) = (self.lines[li].name.clone(), self.lines[li].x.clone());
        let txid = self.txid();
        say(format!("ntfy {name} O={observed}"));
        self.send_agent(format!(
            "NTFY {txid} {name} MGCP 1.0\r\nX: {x}\r\nO: {observed}\r\n"
        ));
    }

    fn requested(&self, li: usize, ev: &str) -> bool {
        self.lines[li]
            .events
            .to_ascii_lowercase()
            .contains(&ev.to_ascii_lowercase())
    }

    fn act(&mut self, what: &str, line: usize, arg: &str) {
        let li = line.wrapping_sub(1);
        match what {
            "offhook" if li < self.lines.len() => self.off_hook(li),
            "onhook" if li < self.lines.len() => self.on_hook(li),
            "dial" if li < self.lines.len() => {
                say(format!("dial {} {arg}", self.lines[li].name));
                for d in arg.chars() {
                    self.digit(li, d);
                }
            }
            "restart" => {
                for l in &mut self.lines {
                    l.conns.clear();
                    l.events.clear();
                    l.armed = false;
                    l.ringing_since = None;
                    l.collecting = None;
                }
                let txid = self.txid();
                say("rsip restart".into());
                let d = self.domain.clone();
                self.send_agent(format!(
                    "RSIP {txid} aaln/*@{d} MGCP 1.0\r\nRM: restart\r\n"
                ));
            }
            "garbage" => self.garbage(arg.parse().unwrap_or(1000).min(100_000)),
            _ => say(format!("bad-action {what}")),
        }
    }

    /// `n` hostile datagrams to the agent from the gateway's own address: bytes, cut-off
    /// commands, NTFYs for no endpoint, with stale request ids or broken event lists.
    fn garbage(&mut self, n: u32) {
        let Some(to) = self.agent else {
            return;
        };
        let d = self.domain.clone();
        let mut x: u32 = 0x2545_f491;
        for i in 0..n {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let junk = match i % 5 {
                0 => x.to_be_bytes().repeat(1 + (x % 64) as usize),
                1 => format!(
                    "NTFY {} aaln/1@{d} MGCP 1.0\r\nX: {x:X}\r\nO: L/hu\r\n",
                    5000 + i
                )
                .into_bytes(),
                2 => format!("NTFY {} aaln/99@{d} MGCP 1.0\r\nO: L/hd\r\n", 5000 + i).into_bytes(),
                3 => format!(
                    "NTFY {} aaln/2@{d} MGCP 1.0\r\nX: 1\r\nO: L/hd,(((,\r\n",
                    5000 + i
                )
                .into_bytes(),
                _ => b"NTFY 12".to_vec(),
            };
            let _ = self.sock.send_to(&junk, to);
        }
        say(format!("garbage {n}"));
    }

    fn off_hook(&mut self, li: usize) {
        self.lines[li].off_hook = true;
        self.lines[li].ringing_since = None;
        say(format!("offhook {}", self.lines[li].name));
        if self.requested(li, "L/hd") {
            self.notify(li, "L/hd");
        }
    }

    fn on_hook(&mut self, li: usize) {
        self.lines[li].off_hook = false;
        self.lines[li].talk_until = None;
        self.lines[li].collecting = None;
        say(format!("onhook {}", self.lines[li].name));
        if self.requested(li, "L/hu") {
            self.notify(li, "L/hu");
        }
    }

    /// One digit into the collection (RFC 3435 section 2.1.5).
    fn digit(&mut self, li: usize, d: char) {
        let l = &mut self.lines[li];
        let Some(map) = l.digit_map.clone() else {
            return;
        };
        let (mut got, _) = l.collecting.take().unwrap_or_default();
        got.push(d);
        match map.check(&got) {
            Match::Full | Match::None => self.report_digits(li, &got),
            Match::Partial | Match::FullButLonger => {
                self.lines[li].collecting = Some((got, Some(Instant::now() + self.inter_digit)));
            }
        }
    }

    fn report_digits(&mut self, li: usize, got: &str) {
        self.lines[li].collecting = None;
        let o: Vec<String> = got.chars().map(|c| format!("D/{c}")).collect();
        self.notify(li, &o.join(","));
    }

    fn tick(&mut self, now: Instant) {
        for li in 0..self.lines.len() {
            if let Some((got, Some(t))) = self.lines[li].collecting.clone() {
                if t <= now {
                    self.report_digits(li, &format!("{got}T"));
                }
            }
            if let (Some(t), Some(after)) = (self.lines[li].ringing_since, self.answer_after) {
                if now >= t + after {
                    self.off_hook(li);
                }
            }
            if self.lines[li].talk_until.is_some_and(|t| now >= t) {
                self.on_hook(li);
            }
            let tone = 300.0 + 200.0 * self.lines[li].n as f64;
            for c in &mut self.lines[li].conns {
                rtp(c, tone, now);
            }
        }
        let due: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, (_, t, _))| *t <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            if let Some((bytes, t, n)) = self.pending.get_mut(&k) {
                if *n >= 5 {
                    self.pending.remove(&k);
                    say(format!("timeout {k}"));
                    continue;
                }
                *n += 1;
                *t = now + Duration::from_millis(500 << *n);
                if let Some(a) = self.agent {
                    let _ = self.sock.send_to(bytes, a);
                }
            }
        }
    }

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr) {
        let Ok(msgs) = mgcp::parse(data) else {
            say("garbage".into());
            return;
        };
        for m in msgs {
            match m {
                Message::Response(r) => {
                    if self.pending.remove(&r.txid).is_some() {
                        self.notified += 1;
                    }
                    if !self.load {
                        say(format!("answer {} {}", r.txid, r.code));
                    }
                }
                Message::Command(c) => {
                    self.agent = Some(from);
                    let r = self.on_command(&c);
                    self.commands += 1;
                    let _ = self.sock.send_to(r.encode().as_bytes(), from);
                }
            }
        }
    }

    fn line_of(&self, ep: &str) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| l.name.eq_ignore_ascii_case(ep))
    }

    fn on_command(&mut self, c: &Command) -> Response {
        let ok = |code: u16, text: &str| Response::new(code, c.txid, text);
        if c.verb == Verb::Auep {
            let mut r = ok(200, "OK");
            if c.endpoint.contains('*') {
                for l in &self.lines {
                    r.params.push(mgcp::Param {
                        name: "Z".into(),
                        value: l.name.clone(),
                    });
                }
            } else if self.line_of(&c.endpoint).is_none() {
                return ok(500, "Endpoint unknown");
            }
            say(format!("auep {}", c.endpoint));
            return r;
        }
        let Some(li) = self.line_of(&c.endpoint) else {
            return ok(500, "Endpoint unknown");
        };
        match c.verb {
            Verb::Rqnt => self.rqnt(li, c),
            Verb::Crcx => self.crcx(li, c),
            Verb::Mdcx => self.mdcx(li, c),
            Verb::Dlcx => self.dlcx(li, c),
            _ => ok(504, "Unknown command"),
        }
    }

    fn rqnt(&mut self, li: usize, c: &Command) -> Response {
        let events = c.param("R").unwrap_or("").to_string();
        let l = &mut self.lines[li];
        let low = events.to_ascii_lowercase();
        // RFC 3435 section 2.4: 401 "phone already off hook", 402 "already on hook"
        if low.contains("l/hd") && l.off_hook {
            return Response::new(401, c.txid, "Phone off hook");
        }
        if low.contains("l/hu") && !l.off_hook {
            return Response::new(402, c.txid, "Phone on hook");
        }
        l.x = c.param("X").unwrap_or("").to_string();
        l.events = events;
        l.armed = true;
        if let Some(d) = c.param("D") {
            l.digit_map = DigitMap::parse(d).ok();
            l.collecting = Some((String::new(), None));
        } else if !low.contains("d/") {
            l.collecting = None;
        }
        let signals = c.param("S").unwrap_or("").to_string();
        if signals.to_ascii_lowercase().contains("l/rg") {
            l.ringing_since = Some(Instant::now());
        } else {
            l.ringing_since = None;
        }
        say(format!(
            "rqnt {} X={} R={} S={}",
            l.name, l.x, l.events, signals
        ));
        if self.load {
            if low.contains("l/hd") {
                self.auto.push((li, true));
            } else if signals.eq_ignore_ascii_case("L/dl") {
                self.auto.push((li, false));
            }
        }
        Response::new(200, c.txid, "OK")
    }

    fn crcx(&mut self, li: usize, c: &Command) -> Response {
        let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
            return Response::new(403, c.txid, "No resources");
        };
        let _ = sock.set_nonblocking(true);
        let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
        self.next_conn += 1;
        let id = format!("{:X}", self.next_conn);
        let mode = c.param("M").unwrap_or("sendrecv").to_string();
        let conn = Conn {
            id: id.clone(),
            call: c.param("C").unwrap_or("").to_string(),
            sock,
            remote: c.sdp.as_deref().and_then(media_of),
            mode: mode.clone(),
            seq: 1,
            ts: 0,
            next_send: Instant::now(),
            sent: 0,
            received: 0,
            audio: Vec::new(),
            phase: 0.0,
        };
        say(format!(
            "crcx {} I={id} M={mode} remote={:?}",
            self.lines[li].name, conn.remote
        ));
        self.lines[li].conns.push(conn);
        let mut r = Response::new(200, c.txid, "OK");
        r.params.push(mgcp::Param {
            name: "I".into(),
            value: id,
        });
        r.sdp = Some(format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
        ));
        r
    }

    fn mdcx(&mut self, li: usize, c: &Command) -> Response {
        let talk = self.talk.get(&self.lines[li].n).copied();
        let l = &mut self.lines[li];
        let Some(conn) = l
            .conns
            .iter_mut()
            .find(|x| Some(x.id.as_str()) == c.param("I"))
        else {
            return Response::new(515, c.txid, "Incorrect connection-id");
        };
        if let Some(m) = c.param("M") {
            conn.mode = m.to_string();
        }
        if let Some(r) = c.sdp.as_deref().and_then(media_of) {
            conn.remote = Some(r);
        }
        if conn.mode == "sendrecv" {
            if let Some(t) = talk {
                l.talk_until = Some(Instant::now() + t);
            }
        }
        say(format!(
            "mdcx {} I={} M={} remote={:?}",
            l.name, conn.id, conn.mode, conn.remote
        ));
        Response::new(200, c.txid, "OK")
    }

    fn dlcx(&mut self, li: usize, c: &Command) -> Response {
        let l = &mut self.lines[li];
        let pos = match (c.param("I"), c.param("C")) {
            (Some(i), _) => l.conns.iter().position(|x| x.id == i),
            (None, Some(call)) => l.conns.iter().position(|x| x.call == call),
            _ => None,
        };
        let Some(pos) = pos else {
            return Response::new(515, c.txid, "Incorrect connection-id");
        };
        let conn = l.conns.remove(pos);
        let rms = rms(&conn.audio);
        say(format!(
            "dlcx {} I={} sent={} received={} rms={rms:.0}",
            l.name, conn.id, conn.sent, conn.received
        ));
        if let Some(dir) = &self.wav_dir {
            let path = format!("{dir}/{}-{}.wav", l.n, conn.id);
            if write_wav(&path, &conn.audio).is_ok() {
                say(format!("wav {path}"));
            }
        }
        let mut r = Response::new(250, c.txid, "Connection deleted");
        r.params.push(mgcp::Param {
            name: "P".into(),
            value: format!(
                "PS={}, OS={}, PR={}, OR={}, PL=0, JI=0, LA=0",
                conn.sent,
                conn.sent * 160,
                conn.received,
                conn.received * 160
            ),
        });
        r
    }
}

/// The media address of an SDP (c= and the first m=audio port).
fn media_of(sdp: &str) -> Option<SocketAddr> {
    let ip = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
        .trim();
    let port = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?;
    format!("{ip}:{port}").parse().ok()
}

/// Send the line's tone every 20 ms, take in what arrives (at most a minute of it).
fn rtp(c: &mut Conn, tone: f64, now: Instant) {
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = c.sock.recv_from(&mut buf) {
        if n > 12 && c.mode != "sendonly" && c.mode != "inactive" {
            c.received += 1;
            if c.audio.len() < 8000 * 60 {
                c.audio.extend_from_slice(&buf[12..n]);
            }
        }
    }
    let sending = c.mode == "sendrecv" || c.mode == "sendonly";
    let Some(to) = c.remote.filter(|_| sending) else {
        return;
    };
    while now >= c.next_send {
        let mut pkt = vec![0x80u8, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
        pkt[2..4].copy_from_slice(&c.seq.to_be_bytes());
        pkt[4..8].copy_from_slice(&c.ts.to_be_bytes());
        for _ in 0..160 {
            let s = (c.phase.sin() * 8000.0) as i16;
            c.phase += 2.0 * std::f64::consts::PI * tone / 8000.0;
            pkt.push(codecs::g711::linear_to_ulaw(s));
        }
        let _ = c.sock.send_to(&pkt, to);
        c.sent += 1;
        c.seq = c.seq.wrapping_add(1);
        c.ts = c.ts.wrapping_add(160);
        c.next_send += Duration::from_millis(20);
    }
}

fn rms(ulaw: &[u8]) -> f64 {
    if ulaw.is_empty() {
        return 0.0;
    }
    let sum: f64 = ulaw
        .iter()
        .map(|&b| f64::from(codecs::g711::ulaw_to_linear(b)).powi(2))
        .sum();
    (sum / ulaw.len() as f64).sqrt()
}

/// 8 kHz mono 16-bit PCM WAV of µ-law audio.
fn write_wav(path: &str, ulaw: &[u8]) -> std::io::Result<()> {
    let data_len = (ulaw.len() * 2) as u32;
    let mut w = Vec::with_capacity(44 + ulaw.len() * 2);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for &b in ulaw {
        w.extend_from_slice(&codecs::g711::ulaw_to_linear(b).to_le_bytes());
    }
    std::fs::write(path, w)
}
