//! The IO layer: sockets in, opaque frames out.
//!
//! ```text
//! socket → IO task (tokio) → bounded crossbeam channel → [ECS receive system]
//!        → ... → ECS send system → per-connection bounded queue → IO task → socket
//! ```
//!
//! This module owns sockets and nothing else. It knows nothing about the
//! protocol: a frame is an opaque `Vec<u8>`, and one WebSocket binary message
//! is one frame. Two transports share one contract:
//!
//! * [`websocket`] — real TCP + WebSocket on an [`IoRuntime`] (tokio); `ws://`,
//!   and `wss://` with the `tls` feature.
//! * [`memory`] — an in-process, synchronous, deterministic pair of channels
//!   for tests (no tokio involved).
//!
//! # The transport seam
//!
//! A connection is a [`Link`] (send, close, return inbound credit, report its
//! byte backlog, mark authenticated) behind a [`ConnectionLink`]; an endpoint
//! is an event channel of [`IoEvent`]s. Any backend — a datagram transport, an
//! engine-side (e.g. Godot) socket — implements [`Link`] for its connections,
//! builds their handles with [`ConnectionLink::new`] and reports them in
//! [`IoEvent::Opened`]; see the example on [`Link`]. The
//! [`conditioner`] wraps any link with latency, jitter, a bandwidth cap and
//! (on unreliable links) loss and duplication, driven by the caller's clock.
//!
//! # Admission (server endpoints)
//!
//! Before any TLS or WebSocket work the accept loop applies, in order: the
//! arrival-rate token buckets ([`IoConfig::accept_rate`], per address key and
//! global), the total cap, the cap on connections not yet authenticated
//! ([`IoConfig::max_unauthenticated`]; the server plugin calls
//! [`ConnectionLink::mark_authenticated`] on admission) and the per-address
//! cap, where the address key is the IPv4 address or the IPv6 /64
//! ([`limits::ip_key`]). A refused `ws://` upgrade gets HTTP 503 with the
//! reason as its body ([`websocket::REFUSED_RATE`] and siblings). Each TLS
//! handshake runs in its connection's own task, so handshakes spread over
//! the runtime's workers rather than queueing behind the accept loop.
//!
//! # Events and links
//!
//! Every endpoint hands the ECS one bounded [`crossbeam_channel::Receiver`] of
//! [`IoEvent`]s. For every connection the ECS sees exactly one
//! [`IoEvent::Opened`] (carrying a [`ConnectionLink`]), any number of
//! [`IoEvent::Frame`]s and exactly one [`IoEvent::Closed`], in that order.
//! (A client endpoint whose connection attempt fails sees a lone `Closed`.)
//!
//! # Backpressure
//!
//! * **Inbound:** each connection has `inbound_frames_per_connection` units of
//!   credit. Delivering a frame to the ECS takes one; [`ConnectionLink::frame_consumed`]
//!   gives it back. A connection without credit stops reading its socket, which
//!   pushes back on the peer through TCP; no other connection is affected.
//! * **Outbound:** [`ConnectionLink::send`] never blocks. Each connection's
//!   queue is sized in bytes: [`ConnectionLink::backlog_bytes`] reports what is
//!   queued and not yet written to the socket. Past the hard cap
//!   [`IoConfig::outbound_queue_bytes`] (or [`IoConfig::outbound_queue`] frames)
//!   `send` returns [`LinkError::Full`]. The server plugin applies the softer
//!   slow-consumer policy on top: a peer whose backlog stays over
//!   [`IoConfig::outbound_budget_bytes`] for [`IoConfig::slow_consumer_ticks`]
//!   consecutive ticks is disconnected as a slow consumer, so a burst that a
//!   healthy reader drains within a few ticks never drops it. A socket whose
//!   writes are stuck only ever stalls its own task: there are no shared locks
//!   held across an `.await`.
//!
//! # TLS (`wss://`, cargo feature `tls`)
//!
//! Off by default. With `tls` (rustls on the `ring` provider, `webpki-roots`),
//! `websocket::listen_tls` serves `wss://` with a `rustls::ServerConfig`
//! (`tls::server_config_from_pem` builds one from PEM), [`websocket::connect`]
//! accepts `wss://` URLs and trusts the Mozilla root store, and
//! `websocket::connect_with_tls` takes a `rustls::ClientConfig` with other
//! roots (`tls::client_config_from_pem`, e.g. for a self-signed certificate).
//! The TLS handshake runs inside [`IoConfig::handshake_timeout`] together with
//! the WebSocket upgrade; a failed one is counted in `handshake_failures` and
//! ends only that connection. Without the feature, connecting to a `wss://` URL
//! ends with `CloseCause::HandshakeFailed("wss:// needs the `tls` feature")`.
//!
//! The Mokosh protocol already encrypts and authenticates every packet end to
//! end (Noise + ChaCha20-Poly1305), whatever the transport; TLS is for
//! deployments that need `wss://`: browsers on HTTPS pages (HTML5 exports),
//! proxies, and networks that only let TLS through.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub mod conditioner;
mod conn;
mod counters;
pub mod limits;
pub mod memory;
#[cfg(feature = "tls")]
pub mod tls;
pub mod transport;
pub mod websocket;

