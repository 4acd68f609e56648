//! Output of the TU: requests that start client transactions, responses of server
//! transactions, reliable 2xx, stateless sends, and transport errors.

use super::*;

impl Transactions {
    // ----------------------------------------------------------------------------- TU → wire

    /// Start a client transaction for `req` towards `to`. The TU has already put the top Via (with
    /// a fresh branch starting with [`MAGIC_COOKIE`]) on `req`. INVITE runs the INVITE client
    /// machine (Timers A, B, D, M), anything else the non-INVITE one (E, F, K). The ACK for a
    /// non-2xx final is generated here (§17.1.1.3); the ACK for a 2xx is the TU's business
    /// ([`Transactions::send_stateless`]). An ACK passed here is sent statelessly and the id
    /// returned names no transaction.
    pub fn send_request(&mut self, req: Request, to: Peer, now: Instant) -> TxId {
        self.send_request_ref(&req, to, now)
    }

    /// [`Transactions::send_request`] for a TU that keeps the request (the layer only reads it:
    /// it is serialised once and the transaction keeps those bytes), saving the TU a clone.
    pub fn send_request_ref(&mut self, req: &Request, to: Peer, now: Instant) -> TxId {
        let id = self.alloc_id();
        let bytes = encode_request(req);
        if to.transport == Transport::Udp && bytes.len() > UDP_SIZE_LIMIT {
            self.stats.udp_oversize += 1;
        }
        self.transmits.push_back(Transmit {
            to,
            data: bytes.clone(),
        });
        if req.method == Method::Ack {
            self.prune();
            return id;
        }
        let branch = top_via(&req.headers)
            .and_then(|v| v.param("branch").map(str::to_string))
            // Without a branch no response can match; keep a unique key so timers still run.
            .unwrap_or_else(|| format!("\0{}", id.0));
        let key = ClientKey {
            branch,
            method: req.method.clone(),
        };
        self.stats.client_created += 1;
        let reliable = to.transport.is_reliable();
        let t1 = self.cfg.t1;
        let timeout = now + self.cfg.t1x64();
        if req.method == Method::Invite {
            // §17.1.1.2: "The "Calling" state MUST be entered when the TU initiates a new client
            // transaction with an INVITE request. ... If an unreliable transport is being used,
            // the client transaction MUST start timer A with a value of T1. ... the client
            // transaction MUST start timer B with a value of 64*T1 seconds".
            let mut tx = Tx::new(
                TxKind::InviteClient,
                TxState::Calling,
                to,
                Key::Client(key.clone()),
                bytes,
                t1,
            );
            tx.ack_template = Some(Box::new(ack_template(req)));
            self.txs.insert(id, tx);
            if !reliable {
                self.arm(id, Timer::A, now + t1);
            }
            self.arm(id, Timer::B, timeout);
        } else {
            // §17.1.2.2: "The "Trying" state is entered when the TU initiates a new client
            // transaction with a request. When entering this state, the client transaction
            // SHOULD set timer F to fire in 64*T1 seconds. ... If an unreliable transport is in
            // use, the client transaction MUST set timer E to fire in T1 seconds."
            if req.method == Method::Cancel {
                self.guard_cancelled_invite(&key.branch, now);
            }
            let tx = Tx::new(
                TxKind::NonInviteClient,
                TxState::Trying,
                to,
                Key::Client(key.clone()),
                bytes,
                t1,
            );
            self.txs.insert(id, tx);
            if !reliable {
                self.arm(id, Timer::E, now + t1);
            }
            self.arm(id, Timer::F, timeout);
        }
        self.clients.insert(key, id);
        self.prune();
        id
    }

    /// Bound INVITE client transaction `tx`: like a cancelled one (§9.1), it is destroyed (with
    /// a [`TuEvent::Timeout`]) 64·T1 from now unless a final response ends it first, so a peer
    /// that answers only 1xx cannot keep it forever (in "Proceeding" no timer of §17.1.1 runs).
    /// For a branch the TU gave up on, and for re-INVITEs, which are answered at once.
    pub fn guard_invite(&mut self, tx: TxId, now: Instant) {
        let Some(Key::Client(key)) = self.txs.get(&tx).map(|t| t.key.clone()) else {
            return;
        };
        if key.method == Method::Invite {
            self.guard_cancelled_invite(&key.branch, now);
        }
    }

    /// §9.1: "If there is no final response for the original request in 64*T1 seconds ... the
    /// client SHOULD then consider the original transaction cancelled and SHOULD destroy the
    /// client transaction handling the original request."
    pub(super) fn guard_cancelled_invite(&mut self, branch: &str, now: Instant) {
        let key = ClientKey {
            branch: branch.to_string(),
            method: Method::Invite,
        };
        let Some(&id) = self.clients.get(&key) else {
            return;
        };
        let live = self
            .txs
            .get(&id)
            .is_some_and(|t| matches!(t.state, TxState::Calling | TxState::Proceeding));
        let already = self
            .txs
            .get(&id)
            .is_some_and(|t| t.timers[Timer::CancelGuard.idx()].is_some());
        if live && !already {
            let at = now + self.cfg.t1x64();
            self.arm(id, Timer::CancelGuard, at);
        }
    }

