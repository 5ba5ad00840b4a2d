//! The server's lifecycle the Bevy way (two-App tests on virtual time): the
//! `Connected` marker observed with the entity alive, `server_running`,
//! messages of a closing client reaching game code with their entity alive,
//! deterministic message order, a peer's timeout not counted as ours, sends
//! over a client's size limit counted rather than logged, and connection
//! logging summarised.

use std::io::Write;
use std::sync::{Arc, Mutex};

use bevy_app::{App, FixedUpdate};
use bevy_ecs::prelude::*;
use bevy_ecs::system::RunSystemOnce;
use mokosh_derive::GameMessage;
use mokosh_net::client::{FromServer, MokoshClient, ToServer};
use mokosh_net::metrics::Rejection;
use mokosh_net::protocol::{DisconnectReason, Initiator, KeyPair};
use mokosh_net::server::{
    AuthenticatedIdentity, ClientConnection, ClientDisconnected, Connected, FromClient, KickClient,
    MokoshServer, SendTarget, ServerPluginConfig, ToClients, server_running,
};
use mokosh_net::shared::{ClientId, MokoshAppExt};
use mokosh_net::testing::{TestNetwork, client_app, observe, seen, server_app};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 100]
struct Input {
    sequence: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 102]
struct Blob {
    bytes: Vec<u8>,
}

fn server(keypair: &KeyPair, configure: impl FnOnce(&mut ServerPluginConfig)) -> App {
    let mut app = server_app(keypair.clone(), configure);
    app.add_game_message::<Input>().add_game_message::<Blob>();
    observe::<ClientDisconnected>(&mut app);
    app
}

fn client(keypair: &KeyPair, token: &str) -> App {
    let mut app = client_app(keypair.public(), token, |_| {});
    app.add_game_message::<Input>().add_game_message::<Blob>();
    app
}

fn mokosh(app: &App) -> &MokoshServer {
    app.world().resource::<MokoshServer>()
}

fn send_input(app: &mut App, sequence: u32) {
    app.world_mut()
        .write_message(ToServer::new(Input { sequence }));
}

