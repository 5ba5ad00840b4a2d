//! `websocket_echo_test`: a server and a client over real WebSocket on
//! loopback, in one process. The server echoes every `Ping` back to its sender;
//! the client sends `--messages N` (default 200) of them, checks that every echo
//! comes back exactly once and in order, and prints the round-trip times.
//!
//! ```text
//! cargo run --example websocket_echo_test [-- --messages 200]
//! ```
//!
//! Both apps are stepped by hand from `main` (no `App::run`): the server
//! listens on `127.0.0.1:0` (an ephemeral port, so it never collides with a
//! running `test_server`), the client connects to the address it bound.
//!
//! The round-trip times are measured by this program (send → echo received,
//! through both apps' fixed ticks at 200 Hz, the WebSocket, and encryption)
//! and only printed: they depend on the machine. The exit status is 0 when
//! every echo arrived in order, 1 otherwise.

mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_app::FixedUpdate;
use bevy_ecs::prelude::*;
use common::{Args, ms, realtime_app, started, step_until};
use mokosh::GameMessage;
use mokosh::auth::DevAuthProvider;
use mokosh::client::{
    ClientPluginConfig, ConnectTarget, ConnectionState, FromServer, MokoshClient,
    MokoshClientPlugin, ToServer, client_connected,
};
use mokosh::protocol::KeyPair;
use mokosh::protocol::rate_limit::RateLimitConfig;
use mokosh::server::{
    FromClient, MokoshServer, MokoshServerPlugin, SendTarget, ServerPluginConfig, ToClients,
};
use mokosh::shared::MokoshAppExt;
use serde::{Deserialize, Serialize};

/// The fixed tick of both apps. Round trips are quantized to it.
const TICK_HZ: f64 = 200.0;
/// Most pings in flight at once (a pipelined, but bounded, stream).
const WINDOW: u32 = 8;

/// Client → server; echoed back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 200]
struct Ping {
    sequence: u32,
    /// Some payload, so the frames are not trivially small.
    text: String,
}

/// The server's only game logic: send each `Ping` back to whoever sent it.
fn echo(mut inbox: MessageReader<FromClient<Ping>>, mut outbox: MessageWriter<ToClients<Ping>>) {
    for ping in inbox.read() {
        outbox.write(ToClients::new(
            SendTarget::Client(ping.client_id),
            ping.message.clone(),
        ));
    }
}

/// The client's bookkeeping.
#[derive(Resource)]
struct Probe {
    total: u32,
    next: u32,
    sent_at: Vec<Instant>,
    rtts: Vec<Duration>,
    /// Echoes that arrived with an unexpected sequence number.
    out_of_order: Vec<(u32, u32)>,
    corrupted: u32,
}

/// Keeps at most `WINDOW` pings in flight.
fn send_pings(mut probe: ResMut<Probe>, mut outbox: MessageWriter<ToServer<Ping>>) {
    while probe.next < probe.total
        && probe.next - probe.rtts.len() as u32 - probe.corrupted < WINDOW
    {
        let sequence = probe.next;
        probe.sent_at.push(Instant::now());
        outbox.write(ToServer::new(Ping {
            sequence,
            text: format!("ping number {sequence} over the loopback WebSocket"),
        }));
        probe.next += 1;
    }
}

fn receive_echoes(mut probe: ResMut<Probe>, mut inbox: MessageReader<FromServer<Ping>>) {
    for echo in inbox.read() {
        let expected = (probe.rtts.len() + probe.out_of_order.len()) as u32;
        let sequence = echo.message.sequence;
        if sequence != expected {
            probe.out_of_order.push((expected, sequence));
            continue;
        }
        if echo.message.text != format!("ping number {sequence} over the loopback WebSocket") {
            probe.corrupted += 1;
            continue;
        }
        let rtt = probe.sent_at[sequence as usize].elapsed();
        probe.rtts.push(rtt);
    }
}

