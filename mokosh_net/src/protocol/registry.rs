//! The message registry: which [`GameMessage`] type lives on which route.
//!
//! Both peers build a [`MessageRegistry`] by registering every message type
//! the game uses. The registry answers "what is on route `r`?" in
//! `O(log n)` and produces a [`protocol_hash`](MessageRegistry::protocol_hash)
//! that the connection handshake compares: if client and server disagree on
//! the set of routes, or on the schema of any message, the hashes differ and
//! the connection is refused before any game data is exchanged.
//!
//! # Registration rules
//!
//! * Every route id may be used by at most one message type. A second type on
//!   the same route is [`RegistryError::DuplicateRoute`], naming both types.
//! * Registering **the same Rust type** again with
//!   [`register`](MessageRegistry::register) is an idempotent no-op, so
//!   independent plugins may each register the messages they use. Identity
//!   is the type's [`TypeId`], not its name.
//! * [`register_raw`](MessageRegistry::register_raw) has no type identity, so
//!   any collision with an existing route is a `DuplicateRoute` error.
//! * Each message has a [`Direction`]: [`register`](MessageRegistry::register)
//!   uses [`GameMessage::DIRECTION`] (by default [`Direction::Both`]),
//!   [`register_with`](MessageRegistry::register_with) names it. Registering
//!   the same type again with another direction is
//!   [`RegistryError::ConflictingDirection`].
//! * Routes in [`RESERVED_ROUTES`](crate::protocol::message::RESERVED_ROUTES)
//!   (`0..=15`) are rejected with [`RegistryError::ReservedRoute`].
//!   `#[derive(GameMessage)]` already refuses them at compile time; this
//!   catches manual `GameMessage` impls and raw registrations.
//!
//! # Protocol hash (wire specification)
//!
//! Using the primitives of the [`schema`](crate::protocol::schema) module
//! (`str(s)` = FNV-1a-64 of the UTF-8 bytes of `s`; `H[w1 … wn]` = FNV-1a-64
//! of the concatenated 8-byte little-endian encodings of the words), with the
//! registered messages sorted by ascending route id:
//!
//! ```text
//! protocol_hash = H[ str("mokosh.protocol"), n,
//!                    route_id_1 as u64, schema_hash_1, direction_1,
//!                    route_id_2 as u64, schema_hash_2, direction_2,
//!                    …,
//!                    route_id_n as u64, schema_hash_n, direction_n ]
//! ```
//!
//! where `n` is the number of registered messages and `direction_i` is
//! [`Direction::hash_word`] (0 both, 1 client to server, 2 server to client). Message names are not
//! hashed separately (for derived messages the type name is already part of
//! the schema hash). The value does not depend on registration order; adding,
//! removing or moving a message, or changing any message's schema or direction,
//! changes it.
//! The empty registry hashes to `H[str("mokosh.protocol"), 0]`.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::collections::btree_map;
use std::iter::FusedIterator;

use crate::protocol::message::{Direction, GameMessage, RouteId, is_reserved_route};
use crate::protocol::schema::SchemaHasher;

/// What the registry knows about one message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct MessageInfo {
    /// The route the message is sent on.
    pub route_id: RouteId,
    /// The message type's name ([`GameMessage::NAME`]).
    pub name: &'static str,
    /// The message type's structural hash
    /// ([`Schema::SCHEMA_HASH`](crate::protocol::schema::Schema::SCHEMA_HASH)).
    pub schema_hash: u64,
    /// Which way the message may travel.
    pub direction: Direction,
}

impl MessageInfo {
    /// Describes a message by hand (for [`MessageRegistry::register_raw`]),
    /// travelling in both directions.
    #[must_use]
    pub const fn new(route_id: RouteId, name: &'static str, schema_hash: u64) -> Self {
        Self {
            route_id,
            name,
            schema_hash,
            direction: Direction::Both,
        }
    }