    /// Send a response on server transaction `tx`: provisional responses any number of times, then
    /// one final. On an INVITE server transaction a 2xx moves it to RFC 6026's "Accepted" state
    /// (Timer L = 64·T1) in which retransmitted INVITEs are absorbed and further 2xx from the TU
    /// are sent; a 3xx-6xx moves it to "Completed" and is retransmitted with Timer G until the ACK
    /// (Timer H bounds the wait). Responses on a transaction that no longer accepts them are
    /// dropped.
    pub fn send_response(&mut self, tx: TxId, resp: Response, now: Instant) {
        self.respond(tx, resp, now);
        self.prune();
    }

    /// Answer server transaction `tx` with a final response sent once, and forget the
    /// transaction at once: no retransmission of the response, no state kept (a retransmitted
    /// request is then a new one and gets its own answer). For answers to sources that have not
    /// shown who they are (challenges): whoever forges their address gets one packet per packet.
    pub fn respond_once(&mut self, tx: TxId, resp: Response) {
        let Some(t) = self.txs.get(&tx) else {
            return;
        };
        if t.kind.is_client() || resp.status < 200 {
            return;
        }
        self.transmits.push_back(Transmit {
            to: t.peer,
            data: encode_response(&resp),
        });
        self.stats.stateless_answers += 1;
        self.terminate(tx);
        self.prune();
    }

    /// Forget server transaction `tx` without answering it (a request from a banned source).
    pub fn discard(&mut self, tx: TxId) {
        if self.txs.get(&tx).is_some_and(|t| !t.kind.is_client()) {
            self.terminate(tx);
            self.prune();
        }
    }

