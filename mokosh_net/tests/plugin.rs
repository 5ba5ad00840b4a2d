//! Two-App tests: a server app and client apps in one process over the
//! in-memory transport, stepped tick by tick on virtual time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_app::{App, FixedUpdate};
use bevy_ecs::prelude::*;
use mokosh_derive::GameMessage;
use mokosh_net::auth::{TokenAuthProvider, TokenIssuer};
use mokosh_net::client::{
    ConnectionState, DisconnectedFromServer, FromServer, MokoshClient, ToServer,
};
use mokosh_net::metrics::Rejection;
use mokosh_net::protocol::rate_limit::RateLimitConfig;
use mokosh_net::protocol::{
    ClientConfig, ClientSecurity, DisconnectReason, Initiator, KeyPair, MessageRegistry, Session,
    SessionEvent,
};
use mokosh_net::server::{
    AuthenticatedIdentity, ClientConnected, ClientDisconnected, ConnectionRejected, FromClient,
    KickClient, MokoshServer, SendTarget, ToClients,
};
use mokosh_net::shared::{ClientId, MokoshAppExt};
use mokosh_net::testing::{TestNetwork, client_app, observe, seen, server_app};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 100]
struct Input {
    sequence: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 101]
struct Echo {
    from: u64,
    sequence: u32,
}

mod v2 {
    use super::*;

    /// Same route as `Input` with a different layout.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
    #[route_id = 100]
    pub(super) struct Input {
        pub(super) sequence: u64,
    }
}

/// Server: echoes each Input back to its sender as Echo.
fn echo_inputs(
    mut inbox: MessageReader<FromClient<Input>>,
    mut outbox: MessageWriter<ToClients<Echo>>,
) {
    for input in inbox.read() {
        outbox.write(ToClients::new(
            SendTarget::Client(input.client_id),
            Echo {
                from: input.client_id.0,
                sequence: input.message.sequence,
            },
        ));
    }
}

fn server(
    keypair: &KeyPair,
    configure: impl FnOnce(&mut mokosh_net::server::ServerPluginConfig),
) -> App {
    let mut app = server_app(keypair.clone(), configure);
    app.add_game_message::<Input>().add_game_message::<Echo>();
    observe::<ClientConnected>(&mut app);
    observe::<ClientDisconnected>(&mut app);
    observe::<ConnectionRejected>(&mut app);
    app
}

fn client(keypair: &KeyPair, token: &str) -> App {
    let mut app = client_app(keypair.public(), token, |_| {});
    app.add_game_message::<Input>().add_game_message::<Echo>();
    observe::<FromServer<Echo>>(&mut app);
    observe::<DisconnectedFromServer>(&mut app);
    app
}

fn send_input(app: &mut App, sequence: u32) {
    app.world_mut()
        .write_message(ToServer::new(Input { sequence }));
}

#[test]
fn clients_connect_and_are_announced() {
    let keypair = KeyPair::generate().unwrap();
    let clients = (0..3)
        .map(|i| client(&keypair, &format!("player-{i}")))
        .collect();
    let mut network = TestNetwork::new(server(&keypair, |_| {}), clients);
    assert!(network.run_until(60, |net| net.all_connected()));
    let connected = seen::<ClientConnected>(&network.server);
    assert_eq!(connected.len(), 3);
    let mut users: Vec<_> = connected
        .iter()
        .map(|c| c.identity.user_id.clone())
        .collect();
    users.sort();
    assert_eq!(users, ["player-0", "player-1", "player-2"]);
    // Each connection entity carries its identity and client id.
    let world = network.server.world_mut();
    let mut query = world.query::<(&ClientId, &AuthenticatedIdentity)>();
    assert_eq!(query.iter(world).count(), 3);
}

