//! The bridge as a SIP user agent client towards the core, for the calls a gateway's line
//! originates (INVITE, ACK, CANCEL, BYE) and for the BYE that ends a call the gateway lost.
//! The core is on loopback; requests are still retransmitted over UDP (RFC 3261 section
//! 17.1.1.2 Timer A, doubling from T1 = 500 ms) until a response, and given up at 64*T1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use signaling::message::{Headers, Method, Request, Response, SipMessage};

/// The CANCEL of an INVITE is retransmitted under the INVITE's branch with this suffix.
pub(crate) const CANCEL_SUFFIX: &str = "-cancel";

/// RFC 3261 T1.
pub(crate) const T1: Duration = Duration::from_millis(500);

/// The client side of one dialog with the core.
#[derive(Clone, Debug)]
pub(crate) struct Dialog {
    pub call_id: String,
    /// `<sip:user@host>` with our tag.
    pub local: String,
    /// The core's side, its tag once it answered.
    pub remote: String,
    pub cseq: u32,
    /// Where in-dialog requests go: the Request-URI (the core's Contact once known).
    pub target: String,
    /// This gateway's bridge SIP address (Via sent-by, Contact).
    pub me: SocketAddr,
    /// The core's SIP address.
    pub core: SocketAddr,
}

fn header_value(v: &str, tag: &str) -> String {
    format!("{v};tag={tag}")
}

impl Dialog {
    /// A new dialog for a call from `from_user` (the line's number) to `to_user` (the digits).
    pub fn new(
        call_id: String,
        tag: &str,
        gw: &str,
        from_user: &str,
        to_user: &str,
        me: SocketAddr,
        core: SocketAddr,
    ) -> Dialog {
        let from = format!("<sip:{from_user}@{gw}{}>", crate::HOST_SUFFIX);
        Dialog {
            call_id,
            local: header_value(&from, tag),
            remote: format!("<sip:{to_user}@{core}>"),
            cseq: 0,
            target: format!("sip:{to_user}@{core}"),
            me,
            core,
        }
    }

    /// The dialog of a call the core placed to the bridge (`invite`), seen from our side:
    /// for a BYE the bridge sends when the gateway ends the call.
    pub fn of_uas(invite: &Request, to_tag: &str, me: SocketAddr, core: SocketAddr) -> Dialog {
        let to = invite.headers.get("To").unwrap_or("<sip:gw@invalid>");
        let local = if to.contains(";tag=") {
            to.to_string()
        } else {
            header_value(to, to_tag)
        };
        let target = invite
            .headers
            .get("Contact")
            .and_then(|c| {
                let s = c.find('<')? + 1;
                let e = c[s..].find('>')? + s;
                Some(c[s..e].to_string())
            })
            .unwrap_or_else(|| format!("sip:{core}"));
        Dialog {
            call_id: invite.call_id().unwrap_or("").to_string(),
            local,
            remote: invite.headers.get("From").unwrap_or("").to_string(),
            // the core's CSeq numbers are its own; ours start here (RFC 3261 12.2.1.1)
            cseq: 100,
            target,
            me,
            core,
        }
    }

    fn base(&self, method: Method, branch: &str, cseq: u32, uri: &str) -> Request {
        let mut h = Headers::with_capacity(10);
        h.push(
            "Via",
            format!("SIP/2.0/UDP {};branch={branch};rport", self.me),
        );
        h.push("Max-Forwards", "70");
        h.push("From", self.local.clone());
        h.push("To", self.remote.clone());
        h.push("Call-ID", self.call_id.clone());
        h.push("CSeq", format!("{cseq} {}", method.as_str()));
        Request {
            method,
            uri: uri.to_string(),
            headers: h,
            body: Vec::new(),
        }
    }

    fn contact(&self, user: &str) -> String {
        format!("<sip:{user}@{}>", self.me)
    }

    /// The INVITE with the gateway's SDP.
    pub fn invite(&mut self, branch: &str, contact_user: &str, sdp: &str) -> Request {
        self.cseq += 1;
        let mut r = self.base(Method::Invite, branch, self.cseq, &self.target.clone());
        r.headers.push("Contact", self.contact(contact_user));
        r.headers.push("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS");
        r.headers.push("Content-Type", "application/sdp");
        r.body = sdp.as_bytes().to_vec();
        r.headers.push("Content-Length", r.body.len().to_string());
        r
    }

