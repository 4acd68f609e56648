//! Request admission: the checks a UAS (and so each side of the B2BUA) applies to a request that
//! parsed, before any processing (RFC 3261 §8.2, §16.3; RFC 4475 §3.1.2 and §3.3).
//!
//! The order follows RFC 3261 §8.2 and §16.3: syntax of the headers the core relies on (400),
//! Request-URI scheme (416, §8.2.2.1), Max-Forwards (483, §16.3 item 3), `Require` (420,
//! §8.2.2.3), content (415, §8.2.3), `Accept` (406, RFC 4475 §3.3.15).
//!
//! Choices made here:
//! * Max-Forwards absence is tolerated (it is mandatory for RFC 3261 UACs, §8.1.1.6, but RFC 2543
//!   elements omit it and RFC 4475 §3.4.1 inv2543 expects such a request to be accepted). A value
//!   above 255 or not a number is a 400 (§20.22: "0-255").
//! * A Max-Forwards of 0 gives 483 when [`Admission::reject_zero_max_forwards`] is set (the
//!   default). The caller clears it for requests addressed to itself (an OPTIONS to the SBC, RFC
//!   3261 §11: "a UAS MAY respond to an OPTIONS with Max-Forwards 0").
//! * `Proxy-Require` is not checked: a UAS ignores it (§20.29 "Proxy-Require ... used to indicate
//!   proxy-sensitive features"); the B2BUA terminates each leg as a UAS.
//! * A `Date` not in GMT is a 400 (RFC 4475 §3.1.2.12 baddate allows either 400 or ignoring it;
//!   we choose strict).

use crate::headers::{is_token, is_word, parse_u32, CSeq, Contact, NameAddr, Via};
use crate::message::{Headers, Method, Request, Response};
use crate::uri::Uri;

/// Why a request is refused: the status, a reason phrase, and headers to add to the response
/// (e.g. `Unsupported` with a 420, `Accept` with a 415).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl Rejection {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        Rejection {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }
    fn bad(reason: impl Into<String>) -> Self {
        Rejection::new(400, reason)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

/// Option tags this core implements by default (RFC 3261 §8.2.2.3, §19.2). Empty: no
/// extension that a `Require` could demand (100rel, timer, replaces ...) is implemented yet.
pub const DEFAULT_SUPPORTED: &[&str] = &[];

/// What the admitting element supports and how strict it is.
#[derive(Clone, Debug)]
pub struct Admission<'a> {
    /// Option tags accepted in `Require` (compared case-insensitively).
    pub supported: &'a [&'a str],
    /// Reject requests without Max-Forwards with 400 (default false, see module docs).
    pub require_max_forwards: bool,
    /// Answer 483 to Max-Forwards 0 (default true, see module docs).
    pub reject_zero_max_forwards: bool,
}

impl Default for Admission<'_> {
    fn default() -> Self {
        Admission {
            supported: DEFAULT_SUPPORTED,
            require_max_forwards: false,
            reject_zero_max_forwards: true,
        }
    }
}

/// Admission with the default policy ([`Admission::default`]).
pub fn admission(req: &Request) -> Result<(), Rejection> {
    check_request(req, &Admission::default())
}

/// Headers that may appear at most once (RFC 3261 §7.3.1: only headers whose grammar is a
/// comma-separated list may be repeated; RFC 4475 §3.3.9 multi01, §3.3.10 mcl01).
const SINGLE: &[&str] = &[
    "To",
    "From",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
];

/// Mandatory in every request (RFC 3261 §8.1.1: "To, From, CSeq, Call-ID, Max-Forwards, and Via;
/// all of these header fields are mandatory in all SIP requests"; Max-Forwards see module docs).
const MANDATORY: &[&str] = &["To", "From", "Call-ID", "CSeq", "Via"];

/// `Call-ID = word [ "@" word ]` (RFC 3261 §25.1).
fn valid_call_id(v: &str) -> bool {
    let v = v.trim_matches([' ', '\t']);
    match v.split_once('@') {
        Some((a, b)) => is_word(a) && is_word(b),
        None => is_word(v),
    }
}

