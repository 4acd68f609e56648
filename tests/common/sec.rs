//! Helpers of the `security_*` tests: attacker sockets from chosen loopback addresses, file
//! descriptor limits for the process under test, its CPU time, SIP over a raw TCP stream.
// Each security test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::process::poll_until;

/// Sets this process's soft RLIMIT_NOFILE to `n` (at most the hard limit); returns the old one.
pub fn set_nofile(n: u64) -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        let old = rl.rlim_cur;
        rl.rlim_cur = n.min(rl.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0, "setrlimit");
        old
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (attackers need many sockets).
pub fn raise_nofile() {
    set_nofile(u64::MAX);
}

/// Runs `f` (which spawns the process under test: children inherit the limit) with a soft
/// RLIMIT_NOFILE of `n`, then raises this process's own limit again.
pub fn spawn_with_nofile<T>(n: u64, f: impl FnOnce() -> T) -> T {
    set_nofile(n);
    let r = f();
    raise_nofile();
    r
}

/// User + system CPU seconds `pid` has used (`/proc/PID/stat` fields 14 and 15).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// A blocking TCP connection to `to` from address `src` (any port).
pub fn connect_from(src: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    s.bind(&SocketAddr::new(src, 0).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(3))?;
    Ok(s.into())
}

/// Starts a non-blocking connect to `to` from `src` and returns the socket at once (a flood
/// of connections that do not wait for the accept queue).
pub fn connect_nonblocking(src: IpAddr, to: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(src, 0).into())?;
    match s.connect(&to.into()) {
        Ok(()) => Ok(s),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
        Err(e) => Err(e),
    }
}

/// Whether the other side closed `s` (EOF or reset) within `limit`, having sent nothing.
pub fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 512];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Sends an OPTIONS over the TCP stream `s` and returns the final status (None: no answer
/// within `limit` or the connection went away).
pub fn tcp_options(s: &mut TcpStream, n: u32, limit: Duration) -> Option<u16> {
    let local = s.local_addr().ok()?;
    let to = s.peer_addr().ok()?;
    let req = format!(
        "OPTIONS sip:{to};transport=tcp SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bK-sec-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag=sec{n}\r\n\
         To: <sip:{to}>\r\n\
         Call-ID: sec-{n}@127.0.0.1\r\n\
         CSeq: {n} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        s.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(k) => {
                got.extend_from_slice(&buf[..k]);
                let text = String::from_utf8_lossy(&got);
                if text.contains("\r\n\r\n") {
                    let code: u16 = text.split_whitespace().nth(1)?.parse().ok()?;
                    if code >= 200 {
                        return Some(code);
                    }
                    let head_end = text.find("\r\n\r\n")? + 4;
                    got.drain(..head_end);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
    None
}

/// One HTTP/1.1 request with extra header lines, from `src`; `None` when the connection is
/// closed without an answer or nothing comes within `limit`; else (status, body).
pub fn http_from(
    src: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    limit: Duration,
) -> Option<(u16, String)> {
    let mut s = connect_from(src, addr).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// `addr`'s metric `name` with `labels` from `/metrics` (0 when absent).
pub fn metric_value(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let body = http_from(
        IpAddr::from([127, 0, 0, 1]),
        addr,
        "GET",
        "/metrics",
        &[],
        Duration::from_secs(10),
    )
    .map(|(_, b)| b)
    .unwrap_or_default();
    crate::common::metric(&body, name, labels).unwrap_or(0.0)
}

/// Whether `s` is still open now (no EOF or reset waiting), without blocking.
pub fn is_open(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    s.set_nonblocking(true).expect("nonblocking");
    let r = match s.peek(&mut b) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).expect("blocking");
    r
}

/// Waits until at most `open` of `socks` are open, or `deadline`; returns how many are open.
pub fn wait_open_at_most(socks: &[TcpStream], open: usize, deadline: Instant) -> usize {
    let mut n = 0;
    poll_until(deadline, Duration::from_millis(20), || {
        n = socks.iter().filter(|s| is_open(s)).count();
        n <= open
    });
    n
}

/// MD5 (RFC 1321) as lowercase hex, for the Digest responses of test clients.
pub fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32)
        .collect();
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_le_bytes());
    let (mut a0, mut b0, mut c0, mut d0) =
        (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    [a0, b0, c0, d0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Resident set size of `pid` in bytes (`/proc/PID/statm`).
pub fn rss_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/statm")).expect("read statm");
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("rss");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}
