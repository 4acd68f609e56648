//! Confirmed calls replicated to another node (issue 16, part 3: a standby takes over the
//! calls of a node that died). With [`B2bua::replicate_calls`] the core keeps, per answered
//! call, what another node needs to carry it on: both legs' dialog state (RFC 3261 §12:
//! Call-ID, tags, URIs, remote target, route set, CSeqs, the peer and its transport), the
//! trunk of leg B, the parties and when it was answered, and its media as the policy
//! describes it ([`Policy::media_export`]). [`B2bua::take_call_changes`] hands the shell a
//! record whenever that changed (the answer, every in-dialog request either way and its
//! answer) and the call's number when it ended; the shell writes them to the shared store.
//!
//! [`B2bua::adopt_call`] is the other side: a record becomes a confirmed call here, with its
//! media adopted by the policy ([`Policy::media_adopt`]: the same relay ports), so the peers'
//! in-dialog requests are answered and relayed as before. Our CSeq on each leg jumps by
//! [`CSEQ_STEP`]: the record may lag the last request the dead node sent (an OPTIONS, a
//! session refresh), and a peer takes any higher CSeq (RFC 3261 §12.2.2 refuses only lower
//! ones). What a record does not carry: early (unanswered) calls, a transfer in progress,
//! the session timers (the adopted call has none; the media timeout still finds a dead leg),
//! a trunk's Digest state for leg B's in-dialog requests.

use std::collections::HashSet;

use super::call::{Established, Handshake};
use super::cdr::CallLog;
use super::*;
use crate::record::{Reader, RecordError, Writer};

/// How far our CSeq on each leg of an adopted call jumps ahead of the record's.
pub const CSEQ_STEP: u32 = 100;

const MAGIC: &[u8] = b"tlcall1 ";

/// One leg's dialog as a record carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegReplica {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    pub local_uri: String,
    pub remote_uri: String,
    pub remote_target: String,
    pub route_set: Vec<String>,
    pub peer: Peer,
    pub trunk: bool,
    pub local_cseq: u32,
    pub remote_cseq: Option<u32>,
}

/// A confirmed call as another node can carry it on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallReplica {
    pub a: LegReplica,
    pub b: LegReplica,
    pub b_trunk: Option<String>,
    /// Caller and callee as received, and as sent on leg B (the CDR's).
    pub parties: [String; 4],
    /// When the call was answered (Unix seconds; 0: the node had no wall clock).
    pub answered_unix: u64,
    /// The media, as [`Policy::media_export`] wrote it (empty: the call has none).
    pub media: Vec<u8>,
}

/// What changed about a replicated call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallChange {
    /// The call's record now (new or changed).
    Write {
        call: u64,
        replica: Box<CallReplica>,
    },
    /// The call ended: its record goes.
    Remove { call: u64 },
}

/// Why a record did not become a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdoptError {
    /// A call with the same leg A or leg B dialog is here already.
    Exists,
    /// The policy could not take over its media (ports in use, no relay).
    Media,
}

impl std::fmt::Display for AdoptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdoptError::Exists => f.write_str("the call is here already"),
            AdoptError::Media => f.write_str("its media could not be taken over"),
        }
    }
}

impl std::error::Error for AdoptError {}

/// What replication keeps between inputs.
#[derive(Default)]
pub(super) struct Replication {
    /// Calls whose record is due (in order, possibly repeated).
    dirty: Vec<CallId>,
    /// Calls with a record in the store (a removal is due when they go).
    written: HashSet<CallId>,
    /// Confirmed calls whose media the policy could not describe (not replicated).
    pub(super) unreplicable: u64,
}

impl LegReplica {
    fn of(d: &Dialog) -> LegReplica {
        LegReplica {
            call_id: d.call_id.clone(),
            local_tag: d.local_tag.clone(),
            remote_tag: d.remote_tag.clone(),
            local_uri: d.local_uri.clone(),
            remote_uri: d.remote_uri.clone(),
            remote_target: d.remote_target.clone(),
            route_set: d.route_set.clone(),
            peer: d.peer,
            trunk: d.trunk,
            local_cseq: d.local_cseq,
            remote_cseq: d.remote_cseq,
        }
    }

