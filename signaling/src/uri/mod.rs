//! SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966), with a generic fallback for any
//! other scheme so a UAS can answer 416 Unsupported URI Scheme (RFC 3261 §8.2.2.1).
//!
//! RFC 3261 §19.1.1:
//! ```text
//! sip:user:password@host:port;uri-parameters?headers
//! ```
//! The user part is kept in its escaped (wire) form so that [`Uri`]'s `Display` re-emits what was
//! received; [`unescape`] decodes `%HH` sequences when the caller needs the characters.

use std::borrow::Cow;
use std::fmt;

/// A URI parameter: `name` or `name=value` (value kept escaped, as on the wire).
pub type Param = (String, Option<String>);

/// Why a URI did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriError(pub String);

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad URI: {}", self.0)
    }
}

impl std::error::Error for UriError {}

fn err<T>(s: impl Into<String>) -> Result<T, UriError> {
    Err(UriError(s.into()))
}

/// A `sip:` or `sips:` URI (RFC 3261 §19.1.1, §25.1 `SIP-URI` / `SIPS-URI`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    /// `true` for `sips:`.
    pub secure: bool,
    /// User part, escaped form as received (may contain `;`, `?`, `/`, RFC 3261 §25.1 `user`).
    pub user: Option<String>,
    pub password: Option<String>,
    /// Host name, IPv4 address, or IPv6 reference *with* its brackets (`[2001:db8::1]`).
    pub host: String,
    pub port: Option<u16>,
    /// `;name[=value]` parameters in order. Names compare case-insensitively.
    pub params: Vec<Param>,
    /// `?name=value&...` headers (RFC 3261 §19.1.1 "Headers"), escaped form.
    pub headers: Vec<(String, String)>,
}

/// A `tel:` URI (RFC 3966 §3).
///
/// ```text
/// telephone-uri = "tel:" telephone-subscriber
/// telephone-subscriber = global-number / local-number
/// global-number-digits = "+" *phonedigit DIGIT *phonedigit
/// local-number = local-number-digits *par context *par    ; context = ";phone-context=" descriptor
/// visual-separator = "-" / "." / "(" / ")"
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelUri {
    /// The number as written, including a leading `+` for global numbers and any visual
    /// separators.
    pub number: String,
    pub params: Vec<Param>,
}

impl TelUri {
    /// A global number starts with `+` (RFC 3966 §5.1.4).
    pub fn is_global(&self) -> bool {
        self.number.starts_with('+')
    }
    /// The number without visual separators (`+1-201-555-0123` -> `+12015550123`).
    pub fn digits(&self) -> String {
        self.number
            .chars()
            .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
            .collect()
    }
    /// The `phone-context` parameter (mandatory for local numbers, RFC 3966 §5.1.5).
    pub fn phone_context(&self) -> Option<&str> {
        find_param(&self.params, "phone-context").flatten()
    }
}

/// Any URI: SIP/SIPS, tel, or another scheme kept opaque.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    Tel(TelUri),
    /// Any other absolute URI (RFC 3261 §25.1 `absoluteURI`), e.g. `im:`, `http:`.
    Other {
        scheme: String,
        rest: String,
    },
}

fn find_param<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

// ---- character classes (RFC 3261 §25.1) ----

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// Checks `s` is made of `unreserved`, `escaped` (`%HH`) and the extra characters `extra`.
fn check_chars(s: &str, extra: &[u8], what: &str) -> Result<(), UriError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return err(format!("bad escape in {what}"));
            }
            i += 3;
            continue;
        }
        if !(is_unreserved(c) || extra.contains(&c)) {
            return err(format!("invalid character {:?} in {what}", c as char));
        }
        i += 1;
    }
    Ok(())
}

/// RFC 3261 §25.1 `user-unreserved`, plus `#`: RFC 3261 requires it escaped (%23), but PBXs and
/// gateways commonly send feature codes like `*67#` unescaped; refusing those calls with a 400
/// helps no one, and the user part is re-emitted exactly as received.
const USER_EXTRA: &[u8] = b"&=+$,;?/#";
const PASSWORD_EXTRA: &[u8] = b"&=+$,";
const PARAM_EXTRA: &[u8] = b"[]/:&+$";
const HEADER_EXTRA: &[u8] = b"[]/?:+$";

