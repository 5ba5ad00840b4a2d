//! The shape netcode builds on: the network tick, the simulation schedule
//! that rollback re-runs, registration order and directions, the client's
//! connection as a Bevy state, start-up errors and plugin composition.

use std::sync::Arc;

use bevy_app::{App, FixedUpdate, ScheduleRunnerPlugin, TaskPoolPlugin};
use bevy_ecs::prelude::*;
use bevy_state::prelude::{OnEnter, OnExit, State};
use bevy_time::TimePlugin;
use mokosh_derive::GameMessage;
use mokosh_net::auth::DevAuthProvider;
use mokosh_net::client::{
    ClientPluginConfig, ClientState, FromServer, MokoshClient, MokoshClientPlugin, ToServer,
};
use mokosh_net::protocol::KeyPair;
use mokosh_net::server::{
    FromClient, MokoshServer, MokoshServerPlugin, ServerPluginConfig, ServerStartError,
    ServerStartFailed, ToClients, server_running,
};
use mokosh_net::shared::{ClientId, MokoshAppExt};
use mokosh_net::testing::{TestNetwork, client_app, headless_app, server_app};
use mokosh_net::tick::NetworkTick;
use serde::{Deserialize, Serialize};

/// Travels both ways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 100]
struct Ping(u32);

/// Client to server only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 101]
struct Input(u32);

/// Server to client only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 102]
struct Snapshot(u32);

/// What the test systems saw.
#[derive(Resource, Default)]
struct Seen {
    simulation_runs: u32,
    pings: Vec<u32>,
    inputs: Vec<(ClientId, u32)>,
    snapshots: Vec<u32>,
    entered: u32,
    exited: u32,
}

fn tick(app: &App) -> u32 {
    app.world().resource::<NetworkTick>().get()
}

fn is_connected(app: &App) -> bool {
    *app.world().resource::<State<ClientState>>().get() == ClientState::Connected
}

// ------------------------------------------------------------------ tick

#[test]
fn the_network_tick_advances_once_per_fixed_step_on_both_sides() {
    let keypair = KeyPair::generate().unwrap();
    let server = server_app(keypair.clone(), |_| {});
    let client = client_app(keypair.public(), "player", |_| {});
    let mut network = TestNetwork::new(server, vec![client]);
    // The first update only starts the clock.
    network.step();
    let (server_start, client_start) = (tick(&network.server), tick(&network.clients[0]));
    for steps in 1..=20 {
        network.step();
        assert_eq!(tick(&network.server), server_start + steps);
        assert_eq!(tick(&network.clients[0]), client_start + steps);
    }
}

#[test]
fn an_update_without_a_fixed_step_leaves_the_tick_alone() {
    let keypair = KeyPair::generate().unwrap();
    let mut app = server_app(keypair, |_| {});
    app.insert_resource(bevy_time::TimeUpdateStrategy::ManualDuration(
        std::time::Duration::ZERO,
    ));
    app.finish();
    app.cleanup();
    for _ in 0..5 {
        app.update();
    }
    assert_eq!(tick(&app), 0);
}

/// Ticks seen on received pings: (the sender's tick, our tick when replying).
#[derive(Resource, Default)]
struct Stamps(Vec<(Option<u32>, u32)>);

fn answer_pings(
    tick: Res<NetworkTick>,
    mut stamps: ResMut<Stamps>,
    mut inbox: MessageReader<FromClient<Ping>>,
    mut outbox: MessageWriter<ToClients<Ping>>,
) {
    for ping in inbox.read() {
        stamps.0.push((ping.tick, tick.get()));
        outbox.write(ToClients::to(ping.client_id, ping.message.clone()));
    }
}

fn record_answers(
    tick: Res<NetworkTick>,
    mut stamps: ResMut<Stamps>,
    mut inbox: MessageReader<FromServer<Ping>>,
) {
    for answer in inbox.read() {
        stamps.0.push((answer.tick, tick.get()));
    }
}

#[test]
fn messages_carry_the_tick_they_were_sent_in() {
    let keypair = KeyPair::generate().unwrap();
    let mut server = server_app(keypair.clone(), |_| {});
    server
        .add_game_message::<Ping>()
        .init_resource::<Stamps>()
        .add_systems(FixedUpdate, answer_pings);
    let mut client = client_app(keypair.public(), "player", |_| {});
    client
        .add_game_message::<Ping>()
        .init_resource::<Stamps>()
        .add_systems(FixedUpdate, record_answers);
    let mut network = TestNetwork::new(server, vec![client]);
    assert!(network.run_until(60, |net| net.all_connected()));
    // Skew the clocks so the two ticks cannot match by accident.
    for _ in 0..7 {
        network.server.update();
    }
    network.clients[0]
        .world_mut()
        .write_message(ToServer::new(Ping(1)));
    network.clients[0].update();
    let sent_in = tick(&network.clients[0]);
    assert!(network.run_until(10, |net| {
        !net.clients[0].world().resource::<Stamps>().0.is_empty()
    }));
    let (client_tick, answered_in) = network.server.world().resource::<Stamps>().0[0];
    assert_eq!(
        client_tick,
        Some(sent_in),
        "the server sees the client's tick"
    );
    assert_ne!(answered_in, sent_in);
    let (server_tick, _) = network.clients[0].world().resource::<Stamps>().0[0];
    assert_eq!(
        server_tick,
        Some(answered_in),
        "the client sees the server's tick"
    );
}

