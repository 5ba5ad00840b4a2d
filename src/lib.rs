#![doc = include_str!("../README.md")]
//!
//! ---
//!
//! This facade crate re-exports the public API of [`mokosh_net`] and the derive
//! macros of [`mokosh_derive`], so a game depends on `mokosh` alone.

pub use mokosh_derive::{GameMessage, Schema};
pub use mokosh_net::*;
// The traits share their names with the derive macros (different namespaces),
// so `mokosh::GameMessage` works both in `#[derive(..)]` and as a bound.
pub use mokosh_net::protocol::{GameMessage, Schema};
