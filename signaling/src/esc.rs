//! The event state compositor of the presence agent (RFC 3903): what users PUBLISH about
//! themselves, each publication under its entity tag, with its expiry; the state watchers see
//! is the newest live publication's document (several devices of one user: the last one to
//! speak wins). Sans-IO: the B2BUA parses and answers PUBLISH, times come in as arguments.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crate::pidf::{self, PidfError};

/// Limits of the compositor (`registrar.presence`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceLimits {
    /// Largest PIDF document kept, bytes.
    pub max_body: usize,
    /// Shortest publication or subscription accepted (423 below), seconds.
    pub min_expires: u32,
    /// Longest granted, seconds.
    pub max_expires: u32,
    /// Publications kept per user (several devices); beyond, the oldest goes.
    pub per_user: usize,
    /// Users with a publication.
    pub users: usize,
    /// Watchers' subscriptions in all (each user's watchers are also capped by
    /// `caps.subscriptions_per_target` when the watcher is no trunk).
    pub watchers: usize,
}

impl Default for PresenceLimits {
    fn default() -> Self {
        PresenceLimits {
            max_body: 8192,
            min_expires: 60,
            max_expires: 3600,
            per_user: 8,
            users: 100_000,
            watchers: 100_000,
        }
    }
}

/// RFC 3903 section 4: "an initial publication", "refreshing", "modifying", "removing".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publish<'a> {
    Initial { body: &'a [u8] },
    Refresh { etag: &'a str },
    Modify { etag: &'a str, body: &'a [u8] },
    Remove { etag: &'a str },
}

/// Why a PUBLISH was refused (RFC 3903 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// Step 4: "If the entity-tag ... does not match ... 412 (Conditional Request Failed)".
    UnknownEtag,
    /// Step 5: 423 (Interval Too Brief) with Min-Expires.
    TooBrief(u32),
    /// 413: larger than `max_body`.
    TooLarge,
    /// 400: not a PIDF document that can be passed on.
    Document(PidfError),
    /// 503: the compositor keeps `users` users already.
    Full,
}

/// One publication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    pub etag: String,
    pub body: Vec<u8>,
    pub expires: Instant,
    pub updated: Instant,
}

/// The answer to an accepted PUBLISH: the entity tag now valid (none after a removal) and the
/// expiry granted, seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub etag: Option<String>,
    pub expires: u32,
}

#[derive(Default)]
pub struct Compositor {
    by_aor: HashMap<String, Vec<Publication>>,
    /// Publication expiries, earliest first (lazy: stale entries are skipped).
    expiry: BinaryHeap<Reverse<(Instant, String)>>,
}

impl Compositor {
    /// Users with at least one publication.
    pub fn users(&self) -> usize {
        self.by_aor.len()
    }

    /// Apply a PUBLISH for `aor` asking for `expires` seconds (`None`: the default, an hour);
    /// `new_etag` is the tag a successful publication gets (RFC 3903 section 6 step 7: a new
    /// one every time).
    pub fn publish(
        &mut self,
        aor: &str,
        op: Publish<'_>,
        expires: Option<u32>,
        new_etag: String,
        limits: &PresenceLimits,
        now: Instant,
    ) -> Result<Published, PublishError> {
        self.expire_aor(aor, now);
        let expires = expires.unwrap_or(3600);
        let remove = matches!(op, Publish::Remove { .. }) || expires == 0;
        if !remove && expires < limits.min_expires {
            return Err(PublishError::TooBrief(limits.min_expires));
        }
        let granted = expires.min(limits.max_expires);
        let body = match op {
            Publish::Initial { body } | Publish::Modify { body, .. } => {
                if body.len() > limits.max_body {
                    return Err(PublishError::TooLarge);
                }
                pidf::check(body).map_err(PublishError::Document)?;
                Some(body)
            }
            _ => None,
        };
        let etag = match op {
            Publish::Initial { .. } => None,
            Publish::Refresh { etag } | Publish::Modify { etag, .. } | Publish::Remove { etag } => {
                Some(etag)
            }
        };
        if let Some(e) = etag {
            let known = self
                .by_aor
                .get(aor)
                .is_some_and(|v| v.iter().any(|p| p.etag == e));
            if !known {
                return Err(PublishError::UnknownEtag);
            }
            if remove {
                self.remove(aor, e);
                return Ok(Published {
                    etag: None,
                    expires: 0,
                });
            }
        } else if remove {
            // An initial publication with Expires: 0 has nothing to remove.
            return Err(PublishError::UnknownEtag);
        }
        if !self.by_aor.contains_key(aor) && self.by_aor.len() >= limits.users {
            return Err(PublishError::Full);
        }
        let until = now + Duration::from_secs(u64::from(granted));
        self.store(
            aor,
            etag,
            body,
            new_etag.clone(),
            until,
            limits.per_user,
            now,
        );
        self.expiry.push(Reverse((until, aor.to_string())));
        Ok(Published {
            etag: Some(new_etag),
            expires: granted,
        })
    }

