//! Input from the wire: requests (retransmissions absorbed, ACKs matched, new server
//! transactions) and responses (matched to client transactions, §17.1.3).

use super::*;

impl Transactions {
    // --------------------------------------------------------------------------------- input

    /// A message (already parsed) arrived from `from` at `now`.
    ///
    /// Requests: retransmissions are absorbed (re-sending the last response where the state
    /// machine says so), ACKs are matched to INVITE server transactions, new requests create a
    /// server transaction and go up as [`TuEvent::Request`] with `received`/`rport` set on their top
    /// Via (§18.2.1, RFC 3581 §4). Responses are matched to client transactions (§17.1.3); stray
    /// responses are dropped (a B2BUA does not forward them).
    pub fn handle_message(&mut self, msg: SipMessage, from: Peer, now: Instant) {
        match msg {
            SipMessage::Request(req) => self.handle_request(req, from, now),
            SipMessage::Response(resp) => self.handle_response(resp, now),
        }
        self.prune();
    }

    pub(super) fn handle_request(&mut self, mut req: Request, from: Peer, now: Instant) {
        let Some(key) = server_key(&req) else {
            self.stats.malformed += 1;
            return;
        };
        set_received(&mut req.headers, from);

        if req.method == Method::Ack {
            self.handle_ack(req, key, from, now);
            return;
        }

        if let Some(&id) = self.servers.get(&key) {
            self.absorb_request(id);
            return;
        }

        // §9.2: "the CANCEL request matches a transaction ... using the procedures of §17.2.3 with
        // the method INVITE".
        let cancels = if req.method == Method::Cancel {
            self.servers.get(&key.with_method(Method::Invite)).copied()
        } else {
            None
        };

        let id = self.alloc_id();
        self.stats.server_created += 1;
        if req.method == Method::Invite {
            // §17.2.1: "the server transaction MUST generate a 100 (Trying) response unless it
            // knows that the TU will generate a provisional or final response within 200 ms".
            // The TU handles the request before the next transmit is polled: the 100 goes out
            // then, unless the TU has answered (a challenge or a refusal is one packet, not two).
            let bytes = trying_for(&req);
            self.trying_due.push(id);
            let tx = Tx::new(
                TxKind::InviteServer,
                TxState::Proceeding,
                from,
                Key::Server(key.clone()),
                bytes,
                self.cfg.t1,
            );
            self.txs.insert(id, tx);
        } else {
            let tx = Tx::new(
                TxKind::NonInviteServer,
                TxState::Trying,
                from,
                Key::Server(key.clone()),
                Vec::new(),
                self.cfg.t1,
            );
            self.txs.insert(id, tx);
        }
        self.servers.insert(key, id);
        self.events.push_back(TuEvent::Request {
            tx: id,
            req,
            from,
            cancels,
        });
    }

    /// A request matched a live server transaction: a retransmission.
    pub(super) fn absorb_request(&mut self, id: TxId) {
        let Some(tx) = self.txs.get(&id) else { return };
        self.stats.retransmissions_absorbed += 1;
        let resend = match (tx.kind, tx.state) {
            // §17.2.1: "If a request retransmission is received while in the "Proceeding" state,
            // the most recent provisional response that was received from the TU MUST be passed
            // to the transport layer for retransmission." And in "Completed": "the server SHOULD
            // pass the response to the transport for retransmission".
            (TxKind::InviteServer, TxState::Proceeding | TxState::Completed) => true,
            // RFC 6026 §7.1: in "Accepted", retransmitted INVITEs are absorbed without a resend
            // (the TU retransmits the 2xx itself).
            (TxKind::InviteServer, _) => false,
            // §17.2.2: in "Trying" "any retransmissions of the request received while in this
            // state MUST be discarded"; in "Proceeding"/"Completed" the last response is resent.
            (TxKind::NonInviteServer, TxState::Proceeding | TxState::Completed) => true,
            _ => false,
        };
        if resend && !tx.bytes.is_empty() {
            let t = Transmit {
                to: tx.peer,
                data: tx.bytes.clone(),
            };
            self.transmits.push_back(t);
            self.stats.retransmissions_sent += 1;
        }
    }

