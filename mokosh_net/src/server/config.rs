//! The server plugin's configuration.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::AuthProvider;
use crate::io::IoConfig;
use crate::protocol::{DecodeLimits, KeyPair, ServerSecurity, SessionConfig};
use crate::shared::io_config_for;

/// Where the server listens.
#[derive(Clone)]
pub enum ServerTransport {
    /// WebSocket (binary messages) on this address.
    WebSocket(SocketAddr),
    /// WebSocket over TLS (`wss://`) on `addr` (`tls` feature); see
    /// [`io::websocket::listen_tls`](crate::io::websocket::listen_tls) and [`io::tls::server_config_from_pem`](crate::io::tls::server_config_from_pem).
    #[cfg(feature = "tls")]
    WebSocketTls {
        /// Where to listen.
        addr: SocketAddr,
        /// The certificate chain, key and TLS settings.
        tls: Arc<rustls::ServerConfig>,
    },
    /// The in-memory transport (tests, benchmarks, single-process games); the
    /// listener is available as the [`MemoryListenerHandle`](super::MemoryListenerHandle) resource.
    Memory,
    /// Any other backend (see [`crate::io::transport`]).
    Custom(Arc<dyn crate::io::transport::ServerBackend>),
}

impl ServerTransport {
    /// The backend that implements this transport (every variant is one:
    /// [`WebSocketServer`](crate::io::transport::WebSocketServer),
    /// [`MemoryServer`](crate::io::transport::MemoryServer), ...).
    pub fn backend(&self) -> Arc<dyn crate::io::transport::ServerBackend> {
        use crate::io::transport;
        match self {
            ServerTransport::WebSocket(addr) => Arc::new(transport::WebSocketServer(*addr)),
            #[cfg(feature = "tls")]
            ServerTransport::WebSocketTls { addr, tls } => {
                Arc::new(transport::WebSocketTlsServer {
                    addr: *addr,
                    tls: tls.clone(),
                })
            }
            ServerTransport::Memory => Arc::new(transport::MemoryServer::new()),
            ServerTransport::Custom(backend) => backend.clone(),
        }
    }
}

impl core::fmt::Debug for ServerTransport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ServerTransport::WebSocket(addr) => write!(f, "WebSocket({addr})"),
            #[cfg(feature = "tls")]
            ServerTransport::WebSocketTls { addr, .. } => write!(f, "WebSocketTls({addr})"),
            ServerTransport::Memory => f.write_str("Memory"),
            ServerTransport::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// Everything the server plugin needs. Start from
/// [`websocket`](Self::websocket) or [`memory`](Self::memory) and change what
/// you need with the `with_*` builders:
///
/// ```
/// use std::sync::Arc;
/// use mokosh_net::auth::DevAuthProvider;
/// use mokosh_net::protocol::KeyPair;
/// use mokosh_net::server::ServerPluginConfig;
///
/// let config = ServerPluginConfig::websocket("0.0.0.0:8080".parse().unwrap(), KeyPair::generate().unwrap())
///     .with_auth(Arc::new(DevAuthProvider::new()))
///     .with_metrics("127.0.0.1:9100".parse().unwrap())
///     .with_worker_threads(2);
/// assert_eq!(config.worker_threads, 2);
/// ```
#[derive(Clone)]
pub struct ServerPluginConfig {
    /// Where to listen.
    pub transport: ServerTransport,
    /// Noise key pair (or explicit plaintext).
    pub security: ServerSecurity,
    /// Protocol settings: codecs, compression, limits, timers, rate limits.
    pub session: SessionConfig,
    /// IO settings: queue caps, connection caps, Origin allow-list.
    pub io: IoConfig,
    /// Who may connect, evaluated off the game loop. `None` uses
    /// [`crate::auth::default_provider`] (development provider in debug
    /// builds, refuse-everyone in release builds until you configure one).
    pub auth: Option<Arc<dyn AuthProvider>>,
    /// Worker threads of the IO runtime. Default: the machine's parallelism,
    /// between 2 and 4 (TLS handshakes run in parallel on them).
    pub worker_threads: usize,
    /// Serve Prometheus text on `http://ADDR/metrics`.
    pub metrics_addr: Option<SocketAddr>,
    /// Limits applied when decoding typed messages.
    pub decode_limits: DecodeLimits,
    /// Timeout and concurrency bounds of the authentication provider's work.
    pub auth_limits: AuthLimits,
    /// How many sessions one authenticated identity may hold at once, and
    /// what happens to one more.
    pub sessions_per_identity: SessionsPerIdentity,
    /// Connects and disconnects are logged one by one at `debug`; at `info`
    /// the server writes one summary ("X connected, Y disconnected") at most
    /// this often (measured on the server's clock), and none when nothing
    /// happened. Default 10 s.
    pub connection_log_interval: Duration,
    /// A link conditioner in front of every connection's outbound link
    /// (latency, jitter, bandwidth), driven by the server's clock each tick;
    /// `None` (default) sends directly. Each connection's schedule is seeded
    /// with the configured seed plus its connection id.
    pub link_conditioner: Option<crate::io::conditioner::LinkConditionerConfig>,
    /// Most client hellos (Noise handshakes: the X25519 work of a new
    /// session) the game thread processes in one tick. Further hellos wait
    /// for the next tick, in arrival order, so a burst of new connections
    /// cannot stall the game loop; each waiting connection may send nothing
    /// else (a second frame before its hello is answered is a protocol
    /// violation). Default 8 (512/s at 64 Hz, above the IO layer's default
    /// global arrival rate of 500 connections/s); at least 1.
    pub handshakes_per_tick: usize,
}

