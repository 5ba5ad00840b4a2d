//! Components on connection entities and the Bevy messages the server emits and reads.

use std::net::SocketAddr;

use bevy_ecs::prelude::*;

use crate::auth::Identity;
use crate::io::{self, ConnectionId, ConnectionLink};
use crate::protocol::{
    DisconnectReason, Initiator, OpenedPacket, RttEstimate, Session, SessionStats,
};
use crate::shared::ClientId;

/// The in-memory listener of a [`ServerTransport::Memory`](super::ServerTransport::Memory) server: clients
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
    pub(super) link: ConnectionLink,
    /// Consecutive ticks whose flush left the backlog over the byte budget.
    pub(super) over_budget_ticks: u32,
    /// The link conditioner `link` goes through, polled each flush.
    pub(super) conditioner: Option<crate::io::conditioner::ConditionedLink>,
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

/// Marks a client that is authenticated and connected: inserted (with its
/// [`ClientId`]) when the handshake completes, removed when the connection
/// closes, with the entity still alive. Observe `On<Add<Connected>>` and
/// `On<Remove<Connected>>` for the lifecycle; filter with `With<Connected>`
/// to skip connections that are still handshaking or already closing.
///
/// The entity itself is despawned at the end of the `Flush` set
/// (`FixedPostUpdate`) of the tick it closed in, so the entity of a
/// [`FromClient`](super::FromClient) or [`ClientDisconnected`] read during that
/// tick's `FixedUpdate` is still there.
#[derive(Component, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connected;

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
    /// The connection entity. Still alive, without [`Connected`], until the
    /// end of the `Flush` set (`FixedPostUpdate`) of the tick this message was
    /// written in; despawned after that.
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