/// Decode `%HH` escapes (RFC 3261 §19.1.2). Invalid escapes are kept literally.
pub fn unescape_bytes(s: &str) -> Cow<'_, [u8]> {
    if !s.contains('%') {
        return Cow::Borrowed(s.as_bytes());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// Decode `%HH` escapes into text (invalid UTF-8 replaced by U+FFFD).
pub fn unescape(s: &str) -> Cow<'_, str> {
    match unescape_bytes(s) {
        Cow::Borrowed(_) => Cow::Borrowed(s),
        Cow::Owned(v) => match String::from_utf8(v) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
    }
}

/// Validate a `host` (RFC 3261 §25.1: hostname / IPv4address / IPv6reference).
pub(crate) fn check_host(h: &str) -> Result<(), UriError> {
    if h.is_empty() {
        return err("empty host");
    }
    if let Some(inner) = h.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return err("unterminated IPv6 reference");
        };
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return err("bad IPv6 reference");
        }
        if ipv6_address(inner).is_none() {
            return err("bad IPv6 address");
        }
        return Ok(());
    }
    // hostname = *( domainlabel "." ) toplabel [ "." ]; IPv4 is digits and dots. We accept `_`
    // (seen in the wild in SRV-style names) but nothing else outside alphanum / "-" / ".".
    if !h
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
    {
        return err("invalid character in host");
    }
    if h.starts_with('.') || h.contains("..") {
        return err("empty host label");
    }
    Ok(())
}

//= rfc5118#section-4.10
//# following the Robustness Principle [RFC1122], an implementation must tolerate both of the
//# above constructs.
/// The address inside an IPv6 reference's brackets (RFC 4291 §2.2 text form), with the one
/// construct RFC 5118 §4.10 requires tolerating: RFC 3261's `IPv6address` production, inherited
/// from the obsoleted RFC 2373, derives `2001:db8:::192.0.2.1` (`hexpart` ending in `::`, then
/// `":" IPv4address`), and "following the Robustness Principle [RFC1122], an implementation must
/// tolerate both of the above constructs". So a run of exactly three colons immediately before an
/// embedded IPv4 address that ends the text reads as `::`; everything else is RFC 4291's grammar
/// (the rewritten text still goes through the same parser, so `1::2:::192.0.2.1`, `2001:db8:::10`
/// or `::::192.0.2.1` stay invalid).
fn ipv6_address(inner: &str) -> Option<std::net::Ipv6Addr> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    if let Ok(a) = inner.parse::<Ipv6Addr>() {
        return Some(a);
    }
    let i = inner.find(":::")?;
    let tail = &inner[i + 3..];
    if tail.starts_with(':') || inner[..i].ends_with(':') || tail.parse::<Ipv4Addr>().is_err() {
        return None;
    }
    format!("{}::{tail}", &inner[..i]).parse().ok()
}

/// The address of a host written as an IPv6 reference (`[2001:db8::1]`, RFC 3261 §25.1
/// `IPv6reference`), `None` for a host name, an IPv4 address or anything else.
pub fn ipv6_reference(host: &str) -> Option<std::net::Ipv6Addr> {
    ipv6_address(host.strip_prefix('[')?.strip_suffix(']')?)
}

/// Whether two URI hosts name the same host: IPv6 references by address (RFC 5954 §3: the
/// textual forms of one address vary), everything else case-insensitively.
pub fn same_host(a: &str, b: &str) -> bool {
    match (ipv6_reference(a), ipv6_reference(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// Split `host[:port]` where host may be an IPv6 reference.
pub(crate) fn split_host_port(s: &str) -> Result<(&str, Option<u16>), UriError> {
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(i) => {
                let (h, rest) = s.split_at(i + 1);
                if rest.is_empty() {
                    (h, None)
                } else if let Some(p) = rest.strip_prefix(':') {
                    (h, Some(p))
                } else {
                    return err("garbage after IPv6 reference");
                }
            }
            None => return err("unterminated IPv6 reference"),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    check_host(host)?;
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
                return err("bad port");
            }
            Some(
                p.parse::<u16>()
                    .map_err(|_| UriError("port out of range".into()))?,
            )
        }
    };
    Ok((host, port))
}

/// Walk `;`-separated parameters (the text after the first ';'), validating each and handing it
/// to `sink` (borrowed, so validation alone allocates nothing).
fn walk_params<'a>(
    s: &'a str,
    extra: &[u8],
    mut sink: impl FnMut(&'a str, Option<&'a str>),
) -> Result<(), UriError> {
    for p in s.split(';') {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        };
        if k.is_empty() {
            return err("empty parameter name");
        }
        check_chars(k, extra, "parameter name")?;
        if let Some(v) = v {
            if v.is_empty() {
                return err("empty parameter value");
            }
            check_chars(v, extra, "parameter value")?;
        }
        sink(k, v);
    }
    Ok(())
}

