//! Operational counters and their Prometheus exposition.
//!
//! [`Metrics`] is a set of lock-free counters. The networking code (and the
//! Bevy plugins, through a resource wrapping an `Arc<Metrics>`) bumps them on
//! the hot path with relaxed atomic adds; [`Metrics::snapshot`] reads them as
//! plain numbers. At scrape time a [`MetricsCollector`] (a
//! [`prometheus_client`] collector) reads them, plus the transport's
//! [`IoCounters`](crate::io::IoCounters) when given, and `prometheus-client`
//! writes the text. An application with its own HTTP stack registers the
//! collector in its own [`Registry`](prometheus_client::registry::Registry)
//! or serves [`MetricsCollector::render`]; the `metrics-http` feature adds a
//! small built-in endpoint, `serve_metrics`, for convenience.
//!
//! Every metric name and the mapping from protocol errors and disconnect
//! reasons to [`Rejection`]s live in this module and nowhere else.
//!
//! ```
//! use std::sync::Arc;
//! use mokosh_net::metrics::{Metrics, MetricsCollector, Rejection};
//!
//! let metrics = Arc::new(Metrics::default());
//! metrics.connection_opened();
//! metrics.bytes_in(1200);
//! metrics.reject(Rejection::Replay);
//!
//! let snap = metrics.snapshot();
//! assert_eq!(snap.connections_active, 1);
//! assert_eq!(snap.rejected(Rejection::Replay), 1);
//!
//! let text = MetricsCollector::new(Arc::clone(&metrics)).render();
//! assert!(text.contains("mokosh_rejections_total{reason=\"replay\"} 1\n"));
//! assert!(text.contains("mokosh_received_bytes_total 1200\n"));
//! ```
//!
//! Registering the counters next to an application's own metrics:
//!
//! ```
//! use std::sync::Arc;
//! use mokosh_net::metrics::{Metrics, MetricsCollector};
//! use prometheus_client::{metrics::gauge::Gauge, registry::Registry};
//!
//! let metrics = Arc::new(Metrics::default());
//! let mut registry = Registry::default();
//! registry.register_collector(Box::new(MetricsCollector::new(metrics)));
//! let rooms = Gauge::<i64>::default();
//! registry.register("game_rooms", "Rooms open.", rooms.clone());
//! rooms.set(3);
//!
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry)?;
//! assert!(text.contains("game_rooms 3\n"));
//! assert!(text.contains("mokosh_connections_active 0\n"));
//! # Ok::<(), std::fmt::Error>(())
//! ```
//!
//! Serving it with the built-in endpoint (feature `metrics-http`, on a tokio
//! runtime you own):
//!
//! ```no_run
//! # #[cfg(feature = "metrics-http")] {
//! use std::sync::Arc;
//! use mokosh_net::metrics::{Metrics, MetricsCollector, serve_metrics};
//!
//! let rt = tokio::runtime::Runtime::new()?;
//! let metrics = Arc::new(Metrics::default());
//! let server = serve_metrics(
//!     rt.handle(),
//!     "127.0.0.1:9100".parse()?,
//!     MetricsCollector::new(metrics).renderer(),
//! )?;
//! println!("metrics on http://{}/metrics", server.local_addr());
//! // ... dropping `server` stops it.
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::{DisconnectReason, EnvelopeError, Initiator, PacketError};

mod exposition;
#[cfg(feature = "metrics-http")]
mod http;

pub use exposition::{CONTENT_TYPE, MetricsCollector};
#[cfg(feature = "metrics-http")]
pub use http::{
    MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP, MAX_REQUEST_HEAD, MetricsServer, READ_TIMEOUT, Render,
    WRITE_TIMEOUT, serve_metrics,
};
/// The `prometheus-client` version the collector implements, for
/// applications registering it next to their own metrics.
pub use prometheus_client;

