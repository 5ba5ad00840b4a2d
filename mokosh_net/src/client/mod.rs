//! `MokoshClientPlugin`: a Bevy app connects to a Mokosh server.
//!
//! The [`MokoshClient`] resource connects and disconnects; [`ConnectionState`]
//! says where it is (use the [`client_connected`] run condition), and the
//! [`ClientState`] Bevy state follows it (for `OnEnter(ClientState::Connected)`);
//! typed messages arrive as [`FromServer<M>`] and leave as [`ToServer<M>`].
//! The game's simulation runs in `FixedUpdate`, between receive and send; see
//! [`crate::tick`] for the network tick and why rollback can re-run
//! `FixedUpdate` alone.
//!
//! | set | schedule | what it does |
//! |-----|----------|--------------|
//! | [`MokoshTickSystems::Advance`](crate::tick::MokoshTickSystems::Advance) | `FixedFirst` | [`NetworkTick`](crate::tick::NetworkTick) + 1 |
//! | [`MokoshClientSystems::Receive`] | `FixedPreUpdate` | drains the IO channel; opens and verifies packets; connection state |
//! | [`MokoshClientSystems::Dispatch`] | `FixedPreUpdate` | typed [`FromServer<M>`] messages |
//! | (your game) | `FixedUpdate` | reads `FromServer<M>`, writes [`ToServer<M>`] |
//! | [`MokoshClientSystems::Send`] | `FixedPostUpdate` | serializes and seals `ToServer<M>` |
//! | [`MokoshClientSystems::Flush`] | `FixedPostUpdate` | keepalive and timeouts; frames → IO layer |
//!
//! ```no_run
//! use bevy_app::{App, FixedUpdate, ScheduleRunnerPlugin};
//! use bevy_ecs::prelude::*;
//! use bevy_state::prelude::OnEnter;
//! use mokosh_net::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, GameMessage)]
//! #[route_id = 100]
//! struct Chat { text: String }
//!
//! fn hello(mut outbox: MessageWriter<ToServer<Chat>>) {
//!     outbox.write(ToServer::new(Chat { text: "hello".into() }));
//! }
//!
//! fn connect(mut client: ResMut<MokoshClient>) {
//!     client.connect(ConnectTarget::WebSocket("ws://127.0.0.1:8080".into()));
//! }
//!
//! # let server_key = KeyPair::generate().unwrap().public();
//! App::new()
//!     .add_plugins(ScheduleRunnerPlugin::run_loop(std::time::Duration::from_millis(5)))
//!     .add_plugins(MokoshClientPlugin::new(ClientPluginConfig::new(server_key, "player-1")))
//!     .add_game_message::<Chat>()
//!     .add_systems(bevy_app::Startup, connect)
//!     .add_systems(OnEnter(ClientState::Connected), hello)
//!     .run();
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_app::{App, FixedPostUpdate, FixedPreUpdate, Plugin};
use bevy_ecs::prelude::*;

use crate::io::{self, ClientEndpoint, CloseCause, ConnectionLink, IoEvent, LinkError};
use crate::protocol::{
    ClientConfig, DisconnectReason, Initiator, PacketError, ReceivedMessage, RttEstimate, Session,
    SessionEvent, SessionStats,
};
pub use crate::shared::{ClientId, MokoshAppExt};
use crate::shared::{ProtocolRegistry, Side, ensure_runtime, finish_side, now};
use state::set_connection_state;

mod config;
mod messages;
mod state;

pub use config::*;
pub(crate) use messages::add_message_systems;
pub use messages::{FromServer, ToServer};
pub use state::*;

/// Adds the client. See the module docs.
pub struct MokoshClientPlugin {
    config: ClientPluginConfig,
}

impl MokoshClientPlugin {
    /// A plugin with `config`.
    pub fn new(config: ClientPluginConfig) -> Self {
        MokoshClientPlugin { config }
    }
}

/// The client's system sets, in data-flow order.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MokoshClientSystems {
    /// `FixedPreUpdate`: IO channel → session → connection state.
    Receive,
    /// `FixedPreUpdate`, after `Receive`: typed `FromServer<M>`.
    Dispatch,
    /// `FixedPostUpdate`: `ToServer<M>` → sealed frames.
    Send,
    /// `FixedPostUpdate`, after `Send`: timers, frames → IO layer.
    Flush,
}

