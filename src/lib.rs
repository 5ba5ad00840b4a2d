#![doc = include_str!("../README.md")]
//!
//! ---
//!
//! This facade crate re-exports the public API of [`mokosh_net`] and the derive
//! macros of [`mokosh_derive`], so a game depends on `mokosh` alone.

pub use mokosh_derive::{GameMessage, Schema};
pub use mokosh_net::*;
