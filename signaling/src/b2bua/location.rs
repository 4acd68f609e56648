//! The location service's bindings as a shell keeps them across restarts: the core tells which
//! AoRs changed (the shell writes them to its store, off this thread) and takes back what the
//! store held at start. No I/O here: the store is the shell's.

use super::*;
use crate::registrar::Binding;

impl B2bua {
    /// Report binding changes from now on ([`B2bua::take_location_changes`]).
    pub fn persist_locations(&mut self, now: Instant) {
        self.registrar_mut(now).track_changes();
        self.mailbox.track_changes();
    }

    /// AoRs whose bindings changed since the last call, each with all its bindings now (empty:
    /// none left, the AoR's record goes). Empty unless [`B2bua::persist_locations`] was called.
    pub fn take_location_changes(&mut self) -> Vec<(String, Vec<Binding>)> {
        match &mut self.registrar {
            Some(r) => r.take_changes(),
            None => Vec::new(),
        }
    }

    /// Bindings of `aor` (`user@host`) kept by an earlier run; expired ones are dropped. NAT
    /// keep-alives start at once, so phones behind NAT reopen their mappings.
    pub fn restore_location(&mut self, aor: String, bindings: Vec<Binding>, now: Instant) {
        self.registrar_mut(now).restore(aor, bindings, now);
        if self.next_keepalive.is_none() {
            self.next_keepalive = Some(now);
        }
    }

    /// This node's own bindings of `aor` read back from a shared store (the cluster's), taken
    /// only when the AoR has no live binding here (what is here is newer).
    pub fn restore_location_if_absent(
        &mut self,
        aor: String,
        bindings: Vec<Binding>,
        now: Instant,
    ) {
        if self
            .registrar
            .as_ref()
            .is_some_and(|r| r.is_registered(&aor, now))
        {
            return;
        }
        self.restore_location(aor, bindings, now);
    }

    /// What cluster node `node` (at `via`) holds for `aor` (`user@host`): calls for the AoR
    /// that find no binding here go to that node, which has the phone's; empty: nothing.
    pub fn set_remote_bindings(
        &mut self,
        node: &str,
        via: Peer,
        aor: String,
        bindings: Vec<Binding>,
        now: Instant,
    ) {
        self.registrar_mut(now)
            .set_remote(node, via, aor, bindings, now);
    }

    /// Report every AoR's bindings as changed ([`B2bua::take_location_changes`] gives them all
    /// next): the cluster's store came back and may have lost them.
    pub fn republish_locations(&mut self) {
        if let Some(r) = &mut self.registrar {
            r.mark_all();
        }
    }

    /// AoRs other cluster nodes hold bindings for.
    pub fn remote_aors(&self) -> usize {
        self.registrar.as_ref().map_or(0, |r| r.remote_count())
    }
}
