//! The kernel fast path (eBPF) as the worker core drives it: a pair whose both RTP sources
//! settled is handed to the kernel, taken back when something changes (a new remote, SRTP,
//! transcoding), and its counters synced back.

use super::*;

impl Core {
    /// Both legs' RTP sources settled: hand both directions to the kernel fast path.
    pub(super) fn maybe_offload(&mut self, leg_i: u32) {
        let Some((fast, ip)) = &self.fast else {
            return;
        };
        let strict = self.strict;
        let Some(leg) = self.legs.get(leg_i) else {
            return;
        };
        let Some(peer) = self.legs.get(leg.peer) else {
            return;
        };
        if leg.kflow.is_some() || leg.kfail || peer.kflow.is_some() || peer.kfail {
            return;
        }
        // SRTP and transcoding are processed in user space (the kernel program only
        // rewrites addresses).
        if leg.srtp.is_some() || peer.srtp.is_some() || leg.tc.is_some() || peer.tc.is_some() {
            return;
        }
        // Both RTP sources validated (RFC 3550 A.1 probation): the kernel continues their
        // sequence and jitter state.
        if leg.st.rx.kernel_seed().is_none() || peer.st.rx.kernel_seed().is_none() {
            return;
        }
        let (Some(SocketAddr::V4(src_l)), Some(SocketAddr::V4(src_p))) = (
            leg.st.latch[Kind::Rtp as usize].settled(strict),
            peer.st.latch[Kind::Rtp as usize].settled(strict),
        ) else {
            return;
        };
        let at_l = SocketAddrV4::new(*ip, leg.rtp_port());
        let at_p = SocketAddrV4::new(*ip, peer.rtp_port());
        let entry = |via: SocketAddrV4, to: SocketAddrV4, st: &LegState| {
            let mut e = FlowEntry::new(via, to);
            if let Some((ext, j16, _)) = st.rx.kernel_seed() {
                e.ext_max = ext;
                e.jitter16 = j16;
                e.rate = st.clock_rate(st.last_pt);
            }
            e.ssrc = st.rx.ssrc().to_be_bytes();
            e
        };
        let (k_l, e_l) = (FlowKey::new(at_l, src_l), entry(at_p, src_p, &leg.st));
        let (k_p, e_p) = (FlowKey::new(at_p, src_p), entry(at_l, src_l, &peer.st));
        let (peer_i, fast) = (leg.peer, fast.clone());
        let ok = fast.install(&k_l, &e_l) && {
            let ok = fast.install(&k_p, &e_p);
            if !ok {
                fast.remove(&k_l);
            }
            ok
        };
        for (i, key) in [(leg_i, k_l), (peer_i, k_p)] {
            if let Some(l) = self.legs.get_mut(i) {
                if ok {
                    l.kflow = Some(KFlow {
                        key,
                        packets: 0,
                        bytes: 0,
                        ssrc: l.st.rx.ssrc(),
                    });
                } else {
                    l.kfail = true;
                }
            }
        }
        if ok {
            self.local[ctr::KERNEL_FLOWS] += 2;
        } else {
            tracing::debug!(port = at_l.port(), "relay: kernel fast path refused a flow");
        }
    }

    /// Fold what the kernel forwarded for leg `i` (arriving at it) into its and its peer's
    /// stats: counters, sequence/loss, jitter, and `last_rtp` (media timeout).
    pub(super) fn sync_leg(&mut self, i: u32, now: Instant) {
        let Some((fast, _)) = &self.fast else {
            return;
        };
        let Some(leg) = self.legs.get(i) else {
            return;
        };
        let Some(kf) = leg.kflow else {
            return;
        };
        let Some(e) = fast.read(&kf.key) else {
            return;
        };
        let dp = e.packets.saturating_sub(kf.packets);
        let db = e.bytes.saturating_sub(kf.bytes);
        let peer_i = leg.peer;
        if let Some(leg) = self.legs.get_mut(i) {
            leg.kflow = Some(KFlow {
                packets: e.packets,
                bytes: e.bytes,
                ..kf
            });
            if dp == 0 {
                return;
            }
            leg.st.rtp_in += dp;
            leg.st.rtp_bytes_in += db;
            leg.st.rx.kernel_update(e.ext_max, dp, e.jitter16);
            leg.last_rtp = now;
        }
        if let Some(peer) = self.legs.get_mut(peer_i) {
            peer.st.rtp_out += dp;
            peer.st.rtp_bytes_out += db;
            peer.last_rtp = now;
        }
        self.local[ctr::PACKETS_IN] += dp;
        self.local[ctr::PACKETS_OUT] += dp;
        self.local[ctr::BYTES_IN] += db;
        self.local[ctr::BYTES_OUT] += db;
        self.local[ctr::KERNEL_PACKETS] += dp;
    }

    pub(super) fn sync_pair(&mut self, i: u32, now: Instant) {
        self.sync_leg(i, now);
        if let Some(p) = self.legs.get(i).map(|l| l.peer) {
            self.sync_leg(p, now);
        }
    }

    /// Take the pair of leg `i` out of the kernel fast path (after a last sync).
    pub(super) fn unoffload_pair(&mut self, i: u32, now: Instant) {
        self.sync_pair(i, now);
        let Some((fast, _)) = &self.fast else {
            return;
        };
        let fast = fast.clone();
        let peer = self.legs.get(i).map(|l| l.peer);
        for j in std::iter::once(i).chain(peer) {
            if let Some(kf) = self.legs.get_mut(j).and_then(|l| l.kflow.take()) {
                fast.remove(&kf.key);
                self.local[ctr::KERNEL_FLOWS] = self.local[ctr::KERNEL_FLOWS].saturating_sub(1);
            }
        }
    }
}
