//! MGCP messages (RFC 3435 section 3): commands and responses, parsed from and written to
//! datagrams. Sans-IO, no allocation beyond the message's own strings; never panics on input.
//!
//! ```text
//! command  = verb SP transaction-id SP endpoint SP "MGCP" SP version EOL *(parameter EOL)
//!            [EOL session-description]
//! response = code SP transaction-id [SP commentary] EOL *(parameter EOL) [EOL sdp]
//! ```
//!
//! Several messages may share one datagram ("piggybacking", section 3.6), separated by a line
//! holding a single period. Lines end with CRLF or LF (section 3.1: "should" be accepted).

use std::fmt;

/// The verbs of RFC 3435 section 2.3 (plus the MESG of RFC 3435's update work, as osmo-mgw
/// names it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    Epcf,
    Crcx,
    Mdcx,
    Dlcx,
    Rqnt,
    Ntfy,
    Aucx,
    Auep,
    Rsip,
    Mesg,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Epcf => "EPCF",
            Verb::Crcx => "CRCX",
            Verb::Mdcx => "MDCX",
            Verb::Dlcx => "DLCX",
            Verb::Rqnt => "RQNT",
            Verb::Ntfy => "NTFY",
            Verb::Aucx => "AUCX",
            Verb::Auep => "AUEP",
            Verb::Rsip => "RSIP",
            Verb::Mesg => "MESG",
        }
    }

    /// Verbs are case-sensitive upper case (section 3.2.1: "the verb ... is encoded as a
    /// four-letter upper-case ASCII string").
    pub fn parse(s: &str) -> Option<Verb> {
        Some(match s {
            "EPCF" => Verb::Epcf,
            "CRCX" => Verb::Crcx,
            "MDCX" => Verb::Mdcx,
            "DLCX" => Verb::Dlcx,
            "RQNT" => Verb::Rqnt,
            "NTFY" => Verb::Ntfy,
            "AUCX" => Verb::Aucx,
            "AUEP" => Verb::Auep,
            "RSIP" => Verb::Rsip,
            "MESG" => Verb::Mesg,
            _ => return None,
        })
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Transaction identifiers are 1..=999,999,999 (section 3.2.1.2).
pub const MAX_TXID: u32 = 999_999_999;

/// A parameter line: name (case-insensitive, e.g. `C`, `X-Osmo-CP`) and value, trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: String,
}

fn find<'a>(params: &'a [Param], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .map(|p| p.value.as_str())
}

/// An MGCP command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub verb: Verb,
    pub txid: u32,
    /// Endpoint name, `local@domain` (section 2.1.1), e.g. `rtpbridge/1@mgw`, wildcards kept.
    pub endpoint: String,
    /// Protocol version, e.g. `1.0` (or `1.0 NCS 1.0` for profiles).
    pub version: String,
    pub params: Vec<Param>,
    /// Session description (SDP) after the empty line, if any.
    pub sdp: Option<String>,
}

impl Command {
    /// A command with no parameters; the transaction id is set when it is sent.
    pub fn new(verb: Verb, endpoint: &str) -> Command {
        Command {
            verb,
            txid: 0,
            endpoint: endpoint.to_string(),
            version: "1.0".to_string(),
            params: Vec::new(),
            sdp: None,
        }
    }

    /// Builder: add a parameter line.
    pub fn with(mut self, name: &str, value: &str) -> Command {
        self.params.push(Param {
            name: name.to_string(),
            value: value.to_string(),
        });
        self
    }

    /// Builder: attach a session description.
    pub fn with_sdp(mut self, sdp: &str) -> Command {
        self.sdp = Some(sdp.to_string());
        self
    }

    /// The value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        find(&self.params, name)
    }

    /// The datagram text (CRLF line ends).
    pub fn encode(&self) -> String {
        let mut s = format!(
            "{} {} {} MGCP {}\r\n",
            self.verb, self.txid, self.endpoint, self.version
        );
        encode_tail(&mut s, &self.params, self.sdp.as_deref());
        s
    }
}

/// An MGCP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Return code (section 2.4): 1xx provisional, 2xx success, 4xx transient, 5xx permanent.
    pub code: u16,
    pub txid: u32,
    /// Commentary after the transaction id (may be empty).
    pub comment: String,
    pub params: Vec<Param>,
    pub sdp: Option<String>,
}

