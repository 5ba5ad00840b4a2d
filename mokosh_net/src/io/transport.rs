//! Transport backends: what the plugins listen and connect with. The built-in
//! transports are backends ([`WebSocketServer`], [`WebSocketClient`],
//! [`MemoryServer`], a [`MemoryListener`](super::memory::MemoryListener), and
//! the TLS variants with the `tls` feature), and so is anything else handed to
//! `ServerTransport::Custom` / `ConnectTarget::Custom`: a datagram transport,
//! an engine-side socket, a test double. A backend reports its connections
//! through an endpoint built with [`ServerEndpoint::new`] /
//! [`ClientEndpoint::new`] and implements [`Link`](super::Link) for each
//! connection.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{
    ClientEndpoint, EndpointGuard, IoConfig, IoCounters, IoEvent, IoRuntime, ServerEndpoint,
};

/// A server-side transport: starts listening and hands back the endpoint
/// whose event channel the server plugin drains.
pub trait ServerBackend: Send + Sync + 'static {
    /// Starts accepting connections. `runtime` is the plugins' tokio runtime
    /// (a backend may ignore it); `config` carries the caps it should honour.
    fn listen(&self, runtime: &IoRuntime, config: IoConfig) -> std::io::Result<ServerEndpoint>;
}

/// A client-side transport: opens one connection and hands back its endpoint
/// (a failed attempt is reported as a lone [`IoEvent::Closed`] on it).
pub trait ClientBackend: Send + Sync + 'static {
    /// Starts connecting.
    fn connect(&self, runtime: &IoRuntime, config: IoConfig) -> ClientEndpoint;
}

impl ServerEndpoint {
    /// An endpoint for an out-of-crate backend: the ECS reads `events`;
    /// `guard` is dropped with the endpoint (drop it to stop the backend).
    pub fn new(
        events: crossbeam_channel::Receiver<IoEvent>,
        local_addr: Option<SocketAddr>,
        counters: Arc<IoCounters>,
        guard: Box<dyn Any + Send + Sync>,
    ) -> Self {
        ServerEndpoint {
            events,
            local_addr,
            counters,
            _guard: EndpointGuard::Custom(guard),
        }
    }
}

impl ClientEndpoint {
    /// An endpoint for an out-of-crate backend (see [`ServerEndpoint::new`]).
    pub fn new(
        events: crossbeam_channel::Receiver<IoEvent>,
        counters: Arc<IoCounters>,
        guard: Box<dyn Any + Send + Sync>,
    ) -> Self {
        ClientEndpoint {
            events,
            counters,
            _guard: EndpointGuard::Custom(guard),
        }
    }
}

/// The WebSocket server transport as a [`ServerBackend`] (what
/// `ServerTransport::WebSocket` uses): `ws://` on this address.
#[derive(Debug, Clone, Copy)]
pub struct WebSocketServer(pub SocketAddr);

impl ServerBackend for WebSocketServer {
    fn listen(&self, runtime: &IoRuntime, config: IoConfig) -> std::io::Result<ServerEndpoint> {
        super::websocket::listen(runtime, self.0, config)
    }
}

/// The WebSocket server transport over TLS as a [`ServerBackend`]
/// (`wss://`, `tls` feature).
#[cfg(feature = "tls")]
#[derive(Debug, Clone)]
pub struct WebSocketTlsServer {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The certificate chain, key and TLS settings.
    pub tls: Arc<rustls::ServerConfig>,
}

#[cfg(feature = "tls")]
impl ServerBackend for WebSocketTlsServer {
    fn listen(&self, runtime: &IoRuntime, config: IoConfig) -> std::io::Result<ServerEndpoint> {
        super::websocket::listen_tls(runtime, self.addr, config, self.tls.clone())
    }
}

/// The WebSocket client transport as a [`ClientBackend`]: connects to a
/// `ws://` (or, with the `tls` feature, `wss://`) URL.
#[derive(Debug, Clone)]
pub struct WebSocketClient(pub String);

impl ClientBackend for WebSocketClient {
    fn connect(&self, runtime: &IoRuntime, config: IoConfig) -> ClientEndpoint {
        super::websocket::connect(runtime, &self.0, config)
    }
}

/// The WebSocket client transport with its own TLS settings as a
/// [`ClientBackend`] (`tls` feature).
#[cfg(feature = "tls")]
#[derive(Debug, Clone)]
pub struct WebSocketTlsClient {
    /// The URL, such as `wss://game.example:8443`.
    pub url: String,
    /// The roots to trust and other TLS settings.
    pub tls: Arc<rustls::ClientConfig>,
}

#[cfg(feature = "tls")]
impl ClientBackend for WebSocketTlsClient {
    fn connect(&self, runtime: &IoRuntime, config: IoConfig) -> ClientEndpoint {
        super::websocket::connect_with_tls(runtime, &self.url, config, self.tls.clone())
    }
}

/// The in-memory server transport as a [`ServerBackend`]. After
/// [`listen`](ServerBackend::listen), [`listener`](Self::listener) is what
/// clients connect through (one listener per backend value).
#[derive(Default)]
pub struct MemoryServer {
    listener: std::sync::OnceLock<super::memory::MemoryListener>,
}

impl std::fmt::Debug for MemoryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryServer")
            .field("listening", &self.listener.get().is_some())
            .finish()
    }
}

impl MemoryServer {
    /// A backend that has not listened yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The listener, once [`listen`](ServerBackend::listen) ran.
    pub fn listener(&self) -> Option<super::memory::MemoryListener> {
        self.listener.get().cloned()
    }
}

impl ServerBackend for MemoryServer {
    fn listen(&self, _runtime: &IoRuntime, config: IoConfig) -> std::io::Result<ServerEndpoint> {
        let (listener, endpoint) = super::memory::listen(config);
        self.listener.set(listener).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "this MemoryServer is already listening",
            )
        })?;
        Ok(endpoint)
    }
}

/// A memory listener is the in-memory client transport: each
/// [`connect`](ClientBackend::connect) opens one connection to its server.
impl ClientBackend for super::memory::MemoryListener {
    fn connect(&self, _runtime: &IoRuntime, _config: IoConfig) -> ClientEndpoint {
        super::memory::MemoryListener::connect(self)
    }
}
