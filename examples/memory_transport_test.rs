//! `memory_transport_test`: a server app and three client apps over the
//! in-memory transport, stepped deterministically.
//!
//! ```text
//! cargo run --example memory_transport_test
//! ```
//!
//! `mokosh::testing::TestNetwork` wires the apps together through in-process
//! channels (no sockets, no threads for IO, no sleeps) and advances every app
//! by exactly one fixed tick of virtual time per step, so the same program
//! always takes the same number of ticks. The phases:
//!
//! 1. connect: all three clients complete the Noise handshake and
//!    authentication;
//! 2. client → server: each client sends a `Chat` line; the server relays
//!    every line to everyone (`SendTarget::All`);
//! 3. server → client: the server sends each client its own `WorldSnapshot`;
//! 4. kick: the server kicks client #2 (`KickClient`), which sees
//!    `Disconnected { last: Some(Kicked) }` and the detail; the others stay.
//!
//! It prints how many ticks each phase took (deterministic) and exits 0 when
//! every phase completed, 1 otherwise.

mod common;

use std::process::ExitCode;

use bevy_app::FixedUpdate;
use bevy_ecs::prelude::*;
use common::{Chat, PlayerState, WorldSnapshot, observe, seen};
use mokosh::client::{ConnectionState, DisconnectedFromServer, FromServer, ToServer};
use mokosh::protocol::{DisconnectReason, KeyPair};
use mokosh::server::{
    ClientDisconnected, FromClient, KickClient, MokoshServer, SendTarget, ToClients,
};
use mokosh::shared::{ClientId, MokoshAppExt};
use mokosh::testing::{TICK, TestNetwork, client_app, server_app};

const CLIENTS: usize = 3;
/// Upper bound for each phase, in ticks (a phase normally takes a few).
const MAX_TICKS: usize = 120;

/// Server: relays every chat line to everyone, tagged with its sender.
fn relay(mut inbox: MessageReader<FromClient<Chat>>, mut outbox: MessageWriter<ToClients<Chat>>) {
    for chat in inbox.read() {
        outbox.write(ToClients::new(
            SendTarget::All,
            Chat {
                from: chat.client_id.0,
                text: chat.message.text.clone(),
            },
        ));
    }
}

fn client_ids(network: &TestNetwork) -> Vec<Option<ClientId>> {
    (0..network.clients.len())
        .map(|index| match network.client_state(index) {
            ConnectionState::Connected { client_id } => Some(client_id),
            _ => None,
        })
        .collect()
}

/// Steps until `done`; prints and returns the number of ticks, or `None`.
fn phase(
    network: &mut TestNetwork,
    name: &str,
    mut done: impl FnMut(&mut TestNetwork) -> bool,
) -> Option<usize> {
    let mut ticks = 0;
    let ok = network.run_until(MAX_TICKS, |net| {
        ticks += 1;
        done(net)
    });
    if ok {
        println!(
            "{name:<40} {ticks:3} tick(s) ({:.1} ms of virtual time)",
            ticks as f64 * TICK.as_secs_f64() * 1e3
        );
        Some(ticks)
    } else {
        eprintln!("FAIL: {name}: not done after {MAX_TICKS} ticks");
        None
    }
}