    /// The same description with another direction.
    #[must_use]
    pub const fn with_direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Describes the message type `M` (with [`GameMessage::DIRECTION`]).
    #[must_use]
    pub const fn of<M: GameMessage>() -> Self {
        Self::new(M::ROUTE_ID, M::NAME, M::SCHEMA_HASH).with_direction(M::DIRECTION)
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two different message types claim the same route id.
    #[error("route id {route_id} is already used by `{existing}`; cannot register `{new}` on it")]
    DuplicateRoute {
        /// The contested route id.
        route_id: RouteId,
        /// Name of the message already registered on the route.
        existing: &'static str,
        /// Name of the message that was refused.
        new: &'static str,
    },
    /// The route id is reserved for Mokosh control messages.
    #[error(
        "route id {route_id} of `{name}` is reserved for Mokosh control messages (0..=15); user routes start at 16"
    )]
    ReservedRoute {
        /// The reserved route id.
        route_id: RouteId,
        /// Name of the message that was refused.
        name: &'static str,
    },
    /// The same message type registered again with another direction.
    #[error("`{name}` is already registered as {existing:?}; cannot register it again as {new:?}")]
    ConflictingDirection {
        /// Name of the message.
        name: &'static str,
        /// The direction it was registered with.
        existing: Direction,
        /// The direction that was refused.
        new: Direction,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    info: MessageInfo,
    /// `None` for [`MessageRegistry::register_raw`] entries.
    type_id: Option<TypeId>,
}

/// Maps route ids to [`MessageInfo`]; see the [module docs](self).
///
/// ```
/// use mokosh_net::protocol::registry::{MessageRegistry, RegistryError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, mokosh_derive::GameMessage)]
/// #[route_id = 16]
/// struct Ping(u32);
///
/// #[derive(Serialize, Deserialize, mokosh_derive::GameMessage)]
/// #[route_id = 17]
/// struct Pong(u32);
///
/// # fn main() -> Result<(), RegistryError> {
/// let mut registry = MessageRegistry::new();
/// registry.register::<Ping>()?.register::<Pong>()?;
/// assert_eq!(registry.get(16).map(|info| info.name), Some("Ping"));
/// assert_eq!(registry.len(), 2);
/// let handshake_value = registry.protocol_hash();
/// # let _ = handshake_value;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MessageRegistry {
    routes: BTreeMap<RouteId, Entry>,
}

