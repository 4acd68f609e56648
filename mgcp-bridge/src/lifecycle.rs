//! A gateway's own commands (NTFY, RSIP, DLCX) and its lifecycle: restarts end the calls on
//! the endpoints they name and re-arm them (RFC 3435 section 2.3.7), a gateway's DLCX ends its
//! call (section 2.3.8), a wildcard audit lists its endpoints (section 2.3.10).

use std::time::Instant;

use mgcp::{Command, Verb};
use signaling::b2bua::make_response;
use signaling::message::{Method, SipMessage};

use crate::{trunking, uac, Bridge, Out};

impl Bridge {
    /// A gateway's own command: the return code of the answer.
    pub(crate) fn on_gateway_command(
        &mut self,
        gw: &str,
        c: &Command,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> u16 {
        match c.verb {
            Verb::Ntfy => self.on_notify(gw, c, now, out),
            Verb::Rsip => {
                let method = c
                    .param("RM")
                    .unwrap_or("restart")
                    .trim()
                    .to_ascii_lowercase();
                let known = [
                    "restart",
                    "forced",
                    "graceful",
                    "disconnected",
                    "cancel-graceful",
                ];
                if !known.contains(&method.as_str()) {
                    return 536; // unknown or unsupported RestartMethod
                }
                *self
                    .rsips
                    .entry((gw.to_string(), method.clone()))
                    .or_insert(0) += 1;
                tracing::info!(gateway = %gw, endpoint = %c.endpoint, method = %method, "mgcp: RSIP");
                self.on_restart(gw, &c.endpoint, &method, now, out);
                200
            }
            Verb::Dlcx => {
                self.on_gateway_dlcx(gw, c, now, out);
                200
            }
            _ => 504,
        }
    }

    pub(crate) fn on_audit(&mut self, _txid: u32, response: &mgcp::Response) {
        // a wildcard AUEP lists the endpoints in Z: lines (RFC 3435 section 2.3.10)
        let names: Vec<&str> = response
            .params
            .iter()
            .filter(|p| p.name.eq_ignore_ascii_case("Z"))
            .map(|p| p.value.as_str())
            .collect();
        if names.is_empty() {
            return;
        }
        for g in self.gateways.values_mut() {
            let Some(w) = g.cfg.endpoints.clone() else {
                continue;
            };
            if names.iter().any(|n| mgcp::endpoint::name_matches(&w, n)) {
                g.endpoints.discovered(&w, names.iter().copied(), 4096);
            }
        }
    }

    /// End the calls on `gw`'s endpoints under `pattern` after RSIP `method`, then audit and
    /// re-arm them (graceful: they end as their calls do; nothing is cut).
    pub(crate) fn on_restart(
        &mut self,
        gw: &str,
        pattern: &str,
        method: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(g) = self.gateways.get_mut(gw) else {
            return;
        };
        match method {
            "graceful" => {
                // calls in progress end as they will; no new ones (503, reorder)
                if !g.draining.iter().any(|p| p.eq_ignore_ascii_case(pattern)) {
                    g.draining.push(pattern.to_string());
                }
                return;
            }
            "cancel-graceful" => {
                g.draining.retain(|p| !p.eq_ignore_ascii_case(pattern));
                return;
            }
            // restarted: back in service
            _ => g.draining.clear(),
        }
        let hit = |ep: &str| {
            mgcp::endpoint::name_matches(pattern, ep) || pattern.eq_ignore_ascii_case(ep)
        };
        // trunking calls: the gateway lost their connections
        let calls: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.gw == gw && c.endpoint.as_deref().is_none_or(&hit))
            .map(|(k, _)| k.clone())
            .collect();
        for call in calls {
            self.end_trunk_call(&call, now, out);
        }
        let keys: Vec<String> = self
            .lines
            .iter()
            .filter(|(_, l)| l.gw == gw && hit(&l.endpoint))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.line_lost(&key, now, out);
            self.arm(&key, now);
        }
        self.up.insert(gw.to_string(), true);
        self.audit(gw, now);
    }

    /// A DLCX from the gateway (RFC 3435 section 2.3.8: it deleted the connection itself).
    pub(crate) fn on_gateway_dlcx(
        &mut self,
        gw: &str,
        c: &Command,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let conn = c.param("I").map(str::to_string);
        let reason = c.param("E").unwrap_or("").to_string();
        tracing::info!(gateway = %gw, endpoint = %c.endpoint, reason = %reason, "mgcp: the gateway deleted a connection");
        let call = self
            .calls
            .iter()
            .find(|(_, b)| b.gw == gw && b.conn.is_some() && b.conn == conn)
            .map(|(k, _)| k.clone());
        if let Some(call) = call {
            self.end_trunk_call(&call, now, out);
            return;
        }
        let line = self
            .lines
            .iter()
            .find(|(_, l)| l.gw == gw && l.has_connection(conn.as_deref(), &c.endpoint))
            .map(|(k, _)| k.clone());
        if let Some(key) = line {
            self.line_lost(&key, now, out);
            self.arm(&key, now);
        }
    }

    /// A trunking call the gateway lost: BYE (or a final error) to the core, no DLCX.
    pub(crate) fn end_trunk_call(&mut self, call: &str, now: Instant, out: &mut Vec<Out>) {
        let Some(c) = self.calls.remove(call) else {
            return;
        };
        if c.state == trunking::State::Up {
            let me = self.gateways.get(&c.gw).map(|g| g.cfg.sip);
            if let Some(me) = me {
                let mut d = uac::Dialog::of_uas(&c.invite, &c.to_tag, me, c.from);
                let branch = self.branch();
                let bye = d.request(Method::Bye, &branch);
                self.send_sip(&c.gw, bye, c.from, branch, None, now, out);
            }
        } else {
            let r = make_response(&c.invite, 503, "Gateway Restarted", Some(&c.to_tag));
            out.push(Out::Sip(
                c.gw.clone(),
                c.from,
                SipMessage::Response(r).to_bytes(),
            ));
        }
    }
}