pub(crate) use counters::Counter;
pub use counters::{IoCounters, IoCountersSnapshot};

/// Identifies one connection within one endpoint (unique, never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// What the IO layer tells the ECS (one bounded crossbeam channel per endpoint).
#[derive(Debug)]
pub enum IoEvent {
    /// A transport connection is open (server: accepted and WebSocket-upgraded;
    /// client: connected).
    Opened {
        /// The connection.
        id: ConnectionId,
        /// The peer's address, when the transport has one (`None` for memory).
        remote: Option<SocketAddr>,
        /// The handle used to send to, close, and return credit to the connection.
        link: ConnectionLink,
    },
    /// One received binary message. The receiver MUST call
    /// [`ConnectionLink::frame_consumed`] once it has processed it (this returns
    /// inbound credit).
    Frame {
        /// The connection.
        id: ConnectionId,
        /// The message payload, exactly as the peer sent it.
        frame: Vec<u8>,
    },
    /// The connection is gone; no more events for `id`.
    Closed {
        /// The connection.
        id: ConnectionId,
        /// Why it ended.
        cause: CloseCause,
    },
}

impl IoEvent {
    /// The connection this event is about.
    pub fn connection(&self) -> ConnectionId {
        match self {
            IoEvent::Opened { id, .. } | IoEvent::Frame { id, .. } | IoEvent::Closed { id, .. } => {
                *id
            }
        }
    }
}

/// Why [`ConnectionLink::send`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The per-connection outbound queue is at its cap: the peer is not keeping
    /// up. Disconnect it as a slow consumer.
    #[error("outbound queue full (slow consumer)")]
    Full,
    /// The connection is closed or closing.
    #[error("connection closed")]
    Closed,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCause {
    /// The peer closed the connection (close frame, or the other side of a
    /// memory link went away).
    PeerClosed,
    /// [`ConnectionLink::close`] was called on this side.
    Local,
    /// A transport error (reset, refused, broken pipe, ...).
    Io(String),
    /// The peer sent a message larger than [`IoConfig::max_frame_len`].
    Oversized,
    /// The peer violated the transport contract (e.g. a text frame, bad
    /// WebSocket framing).
    ProtocolError(String),
    /// The TLS handshake (if any) and WebSocket upgrade did not finish within
    /// [`IoConfig::handshake_timeout`] (clients only; servers never report
    /// connections that were not opened).
    HandshakeTimeout,
    /// The WebSocket upgrade or the TLS handshake failed, or the URL cannot be
    /// used (e.g. `wss://` without the `tls` feature). Clients only.
    HandshakeFailed(String),
    /// The endpoint's shared event channel was full: the ECS is not draining it.
    Overloaded,
    /// The endpoint was dropped.
    Shutdown,
}

