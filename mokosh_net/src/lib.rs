//! # mokosh_net
//!
//! The networking core of Mokosh.
//!
//! * [`protocol`] — the **sans-IO** protocol core: envelope, codecs, compression,
//!   Noise handshake + ChaCha20-Poly1305 sealing, replay window, rate limiting,
//!   session state machines and typed messages. Bytes and `now` go in; bytes and
//!   events come out. Nothing in it opens a socket, reads a clock, or depends on
//!   tokio or Bevy, which is what makes it deterministic to test and fuzz.
//!
//! See `docs/PROTOCOL.md` in the repository for the byte-exact wire format.

// Lets `#[derive(GameMessage)]` refer to `::mokosh_net` from inside this crate too.
extern crate self as mokosh_net;

pub mod protocol;

