//! `MokoshServerPlugin`: a headless Bevy app becomes an authoritative server.
//!
//! Every connection is an entity with [`ClientConnection`], [`NetSession`]
//! (the protocol state: keys, replay guard, rate limiter), [`ConnectionRtt`]
//! and [`TrafficStats`]; once the authentication provider accepts it, it also
//! gets [`AuthenticatedIdentity`], a [`ClientId`] and the [`Connected`] marker
//! (observe `On<Add<Connected>>` / `On<Remove<Connected>>`). A closed
//! connection loses `Connected` at once and its entity is despawned at the end
//! of that tick's `Flush`, so game code can still read the entity of a
//! [`FromClient`] or [`ClientDisconnected`] during the tick's `FixedUpdate`.
//! Connections are visited in connection order and `FromClient<M>` arrives
//! in client order (then arrival order per client): never hash order.
//!
//! Authentication runs as tasks on the IO runtime, never on the game thread,
//! bounded by [`AuthLimits`]; [`SessionsPerIdentity`] caps the sessions of one
//! identity. Use the [`server_running`] run condition for systems that need
//! the transport bound.
//!
//! The systems follow the data flow, one set per arrow:
//!
//! | set | schedule | what it does |
//! |-----|----------|--------------|
//! | [`MokoshTickSystems::Advance`](crate::tick::MokoshTickSystems::Advance) | `FixedFirst` | [`NetworkTick`](crate::tick::NetworkTick) + 1 |
//! | [`MokoshServerSystems::Receive`] | `FixedPreUpdate` | drains the IO channel; verifies, decrypts and replay-checks each packet ([`Session::open_frame`](crate::protocol::Session::open_frame)); runs the handshake; starts authentication on the IO runtime, applies its answers and refuses the requests past [`AuthLimits::timeout`]; emits [`ClientConnected`] / [`ClientDisconnected`] |
//! | [`MokoshServerSystems::RateLimit`] | `FixedPreUpdate` | charges each packet to its client's message and byte budgets ([`Session::admit`](crate::protocol::Session::admit)); drops the excess, disconnects persistent offenders |
//! | [`MokoshServerSystems::Deliver`] | `FixedPreUpdate` | keepalive, disconnect notices, application messages ([`Session::deliver`](crate::protocol::Session::deliver)) |
//! | [`MokoshServerSystems::Dispatch`] | `FixedPreUpdate` | decodes messages into typed [`FromClient<M>`] |
//! | (your game) | `FixedUpdate` | the simulation: reads `FromClient<M>`, writes [`ToClients<M>`]; nothing of Mokosh's runs here, so rollback can re-run it alone ([`crate::tick`]) |
//! | [`MokoshServerSystems::Send`] | `FixedPostUpdate` | serializes `ToClients<M>` and seals it per session |
//! | [`MokoshServerSystems::Flush`] | `FixedPostUpdate` | keepalive and timeouts; hands frames to the IO layer; drops slow consumers; then despawns the connections closed this tick and logs the periodic connection summary (the frame flush, not the despawn, also runs at the end of `FixedPreUpdate`, so handshake answers and pongs leave in the tick that caused them) |
//!
//! Start-up never panics: a failure to bind is a [`ServerStartError`], sent as
//! [`ServerStartFailed`] and kept in [`MokoshServer::start_error`];
//! [`server_running`] is the run condition for "listening".
//!
//! ```no_run
//! use bevy_app::{App, ScheduleRunnerPlugin};
//! use mokosh_net::prelude::*;
//! use mokosh_net::server::{FromClient, MokoshServerPlugin, ServerPluginConfig, ToClients};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, GameMessage)]
//! #[route_id = 100]
//! struct Chat { text: String }
//!
//! fn echo(mut inbox: bevy_ecs::prelude::MessageReader<FromClient<Chat>>, mut outbox: bevy_ecs::prelude::MessageWriter<ToClients<Chat>>) {
//!     for chat in inbox.read() {
//!         outbox.write(ToClients::all(chat.message.clone()));
//!     }
//! }
//!
//! let keypair = KeyPair::load_or_generate("keys/server.key").unwrap();
//! App::new()
//!     .add_plugins(ScheduleRunnerPlugin::run_loop(std::time::Duration::from_millis(5)))
//!     .add_plugins(MokoshServerPlugin::new(ServerPluginConfig::websocket(
//!         "127.0.0.1:8080".parse().unwrap(),
//!         keypair,
//!     )))
//!     .add_game_message::<Chat>()
//!     .add_systems(bevy_app::FixedUpdate, echo)
//!     .run();
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_app::{App, FixedPostUpdate, FixedPreUpdate, Plugin, Startup};
use bevy_ecs::prelude::*;

