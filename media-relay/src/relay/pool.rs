//! The relay port pool: even RTP ports (RTCP on port + 1, RFC 3550 section 11: "RTP SHOULD use an
//! even destination port number and the corresponding RTCP stream SHOULD use the next higher (odd)
//! destination port number") from the configured range.
//!
//! Ports are handed out in an unpredictable order (an attacker who sees one call's relay port
//! learns nothing about the next call's): the free list is shuffled at start, each `take` swaps
//! out a uniformly random free port and a released port goes back at a random place, all O(1),
//! driven by a ChaCha12 CSPRNG whose seed the shell passes in (the pool never reads OS
//! randomness itself).

use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};

#[derive(Debug)]
pub(crate) struct PortPool {
    free: Vec<u16>,
    /// Per even port of the range (index `(p - first) / 2`): whether it is in `free` (a port
    /// released twice goes back once).
    is_free: Vec<bool>,
    first: u16,
    capacity: usize,
    rng: ChaCha12Rng,
}

impl PortPool {
    /// All even `p` with `min <= p` and `p + 1 <= max`, in an order drawn from `seed`.
    pub fn new(min: u16, max: u16, seed: [u8; 32]) -> PortPool {
        let first = min.saturating_add(min & 1);
        let mut free = Vec::new();
        let mut p = first as u32;
        while p < max as u32 {
            free.push(p as u16);
            p += 2;
        }
        let capacity = free.len();
        let mut pool = PortPool {
            is_free: vec![true; capacity],
            free,
            first,
            capacity,
            rng: ChaCha12Rng::from_seed(seed),
        };
        // Fisher-Yates
        for i in (1..pool.free.len()).rev() {
            let j = pool.below(i + 1);
            pool.free.swap(i, j);
        }
        pool
    }

    /// A uniformly random number in `0..n` (`n > 0`; rejection sampling, no modulo bias).
    pub fn below(&mut self, n: usize) -> usize {
        let n = n.max(1) as u64;
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.rng.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }

    fn slot(&self, port: u16) -> Option<usize> {
        let off = port.checked_sub(self.first)?;
        if off % 2 != 0 {
            return None;
        }
        let i = usize::from(off / 2);
        (i < self.capacity).then_some(i)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Take a random free port for which `try_use` succeeds. Ports it refuses (bound by someone
    /// else) stay free. `None` when every free port was tried.
    pub fn take<T>(&mut self, mut try_use: impl FnMut(u16) -> Option<T>) -> Option<(u16, T)> {
        // Refused ports are moved past `end` so each is tried once.
        let mut end = self.free.len();
        while end > 0 {
            let i = self.below(end);
            let p = self.free[i];
            if let Some(t) = try_use(p) {
                self.free.swap_remove(i);
                if let Some(s) = self.slot(p) {
                    self.is_free[s] = false;
                }
                return Some((p, t));
            }
            end -= 1;
            self.free.swap(i, end);
        }
        None
    }

    /// Take `port` itself, when it is free and `try_use` succeeds with it (a call taken over
    /// from another node keeps its ports).
    pub fn take_exact<T>(
        &mut self,
        port: u16,
        try_use: impl FnOnce(u16) -> Option<T>,
    ) -> Option<T> {
        let s = self.slot(port)?;
        if !self.is_free[s] {
            return None;
        }
        let i = self.free.iter().position(|&p| p == port)?;
        let t = try_use(port)?;
        self.free.swap_remove(i);
        self.is_free[s] = false;
        Some(t)
    }

    /// Return `port` to the pool, at a random place. A port outside the range or already free is
    /// ignored.
    pub fn put(&mut self, port: u16) {
        let Some(s) = self.slot(port) else {
            return;
        };
        if self.is_free[s] {
            return;
        }
        self.is_free[s] = true;
        self.free.push(port);
        let last = self.free.len() - 1;
        let j = self.below(last + 1);
        self.free.swap(j, last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const SEED: [u8; 32] = [7; 32];

    #[test]
    fn even_ports_in_range() {
        let p = PortPool::new(20001, 20010, SEED);
        assert_eq!(
            p.free.iter().copied().collect::<BTreeSet<_>>(),
            BTreeSet::from([20002, 20004, 20006, 20008])
        );
        let p = PortPool::new(20000, 20001, SEED);
        assert_eq!(p.capacity(), 1);
        let p = PortPool::new(65534, 65535, SEED);
        assert_eq!(p.capacity(), 1);
        let p = PortPool::new(20000, 20000, SEED);
        assert_eq!(p.capacity(), 0);
    }

    /// Consecutive allocations are not a sequence; every port is handed out exactly once until
    /// released; a released port is handed out again; a double release gives it back once.
    #[test]
    fn random_order_every_port_once() {
        let mut p = PortPool::new(20000, 29999, [42; 32]);
        let n = p.capacity();
        assert_eq!(n, 5000);
        let mut got = Vec::new();
        while let Some((port, ())) = p.take(|_| Some(())) {
            got.push(port);
        }
        assert_eq!(got.len(), n);
        let set: BTreeSet<u16> = got.iter().copied().collect();
        assert_eq!(set.len(), n, "no port twice");
        assert!(set
            .iter()
            .all(|&x| (20000..29999).contains(&x) && x % 2 == 0));
        // Sequential (or any fixed stride) allocation would make most steps equal.
        let steps: Vec<i32> = got.windows(2).map(|w| w[1] as i32 - w[0] as i32).collect();
        let same = steps.windows(2).filter(|s| s[0] == s[1]).count();
        assert!(same < n / 50, "{same} equal steps in a row: predictable");
        let adjacent = steps.iter().filter(|&&s| s.abs() == 2).count();
        assert!(adjacent < n / 50, "{adjacent} neighbouring allocations");
        // Another seed, another order.
        let mut q = PortPool::new(20000, 29999, [43; 32]);
        let other: Vec<u16> = (0..32)
            .filter_map(|_| q.take(|_| Some(())).map(|x| x.0))
            .collect();
        assert_ne!(other[..], got[..32]);

        // Release all (one twice, one outside the range, one odd): each comes back once.
        for &port in &got {
            p.put(port);
        }
        p.put(got[0]);
        p.put(30000);
        p.put(20001);
        assert_eq!(p.available(), n);
        let mut again = BTreeSet::new();
        while let Some((port, ())) = p.take(|_| Some(())) {
            assert!(again.insert(port), "{port} handed out twice");
        }
        assert_eq!(again, set);
    }

    #[test]
    fn exact_ports_are_taken_once() {
        let mut p = PortPool::new(100, 107, SEED);
        assert_eq!(p.take_exact(101, Some), None, "odd: RTCP's");
        assert_eq!(p.take_exact(104, |_| None::<()>), None);
        assert_eq!(p.take_exact(104, Some), Some(104));
        assert_eq!(p.take_exact(104, Some), None, "taken");
        assert_eq!(p.available(), 3);
        p.put(104);
        assert_eq!(p.take_exact(104, Some), Some(104));
    }

    #[test]
    fn refused_ports_stay_free() {
        let mut p = PortPool::new(100, 107, SEED);
        // 102 is "in use" by someone else: never handed out, but stays in the pool.
        let mut got = BTreeSet::new();
        while let Some((x, ())) = p.take(|x| (x != 102).then_some(())) {
            got.insert(x);
        }
        assert_eq!(got, BTreeSet::from([100, 104, 106]));
        assert_eq!(p.available(), 1);
        assert!(p.take(|_| None::<()>).is_none());
        assert_eq!(p.take(|_| Some(())).map(|x| x.0), Some(102));
        assert_eq!(p.available(), 0);
    }
}
