//! The series that mirror the core's state and counters, refreshed from it by the core task.

use std::time::Instant;

use signaling::b2bua::B2bua;

use super::Metrics;
use crate::policy::LivePolicy;

/// Copy the core's and the policy's counters and gauges into `metrics`.
pub fn refresh_gauges(core: &B2bua, policy: &LivePolicy, metrics: &Metrics) {
    metrics.active_calls.set(core.active_calls() as i64);
    metrics.transactions.set(core.transactions() as i64);
    let tx = core.tx_stats();
    crate::policy::set_counter(
        &metrics.transactions_created.with_label_values(&["client"]),
        tx.client_created,
    );
    crate::policy::set_counter(
        &metrics.transactions_created.with_label_values(&["server"]),
        tx.server_created,
    );
    crate::policy::set_counter(
        &metrics.retransmissions.with_label_values(&["sent"]),
        tx.retransmissions_sent,
    );
    crate::policy::set_counter(
        &metrics.retransmissions.with_label_values(&["absorbed"]),
        tx.retransmissions_absorbed,
    );
    crate::policy::set_counter(&metrics.transaction_timeouts, tx.timeouts);
    crate::policy::set_counter(&metrics.udp_oversize, tx.udp_oversize);
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if tx.udp_oversize > 0 && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "a request over 1300 bytes went to a peer over UDP (RFC 3261 §18.1.1 asks for TCP; \
             set `tcp_fallback: true` on a UDP trunk that takes TCP); counted in \
             trunkline_sip_udp_oversize_total, logged once"
        );
    }
    let stats = core.stats();
    crate::policy::set_counter(&metrics.parse_errors, stats.parse_errors);
    metrics
        .registered_contacts
        .set(core.registered_contacts(Instant::now()) as i64);
    metrics.subscriptions.set(core.subscriptions() as i64);
    let (watchers, publishers, notifies) = core.presence_stats();
    metrics.presence_watchers.set(watchers as i64);
    metrics.presence_publishers.set(publishers as i64);
    crate::policy::set_counter(&metrics.presence_notifies, notifies);
    if let Some(c) = &policy.cluster {
        use std::sync::atomic::Ordering::Relaxed;
        metrics.cluster_up.set(i64::from(c.up.load(Relaxed)));
        for (op, n) in [("write", &c.errors_write), ("read", &c.errors_read)] {
            crate::policy::set_counter(
                &metrics.cluster_errors.with_label_values(&[op]),
                n.load(Relaxed),
            );
        }
        for (op, n) in [
            ("write", &c.writes),
            ("read", &c.reads),
            ("dropped", &c.dropped),
        ] {
            crate::policy::set_counter(
                &metrics.cluster_records.with_label_values(&[op]),
                n.load(Relaxed),
            );
        }
        metrics.cluster_remote_aors.set(core.remote_aors() as i64);
        metrics.cluster_nodes.set(c.nodes() as i64);
        metrics.cluster_queue.set(c.queued.load(Relaxed) as i64);
        for (op, n) in [
            ("written", c.call_writes.load(Relaxed)),
            ("adopted", c.adopted.load(Relaxed)),
            ("failed", c.adopt_failed.load(Relaxed)),
            ("unreplicable", core.unreplicable_calls()),
        ] {
            crate::policy::set_counter(&metrics.cluster_call_records.with_label_values(&[op]), n);
        }
        metrics.cluster_calls_held.set(c.warm.len() as i64);
        crate::policy::set_counter(&metrics.cluster_takeovers, c.takeovers.load(Relaxed));
    }
    for (direction, n) in [("in", stats.dtmf_info_in), ("out", stats.dtmf_info_out)] {
        crate::policy::set_counter(&metrics.dtmf_info.with_label_values(&[direction]), n);
    }
    crate::policy::set_counter(&metrics.keepalives, stats.keepalives);
    for (result, n) in [
        ("answered", stats.auth_retries),
        ("refused", stats.auth_refused),
    ] {
        crate::policy::set_counter(&metrics.trunk_auth.with_label_values(&[result]), n);
    }
    crate::policy::set_counter(&metrics.media_failures, stats.media_failures);
    for (event, n) in [
        ("refreshed", stats.session_refreshes),
        ("expired", stats.sessions_expired),
        ("too_small", stats.session_too_small),
        ("retried", stats.session_retries),
    ] {
        crate::policy::set_counter(&metrics.session_timers.with_label_values(&[event]), n);
    }
    for (result, n) in [
        ("accepted", stats.transfers),
        ("completed", stats.transfers_completed),
    ] {
        crate::policy::set_counter(&metrics.transfers.with_label_values(&[result]), n);
    }
    for (status, n) in &stats.registers {
        crate::policy::set_counter(
            &metrics.registers.with_label_values(&[&status.to_string()]),
            *n,
        );
    }
    for (status, n) in &stats.messages {
        crate::policy::set_counter(
            &metrics
                .instant_messages
                .with_label_values(&[&status.to_string()]),
            *n,
        );
    }
    let mail = core.mailbox();
    let m = &mail.stats;
    let counts = [
        m.stored,
        m.delivered,
        m.expired,
        m.failed,
        m.refused_full,
        m.refused_too_large,
    ];
    for (outcome, n) in super::OFFLINE_OUTCOMES.iter().zip(counts) {
        crate::policy::set_counter(&metrics.offline_messages.with_label_values(&[outcome]), n);
    }
    metrics.offline_messages_held.set(mail.len() as i64);
    for reason in signaling::b2bua::REJECT_REASONS {
        crate::policy::set_counter(
            &metrics.messages_rejected.with_label_values(&[reason]),
            stats.rejected.get(reason).copied().unwrap_or(0),
        );
    }
    if let Some(m) = &policy.media {
        m.refresh_metrics(metrics);
    }
    policy.refresh_limit_metrics();
}
