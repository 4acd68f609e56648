//! What the core holds, as plain values for the operator's admin API: the calls with their
//! legs, and the registrations. Read-only views (and one removal), taken between inputs.

use super::*;

/// One call as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallSummary {
    pub id: u64,
    /// `proceeding`, `confirmed` or `terminating`.
    pub state: &'static str,
    /// The trunk leg B goes to (the one tried last while proceeding).
    pub trunk: Option<String>,
    /// Since leg A's INVITE (proceeding) or since the answer (confirmed).
    pub age: Duration,
    pub a_call_id: String,
    pub b_call_id: String,
    pub a_peer: Peer,
    pub b_peer: Peer,
}

/// One registered contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationSummary {
    /// `user@host`.
    pub aor: String,
    pub contact: String,
    /// Where the REGISTER came from (where calls to it go).
    pub source: Peer,
    pub expires_in: Duration,
    /// q-value x 1000.
    pub q: u16,
}

impl B2bua {
    fn summary(&self, c: &Call, now: Instant) -> CallSummary {
        let (state, age) = match &c.state {
            CallState::Proceeding(at) => ("proceeding", now.saturating_duration_since(at.started)),
            CallState::Confirmed(e) => ("confirmed", now.saturating_duration_since(e.answered)),
            CallState::Terminating(_) => ("terminating", Duration::ZERO),
        };
        CallSummary {
            id: c.id.raw(),
            state,
            trunk: c.b_trunk.clone(),
            age,
            a_call_id: c.a.call_id.clone(),
            b_call_id: c.b.call_id.clone(),
            a_peer: c.a.peer,
            b_peer: c.b.peer,
        }
    }

    /// Every call held, in id order.
    pub fn call_summaries(&self, now: Instant) -> Vec<CallSummary> {
        let mut out: Vec<CallSummary> = self.calls.values().map(|c| self.summary(c, now)).collect();
        out.sort_by_key(|s| s.id);
        out
    }

    /// One call by its id.
    pub fn call_summary(&self, id: u64, now: Instant) -> Option<CallSummary> {
        self.calls.get(&CallId(id)).map(|c| self.summary(c, now))
    }

    /// Live registrations (none without a registrar), `user` filtering on the AoR's user part.
    pub fn registrations(&self, user: Option<&str>, now: Instant) -> Vec<RegistrationSummary> {
        let Some(reg) = &self.registrar else {
            return Vec::new();
        };
        reg.list(now)
            .into_iter()
            .filter(|(aor, _)| user.is_none_or(|u| aor.split('@').next() == Some(u)))
            .map(|(aor, b)| RegistrationSummary {
                aor: aor.to_string(),
                contact: b.contact.clone(),
                source: b.source,
                expires_in: b.expires.saturating_duration_since(now),
                q: b.q,
            })
            .collect()
    }

    /// Remove every binding of `aor`; how many there were.
    pub fn remove_registrations(&mut self, aor: &str) -> usize {
        self.registrar.as_mut().map_or(0, |r| r.remove_aor(aor))
    }
}
