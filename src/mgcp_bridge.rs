//! The MGCP bridge's I/O shell: the sans-IO [`Bridge`] (crate `mgcp-bridge`) on two tokio UDP
//! sockets, SIP on loopback from the core and MGCP to the gateways, with its counters exported
//! to the metrics.

use std::time::{Duration, Instant};

pub use ::mgcp_bridge::{Bridge, Gateway, Out, HOST_SUFFIX};

/// The bridge's shell: SIP on `sip` (loopback, from the core), MGCP on `mgcp` (to gateways).
pub async fn run(
    mut bridge: Bridge,
    sip: tokio::net::UdpSocket,
    mgcp: tokio::net::UdpSocket,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) {
    let mut sbuf = vec![0u8; 65_536];
    let mut mbuf = vec![0u8; 65_536];
    loop {
        let wait = bridge
            .poll_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1));
        let out = tokio::select! {
            r = sip.recv_from(&mut sbuf) => match r {
                Ok((n, from)) => bridge.handle_sip(&sbuf[..n], from, Instant::now()),
                Err(_) => Vec::new(),
            },
            r = mgcp.recv_from(&mut mbuf) => match r {
                Ok((n, from)) => bridge.handle_mgcp(&mbuf[..n], from, Instant::now()),
                Err(_) => Vec::new(),
            },
            _ = tokio::time::sleep(wait) => bridge.handle_timeout(Instant::now()),
        };
        for o in out {
            let _ = match o {
                Out::Sip(to, b) => sip.send_to(&b, to).await,
                Out::Mgcp(to, b) => mgcp.send_to(&b, to).await,
            };
        }
        for (gw, up) in &bridge.up {
            metrics
                .mgcp_gateway_up
                .with_label_values(&[gw])
                .set(i64::from(*up));
        }
        crate::policy::set_counter(
            &metrics.mgcp_dropped.with_label_values(&["unknown_source"]),
            bridge.foreign_datagrams,
        );
        crate::policy::set_counter(
            &metrics.mgcp_dropped.with_label_values(&["wrong_source"]),
            bridge.foreign_responses(),
        );
        for ((verb, result), n) in &bridge.commands {
            crate::policy::set_counter(
                &metrics
                    .mgcp_commands
                    .with_label_values(&[verb, result.as_str()]),
                *n,
            );
        }
    }
}