    /// Keep `aor`'s publication: the one under `etag` refreshed or modified, or (no tag) a new
    /// one, the oldest of `per_user` making room.
    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        aor: &str,
        etag: Option<&str>,
        body: Option<&[u8]>,
        new_etag: String,
        until: Instant,
        per_user: usize,
        now: Instant,
    ) {
        let list = self.by_aor.entry(aor.to_string()).or_default();
        match etag {
            Some(e) => {
                if let Some(p) = list.iter_mut().find(|p| p.etag == e) {
                    p.etag = new_etag;
                    p.expires = until;
                    if let Some(b) = body {
                        p.body = b.to_vec();
                        p.updated = now;
                    }
                }
            }
            None => {
                if list.len() >= per_user {
                    if let Some(i) = (0..list.len()).min_by_key(|&i| list[i].updated) {
                        list.remove(i);
                    }
                }
                list.push(Publication {
                    etag: new_etag,
                    body: body.unwrap_or_default().to_vec(),
                    expires: until,
                    updated: now,
                });
            }
        }
    }

    fn remove(&mut self, aor: &str, etag: &str) {
        if let Some(v) = self.by_aor.get_mut(aor) {
            v.retain(|p| p.etag != etag);
            if v.is_empty() {
                self.by_aor.remove(aor);
            }
        }
    }

    /// The document watchers of `aor` see: the newest live publication's, if any.
    pub fn document(&self, aor: &str, now: Instant) -> Option<&[u8]> {
        self.by_aor
            .get(aor)?
            .iter()
            .filter(|p| p.expires > now)
            .max_by_key(|p| p.updated)
            .map(|p| p.body.as_slice())
    }

    fn expire_aor(&mut self, aor: &str, now: Instant) -> bool {
        let Some(v) = self.by_aor.get_mut(aor) else {
            return false;
        };
        let before = v.len();
        v.retain(|p| p.expires > now);
        let changed = v.len() != before;
        if v.is_empty() {
            self.by_aor.remove(aor);
        }
        changed
    }

    /// When the next publication may expire.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiry.peek().map(|Reverse((t, _))| *t)
    }

    /// Drop expired publications; the users whose state changed.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut changed = Vec::new();
        while let Some(Reverse((t, _))) = self.expiry.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, aor))) = self.expiry.pop() else {
                break;
            };
            if self.expire_aor(&aor, now) && !changed.contains(&aor) {
                changed.push(aor);
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(basic: &str) -> Vec<u8> {
        format!(
            "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:bob@x\">\
             <tuple id=\"t\"><status><basic>{basic}</basic></status></tuple></presence>"
        )
        .into_bytes()
    }

    #[test]
    fn the_publication_lifecycle_of_rfc_3903() {
        let (mut c, l, t) = (
            Compositor::default(),
            PresenceLimits::default(),
            Instant::now(),
        );
        let open = doc("open");
        let p = c
            .publish(
                "bob@x",
                Publish::Initial { body: &open },
                Some(600),
                "e1".into(),
                &l,
                t,
            )
            .unwrap();
        assert_eq!(
            p,
            Published {
                etag: Some("e1".into()),
                expires: 600
            }
        );
        assert_eq!(c.document("bob@x", t), Some(&open[..]));
        // Refresh: a new tag, the same document; the old tag is gone.
        let r = c
            .publish(
                "bob@x",
                Publish::Refresh { etag: "e1" },
                Some(600),
                "e2".into(),
                &l,
                t,
            )
            .unwrap();
        assert_eq!(r.etag.as_deref(), Some("e2"));
        assert_eq!(
            c.publish(
                "bob@x",
                Publish::Refresh { etag: "e1" },
                None,
                "e3".into(),
                &l,
                t
            ),
            Err(PublishError::UnknownEtag)
        );
        // Modify, then remove.
        let closed = doc("closed");
        let m = Publish::Modify {
            etag: "e2",
            body: &closed,
        };
        c.publish("bob@x", m, Some(600), "e4".into(), &l, t)
            .unwrap();
        assert_eq!(c.document("bob@x", t), Some(&closed[..]));
        let gone = c
            .publish(
                "bob@x",
                Publish::Remove { etag: "e4" },
                Some(0),
                "e5".into(),
                &l,
                t,
            )
            .unwrap();
        assert_eq!(
            gone,
            Published {
                etag: None,
                expires: 0
            }
        );
        assert_eq!(c.document("bob@x", t), None);
        assert_eq!(c.users(), 0);
    }

    #[test]
    fn expiry_limits_and_bad_documents() {
        let (mut c, l, t) = (
            Compositor::default(),
            PresenceLimits::default(),
            Instant::now(),
        );
        let open = doc("open");
        let init = Publish::Initial { body: &open };
        assert_eq!(
            c.publish("bob@x", init, Some(10), "e".into(), &l, t),
            Err(PublishError::TooBrief(60))
        );
        let p = c
            .publish("bob@x", init, Some(99_999), "e1".into(), &l, t)
            .unwrap();
        assert_eq!(p.expires, 3600, "capped at max_expires");
        let big = vec![b' '; l.max_body + 1];
        assert_eq!(
            c.publish(
                "bob@x",
                Publish::Initial { body: &big },
                None,
                "e".into(),
                &l,
                t
            ),
            Err(PublishError::TooLarge)
        );
        assert!(matches!(
            c.publish(
                "bob@x",
                Publish::Initial { body: b"<x/>" },
                None,
                "e".into(),
                &l,
                t
            ),
            Err(PublishError::Document(_))
        ));
        assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(3600)));
        assert!(c.expire(t + Duration::from_secs(3599)).is_empty());
        assert_eq!(
            c.expire(t + Duration::from_secs(3600)),
            vec!["bob@x".to_string()]
        );
        assert_eq!(c.document("bob@x", t + Duration::from_secs(3600)), None);
    }

    #[test]
    fn the_newest_device_wins_and_the_store_is_bounded() {
        let l = PresenceLimits {
            per_user: 2,
            users: 1,
            ..PresenceLimits::default()
        };
        let (mut c, t) = (Compositor::default(), Instant::now());
        let (a, b, d) = (doc("open"), doc("closed"), doc("open"));
        c.publish(
            "bob@x",
            Publish::Initial { body: &a },
            None,
            "1".into(),
            &l,
            t,
        )
        .unwrap();
        let t2 = t + Duration::from_secs(1);
        c.publish(
            "bob@x",
            Publish::Initial { body: &b },
            None,
            "2".into(),
            &l,
            t2,
        )
        .unwrap();
        assert_eq!(c.document("bob@x", t2), Some(&b[..]));
        let t3 = t + Duration::from_secs(2);
        c.publish(
            "bob@x",
            Publish::Initial { body: &d },
            None,
            "3".into(),
            &l,
            t3,
        )
        .unwrap();
        assert_eq!(
            c.publish(
                "bob@x",
                Publish::Refresh { etag: "1" },
                None,
                "4".into(),
                &l,
                t3
            ),
            Err(PublishError::UnknownEtag),
            "the oldest of three went"
        );
        assert_eq!(
            c.publish(
                "carol@x",
                Publish::Initial { body: &a },
                None,
                "5".into(),
                &l,
                t3
            ),
            Err(PublishError::Full)
        );
    }
}