use crate::io::{self, ConnectionId, IoEvent, ServerEndpoint};
#[cfg(feature = "metrics-http")]
use crate::metrics::MetricsServer;
use crate::metrics::{Metrics, MetricsCollector};
use crate::protocol::{DisconnectReason, ServerConfig, ServerSecurity};
pub use crate::shared::{ClientId, MokoshAppExt};
use crate::shared::{ProtocolRegistry, Side, ensure_runtime, finish_side};
use authentication::Authentications;
use lifecycle::{ConnectionChurn, despawn_closed_system, process_session_events};
use messages::ServerInbox;
use receive::{deliver_system, rate_limit_system, receive_system};
use send::flush_system;

mod authentication;
mod components;
mod config;
mod counters;
mod lifecycle;
mod messages;
mod receive;
mod send;

pub use components::*;
pub use config::*;
pub use counters::{ServerCounters, ServerCountersSnapshot};
pub use messages::*;
pub use receive::rejection_for;

/// Adds the server: IO listener, sessions, authentication, typed messages,
/// metrics. See the module docs for the system sets.
pub struct MokoshServerPlugin {
    config: ServerPluginConfig,
}

impl MokoshServerPlugin {
    /// A plugin with `config`.
    pub fn new(config: ServerPluginConfig) -> Self {
        MokoshServerPlugin { config }
    }
}

/// The server's system sets, in data-flow order (see the module docs for
/// their schedules).
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MokoshServerSystems {
    /// `FixedPreUpdate`: IO channel → authenticated, replay-checked packets
    /// (and the handshake, authentication and connection messages).
    Receive,
    /// `FixedPreUpdate`, after `Receive`: per-client message and byte budgets.
    RateLimit,
    /// `FixedPreUpdate`, after `RateLimit`: keepalive, disconnects, and
    /// application messages for the dispatchers.
    Deliver,
    /// `FixedPreUpdate`, after `Receive`: typed `FromClient<M>` messages.
    Dispatch,
    /// `FixedPostUpdate`: `ToClients<M>` → sealed frames in each session.
    Send,
    /// `FixedPostUpdate`, after `Send`: timers, frames → IO layer.
    Flush,
}

impl Plugin for MokoshServerPlugin {
    fn build(&self, app: &mut App) {
        crate::tick::ensure_tick_plugin(app);
        let runtime = ensure_runtime(app, self.config.worker_threads);
        app.init_resource::<ProtocolRegistry>();
        let auth = self
            .config
            .auth
            .clone()
            .unwrap_or_else(crate::auth::default_provider);
        app.insert_resource(MokoshServer {
            config: self.config.clone(),
            authentications: Authentications::new(
                auth,
                self.config.auth_limits.clone(),
                self.config.io.ipv6_prefix_len,
            ),
            endpoint: None,
            protocol: None,
            connections: BTreeMap::new(),
            closing: HashSet::new(),
            clients: BTreeMap::new(),
            identities: HashMap::new(),
            despawn: Vec::new(),
            deferred_hellos: std::collections::VecDeque::new(),
            next_client_id: 1,
            churn: ConnectionChurn::default(),
            metrics: Arc::new(Metrics::default()),
            counters: Arc::new(ServerCounters::default()),
            #[cfg(feature = "metrics-http")]
            metrics_server: None,
            start_error: None,
            runtime,
        });
        app.init_resource::<ServerInbox>();
        app.add_message::<ServerStartFailed>();
        app.add_message::<ClientConnected>()
            .add_message::<ClientDisconnected>()
            .add_message::<ConnectionRejected>()
            .add_message::<KickClient>();
        app.configure_sets(
            FixedPreUpdate,
            (
                MokoshServerSystems::Receive,
                MokoshServerSystems::RateLimit,
                MokoshServerSystems::Deliver,
                MokoshServerSystems::Dispatch,
            )
                .chain(),
        );
        app.configure_sets(
            FixedPostUpdate,
            (MokoshServerSystems::Send, MokoshServerSystems::Flush).chain(),
        );
        app.add_systems(Startup, start_server);
        app.add_systems(bevy_app::Last, shutdown_on_exit);
        app.add_systems(
            FixedPreUpdate,
            (
                receive_system.in_set(MokoshServerSystems::Receive),
                rate_limit_system.in_set(MokoshServerSystems::RateLimit),
                deliver_system.in_set(MokoshServerSystems::Deliver),
            ),
        );
        app.add_systems(
            FixedPostUpdate,
            (flush_system, despawn_closed_system)
                .chain()
                .in_set(MokoshServerSystems::Flush),
        );
        // Every packet sealed during a step carries that step's tick: stamped
        // before anything is sealed in FixedPreUpdate (pongs, disconnects) and
        // again before `Send` (sessions established during this step).
        app.add_systems(
            FixedPreUpdate,
            stamp_tick_system.before(MokoshServerSystems::Receive),
        );
        app.add_systems(
            FixedPostUpdate,
            stamp_tick_system.before(MokoshServerSystems::Send),
        );
        // Handshake answers and pongs leave in the tick that caused them.
        app.add_systems(
            FixedPreUpdate,
            flush_system.after(MokoshServerSystems::Dispatch),
        );
    }