    pub(super) fn respond(&mut self, id: TxId, resp: Response, now: Instant) -> bool {
        let Some(tx) = self.txs.get_mut(&id) else {
            return false;
        };
        let status = resp.status;
        if !(100..=699).contains(&status) {
            return false;
        }
        tx.tu_answered = true;
        let t1 = self.cfg.t1;
        let t64 = self.cfg.t1x64();
        let reliable = tx.reliable;
        match (tx.kind, tx.state) {
            (TxKind::InviteServer, TxState::Proceeding) => {
                let bytes = encode_response(&resp);
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: bytes.clone(),
                });
                tx.bytes = bytes;
                match status {
                    100..=199 => {}
                    200..=299 => {
                        // RFC 6026 §7.1: "If, while in the "Proceeding" state, the TU passes a
                        // 2xx response to the server transaction, the server transaction MUST
                        // pass this response to the transport layer for transmission. ... The
                        // server transaction MUST then transition to the "Accepted" state" and
                        // start Timer L = 64*T1.
                        tx.state = TxState::Accepted;
                        self.arm(id, Timer::L, now + t64);
                    }
                    _ => {
                        // §17.2.1: "While in the "Proceeding" state, if the TU passes a response
                        // with status code from 300 to 699 to the server transaction, the
                        // response MUST be passed to the transport layer for transmission, and
                        // the state machine MUST enter the "Completed" state. For unreliable
                        // transports, timer G is set to fire in T1 seconds ... timer H MUST be
                        // set to fire in 64*T1 seconds for all transports."
                        tx.state = TxState::Completed;
                        tx.response_to_tag = resp
                            .headers
                            .get("To")
                            .and_then(tag_param)
                            .map(str::to_string);
                        tx.interval = t1;
                        if !reliable {
                            self.arm(id, Timer::G, now + t1);
                        }
                        self.arm(id, Timer::H, now + t64);
                    }
                }
                true
            }
            (TxKind::InviteServer, TxState::Accepted) if (200..=299).contains(&status) => {
                // RFC 6026 §7.1: "2xx from TU / send response" in "Accepted".
                let bytes = encode_response(&resp);
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: bytes.clone(),
                });
                tx.bytes = bytes;
                true
            }
            (TxKind::NonInviteServer, TxState::Trying | TxState::Proceeding) => {
                let bytes = encode_response(&resp);
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: bytes.clone(),
                });
                tx.bytes = bytes;
                if status < 200 {
                    // §17.2.2: "While in the "Trying" state, if the TU passes a provisional
                    // response to the server transaction, the server transaction MUST enter the
                    // "Proceeding" state."
                    tx.state = TxState::Proceeding;
                } else {
                    // "If the TU passes a final response (status codes 200-699) to the server
                    // while in the "Proceeding" state, the transaction MUST enter the
                    // "Completed" state ... When the server transaction enters the "Completed"
                    // state, it MUST set Timer J to fire in 64*T1 seconds for unreliable
                    // transports, and zero seconds for reliable transports."
                    tx.state = TxState::Completed;
                    if reliable {
                        self.terminate(id);
                    } else {
                        self.arm(id, Timer::J, now + t64);
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// Send a 2xx to an INVITE on server transaction `tx` and keep retransmitting it as the UAS
    /// core must (RFC 3261 §13.3.1.4): "the 2xx response is passed to the transport with an
    /// interval that starts at T1 seconds and doubles for each retransmission until it reaches T2
    /// seconds ... The response can be considered a final response ... once an ACK is received
    /// ... If the server retransmits the 2xx response for 64*T1 seconds without receiving an ACK,
    /// the dialog is confirmed, but the session SHOULD be terminated."
    ///
    /// An ACK whose Call-ID, CSeq number and From tag match stops the retransmissions (and still
    /// goes up as [`TuEvent::Ack`]); [`Transactions::ack_received`] does the same on the TU's word.
    /// Without an ACK, [`TuEvent::AckTimeout`] is emitted after 64·T1. No retransmissions over
    /// reliable transports, but the ACK wait still applies.
    pub fn send_2xx_reliably(&mut self, tx: TxId, resp: Response, now: Instant) {
        let is_2xx = (200..=299).contains(&resp.status);
        let call_id = resp.headers.get("Call-ID").map(|s| s.trim().to_string());
        let cseq = resp.headers.get("CSeq").and_then(parse_cseq).map(|c| c.0);
        let from_tag = resp
            .headers
            .get("From")
            .and_then(tag_param)
            .unwrap_or("")
            .to_string();
        let invite = self
            .txs
            .get(&tx)
            .is_some_and(|t| t.kind == TxKind::InviteServer);
        let sent = self.respond(tx, resp, now);
        if !(sent && is_2xx && invite) {
            self.prune();
            return;
        }
        let (Some(call_id), Some(cseq)) = (call_id, cseq) else {
            self.prune();
            return;
        };
        let t1 = self.cfg.t1;
        let Some(t) = self.txs.get_mut(&tx) else {
            self.prune();
            return;
        };
        let reliable = t.reliable;
        if t.reliable_2xx.is_none() {
            t.reliable_2xx = Some(Box::new(Reliable2xx {
                call_id: call_id.clone(),
                cseq,
                from_tag,
                acked: false,
            }));
            t.interval = t1;
            self.pending_2xx.insert((call_id, cseq), tx);
            if !reliable {
                self.arm(tx, Timer::Retx2xx, now + t1);
            }
        }
        self.prune();
    }

    /// Send a message outside any transaction (the ACK for a 2xx, stateless replies). Requests
    /// are sent as they are; the caller has put the Via it wants.
    pub fn send_stateless(&mut self, msg: &SipMessage, to: Peer) {
        self.transmits.push_back(Transmit {
            to,
            data: encode(msg),
        });
    }

    /// ICMP port unreachable / connection refused for `to` (§17.1.4, §18.4): every client
    /// transaction still waiting for a final response from `to` reports
    /// [`TuEvent::TransportError`] and terminates.
    ///
    /// INVITE server transactions that keep retransmitting a final response to `to` give up too
    /// (§17.2.4: "the server transaction ... SHOULD inform the TU that a failure has occurred, and
    /// MUST transition to the Terminated state"): one in "Completed" ends with
    /// `ServerTerminated { ack_received: false }`; one in "Accepted" whose 2xx is sent with
    /// [`Transactions::send_2xx_reliably`] and not yet ACKed reports [`TuEvent::AckTimeout`] first
    /// (the TU ends the session). Server transactions still waiting for the TU are left alone.
    pub fn transport_error(&mut self, to: Peer, _now: Instant) {
        let mut hit: Vec<(TxId, bool)> = self
            .txs
            .iter()
            .filter(|(_, t)| t.peer == to)
            .filter_map(|(id, t)| match (t.kind, t.state) {
                (
                    TxKind::InviteClient | TxKind::NonInviteClient,
                    TxState::Calling | TxState::Trying | TxState::Proceeding,
                ) => Some((*id, true)),
                (TxKind::InviteServer, TxState::Completed) => Some((*id, false)),
                (TxKind::InviteServer, TxState::Accepted)
                    if t.reliable_2xx.as_ref().is_some_and(|r| !r.acked) =>
                {
                    Some((*id, false))
                }
                _ => None,
            })
            .collect();
        hit.sort_unstable();
        for (id, client) in hit {
            self.stats.transport_errors += 1;
            if client {
                self.events.push_back(TuEvent::TransportError { tx: id });
            } else if self.state(id) == Some(TxState::Accepted) {
                self.events.push_back(TuEvent::AckTimeout { tx: id });
            }
            self.terminate(id);
        }
        self.prune();
    }
}
