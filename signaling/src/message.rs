//! SIP message model (RFC 3261 §7, §20).
//!
//! A message is a start line, an ordered list of headers and a body. Header *names* of known
//! headers are normalised to their full canonical form (compact forms such as `v`, `i`, `f` are
//! expanded when parsed); values are kept as the text that was on the wire, with line folding
//! replaced by a single space. Unknown headers keep their original name and pass through byte for
//! byte. Structured views (Via, name-addr, CSeq, URI) are parsed on demand by the functions in
//! [`crate::headers`] and [`crate::uri`].

use std::fmt;

/// A SIP method. `Other` keeps extension methods (RFC 3261 §27.4) verbatim.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Message,
    Refer,
    Publish,
    Other(String),
}

impl Method {
    /// Methods are case-sensitive tokens (RFC 3261 §7.1).
    pub fn from_token(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "MESSAGE" => Method::Message,
            "REFER" => Method::Refer,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Message => "MESSAGE",
            Method::Refer => "REFER",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header line. `name` is canonical for known headers (see [`canonical_name`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// Ordered header list. Lookups are case-insensitive on the (already canonical) name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }
    /// An empty list with room for `n` lines (a message being built: no regrowth per push).
    pub fn with_capacity(n: usize) -> Self {
        Headers(Vec::with_capacity(n))
    }
    /// First value of header `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
    /// All values of header `name`, in order (one entry per header line; comma lists are not split).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
    pub fn count(&self, name: &str) -> usize {
        self.0
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
    }
    /// Append a header line at the end.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push(Header {
            name: name.to_string(),
            value: value.into(),
        });
    }
    /// Insert a header line before every other line of that name (e.g. a new top Via), or at the
    /// end when there is none.
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        let h = Header {
            name: name.to_string(),
            value: value.into(),
        };
        match self
            .0
            .iter()
            .position(|x| x.name.eq_ignore_ascii_case(name))
        {
            Some(i) => self.0.insert(i, h),
            None => self.0.push(h),
        }
    }
    /// Replace every line of `name` with a single line holding `value` (kept at the position of the
    /// first one).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .0
            .iter()
            .position(|x| x.name.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                self.0[i].value = value;
                let mut idx = 0;
                self.0.retain(|h| {
                    let keep = idx <= i || !h.name.eq_ignore_ascii_case(name);
                    idx += 1;
                    keep
                });
            }
            None => self.push(name, value),
        }
    }
    /// Remove every line of `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|h| !h.name.eq_ignore_ascii_case(name));
    }
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Request-URI exactly as received (parse with [`crate::uri::Uri::parse`]).
    pub uri: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SipMessage {
    Request(Request),
    Response(Response),
}

impl SipMessage {
    pub fn headers(&self) -> &Headers {
        match self {
            SipMessage::Request(r) => &r.headers,
            SipMessage::Response(r) => &r.headers,
        }
    }
    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            SipMessage::Request(r) => &mut r.headers,
            SipMessage::Response(r) => &mut r.headers,
        }
    }
    pub fn body(&self) -> &[u8] {
        match self {
            SipMessage::Request(r) => &r.body,
            SipMessage::Response(r) => &r.body,
        }
    }
}