/// Why something was rejected; one `mokosh_rejections_total{reason}` series each.
///
/// What is counted, exactly once per event:
/// * each packet the receive path refuses, by [`Rejection::for_packet_error`];
/// * each session this side ends for a reason no refused packet already
///   accounts for (timeouts, a slow consumer, a refused authentication), by
///   [`Rejection::for_disconnect`] through [`Metrics::session_closed`];
/// * each connection the transport closes for an oversized or malformed
///   frame ([`Rejection::Oversized`], [`Rejection::Malformed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// Bytes that do not parse (bad envelope, truncated, bad varint, ...).
    Malformed,
    /// A sealed packet failed authentication.
    DecryptFailed,
    /// A packet counter was replayed or too old.
    Replay,
    /// A rate limit was exceeded.
    RateLimited,
    /// Protocol or schema hash mismatch.
    SchemaMismatch,
    /// The authentication provider refused the client.
    AuthFailed,
    /// A session dropped because its peer did not read fast enough (one per
    /// session, however many frames were refused).
    SlowConsumer,
    /// A handshake or idle timeout of this side.
    Timeout,
    /// The handshake failed (Noise error, version or codec mismatch).
    HandshakeFailed,
    /// Encrypted/plaintext mismatch between the peers.
    SecurityMismatch,
    /// A message or frame over the size limit.
    Oversized,
    /// Anything else the protocol does not allow.
    ProtocolViolation,
}

impl Rejection {
    /// Number of reasons.
    pub const COUNT: usize = 12;

    /// Every reason, in a fixed order (the order of the Prometheus lines).
    pub const ALL: [Rejection; Self::COUNT] = [
        Rejection::Malformed,
        Rejection::DecryptFailed,
        Rejection::Replay,
        Rejection::RateLimited,
        Rejection::SchemaMismatch,
        Rejection::AuthFailed,
        Rejection::SlowConsumer,
        Rejection::Timeout,
        Rejection::HandshakeFailed,
        Rejection::SecurityMismatch,
        Rejection::Oversized,
        Rejection::ProtocolViolation,
    ];

    /// The `snake_case` label used as the Prometheus `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::DecryptFailed => "decrypt_failed",
            Rejection::Replay => "replay",
            Rejection::RateLimited => "rate_limited",
            Rejection::SchemaMismatch => "schema_mismatch",
            Rejection::AuthFailed => "auth_failed",
            Rejection::SlowConsumer => "slow_consumer",
            Rejection::Timeout => "timeout",
            Rejection::HandshakeFailed => "handshake_failed",
            Rejection::SecurityMismatch => "security_mismatch",
            Rejection::Oversized => "oversized",
            Rejection::ProtocolViolation => "protocol_violation",
        }
    }

    /// Position in [`Rejection::ALL`].
    pub fn index(self) -> usize {
        match self {
            Rejection::Malformed => 0,
            Rejection::DecryptFailed => 1,
            Rejection::Replay => 2,
            Rejection::RateLimited => 3,
            Rejection::SchemaMismatch => 4,
            Rejection::AuthFailed => 5,
            Rejection::SlowConsumer => 6,
            Rejection::Timeout => 7,
            Rejection::HandshakeFailed => 8,
            Rejection::SecurityMismatch => 9,
            Rejection::Oversized => 10,
            Rejection::ProtocolViolation => 11,
        }
    }

    /// The rejection a session ending counts as, or `None` when it is not a
    /// rejection or is already counted elsewhere. This is the one mapping from
    /// [`DisconnectReason`] to a counter; [`Metrics::session_closed`] applies it.
    ///
    /// * Endings the peer initiated are never rejections: a peer that sends
    ///   DISCONNECT with `IdleTimeout` says something about itself, and
    ///   counting it would let any client inflate this side's timeout count.
    /// * `IdleTimeout` and `HandshakeTimeout` count as [`Rejection::Timeout`],
    ///   `SlowConsumer` as [`Rejection::SlowConsumer`] and `AuthFailed` as
    ///   [`Rejection::AuthFailed`]: no packet error precedes them.
    /// * Reasons that follow a refused packet (`DecryptFailed`, `Replay`,
    ///   `RateLimited`, `SchemaMismatch`, `ProtocolViolation`,
    ///   `MessageTooLarge`, the handshake failures, ...) map to `None`, because
    ///   [`Rejection::for_packet_error`] counted that packet already.
    /// * Ordinary endings (requested, kicked, shutdown, server full, counter
    ///   exhausted, connection lost, unknown codes) map to `None`.
    pub fn for_disconnect(reason: DisconnectReason, initiator: Initiator) -> Option<Rejection> {
        if initiator != Initiator::Local {
            return None;
        }
        match reason {
            DisconnectReason::IdleTimeout | DisconnectReason::HandshakeTimeout => {
                Some(Rejection::Timeout)
            }
            DisconnectReason::SlowConsumer => Some(Rejection::SlowConsumer),
            DisconnectReason::AuthFailed => Some(Rejection::AuthFailed),
            _ => None,
        }
    }

    /// The rejection a refused packet counts as (`None` for a packet that
    /// arrived after the session closed, which is not the peer's fault).
    pub fn for_packet_error(error: &PacketError) -> Option<Rejection> {
        Some(match error {
            PacketError::Malformed(
                EnvelopeError::FrameTooLarge { .. } | EnvelopeError::PayloadTooLarge { .. },
            ) => Rejection::Oversized,
            PacketError::Malformed(_)
            | PacketError::MalformedBody(_)
            | PacketError::Decompress(_) => Rejection::Malformed,
            PacketError::Handshake(_) => Rejection::HandshakeFailed,
            PacketError::DecryptFailed => Rejection::DecryptFailed,
            PacketError::Replay(_) => Rejection::Replay,
            PacketError::RateLimited { .. } => Rejection::RateLimited,
            PacketError::SecurityMismatch => Rejection::SecurityMismatch,
            PacketError::SchemaMismatch(_)
            | PacketError::Refused(DisconnectReason::SchemaMismatch) => Rejection::SchemaMismatch,
            PacketError::Refused(_)
            | PacketError::UnknownRoute(_)
            | PacketError::WrongDirection(_)
            | PacketError::Unexpected(_) => Rejection::ProtocolViolation,
            PacketError::Closed => return None,
        })
    }
}

