//! `MokoshServerPlugin`: a headless Bevy app becomes an authoritative server.
//!
//! Every connection is an entity with [`ClientConnection`], [`NetSession`]
//! (the protocol state: keys, replay guard, rate limiter), [`ConnectionRtt`]
//! and [`TrafficStats`]; once the authentication provider accepts it, it also
//! gets [`AuthenticatedIdentity`] and a [`ClientId`].
//!
//! The systems follow the data flow, one set per arrow:
//!
//! | set | schedule | what it does |
//! |-----|----------|--------------|
//! | [`MokoshServerSystems::Receive`] | `FixedPreUpdate` | drains the IO channel; verifies, decrypts and replay-checks each packet ([`Session::open_packet`]); runs the handshake and authentication; emits [`ClientConnected`] / [`ClientDisconnected`] |
//! | [`MokoshServerSystems::RateLimit`] | `FixedPreUpdate` | charges each packet to its client's message and byte budgets ([`Session::admit`]); drops the excess, disconnects persistent offenders |
//! | [`MokoshServerSystems::Deliver`] | `FixedPreUpdate` | keepalive, disconnect notices, application messages ([`Session::deliver`]) |
//! | [`MokoshServerSystems::Dispatch`] | `FixedPreUpdate` | decodes messages into typed [`FromClient<M>`] |
//! | (your game) | `FixedUpdate` | reads `FromClient<M>`, writes [`ToClients<M>`] |
//! | [`MokoshServerSystems::Send`] | `FixedPostUpdate` | serializes `ToClients<M>` and seals it per session |
//! | [`MokoshServerSystems::Flush`] | `FixedPostUpdate` | keepalive and timeouts; hands frames to the IO layer; drops slow consumers (the same flush also runs at the end of `FixedPreUpdate`, so handshake answers and pongs leave in the tick that caused them) |
//!
//! ```no_run
//! use bevy_app::{App, ScheduleRunnerPlugin};
//! use mokosh_net::prelude::*;
//! use mokosh_net::server::{FromClient, MokoshServerPlugin, ServerPluginConfig, SendTarget, ToClients};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, GameMessage)]
//! #[route_id = 100]
//! struct Chat { text: String }
//!
//! fn echo(mut inbox: bevy_ecs::prelude::MessageReader<FromClient<Chat>>, mut outbox: bevy_ecs::prelude::MessageWriter<ToClients<Chat>>) {
//!     for chat in inbox.read() {
//!         outbox.write(ToClients::new(SendTarget::All, chat.message.clone()));
//!     }
//! }
//!
//! let keypair = KeyPair::generate().unwrap();
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

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bevy_app::{App, FixedPostUpdate, FixedPreUpdate, Plugin, Startup};
use bevy_ecs::prelude::*;
use crossbeam_channel::{Receiver, Sender};

use crate::auth::{AuthError, AuthProvider, AuthRequest, Identity};
use crate::io::{
    self, CloseCause, ConnectionId, ConnectionLink, IoConfig, IoEvent, ServerEndpoint,
};
#[cfg(feature = "metrics-http")]
use crate::metrics::MetricsServer;
use crate::metrics::{Metrics, MetricsCollector, Rejection};
use crate::protocol::{
    DecodeLimits, DisconnectReason, GameMessage, Initiator, KeyPair, OpenedPacket, PacketError,
    ReceivedMessage, RttEstimate, ServerConfig, ServerSecurity, Session, SessionConfig,
    SessionEvent, SessionStats,
};
pub use crate::shared::{ClientId, MokoshAppExt};
use crate::shared::{ProtocolRegistry, ensure_runtime, io_config_for, now, now_from};
use bevy_time::{Real, Time};

