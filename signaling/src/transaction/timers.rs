//! Time: the timers of the four state machines (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2)
//! and the end of transactions.

use super::*;

impl Transactions {
    // ----------------------------------------------------------------------------------- time

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let valid = self
                .txs
                .get(&id)
                .is_some_and(|t| t.timers[timer.idx()] == Some(at));
            if !valid {
                continue;
            }
            if let Some(t) = self.txs.get_mut(&id) {
                t.timers[timer.idx()] = None;
            }
            self.fire(id, timer, now);
        }
        self.prune();
    }

    pub(super) fn fire(&mut self, id: TxId, timer: Timer, now: Instant) {
        let cfg = self.cfg;
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        match (timer, tx.state) {
            (Timer::A, TxState::Calling) => {
                // §17.1.1.2: "When timer A fires, the client transaction MUST retransmit the
                // request by passing it to the transport layer, and MUST reset the timer with a
                // value of 2*T1." (It doubles on every firing, with no cap: T1, 2T1, 4T1 ...)
                tx.interval = tx.interval.saturating_mul(2);
                let next = now + tx.interval;
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: tx.bytes.clone(),
                });
                self.stats.retransmissions_sent += 1;
                self.arm(id, Timer::A, next);
            }
            (Timer::B, TxState::Calling) | (Timer::F, TxState::Trying | TxState::Proceeding) => {
                // §17.1.1.2: "If the client transaction is still in the "Calling" state when
                // timer B fires, the client transaction SHOULD inform the TU that a timeout has
                // occurred." §17.1.2.2: "If Timer F fires while the client transaction is still
                // in the "Trying" [or "Proceeding"] state, the client transaction SHOULD inform
                // the TU about the timeout, and then it SHOULD enter the "Terminated" state."
                self.stats.timeouts += 1;
                self.events.push_back(TuEvent::Timeout { tx: id });
                self.terminate(id);
            }
            (Timer::CancelGuard, TxState::Calling | TxState::Proceeding) => {
                self.stats.timeouts += 1;
                self.events.push_back(TuEvent::Timeout { tx: id });
                self.terminate(id);
            }
            (Timer::E, TxState::Trying | TxState::Proceeding) => {
                // §17.1.2.2: in "Trying", Timer E is reset "with a value of MIN(2*T1, T2)" each
                // time (doubling up to T2); in "Proceeding" it is reset "with a value of T2".
                tx.interval = if tx.state == TxState::Trying {
                    tx.interval.saturating_mul(2).min(cfg.t2)
                } else {
                    cfg.t2
                };
                let next = now + tx.interval;
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: tx.bytes.clone(),
                });
                self.stats.retransmissions_sent += 1;
                self.arm(id, Timer::E, next);
            }
            (Timer::G, TxState::Completed) => {
                // §17.2.1: "If timer G fires, the response is passed to the transport layer once
                // more for retransmission, and timer G is set to fire in MIN(2*T1, T2) seconds."
                tx.interval = tx.interval.saturating_mul(2).min(cfg.t2);
                let next = now + tx.interval;
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: tx.bytes.clone(),
                });
                self.stats.retransmissions_sent += 1;
                self.arm(id, Timer::G, next);
            }
            (Timer::H, TxState::Completed) => {
                // §17.2.1: "If timer H fires while in the "Completed" state, it implies that the
                // ACK was never received. In this case, the server transaction MUST transition
                // to the "Terminated" state, and MUST indicate to the TU that a transaction
                // failure has occurred."
                self.stats.ack_timeouts += 1;
                self.terminate(id);
            }
            (Timer::Retx2xx, TxState::Accepted)
                if tx.reliable_2xx.as_ref().is_some_and(|r| !r.acked) =>
            {
                // §13.3.1.4: the interval "starts at T1 seconds and doubles for each
                // retransmission until it reaches T2 seconds".
                tx.interval = tx.interval.saturating_mul(2).min(cfg.t2);
                let next = now + tx.interval;
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: tx.bytes.clone(),
                });
                self.stats.retransmissions_sent += 1;
                self.arm(id, Timer::Retx2xx, next);
            }
            (Timer::L, TxState::Accepted) => {
                // RFC 6026 §7.1: "If Timer L fires while the INVITE server transaction is in the
                // "Accepted" state, the transaction MUST transition to the "Terminated" state."
                // The 2xx of §13.3.1.4 has been retransmitted for 64*T1 too: give up on it.
                if tx.reliable_2xx.as_ref().is_some_and(|r| !r.acked) {
                    self.stats.ack_timeouts += 1;
                    self.events.push_back(TuEvent::AckTimeout { tx: id });
                }
                self.terminate(id);
            }
            // D (§17.1.1.2), K (§17.1.2.2), I (§17.2.1), J (§17.2.2), M (RFC 6026 §8.4): the
            // transaction has absorbed stragglers long enough.
            (Timer::D, TxState::Completed)
            | (Timer::K, TxState::Completed)
            | (Timer::I, TxState::Confirmed)
            | (Timer::J, TxState::Completed)
            | (Timer::M, TxState::Accepted) => self.terminate(id),
            _ => {}
        }
    }

    // -------------------------------------------------------------------------------- helpers

    pub(super) fn alloc_id(&mut self) -> TxId {
        let id = TxId(self.next_id);
        self.next_id += 1;
        id
    }

    pub(super) fn arm(&mut self, id: TxId, timer: Timer, at: Instant) {
        if let Some(t) = self.txs.get_mut(&id) {
            t.timers[timer.idx()] = Some(at);
            self.timers.push(Reverse((at, id, timer)));
        }
    }

    /// "The client [server] transaction MUST be destroyed the instant it enters the "Terminated"
    /// state" (§17.1.1.2, RFC 6026). Server transactions report it to the TU.
    pub(super) fn terminate(&mut self, id: TxId) {
        let Some(tx) = self.txs.remove(&id) else {
            return;
        };
        match &tx.key {
            Key::Client(k) => {
                if self.clients.get(k) == Some(&id) {
                    self.clients.remove(k);
                }
            }
            Key::Server(k) => {
                if self.servers.get(k) == Some(&id) {
                    self.servers.remove(k);
                }
            }
        }
        if let Some(r) = &tx.reliable_2xx {
            let k = (r.call_id.clone(), r.cseq);
            if self.pending_2xx.get(&k) == Some(&id) {
                self.pending_2xx.remove(&k);
            }
        }
        if !tx.kind.is_client() {
            let ack_received = match tx.kind {
                TxKind::InviteServer => match tx.state {
                    TxState::Completed => false,
                    TxState::Accepted => tx.reliable_2xx.as_ref().is_none_or(|r| r.acked),
                    _ => true,
                },
                _ => true,
            };
            self.events.push_back(TuEvent::ServerTerminated {
                tx: id,
                ack_received,
            });
        }
    }

    /// Drop stale timer entries from the top of the heap so that [`Self::poll_timeout`] is exact,
    /// and compact the heap when stale entries dominate it.
    pub(super) fn prune(&mut self) {
        while let Some(Reverse((at, id, timer))) = self.timers.peek().copied() {
            let valid = self
                .txs
                .get(&id)
                .is_some_and(|t| t.timers[timer.idx()] == Some(at));
            if valid {
                break;
            }
            self.timers.pop();
        }
        if self.timers.len() > 1024 && self.timers.len() > 8 * (self.txs.len() + 1) {
            let txs = &self.txs;
            self.timers.retain(|Reverse((at, id, timer))| {
                txs.get(id)
                    .is_some_and(|t| t.timers[timer.idx()] == Some(*at))
            });
        }
    }
}
