//! SIP message parsing and serialisation (RFC 3261 §7, §18.3, §25).
//!
//! ```text
//! generic-message = start-line *message-header CRLF [ message-body ]
//! Request-Line    = Method SP Request-URI SP SIP-Version CRLF
//! Status-Line     = SIP-Version SP Status-Code SP Reason-Phrase CRLF
//! message-header  = field-name *(SP / HTAB) ":" SWS field-value CRLF
//! ```
//!
//! [`parse`] takes one whole message (a UDP datagram, or one frame cut by [`frame_len`] from a
//! stream). Line endings are strictly CRLF: RFC 4475's torture tests contain no bare-LF message
//! a parser is expected to accept, so a bare CR or LF inside the header section is an error.
//! Header values are unfolded (RFC 3261 §7.3.1: "a header field value can be split over multiple
//! lines by preceding each extra line with at least one SP or horizontal tab ... any linear
//! white space ... is equivalent to a single SP") and compact names expanded with
//! [`canonical_name`]. Header values should be UTF-8 (RFC 3261 §25.1 `TEXT-UTF8`); invalid
//! sequences (ISO 8859-1 display names from legacy equipment) are replaced by U+FFFD rather than
//! refused. Serialisation replaces any CR or LF an application put into a header name or value
//! by a space, so no header can be injected.

use std::fmt;

use crate::headers::{parse_u32, CSeq};
use crate::message::{canonical_name, Header, Headers, Method, Request, Response, SipMessage};
use crate::uri::Uri;

/// A message that could not be parsed, with enough context to answer it (RFC 3261 §8.2.6:
/// a 400 copies Via, From, To, Call-ID and CSeq from the request) or to drop it (responses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// A precise human-readable reason, suitable (after sanitising) for a reason phrase.
    pub reason: String,
    /// The start line looked like a request (a response is never answered, only dropped).
    pub is_request: bool,
    /// The request method, when the request line could be read.
    pub method: Option<Method>,
    /// The headers that could be read (in order), when the header section was reached.
    pub headers: Option<Headers>,
    /// The status a UAS should answer with: 400, or 505 for an unsupported SIP version
    /// (RFC 3261 §8.2.6... §21.5.20 "505 Version Not Supported").
    pub status: u16,
}

impl ParseError {
    fn new(reason: impl Into<String>) -> Self {
        ParseError {
            reason: reason.into(),
            is_request: false,
            method: None,
            headers: None,
            status: 400,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed SIP {}: {}",
            if self.is_request {
                "request"
            } else {
                "message"
            },
            self.reason
        )
    }
}

impl std::error::Error for ParseError {}

/// One framed unit from a stream transport (see [`frame_len`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Bytes to take off the front of the buffer.
    pub len: usize,
    /// The frame is an RFC 5626 §3.5.1 keep-alive ping (`CRLFCRLF`): answer it with a single
    /// CRLF pong, do not parse it.
    pub keepalive: bool,
}

/// Upper bound on the header section looked for in a stream before giving up. [`frame_len`]
/// rescans the buffer on each call, so this also bounds the work a peer trickling a header
/// section byte by byte can cause (about 32 KiB x 32 KiB / 2 byte comparisons, done by memchr).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Upper bound on a body announced by Content-Length on a stream: a bigger one is refused at
/// once instead of buffering towards it.
pub const MAX_STREAM_BODY: usize = 1024 * 1024;

fn find_crlfcrlf(b: &[u8]) -> Option<usize> {
    // One searcher for the process (`memmem::find` builds one per call: measurable per message).
    static END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    END.find(b)
}

fn skip_leading_crlf(b: &[u8]) -> usize {
    let mut i = 0;
    while b.get(i) == Some(&b'\r') && b.get(i + 1) == Some(&b'\n') {
        i += 2;
    }
    i
}

/// A datagram made only of CR/LF: an RFC 5626 keep-alive (or stray line ends), not a message.
pub fn is_keepalive(buf: &[u8]) -> bool {
    !buf.is_empty() && buf.iter().all(|&b| b == b'\r' || b == b'\n')
}