/// What the observers saw: (event, client id, user id) read from the entity.
#[derive(Resource, Default)]
struct Lifecycle(Vec<(&'static str, Option<ClientId>, Option<String>)>);

#[test]
fn connected_marker_is_observed_with_the_entity_alive() {
    let keypair = KeyPair::generate().unwrap();
    let mut server = server(&keypair, |_| {});
    server.init_resource::<Lifecycle>();
    server.add_observer(
        |add: On<Add<Connected>>,
         clients: Query<(&ClientId, &AuthenticatedIdentity)>,
         mut log: ResMut<Lifecycle>| {
            let found = clients.get(add.entity).ok();
            log.0.push((
                "add",
                found.map(|(id, _)| *id),
                found.map(|(_, identity)| identity.0.user_id.clone()),
            ));
        },
    );
    server.add_observer(
        |remove: On<Remove<Connected>>,
         clients: Query<(&ClientId, &AuthenticatedIdentity)>,
         mut log: ResMut<Lifecycle>| {
            let found = clients.get(remove.entity).ok();
            log.0.push((
                "remove",
                found.map(|(id, _)| *id),
                found.map(|(_, identity)| identity.0.user_id.clone()),
            ));
        },
    );
    let mut network = TestNetwork::new(server, vec![client(&keypair, "alice")]);
    assert!(network.run_until(60, |net| net.all_connected()));
    let id = mokosh(&network.server)
        .client_entity(ClientId(1))
        .map(|_| ClientId(1));
    assert_eq!(
        network.server.world().resource::<Lifecycle>().0,
        [("add", id, Some("alice".to_owned()))]
    );
    network
        .server
        .world_mut()
        .write_message(KickClient::new(ClientId(1), "bye"));
    assert!(network.run_until(10, |net| {
        !seen::<ClientDisconnected>(&net.server).is_empty()
    }));
    assert_eq!(
        network.server.world().resource::<Lifecycle>().0,
        [
            ("add", id, Some("alice".to_owned())),
            ("remove", id, Some("alice".to_owned()))
        ]
    );
    // Despawned at the end of the tick it closed in.
    let entity = seen::<ClientDisconnected>(&network.server)[0].entity;
    assert!(network.server.world().get_entity(entity).is_err());
}

#[test]
fn server_running_once_listening() {
    let keypair = KeyPair::generate().unwrap();
    let mut server = server(&keypair, |_| {});
    server.finish();
    server.cleanup();
    assert!(!server.world_mut().run_system_once(server_running).unwrap());
    server.update();
    assert!(server.world_mut().run_system_once(server_running).unwrap());
    let mut plain = App::new();
    assert!(!plain.world_mut().run_system_once(server_running).unwrap());
}

/// Whether each `FromClient<Input>`'s entity was alive when game code read it.
#[derive(Resource, Default)]
struct EntityAlive(Vec<bool>);

fn check_sender_alive(
    mut inbox: MessageReader<FromClient<Input>>,
    connections: Query<&ClientConnection>,
    mut alive: ResMut<EntityAlive>,
) {
    for input in inbox.read() {
        alive.0.push(connections.get(input.entity).is_ok());
    }
}

#[test]
fn last_messages_of_a_closing_client_reach_game_code_with_their_entity() {
    let keypair = KeyPair::generate().unwrap();
    let mut server = server(&keypair, |_| {});
    server.init_resource::<EntityAlive>();
    server.add_systems(FixedUpdate, check_sender_alive);
    let mut network = TestNetwork::new(server, vec![client(&keypair, "leaving")]);
    assert!(network.run_until(60, |net| net.all_connected()));
    // The client sends, then leaves, before the server runs again: the server
    // reads the message and the DISCONNECT in one tick.
    let leaving = &mut network.clients[0];
    send_input(leaving, 7);
    leaving.update();
    leaving
        .world_mut()
        .resource_mut::<MokoshClient>()
        .disconnect();
    leaving.update();
    network.server.update();
    assert_eq!(seen::<ClientDisconnected>(&network.server).len(), 1);
    assert_eq!(network.server.world().resource::<EntityAlive>().0, [true]);
}

/// The client ids of `FromClient<Input>` in the order game code read them.
#[derive(Resource, Default)]
struct Order(Vec<(ClientId, u32)>);

fn record_order(mut inbox: MessageReader<FromClient<Input>>, mut order: ResMut<Order>) {
    for input in inbox.read() {
        order.0.push((input.client_id, input.message.sequence));
    }
}

#[test]
fn messages_reach_game_code_in_client_order() {
    let keypair = KeyPair::generate().unwrap();
    let mut server = server(&keypair, |_| {});
    server.init_resource::<Order>();
    server.add_systems(FixedUpdate, record_order);
    let clients = (0..6).map(|i| client(&keypair, &format!("p{i}"))).collect();
    let mut network = TestNetwork::new(server, clients);
    assert!(network.run_until(60, |net| net.all_connected()));
    let ids: Vec<ClientId> = network
        .clients
        .iter()
        .map(
            |c| match c.world().resource::<mokosh_net::client::ConnectionState>() {
                mokosh_net::client::ConnectionState::Connected { client_id } => *client_id,
                other => panic!("not connected: {other:?}"),
            },
        )
        .collect();
    // The last client sends first: arrival order is the reverse of client order.
    for (index, client) in network.clients.iter_mut().enumerate().rev() {
        send_input(client, index as u32 * 10);
        send_input(client, index as u32 * 10 + 1);
        client.update();
    }
    network.server.update();
    let mut expected: Vec<(ClientId, u32)> = ids
        .iter()
        .enumerate()
        .flat_map(|(index, id)| [(*id, index as u32 * 10), (*id, index as u32 * 10 + 1)])
        .collect();
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(network.server.world().resource::<Order>().0, expected);
}

#[test]
fn a_peer_reporting_its_timeout_is_not_counted_as_ours() {
    let keypair = KeyPair::generate().unwrap();
    let mut network = TestNetwork::new(server(&keypair, |_| {}), vec![client(&keypair, "p")]);
    assert!(network.run_until(60, |net| net.all_connected()));
    // The server freezes; the client times it out (idle timeout 10 s) and
    // says so in its DISCONNECT.
    for _ in 0..(11 * 60) {
        network.clients[0].update();
    }
    network.run_until(5, |_| false);
    let gone = seen::<ClientDisconnected>(&network.server);
    assert_eq!(gone.len(), 1);
    assert_eq!(
        (gone[0].reason, gone[0].initiator),
        (DisconnectReason::IdleTimeout, Initiator::Peer)
    );
    let server = mokosh(&network.server);
    assert_eq!(server.metrics().snapshot().rejected(Rejection::Timeout), 0);
    assert_eq!(server.counters().peer_timeouts, 1);
}

/// Captures what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Runs `f` with the server's INFO (and above) logs captured.
fn capture_info(f: impl FnOnce()) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    captured.text()
}

#[test]
fn sends_over_a_client_size_limit_are_counted_not_warned() {
    let keypair = KeyPair::generate().unwrap();
    let mut small = client_app(keypair.public(), "small", |config| {
        config.session.max_message_size = 256;
    });
    small.add_game_message::<Input>().add_game_message::<Blob>();
    observe::<FromServer<Blob>>(&mut small);
    let mut network = TestNetwork::new(server(&keypair, |_| {}), vec![small]);
    assert!(network.run_until(60, |net| net.all_connected()));
    let log = capture_info(|| {
        for _ in 0..20 {
            network.server.world_mut().write_message(ToClients::new(
                SendTarget::All,
                Blob {
                    bytes: vec![7; 1024],
                },
            ));
            network.step();
        }
    });
    assert!(!log.contains("WARN"), "{log}");
    assert_eq!(mokosh(&network.server).counters().sends_over_peer_limit, 20);
    assert!(seen::<FromServer<Blob>>(&network.clients[0]).is_empty());
    assert!(network.all_connected(), "the small client stays connected");
}

#[test]
fn connects_and_disconnects_are_summarised_at_info() {
    let keypair = KeyPair::generate().unwrap();
    let log = capture_info(|| {
        let clients = (0..5).map(|i| client(&keypair, &format!("p{i}"))).collect();
        let mut network = TestNetwork::new(server(&keypair, |_| {}), clients);
        assert!(network.run_until(60, |net| net.all_connected()));
        for client in &mut network.clients[..2] {
            client
                .world_mut()
                .resource_mut::<MokoshClient>()
                .disconnect();
        }
        // Past the 10 s summary interval (virtual time).
        network.run_until(11 * 60, |_| false);
    });
    assert!(!log.contains("client connected"), "{log}");
    assert!(!log.contains("client disconnected"), "{log}");
    assert_eq!(
        log.matches("5 connected, 2 disconnected").count(),
        1,
        "{log}"
    );
}
