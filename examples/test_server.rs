//! A headless authoritative game server on WebSocket.
//!
//! ```text
//! cargo run --example test_server [-- --addr 127.0.0.1:8080] [--seconds N]
//!                                    [--metrics 127.0.0.1:9100] [--key-dir .mokosh]
//!                                    [--latency-ms N] [--jitter-ms N]
//! ```
//!
//! `--latency-ms` / `--jitter-ms` put a link conditioner in front of every
//! client's outbound link (added one-way delay and random extra delay; frames
//! are never reordered).
//!
//! On first start it creates a Noise key pair in `--key-dir` (default
//! `.mokosh/`): `test_server.key` (private, keep it secret) and
//! `test_server.pub` (the public key clients pin; `test_client` reads it from
//! there by default). It prints one ready line with its address and public key.
//! Players move with `PlayerInput` (validated and clamped by the server); the
//! server broadcasts a `WorldSnapshot` 20 times a second and relays `Chat`.
//! Authentication uses the development provider (everyone is accepted).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_app::{App, AppExit, FixedUpdate, ScheduleRunnerPlugin, Update};
use bevy_ecs::prelude::*;
use common::{Args, Chat, PlayerInput, PlayerState, WorldSnapshot, default_key_dir};
use mokosh::auth::DevAuthProvider;
use mokosh::protocol::KeyPair;
use mokosh::server::{
    ClientConnected, ClientDisconnected, FromClient, MokoshServer, MokoshServerPlugin, SendTarget,
    ServerPluginConfig, ToClients,
};
use mokosh::shared::{ClientId, MokoshAppExt};

/// World units per second at full input.
const SPEED: f32 = 5.0;
/// Snapshot every this many fixed ticks (64 Hz / 3 ≈ 21 Hz).
const SNAPSHOT_EVERY: u64 = 3;

#[derive(Resource, Default)]
struct World {
    tick: u64,
    players: BTreeMap<ClientId, PlayerState>,
}

#[derive(Resource)]
struct RunFor {
    started: Instant,
    limit: Option<Duration>,
    announced: bool,
    key_file: String,
}

fn main() {
    common::init_logging();
    let args = Args::parse();
    let addr: SocketAddr = args
        .value("addr")
        .unwrap_or("127.0.0.1:8080")
        .parse()
        .unwrap_or_else(|error| common::fail(&format!("--addr: {error}")));
    let key_dir = args
        .value("key-dir")
        .map(Into::into)
        .unwrap_or_else(default_key_dir);
    let keypair = load_or_create_keypair(&key_dir);

    let mut config =
        ServerPluginConfig::websocket(addr, keypair).with_auth(Arc::new(DevAuthProvider::new()));
    if let Some(conditioner) = args.link_conditioner() {
        config = config.with_link_conditioner(conditioner);
    }
    if let Some(text) = args.value("metrics") {
        let metrics = text
            .parse()
            .unwrap_or_else(|error| common::fail(&format!("--metrics: {error}")));
        config = config.with_metrics(metrics);
    }

    App::new()
        .add_plugins(ScheduleRunnerPlugin::run_loop(Duration::from_millis(2)))
        .add_plugins(MokoshServerPlugin::new(config))
        .add_game_message::<PlayerInput>()
        .add_game_message::<WorldSnapshot>()
        .add_game_message::<Chat>()
        .init_resource::<World>()
        .insert_resource(RunFor {
            started: Instant::now(),
            limit: args.seconds(),
            announced: false,
            key_file: key_dir.join("test_server.pub").display().to_string(),
        })
        .add_systems(
            FixedUpdate,
            (track_players, apply_inputs, relay_chat, broadcast_snapshot).chain(),
        )
        .add_systems(Update, (announce, stop_after))
        .run();
}

fn load_or_create_keypair(dir: &Path) -> KeyPair {
    let private_path = dir.join("test_server.key");
    let public_path = dir.join("test_server.pub");
    std::fs::create_dir_all(dir)
        .unwrap_or_else(|error| common::fail(&format!("{}: {error}", dir.display())));
    let keypair = KeyPair::load_or_generate(&private_path)
        .unwrap_or_else(|error| common::fail(&format!("{}: {error}", private_path.display())));
    std::fs::write(&public_path, format!("{}\n", keypair.public().to_hex()))
        .unwrap_or_else(|error| common::fail(&format!("{}: {error}", public_path.display())));
    keypair
}

fn track_players(
    mut world: ResMut<World>,
    mut joined: MessageReader<ClientConnected>,
    mut left: MessageReader<ClientDisconnected>,
) {
    for join in joined.read() {
        println!("joined: {} as {:?}", join.client_id, join.identity.user_id);
        world.players.insert(
            join.client_id,
            PlayerState {
                client_id: join.client_id.0,
                position: (0.0, 0.0),
                last_input: 0,
            },
        );
    }
    for leave in left.read() {
        println!("left: {} ({})", leave.client_id, leave.reason);
        world.players.remove(&leave.client_id);
    }
}

/// The server is the authority: inputs are validated and clamped, never trusted.
fn apply_inputs(mut world: ResMut<World>, mut inputs: MessageReader<FromClient<PlayerInput>>) {
    let dt = 1.0 / 64.0;
    for input in inputs.read() {
        let Some(player) = world.players.get_mut(&input.client_id) else {
            continue;
        };
        if input.message.sequence <= player.last_input && player.last_input != 0 {
            continue; // stale or duplicated input
        }
        let (mut x, mut y) = input.message.direction;
        if !x.is_finite() || !y.is_finite() {
            continue;
        }
        let length = (x * x + y * y).sqrt();
        if length > 1.0 {
            x /= length;
            y /= length;
        }
        player.position.0 += x * SPEED * dt;
        player.position.1 += y * SPEED * dt;
        player.last_input = input.message.sequence;
    }
}

fn relay_chat(
    mut inbox: MessageReader<FromClient<Chat>>,
    mut outbox: MessageWriter<ToClients<Chat>>,
) {
    for chat in inbox.read() {
        let text: String = chat.message.text.chars().take(200).collect();
        println!("chat from {}: {text}", chat.client_id);
        outbox.write(ToClients::new(
            SendTarget::All,
            Chat {
                from: chat.client_id.0,
                text,
            },
        ));
    }
}

fn broadcast_snapshot(
    mut world: ResMut<World>,
    mut outbox: MessageWriter<ToClients<WorldSnapshot>>,
) {
    world.tick += 1;
    if !world.tick.is_multiple_of(SNAPSHOT_EVERY) || world.players.is_empty() {
        return;
    }
    outbox.write(ToClients::new(
        SendTarget::All,
        WorldSnapshot {
            tick: world.tick,
            players: world.players.values().cloned().collect(),
        },
    ));
}

fn announce(server: Res<MokoshServer>, mut run: ResMut<RunFor>) {
    if run.announced {
        return;
    }
    let (Some(addr), Some(key)) = (server.local_addr(), server.public_key()) else {
        return;
    };
    run.announced = true;
    let metrics = server
        .metrics_addr()
        .map(|addr| format!(" metrics=http://{addr}/metrics"))
        .unwrap_or_default();
    println!(
        "mokosh test_server ready addr=ws://{addr} public_key={key} key_file={}{metrics}",
        run.key_file
    );
}

fn stop_after(run: Res<RunFor>, server: Res<MokoshServer>, mut exit: MessageWriter<AppExit>) {
    if run
        .limit
        .is_some_and(|limit| run.started.elapsed() >= limit)
    {
        let metrics = server.metrics().snapshot();
        println!("test_server done: {metrics:?}");
        exit.write(AppExit::Success);
    }
}