/// Frame one message on a stream transport (RFC 3261 §18.3: "In the case of stream-oriented
/// transports such as TCP, the Content-Length header field indicates the size of the body. All
/// stream-oriented transports MUST use Content-Length").
///
/// * `Ok(None)`: need more bytes.
/// * `Ok(Some(Frame { keepalive: true, len: 4 }))`: a CRLFCRLF ping (RFC 5626 §3.5.1).
/// * `Ok(Some(Frame { keepalive: false, len }))`: the first `len` bytes hold a whole message
///   (including any single leading CRLF, which [`parse`] skips per RFC 3261 §7.5: "implementations
///   processing SIP messages over stream-oriented transports MUST ignore any CRLF appearing before
///   the start-line").
/// * `Err(_)`: the stream cannot be framed (no or bad Content-Length, header section too big);
///   the connection should be closed.
pub fn frame_len(buf: &[u8]) -> Result<Option<Frame>, ParseError> {
    if buf.starts_with(b"\r\n\r\n") {
        return Ok(Some(Frame {
            len: 4,
            keepalive: true,
        }));
    }
    let skip = skip_leading_crlf(buf);
    let rest = &buf[skip..];
    if rest.is_empty() || rest == b"\r" {
        return Ok(None);
    }
    let Some(end) = find_crlfcrlf(rest) else {
        if rest.len() > MAX_HEADER_BYTES {
            return Err(ParseError::new("header section too large"));
        }
        return Ok(None);
    };
    let head = &rest[..end];
    let mut cl: Option<usize> = None;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = trim_ws(&line[..colon]);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let v = std::str::from_utf8(&line[colon + 1..])
                .ok()
                .and_then(parse_u32)
                .ok_or_else(|| ParseError::new("bad Content-Length"))?;
            let v = v as usize;
            if cl.is_some_and(|c| c != v) {
                return Err(ParseError::new("conflicting Content-Length headers"));
            }
            cl = Some(v);
        }
    }
    let Some(cl) = cl else {
        return Err(ParseError::new(
            "Content-Length is mandatory on stream transports (RFC 3261 §18.3)",
        ));
    };
    if cl > MAX_STREAM_BODY {
        return Err(ParseError::new(format!(
            "Content-Length {cl} exceeds the {MAX_STREAM_BODY}-byte limit"
        )));
    }
    let total = skip + end + 4 + cl;
    if buf.len() >= total {
        Ok(Some(Frame {
            len: total,
            keepalive: false,
        }))
    } else {
        Ok(None)
    }
}

fn trim_ws(mut b: &[u8]) -> &[u8] {
    while let [f, r @ ..] = b {
        if *f == b' ' || *f == b'\t' {
            b = r;
        } else {
            break;
        }
    }
    while let [r @ .., l] = b {
        if *l == b' ' || *l == b'\t' {
            b = r;
        } else {
            break;
        }
    }
    b
}

use crate::headers::is_token_char;

enum StartLine {
    Request { method: Method, uri: String },
    Response { status: u16, reason: String },
}

/// `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT`; only 2.0 is supported (505 otherwise).
fn check_version(v: &[u8]) -> Result<(), (u16, String)> {
    if v == b"SIP/2.0" {
        return Ok(());
    }
    let ok_shape = v.len() > 4
        && v[..4].eq_ignore_ascii_case(b"SIP/")
        && match v[4..].iter().position(|&b| b == b'.') {
            Some(dot) => {
                let (a, b) = (&v[4..4 + dot], &v[5 + dot..]);
                !a.is_empty()
                    && !b.is_empty()
                    && a.iter().all(u8::is_ascii_digit)
                    && b.iter().all(u8::is_ascii_digit)
            }
            None => false,
        };
    if !ok_shape {
        return Err((400, "malformed SIP-Version".into()));
    }
    if v[4..] == *b"2.0" {
        return Ok(());
    }
    Err((505, "SIP version not supported".into()))
}