impl Plugin for MokoshClientPlugin {
    fn build(&self, app: &mut App) {
        crate::tick::ensure_tick_plugin(app);
        let runtime = ensure_runtime(app, self.config.worker_threads);
        app.init_resource::<ProtocolRegistry>();
        app.insert_resource(MokoshClient {
            config: self.config.clone(),
            request: None,
            endpoint: None,
            closing: false,
            link: None,
            conditioner: None,
            session: None,
            inbox: HashMap::new(),
            rtt: RttEstimate::default(),
            stats: SessionStats::default(),
            runtime,
        });
        app.insert_resource(ConnectionState::Disconnected { last: None });
        app.add_message::<ConnectedToServer>()
            .add_message::<DisconnectedFromServer>();
        app.configure_sets(
            FixedPreUpdate,
            (MokoshClientSystems::Receive, MokoshClientSystems::Dispatch).chain(),
        );
        app.configure_sets(
            FixedPostUpdate,
            (MokoshClientSystems::Send, MokoshClientSystems::Flush).chain(),
        );
        app.add_systems(
            FixedPreUpdate,
            (stamp_tick_system, receive_system)
                .chain()
                .in_set(MokoshClientSystems::Receive),
        );
        app.add_systems(
            FixedPostUpdate,
            stamp_tick_system.before(MokoshClientSystems::Send),
        );
        app.add_systems(
            FixedPostUpdate,
            flush_system.in_set(MokoshClientSystems::Flush),
        );
        app.add_systems(
            FixedPreUpdate,
            flush_system.after(MokoshClientSystems::Dispatch),
        );
    }

    /// Adds `TimePlugin` and `StatesPlugin` unless the app already has them
    /// (from `MinimalPlugins` or `DefaultPlugins`, added before or after this
    /// plugin), the [`ClientState`] state, and the typed systems of every
    /// registered message.
    fn finish(&self, app: &mut App) {
        if !app.is_plugin_added::<bevy_time::TimePlugin>() {
            app.add_plugins(bevy_time::TimePlugin);
        }
        if !app.is_plugin_added::<bevy_state::app::StatesPlugin>() {
            app.add_plugins(bevy_state::app::StatesPlugin);
        }
        bevy_state::app::AppExtStates::init_state::<ClientState>(app);
        finish_side(app, Side::Client);
    }
}

/// Where to connect.
#[derive(Clone)]
pub enum ConnectTarget {
    /// A WebSocket URL such as `ws://127.0.0.1:8080` (`wss://` needs the
    /// `tls` feature and then trusts the Mozilla root store).
    WebSocket(String),
    /// A WebSocket URL (`wss://`) with this TLS client config, e.g. trusting a
    /// self-signed certificate (`tls` feature); see
    /// [`io::websocket::connect_with_tls`] and [`io::tls::client_config_from_pem`].
    #[cfg(feature = "tls")]
    WebSocketTls {
        /// The URL, such as `wss://game.example:8443`.
        url: String,
        /// The roots to trust and other TLS settings.
        tls: std::sync::Arc<rustls::ClientConfig>,
    },
    /// An in-memory server in the same process.
    Memory(io::memory::MemoryListener),
    /// Any other backend (see [`io::transport`]).
    Custom(Arc<dyn io::transport::ClientBackend>),
}

impl ConnectTarget {
    /// The backend that implements this target (every variant is one:
    /// [`WebSocketClient`](io::transport::WebSocketClient), a
    /// [`MemoryListener`](io::memory::MemoryListener), ...).
    pub fn backend(&self) -> Arc<dyn io::transport::ClientBackend> {
        match self {
            ConnectTarget::WebSocket(url) => Arc::new(io::transport::WebSocketClient(url.clone())),
            #[cfg(feature = "tls")]
            ConnectTarget::WebSocketTls { url, tls } => {
                Arc::new(io::transport::WebSocketTlsClient {
                    url: url.clone(),
                    tls: tls.clone(),
                })
            }
            ConnectTarget::Memory(listener) => Arc::new(listener.clone()),
            ConnectTarget::Custom(backend) => backend.clone(),
        }
    }
}

impl core::fmt::Debug for ConnectTarget {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConnectTarget::WebSocket(url) => write!(f, "WebSocket({url})"),
            #[cfg(feature = "tls")]
            ConnectTarget::WebSocketTls { url, .. } => write!(f, "WebSocketTls({url})"),
            ConnectTarget::Memory(_) => f.write_str("Memory"),
            ConnectTarget::Custom(_) => f.write_str("Custom"),
        }
    }
}

enum Request {
    Connect(ConnectTarget),
    Disconnect,
}

