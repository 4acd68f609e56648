//! The MGCP bridge's I/O shell: the sans-IO [`Bridge`] (crate `mgcp-bridge`) on tokio UDP
//! sockets, one loopback SIP socket per gateway (to and from the core) and the call agent's
//! MGCP socket (to and from the gateways), with its counters exported to the metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

pub use ::mgcp_bridge::{Bridge, Gateway, LineState, Out, AUDIT_EVERY, HOST_SUFFIX};

/// A datagram for the bridge task: SIP on gateway `.0`'s socket, or MGCP (`None`).
type Input = (Option<usize>, std::net::SocketAddr, Vec<u8>);

/// The bridge's shell: SIP on each gateway's `sip` socket (loopback, from the core), MGCP on
/// `mgcp` (to gateways).
pub async fn run(
    mut bridge: Bridge,
    sip: Vec<(String, UdpSocket)>,
    mgcp: UdpSocket,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Input>(4096);
    let names: Vec<String> = sip.iter().map(|(n, _)| n.clone()).collect();
    let socks: Vec<Arc<UdpSocket>> = sip.into_iter().map(|(_, s)| Arc::new(s)).collect();
    let mgcp = Arc::new(mgcp);
    for (i, s) in socks.iter().enumerate() {
        tokio::spawn(read_into(s.clone(), Some(i), tx.clone()));
    }
    tokio::spawn(read_into(mgcp.clone(), None, tx));
    let mut exported = Instant::now() - Duration::from_secs(1);
    loop {
        let wait = bridge
            .poll_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1));
        let out = tokio::select! {
            m = rx.recv() => match m {
                Some((Some(i), from, data)) => bridge.handle_sip(&data, from, &names[i], Instant::now()),
                Some((None, from, data)) => bridge.handle_mgcp(&data, from, Instant::now()),
                None => return,
            },
            _ = tokio::time::sleep(wait) => bridge.handle_timeout(Instant::now()),
        };
        for o in out {
            let _ = match o {
                Out::Sip(gw, to, b) => match names.iter().position(|n| *n == gw) {
                    Some(i) => socks[i].send_to(&b, to).await,
                    None => continue,
                },
                Out::Mgcp(to, b) => mgcp.send_to(&b, to).await,
            };
        }
        // the series are mirrors of the bridge's counters: refreshed at most 5 times a second
        if exported.elapsed() >= Duration::from_millis(200) {
            exported = Instant::now();
            export(&bridge, &metrics);
        }
    }
}

async fn read_into(sock: Arc<UdpSocket>, tag: Option<usize>, tx: tokio::sync::mpsc::Sender<Input>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        // a full queue drops the datagram (UDP; the peer retransmits) rather than block
        if tx.try_send((tag, from, buf[..n].to_vec())).is_err() && tx.is_closed() {
            return;
        }
    }
}

fn export(bridge: &Bridge, metrics: &crate::metrics::Metrics) {
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
    crate::policy::set_counter(
        &metrics.mgcp_dropped.with_label_values(&["bad_notify"]),
        bridge.bad_notifies,
    );
    for ((verb, result), n) in &bridge.commands {
        crate::policy::set_counter(
            &metrics
                .mgcp_commands
                .with_label_values(&[verb, result.as_str()]),
            *n,
        );
    }
    for ((gw, state), n) in bridge.line_states() {
        metrics
            .mgcp_lines
            .with_label_values(&[&gw, state])
            .set(n as i64);
    }
    for ((gw, dir), n) in &bridge.calls_total {
        crate::policy::set_counter(
            &metrics.mgcp_calls.with_label_values(&[gw.as_str(), dir]),
            *n,
        );
    }
    for ((gw, method), n) in &bridge.rsips {
        crate::policy::set_counter(&metrics.mgcp_rsips.with_label_values(&[gw, method]), *n);
    }
    for (dir, n) in ["sent", "received", "lost"]
        .iter()
        .zip(bridge.connection_packets)
    {
        crate::policy::set_counter(
            &metrics.mgcp_connection_packets.with_label_values(&[dir]),
            n,
        );
    }
}