/// Transport limits and policies, shared by both transports.
#[derive(Debug, Clone)]
pub struct IoConfig {
    /// Largest message (and largest single WebSocket frame) accepted from a
    /// peer; a larger one closes the connection with [`CloseCause::Oversized`].
    /// Default 64 KiB + 64.
    pub max_frame_len: usize,
    /// Hard cap on one connection's outbound queue, in frames: one more and
    /// [`ConnectionLink::send`] answers [`LinkError::Full`]. Default 4096.
    pub outbound_queue: usize,
    /// Hard cap on one connection's outbound queue, in bytes: a frame that
    /// would take the backlog past it is refused with [`LinkError::Full`]
    /// (a frame into an empty queue is always accepted). Default 4 MiB.
    pub outbound_queue_bytes: usize,
    /// Slow-consumer budget (server plugin): a connection whose
    /// [`ConnectionLink::backlog_bytes`] is over this after a tick's flush
    /// counts one tick over budget. Default 1 MiB.
    pub outbound_budget_bytes: usize,
    /// Slow-consumer policy (server plugin): after this many consecutive ticks
    /// over [`outbound_budget_bytes`](Self::outbound_budget_bytes), or at once
    /// when the hard cap refuses a frame, the client is disconnected with
    /// `SlowConsumer` (its DISCONNECT packet is still queued). Default 30.
    pub slow_consumer_ticks: u32,
    /// Inbound credit: how many frames one connection may have waiting in the
    /// ECS channel (delivered but not yet [`ConnectionLink::frame_consumed`]).
    /// Default 64.
    pub inbound_frames_per_connection: usize,
    /// Most simultaneous connections a server endpoint holds, including ones
    /// still in the upgrade. Default 1024.
    pub max_connections: usize,
    /// Most simultaneous connections from one address key: an IPv4 address,
    /// or an IPv6 prefix of [`ipv6_prefix_len`](Self::ipv6_prefix_len) bits
    /// (see [`limits::ip_key`]). Default 64.
    pub max_connections_per_ip: usize,
    /// How many leading bits of an IPv6 address form its key for the per-IP
    /// cap and rate limit. Default 64 (one /64 per subscriber).
    pub ipv6_prefix_len: u8,
    /// Most connections that have not authenticated yet (see
    /// [`ConnectionLink::mark_authenticated`]), so that handshakes in flight
    /// cannot take the whole [`max_connections`](Self::max_connections).
    /// Default 256.
    pub max_unauthenticated: usize,
    /// Arrival-rate limits on new connections (server endpoints).
    pub accept_rate: limits::AcceptRate,
    /// Time from TCP accept (or client connect start) to a finished WebSocket
    /// upgrade, including the TLS handshake for `wss://`. Default 5 s.
    pub handshake_timeout: Duration,
    /// `None` accepts any `Origin`. `Some(list)` requires the `Origin` header,
    /// when present, to equal one of the entries exactly (otherwise HTTP 403).
    ///
    /// Requests **without** an `Origin` header are always allowed: browsers
    /// always send one, native clients send none. The allow-list therefore
    /// protects against other web pages using a visitor's browser, not against
    /// arbitrary programs.
    pub allowed_origins: Option<Vec<String>>,
}

impl Default for IoConfig {
    fn default() -> Self {
        Self {
            max_frame_len: 64 * 1024 + 64,
            outbound_queue: 4096,
            outbound_queue_bytes: 4 * 1024 * 1024,
            outbound_budget_bytes: 1024 * 1024,
            slow_consumer_ticks: 30,
            inbound_frames_per_connection: 64,
            max_connections: 1024,
            max_connections_per_ip: 64,
            ipv6_prefix_len: 64,
            max_unauthenticated: 256,
            accept_rate: limits::AcceptRate::default(),
            handshake_timeout: Duration::from_secs(5),
            allowed_origins: None,
        }
    }
}

/// Upper bound on frames allowed in one endpoint's event channel.
const MAX_FRAME_BUDGET: usize = 1 << 16;
/// Upper bound on the channel slots reserved for `Opened` / `Closed` events.
const MAX_CONTROL_HEADROOM: usize = 1 << 16;

/// Sizes of one endpoint's event channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChannelSizing {
    /// Frames are only delivered while fewer than this many events are queued;
    /// beyond that the connection is closed as [`CloseCause::Overloaded`].
    pub(crate) frame_budget: usize,
    /// Total channel capacity: the frame budget plus headroom for control events.
    pub(crate) capacity: usize,
}

