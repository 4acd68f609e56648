//! Typed views of the header fields the core needs (RFC 3261 §20, grammar in §25.1).
//!
//! The message model keeps header values as text ([`crate::message::Header`]); these types parse
//! a value on demand and `Display` re-emits it in a normalised form. Values reaching here have
//! already been unfolded (RFC 3261 §7.3.1), so "LWS" is just spaces and tabs.

use std::fmt;

use crate::message::{Method, Request, Response, SipMessage};
use crate::uri::{self, Param, Uri};

/// Why a header value did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderError(pub String);

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HeaderError {}

impl From<uri::UriError> for HeaderError {
    fn from(e: uri::UriError) -> Self {
        HeaderError(e.to_string())
    }
}

fn err<T>(s: impl Into<String>) -> Result<T, HeaderError> {
    Err(HeaderError(s.into()))
}

/// RFC 3261 §25.1: `token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )`
#[inline]
pub fn is_token_char(c: u8) -> bool {
    TOKEN_TABLE[c as usize]
}

/// Lookup table for [`is_token_char`] (the parser tests every header-name byte against it).
static TOKEN_TABLE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// RFC 3261 §25.1 `word` (Call-ID): token characters plus `( ) < > : \ " / [ ] ? { }`.
pub fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|c| {
            is_token_char(c)
                || matches!(
                    c,
                    b'(' | b')'
                        | b'<'
                        | b'>'
                        | b':'
                        | b'\\'
                        | b'"'
                        | b'/'
                        | b'['
                        | b']'
                        | b'?'
                        | b'{'
                        | b'}'
                )
        })
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// A byte cursor over a header value.
struct Cur<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cur<'a> {
    fn new(s: &'a str) -> Self {
        Cur { s, i: 0 }
    }
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }
    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }
    fn ws(&mut self) -> bool {
        let start = self.i;
        while self.peek().is_some_and(is_ws) {
            self.i += 1;
        }
        self.i > start
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// `SWS c SWS` (RFC 3261 §25.1 SEMI, SLASH, EQUAL ...).
    fn sep(&mut self, c: u8) -> bool {
        let save = self.i;
        self.ws();
        if self.eat(c) {
            self.ws();
            true
        } else {
            self.i = save;
            false
        }
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }
    fn token(&mut self, what: &str) -> Result<&'a str, HeaderError> {
        let t = self.take_while(is_token_char);
        if t.is_empty() {
            return err(format!("expected token for {what}"));
        }
        Ok(t)
    }
    /// A quoted-string including its quotes (RFC 3261 §25.1: `quoted-pair = "\" (%x00-09 /
    /// %x0B-0C / %x0E-7F)`).
    fn quoted(&mut self) -> Result<&'a str, HeaderError> {
        let start = self.i;
        if !self.eat(b'"') {
            return err("expected quoted string");
        }
        let b = self.s.as_bytes();
        while let Some(&c) = b.get(self.i) {
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(&self.s[start..self.i]);
                }
                b'\\' => match b.get(self.i + 1) {
                    Some(&n) if n <= 0x7f && n != b'\r' && n != b'\n' => self.i += 2,
                    _ => return err("bad escape in quoted string"),
                },
                b'\r' | b'\n' => return err("line break in quoted string"),
                _ => self.i += 1,
            }
        }
        err("unterminated quoted string")
    }
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }
}

/// Header / Via parameters: `*( SEMI name [ EQUAL gen-value ] )` with `gen-value = token / host /
/// quoted-string` (RFC 3261 §25.1 `generic-param`). Stops at `,` or end; returns error on junk.
fn parse_generic_params(c: &mut Cur<'_>, out: &mut Vec<Param>) -> Result<(), HeaderError> {
    loop {
        if !c.sep(b';') {
            return Ok(());
        }
        let name = c.token("parameter name")?;
        let value = if c.sep(b'=') {
            if c.peek() == Some(b'"') {
                Some(c.quoted()?.to_string())
            } else {
                // token, or host (IPv6 reference allowed: `received=[::1]`)
                let v = c.take_while(|b| is_token_char(b) || matches!(b, b'[' | b']' | b':'));
                if v.is_empty() {
                    return err(format!("empty value for parameter {name}"));
                }
                Some(v.to_string())
            }
        } else {
            None
        };
        out.push((name.to_string(), value));
    }
}

fn find<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