/// Lock-free counters shared between the ECS (a Bevy resource wraps an Arc of
/// this) and the metrics server.
///
/// All updates are relaxed atomic operations: each counter is exact, but a
/// [`snapshot`](Metrics::snapshot) taken while other threads update may mix
/// values from slightly different instants.
#[derive(Debug, Default)]
pub struct Metrics {
    connections_total: AtomicU64,
    connections_active: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    rejections: [AtomicU64; Rejection::COUNT],
}

/// The values of a [`Metrics`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Connections opened since start.
    pub connections_total: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Messages received.
    pub messages_in: u64,
    /// Messages sent.
    pub messages_out: u64,
    /// Rejections, indexed by [`Rejection::index`] (order of [`Rejection::ALL`]).
    pub rejections: [u64; Rejection::COUNT],
}

impl MetricsSnapshot {
    /// The count for one rejection reason.
    pub fn rejected(&self, why: Rejection) -> u64 {
        self.rejections[why.index()]
    }

    /// All rejections together.
    pub fn rejected_total(&self) -> u64 {
        self.rejections
            .iter()
            .fold(0u64, |a, &b| a.saturating_add(b))
    }
}

impl Metrics {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A connection was established: bumps the total and the active gauge.
    pub fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        self.connections_active.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection ended: lowers the active gauge (never below zero).
    pub fn connection_closed(&self) {
        // Saturating, so a stray extra call cannot wrap the gauge to 2^64-1.
        let _ = self
            .connections_active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }

    /// A session ended: lowers the active gauge and, when the ending is a
    /// rejection ([`Rejection::for_disconnect`]), counts it. Call it exactly
    /// once per session, from the one place sessions are torn down; nothing
    /// else should count the same ending.
    pub fn session_closed(&self, reason: DisconnectReason, initiator: Initiator) {
        self.connection_closed();
        if let Some(why) = Rejection::for_disconnect(reason, initiator) {
            self.reject(why);
        }
    }

    /// `n` bytes were received.
    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` bytes were sent.
    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// One message was received.
    pub fn message_in(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    /// One message was sent.
    pub fn message_out(&self) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Something was rejected for `why`.
    pub fn reject(&self, why: Rejection) {
        self.rejections[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            connections_total: load(&self.connections_total),
            connections_active: load(&self.connections_active),
            bytes_in: load(&self.bytes_in),
            bytes_out: load(&self.bytes_out),
            messages_in: load(&self.messages_in),
            messages_out: load(&self.messages_out),
            rejections: std::array::from_fn(|i| load(&self.rejections[i])),
        }
    }

    /// The counters in the Prometheus text format (see [`MetricsCollector`]
    /// for the names), without the transport's counters.
    pub fn render(self: &Arc<Self>) -> String {
        MetricsCollector::new(Arc::clone(self)).render()
    }
}