impl MessageRegistry {
    /// An empty registry.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            routes: BTreeMap::new(),
        }
    }

    /// Registers the message type `M` on `M::ROUTE_ID`, travelling in
    /// [`M::DIRECTION`](GameMessage::DIRECTION) (both ways by default).
    ///
    /// Re-registering the same type with the same direction is a no-op.
    /// Returns `&mut Self` for chaining.
    ///
    /// # Errors
    ///
    /// * [`RegistryError::DuplicateRoute`] if a different message already
    ///   uses `M::ROUTE_ID`.
    /// * [`RegistryError::ReservedRoute`] if `M::ROUTE_ID` is reserved (only
    ///   possible with a manual `GameMessage` impl).
    /// * [`RegistryError::ConflictingDirection`] if `M` is already registered
    ///   with another direction.
    pub fn register<M: GameMessage>(&mut self) -> Result<&mut Self, RegistryError> {
        self.register_with::<M>(M::DIRECTION)
    }

    /// Registers the message type `M` travelling in `direction`. Errors as
    /// [`register`](Self::register).
    ///
    /// ```
    /// use mokosh_net::protocol::message::Direction;
    /// use mokosh_net::protocol::registry::MessageRegistry;
    /// # #[derive(serde::Serialize, serde::Deserialize, mokosh_derive::GameMessage)]
    /// # #[route_id = 16]
    /// # struct Input(u8);
    /// let mut registry = MessageRegistry::new();
    /// registry.register_with::<Input>(Direction::ClientToServer)?;
    /// assert!(!registry.get(16).unwrap().direction.server_sends());
    /// # Ok::<(), mokosh_net::protocol::registry::RegistryError>(())
    /// ```
    pub fn register_with<M: GameMessage>(
        &mut self,
        direction: Direction,
    ) -> Result<&mut Self, RegistryError> {
        self.insert(
            MessageInfo::of::<M>().with_direction(direction),
            Some(TypeId::of::<M>()),
        )
    }

    /// Registers a message described by hand, e.g. one that this peer
    /// relays without decoding.
    ///
    /// # Errors
    ///
    /// * [`RegistryError::DuplicateRoute`] if anything already uses
    ///   `info.route_id` (raw entries are never idempotent).
    /// * [`RegistryError::ReservedRoute`] if `info.route_id` is reserved.
    pub fn register_raw(&mut self, info: MessageInfo) -> Result<&mut Self, RegistryError> {
        self.insert(info, None)
    }

    fn insert(
        &mut self,
        info: MessageInfo,
        type_id: Option<TypeId>,
    ) -> Result<&mut Self, RegistryError> {
        if is_reserved_route(info.route_id) {
            return Err(RegistryError::ReservedRoute {
                route_id: info.route_id,
                name: info.name,
            });
        }
        match self.routes.entry(info.route_id) {
            btree_map::Entry::Vacant(slot) => {
                slot.insert(Entry { info, type_id });
            }
            btree_map::Entry::Occupied(slot) => {
                let existing = slot.get();
                let same_type = type_id.is_some() && existing.type_id == type_id;
                if !same_type {
                    return Err(RegistryError::DuplicateRoute {
                        route_id: info.route_id,
                        existing: existing.info.name,
                        new: info.name,
                    });
                }
                if existing.info.direction != info.direction {
                    return Err(RegistryError::ConflictingDirection {
                        name: info.name,
                        existing: existing.info.direction,
                        new: info.direction,
                    });
                }
            }
        }
        Ok(self)
    }

    /// The message registered on `route_id`, if any.
    #[must_use]
    pub fn get(&self, route_id: RouteId) -> Option<&MessageInfo> {
        self.routes.get(&route_id).map(|entry| &entry.info)
    }

    /// Whether a message is registered on `route_id`.
    #[must_use]
    pub fn contains(&self, route_id: RouteId) -> bool {
        self.routes.contains_key(&route_id)
    }

    /// All registered messages in ascending route-id order.
    #[must_use]
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            inner: self.routes.values(),
        }
    }

    /// The number of registered messages.
    #[must_use]
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether no message is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The combined hash of all routes and schemas, compared during the
    /// handshake. The exact algorithm is specified in the
    /// [module docs](self#protocol-hash-wire-specification).
    #[must_use]
    pub fn protocol_hash(&self) -> u64 {
        let mut hasher = SchemaHasher::new()
            .write_str("mokosh.protocol")
            .write_u64(self.routes.len() as u64);
        // BTreeMap iterates in ascending key order.
        for entry in self.routes.values() {
            hasher = hasher
                .write_u64(u64::from(entry.info.route_id))
                .write_u64(entry.info.schema_hash)
                .write_u64(entry.info.direction.hash_word());
        }
        hasher.finish()
    }
}

/// Iterator over a [`MessageRegistry`] in ascending route-id order; see
/// [`MessageRegistry::iter`].
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    inner: btree_map::Values<'a, RouteId, Entry>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a MessageInfo;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|entry| &entry.info)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back().map(|entry| &entry.info)
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl FusedIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a MessageRegistry {
    type Item = &'a MessageInfo;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_reserved_routes_are_rejected() {
        let mut registry = MessageRegistry::new();
        for route in [0, 7, 15] {
            let err = registry
                .register_raw(MessageInfo::new(route, "Control", 1))
                .unwrap_err();
            assert_eq!(
                err,
                RegistryError::ReservedRoute {
                    route_id: route,
                    name: "Control"
                }
            );
        }
        assert!(registry.is_empty());
        registry
            .register_raw(MessageInfo::new(16, "First", 1))
            .unwrap();
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn raw_duplicates_are_never_idempotent() {
        let mut registry = MessageRegistry::new();
        let info = MessageInfo::new(100, "Relay", 42);
        registry.register_raw(info).unwrap();
        assert!(matches!(
            registry.register_raw(info),
            Err(RegistryError::DuplicateRoute { route_id: 100, .. })
        ));
    }

    #[test]
    fn empty_protocol_hash_matches_spec() {
        let expected = SchemaHasher::new()
            .write_str("mokosh.protocol")
            .write_u64(0)
            .finish();
        assert_eq!(MessageRegistry::new().protocol_hash(), expected);
    }
}
