//! HEP version 3 capture (the Homer encapsulation): a copy of every SIP message trunkline sends
//! and receives, with the correlation id that ties a call's two legs (leg A's Call-ID), sent as
//! UDP datagrams to the collector of `capture.hep`.
//!
//! HEP3 (sipcapture.org's "HEP3 Network Protocol Specification"): `HEP3`, the total length
//! (u16, network order), then chunks of vendor id (u16), type id (u16), chunk length (u16,
//! header included) and the value. Generic chunks (vendor 0) used here: 1 IP family, 2 IP
//! protocol, 3/4 IPv4 source/destination, 5/6 IPv6 source/destination, 7/8 ports, 9/10
//! timestamp seconds/microseconds, 11 protocol type (1 = SIP), 12 capture agent id, 14
//! authentication key, 15 payload, 17 correlation id.
//!
//! Sending never blocks the core: the socket is non-blocking and a datagram the kernel does not
//! take at once is dropped and counted (a collector that is down costs an ICMP error, counted
//! the same way).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::IntCounter;
use signaling::Transport;

/// One captured message.
pub struct Captured<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    pub time: SystemTime,
    pub correlation: &'a [u8],
    pub payload: &'a [u8],
    /// HEP's protocol type of the payload ([`PROTO_SIP`], [`PROTO_RTCP`]).
    pub proto_type: u8,
}

/// Chunk type ids (vendor 0, generic).
mod chunk {
    pub const FAMILY: u16 = 1;
    pub const PROTO: u16 = 2;
    pub const SRC_V4: u16 = 3;
    pub const DST_V4: u16 = 4;
    pub const SRC_V6: u16 = 5;
    pub const DST_V6: u16 = 6;
    pub const SRC_PORT: u16 = 7;
    pub const DST_PORT: u16 = 8;
    pub const TIME_SEC: u16 = 9;
    pub const TIME_USEC: u16 = 10;
    pub const PROTO_TYPE: u16 = 11;
    pub const AGENT_ID: u16 = 12;
    pub const AUTH_KEY: u16 = 14;
    pub const PAYLOAD: u16 = 15;
    pub const CORRELATION: u16 = 17;
}

/// HEP's protocol type for SIP.
pub const PROTO_SIP: u8 = 1;
/// HEP's protocol type for RTCP (the quality reports of [`quality`], JSON as collectors read).
pub const PROTO_RTCP: u8 = 5;

pub mod quality;

fn push_chunk(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    // Values are bounded by the caller (a SIP message is at most 65,535 bytes minus headers).
    let len = (value.len() + 6).min(usize::from(u16::MAX)) as u16;
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&value[..usize::from(len) - 6]);
}

/// Room HEP's own chunks may take besides the payload and correlation id.
const HEADROOM: usize = 128;

/// The HEP3 datagram for `c`, or `None` when it would not fit in one (a message near 64 KiB).
pub fn encode(c: &Captured<'_>, agent_id: u32, password: Option<&[u8]>) -> Option<Vec<u8>> {
    let pw = password.unwrap_or_default();
    let total = HEADROOM + pw.len() + c.correlation.len() + c.payload.len();
    if total > usize::from(u16::MAX) || c.correlation.len() > 1024 {
        return None;
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"HEP3\0\0");
    let (family, src, dst) = match (c.src.ip(), c.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (2u8, s.octets().to_vec(), d.octets().to_vec()),
        (s, d) => (10u8, v6(s).to_vec(), v6(d).to_vec()),
    };
    push_chunk(&mut out, chunk::FAMILY, &[family]);
    let proto = if c.transport == Transport::Udp { 17 } else { 6 };
    push_chunk(&mut out, chunk::PROTO, &[proto]);
    let (s_kind, d_kind) = if family == 2 {
        (chunk::SRC_V4, chunk::DST_V4)
    } else {
        (chunk::SRC_V6, chunk::DST_V6)
    };
    push_chunk(&mut out, s_kind, &src);
    push_chunk(&mut out, d_kind, &dst);
    push_chunk(&mut out, chunk::SRC_PORT, &c.src.port().to_be_bytes());
    push_chunk(&mut out, chunk::DST_PORT, &c.dst.port().to_be_bytes());
    let since = c.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = u32::try_from(since.as_secs()).unwrap_or(u32::MAX);
    push_chunk(&mut out, chunk::TIME_SEC, &secs.to_be_bytes());
    push_chunk(
        &mut out,
        chunk::TIME_USEC,
        &since.subsec_micros().to_be_bytes(),
    );
    push_chunk(&mut out, chunk::PROTO_TYPE, &[c.proto_type]);
    push_chunk(&mut out, chunk::AGENT_ID, &agent_id.to_be_bytes());
    if !pw.is_empty() {
        push_chunk(&mut out, chunk::AUTH_KEY, pw);
    }
    if !c.correlation.is_empty() {
        push_chunk(&mut out, chunk::CORRELATION, c.correlation);
    }
    push_chunk(&mut out, chunk::PAYLOAD, c.payload);
    let len = out.len() as u16;
    out[4..6].copy_from_slice(&len.to_be_bytes());
    Some(out)
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The Call-ID of a raw SIP message (`Call-ID:` or the compact `i:`), from its header section.
pub fn call_id(msg: &[u8]) -> Option<&[u8]> {
    let mut rest = msg;
    // The start line first, then one header line at a time until the blank line.
    let mut first = true;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if std::mem::take(&mut first) {
            continue;
        }
        if line.is_empty() {
            return None;
        }
        // Cheap first-byte test before the name comparison: only `C`/`c`/`i`/`I` can match.
        if !matches!(line[0] | 0x20, b'c' | b'i') {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            return Some(line[colon + 1..].trim_ascii());
        }
    }
    None
}