/// Where the server listens.
#[derive(Debug, Clone)]
pub enum ServerTransport {
    /// WebSocket (binary messages) on this address.
    WebSocket(SocketAddr),
    /// WebSocket over TLS (`wss://`) on `addr` (`tls` feature); see
    /// [`io::websocket::listen_tls`] and [`io::tls::server_config_from_pem`].
    #[cfg(feature = "tls")]
    WebSocketTls {
        /// Where to listen.
        addr: SocketAddr,
        /// The certificate chain, key and TLS settings.
        tls: Arc<rustls::ServerConfig>,
    },
    /// The in-memory transport (tests, benchmarks, single-process games); the
    /// listener is available as the [`MemoryListenerHandle`] resource.
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
    /// Serve Prometheus text on `http://ADDR/metrics` (needs the
    /// `metrics-http` feature; without it, setting this logs an error and
    /// serves nothing).
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
        if !app.is_plugin_added::<bevy_time::TimePlugin>() {
            app.add_plugins(bevy_time::TimePlugin);
        }
        let runtime = ensure_runtime(app, self.config.worker_threads);
        app.init_resource::<ProtocolRegistry>();
        let (auth_sender, auth_results) = crossbeam_channel::unbounded();
        let auth = self
            .config
            .auth
            .clone()
            .unwrap_or_else(crate::auth::default_provider);
        app.insert_resource(MokoshServer {
            config: self.config.clone(),
            auth,
            endpoint: None,
            protocol: None,
            connections: HashMap::new(),
            closing: HashSet::new(),
            clients: HashMap::new(),
            next_client_id: 1,
            auth_sender,
            auth_results,
            metrics: Arc::new(Metrics::default()),
            #[cfg(feature = "metrics-http")]
            metrics_server: None,
            runtime,
        });
        app.init_resource::<ServerInbox>();
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
            flush_system.in_set(MokoshServerSystems::Flush),
        );
        // Handshake answers and pongs leave in the tick that caused them.
        app.add_systems(
            FixedPreUpdate,
            flush_system.after(MokoshServerSystems::Dispatch),
        );
        // Message systems are added by `add_game_message`, which needs the plugin
        // to be there first.
        let registered: Vec<u16> = app
            .world()
            .resource::<ProtocolRegistry>()
            .registry()
            .iter()
            .map(|info| info.route_id)
            .collect();
        assert!(
            registered.is_empty(),
            "add MokoshServerPlugin before calling add_game_message (routes {registered:?} were registered first)"
        );
    }
}

/// The server's state, shared by its systems. Read it for the listening
/// address, metrics and connection counts.
#[derive(Resource)]
pub struct MokoshServer {
    config: ServerPluginConfig,
    auth: Arc<dyn AuthProvider>,
    endpoint: Option<ServerEndpoint>,
    protocol: Option<Arc<ServerConfig>>,
    connections: HashMap<ConnectionId, Entity>,
    /// Connections we closed whose transport has not reported `Closed` yet.
    closing: HashSet<ConnectionId>,
    clients: HashMap<ClientId, Entity>,
    next_client_id: u64,
    auth_sender: Sender<AuthOutcome>,
    auth_results: Receiver<AuthOutcome>,
    metrics: Arc<Metrics>,
    #[cfg(feature = "metrics-http")]
    metrics_server: Option<MetricsServer>,
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

    /// The server's public key (clients pin it), unless it runs in plaintext.
    pub fn public_key(&self) -> Option<crate::protocol::PublicKey> {
        match &self.config.security {
            ServerSecurity::Noise(keypair) => Some(keypair.public()),
            ServerSecurity::Plaintext => None,
        }
    }
}

/// The in-memory listener of a [`ServerTransport::Memory`] server: clients
/// connect through it.
#[derive(Resource, Clone)]
pub struct MemoryListenerHandle(pub io::memory::MemoryListener);

/// One connection's transport side.
#[derive(Component)]
pub struct ClientConnection {
    /// The IO layer's id for this connection.
    pub connection: ConnectionId,
    /// The peer's address, when the transport has one.
    pub remote: Option<SocketAddr>,
    link: ConnectionLink,
}

/// The connection's protocol state: keys, replay guard, rate limiter, timers.
#[derive(Component)]
pub struct NetSession(pub Session);