    /// Adds `TimePlugin` unless the app already has it (from `MinimalPlugins`
    /// or `DefaultPlugins`, added before or after this plugin), and the typed
    /// systems of every registered message.
    fn finish(&self, app: &mut App) {
        if !app.is_plugin_added::<bevy_time::TimePlugin>() {
            app.add_plugins(bevy_time::TimePlugin);
        }
        finish_side(app, Side::Server);
    }
}

/// The server's state, shared by its systems. Read it for the listening
/// address, metrics and connection counts.
#[derive(Resource)]
pub struct MokoshServer {
    config: ServerPluginConfig,
    authentications: Authentications,
    endpoint: Option<ServerEndpoint>,
    protocol: Option<Arc<ServerConfig>>,
    /// Ordered maps: iteration order (and so the order of `FromClient<M>`)
    /// is connection order, never hash order.
    connections: BTreeMap<ConnectionId, Entity>,
    /// Connections we closed whose transport has not reported `Closed` yet.
    closing: HashSet<ConnectionId>,
    clients: BTreeMap<ClientId, Entity>,
    /// Each identity's sessions, oldest first.
    identities: HashMap<String, Vec<Entity>>,
    /// Entities of connections closed this tick, despawned at the end of the
    /// `Flush` set (after game code read their last messages).
    despawn: Vec<Entity>,
    /// Client hellos held for a later tick by
    /// [`ServerPluginConfig::handshakes_per_tick`], in arrival order (at most
    /// one per connection; their inbound credit is returned when processed).
    deferred_hellos: std::collections::VecDeque<(ConnectionId, Vec<u8>)>,
    next_client_id: u64,
    churn: ConnectionChurn,
    metrics: Arc<Metrics>,
    counters: Arc<ServerCounters>,
    #[cfg(feature = "metrics-http")]
    metrics_server: Option<MetricsServer>,
    start_error: Option<Arc<ServerStartError>>,
    /// Keeps the IO runtime alive until this resource is gone (declared last:
    /// dropped after the endpoint).
    runtime: Arc<crate::io::IoRuntime>,
}