fn set(params: &mut Vec<Param>, name: &str, value: Option<&str>) {
    let v = value.map(str::to_string);
    match params
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
    {
        Some(p) => p.1 = v,
        None => params.push((name.to_string(), v)),
    }
}

/// Split a header value on commas that are not inside a quoted string or `<...>` (RFC 3261
/// §7.3.1: headers whose grammar is a comma-separated list may be combined on one line).
/// Elements are trimmed of surrounding whitespace; empty elements are kept so callers can reject
/// them.
pub fn split_comma_list(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    let (mut in_q, mut in_angle) = (false, false);
    while i < b.len() {
        match b[i] {
            b'\\' if in_q => i += 1,
            b'"' => in_q = !in_q,
            b'<' if !in_q => in_angle = true,
            b'>' if !in_q => in_angle = false,
            b',' if !in_q && !in_angle => {
                out.push(s[start..i].trim_matches([' ', '\t']));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(s.get(start..).unwrap_or("").trim_matches([' ', '\t']));
    out
}

// ------------------------------------------------------------------------------------------ Via

/// One Via entry (RFC 3261 §20.42, §25.1):
/// ```text
/// via-parm = sent-protocol LWS sent-by *( SEMI via-params )
/// sent-protocol = protocol-name SLASH protocol-version SLASH transport
/// sent-by = host [ COLON port ]
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// Transport token in upper case (`UDP`, `TCP`, `TLS`, `SCTP`, or an extension).
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

impl Via {
    /// Parse exactly one via-parm.
    pub fn parse(s: &str) -> Result<Via, HeaderError> {
        let mut c = Cur::new(s);
        let v = Self::parse_one(&mut c)?;
        c.ws();
        if !c.eof() {
            return err(format!("junk after Via: {:?}", c.rest()));
        }
        Ok(v)
    }

    fn parse_one(c: &mut Cur<'_>) -> Result<Via, HeaderError> {
        c.ws();
        let name = c.token("Via protocol name")?;
        if !name.eq_ignore_ascii_case("SIP") {
            return err("Via protocol is not SIP");
        }
        if !c.sep(b'/') {
            return err("expected '/' in Via");
        }
        let ver = c.token("Via protocol version")?;
        if ver != "2.0" {
            return err("Via protocol version is not 2.0");
        }
        if !c.sep(b'/') {
            return err("expected '/' in Via");
        }
        let transport = c.token("Via transport")?.to_ascii_uppercase();
        if !c.ws() {
            return err("expected whitespace before Via sent-by");
        }
        let hostport = c.take_while(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
        });
        let (host, port) = uri::split_host_port(hostport)?;
        let mut params = Vec::new();
        parse_generic_params(c, &mut params)?;
        Ok(Via {
            transport,
            host: host.to_string(),
            port,
            params,
        })
    }

    /// Parse a Via header line that may carry several comma-separated via-parms.
    pub fn parse_list(s: &str) -> Result<Vec<Via>, HeaderError> {
        let mut c = Cur::new(s);
        let mut out = Vec::new();
        loop {
            out.push(Self::parse_one(&mut c)?);
            c.ws();
            if c.eof() {
                return Ok(out);
            }
            if !c.eat(b',') {
                return err(format!("junk in Via: {:?}", c.rest()));
            }
        }
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find(&self.params, name)
    }
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }
    /// RFC 3261 §17.2.3: a branch beginning with `z9hG4bK` is RFC 3261 compliant.
    pub fn has_magic_cookie(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }
    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }
    /// RFC 3581: `None` = no rport, `Some(None)` = `;rport` (request for it), `Some(Some(p))` =
    /// filled in. A non-numeric value reads as `Some(None)`.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        set(&mut self.params, name, value)
    }
    pub fn remove_param(&mut self, name: &str) {
        self.params.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        uri::write_params(f, &self.params)
    }
}

// ------------------------------------------------------------------------------------- NameAddr

/// From, To, Contact, Route, Record-Route, Reply-To ... (RFC 3261 §20.10, §20.20, §20.39,
/// §25.1):
/// ```text
/// ( name-addr / addr-spec ) *( SEMI param )
/// name-addr = [ display-name ] LAQUOT addr-spec RAQUOT
/// display-name = *(token LWS) / quoted-string
/// ```
/// RFC 3261 §20: "when the header field value contains a display name, the URI including all URI
/// parameters is enclosed in "<" and ">". If no "<" and ">" are present, all parameters after the
/// URI are header parameters". And: if the URI contains a comma, question mark or semicolon, the
/// URI MUST be enclosed in angle brackets (so an addr-spec with `?` is rejected, RFC 4475
/// §3.1.2.16).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name as written: a quoted string *with* its quotes, or a run of tokens.
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (after `>`, or after an addr-spec).
    pub params: Vec<Param>,
}

