//! `keepalive_demo`: keepalive pings, round-trip time and the idle timeout,
//! over WebSocket on loopback.
//!
//! ```text
//! cargo run --example keepalive_demo [-- --seconds 5]
//! ```
//!
//! Part 1 connects a client to a server (both in this process, the server on
//! an ephemeral `127.0.0.1` port) and, every 500 ms for `--seconds` (default
//! 5), prints the smoothed RTT and jitter as each side measures it: the client
//! from `MokoshClient::rtt()`, the server from the connection entity's
//! `ConnectionRtt` component. Both sides ping (the server tells the client the
//! interval, 250 ms here); no game traffic is sent. On loopback the RTT is
//! dominated by the apps' 64 Hz fixed tick (a ping is answered in the peer's
//! next tick), so expect about one tick, ~15 ms, in a debug build.
//!
//! Part 2 shows the idle timeout: a second server configured with a 1 s
//! `idle_timeout` accepts a client, then the client app is frozen (no more
//! `update()` calls — its socket stays open, but nothing answers the pings),
//! and the server disconnects it with `IdleTimeout`.
//!
//! Exits 0 when both sides took RTT samples and the frozen client was dropped
//! for being idle; 1 otherwise.

mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_app::App;
use common::{Args, ms, observe, realtime_app, seen, started, step_until};
use mokosh::auth::DevAuthProvider;
use mokosh::client::{
    ClientPluginConfig, ConnectTarget, ConnectionState, MokoshClient, MokoshClientPlugin,
};
use mokosh::protocol::{DisconnectReason, KeyPair, RttEstimate};
use mokosh::server::{
    ClientDisconnected, ConnectionRtt, MokoshServer, MokoshServerPlugin, ServerPluginConfig,
};
use mokosh::shared::ClientId;

const TICK_HZ: f64 = 64.0;

/// A WebSocket server on an ephemeral loopback port with these timers.
fn server(keypair: &KeyPair, ping_interval: Duration, idle_timeout: Duration) -> App {
    let mut config = ServerPluginConfig::websocket(
        "127.0.0.1:0".parse().expect("valid address"),
        keypair.clone(),
    );
    config.auth = Some(Arc::new(DevAuthProvider::new()));
    // Both are server settings; the server sends them to the client at the
    // handshake, so the client pings at the same interval.
    config.session.ping_interval = ping_interval;
    config.session.idle_timeout = idle_timeout;
    let mut app = realtime_app(TICK_HZ);
    app.add_plugins(MokoshServerPlugin::new(config));
    observe::<ClientDisconnected>(&mut app);
    let mut app = started(app);
    app.update(); // Startup: binds the listener
    app
}

fn client(keypair: &KeyPair, server: &App, name: &str) -> App {
    let addr = server
        .world()
        .resource::<MokoshServer>()
        .local_addr()
        .expect("the server is listening");
    let mut app = realtime_app(TICK_HZ);
    app.add_plugins(MokoshClientPlugin::new(ClientPluginConfig::new(
        keypair.public(),
        name,
    )));
    let mut app = started(app);
    app.world_mut()
        .resource_mut::<MokoshClient>()
        .connect(ConnectTarget::WebSocket(format!("ws://{addr}")));
    app
}

fn connected(app: &App) -> bool {
    matches!(
        app.world().resource::<ConnectionState>(),
        ConnectionState::Connected { .. }
    )
}

/// The server's view of every connected client's RTT.
fn server_rtts(server: &mut App) -> Vec<(ClientId, RttEstimate)> {
    let world = server.world_mut();
    let mut query = world.query::<(&ClientId, &ConnectionRtt)>();
    query.iter(world).map(|(id, rtt)| (*id, rtt.0)).collect()
}

fn describe(rtt: &RttEstimate) -> String {
    format!(
        "smoothed {:6.2} ms  jitter {:6.2} ms  min {:6.2} ms  ({} samples)",
        ms(rtt.smoothed),
        ms(rtt.jitter),
        ms(rtt.min),
        rtt.samples
    )
}

