//! The dial plan's answer for a new call or message, in the core's terms: the trunks' targets
//! (resolved addresses, MGCP gateways through the bridge), limits and trunk health applied.

use super::*;

impl LivePolicy {
    /// The dial plan's answer for a new request; `calls`: count it against the trunks' call
    /// limits (a call) or not (a MESSAGE).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan(
        &mut self,
        request_uri: &str,
        from: Peer,
        to_user: &str,
        from_user: &str,
        claimed: &headers::Claimed,
        calls: bool,
        now: Instant,
    ) -> RouteOutcome {
        let q = RouteQuery {
            to_user,
            from_user,
            request_uri,
            source_trunk: self.trunk_of(from),
            source_ip: Some(from.addr.ip()),
            pai_user: claimed.pai_user.as_deref(),
            diversion_user: claimed.diversion_user.as_deref(),
        };
        let Some(d) = self.config.dialplan.lookup(&q) else {
            return RouteOutcome::Reject {
                code: 404,
                reason: "Not Found".into(),
            };
        };
        match d.action {
            Action::Route(names) => {
                // A call from a trunk counts against that trunk's limits too.
                if let Some(src) = q.source_trunk.map(str::to_string).filter(|_| calls) {
                    let lim = self.trunk_limits(&src);
                    if let Err(l) = self.guard.usage.admit_inbound(&src, lim, now) {
                        self.limit_hit(&src, l);
                        return self.unavailable();
                    }
                }
                let config = self.config.clone();
                let dns = self.dns.clone();
                let mgcp_bridge = self.mgcp_bridge.clone();
                // A probed trunk that is down is skipped at once (no timeout to wait); all
                // of a route's trunks down is a 503 with Retry-After, like all at their limit.
                let up: Vec<&String> = names.iter().filter(|n| !self.health.is_down(n)).collect();
                let mut full = up.len() < names.len();
                let targets: Vec<Target> = up
                    .into_iter()
                    .filter_map(|n| config.trunks.get(n))
                    .filter(|t| {
                        if !calls {
                            return true;
                        }
                        let lim = TrunkLimits {
                            max_calls: t.max_calls,
                            max_cps: t.max_cps,
                        };
                        match self.guard.usage.check(&t.name, lim, now) {
                            Ok(()) => true,
                            Err(l) => {
                                // A trunk at its limit is skipped like a failed one.
                                self.limit_hit(&t.name, l);
                                full = true;
                                false
                            }
                        }
                    })
                    .collect::<Vec<_>>()
                    .into_iter()
                    .flat_map(|t| match (&t.mgcp, mgcp_bridge.get(&t.name).copied()) {
                        (None, _) => {
                            let addrs = trunk_addresses(&dns, t);
                            // A name that does not resolve: skipped like a trunk that is down.
                            full |= addrs.is_empty();
                            let transport = transport_of(t.transport);
                            let host = t.address.uri_host();
                            addrs
                                .iter()
                                .map(|a| Target {
                                    trunk: t.name.clone(),
                                    peer: Peer {
                                        transport,
                                        addr: *a,
                                    },
                                    host: host.clone(),
                                })
                                .collect::<Vec<_>>()
                        }
                        // An MGCP gateway: to its address in the bridge.
                        (Some(_), Some(bridge)) => vec![Target {
                            trunk: t.name.clone(),
                            peer: Peer {
                                transport: Transport::Udp,
                                addr: bridge,
                            },
                            host: format!("{}{}", t.name, crate::mgcp_bridge::HOST_SUFFIX),
                        }],
                        // added by a reload: gateways are set at start
                        (Some(_), None) => Vec::new(),
                    })
                    .collect();
                if targets.is_empty() && full {
                    self.guard.usage.not_started();
                    return self.unavailable();
                }
                RouteOutcome::Route {
                    targets,
                    to_user: d.to_user.unwrap_or_else(|| to_user.to_string()),
                    from_user: d.from_user.unwrap_or_else(|| from_user.to_string()),
                    from_display: d.from_display,
                }
            }
            Action::Redirect(contacts, code) => RouteOutcome::Redirect { code, contacts },
            Action::Locate => RouteOutcome::Locate {
                user: d.to_user.unwrap_or_else(|| to_user.to_string()),
            },
            Action::Reject(code, reason) => RouteOutcome::Reject {
                code,
                reason: reason.unwrap_or_else(|| signaling::status::reason_phrase(code).into()),
            },
        }
    }
}