impl MokoshServer {
    /// The bound address (WebSocket transport, after start-up).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.as_ref().and_then(ServerEndpoint::local_addr)
    }

    /// `ws://ADDR` for the bound WebSocket address (after start-up).
    pub fn url(&self) -> Option<String> {
        self.local_addr().map(|addr| format!("ws://{addr}"))
    }

    /// The metrics endpoint's address, if it is serving.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "metrics-http")]
        return self.metrics_server.as_ref().map(MetricsServer::local_addr);
        #[cfg(not(feature = "metrics-http"))]
        None
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The server plugin's own counters (authentication work, per-identity
    /// cap, sends over a client's size limit, timeouts the peer reported).
    pub fn counters(&self) -> ServerCountersSnapshot {
        self.counters.snapshot()
    }

    /// Everything [`render_metrics`] serves on `/metrics`, now: for an
    /// application that serves the metrics from its own HTTP stack. The IO
    /// families are there once the transport is bound.
    pub fn render_metrics(&self) -> String {
        let io = self
            .endpoint
            .as_ref()
            .map(|endpoint| Arc::clone(endpoint.counters()))
            .unwrap_or_default();
        render_metrics(&self.metrics, &io, &self.counters)
    }

    /// Authentication requests in flight (running or waiting for a slot).
    pub fn pending_authentications(&self) -> usize {
        self.authentications.pending()
    }

    /// Blocks until no authentication task can make progress on its own
    /// (each has answered, or waits on something outside it such as a timer,
    /// a socket or a provider slot), for at most `timeout`; returns whether
    /// that happened. Answers are applied at the next `Receive` set.
    ///
    /// For harnesses that step apps on virtual time (see
    /// `mokosh_net::testing::TestNetwork::step`), so that a provider that answers
    /// at once is applied in the next tick however busy the machine is. Never
    /// call it from a game loop.
    pub fn wait_for_authentications(&self, timeout: Duration) -> bool {
        self.authentications.settle(timeout)
    }

    /// The IO layer's counters (accepts, refusals, frames, bytes).
    pub fn io_counters(&self) -> Option<crate::io::IoCountersSnapshot> {
        self.endpoint.as_ref().map(|e| e.counters().snapshot())
    }

    /// Connections (handshaking or connected).
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Authenticated, connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// The entity of a connected client.
    pub fn client_entity(&self, client: ClientId) -> Option<Entity> {
        self.clients.get(&client).copied()
    }

    /// Why start-up failed, if it did (also sent once as [`ServerStartFailed`]).
    pub fn start_error(&self) -> Option<&ServerStartError> {
        self.start_error.as_deref()
    }

    /// Whether the server is listening (start-up ran and binding succeeded).
    pub fn is_running(&self) -> bool {
        self.endpoint.is_some()
    }

    /// The server's public key (clients pin it), unless it runs in plaintext.
    pub fn public_key(&self) -> Option<crate::protocol::PublicKey> {
        match &self.config.security {
            ServerSecurity::Noise(keypair) => Some(keypair.public()),
            ServerSecurity::Plaintext => None,
        }
    }
}

/// Why the server could not start. Start-up never panics: the error is kept
/// in [`MokoshServer::start_error`] and sent as a [`ServerStartFailed`]
/// message, so the app can log it, retry or exit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerStartError {
    /// The listening address could not be bound (in use, no permission, ...).
    /// The server does not run.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A transport without an address of its own (a custom backend,
    /// [`ServerTransport::Custom`]) could not start listening. The server does
    /// not run.
    #[error("the transport cannot listen: {source}")]
    Transport {
        /// The backend's error.
        #[source]
        source: std::io::Error,
    },
    /// The metrics address could not be bound (or the `metrics-http` feature
    /// is off). The game server runs; only the metrics endpoint is missing.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Sent (in `Startup`) when the server could not start; see
/// [`ServerStartError`].
#[derive(Message, Debug, Clone)]
pub struct ServerStartFailed {
    /// What failed.
    pub error: Arc<ServerStartError>,
}