fn parse_params(s: &str, extra: &[u8]) -> Result<Vec<Param>, UriError> {
    let mut out = Vec::new();
    walk_params(s, extra, |k, v| {
        out.push((k.to_string(), v.map(str::to_string)))
    })?;
    Ok(out)
}

/// The borrowed pieces of a SIP URI after the scheme.
struct SipParts<'a> {
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: &'a str,
    port: Option<u16>,
}

/// Parse and validate what follows `sip:`; parameters and headers go to the sinks.
fn sip_parts<'a>(
    rest: &'a str,
    on_param: impl FnMut(&'a str, Option<&'a str>),
    mut on_header: impl FnMut(&'a str, &'a str),
) -> Result<SipParts<'a>, UriError> {
    // '@' cannot appear unescaped in user, password, parameters or headers, so the first one
    // ends the userinfo; the user part itself may contain ';', '?' and '/' (RFC 3261 §25.1).
    let (userinfo, after) = match rest.find('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (u, p) = match ui.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            if u.is_empty() {
                return err("empty user part");
            }
            check_chars(u, USER_EXTRA, "user part")?;
            if let Some(p) = p {
                check_chars(p, PASSWORD_EXTRA, "password")?;
            }
            (Some(u), p)
        }
    };
    let (hp_params, headers) = match after.split_once('?') {
        Some((a, h)) => (a, Some(h)),
        None => (after, None),
    };
    let (hostport, params) = match hp_params.split_once(';') {
        Some((a, p)) => (a, Some(p)),
        None => (hp_params, None),
    };
    let (host, port) = split_host_port(hostport)?;
    if let Some(p) = params {
        walk_params(p, PARAM_EXTRA, on_param)?;
    }
    if let Some(h) = headers {
        for kv in h.split('&') {
            let Some((k, v)) = kv.split_once('=') else {
                return err("URI header without '='");
            };
            if k.is_empty() {
                return err("empty URI header name");
            }
            check_chars(k, HEADER_EXTRA, "URI header name")?;
            check_chars(v, HEADER_EXTRA, "URI header value")?;
            on_header(k, v);
        }
    }
    Ok(SipParts {
        user,
        password,
        host,
        port,
    })
}

fn is_scheme(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

impl SipUri {
    /// Parse what follows `sip:` / `sips:`.
    fn parse_rest(secure: bool, rest: &str) -> Result<SipUri, UriError> {
        let mut params = Vec::new();
        let mut headers = Vec::new();
        let p = sip_parts(
            rest,
            |k, v| params.push((k.to_string(), v.map(str::to_string))),
            |k, v| headers.push((k.to_string(), v.to_string())),
        )?;
        Ok(SipUri {
            secure,
            user: p.user.map(str::to_string),
            password: p.password.map(str::to_string),
            host: p.host.to_string(),
            port: p.port,
            params,
            headers,
        })
    }
}

impl TelUri {
    fn parse_rest(rest: &str) -> Result<TelUri, UriError> {
        let (number, params) = match rest.split_once(';') {
            Some((n, p)) => (n, Some(p)),
            None => (rest, None),
        };
        let params = match params {
            Some(p) => parse_params(p, PARAM_EXTRA)?,
            None => Vec::new(),
        };
        let visual = |c: u8| matches!(c, b'-' | b'.' | b'(' | b')');
        if let Some(digits) = number.strip_prefix('+') {
            // global-number-digits = "+" *phonedigit DIGIT *phonedigit
            if !digits.bytes().all(|c| c.is_ascii_digit() || visual(c))
                || !digits.bytes().any(|c| c.is_ascii_digit())
            {
                return err("bad global number");
            }
        } else {
            // local-number-digits = *phonedigit-hex (HEXDIG / "*" / "#") *phonedigit-hex
            if !number
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b'*' || c == b'#' || visual(c))
                || !number
                    .bytes()
                    .any(|c| c.is_ascii_hexdigit() || c == b'*' || c == b'#')
            {
                return err("bad local number");
            }
            // RFC 3966 §5.1.5: local numbers MUST carry a phone-context.
            if find_param(&params, "phone-context").flatten().is_none() {
                return err("local tel number without phone-context");
            }
        }
        Ok(TelUri {
            number: number.to_string(),
            params,
        })
    }
}

