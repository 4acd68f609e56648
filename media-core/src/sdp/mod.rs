//! SDP parsing and rewriting for the media anchor.
//!
//! Implements the parts of SDP (RFC 8866, which obsoletes RFC 4566) and of the offer/answer model
//! (RFC 3264) that an RTP relay needs: read every media description, then produce a new body in
//! which every address and port that media would be sent to is the relay's.
//!
//! # Model
//!
//! RFC 8866 §5: "An SDP description consists of a session-level section followed by zero or more
//! media-level sections. The session-level part starts with a "v=" line and continues to the first
//! media-level section. Each media-level section starts with an "m=" line". [`Sdp::parse`] keeps
//! every line, in order, in exactly that split, so a rewrite changes only the lines it must and
//! passes everything else through untouched.
//!
//! # What a rewrite does ([`Sdp::rewrite`])
//!
//! * `o=` (RFC 8866 §5.2): the unicast address becomes the relay's. With an [`OriginState`], the
//!   sess-id is the state's and the sess-version follows RFC 3264 §8: "the version in the origin
//!   field MUST increment by one from the previous SDP ... If [the SDP is] unchanged, the version
//!   MUST NOT change" (the comparison is made on the rewritten output, which is what the peer sees).
//! * `c=` (RFC 8866 §5.7), session and media level: `IN IP4 <relay>` or `IN IP6 <relay>`.
//! * `m=` (RFC 8866 §5.14): the port becomes the relay port given for that m-line; a port of 0
//!   stays 0 (RFC 3264 §6: a rejected stream). A `/<number of ports>` suffix is dropped: the relay
//!   opens one RTP port (and RTCP port + 1) per m-line.
//! * `a=rtcp:` (RFC 3605 §2.1, `a=rtcp:<port> [<nettype> <addrtype> <address>]`): rewritten to the
//!   relay port + 1 and the relay address (or to the relay port itself when `a=rtcp-mux`, RFC 5761
//!   §5.1.3, is present and the original RTCP port equalled the RTP port). Dropped on rejected
//!   streams.
//! * ICE (RFC 8839 §5): `a=candidate`, `a=remote-candidates`, `a=end-of-candidates`,
//!   `a=ice-ufrag`, `a=ice-pwd`, `a=ice-options`, `a=ice-lite`, `a=ice-mismatch`,
//!   `a=ice-pacing` are removed: the relay is the only transport address the peer may use.
//! * Every other line is kept, in its order. Output lines end with CRLF (RFC 8866 §5: "The sequence
//!   CRLF ... is used to end a line"); LF-only input is accepted.
//!
//! # Hold
//!
//! RFC 3264 §8.4 puts a stream on hold with `a=sendonly` (or `a=inactive`); the older RFC 2543 way
//! is a connection address of `0.0.0.0`. Direction attributes pass through unchanged. A stream whose
//! effective connection address is unspecified (`0.0.0.0`, or `::`) is converted to the RFC 3264
//! form: the `c=` carries the relay address like any other and the stream's direction is reduced by
//! what the holder said it will not do, receive: `sendrecv` becomes `sendonly`, `recvonly` becomes
//! `inactive` (written as a media-level attribute, which overrides a session-level one, RFC 8866
//! §6.7). So the peer learns "do not send to me" without seeing `0.0.0.0`, and the control side
//! ([`Media::rtp_addr`] returns `None`) never points relay output at 0.0.0.0.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Largest SDP body accepted (bytes). Bodies above it are refused, not truncated.
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Largest number of lines accepted.
pub const MAX_SDP_LINES: usize = 2048;

