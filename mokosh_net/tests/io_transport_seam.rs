//! An out-of-crate transport backend plugged into both plugins through the
//! seam (`ServerTransport::Custom`, `ConnectTarget::Custom`), building its
//! endpoints with the public constructors. It carries frames over the memory
//! transport underneath, as a datagram or engine-side socket backend would
//! over its own.

use std::sync::{Arc, Mutex};

use bevy_app::{App, FixedUpdate};
use bevy_ecs::prelude::*;
use mokosh_derive::GameMessage;
use mokosh_net::client::{
    ClientPluginConfig, ConnectTarget, ConnectionState, FromServer, MokoshClient,
    MokoshClientPlugin, ToServer,
};
use mokosh_net::io::memory::{self, MemoryListener};
use mokosh_net::io::transport::{ClientBackend, ServerBackend};
use mokosh_net::io::{ClientEndpoint, IoConfig, IoRuntime, ServerEndpoint};
use mokosh_net::protocol::KeyPair;
use mokosh_net::server::{
    FromClient, MokoshServerPlugin, SendTarget, ServerPluginConfig, ServerTransport, ToClients,
};
use mokosh_net::shared::MokoshAppExt;
use mokosh_net::testing::headless_app;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 122]
struct Say {
    n: u32,
}

/// The backend: the server side publishes its listener for the client side.
#[derive(Default)]
struct Backend {
    listener: Mutex<Option<MemoryListener>>,
}

impl ServerBackend for Backend {
    fn listen(&self, _: &IoRuntime, config: IoConfig) -> std::io::Result<ServerEndpoint> {
        let (listener, inner) = memory::listen(config);
        *self.listener.lock().unwrap() = Some(listener);
        let (events, counters) = (inner.events().clone(), Arc::clone(inner.counters()));
        Ok(ServerEndpoint::new(events, None, counters, Box::new(inner)))
    }
}

impl ClientBackend for Backend {
    fn connect(&self, _: &IoRuntime, _: IoConfig) -> ClientEndpoint {
        let listener = self.listener.lock().unwrap().clone().expect("listening");
        let inner = listener.connect();
        let (events, counters) = (inner.events().clone(), Arc::clone(inner.counters()));
        ClientEndpoint::new(events, counters, Box::new(inner))
    }
}

fn echo(mut inbox: MessageReader<FromClient<Say>>, mut outbox: MessageWriter<ToClients<Say>>) {
    for said in inbox.read() {
        outbox.write(ToClients::new(
            SendTarget::Client(said.client_id),
            said.message.clone(),
        ));
    }
}

#[derive(Resource, Default)]
struct Heard(Vec<u32>);

fn hear(mut inbox: MessageReader<FromServer<Say>>, mut heard: ResMut<Heard>) {
    heard.0.extend(inbox.read().map(|m| m.message.n));
}

#[test]
fn a_custom_backend_carries_a_session_through_both_plugins() {
    let backend = Arc::new(Backend::default());
    let keypair = KeyPair::generate().unwrap();
    let mut config = ServerPluginConfig::memory(keypair.clone());
    config.transport = ServerTransport::Custom(backend.clone());
    config.auth = Some(Arc::new(mokosh_net::auth::DevAuthProvider::new()));
    let mut server = headless_app();
    server
        .add_plugins(MokoshServerPlugin::new(config))
        .add_game_message::<Say>()
        .add_systems(FixedUpdate, echo);
    server.finish();
    server.cleanup();
    server.update();

    let mut client: App = headless_app();
    client
        .add_plugins(MokoshClientPlugin::new(ClientPluginConfig::new(
            keypair.public(),
            "player",
        )))
        .add_game_message::<Say>()
        .init_resource::<Heard>()
        .add_systems(FixedUpdate, hear);
    client.finish();
    client.cleanup();
    client
        .world_mut()
        .resource_mut::<MokoshClient>()
        .connect(ConnectTarget::Custom(backend));

    let mut sent = false;
    for _ in 0..600 {
        server.update();
        server
            .world()
            .resource::<mokosh_net::server::MokoshServer>()
            .wait_for_authentications(mokosh_net::testing::AUTH_SETTLE_TIMEOUT);
        client.update();
        let connected = matches!(
            client.world().resource::<ConnectionState>(),
            ConnectionState::Connected { .. }
        );
        if connected && !sent {
            client
                .world_mut()
                .write_message(ToServer::new(Say { n: 7 }));
            sent = true;
        }
        if !client.world().resource::<Heard>().0.is_empty() {
            break;
        }
    }
    assert_eq!(client.world().resource::<Heard>().0, vec![7]);
}
