//! `message_registry_test`: typed messages, their registry and schema hashes.
//!
//! ```text
//! cargo run --example message_registry_test
//! ```
//!
//! 1. Registers several `#[derive(GameMessage)]` types and prints the registry
//!    (route, name, schema hash) and the protocol hash both peers compare at
//!    the handshake.
//! 2. Shows that a second type on a taken route id is refused, with the error
//!    text (`MessageRegistry::register` returns an error; the app extension
//!    `add_game_message` would panic instead, since it is a start-up bug).
//! 3. Shows that adding a field changes the schema hash (and so the protocol
//!    hash), even though the route and name stay the same.
//! 4. Over the in-memory transport (`mokosh::testing`), a client built against
//!    the old message layout is refused with `SchemaMismatch`, while a client
//!    with the same registry as the server connects.
//!
//! Deterministic (no sockets, virtual time). Exits 0 when every check holds.

mod common;

use std::process::ExitCode;

use bevy_app::App;
use common::{observe, seen};
// The prelude brings both the derive macro and the trait named `GameMessage`.
use mokosh::client::ConnectionState;
use mokosh::prelude::GameMessage;
use mokosh::protocol::{DisconnectReason, KeyPair, MessageInfo, MessageRegistry};
use mokosh::server::ConnectionRejected;
use mokosh::shared::MokoshAppExt;
use mokosh::testing::{TestNetwork, client_app, server_app};
use serde::{Deserialize, Serialize};

/// Version 1 of the game's messages (what the server speaks).
mod v1 {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
    #[route_id = 100]
    pub(crate) struct Move {
        pub(crate) x: f32,
        pub(crate) y: f32,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
    #[route_id = 101]
    pub(crate) struct Say {
        pub(crate) text: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
    #[route_id = 102]
    pub(crate) enum Command {
        Jump,
        Crouch { toggle: bool },
        UseItem(u32),
    }
}

/// Version 2: `Move` gained a `z` field. Same route, same name.
mod v2 {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
    #[route_id = 100]
    pub(crate) struct Move {
        pub(crate) x: f32,
        pub(crate) y: f32,
        pub(crate) z: f32,
    }
}

/// A different type that (by mistake) claims `Move`'s route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 100]
struct Teleport {
    target: (f32, f32),
}

fn print_registry(title: &str, registry: &MessageRegistry) {
    println!("{title}: {} messages", registry.len());
    println!("   route | name     | schema hash");
    for info in registry.iter() {
        println!(
            "   {:5} | {:8} | {:#018x}",
            info.route_id, info.name, info.schema_hash
        );
    }
    println!("   protocol hash {:#018x}", registry.protocol_hash());
}

/// A registry with every v1 message, plus `Move` in the given version.
fn registry_with<M: GameMessage>() -> MessageRegistry {
    let mut registry = MessageRegistry::new();
    registry
        .register::<M>()
        .and_then(|r| r.register::<v1::Say>())
        .and_then(|r| r.register::<v1::Command>())
        .expect("distinct routes");
    registry
}

/// Registers the same messages on an app (the way a game does).
fn add_messages<M: GameMessage>(app: &mut App) {
    app.add_game_message::<M>()
        .add_game_message::<v1::Say>()
        .add_game_message::<v1::Command>();
}

fn main() -> ExitCode {
    let mut ok = true;

    println!("== 1. the registry");
    let v1_registry = registry_with::<v1::Move>();
    print_registry("v1", &v1_registry);

    println!("\n== 2. a duplicate route id is refused");
    let mut registry = registry_with::<v1::Move>();
    match registry.register::<Teleport>() {
        Ok(_) => {
            eprintln!("FAIL: Teleport was registered on a taken route");
            ok = false;
        }
        Err(error) => println!("   register::<Teleport>() → Err: {error}"),
    }
    // Registering the same type twice is harmless (idempotent).
    let again = registry.register::<v1::Move>().is_ok();
    println!("   register::<Move>() a second time → ok: {again}");
    ok &= again && registry.len() == 3;

    println!("\n== 3. changing a field changes the schema hash");
    let (old, new) = (MessageInfo::of::<v1::Move>(), MessageInfo::of::<v2::Move>());
    println!(
        "   Move {{ x, y }}    route {} hash {:#018x}",
        old.route_id, old.schema_hash
    );
    println!(
        "   Move {{ x, y, z }} route {} hash {:#018x}",
        new.route_id, new.schema_hash
    );
    let v2_registry = registry_with::<v2::Move>();
    println!(
        "   protocol hash v1 {:#018x} vs v2 {:#018x}",
        v1_registry.protocol_hash(),
        v2_registry.protocol_hash()
    );
    if old.schema_hash == new.schema_hash
        || v1_registry.protocol_hash() == v2_registry.protocol_hash()
    {
        eprintln!("FAIL: the hashes did not change");
        ok = false;
    }

    println!("\n== 4. a client with a mismatched registry is refused (in-memory transport)");
    let keypair = KeyPair::generate().expect("OS randomness");
    let mut server = server_app(keypair.clone(), |_| {});
    add_messages::<v1::Move>(&mut server);
    observe::<ConnectionRejected>(&mut server);
    let mut current = client_app(keypair.public(), "current-client", |_| {});
    add_messages::<v1::Move>(&mut current);
    let mut outdated = client_app(keypair.public(), "v2-client", |_| {});
    add_messages::<v2::Move>(&mut outdated);
    let mut network = TestNetwork::new(server, vec![current, outdated]);
    let settled = network.run_until(120, |net| {
        matches!(net.client_state(0), ConnectionState::Connected { .. })
            && matches!(
                net.client_state(1),
                ConnectionState::Disconnected { last: Some(_) }
            )
    });
    println!("   same registry:  {:?}", network.client_state(0));
    println!("   v2 `Move`:      {:?}", network.client_state(1));
    for rejected in seen::<ConnectionRejected>(&network.server) {
        println!(
            "   server: connection rejected, reason {:?}",
            rejected.reason
        );
    }
    let refused = network.client_state(1)
        == ConnectionState::Disconnected {
            last: Some(DisconnectReason::SchemaMismatch),
        };
    let server_saw = seen::<ConnectionRejected>(&network.server)
        .iter()
        .any(|rejected| rejected.reason == DisconnectReason::SchemaMismatch);
    if !(settled && refused && server_saw) {
        eprintln!(
            "FAIL: expected the current client connected and the v2 client refused with SchemaMismatch"
        );
        ok = false;
    }

    if ok {
        println!(
            "\nOK: registry, duplicate refusal, schema hashes and the handshake check all behave"
        );
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