impl NameAddr {
    pub fn parse(s: &str) -> Result<NameAddr, HeaderError> {
        let mut c = Cur::new(s);
        let na = Self::parse_one(&mut c)?;
        c.ws();
        if !c.eof() {
            return err(format!("junk after address: {:?}", c.rest()));
        }
        Ok(na)
    }

    fn parse_one(c: &mut Cur<'_>) -> Result<NameAddr, HeaderError> {
        c.ws();
        let mut display = None;
        let angle;
        if c.peek() == Some(b'"') {
            display = Some(c.quoted()?.to_string());
            c.ws();
            if !c.eat(b'<') {
                return err("expected '<' after display name");
            }
            angle = true;
        } else if c.eat(b'<') {
            angle = true;
        } else {
            // Either `*(token LWS) <...>` or an addr-spec. Look for '<' before any ',' or ';'.
            let rest = c.rest().as_bytes();
            let lt = rest.iter().position(|&b| b == b'<');
            let stop = rest
                .iter()
                .position(|&b| b == b',' || b == b';' || b == b'"');
            match lt {
                Some(p) if stop.is_none_or(|q| p < q) => {
                    let d = &c.rest()[..p];
                    let d_trim = d.trim_end_matches([' ', '\t']);
                    if !d_trim
                        .split([' ', '\t'])
                        .filter(|w| !w.is_empty())
                        .all(is_token)
                    {
                        return err("display name must be tokens or a quoted string");
                    }
                    if !d_trim.is_empty() {
                        display = Some(d_trim.to_string());
                    }
                    c.i += p + 1;
                    angle = true;
                }
                _ => angle = false,
            }
        }
        let uri = if angle {
            let rest = c.rest();
            let Some(end) = rest.find('>') else {
                return err("missing '>'");
            };
            let u = Uri::parse(&rest[..end])?;
            c.i += end + 1;
            u
        } else {
            // addr-spec: the URI ends at whitespace, ';' or ','.
            let u = c.take_while(|b| !matches!(b, b' ' | b'\t' | b';' | b','));
            if u.contains('?') {
                return err("URI with '?' must be enclosed in <>");
            }
            Uri::parse(u)?
        };
        let mut params = Vec::new();
        parse_generic_params(c, &mut params)?;
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    /// Parse a comma-separated list (Contact, Route, Record-Route).
    pub fn parse_list(s: &str) -> Result<Vec<NameAddr>, HeaderError> {
        let mut c = Cur::new(s);
        let mut out = Vec::new();
        loop {
            out.push(Self::parse_one(&mut c)?);
            c.ws();
            if c.eof() {
                return Ok(out);
            }
            if !c.eat(b',') {
                return err(format!("junk in address list: {:?}", c.rest()));
            }
        }
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find(&self.params, name)
    }
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }
    pub fn set_tag(&mut self, tag: &str) {
        set(&mut self.params, "tag", Some(tag))
    }
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        set(&mut self.params, name, value)
    }
    pub fn remove_param(&mut self, name: &str) {
        self.params.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
    /// The display name without quotes and with quoted-pairs resolved.
    pub fn display_unquoted(&self) -> Option<String> {
        let d = self.display.as_deref()?;
        match d.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
            Some(inner) => {
                let mut out = String::with_capacity(inner.len());
                let mut it = inner.chars();
                while let Some(ch) = it.next() {
                    if ch == '\\' {
                        if let Some(n) = it.next() {
                            out.push(n);
                        }
                    } else {
                        out.push(ch);
                    }
                }
                Some(out)
            }
            None => Some(d.to_string()),
        }
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>", self.uri)?;
        uri::write_params(f, &self.params)
    }
}

/// A Contact header element: `*` (only in REGISTER, RFC 3261 §10.2.2) or an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contact {
    Star,
    Addr(NameAddr),
}

impl Contact {
    /// Parse a Contact header value: `*` or a list of addresses.
    pub fn parse_list(s: &str) -> Result<Vec<Contact>, HeaderError> {
        if s.trim_matches([' ', '\t']) == "*" {
            return Ok(vec![Contact::Star]);
        }
        Ok(NameAddr::parse_list(s)?
            .into_iter()
            .map(Contact::Addr)
            .collect())
    }
}

