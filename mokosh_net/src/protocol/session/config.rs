//! Session settings: shared [`SessionConfig`], per-side [`ClientConfig`] and
//! [`ServerConfig`], and the security choices.

use std::sync::Arc;
use std::time::Duration;

use crate::protocol::codec::CodecId;
use crate::protocol::compression::{CompressionConfig, CompressionId};
use crate::protocol::crypto::{KeyPair, PublicKey};
use crate::protocol::rate_limit::RateLimitConfig;
use crate::protocol::registry::MessageRegistry;
use crate::protocol::replay::ReplayMode;

/// Settings shared by both sides.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Client: codecs offered, in preference order. Server: codecs supported.
    pub codecs: Vec<CodecId>,
    /// Client: compression offered, in preference order. Server: supported.
    pub compression: Vec<CompressionId>,
    /// Compression threshold and level.
    pub compression_config: CompressionConfig,
    /// Largest message body this side accepts (and will send), in bytes.
    pub max_message_size: usize,
    /// How long the handshake may take.
    pub handshake_timeout: Duration,
    /// Server: silence after which a session is dropped (sent to the client).
    pub idle_timeout: Duration,
    /// Server: how often each side pings (sent to the client).
    pub ping_interval: Duration,
    /// Limits applied to what the peer sends.
    pub rate_limit: RateLimitConfig,
    /// Replay guard for received packets.
    pub replay: ReplayMode,
    /// Put each message's schema hash in its header (8 bytes) so the receiver
    /// checks it per message. The handshake already compares the whole
    /// registry, so this is off by default.
    pub include_schema_hash: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            codecs: vec![CodecId::Postcard, CodecId::Json],
            compression: vec![CompressionId::Zstd, CompressionId::Lz4],
            compression_config: CompressionConfig::default(),
            max_message_size: 64 * 1024,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(1),
            rate_limit: RateLimitConfig::default(),
            replay: ReplayMode::Strict,
            include_schema_hash: false,
        }
    }
}

/// How a client protects its traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSecurity {
    /// Noise NK handshake pinned to this server public key, then sealed packets.
    Pinned(PublicKey),
    /// No encryption. Only works with a server also configured for plaintext.
    Plaintext,
}

/// How a server protects its traffic.
#[derive(Debug, Clone)]
pub enum ServerSecurity {
    /// Noise NK handshake with this static key pair, then sealed packets.
    Noise(KeyPair),
    /// No encryption; clients must be explicitly configured for plaintext too.
    Plaintext,
}

/// A client's configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Encryption setting; there is no default key.
    pub security: ClientSecurity,
    /// Credentials handed to the server's authentication hook.
    pub auth_token: Vec<u8>,
    /// The message types this client speaks.
    pub registry: Arc<MessageRegistry>,
    /// Shared settings.
    pub session: SessionConfig,
}

/// A server's configuration (shared by all its sessions).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Encryption setting.
    pub security: ServerSecurity,
    /// The message types this server speaks.
    pub registry: Arc<MessageRegistry>,
    /// Shared settings.
    pub session: SessionConfig,
}