#[test]
fn messages_flow_both_ways_with_targets() {
    let keypair = KeyPair::generate().unwrap();
    let clients = (0..3).map(|i| client(&keypair, &format!("p{i}"))).collect();
    let mut server = server(&keypair, |_| {});
    server.add_systems(FixedUpdate, echo_inputs);
    let mut network = TestNetwork::new(server, clients);
    assert!(network.run_until(60, |net| net.all_connected()));

    for (index, client) in network.clients.iter_mut().enumerate() {
        for sequence in 0..5 {
            send_input(client, index as u32 * 100 + sequence);
        }
    }
    assert!(network.run_until(30, |net| {
        net.clients
            .iter()
            .all(|c| seen::<FromServer<Echo>>(c).len() == 5)
    }));
    for (index, client) in network.clients.iter().enumerate() {
        let echoes = seen::<FromServer<Echo>>(client);
        let sequences: Vec<u32> = echoes.iter().map(|e| e.message.sequence).collect();
        let expected: Vec<u32> = (0..5).map(|s| index as u32 * 100 + s).collect();
        assert_eq!(
            sequences, expected,
            "client {index} got its own echoes, in order"
        );
    }

    // Broadcast targets.
    let ids: Vec<ClientId> = {
        let world = network.server.world_mut();
        let mut query = world.query::<&ClientId>();
        let mut ids: Vec<ClientId> = query.iter(world).copied().collect();
        ids.sort();
        ids
    };
    let before: Vec<usize> = network
        .clients
        .iter()
        .map(|c| seen::<FromServer<Echo>>(c).len())
        .collect();
    let world = network.server.world_mut();
    world.write_message(ToClients::new(
        SendTarget::All,
        Echo {
            from: 0,
            sequence: 1000,
        },
    ));
    world.write_message(ToClients::new(
        SendTarget::AllExcept(ids[0]),
        Echo {
            from: 0,
            sequence: 2000,
        },
    ));
    world.write_message(ToClients::new(
        SendTarget::List(vec![ids[0], ids[2]]),
        Echo {
            from: 0,
            sequence: 3000,
        },
    ));
    network.run_until(10, |_| false);
    let extra: Vec<Vec<u32>> = network
        .clients
        .iter()
        .zip(before)
        .map(|(c, b)| {
            seen::<FromServer<Echo>>(c)[b..]
                .iter()
                .map(|e| e.message.sequence)
                .collect()
        })
        .collect();
    // Which app is which id depends on connection order; check the multiset.
    let mut all: Vec<u32> = extra.iter().flatten().copied().collect();
    all.sort();
    assert_eq!(all, vec![1000, 1000, 1000, 2000, 2000, 3000, 3000]);
    assert!(extra.iter().all(|e| e.contains(&1000)));
}

#[test]
fn disconnect_reasons_reach_both_sides() {
    let keypair = KeyPair::generate().unwrap();
    let clients = (0..2).map(|i| client(&keypair, &format!("p{i}"))).collect();
    let mut network = TestNetwork::new(server(&keypair, |_| {}), clients);
    assert!(network.run_until(60, |net| net.all_connected()));

    // Client 0 leaves.
    network.clients[0]
        .world_mut()
        .resource_mut::<MokoshClient>()
        .disconnect();
    assert!(network.run_until(10, |net| {
        !seen::<ClientDisconnected>(&net.server).is_empty()
    }));
    let gone = &seen::<ClientDisconnected>(&network.server)[0];
    assert_eq!(
        (gone.reason, gone.initiator),
        (DisconnectReason::Requested, Initiator::Peer)
    );
    assert_eq!(
        network.client_state(0),
        ConnectionState::Disconnected {
            last: Some(DisconnectReason::Requested)
        }
    );

    // The server kicks client 1.
    let ConnectionState::Connected { client_id } = network.client_state(1) else {
        panic!("client 1 should still be connected");
    };
    network
        .server
        .world_mut()
        .write_message(KickClient::new(client_id, "afk"));
    assert!(network.run_until(10, |net| {
        !seen::<DisconnectedFromServer>(&net.clients[1]).is_empty()
    }));
    let kicked = &seen::<DisconnectedFromServer>(&network.clients[1])[0];
    assert_eq!(
        (kicked.reason, kicked.initiator),
        (DisconnectReason::Kicked, Initiator::Peer)
    );
    assert_eq!(kicked.detail, "afk");
    assert_eq!(
        network
            .server
            .world()
            .resource::<MokoshServer>()
            .client_count(),
        0
    );
}

#[test]
fn idle_clients_time_out() {
    let keypair = KeyPair::generate().unwrap();
    let mut network = TestNetwork::new(server(&keypair, |_| {}), vec![client(&keypair, "p")]);
    assert!(network.run_until(60, |net| net.all_connected()));
    // The client app freezes (stops updating); only the server ticks.
    for _ in 0..(11 * 60) {
        network.server.update();
    }
    let gone = seen::<ClientDisconnected>(&network.server);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].reason, DisconnectReason::IdleTimeout);
    let metrics = network
        .server
        .world()
        .resource::<MokoshServer>()
        .metrics()
        .snapshot();
    assert_eq!(metrics.rejected(Rejection::Timeout), 1);
}

