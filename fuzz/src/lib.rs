//! Shared pieces of the fuzz targets: an input splitter, a representative
//! message type for the codec target, and fixed session configurations.
//!
//! Everything here is deterministic (fixed server key, virtual time) so that a
//! crashing input reproduces on every run.

use std::sync::{Arc, OnceLock};

use mokosh_net::protocol::crypto::KeyPair;
use mokosh_net::protocol::rate_limit::RateLimitConfig;
use mokosh_net::protocol::registry::{MessageInfo, MessageRegistry};
use mokosh_net::protocol::replay::ReplayMode;
use mokosh_net::protocol::session::{
    ClientConfig, ClientSecurity, ServerConfig, ServerSecurity, SessionConfig,
};
use serde::{Deserialize, Serialize};

/// Application routes registered in every fuzz registry.
pub const ROUTE_A: u16 = 100;
/// A second application route.
pub const ROUTE_B: u16 = 4242;

/// A cursor over fuzz input. Every read is total: past the end it yields
/// zeros / empty slices, so harnesses never need to bail out early.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Input { bytes }
    }

    /// Whether everything has been consumed.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// One byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    /// A little-endian u16 (missing bytes read as 0).
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Up to `len` bytes.
    pub fn take(&mut self, len: usize) -> &'a [u8] {
        let len = len.min(self.bytes.len());
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        head
    }

    /// A length-prefixed chunk: u16 LE length, then up to that many bytes.
    pub fn chunk(&mut self) -> &'a [u8] {
        let len = usize::from(self.u16());
        self.take(len)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

/// Appends a length-prefixed chunk in the format [`Input::chunk`] reads.
pub fn push_chunk(out: &mut Vec<u8>, chunk: &[u8]) {
    let len = u16::try_from(chunk.len()).expect("seed chunk fits a u16 length");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(chunk);
}

// ---------------------------------------------------------------------------
// A representative game message for the codec target.

/// A fieldless enum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Team {
    /// Red.
    Red,
    /// Blue.
    Blue,
    /// Spectator.
    Spectator,
}

/// An enum with every kind of variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Unit variant.
    Idle,
    /// Struct variant.
    Move {
        /// X delta.
        dx: i16,
        /// Y delta.
        dy: i16,
    },
    /// Newtype variant.
    Say(String),
    /// Tuple variant.
    Use(u32, Option<u64>),
    /// Recursive variant (bounded only by the input).
    Batch(Vec<Action>),
}

/// A nested struct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Optional label.
    pub label: Option<String>,
    /// Some numbers.
    pub values: Vec<i64>,
    /// A flag.
    pub equipped: bool,
}

/// The top-level message: nested Vec / Option / enum / String / bytes / tuple.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Fixed-width id.
    pub id: u32,
    /// A large varint.
    pub tick: u64,
    /// Signed.
    pub delta: i32,
    /// Text.
    pub name: String,
    /// A single char.
    pub glyph: char,
    /// Unit enum.
    pub team: Team,
    /// Optional nested struct.
    pub held: Option<Item>,
    /// A vector of nested structs.
    pub inventory: Vec<Item>,
    /// Enum values, possibly recursive.
    pub actions: Vec<Action>,
    /// Raw bytes (a seq of u8 in serde terms).
    pub blob: Vec<u8>,
    /// A tuple.
    pub pair: (u8, Option<bool>),
}

impl Sample {
    /// A filled-in value, for seeds.
    pub fn example() -> Self {
        Sample {
            id: 7,
            tick: 1 << 40,
            delta: -12,
            name: "player-one".into(),
            glyph: 'λ',
            team: Team::Blue,
            held: Some(Item {
                label: Some("sword".into()),
                values: vec![1, -2, 300],
                equipped: true,
            }),
            inventory: vec![Item {
                label: None,
                values: vec![],
                equipped: false,
            }],
            actions: vec![
                Action::Idle,
                Action::Move { dx: -1, dy: 2 },
                Action::Say("gg".into()),
                Action::Use(3, Some(9)),
                Action::Batch(vec![Action::Idle, Action::Batch(vec![])]),
            ],
            blob: vec![0, 1, 2, 255],
            pair: (9, Some(false)),
        }
    }
}

// ---------------------------------------------------------------------------
// Fixed session configurations.

/// The fixed private key of the fuzz server (deterministic on purpose: seeds
/// contain genuine Noise hellos pinned to its public key).
pub const SERVER_PRIVATE_KEY: [u8; 32] = [0x42; 32];

/// The registry shared by every fuzz client and server.
pub fn registry() -> Arc<MessageRegistry> {
    static REGISTRY: OnceLock<Arc<MessageRegistry>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| {
            let mut registry = MessageRegistry::new();
            registry
                .register_raw(MessageInfo::new(ROUTE_A, "fuzz.a", 0x1111_2222_3333_4444))
                .expect("route A registers");
            registry
                .register_raw(MessageInfo::new(ROUTE_B, "fuzz.b", 0x5555_6666_7777_8888))
                .expect("route B registers");
            Arc::new(registry)
        })
        .clone()
}

/// The fixed server key pair.
pub fn server_keypair() -> KeyPair {
    KeyPair::from_private(SERVER_PRIVATE_KEY).expect("fixed key is valid")
}

/// Client and server configurations, encrypted or plaintext.
pub fn configs(encrypted: bool, session: SessionConfig) -> (ClientConfig, ServerConfig) {
    let keypair = server_keypair();
    let (client_security, server_security) = if encrypted {
        (
            ClientSecurity::Pinned(keypair.public()),
            ServerSecurity::Noise(keypair),
        )
    } else {
        (ClientSecurity::Plaintext, ServerSecurity::Plaintext)
    };
    (
        ClientConfig {
            security: client_security,
            auth_token: b"fuzz-token".to_vec(),
            registry: registry(),
            session: session.clone(),
        },
        ServerConfig {
            security: server_security,
            registry: registry(),
            session,
        },
    )
}

/// Session settings for the established-session target: no rate limit (so a
/// genuine in-order frame must always be accepted) and the given replay mode.
pub fn established_session_config(replay: ReplayMode) -> SessionConfig {
    SessionConfig {
        rate_limit: RateLimitConfig::unlimited(),
        replay,
        ..SessionConfig::default()
    }
}
