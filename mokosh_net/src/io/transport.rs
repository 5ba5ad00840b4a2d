//! Transport backends the plugins can be given instead of the built-in
//! WebSocket and memory transports (`ServerTransport::Custom`,
//! `ConnectTarget::Custom`): a datagram transport, an engine-side socket, a
//! test double. A backend reports its connections through an endpoint built
//! with [`ServerEndpoint::new`] / [`ClientEndpoint::new`] and implements
//! [`Link`](super::Link) for each connection.

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
