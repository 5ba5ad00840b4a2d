//! Load test: Mokosh server vs a bare tokio-tungstenite echo server under the
//! same load, measured in the same run. Prints a table, or JSON with `--json`.
//!
//! ```text
//! cargo run --release --example load_test -- [--clients 200] [--rate 30] [--seconds 10] [--json]
//! ```
//!
//! Each server runs in its own child process (this binary with `--role`), so
//! its CPU time can be read from `/proc/<pid>/stat` without counting the
//! clients. Every client sends `--rate` messages per second for `--seconds`;
//! the server answers each one (the bare server echoes the bytes; the Mokosh
//! server decrypts, decodes, runs a Bevy system that answers with a typed
//! message on the next fixed tick, then encodes and seals the answer). The
//! figures quoted are server CPU per answered message and round-trip times,
//! and their ratio to the baseline. Linux only (reads `/proc`).

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_app::{App, FixedUpdate, ScheduleRunnerPlugin};
use bevy_ecs::prelude::*;
use common::{Args, PlayerInput};
use futures_util::{SinkExt, StreamExt};
use mokosh::GameMessage;
use mokosh::auth::DevAuthProvider;
use mokosh::protocol::{
    ClientConfig, ClientSecurity, DecodeLimits, KeyPair, MessageRegistry, PublicKey, Session,
    SessionConfig, SessionEvent,
};
use mokosh::server::{
    FromClient, MokoshServer, MokoshServerPlugin, SendTarget, ServerPluginConfig, ToClients,
};
use mokosh::shared::MokoshAppExt;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

/// The server's answer to each input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 110]
struct InputAck {
    sequence: u32,
}

fn main() {
    common::init_logging();
    let args = Args::parse();
    match args.value("role") {
        Some("bare-server") => bare_server(),
        Some("mokosh-server") => mokosh_server(),
        Some(other) => common::fail(&format!("unknown role {other}")),
        None => drive(&args),
    }
}

// ---------------------------------------------------------------- servers ---