    /// A new request in the dialog (BYE).
    pub fn request(&mut self, method: Method, branch: &str) -> Request {
        self.cseq += 1;
        let mut r = self.base(method, branch, self.cseq, &self.target.clone());
        r.headers.push("Content-Length", "0");
        r
    }

    /// CANCEL of `invite` (same branch, CSeq number, Request-URI: RFC 3261 9.1).
    pub fn cancel(&self, invite: &Request) -> Request {
        let branch = branch_of(invite).unwrap_or_default();
        let mut r = self.base(Method::Cancel, &branch, cseq_of(invite), &invite.uri);
        r.headers.set("To", invite.headers.get("To").unwrap_or(""));
        r.headers.push("Content-Length", "0");
        r
    }

    /// The ACK for a response to `invite`: for a 2xx a new transaction to the remote target
    /// (RFC 3261 13.2.2.4), for others the INVITE's branch and Request-URI (17.1.1.3).
    pub fn ack(&self, invite: &Request, resp: &Response, new_branch: &str) -> Request {
        let ok = (200..300).contains(&resp.status);
        let branch = if ok {
            new_branch.to_string()
        } else {
            branch_of(invite).unwrap_or_default()
        };
        let uri = if ok {
            self.target.clone()
        } else {
            invite.uri.clone()
        };
        let mut r = self.base(Method::Ack, &branch, cseq_of(invite), &uri);
        r.headers.set(
            "To",
            resp.headers.get("To").unwrap_or(&self.remote).to_string(),
        );
        r.headers.push("Content-Length", "0");
        r
    }

    /// A 2xx (or 1xx with a tag) fixed the core's tag and Contact.
    pub fn confirm(&mut self, resp: &Response) {
        if let Some(to) = resp.headers.get("To") {
            self.remote = to.to_string();
        }
        if let Some(c) = resp.headers.get("Contact") {
            if let (Some(s), Some(e)) = (c.find('<'), c.find('>')) {
                if s < e {
                    self.target = c[s + 1..e].to_string();
                }
            }
        }
    }
}

/// The top Via's branch.
pub(crate) fn branch_of(r: &Request) -> Option<String> {
    via_branch(r.headers.get("Via")?)
}

pub(crate) fn via_branch(via: &str) -> Option<String> {
    via.split(';')
        .find_map(|p| p.trim().strip_prefix("branch="))
        .map(|b| b.trim().to_string())
}

fn cseq_of(r: &Request) -> u32 {
    r.headers
        .get("CSeq")
        .and_then(|c| c.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// The method of a response's CSeq.
pub(crate) fn cseq_method(r: &Response) -> Option<Method> {
    r.headers
        .get("CSeq")
        .and_then(|c| c.split_whitespace().nth(1))
        .map(Method::from_token)
}

/// A request the bridge sent and retransmits until a response (INVITE: any; others: final).
pub(crate) struct ClientTx {
    /// The gateway whose address it is sent from.
    pub gw: String,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
    pub method: Method,
    pub call_id: String,
    pub next: Instant,
    pub interval: Duration,
    pub deadline: Instant,
    /// An INVITE that got a provisional response: no more retransmissions, kept until its
    /// final response (which must be ACKed) or [`PROCEEDING_LIMIT`].
    pub proceeding: bool,
}

/// How long an INVITE may stay unanswered after a provisional response (longer than any
/// ringing the core allows, `sip.ringing_timeout` at most 3600 s).
pub(crate) const PROCEEDING_LIMIT: Duration = Duration::from_secs(3700);

impl ClientTx {
    pub fn new(req: &Request, gw: &str, to: SocketAddr, now: Instant) -> ClientTx {
        ClientTx {
            gw: gw.to_string(),
            to,
            bytes: SipMessage::Request(req.clone()).to_bytes(),
            method: req.method.clone(),
            call_id: req.call_id().unwrap_or("").to_string(),
            next: now + T1,
            interval: T1,
            deadline: now + 64 * T1,
            proceeding: false,
        }
    }

    /// Due: resend (back-off to T2 = 4 s) and say so.
    pub fn due(&mut self, now: Instant) -> bool {
        if self.proceeding || now < self.next {
            return false;
        }
        self.interval = (self.interval * 2).min(Duration::from_secs(4));
        self.next = now + self.interval;
        true
    }
}
