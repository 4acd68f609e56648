//! Messages held for offline users, in the location store's file (table `messages`): one record
//! per message, keyed by (AoR, id) so a user's messages read back in the order they came.
//!
//! Record: version, sender user, content type (flag + text), body, time of receipt (flag +
//! Unix seconds), expiry (Unix milliseconds), failed attempts.

use std::time::Instant;

use redb::TableDefinition;
use signaling::mailbox::{Held, NewMessage};

use super::{instant_of, put_str, wall_of, Reader};

pub(super) const TABLE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const VERSION: u8 = 1;

/// A held message as stored: its expiry on the wall clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: u64,
    pub msg: NewMessage,
    pub expires_ms: u64,
    pub failures: u8,
}

impl StoredMessage {
    pub fn of(h: &Held, now: Instant, wall: u64) -> StoredMessage {
        StoredMessage {
            id: h.id,
            msg: h.msg.clone(),
            expires_ms: wall_of(h.expires, now, wall),
            failures: h.failures,
        }
    }

    pub fn held(self, now: Instant, wall: u64) -> Held {
        Held {
            id: self.id,
            msg: self.msg,
            expires: instant_of(self.expires_ms, now, wall),
            failures: self.failures,
        }
    }
}

pub fn encode(m: &StoredMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + m.msg.body.len());
    out.push(VERSION);
    put_str(&mut out, &m.msg.from_user);
    match &m.msg.content_type {
        Some(ct) => {
            out.push(1);
            put_str(&mut out, ct);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(m.msg.body.len() as u32).to_be_bytes());
    out.extend_from_slice(&m.msg.body);
    match m.msg.received_unix {
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.to_be_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&m.expires_ms.to_be_bytes());
    out.push(m.failures);
    out
}

/// The message of record `id`, `None` when it is not one [`encode`] wrote.
pub fn decode(id: u64, bytes: &[u8]) -> Option<StoredMessage> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return None;
    }
    let from_user = r.str()?;
    let content_type = match r.u8()? {
        0 => None,
        1 => Some(r.str()?),
        _ => return None,
    };
    let n = r.u32()? as usize;
    let body = r.take(n)?.to_vec();
    let received_unix = match r.u8()? {
        0 => None,
        1 => Some(r.u64()?),
        _ => return None,
    };
    let expires_ms = r.u64()?;
    let failures = r.u8()?;
    r.0.is_empty().then_some(StoredMessage {
        id,
        msg: NewMessage {
            from_user,
            content_type,
            body,
            received_unix,
        },
        expires_ms,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let m = StoredMessage {
            id: 7,
            msg: NewMessage {
                from_user: "alice".into(),
                content_type: Some("text/plain;charset=UTF-8".into()),
                body: "héllo".as_bytes().to_vec(),
                received_unix: Some(1_700_000_000),
            },
            expires_ms: 1_700_000_000_123,
            failures: 1,
        };
        let bytes = encode(&m);
        assert_eq!(decode(7, &bytes), Some(m.clone()));
        let bare = StoredMessage {
            msg: NewMessage {
                content_type: None,
                received_unix: None,
                body: Vec::new(),
                ..m.msg.clone()
            },
            ..m
        };
        assert_eq!(decode(7, &encode(&bare)), Some(bare));
        for cut in 0..bytes.len() {
            assert_eq!(decode(7, &bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(7, &longer), None);
        let mut wrong = bytes;
        wrong[0] = 9;
        assert_eq!(decode(7, &wrong), None);
    }
}
