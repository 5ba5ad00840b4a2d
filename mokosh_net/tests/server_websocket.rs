//! Real-loopback WebSocket tests of `MokoshServerPlugin`: a server app runs on
//! its own thread on 127.0.0.1; clients are raw tokio-tungstenite sockets
//! driving the sans-IO `Session` (so tests can also misbehave on purpose).
//! Every wait is bounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bevy_app::{App, FixedUpdate};
use bevy_ecs::prelude::*;
use futures_util::{SinkExt, StreamExt};
use mokosh_derive::GameMessage;
use mokosh_net::auth::DevAuthProvider;
use mokosh_net::io::IoCountersSnapshot;
use mokosh_net::metrics::{Metrics, MetricsSnapshot, Rejection};
use mokosh_net::protocol::{
    ClientConfig, ClientSecurity, DecodeLimits, KeyPair, MessageRegistry, PublicKey, Session,
    SessionConfig, SessionEvent,
};
use mokosh_net::server::{
    ClientConnected, FromClient, MokoshServer, MokoshServerPlugin, SendTarget, ServerPluginConfig,
    ToClients,
};
use mokosh_net::shared::{ClientId, MokoshAppExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 100]
struct Input {
    sequence: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 101]
struct Echo {
    sequence: u32,
}

/// A large message the server floods to clients named "slow".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 102]
struct Flood {
    #[serde(with = "serde_bytes_compat")]
    blob: Vec<u8>,
}

/// `Vec<u8>` as a postcard byte string (compact) without an extra crate.
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let raw: mokosh_net::protocol::RawBytes = serde::Deserialize::deserialize(deserializer)?;
        Ok(raw.0)
    }
}

fn registry() -> Arc<MessageRegistry> {
    let mut registry = MessageRegistry::new();
    registry
        .register::<Input>()
        .and_then(|r| r.register::<Echo>())
        .and_then(|r| r.register::<Flood>())
        .expect("distinct routes");
    Arc::new(registry)
}

fn echo_inputs(
    mut inbox: MessageReader<FromClient<Input>>,
    mut outbox: MessageWriter<ToClients<Echo>>,
) {
    for input in inbox.read() {
        outbox.write(ToClients::new(
            SendTarget::Client(input.client_id),
            Echo {
                sequence: input.message.sequence,
            },
        ));
    }
}

#[derive(Resource)]
struct SlowClients {
    clients: Vec<ClientId>,
    /// Incompressible, so compression cannot shrink the flood.
    blob: Vec<u8>,
}

impl Default for SlowClients {
    fn default() -> Self {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let blob = (0..48 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        SlowClients {
            clients: Vec::new(),
            blob,
        }
    }
}

fn flood_slow_clients(
    mut joined: MessageReader<ClientConnected>,
    mut slow: ResMut<SlowClients>,
    mut outbox: MessageWriter<ToClients<Flood>>,
) {
    for join in joined.read() {
        if join.identity.user_id == "slow" {
            slow.clients.push(join.client_id);
        }
    }
    if !slow.clients.is_empty() {
        outbox.write(ToClients::new(
            SendTarget::List(slow.clients.clone()),
            Flood {
                blob: slow.blob.clone(),
            },
        ));
    }
}

struct RunningServer {
    addr: SocketAddr,
    key: PublicKey,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<IoCountersSnapshot>>>,
}

impl RunningServer {
    /// Builds and runs a server app on its own thread until dropped/stopped.
    fn start(configure: fn(&mut ServerPluginConfig)) -> Self {
        let (ready_tx, ready_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let keypair = KeyPair::generate().expect("key");
            let mut config = ServerPluginConfig::websocket(
                "127.0.0.1:0".parse().expect("addr"),
                keypair.clone(),
            );
            config.auth = Some(Arc::new(DevAuthProvider::new()));
            config.io.max_connections_per_ip = 1024;
            // Hundreds of players from one loopback address.
            config.auth_limits.max_pending_per_address = 1024;
            config.io.accept_rate = mokosh_net::io::limits::AcceptRate::unlimited();
            configure(&mut config);
            let mut app = App::new();
            app.add_plugins(MokoshServerPlugin::new(config))
                .add_game_message::<Input>()
                .add_game_message::<Echo>()
                .add_game_message::<Flood>()
                .init_resource::<SlowClients>()
                .add_systems(FixedUpdate, (echo_inputs, flood_slow_clients));
            app.finish();
            app.cleanup();
            app.update();
            let server = app.world().resource::<MokoshServer>();
            ready_tx
                .send((
                    server.local_addr().expect("bound"),
                    keypair.public(),
                    server.metrics().clone(),
                ))
                .expect("test alive");
            while !stop_flag.load(Ordering::Relaxed) {
                app.update();
                std::thread::sleep(Duration::from_millis(1));
            }
            app.world().resource::<MokoshServer>().io_counters()
        });
        let (addr, key, metrics) = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server started");
        RunningServer {
            addr,
            key,
            metrics,
            stop,
            thread: Some(thread),
        }
    }

    fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    fn stop(mut self) -> IoCountersSnapshot {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("server thread")
            .expect("endpoint")
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A well-behaved client written directly against the sans-IO session.
struct RawClient {
    ws: Socket,
    session: Session,
}

fn client_config(key: PublicKey, token: &str) -> ClientConfig {
    ClientConfig {
        security: ClientSecurity::Pinned(key),
        auth_token: token.as_bytes().to_vec(),
        registry: registry(),
        session: SessionConfig::default(),
    }
}

async fn flush(ws: &mut Socket, session: &mut Session) {
    while let Some(frame) = session.poll_transmit() {
        ws.feed(Message::Binary(frame.into())).await.expect("send");
    }
    ws.flush().await.expect("flush");
}

impl RawClient {
    async fn connect(addr: SocketAddr, key: PublicKey, token: &str) -> RawClient {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
            .await
            .expect("websocket upgrade");
        let mut session =
            Session::client(&client_config(key, token), Instant::now()).expect("session");
        flush(&mut ws, &mut session).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let message = tokio::time::timeout_at(deadline.into(), ws.next())
                .await
                .expect("handshake in time")
                .expect("open")
                .expect("frame");
            if let Message::Binary(bytes) = message {
                let _ = session.handle_packet(Instant::now(), &bytes);
            }
            // After the response the client sends its sealed AUTH.
            flush(&mut ws, &mut session).await;
            while let Some(event) = session.poll_event() {
                match event {
                    SessionEvent::Connected { .. } => return RawClient { ws, session },
                    SessionEvent::Disconnected { reason, .. } => panic!("refused: {reason}"),
                    _ => {}
                }
            }
        }
    }

    /// Sends `count` inputs one at a time, waiting for each echo. Returns the
    /// round-trip times.
    async fn echo(&mut self, first: u32, count: u32) -> Vec<Duration> {
        let mut rtts = Vec::new();
        for sequence in first..first + count {
            let sent = Instant::now();
            self.session
                .send_message(&Input { sequence })
                .expect("send");
            flush(&mut self.ws, &mut self.session).await;
            'wait: loop {
                let message = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                    .await
                    .expect("echo in time")
                    .expect("open")
                    .expect("frame");
                if let Message::Binary(bytes) = message {
                    self.session
                        .handle_packet(Instant::now(), &bytes)
                        .expect("valid packet");
                }
                // Answer pings etc.
                flush(&mut self.ws, &mut self.session).await;
                while let Some(event) = self.session.poll_event() {
                    if let SessionEvent::Message(message) = event
                        && message.is::<Echo>()
                    {
                        let echo: Echo = message.decode(&DecodeLimits::default()).expect("echo");
                        assert_eq!(echo.sequence, sequence);
                        rtts.push(sent.elapsed());
                        break 'wait;
                    }
                }
            }
        }
        rtts
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn percentile(mut values: Vec<Duration>, p: f64) -> Duration {
    values.sort();
    values[((values.len() - 1) as f64 * p) as usize]
}

fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn two_hundred_clients_at_once() {
    // 200 debug-build handshakes (server and clients in this one process) on a
    // shared machine: the session handshake, which now includes the client's
    // sealed AUTH round trip, gets a generous deadline; this test is about
    // concurrency, not timeouts.
    let server = RunningServer::start(|config| {
        config.session.handshake_timeout = Duration::from_secs(60);
    });
    let runtime = runtime();
    let (addr, key) = (server.addr, server.key);
    let started = Instant::now();
    let rtts: Vec<Duration> = runtime.block_on(async move {
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                tokio::spawn(async move {
                    let mut client = RawClient::connect(addr, key, &format!("player-{i}")).await;
                    client.echo(0, 5).await
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("client task"));
        }
        all
    });
    println!(
        "200 clients, 1000 echoes in {:?}: rtt p50 {:?} p99 {:?}",
        started.elapsed(),
        percentile(rtts.clone(), 0.5),
        percentile(rtts.clone(), 0.99)
    );
    assert_eq!(rtts.len(), 1000);
    let metrics = server.metrics();
    assert_eq!(metrics.connections_total, 200);
    assert!(metrics.messages_in >= 1000);
    assert_eq!(metrics.rejected_total(), 0);
}

#[test]
fn a_client_that_stops_reading_does_not_slow_the_others() {
    let server = RunningServer::start(|config| {
        config.io.outbound_queue = 32;
    });
    let runtime = runtime();
    let (addr, key) = (server.addr, server.key);
    // The slow client completes the handshake, then never reads again while
    // the server floods it.
    let slow = runtime.block_on(RawClient::connect(addr, key, "slow"));
    let rtts = runtime.block_on(async move {
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                tokio::spawn(async move {
                    let mut client = RawClient::connect(addr, key, &format!("fast-{i}")).await;
                    let mut rtts = Vec::new();
                    for round in 0..20 {
                        rtts.extend(client.echo(round * 10, 10).await);
                    }
                    rtts
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("client task"));
        }
        all
    });
    println!(
        "with a stalled client: 2000 echoes, rtt p50 {:?} p99 {:?} max {:?}",
        percentile(rtts.clone(), 0.5),
        percentile(rtts.clone(), 0.99),
        percentile(rtts.clone(), 1.0)
    );
    assert_eq!(rtts.len(), 2000, "every other client was served");
    wait_for(
        "the slow consumer to be dropped",
        Duration::from_secs(30),
        || server.metrics().rejected(Rejection::SlowConsumer) >= 1,
    );
    drop(slow);
}

#[test]
fn garbage_and_oversized_frames_end_only_that_connection() {
    let server = RunningServer::start(|_| {});
    let runtime = runtime();
    let (addr, key) = (server.addr, server.key);
    runtime.block_on(async move {
        let mut bystander = RawClient::connect(addr, key, "bystander").await;

        // Binary garbage before the handshake.
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
            .await
            .unwrap();
        ws.send(Message::Binary(vec![0xff; 64].into()))
            .await
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;

        // A text frame.
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
            .await
            .unwrap();
        ws.send(Message::Text("hello?".into())).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;

        // An oversized frame (the limit is 64 KiB + header + tag).
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
            .await
            .unwrap();
        let _ = ws.send(Message::Binary(vec![1; 200 * 1024].into())).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;

        // Garbage after a successful handshake (an authenticated session).
        let mut rogue = RawClient::connect(addr, key, "rogue").await;
        rogue
            .ws
            // Counter 1: the client's sealed AUTH used counter 0.
            .send(Message::Binary(vec![1, 1, 2, 100, 1, 3, 9, 9, 9].into()))
            .await
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), rogue.ws.next()).await;

        // The bystander never noticed.
        assert_eq!(bystander.echo(0, 10).await.len(), 10);
        // And new clients are served.
        let mut newcomer = RawClient::connect(addr, key, "newcomer").await;
        assert_eq!(newcomer.echo(0, 10).await.len(), 10);
    });
    wait_for("rejections to be counted", Duration::from_secs(10), || {
        let m = server.metrics();
        m.rejected(Rejection::Malformed) >= 2 && m.rejected(Rejection::Oversized) >= 1
    });
    let metrics = server.metrics();
    // Text frame → malformed; binary garbage → malformed; the sealed-looking
    // garbage after the handshake fails authentication.
    assert!(
        metrics.rejected(Rejection::DecryptFailed) >= 1,
        "{metrics:?}"
    );
    let io = server.stop();
    assert!(
        io.oversized_frames >= 1 && io.protocol_errors >= 1,
        "{io:?}"
    );
}

