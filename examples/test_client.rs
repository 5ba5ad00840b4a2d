//! A headless Rust client for `test_server`.
//!
//! ```text
//! cargo run --example test_client [-- --addr ws://127.0.0.1:8080] [--seconds 10]
//!                                    [--key HEX | --key-file .mokosh/test_server.pub]
//!                                    [--token NAME] [--latency-ms N] [--jitter-ms N]
//! ```
//!
//! `--latency-ms` / `--jitter-ms` put a link conditioner in front of the
//! client's outbound link; the printed RTT includes it.
//!
//! Connects, sends one input per tick and a chat line, prints its RTT and what
//! it receives once a second, and exits 0 after `--seconds` (default 10) if it
//! connected and received snapshots. Exit status 3: could not connect or
//! complete the handshake in 5 s; 4: disconnected early; 5: no replies; 2: bad
//! arguments or no server key.

mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bevy_app::{App, AppExit, FixedUpdate, ScheduleRunnerPlugin, Startup, Update};
use bevy_ecs::prelude::*;
use common::{Args, Chat, PlayerInput, WorldSnapshot, default_key_dir};
use mokosh::client::{
    ClientPluginConfig, ConnectTarget, ConnectionState, DisconnectedFromServer, FromServer,
    MokoshClient, MokoshClientPlugin, ToServer, client_connected,
};
use mokosh::protocol::PublicKey;
use mokosh::shared::MokoshAppExt;

#[derive(Resource)]
struct Run {
    url: String,
    started: Instant,
    limit: Duration,
    last_report: Instant,
    sequence: u32,
    snapshots: u64,
    chats: u64,
    last_tick: u64,
    connected_at: Option<Instant>,
    said_hello: bool,
    stopping: Option<Instant>,
}

fn main() -> ExitCode {
    common::init_logging();
    let args = Args::parse();
    let mut url = args
        .value("addr")
        .unwrap_or("ws://127.0.0.1:8080")
        .to_owned();
    if !url.contains("://") {
        url = format!("ws://{url}");
    }
    let key = match args.value("key") {
        Some(hex) => PublicKey::from_hex(hex),
        None => {
            let path = args
                .value("key-file")
                .map(Into::into)
                .unwrap_or_else(|| default_key_dir().join("test_server.pub"));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
                common::fail(&format!(
                    "cannot read the server's public key from {}: {error} (start test_server first, or pass --key)",
                    path.display()
                ))
            });
            PublicKey::from_hex(&text)
        }
    }
    .unwrap_or_else(|error| common::fail(&format!("server key: {error}")));
    // A token per process by default: the development provider makes it the
    // identity, and one identity holds at most four sessions.
    let token = args.value("token").map_or_else(
        || format!("test-client-{}", std::process::id()),
        str::to_owned,
    );
    let limit = args.seconds().unwrap_or(Duration::from_secs(10));
    let mut config = ClientPluginConfig::new(key, token);
    if let Some(conditioner) = args.link_conditioner() {
        config = config.with_link_conditioner(conditioner);
    }

    let exit = App::new()
        .add_plugins(ScheduleRunnerPlugin::run_loop(Duration::from_millis(2)))
        .add_plugins(MokoshClientPlugin::new(config))
        .add_game_message::<PlayerInput>()
        .add_game_message::<WorldSnapshot>()
        .add_game_message::<Chat>()
        .insert_resource(Run {
            url,
            started: Instant::now(),
            limit,
            last_report: Instant::now(),
            sequence: 0,
            snapshots: 0,
            chats: 0,
            last_tick: 0,
            connected_at: None,
            said_hello: false,
            stopping: None,
        })
        .add_systems(Startup, connect)
        .add_systems(FixedUpdate, (send_input.run_if(client_connected), receive))
        .add_systems(Update, (report, finish))
        .run();
    match exit {
        AppExit::Success => ExitCode::SUCCESS,
        AppExit::Error(code) => ExitCode::from(code.get()),
    }
}