/// Packets of this connection that authenticated this tick (set
/// `Receive`), waiting for the rate limiter (`RateLimit`) and delivery
/// (`Deliver`). Empty between ticks.
#[derive(Component, Debug, Default)]
pub struct AuthenticatedPackets(pub Vec<OpenedPacket>);

/// Smoothed round-trip time and jitter, updated every tick.
#[derive(Component, Debug, Clone, Copy, Default)]
pub struct ConnectionRtt(pub RttEstimate);

/// Packets, bytes, messages and rate-limit drops of this connection.
#[derive(Component, Debug, Clone, Copy, Default)]
pub struct TrafficStats(pub SessionStats);

/// Who the authentication provider said this client is.
#[derive(Component, Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedIdentity(pub Identity);

/// A client completed the handshake and authentication.
#[derive(Message, Debug, Clone)]
pub struct ClientConnected {
    /// The connection entity.
    pub entity: Entity,
    /// The client's id.
    pub client_id: ClientId,
    /// Who it is.
    pub identity: Identity,
}

/// A connected client is gone. (Connections that never authenticated produce
/// [`ConnectionRejected`] instead.)
#[derive(Message, Debug, Clone)]
pub struct ClientDisconnected {
    /// The connection entity (already despawned).
    pub entity: Entity,
    /// The client's id.
    pub client_id: ClientId,
    /// Why.
    pub reason: DisconnectReason,
    /// Who ended it.
    pub initiator: Initiator,
}

/// A connection ended before it was authenticated (bad handshake, refused
/// token, timeout, ...).
#[derive(Message, Debug, Clone)]
pub struct ConnectionRejected {
    /// The peer's address, when known.
    pub remote: Option<SocketAddr>,
    /// Why.
    pub reason: DisconnectReason,
}

/// Game code asks the server to disconnect a client.
#[derive(Message, Debug, Clone)]
pub struct KickClient {
    /// Whom.
    pub client_id: ClientId,
    /// The reason sent to the client (usually [`DisconnectReason::Kicked`]).
    pub reason: DisconnectReason,
    /// Human-readable detail sent along (at most 256 bytes are sent).
    pub detail: String,
}

impl KickClient {
    /// Kicks `client_id` with [`DisconnectReason::Kicked`] and `detail`.
    pub fn new(client_id: ClientId, detail: impl Into<String>) -> Self {
        KickClient {
            client_id,
            reason: DisconnectReason::Kicked,
            detail: detail.into(),
        }
    }
}

/// A typed message from a client.
#[derive(Message, Debug, Clone)]
pub struct FromClient<M: GameMessage> {
    /// The sender's entity.
    pub entity: Entity,
    /// The sender's id.
    pub client_id: ClientId,
    /// The message.
    pub message: M,
    /// The correlation id the client set, if any (echo it in a reply).
    pub correlation_id: Option<u64>,
}

/// Which clients a [`ToClients`] message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendTarget {
    /// One client.
    Client(ClientId),
    /// Every connected client.
    All,
    /// Every connected client but one.
    AllExcept(ClientId),
    /// These clients.
    List(Vec<ClientId>),
}

/// A typed message for clients. Serialized once per codec in use.
#[derive(Message, Debug, Clone)]
pub struct ToClients<M: GameMessage> {
    /// Recipients.
    pub target: SendTarget,
    /// The message.
    pub message: M,
    /// Correlation id to set (e.g. the request's, for a reply).
    pub correlation_id: Option<u64>,
}

impl<M: GameMessage> ToClients<M> {
    /// A message for `target` without a correlation id.
    pub fn new(target: SendTarget, message: M) -> Self {
        ToClients {
            target,
            message,
            correlation_id: None,
        }
    }
}

struct Pending {
    entity: Entity,
    client_id: ClientId,
    message: ReceivedMessage,
}

/// Messages received this tick, by route, waiting for their typed dispatcher.
#[derive(Resource, Default)]
struct ServerInbox {
    by_route: HashMap<u16, Vec<Pending>>,
}

