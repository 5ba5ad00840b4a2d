//! Transport counters shared by every endpoint and the metrics layer.

use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(doc)]
use super::{ConnectionLink, IoConfig, IoEvent, LinkError, limits};

/// Transport counters, readable at any time (atomics; shared with the metrics layer).
///
/// All counters are monotonic except `connections_active`.
#[derive(Debug, Default)]
pub struct IoCounters {
    connections_accepted: AtomicU64,
    connections_active: AtomicU64,
    connections_refused_total_cap: AtomicU64,
    connections_refused_ip_cap: AtomicU64,
    connections_refused_origin: AtomicU64,
    connections_refused_rate: AtomicU64,
    connections_refused_unauthenticated: AtomicU64,
    handshake_timeouts: AtomicU64,
    handshake_failures: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    oversized_frames: AtomicU64,
    protocol_errors: AtomicU64,
    slow_consumers: AtomicU64,
    overloaded: AtomicU64,
}

/// A plain copy of [`IoCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCountersSnapshot {
    /// Connections that were opened (an [`IoEvent::Opened`] was emitted).
    /// Server endpoints only.
    pub connections_accepted: u64,
    /// Connections currently open (between `Opened` and `Closed`).
    pub connections_active: u64,
    /// New connections refused because [`IoConfig::max_connections`] was reached.
    pub connections_refused_total_cap: u64,
    /// New connections refused because [`IoConfig::max_connections_per_ip`]
    /// was reached for the peer's address key ([`limits::ip_key`]).
    pub connections_refused_ip_cap: u64,
    /// Upgrades refused with HTTP 403 because of [`IoConfig::allowed_origins`].
    pub connections_refused_origin: u64,
    /// New connections refused by [`IoConfig::accept_rate`] (per address key
    /// or global token bucket).
    pub connections_refused_rate: u64,
    /// New connections refused because [`IoConfig::max_unauthenticated`]
    /// connections had not authenticated yet.
    pub connections_refused_unauthenticated: u64,
    /// Upgrades that did not finish within [`IoConfig::handshake_timeout`].
    pub handshake_timeouts: u64,
    /// Upgrades (or TLS handshakes) that failed for any other reason (bad
    /// HTTP, bad TLS, reset, ...).
    pub handshake_failures: u64,
    /// Frames delivered to the ECS.
    pub frames_in: u64,
    /// Frames handed to the transport for writing.
    pub frames_out: u64,
    /// Payload bytes of `frames_in`.
    pub bytes_in: u64,
    /// Payload bytes of `frames_out`.
    pub bytes_out: u64,
    /// Connections closed because the peer sent an oversized message.
    pub oversized_frames: u64,
    /// Connections closed because of a transport protocol violation.
    pub protocol_errors: u64,
    /// Connections whose [`ConnectionLink::send`] returned [`LinkError::Full`]
    /// (the hard cap), each counted once.
    pub slow_consumers: u64,
    /// Connections closed because the endpoint's event channel was full.
    pub overloaded: u64,
}

/// Which counter to bump; keeps the call sites short.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Accepted,
    RefusedTotalCap,
    RefusedIpCap,
    RefusedOrigin,
    RefusedRate,
    RefusedUnauthenticated,
    HandshakeTimeout,
    HandshakeFailure,
    Oversized,
    ProtocolError,
    SlowConsumer,
    Overloaded,
}

impl IoCounters {
    /// Reads every counter (each one atomically; the set is not one atomic snapshot).
    pub fn snapshot(&self) -> IoCountersSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IoCountersSnapshot {
            connections_accepted: r(&self.connections_accepted),
            connections_active: r(&self.connections_active),
            connections_refused_total_cap: r(&self.connections_refused_total_cap),
            connections_refused_ip_cap: r(&self.connections_refused_ip_cap),
            connections_refused_origin: r(&self.connections_refused_origin),
            connections_refused_rate: r(&self.connections_refused_rate),
            connections_refused_unauthenticated: r(&self.connections_refused_unauthenticated),
            handshake_timeouts: r(&self.handshake_timeouts),
            handshake_failures: r(&self.handshake_failures),
            frames_in: r(&self.frames_in),
            frames_out: r(&self.frames_out),
            bytes_in: r(&self.bytes_in),
            bytes_out: r(&self.bytes_out),
            oversized_frames: r(&self.oversized_frames),
            protocol_errors: r(&self.protocol_errors),
            slow_consumers: r(&self.slow_consumers),
            overloaded: r(&self.overloaded),
        }
    }

    pub(crate) fn bump(&self, counter: Counter) {
        let a = match counter {
            Counter::Accepted => &self.connections_accepted,
            Counter::RefusedTotalCap => &self.connections_refused_total_cap,
            Counter::RefusedIpCap => &self.connections_refused_ip_cap,
            Counter::RefusedOrigin => &self.connections_refused_origin,
            Counter::RefusedRate => &self.connections_refused_rate,
            Counter::RefusedUnauthenticated => &self.connections_refused_unauthenticated,
            Counter::HandshakeTimeout => &self.handshake_timeouts,
            Counter::HandshakeFailure => &self.handshake_failures,
            Counter::Oversized => &self.oversized_frames,
            Counter::ProtocolError => &self.protocol_errors,
            Counter::SlowConsumer => &self.slow_consumers,
            Counter::Overloaded => &self.overloaded,
        };
        a.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn opened(&self) {
        self.connections_active.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self) {
        self.connections_active.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn frame_in(&self, len: usize) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn frame_out(&self, len: usize) {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(len as u64, Ordering::Relaxed);
    }
}