/// Why an SDP body could not be parsed or rewritten. `line` numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpError {
    /// The body is larger than [`MAX_SDP_LEN`] or has more than [`MAX_SDP_LINES`] lines.
    TooLarge,
    /// The body is empty or does not start with `v=0` (RFC 8866 §5.1).
    NotSdp,
    /// A line is not `<type>=<value>` or an interpreted line has a bad value.
    Malformed { line: usize, what: &'static str },
    /// No `o=` line in the session part (RFC 8866 §5.2: it is mandatory).
    MissingOrigin,
    /// The rewrite was given a number of ports different from the number of m-lines.
    PortCount { media: usize, ports: usize },
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::TooLarge => f.write_str("SDP body too large"),
            SdpError::NotSdp => f.write_str("not an SDP body (no v=0 first line)"),
            SdpError::Malformed { line, what } => write!(f, "malformed SDP line {line}: {what}"),
            SdpError::MissingOrigin => f.write_str("SDP has no o= line"),
            SdpError::PortCount { media, ports } => {
                write!(
                    f,
                    "SDP has {media} m-lines but {ports} relay ports were given"
                )
            }
        }
    }
}
impl std::error::Error for SdpError {}

/// Media direction attribute (RFC 3264 §5.1, RFC 8866 §6.7). Absent means `sendrecv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The attribute name (`sendrecv`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attr(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The direction once the holder's "I do not receive" (RFC 2543 `c=0.0.0.0`) is applied.
    pub fn without_receive(self) -> Direction {
        match self {
            Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
            Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
        }
    }

    /// True when the sender of this SDP wants to receive media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// A connection address from `c=` or `a=rtcp:` (RFC 8866 §5.7 allows a FQDN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Ip(IpAddr),
    /// A host name: the relay cannot use it without a resolver.
    Name(String),
}

impl Address {
    /// The IP address, if this is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Address::Ip(ip) => Some(*ip),
            Address::Name(_) => None,
        }
    }

    /// `0.0.0.0` or `::`: the RFC 2543 hold address.
    pub fn is_unspecified(&self) -> bool {
        matches!(self, Address::Ip(ip) if ip.is_unspecified())
    }
}

/// `a=rtcp:` (RFC 3605 §2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtcpAttr {
    pub port: u16,
    pub addr: Option<Address>,
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`
/// (RFC 8866 §6.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub params: Option<String>,
}

fn parse_rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.trim().split_once(' ')?;
    let payload_type = pt.parse::<u8>().ok().filter(|p| *p < 128)?;
    let mut it = rest.trim().splitn(3, '/');
    let encoding = it.next().filter(|e| !e.is_empty())?.to_string();
    let clock_rate = it.next()?.parse::<u32>().ok().filter(|c| *c > 0)?;
    let params = it.next().map(str::to_string);
    Some(RtpMap {
        payload_type,
        encoding,
        clock_rate,
        params,
    })
}

/// An attribute of the original formats that [`FormatsOut`] replaces.
fn drops(f: &FormatsOut, name: &str, value: Option<&str>) -> bool {
    match name {
        "rtpmap" | "fmtp" | "ptime" | "maxptime" => true,
        "rtcp-fb" => value
            .and_then(|v| v.split_whitespace().next())
            .and_then(|pt| pt.parse::<u8>().ok())
            .is_none_or(|pt| !f.formats.contains(&pt)),
        _ => false,
    }
}

fn parse_fmtp(v: &str) -> Option<(u8, String)> {
    let (pt, rest) = v.trim().split_once(' ')?;
    let pt = pt.parse::<u8>().ok().filter(|p| *p < 128)?;
    Some((pt, rest.trim().to_string()))
}

/// The most `a=crypto` lines read from one m-line (RFC 4568 offers list a few suites; a
/// flood of them is ignored past this).
pub const MAX_CRYPTO_LINES: usize = 16;

/// The payload formats an m-line leaves [`Sdp::rewrite_with`] with (codec policy and
/// transcoding): the m-line lists exactly `formats`, its own `a=rtpmap`, `a=fmtp`, `a=ptime`
/// and `a=maxptime` lines are dropped (and `a=rtcp-fb` of other formats), and `attrs` (values
/// after `a=`) end the section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormatsOut {
    pub formats: Vec<u8>,
    pub attrs: Vec<String>,
}

/// The most `a=fmtp` lines read from one m-line.
pub const MAX_FMTP_LINES: usize = 32;

/// How one m-line leaves [`Sdp::rewrite_with`]: with `replace`, its transport becomes `proto`
/// and its `a=crypto` lines are exactly `crypto` (values after `crypto:`); with `formats`, its
/// payload formats are those (see [`FormatsOut`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamOut {
    pub replace: bool,
    pub proto: String,
    pub crypto: Vec<String>,
    /// Not relayed: the m-line keeps its port and its connection address (a TCP stream passed
    /// through untouched).
    pub keep: bool,
    pub formats: Option<FormatsOut>,
}

/// What the relay needs to know about one m-line, with session-level defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, `application`, ...
    pub kind: String,
    pub port: u16,
    /// The `/<number of ports>` of the m-line, if given.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVPF`, ...
    pub proto: String,
    pub formats: Vec<String>,
    /// Effective connection address: the media-level `c=` or else the session-level one.
    pub connection: Option<Address>,
    pub rtcp: Option<RtcpAttr>,
    /// `a=rtcp-mux` (RFC 5761 §5.1.1).
    pub rtcp_mux: bool,
    /// Effective direction: media-level attribute, else session-level, else `sendrecv`.
    pub direction: Direction,
    /// The m-line carried ICE attributes (media- or session-level).
    pub ice: bool,
    /// Well-formed `a=rtpmap:` attributes, in order (malformed ones are ignored, not fatal).
    pub rtpmaps: Vec<RtpMap>,
    /// The values of its `a=crypto:` attributes (RFC 4568), in order, at most
    /// [`MAX_CRYPTO_LINES`] (the rest are ignored).
    pub crypto: Vec<String>,
    /// `a=fmtp:<pt> <parameters>` (RFC 8866 §6.15), at most [`MAX_FMTP_LINES`].
    pub fmtps: Vec<(u8, String)>,
    /// `a=ptime` in milliseconds (RFC 8866 §6.4), when given and sane (1..=1000).
    pub ptime: Option<u16>,
    own_connection: bool,
    own_direction: bool,
}

