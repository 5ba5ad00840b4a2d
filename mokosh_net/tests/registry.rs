//! `MessageRegistry`: registration rules, lookups and the protocol hash.

// The message types below exist only to be registered.
#![allow(dead_code)]

use mokosh_derive::GameMessage;
use mokosh_net::protocol::message::{Direction, GameMessage, RouteId};
use mokosh_net::protocol::registry::{MessageInfo, MessageRegistry, RegistryError};
use mokosh_net::protocol::schema::{Schema, SchemaHasher};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, GameMessage)]
#[route_id = 16]
struct Chat {
    text: String,
}

#[derive(Debug, Serialize, Deserialize, GameMessage)]
#[route_id = 17]
enum Input {
    Move { dx: i8, dy: i8 },
    Jump,
}

#[derive(Debug, Serialize, Deserialize, GameMessage)]
#[route_id = 0xFFFF]
struct LastRoute;

/// Claims Chat's route.
#[derive(Debug, Serialize, Deserialize, GameMessage)]
#[route_id = 16]
struct Impostor(u8);

mod v2 {
    use super::{Deserialize, GameMessage, Serialize};

    /// `Chat` with a changed schema, same route.
    #[derive(Debug, Serialize, Deserialize, GameMessage)]
    #[route_id = 16]
    pub(crate) struct Chat {
        pub(crate) text: String,
        pub(crate) channel: u8,
    }
}

/// A manual impl that (wrongly) uses a reserved route.
#[derive(Debug, Serialize, Deserialize)]
struct Rogue;

impl Schema for Rogue {
    const SCHEMA_HASH: u64 = 1;
}

impl GameMessage for Rogue {
    const ROUTE_ID: RouteId = 3;
    const NAME: &'static str = "Rogue";
}

fn registry_abc() -> MessageRegistry {
    let mut registry = MessageRegistry::new();
    registry
        .register::<Chat>()
        .unwrap()
        .register::<Input>()
        .unwrap()
        .register::<LastRoute>()
        .unwrap();
    registry
}

#[test]
fn derive_sets_route_and_name() {
    assert_eq!(Chat::ROUTE_ID, 16);
    assert_eq!(Chat::NAME, "Chat");
    assert_eq!(Input::NAME, "Input");
    assert_eq!(LastRoute::ROUTE_ID, u16::MAX);
}

#[test]
fn lookups() {
    let registry = registry_abc();
    assert_eq!(registry.len(), 3);
    assert!(!registry.is_empty());
    assert!(registry.contains(17));
    assert!(!registry.contains(18));
    assert_eq!(registry.get(18), None);
    assert_eq!(registry.get(0), None);

    let chat = registry.get(16).expect("Chat is registered");
    assert_eq!(chat, &MessageInfo::of::<Chat>());
    assert_eq!(chat.route_id, 16);
    assert_eq!(chat.name, "Chat");
    assert_eq!(chat.schema_hash, <Chat as Schema>::SCHEMA_HASH);

    let routes: Vec<RouteId> = registry.iter().map(|info| info.route_id).collect();
    assert_eq!(routes, [16, 17, u16::MAX]);
    let names: Vec<&str> = (&registry)
        .into_iter()
        .rev()
        .map(|info| info.name)
        .collect();
    assert_eq!(names, ["LastRoute", "Input", "Chat"]);
    assert_eq!(registry.iter().len(), 3);
}

#[test]
fn empty_registry() {
    let registry = MessageRegistry::default();
    assert!(registry.is_empty());
    assert_eq!(registry.len(), 0);
    assert_eq!(registry.iter().next(), None);
}

#[test]
fn duplicate_route_names_both_types() {
    let mut registry = registry_abc();
    let err = registry.register::<Impostor>().unwrap_err();
    assert_eq!(
        err,
        RegistryError::DuplicateRoute {
            route_id: 16,
            existing: "Chat",
            new: "Impostor",
        }
    );
    let message = err.to_string();
    assert!(message.contains("Chat"), "{message}");
    assert!(message.contains("Impostor"), "{message}");
    assert!(message.contains("16"), "{message}");
    // The failed registration left the registry untouched.
    assert_eq!(registry.get(16).unwrap().name, "Chat");
    assert_eq!(registry.len(), 3);
}

#[test]
fn same_name_different_type_is_a_duplicate() {
    let mut registry = MessageRegistry::new();
    registry.register::<Chat>().unwrap();
    let err = registry.register::<v2::Chat>().unwrap_err();
    assert_eq!(
        err,
        RegistryError::DuplicateRoute {
            route_id: 16,
            existing: "Chat",
            new: "Chat",
        }
    );
}

#[test]
fn registering_the_same_type_twice_is_idempotent() {
    let mut registry = registry_abc();
    let before = registry.protocol_hash();
    registry
        .register::<Chat>()
        .unwrap()
        .register::<Input>()
        .unwrap();
    assert_eq!(registry.len(), 3);
    assert_eq!(registry.protocol_hash(), before);
}

#[test]
fn raw_collision_with_typed_entry_is_a_duplicate() {
    let mut registry = registry_abc();
    let err = registry
        .register_raw(MessageInfo::of::<Chat>())
        .unwrap_err();
    assert!(matches!(
        err,
        RegistryError::DuplicateRoute { route_id: 16, .. }
    ));
}