fn main() -> ExitCode {
    common::init_logging();
    let args = Args::parse();
    let total: u32 = args.value("messages").map_or(200, |text| {
        text.parse()
            .unwrap_or_else(|_| common::fail("--messages takes a number"))
    });
    // Both sides limit what their peer may send; the defaults (100 messages/s)
    // are sized for player input, and this test deliberately sends faster.
    let rate_limit = RateLimitConfig {
        messages_per_sec: 5_000,
        message_burst: 5_000,
        ..RateLimitConfig::default()
    };

    // --- the server: WebSocket on an ephemeral loopback port.
    let keypair = KeyPair::generate().expect("OS randomness");
    let mut server_config = ServerPluginConfig::websocket(
        "127.0.0.1:0".parse().expect("valid address"),
        keypair.clone(),
    );
    server_config.auth = Some(Arc::new(DevAuthProvider::new()));
    server_config.session.rate_limit = rate_limit;
    let mut server = realtime_app(TICK_HZ);
    server
        .add_plugins(MokoshServerPlugin::new(server_config))
        .add_game_message::<Ping>()
        .add_systems(FixedUpdate, echo);
    let mut server = started(server);
    server.update(); // Startup: binds the listener
    let addr = server
        .world()
        .resource::<MokoshServer>()
        .local_addr()
        .expect("the server is listening");
    println!("server listening on ws://{addr}");

    // --- the client: pins the server's key, connects to the bound address.
    let mut client_config = ClientPluginConfig::new(keypair.public(), "echo-tester");
    client_config.session.rate_limit = rate_limit;
    let mut client = realtime_app(TICK_HZ);
    client
        .add_plugins(MokoshClientPlugin::new(client_config))
        .add_game_message::<Ping>()
        .insert_resource(Probe {
            total,
            next: 0,
            sent_at: Vec::with_capacity(total as usize),
            rtts: Vec::with_capacity(total as usize),
            out_of_order: Vec::new(),
            corrupted: 0,
        })
        .add_systems(
            FixedUpdate,
            (receive_echoes, send_pings.run_if(client_connected)).chain(),
        );
    let mut client = started(client);
    client
        .world_mut()
        .resource_mut::<MokoshClient>()
        .connect(ConnectTarget::WebSocket(format!("ws://{addr}")));

    let mut apps = [server, client];
    let started_at = Instant::now();
    let connected = step_until(&mut apps, Duration::from_secs(5), |apps| {
        matches!(
            apps[1].world().resource::<ConnectionState>(),
            ConnectionState::Connected { .. }
        )
    });
    if !connected {
        eprintln!(
            "FAIL: the client did not connect within 5 s: {:?}",
            apps[1].world().resource::<ConnectionState>()
        );
        return ExitCode::FAILURE;
    }
    println!(
        "connected in {:.1} ms; sending {total} pings, at most {WINDOW} in flight",
        ms(started_at.elapsed())
    );

    let sending = Instant::now();
    step_until(&mut apps, Duration::from_secs(12), |apps| {
        let probe = apps[1].world().resource::<Probe>();
        probe.rtts.len() as u32 + probe.corrupted >= probe.total || !probe.out_of_order.is_empty()
    });
    let elapsed = sending.elapsed();

    let [server, client] = &apps;
    let probe = client.world().resource::<Probe>();
    let stats = client.world().resource::<MokoshClient>().stats();
    let metrics = server
        .world()
        .resource::<MokoshServer>()
        .metrics()
        .snapshot();
    println!(
        "sent {}  echoed in order {}  out of order {}  corrupted {}  in {:.2} s",
        probe.next,
        probe.rtts.len(),
        probe.out_of_order.len(),
        probe.corrupted,
        elapsed.as_secs_f64()
    );
    println!(
        "client session: {} packets / {} bytes out, {} packets / {} bytes in",
        stats.packets_out, stats.bytes_out, stats.packets_in, stats.bytes_in
    );
    println!(
        "server: {} messages in, {} messages out",
        metrics.messages_in, metrics.messages_out
    );
    if !probe.rtts.is_empty() {
        let mut sorted = probe.rtts.clone();
        sorted.sort();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        println!(
            "round trip (ms, {} samples, {TICK_HZ} Hz ticks): min {:.2}  median {:.2}  p99 {:.2}  max {:.2}",
            sorted.len(),
            ms(sorted[0]),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(sorted[sorted.len() - 1])
        );
    }

    let ok =
        probe.rtts.len() as u32 == total && probe.out_of_order.is_empty() && probe.corrupted == 0;
    if ok {
        println!("OK: all {total} echoes arrived, in order");
        ExitCode::SUCCESS
    } else {
        if let Some((expected, got)) = probe.out_of_order.first() {
            eprintln!("FAIL: expected echo {expected}, got {got}");
        }
        eprintln!(
            "FAIL: {} of {total} echoes arrived intact",
            probe.rtts.len()
        );
        ExitCode::FAILURE
    }
}