    pub(super) fn handle_ack(&mut self, req: Request, key: ServerKey, from: Peer, now: Instant) {
        let inv_key = key.with_method(Method::Invite);
        let mut found = self.servers.get(&inv_key).copied();
        if found.is_none() {
            if let ServerKey::Legacy { to_tag, .. } = &key {
                // RFC 2543 matching: the ACK carries the To tag of our response while the INVITE
                // (and so the key) had none: "the To tag of the ACK matches the To tag of the
                // response sent by the server transaction" (§17.2.3).
                if let Some(&id) = self.servers.get(&inv_key.with_to_tag("")) {
                    let ok = self
                        .txs
                        .get(&id)
                        .and_then(|t| t.response_to_tag.as_deref())
                        .is_some_and(|t| t == to_tag.as_str());
                    if ok {
                        found = Some(id);
                    }
                }
            }
        }
        if let Some(id) = found {
            let state = self.txs.get(&id).map(|t| t.state);
            match state {
                Some(TxState::Completed) => {
                    // §17.2.1: "If an ACK is received while the server transaction is in the
                    // "Completed" state, the server transaction MUST transition to the
                    // "Confirmed" state. As Timer G is ignored in this state, any
                    // retransmissions of the response will cease." Timer I = T4 (0 reliable).
                    let t4 = self.cfg.t4;
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.state = TxState::Confirmed;
                        tx.ack_received = true;
                        tx.timers[Timer::G.idx()] = None;
                        tx.timers[Timer::H.idx()] = None;
                        if tx.reliable {
                            self.terminate(id);
                        } else {
                            self.arm(id, Timer::I, now + t4);
                        }
                    }
                    return;
                }
                Some(TxState::Confirmed) => {
                    // "The purpose of the "Confirmed" state is to absorb any additional ACK
                    // messages that arrive" (§17.2.1).
                    self.stats.retransmissions_absorbed += 1;
                    return;
                }
                Some(TxState::Proceeding) => {
                    // An ACK before any final response: meaningless, drop it.
                    self.stats.retransmissions_absorbed += 1;
                    return;
                }
                // RFC 6026 §7.1 Accepted: the ACK is passed to the TU (below).
                _ => {}
            }
        }
        self.match_2xx_ack(&req);
        self.events.push_back(TuEvent::Ack { req, from });
    }

    /// An ACK for a 2xx: stop the 2xx retransmissions of §13.3.1.4 when Call-ID, CSeq number and
    /// From tag match a pending 2xx.
    pub(super) fn match_2xx_ack(&mut self, ack: &Request) {
        let Some(call_id) = ack.headers.get("Call-ID").map(str::trim) else {
            return;
        };
        let Some((cseq, _)) = ack.headers.get("CSeq").and_then(parse_cseq) else {
            return;
        };
        let Some(&id) = self.pending_2xx.get(&(call_id.to_string(), cseq)) else {
            return;
        };
        let from_tag = ack.headers.get("From").and_then(tag_param).unwrap_or("");
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        if let Some(r) = tx.reliable_2xx.as_mut() {
            if r.from_tag == from_tag {
                r.acked = true;
                tx.ack_received = true;
                tx.timers[Timer::Retx2xx.idx()] = None;
                self.pending_2xx.remove(&(call_id.to_string(), cseq));
            }
        }
    }

    /// Tell the layer that the ACK for the 2xx of (Call-ID, CSeq number) arrived (when the TU
    /// matched it by other means): 2xx retransmissions stop.
    pub fn ack_received(&mut self, call_id: &str, cseq: u32) {
        if let Some(id) = self.pending_2xx.remove(&(call_id.trim().to_string(), cseq)) {
            if let Some(tx) = self.txs.get_mut(&id) {
                tx.ack_received = true;
                tx.timers[Timer::Retx2xx.idx()] = None;
                if let Some(r) = tx.reliable_2xx.as_mut() {
                    r.acked = true;
                }
            }
        }
        self.prune();
    }

    pub(super) fn handle_response(&mut self, resp: Response, now: Instant) {
        let key = (|| {
            let via = top_via(&resp.headers)?;
            let branch = via.param("branch")?.to_string();
            let (_, method) = resp.headers.get("CSeq").and_then(parse_cseq)?;
            Some(ClientKey { branch, method })
        })();
        let Some(key) = key else {
            self.stats.malformed += 1;
            return;
        };
        let Some(&id) = self.clients.get(&key) else {
            self.stats.stray_responses += 1;
            return;
        };
        let Some(tx) = self.txs.get(&id) else {
            return;
        };
        let status = resp.status;
        if !(100..=699).contains(&status) {
            self.stats.malformed += 1;
            return;
        }
        let (kind, state, reliable) = (tx.kind, tx.state, tx.reliable);
        match kind {
            TxKind::InviteClient => match (state, status) {
                (TxState::Calling | TxState::Proceeding, 100..=199) => {
                    // §17.1.1.2: "If the client transaction receives a provisional response
                    // while in the "Calling" state, it transitions to the "Proceeding" state. In
                    // the "Proceeding" state, the client transaction SHOULD NOT retransmit the
                    // request any longer."
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.state = TxState::Proceeding;
                        tx.timers[Timer::A.idx()] = None;
                        tx.timers[Timer::B.idx()] = None;
                    }
                    self.events.push_back(TuEvent::Response { tx: id, resp });
                }
                (TxState::Calling | TxState::Proceeding, 200..=299) => {
                    // RFC 6026 §8.4: "If a 2xx response is received while the client INVITE
                    // state machine is in the "Calling" or "Proceeding" states, it MUST
                    // transition to the "Accepted" state, pass the 2xx response to the TU, and
                    // set Timer M to 64*T1."
                    let m = now + self.cfg.t1x64();
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.state = TxState::Accepted;
                        tx.timers[Timer::A.idx()] = None;
                        tx.timers[Timer::B.idx()] = None;
                        tx.timers[Timer::CancelGuard.idx()] = None;
                    }
                    self.arm(id, Timer::M, m);
                    self.events.push_back(TuEvent::Response { tx: id, resp });
                }
                (TxState::Calling | TxState::Proceeding, _) => {
                    // §17.1.1.2: "reception of a response with status code from 300-699 MUST
                    // cause the client transaction to transition to "Completed". The client
                    // transaction MUST pass the received response up to the TU, and the client
                    // transaction MUST generate an ACK request". Timer D: >= 32 s / 0.
                    let ack = self
                        .txs
                        .get(&id)
                        .and_then(|t| t.ack_template.as_deref())
                        .map(|tpl| encode(&SipMessage::Request(build_ack(tpl, &resp))))
                        .unwrap_or_default();
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.state = TxState::Completed;
                        tx.timers[Timer::A.idx()] = None;
                        tx.timers[Timer::B.idx()] = None;
                        tx.timers[Timer::CancelGuard.idx()] = None;
                        self.transmits.push_back(Transmit {
                            to: tx.peer,
                            data: ack.clone(),
                        });
                        tx.ack = Some(ack);
                    }
                    self.events.push_back(TuEvent::Response { tx: id, resp });
                    if reliable {
                        self.terminate(id);
                    } else {
                        self.arm(id, Timer::D, now + TIMER_D_UNRELIABLE);
                    }
                }
                (TxState::Accepted, 200..=299) => {
                    // RFC 6026 §8.4: "any 2xx responses that match this client transaction ...
                    // MUST be passed up to the TU" while in "Accepted".
                    self.events.push_back(TuEvent::Response { tx: id, resp });
                }
                (TxState::Completed, 300..=699) => {
                    // §17.1.1.2: "Any retransmissions of the final response that are received
                    // while in the "Completed" state MUST cause the ACK to be re-passed to the
                    // transport layer for retransmission, but the newly received response MUST
                    // NOT be passed up to the TU."
                    self.stats.retransmissions_absorbed += 1;
                    if let Some(tx) = self.txs.get(&id) {
                        if let Some(ack) = &tx.ack {
                            self.transmits.push_back(Transmit {
                                to: tx.peer,
                                data: ack.clone(),
                            });
                            self.stats.retransmissions_sent += 1;
                        }
                    }
                }
                _ => {
                    self.stats.retransmissions_absorbed += 1;
                }
            },
            TxKind::NonInviteClient => match (state, status) {
                (TxState::Trying | TxState::Proceeding, 100..=199) => {
                    // §17.1.2.2: "If a provisional response is received while in the "Trying"
                    // state, the response MUST be passed to the TU, and then the client
                    // transaction SHOULD move to the "Proceeding" state."
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.state = TxState::Proceeding;
                    }
                    self.events.push_back(TuEvent::Response { tx: id, resp });
                }
                (TxState::Trying | TxState::Proceeding, _) => {
                    // "If a final response (status codes 200-699) is received while in the
                    // "Trying" [or "Proceeding"] state, the response MUST be passed to the TU,
                    // and the client transaction MUST transition to the "Completed" state."
                    // Timer K: T4 for unreliable transports, zero for reliable ones.
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.state = TxState::Completed;
                        tx.timers[Timer::E.idx()] = None;
                        tx.timers[Timer::F.idx()] = None;
                    }
                    self.events.push_back(TuEvent::Response { tx: id, resp });
                    if reliable {
                        self.terminate(id);
                    } else {
                        self.arm(id, Timer::K, now + self.cfg.t4);
                    }
                }
                _ => {
                    // "The "Completed" state exists to buffer any additional response
                    // retransmissions that may be received".
                    self.stats.retransmissions_absorbed += 1;
                }
            },
            TxKind::InviteServer | TxKind::NonInviteServer => {}
        }
    }
}
