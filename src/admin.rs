//! The operator's API on the metrics listener (JSON), and what `trunkline ctl` talks to:
//!
//! | request | answer |
//! |---|---|
//! | `GET /calls`, `GET /calls/{id}` | calls held: id, state, trunk, age, both legs' Call-IDs and peers, media per stream and leg (relay port, remote, latched source, packets, loss, jitter, MOS) |
//! | `DELETE /calls/{id}` | the call ended (BYE on both legs, or 503/CANCEL while ringing) |
//! | `GET /registrations[?user=U]` | live registrations |
//! | `DELETE /registrations/{user@host}` | the AoR's bindings removed |
//! | `GET /trunks` | per trunk: address, transport, up (probes), registered, active calls, limits |
//! | `POST /drain` | new calls refused (503), calls in progress go on |
//!
//! Every one of them (and `POST /reload`) needs `Authorization: Bearer <token>` when a token is
//! configured (`admin.token_file`, or `metrics.reload_token`); without one they answer only on a
//! loopback listener. A request with `Origin` or `Sec-Fetch-Site: cross-site` is refused (a
//! browser is no way in). The core task answers through a bounded channel; a request never
//! blocks the signaling core (it is served between inputs, like a message).

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::AdminRequest;

/// Whether an admin request may go ahead (`Err((status, metric reason))` if not).
pub fn allowed(
    origin_or_cross_site: bool,
    bearer: Option<&str>,
    token: Option<&str>,
    listener_loopback: bool,
) -> Result<(), (&'static str, &'static str)> {
    if origin_or_cross_site {
        return Err(("403 Forbidden", "cross_origin"));
    }
    match token {
        Some(t) => match bearer {
            Some(b) if crate::metrics::same_secret(b, t) => Ok(()),
            _ => Err(("401 Unauthorized", "unauthorized")),
        },
        None if listener_loopback => Ok(()),
        None => Err(("403 Forbidden", "admin_disabled")),
    }
}

/// What the admin endpoint asks the core task.
pub enum Query {
    Calls(Option<u64>),
    Hangup(u64),
    Registrations(Option<String>),
    Unregister(String),
    Trunks,
    Drain,
}

/// The admin request for `method` `path` (the path with its query), or `None` (not ours).
pub fn parse(method: &str, path: &str) -> Option<Query> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let user = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("user="))
        .filter(|u| !u.is_empty())
        .map(percent_decode);
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    Some(match (method, segs.as_slice()) {
        ("GET", ["calls"]) => Query::Calls(None),
        ("GET", ["calls", id]) => Query::Calls(Some(id.parse().ok()?)),
        ("DELETE", ["calls", id]) => Query::Hangup(id.parse().ok()?),
        ("GET", ["registrations"]) => Query::Registrations(user),
        ("DELETE", ["registrations", aor]) => Query::Unregister(percent_decode(aor)),
        ("GET", ["trunks"]) => Query::Trunks,
        ("POST", ["drain"]) => Query::Drain,
        _ => return None,
    })
}