fn main() -> ExitCode {
    common::init_logging();
    let args = Args::parse();
    let seconds = args.seconds().unwrap_or(Duration::from_secs(5));
    let keypair = KeyPair::generate().expect("OS randomness");
    let mut ok = true;

    // ---------------------------------------------------------------- part 1
    println!(
        "== part 1: RTT over time (ping every 250 ms, for {:.1} s)",
        seconds.as_secs_f64()
    );
    let server_app = server(
        &keypair,
        Duration::from_millis(250),
        Duration::from_secs(10),
    );
    let client_app = client(&keypair, &server_app, "rtt-watcher");
    let mut apps = [server_app, client_app];
    if !step_until(&mut apps, Duration::from_secs(5), |apps| {
        connected(&apps[1])
    }) {
        eprintln!("FAIL: the client did not connect within 5 s");
        return ExitCode::FAILURE;
    }
    let start = Instant::now();
    let mut next_report = start + Duration::from_millis(500);
    println!("  time  | side   | estimate");
    while start.elapsed() < seconds {
        step_until(
            &mut apps,
            next_report.saturating_duration_since(Instant::now()),
            |_| false,
        );
        next_report += Duration::from_millis(500);
        let client_rtt = apps[1].world().resource::<MokoshClient>().rtt();
        println!(
            "{:6.1} s | client | {}",
            start.elapsed().as_secs_f64(),
            describe(&client_rtt)
        );
        for (id, rtt) in server_rtts(&mut apps[0]) {
            println!("         | server | {}  for {id}", describe(&rtt));
        }
    }
    let client_samples = apps[1].world().resource::<MokoshClient>().rtt().samples;
    let server_samples: u64 = server_rtts(&mut apps[0])
        .iter()
        .map(|(_, rtt)| rtt.samples)
        .sum();
    println!("samples taken: client {client_samples}, server {server_samples}");
    if client_samples == 0 || server_samples == 0 {
        eprintln!("FAIL: a side took no RTT samples");
        ok = false;
    }
    drop(apps);

    // ---------------------------------------------------------------- part 2
    println!("\n== part 2: idle timeout (server idle_timeout = 1 s; the client app freezes)");
    let server_app = server(&keypair, Duration::from_millis(250), Duration::from_secs(1));
    let mut frozen = client(&keypair, &server_app, "sleepy");
    let mut servers = [server_app];
    let came_up = step_until(&mut servers, Duration::from_secs(5), |servers| {
        frozen.update();
        connected(&frozen) && servers[0].world().resource::<MokoshServer>().client_count() == 1
    });
    if !came_up {
        eprintln!("FAIL: the second client did not connect within 5 s");
        return ExitCode::FAILURE;
    }
    println!("client connected; freezing it now (its app is no longer updated)");
    let frozen_at = Instant::now();
    // Only the server runs from here on.
    let dropped = step_until(&mut servers, Duration::from_secs(5), |servers| {
        !seen::<ClientDisconnected>(&servers[0]).is_empty()
    });
    let gone = seen::<ClientDisconnected>(&servers[0]).first().cloned();
    match gone {
        Some(gone) if dropped => {
            println!(
                "server disconnected {} {:.2} s after the freeze: reason {:?}, initiator {:?}",
                gone.client_id,
                frozen_at.elapsed().as_secs_f64(),
                gone.reason,
                gone.initiator
            );
            if gone.reason != DisconnectReason::IdleTimeout {
                eprintln!("FAIL: expected IdleTimeout");
                ok = false;
            }
        }
        _ => {
            eprintln!("FAIL: the server did not drop the frozen client within 5 s");
            ok = false;
        }
    }
    // Thaw the client briefly: it learns why it was dropped.
    step_until(
        std::slice::from_mut(&mut frozen),
        Duration::from_millis(300),
        |apps| !connected(&apps[0]),
    );
    println!(
        "the client, once thawed, sees: {:?}",
        frozen.world().resource::<ConnectionState>()
    );

    if ok {
        println!("OK: both sides measured RTT; the idle client was dropped with IdleTimeout");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
