//! trunkline registering with a carrier (RFC 3261 §10.2, as a UAC). One [`Registration`] per
//! trunk with `register:`. Sans-IO: it says when it wants to send ([`Registration::poll_timeout`]),
//! builds the REGISTER ([`Registration::poll_request`]) and is told how it went
//! ([`Registration::on_response`], [`Registration::on_failure`]).
//!
//! States: `Due(at)` → a REGISTER is sent at `at` → `Pending` → a 2xx makes it
//! `Registered { refresh_at }` (half the granted expiry) → `Due(refresh_at)`; a 401/407 is
//! answered once per nonce ([`DigestClient`]); a 423 raises the expiry to the carrier's
//! Min-Expires and tries again at once; any other failure, a timeout or a transport error backs
//! off exponentially (10 s doubling to 5 min) → `Due`. [`Registration::unregister`] sends
//! `Expires: 0` (graceful shutdown) and stops.

use std::time::{Duration, Instant};

use crate::digest_client::{Credentials, DigestClient, Refused, RequestParts};
use crate::headers::Contact;
use crate::message::{Headers, Method, Request, Response};

/// First back-off after a failed registration, doubled per failure in a row up to
/// [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A Min-Expires above this is not followed (a day, like `register.expires`' own bound).
const MAX_EXPIRES: u64 = 86_400;
/// Shortest refresh interval, whatever the carrier grants.
const MIN_REFRESH: Duration = Duration::from_secs(5);

/// A trunk's `register:` as the core needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct RegisterSettings {
    pub user: String,
    pub domain: String,
    pub expires: Duration,
    pub contact_user: String,
    pub auth: Option<Credentials>,
}

/// What the trunk's REGISTERs are sent with: this node's Via (with a fresh branch) and its
/// `host:port` for the Contact, and the transport token for the Contact's URI.
pub struct Local<'a> {
    pub via: String,
    pub contact_host: &'a str,
    /// `None` for UDP (no `transport` parameter), else `tcp` / `tls`.
    pub transport_param: Option<&'static str>,
}

/// What a response or failure came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegEvent {
    /// Registered for this long (the carrier's grant).
    Registered(Duration),
    /// The attempt failed (`None`: timeout or transport error); retried after a back-off.
    Failed(Option<u16>),
    /// The un-REGISTER was answered.
    Unregistered,
}

/// What to do after a response.
#[derive(Debug)]
pub enum Step {
    /// Send this REGISTER now (credentials, or a longer expiry after 423).
    Send(Request),
    /// The attempt is over.
    Done(RegEvent),
    /// Nothing (a provisional response, or a response when nothing is pending).
    Ignore,
}

#[derive(Debug)]
enum State {
    Due(Instant),
    Pending {
        /// The nonce this REGISTER answered (a challenge for the same nonce ends it).
        sent_nonce: Option<String>,
        /// A 423 was already followed once for this attempt.
        raised: bool,
        unregister: bool,
    },
    Registered {
        refresh_at: Instant,
    },
    Stopped,
}

pub struct Registration {
    settings: RegisterSettings,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// The expiry asked for (raised by a 423).
    expires: u64,
    state: State,
    digest: Option<DigestClient>,
    /// Failures in a row.
    failures: u32,
    /// The last request, resent with credentials or a new expiry.
    last: Option<Request>,
    registered_until: Option<Instant>,
}

impl Registration {
    /// `call_id` and `from_tag` are random (the caller's CSPRNG); kept for every REGISTER of
    /// this registration (RFC 3261 §10.2.4: the same Call-ID for all registrations of a boot
    /// cycle, CSeq incremented).
    pub fn new(
        settings: RegisterSettings,
        call_id: String,
        from_tag: String,
        now: Instant,
    ) -> Self {
        Registration {
            expires: settings.expires.as_secs(),
            digest: settings.auth.clone().map(DigestClient::new),
            settings,
            call_id,
            from_tag,
            cseq: 0,
            state: State::Due(now),
            failures: 0,
            last: None,
            registered_until: None,
        }
    }

