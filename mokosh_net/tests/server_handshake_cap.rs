//! The per-tick cap on client hellos (`ServerPluginConfig::handshakes_per_tick`):
//! a burst of new connections is answered a few per tick, in arrival order,
//! without losing any of them, and a client that sends more before its hello
//! is answered is dropped (two-App tests on virtual time).

use std::sync::Arc;
use std::time::Instant;

use mokosh_net::io::{ConnectionLink, IoEvent};
use mokosh_net::metrics::Rejection;
use mokosh_net::protocol::{ClientConfig, ClientSecurity, KeyPair, MessageRegistry, Session};
use mokosh_net::server::{MokoshServer, NetSession};
use mokosh_net::testing::{TestNetwork, client_app, server_app};

/// Server sessions that have left the "waiting for the hello" state.
fn hellos_answered(network: &mut TestNetwork) -> usize {
    let world = network.server.world_mut();
    let mut sessions = world.query::<&NetSession>();
    sessions
        .iter(world)
        .filter(|session| !session.0.awaits_hello())
        .count()
}

#[test]
fn a_burst_of_hellos_is_answered_a_few_per_tick_and_all_connect() {
    const CLIENTS: usize = 7;
    const CAP: usize = 2;
    let keypair = KeyPair::generate().unwrap();
    let server = server_app(keypair.clone(), |config| config.handshakes_per_tick = CAP);
    let clients = (0..CLIENTS)
        .map(|i| client_app(keypair.public(), &format!("player{i}"), |_| {}))
        .collect();
    let mut network = TestNetwork::new(server, clients);
    let mut answered = 0;
    let mut steps = 0;
    while !network.all_connected() {
        network.step();
        steps += 1;
        assert!(steps < 300, "clients never all connected");
        let now = hellos_answered(&mut network);
        assert!(
            now - answered <= CAP,
            "{} hellos answered in one tick, cap {CAP}",
            now - answered
        );
        answered = now;
    }
    let server = network.server.world().resource::<MokoshServer>();
    assert_eq!(server.client_count(), CLIENTS);
    // All seven hellos arrive in one tick: two are answered, five wait (each
    // counted once, however many ticks it waits).
    assert_eq!(server.counters().hellos_deferred, (CLIENTS - CAP) as u64);
}

#[test]
fn without_a_burst_nothing_waits() {
    let keypair = KeyPair::generate().unwrap();
    let server = server_app(keypair.clone(), |_| {});
    let clients = (0..3)
        .map(|i| client_app(keypair.public(), &format!("player{i}"), |_| {}))
        .collect();
    let mut network = TestNetwork::new(server, clients);
    assert!(network.run_until(120, |net| net.all_connected()));
    let server = network.server.world().resource::<MokoshServer>();
    assert_eq!(server.counters().hellos_deferred, 0);
    assert_eq!(
        server
            .metrics()
            .snapshot()
            .rejected(Rejection::ProtocolViolation),
        0
    );
}

/// A raw connection whose first frame is a genuine hello.
fn raw_hello(network: &mut TestNetwork, keypair: &KeyPair) -> (ConnectionLink, Vec<u8>) {
    let endpoint = network.listener().connect();
    let config = ClientConfig {
        security: ClientSecurity::Pinned(keypair.public()),
        auth_token: b"raw".to_vec(),
        registry: Arc::new(MessageRegistry::new()),
        session: Default::default(),
    };
    let mut session = Session::client(&config, Instant::now()).unwrap();
    let hello = session
        .poll_transmit()
        .expect("a client starts with its hello");
    let link = endpoint
        .events()
        .try_iter()
        .find_map(|event| match event {
            IoEvent::Opened { link, .. } => Some(link),
            _ => None,
        })
        .expect("the memory transport opens at once");
    // Keep the endpoint (and so the connection) alive for the whole test.
    std::mem::forget(endpoint);
    (link, hello)
}

#[test]
fn a_frame_sent_while_the_hello_waits_is_a_violation() {
    let keypair = KeyPair::generate().unwrap();
    let server = server_app(keypair.clone(), |config| config.handshakes_per_tick = 1);
    let mut network = TestNetwork::new(server, Vec::new());
    let (first, first_hello) = raw_hello(&mut network, &keypair);
    let (second, second_hello) = raw_hello(&mut network, &keypair);
    first.send(first_hello).unwrap();
    second.send(second_hello.clone()).unwrap();
    // Not waiting for the answer: the hello again.
    second.send(second_hello).unwrap();
    network.step();
    network.step();
    let server = network.server.world().resource::<MokoshServer>();
    assert_eq!(server.counters().hellos_deferred, 1);
    assert_eq!(
        server
            .metrics()
            .snapshot()
            .rejected(Rejection::ProtocolViolation),
        1
    );
    // The impatient connection is gone; the first one is still handshaking.
    assert_eq!(server.connection_count(), 1);
}