fn bare_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("READY {} -", listener.local_addr().expect("addr"));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut sink, mut source) = ws.split();
                while let Some(Ok(message)) = source.next().await {
                    if message.is_binary() && sink.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn answer_inputs(
    mut inputs: MessageReader<FromClient<PlayerInput>>,
    mut out: MessageWriter<ToClients<InputAck>>,
) {
    for input in inputs.read() {
        out.write(ToClients::new(
            SendTarget::Client(input.client_id),
            InputAck {
                sequence: input.message.sequence,
            },
        ));
    }
}

#[derive(Resource)]
struct Announced(bool);

fn announce(server: Res<MokoshServer>, mut done: ResMut<Announced>) {
    if done.0 {
        return;
    }
    if let (Some(addr), Some(key)) = (server.local_addr(), server.public_key()) {
        println!("READY {addr} {key}");
        let _ = std::io::stdout().flush();
        done.0 = true;
    }
}

fn mokosh_server() {
    let keypair = KeyPair::generate().expect("key");
    let mut config = ServerPluginConfig::websocket("127.0.0.1:0".parse().expect("addr"), keypair);
    config.auth = Some(Arc::new(DevAuthProvider::new()));
    config.io.max_connections_per_ip = 4096;
    // Every simulated player comes from one loopback address.
    config.auth_limits.max_pending_per_address = 4096;
    config.io.accept_rate = mokosh_net::io::limits::AcceptRate::unlimited();
    config.io.max_connections = 4096;
    App::new()
        .add_plugins(ScheduleRunnerPlugin::run_loop(Duration::from_millis(1)))
        .add_plugins(MokoshServerPlugin::new(config))
        .add_game_message::<PlayerInput>()
        .add_game_message::<InputAck>()
        .insert_resource(Announced(false))
        .add_systems(FixedUpdate, answer_inputs)
        .add_systems(bevy_app::Update, announce)
        .run();
}

// ----------------------------------------------------------------- driver ---

struct Load {
    clients: usize,
    rate: u32,
    duration: Duration,
}

#[derive(Debug, Default)]
struct Outcome {
    answered: u64,
    sent: u64,
    cpu: Duration,
    rtts: Vec<Duration>,
}

fn drive(args: &Args) {
    let load = Load {
        clients: args
            .value("clients")
            .map_or(200, |v| v.parse().unwrap_or(200)),
        rate: args.value("rate").map_or(30, |v| v.parse().unwrap_or(30)),
        duration: args.seconds().unwrap_or(Duration::from_secs(10)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let baseline = run_phase(&runtime, "bare-server", &load);
    let mokosh = run_phase(&runtime, "mokosh-server", &load);
    report(args.flag("json"), &load, &baseline, &mokosh);
}

fn spawn_server(role: &str) -> (Child, SocketAddr, Option<PublicKey>) {
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--role", role])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    let mut words = line.split_whitespace().skip(1);
    let addr = words.next().and_then(|a| a.parse().ok()).expect("address");
    let key = words.next().and_then(|k| PublicKey::from_hex(k).ok());
    (child, addr, key)
}

/// User + system CPU time of a process, from `/proc/<pid>/stat` (via
/// `procfs`), or zero if it cannot be read.
#[cfg(target_os = "linux")]
fn cpu_time(pid: u32) -> Duration {
    let stat = i32::try_from(pid)
        .ok()
        .and_then(|pid| procfs::process::Process::new(pid).ok())
        .and_then(|process| process.stat().ok());
    let Some(stat) = stat else {
        return Duration::ZERO;
    };
    let ticks = stat.utime.saturating_add(stat.stime);
    let per_second = procfs::ticks_per_second().max(1);
    Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second)
}

/// CPU time is read from `/proc`: on other systems the figures stay at zero.
#[cfg(not(target_os = "linux"))]
fn cpu_time(_pid: u32) -> Duration {
    Duration::ZERO
}

fn run_phase(runtime: &tokio::runtime::Runtime, role: &str, load: &Load) -> Outcome {
    let (mut child, addr, key) = spawn_server(role);
    let pid = child.id();
    // Connect everyone first, then measure only the steady state.
    let clients: Vec<_> = runtime.block_on(async {
        let mut clients = Vec::new();
        for i in 0..load.clients {
            clients.push(Client::connect(addr, key, i).await);
        }
        clients
    });
    let cpu_before = cpu_time(pid);
    let period = Duration::from_secs_f64(1.0 / f64::from(load.rate));
    let deadline = Instant::now() + load.duration;
    let results: Vec<Outcome> = runtime.block_on(async {
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|client| tokio::spawn(client.run(period, deadline)))
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("client"));
        }
        results
    });
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    let _ = child.kill();
    let _ = child.wait();
    let mut outcome = Outcome {
        cpu,
        ..Outcome::default()
    };
    for result in results {
        outcome.answered += result.answered;
        outcome.sent += result.sent;
        outcome.rtts.extend(result.rtts);
    }
    outcome.rtts.sort();
    outcome
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Client {
    ws: Socket,
    session: Option<Session>,
}

fn registry() -> Arc<MessageRegistry> {
    let mut registry = MessageRegistry::new();
    registry
        .register::<PlayerInput>()
        .and_then(|r| r.register::<InputAck>())
        .expect("routes");
    Arc::new(registry)
}

impl Client {
    async fn connect(addr: SocketAddr, key: Option<PublicKey>, index: usize) -> Client {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
            .await
            .expect("connect");
        let Some(key) = key else {
            return Client { ws, session: None };
        };
        let config = ClientConfig {
            security: ClientSecurity::Pinned(key),
            auth_token: format!("load-{index}").into_bytes(),
            registry: registry(),
            session: SessionConfig::default(),
        };
        let mut session = Session::client(&config, Instant::now()).expect("session");
        loop {
            while let Some(frame) = session.poll_transmit() {
                ws.send(Message::Binary(frame.into())).await.expect("send");
            }
            if session.is_connected() {
                return Client {
                    ws,
                    session: Some(session),
                };
            }
            let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .expect("handshake in time")
                .expect("open")
                .expect("frame");
            if let Message::Binary(bytes) = message {
                session
                    .handle_packet(Instant::now(), &bytes)
                    .expect("handshake packet");
            }
            while session.poll_event().is_some() {}
            assert!(!session.is_closed(), "handshake refused");
        }
    }

