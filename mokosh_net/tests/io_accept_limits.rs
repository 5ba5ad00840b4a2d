//! Admission limits of the WebSocket accept loop on real loopback sockets
//! (findings 2 and 3 of issue 6): arrival-rate token buckets, the cap on
//! connections still authenticating, and readable HTTP 503 refusals.
//! Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mokosh_net::io::limits::AcceptRate;
use mokosh_net::io::websocket::{self, REFUSED_IP_CAP, REFUSED_RATE, REFUSED_UNAUTHENTICATED};
use mokosh_net::io::{IoConfig, IoEvent, IoRuntime, ServerEndpoint};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(20);

/// Plays the ECS: echoes every frame, and marks a connection authenticated
/// when it sends `auth`.
struct Echo {
    endpoint: Arc<ServerEndpoint>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start(runtime: &IoRuntime, config: IoConfig) -> (Echo, SocketAddr) {
        let endpoint =
            Arc::new(websocket::listen(runtime, "127.0.0.1:0".parse().unwrap(), config).unwrap());
        let addr = endpoint.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (endpoint, stop) = (Arc::clone(&endpoint), Arc::clone(&stop));
            move || {
                let mut links = std::collections::HashMap::new();
                while !stop.load(Ordering::Relaxed) {
                    match endpoint.events().recv_timeout(Duration::from_millis(20)) {
                        Ok(IoEvent::Opened { id, link, .. }) => {
                            links.insert(id, link);
                        }
                        Ok(IoEvent::Frame { id, frame }) => {
                            if let Some(link) = links.get(&id) {
                                if frame == b"auth" {
                                    link.mark_authenticated();
                                }
                                let _ = link.send(frame);
                                link.frame_consumed();
                            }
                        }
                        Ok(IoEvent::Closed { id, .. }) => {
                            links.remove(&id);
                        }
                        Err(_) => {}
                    }
                }
            }
        });
        let echo = Echo {
            endpoint,
            stop,
            thread: Some(thread),
        };
        (echo, addr)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects, or returns the HTTP status and body of a refusal.
async fn connect(addr: SocketAddr) -> Result<Socket, (u16, String)> {
    let attempt = tokio_tungstenite::connect_async(format!("ws://{addr}"));
    match tokio::time::timeout(WAIT, attempt).await.expect("in time") {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            Err((
                response.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            ))
        }
        Err(other) => panic!("expected a readable refusal, got {other}"),
    }
}

async fn round_trip(ws: &mut Socket, payload: &[u8]) {
    ws.send(Message::binary(payload.to_vec())).await.unwrap();
    let reply = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("echo in time")
        .expect("open")
        .expect("frame");
    assert_eq!(reply.into_data().as_ref(), payload);
}

fn runtimes() -> (IoRuntime, tokio::runtime::Runtime) {
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (IoRuntime::new(2).unwrap(), client)
}

#[test]
fn a_connection_storm_from_one_address_is_refused_readably_while_a_client_is_served() {
    let (io, client) = runtimes();
    let config = IoConfig {
        // Three new connections, then (practically) none: the storm cannot
        // refill the bucket whatever the machine's speed.
        accept_rate: AcceptRate {
            per_ip_per_sec: 0.001,
            per_ip_burst: 3.0,
            ..AcceptRate::unlimited()
        },
        ..IoConfig::default()
    };
    let (echo, addr) = Echo::start(&io, config);
    client.block_on(async {
        let mut healthy = connect(addr)
            .await
            .expect("the first connection is admitted");
        round_trip(&mut healthy, b"auth").await;
        let mut admitted = Vec::new();
        let mut refusals = Vec::new();
        for _ in 0..30 {
            match connect(addr).await {
                Ok(ws) => admitted.push(ws),
                Err(refusal) => refusals.push(refusal),
            }
            round_trip(&mut healthy, b"still served").await;
        }
        assert_eq!(admitted.len(), 2, "the rest of the burst");
        assert_eq!(refusals.len(), 28);
        assert!(
            refusals
                .iter()
                .all(|(status, body)| *status == 503 && body == REFUSED_RATE),
            "{refusals:?}"
        );
        round_trip(&mut healthy, b"after the storm").await;
    });
    let counters = echo.endpoint.counters().snapshot();
    assert_eq!(counters.connections_refused_rate, 28);
    assert_eq!(counters.connections_accepted, 3);
}

#[test]
fn connections_still_authenticating_cannot_take_the_total_cap() {
    let (io, client) = runtimes();
    let config = IoConfig {
        max_connections: 4,
        max_unauthenticated: 2,
        accept_rate: AcceptRate::unlimited(),
        ..IoConfig::default()
    };
    let (echo, addr) = Echo::start(&io, config);
    client.block_on(async {
        let mut player = connect(addr).await.expect("admitted");
        round_trip(&mut player, b"auth").await;
        // Two connections that never authenticate take every unauthenticated place...
        let _idle = [
            connect(addr).await.expect("admitted"),
            connect(addr).await.expect("admitted"),
        ];
        // ...so a third is refused although the total cap has room.
        assert_eq!(
            connect(addr).await.err(),
            Some((503, REFUSED_UNAUTHENTICATED.to_owned()))
        );
        round_trip(&mut player, b"still served").await;
    });
    let counters = echo.endpoint.counters().snapshot();
    assert_eq!(counters.connections_refused_unauthenticated, 1);
    assert_eq!(counters.connections_refused_total_cap, 0);
}

#[test]
fn the_per_address_cap_answers_a_readable_refusal() {
    let (io, client) = runtimes();
    let config = IoConfig {
        max_connections_per_ip: 1,
        accept_rate: AcceptRate::unlimited(),
        ..IoConfig::default()
    };
    let (echo, addr) = Echo::start(&io, config);
    client.block_on(async {
        let mut first = connect(addr).await.expect("admitted");
        assert_eq!(
            connect(addr).await.err(),
            Some((503, REFUSED_IP_CAP.to_owned()))
        );
        round_trip(&mut first, b"served").await;
    });
    assert_eq!(
        echo.endpoint
            .counters()
            .snapshot()
            .connections_refused_ip_cap,
        1
    );
}

#[test]
fn the_client_endpoint_reports_the_refusal_reason() {
    let (io, _client) = runtimes();
    let config = IoConfig {
        max_connections_per_ip: 0,
        accept_rate: AcceptRate::unlimited(),
        ..IoConfig::default()
    };
    let (_echo, addr) = Echo::start(&io, config.clone());
    let endpoint = websocket::connect(&io, &format!("ws://{addr}"), config);
    match endpoint.events().recv_timeout(WAIT).expect("refusal") {
        IoEvent::Closed {
            cause: mokosh_net::io::CloseCause::HandshakeFailed(reason),
            ..
        } => assert!(
            reason.contains("503") && reason.contains(REFUSED_IP_CAP),
            "{reason}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