impl Response {
    pub fn new(code: u16, txid: u32, comment: &str) -> Response {
        Response {
            code,
            txid,
            comment: comment.to_string(),
            params: Vec::new(),
            sdp: None,
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        find(&self.params, name)
    }

    /// Provisional (100 "being executed", 101 "has been queued").
    pub fn is_provisional(&self) -> bool {
        (100..200).contains(&self.code)
    }

    /// A success (2xx).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    pub fn encode(&self) -> String {
        let mut s = format!("{:03} {}", self.code, self.txid);
        if !self.comment.is_empty() {
            s.push(' ');
            s.push_str(&self.comment);
        }
        s.push_str("\r\n");
        encode_tail(&mut s, &self.params, self.sdp.as_deref());
        s
    }
}

fn encode_tail(s: &mut String, params: &[Param], sdp: Option<&str>) {
    for p in params {
        s.push_str(&p.name);
        s.push_str(": ");
        s.push_str(&p.value);
        s.push_str("\r\n");
    }
    if let Some(sdp) = sdp {
        s.push_str("\r\n");
        s.push_str(sdp);
    }
}

/// A command or a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Command(Command),
    Response(Response),
}

/// Why a message could not be read. `txid` is set when the header was readable enough to
/// answer the sender (section 3.2.1.2: an error response must carry the transaction id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub reason: &'static str,
    pub txid: Option<u32>,
    /// The command's verb was not one we know: answer 504 (section 2.4).
    pub unknown_verb: bool,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MGCP: {}", self.reason)?;
        if let Some(t) = self.txid {
            write!(f, " (transaction {t})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

fn err(reason: &'static str, txid: Option<u32>) -> ParseError {
    ParseError {
        reason,
        txid,
        unknown_verb: false,
    }
}

/// Longest datagram accepted (a UDP datagram on IPv4 cannot be longer anyway).
pub const MAX_DATAGRAM: usize = 65_507;

/// Parse a datagram: one message, or several piggybacked (section 3.6).
pub fn parse(b: &[u8]) -> Result<Vec<Message>, ParseError> {
    if b.len() > MAX_DATAGRAM {
        return Err(err("datagram too long", None));
    }
    let text = std::str::from_utf8(b).map_err(|_| err("not UTF-8 text", None))?;
    let mut out = Vec::new();
    for part in split_piggyback(text) {
        out.push(parse_one(part)?);
    }
    if out.is_empty() {
        return Err(err("empty datagram", None));
    }
    Ok(out)
}

/// Split on lines holding only ".": but not inside an SDP body, where "." cannot appear alone
/// either (SDP lines are `x=...`), so a plain split is exact.
fn split_piggyback(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let l = line.trim_end_matches(['\r', '\n']);
        if l == "." {
            parts.push(&text[start..pos]);
            start = pos + line.len();
        }
        pos += line.len();
    }
    parts.push(&text[start..]);
    parts.retain(|p| !p.trim().is_empty());
    parts
}

fn parse_txid(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: u32 = s.parse().ok()?;
    (1..=MAX_TXID).contains(&v).then_some(v)
}

fn parse_one(text: &str) -> Result<Message, ParseError> {
    // header, parameters, then an empty line and the SDP
    let (head, sdp) = match find_blank_line(text) {
        Some((h, rest)) => (h, (!rest.is_empty()).then(|| rest.to_string())),
        None => (text, None),
    };
    let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
    let first = lines.next().unwrap_or("");
    let mut words = first.split_ascii_whitespace();
    let w0 = words.next().ok_or_else(|| err("empty first line", None))?;
    let w1 = words.next().unwrap_or("");
    let txid = parse_txid(w1);
    let params = parse_params(lines, txid)?;
    if w0.len() == 3 && w0.bytes().all(|c| c.is_ascii_digit()) {
        let code: u16 = w0.parse().map_err(|_| err("bad response code", txid))?;
        let txid = txid.ok_or_else(|| err("bad transaction id", None))?;
        // commentary: the rest of the line after the transaction id, as written
        let comment = first
            .trim_start()
            .get(w0.len()..)
            .map(|r| r.trim_start())
            .and_then(|r| r.get(w1.len()..))
            .map(|r| r.trim().to_string())
            .unwrap_or_default();
        return Ok(Message::Response(Response {
            code,
            txid,
            comment,
            params,
            sdp,
        }));
    }
    let txid = txid.ok_or_else(|| err("bad transaction id", None))?;
    let Some(verb) = Verb::parse(w0) else {
        return Err(ParseError {
            reason: "unknown verb",
            txid: Some(txid),
            unknown_verb: true,
        });
    };
    let endpoint = words.next().ok_or_else(|| err("no endpoint", Some(txid)))?;
    if !endpoint.contains('@') || endpoint.starts_with('@') || endpoint.ends_with('@') {
        return Err(err("endpoint is not local@domain", Some(txid)));
    }
    if words.next() != Some("MGCP") {
        return Err(err("protocol is not MGCP", Some(txid)));
    }
    let version: Vec<&str> = words.collect();
    if version.is_empty() {
        return Err(err("no protocol version", Some(txid)));
    }
    Ok(Message::Command(Command {
        verb,
        txid,
        endpoint: endpoint.to_string(),
        version: version.join(" "),
        params,
        sdp,
    }))
}

/// Splits at the first empty line: (header part, session description).
fn find_blank_line(text: &str) -> Option<(&str, &str)> {
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if pos > 0 && line.trim_end_matches(['\r', '\n']).is_empty() {
            return Some((&text[..pos], &text[pos + line.len()..]));
        }
        pos += line.len();
    }
    None
}

