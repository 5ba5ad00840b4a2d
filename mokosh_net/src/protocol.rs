//! The sans-IO protocol core.
//!
//! Everything a Mokosh peer needs to speak the wire protocol, with no sockets,
//! no async runtime, no ECS and no clock reads: callers pass bytes and `now`
//! in and take bytes and events out. The test `tests/sans_io.rs` fails if a file
//! here imports tokio, Bevy or `std::net`, or reads the clock.
//!
//! | module | what it holds |
//! |--------|---------------|
//! | [`varint`] | canonical LEB128 integers |
//! | [`envelope`] | the packet header (version, flags, codec, route, message id, correlation id, schema hash, tick, length) and frames of several packets |
//! | [`codec`] | JSON / Postcard / Raw serialization and codec negotiation |
//! | [`compression`] | zstd and lz4 with reused contexts and bounded decompression |
//! | [`crypto`] | server keys, the Noise NK handshake, per-packet ChaCha20-Poly1305 sealing |
//! | [`handshake`] | the hello and response payloads |
//! | [`control`] | PING / PONG / DISCONNECT / AUTH / AUTH_OK and [`DisconnectReason`] |
//! | [`replay`] | strict counters and the sliding replay window |
//! | [`rate_limit`] | token buckets for messages and bytes |
//! | [`schema`], [`message`], [`registry`] | typed messages: schema hashes, [`GameMessage`], directions, route registry and protocol hash |
//! | [`session`] | the per-connection state machine tying it all together |
//! | [`testing`] | two sessions back to back, for tests, benches and fuzzing |
//!
//! The byte-exact specification is `docs/PROTOCOL.md` in the repository; its
//! test vectors are checked against this code.
//!
//! # Example: a typed message over a connected session pair
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//!
//! use mokosh_net::protocol::testing::SessionPair;
//! use mokosh_net::protocol::{DecodeLimits, GameMessage, MessageRegistry, SessionConfig};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize, mokosh_derive::GameMessage)]
//! #[route_id = 100]
//! struct PlayerInput {
//!     sequence: u32,
//!     direction: (f32, f32),
//! }
//!
//! let mut registry = MessageRegistry::new();
//! registry.register::<PlayerInput>().unwrap();
//!
//! let now = Instant::now();
//! let mut pair = SessionPair::with_registry(Arc::new(registry), SessionConfig::default(), now);
//! pair.connect(now).unwrap();
//!
//! let input = PlayerInput { sequence: 1, direction: (0.0, 1.0) };
//! pair.client.send_message(&input).unwrap();
//! pair.pump(now);
//!
//! let received = pair.server_messages();
//! assert_eq!(received[0].decode::<PlayerInput>(&DecodeLimits::default()).unwrap(), input);
//! ```

pub mod codec;
pub mod compression;
pub mod control;
pub mod crypto;
pub mod envelope;
pub mod handshake;
pub mod message;
pub mod rate_limit;
pub mod reader;
pub mod registry;
pub mod replay;
pub mod schema;
pub mod session;
pub mod testing;
pub mod varint;
mod wire_id;

#[cfg(test)]
mod golden;

pub use codec::{CodecError, CodecId, DecodeLimits, RawBytes};
pub use compression::{CompressionConfig, CompressionError, CompressionId};
pub use control::DisconnectReason;
pub use crypto::{CryptoError, KeyPair, PublicKey};
pub use envelope::{EnvelopeError, Header, PROTOCOL_VERSION};
pub use message::{Direction, GameMessage, RouteId};
pub use rate_limit::RateLimitConfig;
pub use registry::{MessageInfo, MessageRegistry, RegistryError};
pub use replay::ReplayMode;
pub use schema::Schema;
pub use session::{
    ClientConfig, ClientSecurity, Initiator, OpenedPacket, PacketError, ReceivedMessage,
    RttEstimate, SendError, ServerConfig, ServerSecurity, Session, SessionConfig, SessionEvent,
    SessionState, SessionStats,
};