fn percent_decode(s: &str) -> String {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Ask the core task; its answer as (HTTP status, JSON body).
pub async fn ask(admin: &mpsc::Sender<AdminRequest>, q: Query) -> (&'static str, Vec<u8>) {
    let (tx, rx) = oneshot::channel();
    if admin.send(AdminRequest::Query(q, tx)).await.is_err() {
        return (
            "503 Service Unavailable",
            b"{\"error\":\"core stopped\"}\n".to_vec(),
        );
    }
    match rx.await {
        Ok((status, v)) => {
            let mut body = serde_json::to_vec_pretty(&v).unwrap_or_default();
            body.push(b'\n');
            (status, body)
        }
        Err(_) => (
            "503 Service Unavailable",
            b"{\"error\":\"core stopped\"}\n".to_vec(),
        ),
    }
}

fn call_json(c: &signaling::b2bua::CallSummary, media: &MediaView) -> Value {
    json!({
        "id": c.id,
        "state": c.state,
        "trunk": c.trunk,
        "age_s": c.age.as_secs_f64(),
        "legs": {
            "a": { "call_id": c.a_call_id, "peer": c.a_peer.addr.to_string(),
                   "transport": c.a_peer.transport.via_token() },
            "b": { "call_id": c.b_call_id, "peer": c.b_peer.addr.to_string(),
                   "transport": c.b_peer.transport.via_token() },
        },
        "media": media.json(&c.a_call_id),
    })
}

/// The relay's view of calls, by leg A's Call-ID: per stream, per leg, the relay port, where
/// the peer said it wants media, where media comes from (latched), counters and quality. The
/// live stats come from the relay's workers in one round trip each, waited for at most 200 ms
/// in all (the core task answers this request between inputs).
pub(crate) struct MediaView {
    pub(crate) infos: HashMap<String, Vec<media_relay::control::CallInfo>>,
    pub(crate) stats: HashMap<u16, media_relay::LegStats>,
}

impl MediaView {
    pub(crate) fn of<'a>(
        policy: &crate::policy::LivePolicy,
        call_ids: impl Iterator<Item = &'a str>,
    ) -> MediaView {
        let mut infos = HashMap::new();
        let mut stats = HashMap::new();
        if let Some(m) = &policy.media {
            for id in call_ids {
                if let Ok(i) = m.calls.query(id) {
                    infos.insert(id.to_string(), i);
                }
            }
            let ports: Vec<u16> = infos
                .values()
                .flatten()
                .flat_map(|i| &i.streams)
                .flat_map(|st| st.legs.iter().map(|l| l.port))
                .collect();
            stats = m
                .relay
                .stats_many(&ports, std::time::Duration::from_millis(200));
        }
        MediaView { infos, stats }
    }

    fn json(&self, a_call_id: &str) -> Value {
        let streams: Vec<Value> = self
            .infos
            .get(a_call_id)
            .into_iter()
            .flatten()
            .flat_map(|i| &i.streams)
            .map(|st| {
                let legs: Vec<Value> = st
                    .legs
                    .iter()
                    .map(|l| leg_json(l, self.stats.get(&l.port).unwrap_or(&l.stats)))
                    .collect();
                json!({ "index": st.index, "kind": st.kind, "proto": st.proto, "legs": legs })
            })
            .collect();
        Value::Array(streams)
    }
}

fn leg_json(l: &media_relay::control::LegInfo, s: &media_relay::LegStats) -> Value {
    json!({
        "side": match l.side { media_relay::control::Side::A => "a", media_relay::control::Side::B => "b" },
        "relay_port": l.port,
        "remote": l.remote.map(|a| a.to_string()),
        "latched": s.latched.map(|a| a.to_string()),
        "rtp_packets_in": s.rtp_packets_in,
        "rtp_packets_out": s.rtp_packets_out,
        "rtp_bytes_in": s.rtp_bytes_in,
        "rtp_bytes_out": s.rtp_bytes_out,
        "rtcp_packets_in": s.rtcp_packets_in,
        "packets_lost": s.packets_lost,
        "packets_dropped": s.packets_dropped,
        "jitter_ms": s.jitter_ms,
        "rtt_ms": s.rtt_ms,
        "mos": s.mos,
        "remote_mos": s.remote_mos,
    })
}

/// The core task's answer to `q` (it owns `core` and `policy`).
pub fn answer(
    q: Query,
    core: &mut signaling::b2bua::B2bua,
    policy: &mut crate::policy::LivePolicy,
    now: Instant,
) -> (&'static str, Value) {
    match q {
        Query::Calls(None) => {
            let summaries = core.call_summaries(now);
            let media = MediaView::of(policy, summaries.iter().map(|c| c.a_call_id.as_str()));
            let calls: Vec<Value> = summaries.iter().map(|c| call_json(c, &media)).collect();
            ("200 OK", json!({ "calls": calls }))
        }
        Query::Calls(Some(id)) => match core.call_summary(id, now) {
            Some(c) => {
                let media = MediaView::of(policy, std::iter::once(c.a_call_id.as_str()));
                ("200 OK", call_json(&c, &media))
            }
            None => ("404 Not Found", json!({ "error": "no such call" })),
        },
        Query::Hangup(id) => {
            if !core.has_call(id) {
                return ("404 Not Found", json!({ "error": "no such call" }));
            }
            tracing::info!(call = id, "admin: hanging up");
            core.terminate_call(id, now, policy);
            ("200 OK", json!({ "ended": id }))
        }
        Query::Registrations(user) => {
            let regs: Vec<Value> = core
                .registrations(user.as_deref(), now)
                .iter()
                .map(|r| {
                    json!({
                        "aor": r.aor, "contact": r.contact,
                        "source": r.source.addr.to_string(),
                        "transport": r.source.transport.via_token(),
                        "expires_s": r.expires_in.as_secs(), "q": f64::from(r.q) / 1000.0,
                    })
                })
                .collect();
            ("200 OK", json!({ "registrations": regs }))
        }
        Query::Unregister(aor) => {
            let n = core.remove_registrations(&aor);
            if n == 0 {
                ("404 Not Found", json!({ "error": "no such registration" }))
            } else {
                tracing::info!(aor = %aor, bindings = n, "admin: registration removed");
                ("200 OK", json!({ "removed": n }))
            }
        }
        Query::Trunks => ("200 OK", trunks_json(core, policy, now)),
        Query::Drain => {
            core.set_draining(true);
            tracing::info!("admin: draining (new calls get 503)");
            ("200 OK", json!({ "draining": true }))
        }
    }
}