    fn into_dialog(self, headers: Option<Arc<HeaderPolicy>>) -> Dialog {
        Dialog {
            call_id: self.call_id,
            local_tag: self.local_tag,
            remote_tag: self.remote_tag,
            local_uri: self.local_uri,
            remote_uri: self.remote_uri,
            remote_target: self.remote_target,
            route_set: self.route_set,
            peer: self.peer,
            trunk: self.trunk,
            headers,
            local_cseq: self.local_cseq.wrapping_add(CSEQ_STEP),
            remote_cseq: self.remote_cseq,
        }
    }

    fn write(&self, w: &mut Writer) {
        w.str(&self.call_id)
            .str(&self.local_tag)
            .opt_str(self.remote_tag.as_deref())
            .str(&self.local_uri)
            .str(&self.remote_uri)
            .str(&self.remote_target)
            .u64(self.route_set.len() as u64);
        for r in &self.route_set {
            w.str(r);
        }
        let t = match self.peer.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        };
        w.str(&self.peer.addr.to_string())
            .str(t)
            .bool(self.trunk)
            .u64(u64::from(self.local_cseq))
            .opt_str(self.remote_cseq.map(|c| c.to_string()).as_deref());
    }

    fn read(r: &mut Reader<'_>) -> Result<LegReplica, RecordError> {
        let call_id = r.str("call_id")?.to_string();
        let local_tag = r.str("local_tag")?.to_string();
        let remote_tag = r.opt_str("remote_tag")?.map(str::to_string);
        let local_uri = r.str("local_uri")?.to_string();
        let remote_uri = r.str("remote_uri")?.to_string();
        let remote_target = r.str("remote_target")?.to_string();
        let n = r.u64("route_set")?;
        if n > 32 {
            return Err(RecordError::Field("route_set"));
        }
        let mut route_set = Vec::with_capacity(n as usize);
        for _ in 0..n {
            route_set.push(r.str("route")?.to_string());
        }
        let addr = r
            .str("peer")?
            .parse()
            .map_err(|_| RecordError::Field("peer"))?;
        let transport = match r.str("transport")? {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            _ => return Err(RecordError::Field("transport")),
        };
        let trunk = r.bool("trunk")?;
        let local_cseq = r.u32("local_cseq")?;
        let remote_cseq = match r.opt_str("remote_cseq")? {
            Some(c) => Some(c.parse().map_err(|_| RecordError::Field("remote_cseq"))?),
            None => None,
        };
        Ok(LegReplica {
            call_id,
            local_tag,
            remote_tag,
            local_uri,
            remote_uri,
            remote_target,
            route_set,
            peer: Peer { transport, addr },
            trunk,
            local_cseq,
            remote_cseq,
        })
    }
}

impl CallReplica {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC);
        self.a.write(&mut w);
        self.b.write(&mut w);
        w.opt_str(self.b_trunk.as_deref());
        for p in &self.parties {
            w.str(p);
        }
        w.u64(self.answered_unix).bytes(&self.media);
        w.finish()
    }

    pub fn decode(data: &[u8]) -> Result<CallReplica, RecordError> {
        let mut r = Reader::new(data, MAGIC)?;
        let a = LegReplica::read(&mut r)?;
        let b = LegReplica::read(&mut r)?;
        let b_trunk = r.opt_str("b_trunk")?.map(str::to_string);
        let mut parties: [String; 4] = Default::default();
        for p in &mut parties {
            *p = r.str("party")?.to_string();
        }
        let answered_unix = r.u64("answered")?;
        let media = r.bytes()?.to_vec();
        r.end()?;
        Ok(CallReplica {
            a,
            b,
            b_trunk,
            parties,
            answered_unix,
            media,
        })
    }
}

impl B2bua {
    /// Keep records of the confirmed calls for [`B2bua::take_call_changes`] (a node of a
    /// cluster). Off by default: then nothing is kept and nothing costs.
    pub fn replicate_calls(&mut self) {
        self.replication.get_or_insert_with(Replication::default);
    }

    /// Answered calls that got no record (their media could not be described).
    pub fn unreplicable_calls(&self) -> u64 {
        self.replication.as_ref().map_or(0, |r| r.unreplicable)
    }

    /// The call's record is due (it was answered, or its dialogs changed).
    pub(super) fn mark_replica(&mut self, id: CallId) {
        if let Some(r) = &mut self.replication {
            r.dirty.push(id);
        }
    }

    /// The call is gone: its record goes (when it had one).
    pub(super) fn forget_replica(&mut self, id: CallId) {
        if let Some(r) = &mut self.replication {
            if r.written.contains(&id) {
                r.dirty.push(id);
            }
        }
    }

