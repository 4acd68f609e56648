//! An in-memory [`DataPlane`] for tests (also usable by other crates' tests): hands out port
//! pairs from a range, records every call, moves no packets.

use crate::dataplane::{DataPlane, Family, LegPair, LegStats, RelayError};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

/// One recorded call on the fake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Open(LegPair),
    SetRemote {
        port: u16,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    },
    /// SRTP keys set on a leg: (decrypt, encrypt) present.
    SetSrtp {
        port: u16,
        rx: bool,
        tx: bool,
    },
    /// Transcoding set (or cleared) on the leg owning `port`.
    SetTranscode {
        port: u16,
        spec: Option<crate::transcode::Spec>,
    },
    /// A digit handed to the leg owning `port` to send as telephone-events.
    InjectDtmf {
        port: u16,
        digit: crate::transcode::Dtmf,
    },
    Close(LegPair),
}

#[derive(Default)]
struct State {
    free: BTreeSet<u16>,
    open: HashMap<u16, LegPair>,
    remotes: HashMap<u16, (SocketAddr, Option<SocketAddr>)>,
    signalling: HashMap<u16, IpAddr>,
    families: HashMap<u16, Family>,
    stats: HashMap<u16, LegStats>,
    ops: Vec<Op>,
}

/// See the module documentation.
pub struct FakeDataPlane {
    ip: IpAddr,
    /// The IPv6 address of a dual-stack fake ([`FakeDataPlane::dual`]).
    ip6: Option<IpAddr>,
    state: Mutex<State>,
}

impl FakeDataPlane {
    /// `pairs` pairs from `first_port` (each pair takes 4 ports: a, a+1, b, b+1).
    pub fn new(ip: IpAddr, first_port: u16, pairs: u16) -> FakeDataPlane {
        let free = (0..pairs)
            .filter_map(|i| first_port.checked_add(i.checked_mul(4)?))
            .collect();
        FakeDataPlane {
            ip,
            ip6: None,
            state: Mutex::new(State {
                free,
                ..State::default()
            }),
        }
    }

    /// A dual-stack fake: ports facing IPv6 peers are "bound" on `ip6`.
    pub fn dual(ip4: IpAddr, ip6: IpAddr, first_port: u16, pairs: u16) -> FakeDataPlane {
        FakeDataPlane {
            ip6: Some(ip6),
            ..FakeDataPlane::new(ip4, first_port, pairs)
        }
    }

    /// The family `port` was opened for (while its pair is open).
    pub fn family(&self, port: u16) -> Option<Family> {
        self.lock().families.get(&port).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every call made so far, in order.
    pub fn ops(&self) -> Vec<Op> {
        self.lock().ops.clone()
    }

    /// Number of open pairs.
    pub fn open_pairs(&self) -> usize {
        self.lock().open.len() / 2
    }

    /// The last remote set on `port` (cleared when its pair closes).
    pub fn remote(&self, port: u16) -> Option<(SocketAddr, Option<SocketAddr>)> {
        self.lock().remotes.get(&port).copied()
    }

    /// The signalling IP last given with a remote of `port` (`set_remote_from`).
    pub fn signalling(&self, port: u16) -> Option<IpAddr> {
        self.lock().signalling.get(&port).copied()
    }

    /// Make `stats(port)` return these counters.
    pub fn set_stats(&self, port: u16, stats: LegStats) {
        self.lock().stats.insert(port, stats);
    }
}

impl DataPlane for FakeDataPlane {
    fn local_ip(&self) -> IpAddr {
        self.ip
    }

    fn local_ip_for(&self, family: Family) -> IpAddr {
        match (family, self.ip6) {
            (Family::V6, Some(ip6)) => ip6,
            _ => self.ip,
        }
    }

    fn set_srtp(
        &self,
        port: u16,
        rx: Option<crate::srtp::MasterKey>,
        tx: Option<crate::srtp::MasterKey>,
    ) -> Result<(), RelayError> {
        self.lock().ops.push(Op::SetSrtp {
            port,
            rx: rx.is_some(),
            tx: tx.is_some(),
        });
        Ok(())
    }

    fn set_transcode(
        &self,
        port: u16,
        spec: Option<crate::transcode::Spec>,
    ) -> Result<(), RelayError> {
        self.lock().ops.push(Op::SetTranscode { port, spec });
        Ok(())
    }

    fn inject_dtmf(&self, port: u16, digit: crate::transcode::Dtmf) -> Result<(), RelayError> {
        self.lock().ops.push(Op::InjectDtmf { port, digit });
        Ok(())
    }

    fn open_pair(&self) -> Result<LegPair, RelayError> {
        let f = Family::of(self.ip);
        self.open_pair_for([f, f])
    }

    fn open_pair_for(&self, families: [Family; 2]) -> Result<LegPair, RelayError> {
        let [fa, fb] = families.map(|f| Family::of(self.local_ip_for(f)));
        let mut st = self.lock();
        let a = st.free.pop_first().ok_or(RelayError::PortsExhausted)?;
        let pair = LegPair {
            a,
            b: a.wrapping_add(2),
        };
        st.open.insert(pair.a, pair);
        st.open.insert(pair.b, pair);
        st.families.insert(pair.a, fa);
        st.families.insert(pair.b, fb);
        st.ops.push(Op::Open(pair));
        Ok(pair)
    }

    fn open_pair_at(&self, pair: LegPair, families: [Family; 2]) -> Result<LegPair, RelayError> {
        let [fa, fb] = families.map(|f| Family::of(self.local_ip_for(f)));
        let mut st = self.lock();
        if pair.b != pair.a.wrapping_add(2) || !st.free.remove(&pair.a) {
            return Err(RelayError::PortUnavailable(pair.a));
        }
        st.open.insert(pair.a, pair);
        st.open.insert(pair.b, pair);
        st.families.insert(pair.a, fa);
        st.families.insert(pair.b, fb);
        st.ops.push(Op::Open(pair));
        Ok(pair)
    }

    fn set_remote(
        &self,
        port: u16,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    ) -> Result<(), RelayError> {
        let mut st = self.lock();
        if !st.open.contains_key(&port) {
            return Err(RelayError::UnknownPort(port));
        }
        st.remotes.insert(port, (rtp, rtcp));
        st.ops.push(Op::SetRemote { port, rtp, rtcp });
        Ok(())
    }

    fn set_remote_from(
        &self,
        port: u16,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
        signalling: Option<IpAddr>,
    ) -> Result<(), RelayError> {
        self.set_remote(port, rtp, rtcp)?;
        let mut st = self.lock();
        match signalling {
            Some(ip) => st.signalling.insert(port, ip),
            None => st.signalling.remove(&port),
        };
        Ok(())
    }

    fn close_pair(&self, pair: LegPair) {
        let mut st = self.lock();
        if st.open.remove(&pair.a).is_some() {
            st.open.remove(&pair.b);
            st.remotes.remove(&pair.a);
            st.remotes.remove(&pair.b);
            st.signalling.remove(&pair.a);
            st.signalling.remove(&pair.b);
            st.families.remove(&pair.a);
            st.families.remove(&pair.b);
            st.stats.remove(&pair.a);
            st.stats.remove(&pair.b);
            st.free.insert(pair.a);
            st.ops.push(Op::Close(pair));
        }
    }

    fn stats(&self, port: u16) -> Option<LegStats> {
        let st = self.lock();
        st.open.get(&port)?;
        Some(st.stats.get(&port).cloned().unwrap_or_default())
    }
}
