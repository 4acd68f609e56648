//! Taking relay ports for a pair: kept sockets of a worker or cold ports bound now, in an
//! order an attacker cannot predict; and the exact ports of a call taken over from another node.

use super::*;

/// Each side's sockets of a pair, when freshly bound (`None`: kept open by the worker).
pub(super) type PairSockets = Box<[Option<[UdpSocket; 2]>; 2]>;

/// One port with its sockets if freshly bound (`None`: kept open by the worker).
type Taken = (u16, Option<[UdpSocket; 2]>);

/// Kept ports to close, as (worker, port).
type Evict = Vec<(usize, u16)>;

/// Two ports served by one worker, port `i` of family `fams[i].0` (bound on `fams[i].1`),
/// preferring (1) ports kept by worker `first` that rested [`REUSE_AFTER`], (2) cold ports bound
/// now, (3) any kept ports of `first`, then (4) two kept ports of another worker.
///
/// `Err` holds kept ports of the other family to close (worker, port): with no cold port left,
/// ports kept by one family would otherwise never serve the other; closed, they return to the
/// pool for the next pairs.
pub(super) fn take_two(
    g: &mut Ctl,
    first: usize,
    fams: [(Family, IpAddr); 2],
    now: Instant,
) -> Result<(usize, [Taken; 2]), Evict> {
    let mut got: [Option<Taken>; 2] = [None, None];
    for stage in 0..3 {
        for (slot, &(fam, ip)) in got.iter_mut().zip(&fams) {
            if slot.is_some() {
                continue;
            }
            *slot = match stage {
                0 => pick_kept(g, first, now, true, fam).map(|p| (p, None)),
                1 => g
                    .pool
                    .take(|p| bind_pair(ip, p))
                    .map(|(p, socks)| (p, Some(socks))),
                _ => pick_kept(g, first, now, false, fam).map(|p| (p, None)),
            };
        }
    }
    if let [Some(a), Some(b)] = got {
        return Ok((first, [a, b]));
    }
    // Give back what was taken (kept ports to the front, in order; bound sockets close).
    for (taken, &(fam, _)) in got.into_iter().zip(&fams).rev() {
        match taken {
            Some((p, None)) => {
                if let Some(q) = g.kept.get_mut(first) {
                    q.push_front((p, now, fam));
                    g.kept_count += 1;
                }
            }
            Some((p, Some(_))) => g.pool.put(p),
            None => {}
        }
    }
    let has = |q: &VecDeque<(u16, Instant, Family)>| {
        let n = |f: Family| q.iter().filter(|e| e.2 == f).count();
        if fams[0].0 == fams[1].0 {
            n(fams[0].0) >= 2
        } else {
            n(fams[0].0) >= 1 && n(fams[1].0) >= 1
        }
    };
    if let Some(other) = (0..g.kept.len()).find(|&w| w != first && has(&g.kept[w])) {
        if let (Some(a), Some(b)) = (
            pick_kept(g, other, now, false, fams[0].0),
            pick_kept(g, other, now, false, fams[1].0),
        ) {
            return Ok((other, [(a, None), (b, None)]));
        }
    }
    let mut evict = Vec::new();
    for &(fam, _) in &fams {
        let found = g.kept.iter().enumerate().find_map(|(w, q)| {
            let i = q.iter().position(|e| e.2 != fam)?;
            Some((w, i))
        });
        if let Some((w, i)) = found {
            if let Some((p, _, _)) = g.kept.get_mut(w).and_then(|q| q.remove(i)) {
                g.kept_count -= 1;
                evict.push((w, p));
            }
        }
    }
    Err(evict)
}

/// How many of the oldest kept ports of a worker a reuse chooses from at random.
const KEPT_CHOICE: usize = 32;

/// A kept port of worker `w` and family `fam`, chosen at random among its oldest
/// [`KEPT_CHOICE`] of that family (only among those that rested [`REUSE_AFTER`] with `rested`):
/// reuse order is not predictable either.
fn pick_kept(g: &mut Ctl, w: usize, now: Instant, rested: bool, fam: Family) -> Option<u16> {
    let idx: Vec<usize> = g
        .kept
        .get(w)?
        .iter()
        .enumerate()
        .filter(|(_, e)| e.2 == fam)
        .take(KEPT_CHOICE)
        .take_while(|(_, e)| !rested || now.saturating_duration_since(e.1) >= REUSE_AFTER)
        .map(|(i, _)| i)
        .collect();
    if idx.is_empty() {
        return None;
    }
    let i = idx[g.pool.below(idx.len())];
    let (p, _, _) = g.kept.get_mut(w)?.remove(i)?;
    g.kept_count -= 1;
    Some(p)
}

/// The two ports of `pair` themselves (a call taken over from another node): each one kept
/// open by a worker (both by the same one) or free in the pool and bound now. The worker is
/// the one keeping a port, else the next in turn.
pub(super) fn take_exact_two(
    g: &mut Ctl,
    pair: LegPair,
    fams: [(Family, IpAddr); 2],
) -> Result<(usize, PairSockets), RelayError> {
    let ports = [pair.a, pair.b];
    if pair.a == pair.b {
        return Err(RelayError::PortUnavailable(pair.b));
    }
    if let Some(p) = ports.into_iter().find(|p| g.legs.contains_key(p)) {
        return Err(RelayError::PortUnavailable(p));
    }
    let kept_by = |g: &Ctl, port: u16| g.kept.iter().position(|q| q.iter().any(|e| e.0 == port));
    let owners = ports.map(|p| kept_by(g, p));
    for (i, port) in ports.into_iter().enumerate() {
        let family_ok = owners[i]
            .and_then(|w| g.kept.get(w))
            .is_none_or(|q| q.iter().any(|e| e.0 == port && e.2 == fams[i].0));
        if !family_ok {
            return Err(RelayError::PortUnavailable(port));
        }
    }
    let worker = match owners {
        [Some(x), Some(y)] if x != y => return Err(RelayError::PortUnavailable(pair.b)),
        [Some(w), _] | [_, Some(w)] => w,
        [None, None] => {
            let w = g.next_worker % g.kept.len().max(1);
            g.next_worker = g.next_worker.wrapping_add(1);
            w
        }
    };
    let mut socks: [Option<[UdpSocket; 2]>; 2] = [None, None];
    for i in 0..2 {
        if owners[i].is_some() {
            continue;
        }
        let ip = fams[i].1;
        match g.pool.take_exact(ports[i], |p| bind_pair(ip, p)) {
            Some(s) => socks[i] = Some(s),
            None => {
                if i == 1 && socks[0].is_some() {
                    g.pool.put(ports[0]);
                }
                return Err(RelayError::PortUnavailable(ports[i]));
            }
        }
    }
    for (i, port) in ports.into_iter().enumerate() {
        if owners[i].is_some() {
            if let Some(q) = g.kept.get_mut(worker) {
                q.retain(|e| e.0 != port);
                g.kept_count -= 1;
            }
        }
    }
    Ok((worker, Box::new(socks)))
}

/// Bind RTP on `port` and RTCP on `port + 1`.
fn bind_pair(ip: IpAddr, port: u16) -> Option<[UdpSocket; 2]> {
    let rtp = UdpSocket::bind(SocketAddr::new(ip, port)).ok()?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, port.checked_add(1)?)).ok()?;
    rtp.set_nonblocking(true).ok()?;
    rtcp.set_nonblocking(true).ok()?;
    Some([rtp, rtcp])
}