/// The client connection. Call [`connect`](Self::connect) /
/// [`disconnect`](Self::disconnect); read [`rtt`](Self::rtt).
#[derive(Resource)]
pub struct MokoshClient {
    config: ClientPluginConfig,
    request: Option<Request>,
    endpoint: Option<ClientEndpoint>,
    /// The session ended; the endpoint is kept until its transport closes.
    closing: bool,
    link: Option<ConnectionLink>,
    /// The conditioner `link` goes through, polled each flush until the
    /// transport closes.
    conditioner: Option<crate::io::conditioner::ConditionedLink>,
    session: Option<Session>,
    inbox: HashMap<u16, Vec<ReceivedMessage>>,
    rtt: RttEstimate,
    stats: SessionStats,
    /// Keeps the IO runtime alive until this resource is gone (declared last:
    /// dropped after the endpoint).
    runtime: Arc<crate::io::IoRuntime>,
}

impl MokoshClient {
    /// Connects (on the next fixed tick), replacing any current connection.
    pub fn connect(&mut self, target: ConnectTarget) {
        self.request = Some(Request::Connect(target));
    }

    /// Disconnects (on the next fixed tick) with [`DisconnectReason::Requested`].
    pub fn disconnect(&mut self) {
        self.request = Some(Request::Disconnect);
    }

    /// The latest round-trip estimate (zero samples before the first pong).
    pub fn rtt(&self) -> RttEstimate {
        self.rtt
    }

    /// Traffic counters of the current (or last) session.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The session, while one exists (for advanced use and diagnostics).
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &ClientPluginConfig {
        &self.config
    }

    /// IO counters of the current connection.
    pub fn io_counters(&self) -> Option<crate::io::IoCountersSnapshot> {
        self.endpoint.as_ref().map(|e| e.counters().snapshot())
    }
}

/// How long dropping the client (app exit) waits for its last frames to leave.
const GOODBYE_TIMEOUT: Duration = Duration::from_millis(500);

impl Drop for MokoshClient {
    /// A clean exit: a live session says goodbye (`Requested`), and the
    /// transport gets a moment (at most half a second) to send it.
    fn drop(&mut self) {
        if let (Some(mut session), Some(link)) = (self.session.take(), self.link.take()) {
            session.disconnect(DisconnectReason::Requested, "client shut down");
            while let Some(frame) = session.poll_transmit() {
                if link.send(frame).is_err() {
                    break;
                }
            }
            link.close();
            drop(link);
            self.closing = true;
        }
        // A conditioner nobody will poll again hands over what it still
        // holds (the goodbye) and closes the transport.
        self.conditioner = None;
        if !self.closing {
            return;
        }
        if let Some(endpoint) = &self.endpoint {
            let deadline = Instant::now() + GOODBYE_TIMEOUT;
            while let Ok(event) = endpoint.events().recv_deadline(deadline) {
                if matches!(event, IoEvent::Closed { .. }) {
                    break;
                }
            }
        }
    }
}

fn receive_system(world: &mut World) {
    let now = now(world);
    world.resource_scope::<MokoshClient, _>(|world, mut client| {
        match client.request.take() {
            Some(Request::Connect(target)) => start_connect(world, &mut client, target),
            Some(Request::Disconnect) => {
                if let Some(session) = client.session.as_mut() {
                    session.disconnect(DisconnectReason::Requested, "");
                }
            }
            None => {}
        }
        let events: Vec<IoEvent> = match &client.endpoint {
            Some(endpoint) => endpoint.events().try_iter().collect(),
            None => Vec::new(),
        };
        for event in events {
            match event {
                IoEvent::Opened { link, .. } => {
                    let registry = world.resource_mut::<ProtocolRegistry>().frozen();
                    let config = ClientConfig {
                        security: client.config.security.clone(),
                        auth_token: client.config.auth_token.clone(),
                        registry,
                        session: client.config.session.clone(),
                    };
                    match Session::client(&config, now) {
                        Ok(session) => {
                            client.session = Some(session);
                            let link = match client.config.link_conditioner.clone() {
                                Some(config) => {
                                    let conditioned = crate::io::conditioner::ConditionedLink::new(
                                        link, config, true,
                                    );
                                    conditioned.poll(now);
                                    let link = conditioned.link().clone();
                                    client.conditioner = Some(conditioned);
                                    link
                                }
                                None => link,
                            };
                            client.link = Some(link);
                        }
                        Err(error) => {
                            tracing::error!(%error, "cannot start the handshake");
                            link.close();
                        }
                    }
                }
                IoEvent::Frame { frame, .. } => {
                    if let Some(link) = &client.link {
                        link.frame_consumed();
                    }
                    if let Some(session) = client.session.as_mut()
                        && let Err(error) = session.handle_packet(now, &frame)
                        && error != PacketError::Closed
                    {
                        tracing::error!(%error, "packet from the server rejected");
                    }
                }
                IoEvent::Closed { cause, .. } => {
                    let closing = client.closing;
                    match client.session.as_mut() {
                        Some(session) => session.disconnect(
                            DisconnectReason::ConnectionLost,
                            format!("transport closed: {cause:?}"),
                        ),
                        // We ended the session and were waiting for the transport
                        // to finish sending our last frames and close.
                        None if closing => {
                            client.closing = false;
                            client.endpoint = None;
                            client.conditioner = None;
                        }
                        None => {
                            // The transport never came up.
                            let reason = match cause {
                                CloseCause::HandshakeTimeout => DisconnectReason::HandshakeTimeout,
                                _ => DisconnectReason::ConnectionLost,
                            };
                            finish(
                                world,
                                &mut client,
                                reason,
                                Initiator::Local,
                                format!("{cause:?}"),
                            );
                        }
                    }
                }
            }
            process_events(world, &mut client);
        }
        process_events(world, &mut client);
    });
}

