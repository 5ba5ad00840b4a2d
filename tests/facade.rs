//! A game that depends on the `mokosh` facade alone can derive and send typed
//! messages (the derive resolves its paths through the facade).

use std::sync::Arc;
use std::time::Instant;

use mokosh::protocol::testing::SessionPair;
use mokosh::protocol::{DecodeLimits, MessageRegistry, SessionConfig};
// One import serves as both the derive macros and the traits.
use mokosh::{GameMessage, Schema};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Schema)]
enum Action {
    Idle,
    Jump { height: f32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 200]
struct PlayerInput {
    sequence: u32,
    action: Action,
}

#[test]
fn derive_through_the_facade_and_exchange_a_message() {
    assert_eq!(PlayerInput::ROUTE_ID, 200);
    assert_eq!(PlayerInput::NAME, "PlayerInput");
    assert_ne!(PlayerInput::SCHEMA_HASH, Action::SCHEMA_HASH);

    let mut registry = MessageRegistry::new();
    registry.register::<PlayerInput>().unwrap();
    let now = Instant::now();
    let mut pair = SessionPair::with_registry(Arc::new(registry), SessionConfig::default(), now);
    pair.connect(now).unwrap();
    let input = PlayerInput {
        sequence: 3,
        action: Action::Jump { height: 2.5 },
    };
    pair.client.send_message(&input).unwrap();
    pair.pump(now);
    let received = pair.server_messages();
    assert_eq!(
        received[0]
            .decode::<PlayerInput>(&DecodeLimits::default())
            .unwrap(),
        input
    );
    assert_eq!(
        received[0]
            .decode::<PlayerInput>(&DecodeLimits::default())
            .unwrap()
            .action,
        Action::Jump { height: 2.5 }
    );
    let _ = Action::Idle;
}
