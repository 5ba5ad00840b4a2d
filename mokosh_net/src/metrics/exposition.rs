//! The counters as Prometheus metric families, encoded by `prometheus-client`.
//!
//! The hot path keeps bumping plain atomics ([`Metrics`], [`IoCounters`]);
//! [`MetricsCollector`] reads them only when a scrape encodes the registry.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::{Metrics, Rejection};
use crate::io::IoCounters;

/// The `Content-Type` of [`MetricsCollector::render`]'s output: the
/// OpenMetrics text format, which Prometheus scrapes natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A `prometheus-client` [`Collector`] that reads a [`Metrics`] (and,
/// optionally, a transport's [`IoCounters`]) at scrape time.
///
/// Register it in an application's own [`Registry`] to serve the counters
/// next to the game's metrics, or call [`render`](Self::render) for the text
/// alone. The families, in output order (`counter` names gain `_total`):
///
/// | Family | Type | Meaning |
/// |---|---|---|
/// | `mokosh_connections_total` | counter | Sessions opened since start. |
/// | `mokosh_connections_active` | gauge | Sessions open now. |
/// | `mokosh_received_bytes_total` | counter | Frame bytes received from peers. |
/// | `mokosh_sent_bytes_total` | counter | Frame bytes sent to peers. |
/// | `mokosh_messages_received_total` | counter | Game messages received. |
/// | `mokosh_messages_sent_total` | counter | Game messages sent. |
/// | `mokosh_rejections_total{reason}` | counter | Refusals by [`Rejection::label`], every reason listed. |
///
/// and with [`with_io`](Self::with_io):
///
/// | Family | Type | Meaning |
/// |---|---|---|
/// | `mokosh_io_connections_accepted_total` | counter | Transport connections opened. |
/// | `mokosh_io_connections_active` | gauge | Transport connections open now. |
/// | `mokosh_io_connections_refused_total{reason}` | counter | Refused before opening: `cap` (total cap), `ip_cap` (per-address cap), `origin` (Origin allow-list), `rate` (arrival-rate token buckets), `unauthenticated` (cap on connections not yet authenticated). |
/// | `mokosh_io_handshake_timeouts_total` | counter | WebSocket upgrades (or TLS handshakes) not finished in time. |
/// | `mokosh_io_handshake_failures_total` | counter | WebSocket upgrades (or TLS handshakes) that failed otherwise. |
/// | `mokosh_io_connections_closed_total{reason}` | counter | Closed by the transport: `oversized` (frame over the limit), `protocol_error` (text frame, bad framing), `overloaded` (the ECS did not drain events). |
/// | `mokosh_io_queue_full_connections_total` | counter | Connections whose outbound queue hit its hard byte cap, each counted once (the sessions the server dropped as slow consumers are `mokosh_rejections_total{reason="slow_consumer"}`). |
#[derive(Debug, Clone)]
pub struct MetricsCollector {
    metrics: Arc<Metrics>,
    io: Option<Arc<IoCounters>>,
}

impl MetricsCollector {
    /// A collector for `metrics` alone.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics, io: None }
    }

    /// Also exports the transport counters `io` (e.g. an endpoint's
    /// `counters()`).
    pub fn with_io(mut self, io: Arc<IoCounters>) -> Self {
        self.io = Some(io);
        self
    }

    /// A registry holding only this collector; add the application's own
    /// metrics to it before encoding if you like.
    pub fn into_registry(self) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        registry
    }

    /// The current values as OpenMetrics text (see [`CONTENT_TYPE`]), ending
    /// with `# EOF`.
    pub fn render(&self) -> String {
        let registry = self.clone().into_registry();
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail, and the collector itself has no
        // failure of its own.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// A render function for the built-in endpoint (`serve_metrics`, feature
    /// `metrics-http`).
    pub fn renderer(self) -> Arc<dyn Fn() -> String + Send + Sync> {
        Arc::new(move || self.render())
    }
}

