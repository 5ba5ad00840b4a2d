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
//! The parts:
//!
//! * [`protocol`] — the **sans-IO** protocol core: envelope, codecs,
//!   compression, Noise handshake + ChaCha20-Poly1305 sealing, replay window,
//!   rate limiting, session state machine and typed messages. Bytes and `now`
//!   go in; bytes and events come out. Nothing in it opens a socket, reads a
//!   clock, or depends on tokio or Bevy, which is what makes it deterministic to
//!   test and fuzz.
//! * [`server`] / [`client`] — the Bevy plugins (`server` / `client`
//!   features), configured with builders such as
//!   `ServerPluginConfig::websocket(addr, keypair).with_auth(provider).with_metrics(addr)`.
//! * [`shared`] — what both plugins share; register messages with
//!   `add_client_message`, `add_server_message` or `add_game_message`, before
//!   or after the plugins.
//! * [`tick`] — the [`NetworkTick`](tick::NetworkTick) and the schedule rule
//!   rollback relies on: the game's simulation alone in `FixedUpdate`.
//! * [`io`], [`metrics`], [`auth`] — transports, counters, authentication
//!   providers; [`keys`] — key files ([`KeyPair::load_or_generate`](protocol::KeyPair::load_or_generate));
//!   [`testing`] — a server and N clients in one process on virtual time.
//!
//! The byte-exact wire format is specified in `docs/PROTOCOL.md`.
//!
//! ## Cargo features
//!
//! | Feature | Default | Adds |
//! |---|---|---|
//! | `server` | yes | the server plugin and authentication providers (implies `runtime`) |
//! | `client` | yes | the client plugin and connectors (implies `runtime`) |
//! | `metrics-http` | yes | the built-in `/metrics` HTTP endpoint on hyper (`metrics::serve_metrics`, the server's `metrics_addr`) |
//! | `runtime` | via the above | the IO layer, metrics counters and their Prometheus text, the shared Bevy pieces |
//! | `tls` | no | `wss://` with rustls |
//!
//! Without any, only the sans-IO [`protocol`] core is built. A dedicated
//! server uses `default-features = false, features = ["server",
//! "metrics-http"]` and leaves the client out; a game client uses
//! `features = ["client"]` and leaves the server and the HTTP endpoint out.

// Lets `#[derive(GameMessage)]` refer to `::mokosh_net` from inside this crate too.
extern crate self as mokosh_net;

#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "runtime")]
pub mod io;
pub mod keys;
#[cfg(feature = "runtime")]
pub mod metrics;
pub mod protocol;
#[cfg(feature = "runtime")]
mod registration;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "runtime")]
pub mod shared;
#[cfg(all(feature = "server", feature = "client"))]
pub mod testing;
#[cfg(feature = "runtime")]
pub mod tick;

/// The items most games need, for `use mokosh_net::prelude::*`.
pub mod prelude {
    pub use crate::protocol::{
        ClientConfig, ClientSecurity, CodecId, CompressionId, DecodeLimits, DisconnectReason,
        GameMessage, KeyPair, MessageRegistry, PublicKey, ReceivedMessage, Schema, ServerConfig,
        ServerSecurity, Session, SessionConfig, SessionEvent,
    };
    pub use mokosh_derive::{GameMessage, Schema};

    pub use crate::protocol::Direction;

    #[cfg(feature = "client")]
    pub use crate::client::{
        ClientPluginConfig, ClientState, ConnectTarget, ConnectedToServer, ConnectionState,
        DisconnectedFromServer, FromServer, MokoshClient, MokoshClientPlugin, ToServer,
        client_connected,
    };
    #[cfg(feature = "server")]
    pub use crate::server::{
        ClientConnected, ClientDisconnected, FromClient, MokoshServer, MokoshServerPlugin,
        SendTarget, ServerPluginConfig, ServerStartError, ServerStartFailed, ToClients,
        server_running,
    };
    #[cfg(feature = "runtime")]
    pub use crate::shared::{ClientId, MokoshAppExt};
    #[cfg(feature = "runtime")]
    pub use crate::tick::NetworkTick;
}