impl Media {
    /// RFC 3264 §6: "A port number of zero in the answer (or offer) rejects the stream".
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// Carried over TCP (`TCP/MSRP`, `TCP/TLS/MSRP`, `TCP/BFCP`, `TCP/RTP/AVP`, ...: RFC 4145,
    /// RFC 4975): a UDP relay port can never carry it.
    pub fn is_tcp(&self) -> bool {
        self.proto
            .get(..3)
            .is_some_and(|p| p.eq_ignore_ascii_case("TCP"))
    }

    /// The stream is on hold the RFC 2543 way (connection address 0.0.0.0 or ::).
    pub fn is_hold_address(&self) -> bool {
        !self.is_rejected()
            && self
                .connection
                .as_ref()
                .is_some_and(Address::is_unspecified)
    }

    /// Where the sender of this SDP wants RTP: `None` for a rejected stream, a host-name address,
    /// no address at all, or the unspecified (hold) address.
    pub fn rtp_addr(&self) -> Option<SocketAddr> {
        if self.is_rejected() {
            return None;
        }
        let ip = self.connection.as_ref()?.ip()?;
        if ip.is_unspecified() {
            return None;
        }
        Some(SocketAddr::new(ip, self.port))
    }

    /// (payload type, clock rate) of every `a=rtpmap:`, for the data plane's jitter computation.
    pub fn clock_rates(&self) -> Vec<(u8, u32)> {
        self.rtpmaps
            .iter()
            .map(|r| (r.payload_type, r.clock_rate))
            .collect()
    }

    /// Where the sender of this SDP wants RTCP: `a=rtcp:` port (and address when given, RFC 3605
    /// §2.1), else RTP port + 1 (RFC 3550 §11); with `a=rtcp-mux` the RTP address (RFC 5761 §5.1.3).
    pub fn rtcp_addr(&self) -> Option<SocketAddr> {
        let rtp = self.rtp_addr()?;
        if self.rtcp_mux {
            return Some(rtp);
        }
        match &self.rtcp {
            Some(r) => {
                let ip = match &r.addr {
                    Some(a) => a.ip().filter(|ip| !ip.is_unspecified())?,
                    None => rtp.ip(),
                };
                Some(SocketAddr::new(ip, r.port))
            }
            None => Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?)),
        }
    }
}