#[test]
fn handshake_and_idle_timeouts_then_the_server_keeps_serving() {
    let server = RunningServer::start(|config| {
        config.session.handshake_timeout = Duration::from_millis(500);
        config.session.idle_timeout = Duration::from_millis(1_000);
        config.io.handshake_timeout = Duration::from_millis(300);
    });
    let runtime = runtime();
    let (addr, key) = (server.addr, server.key);
    runtime.block_on(async move {
        // 1. TCP that never upgrades to WebSocket: closed by the IO layer.
        let mut raw_tcp = TcpStream::connect(addr).await.unwrap();
        // 2. A WebSocket that never sends a hello: closed by the session.
        let (mut silent, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
            .await
            .unwrap();
        // 3. A client that completes the handshake, then goes quiet.
        let mut idle = RawClient::connect(addr, key, "idle").await;

        use tokio::io::AsyncReadExt;
        let mut buffer = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(10), raw_tcp.read(&mut buffer)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "raw TCP closed: {closed:?}"
        );

        let started = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), silent.next()).await {
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("silent client not closed"),
            }
        }
        println!("silent websocket closed after {:?}", started.elapsed());

        // The idle client reads (so its socket drains) but never answers.
        let mut disconnect = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while disconnect.is_none() && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), idle.ws.next()).await {
                Ok(Some(Ok(Message::Binary(bytes)))) => {
                    let _ = idle.session.handle_packet(Instant::now(), &bytes);
                    while let Some(event) = idle.session.poll_event() {
                        if let SessionEvent::Disconnected { reason, .. } = event {
                            disconnect = Some(reason);
                        }
                    }
                    // Deliberately no flush: pongs never leave.
                    while idle.session.poll_transmit().is_some() {}
                }
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        assert_eq!(
            disconnect,
            Some(mokosh_net::protocol::DisconnectReason::IdleTimeout)
        );

        // The server keeps serving.
        let mut fresh = RawClient::connect(addr, key, "fresh").await;
        assert_eq!(fresh.echo(0, 5).await.len(), 5);
    });
    let metrics = server.metrics();
    assert!(metrics.rejected(Rejection::Timeout) >= 2, "{metrics:?}");
    let io = server.stop();
    assert!(io.handshake_timeouts >= 1, "{io:?}");
}
