//! A call's media in a cluster's call record (issue 16, part 3): what the relay holds for it
//! ([`MediaCalls::export`]) written in the record format of `signaling::record`, and read
//! back on the node that takes the call over ([`MediaCalls::adopt`]: the same ports).

use std::net::SocketAddr;

use media_relay::control::{MediaError, MediaReplica, StreamReplica};
use media_relay::{Family, LegPair};
use signaling::b2bua::CallRef;
use signaling::record::{Reader, RecordError, Writer};

use super::LivePolicy;

const MAGIC: &[u8] = b"tlmedia1 ";

fn family_text(f: Family) -> &'static str {
    match f {
        Family::V4 => "4",
        Family::V6 => "6",
    }
}

fn family_of(s: &str) -> Result<Family, RecordError> {
    match s {
        "4" => Ok(Family::V4),
        "6" => Ok(Family::V6),
        _ => Err(RecordError::Field("family")),
    }
}

fn addr_of(s: Option<&str>) -> Result<Option<SocketAddr>, RecordError> {
    s.map(|a| a.parse().map_err(|_| RecordError::Field("remote")))
        .transpose()
}

/// The record of `r`.
pub fn encode(r: &MediaReplica) -> Vec<u8> {
    let mut w = Writer::new(MAGIC);
    w.str(&r.from_tag).opt_str(r.to_tag.as_deref());
    for f in r.family {
        w.opt_str(f.map(family_text));
    }
    for (sess, version, last) in &r.origins {
        w.u64(*sess).u64(*version).opt_bytes(last.as_deref());
    }
    w.u64(r.streams.len() as u64);
    for s in &r.streams {
        w.str(&s.kind).str(&s.proto);
        w.opt_str(s.pair.map(|p| format!("{} {}", p.a, p.b)).as_deref());
        for f in s.families {
            w.str(family_text(f));
        }
        for a in s.remotes {
            w.opt_str(a.map(|a| a.to_string()).as_deref());
        }
    }
    w.finish()
}

/// `data` read back as [`encode`] wrote it.
pub fn decode(data: &[u8]) -> Result<MediaReplica, RecordError> {
    let mut r = Reader::new(data, MAGIC)?;
    let from_tag = r.str("from_tag")?.to_string();
    let to_tag = r.opt_str("to_tag")?.map(str::to_string);
    let mut family = [None; 2];
    for f in &mut family {
        *f = r.opt_str("family")?.map(family_of).transpose()?;
    }
    let mut origins: [(u64, u64, Option<Vec<u8>>); 2] = Default::default();
    for o in &mut origins {
        *o = (
            r.u64("sess_id")?,
            r.u64("version")?,
            r.opt_bytes("last")?.map(<[u8]>::to_vec),
        );
    }
    let n = r.u64("streams")?;
    if n > media_relay::control::MAX_MEDIA_PER_CALL as u64 {
        return Err(RecordError::Field("streams"));
    }
    let mut streams = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let kind = r.str("kind")?.to_string();
        let proto = r.str("proto")?.to_string();
        let pair = match r.opt_str("pair")? {
            None => None,
            Some(p) => {
                let (a, b) = p.split_once(' ').ok_or(RecordError::Field("pair"))?;
                let port = |s: &str| s.parse::<u16>().map_err(|_| RecordError::Field("pair"));
                Some(LegPair {
                    a: port(a)?,
                    b: port(b)?,
                })
            }
        };
        let families = [family_of(r.str("family")?)?, family_of(r.str("family")?)?];
        let remotes = [
            addr_of(r.opt_str("remote")?)?,
            addr_of(r.opt_str("remote")?)?,
        ];
        streams.push(StreamReplica {
            kind,
            proto,
            pair,
            families,
            remotes,
        });
    }
    r.end()?;
    Ok(MediaReplica {
        from_tag,
        to_tag,
        family,
        origins,
        streams,
    })
}

impl LivePolicy {
    /// The record of `call`'s media: empty without media (no relay, or no SDP yet); `None`
    /// when it cannot be replicated (SRTP, transcoding).
    pub(super) fn export_media(&mut self, call: CallRef<'_>) -> Option<Vec<u8>> {
        let Some(m) = &self.media else {
            return Some(Vec::new());
        };
        match m.calls.export(call.call_id, call.from_tag) {
            Ok(r) => Some(encode(&r)),
            Err(MediaError::UnknownCall) => Some(Vec::new()),
            Err(_) => None,
        }
    }

    /// Take over the media another node recorded for `call`; its trunk slot is taken too.
    pub(super) fn adopt_media(&mut self, call: CallRef<'_>, data: &[u8]) -> bool {
        let Some(m) = &mut self.media else {
            return false;
        };
        let r = match decode(data) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(call_id = call.call_id, error = %e, "cluster: a call's media record is unreadable");
                return false;
            }
        };
        let signalling = call.peers.map(|p| Some(p.ip()));
        if let Err(e) = m.calls.adopt(call.call_id, &r, signalling) {
            tracing::warn!(call_id = call.call_id, error = %e, "cluster: a call's media could not be taken over");
            return false;
        }
        if let Some(t) = call.b_trunk {
            self.guard.usage.adopted(call.id, t);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let r = MediaReplica {
            from_tag: "ft".into(),
            to_tag: Some("tt".into()),
            family: [Some(Family::V4), Some(Family::V6)],
            origins: [(1, 2, Some(b"v=0\r\n".to_vec())), (3, 4, None)],
            streams: vec![
                StreamReplica {
                    kind: "audio".into(),
                    proto: "RTP/AVP".into(),
                    pair: Some(LegPair { a: 30000, b: 30002 }),
                    families: [Family::V4, Family::V6],
                    remotes: [
                        Some("192.0.2.1:4000".parse().unwrap()),
                        Some("[2001:db8::1]:5000".parse().unwrap()),
                    ],
                },
                StreamReplica {
                    kind: "video".into(),
                    proto: "RTP/AVP".into(),
                    pair: None,
                    families: [Family::V4, Family::V4],
                    remotes: [None, None],
                },
            ],
        };
        let data = encode(&r);
        assert_eq!(decode(&data), Ok(r));
        for n in 0..data.len() {
            assert!(decode(&data[..n]).is_err(), "cut at {n}");
        }
        let bad = String::from_utf8(data).unwrap().replace("30002", "99999");
        assert_eq!(decode(bad.as_bytes()), Err(RecordError::Field("pair")));
    }
}
