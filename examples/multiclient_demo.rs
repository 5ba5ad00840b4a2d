//! `multiclient_demo`: one WebSocket server, many clients, the three ways to
//! address them.
//!
//! ```text
//! cargo run --example multiclient_demo [-- --clients 8]
//! ```
//!
//! A server on an ephemeral `127.0.0.1` port and `--clients N` client apps
//! (default 8) run in this process, stepped in turn from `main`. Once every
//! client is in:
//!
//! * each client sends `INPUTS` `PlayerInput`s, one per tick;
//! * the server broadcasts a `WorldSnapshot` to everyone every third tick
//!   (`SendTarget::All`), with each player's last applied input;
//! * it greets each client privately when it joins (`SendTarget::Client`);
//! * when a client's last input arrives, it tells everyone else
//!   (`SendTarget::AllExcept`).
//!
//! Each client then checks it got exactly one greeting, addressed to itself;
//! one notice about every other client and none about itself; and snapshots
//! showing all its inputs applied. Prints per-client counts and the server's
//! metrics. Exits 0 when every client got what it should, 1 otherwise.

mod common;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_app::{App, FixedUpdate};
use bevy_ecs::prelude::*;
use common::{Args, PlayerInput, PlayerState, WorldSnapshot, realtime_app, started, step_until};
use mokosh::GameMessage;
use mokosh::auth::DevAuthProvider;
use mokosh::client::{
    ClientPluginConfig, ConnectTarget, ConnectionState, FromServer, MokoshClient,
    MokoshClientPlugin, ToServer,
};
use mokosh::protocol::KeyPair;
use mokosh::server::{
    ClientConnected, FromClient, MokoshServer, MokoshServerPlugin, SendTarget, ServerPluginConfig,
    ToClients,
};
use mokosh::shared::{ClientId, MokoshAppExt};
use serde::{Deserialize, Serialize};

const TICK_HZ: f64 = 64.0;
/// Inputs each client sends (about one second at 64 Hz, under the default
/// rate limit of 100 messages/s).
const INPUTS: u32 = 60;

/// Server → one client, when it joins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 110]
struct Welcome {
    /// The client this greeting is for.
    to: u64,
    players_online: u32,
}

/// Server → every client but one: "`about` sent all its inputs".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 111]
struct Finished {
    about: u64,
}

// ------------------------------------------------------------------ server

#[derive(Resource, Default)]
struct ServerState {
    tick: u64,
    expected_clients: usize,
    players: BTreeMap<ClientId, PlayerState>,
    inputs_received: BTreeMap<ClientId, u32>,
}

fn greet(
    mut state: ResMut<ServerState>,
    mut joined: MessageReader<ClientConnected>,
    mut outbox: MessageWriter<ToClients<Welcome>>,
) {
    for join in joined.read() {
        state.players.insert(
            join.client_id,
            PlayerState {
                client_id: join.client_id.0,
                position: (0.0, 0.0),
                last_input: 0,
            },
        );
        let players_online = state.players.len() as u32;
        outbox.write(ToClients::new(
            SendTarget::Client(join.client_id),
            Welcome {
                to: join.client_id.0,
                players_online,
            },
        ));
    }
}

fn apply_inputs(
    mut state: ResMut<ServerState>,
    mut inputs: MessageReader<FromClient<PlayerInput>>,
    mut outbox: MessageWriter<ToClients<Finished>>,
) {
    for input in inputs.read() {
        *state.inputs_received.entry(input.client_id).or_default() += 1;
        if let Some(player) = state.players.get_mut(&input.client_id) {
            player.position.0 += input.message.direction.0 * 0.1;
            player.position.1 += input.message.direction.1 * 0.1;
            player.last_input = input.message.sequence;
        }
        if input.message.sequence == INPUTS {
            outbox.write(ToClients::new(
                SendTarget::AllExcept(input.client_id),
                Finished {
                    about: input.client_id.0,
                },
            ));
        }
    }
}