fn main() -> ExitCode {
    let keypair = KeyPair::generate().expect("OS randomness");
    let mut server = server_app(keypair.clone(), |_| {});
    server
        .add_game_message::<Chat>()
        .add_game_message::<WorldSnapshot>()
        .add_systems(FixedUpdate, relay);
    observe::<ClientDisconnected>(&mut server);
    let clients = (0..CLIENTS)
        .map(|index| {
            let mut client = client_app(keypair.public(), &format!("player-{index}"), |_| {});
            client
                .add_game_message::<Chat>()
                .add_game_message::<WorldSnapshot>();
            observe::<FromServer<Chat>>(&mut client);
            observe::<FromServer<WorldSnapshot>>(&mut client);
            observe::<DisconnectedFromServer>(&mut client);
            client
        })
        .collect();
    let mut network = TestNetwork::new(server, clients);
    println!(
        "in-memory network: 1 server, {CLIENTS} clients, one {:?} tick per step\n",
        TICK
    );

    // 1. connect
    let Some(_) = phase(&mut network, "1. all clients connected", |net| {
        net.all_connected()
    }) else {
        return ExitCode::FAILURE;
    };
    let ids: Vec<ClientId> = client_ids(&network).into_iter().flatten().collect();
    println!("   client ids: {ids:?}");

    // 2. client → server → all
    for (index, client) in network.clients.iter_mut().enumerate() {
        client.world_mut().write_message(ToServer::new(Chat {
            from: 0,
            text: format!("hello from player-{index}"),
        }));
    }
    let Some(_) = phase(&mut network, "2. chat relayed to every client", |net| {
        net.clients
            .iter()
            .all(|client| seen::<FromServer<Chat>>(client).len() == CLIENTS)
    }) else {
        return ExitCode::FAILURE;
    };
    for (index, client) in network.clients.iter().enumerate() {
        let lines: Vec<String> = seen::<FromServer<Chat>>(client)
            .iter()
            .map(|chat| format!("client#{}: {}", chat.message.from, chat.message.text))
            .collect();
        println!("   player-{index} heard {lines:?}");
    }

    // 3. server → each client, privately
    for id in &ids {
        network.server.world_mut().write_message(ToClients::new(
            SendTarget::Client(*id),
            WorldSnapshot {
                tick: id.0 * 100,
                players: vec![PlayerState {
                    client_id: id.0,
                    position: (id.0 as f32, 0.0),
                    last_input: 0,
                }],
            },
        ));
    }
    let Some(_) = phase(&mut network, "3. private snapshots delivered", |net| {
        net.clients
            .iter()
            .all(|client| !seen::<FromServer<WorldSnapshot>>(client).is_empty())
    }) else {
        return ExitCode::FAILURE;
    };
    let mut ok = true;
    for (client, id) in network.clients.iter().zip(&ids) {
        let snapshots = seen::<FromServer<WorldSnapshot>>(client);
        let mine = snapshots.len() == 1 && snapshots[0].message.players[0].client_id == id.0;
        println!(
            "   {id} got {} snapshot(s), for itself: {mine}",
            snapshots.len()
        );
        ok &= mine;
    }

    // 4. kick the second client
    let victim = ids[1];
    network
        .server
        .world_mut()
        .write_message(KickClient::new(victim, "cheating detected"));
    let Some(_) = phase(&mut network, "4. kicked client sees the reason", |net| {
        matches!(
            net.client_state(1),
            ConnectionState::Disconnected { last: Some(_) }
        )
    }) else {
        return ExitCode::FAILURE;
    };
    let gone = seen::<DisconnectedFromServer>(&network.clients[1]);
    let server_side = seen::<ClientDisconnected>(&network.server);
    println!("   client side: {:?}", network.client_state(1));
    if let Some(gone) = gone.first() {
        println!(
            "   DisconnectedFromServer: reason {:?}, initiator {:?}, detail {:?}",
            gone.reason, gone.initiator, gone.detail
        );
    }
    if let Some(left) = server_side.first() {
        println!(
            "   server side: {} left, reason {:?}, initiator {:?}",
            left.client_id, left.reason, left.initiator
        );
    }
    let remaining = network
        .server
        .world()
        .resource::<MokoshServer>()
        .client_count();
    let others_connected = client_ids(&network)
        .iter()
        .enumerate()
        .all(|(index, id)| index == 1 || id.is_some());
    println!("   clients still connected: {remaining} (the others unaffected: {others_connected})");
    ok &= network.client_state(1)
        == ConnectionState::Disconnected {
            last: Some(DisconnectReason::Kicked),
        }
        && gone.len() == 1
        && gone[0].reason == DisconnectReason::Kicked
        && remaining == CLIENTS - 1
        && others_connected;

    if ok {
        println!("\nOK: connect, messages both ways and a kick over the in-memory transport");
        ExitCode::SUCCESS
    } else {
        eprintln!("\nFAIL: see above");
        ExitCode::FAILURE
    }
}