    /// Records of the calls that changed since the last call, and the calls that ended.
    /// Empty unless [`B2bua::replicate_calls`] was called.
    pub fn take_call_changes(&mut self, now: Instant, policy: &mut dyn Policy) -> Vec<CallChange> {
        let Some(mut rep) = self.replication.take() else {
            return Vec::new();
        };
        let mut dirty = std::mem::take(&mut rep.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        let mut out = Vec::with_capacity(dirty.len());
        for id in dirty {
            let replica = match self.calls.get(&id) {
                Some(c) if c.is_confirmed() => self.replica_of(c, now, policy),
                _ => None,
            };
            match replica {
                Some(replica) => {
                    rep.written.insert(id);
                    out.push(CallChange::Write {
                        call: id.raw(),
                        replica: Box::new(replica),
                    });
                }
                None => {
                    if rep.written.remove(&id) {
                        out.push(CallChange::Remove { call: id.raw() });
                    } else if self.calls.get(&id).is_some_and(Call::is_confirmed) {
                        rep.unreplicable += 1;
                    }
                }
            }
        }
        self.replication = Some(rep);
        out
    }

    fn replica_of(&self, c: &Call, now: Instant, policy: &mut dyn Policy) -> Option<CallReplica> {
        let CallState::Confirmed(e) = &c.state else {
            return None;
        };
        if e.transfer.is_some() {
            // Mid-transfer the legs are about to change: the last record stands.
            return None;
        }
        let media = policy.media_export(c.media_ref(), now)?;
        let answered_unix = self.wall.map_or(0, |w| w.at(e.answered));
        Some(CallReplica {
            a: LegReplica::of(&c.a),
            b: LegReplica::of(&c.b),
            b_trunk: c.b_trunk.clone(),
            parties: c.log.parties(),
            answered_unix,
            media,
        })
    }

    /// Carry on a call another node replicated: a confirmed call here with the record's
    /// dialogs (our CSeqs [`CSEQ_STEP`] ahead) and its media taken over by the policy. Its
    /// number here is returned; its record is due under it ([`B2bua::take_call_changes`]).
    pub fn adopt_call(
        &mut self,
        r: CallReplica,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Result<u64, AdoptError> {
        let a_tag = r.a.remote_tag.clone().unwrap_or_default();
        let a_here = self
            .by_a
            .get(&r.a.call_id)
            .is_some_and(|l| l.iter().any(|(t, _)| *t == a_tag));
        if a_here || self.by_b.contains_key(&r.b.call_id) {
            return Err(AdoptError::Exists);
        }
        let answered = match (self.wall, r.answered_unix) {
            (Some(w), t) if t > 0 => {
                let ago = w.at(now).saturating_sub(t);
                now.checked_sub(Duration::from_secs(ago)).unwrap_or(now)
            }
            _ => now,
        };
        let id = CallId(self.next_call);
        let a_headers = policy.header_policy(None, r.a.peer, now);
        let b_headers = policy.header_policy(r.b_trunk.as_deref(), r.b.peer, now);
        let [caller, callee, caller_out, callee_out] = &r.parties;
        let mut log = CallLog::new(answered, [caller, callee], [caller_out, callee_out]);
        if let Some(t) = &r.b_trunk {
            log.attempt(t);
            log.attempt_done(200);
        }
        log.answered(answered);
        let call = Call {
            id,
            a: r.a.into_dialog(a_headers),
            b: r.b.into_dialog(b_headers),
            a_tx: None,
            early_source: None,
            state: CallState::Confirmed(Established {
                answered,
                handshake: Handshake::adopted(),
                timers: Default::default(),
                reoffer: Default::default(),
                transfer: None,
            }),
            b_auth: None,
            b_trunk: r.b_trunk,
            old_b: None,
            forks: Vec::new(),
            log,
        };
        if !r.media.is_empty() && !policy.media_adopt(call.media_ref(), &r.media, now) {
            return Err(AdoptError::Media);
        }
        self.next_call += 1;
        self.by_a
            .entry(call.a.call_id.clone())
            .or_default()
            .push((a_tag, id));
        self.by_b.insert(call.b.call_id.clone(), id);
        self.calls.insert(id, call);
        self.stats.calls_adopted += 1;
        self.mark_replica(id);
        Ok(id.raw())
    }
}
