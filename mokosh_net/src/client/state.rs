//! Where the client is: the [`ConnectionState`] resource (with details), the
//! [`ClientState`] Bevy state (for `OnEnter` / `OnExit` and `in_state`), and
//! the connection messages.

use bevy_ecs::prelude::*;
use bevy_state::prelude::*;

use crate::protocol::{DisconnectReason, Initiator};
use crate::shared::ClientId;

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

impl ConnectionState {
    /// The matching [`ClientState`].
    pub fn phase(&self) -> ClientState {
        match self {
            ConnectionState::Disconnected { .. } => ClientState::Disconnected,
            ConnectionState::Connecting => ClientState::Connecting,
            ConnectionState::Connected { .. } => ClientState::Connected,
        }
    }
}

/// The client's connection as a Bevy [`States`]: schedule systems with
/// `OnEnter(ClientState::Connected)`, `OnExit(ClientState::Connected)` or
/// `run_if(in_state(ClientState::Connecting))`.
///
/// It follows [`ConnectionState`] (which has the details: the client id, why
/// the last connection ended). The plugin sets it with `NextState` when the
/// connection changes during a fixed step, so, as with any Bevy state, the
/// transition (and its `OnEnter` / `OnExit` systems) happens at the next
/// `StateTransition`, early in the following frame. [`client_connected`] reads
/// `ConnectionState` and so changes at once.
#[derive(States, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ClientState {
    /// Not connected.
    #[default]
    Disconnected,
    /// Transport or handshake in progress.
    Connecting,
    /// Connected and authenticated.
    Connected,
}

/// Sets [`ConnectionState`] and queues the matching [`ClientState`].
pub(super) fn set_connection_state(world: &mut World, state: ConnectionState) {
    let phase = state.phase();
    *world.resource_mut::<ConnectionState>() = state;
    if let Some(mut next) = world.get_resource_mut::<NextState<ClientState>>() {
        next.set_if_different(phase);
    }
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