/// One SDP line without its line ending: `raw[0]` is the type letter, `raw[1]` is `=`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    raw: Vec<u8>,
}

impl Line {
    fn kind(&self) -> u8 {
        self.raw.first().copied().unwrap_or(0)
    }
    fn value_bytes(&self) -> &[u8] {
        self.raw.get(2..).unwrap_or(&[])
    }
    fn value(&self) -> Option<&str> {
        std::str::from_utf8(self.value_bytes()).ok()
    }
    /// For an `a=` line: (name, value after ':').
    fn attr(&self) -> Option<(&str, Option<&str>)> {
        if self.kind() != b'a' {
            return None;
        }
        let v = self.value()?;
        Some(match v.split_once(':') {
            Some((n, rest)) => (n, Some(rest)),
            None => (v, None),
        })
    }
}

/// Attributes removed by a rewrite (RFC 8839 §5).
fn is_ice_attr(name: &str) -> bool {
    matches!(
        name,
        "candidate"
            | "remote-candidates"
            | "end-of-candidates"
            | "ice-ufrag"
            | "ice-pwd"
            | "ice-options"
            | "ice-lite"
            | "ice-mismatch"
            | "ice-pacing"
    )
}

/// A parsed SDP body: every line kept, plus what was read from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sdp {
    session: Vec<Line>,
    sections: Vec<Vec<Line>>,
    media: Vec<Media>,
    origin: Origin,
    session_connection: Option<Address>,
    session_direction: Option<Direction>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    username: String,
    sess_id: String,
    sess_version: String,
}

fn malformed(line: usize, what: &'static str) -> SdpError {
    SdpError::Malformed { line, what }
}

/// `<nettype> <addrtype> <connection-address>` (RFC 8866 §5.7); a multicast `/ttl[/n]` is cut.
fn parse_conn(v: &str, line: usize) -> Result<Address, SdpError> {
    let mut it = v.split_ascii_whitespace();
    let (Some(net), Some(at), Some(addr), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(malformed(line, "c= needs <nettype> <addrtype> <address>"));
    };
    if net != "IN" {
        return Err(malformed(line, "c= nettype is not IN"));
    }
    parse_addr(at, addr, line)
}

fn parse_addr(addrtype: &str, addr: &str, line: usize) -> Result<Address, SdpError> {
    let host = addr.split('/').next().unwrap_or(addr);
    // RFC 8866 §5.7 writes an IPv6 address without brackets, but some senders (SIPp's `o=`
    // among them) bracket it as in a SIP URI: read `[2001:db8::1]` as the address it names.
    let host = match (
        addrtype,
        host.strip_prefix('[').and_then(|h| h.strip_suffix(']')),
    ) {
        ("IP6", Some(inner)) if inner.parse::<std::net::Ipv6Addr>().is_ok() => inner,
        _ => host,
    };
    match (addrtype, host.parse::<IpAddr>()) {
        ("IP4", Ok(ip @ IpAddr::V4(_))) | ("IP6", Ok(ip @ IpAddr::V6(_))) => Ok(Address::Ip(ip)),
        ("IP4" | "IP6", Ok(_)) => Err(malformed(line, "address does not match its addrtype")),
        ("IP4" | "IP6", Err(_)) => {
            let ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if ok {
                Ok(Address::Name(host.to_string()))
            } else {
                Err(malformed(line, "bad connection address"))
            }
        }
        _ => Err(malformed(line, "addrtype is not IP4 or IP6")),
    }
}

fn parse_port(s: &str, line: usize) -> Result<u16, SdpError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(line, "bad port"));
    }
    s.parse::<u16>()
        .map_err(|_| malformed(line, "port out of range"))
}

/// Parsed `m=` line: kind, port, port count, proto, formats, and the text after the port token.
struct MLine<'a> {
    kind: &'a str,
    port: u16,
    port_count: Option<u16>,
    proto: &'a str,
    formats: Vec<String>,
    after_port: &'a str,
}

