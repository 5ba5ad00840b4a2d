//! `MokoshClientPlugin`: a Bevy app connects to a Mokosh server.
//!
//! The [`MokoshClient`] resource connects and disconnects; [`ConnectionState`]
//! says where it is (use the [`client_connected`] run condition); typed
//! messages arrive as [`FromServer<M>`] and leave as [`ToServer<M>`].
//!
//! | set | schedule | what it does |
//! |-----|----------|--------------|
//! | [`MokoshClientSystems::Receive`] | `FixedPreUpdate` | drains the IO channel; opens and verifies packets; connection state |
//! | [`MokoshClientSystems::Dispatch`] | `FixedPreUpdate` | typed [`FromServer<M>`] messages |
//! | (your game) | `FixedUpdate` | reads `FromServer<M>`, writes [`ToServer<M>`] |
//! | [`MokoshClientSystems::Send`] | `FixedPostUpdate` | serializes and seals `ToServer<M>` |
//! | [`MokoshClientSystems::Flush`] | `FixedPostUpdate` | keepalive and timeouts; frames → IO layer |

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_app::{App, FixedPostUpdate, FixedPreUpdate, Plugin};
use bevy_ecs::prelude::*;

use crate::io::{self, ClientEndpoint, CloseCause, ConnectionLink, IoConfig, IoEvent, LinkError};
use crate::protocol::{
    ClientConfig, ClientSecurity, DecodeLimits, DisconnectReason, GameMessage, Initiator,
    PacketError, ReceivedMessage, RttEstimate, Session, SessionConfig, SessionEvent, SessionStats,
};
pub use crate::shared::{ClientId, MokoshAppExt};
use crate::shared::{ProtocolRegistry, ensure_runtime, io_config_for, now};

/// Everything the client plugin needs.
#[derive(Debug, Clone)]
pub struct ClientPluginConfig {
    /// The pinned server key (or explicit plaintext).
    pub security: ClientSecurity,
    /// Credentials for the server's authentication provider.
    pub auth_token: Vec<u8>,
    /// Protocol settings: codec and compression preferences, limits.
    pub session: SessionConfig,
    /// IO settings.
    pub io: IoConfig,
    /// Worker threads of the IO runtime.
    pub worker_threads: usize,
    /// Limits applied when decoding typed messages.
    pub decode_limits: DecodeLimits,
    /// A link conditioner in front of the outbound link (latency, jitter,
    /// bandwidth), driven by the app's clock each tick; `None` (default)
    /// sends directly.
    pub link_conditioner: Option<crate::io::conditioner::LinkConditionerConfig>,
}

impl ClientPluginConfig {
    /// A client that pins `server_key` and presents `auth_token`.
    ///
    /// The rate limits apply to what the *server* sends; they default to
    /// 2,000 messages/s and 8 MiB/s (far above a 60 Hz snapshot stream plus
    /// events), so only a runaway server trips them.
    pub fn new(server_key: crate::protocol::PublicKey, auth_token: impl Into<Vec<u8>>) -> Self {
        let session = SessionConfig {
            rate_limit: crate::protocol::RateLimitConfig {
                messages_per_sec: 2_000,
                message_burst: 4_000,
                bytes_per_sec: 8 * 1024 * 1024,
                byte_burst: 16 * 1024 * 1024,
                violation_burst: 200,
            },
            ..SessionConfig::default()
        };
        let io = io_config_for(&session);
        ClientPluginConfig {
            security: ClientSecurity::Pinned(server_key),
            auth_token: auth_token.into(),
            session,
            io,
            worker_threads: 1,
            decode_limits: DecodeLimits::default(),
            link_conditioner: None,
        }
    }

    /// Puts a link conditioner in front of the outbound link (see
    /// [`link_conditioner`](Self::link_conditioner)).
    pub fn with_link_conditioner(
        mut self,
        conditioner: crate::io::conditioner::LinkConditionerConfig,
    ) -> Self {
        self.link_conditioner = Some(conditioner);
        self
    }
}

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
        if !app.is_plugin_added::<bevy_time::TimePlugin>() {
            app.add_plugins(bevy_time::TimePlugin);
        }
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
            receive_system.in_set(MokoshClientSystems::Receive),
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

/// Where the client is.
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not connected; `last` says why the previous connection ended.
    Disconnected {
        /// Why the last connection ended, if there was one.
        last: Option<DisconnectReason>,
    },
    /// Transport or handshake in progress.
    Connecting,
    /// Connected and authenticated.
    Connected {
        /// The id the server assigned.
        client_id: ClientId,
    },
}

