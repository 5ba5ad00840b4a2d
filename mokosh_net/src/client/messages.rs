//! Typed messages: `FromServer<M>` dispatch and `ToServer<M>` sending.

use bevy_app::{App, FixedPostUpdate, FixedPreUpdate};
use bevy_ecs::prelude::*;

use super::{MokoshClient, MokoshClientSystems};
use crate::protocol::{Direction, DisconnectReason, GameMessage};

/// A typed message from the server.
#[derive(Message, Debug, Clone)]
pub struct FromServer<M: GameMessage> {
    /// The message.
    pub message: M,
    /// The correlation id the server set, if any.
    pub correlation_id: Option<u64>,
    /// The server's [`NetworkTick`](crate::tick::NetworkTick) when it sent the
    /// message, if it stamped one.
    pub tick: Option<u32>,
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

/// Adds the client side of message `M`: `FromServer<M>` and its dispatcher if
/// the server sends it, `ToServer<M>` and its sender if clients do. Run by the
/// plugin's `finish` (see [`MokoshAppExt`](crate::shared::MokoshAppExt)).
pub(crate) fn add_message_systems<M: GameMessage>(app: &mut App, direction: Direction) {
    if direction.server_sends() {
        app.add_message::<FromServer<M>>().add_systems(
            FixedPreUpdate,
            dispatch_system::<M>.in_set(MokoshClientSystems::Dispatch),
        );
    }
    if direction.client_sends() {
        app.add_message::<ToServer<M>>().add_systems(
            FixedPostUpdate,
            send_system::<M>.in_set(MokoshClientSystems::Send),
        );
    }
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
                    tick: message.tick,
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
