//! Mokosh Godot 4 GDExtension.
//!
//! This crate will host the GDExtension that drives a client Bevy world from Godot
//! and mirrors it into scene nodes. It currently only re-exports the protocol
//! core; the Godot bindings arrive with their own issue and are not claimed yet.

pub use mokosh_net::protocol;
