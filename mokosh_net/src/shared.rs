//! What the server and client plugins share: the message registry resource,
//! the app extension that registers [`GameMessage`] types, the tokio runtime
//! resource, client ids and time.

use std::sync::Arc;
#[cfg(any(feature = "server", feature = "client"))]
use std::time::Instant;

use bevy_app::App;
use bevy_ecs::prelude::*;
#[cfg(any(feature = "server", feature = "client"))]
use bevy_time::{Real, Time};

use crate::io::IoRuntime;
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

/// The message types this app speaks. Filled by
/// [`MokoshAppExt::add_game_message`]; frozen (and then immutable) the first
/// time a connection needs its protocol hash.
#[derive(Resource, Debug, Default)]
pub struct ProtocolRegistry {
    registry: MessageRegistry,
    frozen: Option<Arc<MessageRegistry>>,
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
pub trait MokoshAppExt {
    /// Registers `M`: adds it to the [`ProtocolRegistry`] and, for each Mokosh
    /// plugin already added, its typed messages and systems (server:
    /// `FromClient<M>` / `ToClients<M>`; client: `FromServer<M>` /
    /// `ToServer<M>`). Add the plugins first.
    ///
    /// # Panics
    /// If another type already uses `M`'s route id, or a connection already
    /// froze the registry. Both are programming errors caught at start-up.
    fn add_game_message<M: GameMessage>(&mut self) -> &mut Self;
}

impl MokoshAppExt for App {
    fn add_game_message<M: GameMessage>(&mut self) -> &mut Self {
        {
            let mut protocol = self
                .world_mut()
                .get_resource_or_insert_with(ProtocolRegistry::default);
            assert!(
                protocol.frozen.is_none(),
                "add_game_message::<{}>() after a connection started: register every message before running the app",
                M::NAME
            );
            if let Err(error) = protocol.registry.register::<M>() {
                panic!("add_game_message::<{}>(): {error}", M::NAME);
            }
        }
        #[cfg(feature = "server")]
        if self
            .world()
            .contains_resource::<crate::server::MokoshServer>()
        {
            crate::server::add_message_systems::<M>(self);
        }
        #[cfg(feature = "client")]
        if self
            .world()
            .contains_resource::<crate::client::MokoshClient>()
        {
            crate::client::add_message_systems::<M>(self);
        }
        self
    }
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
/// largest sealed message plus the largest header.
pub fn io_config_for(session: &crate::protocol::SessionConfig) -> crate::io::IoConfig {
    crate::io::IoConfig {
        max_frame_len: session.max_message_size
            + crate::protocol::crypto::TAG_LEN
            + crate::protocol::envelope::MAX_HEADER_LEN,
        handshake_timeout: session.handshake_timeout,
        ..crate::io::IoConfig::default()
    }
}