impl Collector for MetricsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.metrics.snapshot();
        counter(
            &mut encoder,
            "mokosh_connections",
            "Sessions opened since start.",
            None,
            s.connections_total,
        )?;
        gauge(
            &mut encoder,
            "mokosh_connections_active",
            "Sessions open now.",
            s.connections_active,
        )?;
        counter(
            &mut encoder,
            "mokosh_received",
            "Frame bytes received from peers.",
            Some(&Unit::Bytes),
            s.bytes_in,
        )?;
        counter(
            &mut encoder,
            "mokosh_sent",
            "Frame bytes sent to peers.",
            Some(&Unit::Bytes),
            s.bytes_out,
        )?;
        counter(
            &mut encoder,
            "mokosh_messages_received",
            "Game messages received from peers.",
            None,
            s.messages_in,
        )?;
        counter(
            &mut encoder,
            "mokosh_messages_sent",
            "Game messages sent to peers.",
            None,
            s.messages_out,
        )?;
        let reasons = Rejection::ALL.map(|why| (why.label(), s.rejected(why)));
        labelled_counter(
            &mut encoder,
            "mokosh_rejections",
            "Packets refused, and sessions this side ended as a rejection, by reason.",
            &reasons,
        )?;
        let Some(io) = &self.io else {
            return Ok(());
        };
        let io = io.snapshot();
        counter(
            &mut encoder,
            "mokosh_io_connections_accepted",
            "Transport connections opened.",
            None,
            io.connections_accepted,
        )?;
        gauge(
            &mut encoder,
            "mokosh_io_connections_active",
            "Transport connections open now.",
            io.connections_active,
        )?;
        labelled_counter(
            &mut encoder,
            "mokosh_io_connections_refused",
            "Connections refused before opening, by reason (total cap, per-address cap, Origin, arrival rate, unauthenticated cap).",
            &[
                ("cap", io.connections_refused_total_cap),
                ("ip_cap", io.connections_refused_ip_cap),
                ("origin", io.connections_refused_origin),
                ("rate", io.connections_refused_rate),
                ("unauthenticated", io.connections_refused_unauthenticated),
            ],
        )?;
        counter(
            &mut encoder,
            "mokosh_io_handshake_timeouts",
            "WebSocket upgrades (or TLS handshakes) not finished in time.",
            None,
            io.handshake_timeouts,
        )?;
        counter(
            &mut encoder,
            "mokosh_io_handshake_failures",
            "WebSocket upgrades (or TLS handshakes) that failed for another reason.",
            None,
            io.handshake_failures,
        )?;
        labelled_counter(
            &mut encoder,
            "mokosh_io_connections_closed",
            "Connections the transport closed, by reason.",
            &[
                ("oversized", io.oversized_frames),
                ("protocol_error", io.protocol_errors),
                ("overloaded", io.overloaded),
            ],
        )?;
        counter(
            &mut encoder,
            "mokosh_io_queue_full_connections",
            "Connections whose outbound queue hit its hard byte cap (each counted once).",
            None,
            io.slow_consumers,
        )
    }
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One counter family with a `reason` label per entry.
fn labelled_counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for &(reason, value) in values {
        let labels = [("reason", reason)];
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Counter;

    /// Distinct values everywhere, so a swapped series shows.
    fn known_values() -> MetricsCollector {
        let metrics = Arc::new(Metrics::new());
        for _ in 0..3 {
            metrics.connection_opened();
        }
        metrics.connection_closed();
        metrics.bytes_in(1500);
        metrics.bytes_out(700);
        for _ in 0..4 {
            metrics.message_in();
        }
        for _ in 0..5 {
            metrics.message_out();
        }
        for (n, why) in Rejection::ALL.into_iter().enumerate() {
            for _ in 0..n {
                metrics.reject(why);
            }
        }
        let io = Arc::new(IoCounters::default());
        let bumps = [
            (Counter::Accepted, 9),
            (Counter::RefusedTotalCap, 1),
            (Counter::RefusedIpCap, 2),
            (Counter::RefusedOrigin, 3),
            (Counter::HandshakeTimeout, 4),
            (Counter::HandshakeFailure, 5),
            (Counter::Oversized, 6),
            (Counter::ProtocolError, 7),
            (Counter::Overloaded, 8),
            (Counter::SlowConsumer, 10),
            (Counter::RefusedRate, 11),
            (Counter::RefusedUnauthenticated, 12),
        ];
        for (counter, times) in bumps {
            for _ in 0..times {
                io.bump(counter);
            }
        }
        io.opened();
        io.opened();
        MetricsCollector::new(metrics).with_io(io)
    }

    const GOLDEN: &str = "\
# HELP mokosh_connections Sessions opened since start.
# TYPE mokosh_connections counter
mokosh_connections_total 3
# HELP mokosh_connections_active Sessions open now.
# TYPE mokosh_connections_active gauge
mokosh_connections_active 2
# HELP mokosh_received_bytes Frame bytes received from peers.
# TYPE mokosh_received_bytes counter
# UNIT mokosh_received_bytes bytes
mokosh_received_bytes_total 1500
# HELP mokosh_sent_bytes Frame bytes sent to peers.
# TYPE mokosh_sent_bytes counter
# UNIT mokosh_sent_bytes bytes
mokosh_sent_bytes_total 700
# HELP mokosh_messages_received Game messages received from peers.
# TYPE mokosh_messages_received counter
mokosh_messages_received_total 4
# HELP mokosh_messages_sent Game messages sent to peers.
# TYPE mokosh_messages_sent counter
mokosh_messages_sent_total 5
# HELP mokosh_rejections Packets refused, and sessions this side ended as a rejection, by reason.
# TYPE mokosh_rejections counter
mokosh_rejections_total{reason=\"malformed\"} 0
mokosh_rejections_total{reason=\"decrypt_failed\"} 1
mokosh_rejections_total{reason=\"replay\"} 2
mokosh_rejections_total{reason=\"rate_limited\"} 3
mokosh_rejections_total{reason=\"schema_mismatch\"} 4
mokosh_rejections_total{reason=\"auth_failed\"} 5
mokosh_rejections_total{reason=\"slow_consumer\"} 6
mokosh_rejections_total{reason=\"timeout\"} 7
mokosh_rejections_total{reason=\"handshake_failed\"} 8
mokosh_rejections_total{reason=\"security_mismatch\"} 9
mokosh_rejections_total{reason=\"oversized\"} 10
mokosh_rejections_total{reason=\"protocol_violation\"} 11
# HELP mokosh_io_connections_accepted Transport connections opened.
# TYPE mokosh_io_connections_accepted counter
mokosh_io_connections_accepted_total 9
# HELP mokosh_io_connections_active Transport connections open now.
# TYPE mokosh_io_connections_active gauge
mokosh_io_connections_active 2
# HELP mokosh_io_connections_refused Connections refused before opening, by reason (total cap, per-address cap, Origin, arrival rate, unauthenticated cap).
# TYPE mokosh_io_connections_refused counter
mokosh_io_connections_refused_total{reason=\"cap\"} 1
mokosh_io_connections_refused_total{reason=\"ip_cap\"} 2
mokosh_io_connections_refused_total{reason=\"origin\"} 3
mokosh_io_connections_refused_total{reason=\"rate\"} 11
mokosh_io_connections_refused_total{reason=\"unauthenticated\"} 12
# HELP mokosh_io_handshake_timeouts WebSocket upgrades (or TLS handshakes) not finished in time.
# TYPE mokosh_io_handshake_timeouts counter
mokosh_io_handshake_timeouts_total 4
# HELP mokosh_io_handshake_failures WebSocket upgrades (or TLS handshakes) that failed for another reason.
# TYPE mokosh_io_handshake_failures counter
mokosh_io_handshake_failures_total 5
# HELP mokosh_io_connections_closed Connections the transport closed, by reason.
# TYPE mokosh_io_connections_closed counter
mokosh_io_connections_closed_total{reason=\"oversized\"} 6
mokosh_io_connections_closed_total{reason=\"protocol_error\"} 7
mokosh_io_connections_closed_total{reason=\"overloaded\"} 8
# HELP mokosh_io_queue_full_connections Connections whose outbound queue hit its hard byte cap (each counted once).
# TYPE mokosh_io_queue_full_connections counter
mokosh_io_queue_full_connections_total 10
# EOF
";

    #[test]
    fn exposition_text_is_golden() {
        assert_eq!(known_values().render(), GOLDEN);
    }

    #[test]
    fn without_transport_counters_only_the_session_families_appear() {
        let text = MetricsCollector::new(Arc::new(Metrics::new())).render();
        assert!(text.starts_with("# HELP mokosh_connections Sessions opened since start.\n"));
        assert!(!text.contains("mokosh_io_"));
        assert!(
            text.ends_with("mokosh_rejections_total{reason=\"protocol_violation\"} 0\n# EOF\n")
        );
    }
}