struct AuthOutcome {
    entity: Entity,
    connection: ConnectionId,
    result: Result<Identity, AuthError>,
}

fn start_server(
    mut server: ResMut<MokoshServer>,
    mut protocol: ResMut<ProtocolRegistry>,
    mut commands: Commands,
) {
    let registry = protocol.frozen();
    server.protocol = Some(Arc::new(ServerConfig {
        security: server.config.security.clone(),
        registry,
        session: server.config.session.clone(),
    }));
    let endpoint = match server.config.transport.clone() {
        ServerTransport::WebSocket(addr) => {
            match io::websocket::listen(&server.runtime, addr, server.config.io.clone()) {
                Ok(endpoint) => endpoint,
                Err(error) => panic!("cannot listen on {addr}: {error}"),
            }
        }
        #[cfg(feature = "tls")]
        ServerTransport::WebSocketTls { addr, tls } => {
            match io::websocket::listen_tls(&server.runtime, addr, server.config.io.clone(), tls) {
                Ok(endpoint) => endpoint,
                Err(error) => panic!("cannot listen on {addr}: {error}"),
            }
        }
        ServerTransport::Memory => {
            let (listener, endpoint) = io::memory::listen(server.config.io.clone());
            commands.insert_resource(MemoryListenerHandle(listener));
            endpoint
        }
    };
    if let Some(addr) = endpoint.local_addr() {
        tracing::info!(%addr, "mokosh server listening");
    }
    let io_counters = endpoint.counters().clone();
    server.endpoint = Some(endpoint);
    #[cfg(not(feature = "metrics-http"))]
    if let Some(addr) = server.config.metrics_addr {
        let _ = io_counters;
        tracing::error!(%addr, "metrics_addr is set but the `metrics-http` feature is off");
    }
    #[cfg(feature = "metrics-http")]
    if let Some(addr) = server.config.metrics_addr {
        let render = MetricsCollector::new(server.metrics.clone())
            .with_io(io_counters)
            .renderer();
        match crate::metrics::serve_metrics(server.runtime.handle(), addr, render) {
            Ok(metrics_server) => {
                tracing::info!(addr = %metrics_server.local_addr(), "metrics served at /metrics");
                server.metrics_server = Some(metrics_server);
            }
            Err(error) => panic!("cannot serve metrics on {addr}: {error}"),
        }
    }
}

/// Prometheus text for the server's counters plus the IO layer's (see
/// [`MetricsCollector`] for the names).
pub fn render_metrics(metrics: &Arc<Metrics>, io: &Arc<crate::io::IoCounters>) -> String {
    MetricsCollector::new(Arc::clone(metrics))
        .with_io(Arc::clone(io))
        .render()
}

/// Which rejection counter a packet error bumps.
pub fn rejection_for(error: &PacketError) -> Option<Rejection> {
    Rejection::for_packet_error(error)
}