    async fn run(mut self, period: Duration, deadline: Instant) -> Outcome {
        let mut outcome = Outcome::default();
        let mut in_flight: VecDeque<(u32, Instant)> = VecDeque::new();
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sequence = 0u32;
        let drain_until = deadline + Duration::from_secs(2);
        loop {
            tokio::select! {
                _ = ticker.tick(), if Instant::now() < deadline => {
                    sequence += 1;
                    let frame = match self.session.as_mut() {
                        Some(session) => {
                            session.handle_timeout(Instant::now());
                            session.send_message(&PlayerInput { sequence, direction: (1.0, 0.0), buttons: 0 }).expect("send");
                            let mut frames = Vec::new();
                            while let Some(frame) = session.poll_transmit() { frames.push(frame); }
                            frames
                        }
                        None => {
                            let mut payload = vec![0u8; 16];
                            payload[..4].copy_from_slice(&sequence.to_le_bytes());
                            vec![payload]
                        }
                    };
                    for frame in frame {
                        if self.ws.feed(Message::Binary(frame.into())).await.is_err() { return outcome; }
                    }
                    if self.ws.flush().await.is_err() { return outcome; }
                    in_flight.push_back((sequence, Instant::now()));
                    outcome.sent += 1;
                }
                message = self.ws.next() => {
                    let Some(Ok(Message::Binary(bytes))) = message else { return outcome; };
                    let answered: Vec<u32> = match self.session.as_mut() {
                        Some(session) => {
                            let _ = session.handle_packet(Instant::now(), &bytes);
                            let mut answered = Vec::new();
                            while let Some(event) = session.poll_event() {
                                if let SessionEvent::Message(message) = event
                                    && let Ok(ack) = message.decode::<InputAck>(&DecodeLimits::default())
                                {
                                    answered.push(ack.sequence);
                                }
                            }
                            // Pongs for the server's pings.
                            while let Some(frame) = session.poll_transmit() {
                                let _ = self.ws.feed(Message::Binary(frame.into())).await;
                            }
                            let _ = self.ws.flush().await;
                            answered
                        }
                        None => bytes.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).into_iter().collect(),
                    };
                    for sequence in answered {
                        while let Some(&(sent_sequence, sent_at)) = in_flight.front() {
                            in_flight.pop_front();
                            if sent_sequence == sequence {
                                outcome.answered += 1;
                                outcome.rtts.push(sent_at.elapsed());
                                break;
                            }
                        }
                    }
                    if Instant::now() >= deadline && in_flight.is_empty() { return outcome; }
                }
                _ = tokio::time::sleep_until(drain_until.into()) => return outcome,
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3
}

fn report(json: bool, load: &Load, baseline: &Outcome, mokosh: &Outcome) {
    let per_message = |o: &Outcome| o.cpu.as_secs_f64() * 1e6 / o.answered.max(1) as f64;
    let ratio = per_message(mokosh) / per_message(baseline);
    let phase = |o: &Outcome| {
        format!(
            "{{\"sent\": {}, \"answered\": {}, \"server_cpu_s\": {:.2}, \"server_cpu_us_per_message\": {:.2}, \"rtt_p50_ms\": {:.2}, \"rtt_p99_ms\": {:.2}}}",
            o.sent,
            o.answered,
            o.cpu.as_secs_f64(),
            per_message(o),
            percentile(&o.rtts, 0.5),
            percentile(&o.rtts, 0.99)
        )
    };
    if json {
        println!(
            "{{\"clients\": {}, \"rate_per_client\": {}, \"seconds\": {}, \"bare_tungstenite_echo\": {}, \"mokosh\": {}, \"cpu_per_message_ratio\": {:.2}}}",
            load.clients,
            load.rate,
            load.duration.as_secs_f64(),
            phase(baseline),
            phase(mokosh),
            ratio
        );
        return;
    }
    println!(
        "{} clients x {} msg/s for {:.0} s (server CPU per answered message; RTT on loopback)",
        load.clients,
        load.rate,
        load.duration.as_secs_f64()
    );
    println!(
        "{:<26} {:>9} {:>9} {:>12} {:>10} {:>10}",
        "server", "sent", "answered", "cpu us/msg", "p50 ms", "p99 ms"
    );
    for (name, o) in [
        ("bare tokio-tungstenite echo", baseline),
        ("mokosh (Bevy, sealed)", mokosh),
    ] {
        println!(
            "{:<26} {:>9} {:>9} {:>12.2} {:>10.2} {:>10.2}",
            name,
            o.sent,
            o.answered,
            per_message(o),
            percentile(&o.rtts, 0.5),
            percentile(&o.rtts, 0.99)
        );
    }
    println!("mokosh / bare CPU per message: {ratio:.2}x");
}