/// `m=<media> <port>[/<number of ports>] <proto> <fmt> ...` (RFC 8866 §5.14).
fn parse_mline(v: &str, line: usize) -> Result<MLine<'_>, SdpError> {
    let (kind, rest) = v
        .split_once(' ')
        .ok_or(malformed(line, "m= needs <media> <port> <proto> <fmt>"))?;
    // A rejected stream (port 0) is all but ignored (RFC 3264 §6): it may come without its
    // proto or formats (`m=application 0`, `m=application 0 *`) and still be answered.
    let (port_tok, after_port) = match rest.split_once(' ') {
        Some(x) => x,
        None if rest.trim() == "0" => (rest.trim(), ""),
        None => return Err(malformed(line, "m= needs <media> <port> <proto> <fmt>")),
    };
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed(line, "bad media type"));
    }
    let (port, port_count) = match port_tok.split_once('/') {
        Some((p, n)) => (parse_port(p, line)?, Some(parse_port(n, line)?)),
        None => (parse_port(port_tok, line)?, None),
    };
    let mut fields = after_port.split_ascii_whitespace();
    let rejected = port == 0;
    let proto = match fields.next() {
        Some(p) => p,
        None if rejected => "",
        None => return Err(malformed(line, "m= has no proto")),
    };
    let formats: Vec<String> = fields.map(str::to_string).collect();
    if formats.is_empty() && !rejected {
        return Err(malformed(line, "m= has no formats"));
    }
    Ok(MLine {
        kind,
        port,
        port_count,
        proto,
        formats,
        after_port,
    })
}

fn parse_rtcp(v: &str, line: usize) -> Result<RtcpAttr, SdpError> {
    let mut it = v.split_ascii_whitespace();
    let port = parse_port(it.next().unwrap_or(""), line)?;
    match (it.next(), it.next(), it.next(), it.next()) {
        (None, ..) => Ok(RtcpAttr { port, addr: None }),
        (Some("IN"), Some(at), Some(addr), None) => Ok(RtcpAttr {
            port,
            addr: Some(parse_addr(at, addr, line)?),
        }),
        _ => Err(malformed(
            line,
            "a=rtcp: needs <port> [IN <addrtype> <address>]",
        )),
    }
}