/// Compact forms and canonical spellings of the header names we know, as one table: the
/// reference the length-bucketed match in [`canonical_name`] is tested against.
#[cfg(test)]
const KNOWN: &[(&str, &str)] = &[
    ("v", "Via"),
    ("f", "From"),
    ("t", "To"),
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("e", "Content-Encoding"),
    ("s", "Subject"),
    ("k", "Supported"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
    ("u", "Allow-Events"),
    ("x", "Session-Expires"),
    ("a", "Accept-Contact"),
    ("j", "Reject-Contact"),
    ("d", "Request-Disposition"),
    ("y", "Identity"),
    ("via", "Via"),
    ("from", "From"),
    ("to", "To"),
    ("call-id", "Call-ID"),
    ("cseq", "CSeq"),
    ("contact", "Contact"),
    ("content-length", "Content-Length"),
    ("content-type", "Content-Type"),
    ("content-encoding", "Content-Encoding"),
    ("max-forwards", "Max-Forwards"),
    ("record-route", "Record-Route"),
    ("route", "Route"),
    ("require", "Require"),
    ("proxy-require", "Proxy-Require"),
    ("supported", "Supported"),
    ("unsupported", "Unsupported"),
    ("allow", "Allow"),
    ("expires", "Expires"),
    ("authorization", "Authorization"),
    ("www-authenticate", "WWW-Authenticate"),
    ("proxy-authenticate", "Proxy-Authenticate"),
    ("proxy-authorization", "Proxy-Authorization"),
    ("user-agent", "User-Agent"),
    ("server", "Server"),
    ("date", "Date"),
    ("subject", "Subject"),
    ("event", "Event"),
    ("refer-to", "Refer-To"),
    ("retry-after", "Retry-After"),
    ("accept", "Accept"),
    ("min-expires", "Min-Expires"),
    ("session-expires", "Session-Expires"),
    ("rseq", "RSeq"),
    ("rack", "RAck"),
];

/// Expand a compact header name (RFC 3261 §7.3.3, RFC 3515, RFC 3841, RFC 4028 ...) and give known
/// headers their canonical capitalisation. Unknown names are returned unchanged.
pub fn canonical_name(name: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;

    // Hot path (every header of every message): only the names of the same length are compared
    // (the linear scan over the whole table was ~4% of the B2BUA core's instructions), and
    // without allocating a lower-case copy (tested against one flat table).
    let same_len: &[(&str, &str)] = match name.len() {
        1 => &[
            ("v", "Via"),
            ("f", "From"),
            ("t", "To"),
            ("i", "Call-ID"),
            ("m", "Contact"),
            ("l", "Content-Length"),
            ("c", "Content-Type"),
            ("e", "Content-Encoding"),
            ("s", "Subject"),
            ("k", "Supported"),
            ("o", "Event"),
            ("r", "Refer-To"),
            ("b", "Referred-By"),
            ("u", "Allow-Events"),
            ("x", "Session-Expires"),
            ("a", "Accept-Contact"),
            ("j", "Reject-Contact"),
            ("d", "Request-Disposition"),
            ("y", "Identity"),
        ],
        2 => &[("to", "To")],
        3 => &[("via", "Via")],
        4 => &[
            ("from", "From"),
            ("cseq", "CSeq"),
            ("date", "Date"),
            ("rseq", "RSeq"),
            ("rack", "RAck"),
        ],
        5 => &[("route", "Route"), ("allow", "Allow"), ("event", "Event")],
        6 => &[("server", "Server"), ("accept", "Accept")],
        7 => &[
            ("call-id", "Call-ID"),
            ("contact", "Contact"),
            ("require", "Require"),
            ("expires", "Expires"),
            ("subject", "Subject"),
        ],
        8 => &[("refer-to", "Refer-To")],
        9 => &[("supported", "Supported")],
        10 => &[("user-agent", "User-Agent")],
        11 => &[
            ("unsupported", "Unsupported"),
            ("retry-after", "Retry-After"),
            ("min-expires", "Min-Expires"),
        ],
        12 => &[
            ("content-type", "Content-Type"),
            ("max-forwards", "Max-Forwards"),
            ("record-route", "Record-Route"),
        ],
        13 => &[
            ("proxy-require", "Proxy-Require"),
            ("authorization", "Authorization"),
        ],
        14 => &[("content-length", "Content-Length")],
        15 => &[("session-expires", "Session-Expires")],
        16 => &[
            ("content-encoding", "Content-Encoding"),
            ("www-authenticate", "WWW-Authenticate"),
        ],
        18 => &[("proxy-authenticate", "Proxy-Authenticate")],
        19 => &[("proxy-authorization", "Proxy-Authorization")],
        _ => &[],
    };
    for (k, v) in same_len {
        if k.eq_ignore_ascii_case(name) {
            return Cow::Borrowed(v);
        }
    }
    Cow::Borrowed(name)
}

#[cfg(test)]
mod tests {
    use super::{canonical_name, KNOWN};

    /// The length-bucketed lookup gives exactly what a scan of the whole table gives.
    #[test]
    fn canonical_name_matches_table_scan() {
        let scan = |n: &str| {
            KNOWN
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| *v)
                .unwrap_or(n)
                .to_string()
        };
        let mut names: Vec<String> = Vec::new();
        for (k, v) in KNOWN {
            names.push(k.to_string());
            names.push(k.to_ascii_uppercase());
            names.push(v.to_string());
        }
        for n in [
            "X-Custom",
            "",
            "Via2",
            "tO",
            "CALL-id",
            "Referred-By",
            "z",
            "Min-SE",
        ] {
            names.push(n.to_string());
        }
        for n in &names {
            assert_eq!(canonical_name(n), scan(n), "{n}");
        }
    }
}
