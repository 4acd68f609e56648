//! DTMF in SIP INFO, for a leg that signals digits that way (a trunk's `dtmf: info`): an
//! INFO carrying a digit (`application/dtmf-relay`, the de-facto format: `Signal=5` and
//! `Duration=160` lines; or `application/dtmf`, the digit alone) is handed to the media side,
//! which sends it to the other leg as RFC 4733 telephone-events, and answered 200 by
//! trunkline; digits the other leg sends as events come back from the media side and leave
//! as INFO on this leg ([`B2bua::send_dtmf_info`]). An INFO the media side does not take is
//! relayed as any other in-dialog request.

use super::*;

/// RFC 4733 §3.2 event codes of DTMF: 0-9, `*` 10, `#` 11, A-D 12-15.
fn event_code(signal: &str) -> Option<u8> {
    let s = signal.trim();
    let mut chars = s.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else {
        // "10" and "11" for * and # in some gateways' dtmf-relay
        return match s {
            "10" => Some(10),
            "11" => Some(11),
            _ => None,
        };
    };
    match c.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        l @ 'A'..='D' => Some(l as u8 - b'A' + 12),
        _ => None,
    }
}

/// The signal of an event code (the inverse of [`event_code`]).
fn signal_of(code: u8) -> Option<char> {
    Some(match code {
        0..=9 => (b'0' + code) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + code - 12) as char,
        _ => return None,
    })
}

/// Duration of a digit when its INFO names none (ms).
const DEFAULT_MS: u32 = 250;
/// Longest digit taken from an INFO (ms).
const MAX_MS: u32 = 5000;

/// The digit an INFO carries: (event code, duration in ms); `None` when it carries none.
pub(super) fn info_digit(req: &Request) -> Option<(u8, u32)> {
    let ct = req.headers.get("Content-Type")?;
    let ct = ct.split(';').next()?.trim();
    let body = std::str::from_utf8(&req.body).ok()?;
    if ct.eq_ignore_ascii_case("application/dtmf") {
        return Some((event_code(body)?, DEFAULT_MS));
    }
    if !ct.eq_ignore_ascii_case("application/dtmf-relay") {
        return None;
    }
    let mut code = None;
    let mut ms = DEFAULT_MS;
    for line in body.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "signal" => code = event_code(v),
            "duration" => {
                if let Ok(d) = v.trim().parse::<u32>() {
                    ms = d.min(MAX_MS);
                }
            }
            _ => {}
        }
    }
    Some((code?, ms))
}

impl B2bua {
    /// An INFO on `leg` of call `id` with a digit the media side takes: answered 200 here.
    /// `false`: not such an INFO, or not taken (relay it).
    pub(super) fn info_dtmf(
        &mut self,
        tx: TxId,
        req: &Request,
        id: CallId,
        leg: Leg,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> bool {
        let Some((code, ms)) = info_digit(req) else {
            return false;
        };
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        if !policy.dtmf_info(call.media_ref(), leg, code, ms, now) {
            return false;
        }
        let resp = make_response(req, 200, "OK", None);
        self.tx.send_response(tx, resp, now);
        self.stats.dtmf_info_in += 1;
        true
    }

    /// Send digit `code` (RFC 4733 event code) lasting `duration_ms` to `leg` of call `call`
    /// as an INFO (`application/dtmf-relay`); false when the call has no confirmed dialog on
    /// that leg or the code is no DTMF digit.
    pub fn send_dtmf_info(
        &mut self,
        call: u64,
        leg: Leg,
        code: u8,
        duration_ms: u32,
        now: Instant,
    ) -> bool {
        let id = CallId(call);
        let Some(signal) = signal_of(code) else {
            return false;
        };
        if !self.calls.get(&id).is_some_and(|c| c.is_confirmed()) {
            return false;
        }
        let Some((mut req, peer)) = self.dialog_request(id, leg, Method::Info) else {
            return false;
        };
        let body = format!("Signal={signal}\r\nDuration={duration_ms}\r\n");
        req.headers.push("Content-Type", "application/dtmf-relay");
        req.body = body.into_bytes();
        let t = self.tx.send_request_ref(&req, peer, now);
        self.owners
            .insert(t, TxOwner::Call(id, ClientPurpose::Info));
        self.stats.dtmf_info_out += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ct: &str, body: &str) -> Request {
        let mut h = Headers::with_capacity(2);
        h.push("Content-Type", ct.to_string());
        Request {
            method: Method::Info,
            uri: "sip:x@y".into(),
            headers: h,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn digits_of_info_bodies() {
        let r = info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n");
        assert_eq!(info_digit(&r), Some((5, 160)));
        let r = info("Application/DTMF-Relay", "signal= #\nduration=99999\n");
        assert_eq!(info_digit(&r), Some((11, MAX_MS)));
        assert_eq!(
            info_digit(&info("application/dtmf-relay", "Signal=10")),
            Some((10, 250))
        );
        assert_eq!(info_digit(&info("application/dtmf", "d")), Some((15, 250)));
        assert_eq!(
            info_digit(&info("application/dtmf-relay", "Signal=X")),
            None
        );
        assert_eq!(
            info_digit(&info("application/dtmf-relay", "Duration=100")),
            None
        );
        assert_eq!(
            info_digit(&info("application/media_control+xml", "<x/>")),
            None
        );
        assert_eq!(
            info_digit(&info("application/dtmf-relay", "\u{0}\u{ff}=")),
            None
        );
        for code in 0..16 {
            assert_eq!(
                signal_of(code).and_then(|c| event_code(&c.to_string())),
                Some(code)
            );
        }
        assert_eq!(signal_of(16), None);
    }
}