fn broadcast(mut state: ResMut<ServerState>, mut outbox: MessageWriter<ToClients<WorldSnapshot>>) {
    state.tick += 1;
    // Start once everyone is in, so every client sees every notice.
    if state.players.len() < state.expected_clients || !state.tick.is_multiple_of(3) {
        return;
    }
    outbox.write(ToClients::new(
        SendTarget::All,
        WorldSnapshot {
            tick: state.tick,
            players: state.players.values().cloned().collect(),
        },
    ));
}

// ------------------------------------------------------------------ clients

#[derive(Resource, Default)]
struct Tally {
    sent: u32,
    snapshots: u32,
    /// Our own last input as the latest snapshot shows it.
    acknowledged: u32,
    welcomes: Vec<Welcome>,
    notices: Vec<u64>,
}

/// Sends one input per tick, starting with the first snapshot (which the
/// server only sends once everyone is connected).
fn play(
    mut tally: ResMut<Tally>,
    state: Res<ConnectionState>,
    mut snapshots: MessageReader<FromServer<WorldSnapshot>>,
    mut welcomes: MessageReader<FromServer<Welcome>>,
    mut notices: MessageReader<FromServer<Finished>>,
    mut outbox: MessageWriter<ToServer<PlayerInput>>,
) {
    let ConnectionState::Connected { client_id } = *state else {
        return;
    };
    for snapshot in snapshots.read() {
        tally.snapshots += 1;
        if let Some(me) = snapshot
            .message
            .players
            .iter()
            .find(|p| p.client_id == client_id.0)
        {
            tally.acknowledged = me.last_input;
        }
    }
    tally
        .welcomes
        .extend(welcomes.read().map(|w| w.message.clone()));
    tally
        .notices
        .extend(notices.read().map(|n| n.message.about));
    if tally.snapshots > 0 && tally.sent < INPUTS {
        tally.sent += 1;
        let angle = tally.sent as f32 * 0.1 + client_id.0 as f32;
        outbox.write(ToServer::new(PlayerInput {
            sequence: tally.sent,
            direction: (angle.cos(), angle.sin()),
            buttons: 0,
        }));
    }
}

fn client_id(app: &App) -> Option<ClientId> {
    match app.world().resource::<ConnectionState>() {
        ConnectionState::Connected { client_id } => Some(*client_id),
        _ => None,
    }
}

/// Whether this client got everything it should (with `clients` in total).
fn complete(app: &App, clients: usize) -> bool {
    let tally = app.world().resource::<Tally>();
    tally.acknowledged == INPUTS && tally.notices.len() + 1 >= clients
}

