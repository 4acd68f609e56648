//! REFER relayed between the legs of a call (RFC 3515, RFC 3892): its `Refer-To` and
//! `Referred-By` name addresses of the side it comes from (a PBX's extension host, a phone's
//! address); relayed as they are they would show one side's topology to the other, and a
//! `Replaces` in `Refer-To` would hand the other side this side's dialog identifiers. Each is
//! rewritten to its user at trunkline's own address on the leg the REFER goes to (a transfer
//! target is then called through trunkline, routed by the dial plan on that user); URI
//! parameters and headers (`?Replaces=...`) are dropped.
//!
//! A trunk with `refer: reject` has its REFERs declined 603 instead; with `refer: handle`
//! trunkline carries a REFER from leg B out itself (`handoff.rs`).

use super::*;

/// `value` (a `name-addr` or `addr-spec`) as the other leg may see it: its user at `host`
/// (trunkline's `host:port` on that leg), the display name kept; `None` when it does not parse
/// (the header is then dropped, never passed on as it was).
pub(super) fn hidden(value: &str, host: &str) -> Option<String> {
    let na = NameAddr::parse(value).ok()?;
    let user = na.uri.user().unwrap_or_default();
    let display = na
        .display
        .as_deref()
        .map(|d| format!("{} ", quote_display(d)))
        .unwrap_or_default();
    Some(cat(&[&display, "<sip:", &user_at(user), host, ">"]))
}

impl B2bua {
    /// A REFER from `leg` whose trunk (or caller) may not transfer: declined 603 (`true`).
    pub(super) fn refer_refused(
        &mut self,
        tx: TxId,
        req: &Request,
        id: CallId,
        leg: Leg,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let d = call.leg(leg);
        let trunk = match leg {
            Leg::A => None,
            Leg::B => call.b_trunk.clone(),
        };
        let (peer, tag) = (d.peer, d.local_tag.clone());
        if policy.refer_mode(trunk.as_deref(), peer, now) == ReferMode::Relay {
            return false;
        }
        // RFC 3515 §2.4.2: a REFER the recipient will not act on is declined (603).
        let resp = make_response(req, 603, "Decline", Some(&tag));
        self.tx.send_response(tx, resp, now);
        true
    }

    /// A REFER relayed to `to_leg` (`out`, its headers copied from the original): `Refer-To`
    /// and `Referred-By` hidden behind trunkline's address on that leg.
    pub(super) fn hide_refer(&self, id: CallId, to_leg: Leg, out: &mut Request) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let peer = call.leg(to_leg).peer;
        let host = local_addr_text(&self.cfg, peer.transport, is_v6(&peer));
        for name in ["Refer-To", "Referred-By"] {
            let values: Vec<String> = out.headers.get_all(name).map(str::to_string).collect();
            if values.is_empty() {
                continue;
            }
            out.headers.remove(name);
            for v in values {
                if let Some(h) = hidden(&v, &host) {
                    out.headers.push(name, h);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refer_to_keeps_the_user_only_at_our_host() {
        let h = "127.0.0.1:5060";
        assert_eq!(
            hidden(
                "<sip:2000@10.9.9.9:5062;transport=tcp?Replaces=a%40b%3Bto-tag%3Dx>",
                h
            )
            .as_deref(),
            Some("<sip:2000@127.0.0.1:5060>")
        );
        assert_eq!(
            hidden("\"Alice\" <sip:alice@pbx.internal>;x=1", h).as_deref(),
            Some("\"Alice\" <sip:alice@127.0.0.1:5060>")
        );
        assert_eq!(
            hidden("sip:10.0.0.5", h).as_deref(),
            Some("<sip:127.0.0.1:5060>")
        );
        assert_eq!(hidden("<<<", h), None);
    }
}
