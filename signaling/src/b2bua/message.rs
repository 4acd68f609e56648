//! MESSAGE (RFC 3428) relayed out of dialog: a new request on leg B, its final answer relayed
//! back; no dialog, no media.

use super::*;

impl B2bua {
    /// An out-of-dialog MESSAGE (RFC 3428): relayed as a new request on leg B (topology
    /// hidden like a call's), its final answer relayed back; no dialog, no media.
    pub(super) fn on_message(
        &mut self,
        tx: TxId,
        req: Request,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if req.max_forwards().unwrap_or(70) == 0 {
            self.answer_own(tx, &req, 483, "Too Many Hops", now);
            return;
        }
        let (Some(from_na), Some(_to)) = (req.from(), req.to()) else {
            self.answer_own(tx, &req, 400, "Bad Request", now);
            return;
        };
        let mut req = req;
        let admitted = match self.admit_caller(tx, &mut req, from, now, policy) {
            Ok(a) => a,
            Err(status) => {
                *self.stats.messages.entry(status).or_insert(0) += 1;
                return;
            }
        };
        // A served user who is not registered: kept for later, if the registrar keeps messages.
        if matches!(admitted.located, Some(Err(_)))
            && self.hold_message(tx, &req, admitted.caller_user(&from_na), now, policy)
        {
            return;
        }
        let (target, to_user, from_user) =
            match self.route_standalone(&req, &from_na, admitted, from, now, policy) {
                Ok(t) => t,
                Err(refusal) => {
                    let status = self.refuse(tx, &req, refusal, now);
                    *self.stats.messages.entry(status).or_insert(0) += 1;
                    return;
                }
            };
        if target.peer.transport == Transport::Udp && req.body.len() > MESSAGE_UDP_MAX {
            self.answer_own(tx, &req, 513, "Message Too Large", now);
            return;
        }
        let out = self.message_request(&req, &target, &to_user, &from_user);
        let ctx = self.tx.send_request_ref(&out, target.peer, now);
        self.keep_standalone(ctx, &out, &target, None, policy, now);
        let to_tag = self.new_tag();
        self.owners.insert(
            ctx,
            TxOwner::Message(PendingMessage {
                server_tx: tx,
                a_req: req,
                to_tag,
            }),
        );
    }

    /// Leg B's MESSAGE to `target`: a new request from trunkline (its own Call-ID and tag)
    /// carrying what leg A's `req` carries end to end.
    fn message_request(
        &mut self,
        req: &Request,
        target: &Target,
        to_user: &str,
        from_user: &str,
    ) -> Request {
        let via = self.via_for(target.peer);
        let from_tag = self.new_tag();
        let call_id = self.new_call_id();
        let user = user_at(to_user);
        let mut h = Headers::with_capacity(12);
        h.push("Via", via);
        h.push(
            "Max-Forwards",
            req.max_forwards()
                .unwrap_or(70)
                .saturating_sub(1)
                .to_string(),
        );
        h.push(
            "From",
            cat(&[
                "<sip:",
                &user_at(from_user),
                self.our_host(target.peer),
                ">;tag=",
                &from_tag,
            ]),
        );
        h.push("To", cat(&["<sip:", &user, &target.host, ">"]));
        h.push("Call-ID", call_id);
        h.push("CSeq", cseq_value(1, "MESSAGE"));
        copy_passthrough(&req.headers, &mut h);
        if let Some(ct) = req.headers.get("Content-Type") {
            h.push("Content-Type", ct.to_string());
        }
        Request {
            method: Method::Message,
            uri: cat(&["sip:", &user, &target.host]),
            headers: h,
            body: req.body.clone(),
        }
    }

    /// Where an out-of-dialog request that is not a call (MESSAGE, SUBSCRIBE) goes: the
    /// location service for a served domain, else the policy's plan. The first target only.
    pub(super) fn route_standalone(
        &mut self,
        req: &Request,
        from_na: &NameAddr,
        admitted: Admitted,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Result<(Target, String, String), Refusal> {
        let from_user = admitted.caller_user(from_na);
        let to_user = ruri_user(&req.uri);
        let outcome = match admitted.located {
            None => policy.route_message(req, from, &to_user, &from_user, now),
            Some(Err(miss)) => miss,
            Some(Ok(targets)) => RouteOutcome::Route {
                targets,
                to_user: String::new(),
                from_user: from_user.clone(),
                from_display: None,
            },
        };
        // The plan's `locate`: the served user it names (no call limits: not a call).
        let outcome = match outcome {
            RouteOutcome::Locate { user } => match self.locate_served(&user, now, policy) {
                Ok(targets) => RouteOutcome::Route {
                    targets,
                    to_user: String::new(),
                    from_user: from_user.clone(),
                    from_display: None,
                },
                Err(miss) => miss,
            },
            other => other,
        };
        match outcome {
            RouteOutcome::Route {
                mut targets,
                to_user,
                from_user,
                ..
            } if !targets.is_empty() => Ok((targets.swap_remove(0), to_user, from_user)),
            RouteOutcome::Route { .. } | RouteOutcome::Locate { .. } => {
                Err(Refusal::Plain(404, "Not Found".into()))
            }
            RouteOutcome::Reject { code, reason } => Err(Refusal::Plain(code, reason)),
            RouteOutcome::Unavailable { retry_after } => Err(Refusal::Unavailable(retry_after)),
            RouteOutcome::Redirect { code, contacts } => Err(Refusal::Redirect(code, contacts)),
        }
    }

    pub(super) fn answer_message(
        &mut self,
        pm: PendingMessage,
        status: u16,
        reason: &str,
        now: Instant,
    ) {
        let resp = make_response(&pm.a_req, status, reason, Some(&pm.to_tag));
        self.tx.send_response(pm.server_tx, resp, now);
        *self.stats.messages.entry(status).or_insert(0) += 1;
    }

    /// trunkline's own answer to a MESSAGE.
    pub(super) fn answer_own(
        &mut self,
        tx: TxId,
        req: &Request,
        status: u16,
        reason: &str,
        now: Instant,
    ) {
        let tag = self.new_tag();
        let resp = make_response(req, status, reason, Some(&tag));
        self.tx.send_response(tx, resp, now);
        *self.stats.messages.entry(status).or_insert(0) += 1;
    }
}