fn receive_system(world: &mut World) {
    let now = now(world);
    world.resource_scope::<MokoshServer, _>(|world, mut server| {
        let events: Vec<IoEvent> = match &server.endpoint {
            Some(endpoint) => endpoint.events().try_iter().collect(),
            None => return,
        };
        for event in events {
            let _span =
                tracing::debug_span!("mokosh_connection", connection = event.connection().0)
                    .entered();
            match event {
                IoEvent::Opened { id, remote, link } => {
                    open_connection(world, &mut server, now, id, remote, link);
                }
                IoEvent::Frame { id, frame } => {
                    let Some(&entity) = server.connections.get(&id) else {
                        continue;
                    };
                    server.metrics.bytes_in(frame.len() as u64);
                    // Authenticate and replay-check; rate limiting and delivery
                    // are the next two system sets.
                    let result = match world.get_mut::<NetSession>(entity) {
                        Some(mut session) => session.0.open_packet(now, &frame),
                        None => continue,
                    };
                    if let Some(connection) = world.get::<ClientConnection>(entity) {
                        connection.link.frame_consumed();
                    }
                    match result {
                        Ok(Some(packet)) => {
                            if let Some(mut packets) = world.get_mut::<AuthenticatedPackets>(entity)
                            {
                                packets.0.push(packet);
                            }
                        }
                        Ok(None) => {}
                        Err(error) => count_rejection(&server, id, &error),
                    }
                    process_session_events(world, &mut server, entity);
                }
                IoEvent::Closed { id, cause } => {
                    server.closing.remove(&id);
                    let Some(&entity) = server.connections.get(&id) else {
                        continue;
                    };
                    match cause {
                        CloseCause::Oversized => server.metrics.reject(Rejection::Oversized),
                        CloseCause::ProtocolError(_) => server.metrics.reject(Rejection::Malformed),
                        _ => {}
                    }
                    // What arrived before the close (often the peer's own
                    // DISCONNECT) still counts: budget and deliver it first.
                    let pending = world
                        .get_mut::<AuthenticatedPackets>(entity)
                        .map(|mut packets| std::mem::take(&mut packets.0))
                        .unwrap_or_default();
                    for packet in pending {
                        let Some(mut session) = world.get_mut::<NetSession>(entity) else {
                            break;
                        };
                        let result = session
                            .0
                            .admit(now, &packet)
                            .and_then(|()| session.0.deliver(now, packet));
                        if let Err(error) = result {
                            count_rejection(&server, id, &error);
                        }
                    }
                    if let Some(mut session) = world.get_mut::<NetSession>(entity) {
                        // The transport went away under a live session.
                        session.0.disconnect(
                            DisconnectReason::ConnectionLost,
                            format!("transport closed: {cause:?}"),
                        );
                    }
                    process_session_events(world, &mut server, entity);
                }
            }
        }
        let outcomes: Vec<AuthOutcome> = server.auth_results.try_iter().collect();
        for outcome in outcomes {
            apply_auth(world, &mut server, now, outcome);
        }
    });
    kick_requested(world);
}

/// Counts a rejected packet; logs at debug so hostile input cannot flood logs.
fn count_rejection(server: &MokoshServer, connection: ConnectionId, error: &PacketError) {
    tracing::debug!(connection = connection.0, %error, "packet rejected");
    if let Some(rejection) = rejection_for(error) {
        server.metrics.reject(rejection);
    }
}

/// `RateLimit` set: charges every authenticated packet to its sender's
/// message and byte budgets; packets over budget are dropped here.
fn rate_limit_system(
    server: Res<MokoshServer>,
    time: Option<Res<Time<Real>>>,
    mut connections: Query<(
        &ClientConnection,
        &mut NetSession,
        &mut AuthenticatedPackets,
    )>,
) {
    let now = now_from(time.as_deref());
    for (connection, mut session, mut packets) in &mut connections {
        packets
            .0
            .retain(|packet| match session.0.admit(now, packet) {
                Ok(()) => true,
                Err(error) => {
                    count_rejection(&server, connection.connection, &error);
                    false
                }
            });
    }
}

/// `Deliver` set: acts on admitted packets (keepalive, disconnects) and turns
/// application messages into inbox entries for the typed dispatchers.
fn deliver_system(world: &mut World) {
    let now = now(world);
    world.resource_scope::<MokoshServer, _>(|world, mut server| {
        let entities: Vec<(ConnectionId, Entity)> = server
            .connections
            .iter()
            .map(|(id, entity)| (*id, *entity))
            .collect();
        for (id, entity) in entities {
            let packets = match world.get_mut::<AuthenticatedPackets>(entity) {
                Some(mut packets) if !packets.0.is_empty() => std::mem::take(&mut packets.0),
                _ => continue,
            };
            for packet in packets {
                let Some(mut session) = world.get_mut::<NetSession>(entity) else {
                    break;
                };
                if let Err(error) = session.0.deliver(now, packet) {
                    count_rejection(&server, id, &error);
                }
            }
            process_session_events(world, &mut server, entity);
        }
    });
}

