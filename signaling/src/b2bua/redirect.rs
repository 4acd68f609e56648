//! A 3xx answer to leg B's INVITE, as its trunk's `redirect:` says ([`RedirectMode`]):
//! relayed to leg A with its Contacts, followed (each Contact routed by the dial plan or the
//! location service, never to its host as such), or taken as a failed target.

use super::failover::TargetEnd;
use super::*;

/// Contacts of a call's 3xx answers followed at most (a redirect loop between trunks ends).
pub(super) const MAX_FOLLOWED: usize = 5;

/// What a relayed 3xx carries to leg A besides its status: the Contacts (the redirect targets,
/// which are the point of a 3xx, RFC 3261 §21.3) and end-to-end headers; nothing of leg B's
/// path (Via, Record-Route, ... are [`HOP_HEADERS`]).
pub(super) fn relay_contacts(from_b: &Response, resp: &mut Response, crossing: Crossing<'_>) {
    for c in from_b.headers.get_all("Contact") {
        resp.headers.push("Contact", c.to_string());
    }
    crossing.copy(&from_b.headers, &mut resp.headers, false);
}

//= rfc3261#section-8.1.3.4
//# If the response contains more than one Contact, the client SHOULD try them in order of
//# preference [...]. The client SHOULD try each address in this list, from highest to lowest
//# q-value.
/// The URIs of a 3xx's Contacts, highest q first (ties keep their order); unparsable ones and
/// `*` are left out.
pub(super) fn contacts_by_q(resp: &Response) -> Vec<String> {
    let mut out: Vec<(u32, String)> = resp
        .headers
        .get_all("Contact")
        .flat_map(crate::headers::split_comma_list)
        .filter_map(|c| NameAddr::parse(c.trim()).ok())
        .map(|na| {
            // q = "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ], as thousandths; absent: 1.
            let q = na
                .param("q")
                .flatten()
                .and_then(|v| v.parse::<f32>().ok())
                .filter(|q| (0.0..=1.0).contains(q))
                .map_or(1000, |q| (q * 1000.0).round() as u32);
            (q, na.uri.to_string())
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.0));
    out.into_iter().map(|(_, u)| u).collect()
}

impl B2bua {
    /// Leg B's INVITE was answered 3xx at the current target (its transaction is done).
    pub(super) fn b_redirected(
        &mut self,
        id: CallId,
        resp: &Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(at) = self.calls.get(&id).and_then(Call::attempt) else {
            return;
        };
        let mode = match at.trunk.as_deref() {
            Some(t) if t != REGISTERED && !at.cancelled => policy.redirect_mode(t, now),
            _ => RedirectMode::Relay,
        };
        let end = match mode {
            RedirectMode::Relay => TargetEnd {
                status: resp.status,
                reason: resp.reason.clone(),
                failover: false,
                from_b: Some(resp),
            },
            RedirectMode::Follow | RedirectMode::Reject => {
                if mode == RedirectMode::Follow {
                    self.follow_contacts(id, resp, now, policy);
                }
                // Tried next; when nothing is left the caller hears that the callee cannot
                // be reached now (the redirect itself is not for it).
                TargetEnd {
                    status: 480,
                    reason: "Temporarily Unavailable".into(),
                    failover: true,
                    from_b: None,
                }
            }
        };
        self.b_invite_ended(id, end, now, policy);
    }

    /// [`RedirectMode::Follow`]: the targets of `resp`'s Contacts (best q first, at most
    /// [`MAX_FOLLOWED`] per call) become the call's next targets, before the rest of its
    /// route. A Contact at a served domain is looked up in the location service; any other is
    /// routed by the dial plan on its user part, so it reaches only configured trunks.
    fn follow_contacts(
        &mut self,
        id: CallId,
        resp: &Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let Some(at) = call.attempt() else { return };
        let from = call.a.peer;
        let from_user = NameAddr::parse(&call.b.local_uri)
            .ok()
            .and_then(|na| na.uri.user().map(str::to_string))
            .unwrap_or_default();
        let room = MAX_FOLLOWED.saturating_sub(at.followed);
        let contacts: Vec<String> = contacts_by_q(resp).into_iter().take(room).collect();
        let mut added: Vec<(Target, Option<String>)> = Vec::new();
        for uri in &contacts {
            match self.locate(uri, now, policy) {
                // A served user's bindings (their Request-URI is the binding's own).
                Some(Ok(targets)) => {
                    added.extend(targets.into_iter().map(|t| (t, Some(String::new()))))
                }
                Some(Err(_)) => {}
                None => {
                    let user = ruri_user(uri);
                    if user.is_empty() {
                        // No user: nothing the dial plan can route (only a host).
                        continue;
                    }
                    let outcome = policy.route_redirect(uri, from, &user, &from_user, now);
                    if let RouteOutcome::Route {
                        targets, to_user, ..
                    } = outcome
                    {
                        added.extend(targets.into_iter().map(|t| (t, Some(to_user.clone()))));
                    }
                }
            }
        }
        self.stats.redirects_followed += contacts.len() as u64;
        let Some(at) = self.calls.get_mut(&id).and_then(Call::attempt_mut) else {
            return;
        };
        at.followed += contacts.len();
        let next = at.target_idx + 1;
        at.users.resize(at.targets.len(), None);
        let (targets, users): (Vec<_>, Vec<_>) = added.into_iter().unzip();
        at.targets.splice(next..next, targets);
        at.users.splice(next..next, users);
    }
}