/// Bounds on the authentication provider's work. Each request runs as a task
/// on the IO runtime, never on the game thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthLimits {
    /// A provider that has not answered this long after the request (on the
    /// server's clock, checked every tick) is abandoned: its future is dropped
    /// and the client refused with `AuthFailed`. The session's handshake
    /// timeout also bounds it. Default 5 s.
    pub timeout: Duration,
    /// Most provider futures running at once; further requests wait for a
    /// slot (in arrival order, their timeout running). Default 64.
    pub max_concurrent: usize,
    /// Most requests pending at once (running plus waiting for a slot); one
    /// more is refused at once with `ServerFull`. Default 256.
    pub max_pending: usize,
    /// Most of those pending requests from one address (IPv4, or IPv6 by the
    /// IO layer's `ipv6_prefix_len` prefix), so a few addresses cannot fill
    /// `max_pending` while a slow provider thinks; one more from that address
    /// is refused with `ServerFull`. Connections without an address (the
    /// memory transport) are not limited by it. Default 16.
    pub max_pending_per_address: usize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            timeout: Duration::from_secs(5),
            max_concurrent: 64,
            max_pending: 256,
            max_pending_per_address: 16,
        }
    }
}

/// The cap on sessions per authenticated identity ([`Identity::user_id`](crate::auth::Identity::user_id)).
///
/// The default is **4 sessions, the newest replacing the oldest**. Replacing
/// is the default because the newest session is the one a person is using:
/// after a network change or a crash the old connection often lingers
/// half-open until its idle timeout, and refusing the new one would lock the
/// player out of their own account meanwhile. A credential can therefore
/// never hold more than `max` of the server's slots. Games that allow one
/// session per user set `max` to 1; servers that must never drop a live
/// session choose [`WhenIdentityFull::RefuseNewest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionsPerIdentity {
    /// Most sessions one identity may hold.
    pub max: NonZeroUsize,
    /// What happens when one more session of that identity authenticates.
    pub when_full: WhenIdentityFull,
}

impl Default for SessionsPerIdentity {
    fn default() -> Self {
        SessionsPerIdentity {
            max: NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN),
            when_full: WhenIdentityFull::ReplaceOldest,
        }
    }
}

/// What [`SessionsPerIdentity`] does with one session too many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenIdentityFull {
    /// The identity's oldest session is closed with `Kicked` ("replaced by a
    /// newer session") and the new one is accepted.
    ReplaceOldest,
    /// The new session is refused with `AuthFailed`; the existing ones stay.
    RefuseNewest,
}

