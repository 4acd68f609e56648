//! The relay as the media control sees it: [`DataPlane`] for [`Relay`] (each call a command
//! to the worker owning the port), and [`NoLiveStats`], the same handle without live stats
//! round trips, for the B2BUA.

use super::*;
impl DataPlane for Relay {
    fn local_ip(&self) -> IpAddr {
        self.address
    }

    fn local_ip_for(&self, family: Family) -> IpAddr {
        self.ip_for(family)
    }

    fn open_pair(&self) -> Result<LegPair, RelayError> {
        let f = Family::of(self.address);
        self.open_pair_for([f, f])
    }

    fn open_pair_for(&self, families: [Family; 2]) -> Result<LegPair, RelayError> {
        // A family without an address of its own is served on the primary one.
        let fams = families.map(|f| {
            let ip = self.ip_for(f);
            (Family::of(ip), ip)
        });
        let now = Instant::now();
        let (pair, worker, socks) = {
            let mut g = self.ctl.lock().map_err(|_| RelayError::Stopped)?;
            self.reclaim(&mut g);
            let first = g.next_worker % self.workers.len().max(1);
            g.next_worker = g.next_worker.wrapping_add(1);
            let (worker, [(a, sa), (b, sb)]) = match take_two(&mut g, first, fams, now) {
                Ok(t) => t,
                Err(evict) => {
                    drop(g);
                    for (w, port) in evict {
                        let _ = self.send(w, Cmd::Drop { port }, true);
                    }
                    return Err(RelayError::PortsExhausted);
                }
            };
            let pair = LegPair { a, b };
            g.legs.insert(a, (pair, worker, fams[0].0));
            g.legs.insert(b, (pair, worker, fams[1].0));
            (pair, worker, Box::new([sa, sb]))
        };
        self.start_pair(pair, worker, socks, now)
    }

    fn open_pair_at(&self, pair: LegPair, families: [Family; 2]) -> Result<LegPair, RelayError> {
        let fams = families.map(|f| {
            let ip = self.ip_for(f);
            (Family::of(ip), ip)
        });
        let now = Instant::now();
        let (worker, socks) = {
            let mut g = self.ctl.lock().map_err(|_| RelayError::Stopped)?;
            self.reclaim(&mut g);
            let (worker, socks) = take_exact_two(&mut g, pair, fams)?;
            g.legs.insert(pair.a, (pair, worker, fams[0].0));
            g.legs.insert(pair.b, (pair, worker, fams[1].0));
            (worker, socks)
        };
        self.start_pair(pair, worker, socks, now)
    }

    fn set_remote(
        &self,
        port: u16,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    ) -> Result<(), RelayError> {
        self.set_remote_from(port, rtp, rtcp, None)
    }

    fn set_remote_from(
        &self,
        port: u16,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
        signalling: Option<IpAddr>,
    ) -> Result<(), RelayError> {
        let (_, w) = self.worker_of(port).ok_or(RelayError::UnknownPort(port))?;
        self.send(
            w,
            Cmd::SetRemote {
                port,
                rtp,
                rtcp,
                signalling,
            },
            false,
        )
    }

    fn close_pair(&self, pair: LegPair) {
        let now = Instant::now();
        let (w, keep) = {
            let Ok(mut g) = self.ctl.lock() else { return };
            match g.legs.get(&pair.a).copied() {
                Some((p, w, fa)) if p == pair => {
                    g.legs.remove(&pair.a);
                    let fb = g.legs.remove(&pair.b).map_or(fa, |l| l.2);
                    // Kept: reusable at once (the worker applies this Close before any later
                    // Open of these ports). Not kept: the ports return to the pool when the
                    // worker has closed the sockets.
                    let keep = g.kept_count + 2 <= g.kept_max;
                    if keep {
                        if let Some(q) = g.kept.get_mut(w) {
                            q.push_back((pair.a, now, fa));
                            q.push_back((pair.b, now, fb));
                            g.kept_count += 2;
                        }
                    }
                    (w, keep)
                }
                _ => return,
            }
        };
        let _ = self.send(
            w,
            Cmd::Close {
                pair,
                keep,
                at: now,
            },
            false,
        );
    }

    fn stats(&self, port: u16) -> Option<LegStats> {
        let (_, w) = self.worker_of(port)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(w, Cmd::Stats { port, reply: tx }, true).ok()?;
        rx.recv_timeout(Duration::from_secs(2)).ok().flatten()
    }

    fn set_clock_rates(&self, port: u16, rates: &[(u8, u32)]) -> Result<(), RelayError> {
        let (_, w) = self.worker_of(port).ok_or(RelayError::UnknownPort(port))?;
        self.send(
            w,
            Cmd::SetClockRates {
                port,
                rates: rates.to_vec(),
            },
            false,
        )
    }