fn kick_requested(world: &mut World) {
    let kicks: Vec<KickClient> = world
        .resource_mut::<Messages<KickClient>>()
        .drain()
        .collect();
    if kicks.is_empty() {
        return;
    }
    world.resource_scope::<MokoshServer, _>(|world, mut server| {
        for kick in kicks {
            if let Some(&entity) = server.clients.get(&kick.client_id) {
                if let Some(mut session) = world.get_mut::<NetSession>(entity) {
                    session.0.disconnect(kick.reason, kick.detail);
                }
                process_session_events(world, &mut server, entity);
            }
        }
    });
}

fn open_connection(
    world: &mut World,
    server: &mut MokoshServer,
    now: Instant,
    id: ConnectionId,
    remote: Option<SocketAddr>,
    link: ConnectionLink,
) {
    let Some(protocol) = server.protocol.clone() else {
        link.close();
        return;
    };
    let client_id = server.next_client_id;
    server.next_client_id += 1;
    let session = Session::server(&protocol, client_id, now);
    let entity = world
        .spawn((
            ClientConnection {
                connection: id,
                remote,
                link,
            },
            NetSession(session),
            AuthenticatedPackets::default(),
            ConnectionRtt::default(),
            TrafficStats::default(),
        ))
        .id();
    server.connections.insert(id, entity);
    server.metrics.connection_opened();
    tracing::debug!(connection = id.0, ?remote, client_id, "connection opened");
}

/// Drains a session's events into Bevy messages, auth requests and cleanup.
fn process_session_events(world: &mut World, server: &mut MokoshServer, entity: Entity) {
    while let Some(event) = world
        .get_mut::<NetSession>(entity)
        .and_then(|mut session| session.0.poll_event())
    {
        match event {
            SessionEvent::AuthRequested { token } => start_auth(world, server, entity, token),
            SessionEvent::Connected { client_id, .. } => {
                let identity = world
                    .get::<AuthenticatedIdentity>(entity)
                    .map(|identity| identity.0.clone());
                let client_id = ClientId(client_id);
                world.entity_mut(entity).insert(client_id);
                server.clients.insert(client_id, entity);
                if let Some(identity) = identity {
                    tracing::info!(%client_id, user = %identity.user_id, "client connected");
                    world.write_message(ClientConnected {
                        entity,
                        client_id,
                        identity,
                    });
                }
            }
            SessionEvent::Message(message) => {
                server.metrics.message_in();
                let client_id = world
                    .get::<ClientId>(entity)
                    .copied()
                    .unwrap_or(ClientId(0));
                world
                    .resource_mut::<ServerInbox>()
                    .by_route
                    .entry(message.route_id)
                    .or_default()
                    .push(Pending {
                        entity,
                        client_id,
                        message,
                    });
            }
            SessionEvent::Disconnected {
                reason, initiator, ..
            } => {
                close_connection(world, server, entity, reason, initiator);
                return;
            }
        }
    }
}

fn start_auth(world: &mut World, server: &mut MokoshServer, entity: Entity, token: Vec<u8>) {
    let Some(connection) = world.get::<ClientConnection>(entity) else {
        return;
    };
    let request = AuthRequest {
        client_id: world
            .get::<NetSession>(entity)
            .map_or(0, |session| session.0.client_id()),
        remote: connection.remote,
        token,
    };
    let connection_id = connection.connection;
    let mut future = server.auth.authenticate(request);
    // Providers that answer at once (tokens, development) are applied in this
    // tick, deterministically; slow ones run on the IO runtime, off the loop.
    let mut context = Context::from_waker(Waker::noop());
    // Poll inside the runtime's context so providers may use tokio timers and
    // IO; the runtime re-polls it with a real waker if it is not ready.
    let runtime = server.runtime.handle().clone();
    let ready = {
        let _context = runtime.enter();
        future.as_mut().poll(&mut context)
    };
    match ready {
        Poll::Ready(result) => {
            let _ = server.auth_sender.send(AuthOutcome {
                entity,
                connection: connection_id,
                result,
            });
        }
        Poll::Pending => {
            let sender = server.auth_sender.clone();
            runtime.spawn(async move {
                let result = future.await;
                // The receiver lives as long as the server; if it is gone the
                // app is shutting down and the result does not matter.
                let _ = sender.send(AuthOutcome {
                    entity,
                    connection: connection_id,
                    result,
                });
            });
        }
    }
}

