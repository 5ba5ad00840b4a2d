//! The sans-IO protocol core.
//!
//! (Module guide written once the modules land.)

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

#[cfg(test)]
mod golden;
