//! Session timers (RFC 4028): `session_expires` and `min_se` in `sip:` (every leg) and on a
//! trunk (its legs).
//!
//! ```yaml
//! sip: { session_expires: 1800, min_se: 90 }     # the defaults; session_expires: 0 = off
//! trunks:
//!   carrier: { address: sip.carrier.example, session_expires: 600 }  # 0: off for this trunk
//! ```
//!
//! trunkline offers `session_expires` on the legs it places, answers with it at most, refuses
//! an interval below `min_se` with 422 (from a peer that supports timers), refreshes the legs
//! it is the refresher of at half the interval and ends a call whose session runs out.

use crate::locate::Seg;
use crate::{sem, Sem};

/// A leg's session timer settings (seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimer {
    /// Session-Expires offered and answered at most.
    pub expires: u32,
    /// Min-SE: the shortest interval accepted (RFC 4028 §4: never below 90).
    pub min_se: u32,
}

/// RFC 4028 §4: 1800 s RECOMMENDED; Min-SE at least 90 s.
pub const DEFAULT_SESSION_TIMER: SessionTimer = SessionTimer {
    expires: 1800,
    min_se: 90,
};

/// The settings from `session_expires` / `min_se` as written at `path` (`None`: absent), over
/// `base` (what applies when absent: the defaults for `sip:`, `sip:`'s for a trunk).
pub(crate) fn build_session_timer(
    expires: Option<u32>,
    min_se: Option<u32>,
    base: Option<SessionTimer>,
    path: impl Fn(&str) -> Vec<Seg>,
) -> Result<Option<SessionTimer>, Sem> {
    let expires = match expires.or(base.map(|b| b.expires)) {
        None | Some(0) => {
            if expires == Some(0) && min_se.is_some() {
                return Err(sem(
                    path("min_se"),
                    "min_se with session_expires 0 (session timers off): drop one",
                ));
            }
            return Ok(None);
        }
        Some(e) => e,
    };
    let min_se = min_se
        .or(base.map(|b| b.min_se))
        .unwrap_or(DEFAULT_SESSION_TIMER.min_se);
    if !(90..=86_400).contains(&min_se) {
        return Err(sem(
            path("min_se"),
            format!("min_se {min_se} s: use 90 (RFC 4028's floor) to 86400"),
        ));
    }
    if !(min_se..=86_400).contains(&expires) {
        return Err(sem(
            path("session_expires"),
            format!("session_expires {expires} s: use min_se ({min_se}) to 86400, or 0 for off"),
        ));
    }
    Ok(Some(SessionTimer { expires, min_se }))
}
