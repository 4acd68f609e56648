//! Per-source and per-target caps: what one unauthenticated source can make the core hold
//! (calls not yet answered, subscriptions), and how many subscriptions one target can be made
//! to carry. Counting is exact: every increment has its decrement where the thing ends.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

/// The caps (0 = no cap). Static per start, replaced on reload with [`super::B2bua::set_caps`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Unanswered calls one unauthenticated source (not a trunk, no credentials: a stranger
    /// calling a registered user) may have.
    pub early_calls_per_source: u32,
    /// Live subscriptions one source that is not a trunk may hold.
    pub subscriptions_per_source: u32,
    /// Live subscriptions from sources that are not trunks to one Request-URI.
    pub subscriptions_per_target: u32,
    /// Retry-After (seconds) of the 503 a cap answers.
    pub retry_after: u32,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            early_calls_per_source: 8,
            subscriptions_per_source: 32,
            subscriptions_per_target: 64,
            retry_after: 5,
        }
    }
}

/// Live things per key.
pub(super) struct Counts<K> {
    map: HashMap<K, u32>,
}

impl<K: Hash + Eq> Default for Counts<K> {
    fn default() -> Self {
        Counts {
            map: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> Counts<K> {
    /// Would one more for `k` stay within `cap` (0 = no cap)?
    pub(super) fn room(&self, k: &K, cap: u32) -> bool {
        cap == 0 || self.map.get(k).copied().unwrap_or(0) < cap
    }
    pub(super) fn add(&mut self, k: K) {
        *self.map.entry(k).or_insert(0) += 1;
    }
    pub(super) fn remove(&mut self, k: &K) {
        if let Some(n) = self.map.get_mut(k) {
            *n -= 1;
            if *n == 0 {
                self.map.remove(k);
            }
        }
    }
    /// Keys with a live count (leak tests).
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

/// What a subscription counts against, released when it goes.
#[derive(Clone, Debug)]
pub(super) struct SubCounted {
    pub(super) source: IpAddr,
    pub(super) target: String,
}
