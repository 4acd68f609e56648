//! Message helpers for matching: the top Via, CSeq, tags, the server key, received/rport,
//! and the messages the layer builds itself (100 Trying, ACK for a non-2xx).

use super::*;

// ------------------------------------------------------------------------------------------------
// message helpers (private; the structured views of `crate::headers` are not needed for the few
// fields transaction matching reads)

/// The first value of the first Via header line, and the rest of that line.
pub(super) fn split_first_element(value: &str) -> (&str, &str) {
    // Bytes, not chars: the three delimiters are ASCII, so a match is always a char boundary
    // (decoding chars made this scan ~4% of the core's instructions per call).
    let mut in_quote = false;
    let mut escaped = false;
    for (i, &c) in value.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            b'\\' if in_quote => escaped = true,
            b'"' => in_quote = !in_quote,
            b',' if !in_quote => return (&value[..i], &value[i..]),
            _ => {}
        }
    }
    (value, "")
}

/// A view of one Via value: `SIP/2.0/UDP host:port;param=value;...` (§20.42). Whitespace is
/// allowed around the slashes.
pub(super) struct ViaView<'a> {
    /// Everything before the first `;` (protocol and sent-by), as on the wire.
    head: &'a str,
    pub(super) sent_by: &'a str,
    params: &'a str,
}

impl<'a> ViaView<'a> {
    pub(super) fn parse(value: &'a str) -> Option<ViaView<'a>> {
        let value = value.trim();
        let (head, params) = match value.find(';') {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, ""),
        };
        let slash = head.rfind('/')?;
        let after = head.get(slash + 1..)?.trim_start();
        let ws = after.find(|c: char| c.is_ascii_whitespace())?;
        let sent_by = after.get(ws..)?.trim();
        if sent_by.is_empty() {
            return None;
        }
        Some(ViaView {
            head,
            sent_by,
            params,
        })
    }

    pub(super) fn params(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
        self.params
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.find('=') {
                Some(i) => (p[..i].trim(), Some(p[i + 1..].trim())),
                None => (p, None),
            })
    }

    pub(super) fn param(&self, name: &str) -> Option<&'a str> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.unwrap_or(""))
    }

    pub(super) fn has_param(&self, name: &str) -> bool {
        self.params().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The host of sent-by, without brackets or port.
    pub(super) fn host(&self) -> &'a str {
        let s = self.sent_by;
        if let Some(rest) = s.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        s.split(':').next().unwrap_or(s)
    }
}

pub(super) fn top_via(headers: &Headers) -> Option<ViaView<'_>> {
    let line = headers.get("Via")?;
    ViaView::parse(split_first_element(line).0)
}

/// `CSeq: 4711 INVITE` (§20.16).
pub(super) fn parse_cseq(value: &str) -> Option<(u32, Method)> {
    let mut it = value.split_ascii_whitespace();
    let num = it.next()?.parse().ok()?;
    let method = Method::from_token(it.next()?);
    Some((num, method))
}

/// The `tag` parameter of a From/To value (name-addr or addr-spec, §20.20, §20.39).
pub(crate) fn tag_param(value: &str) -> Option<&str> {
    // Header parameters start after the closing '>' of a name-addr, or after the first ';' of
    // a bare addr-spec (whose own URI parameters are then header parameters, §20.10).
    // Bytes, not chars: every delimiter is ASCII, so each match is a char boundary.
    let mut in_quote = false;
    let mut escaped = false;
    let mut params_at = None;
    let mut open = false;
    for (i, &c) in value.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            b'\\' if in_quote => escaped = true,
            b'"' if !open => in_quote = !in_quote,
            b'<' if !in_quote => open = true,
            b'>' if open => {
                params_at = Some(i + 1);
                break;
            }
            b';' if !in_quote && !open => {
                params_at = Some(i);
                break;
            }
            _ => {}
        }
    }
    let params = value.get(params_at?..)?;
    params.split(';').find_map(|p| {
        let p = p.trim();
        let (n, v) = p.split_once('=')?;
        n.trim().eq_ignore_ascii_case("tag").then(|| v.trim())
    })
}

/// §17.2.3 matching key of a request (ACK keeps its own method here; callers map it to INVITE).
pub(super) fn server_key(req: &Request) -> Option<ServerKey> {
    let via = top_via(&req.headers)?;
    let (cseq, _) = req.headers.get("CSeq").and_then(parse_cseq)?;
    let method = if req.method == Method::Ack {
        Method::Invite
    } else {
        req.method.clone()
    };
    if let Some(branch) = via.param("branch") {
        // "The branch parameter in the topmost Via header field of the request is examined. If
        // it is present and begins with the magic cookie "z9hG4bK", the request was generated by
        // a client transaction compliant to this specification." A branch that is the bare
        // cookie identifies nothing (the shape of RFC 4475's "badbranch"): treat it as RFC 2543.
        if branch.len() > MAGIC_COOKIE.len() && branch.starts_with(MAGIC_COOKIE) {
            return Some(ServerKey::Branch {
                branch: branch.to_string(),
                sent_by: via.sent_by.to_ascii_lowercase(),
                method,
            });
        }
    }
    let h = &req.headers;
    Some(ServerKey::Legacy {
        uri: req.uri.trim().to_string(),
        to_tag: h.get("To").and_then(tag_param).unwrap_or("").to_string(),
        from_tag: h.get("From").and_then(tag_param).unwrap_or("").to_string(),
        call_id: h.get("Call-ID").unwrap_or("").trim().to_string(),
        cseq,
        method,
        via: split_first_element(h.get("Via").unwrap_or(""))
            .0
            .trim()
            .to_string(),
    })
}