// ------------------------------------------------------------- schedules

/// The game's simulation: counts its runs, echoes pings, and sends one ping
/// per run to every client.
fn simulate_server(
    mut seen: ResMut<Seen>,
    mut inbox: MessageReader<FromClient<Ping>>,
    mut outbox: MessageWriter<ToClients<Ping>>,
) {
    seen.simulation_runs += 1;
    for ping in inbox.read() {
        seen.pings.push(ping.message.0);
    }
    outbox.write(ToClients::all(Ping(seen.simulation_runs)));
}

fn simulate_client(mut seen: ResMut<Seen>, mut outbox: MessageWriter<ToServer<Ping>>) {
    seen.simulation_runs += 1;
    outbox.write(ToServer::new(Ping(seen.simulation_runs)));
}

#[test]
fn rerunning_the_simulation_drains_nothing_sends_nothing_and_keeps_the_tick() {
    let keypair = KeyPair::generate().unwrap();
    let mut server = server_app(keypair.clone(), |_| {});
    server
        .add_game_message::<Ping>()
        .init_resource::<Seen>()
        .add_systems(FixedUpdate, simulate_server);
    let mut client = client_app(keypair.public(), "player", |_| {});
    client.add_game_message::<Ping>().init_resource::<Seen>();
    let mut network = TestNetwork::new(server, vec![client]);
    assert!(network.run_until(60, |net| net.all_connected()));
    // The client starts simulating (and sending one ping per step) now.
    network.clients[0].add_systems(FixedUpdate, simulate_client);
    network.clients[0].update();
    // Its pings sit in the server's IO channel until the server's next step.

    let server_before = network
        .server
        .world()
        .resource::<MokoshServer>()
        .metrics()
        .snapshot();
    let server_tick = tick(&network.server);
    let runs_before = network.server.world().resource::<Seen>().simulation_runs;
    for _ in 0..10 {
        network.server.world_mut().run_schedule(FixedUpdate);
    }
    let seen = network.server.world().resource::<Seen>();
    assert_eq!(
        seen.simulation_runs,
        runs_before + 10,
        "the simulation re-ran"
    );
    assert!(
        seen.pings.is_empty(),
        "nothing was drained from the IO channel"
    );
    let server_after = network
        .server
        .world()
        .resource::<MokoshServer>()
        .metrics()
        .snapshot();
    assert_eq!(server_after.messages_in, server_before.messages_in);
    assert_eq!(
        server_after.messages_out, server_before.messages_out,
        "nothing was sent"
    );
    assert_eq!(server_after.bytes_out, server_before.bytes_out);
    assert_eq!(tick(&network.server), server_tick, "the tick did not move");

    // The client side: re-running its simulation sends nothing either.
    let client_tick = tick(&network.clients[0]);
    let client_before = network.clients[0]
        .world()
        .resource::<MokoshClient>()
        .stats();
    for _ in 0..10 {
        network.clients[0].world_mut().run_schedule(FixedUpdate);
    }
    let client_after = network.clients[0]
        .world()
        .resource::<MokoshClient>()
        .stats();
    assert_eq!(client_after.packets_out, client_before.packets_out);
    assert_eq!(client_after.packets_in, client_before.packets_in);
    assert_eq!(tick(&network.clients[0]), client_tick);

    // A real step then receives what was waiting: the test above could fail.
    network.server.update();
    assert!(!network.server.world().resource::<Seen>().pings.is_empty());
    assert_eq!(tick(&network.server), server_tick + 1);
}

// --------------------------------------------- registration and direction

fn record_inputs(mut seen: ResMut<Seen>, mut inbox: MessageReader<FromClient<Input>>) {
    for input in inbox.read() {
        seen.inputs.push((input.client_id, input.message.0));
    }
}

fn answer_inputs(mut seen: ResMut<Seen>, mut outbox: MessageWriter<ToClients<Snapshot>>) {
    for (client, value) in seen.inputs.drain(..) {
        outbox.write(ToClients::to(client, Snapshot(value * 10)));
    }
}