/// The capture socket and its settings.
pub struct HepSender {
    sock: UdpSocket,
    agent_id: u32,
    password: Option<Vec<u8>>,
    sent: IntCounter,
    dropped: IntCounter,
    /// Packets encoded since the last [`HepSender::flush`] (one sendmmsg per batch of the core
    /// loop instead of one send per SIP message).
    queue: std::cell::RefCell<Vec<Vec<u8>>>,
}

/// Packets queued before a flush is forced.
const QUEUE_MAX: usize = 256;
/// Packets per sendmmsg(2).
const BATCH: usize = 64;

impl HepSender {
    /// A non-blocking socket towards `cfg.hep`.
    pub fn new(
        cfg: &config::Capture,
        sent: IntCounter,
        dropped: IntCounter,
    ) -> std::io::Result<HepSender> {
        let bind: SocketAddr = if cfg.hep.is_ipv4() {
            "0.0.0.0:0".parse().expect("an address")
        } else {
            "[::]:0".parse().expect("an address")
        };
        let sock = UdpSocket::bind(bind)?;
        // Connected: a collector that is down shows as refused sends (ICMP), counted.
        sock.connect(cfg.hep)?;
        sock.set_nonblocking(true)?;
        Ok(HepSender {
            sock,
            agent_id: cfg.id,
            password: cfg.password.as_ref().map(|p| p.as_bytes().to_vec()),
            sent,
            dropped,
            queue: std::cell::RefCell::new(Vec::new()),
        })
    }

    /// Queue a copy of `c` for the next [`HepSender::flush`].
    pub fn capture(&self, c: &Captured<'_>) {
        let Some(pkt) = encode(c, self.agent_id, self.password.as_deref()) else {
            self.dropped.inc();
            return;
        };
        let full = {
            let mut q = self.queue.borrow_mut();
            q.push(pkt);
            q.len() >= QUEUE_MAX
        };
        if full {
            self.flush();
        }
    }