impl ChannelSizing {
    pub(crate) fn new(config: &IoConfig, max_connections: usize) -> Self {
        let conns = max_connections.max(1);
        let frame_budget = conns
            .saturating_mul(config.inbound_frames_per_connection.max(1))
            .min(MAX_FRAME_BUDGET);
        let headroom = conns.saturating_mul(2).min(MAX_CONTROL_HEADROOM) + 16;
        Self {
            frame_budget,
            capacity: frame_budget + headroom,
        }
    }
}

/// One connection as a transport backend provides it: the seam between the
/// plugins and any transport (WebSocket, memory, a link conditioner wrapping
/// either, or an out-of-crate backend such as a datagram socket or an
/// engine-side socket).
///
/// A backend implements this for its per-connection state, wraps it in a
/// [`ConnectionLink`] with [`ConnectionLink::new`] and hands that to the ECS in
/// [`IoEvent::Opened`]; frames arrive as [`IoEvent::Frame`] and the end as one
/// [`IoEvent::Closed`] on the endpoint's event channel. Every method must be
/// cheap and must never block: the plugins call them on the game thread.
///
/// ```
/// use std::sync::Mutex;
/// use mokosh_net::io::{ConnectionId, ConnectionLink, Link, LinkError};
///
/// /// A backend that keeps what is sent (a real one hands it to its socket).
/// #[derive(Default)]
/// struct Recorder(Mutex<Vec<Vec<u8>>>);
///
/// impl Link for Recorder {
///     fn send(&self, frame: Vec<u8>) -> Result<(), LinkError> {
///         self.0.lock().unwrap().push(frame);
///         Ok(())
///     }
///     fn close(&self) {}
///     fn frame_consumed(&self) {}
///     fn backlog_bytes(&self) -> usize {
///         0
///     }
/// }
///
/// let link = ConnectionLink::new(ConnectionId(7), std::sync::Arc::new(Recorder::default()));
/// link.send(vec![1, 2, 3]).unwrap();
/// assert_eq!(link.id(), ConnectionId(7));
/// ```
pub trait Link: Send + Sync + 'static {
    /// Queues one frame without blocking; [`LinkError::Full`] at the backend's
    /// hard cap, [`LinkError::Closed`] once closed. Reliable ordered backends
    /// deliver accepted frames in order.
    fn send(&self, frame: Vec<u8>) -> Result<(), LinkError>;
    /// Flushes what is queued (best effort, bounded in time), then closes and
    /// emits exactly one [`IoEvent::Closed`]. Idempotent.
    fn close(&self);
    /// Returns one unit of inbound credit after the ECS processed a frame.
    fn frame_consumed(&self);
    /// Bytes accepted by [`send`](Self::send) and not yet handed to the
    /// network (or to the peer).
    fn backlog_bytes(&self) -> usize;
    /// The session on this connection authenticated: it no longer counts
    /// against [`IoConfig::max_unauthenticated`]. Idempotent; a no-op for
    /// backends without that cap.
    fn mark_authenticated(&self) {}
    /// A short name for logs (`"websocket"`, `"memory"`, ...).
    fn kind(&self) -> &'static str {
        "custom"
    }
}

/// ECS-side handle to one connection: its id and its [`Link`]. Clone-able; cheap.
#[derive(Clone)]
pub struct ConnectionLink {
    id: ConnectionId,
    inner: Arc<dyn Link>,
}

impl fmt::Debug for ConnectionLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionLink")
            .field("id", &self.id)
            .field("transport", &self.inner.kind())
            .finish()
    }
}

impl ConnectionLink {
    /// A handle for connection `id` of a backend's [`Link`].
    pub fn new(id: ConnectionId, link: Arc<dyn Link>) -> Self {
        ConnectionLink { id, inner: link }
    }