/// Checks shared by requests and responses: presence and uniqueness of the core headers and
/// their syntax.
fn check_common(h: &Headers, extra_mandatory: &[&str]) -> Result<(), String> {
    for name in MANDATORY.iter().chain(extra_mandatory) {
        if h.get(name).is_none() {
            return Err(format!("Missing {name} header"));
        }
    }
    for name in SINGLE {
        if h.count(name) > 1 {
            return Err(format!("Multiple {name} headers"));
        }
    }
    for name in ["From", "To"] {
        if let Some(v) = h.get(name) {
            NameAddr::parse(v).map_err(|e| format!("Bad {name} header: {e}"))?;
        }
    }
    if let Some(v) = h.get("Call-ID") {
        if !valid_call_id(v) {
            return Err("Bad Call-ID header".into());
        }
    }
    if let Some(v) = h.get("CSeq") {
        CSeq::parse(v).map_err(|e| format!("Bad CSeq header: {e}"))?;
    }
    for v in h.get_all("Via") {
        Via::parse_list(v).map_err(|e| format!("Bad Via header: {e}"))?;
    }
    for v in h.get_all("Contact") {
        Contact::parse_list(v).map_err(|e| format!("Bad Contact header: {e}"))?;
    }
    for name in ["Route", "Record-Route"] {
        for v in h.get_all(name) {
            NameAddr::parse_list(v).map_err(|e| format!("Bad {name} header: {e}"))?;
        }
    }
    if let Some(v) = h.get("Max-Forwards") {
        match parse_u32(v) {
            Some(n) if n <= 255 => {}
            _ => return Err("Bad Max-Forwards header".into()),
        }
    }
    // RFC 3261 §20.17: Date = rfc1123-date, and "the time zone MUST be GMT".
    if let Some(v) = h.get("Date") {
        if !v.trim_end_matches([' ', '\t']).ends_with(" GMT") {
            return Err("Date header not in GMT".into());
        }
    }
    Ok(())
}

/// Syntax checks for a received response. An invalid response is dropped (RFC 4475 §3.1.2).
pub fn check_response(resp: &Response) -> Result<(), String> {
    check_common(&resp.headers, &[])
}

fn media_type(v: &str) -> (String, &str) {
    // media-type = m-type SLASH m-subtype *(SEMI m-parameter)
    let (t, params) = match v.split_once(';') {
        Some((t, p)) => (t, p),
        None => (v, ""),
    };
    let t: String = t
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    (t, params)
}

fn boundary(params: &str) -> Option<&str> {
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim_matches([' ', '\t'])
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches([' ', '\t', '"']))
    })
}

/// Does a multipart/mixed body (RFC 2046 §5.1) have an `application/sdp` part?
fn multipart_has_sdp(body: &[u8], boundary: &str) -> bool {
    if boundary.is_empty() {
        return false;
    }
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let mut i = 0;
    while let Some(p) = body[i..].windows(d.len()).position(|w| w == d) {
        let part_start = i + p + d.len();
        // part headers run until an empty line
        let rest = &body[part_start..];
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(rest.len());
        let hdrs = String::from_utf8_lossy(&rest[..end]);
        for line in hdrs.split("\r\n") {
            if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-type")
                    && media_type(v).0 == "application/sdp"
                {
                    return true;
                }
            }
        }
        i = part_start;
    }
    false
}

/// Methods whose body we must understand (they carry SDP offers/answers, RFC 3264, RFC 3311).
fn body_matters(m: &Method) -> bool {
    matches!(m, Method::Invite | Method::Update)
}

const ACCEPT_VALUE: &str = "application/sdp, multipart/mixed";

