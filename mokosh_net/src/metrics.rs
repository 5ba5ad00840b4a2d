//! Operational counters and a minimal Prometheus endpoint.
//!
//! [`Metrics`] is a set of lock-free counters. The networking code (and the
//! Bevy plugins, through a resource wrapping an `Arc<Metrics>`) bumps them;
//! [`Metrics::snapshot`] reads them as plain numbers; and
//! [`Metrics::render_prometheus`] formats them in the Prometheus text
//! exposition format 0.0.4, which [`serve_metrics`] serves over HTTP at
//! `GET /metrics`.
//!
//! ```
//! use std::sync::Arc;
//! use mokosh_net::metrics::{Metrics, Rejection};
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
//! let text = metrics.render_prometheus(&[("mokosh_rooms", "Rooms open.", 3)]);
//! assert!(text.contains("mokosh_rejections_total{reason=\"replay\"} 1\n"));
//! assert!(text.contains("mokosh_rooms 3\n"));
//! ```
//!
//! Serving it (on a tokio runtime you own):
//!
//! ```no_run
//! use std::sync::Arc;
//! use mokosh_net::metrics::{Metrics, serve_metrics};
//!
//! let rt = tokio::runtime::Runtime::new()?;
//! let metrics = Arc::new(Metrics::default());
//! let server = serve_metrics(
//!     rt.handle(),
//!     "127.0.0.1:9100".parse()?,
//!     Arc::clone(&metrics).prometheus_renderer(),
//! )?;
//! println!("metrics on http://{}/metrics", server.local_addr());
//! // ... dropping `server` stops it.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::DisconnectReason;

mod http;

pub use http::{
    MAX_CONNECTIONS, MAX_REQUEST_HEAD, MetricsServer, READ_TIMEOUT, WRITE_TIMEOUT, serve_metrics,
};

/// Why something was rejected; one counter each.
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
    /// A peer did not read fast enough (queue full).
    SlowConsumer,
    /// A handshake or idle timeout.
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

    /// The rejection a session ending for `reason` counts as, or `None` for
    /// endings that are not rejections (requested, kicked, shutdown, server
    /// full, counter exhausted, unknown codes).
    ///
    /// `IdleTimeout` and `HandshakeTimeout` map to [`Rejection::Timeout`];
    /// `MessageTooLarge` to [`Rejection::Oversized`]; `VersionMismatch` and
    /// `NoCommonCodec` to [`Rejection::HandshakeFailed`].
    pub fn from_disconnect(reason: DisconnectReason) -> Option<Rejection> {
        Some(match reason {
            DisconnectReason::IdleTimeout | DisconnectReason::HandshakeTimeout => {
                Rejection::Timeout
            }
            DisconnectReason::ProtocolViolation => Rejection::ProtocolViolation,
            DisconnectReason::DecryptFailed => Rejection::DecryptFailed,
            DisconnectReason::Replay => Rejection::Replay,
            DisconnectReason::RateLimited => Rejection::RateLimited,
            DisconnectReason::SchemaMismatch => Rejection::SchemaMismatch,
            DisconnectReason::AuthFailed => Rejection::AuthFailed,
            DisconnectReason::SlowConsumer => Rejection::SlowConsumer,
            DisconnectReason::MessageTooLarge => Rejection::Oversized,
            DisconnectReason::VersionMismatch | DisconnectReason::NoCommonCodec => {
                Rejection::HandshakeFailed
            }
            DisconnectReason::SecurityMismatch => Rejection::SecurityMismatch,
            DisconnectReason::HandshakeFailed => Rejection::HandshakeFailed,
            _ => return None,
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

    /// Prometheus text exposition format 0.0.4.
    ///
    /// Each metric has `# HELP` and `# TYPE` lines. Counters
    /// `mokosh_connections_total`, `mokosh_bytes_received_total`,
    /// `mokosh_bytes_sent_total`, `mokosh_messages_received_total`,
    /// `mokosh_messages_sent_total`; gauge `mokosh_connections_active`; and
    /// counter `mokosh_rejections_total{reason="..."}` with one line per
    /// [`Rejection`] (labels from [`Rejection::label`], in [`Rejection::ALL`]
    /// order, zeros included).
    ///
    /// `extra` entries `(name, help, value)` are appended as counters. Names
    /// should be unique and valid Prometheus names (`[a-zA-Z_:][a-zA-Z0-9_:]*`);
    /// invalid characters are replaced with `_` (and an empty name becomes
    /// `_`); in `help`, backslashes and `\n` are escaped and `\r` becomes a space, so the
    /// output stays well-formed whatever is passed.
    pub fn render_prometheus(&self, extra: &[(&str, &str, u64)]) -> String {
        let s = self.snapshot();
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            // `write!` to a String cannot fail.
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        metric(
            "mokosh_connections_total",
            "counter",
            "Connections opened since the server started.",
            s.connections_total,
        );
        metric(
            "mokosh_connections_active",
            "gauge",
            "Connections currently open.",
            s.connections_active,
        );
        metric(
            "mokosh_bytes_received_total",
            "counter",
            "Bytes received from peers.",
            s.bytes_in,
        );
        metric(
            "mokosh_bytes_sent_total",
            "counter",
            "Bytes sent to peers.",
            s.bytes_out,
        );
        metric(
            "mokosh_messages_received_total",
            "counter",
            "Game messages received from peers.",
            s.messages_in,
        );
        metric(
            "mokosh_messages_sent_total",
            "counter",
            "Game messages sent to peers.",
            s.messages_out,
        );
        out.push_str(
            "# HELP mokosh_rejections_total Packets, messages or connections rejected, by reason.\n\
             # TYPE mokosh_rejections_total counter\n",
        );
        for why in Rejection::ALL {
            let _ = writeln!(
                out,
                "mokosh_rejections_total{{reason=\"{}\"}} {}",
                why.label(),
                s.rejected(why)
            );
        }
        for &(name, help, value) in extra {
            let name = sanitize_name(name);
            let help = escape_help(help);
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            );
        }
        out
    }

    /// A render function for [`serve_metrics`] that renders these metrics
    /// with no extras.
    pub fn prometheus_renderer(self: Arc<Self>) -> Arc<dyn Fn() -> String + Send + Sync> {
        Arc::new(move || self.render_prometheus(&[]))
    }
}

fn sanitize_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let ok =
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit());
            if ok { c } else { '_' }
        })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

fn escape_help(help: &str) -> String {
    let mut out = String::with_capacity(help.len());
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