/// Run condition: the client is connected.
pub fn client_connected(state: Option<Res<ConnectionState>>) -> bool {
    matches!(state.as_deref(), Some(ConnectionState::Connected { .. }))
}

/// The handshake completed.
#[derive(Message, Debug, Clone, Copy)]
pub struct ConnectedToServer {
    /// The id the server assigned.
    pub client_id: ClientId,
}

/// The connection ended (or never came up).
#[derive(Message, Debug, Clone)]
pub struct DisconnectedFromServer {
    /// Why.
    pub reason: DisconnectReason,
    /// Who ended it.
    pub initiator: Initiator,
    /// Detail text (from the server when it ended the session).
    pub detail: String,
}

/// A typed message from the server.
#[derive(Message, Debug, Clone)]
pub struct FromServer<M: GameMessage> {
    /// The message.
    pub message: M,
    /// The correlation id the server set, if any.
    pub correlation_id: Option<u64>,
}

/// A typed message for the server.
#[derive(Message, Debug, Clone)]
pub struct ToServer<M: GameMessage> {
    /// The message.
    pub message: M,
    /// Correlation id to set (for requests).
    pub correlation_id: Option<u64>,
}

impl<M: GameMessage> ToServer<M> {
    /// A message without a correlation id.
    pub fn new(message: M) -> Self {
        ToServer {
            message,
            correlation_id: None,
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

fn start_connect(world: &mut World, client: &mut MokoshClient, target: ConnectTarget) {
    if let Some(session) = client.session.as_mut() {
        session.disconnect(DisconnectReason::Requested, "reconnecting");
        process_events(world, client);
    }
    let endpoint = match target {
        ConnectTarget::WebSocket(url) => {
            io::websocket::connect(&client.runtime, &url, client.config.io.clone())
        }
        #[cfg(feature = "tls")]
        ConnectTarget::WebSocketTls { url, tls } => {
            io::websocket::connect_with_tls(&client.runtime, &url, client.config.io.clone(), tls)
        }
        ConnectTarget::Memory(listener) => listener.connect(),
        ConnectTarget::Custom(backend) => {
            backend.connect(&client.runtime, client.config.io.clone())
        }
    };
    // A previous connection still closing is dropped here (its last frames
    // may be cut short by the reconnect).
    client.endpoint = Some(endpoint);
    client.closing = false;
    *world.resource_mut::<ConnectionState>() = ConnectionState::Connecting;
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
                *world.resource_mut::<ConnectionState>() = ConnectionState::Connected { client_id };
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
    *world.resource_mut::<ConnectionState>() = ConnectionState::Disconnected { last: Some(reason) };
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

/// Adds `FromServer<M>` / `ToServer<M>` and their systems. Called by
/// [`MokoshAppExt::add_game_message`].
pub(crate) fn add_message_systems<M: GameMessage>(app: &mut App) {
    app.add_message::<FromServer<M>>()
        .add_message::<ToServer<M>>()
        .add_systems(
            FixedPreUpdate,
            dispatch_system::<M>.in_set(MokoshClientSystems::Dispatch),
        )
        .add_systems(
            FixedPostUpdate,
            send_system::<M>.in_set(MokoshClientSystems::Send),
        );
}

fn dispatch_system<M: GameMessage>(
    mut client: ResMut<MokoshClient>,
    mut writer: MessageWriter<FromServer<M>>,
) {
    let Some(pending) = client.inbox.remove(&M::ROUTE_ID) else {
        return;
    };
    for message in pending {
        match message.decode::<M>(&client.config.decode_limits) {
            Ok(decoded) => {
                writer.write(FromServer {
                    message: decoded,
                    correlation_id: message.correlation_id,
                });
            }
            Err(error) => {
                tracing::error!(route = M::ROUTE_ID, %error, "undecodable message from the server");
                if let Some(session) = client.session.as_mut() {
                    session.disconnect(DisconnectReason::ProtocolViolation, "undecodable message");
                }
            }
        }
    }
}

fn send_system<M: GameMessage>(
    mut reader: MessageReader<ToServer<M>>,
    mut client: ResMut<MokoshClient>,
) {
    for outgoing in reader.read() {
        let Some(session) = client.session.as_mut().filter(|s| s.is_connected()) else {
            tracing::debug!(route = M::ROUTE_ID, "not connected: message dropped");
            continue;
        };
        if let Err(error) =
            session.send_message_correlated(&outgoing.message, outgoing.correlation_id)
        {
            tracing::warn!(route = M::ROUTE_ID, %error, "message not sent");
        }
    }
}