fn record_snapshots(mut seen: ResMut<Seen>, mut inbox: MessageReader<FromServer<Snapshot>>) {
    for snapshot in inbox.read() {
        seen.snapshots.push(snapshot.message.0);
    }
}

fn register(app: &mut App) {
    app.add_client_message::<Input>()
        .add_server_message::<Snapshot>();
}

/// A server and a client app, registering their messages before or after
/// adding the Mokosh plugin.
fn network(register_first: bool) -> TestNetwork {
    let keypair = KeyPair::generate().unwrap();
    let mut server = headless_app();
    let mut client = headless_app();
    if register_first {
        register(&mut server);
        register(&mut client);
    }
    server.add_plugins(MokoshServerPlugin::new(
        ServerPluginConfig::memory(keypair.clone()).with_auth(Arc::new(DevAuthProvider::new())),
    ));
    client.add_plugins(MokoshClientPlugin::new(ClientPluginConfig::new(
        keypair.public(),
        "player",
    )));
    if !register_first {
        register(&mut server);
        register(&mut client);
    }
    server
        .init_resource::<Seen>()
        .add_systems(FixedUpdate, (record_inputs, answer_inputs).chain());
    client
        .init_resource::<Seen>()
        .add_systems(FixedUpdate, record_snapshots);
    TestNetwork::new(server, vec![client])
}

fn exchange(mut network: TestNetwork) {
    assert!(network.run_until(60, |net| net.all_connected()));
    network.clients[0]
        .world_mut()
        .write_message(ToServer::new(Input(7)));
    assert!(network.run_until(30, |net| {
        !net.clients[0]
            .world()
            .resource::<Seen>()
            .snapshots
            .is_empty()
    }));
    assert_eq!(
        network.clients[0].world().resource::<Seen>().snapshots,
        [70]
    );
}

#[test]
fn messages_registered_before_the_plugins_flow() {
    exchange(network(true));
}

#[test]
fn messages_registered_after_the_plugins_flow() {
    exchange(network(false));
}

#[test]
fn each_side_gets_only_the_messages_of_its_directions() {
    let network = network(false);
    let server = network.server.world();
    assert!(server.contains_resource::<Messages<FromClient<Input>>>());
    assert!(!server.contains_resource::<Messages<ToClients<Input>>>());
    assert!(server.contains_resource::<Messages<ToClients<Snapshot>>>());
    assert!(!server.contains_resource::<Messages<FromClient<Snapshot>>>());
    let client = network.clients[0].world();
    assert!(client.contains_resource::<Messages<ToServer<Input>>>());
    assert!(!client.contains_resource::<Messages<FromServer<Input>>>());
    assert!(client.contains_resource::<Messages<FromServer<Snapshot>>>());
    assert!(!client.contains_resource::<Messages<ToServer<Snapshot>>>());
    // The direction is part of the protocol registry (and so of its hash).
    let registry = server.resource::<mokosh_net::shared::ProtocolRegistry>();
    let input = registry.registry().get(101).unwrap();
    assert_eq!(
        input.direction,
        mokosh_net::protocol::Direction::ClientToServer
    );
}

#[test]
fn registering_a_message_twice_adds_its_systems_once() {
    let keypair = KeyPair::generate().unwrap();
    let mut server = server_app(keypair.clone(), |_| {});
    server
        .add_game_message::<Ping>()
        .add_game_message::<Ping>()
        .init_resource::<Seen>()
        .add_systems(FixedUpdate, simulate_server);
    let mut client = client_app(keypair.public(), "player", |_| {});
    client.add_game_message::<Ping>().add_game_message::<Ping>();
    let mut network = TestNetwork::new(server, vec![client]);
    assert!(network.run_until(60, |net| net.all_connected()));
    network.clients[0]
        .world_mut()
        .write_message(ToServer::new(Ping(5)));
    assert!(network.run_until(30, |net| {
        !net.server.world().resource::<Seen>().pings.is_empty()
    }));
    network.step();
    // Two dispatchers would deliver the message twice.
    assert_eq!(network.server.world().resource::<Seen>().pings, [5]);
}

// ----------------------------------------------------- client lifecycle

fn entered(mut seen: ResMut<Seen>) {
    seen.entered += 1;
}

fn exited(mut seen: ResMut<Seen>) {
    seen.exited += 1;
}