impl Uri {
    /// Parse a URI. No whitespace is allowed anywhere (RFC 3261 §25.1, RFC 4475 §3.1.2.7).
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        if s.bytes()
            .any(|c| c <= b' ' || c == 0x7f || c == b'<' || c == b'>' || c == b'"')
        {
            return err("whitespace, control character, '<', '>' or '\"' in URI");
        }
        let Some((scheme, rest)) = s.split_once(':') else {
            return err("no scheme");
        };
        if !is_scheme(scheme) {
            return err("bad scheme");
        }
        if scheme.eq_ignore_ascii_case("sip") {
            Ok(Uri::Sip(SipUri::parse_rest(false, rest)?))
        } else if scheme.eq_ignore_ascii_case("sips") {
            Ok(Uri::Sip(SipUri::parse_rest(true, rest)?))
        } else if scheme.eq_ignore_ascii_case("tel") {
            Ok(Uri::Tel(TelUri::parse_rest(rest)?))
        } else {
            if rest.is_empty() || !rest.is_ascii() {
                return err("empty or non-ASCII opaque URI");
            }
            Ok(Uri::Other {
                scheme: scheme.to_string(),
                rest: rest.to_string(),
            })
        }
    }

    /// Check that `s` would parse, without building a [`Uri`] (no allocation for SIP URIs).
    pub fn validate(s: &str) -> Result<(), UriError> {
        if s.bytes()
            .any(|c| c <= b' ' || c == 0x7f || c == b'<' || c == b'>' || c == b'"')
        {
            return err("whitespace, control character, '<', '>' or '\"' in URI");
        }
        match s.split_once(':') {
            Some((scheme, rest))
                if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") =>
            {
                sip_parts(rest, |_, _| {}, |_, _| {}).map(|_| ())
            }
            _ => Uri::parse(s).map(|_| ()),
        }
    }

    /// The scheme in lower case for sip/sips/tel, as written otherwise.
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The user part (escaped form) of a SIP URI, or the number (as written) of a tel URI.
    pub fn user(&self) -> Option<&str> {
        match self {
            Uri::Sip(u) => u.user.as_deref(),
            Uri::Tel(t) => Some(&t.number),
            Uri::Other { .. } => None,
        }
    }

    /// The user part with `%HH` escapes decoded.
    pub fn user_unescaped(&self) -> Option<Cow<'_, str>> {
        self.user().map(unescape)
    }

    /// Replace (or with `None` remove) the user part of a SIP URI. The value must already be
    /// in escaped form. No effect on other schemes except tel, where it replaces the number.
    pub fn set_user(&mut self, user: Option<&str>) {
        match self {
            Uri::Sip(u) => u.user = user.map(str::to_string),
            Uri::Tel(t) => {
                if let Some(n) = user {
                    t.number = n.to_string();
                }
            }
            Uri::Other { .. } => {}
        }
    }

    /// Host and port of a SIP URI.
    pub fn host_port(&self) -> Option<(&str, Option<u16>)> {
        match self {
            Uri::Sip(u) => Some((&u.host, u.port)),
            _ => None,
        }
    }

    /// Replace host and port of a SIP URI (no effect on other schemes).
    pub fn set_host_port(&mut self, host: &str, port: Option<u16>) {
        if let Uri::Sip(u) = self {
            u.host = host.to_string();
            u.port = port;
        }
    }

    pub fn params(&self) -> &[Param] {
        match self {
            Uri::Sip(u) => &u.params,
            Uri::Tel(t) => &t.params,
            Uri::Other { .. } => &[],
        }
    }

    fn params_mut(&mut self) -> Option<&mut Vec<Param>> {
        match self {
            Uri::Sip(u) => Some(&mut u.params),
            Uri::Tel(t) => Some(&mut t.params),
            Uri::Other { .. } => None,
        }
    }

    /// Parameter lookup, name case-insensitive. `Some(None)` is a parameter without value
    /// (`;lr`), `Some(Some(v))` one with a value, `None` an absent one.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(self.params(), name)
    }

    pub fn has_param(&self, name: &str) -> bool {
        self.param(name).is_some()
    }

    /// Set (replace or append) a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        if let Some(ps) = self.params_mut() {
            let v = value.map(str::to_string);
            match ps.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
                Some(p) => p.1 = v,
                None => ps.push((name.to_string(), v)),
            }
        }
    }

    pub fn remove_param(&mut self, name: &str) {
        if let Some(ps) = self.params_mut() {
            ps.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        }
    }

    /// URI headers (`?a=b`) of a SIP URI.
    pub fn headers(&self) -> &[(String, String)] {
        match self {
            Uri::Sip(u) => &u.headers,
            _ => &[],
        }
    }

    /// RFC 3261 §19.1.4 URI comparison.
    ///
    /// "A SIP and SIPS URI are never equivalent." "Comparison of the userinfo of SIP and SIPS
    /// URIs is case-sensitive." "Comparison of all other components of the URI is
    /// case-insensitive unless explicitly defined otherwise." "Characters other than those in
    /// the 'reserved' set are equivalent to their '%' HEX HEX encoding." "An IP address that is
    /// the result of a DNS lookup of a host name does not match that host name." "A URI omitting
    /// any component with a default value will not match a URI explicitly containing that
    /// component with its default value." URI parameters: user, ttl, method, maddr and transport
    /// must match when present in either; other parameters are compared only when present in
    /// both. Headers must all match, in any order.
    pub fn equivalent(&self, other: &Uri) -> bool {
        match (self, other) {
            (Uri::Sip(a), Uri::Sip(b)) => {
                if a.secure != b.secure
                    || !opt_eq(&a.user, &b.user, false)
                    || !opt_eq(&a.password, &b.password, false)
                    || !same_host(&a.host, &b.host)
                    || a.port != b.port
                {
                    return false;
                }
                for name in ["user", "ttl", "method", "maddr", "transport"] {
                    let pa = find_param(&a.params, name);
                    let pb = find_param(&b.params, name);
                    match (pa, pb) {
                        (None, None) => {}
                        (Some(x), Some(y)) if opt_str_eq(x, y) => {}
                        _ => return false,
                    }
                }
                for (k, v) in &a.params {
                    if let Some(w) = find_param(&b.params, k) {
                        if !opt_str_eq(v.as_deref(), w) {
                            return false;
                        }
                    }
                }
                if a.headers.len() != b.headers.len() {
                    return false;
                }
                a.headers.iter().all(|(k, v)| {
                    b.headers.iter().any(|(k2, v2)| {
                        k.eq_ignore_ascii_case(k2) && unescape_bytes(v) == unescape_bytes(v2)
                    })
                })
            }
            (Uri::Tel(a), Uri::Tel(b)) => {
                a.digits() == b.digits()
                    && a.params.len() == b.params.len()
                    && a.params.iter().all(|(k, v)| {
                        find_param(&b.params, k).is_some_and(|w| opt_str_eq(v.as_deref(), w))
                    })
            }
            (
                Uri::Other {
                    scheme: s1,
                    rest: r1,
                },
                Uri::Other {
                    scheme: s2,
                    rest: r2,
                },
            ) => s1.eq_ignore_ascii_case(s2) && r1 == r2,
            _ => false,
        }
    }
}