fn apply_auth(world: &mut World, server: &mut MokoshServer, now: Instant, outcome: AuthOutcome) {
    // The connection may be gone, or its entity reused: check both.
    if server.connections.get(&outcome.connection) != Some(&outcome.entity) {
        return;
    }
    match outcome.result {
        Ok(identity) => {
            world
                .entity_mut(outcome.entity)
                .insert(AuthenticatedIdentity(identity));
            if let Some(mut session) = world.get_mut::<NetSession>(outcome.entity) {
                let _ = session.0.accept(now);
            }
        }
        Err(error) => {
            // Counted once, as the session closes (`Metrics::session_closed`).
            tracing::debug!(connection = outcome.connection.0, %error, "authentication refused");
            if let Some(mut session) = world.get_mut::<NetSession>(outcome.entity) {
                let _ = session
                    .0
                    .reject(DisconnectReason::AuthFailed, error.to_string());
            }
        }
    }
    process_session_events(world, server, outcome.entity);
}

fn close_connection(
    world: &mut World,
    server: &mut MokoshServer,
    entity: Entity,
    reason: DisconnectReason,
    initiator: Initiator,
) {
    let Ok(mut entity_ref) = world.get_entity_mut(entity) else {
        return;
    };
    // Hand over the last frames (DISCONNECT or a refusal), then close.
    let session = entity_ref.take::<NetSession>();
    if let Some(connection) = entity_ref.get::<ClientConnection>() {
        if let Some(mut session) = session {
            while let Some(frame) = session.0.poll_transmit() {
                let len = frame.len() as u64;
                if connection.link.send(frame).is_err() {
                    break;
                }
                server.metrics.bytes_out(len);
            }
        }
        connection.link.close();
        server.connections.remove(&connection.connection);
        server.closing.insert(connection.connection);
    }
    let client_id = entity_ref.get::<ClientId>().copied();
    let remote = entity_ref
        .get::<ClientConnection>()
        .and_then(|connection| connection.remote);
    entity_ref.despawn();
    server.metrics.session_closed(reason, initiator);
    match client_id {
        Some(client_id) => {
            server.clients.remove(&client_id);
            tracing::info!(%client_id, %reason, ?initiator, "client disconnected");
            world.write_message(ClientDisconnected {
                entity,
                client_id,
                reason,
                initiator,
            });
        }
        None => {
            world.write_message(ConnectionRejected { remote, reason });
        }
    }
}