fn connect(mut client: ResMut<MokoshClient>, run: Res<Run>) {
    println!("connecting to {}", run.url);
    client.connect(ConnectTarget::WebSocket(run.url.clone()));
}

fn send_input(
    mut run: ResMut<Run>,
    mut inputs: MessageWriter<ToServer<PlayerInput>>,
    mut chat: MessageWriter<ToServer<Chat>>,
) {
    run.sequence += 1;
    let angle = run.sequence as f32 * 0.05;
    inputs.write(ToServer::new(PlayerInput {
        sequence: run.sequence,
        direction: (angle.cos(), angle.sin()),
        buttons: 0,
    }));
    if !run.said_hello {
        run.said_hello = true;
        chat.write(ToServer::new(Chat {
            from: 0,
            text: "hello from test_client".into(),
        }));
    }
}

fn receive(
    mut run: ResMut<Run>,
    mut snapshots: MessageReader<FromServer<WorldSnapshot>>,
    mut chats: MessageReader<FromServer<Chat>>,
) {
    for snapshot in snapshots.read() {
        run.snapshots += 1;
        run.last_tick = snapshot.message.tick;
    }
    for chat in chats.read() {
        run.chats += 1;
        println!(
            "chat from client#{}: {}",
            chat.message.from, chat.message.text
        );
    }
}

fn report(mut run: ResMut<Run>, client: Res<MokoshClient>, state: Res<ConnectionState>) {
    if let ConnectionState::Connected { client_id } = *state
        && run.connected_at.is_none()
    {
        run.connected_at = Some(Instant::now());
        println!(
            "connected as {client_id} in {:.1} ms",
            run.started.elapsed().as_secs_f64() * 1e3
        );
    }
    if run.last_report.elapsed() >= Duration::from_secs(1) && run.connected_at.is_some() {
        run.last_report = Instant::now();
        let rtt = client.rtt();
        println!(
            "rtt {:.2} ms (jitter {:.2} ms, {} samples) snapshots {} (server tick {}) inputs sent {}",
            rtt.smoothed.as_secs_f64() * 1e3,
            rtt.jitter.as_secs_f64() * 1e3,
            rtt.samples,
            run.snapshots,
            run.last_tick,
            run.sequence
        );
    }
}

fn finish(
    mut run: ResMut<Run>,
    mut client: ResMut<MokoshClient>,
    mut disconnected: MessageReader<DisconnectedFromServer>,
    mut exit: MessageWriter<AppExit>,
) {
    if let Some(gone) = disconnected.read().next() {
        if run.stopping.is_some() {
            exit.write(summary(&run, &client));
        } else {
            eprintln!(
                "disconnected: {} ({:?}) {}",
                gone.reason, gone.initiator, gone.detail
            );
            exit.write(AppExit::from_code(if run.connected_at.is_some() {
                4
            } else {
                3
            }));
        }
        return;
    }
    if run.connected_at.is_none() && run.started.elapsed() > Duration::from_secs(5) {
        eprintln!("could not connect to {} within 5 s", run.url);
        exit.write(AppExit::from_code(3));
        return;
    }
    match run.stopping {
        // Leave politely: the server sees `Requested`, not a lost connection.
        None if run.started.elapsed() >= run.limit => {
            run.stopping = Some(Instant::now());
            client.disconnect();
        }
        Some(since) if since.elapsed() > Duration::from_secs(1) => {
            exit.write(summary(&run, &client));
        }
        _ => {}
    }
}

fn summary(run: &Run, client: &MokoshClient) -> AppExit {
    let rtt = client.rtt();
    println!(
        "test_client done: snapshots {} chats {} inputs {} rtt {:.2} ms",
        run.snapshots,
        run.chats,
        run.sequence,
        rtt.smoothed.as_secs_f64() * 1e3
    );
    if run.snapshots == 0 {
        eprintln!("no replies from the server");
        AppExit::from_code(5)
    } else {
        AppExit::Success
    }
}