/// The admission checks of the module documentation. `Ok(())` means the request may be
/// processed; otherwise answer with the rejection (never for ACK, RFC 3261 §17.2.1 — the
/// caller must drop a rejected ACK).
pub fn check_request(req: &Request, adm: &Admission<'_>) -> Result<(), Rejection> {
    let h = &req.headers;
    let extra: &[&str] = if adm.require_max_forwards {
        &["Max-Forwards"]
    } else {
        &[]
    };
    check_common(h, extra).map_err(Rejection::bad)?;

    // RFC 3261 §8.1.1.5 / RFC 4475 §3.1.2.17-18: "the method [in CSeq] MUST match that of the
    // request".
    if let Some(cseq) = req.cseq() {
        if cseq.method != req.method {
            return Err(Rejection::bad("CSeq method does not match request method"));
        }
    }

    // Request-URI (RFC 3261 §8.2.2.1): "If the Request-URI uses a scheme not supported by the
    // UAS, it SHOULD reject the request with a 416 (Unsupported URI Scheme) response."
    let uri = Uri::parse(&req.uri).map_err(|e| Rejection::bad(format!("Bad Request-URI: {e}")))?;
    match &uri {
        Uri::Sip(u) => {
            // RFC 3261 §19.1.5 table: headers are "not allowed" in a Request-URI (RFC 4475
            // §3.1.2.11 escruri).
            if !u.headers.is_empty() {
                return Err(Rejection::bad("Request-URI must not contain headers"));
            }
        }
        Uri::Tel(_) => {}
        Uri::Other { .. } => {
            return Err(Rejection::new(416, "Unsupported URI Scheme"));
        }
    }

    // RFC 3261 §16.3 item 3: "If the request does not contain a Max-Forwards header field, ...
    // If it does and the value is zero, ... the element MUST NOT forward the request ... 483".
    if adm.reject_zero_max_forwards && req.max_forwards() == Some(0) {
        return Err(Rejection::new(483, "Too Many Hops"));
    }

    let is_ack_or_cancel = matches!(req.method, Method::Ack | Method::Cancel);

    // RFC 3261 §8.2.2.3: "If a UAS does not understand an option-tag listed in a Require header
    // field, it MUST respond by generating a response with status code 420 (Bad Extension). The
    // UAS MUST add an Unsupported header field, and list in it those options it does not
    // understand". Not applied to ACK and CANCEL (§8.2.2.3: "Require ... ignored in CANCEL";
    // ACK cannot be answered).
    if !is_ack_or_cancel {
        let mut unsupported: Vec<&str> = Vec::new();
        for v in h.get_all("Require") {
            for tag in v.split(',') {
                let tag = tag.trim_matches([' ', '\t']);
                if tag.is_empty() {
                    continue;
                }
                if !is_token(tag) {
                    return Err(Rejection::bad("Bad Require header"));
                }
                if !adm.supported.iter().any(|s| s.eq_ignore_ascii_case(tag))
                    && !unsupported.iter().any(|u| u.eq_ignore_ascii_case(tag))
                {
                    unsupported.push(tag);
                }
            }
        }
        if !unsupported.is_empty() {
            let mut r = Rejection::new(420, "Bad Extension");
            r.headers
                .push(("Unsupported".into(), unsupported.join(", ")));
            return Err(r);
        }
    }

    if body_matters(&req.method) {
        // RFC 3261 §8.2.3: "If a UAS does not understand the body ... it MUST respond with a 415
        // (Unsupported Media Type) response ... [listing] the types of all bodies it
        // understands, in the Accept header".
        if !req.body.is_empty() {
            let Some(ct) = h.get("Content-Type") else {
                // §20.15: "The Content-Type header field MUST be present if the body is not
                // empty."
                return Err(Rejection::bad("Body without Content-Type"));
            };
            let (t, params) = media_type(ct);
            let ok = match t.as_str() {
                "application/sdp" => true,
                "multipart/mixed" => {
                    boundary(params).is_some_and(|b| multipart_has_sdp(&req.body, b))
                }
                _ => false,
            };
            let encoding_ok = h.get("Content-Encoding").is_none_or(|e| {
                e.split(',')
                    .all(|x| x.trim_matches([' ', '\t']).eq_ignore_ascii_case("identity"))
            });
            if !ok || !encoding_ok {
                let mut r = Rejection::new(415, "Unsupported Media Type");
                r.headers.push(("Accept".into(), ACCEPT_VALUE.into()));
                if !encoding_ok {
                    r.headers
                        .push(("Accept-Encoding".into(), "identity".into()));
                }
                return Err(r);
            }
        }
        // RFC 4475 §3.3.15 (sdp01): the Accept header does not allow application/sdp, so no
        // acceptable answer can be produced: 406 (Not Acceptable, RFC 3261 §21.4.7).
        if req.method == Method::Invite && h.get("Accept").is_some() {
            let accepts_sdp = h.get_all("Accept").any(|v| {
                v.split(',').any(|r| {
                    let (t, _) = media_type(r);
                    matches!(t.as_str(), "application/sdp" | "application/*" | "*/*")
                })
            });
            if !accepts_sdp {
                let mut r = Rejection::new(406, "Not Acceptable");
                r.headers.push(("Accept".into(), "application/sdp".into()));
                return Err(r);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;
    use crate::SipMessage;

    fn req(extra: &str, body: &str) -> Request {
        let s = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1@h\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match parse(s.as_bytes()).unwrap() {
            SipMessage::Request(r) => r,
            _ => panic!(),
        }
    }

    fn status(r: &Request) -> Option<u16> {
        admission(r).err().map(|e| e.status)
    }

    #[test]
    fn good_invite() {
        assert_eq!(
            status(&req("Content-Type: application/sdp\r\n", "v=0\r\n")),
            None
        );
        assert_eq!(status(&req("", "")), None);
        assert_eq!(status(&req("Accept: application/*\r\n", "")), None);
    }

    #[test]
    fn rejections() {
        assert_eq!(status(&req("Require: 100rel, foo\r\n", "")), Some(420));
        let r = admission(&req("Require: 100rel, foo\r\n", "")).unwrap_err();
        assert_eq!(
            r.headers,
            vec![("Unsupported".to_string(), "100rel, foo".to_string())]
        );
        let adm = Admission {
            supported: &["100rel", "foo"],
            ..Admission::default()
        };
        assert!(check_request(&req("Require: 100rel, foo\r\n", ""), &adm).is_ok());
        assert_eq!(
            status(&req("Content-Type: text/html\r\n", "<p>")),
            Some(415)
        );
        assert_eq!(
            status(&req(
                "Content-Type: application/sdp\r\nContent-Encoding: gzip\r\n",
                "x"
            )),
            Some(415)
        );
        assert_eq!(status(&req("", "v=0")), Some(400));
        assert_eq!(status(&req("Accept: text/plain\r\n", "")), Some(406));
        assert_eq!(status(&req("To: <sip:x@y>\r\n", "")), Some(400));
        assert_eq!(status(&req("Max-Forwards: 256\r\n", "")), Some(400));
        assert_eq!(
            status(&req("Date: Fri, 01 Jan 2010 16:00:00 EST\r\n", "")),
            Some(400)
        );
        assert_eq!(
            status(&req("Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n", "")),
            None
        );
        assert_eq!(status(&req("Contact: sip:a@b?x=y\r\n", "")), Some(400));
        let mut r = req("", "");
        r.headers.set("Max-Forwards", "0");
        assert_eq!(status(&r), Some(483));
        let adm = Admission {
            reject_zero_max_forwards: false,
            ..Admission::default()
        };
        assert!(check_request(&r, &adm).is_ok());
        r.headers.remove("Max-Forwards");
        assert_eq!(status(&r), None);
        let strict = Admission {
            require_max_forwards: true,
            ..Admission::default()
        };
        assert_eq!(check_request(&r, &strict).unwrap_err().status, 400);
        r.uri = "im:bob@example.com".into();
        assert_eq!(status(&r), Some(416));
        r.uri = "tel:+15551234".into();
        assert_eq!(status(&r), None);
        r.uri = "sip:bob@example.com?Route=%3Csip:x%3E".into();
        assert_eq!(status(&r), Some(400));
        r.uri = "sip:bob@example.com".into();
        r.method = Method::Bye;
        assert_eq!(status(&r), Some(400));
        r.headers.remove("Call-ID");
        assert_eq!(admission(&r).unwrap_err().reason, "Missing Call-ID header");
    }

    #[test]
    fn multipart_sdp() {
        let body = "--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b1--\r\n";
        assert_eq!(
            status(&req("Content-Type: multipart/mixed;boundary=b1\r\n", body)),
            None
        );
        assert_eq!(
            status(&req(
                "Content-Type: multipart/mixed; boundary=\"zz\"\r\n",
                body
            )),
            Some(415)
        );
    }
}