impl core::fmt::Debug for ServerPluginConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerPluginConfig")
            .field("transport", &self.transport)
            .field("security", &self.security)
            .field("session", &self.session)
            .field("io", &self.io)
            .field("worker_threads", &self.worker_threads)
            .field("metrics_addr", &self.metrics_addr)
            .field("auth_limits", &self.auth_limits)
            .field("sessions_per_identity", &self.sessions_per_identity)
            .field("connection_log_interval", &self.connection_log_interval)
            .field("handshakes_per_tick", &self.handshakes_per_tick)
            .field("link_conditioner", &self.link_conditioner)
            .finish_non_exhaustive()
    }
}

impl ServerPluginConfig {
    /// A WebSocket server on `addr` with `keypair`, the default
    /// authentication provider and default limits.
    pub fn websocket(addr: SocketAddr, keypair: KeyPair) -> Self {
        Self::with_transport(ServerTransport::WebSocket(addr), keypair)
    }

    /// An in-memory server (see [`ServerTransport::Memory`]).
    pub fn memory(keypair: KeyPair) -> Self {
        Self::with_transport(ServerTransport::Memory, keypair)
    }

    /// Who may connect (see [`crate::auth`]); replaces the default provider.
    #[must_use]
    pub fn with_auth(mut self, provider: Arc<dyn AuthProvider>) -> Self {
        self.auth = Some(provider);
        self
    }

    /// Serves Prometheus text on `http://ADDR/metrics` (bind it to loopback or
    /// a private interface: the endpoint has no authentication). Needs the
    /// `metrics-http` feature; without it, or if `addr` cannot be bound, the
    /// server still runs and reports a
    /// [`ServerStartError::Metrics`](super::ServerStartError::Metrics).
    #[must_use]
    pub fn with_metrics(mut self, addr: SocketAddr) -> Self {
        self.metrics_addr = Some(addr);
        self
    }

    /// Protocol settings; the IO limits follow (the largest frame matches the
    /// largest message).
    #[must_use]
    pub fn with_session(mut self, session: SessionConfig) -> Self {
        self.io = crate::shared::io_config_following(self.io, &session);
        self.session = session;
        self
    }

    /// IO settings: queue caps, connection caps, Origin allow-list.
    #[must_use]
    pub fn with_io(mut self, io: IoConfig) -> Self {
        self.io = io;
        self
    }

    /// Worker threads of the IO runtime (at least one).
    #[must_use]
    pub fn with_worker_threads(mut self, worker_threads: usize) -> Self {
        self.worker_threads = worker_threads;
        self
    }

    /// Limits applied when decoding typed messages.
    #[must_use]
    pub fn with_decode_limits(mut self, decode_limits: DecodeLimits) -> Self {
        self.decode_limits = decode_limits;
        self
    }

    /// No encryption: anyone on the path reads and changes traffic. For local
    /// tests and trusted networks only.
    #[must_use]
    pub fn plaintext(mut self) -> Self {
        self.security = ServerSecurity::Plaintext;
        self
    }

    fn with_transport(transport: ServerTransport, keypair: KeyPair) -> Self {
        let session = SessionConfig::default();
        let io = io_config_for(&session);
        ServerPluginConfig {
            transport,
            security: ServerSecurity::Noise(keypair),
            session,
            io,
            auth: None,
            // Each connection's TLS handshake and upgrade runs in its own
            // task; more than one worker keeps them from queueing behind each
            // other on one thread.
            worker_threads: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4)),
            metrics_addr: None,
            decode_limits: DecodeLimits::default(),
            auth_limits: AuthLimits::default(),
            sessions_per_identity: SessionsPerIdentity::default(),
            connection_log_interval: Duration::from_secs(10),
            link_conditioner: None,
            handshakes_per_tick: 8,
        }
    }

    /// Puts a link conditioner in front of every connection's outbound link
    /// (see [`link_conditioner`](Self::link_conditioner)).
    pub fn with_link_conditioner(
        mut self,
        conditioner: crate::io::conditioner::LinkConditionerConfig,
    ) -> Self {
        self.link_conditioner = Some(conditioner);
        self
    }

    /// Most client hellos processed per tick (see
    /// [`handshakes_per_tick`](Self::handshakes_per_tick)).
    #[must_use]
    pub fn with_handshakes_per_tick(mut self, handshakes_per_tick: usize) -> Self {
        self.handshakes_per_tick = handshakes_per_tick;
        self
    }
}
