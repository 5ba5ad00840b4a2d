//! # mokosh_net
//!
//! The networking core of Mokosh: secure, server-authoritative game networking.
//!
//! Data flows one way, and each stage has one home:
//!
//! ```text
//! socket → IO task (tokio) → bounded channel → receive systems → Bevy messages
//!        → FixedUpdate game systems → snapshot/send systems → channel → IO task → socket
//! ```
//!
//! This crate currently provides the innermost piece every stage relies on:
//!
//! * [`protocol`] — the **sans-IO** protocol core: envelope, codecs,
//!   compression, Noise handshake + ChaCha20-Poly1305 sealing, replay window,
//!   rate limiting, session state machine and typed messages. Bytes and `now`
//!   go in; bytes and events come out. Nothing in it opens a socket, reads a
//!   clock, or depends on tokio or Bevy, which is what makes it deterministic to
//!   test and fuzz.
//!
//! The byte-exact wire format is specified in `docs/PROTOCOL.md`.

// Lets `#[derive(GameMessage)]` refer to `::mokosh_net` from inside this crate too.
extern crate self as mokosh_net;

#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "runtime")]
pub mod io;
#[cfg(feature = "math")]
mod math;
#[cfg(feature = "runtime")]
pub mod metrics;
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "runtime")]
pub mod shared;
#[cfg(all(feature = "server", feature = "client"))]
pub mod testing;

/// The items most games need, for `use mokosh_net::prelude::*`.
pub mod prelude {
    pub use crate::protocol::{
        ClientConfig, ClientSecurity, CodecId, CompressionId, DecodeLimits, DisconnectReason,
        GameMessage, KeyPair, MessageRegistry, PublicKey, ReceivedMessage, Schema, ServerConfig,
        ServerSecurity, Session, SessionConfig, SessionEvent,
    };
    pub use mokosh_derive::{GameMessage, Schema};

    #[cfg(feature = "client")]
    pub use crate::client::{
        ClientPluginConfig, ConnectTarget, ConnectedToServer, ConnectionState,
        DisconnectedFromServer, FromServer, MokoshClient, MokoshClientPlugin, ToServer,
        client_connected,
    };
    #[cfg(feature = "server")]
    pub use crate::server::{
        ClientConnected, ClientDisconnected, FromClient, MokoshServer, MokoshServerPlugin,
        SendTarget, ServerPluginConfig, ToClients,
    };
    #[cfg(feature = "runtime")]
    pub use crate::shared::{ClientId, MokoshAppExt};
}