impl Sdp {
    /// Parse an SDP body (CRLF or LF line endings). Never panics; rejects what it cannot read.
    pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
        if body.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLarge);
        }
        let mut lines: Vec<(usize, Line)> = Vec::new();
        for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.is_empty() {
                // Tolerate blank lines (commonly one trailing CRLF too many).
                continue;
            }
            if lines.len() >= MAX_SDP_LINES {
                return Err(SdpError::TooLarge);
            }
            let n = i + 1;
            match raw {
                [t, b'=', ..] if t.is_ascii_alphabetic() => {}
                _ => return Err(malformed(n, "not <type>=<value>")),
            }
            if raw.iter().any(|&b| b == b'\r' || b == 0) {
                return Err(malformed(n, "stray CR or NUL"));
            }
            lines.push((n, Line { raw: raw.to_vec() }));
        }
        match lines.first() {
            Some((_, l)) if l.raw == b"v=0" => {}
            _ => return Err(SdpError::NotSdp),
        }

        let mut session = Vec::new();
        let mut sections: Vec<Vec<Line>> = Vec::new();
        let mut section_nums: Vec<Vec<usize>> = Vec::new();
        for (n, l) in lines {
            if l.kind() == b'm' {
                sections.push(Vec::new());
                section_nums.push(Vec::new());
            }
            match (sections.last_mut(), section_nums.last_mut()) {
                (Some(s), Some(ns)) => {
                    s.push(l);
                    ns.push(n);
                }
                _ => session.push((n, l)),
            }
        }

        // Session level.
        let mut origin = None;
        let mut session_connection = None;
        let mut session_direction = None;
        let mut session_ice = false;
        for (n, l) in &session {
            match l.kind() {
                b'o' => {
                    let v = l.value().ok_or(malformed(*n, "o= is not UTF-8"))?;
                    let f: Vec<&str> = v.split_ascii_whitespace().collect();
                    let [user, id, ver, net, at, addr] = f.as_slice() else {
                        return Err(malformed(*n, "o= needs 6 fields"));
                    };
                    if *net != "IN" {
                        return Err(malformed(*n, "o= nettype is not IN"));
                    }
                    parse_addr(at, addr, *n)?;
                    if origin.is_some() {
                        return Err(malformed(*n, "second o= line"));
                    }
                    origin = Some(Origin {
                        username: user.to_string(),
                        sess_id: id.to_string(),
                        sess_version: ver.to_string(),
                    });
                }
                b'c' => {
                    let v = l.value().ok_or(malformed(*n, "c= is not UTF-8"))?;
                    session_connection = Some(parse_conn(v, *n)?);
                }
                b'a' => {
                    if let Some((name, _)) = l.attr() {
                        if let Some(d) = Direction::from_attr(name) {
                            session_direction = Some(d);
                        } else if is_ice_attr(name) {
                            session_ice = true;
                        }
                    }
                }
                _ => {}
            }
        }
        let origin = origin.ok_or(SdpError::MissingOrigin)?;

        // Media level.
        let mut media = Vec::with_capacity(sections.len());
        for (sec, nums) in sections.iter().zip(&section_nums) {
            let (Some(mline), Some(&mn)) = (sec.first(), nums.first()) else {
                continue;
            };
            let v = mline.value().ok_or(malformed(mn, "m= is not UTF-8"))?;
            let m = parse_mline(v, mn)?;
            let mut connection = None;
            let mut rtcp = None;
            let mut rtcp_mux = false;
            let mut direction = None;
            let mut ice = session_ice;
            let mut rtpmaps = Vec::new();
            let mut crypto = Vec::new();
            let mut fmtps = Vec::new();
            let mut ptime = None;
            for (l, &n) in sec.iter().zip(nums).skip(1) {
                match l.kind() {
                    b'c' => {
                        let v = l.value().ok_or(malformed(n, "c= is not UTF-8"))?;
                        connection = Some(parse_conn(v, n)?);
                    }
                    b'a' => match l.attr() {
                        Some(("rtcp", Some(v))) => rtcp = Some(parse_rtcp(v, n)?),
                        Some(("rtcp-mux", _)) => rtcp_mux = true,
                        Some(("rtpmap", Some(v))) => rtpmaps.extend(parse_rtpmap(v)),
                        Some(("crypto", Some(v))) if crypto.len() < MAX_CRYPTO_LINES => {
                            crypto.push(v.to_string());
                        }
                        Some(("fmtp", Some(v))) if fmtps.len() < MAX_FMTP_LINES => {
                            fmtps.extend(parse_fmtp(v));
                        }
                        Some(("ptime", Some(v))) => {
                            ptime = v
                                .trim()
                                .parse::<u16>()
                                .ok()
                                .filter(|p| (1..=1000).contains(p));
                        }
                        Some((name, _)) => {
                            if let Some(d) = Direction::from_attr(name) {
                                direction = Some(d);
                            } else if is_ice_attr(name) {
                                ice = true;
                            }
                        }
                        None => {}
                    },
                    _ => {}
                }
            }
            let own_connection = connection.is_some();
            let own_direction = direction.is_some();
            media.push(Media {
                kind: m.kind.to_string(),
                port: m.port,
                port_count: m.port_count,
                proto: m.proto.to_string(),
                formats: m.formats,
                connection: connection.or_else(|| session_connection.clone()),
                rtcp,
                rtcp_mux,
                direction: direction
                    .or(session_direction)
                    .unwrap_or(Direction::SendRecv),
                ice,
                rtpmaps,
                crypto,
                fmtps,
                ptime,
                own_connection,
                own_direction,
            });
        }

        Ok(Sdp {
            session: session.into_iter().map(|(_, l)| l).collect(),
            sections,
            media,
            origin,
            session_connection,
            session_direction,
        })
    }

    /// The m-lines, in order.
    pub fn media(&self) -> &[Media] {
        &self.media
    }

    /// The session-level `c=` address, if any.
    pub fn session_connection(&self) -> Option<&Address> {
        self.session_connection.as_ref()
    }

    /// The session-level direction attribute, if any.
    pub fn session_direction(&self) -> Option<Direction> {
        self.session_direction
    }

    /// Produce the relayed SDP: `relay_ip` everywhere an address is, `ports[i]` on m-line `i`
    /// (0 stays 0, and a `ports[i]` of 0 rejects the stream), ICE lines removed, RFC 2543 hold
    /// converted (see the module doc), CRLF line endings.
    ///
    /// With `origin`, the `o=` sess-id and sess-version are taken from (and advanced in) the state
    /// per RFC 3264 §8; without it they are kept from the input. The `o=` username is kept.
    pub fn rewrite(
        &self,
        relay_ip: IpAddr,
        ports: &[u16],
        origin: Option<&mut OriginState>,
    ) -> Result<Vec<u8>, SdpError> {
        self.rewrite_with(relay_ip, ports, origin, &[])
    }

    /// [`Sdp::rewrite`], with m-line `i`'s transport and `a=crypto` lines replaced as
    /// `streams[i]` says (a missing entry keeps them as they are).
    pub fn rewrite_with(
        &self,
        relay_ip: IpAddr,
        ports: &[u16],
        origin: Option<&mut OriginState>,
        streams: &[StreamOut],
    ) -> Result<Vec<u8>, SdpError> {
        if ports.len() != self.media.len() {
            return Err(SdpError::PortCount {
                media: self.media.len(),
                ports: ports.len(),
            });
        }
        let ip_kind = match relay_ip {
            IpAddr::V4(_) => "IP4",
            IpAddr::V6(_) => "IP6",
        };
        let conn_line = format!("c=IN {ip_kind} {relay_ip}").into_bytes();

        let mut out: Vec<Vec<u8>> = Vec::with_capacity(self.session.len() + 16);
        let mut origin_idx = None;
        for l in &self.session {
            match l.kind() {
                b'o' => {
                    origin_idx = Some(out.len());
                    out.push(Vec::new()); // filled in below
                }
                b'c' => out.push(conn_line.clone()),
                b'a' if l.attr().is_some_and(|(n, _)| is_ice_attr(n)) => {}
                _ => out.push(l.raw.clone()),
            }
        }

        for (idx, ((sec, m), &relay_port)) in
            self.sections.iter().zip(&self.media).zip(ports).enumerate()
        {
            let keep = streams.get(idx).is_some_and(|o| o.keep);
            let port = if m.is_rejected() {
                0
            } else if keep {
                m.port
            } else {
                relay_port
            };
            let over = streams.get(idx).filter(|o| o.replace);
            let fmts = streams.get(idx).and_then(|o| o.formats.as_ref());
            let hold = port != 0 && m.is_hold_address();
            let held_dir = m.direction.without_receive();
            for (i, l) in sec.iter().enumerate() {
                if i == 0 {
                    // The m-line; parse cannot fail again, but stay panic-free.
                    let v = l.value().unwrap_or("");
                    let after = parse_mline(v, 0).map(|x| x.after_port).unwrap_or("");
                    let mut after = match over {
                        // "<proto> <fmt> ...": the transport replaced, the formats kept
                        Some(o) => match after.split_once(' ') {
                            Some((_, fmts)) => format!("{} {fmts}", o.proto),
                            None => o.proto.clone(),
                        },
                        None => after.to_string(),
                    };
                    if let Some(f) = fmts.filter(|_| port != 0) {
                        let proto = after.split(' ').next().unwrap_or("").to_string();
                        after = proto;
                        for pt in &f.formats {
                            after.push_str(&format!(" {pt}"));
                        }
                    }
                    out.push(format!("m={} {} {}", m.kind, port, after).into_bytes());
                    if keep && !m.own_connection {
                        // The session's c= names the relay now: the stream keeps its own.
                        if let Some(c) = m.connection.as_ref().and_then(Address::ip) {
                            let kind = if c.is_ipv4() { "IP4" } else { "IP6" };
                            out.push(format!("c=IN {kind} {c}").into_bytes());
                        }
                    }
                    if let Some(o) = over {
                        for c in &o.crypto {
                            out.push(format!("a=crypto:{c}").into_bytes());
                        }
                    }
                    continue;
                }
                match l.kind() {
                    b'c' if keep => out.push(l.raw.clone()),
                    b'c' => out.push(conn_line.clone()),
                    b'a' if keep => out.push(l.raw.clone()),
                    b'a' => match l.attr() {
                        Some(("rtcp", Some(_))) => {
                            if port == 0 {
                                continue;
                            }
                            let muxed =
                                m.rtcp_mux && m.rtcp.as_ref().is_some_and(|r| r.port == m.port);
                            let p = if muxed { port } else { port.wrapping_add(1) };
                            out.push(format!("a=rtcp:{p} IN {ip_kind} {relay_ip}").into_bytes());
                        }
                        Some((name, _)) if is_ice_attr(name) => {}
                        // the leg's own keys replace the other leg's (never across legs)
                        Some(("crypto", _)) if over.is_some() => {}
                        // the formats are new: so are their attributes
                        Some((name, v)) if port != 0 && fmts.is_some_and(|f| drops(f, name, v)) => {
                        }
                        Some((name, _)) if hold && Direction::from_attr(name).is_some() => {
                            out.push(format!("a={}", held_dir.as_str()).into_bytes());
                        }
                        _ => out.push(l.raw.clone()),
                    },
                    _ => out.push(l.raw.clone()),
                }
            }
            if hold && !m.own_direction && held_dir != m.direction {
                out.push(format!("a={}", held_dir.as_str()).into_bytes());
            }
            if let Some(f) = fmts.filter(|_| port != 0) {
                out.extend(f.attrs.iter().map(|a| format!("a={a}").into_bytes()));
            }
        }

        let (id, version) = match origin {
            None => (
                self.origin.sess_id.clone(),
                self.origin.sess_version.clone(),
            ),
            Some(state) => {
                let mut body = Vec::new();
                for l in &out {
                    body.extend_from_slice(l);
                    body.extend_from_slice(b"\r\n");
                }
                state.observe(body);
                (state.sess_id.to_string(), state.version.to_string())
            }
        };
        let o = format!(
            "o={} {} {} IN {} {}",
            self.origin.username, id, version, ip_kind, relay_ip
        );
        if let Some(slot) = origin_idx.and_then(|i| out.get_mut(i)) {
            *slot = o.into_bytes();
        }

        let mut body = Vec::with_capacity(out.iter().map(|l| l.len() + 2).sum());
        for l in &out {
            body.extend_from_slice(l);
            body.extend_from_slice(b"\r\n");
        }
        Ok(body)
    }
}