    /// Queues one frame without blocking.
    ///
    /// Returns [`LinkError::Full`] when the per-connection outbound queue is at
    /// its hard cap ([`IoConfig::outbound_queue_bytes`] /
    /// [`IoConfig::outbound_queue`]; counted in `slow_consumers`), and
    /// [`LinkError::Closed`] once the connection is closed or
    /// [`close`](Self::close) was called.
    pub fn send(&self, frame: Vec<u8>) -> Result<(), LinkError> {
        self.inner.send(frame)
    }

    /// Asks the transport to flush what is queued, then close (WebSocket close
    /// frame), then emit [`IoEvent::Closed`] with [`CloseCause::Local`].
    ///
    /// Idempotent. If the peer does not accept the queued data within about a
    /// second (a stuck socket), the connection is dropped without waiting longer.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Returns one unit of inbound credit after the ECS processed one
    /// [`IoEvent::Frame`]. Extra calls (more than frames received) are ignored.
    pub fn frame_consumed(&self) {
        self.inner.frame_consumed();
    }

    /// Bytes queued for this connection and not yet written to the network:
    /// the input of the slow-consumer policy ([`IoConfig::outbound_budget_bytes`]).
    pub fn backlog_bytes(&self) -> usize {
        self.inner.backlog_bytes()
    }

    /// Marks the connection authenticated (the server plugin does this when
    /// the client is admitted), releasing its place under
    /// [`IoConfig::max_unauthenticated`]. Idempotent.
    pub fn mark_authenticated(&self) {
        self.inner.mark_authenticated();
    }

    /// The connection id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }
}

/// The tokio runtime owned by the plugins: background worker threads named
/// `mokosh-io`; shuts down (waiting at most 1 s for tasks) on drop.
///
/// Do not drop it from inside an async context.
pub struct IoRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl fmt::Debug for IoRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoRuntime").finish_non_exhaustive()
    }
}

impl IoRuntime {
    /// Starts a multi-threaded runtime with `worker_threads` workers (at least 1).
    pub fn new(worker_threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name("mokosh-io")
            .enable_io()
            .enable_time()
            .build()?;
        let handle = runtime.handle().clone();
        Ok(Self {
            runtime: Some(runtime),
            handle,
        })
    }

    /// The runtime's handle, for spawning or entering.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Keeps an endpoint's background work alive; dropping it stops that work.
enum EndpointGuard {
    /// Dropping the sender wakes every task of the endpoint (`changed()` errors).
    Task(#[allow(dead_code)] tokio::sync::watch::Sender<()>),
    Memory(#[allow(dead_code)] memory::MemGuard),
    /// An out-of-crate backend's state, dropped with the endpoint.
    Custom(#[allow(dead_code)] Box<dyn std::any::Any + Send + Sync>),
}

/// A listening server endpoint. Dropping it stops accepting and closes all its
/// connections (peers see a WebSocket close with code 1001 "going away").
pub struct ServerEndpoint {
    events: crossbeam_channel::Receiver<IoEvent>,
    local_addr: Option<SocketAddr>,
    counters: Arc<IoCounters>,
    _guard: EndpointGuard,
}

impl fmt::Debug for ServerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerEndpoint")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl ServerEndpoint {
    /// The endpoint's events, for every connection.
    pub fn events(&self) -> &crossbeam_channel::Receiver<IoEvent> {
        &self.events
    }

    /// The bound address (`None` for memory endpoints).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The endpoint's counters.
    pub fn counters(&self) -> &Arc<IoCounters> {
        &self.counters
    }
}

/// A client endpoint (one connection). Dropping it closes the connection.
pub struct ClientEndpoint {
    events: crossbeam_channel::Receiver<IoEvent>,
    counters: Arc<IoCounters>,
    _guard: EndpointGuard,
}

impl fmt::Debug for ClientEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientEndpoint").finish_non_exhaustive()
    }
}

impl ClientEndpoint {
    /// The connection's events: `Opened`, `Frame`s, `Closed` (or a lone
    /// `Closed` when connecting failed).
    pub fn events(&self) -> &crossbeam_channel::Receiver<IoEvent> {
        &self.events
    }

    /// The endpoint's counters.
    pub fn counters(&self) -> &Arc<IoCounters> {
        &self.counters
    }
}
