//! End to end over `wss://` on 127.0.0.1 (`tls` feature): `MokoshServerPlugin`
//! on `ServerTransport::WebSocketTls`, `MokoshClientPlugin` on
//! `ConnectTarget::WebSocketTls`, a self-signed certificate generated at test
//! time. The apps run on virtual time (one tick per update) while the sockets
//! are real, so every loop is bounded by wall-clock time.

use std::time::{Duration, Instant};

use bevy_app::{App, FixedUpdate};
use bevy_ecs::prelude::*;
use mokosh_derive::GameMessage;
use mokosh_net::client::{ConnectTarget, ConnectionState, FromServer, MokoshClient, ToServer};
use mokosh_net::io::tls;
use mokosh_net::protocol::KeyPair;
use mokosh_net::server::{FromClient, MokoshServer, SendTarget, ServerTransport, ToClients};
use mokosh_net::shared::MokoshAppExt;
use mokosh_net::testing::{client_app, server_app};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 100]
struct Ping {
    sequence: u32,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 101]
struct Pong {
    sequence: u32,
    text: String,
}

#[derive(Resource, Default)]
struct Pongs(Vec<Pong>);

fn answer(mut inbox: MessageReader<FromClient<Ping>>, mut outbox: MessageWriter<ToClients<Pong>>) {
    for ping in inbox.read() {
        outbox.write(ToClients::new(
            SendTarget::Client(ping.client_id),
            Pong {
                sequence: ping.message.sequence,
                text: ping.message.text.to_uppercase(),
            },
        ));
    }
}

fn collect(mut inbox: MessageReader<FromServer<Pong>>, mut pongs: ResMut<Pongs>) {
    pongs.0.extend(inbox.read().map(|m| m.message.clone()));
}

/// Updates the server and clients until `done` holds; false after [`WAIT`].
fn run_until(
    server: &mut App,
    clients: &mut [&mut App],
    mut done: impl FnMut(&App, &[&mut App]) -> bool,
) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        server.update();
        for client in clients.iter_mut() {
            client.update();
        }
        if done(server, clients) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn state(app: &App) -> ConnectionState {
    app.world().resource::<ConnectionState>().clone()
}

#[test]
fn plugins_exchange_typed_messages_over_wss() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    let server_tls = tls::server_config_from_pem(
        cert_pem.as_bytes(),
        certified.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();

    let keypair = KeyPair::generate().unwrap();
    let mut server = server_app(keypair.clone(), |config| {
        config.transport = ServerTransport::WebSocketTls {
            addr: "127.0.0.1:0".parse().unwrap(),
            tls: server_tls,
        };
    });
    server
        .add_game_message::<Ping>()
        .add_game_message::<Pong>()
        .add_systems(FixedUpdate, answer);
    server.finish();
    server.cleanup();
    server.update();
    let addr = server
        .world()
        .resource::<MokoshServer>()
        .local_addr()
        .expect("listening");
    let url = format!("wss://{addr}/game");

    let mut client = client_app(keypair.public(), "player", |_| {});
    client
        .add_game_message::<Ping>()
        .add_game_message::<Pong>()
        .init_resource::<Pongs>()
        .add_systems(FixedUpdate, collect);
    client.finish();
    client.cleanup();
    client
        .world_mut()
        .resource_mut::<MokoshClient>()
        .connect(ConnectTarget::WebSocketTls {
            url: url.clone(),
            tls: tls::client_config_from_pem(cert_pem.as_bytes()).unwrap(),
        });

    // A second client with the default roots (it does not trust the certificate).
    let mut untrusting = client_app(keypair.public(), "stranger", |_| {});
    untrusting
        .add_game_message::<Ping>()
        .add_game_message::<Pong>();
    untrusting.finish();
    untrusting.cleanup();
    untrusting
        .world_mut()
        .resource_mut::<MokoshClient>()
        .connect(ConnectTarget::WebSocket(url));

    assert!(
        run_until(
            &mut server,
            &mut [&mut client, &mut untrusting],
            |server, clients| {
                matches!(state(clients[0]), ConnectionState::Connected { .. })
                    // `last: None` is the state before the first attempt.
                    && matches!(
                        state(clients[1]),
                        ConnectionState::Disconnected { last: Some(_) }
                    )
                    && server.world().resource::<MokoshServer>().client_count() == 1
            }
        ),
        "trusting client {:?}, untrusting client {:?}",
        state(&client),
        state(&untrusting)
    );

    for sequence in 0..3 {
        client.world_mut().write_message(ToServer::new(Ping {
            sequence,
            text: format!("hello {sequence}"),
        }));
    }
    assert!(
        run_until(&mut server, &mut [&mut client], |_, clients| {
            clients[0].world().resource::<Pongs>().0.len() == 3
        }),
        "no answers"
    );
    let pongs = &client.world().resource::<Pongs>().0;
    for (sequence, pong) in pongs.iter().enumerate() {
        assert_eq!(
            pong,
            &Pong {
                sequence: sequence as u32,
                text: format!("HELLO {sequence}"),
            }
        );
    }
    assert!(matches!(state(&client), ConnectionState::Connected { .. }));
    assert_eq!(
        server.world().resource::<MokoshServer>().client_count(),
        1,
        "only the trusting client is connected"
    );
}