#[test]
fn rate_limited_client_is_dropped_others_unaffected() {
    let keypair = KeyPair::generate().unwrap();
    let clients = vec![client(&keypair, "flooder"), client(&keypair, "calm")];
    let mut server = server(&keypair, |config| {
        config.session.rate_limit = RateLimitConfig {
            messages_per_sec: 30,
            message_burst: 30,
            violation_burst: 20,
            ..RateLimitConfig::default()
        };
    });
    server.add_systems(FixedUpdate, echo_inputs);
    let mut network = TestNetwork::new(server, clients);
    assert!(network.run_until(60, |net| net.all_connected()));
    for tick in 0..120u32 {
        for sequence in 0..20 {
            send_input(&mut network.clients[0], tick * 20 + sequence);
        }
        if tick % 10 == 0 {
            send_input(&mut network.clients[1], tick);
        }
        network.step();
    }
    network.run_until(10, |_| false);
    let metrics = network
        .server
        .world()
        .resource::<MokoshServer>()
        .metrics()
        .snapshot();
    assert!(metrics.rejected(Rejection::RateLimited) > 0);
    let gone = seen::<ClientDisconnected>(&network.server);
    assert_eq!(gone.len(), 1, "only the flooder is dropped");
    assert_eq!(gone[0].reason, DisconnectReason::RateLimited);
    assert_eq!(
        seen::<DisconnectedFromServer>(&network.clients[0])[0].reason,
        DisconnectReason::RateLimited
    );
    // The calm client got every echo.
    assert_eq!(seen::<FromServer<Echo>>(&network.clients[1]).len(), 12);
}

#[test]
fn schema_mismatch_is_refused() {
    let keypair = KeyPair::generate().unwrap();
    let mut stale = client_app(keypair.public(), "old-build", |_| {});
    stale
        .add_game_message::<v2::Input>()
        .add_game_message::<Echo>();
    observe::<DisconnectedFromServer>(&mut stale);
    let mut network = TestNetwork::new(server(&keypair, |_| {}), vec![stale]);
    assert!(network.run_until(30, |net| {
        !seen::<ConnectionRejected>(&net.server).is_empty()
    }));
    assert_eq!(
        seen::<ConnectionRejected>(&network.server)[0].reason,
        DisconnectReason::SchemaMismatch
    );
    assert_eq!(
        network.client_state(0),
        ConnectionState::Disconnected {
            last: Some(DisconnectReason::SchemaMismatch)
        }
    );
    let metrics = network
        .server
        .world()
        .resource::<MokoshServer>()
        .metrics()
        .snapshot();
    assert_eq!(metrics.rejected(Rejection::SchemaMismatch), 1);
}

#[test]
fn token_auth_accepts_valid_and_refuses_invalid_tokens() {
    let keypair = KeyPair::generate().unwrap();
    let secret = [7u8; 32];
    let issuer = TokenIssuer::new(&secret).unwrap();
    let good = issuer.issue("alice", Duration::from_secs(60)).unwrap();
    let forged = TokenIssuer::new(&[8u8; 32])
        .unwrap()
        .issue("mallory", Duration::from_secs(60))
        .unwrap();
    let server = server(&keypair, |config| {
        config.auth = Some(Arc::new(TokenAuthProvider::new(&secret).unwrap()));
    });
    let mut network = TestNetwork::new(
        server,
        vec![client(&keypair, &good), client(&keypair, &forged)],
    );
    assert!(network.run_until(60, |net| {
        matches!(
            net.client_state(1),
            ConnectionState::Disconnected { last: Some(_) }
        ) && matches!(net.client_state(0), ConnectionState::Connected { .. })
    }));
    assert_eq!(
        seen::<ClientConnected>(&network.server)[0].identity.user_id,
        "alice"
    );
    assert_eq!(
        network.client_state(1),
        ConnectionState::Disconnected {
            last: Some(DisconnectReason::AuthFailed)
        }
    );
    assert_eq!(
        seen::<ConnectionRejected>(&network.server)[0].reason,
        DisconnectReason::AuthFailed
    );
    let metrics = network
        .server
        .world()
        .resource::<MokoshServer>()
        .metrics()
        .snapshot();
    assert_eq!(metrics.rejected(Rejection::AuthFailed), 1);
}

