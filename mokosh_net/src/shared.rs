//! What the server and client plugins share: the message registry resource,
//! the app extension that registers [`GameMessage`] types, the tokio runtime
//! resource, client ids and time. Nothing here depends on the server or the
//! client: they depend on it.

use std::sync::Arc;
#[cfg(any(feature = "server", feature = "client"))]
use std::time::Instant;

use bevy_app::App;
use bevy_ecs::prelude::*;
#[cfg(any(feature = "server", feature = "client"))]
use bevy_time::{Real, Time};

use crate::io::IoRuntime;
use crate::protocol::message::Direction;
use crate::protocol::{GameMessage, MessageRegistry};

/// A client's id, assigned by the server at connection (never reused while the
/// server runs). Stable across the session, unlike the connection's `Entity`
/// on a client.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl core::fmt::Display for ClientId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "client#{}", self.0)
    }
}

/// The message types this app speaks. Filled by [`MokoshAppExt`]; frozen (and
/// then immutable) the first time a connection needs its protocol hash.
///
/// It also remembers, for each message, how the server and client plugins add
/// its typed messages and systems, so that a plugin added after the message
/// (or before it) hooks it up in [`Plugin::finish`](bevy_app::Plugin::finish).
#[derive(Resource, Debug, Default)]
pub struct ProtocolRegistry {
    registry: MessageRegistry,
    frozen: Option<Arc<MessageRegistry>>,
    hooks: Vec<MessageHooks>,
    finished: [bool; 2],
}

impl ProtocolRegistry {
    /// The registered messages.
    pub fn registry(&self) -> &MessageRegistry {
        &self.registry
    }

    /// The registry as shared by every session. After the first call, no more
    /// messages can be registered.
    pub fn frozen(&mut self) -> Arc<MessageRegistry> {
        self.frozen
            .get_or_insert_with(|| Arc::new(self.registry.clone()))
            .clone()
    }
}

/// A side of the connection, for the per-side message hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Server = 0,
    Client = 1,
}

/// Adds one side's typed messages and systems for one message type, given
/// the directions it travels in.
pub(crate) type MessageHook = fn(&mut App, Direction);

/// How each side hooks up one registered message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageHooks {
    pub(crate) direction: Direction,
    pub(crate) server: MessageHook,
    pub(crate) client: MessageHook,
}

impl MessageHooks {
    fn run(self, app: &mut App, side: Side) {
        match side {
            Side::Server => (self.server)(app, self.direction),
            Side::Client => (self.client)(app, self.direction),
        }
    }
}

/// Registers `M` travelling in `direction` and records its hooks: sides whose
/// plugin already finished get their systems now, the others in their
/// plugin's `finish`. Re-registering a type with the same direction does
/// nothing.
///
/// # Panics
/// As [`MokoshAppExt::add_game_message`].
pub(crate) fn register_message<M: GameMessage>(
    app: &mut App,
    direction: Direction,
    server: MessageHook,
    client: MessageHook,
) {
    let hooks = MessageHooks {
        direction,
        server,
        client,
    };
    let finished = {
        let mut protocol = app
            .world_mut()
            .get_resource_or_insert_with(ProtocolRegistry::default);
        assert!(
            protocol.frozen.is_none(),
            "registering {} after a connection started: register every message before running the app",
            M::NAME
        );
        let known = protocol.registry.get(M::ROUTE_ID).is_some();
        if let Err(error) = protocol.registry.register_with::<M>(direction) {
            panic!("registering {}: {error}", M::NAME);
        }
        if known {
            return;
        }
        protocol.hooks.push(hooks);
        protocol.finished
    };
    for side in [Side::Server, Side::Client] {
        if finished[side as usize] {
            hooks.run(app, side);
        }
    }
}

/// Called from a plugin's `finish`: adds `side`'s systems for every message
/// registered so far; later registrations add theirs at once.
// Used by the plugins only (a `runtime`-only build has none).
#[cfg(any(feature = "server", feature = "client"))]
pub(crate) fn finish_side(app: &mut App, side: Side) {
    let hooks = {
        let mut protocol = app
            .world_mut()
            .get_resource_or_insert_with(ProtocolRegistry::default);
        protocol.finished[side as usize] = true;
        protocol.hooks.clone()
    };
    for hook in hooks {
        hook.run(app, side);
    }
}

/// The tokio runtime that runs the IO tasks (and slow authentication). Added by
/// whichever Mokosh plugin is added first; shared by both. The plugins' own
/// resources hold it too, so it outlives them when the app is dropped and
/// their last frames (DISCONNECT) still get sent.
#[derive(Resource, Clone)]
pub struct MokoshRuntime(pub Arc<IoRuntime>);

