//! The client plugin's configuration.

use crate::io::IoConfig;
use crate::protocol::{ClientSecurity, DecodeLimits, SessionConfig};
use crate::shared::io_config_for;

/// Everything the client plugin needs.
#[derive(Debug, Clone)]
pub struct ClientPluginConfig {
    /// The pinned server key (or explicit plaintext).
    pub security: ClientSecurity,
    /// Credentials for the server's authentication provider.
    pub auth_token: Vec<u8>,
    /// Protocol settings: codec and compression preferences, limits.
    pub session: SessionConfig,
    /// IO settings.
    pub io: IoConfig,
    /// Worker threads of the IO runtime.
    pub worker_threads: usize,
    /// Limits applied when decoding typed messages.
    pub decode_limits: DecodeLimits,
    /// A link conditioner in front of the outbound link (latency, jitter,
    /// bandwidth), driven by the app's clock each tick; `None` (default)
    /// sends directly.
    pub link_conditioner: Option<crate::io::conditioner::LinkConditionerConfig>,
}

impl ClientPluginConfig {
    /// A client that pins `server_key` and presents `auth_token`.
    ///
    /// The rate limits apply to what the *server* sends; they default to
    /// 2,000 messages/s and 8 MiB/s (far above a 60 Hz snapshot stream plus
    /// events), so only a runaway server trips them.
    pub fn new(server_key: crate::protocol::PublicKey, auth_token: impl Into<Vec<u8>>) -> Self {
        let session = SessionConfig {
            rate_limit: crate::protocol::RateLimitConfig {
                messages_per_sec: 2_000,
                message_burst: 4_000,
                bytes_per_sec: 8 * 1024 * 1024,
                byte_burst: 16 * 1024 * 1024,
                violation_burst: 200,
            },
            ..SessionConfig::default()
        };
        let io = io_config_for(&session);
        ClientPluginConfig {
            security: ClientSecurity::Pinned(server_key),
            auth_token: auth_token.into(),
            session,
            io,
            worker_threads: 1,
            decode_limits: DecodeLimits::default(),
            link_conditioner: None,
        }
    }
}

impl ClientPluginConfig {
    /// A client that connects without encryption (the server must run in
    /// plaintext too). For local tests and trusted networks only.
    pub fn plaintext(auth_token: impl Into<Vec<u8>>) -> Self {
        let mut config = Self::new(crate::protocol::PublicKey([0; 32]), auth_token);
        config.security = ClientSecurity::Plaintext;
        config
    }

    /// Protocol settings; the IO limits follow (the largest frame matches the
    /// largest message).
    #[must_use]
    pub fn with_session(mut self, session: SessionConfig) -> Self {
        self.io = crate::shared::io_config_following(self.io, &session);
        self.session = session;
        self
    }

    /// IO settings.
    #[must_use]
    pub fn with_io(mut self, io: IoConfig) -> Self {
        self.io = io;
        self
    }

    /// Worker threads of the IO runtime (at least one).
    #[must_use]
    pub fn with_worker_threads(mut self, worker_threads: usize) -> Self {
        self.worker_threads = worker_threads;
        self
    }

    /// Limits applied when decoding typed messages.
    #[must_use]
    pub fn with_decode_limits(mut self, decode_limits: DecodeLimits) -> Self {
        self.decode_limits = decode_limits;
        self
    }

    /// Puts a link conditioner in front of the outbound link (see
    /// [`link_conditioner`](Self::link_conditioner)).
    #[must_use]
    pub fn with_link_conditioner(
        mut self,
        conditioner: crate::io::conditioner::LinkConditionerConfig,
    ) -> Self {
        self.link_conditioner = Some(conditioner);
        self
    }
}