/// §18.2.1: "When the server transport receives a request over any transport, it MUST examine the
/// value of the "sent-by" parameter in the top Via header field value. If the host portion of the
/// "sent-by" parameter contains a domain name, or if it contains an IP address that differs from
/// the packet source address, the server MUST add a "received" parameter to that Via header field
/// value." RFC 3581 §4: if the top Via has an "rport" parameter with no value, "it MUST set the
/// value of the parameter to the source port of the request" and add "received" "even if it is
/// identical to the value of the "sent-by" component".
pub(super) fn set_received(headers: &mut Headers, from: Peer) {
    let Some(pos) = headers
        .0
        .iter()
        .position(|h| h.name.eq_ignore_ascii_case("Via"))
    else {
        return;
    };
    let Some(line) = headers.0.get(pos) else {
        return;
    };
    let (first, rest) = split_first_element(&line.value);
    let Some(via) = ViaView::parse(first) else {
        return;
    };
    let src_ip = from.addr.ip().to_canonical();
    let rport = via.has_param("rport");
    let host_matches = via.host().parse::<IpAddr>().is_ok_and(|ip| ip == src_ip);
    if host_matches && !rport {
        return;
    }
    let mut out = String::with_capacity(first.len() + 40);
    out.push_str(via.head.trim());
    for (name, value) in via.params() {
        if name.eq_ignore_ascii_case("received") {
            continue;
        }
        out.push(';');
        if name.eq_ignore_ascii_case("rport") {
            out.push_str(name);
            let _ = write!(out, "={}", from.addr.port());
        } else {
            out.push_str(name);
            if let Some(v) = value {
                out.push('=');
                out.push_str(v);
            }
        }
    }
    let _ = write!(out, ";received={src_ip}");
    out.push_str(rest);
    if let Some(h) = headers.0.get_mut(pos) {
        h.value = out;
    }
}

/// The 100 (Trying) of §17.2.1, built as §8.2.6 says: "the From, Call-ID, CSeq and Via header
/// fields (and the To header field, with no tag added) ... copied from the request", plus the
/// Timestamp (§8.2.6.1).
pub(super) fn trying_for(req: &Request) -> Vec<u8> {
    // Written straight to bytes (the same bytes `Response::to_bytes` gives for this response):
    // no intermediate header list to build and drop for every INVITE.
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"SIP/2.0 100 Trying\r\n");
    for h in req.headers.iter() {
        let n = h.name.as_str();
        if ["Via", "From", "To", "Call-ID", "CSeq", "Timestamp"]
            .iter()
            .any(|k| n.eq_ignore_ascii_case(k))
        {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    out
}

pub(super) fn ack_template(req: &Request) -> AckTemplate {
    let h = &req.headers;
    AckTemplate {
        uri: req.uri.clone(),
        via: h
            .get("Via")
            .map(|v| split_first_element(v).0.trim().to_string())
            .unwrap_or_default(),
        from: h.get("From").unwrap_or("").to_string(),
        call_id: h.get("Call-ID").unwrap_or("").to_string(),
        cseq: h.get("CSeq").and_then(parse_cseq).map(|c| c.0).unwrap_or(0),
        routes: h.get_all("Route").map(str::to_string).collect(),
    }
}

/// §17.1.1.3: "The ACK request constructed by the client transaction MUST contain values for the
/// Call-ID, From, and Request-URI that are equal to the values of those header fields in the
/// request passed to the transport by the client transaction ... The To header field in the ACK
/// MUST equal the To header field in the response being acknowledged ... The ACK MUST contain a
/// single Via header field, and this MUST be equal to the top Via header field of the original
/// request. The CSeq header field in the ACK MUST contain the same value for the sequence number
/// as was present in the original request, but the method parameter MUST be equal to "ACK". If
/// the INVITE request whose response is being acknowledged had Route header fields, those header
/// fields MUST appear in the ACK."
pub(super) fn build_ack(tpl: &AckTemplate, resp: &Response) -> Request {
    let mut headers = Headers::with_capacity(8);
    headers.push("Via", tpl.via.clone());
    for r in &tpl.routes {
        headers.push("Route", r.clone());
    }
    headers.push("Max-Forwards", "70");
    headers.push("From", tpl.from.clone());
    headers.push("To", resp.headers.get("To").unwrap_or("").to_string());
    headers.push("Call-ID", tpl.call_id.clone());
    headers.push("CSeq", format!("{} ACK", tpl.cseq));
    Request {
        method: Method::Ack,
        uri: tpl.uri.clone(),
        headers,
        body: Vec::new(),
    }
}

/// Serialize once (`crate::parse`'s writer: headers in order, Content-Length equal to the body).
pub(super) fn encode_request(req: &Request) -> Vec<u8> {
    req.to_bytes()
}

pub(super) fn encode_response(resp: &Response) -> Vec<u8> {
    resp.to_bytes()
}

pub(super) fn encode(msg: &SipMessage) -> Vec<u8> {
    msg.to_bytes()
}