fn main() -> ExitCode {
    common::init_logging();
    let args = Args::parse();
    let clients: usize = args.value("clients").map_or(8, |text| {
        text.parse()
            .ok()
            .filter(|n| *n >= 1)
            .unwrap_or_else(|| common::fail("--clients takes a positive number"))
    });

    let keypair = KeyPair::generate().expect("OS randomness");
    let mut config =
        ServerPluginConfig::websocket("127.0.0.1:0".parse().expect("valid"), keypair.clone());
    config.auth = Some(Arc::new(DevAuthProvider::new()));
    let mut server = realtime_app(TICK_HZ);
    server
        .add_plugins(MokoshServerPlugin::new(config))
        .add_game_message::<PlayerInput>()
        .add_game_message::<WorldSnapshot>()
        .add_game_message::<Welcome>()
        .add_game_message::<Finished>()
        .insert_resource(ServerState {
            expected_clients: clients,
            ..ServerState::default()
        })
        .add_systems(FixedUpdate, (greet, apply_inputs, broadcast).chain());
    let mut server = started(server);
    server.update();
    let addr = server
        .world()
        .resource::<MokoshServer>()
        .local_addr()
        .expect("listening");
    println!("server on ws://{addr}; connecting {clients} clients");

    let mut apps = vec![server];
    for index in 0..clients {
        let mut app = realtime_app(TICK_HZ);
        app.add_plugins(MokoshClientPlugin::new(ClientPluginConfig::new(
            keypair.public(),
            format!("player-{index}"),
        )))
        .add_game_message::<PlayerInput>()
        .add_game_message::<WorldSnapshot>()
        .add_game_message::<Welcome>()
        .add_game_message::<Finished>()
        .init_resource::<Tally>()
        .add_systems(FixedUpdate, play);
        let mut app = started(app);
        app.world_mut()
            .resource_mut::<MokoshClient>()
            .connect(ConnectTarget::WebSocket(format!("ws://{addr}")));
        apps.push(app);
    }

    let start = Instant::now();
    let all_in = step_until(&mut apps, Duration::from_secs(8), |apps| {
        apps[1..].iter().all(|app| client_id(app).is_some())
    });
    println!(
        "{} of {clients} clients connected after {:.2} s",
        apps[1..]
            .iter()
            .filter(|app| client_id(app).is_some())
            .count(),
        start.elapsed().as_secs_f64()
    );
    let done = all_in
        && step_until(&mut apps, Duration::from_secs(10), |apps| {
            apps[1..].iter().all(|app| complete(app, clients))
        });
    // A few more ticks so the last snapshots and notices arrive everywhere.
    step_until(&mut apps, Duration::from_millis(100), |_| false);
    println!(
        "exchange finished after {:.2} s",
        start.elapsed().as_secs_f64()
    );

    // ---- verification and report
    let server_state = apps[0].world().resource::<ServerState>();
    let mut ok = done;
    println!(
        "client    | inputs sent | received by server | snapshots | acked | welcome | notices (others / about self)"
    );
    for app in &apps[1..] {
        let Some(id) = client_id(app) else {
            println!(
                "(a client is not connected: {:?})",
                app.world().resource::<ConnectionState>()
            );
            ok = false;
            continue;
        };
        let tally = app.world().resource::<Tally>();
        let received = server_state.inputs_received.get(&id).copied().unwrap_or(0);
        let welcome_ok = tally.welcomes.len() == 1 && tally.welcomes[0].to == id.0;
        let about_self = tally.notices.iter().filter(|about| **about == id.0).count();
        let mut others: Vec<u64> = tally.notices.clone();
        others.sort_unstable();
        others.dedup();
        let notices_ok =
            about_self == 0 && others.len() == clients - 1 && tally.notices.len() == clients - 1;
        let client_ok = welcome_ok
            && notices_ok
            && received == INPUTS
            && tally.sent == INPUTS
            && tally.acknowledged == INPUTS
            && tally.snapshots > 0;
        println!(
            "{:<9} | {:11} | {:18} | {:9} | {:5} | {:7} | {} / {}{}",
            id.to_string(),
            tally.sent,
            received,
            tally.snapshots,
            tally.acknowledged,
            if welcome_ok { "ok" } else { "WRONG" },
            tally.notices.len() - about_self,
            about_self,
            if client_ok { "" } else { "   <-- FAIL" }
        );
        ok &= client_ok;
    }
    let server = apps[0].world().resource::<MokoshServer>();
    let metrics = server.metrics().snapshot();
    println!(
        "server metrics: connections total {} active {}, messages in {} out {}, bytes in {} out {}, rejections {}",
        metrics.connections_total,
        metrics.connections_active,
        metrics.messages_in,
        metrics.messages_out,
        metrics.bytes_in,
        metrics.bytes_out,
        metrics.rejected_total()
    );
    if let Some(io) = server.io_counters() {
        println!(
            "server IO: accepted {} active {}, frames in {} out {}",
            io.connections_accepted, io.connections_active, io.frames_in, io.frames_out
        );
    }
    ok &= metrics.rejected_total() == 0;

    if ok {
        println!(
            "OK: every client got its private welcome, the broadcasts and every other client's notice"
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("FAIL: see the table above");
        ExitCode::FAILURE
    }
}