fn start_server(
    mut server: ResMut<MokoshServer>,
    mut protocol: ResMut<ProtocolRegistry>,
    mut commands: Commands,
    mut failures: MessageWriter<ServerStartFailed>,
) {
    let mut fail = |server: &mut MokoshServer, error: ServerStartError| {
        tracing::error!(%error, "mokosh server start-up failed");
        let error = Arc::new(error);
        server.start_error = Some(error.clone());
        failures.write(ServerStartFailed { error });
    };
    let registry = protocol.frozen();
    server.protocol = Some(Arc::new(ServerConfig {
        security: server.config.security.clone(),
        registry,
        session: server.config.session.clone(),
    }));
    // Every transport is a backend; the memory one also hands out its
    // listener for clients in this process.
    let transport = server.config.transport.clone();
    let memory = Arc::new(io::transport::MemoryServer::new());
    let backend: Arc<dyn io::transport::ServerBackend> = match &transport {
        ServerTransport::Memory => memory.clone(),
        other => other.backend(),
    };
    let endpoint = match backend.listen(&server.runtime, server.config.io.clone()) {
        Ok(endpoint) => endpoint,
        Err(source) => {
            let error = match transport {
                ServerTransport::WebSocket(addr) => ServerStartError::Bind { addr, source },
                #[cfg(feature = "tls")]
                ServerTransport::WebSocketTls { addr, .. } => {
                    ServerStartError::Bind { addr, source }
                }
                ServerTransport::Memory | ServerTransport::Custom(_) => {
                    ServerStartError::Transport { source }
                }
            };
            return fail(&mut server, error);
        }
    };
    if let Some(listener) = memory.listener() {
        commands.insert_resource(MemoryListenerHandle(listener));
    }
    if let Some(addr) = endpoint.local_addr() {
        tracing::info!(%addr, "mokosh server listening");
    }
    let io_counters = endpoint.counters().clone();
    server.endpoint = Some(endpoint);
    #[cfg(not(feature = "metrics-http"))]
    if let Some(addr) = server.config.metrics_addr {
        let _ = io_counters;
        let source = std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the `metrics-http` feature is off",
        );
        fail(&mut server, ServerStartError::Metrics { addr, source });
    }
    #[cfg(feature = "metrics-http")]
    if let Some(addr) = server.config.metrics_addr {
        let (metrics, counters) = (server.metrics.clone(), server.counters.clone());
        let render = Arc::new(move || render_metrics(&metrics, &io_counters, &counters));
        match crate::metrics::serve_metrics(server.runtime.handle(), addr, render) {
            Ok(metrics_server) => {
                tracing::info!(addr = %metrics_server.local_addr(), "metrics served at /metrics");
                server.metrics_server = Some(metrics_server);
            }
            Err(source) => fail(&mut server, ServerStartError::Metrics { addr, source }),
        }
    }
}

/// Sets every session's outgoing tick to the current [`NetworkTick`](crate::tick::NetworkTick).
fn stamp_tick_system(tick: Res<crate::tick::NetworkTick>, mut sessions: Query<&mut NetSession>) {
    for mut session in &mut sessions {
        session.0.set_tick(tick.get());
    }
}

/// Prometheus (OpenMetrics) text for the server's counters plus the IO
/// layer's (see [`MetricsCollector`] for the names) and the server plugin's
/// own ([`ServerCountersSnapshot::families`]).
pub fn render_metrics(
    metrics: &Arc<Metrics>,
    io: &Arc<crate::io::IoCounters>,
    server: &Arc<ServerCounters>,
) -> String {
    let mut registry = MetricsCollector::new(Arc::clone(metrics))
        .with_io(Arc::clone(io))
        .into_registry();
    registry.register_collector(Box::new(counters::ServerCountersCollector(Arc::clone(
        server,
    ))));
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail, and the collectors have no failure of
    // their own.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Run condition: the server is listening (after its `Startup` system bound
/// the transport), like `client_connected` on the client. False before
/// start-up and after a failed one ([`ServerStartError`]).
pub fn server_running(server: Option<Res<MokoshServer>>) -> bool {
    server.is_some_and(|server| server.endpoint.is_some())
}

/// When the app is exiting, tells every client (`ServerShutdown`) and closes
/// the connections; dropping [`MokoshServer`] then waits briefly for the
/// transports to send those last frames.
fn shutdown_on_exit(world: &mut World) {
    let exiting = world
        .get_resource::<Messages<bevy_app::AppExit>>()
        .is_some_and(|exits| !exits.is_empty());
    if !exiting {
        return;
    }
    world.resource_scope::<MokoshServer, _>(|world, mut server| {
        let entities: Vec<Entity> = server.connections.values().copied().collect();
        for entity in entities {
            if let Some(mut session) = world.get_mut::<NetSession>(entity) {
                session
                    .0
                    .disconnect(DisconnectReason::ServerShutdown, "server shutting down");
            }
            process_session_events(world, &mut server, entity);
        }
    });
}

/// How long dropping the server waits for closing connections to flush.
const GOODBYE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl Drop for MokoshServer {
    fn drop(&mut self) {
        let Some(endpoint) = &self.endpoint else {
            return;
        };
        let deadline = Instant::now() + GOODBYE_TIMEOUT;
        while !self.closing.is_empty() {
            match endpoint.events().recv_deadline(deadline) {
                Ok(IoEvent::Closed { id, .. }) => {
                    self.closing.remove(&id);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}