#[test]
fn hostile_raw_client_replay_and_garbage_only_hurt_itself() {
    let keypair = KeyPair::generate().unwrap();
    let mut server = server(&keypair, |_| {});
    server.add_systems(FixedUpdate, echo_inputs);
    let mut network = TestNetwork::new(server, vec![client(&keypair, "honest")]);
    assert!(network.run_until(60, |net| net.all_connected()));

    // A raw client: drives its own Session over a memory connection.
    let endpoint = network.listener().connect();
    let mut registry = MessageRegistry::new();
    registry
        .register::<Input>()
        .unwrap()
        .register::<Echo>()
        .unwrap();
    let config = ClientConfig {
        security: ClientSecurity::Pinned(keypair.public()),
        auth_token: b"raw".to_vec(),
        registry: Arc::new(registry),
        session: Default::default(),
    };
    let now = Instant::now();
    let mut session = Session::client(&config, now).unwrap();
    let mut link = None;
    let mut connected = false;
    for _ in 0..60 {
        network.step();
        for event in endpoint.events().try_iter() {
            match event {
                mokosh_net::io::IoEvent::Opened { link: l, .. } => link = Some(l),
                mokosh_net::io::IoEvent::Frame { frame, .. } => {
                    let _ = session.handle_packet(now, &frame);
                    if let Some(l) = &link {
                        l.frame_consumed();
                    }
                }
                mokosh_net::io::IoEvent::Closed { .. } => {}
            }
        }
        while let Some(event) = session.poll_event() {
            connected |= matches!(event, SessionEvent::Connected { .. });
        }
        if let Some(l) = &link {
            while let Some(frame) = session.poll_transmit() {
                l.send(frame).unwrap();
            }
        }
        if connected {
            break;
        }
    }
    assert!(connected, "the raw client completes the handshake");
    let link = link.unwrap();

    // Replay a genuine sealed packet.
    session.send_message(&Input { sequence: 1 }).unwrap();
    let frame = session.poll_transmit().unwrap();
    link.send(frame.clone()).unwrap();
    link.send(frame).unwrap();
    network.run_until(5, |_| false);
    let metrics = network
        .server
        .world()
        .resource::<MokoshServer>()
        .metrics()
        .snapshot();
    assert_eq!(metrics.rejected(Rejection::Replay), 1);
    let gone = seen::<ClientDisconnected>(&network.server);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].reason, DisconnectReason::Replay);

    // The honest client is still served.
    send_input(&mut network.clients[0], 42);
    assert!(network.run_until(10, |net| {
        seen::<FromServer<Echo>>(&net.clients[0])
            .iter()
            .any(|e| e.message.sequence == 42)
    }));

    // Garbage before the handshake: only that connection ends.
    let garbage = network.listener().connect();
    network.step();
    let garbage_link = garbage
        .events()
        .try_iter()
        .find_map(|event| match event {
            mokosh_net::io::IoEvent::Opened { link, .. } => Some(link),
            _ => None,
        })
        .unwrap();
    garbage_link.send(vec![0xff; 40]).unwrap();
    network.run_until(5, |_| false);
    let metrics = network
        .server
        .world()
        .resource::<MokoshServer>()
        .metrics()
        .snapshot();
    assert_eq!(metrics.rejected(Rejection::Malformed), 1);
    assert!(matches!(
        network.client_state(0),
        ConnectionState::Connected { .. }
    ));
}

#[test]
fn server_shutdown_is_announced_to_clients() {
    let keypair = KeyPair::generate().unwrap();
    let clients = (0..2).map(|i| client(&keypair, &format!("p{i}"))).collect();
    let mut network = TestNetwork::new(server(&keypair, |_| {}), clients);
    assert!(network.run_until(60, |net| net.all_connected()));
    network
        .server
        .world_mut()
        .write_message(bevy_app::AppExit::Success);
    assert!(network.run_until(10, |net| {
        net.clients
            .iter()
            .all(|c| !seen::<DisconnectedFromServer>(c).is_empty())
    }));
    for client in &network.clients {
        let gone = &seen::<DisconnectedFromServer>(client)[0];
        assert_eq!(
            (gone.reason, gone.initiator),
            (DisconnectReason::ServerShutdown, Initiator::Peer)
        );
    }
}