fn trunks_json(
    core: &signaling::b2bua::B2bua,
    policy: &crate::policy::LivePolicy,
    now: Instant,
) -> Value {
    let trunks: Vec<Value> = policy
        .config
        .trunks
        .values()
        .map(|t| {
            // an MGCP gateway: up as its last command was answered, its lines by state (the
            // bridge's mirrors in the metrics)
            let mgcp = t.mgcp.as_ref().map(|m| {
                let m_ = &policy.metrics;
                let states: serde_json::Map<String, Value> = crate::mgcp_bridge::LineState::ALL
                    .iter()
                    .map(|s| {
                        let n = m_
                            .mgcp_lines
                            .get_metric_with_label_values(&[&t.name, s.as_str()])
                            .map(|g| g.get())
                            .unwrap_or(0);
                        (s.as_str().to_string(), json!(n))
                    })
                    .collect();
                json!({ "lines": m.lines.len(), "line_states": states })
            });
            let up = match (&t.mgcp, &t.probe) {
                (Some(_), _) => policy
                    .metrics
                    .mgcp_gateway_up
                    .get_metric_with_label_values(&[&t.name])
                    .ok()
                    .map(|g| g.get() == 1),
                (None, Some(_)) => Some(!policy.health.is_down(&t.name)),
                (None, None) => None,
            };
            json!({
                "name": t.name,
                "mgcp": mgcp,
                "address": t.address.to_string(),
                "transport": format!("{:?}", t.transport).to_lowercase(),
                "up": up,
                "registered": if t.register.is_some() {
                    Some(core.carrier_registered(&t.name, now))
                } else {
                    None
                },
                "active_calls": policy.active_calls(&t.name),
                "max_calls": t.max_calls,
                "max_cps": t.max_cps,
            })
        })
        .collect();
    json!({ "trunks": trunks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_queries() {
        assert!(matches!(parse("GET", "/calls"), Some(Query::Calls(None))));
        assert!(matches!(parse("GET", "/calls/"), Some(Query::Calls(None))));
        assert!(matches!(
            parse("GET", "/calls/17"),
            Some(Query::Calls(Some(17)))
        ));
        assert!(matches!(
            parse("DELETE", "/calls/3"),
            Some(Query::Hangup(3))
        ));
        assert!(parse("DELETE", "/calls/x").is_none());
        assert!(parse("POST", "/calls").is_none());
        match parse("GET", "/registrations?user=al%69ce") {
            Some(Query::Registrations(Some(u))) => assert_eq!(u, "alice"),
            _ => panic!("registrations"),
        }
        match parse("DELETE", "/registrations/alice%40example.com") {
            Some(Query::Unregister(a)) => assert_eq!(a, "alice@example.com"),
            _ => panic!("unregister"),
        }
        assert!(matches!(parse("GET", "/trunks"), Some(Query::Trunks)));
        assert!(matches!(parse("POST", "/drain"), Some(Query::Drain)));
        assert!(parse("GET", "/etc/passwd").is_none());
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
    }

    #[test]
    fn a_token_is_needed_where_one_is_set_and_off_loopback() {
        assert!(allowed(false, None, None, true).is_ok());
        assert_eq!(
            allowed(false, None, None, false).unwrap_err().1,
            "admin_disabled"
        );
        assert_eq!(
            allowed(false, None, Some("t"), true).unwrap_err().1,
            "unauthorized"
        );
        assert_eq!(
            allowed(false, Some("x"), Some("t"), true).unwrap_err().1,
            "unauthorized"
        );
        assert!(allowed(false, Some("t"), Some("t"), false).is_ok());
        assert_eq!(
            allowed(true, Some("t"), Some("t"), true).unwrap_err().1,
            "cross_origin"
        );
    }
}
