//! The server plugin's configuration.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::AuthProvider;
use crate::io::IoConfig;
use crate::protocol::{DecodeLimits, KeyPair, ServerSecurity, SessionConfig};
use crate::shared::io_config_for;

/// Where the server listens.
#[derive(Debug, Clone)]
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
}

/// Everything the server plugin needs.
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
    /// Worker threads of the IO runtime.
    pub worker_threads: usize,
    /// Serve Prometheus text on `http://ADDR/metrics`.
    pub metrics_addr: Option<SocketAddr>,
    /// Limits applied when decoding typed messages.
    pub decode_limits: DecodeLimits,
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

    fn with_transport(transport: ServerTransport, keypair: KeyPair) -> Self {
        let session = SessionConfig::default();
        let io = io_config_for(&session);
        ServerPluginConfig {
            transport,
            security: ServerSecurity::Noise(keypair),
            session,
            io,
            auth: None,
            worker_threads: 1,
            metrics_addr: None,
            decode_limits: DecodeLimits::default(),
        }
    }
}