#[test]
fn on_enter_and_on_exit_connected_run_once_each() {
    let keypair = KeyPair::generate().unwrap();
    let server = server_app(keypair.clone(), |_| {});
    let mut client = client_app(keypair.public(), "player", |_| {});
    client
        .init_resource::<Seen>()
        .add_systems(OnEnter(ClientState::Connected), entered)
        .add_systems(OnExit(ClientState::Connected), exited);
    let mut network = TestNetwork::new(server, vec![client]);
    assert!(network.run_until(60, |net| is_connected(&net.clients[0])));
    for _ in 0..5 {
        network.step();
    }
    let seen = network.clients[0].world().resource::<Seen>();
    assert_eq!((seen.entered, seen.exited), (1, 0));
    let connected = network.clients[0]
        .world_mut()
        .run_system_cached(mokosh_net::client::client_connected)
        .unwrap();
    assert!(connected, "the run condition agrees with the state");

    network.clients[0]
        .world_mut()
        .resource_mut::<MokoshClient>()
        .disconnect();
    assert!(network.run_until(30, |net| {
        *net.clients[0]
            .world()
            .resource::<State<ClientState>>()
            .get()
            == ClientState::Disconnected
    }));
    let seen = network.clients[0].world().resource::<Seen>();
    assert_eq!((seen.entered, seen.exited), (1, 1));
}

// ------------------------------------------------ plugin composition

/// `MinimalPlugins` without the umbrella crate: task pools, time, a runner.
fn minimal_plugins(app: &mut App) {
    app.add_plugins((
        TaskPoolPlugin::default(),
        TimePlugin,
        ScheduleRunnerPlugin::default(),
    ));
}

#[test]
fn minimal_plugins_may_come_before_or_after_the_mokosh_plugins() {
    let keypair = KeyPair::generate().unwrap();
    for minimal_first in [true, false] {
        let mut app = App::new();
        if minimal_first {
            minimal_plugins(&mut app);
        }
        app.add_plugins(MokoshServerPlugin::new(ServerPluginConfig::memory(
            keypair.clone(),
        )))
        .add_plugins(MokoshClientPlugin::new(ClientPluginConfig::new(
            keypair.public(),
            "player",
        )));
        if !minimal_first {
            minimal_plugins(&mut app);
        }
        app.finish();
        app.cleanup();
        app.update();
        assert!(app.is_plugin_added::<TimePlugin>());
        assert!(app.world().contains_resource::<State<ClientState>>());
    }
}

#[test]
fn the_plugins_add_time_when_the_app_has_none() {
    let keypair = KeyPair::generate().unwrap();
    let mut app = App::new();
    app.add_plugins(MokoshServerPlugin::new(ServerPluginConfig::memory(keypair)));
    app.finish();
    app.cleanup();
    app.update();
    assert!(app.is_plugin_added::<TimePlugin>());
}

// --------------------------------------------------------- start-up errors

#[derive(Resource, Default)]
struct Failures(Vec<Arc<ServerStartError>>);

fn record_failures(mut failures: ResMut<Failures>, mut reader: MessageReader<ServerStartFailed>) {
    failures
        .0
        .extend(reader.read().map(|failed| failed.error.clone()));
}

fn websocket_server(config: ServerPluginConfig) -> App {
    let mut app = headless_app();
    app.add_plugins(MokoshServerPlugin::new(config))
        .init_resource::<Failures>()
        .add_systems(bevy_app::Update, record_failures);
    app.finish();
    app.cleanup();
    app.update();
    app
}

fn server_is_running(app: &mut App) -> bool {
    app.world_mut().run_system_cached(server_running).unwrap()
}

#[test]
fn an_address_in_use_is_an_error_the_app_sees_not_a_panic() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let keypair = KeyPair::generate().unwrap();
    let mut app = websocket_server(ServerPluginConfig::websocket(addr, keypair));
    let failures = &app.world().resource::<Failures>().0;
    assert_eq!(failures.len(), 1);
    assert!(
        matches!(&*failures[0], ServerStartError::Bind { addr: failed, .. } if *failed == addr),
        "{:?}",
        failures[0]
    );
    let server = app.world().resource::<MokoshServer>();
    assert!(matches!(
        server.start_error(),
        Some(ServerStartError::Bind { .. })
    ));
    assert_eq!(server.local_addr(), None);
    assert!(!server_is_running(&mut app));
    // The app keeps running (nothing to serve).
    app.update();
}

#[test]
fn a_metrics_address_in_use_is_an_error_but_the_game_server_runs() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = taken.local_addr().unwrap();
    let keypair = KeyPair::generate().unwrap();
    let config = ServerPluginConfig::websocket("127.0.0.1:0".parse().unwrap(), keypair)
        .with_metrics(metrics_addr);
    let mut app = websocket_server(config);
    let failures = &app.world().resource::<Failures>().0;
    assert_eq!(failures.len(), 1);
    assert!(matches!(&*failures[0], ServerStartError::Metrics { .. }));
    assert!(
        app.world()
            .resource::<MokoshServer>()
            .local_addr()
            .is_some()
    );
    assert!(server_is_running(&mut app));
}
