//! A test harness shipped with the library: a server app and N client apps in
//! one process over the in-memory transport, stepped in lock step on virtual
//! time (each `update` advances exactly one fixed tick).
//!
//! ```
//! use mokosh_net::protocol::KeyPair;
//! use mokosh_net::testing::{TestNetwork, client_app, server_app};
//!
//! let keypair = KeyPair::generate().unwrap();
//! let server = server_app(keypair.clone(), |_| {});
//! let clients = (0..3).map(|_| client_app(keypair.public(), "player", |_| {})).collect();
//! let mut network = TestNetwork::new(server, clients);
//! assert!(network.run_until(120, |net| net.all_connected()));
//! ```

use std::time::Duration;

use bevy_app::{App, FixedUpdate};
use bevy_ecs::prelude::{Message, MessageReader, ResMut, Resource};
use bevy_time::{Fixed, Time, TimePlugin, TimeUpdateStrategy};

use crate::client::{
    ClientPluginConfig, ConnectTarget, ConnectionState, MokoshClient, MokoshClientPlugin,
};
use crate::protocol::{KeyPair, PublicKey};
use crate::server::{MemoryListenerHandle, MokoshServer, MokoshServerPlugin, ServerPluginConfig};

/// The fixed tick the harness runs at (60 Hz).
pub const TICK: Duration = Duration::from_micros(16_667);

/// The longest [`TestNetwork::step`] waits for runnable authentication tasks.
pub const AUTH_SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A headless app whose clock advances exactly one [`TICK`] per `update`.
pub fn headless_app() -> App {
    let mut app = App::new();
    app.add_plugins(TimePlugin);
    app.insert_resource(TimeUpdateStrategy::ManualDuration(TICK));
    app.insert_resource(Time::<Fixed>::from_duration(TICK));
    app
}

/// A headless server app on the in-memory transport. `configure` can change
/// the plugin configuration (auth provider, limits, ...). Register messages on
/// the returned app with [`MokoshAppExt`](crate::shared::MokoshAppExt) (before
/// [`TestNetwork::new`], which finishes the app).
pub fn server_app(keypair: KeyPair, configure: impl FnOnce(&mut ServerPluginConfig)) -> App {
    let mut config = ServerPluginConfig::memory(keypair)
        .with_auth(std::sync::Arc::new(crate::auth::DevAuthProvider::new()));
    configure(&mut config);
    let mut app = headless_app();
    app.add_plugins(MokoshServerPlugin::new(config));
    app
}

/// A headless client app pinned to `server_key`, presenting `token`.
pub fn client_app(
    server_key: PublicKey,
    token: &str,
    configure: impl FnOnce(&mut ClientPluginConfig),
) -> App {
    let mut config = ClientPluginConfig::new(server_key, token.as_bytes().to_vec());
    configure(&mut config);
    let mut app = headless_app();
    app.add_plugins(MokoshClientPlugin::new(config));
    app
}

/// A server app and client apps connected over the in-memory transport.
pub struct TestNetwork {
    /// The server.
    pub server: App,
    /// The clients, in the order given.
    pub clients: Vec<App>,
}

impl TestNetwork {
    /// Starts the server (one update) and asks every client to connect.
    ///
    /// # Panics
    /// If the server app does not use the in-memory transport.
    pub fn new(mut server: App, clients: Vec<App>) -> Self {
        server.finish();
        server.cleanup();
        server.update();
        let listener = server
            .world()
            .get_resource::<MemoryListenerHandle>()
            .expect("the server app must use ServerTransport::Memory")
            .0
            .clone();
        let mut network = TestNetwork {
            server,
            clients: Vec::new(),
        };
        for client in clients {
            network.add_client(client, &listener);
        }
        network
    }

    fn add_client(&mut self, mut client: App, listener: &crate::io::memory::MemoryListener) {
        client.finish();
        client.cleanup();
        client
            .world_mut()
            .resource_mut::<MokoshClient>()
            .connect(ConnectTarget::Memory(listener.clone()));
        self.clients.push(client);
    }

    /// Adds and connects another client app.
    pub fn connect_client(&mut self, client: App) {
        let listener = self.listener();
        self.add_client(client, &listener);
    }

    /// The server's in-memory listener (to connect raw clients in tests).
    pub fn listener(&self) -> crate::io::memory::MemoryListener {
        self.server
            .world()
            .resource::<MemoryListenerHandle>()
            .0
            .clone()
    }

    /// One tick: the server updates, then every client. Authentication runs
    /// on the IO runtime: before the clients update, the step waits (up to
    /// [`AUTH_SETTLE_TIMEOUT`]) until the provider tasks started so far have
    /// answered or are waiting on something external, so a provider that
    /// answers at once is applied in the next tick however busy the machine is.
    pub fn step(&mut self) {
        self.server.update();
        self.server
            .world()
            .resource::<MokoshServer>()
            .wait_for_authentications(AUTH_SETTLE_TIMEOUT);
        for client in &mut self.clients {
            client.update();
        }
    }

    /// Steps until `done` holds (checked after each step) or `max_steps` ran.
    /// Returns whether `done` held.
    pub fn run_until(&mut self, max_steps: usize, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        for _ in 0..max_steps {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }

    /// Whether every client is connected (and the server counts them all).
    pub fn all_connected(&self) -> bool {
        self.clients.iter().all(|client| {
            matches!(
                client.world().resource::<ConnectionState>(),
                ConnectionState::Connected { .. }
            )
        }) && self
            .server
            .world()
            .resource::<MokoshServer>()
            .client_count()
            == self.clients.len()
    }

    /// The connection state of client `index`.
    pub fn client_state(&self, index: usize) -> ConnectionState {
        self.clients[index]
            .world()
            .resource::<ConnectionState>()
            .clone()
    }
}

/// Every message of type `M` an app's fixed steps saw, collected by
/// [`observe`] (for assertions in two-App tests).
#[derive(Resource, Debug)]
pub struct Seen<M: Send + Sync + 'static>(pub Vec<M>);

fn collect<M: Message + Clone>(mut reader: MessageReader<M>, mut seen: ResMut<Seen<M>>) {
    seen.0.extend(reader.read().cloned());
}

/// Collects every `M` written in `app` into [`Seen<M>`], read back with
/// [`seen`]. The collecting system runs in `FixedUpdate`.
pub fn observe<M: Message + Clone>(app: &mut App) {
    app.insert_resource(Seen::<M>(Vec::new()));
    app.add_systems(FixedUpdate, collect::<M>);
}

/// What [`observe`] collected in `app` so far.
///
/// # Panics
/// If `observe::<M>` was not called on `app`.
pub fn seen<M: Message + Clone>(app: &App) -> &[M] {
    &app.world().resource::<Seen<M>>().0
}
