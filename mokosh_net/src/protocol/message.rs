//! Typed game messages and their route ids.
//!
//! A *game message* is a Rust type that the application sends over a Mokosh
//! connection. Each message type is bound to a fixed [`RouteId`], a `u16`
//! carried in the envelope that tells the receiver which type to decode the
//! payload as. Route ids `0..=15` ([`RESERVED_ROUTES`]) belong to Mokosh's own
//! control messages; application routes start at [`FIRST_USER_ROUTE`].
//!
//! Implement [`GameMessage`] with `#[derive(GameMessage)]` and a
//! `#[route_id = N]` attribute. The derive validates the route id at compile
//! time (it must be an integer literal in `16..=65535`, given exactly once) and
//! also derives [`Schema`], so do **not** additionally derive `Schema` on the
//! same type. Generic types cannot derive `GameMessage`: a route id names one
//! concrete type.
//!
//! ```
//! use mokosh_derive::GameMessage;
//! use mokosh_net::protocol::message::{GameMessage, RouteId, FIRST_USER_ROUTE};
//! use mokosh_net::protocol::schema::Schema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize, GameMessage)]
//! #[route_id = 16]
//! struct Chat {
//!     from: u32,
//!     text: String,
//! }
//!
//! #[derive(Debug, Serialize, Deserialize, GameMessage)]
//! #[route_id = 17]
//! enum Input {
//!     Move { dx: i8, dy: i8 },
//!     Jump,
//! }
//!
//! const CHAT_ROUTE: RouteId = <Chat as GameMessage>::ROUTE_ID;
//! assert_eq!(CHAT_ROUTE, FIRST_USER_ROUTE);
//! assert_eq!(<Input as GameMessage>::NAME, "Input");
//! assert_ne!(<Chat as Schema>::SCHEMA_HASH, <Input as Schema>::SCHEMA_HASH);
//! ```
//!
//! Mistakes are compile errors pointing at the attribute:
//!
//! ```compile_fail
//! # use serde::{Deserialize, Serialize};
//! #[derive(Serialize, Deserialize, mokosh_derive::GameMessage)]
//! #[route_id = 3] // error: route id 3 is reserved for Mokosh control messages
//! struct Sneaky;
//! ```

use core::ops::RangeInclusive;

use crate::protocol::schema::Schema;

/// Identifies a message type on the wire.
pub type RouteId = u16;

/// Route ids reserved for Mokosh's own control messages.
pub const RESERVED_ROUTES: RangeInclusive<RouteId> = 0..=15;

/// The smallest route id available to application messages.
pub const FIRST_USER_ROUTE: RouteId = 16;

/// Returns `true` if `route_id` is in [`RESERVED_ROUTES`].
#[must_use]
pub const fn is_reserved_route(route_id: RouteId) -> bool {
    route_id <= *RESERVED_ROUTES.end()
}

/// Which way a message type may travel. Part of the
/// [protocol hash](crate::protocol::registry::MessageRegistry::protocol_hash);
/// a message received in a direction its registration does not allow closes
/// the session as a protocol violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Sent by clients and by the server.
    #[default]
    Both,
    /// Sent by clients only (inputs, requests).
    ClientToServer,
    /// Sent by the server only (snapshots, events).
    ServerToClient,
}

impl Direction {
    /// Whether a client may send this message.
    #[must_use]
    pub const fn client_sends(self) -> bool {
        !matches!(self, Direction::ServerToClient)
    }

    /// Whether the server may send this message.
    #[must_use]
    pub const fn server_sends(self) -> bool {
        !matches!(self, Direction::ClientToServer)
    }

    /// The word the protocol hash uses for this direction: 0 both,
    /// 1 client to server, 2 server to client.
    #[must_use]
    pub const fn hash_word(self) -> u64 {
        match self {
            Direction::Both => 0,
            Direction::ClientToServer => 1,
            Direction::ServerToClient => 2,
        }
    }
}

/// A typed message that can be sent over a Mokosh connection.
///
/// Derive it with `#[derive(GameMessage)]` and `#[route_id = N]`; see the
/// [module docs](self) for an example. Manual implementations are possible but
/// must pick a `ROUTE_ID` outside [`RESERVED_ROUTES`] (the
/// [`MessageRegistry`](crate::protocol::registry::MessageRegistry) rejects
/// reserved ids) and keep `NAME` equal to the type's name.
pub trait GameMessage:
    Schema + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
    /// The route id this message type is sent on (`>= FIRST_USER_ROUTE`).
    const ROUTE_ID: RouteId;
    /// The type's name, used in diagnostics and registry errors.
    const NAME: &'static str;
    /// Which way the message travels when registered with
    /// [`MessageRegistry::register`](crate::protocol::registry::MessageRegistry::register);
    /// [`Direction::Both`] unless the implementation says otherwise.
    const DIRECTION: Direction = Direction::Both;
}
