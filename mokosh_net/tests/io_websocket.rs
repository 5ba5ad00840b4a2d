//! The IO contract over real WebSocket connections on 127.0.0.1.
//!
//! An ECS-less driver thread plays the receive/send systems: it drains the
//! server's events, echoes every frame through its link and returns credit.
//! Every wait is bounded; every test ends by dropping the server and checking
//! that each `Opened` connection got exactly one `Closed`.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use mokosh_net::io::limits::AcceptRate;
use mokosh_net::io::{
    ClientEndpoint, CloseCause, ConnectionId, ConnectionLink, IoConfig, IoEvent, IoRuntime,
    LinkError, ServerEndpoint, websocket,
};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const WAIT: Duration = Duration::from_secs(10);
/// A frame that asks the driver to flood that connection.
const FLOOD: &[u8] = b"FLOOD";

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[derive(Default)]
struct DriverState {
    links: HashMap<ConnectionId, ConnectionLink>,
    opened: HashMap<ConnectionId, u32>,
    closed: HashMap<ConnectionId, Vec<CloseCause>>,
    flooding: HashSet<ConnectionId>,
}

/// The stand-in for the ECS: echoes frames, floods on request.
struct Driver {
    state: Arc<Mutex<DriverState>>,
    full_seen: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Driver {
    fn start(server: &ServerEndpoint) -> Self {
        let events = server.events().clone();
        let state = Arc::new(Mutex::new(DriverState::default()));
        let full_seen = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, full_seen, stop) = (state.clone(), full_seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let flood_frame = vec![0xAB; 32 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let event = events.recv_timeout(Duration::from_millis(1));
                    let mut st = state.lock().unwrap();
                    match event {
                        Ok(IoEvent::Opened { id, link, .. }) => {
                            *st.opened.entry(id).or_default() += 1;
                            st.links.insert(id, link);
                        }
                        Ok(IoEvent::Frame { id, frame }) => {
                            let link = st.links.get(&id).expect("frame for unknown id").clone();
                            if frame == FLOOD {
                                st.flooding.insert(id);
                            } else {
                                // An echo can only fail on a closing link here.
                                let _ = link.send(frame);
                            }
                            link.frame_consumed();
                        }
                        Ok(IoEvent::Closed { id, cause }) => {
                            assert!(st.opened.contains_key(&id), "Closed without Opened");
                            st.closed.entry(id).or_default().push(cause);
                            st.links.remove(&id);
                            st.flooding.remove(&id);
                        }
                        Err(_) => {}
                    }
                    // The server keeps sending to flooded connections.
                    let flooding: Vec<_> = st.flooding.iter().copied().collect();
                    for id in flooding {
                        let link = st.links[&id].clone();
                        for _ in 0..64 {
                            match link.send(flood_frame.clone()) {
                                Ok(()) => {}
                                Err(LinkError::Full) => {
                                    full_seen.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                    }
                }
            })
        };
        Self {
            state,
            full_seen,
            stop,
            thread: Some(thread),
        }
    }

    fn link(&self, id: ConnectionId) -> ConnectionLink {
        self.state.lock().unwrap().links[&id].clone()
    }

    fn opened_count(&self) -> usize {
        self.state.lock().unwrap().opened.len()
    }

    fn closed_causes(&self, id: ConnectionId) -> Vec<CloseCause> {
        self.state
            .lock()
            .unwrap()
            .closed
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    fn wait_closed(&self, id: ConnectionId) -> CloseCause {
        wait_until("server-side Closed", || !self.closed_causes(id).is_empty());
        self.closed_causes(id)[0].clone()
    }

    /// The ids whose Closed carried `pred`.
    fn closed_where(&self, pred: impl Fn(&CloseCause) -> bool) -> Vec<ConnectionId> {
        let st = self.state.lock().unwrap();
        st.closed
            .iter()
            .filter(|(_, c)| c.iter().any(&pred))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Drops the server and checks exactly one Closed per Opened.
    fn finish(mut self, server: ServerEndpoint) {
        drop(server);
        wait_until("every connection closed", || {
            let st = self.state.lock().unwrap();
            st.opened.keys().all(|id| st.closed.contains_key(id))
        });
        // Give a duplicate Closed a moment to show up before checking.
        std::thread::sleep(Duration::from_millis(50));
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let st = self.state.lock().unwrap();
        for (id, n) in &st.opened {
            assert_eq!(*n, 1, "{id} opened twice");
            assert_eq!(st.closed[id].len(), 1, "{id}: {:?}", st.closed[id]);
        }
        assert_eq!(st.opened.len(), st.closed.len());
    }
}

fn server(rt: &IoRuntime, config: IoConfig) -> (ServerEndpoint, SocketAddr, Driver) {
    let server = websocket::listen(rt, "127.0.0.1:0".parse().unwrap(), config).unwrap();
    let addr = server.local_addr().unwrap();
    let driver = Driver::start(&server);
    (server, addr, driver)
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/game")
}

/// Connects with the library's client and waits for Opened.
fn client(rt: &IoRuntime, addr: SocketAddr, config: IoConfig) -> (ClientEndpoint, ConnectionLink) {
    let endpoint = websocket::connect(rt, &url(addr), config);
    match endpoint.events().recv_timeout(WAIT).expect("client event") {
        IoEvent::Opened { link, remote, .. } => {
            assert_eq!(remote, Some(addr));
            (endpoint, link)
        }
        other => panic!("expected Opened, got {other:?}"),
    }
}

/// Sends `payload` and waits for its echo.
fn round_trip(endpoint: &ClientEndpoint, link: &ConnectionLink, payload: Vec<u8>) -> Duration {
    let start = Instant::now();
    link.send(payload.clone()).unwrap();
    match endpoint.events().recv_timeout(WAIT).expect("echo") {
        IoEvent::Frame { frame, .. } => assert_eq!(frame, payload),
        other => panic!("expected echo, got {other:?}"),
    }
    link.frame_consumed();
    start.elapsed()
}

fn expect_client_closed(endpoint: &ClientEndpoint) -> CloseCause {
    loop {
        match endpoint.events().recv_timeout(WAIT).expect("client Closed") {
            IoEvent::Closed { cause, .. } => return cause,
            IoEvent::Frame { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The server's id for the newest connection, once the driver has seen more
/// than `before` connections open.
fn newest_id(driver: &Driver, before: usize) -> ConnectionId {
    wait_until("server Opened", || driver.opened_count() > before);
    *driver.state.lock().unwrap().opened.keys().max().unwrap()
}

type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn raw_client(rt: &IoRuntime, addr: SocketAddr) -> RawWs {
    rt.handle()
        .block_on(tokio_tungstenite::connect_async(url(addr)))
        .expect("raw connect")
        .0
}

#[test]
fn echo_round_trips_and_close_from_both_sides() {
    let rt = IoRuntime::new(2).unwrap();
    let config = IoConfig::default();
    let max = config.max_frame_len;
    let (server, addr, driver) = server(&rt, config.clone());

    let (c1, l1) = client(&rt, addr, config.clone());
    let sizes = [0, 1, 2, 125, 126, 65535, 65536, max];
    for (i, &n) in sizes.iter().enumerate() {
        round_trip(&c1, &l1, vec![i as u8; n]);
    }
    for i in 0..200u32 {
        round_trip(&c1, &l1, i.to_le_bytes().to_vec());
    }
    // Many frames in flight at once come back in order.
    for i in 0..200u32 {
        l1.send(i.to_le_bytes().to_vec()).unwrap();
    }
    for i in 0..200u32 {
        match c1.events().recv_timeout(WAIT).unwrap() {
            IoEvent::Frame { frame, .. } => assert_eq!(frame, i.to_le_bytes()),
            other => panic!("{other:?}"),
        }
        l1.frame_consumed();
    }
    let s = server.counters().snapshot();
    assert_eq!(s.frames_in, (sizes.len() + 400) as u64);
    assert_eq!(s.connections_accepted, 1);
    assert_eq!(s.connections_active, 1);
    let c = c1.counters().snapshot();
    assert_eq!(c.frames_out, s.frames_in);
    assert_eq!(c.bytes_out, s.bytes_in);

    // Client closes: client sees Local, server sees PeerClosed.
    let id1 = newest_id(&driver, 0);
    l1.send(b"last".to_vec()).unwrap();
    l1.close();
    assert_eq!(l1.send(vec![1]), Err(LinkError::Closed));
    assert_eq!(expect_client_closed(&c1), CloseCause::Local);
    assert_eq!(driver.wait_closed(id1), CloseCause::PeerClosed);

    // Server closes: server sees Local, client sees PeerClosed, after the queued frames.
    let (c2, l2) = client(&rt, addr, config.clone());
    round_trip(&c2, &l2, b"hello".to_vec());
    let id2 = newest_id(&driver, 1);
    let sl = driver.link(id2);
    for i in 0..10u8 {
        sl.send(vec![i]).unwrap();
    }
    sl.close();
    for i in 0..10u8 {
        match c2.events().recv_timeout(WAIT).unwrap() {
            IoEvent::Frame { frame, .. } => assert_eq!(frame, vec![i]),
            other => panic!("{other:?}"),
        }
        l2.frame_consumed();
    }
    assert_eq!(expect_client_closed(&c2), CloseCause::PeerClosed);
    assert_eq!(driver.wait_closed(id2), CloseCause::Local);
    wait_until("active back to 0", || {
        server.counters().snapshot().connections_active == 0
    });

    // Dropping the server closes its clients.
    let (c3, _l3) = client(&rt, addr, config);
    wait_until("third opened", || driver.opened_count() == 3);
    driver.finish(server);
    assert_eq!(expect_client_closed(&c3), CloseCause::PeerClosed);
}

#[test]
fn two_hundred_concurrent_clients() {
    let rt = IoRuntime::new(2).unwrap();
    let config = IoConfig {
        max_connections_per_ip: 1000,
        accept_rate: AcceptRate::unlimited(),
        ..IoConfig::default()
    };
    let (server, addr, driver) = server(&rt, config.clone());
    let started = Instant::now();
    let endpoints: Vec<ClientEndpoint> = (0..200)
        .map(|_| websocket::connect(&rt, &url(addr), config.clone()))
        .collect();
    let links: Vec<ConnectionLink> = endpoints
        .iter()
        .map(|e| match e.events().recv_timeout(WAIT).unwrap() {
            IoEvent::Opened { link, .. } => link,
            other => panic!("{other:?}"),
        })
        .collect();
    println!("200 clients opened in {:?}", started.elapsed());

    const PER_CLIENT: u32 = 20;
    let started = Instant::now();
    for (c, link) in links.iter().enumerate() {
        for i in 0..PER_CLIENT {
            let mut frame = (c as u32).to_le_bytes().to_vec();
            frame.extend(i.to_le_bytes());
            frame.resize(64 + (i as usize * 37) % 500, 7);
            link.send(frame).unwrap();
        }
    }
    for (c, (endpoint, link)) in endpoints.iter().zip(&links).enumerate() {
        for i in 0..PER_CLIENT {
            match endpoint.events().recv_timeout(WAIT).unwrap() {
                IoEvent::Frame { frame, .. } => {
                    assert_eq!(frame[..4], (c as u32).to_le_bytes());
                    assert_eq!(frame[4..8], i.to_le_bytes());
                }
                other => panic!("{other:?}"),
            }
            link.frame_consumed();
        }
    }
    println!(
        "{} echoes through 200 connections in {:?}",
        200 * PER_CLIENT,
        started.elapsed()
    );
    let s = server.counters().snapshot();
    assert_eq!(s.connections_accepted, 200);
    assert_eq!(s.frames_in, 200 * PER_CLIENT as u64);
    assert_eq!(s.frames_out, 200 * PER_CLIENT as u64);

    // Half leave by dropping their endpoint, half by closing.
    for (i, link) in links.iter().enumerate() {
        if i % 2 == 0 {
            link.close();
        }
    }
    drop(endpoints);
    wait_until("200 server-side Closed", || {
        driver.closed_where(|_| true).len() == 200
    });
    assert_eq!(server.counters().snapshot().connections_active, 0);
    driver.finish(server);
}

#[test]
fn a_client_that_stops_reading_does_not_slow_the_others() {
    let rt = IoRuntime::new(2).unwrap();
    let config = IoConfig {
        outbound_queue: 16,
        ..IoConfig::default()
    };
    let (server, addr, driver) = server(&rt, config.clone());

    let others: Vec<_> = (0..10).map(|_| client(&rt, addr, config.clone())).collect();

    // The stuck client: a small receive window, asks to be flooded, never reads.
    // (Count, don't read `opened_count()`: the driver may lag behind the clients.)
    let before = others.len();
    let mut stuck = rt.handle().block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        tokio_tungstenite::client_async(url(addr), tcp)
            .await
            .unwrap()
            .0
    });
    rt.handle()
        .block_on(stuck.send(Message::binary(FLOOD.to_vec())))
        .unwrap();
    let stuck_id = newest_id(&driver, before);
    wait_until("send() returns Full", || {
        driver.full_seen.load(Ordering::Relaxed) > 0
    });
    let sent_before = server.counters().snapshot().bytes_out;

    // While the server keeps trying to send to it, everyone else is served.
    let mut latencies = Vec::new();
    for round in 0..20u32 {
        for (endpoint, link) in &others {
            latencies.push(round_trip(endpoint, link, round.to_le_bytes().repeat(64)));
        }
    }
    latencies.sort();
    println!(
        "echo latency with a stuck peer: n={} p50={:?} p99={:?} max={:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        latencies[latencies.len() - 1]
    );
    let s = server.counters().snapshot();
    assert!(s.slow_consumers > 0);
    println!(
        "flood: {} KiB written to the stuck peer while others were served, Full returned {} times",
        (s.bytes_out - sent_before) / 1024,
        s.slow_consumers
    );

    // The ECS disconnects the slow consumer; its stuck socket cannot hold the close up for long.
    let closing = Instant::now();
    driver.link(stuck_id).close();
    assert_eq!(driver.wait_closed(stuck_id), CloseCause::Local);
    println!("stuck peer closed after {:?}", closing.elapsed());
    for (endpoint, link) in &others {
        round_trip(endpoint, link, b"still here".to_vec());
    }
    drop(stuck);
    driver.finish(server);
}

#[test]
fn garbage_ends_only_that_connection() {
    let rt = IoRuntime::new(2).unwrap();
    let config = IoConfig {
        max_frame_len: 1024,
        ..IoConfig::default()
    };
    let (server, addr, driver) = server(&rt, config.clone());
    let (bystander, bystander_link) = client(&rt, addr, config.clone());

    // A text message.
    let before = 1; // the bystander
    let mut ws = raw_client(&rt, addr);
    let id = newest_id(&driver, before);
    rt.handle()
        .block_on(ws.send(Message::text("hello")))
        .unwrap();
    assert!(matches!(
        driver.wait_closed(id),
        CloseCause::ProtocolError(_)
    ));
    let close = rt.handle().block_on(async {
        tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("server close frame")
    });
    match close {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1003),
        other => panic!("expected close frame, got {other:?}"),
    }
    assert_eq!(server.counters().snapshot().protocol_errors, 1);

    // An oversized message.
    let before = 2;
    let mut ws = raw_client(&rt, addr);
    let id = newest_id(&driver, before);
    rt.handle()
        .block_on(ws.send(Message::binary(vec![0u8; 2000])))
        .unwrap();
    assert_eq!(driver.wait_closed(id), CloseCause::Oversized);
    assert_eq!(server.counters().snapshot().oversized_frames, 1);

    // Bad WebSocket framing after a good upgrade (reserved opcode).
    let before = 3;
    let mut ws = raw_client(&rt, addr);
    let id = newest_id(&driver, before);
    rt.handle().block_on(async {
        use tokio::io::AsyncWriteExt;
        let tcp = ws.get_mut();
        // FIN + reserved opcode 0xF, masked, empty payload, mask key.
        tcp.write_all(&[0x8F, 0x80, 1, 2, 3, 4]).await.unwrap();
        tcp.flush().await.unwrap();
    });
    assert!(matches!(
        driver.wait_closed(id),
        CloseCause::ProtocolError(_)
    ));
    assert_eq!(server.counters().snapshot().protocol_errors, 2);

    // The bystander never noticed, and new clients are served.
    round_trip(&bystander, &bystander_link, vec![1; 1024]);
    let (fresh, fresh_link) = client(&rt, addr, config);
    round_trip(&fresh, &fresh_link, b"fresh".to_vec());
    drop(ws);
    driver.finish(server);
}

#[test]
fn a_stalled_upgrade_is_closed_after_the_handshake_timeout() {
    let rt = IoRuntime::new(2).unwrap();
    let config = IoConfig {
        handshake_timeout: Duration::from_millis(300),
        ..IoConfig::default()
    };
    let (server, addr, driver) = server(&rt, config.clone());

    let started = Instant::now();
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    let mut partial = std::net::TcpStream::connect(addr).unwrap();
    partial
        .write_all(b"GET /game HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    for stream in [&mut silent, &mut partial] {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 64];
        // EOF (or a reset) once the server gives up; never a timeout.
        match stream.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the server to close, got {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    println!("stalled upgrades closed after {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    wait_until("2 handshake timeouts", || {
        server.counters().snapshot().handshake_timeouts == 2
    });
    assert_eq!(driver.opened_count(), 0);

    // Still serving.
    let (c, l) = client(&rt, addr, config);
    round_trip(&c, &l, b"ok".to_vec());
    driver.finish(server);
}

fn refused(endpoint: &ClientEndpoint) {
    match endpoint.events().recv_timeout(WAIT).expect("refusal") {
        IoEvent::Closed {
            cause: CloseCause::Io(_) | CloseCause::HandshakeFailed(_),
            ..
        } => {}
        other => panic!("expected a refused connection, got {other:?}"),
    }
    assert!(endpoint.events().try_recv().is_err());
}

#[test]
fn per_ip_cap_refuses_and_counts() {
    let rt = IoRuntime::new(2).unwrap();
    let config = IoConfig {
        max_connections_per_ip: 2,
        ..IoConfig::default()
    };
    let (server, addr, driver) = server(&rt, config.clone());
    let (a, _la) = client(&rt, addr, config.clone());
    let (_b, lb) = client(&rt, addr, config.clone());
    refused(&websocket::connect(&rt, &url(addr), config.clone()));
    assert_eq!(server.counters().snapshot().connections_refused_ip_cap, 1);
    // The server counts an accept just after its 101 reaches the client.
    wait_until("2 accepted", || {
        server.counters().snapshot().connections_accepted == 2
    });

    // A slot frees when a connection's socket is gone (just after its Closed).
    drop(a);
    wait_until("one closed", || driver.closed_where(|_| true).len() == 1);
    let mut attempts = 0;
    let (c, lc) = loop {
        attempts += 1;
        assert!(attempts <= 50, "the slot was never released");
        let e = websocket::connect(&rt, &url(addr), config.clone());
        match e.events().recv_timeout(WAIT).unwrap() {
            IoEvent::Opened { link, .. } => break (e, link),
            IoEvent::Closed { .. } => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("{other:?}"),
        }
    };
    round_trip(&c, &lc, b"third".to_vec());
    let _ = lb;
    driver.finish(server);
}

#[test]
fn total_cap_refuses_and_counts() {
    let rt = IoRuntime::new(2).unwrap();
    let config = IoConfig {
        max_connections: 2,
        max_connections_per_ip: 100,
        ..IoConfig::default()
    };
    let (server, addr, driver) = server(&rt, config.clone());
    let _a = client(&rt, addr, config.clone());
    let _b = client(&rt, addr, config.clone());
    refused(&websocket::connect(&rt, &url(addr), config.clone()));
    refused(&websocket::connect(&rt, &url(addr), config));
    wait_until("2 active", || {
        server.counters().snapshot().connections_active == 2
    });
    let s = server.counters().snapshot();
    assert_eq!(s.connections_refused_total_cap, 2);
    assert_eq!(s.connections_refused_ip_cap, 0);
    driver.finish(server);
}

#[test]
fn origin_allow_list() {
    let rt = IoRuntime::new(2).unwrap();
    let config = IoConfig {
        allowed_origins: Some(vec!["https://good.example".into()]),
        ..IoConfig::default()
    };
    let (server, addr, driver) = server(&rt, config.clone());

    let with_origin = |origin: &str| {
        let mut request = url(addr).into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
        rt.handle()
            .block_on(tokio_tungstenite::connect_async(request))
    };
    match with_origin("https://evil.example") {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403)
        }
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    assert_eq!(server.counters().snapshot().connections_refused_origin, 1);
    assert_eq!(server.counters().snapshot().handshake_failures, 0);

    let (mut good, _) = with_origin("https://good.example").expect("allowed origin");
    rt.handle()
        .block_on(good.send(Message::binary(b"hi".to_vec())))
        .unwrap();
    let echo = rt
        .handle()
        .block_on(async { tokio::time::timeout(WAIT, good.next()).await.unwrap() });
    assert!(matches!(echo, Some(Ok(Message::Binary(b))) if &b[..] == b"hi"));

    // No Origin at all (native clients) is allowed.
    let (c, l) = client(&rt, addr, config);
    round_trip(&c, &l, b"native".to_vec());
    assert_eq!(server.counters().snapshot().connections_accepted, 2);
    drop(good);
    driver.finish(server);
}

#[test]
fn client_connect_failures_are_reported() {
    let rt = IoRuntime::new(2).unwrap();
    // Nothing listens on this port (bound and released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = websocket::connect(&rt, &url(port), IoConfig::default());
    refused(&e);
    assert_eq!(e.counters().snapshot().handshake_failures, 1);

    // A TCP server that never answers the upgrade.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = IoConfig {
        handshake_timeout: Duration::from_millis(300),
        ..IoConfig::default()
    };
    let e = websocket::connect(&rt, &url(silent.local_addr().unwrap()), config);
    match e.events().recv_timeout(WAIT).unwrap() {
        IoEvent::Closed {
            cause: CloseCause::HandshakeTimeout,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(e.counters().snapshot().handshake_timeouts, 1);

    let e = websocket::connect(&rt, "not a url", IoConfig::default());
    match e.events().recv_timeout(WAIT).unwrap() {
        IoEvent::Closed {
            cause: CloseCause::HandshakeFailed(_),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
}

#[cfg(not(feature = "tls"))]
#[test]
fn wss_without_the_tls_feature_fails_clearly() {
    let rt = IoRuntime::new(1).unwrap();
    // Nothing needs to listen: the URL is refused before any connection.
    let e = websocket::connect(&rt, "wss://127.0.0.1:9/game", IoConfig::default());
    match e.events().recv_timeout(WAIT).unwrap() {
        IoEvent::Closed {
            id: ConnectionId(1),
            cause: CloseCause::HandshakeFailed(text),
        } => assert_eq!(text, "wss:// needs the `tls` feature"),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.counters().snapshot().handshake_failures, 1);
}