    /// Send what is queued, `BATCH` datagrams per sendmmsg(2) on the connected non-blocking
    /// socket (never waits: what the kernel does not take is dropped, counted).
    pub fn flush(&self) {
        let mut q = self.queue.borrow_mut();
        if q.is_empty() {
            return;
        }
        for chunk in q.chunks(BATCH) {
            let mut iovs: Vec<libc::iovec> = chunk
                .iter()
                .map(|p| libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                })
                .collect();
            // SAFETY: zeroed mmsghdr is a valid empty header (no name: the socket is connected).
            let mut hdrs: Vec<libc::mmsghdr> = (0..chunk.len())
                .map(|_| unsafe { std::mem::zeroed() })
                .collect();
            for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: `hdrs` and the iovecs and buffers they point to live across the call;
            // the count is their length.
            let n = unsafe {
                libc::sendmmsg(
                    std::os::fd::AsRawFd::as_raw_fd(&self.sock),
                    hdrs.as_mut_ptr(),
                    hdrs.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            let sent = if n < 0 { 0 } else { n as usize };
            self.sent.inc_by(sent as u64);
            self.dropped.inc_by((chunk.len() - sent) as u64);
        }
        q.clear();
    }
}

/// Capture as the core task uses it: the sender and the addresses trunkline listens on.
pub struct Hep {
    pub sender: HepSender,
    /// Per family (IPv4, IPv6) and transport (UDP, TCP, TLS): the first listener's address, as
    /// each packet's local end.
    pub locals: [[Option<SocketAddr>; 3]; 2],
}

impl Hep {
    /// Our end of a message exchanged with `peer`: a listener of its family and transport.
    fn local(&self, t: Transport, peer: SocketAddr) -> SocketAddr {
        let f = usize::from(peer.is_ipv6());
        self.locals[f][t as usize]
            .or(self.locals[f][0])
            .or(self.locals[1 - f][t as usize])
            .or(self.locals[1 - f][0])
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// A message received from `from` (after screening).
    pub fn received(&self, core: &signaling::b2bua::B2bua, data: &[u8], from: signaling::Peer) {
        self.capture(
            core,
            data,
            from.addr,
            self.local(from.transport, from.addr),
            from.transport,
        );
    }

    /// A message sent to `to`.
    pub fn sent(&self, core: &signaling::b2bua::B2bua, data: &[u8], to: signaling::Peer) {
        self.capture(
            core,
            data,
            self.local(to.transport, to.addr),
            to.addr,
            to.transport,
        );
    }

    fn capture(
        &self,
        core: &signaling::b2bua::B2bua,
        data: &[u8],
        src: SocketAddr,
        dst: SocketAddr,
        transport: Transport,
    ) {
        let cid = call_id(data).unwrap_or_default();
        let correlation = std::str::from_utf8(cid)
            .ok()
            .and_then(|c| core.correlation_id(c))
            .map_or(cid, str::as_bytes);
        self.sender.capture(&Captured {
            src,
            dst,
            transport,
            time: SystemTime::now(),
            correlation,
            payload: data,
            proto_type: PROTO_SIP,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A HEP3 decoder as a collector would read it: (vendor, type) -> value.
    fn decode(p: &[u8]) -> Vec<((u16, u16), Vec<u8>)> {
        assert_eq!(&p[..4], b"HEP3");
        assert_eq!(usize::from(u16::from_be_bytes([p[4], p[5]])), p.len());
        let mut out = Vec::new();
        let mut i = 6;
        while i + 6 <= p.len() {
            let v = u16::from_be_bytes([p[i], p[i + 1]]);
            let t = u16::from_be_bytes([p[i + 2], p[i + 3]]);
            let l = usize::from(u16::from_be_bytes([p[i + 4], p[i + 5]]));
            assert!(l >= 6 && i + l <= p.len());
            out.push(((v, t), p[i + 6..i + l].to_vec()));
            i += l;
        }
        assert_eq!(i, p.len());
        out
    }

    fn get(ch: &[((u16, u16), Vec<u8>)], t: u16) -> &[u8] {
        &ch.iter().find(|(k, _)| *k == (0, t)).expect("chunk").1
    }

    #[test]
    fn encodes_the_chunks_a_collector_reads() {
        let msg = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: abc@h\r\n\r\n";
        let c = Captured {
            src: "10.0.0.1:5060".parse().unwrap(),
            dst: "10.0.0.2:5080".parse().unwrap(),
            transport: Transport::Udp,
            time: UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456),
            correlation: b"leg-a-call-id",
            payload: msg,
            proto_type: PROTO_SIP,
        };
        let p = encode(&c, 2001, Some(b"pw")).expect("fits");
        let ch = decode(&p);
        assert_eq!(get(&ch, 1), [2]);
        assert_eq!(get(&ch, 2), [17]);
        assert_eq!(get(&ch, 3), [10, 0, 0, 1]);
        assert_eq!(get(&ch, 4), [10, 0, 0, 2]);
        assert_eq!(get(&ch, 7), 5060u16.to_be_bytes());
        assert_eq!(get(&ch, 8), 5080u16.to_be_bytes());
        assert_eq!(get(&ch, 9), 1_700_000_000u32.to_be_bytes());
        assert_eq!(get(&ch, 10), 123_456u32.to_be_bytes());
        assert_eq!(get(&ch, 11), [1]);
        assert_eq!(get(&ch, 12), 2001u32.to_be_bytes());
        assert_eq!(get(&ch, 14), b"pw");
        assert_eq!(get(&ch, 17), b"leg-a-call-id");
        assert_eq!(get(&ch, 15), msg);
        // IPv6 and TCP.
        let c6 = Captured {
            src: "[2001:db8::1]:5060".parse().unwrap(),
            dst: "10.0.0.2:5080".parse().unwrap(),
            transport: Transport::Tcp,
            ..c
        };
        let ch = decode(&encode(&c6, 1, None).unwrap());
        assert_eq!(get(&ch, 1), [10]);
        assert_eq!(get(&ch, 2), [6]);
        assert_eq!(get(&ch, 5).len(), 16);
        assert!(
            ch.iter().all(|(k, _)| *k != (0, 14)),
            "no key without a password"
        );
        // Too big for one datagram: refused, not truncated.
        let big = vec![b'x'; 70_000];
        assert!(encode(&Captured { payload: &big, ..c }, 1, None).is_none());
    }

    #[test]
    fn call_id_is_found_in_long_and_compact_form() {
        assert_eq!(
            call_id(b"INVITE sip:a SIP/2.0\r\nVia: x\r\nCall-ID:  abc@h \r\n\r\nbody Call-ID: no"),
            Some(&b"abc@h"[..])
        );
        assert_eq!(
            call_id(b"SIP/2.0 200 OK\r\ni: q1\r\n\r\n"),
            Some(&b"q1"[..])
        );
        assert_eq!(call_id(b"SIP/2.0 200 OK\r\n\r\nCall-ID: body"), None);
        assert_eq!(call_id(b""), None);
    }
}