fn opt_eq(a: &Option<String>, b: &Option<String>, ci: bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => {
            let (x, y) = (unescape_bytes(x), unescape_bytes(y));
            if ci {
                x.eq_ignore_ascii_case(&y)
            } else {
                x == y
            }
        }
        _ => false,
    }
}

fn opt_str_eq(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => unescape_bytes(x).eq_ignore_ascii_case(&unescape_bytes(y)),
        _ => false,
    }
}

pub(crate) fn write_params(f: &mut fmt::Formatter<'_>, params: &[Param]) -> fmt::Result {
    for (k, v) in params {
        match v {
            Some(v) => write!(f, ";{k}={v}")?,
            None => write!(f, ";{k}")?,
        }
    }
    Ok(())
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => {
                f.write_str(if u.secure { "sips:" } else { "sip:" })?;
                if let Some(user) = &u.user {
                    f.write_str(user)?;
                    if let Some(p) = &u.password {
                        write!(f, ":{p}")?;
                    }
                    f.write_str("@")?;
                }
                f.write_str(&u.host)?;
                if let Some(p) = u.port {
                    write!(f, ":{p}")?;
                }
                write_params(f, &u.params)?;
                for (i, (k, v)) in u.headers.iter().enumerate() {
                    write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
                }
                Ok(())
            }
            Uri::Tel(t) => {
                write!(f, "tel:{}", t.number)?;
                write_params(f, &t.params)
            }
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

impl std::str::FromStr for Uri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Uri, UriError> {
        Uri::parse(s)
    }
}

#[cfg(test)]
mod tests;
