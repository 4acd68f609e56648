//! The registrar's settings as the core takes them (`Policy::registrar`), built from the
//! configuration's `registrar:` and `limits.auth_failures`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use config::Config;
use signaling::registrar::{Algorithm, RegistrarSettings, UserSecret};

/// `registrar:` as [`RegistrarSettings`]; `None` without one.
pub(super) fn settings(cfg: &Config) -> Option<Arc<RegistrarSettings>> {
    let r = cfg.registrar.as_ref()?;
    Some(Arc::new(RegistrarSettings {
        domains: r.domains.clone(),
        realm: r.realm.clone(),
        min_expires: r.min_expires,
        max_expires: r.max_expires,
        default_expires: r.default_expires,
        users: registrar_users(r),
        aliases: registrar_aliases(r),
        algorithms: r
            .algorithms
            .iter()
            .map(|a| match a {
                config::DigestAlgorithm::Sha256 => Algorithm::Sha256,
                config::DigestAlgorithm::Md5 => Algorithm::Md5,
            })
            .collect(),
        keepalive: r.keepalive,
        authenticate_calls: r.authenticate_calls,
        auth_failures: auth_failure_limits(&cfg.limits.auth_failures),
        offline: r.offline_messages.as_ref().map(mailbox_limits),
        presence: r
            .presence_agent
            .then(signaling::esc::PresenceLimits::default),
    }))
}

fn auth_failure_limits(a: &config::AuthFailures) -> signaling::digest::FailureLimits {
    signaling::digest::FailureLimits {
        max: a.max,
        window: a.window,
        ban: a.ban,
    }
}

/// `registrar.offline_messages` as the core's mailbox limits.
pub fn mailbox_limits(o: &config::OfflineMessages) -> signaling::mailbox::MailboxLimits {
    signaling::mailbox::MailboxLimits {
        per_user: o.per_user as usize,
        total: o.total as usize,
        max_body: o.max_size as usize,
        ttl: Duration::from_secs(u64::from(o.ttl)),
        attempts: o.attempts,
        retry: Duration::from_secs(u64::from(o.retry)),
    }
}

/// `registrar.users` as the core checks them.
fn registrar_users(r: &config::Registrar) -> HashMap<String, UserSecret> {
    r.users
        .iter()
        .map(|u| {
            let secret = UserSecret {
                password: u.password.clone(),
                ha1_md5: u.ha1_md5.clone(),
                ha1_sha256: u.ha1_sha256.clone(),
            };
            (u.name.clone(), secret)
        })
        .collect()
}

/// alias -> user, from `registrar.users.*.aliases` (unique: the configuration checks).
fn registrar_aliases(r: &config::Registrar) -> HashMap<String, String> {
    r.users
        .iter()
        .flat_map(|u| u.aliases.iter().map(|a| (a.clone(), u.name.clone())))
        .collect()
}