/// The `o=` line state of one direction of a call (what the relay tells one peer), RFC 3264 §8:
/// "When issuing an offer that modifies the session, the "o=" line of the new SDP MUST be
/// identical to that in the previous SDP, except that the version in the origin field MUST
/// increment by one from the previous SDP. If the version in the origin line does not increment,
/// the SDP MUST be identical to the SDP with that version number."
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginState {
    sess_id: u64,
    version: u64,
    last: Option<Vec<u8>>,
}

impl OriginState {
    /// A fresh origin: the first SDP sent with it carries `sess_id` and `first_version`.
    pub fn new(sess_id: u64, first_version: u64) -> OriginState {
        OriginState {
            sess_id,
            version: first_version,
            last: None,
        }
    }

    pub fn sess_id(&self) -> u64 {
        self.sess_id
    }

    /// The version of the last SDP produced with this state.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The last SDP produced with it (without its o= line), what the next one is compared
    /// with.
    pub fn last(&self) -> Option<&[u8]> {
        self.last.as_deref()
    }

    /// The state another controller had (a call taken over from another node): the next SDP
    /// keeps `sess_id` and bumps `version` only when it differs from `last`.
    pub fn restore(sess_id: u64, version: u64, last: Option<Vec<u8>>) -> OriginState {
        OriginState {
            sess_id,
            version,
            last,
        }
    }

    /// Record the next SDP (everything but its o= line); bump the version when it changed.
    fn observe(&mut self, body: Vec<u8>) {
        match &self.last {
            None => {}
            Some(prev) if *prev == body => {}
            Some(_) => self.version = self.version.wrapping_add(1),
        }
        self.last = Some(body);
    }
}

#[cfg(test)]
mod tests;