#[test]
fn reserved_routes_are_rejected() {
    let mut registry = MessageRegistry::new();
    assert_eq!(
        registry.register::<Rogue>().unwrap_err(),
        RegistryError::ReservedRoute {
            route_id: 3,
            name: "Rogue",
        }
    );
    assert!(
        registry
            .register_raw(MessageInfo::new(15, "Control", 0))
            .is_err()
    );
    assert!(registry.is_empty());
}

#[test]
fn protocol_hash_is_independent_of_registration_order() {
    let forward = registry_abc();
    let mut backward = MessageRegistry::new();
    backward
        .register::<LastRoute>()
        .unwrap()
        .register::<Input>()
        .unwrap()
        .register::<Chat>()
        .unwrap();
    assert_eq!(forward.protocol_hash(), backward.protocol_hash());
}

#[test]
fn protocol_hash_changes_when_messages_are_added_or_removed() {
    let mut registry = MessageRegistry::new();
    let empty = registry.protocol_hash();
    registry.register::<Chat>().unwrap();
    let one = registry.protocol_hash();
    registry.register::<Input>().unwrap();
    let two = registry.protocol_hash();
    assert_ne!(empty, one);
    assert_ne!(one, two);
    assert_ne!(empty, two);

    let mut without_input = MessageRegistry::new();
    without_input
        .register::<Chat>()
        .unwrap()
        .register::<LastRoute>()
        .unwrap();
    assert_ne!(
        without_input.protocol_hash(),
        registry_abc().protocol_hash()
    );
}

#[test]
fn protocol_hash_changes_when_a_schema_changes() {
    let mut old = MessageRegistry::new();
    old.register::<Chat>().unwrap().register::<Input>().unwrap();
    let mut new = MessageRegistry::new();
    new.register::<v2::Chat>()
        .unwrap()
        .register::<Input>()
        .unwrap();
    assert_ne!(
        <Chat as Schema>::SCHEMA_HASH,
        <v2::Chat as Schema>::SCHEMA_HASH
    );
    assert_ne!(old.protocol_hash(), new.protocol_hash());
}

#[test]
fn protocol_hash_changes_when_a_route_moves() {
    let hash = <Chat as Schema>::SCHEMA_HASH;
    let mut a = MessageRegistry::new();
    a.register_raw(MessageInfo::new(16, "Chat", hash)).unwrap();
    let mut b = MessageRegistry::new();
    b.register_raw(MessageInfo::new(20, "Chat", hash)).unwrap();
    assert_ne!(a.protocol_hash(), b.protocol_hash());
}

#[test]
fn protocol_hash_matches_spec() {
    let registry = registry_abc();
    let mut bytes = Vec::new();
    let mut word = |w: u64| bytes.extend_from_slice(&w.to_le_bytes());
    word(fnv1a64(b"mokosh.protocol"));
    word(3);
    for (route, hash) in [
        (16u64, <Chat as Schema>::SCHEMA_HASH),
        (17, <Input as Schema>::SCHEMA_HASH),
        (65535, <LastRoute as Schema>::SCHEMA_HASH),
    ] {
        word(route);
        word(hash);
        word(0); // Direction::Both
    }
    assert_eq!(registry.protocol_hash(), fnv1a64(&bytes));
    // And via the library's own builder.
    let via_builder = registry
        .iter()
        .fold(
            SchemaHasher::new()
                .write_str("mokosh.protocol")
                .write_u64(3),
            |h, info| {
                h.write_u64(u64::from(info.route_id))
                    .write_u64(info.schema_hash)
                    .write_u64(info.direction.hash_word())
            },
        )
        .finish();
    assert_eq!(registry.protocol_hash(), via_builder);
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |state: u64, &b| {
        (state ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// A manual impl that declares its direction.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot;

impl Schema for Snapshot {
    const SCHEMA_HASH: u64 = 7;
}

impl GameMessage for Snapshot {
    const ROUTE_ID: RouteId = 40;
    const NAME: &'static str = "Snapshot";
    const DIRECTION: Direction = Direction::ServerToClient;
}

#[test]
fn directions_are_recorded() {
    let mut registry = MessageRegistry::new();
    registry
        .register::<Chat>()
        .unwrap()
        .register_with::<Input>(Direction::ClientToServer)
        .unwrap()
        .register::<Snapshot>()
        .unwrap();
    assert_eq!(registry.get(16).unwrap().direction, Direction::Both);
    let input = registry.get(17).unwrap().direction;
    assert!(input.client_sends() && !input.server_sends());
    let snapshot = registry.get(40).unwrap().direction;
    assert!(!snapshot.client_sends() && snapshot.server_sends());
    // Same type, same direction: idempotent; another direction: refused.
    registry
        .register_with::<Input>(Direction::ClientToServer)
        .unwrap();
    assert_eq!(
        registry.register::<Input>().unwrap_err(),
        RegistryError::ConflictingDirection {
            name: "Input",
            existing: Direction::ClientToServer,
            new: Direction::Both,
        }
    );
    assert_eq!(registry.len(), 3);
}

#[test]
fn protocol_hash_changes_when_a_direction_changes() {
    let hashes: Vec<u64> = [
        Direction::Both,
        Direction::ClientToServer,
        Direction::ServerToClient,
    ]
    .into_iter()
    .map(|direction| {
        let mut registry = MessageRegistry::new();
        registry.register_with::<Chat>(direction).unwrap();
        registry.protocol_hash()
    })
    .collect();
    assert_ne!(hashes[0], hashes[1]);
    assert_ne!(hashes[0], hashes[2]);
    assert_ne!(hashes[1], hashes[2]);
}