    fn set_srtp(
        &self,
        port: u16,
        rx: Option<media_core::srtp::MasterKey>,
        tx: Option<media_core::srtp::MasterKey>,
    ) -> Result<(), RelayError> {
        let (_, w) = self.worker_of(port).ok_or(RelayError::UnknownPort(port))?;
        self.send(w, Cmd::SetSrtp { port, rx, tx }, false)
    }

    fn set_transcode(
        &self,
        port: u16,
        spec: Option<media_core::transcode::Spec>,
    ) -> Result<(), RelayError> {
        let (_, w) = self.worker_of(port).ok_or(RelayError::UnknownPort(port))?;
        self.send(w, Cmd::SetTranscode { port, spec }, false)
    }

    fn inject_dtmf(&self, port: u16, digit: media_core::transcode::Dtmf) -> Result<(), RelayError> {
        let (_, w) = self.worker_of(port).ok_or(RelayError::UnknownPort(port))?;
        self.send(w, Cmd::InjectDtmf { port, digit }, false)
    }
}

/// A [`DataPlane`] handle over a shared [`Relay`] for a controller that never reads live per-leg
/// statistics, such as the B2BUA (final stats of every closed pair come from
/// [`Relay::drain_closed_stats`]). `stats` answers `None` at once instead of a round trip to the
/// worker thread, which `MediaCalls::delete` would otherwise make for both legs of every stream
/// when a call ends. Everything else is the relay's own.
pub struct NoLiveStats(pub Arc<Relay>);

impl DataPlane for NoLiveStats {
    fn local_ip(&self) -> IpAddr {
        self.0.local_ip()
    }
    fn local_ip_for(&self, family: Family) -> IpAddr {
        self.0.local_ip_for(family)
    }
    fn open_pair(&self) -> Result<LegPair, RelayError> {
        self.0.open_pair()
    }
    fn open_pair_for(&self, families: [Family; 2]) -> Result<LegPair, RelayError> {
        self.0.open_pair_for(families)
    }
    fn open_pair_at(&self, pair: LegPair, families: [Family; 2]) -> Result<LegPair, RelayError> {
        self.0.open_pair_at(pair, families)
    }

    fn set_remote(
        &self,
        port: u16,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    ) -> Result<(), RelayError> {
        self.0.set_remote(port, rtp, rtcp)
    }
    fn set_remote_from(
        &self,
        port: u16,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
        signalling: Option<IpAddr>,
    ) -> Result<(), RelayError> {
        self.0.set_remote_from(port, rtp, rtcp, signalling)
    }
    fn close_pair(&self, pair: LegPair) {
        self.0.close_pair(pair)
    }
    fn stats(&self, _port: u16) -> Option<LegStats> {
        None
    }
    fn set_clock_rates(&self, port: u16, rates: &[(u8, u32)]) -> Result<(), RelayError> {
        self.0.set_clock_rates(port, rates)
    }
    fn set_srtp(
        &self,
        port: u16,
        rx: Option<media_core::srtp::MasterKey>,
        tx: Option<media_core::srtp::MasterKey>,
    ) -> Result<(), RelayError> {
        self.0.set_srtp(port, rx, tx)
    }
    fn set_transcode(
        &self,
        port: u16,
        spec: Option<media_core::transcode::Spec>,
    ) -> Result<(), RelayError> {
        self.0.set_transcode(port, spec)
    }
    fn inject_dtmf(&self, port: u16, digit: media_core::transcode::Dtmf) -> Result<(), RelayError> {
        self.0.inject_dtmf(port, digit)
    }
}

impl Relay {
    /// Hand a pair just taken to its worker; on failure its ports go back.
    fn start_pair(
        &self,
        pair: LegPair,
        worker: usize,
        socks: Box<[Option<[UdpSocket; 2]>; 2]>,
        now: Instant,
    ) -> Result<LegPair, RelayError> {
        // Fresh sockets must be registered with the worker's poller now; kept ones already
        // receive, and a datagram for them wakes the worker, which applies this first.
        let wake = socks.iter().any(Option::is_some);
        if let Err(e) = self.send(
            worker,
            Cmd::Open {
                pair,
                socks,
                at: now,
            },
            wake,
        ) {
            if let Ok(mut g) = self.ctl.lock() {
                g.legs.remove(&pair.a);
                g.legs.remove(&pair.b);
                g.pool.put(pair.a);
                g.pool.put(pair.b);
            }
            return Err(e);
        }
        Ok(pair)
    }
}