impl fmt::Display for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contact::Star => f.write_str("*"),
            Contact::Addr(a) => a.fmt(f),
        }
    }
}

// ----------------------------------------------------------------------------------------- CSeq

/// RFC 3261 §20.16: `CSeq = "CSeq" HCOLON 1*DIGIT LWS Method`. "The sequence number MUST be
/// expressible as a 32-bit unsigned integer" (§8.1.1.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(s: &str) -> Result<CSeq, HeaderError> {
        let mut c = Cur::new(s);
        c.ws();
        let digits = c.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return err("CSeq without sequence number");
        }
        let seq = digits
            .parse::<u32>()
            .map_err(|_| HeaderError("CSeq number does not fit 32 bits".into()))?;
        if !c.ws() {
            return err("CSeq: expected whitespace before method");
        }
        let m = c.token("CSeq method")?;
        c.ws();
        if !c.eof() {
            return err("junk after CSeq method");
        }
        Ok(CSeq {
            seq,
            method: Method::from_token(m),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// Parse a `1*DIGIT` header value (Max-Forwards, Content-Length, Expires) into a u32;
/// surrounding whitespace allowed. Leading zeros are fine (`0068`, RFC 4475 wsinv).
pub fn parse_u32(s: &str) -> Option<u32> {
    let t = s.trim_matches([' ', '\t']);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

// ------------------------------------------------------------------------------- accessors

macro_rules! accessors {
    ($t:ty) => {
        impl $t {
            /// Call-ID value, trimmed (RFC 3261 §20.8).
            pub fn call_id(&self) -> Option<&str> {
                self.headers
                    .get("Call-ID")
                    .map(|v| v.trim_matches([' ', '\t']))
            }
            pub fn cseq(&self) -> Option<CSeq> {
                self.headers.get("CSeq").and_then(|v| CSeq::parse(v).ok())
            }
            pub fn from(&self) -> Option<NameAddr> {
                self.headers
                    .get("From")
                    .and_then(|v| NameAddr::parse(v).ok())
            }
            pub fn to(&self) -> Option<NameAddr> {
                self.headers.get("To").and_then(|v| NameAddr::parse(v).ok())
            }
            /// The first via-parm of the first Via line.
            pub fn top_via(&self) -> Option<Via> {
                self.headers
                    .get("Via")
                    .and_then(|v| Via::parse_list(v).ok())
                    .and_then(|l| l.into_iter().next())
            }
            /// Every via-parm, top first; `Err` if any Via is malformed.
            pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
                let mut out = Vec::new();
                for v in self.headers.get_all("Via") {
                    out.extend(Via::parse_list(v)?);
                }
                Ok(out)
            }
            pub fn max_forwards(&self) -> Option<u32> {
                self.headers.get("Max-Forwards").and_then(parse_u32)
            }
            /// The Content-Length header as received (the body may have been cut to it).
            pub fn content_length(&self) -> Option<u32> {
                self.headers.get("Content-Length").and_then(parse_u32)
            }
        }
    };
}

accessors!(Request);
accessors!(Response);

impl SipMessage {
    pub fn call_id(&self) -> Option<&str> {
        match self {
            SipMessage::Request(r) => r.call_id(),
            SipMessage::Response(r) => r.call_id(),
        }
    }
    pub fn cseq(&self) -> Option<CSeq> {
        match self {
            SipMessage::Request(r) => r.cseq(),
            SipMessage::Response(r) => r.cseq(),
        }
    }
    pub fn from(&self) -> Option<NameAddr> {
        match self {
            SipMessage::Request(r) => r.from(),
            SipMessage::Response(r) => r.from(),
        }
    }
    pub fn to(&self) -> Option<NameAddr> {
        match self {
            SipMessage::Request(r) => r.to(),
            SipMessage::Response(r) => r.to(),
        }
    }
    pub fn top_via(&self) -> Option<Via> {
        match self {
            SipMessage::Request(r) => r.top_via(),
            SipMessage::Response(r) => r.top_via(),
        }
    }
    pub fn max_forwards(&self) -> Option<u32> {
        match self {
            SipMessage::Request(r) => r.max_forwards(),
            SipMessage::Response(r) => r.max_forwards(),
        }
    }
    pub fn content_length(&self) -> Option<u32> {
        match self {
            SipMessage::Request(r) => r.content_length(),
            SipMessage::Response(r) => r.content_length(),
        }
    }
}

#[cfg(test)]
mod tests;
