//! Building messages: header text, responses, the headers that cross legs, reason phrases.

use super::*;

pub(super) const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, MESSAGE, SUBSCRIBE, NOTIFY";

/// Option tags the core implements (RFC 3261 §8.2.2.3: a `Require` of anything else is 420):
/// reliable provisional responses (RFC 3262, `prack.rs`) and session timers (RFC 4028,
/// `timers.rs`).
pub(super) const SUPPORTED: &[&str] = &["100rel", "timer"];

/// `user@` for a SIP URI (RFC 3261 §25.1 `userinfo`), or nothing for an empty user (a dial plan
/// may rewrite the user away, a peer may send none): "sip:@host" is not a URI. Characters the
/// grammar does not allow in a user part are %-escaped (rewrites insert captured text as is).
pub(super) fn user_at(user: &str) -> String {
    if user.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(user.len() + 1);
    for b in user.bytes() {
        let ok = b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/%".contains(&b);
        if ok {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out.push('@');
    out
}

/// RFC 3261 §9.1: a CANCEL for `inv`: same Request-URI, top Via (branch), From, To, Call-ID
/// and CSeq number, method CANCEL.
pub(super) fn cancel_for(inv: &Request) -> Request {
    let mut h = Headers::with_capacity(8);
    if let Some(v) = inv.headers.get("Via") {
        h.push("Via", v.to_string());
    }
    h.push("Max-Forwards", "70");
    for n in ["From", "To", "Call-ID"] {
        if let Some(v) = inv.headers.get(n) {
            h.push(n, v.to_string());
        }
    }
    let seq = inv.cseq().map(|c| c.seq).unwrap_or(1);
    h.push("CSeq", format!("{seq} CANCEL"));
    Request {
        method: Method::Cancel,
        uri: inv.uri.clone(),
        headers: h,
        body: Vec::new(),
    }
}

/// RFC 3261 §8.2.6: a response copies Via, From, To, Call-ID and CSeq from the request and adds a
/// To tag when the request had none.
pub fn make_response(req: &Request, status: u16, reason: &str, to_tag: Option<&str>) -> Response {
    let mut h = Headers::with_capacity(16);
    for v in req.headers.get_all("Via") {
        h.push("Via", v.to_string());
    }
    if let Some(v) = req.headers.get("From") {
        h.push("From", v.to_string());
    }
    if let Some(v) = req.headers.get("To") {
        let has_tag = tag_param(v).is_some();
        match (has_tag, to_tag) {
            (false, Some(tag)) if status > 100 => h.push("To", cat(&[v, ";tag=", tag])),
            _ => h.push("To", v.to_string()),
        }
    }
    if let Some(v) = req.headers.get("Call-ID") {
        h.push("Call-ID", v.to_string());
    }
    if let Some(v) = req.headers.get("CSeq") {
        h.push("CSeq", v.to_string());
    }
    Response {
        status,
        reason: reason.to_string(),
        headers: h,
        body: Vec::new(),
    }
}

/// Headers that describe one hop or one dialog and never cross from one leg to the other.
pub const HOP_HEADERS: &[&str] = &[
    "Via",
    "Route",
    "Record-Route",
    "Contact",
    "Call-ID",
    "CSeq",
    "From",
    "To",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Authorization",
    "Proxy-Authorization",
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Supported",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "RSeq",
    "RAck",
    "Path",
    "Service-Route",
    "Warning",
    "Server",
    "Allow",
    "Session-Expires",
    "Min-SE",
    "Replaces",
];

/// Copy end-to-end headers (everything but [`HOP_HEADERS`]) from one leg's message to the other's.
pub(super) fn copy_passthrough(src: &Headers, dst: &mut Headers) {
    for h in src.iter() {
        if HOP_HEADERS.iter().any(|n| n.eq_ignore_ascii_case(&h.name)) {
            continue;
        }
        dst.push(&h.name, h.value.clone());
    }
}

/// Our address for transport `t` towards a peer of family `v6`: that transport's listener of
/// the family, else the family's UDP listener, else the same from the other family.
pub(super) fn local_addr(cfg: &CoreConfig, t: Transport, v6: bool) -> Option<SocketAddr> {
    let of = |v6: bool| {
        let (udp, tcp, tls) = if v6 {
            (cfg.local_udp_v6, cfg.local_tcp_v6, cfg.local_tls_v6)
        } else {
            (cfg.local_udp, cfg.local_tcp, cfg.local_tls)
        };
        let addr = match t {
            Transport::Udp => udp,
            Transport::Tcp => tcp,
            Transport::Tls => tls,
        };
        addr.or(udp)
    };
    of(v6).or_else(|| of(!v6))
}

/// `host:port` we put in Via/Contact for transport `t` towards a peer of family `v6` (an IPv6
/// address as an RFC 5118 reference, `[2001:db8::1]:5060`).
pub(super) fn local_addr_text(cfg: &CoreConfig, t: Transport, v6: bool) -> String {
    local_addr(cfg, t, v6)
        .map(|a| a.to_string())
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// Whether `peer` is reached over IPv6 (an IPv4-mapped address counts as IPv4).
pub(super) fn is_v6(peer: &Peer) -> bool {
    peer.addr.ip().to_canonical().is_ipv6()
}

/// Append `v` in lower-case hex, zero-padded to at least `width` digits (what `{:0width$x}`
/// gives, without the formatting machinery).
pub(super) fn push_hex(s: &mut String, v: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut n = 0;
    let mut x = v;
    loop {
        buf[15 - n] = DIGITS[(x & 0xf) as usize];
        n += 1;
        x >>= 4;
        if x == 0 {
            break;
        }
    }
    for _ in n..width.min(16) {
        s.push('0');
    }
    for &d in &buf[16 - n..] {
        s.push(char::from(d));
    }
}

/// The concatenation of `parts`, allocated once at its final size (the `format!` machinery was
/// ~4% of the core's instructions for these simple joins).
pub(super) fn cat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// `CSeq` value `<seq> <method>` (RFC 3261 §20.16).
pub(super) fn cseq_value(seq: u32, method: &str) -> String {
    let mut digits = [0u8; 10];
    let mut n = 0;
    let mut x = seq;
    loop {
        digits[9 - n] = b'0' + (x % 10) as u8;
        n += 1;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    let mut s = String::with_capacity(n + 1 + method.len());
    for &d in &digits[10 - n..] {
        s.push(char::from(d));
    }
    s.push(' ');
    s.push_str(method);
    s
}

/// A From/To value without its tag, as we send it back on that leg.
pub(super) fn without_tag(na: &NameAddr) -> String {
    let mut na = na.clone();
    na.params.retain(|(k, _)| !k.eq_ignore_ascii_case("tag"));
    na.to_string()
}

pub(super) fn quote_display(d: &str) -> String {
    let t = d.trim();
    if t.starts_with('"') {
        t.to_string()
    } else {
        format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

pub use crate::status::reason_phrase;

#[cfg(test)]
mod tests {
    use super::push_hex;

    #[test]
    fn push_hex_matches_format() {
        for v in [
            0u64,
            1,
            0xf,
            0x10,
            0xabc,
            u64::from(u32::MAX),
            u64::MAX,
            0x0123_4567_89ab_cdef,
        ] {
            for w in [1usize, 8, 16] {
                let mut s = String::new();
                push_hex(&mut s, v, w);
                assert_eq!(s, format!("{v:0w$x}"), "{v} width {w}");
            }
        }
    }

    #[test]
    fn cseq_value_and_cat_match_format() {
        for seq in [0u32, 1, 9, 10, 99, 100, 4711, u32::MAX] {
            assert_eq!(super::cseq_value(seq, "INVITE"), format!("{seq} INVITE"));
        }
        assert_eq!(super::cat(&["<sip:", "a", "@", "b", ">"]), "<sip:a@b>");
        assert_eq!(super::cat(&[]), "");
    }

    #[test]
    fn user_part_is_omitted_when_empty_and_escaped_otherwise() {
        assert_eq!(super::user_at(""), "");
        assert_eq!(super::user_at("+15551234567"), "+15551234567@");
        assert_eq!(super::user_at("a b@c"), "a%20b%40c@");
        assert_eq!(super::user_at("x;np=1%41"), "x;np=1%41@");
    }
}
