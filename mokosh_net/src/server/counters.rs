//! Counters the server plugin keeps beside [`Metrics`](crate::metrics::Metrics):
//! authentication work, the per-identity session cap, sends a peer's size
//! limit refused, and connection churn for the periodic log summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

/// The server plugin's own counters (see [`MokoshServer::counters`](super::MokoshServer::counters)).
/// Served on the metrics endpoint with the names listed in
/// [`ServerCountersSnapshot::families`].
#[derive(Debug, Default)]
pub struct ServerCounters {
    auth_queued: AtomicU64,
    auth_timeouts: AtomicU64,
    auth_overflows: AtomicU64,
    auth_aborted: AtomicU64,
    identity_replaced: AtomicU64,
    identity_refused: AtomicU64,
    sends_over_peer_limit: AtomicU64,
    peer_timeouts: AtomicU64,
    hellos_deferred: AtomicU64,
}

/// A copy of [`ServerCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerCountersSnapshot {
    /// Authentication requests that waited for a provider slot
    /// ([`AuthLimits::max_concurrent`](super::AuthLimits::max_concurrent) were busy).
    pub auth_queued: u64,
    /// Authentication requests abandoned at
    /// [`AuthLimits::timeout`](super::AuthLimits::timeout): the provider's future
    /// was dropped and the client refused.
    pub auth_timeouts: u64,
    /// Clients refused at once because
    /// [`AuthLimits::max_pending`](super::AuthLimits::max_pending) requests were
    /// already pending.
    pub auth_overflows: u64,
    /// Authentication futures dropped because their connection closed first.
    pub auth_aborted: u64,
    /// Sessions closed because a newer session of the same identity took
    /// their place ([`WhenIdentityFull::ReplaceOldest`](super::WhenIdentityFull::ReplaceOldest)).
    pub identity_replaced: u64,
    /// Clients refused because their identity had its maximum of sessions
    /// ([`WhenIdentityFull::RefuseNewest`](super::WhenIdentityFull::RefuseNewest)).
    pub identity_refused: u64,
    /// Messages not sent to a client because they exceed the maximum message
    /// size that client announced.
    pub sends_over_peer_limit: u64,
    /// Connections the peer closed with an idle or handshake timeout reason
    /// (not counted as the server's own timeouts).
    pub peer_timeouts: u64,
    /// Client hellos that waited for a later tick because
    /// [`handshakes_per_tick`](super::ServerPluginConfig::handshakes_per_tick)
    /// were already processed in theirs.
    pub hellos_deferred: u64,
}

impl ServerCounters {
    pub(super) fn auth_queued(&self) {
        self.auth_queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn auth_timeout(&self) {
        self.auth_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn auth_overflow(&self) {
        self.auth_overflows.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn auth_aborted(&self) {
        self.auth_aborted.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn identity_replaced(&self) {
        self.identity_replaced.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn identity_refused(&self) {
        self.identity_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn send_over_peer_limit(&self) {
        self.sends_over_peer_limit.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn peer_timeout(&self) {
        self.peer_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn hello_deferred(&self) {
        self.hellos_deferred.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> ServerCountersSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ServerCountersSnapshot {
            auth_queued: load(&self.auth_queued),
            auth_timeouts: load(&self.auth_timeouts),
            auth_overflows: load(&self.auth_overflows),
            auth_aborted: load(&self.auth_aborted),
            identity_replaced: load(&self.identity_replaced),
            identity_refused: load(&self.identity_refused),
            sends_over_peer_limit: load(&self.sends_over_peer_limit),
            peer_timeouts: load(&self.peer_timeouts),
            hellos_deferred: load(&self.hellos_deferred),
        }
    }
}

impl ServerCountersSnapshot {
    /// `(family, help, value)` for each counter as served on `/metrics`
    /// (counter families gain `_total` in the output, e.g.
    /// `mokosh_auth_timeouts_total`).
    pub fn families(&self) -> [(&'static str, &'static str, u64); 9] {
        [
            (
                "mokosh_auth_queued",
                "Authentication requests that waited for a provider slot.",
                self.auth_queued,
            ),
            (
                "mokosh_auth_timeouts",
                "Authentication requests abandoned at the timeout.",
                self.auth_timeouts,
            ),
            (
                "mokosh_auth_overflows",
                "Clients refused because too many authentications were pending.",
                self.auth_overflows,
            ),
            (
                "mokosh_auth_aborted",
                "Authentication futures dropped because the connection closed first.",
                self.auth_aborted,
            ),
            (
                "mokosh_identity_sessions_replaced",
                "Sessions replaced by a newer session of the same identity.",
                self.identity_replaced,
            ),
            (
                "mokosh_identity_sessions_refused",
                "Clients refused because their identity had its maximum of sessions.",
                self.identity_refused,
            ),
            (
                "mokosh_sends_over_peer_limit",
                "Messages not sent because they exceed the size the client announced.",
                self.sends_over_peer_limit,
            ),
            (
                "mokosh_peer_timeouts",
                "Connections the peer closed with a timeout reason.",
                self.peer_timeouts,
            ),
            (
                "mokosh_hellos_deferred",
                "Client hellos that waited for a later tick (per-tick handshake cap).",
                self.hellos_deferred,
            ),
        ]
    }
}

/// A `prometheus-client` collector reading [`ServerCounters`] at scrape time.
#[derive(Debug, Clone)]
pub(super) struct ServerCountersCollector(pub(super) Arc<ServerCounters>);

impl Collector for ServerCountersCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (name, help, value) in self.0.snapshot().families() {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        Ok(())
    }
}