// Used by the plugins only (a `runtime`-only build has none).
#[cfg(any(feature = "server", feature = "client"))]
pub(crate) fn ensure_runtime(app: &mut App, worker_threads: usize) -> Arc<IoRuntime> {
    if let Some(runtime) = app.world().get_resource::<MokoshRuntime>() {
        return runtime.0.clone();
    }
    let runtime = Arc::new(
        IoRuntime::new(worker_threads.max(1))
            .unwrap_or_else(|error| panic!("cannot start the Mokosh IO runtime: {error}")),
    );
    app.insert_resource(MokoshRuntime(runtime.clone()));
    runtime
}

/// Registers game message types with the Mokosh plugins.
///
/// Call it before or after adding the plugins: each plugin adds the typed
/// messages and systems of every registered message when the app finishes
/// building ([`Plugin::finish`](bevy_app::Plugin::finish)). Only the systems
/// for the directions a message travels in are added:
///
/// | registered with | server gets | client gets |
/// |-----------------|-------------|-------------|
/// | [`add_client_message`](Self::add_client_message) | `FromClient<M>` | `ToServer<M>` |
/// | [`add_server_message`](Self::add_server_message) | `ToClients<M>` | `FromServer<M>` |
/// | [`add_game_message`](Self::add_game_message) (both ways) | both | both |
///
/// The direction is part of the protocol hash, so both ends must register a
/// message the same way.
///
/// # Panics
/// Each method panics if another type already uses `M`'s route id, if `M` was
/// registered before with another direction, or if a connection already froze
/// the registry. All are programming errors caught at start-up.
pub trait MokoshAppExt {
    /// Registers `M` in the direction it declares
    /// ([`GameMessage::DIRECTION`], both ways unless its implementation says
    /// otherwise).
    fn add_game_message<M: GameMessage>(&mut self) -> &mut Self;

    /// Registers `M` as sent by clients to the server only (inputs, requests).
    fn add_client_message<M: GameMessage>(&mut self) -> &mut Self;

    /// Registers `M` as sent by the server to clients only (snapshots, events).
    fn add_server_message<M: GameMessage>(&mut self) -> &mut Self;
}

/// The time sessions see: the app's real-time clock as of this update (so a
/// test that steps time manually steps the protocol too).
// Used by the plugins only (a `runtime`-only build has none).
#[cfg(any(feature = "server", feature = "client"))]
pub(crate) fn now(world: &World) -> Instant {
    now_from(world.get_resource::<Time<Real>>())
}

/// [`now`] for systems that take `Option<Res<Time<Real>>>`.
#[cfg(any(feature = "server", feature = "client"))]
pub(crate) fn now_from(time: Option<&Time<Real>>) -> Instant {
    time.and_then(|time| time.last_update())
        .unwrap_or_else(Instant::now)
}

/// IO limits that match a session configuration: the largest frame is the
/// largest sealed message plus the largest header. The message size is
/// clamped the way the session clamps it, so the transport accepts exactly
/// what the session announces.
pub fn io_config_for(session: &crate::protocol::SessionConfig) -> crate::io::IoConfig {
    io_config_following(crate::io::IoConfig::default(), session)
}

/// `io` with the limits that follow from `session` (the largest frame and the
/// handshake timeout, as in [`io_config_for`]) and its other settings kept.
pub fn io_config_following(
    io: crate::io::IoConfig,
    session: &crate::protocol::SessionConfig,
) -> crate::io::IoConfig {
    crate::io::IoConfig {
        max_frame_len: crate::protocol::handshake::clamp_message_size(session.max_message_size)
            + crate::protocol::crypto::TAG_LEN
            + crate::protocol::envelope::MAX_HEADER_LEN,
        handshake_timeout: session.handshake_timeout,
        ..io
    }
}

#[cfg(test)]
mod tests {
    use super::io_config_for;
    use crate::protocol::SessionConfig;
    use crate::protocol::crypto::TAG_LEN;
    use crate::protocol::envelope::MAX_HEADER_LEN;
    use crate::protocol::handshake::{MAX_MESSAGE_SIZE, MIN_MESSAGE_SIZE};

    /// A session announces (and accepts) its clamped maximum; the transport
    /// must not close a peer for a message the session would accept, nor
    /// overflow on an absurd setting.
    #[test]
    fn the_transport_limit_follows_the_clamped_message_size() {
        let frame_len = |max_message_size| {
            io_config_for(&SessionConfig {
                max_message_size,
                ..SessionConfig::default()
            })
            .max_frame_len
        };
        assert_eq!(frame_len(100), MIN_MESSAGE_SIZE + TAG_LEN + MAX_HEADER_LEN);
        assert_eq!(
            frame_len(usize::MAX),
            MAX_MESSAGE_SIZE + TAG_LEN + MAX_HEADER_LEN
        );
        assert_eq!(frame_len(4096), 4096 + TAG_LEN + MAX_HEADER_LEN);
    }
}
