//! The relay port pool: even RTP ports (RTCP on port + 1, RFC 3550 section 11: "RTP SHOULD use an
//! even destination port number and the corresponding RTCP stream SHOULD use the next higher (odd)
//! destination port number") from the configured range.
//!
//! Freed ports go to the back of a FIFO so a port is reused as late as possible (stray packets of
//! an old call do not reach the next call that gets the port).

use std::collections::VecDeque;

#[derive(Debug)]
pub(crate) struct PortPool {
    free: VecDeque<u16>,
    capacity: usize,
}

impl PortPool {
    /// All even `p` with `min <= p` and `p + 1 <= max`.
    pub fn new(min: u16, max: u16) -> PortPool {
        let first = min.saturating_add(min & 1);
        let mut free = VecDeque::new();
        let mut p = first as u32;
        while p < max as u32 {
            free.push_back(p as u16);
            p += 2;
        }
        let capacity = free.len();
        PortPool { free, capacity }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Take the first port for which `try_use` succeeds. Ports it refuses (bound by someone
    /// else) go to the back of the queue. `None` when every free port was tried.
    pub fn take<T>(&mut self, mut try_use: impl FnMut(u16) -> Option<T>) -> Option<(u16, T)> {
        for _ in 0..self.free.len() {
            let p = self.free.pop_front()?;
            if let Some(t) = try_use(p) {
                return Some((p, t));
            }
            self.free.push_back(p);
        }
        None
    }

    pub fn put(&mut self, port: u16) {
        if self.free.len() < self.capacity && !self.free.contains(&port) {
            self.free.push_back(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ports_in_range() {
        let p = PortPool::new(20001, 20010);
        assert_eq!(
            p.free.iter().copied().collect::<Vec<_>>(),
            vec![20002, 20004, 20006, 20008]
        );
        let p = PortPool::new(20000, 20001);
        assert_eq!(p.capacity(), 1);
        let p = PortPool::new(65534, 65535);
        assert_eq!(p.capacity(), 1);
        let p = PortPool::new(20000, 20000);
        assert_eq!(p.capacity(), 0);
    }

    #[test]
    fn fifo_and_refusal() {
        let mut p = PortPool::new(100, 107);
        let (a, _) = p.take(|_| Some(())).unwrap();
        assert_eq!(a, 100);
        // 102 is "in use": skipped, moved to the back.
        let (b, _) = p.take(|x| (x != 102).then_some(())).unwrap();
        assert_eq!(b, 104);
        p.put(a);
        let order: Vec<u16> = p.free.iter().copied().collect();
        assert_eq!(order, vec![106, 102, 100]);
        assert!(p.take(|_| None::<()>).is_none());
        assert_eq!(p.available(), 3);
    }
}
