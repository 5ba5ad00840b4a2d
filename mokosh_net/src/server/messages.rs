//! Typed messages: `FromClient<M>` dispatch and `ToClients<M>` sending.

use std::collections::HashMap;

use bevy_app::{App, FixedPostUpdate, FixedPreUpdate};
use bevy_ecs::prelude::*;

use super::components::NetSession;
use super::{MokoshServer, MokoshServerSystems};
use crate::metrics::Rejection;
use crate::protocol::{
    Direction, DisconnectReason, GameMessage, ReceivedMessage, SendError, Session,
};
use crate::shared::ClientId;

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
    /// The client's [`NetworkTick`](crate::tick::NetworkTick) when it sent the
    /// message (its own clock, not the server's), if it stamped one. The
    /// client chooses it freely and nothing checks it (not even that it only
    /// moves forward): bound it before using it, e.g. for lag compensation.
    pub tick: Option<u32>,
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

    /// A message for one client.
    pub fn to(client: ClientId, message: M) -> Self {
        Self::new(SendTarget::Client(client), message)
    }

    /// A message for every connected client.
    pub fn all(message: M) -> Self {
        Self::new(SendTarget::All, message)
    }

    /// A message for every connected client but `client`.
    pub fn all_except(client: ClientId, message: M) -> Self {
        Self::new(SendTarget::AllExcept(client), message)
    }

    /// The same message, answering the request with `correlation_id`.
    #[must_use]
    pub fn with_correlation_id(mut self, correlation_id: u64) -> Self {
        self.correlation_id = Some(correlation_id);
        self
    }
}

pub(super) struct Pending {
    pub(super) entity: Entity,
    pub(super) client_id: ClientId,
    pub(super) message: ReceivedMessage,
}

/// Messages received this tick, by route, waiting for their typed dispatcher.
#[derive(Resource, Default)]
pub(super) struct ServerInbox {
    pub(super) by_route: HashMap<u16, Vec<Pending>>,
}

/// Adds the server side of message `M`: `FromClient<M>` and its dispatcher if
/// clients send it, `ToClients<M>` and its sender if the server does. Run by
/// the plugin's `finish` (see [`MokoshAppExt`](crate::shared::MokoshAppExt)).
pub(crate) fn add_message_systems<M: GameMessage>(app: &mut App, direction: Direction) {
    if direction.client_sends() {
        app.add_message::<FromClient<M>>().add_systems(
            FixedPreUpdate,
            dispatch_system::<M>.in_set(MokoshServerSystems::Dispatch),
        );
    }
    if direction.server_sends() {
        app.add_message::<ToClients<M>>().add_systems(
            FixedPostUpdate,
            send_system::<M>.in_set(MokoshServerSystems::Send),
        );
    }
}

fn dispatch_system<M: GameMessage>(
    mut inbox: ResMut<ServerInbox>,
    server: Res<MokoshServer>,
    mut sessions: Query<&mut NetSession>,
    mut writer: MessageWriter<FromClient<M>>,
) {
    let Some(mut pending) = inbox.by_route.remove(&M::ROUTE_ID) else {
        return;
    };
    // Client order, then arrival order per client: never the order in which
    // connections happened to be visited.
    pending.sort_by_key(|pending| pending.client_id);
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
                    tick: message.tick,
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
                // A client may announce a small maximum message size: that
                // is its choice, not a server fault, and must not flood the
                // log once per message.
                Err(error @ SendError::TooLarge { .. }) => {
                    server.counters.send_over_peer_limit();
                    tracing::debug!(route = M::ROUTE_ID, %error, "message over the client's size limit not sent");
                }
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
