//! Finding 1 of issue 6 on real loopback WebSockets: a burst of relayed
//! messages must not disconnect healthy readers, while a client that really
//! stops reading is still dropped as a slow consumer (after its backlog stays
//! over the byte budget for several ticks). Every wait is bounded.

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
use mokosh_net::metrics::{Metrics, Rejection};
use mokosh_net::protocol::{
    ClientConfig, ClientSecurity, DecodeLimits, DisconnectReason, KeyPair, MessageRegistry,
    PublicKey, RateLimitConfig, RawBytes, Session, SessionConfig, SessionEvent,
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

/// What the relay server broadcasts to everyone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 110]
struct Chat {
    from: u32,
    sequence: u32,
    text: String,
}

/// A large message the server sends every tick to clients named "stalled".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 111]
struct Flood {
    blob: RawBytes,
}

const SENDERS: u32 = 6;
const PER_SENDER: u32 = 150;

fn registry() -> Arc<MessageRegistry> {
    let mut registry = MessageRegistry::new();
    registry
        .register::<Chat>()
        .and_then(|r| r.register::<Flood>())
        .expect("distinct routes");
    Arc::new(registry)
}

fn relay(mut inbox: MessageReader<FromClient<Chat>>, mut outbox: MessageWriter<ToClients<Chat>>) {
    for chat in inbox.read() {
        outbox.write(ToClients::new(SendTarget::All, chat.message.clone()));
    }
}

#[derive(Resource, Default)]
struct Stalled(Vec<ClientId>);

fn flood_stalled(
    mut joined: MessageReader<ClientConnected>,
    mut stalled: ResMut<Stalled>,
    mut outbox: MessageWriter<ToClients<Flood>>,
) {
    for join in joined.read() {
        if join.identity.user_id == "stalled" {
            stalled.0.push(join.client_id);
        }
    }
    if !stalled.0.is_empty() {
        // Incompressible, so compression cannot shrink the flood.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let blob = (0..32 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        outbox.write(ToClients::new(
            SendTarget::List(stalled.0.clone()),
            Flood {
                blob: RawBytes(blob),
            },
        ));
    }
}

struct RelayServer {
    addr: SocketAddr,
    key: PublicKey,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RelayServer {
    fn start() -> Self {
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
            let mut app = App::new();
            app.add_plugins(MokoshServerPlugin::new(config))
                .add_game_message::<Chat>()
                .add_game_message::<Flood>()
                .init_resource::<Stalled>()
                .add_systems(FixedUpdate, (relay, flood_stalled));
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
        });
        let (addr, key, metrics) = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server started");
        RelayServer {
            addr,
            key,
            metrics,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RelayServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn flush(ws: &mut Socket, session: &mut Session) {
    while let Some(frame) = session.poll_transmit() {
        ws.feed(Message::Binary(frame.into())).await.expect("send");
    }
    ws.flush().await.expect("flush");
}

async fn connect(addr: SocketAddr, key: PublicKey, token: &str) -> (Socket, Session) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
        .await
        .expect("websocket upgrade");
    let config = ClientConfig {
        security: ClientSecurity::Pinned(key),
        auth_token: token.as_bytes().to_vec(),
        registry: registry(),
        // What the relay sends this client is far above a client's defaults.
        session: SessionConfig {
            rate_limit: RateLimitConfig::unlimited(),
            ..SessionConfig::default()
        },
    };
    let mut session = Session::client(&config, Instant::now()).expect("session");
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
        // After the server's handshake response: the sealed AUTH.
        flush(&mut ws, &mut session).await;
        while let Some(event) = session.poll_event() {
            match event {
                SessionEvent::Connected { .. } => return (ws, session),
                SessionEvent::Disconnected { reason, .. } => panic!("refused: {reason}"),
                _ => {}
            }
        }
    }
}

/// How one client's run ended.
#[derive(Debug)]
struct Outcome {
    chats: u32,
    disconnect: Option<DisconnectReason>,
    closed: bool,
}

/// Sends `PER_SENDER` chats in one burst, then reads until every relayed chat
/// arrived, the server said goodbye, or the socket closed.
async fn burst_and_read(index: u32, mut ws: Socket, mut session: Session) -> Outcome {
    for sequence in 0..PER_SENDER {
        session
            .send_message(&Chat {
                from: index,
                sequence,
                text: format!("message {sequence} from player {index}, in one burst"),
            })
            .expect("send");
    }
    flush(&mut ws, &mut session).await;
    let mut outcome = Outcome {
        chats: 0,
        disconnect: None,
        closed: false,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while outcome.chats < SENDERS * PER_SENDER && outcome.disconnect.is_none() {
        let message = match tokio::time::timeout_at(deadline.into(), ws.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(_) => {
                outcome.closed = true;
                break;
            }
            Err(_) => break,
        };
        if let Message::Binary(bytes) = message {
            let _ = session.handle_packet(Instant::now(), &bytes);
        }
        flush(&mut ws, &mut session).await;
        while let Some(event) = session.poll_event() {
            match event {
                SessionEvent::Message(message) if message.is::<Chat>() => {
                    message
                        .decode::<Chat>(&DecodeLimits::default())
                        .expect("chat");
                    outcome.chats += 1;
                }
                SessionEvent::Disconnected { reason, .. } => outcome.disconnect = Some(reason),
                _ => {}
            }
        }
    }
    outcome
}

#[test]
fn a_relayed_burst_keeps_healthy_readers_and_drops_a_stalled_one() {
    let server = RelayServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (addr, key, metrics) = (server.addr, server.key, server.metrics.clone());
    let outcomes = runtime.block_on(async move {
        // Connects and then never reads again: its socket buffers fill, then
        // its backlog on the server grows tick after tick.
        let stalled = connect(addr, key, "stalled").await;
        let mut clients = Vec::new();
        for index in 0..SENDERS {
            clients.push(connect(addr, key, &format!("player-{index}")).await);
        }
        let tasks: Vec<_> = clients
            .into_iter()
            .zip(0..)
            .map(|((ws, session), index)| tokio::spawn(burst_and_read(index, ws, session)))
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.expect("client task"));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while metrics.snapshot().rejected(Rejection::SlowConsumer) == 0 {
            assert!(
                Instant::now() < deadline,
                "the stalled client was never dropped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(stalled);
        outcomes
    });
    for (index, outcome) in outcomes.iter().enumerate() {
        assert_eq!(
            (outcome.chats, &outcome.disconnect, outcome.closed),
            (SENDERS * PER_SENDER, &None, false),
            "player-{index} got every relayed chat and stayed connected"
        );
    }
    let metrics = server.metrics.snapshot();
    assert_eq!(
        metrics.rejected(Rejection::SlowConsumer),
        1,
        "only the stalled client was dropped"
    );
}