    pub fn settings(&self) -> &RegisterSettings {
        &self.settings
    }

    /// Registered now (a 2xx whose grant has not run out).
    pub fn registered(&self, now: Instant) -> bool {
        self.registered_until.is_some_and(|t| t > now)
    }

    /// An un-REGISTER is out and not answered yet.
    pub fn unregistering(&self) -> bool {
        matches!(
            self.state,
            State::Pending {
                unregister: true,
                ..
            }
        )
    }

    /// When [`Registration::poll_request`] has something to send.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Due(at) => Some(at),
            State::Registered { refresh_at } => Some(refresh_at),
            State::Pending { .. } | State::Stopped => None,
        }
    }

    /// The REGISTER to send now, if one is due.
    pub fn poll_request(&mut self, now: Instant, local: Local<'_>) -> Option<Request> {
        let due = match self.state {
            State::Due(at) | State::Registered { refresh_at: at } => at,
            State::Pending { .. } | State::Stopped => return None,
        };
        if due > now {
            return None;
        }
        self.state = State::Pending {
            sent_nonce: None,
            raised: false,
            unregister: false,
        };
        Some(self.build(local, self.expires))
    }

    /// The un-REGISTER (`Expires: 0`) when registered; the registration stops either way.
    pub fn unregister(&mut self, now: Instant, local: Local<'_>) -> Option<Request> {
        let was = self.registered(now);
        self.registered_until = None;
        if !was {
            self.state = State::Stopped;
            return None;
        }
        self.state = State::Pending {
            sent_nonce: None,
            raised: false,
            unregister: true,
        };
        Some(self.build(local, 0))
    }

    fn build(&mut self, local: Local<'_>, expires: u64) -> Request {
        self.cseq += 1;
        let s = &self.settings;
        let aor = format!("<sip:{}@{}>", s.user, s.domain);
        let mut contact = format!("<sip:{}@{}", s.contact_user, local.contact_host);
        if let Some(t) = local.transport_param {
            contact.push_str(";transport=");
            contact.push_str(t);
        }
        contact.push('>');
        let mut h = Headers::with_capacity(10);
        h.push("Via", local.via);
        h.push("Max-Forwards", "70");
        h.push("From", format!("{aor};tag={}", self.from_tag));
        h.push("To", aor);
        h.push("Call-ID", self.call_id.clone());
        h.push("CSeq", format!("{} REGISTER", self.cseq));
        h.push("Contact", contact);
        h.push("Expires", expires.to_string());
        h.push("User-Agent", "trunkline");
        h.push("Content-Length", "0");
        let req = Request {
            method: Method::Register,
            uri: format!("sip:{}", s.domain),
            headers: h,
            body: Vec::new(),
        };
        self.last = Some(req.clone());
        req
    }

    /// The same REGISTER again with a new CSeq and Via branch (and maybe new headers).
    fn resend(&mut self, via: String, edit: impl FnOnce(&mut Headers)) -> Option<Request> {
        let mut req = self.last.take()?;
        self.cseq += 1;
        req.headers.set("Via", via);
        req.headers.set("CSeq", format!("{} REGISTER", self.cseq));
        edit(&mut req.headers);
        self.last = Some(req.clone());
        Some(req)
    }

    /// A response to the pending REGISTER. `via` is a fresh Via for a resent request, `cnonce`
    /// a fresh random token.
    pub fn on_response(
        &mut self,
        resp: &Response,
        now: Instant,
        via: String,
        cnonce: &str,
    ) -> Step {
        let State::Pending {
            sent_nonce,
            raised,
            unregister,
        } = &mut self.state
        else {
            return Step::Ignore;
        };
        let unregister = *unregister;
        match resp.status {
            100..=199 => Step::Ignore,
            200..=299 if unregister => {
                self.state = State::Stopped;
                Step::Done(RegEvent::Unregistered)
            }
            200..=299 => {
                let granted = self.granted(resp);
                self.failures = 0;
                self.registered_until = Some(now + granted);
                self.state = State::Registered {
                    refresh_at: now + (granted / 2).max(MIN_REFRESH),
                };
                Step::Done(RegEvent::Registered(granted))
            }
            401 | 407 => {
                let Some(digest) = self.digest.as_mut() else {
                    return self.fail(Some(resp.status), now);
                };
                let Some(last) = self.last.as_ref() else {
                    return self.fail(Some(resp.status), now);
                };
                let parts = RequestParts {
                    method: "REGISTER",
                    uri: &last.uri,
                    body: &last.body,
                };
                match digest.answer(resp, &parts, sent_nonce.as_deref(), cnonce) {
                    Ok(auth) => {
                        *sent_nonce = Some(auth.nonce.clone());
                        let sent = self.resend(via, |h| {
                            h.remove("Authorization");
                            h.remove("Proxy-Authorization");
                            h.push(auth.header, auth.value);
                        });
                        sent.map_or(Step::Ignore, Step::Send)
                    }
                    Err(Refused::NoUsableChallenge | Refused::CredentialsRejected) => {
                        self.fail(Some(resp.status), now)
                    }
                }
            }
            //= rfc3261#section-10.2.8
            //# If a UA receives a 423 (Interval Too Brief) response, it MAY retry the
            //# registration after making the expiration interval of all contact addresses in
            //# the REGISTER request equal to or greater than the expiration interval within
            //# the Min-Expires header field of the 423 (Interval Too Brief) response.
            423 if !*raised && !unregister => {
                let min = resp
                    .headers
                    .get("Min-Expires")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .filter(|m| *m > self.expires && *m <= MAX_EXPIRES);
                let Some(min) = min else {
                    return self.fail(Some(423), now);
                };
                *raised = true;
                self.expires = min;
                let sent = self.resend(via, |h| h.set("Expires", min.to_string()));
                sent.map_or(Step::Ignore, Step::Send)
            }
            code => self.fail(Some(code), now),
        }
    }

    /// The pending REGISTER timed out or could not be sent.
    pub fn on_failure(&mut self, now: Instant) -> RegEvent {
        match self.fail(None, now) {
            Step::Done(ev) => ev,
            _ => RegEvent::Failed(None),
        }
    }

    fn fail(&mut self, code: Option<u16>, now: Instant) -> Step {
        if matches!(
            self.state,
            State::Pending {
                unregister: true,
                ..
            }
        ) {
            self.state = State::Stopped;
            return Step::Done(RegEvent::Failed(code));
        }
        self.failures = self.failures.saturating_add(1);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1u32 << self.failures.saturating_sub(1).min(10))
            .min(MAX_BACKOFF);
        // A grant still running stays counted until it runs out.
        if self.registered_until.is_some_and(|t| t <= now) {
            self.registered_until = None;
        }
        self.state = State::Due(now + backoff);
        Step::Done(RegEvent::Failed(code))
    }

    /// The expiry granted by a 2xx: our Contact's `expires` parameter, else the Expires
    /// header, else what we asked (RFC 3261 §10.2.4).
    fn granted(&self, resp: &Response) -> Duration {
        let ours = format!("sip:{}@", self.settings.contact_user);
        let from_contact = resp
            .headers
            .get_all("Contact")
            .filter_map(|v| Contact::parse_list(v).ok())
            .flatten()
            .find_map(|c| match c {
                Contact::Addr(na) if na.uri.to_string().starts_with(&ours) => na
                    .param("expires")
                    .flatten()
                    .and_then(|v| v.parse::<u64>().ok()),
                _ => None,
            });
        let secs = from_contact
            .or_else(|| {
                resp.headers
                    .get("Expires")
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(self.expires)
            .min(MAX_EXPIRES);
        Duration::from_secs(secs)
    }
}