fn parse_params<'a>(
    lines: impl Iterator<Item = &'a str>,
    txid: Option<u32>,
) -> Result<Vec<Param>, ParseError> {
    let mut params = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| err("parameter line without ':'", txid))?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
            return Err(err("bad parameter name", txid));
        }
        params.push(Param {
            name: name.to_string(),
            value: value.trim().to_string(),
        });
    }
    Ok(params)
}

/// The connection parameters of a DLCX response's `P:` (section 3.2.2.13): packets/octets
/// sent and received, packets lost, jitter (ms), latency (ms). Absent values are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionParams {
    pub packets_sent: Option<u64>,
    pub octets_sent: Option<u64>,
    pub packets_received: Option<u64>,
    pub octets_received: Option<u64>,
    pub packets_lost: Option<i64>,
    pub jitter_ms: Option<u64>,
    pub latency_ms: Option<u64>,
}

impl ConnectionParams {
    /// `PS=1245, OS=62345, PR=0, OR=0, PL=0, JI=0, LA=48` (unknown names are skipped).
    pub fn parse(s: &str) -> ConnectionParams {
        let mut c = ConnectionParams::default();
        for item in s.split(',') {
            let Some((k, v)) = item.split_once('=') else {
                continue;
            };
            let v = v.trim();
            match k.trim().to_ascii_uppercase().as_str() {
                "PS" => c.packets_sent = v.parse().ok(),
                "OS" => c.octets_sent = v.parse().ok(),
                "PR" => c.packets_received = v.parse().ok(),
                "OR" => c.octets_received = v.parse().ok(),
                "PL" => c.packets_lost = v.parse().ok(),
                "JI" => c.jitter_ms = v.parse().ok(),
                "LA" => c.latency_ms = v.parse().ok(),
                _ => {}
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Message {
        let mut v = parse(s.as_bytes()).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    /// RFC 3435 section 2.3.5 example (LF line ends, as printed in the RFC).
    #[test]
    fn rfc_crcx_example() {
        let m = one("CRCX 1204 aaln/1@rgw-2567.whatever.net MGCP 1.0\nC: A3C47F21456789F0\nL: p:10, a:PCMU\nM: recvonly\n");
        let Message::Command(c) = m else {
            panic!("command")
        };
        assert_eq!(c.verb, Verb::Crcx);
        assert_eq!(c.txid, 1204);
        assert_eq!(c.endpoint, "aaln/1@rgw-2567.whatever.net");
        assert_eq!(c.version, "1.0");
        assert_eq!(c.param("c"), Some("A3C47F21456789F0"));
        assert_eq!(c.param("L"), Some("p:10, a:PCMU"));
        assert_eq!(c.param("M"), Some("recvonly"));
        assert_eq!(c.sdp, None);
    }

    #[test]
    fn response_with_sdp_and_comment() {
        let text = "200 1204 OK\r\nI: FDE234C8\r\n\r\nv=0\r\nc=IN IP4 128.96.41.1\r\nm=audio 3456 RTP/AVP 0\r\n";
        let Message::Response(r) = one(text) else {
            panic!("response")
        };
        assert_eq!((r.code, r.txid, r.comment.as_str()), (200, 1204, "OK"));
        assert_eq!(r.param("i"), Some("FDE234C8"));
        assert!(r.sdp.as_deref().unwrap().contains("m=audio 3456"));
        assert!(r.is_success() && !r.is_provisional());
        // and back: the same message
        assert_eq!(one(&r.encode()), Message::Response(r));
    }

    #[test]
    fn encode_parse_roundtrip() {
        let mut c = Command::new(Verb::Mdcx, "rtpbridge/1@mgw")
            .with("C", "abc")
            .with("I", "1F")
            .with("M", "sendrecv")
            .with_sdp("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n");
        c.txid = 77;
        assert!(c
            .encode()
            .starts_with("MDCX 77 rtpbridge/1@mgw MGCP 1.0\r\nC: abc\r\n"));
        assert_eq!(one(&c.encode()), Message::Command(c));
        let r = Response::new(250, 9, "");
        assert_eq!(r.encode(), "250 9\r\n");
        assert_eq!(one(&r.encode()), Message::Response(r));
    }

    #[test]
    fn piggybacked_messages() {
        let v = parse(b"200 1203 OK\r\n.\r\nRQNT 1205 aaln/1@rgw MGCP 1.0\r\nX: 0123\r\n").unwrap();
        assert_eq!(v.len(), 2);
        assert!(matches!(&v[0], Message::Response(r) if r.txid == 1203));
        assert!(
            matches!(&v[1], Message::Command(c) if c.verb == Verb::Rqnt && c.param("X") == Some("0123"))
        );
    }

    #[test]
    fn errors_keep_the_transaction_id_to_answer() {
        let e = parse(b"XYZW 42 ep@gw MGCP 1.0\r\n").unwrap_err();
        assert!(e.unknown_verb);
        assert_eq!(e.txid, Some(42));
        let e = parse(b"crcx 42 ep@gw MGCP 1.0\r\n").unwrap_err();
        assert!(e.unknown_verb, "verbs are upper case");
        for bad in [
            &b""[..],
            b"\r\n",
            b"CRCX 0 ep@gw MGCP 1.0\r\n",
            b"CRCX 1000000000 ep@gw MGCP 1.0\r\n",
            b"CRCX 12 ep MGCP 1.0\r\n",
            b"CRCX 12 ep@gw SIP 2.0\r\n",
            b"CRCX 12 ep@gw MGCP\r\n",
            b"CRCX 12 ep@gw MGCP 1.0\r\nno colon here\r\n",
            b"200 x OK\r\n",
            b"\xff\xfe",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let e = parse(b"CRCX 12 ep@gw MGCP 1.0\r\nno colon\r\n").unwrap_err();
        assert_eq!(e.txid, Some(12));
    }

    #[test]
    fn connection_parameters() {
        let p = ConnectionParams::parse("PS=1245, OS=62345, PR=780, OR=45123, PL=10, JI=27, LA=48");
        assert_eq!(p.packets_sent, Some(1245));
        assert_eq!(p.octets_received, Some(45123));
        assert_eq!(p.packets_lost, Some(10));
        assert_eq!(p.jitter_ms, Some(27));
        assert_eq!(p.latency_ms, Some(48));
        assert_eq!(
            ConnectionParams::parse("garbage"),
            ConnectionParams::default()
        );
    }

    /// Mutated and random datagrams: errors, never a panic.
    #[test]
    fn hostile_datagrams_never_panic() {
        let seeds: [&[u8]; 3] = [
            b"CRCX 1204 aaln/1@rgw MGCP 1.0\r\nC: A3C4\r\nL: p:10, a:PCMU\r\nM: recvonly\r\n\r\nv=0\r\n",
            b"250 1206 OK\r\nP: PS=1, OS=2\r\n.\r\n200 1207\r\n",
            b"NTFY 2002 aaln/1@rgw MGCP 1.0\r\nN: ca@ca1.whatever.net:5678\r\nX: 0123456789AC\r\nO: L/hd,D/9\r\n",
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut m = seeds[(rnd() % 3) as usize].to_vec();
            for _ in 0..(rnd() % 6) {
                let i = (rnd() as usize) % m.len().max(1);
                match rnd() % 4 {
                    0 if !m.is_empty() => m[i] = rnd() as u8,
                    1 if !m.is_empty() => {
                        m.truncate(i);
                    }
                    2 => m.insert(i.min(m.len()), b"\r\n.:@ 0"[(rnd() % 7) as usize]),
                    _ => m.extend_from_slice(b"\n.\n"),
                }
            }
            let _ = parse(&m);
        }
    }
}