fn flush_system(world: &mut World) {
    let now = now(world);
    world.resource_scope::<MokoshServer, _>(|world, mut server| {
        let entities: Vec<Entity> = server.connections.values().copied().collect();
        for entity in entities {
            let Some(link) = world
                .get::<ClientConnection>(entity)
                .map(|connection| connection.link.clone())
            else {
                continue;
            };
            let Some(mut session) = world.get_mut::<NetSession>(entity) else {
                continue;
            };
            let session = &mut session.0;
            session.handle_timeout(now);
            let mut slow = false;
            while let Some(frame) = session.poll_transmit() {
                let len = frame.len() as u64;
                match link.send(frame) {
                    Ok(()) => server.metrics.bytes_out(len),
                    Err(io::LinkError::Full) => {
                        slow = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if slow {
                // Counted once, as the session closes (`Metrics::session_closed`).
                session.disconnect(DisconnectReason::SlowConsumer, "outbound queue full");
                // Nothing more can be queued for this peer.
                while session.poll_transmit().is_some() {}
            }
            let (rtt, stats) = (session.rtt(), session.stats());
            if let Some(mut component) = world.get_mut::<ConnectionRtt>(entity) {
                component.0 = rtt;
            }
            if let Some(mut component) = world.get_mut::<TrafficStats>(entity) {
                component.0 = stats;
            }
            process_session_events(world, &mut server, entity);
        }
    });
    world.resource_mut::<ServerInbox>().by_route.clear();
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

/// Adds `FromClient<M>` / `ToClients<M>` and their systems. Called by
/// [`MokoshAppExt::add_game_message`].
pub(crate) fn add_message_systems<M: GameMessage>(app: &mut App) {
    app.add_message::<FromClient<M>>()
        .add_message::<ToClients<M>>()
        .add_systems(
            FixedPreUpdate,
            dispatch_system::<M>.in_set(MokoshServerSystems::Dispatch),
        )
        .add_systems(
            FixedPostUpdate,
            send_system::<M>.in_set(MokoshServerSystems::Send),
        );
}

fn dispatch_system<M: GameMessage>(
    mut inbox: ResMut<ServerInbox>,
    server: Res<MokoshServer>,
    mut sessions: Query<&mut NetSession>,
    mut writer: MessageWriter<FromClient<M>>,
) {
    let Some(pending) = inbox.by_route.remove(&M::ROUTE_ID) else {
        return;
    };
    for Pending {
        entity,
        client_id,
        message,
    } in pending
    {
        match message.decode::<M>(&server.config.decode_limits) {
            Ok(decoded) => {
                writer.write(FromClient {
                    entity,
                    client_id,
                    message: decoded,
                    correlation_id: message.correlation_id,
                });
            }
            Err(error) => {
                // An authenticated peer sent bytes that do not decode as the
                // route's type: a broken or hostile client.
                tracing::debug!(%client_id, route = M::ROUTE_ID, %error, "undecodable message");
                server.metrics.reject(Rejection::Malformed);
                if let Ok(mut session) = sessions.get_mut(entity) {
                    session
                        .0
                        .disconnect(DisconnectReason::ProtocolViolation, "undecodable message");
                }
            }
        }
    }
}

fn send_system<M: GameMessage>(
    mut reader: MessageReader<ToClients<M>>,
    server: Res<MokoshServer>,
    mut sessions: Query<(&ClientId, &mut NetSession)>,
) {
    for outgoing in reader.read() {
        // Serialize once per codec in use, not once per client.
        let mut encoded: [Option<Vec<u8>>; 4] = Default::default();
        let mut deliver = |session: &mut Session| {
            let Some(codec) = session.codec() else {
                return;
            };
            let slot = &mut encoded[usize::from(codec.as_u8()) & 3];
            if slot.is_none() {
                let mut bytes = Vec::new();
                if let Err(error) =
                    crate::protocol::codec::encode(codec, &outgoing.message, &mut bytes)
                {
                    tracing::error!(route = M::ROUTE_ID, %error, "cannot serialize message");
                    return;
                }
                *slot = Some(bytes);
            }
            let Some(bytes) = slot.as_deref() else {
                return;
            };
            match session.send(M::ROUTE_ID, codec, bytes, outgoing.correlation_id) {
                Ok(_) => server.metrics.message_out(),
                Err(error) => {
                    tracing::warn!(route = M::ROUTE_ID, %error, "message not sent");
                }
            }
        };
        match &outgoing.target {
            SendTarget::Client(client) => {
                if let Some(&entity) = server.clients.get(client)
                    && let Ok((_, mut session)) = sessions.get_mut(entity)
                {
                    deliver(&mut session.0);
                }
            }
            SendTarget::List(clients) => {
                for client in clients {
                    if let Some(&entity) = server.clients.get(client)
                        && let Ok((_, mut session)) = sessions.get_mut(entity)
                    {
                        deliver(&mut session.0);
                    }
                }
            }
            SendTarget::All | SendTarget::AllExcept(_) => {
                let except = match &outgoing.target {
                    SendTarget::AllExcept(client) => Some(*client),
                    _ => None,
                };
                for (client_id, mut session) in &mut sessions {
                    if Some(*client_id) != except && session.0.is_connected() {
                        deliver(&mut session.0);
                    }
                }
            }
        }
    }
}
