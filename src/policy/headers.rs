//! Trunks' header policies (`headers:`, `identity:`) in the core's terms, built once per
//! configuration: a call asks for its trunks' and gets a shared `Arc`.

use std::collections::HashMap;
use std::sync::Arc;

use config::{Config, Identity};
use signaling::b2bua::HeaderPolicy;

/// The header policies of a configuration's trunks, built at first use after each change.
#[derive(Debug, Default)]
pub(crate) struct HeaderPolicies {
    built: Option<HashMap<String, Arc<HeaderPolicy>>>,
}

impl HeaderPolicies {
    /// Forget what was built (the configuration changed).
    pub(crate) fn reset(&mut self) {
        self.built = None;
    }

    /// Trunk `name`'s policy; `None` when it keeps the defaults (trusted, nothing changed) or
    /// is no trunk.
    pub(crate) fn of(&mut self, config: &Config, name: &str) -> Option<Arc<HeaderPolicy>> {
        self.built
            .get_or_insert_with(|| build(config))
            .get(name)
            .cloned()
    }
}

/// Only trunks that differ from the defaults are listed.
fn build(config: &Config) -> HashMap<String, Arc<HeaderPolicy>> {
    config
        .trunks
        .values()
        .filter(|t| t.identity != Identity::Trusted || !t.headers.is_default())
        .map(|t| {
            let p = HeaderPolicy {
                trusted: t.identity == Identity::Trusted,
                remove: t.headers.remove.clone(),
                keep: t.headers.keep.clone(),
                add: t.headers.add.clone(),
            };
            (t.name.clone(), Arc::new(p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// The configuration refuses to name the headers the core never relays: the two lists
    /// must be the same.
    #[test]
    fn the_per_hop_lists_agree() {
        let mut core: Vec<String> = signaling::b2bua::HOP_HEADERS
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let mut config: Vec<String> = config::PER_HOP
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        core.sort();
        config.sort();
        assert_eq!(core, config);
    }
}