/// Sets the session's outgoing tick to the current
/// [`NetworkTick`](crate::tick::NetworkTick): every packet sealed during a step
/// carries that step's tick (stamped again before `Send` for a session that
/// came up during the step).
fn stamp_tick_system(tick: Res<crate::tick::NetworkTick>, mut client: ResMut<MokoshClient>) {
    if let Some(session) = client.session.as_mut() {
        session.set_tick(tick.get());
    }
}

fn start_connect(world: &mut World, client: &mut MokoshClient, target: ConnectTarget) {
    if let Some(session) = client.session.as_mut() {
        session.disconnect(DisconnectReason::Requested, "reconnecting");
        process_events(world, client);
    }
    let endpoint = target
        .backend()
        .connect(&client.runtime, client.config.io.clone());
    // A previous connection still closing is dropped here (its last frames
    // may be cut short by the reconnect).
    client.endpoint = Some(endpoint);
    client.closing = false;
    set_connection_state(world, ConnectionState::Connecting);
}

fn process_events(world: &mut World, client: &mut MokoshClient) {
    loop {
        let Some(event) = client.session.as_mut().and_then(Session::poll_event) else {
            return;
        };
        match event {
            SessionEvent::Connected { client_id, .. } => {
                let client_id = ClientId(client_id);
                tracing::info!(%client_id, "connected to the server");
                set_connection_state(world, ConnectionState::Connected { client_id });
                world.write_message(ConnectedToServer { client_id });
            }
            SessionEvent::Message(message) => {
                client
                    .inbox
                    .entry(message.route_id)
                    .or_default()
                    .push(message);
            }
            SessionEvent::AuthRequested { .. } => {}
            SessionEvent::Disconnected {
                reason,
                initiator,
                detail,
            } => {
                finish(world, client, reason, initiator, detail);
                return;
            }
        }
    }
}

/// Ends the connection: last frames out, transport closed, state updated.
fn finish(
    world: &mut World,
    client: &mut MokoshClient,
    reason: DisconnectReason,
    initiator: Initiator,
    detail: String,
) {
    if let Some(mut session) = client.session.take() {
        client.stats = session.stats();
        if let Some(link) = &client.link {
            while let Some(frame) = session.poll_transmit() {
                if link.send(frame).is_err() {
                    break;
                }
            }
        }
    }
    // Keep the endpoint until the transport reports it closed, so the last
    // frames (our DISCONNECT) are sent before the socket goes away.
    match client.link.take() {
        Some(link) => {
            link.close();
            client.closing = true;
        }
        None => client.endpoint = None,
    }
    client.inbox.clear();
    tracing::info!(%reason, ?initiator, %detail, "disconnected from the server");
    set_connection_state(world, ConnectionState::Disconnected { last: Some(reason) });
    world.write_message(DisconnectedFromServer {
        reason,
        initiator,
        detail,
    });
}

fn flush_system(world: &mut World) {
    let now: Instant = now(world);
    world.resource_scope::<MokoshClient, _>(|world, mut client| {
        let client = &mut *client;
        if let Some(conditioner) = &client.conditioner {
            // Stamps this tick's sends with `now`, releases what is due.
            conditioner.poll(now);
        }
        if let Some(session) = client.session.as_mut() {
            session.handle_timeout(now);
            if let Some(link) = &client.link {
                while let Some(frame) = session.poll_transmit() {
                    match link.send(frame) {
                        Ok(()) => {}
                        Err(LinkError::Full) => {
                            session.disconnect(
                                DisconnectReason::SlowConsumer,
                                "the server is not reading",
                            );
                            while session.poll_transmit().is_some() {}
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            client.rtt = session.rtt();
            client.stats = session.stats();
        }
        if let Some(conditioner) = &client.conditioner {
            conditioner.poll(now);
        }
        process_events(world, client);
        client.inbox.clear();
    });
}