/// Parse the start line. Errors carry the status to answer and whether it was a request.
fn parse_start_line(line: &[u8]) -> Result<StartLine, (u16, String, bool, Option<Method>)> {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let bad = |s: &str| (400, s.to_string(), false, None);
        let Some(sp) = line.iter().position(|&b| b == b' ') else {
            return Err(bad("status line without status code"));
        };
        check_version(&line[..sp]).map_err(|(_, r)| bad(&r))?;
        let rest = &line[sp + 1..];
        if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
            return Err(bad("status code is not 3 digits"));
        }
        let reason = match rest.get(3) {
            None => &[][..],
            Some(b' ') => &rest[4..],
            Some(_) => return Err(bad("status code is not 3 digits")),
        };
        let status = u16::from(rest[0] - b'0') * 100
            + u16::from(rest[1] - b'0') * 10
            + u16::from(rest[2] - b'0');
        // Status-Code is 3DIGIT; RFC 3261 §21 defines the classes 1xx-6xx.
        if !(100..=699).contains(&status) {
            return Err(bad("status code out of range 100-699"));
        }
        // Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
        let reason = std::str::from_utf8(reason).map_err(|_| bad("reason phrase is not UTF-8"))?;
        if reason.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(bad("control character in reason phrase"));
        }
        return Ok(StartLine::Response {
            status,
            reason: reason.to_string(),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version CRLF (single SPs, RFC 4475 §3.1.2.8-9)
    let Some(sp1) = line.iter().position(|&b| b == b' ') else {
        return Err((400, "request line without Request-URI".into(), true, None));
    };
    let m = &line[..sp1];
    if m.is_empty() || !m.iter().all(|&b| is_token_char(b)) {
        return Err((400, "method is not a token".into(), true, None));
    }
    // Token characters are ASCII, so this cannot fail.
    let method = Method::from_token(std::str::from_utf8(m).unwrap_or_default());
    let bad = |s: &str| (400, s.to_string(), true, Some(method.clone()));
    let rest = &line[sp1 + 1..];
    let Some(sp2) = rest.iter().position(|&b| b == b' ') else {
        return Err(bad("request line without SIP-Version"));
    };
    let uri = &rest[..sp2];
    let ver = &rest[sp2 + 1..];
    if uri.is_empty() {
        return Err(bad("empty Request-URI (extra whitespace in request line?)"));
    }
    if ver.iter().any(|&b| b == b' ' || b == b'\t') {
        return Err(bad("extra whitespace in request line"));
    }
    check_version(ver).map_err(|(st, r)| (st, r, true, Some(method.clone())))?;
    let uri = std::str::from_utf8(uri).map_err(|_| bad("Request-URI is not ASCII"))?;
    if let Err(e) = Uri::validate(uri) {
        return Err(bad(&format!("bad Request-URI: {}", e.0)));
    }
    Ok(StartLine::Request {
        method,
        uri: uri.to_string(),
    })
}

/// Parse the header section (without the final CRLFCRLF). On error, returns the headers read so
/// far.
fn parse_headers(head: &[u8]) -> Result<Headers, (String, Headers)> {
    let mut headers: Vec<Header> = Vec::with_capacity(16);
    let mut i = 0;
    while i < head.len() {
        // One logical header: a line plus any continuation lines.
        let line_end = find_crlf(head, i).unwrap_or(head.len());
        let line = &head[i..line_end];
        let Some(colon) = memchr::memchr(b':', line) else {
            return Err(("header line without ':'".into(), Headers(headers)));
        };
        let name = &line[..colon];
        // field-name *(SP / HTAB) ":" — whitespace allowed before the colon (RFC 4475 wsinv).
        let name_t = trim_end_ws(name);
        if name_t.is_empty() || !name_t.iter().all(|&b| is_token_char(b)) {
            return Err(("invalid header name".into(), Headers(headers)));
        }
        // Token characters are ASCII.
        let name_s = std::str::from_utf8(name_t).unwrap_or_default();
        let first = trim_ws(&line[colon + 1..]);
        // Continuation lines.
        let mut next = line_end + 2;
        let mut folded: Option<Vec<u8>> = None;
        while next < head.len() && matches!(head[next], b' ' | b'\t') {
            let e = find_crlf(head, next).unwrap_or(head.len());
            let piece = trim_ws(&head[next..e]);
            let f = folded.get_or_insert_with(|| first.to_vec());
            if !piece.is_empty() {
                if !f.is_empty() {
                    f.push(b' ');
                }
                f.extend_from_slice(piece);
            }
            next = e + 2;
        }
        let raw: &[u8] = folded.as_deref().unwrap_or(first);
        if memchr::memchr2(b'\r', b'\n', raw).is_some() {
            return Err((
                format!("bare CR or LF in header {name_s}"),
                Headers(headers),
            ));
        }
        // RFC 3261 wants UTF-8; legacy equipment sends ISO 8859-1 display names. Refusing the
        // call over a display name helps no one, so invalid sequences become U+FFFD.
        // `from_utf8` first: its ASCII fast path is several times quicker than the lossy
        // decoder's chunk iterator, and nearly every value is ASCII.
        let value = match std::str::from_utf8(raw) {
            Ok(v) => v.to_owned(),
            Err(_) => String::from_utf8_lossy(raw).into_owned(),
        };
        headers.push(Header {
            name: canonical_name(name_s).into_owned(),
            value,
        });
        i = next;
    }
    Ok(Headers(headers))
}

fn trim_end_ws(mut b: &[u8]) -> &[u8] {
    while let [r @ .., l] = b {
        if *l == b' ' || *l == b'\t' {
            b = r;
        } else {
            break;
        }
    }
    b
}

fn find_crlf(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = memchr::memchr(b'\r', b.get(i..)?) {
        let at = i + p;
        if b.get(at + 1) == Some(&b'\n') {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// Parse one whole SIP message from a datagram (or a frame cut by [`frame_len`]).
///
/// Body framing (RFC 3261 §18.3): "If a message is received over UDP with a Content-Length
/// larger than the message body, the message is rejected (400); if the body is longer, the extra
/// bytes are discarded" (RFC 4475 dblreq). Without Content-Length on UDP the body is the rest of
/// the datagram. Several Content-Length headers that disagree are an error (RFC 4475 mcl01).
pub fn parse(buf: &[u8]) -> Result<SipMessage, ParseError> {
    let skip = skip_leading_crlf(buf);
    let buf = &buf[skip..];
    if buf.is_empty() {
        return Err(ParseError::new("empty message"));
    }
    let (head, body_start, head_err) = match find_crlfcrlf(buf) {
        Some(e) => (&buf[..e], e + 4, None),
        None => {
            // Keep going to collect headers for the error, trimming a final CRLF.
            let h = buf.strip_suffix(b"\r\n").unwrap_or(buf);
            (h, buf.len(), Some("no empty line after the header section"))
        }
    };
    let (start, hdr_bytes) = match find_crlf(head, 0) {
        Some(e) => (&head[..e], &head[e + 2..]),
        None => (head, &[][..]),
    };
    let start = parse_start_line(start);
    let (is_request, method) = match &start {
        Ok(StartLine::Request { method, .. }) => (true, Some(method.clone())),
        Ok(StartLine::Response { .. }) => (false, None),
        Err((_, _, r, m)) => (*r, m.clone()),
    };
    let fail = |reason: String, status: u16, headers: Option<Headers>| ParseError {
        reason,
        is_request,
        method: method.clone(),
        headers,
        status,
    };
    let headers = match parse_headers(hdr_bytes) {
        Ok(h) => h,
        Err((r, partial)) => return Err(fail(r, 400, Some(partial))),
    };
    let start = match start {
        Ok(s) => s,
        Err((status, r, _, _)) => return Err(fail(r, status, Some(headers))),
    };
    if let Some(r) = head_err {
        return Err(fail(r.into(), 400, Some(headers)));
    }
    // Bare CR/LF inside a line is caught by the start-line and header-value checks.
    // Content-Length (RFC 3261 §20.14).
    let cl = match content_length(&headers) {
        Ok(cl) => cl,
        Err(r) => return Err(fail(r, 400, Some(headers))),
    };
    let avail = &buf[body_start.min(buf.len())..];
    let body = match cl {
        Some(n) if n > avail.len() => {
            return Err(fail(
                format!("body shorter than Content-Length ({} < {n})", avail.len()),
                400,
                Some(headers),
            ))
        }
        Some(n) => avail[..n].to_vec(),
        None => avail.to_vec(),
    };
    // CSeq must be well-formed when present: transaction matching depends on it, and an invalid
    // response is dropped (RFC 4475 §3.1.2.4 scalar02, §3.1.2.5 scalarlg).
    let bad_cseq = headers.get_all("CSeq").find_map(|v| CSeq::parse(v).err());
    if let Some(e) = bad_cseq {
        return Err(fail(format!("bad CSeq: {e}"), 400, Some(headers)));
    }
    Ok(match start {
        StartLine::Request { method, uri } => SipMessage::Request(Request {
            method,
            uri,
            headers,
            body,
        }),
        StartLine::Response { status, reason } => SipMessage::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    })
}

fn content_length(headers: &Headers) -> Result<Option<usize>, String> {
    let mut cl: Option<usize> = None;
    for v in headers.get_all("Content-Length") {
        let Some(n) = parse_u32(v) else {
            return Err(format!("bad Content-Length {v:?}"));
        };
        if cl.is_some_and(|c| c != n as usize) {
            return Err("conflicting Content-Length headers".into());
        }
        cl = Some(n as usize);
    }
    Ok(cl)
}

/// Build the stateless 400 (or 505) answer to a request that failed to parse, when the
/// headers needed for a response are there (RFC 3261 §8.2.6.1-2: Via, From, To, Call-ID and CSeq
/// copied; a To tag added; "The reason phrase SHOULD identify the syntax problem in more detail").
/// `None` for responses, ACKs (never answered, §17.2.1) and when headers are missing.
pub fn bad_request_response(err: &ParseError) -> Option<Response> {
    if !err.is_request || err.method == Some(Method::Ack) {
        return None;
    }
    let h = err.headers.as_ref()?;
    let (from, to, call_id, cseq) = (
        h.get("From")?,
        h.get("To")?,
        h.get("Call-ID")?,
        h.get("CSeq")?,
    );
    h.get("Via")?;
    let mut out = Headers::new();
    for v in h.get_all("Via") {
        out.push("Via", v);
    }
    out.push("From", from);
    let to_v = match crate::headers::NameAddr::parse(to) {
        Ok(mut na) if na.tag().is_none() => {
            na.set_tag(&format!("{:08x}", fnv(call_id.as_bytes()) as u32));
            na.to_string()
        }
        _ => to.to_string(),
    };
    out.push("To", to_v);
    out.push("Call-ID", call_id);
    out.push("CSeq", cseq);
    let mut reason: String = err
        .reason
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(100)
        .collect();
    if reason.is_empty() {
        reason = "Bad Request".into();
    }
    let reason = if err.status == 505 {
        "Version Not Supported".to_string()
    } else {
        format!("Bad Request ({reason})")
    };
    Some(Response {
        status: err.status,
        reason,
        headers: out,
        body: Vec::new(),
    })
}

fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

// ------------------------------------------------------------------------------------- emit

fn write_headers(headers: &Headers, body: &[u8], out: &mut Vec<u8>) {
    let mut cl_written = false;
    let write_cl = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    for h in headers.iter() {
        if h.name.eq_ignore_ascii_case("Content-Length") {
            if !cl_written {
                write_cl(out);
                cl_written = true;
            }
            continue;
        }
        put_clean(out, h.name.as_bytes());
        out.extend_from_slice(b": ");
        put_clean(out, h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !cl_written {
        write_cl(out);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Append `b`, turning CR and LF into spaces (no header injection through values set by the
/// application).
fn put_clean(out: &mut Vec<u8>, b: &[u8]) {
    if memchr::memchr2(b'\r', b'\n', b).is_none() {
        out.extend_from_slice(b);
    } else {
        out.extend(
            b.iter()
                .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
        );
    }
}

fn size_hint(headers: &Headers, body: &[u8]) -> usize {
    headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 4)
        .sum::<usize>()
        + body.len()
        + 64
}

impl Request {
    /// Serialise: request line, headers in order, `Content-Length` equal to the body length
    /// (replacing any existing one, at the position of the first), empty line, body.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(size_hint(&self.headers, &self.body) + self.uri.len());
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        write_headers(&self.headers, &self.body, out);
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

impl Response {
    /// Serialise: status line, headers in order, `Content-Length` equal to the body length,
    /// empty line, body.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(size_hint(&self.headers, &self.body) + self.reason.len());
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        write_headers(&self.headers, &self.body, out);
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

impl SipMessage {
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            SipMessage::Request(r) => r.write_to(out),
            SipMessage::Response(r) => r.write_to(out),
        }
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

#[cfg(test)]
mod tests;
