//! The session state machine: handshake, sealing, replay, rate limits, keepalive
//! and timeouts for one connection, on either side.
//!
//! A [`Session`] is sans-IO. The owner (an IO task, a test, a fuzzer) drives it:
//!
//! 1. feed every received frame to [`Session::handle_packet`] with the current
//!    time;
//! 2. call [`Session::handle_timeout`] when [`Session::poll_timeout`] says so
//!    (or simply every tick);
//! 3. drain [`Session::poll_transmit`] and send each frame, in order, as one
//!    transport message;
//! 4. drain [`Session::poll_event`] for connections, messages and disconnects.
//!
//! ```text
//!  client                                   server
//!  Session::client ── HANDSHAKE(hello) ───▶ Session::server
//!                                           event AuthRequested{token}
//!                                           accept() / reject(reason)
//!  event Connected ◀── HANDSHAKE(response) ─ event Connected
//!  send()/events   ◀══ sealed packets ═════▶ send()/events
//!  PING/PONG every ping interval, both directions; RTT from own clock
//! ```
//!
//! Every error on a received packet is returned as a [`PacketError`] (so the
//! caller can count it) and, if [`PacketError::is_fatal`], the session has
//! already closed itself with the matching [`DisconnectReason`], queued a
//! best-effort DISCONNECT for the peer, and emitted
//! [`SessionEvent::Disconnected`]. A packet that fails authentication changes
//! no counter, window or timer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::codec::{self, CodecError, CodecId, DecodeLimits, negotiate_codec};
use super::compression::{
    CompressionConfig, CompressionError, CompressionId, Compressor, negotiate_compression,
};
use super::control::{
    ControlMessage, DisconnectReason, ROUTE_DISCONNECT, ROUTE_HANDSHAKE, ROUTE_PING, ROUTE_PONG,
};
use super::crypto::TAG_LEN;
use super::crypto::{CryptoError, KeyPair, NoiseHandshake, PacketOpener, PacketSealer, PublicKey};
use super::envelope::{
    EnvelopeError, Flags, FramePacket, FramePackets, Header, MAX_HEADER_LEN, MAX_PACKETS_PER_FRAME,
};
use super::handshake::{Accept, Hello, MAX_HANDSHAKE_BODY, Response};
use super::message::{Direction, GameMessage};
use super::rate_limit::{RateLimitConfig, RateLimitError, RateLimiter};
use super::reader::WireError;
use super::registry::MessageRegistry;
use super::replay::{ReplayError, ReplayGuard, ReplayMode};

/// Highest reserved (control) route id.
const LAST_RESERVED_ROUTE: u16 = 15;
/// How many unanswered pings are remembered for RTT measurement.
const MAX_OUTSTANDING_PINGS: usize = 8;

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

/// Which end of the connection closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// This side.
    Local,
    /// The remote peer.
    Peer,
}

/// A message delivered to the application (opened and decompressed, still in
/// its codec's encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The route (message type).
    pub route_id: u16,
    /// The sender's packet counter.
    pub message_id: u64,
    /// Correlation id, if the sender set one.
    pub correlation_id: Option<u64>,
    /// The sender's network tick when it sealed the message, if it keeps one
    /// ([`Session::set_tick`]).
    pub tick: Option<u32>,
    /// Codec of `payload`.
    pub codec: CodecId,
    /// The serialized message.
    pub payload: Vec<u8>,
}

impl ReceivedMessage {
    /// Whether this message is an `M`.
    pub fn is<M: GameMessage>(&self) -> bool {
        self.route_id == M::ROUTE_ID
    }

    /// Deserializes the payload as `M` (which must be the route's type).
    pub fn decode<M: GameMessage>(&self, limits: &DecodeLimits) -> Result<M, MessageDecodeError> {
        if self.route_id != M::ROUTE_ID {
            return Err(MessageDecodeError::WrongRoute {
                expected: M::ROUTE_ID,
                actual: self.route_id,
            });
        }
        Ok(codec::decode(self.codec, &self.payload, limits)?)
    }
}

/// Why [`ReceivedMessage::decode`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MessageDecodeError {
    /// The message is on another route than the requested type's.
    #[error("message is on route {actual}, not {expected}")]
    WrongRoute {
        /// The requested type's route.
        expected: u16,
        /// The message's route.
        actual: u16,
    },
    /// The payload does not deserialize.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// A packet that authenticated and passed the replay check, waiting to be
/// charged to the rate limiter ([`Session::admit`]) and acted on
/// ([`Session::deliver`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedPacket {
    header: Header,
    wire_len: usize,
    /// Declared decompressed size when COMPRESSED, else 0.
    decompressed_len: usize,
    body: Vec<u8>,
}

impl OpenedPacket {
    /// The packet's route.
    pub fn route_id(&self) -> u16 {
        self.header.route_id
    }

    /// The packet's counter (message id).
    pub fn message_id(&self) -> u64 {
        self.header.message_id
    }

    /// Size of this packet on the wire (its share of the frame).
    pub fn wire_len(&self) -> usize {
        self.wire_len
    }

    /// What the byte budget is charged for this packet: its wire bytes plus,
    /// when it is compressed, the decompressed size its body declares.
    pub fn budget_cost(&self) -> usize {
        self.wire_len.saturating_add(self.decompressed_len)
    }

    /// The sender's network tick, if it set one.
    pub fn tick(&self) -> Option<u32> {
        self.header.tick
    }
}

/// Something the owner of a session should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Server only: a hello passed version, encryption, schema and codec checks;
    /// call [`Session::accept`] or [`Session::reject`] after checking `token`.
    AuthRequested {
        /// The client's credentials.
        token: Vec<u8>,
    },
    /// The handshake completed.
    Connected {
        /// The id the server assigned.
        client_id: u64,
        /// The negotiated codec.
        codec: CodecId,
        /// The negotiated compression.
        compression: CompressionId,
    },
    /// A message arrived.
    Message(ReceivedMessage),
    /// The session ended; no more packets will be accepted.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// Which side ended it.
        initiator: Initiator,
        /// Detail text (from the peer when `initiator` is `Peer`).
        detail: String,
    },
}

/// What went wrong with one received packet. The caller counts these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PacketError {
    /// The frame is not a valid envelope.
    #[error("malformed envelope: {0}")]
    Malformed(#[from] EnvelopeError),
    /// A handshake or control body is malformed.
    #[error("malformed body: {0}")]
    MalformedBody(#[from] WireError),
    /// The handshake failed cryptographically.
    #[error("handshake failed: {0}")]
    Handshake(CryptoError),
    /// Authentication of a sealed packet failed.
    #[error("packet failed authentication")]
    DecryptFailed,
    /// The packet counter was replayed or out of order.
    #[error("replay: {0}")]
    Replay(#[from] ReplayError),
    /// Over the rate limit (dropped; fatal once persistent).
    #[error("rate limited")]
    RateLimited {
        /// Whether the session was closed because of it.
        fatal: bool,
    },
    /// The packet's encryption flag does not match the session (no downgrade).
    #[error("encryption flag does not match the session")]
    SecurityMismatch,
    /// Decompression failed or exceeded the maximum size.
    #[error("decompression failed: {0}")]
    Decompress(String),
    /// A route that is not registered (or reserved and unused).
    #[error("unknown route {0}")]
    UnknownRoute(u16),
    /// A message's schema hash does not match the registry.
    #[error("schema hash mismatch on route {0}")]
    SchemaMismatch(u16),
    /// A message the peer's side may not send (its registered
    /// [`Direction`] does not allow it).
    #[error("route {0} may not travel in this direction")]
    WrongDirection(u16),
    /// A packet that is not allowed in the current state.
    #[error("unexpected packet: {0}")]
    Unexpected(&'static str),
    /// The server refused the handshake (the reason was sent to the client).
    #[error("handshake refused: {0}")]
    Refused(DisconnectReason),
    /// The session is closed; the packet was ignored.
    #[error("session closed")]
    Closed,
}

impl PacketError {
    /// The disconnect reason a fatal error closes the session with.
    pub const fn reason(&self) -> DisconnectReason {
        match self {
            PacketError::Malformed(EnvelopeError::UnsupportedVersion(_)) => {
                DisconnectReason::VersionMismatch
            }
            PacketError::Malformed(
                EnvelopeError::FrameTooLarge { .. } | EnvelopeError::PayloadTooLarge { .. },
            ) => DisconnectReason::MessageTooLarge,
            PacketError::Handshake(_) => DisconnectReason::HandshakeFailed,
            PacketError::DecryptFailed => DisconnectReason::DecryptFailed,
            PacketError::Replay(ReplayError::Exhausted) => DisconnectReason::CounterExhausted,
            PacketError::Replay(_) => DisconnectReason::Replay,
            PacketError::RateLimited { .. } => DisconnectReason::RateLimited,
            PacketError::SecurityMismatch => DisconnectReason::SecurityMismatch,
            PacketError::SchemaMismatch(_) => DisconnectReason::SchemaMismatch,
            PacketError::Refused(reason) => *reason,
            PacketError::Malformed(_)
            | PacketError::MalformedBody(_)
            | PacketError::Decompress(_)
            | PacketError::UnknownRoute(_)
            | PacketError::WrongDirection(_)
            | PacketError::Unexpected(_)
            | PacketError::Closed => DisconnectReason::ProtocolViolation,
        }
    }

    /// Whether this error ended the session. Only a rate-limited packet below
    /// the violation budget, and packets arriving after close, are not fatal.
    pub const fn is_fatal(&self) -> bool {
        !matches!(
            self,
            PacketError::RateLimited { fatal: false } | PacketError::Closed
        )
    }
}

/// Why [`Session::send`] refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SendError {
    /// The handshake has not completed.
    #[error("session not connected")]
    NotConnected,
    /// The session is closed.
    #[error("session closed")]
    Closed,
    /// The route is reserved or not in the registry.
    #[error("route {0} is not a registered message route")]
    UnknownRoute(u16),
    /// This side may not send the message (its registered
    /// [`Direction`] does not allow it).
    #[error("route {0} may not be sent from this side")]
    WrongDirection(u16),
    /// The payload exceeds the peer's maximum message size.
    #[error("message of {len} bytes exceeds the peer's maximum of {max}")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// The peer's maximum.
        max: usize,
    },
    /// The codec is neither the negotiated one nor Raw.
    #[error("codec {0:?} was not negotiated")]
    CodecNotNegotiated(CodecId),
    /// The send counter ran out; the session was closed.
    #[error("send counter exhausted")]
    CounterExhausted,
    /// Compression failed.
    #[error("compression failed: {0}")]
    Compress(String),
    /// The message could not be serialized.
    #[error("serialization failed: {0}")]
    Encode(String),
}

/// Why [`Session::accept`] or [`Session::reject`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StateError {
    /// The session is not waiting for an authentication decision.
    #[error("session is not awaiting an authentication decision")]
    NotAwaitingAuth,
}

/// Round-trip time estimate (RFC 6298 smoothing) from keepalive pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RttEstimate {
    /// The latest sample.
    pub latest: Duration,
    /// Smoothed RTT.
    pub smoothed: Duration,
    /// Smoothed mean deviation (jitter).
    pub jitter: Duration,
    /// Smallest sample seen.
    pub min: Duration,
    /// Samples taken.
    pub samples: u64,
}

impl RttEstimate {
    fn sample(&mut self, rtt: Duration) {
        self.latest = rtt;
        if self.samples == 0 {
            self.smoothed = rtt;
            self.jitter = rtt / 2;
            self.min = rtt;
        } else {
            let deviation = self.smoothed.abs_diff(rtt);
            self.jitter = (self.jitter * 3 + deviation) / 4;
            self.smoothed = (self.smoothed * 7 + rtt) / 8;
            self.min = self.min.min(rtt);
        }
        self.samples += 1;
    }
}

/// Traffic counters for one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    /// Frames received (all, including rejected ones).
    pub packets_in: u64,
    /// Packets queued for sending (several may share a frame).
    pub packets_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes queued for sending.
    pub bytes_out: u64,
    /// Application messages delivered.
    pub messages_in: u64,
    /// Application messages sent.
    pub messages_out: u64,
    /// Packets dropped by the rate limiter.
    pub rate_limited: u64,
}

/// The coarse state of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Handshake in progress.
    Handshaking,
    /// Server only: waiting for [`Session::accept`] / [`Session::reject`].
    AwaitingAuth,
    /// Messages flow.
    Connected,
    /// Ended.
    Closed(DisconnectReason),
}

/// Which side a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Initiates the handshake.
    Client,
    /// Answers it.
    Server,
}

impl Role {
    /// The other side.
    pub const fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }

    /// Whether this side may send a message registered with `direction`.
    pub const fn may_send(self, direction: Direction) -> bool {
        match self {
            Role::Client => direction.client_sends(),
            Role::Server => direction.server_sends(),
        }
    }
}

/// A queued packet: handshake packets travel alone, the others may be
/// batched into one frame by [`Session::poll_transmit`].
#[derive(Debug)]
enum Outgoing {
    Alone(Vec<u8>),
    Batchable(Vec<u8>),
}

enum State {
    ClientHandshake {
        noise: Option<NoiseHandshake>,
        deadline: Instant,
    },
    ServerAwaitHello {
        keypair: Option<KeyPair>,
        deadline: Instant,
    },
    ServerAwaitAuth {
        noise: Option<NoiseHandshake>,
        accept: Accept,
        peer_max_message_size: usize,
        deadline: Instant,
    },
    Established(Box<Established>),
    Closed(DisconnectReason),
}

struct Established {
    sealer: Option<PacketSealer>,
    opener: Option<PacketOpener>,
    /// Plaintext mode's send counter (the sealer keeps its own).
    plain_next: u64,
    replay: ReplayGuard,
    codec: CodecId,
    compression: CompressionId,
    compressor: Compressor,
    peer_max_message_size: usize,
    idle_timeout: Duration,
    ping_interval: Duration,
    last_received: Instant,
    next_ping: Instant,
    next_ping_id: u64,
    outstanding: VecDeque<(u64, Instant)>,
    limiter: RateLimiter,
}

/// One connection's protocol state, client or server. See the module docs.
pub struct Session {
    role: Role,
    client_id: u64,
    encrypted: bool,
    registry: Arc<MessageRegistry>,
    config: SessionConfig,
    state: State,
    transmit: VecDeque<Outgoing>,
    /// The network tick stamped on packets sealed from now on.
    tick: Option<u32>,
    events: VecDeque<SessionEvent>,
    rtt: RttEstimate,
    stats: SessionStats,
    encode_buffer: Vec<u8>,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("client_id", &self.client_id)
            .field("state", &self.state())
            .field("encrypted", &self.encrypted)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts a client session and queues the hello.
    pub fn client(config: &ClientConfig, now: Instant) -> Result<Self, CryptoError> {
        let hello = Hello::new(
            &config.session.codecs,
            &config.session.compression,
            config.registry.protocol_hash(),
            config.session.max_message_size,
            config.auth_token.clone(),
        );
        let mut body = Vec::new();
        hello
            .encode(&mut body)
            .map_err(|_| CryptoError::Handshake("hello does not fit its limits".into()))?;
        let (noise, body, flags) = match &config.security {
            ClientSecurity::Pinned(key) => {
                let mut noise = NoiseHandshake::initiator(key)?;
                let message = noise.write(&body)?;
                (Some(noise), message, Flags::ENCRYPTED)
            }
            ClientSecurity::Plaintext => (None, body, Flags::empty()),
        };
        let mut session = Session::new(
            Role::Client,
            0,
            noise.is_some(),
            config.registry.clone(),
            config.session.clone(),
            State::ClientHandshake {
                noise,
                deadline: now + config.session.handshake_timeout,
            },
        );
        session.queue_handshake(flags, &body);
        Ok(session)
    }

    /// Starts a server session for a new connection, identified by `client_id`.
    pub fn server(config: &ServerConfig, client_id: u64, now: Instant) -> Self {
        let keypair = match &config.security {
            ServerSecurity::Noise(keypair) => Some(keypair.clone()),
            ServerSecurity::Plaintext => None,
        };
        Session::new(
            Role::Server,
            client_id,
            keypair.is_some(),
            config.registry.clone(),
            config.session.clone(),
            State::ServerAwaitHello {
                keypair,
                deadline: now + config.session.handshake_timeout,
            },
        )
    }

    fn new(
        role: Role,
        client_id: u64,
        encrypted: bool,
        registry: Arc<MessageRegistry>,
        config: SessionConfig,
        state: State,
    ) -> Self {
        Session {
            role,
            client_id,
            encrypted,
            registry,
            config,
            state,
            transmit: VecDeque::new(),
            tick: None,
            events: VecDeque::new(),
            rtt: RttEstimate::default(),
            stats: SessionStats::default(),
            encode_buffer: Vec::new(),
        }
    }
}

impl Session {
    /// Which side this session is.
    pub const fn role(&self) -> Role {
        self.role
    }

    /// The client id (assigned by the server; 0 on a client before it connects).
    pub const fn client_id(&self) -> u64 {
        self.client_id
    }

    /// Whether traffic is encrypted (Noise + sealed packets).
    pub const fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// The coarse state.
    pub fn state(&self) -> SessionState {
        match &self.state {
            State::ClientHandshake { .. } | State::ServerAwaitHello { .. } => {
                SessionState::Handshaking
            }
            State::ServerAwaitAuth { .. } => SessionState::AwaitingAuth,
            State::Established(_) => SessionState::Connected,
            State::Closed(reason) => SessionState::Closed(*reason),
        }
    }

    /// Whether messages can be sent.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Established(_))
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// The current RTT estimate (zero samples until the first pong).
    pub const fn rtt(&self) -> RttEstimate {
        self.rtt
    }

    /// Traffic counters.
    pub const fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The message registry this session validates routes against.
    pub fn registry(&self) -> &Arc<MessageRegistry> {
        &self.registry
    }

    /// The negotiated codec, once connected.
    pub fn codec(&self) -> Option<CodecId> {
        match &self.state {
            State::Established(est) => Some(est.codec),
            _ => None,
        }
    }

    /// The negotiated compression, once connected.
    pub fn compression(&self) -> Option<CompressionId> {
        match &self.state {
            State::Established(est) => Some(est.compression),
            _ => None,
        }
    }

    /// The next frame to send, in order. After the handshake the queued
    /// packets are batched: one frame holds as many consecutive packets as
    /// fit the peer's frame limit (its max message size + 16 + 44 bytes) and
    /// [`MAX_PACKETS_PER_FRAME`]; a handshake packet always travels alone.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let mut frame = match self.transmit.pop_front()? {
            Outgoing::Alone(frame) => return Some(frame),
            Outgoing::Batchable(frame) => frame,
        };
        let limit = self.peer_frame_limit();
        let mut packets = 1;
        while packets < MAX_PACKETS_PER_FRAME {
            match self.transmit.front() {
                Some(Outgoing::Batchable(next)) if frame.len() + next.len() <= limit => {
                    frame.extend_from_slice(next);
                    self.transmit.pop_front();
                    packets += 1;
                }
                _ => break,
            }
        }
        Some(frame)
    }

    /// Sets the network tick that packets sealed from now on carry (in the
    /// envelope's TICK field; the peer sees it as [`ReceivedMessage::tick`]).
    /// Call it once per fixed step, before sending that step's messages.
    pub fn set_tick(&mut self, tick: u32) {
        self.tick = Some(tick);
    }

    /// The tick set by [`set_tick`](Self::set_tick), if any.
    pub const fn tick(&self) -> Option<u32> {
        self.tick
    }

    /// The largest frame the peer accepts: its max message size plus the tag
    /// and the longest header. Before the handshake completes, no batching.
    fn peer_frame_limit(&self) -> usize {
        match &self.state {
            State::Established(est) => est.peer_max_message_size + TAG_LEN + MAX_HEADER_LEN,
            _ => 0,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::ClientHandshake { deadline, .. }
            | State::ServerAwaitHello { deadline, .. }
            | State::ServerAwaitAuth { deadline, .. } => Some(*deadline),
            State::Established(est) => {
                Some((est.last_received + est.idle_timeout).min(est.next_ping))
            }
            State::Closed(_) => None,
        }
    }

    /// Processes one received frame: [`open_frame`](Self::open_frame), then
    /// [`admit`](Self::admit) and [`deliver`](Self::deliver) for each of its
    /// packets in order. A packet over the rate limit is dropped and the
    /// others still delivered; the frame's result is then that
    /// `RateLimited` error. A fatal error stops at its packet. See
    /// [`PacketError`] for what errors mean.
    pub fn handle_packet(&mut self, now: Instant, frame: &[u8]) -> Result<(), PacketError> {
        let mut dropped = None;
        for packet in self.open_frame(now, frame)? {
            if self.is_closed() {
                // A DISCONNECT earlier in the frame ended the session.
                break;
            }
            match self.admit(now, &packet) {
                Ok(()) => self.deliver(now, packet)?,
                Err(error) if !error.is_fatal() => dropped = dropped.or(Some(error)),
                Err(error) => return Err(error),
            }
        }
        dropped.map_or(Ok(()), Err)
    }

    /// Step 1 of receiving: splits the frame into its packets and, for each
    /// in order, decodes the envelope, checks the packet counter against the
    /// replay guard, verifies and decrypts the packet, and only then commits
    /// the counter and resets the idle timer. A compressed packet's declared
    /// size is read (not decompressed) for [`admit`](Self::admit). Handshake
    /// frames hold one packet and are processed completely here (returning
    /// no packets). Any error is fatal; packets before the bad one have been
    /// committed but are not returned, since the session is closed.
    pub fn open_frame(
        &mut self,
        now: Instant,
        frame: &[u8],
    ) -> Result<Vec<OpenedPacket>, PacketError> {
        self.stats.packets_in += 1;
        self.stats.bytes_in += frame.len() as u64;
        let result = match &self.state {
            State::ClientHandshake { .. } => {
                self.handle_server_response(now, frame).map(|()| Vec::new())
            }
            State::ServerAwaitHello { .. } => self.handle_client_hello(frame).map(|()| Vec::new()),
            State::ServerAwaitAuth { .. } => Err(PacketError::Unexpected(
                "packet before the handshake completed",
            )),
            State::Established(_) => self.open_established_frame(now, frame),
            State::Closed(_) => return Err(PacketError::Closed),
        };
        self.close_if_fatal(result)
    }

    /// Step 2 of receiving: charges an opened packet to the peer's rate limits
    /// (one message, and [`OpenedPacket::budget_cost`] bytes).
    /// Over the limit the packet must be dropped (`RateLimited { fatal: false }`);
    /// persistently over it the session closes.
    pub fn admit(&mut self, now: Instant, packet: &OpenedPacket) -> Result<(), PacketError> {
        let result = match &mut self.state {
            State::Established(est) => match est.limiter.check(now, packet.budget_cost()) {
                Ok(()) => Ok(()),
                Err(RateLimitError::Dropped) => {
                    self.stats.rate_limited += 1;
                    Err(PacketError::RateLimited { fatal: false })
                }
                Err(_) => {
                    self.stats.rate_limited += 1;
                    Err(PacketError::RateLimited { fatal: true })
                }
            },
            State::Closed(_) => return Err(PacketError::Closed),
            _ => Err(PacketError::Unexpected("not connected")),
        };
        self.close_if_fatal(result)
    }

    /// Step 3 of receiving: acts on an admitted packet — answers pings,
    /// measures pongs, handles DISCONNECT, or decompresses and emits an
    /// application message.
    pub fn deliver(&mut self, now: Instant, packet: OpenedPacket) -> Result<(), PacketError> {
        if self.is_closed() {
            return Err(PacketError::Closed);
        }
        let result = self.deliver_established(now, packet);
        self.close_if_fatal(result)
    }

    fn close_if_fatal<T>(&mut self, result: Result<T, PacketError>) -> Result<T, PacketError> {
        if let Err(error) = &result
            && error.is_fatal()
            && !self.is_closed()
        {
            self.close(error.reason(), Initiator::Local, error.to_string());
        }
        result
    }

    /// Runs timers: handshake and idle timeouts, keepalive pings.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::ClientHandshake { deadline, .. }
            | State::ServerAwaitHello { deadline, .. }
            | State::ServerAwaitAuth { deadline, .. } => {
                if now >= *deadline {
                    self.close(
                        DisconnectReason::HandshakeTimeout,
                        Initiator::Local,
                        String::new(),
                    );
                }
            }
            State::Established(est) => {
                if now.saturating_duration_since(est.last_received) >= est.idle_timeout {
                    self.close(
                        DisconnectReason::IdleTimeout,
                        Initiator::Local,
                        String::new(),
                    );
                } else if now >= est.next_ping {
                    let id = est.next_ping_id;
                    est.next_ping_id += 1;
                    if est.outstanding.len() == MAX_OUTSTANDING_PINGS {
                        est.outstanding.pop_front();
                    }
                    est.outstanding.push_back((id, now));
                    est.next_ping = now + est.ping_interval;
                    let _ = self.send_control(&ControlMessage::Ping { id });
                }
            }
            State::Closed(_) => {}
        }
    }

    /// Server only: accepts the client after [`SessionEvent::AuthRequested`].
    pub fn accept(&mut self, now: Instant) -> Result<(), StateError> {
        let State::ServerAwaitAuth { .. } = &self.state else {
            return Err(StateError::NotAwaitingAuth);
        };
        let State::ServerAwaitAuth {
            noise,
            accept,
            peer_max_message_size,
            ..
        } = std::mem::replace(&mut self.state, State::Closed(DisconnectReason::Requested))
        else {
            return Err(StateError::NotAwaitingAuth);
        };
        let mut body = Vec::new();
        Response::Accepted(accept).encode(&mut body);
        let keys = match noise {
            Some(mut noise) => match noise.write(&body).and_then(|message| {
                let keys = noise.into_traffic_keys()?;
                Ok((message, keys))
            }) {
                Ok((message, keys)) => {
                    self.queue_handshake(Flags::ENCRYPTED, &message);
                    Some(keys)
                }
                Err(error) => {
                    self.state = State::ServerAwaitHello {
                        keypair: None,
                        deadline: now,
                    };
                    self.close(
                        DisconnectReason::HandshakeFailed,
                        Initiator::Local,
                        error.to_string(),
                    );
                    return Ok(());
                }
            },
            None => {
                self.queue_handshake(Flags::empty(), &body);
                None
            }
        };
        self.establish(now, keys, accept, peer_max_message_size);
        Ok(())
    }

    /// Server only: refuses the client after [`SessionEvent::AuthRequested`];
    /// the reason (usually [`DisconnectReason::AuthFailed`]) is sent to it.
    pub fn reject(
        &mut self,
        reason: DisconnectReason,
        detail: impl Into<String>,
    ) -> Result<(), StateError> {
        if !matches!(self.state, State::ServerAwaitAuth { .. }) {
            return Err(StateError::NotAwaitingAuth);
        }
        self.close(reason, Initiator::Local, detail.into());
        Ok(())
    }

    /// Ends the session: queues a DISCONNECT with `reason` for the peer (when
    /// connected) and emits [`SessionEvent::Disconnected`]. No-op when closed.
    pub fn disconnect(&mut self, reason: DisconnectReason, detail: impl Into<String>) {
        self.close(reason, Initiator::Local, detail.into());
    }

    /// Sends one application message (already serialized with `codec`) on
    /// `route_id`. Compresses it when worthwhile, seals it, and queues the frame.
    /// Returns the packet counter used.
    pub fn send(
        &mut self,
        route_id: u16,
        codec: CodecId,
        payload: &[u8],
        correlation_id: Option<u64>,
    ) -> Result<u64, SendError> {
        let est = match &self.state {
            State::Established(est) => est,
            State::Closed(_) => return Err(SendError::Closed),
            _ => return Err(SendError::NotConnected),
        };
        if route_id <= LAST_RESERVED_ROUTE {
            return Err(SendError::UnknownRoute(route_id));
        }
        let info = self
            .registry
            .get(route_id)
            .ok_or(SendError::UnknownRoute(route_id))?;
        if !self.role.may_send(info.direction) {
            return Err(SendError::WrongDirection(route_id));
        }
        if codec != est.codec && codec != CodecId::Raw {
            return Err(SendError::CodecNotNegotiated(codec));
        }
        if payload.len() > est.peer_max_message_size {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: est.peer_max_message_size,
            });
        }
        let mut header = Header::new(codec, route_id);
        header.correlation_id = correlation_id;
        if self.config.include_schema_hash {
            header.schema_hash = Some(info.schema_hash);
        }
        let counter = self.send_packet(header, payload, true)?;
        self.stats.messages_out += 1;
        Ok(counter)
    }

    /// Serializes `message` with the negotiated codec and sends it on its route.
    pub fn send_message<M: GameMessage>(&mut self, message: &M) -> Result<u64, SendError> {
        self.send_message_correlated(message, None)
    }

    /// Like [`send_message`](Self::send_message) with a correlation id (for
    /// replies to requests).
    pub fn send_message_correlated<M: GameMessage>(
        &mut self,
        message: &M,
        correlation_id: Option<u64>,
    ) -> Result<u64, SendError> {
        let codec = match &self.state {
            State::Established(est) => est.codec,
            State::Closed(_) => return Err(SendError::Closed),
            _ => return Err(SendError::NotConnected),
        };
        let mut buffer = std::mem::take(&mut self.encode_buffer);
        buffer.clear();
        let result = codec::encode(codec, message, &mut buffer)
            .map_err(|e| SendError::Encode(e.to_string()))
            .and_then(|()| self.send(M::ROUTE_ID, codec, &buffer, correlation_id));
        self.encode_buffer = buffer;
        result
    }

    fn send_control(&mut self, message: &ControlMessage) -> Result<u64, SendError> {
        let mut body = Vec::new();
        message.encode(&mut body);
        self.send_packet(Header::new(CodecId::Raw, message.route()), &body, false)
    }

    fn send_packet(
        &mut self,
        mut header: Header,
        body: &[u8],
        compress: bool,
    ) -> Result<u64, SendError> {
        let State::Established(est) = &mut self.state else {
            return Err(SendError::NotConnected);
        };
        header.tick = self.tick;
        let mut compressed = Vec::new();
        let body = if compress
            && est
                .compressor
                .compress(body, &mut compressed)
                .map_err(|e| SendError::Compress(e.to_string()))?
        {
            header.flags.set(Flags::COMPRESSED, true);
            &compressed[..]
        } else {
            body
        };
        let mut frame = Vec::with_capacity(header.encoded_len() + body.len() + 2 * TAG_LEN);
        let counter = match &mut est.sealer {
            Some(sealer) => sealer.seal(&mut header, body, &mut frame).map_err(|error| {
                if error == CryptoError::CounterExhausted {
                    SendError::CounterExhausted
                } else {
                    SendError::TooLarge {
                        len: body.len(),
                        max: u32::MAX as usize,
                    }
                }
            }),
            None if est.plain_next == u64::MAX => Err(SendError::CounterExhausted),
            None => {
                let counter = est.plain_next;
                est.plain_next += 1;
                header.message_id = counter;
                header.payload_len = body.len() as u32;
                header.encode(&mut frame);
                frame.extend_from_slice(body);
                Ok(counter)
            }
        };
        match counter {
            Ok(counter) => {
                self.stats.packets_out += 1;
                self.stats.bytes_out += frame.len() as u64;
                self.transmit.push_back(Outgoing::Batchable(frame));
                Ok(counter)
            }
            Err(SendError::CounterExhausted) => {
                // Nothing more can be sealed, not even a DISCONNECT.
                self.state = State::Closed(DisconnectReason::CounterExhausted);
                self.events.push_back(SessionEvent::Disconnected {
                    reason: DisconnectReason::CounterExhausted,
                    initiator: Initiator::Local,
                    detail: String::new(),
                });
                Err(SendError::CounterExhausted)
            }
            Err(other) => Err(other),
        }
    }

    fn queue_handshake(&mut self, flags: Flags, body: &[u8]) {
        let mut header = Header::new(CodecId::Raw, ROUTE_HANDSHAKE);
        header.flags = flags;
        header.payload_len = body.len() as u32;
        let mut frame = Vec::with_capacity(header.encoded_len() + body.len());
        header.encode(&mut frame);
        frame.extend_from_slice(body);
        self.stats.packets_out += 1;
        self.stats.bytes_out += frame.len() as u64;
        self.transmit.push_back(Outgoing::Alone(frame));
    }

    fn close(&mut self, reason: DisconnectReason, initiator: Initiator, detail: String) {
        if self.is_closed() {
            return;
        }
        if initiator == Initiator::Local {
            let refusal = Response::Rejected {
                reason,
                detail: detail.clone(),
            };
            match &mut self.state {
                State::Established(_) => {
                    let _ = self.send_control(&ControlMessage::Disconnect {
                        reason,
                        detail: detail.clone(),
                    });
                }
                State::ServerAwaitHello { .. } => {
                    let mut body = Vec::new();
                    refusal.encode(&mut body);
                    self.queue_handshake(Flags::empty(), &body);
                }
                State::ServerAwaitAuth { noise, .. } => {
                    let mut body = Vec::new();
                    refusal.encode(&mut body);
                    match noise.take().map(|mut noise| noise.write(&body)) {
                        Some(Ok(message)) => self.queue_handshake(Flags::ENCRYPTED, &message),
                        Some(Err(_)) => {}
                        None => self.queue_handshake(Flags::empty(), &body),
                    }
                }
                State::ClientHandshake { .. } | State::Closed(_) => {}
            }
        }
        self.state = State::Closed(reason);
        self.events.push_back(SessionEvent::Disconnected {
            reason,
            initiator,
            detail,
        });
    }

    fn establish(
        &mut self,
        now: Instant,
        keys: Option<super::crypto::TrafficKeys>,
        accept: Accept,
        peer_max_message_size: usize,
    ) {
        let compression_config = CompressionConfig {
            max_decompressed_size: self.config.max_message_size,
            ..self.config.compression_config
        };
        let compressor = match Compressor::new(accept.compression, compression_config) {
            Ok(compressor) => compressor,
            Err(error) => {
                let error: CompressionError = error;
                self.close(
                    DisconnectReason::ProtocolViolation,
                    Initiator::Local,
                    error.to_string(),
                );
                return;
            }
        };
        let (sealer, opener) = match keys {
            Some(keys) => (Some(keys.sealer), Some(keys.opener)),
            None => (None, None),
        };
        let ping_interval = Duration::from_millis(u64::from(accept.ping_interval_ms));
        self.state = State::Established(Box::new(Established {
            sealer,
            opener,
            plain_next: 0,
            replay: ReplayGuard::new(self.config.replay, 0),
            codec: accept.codec,
            compression: accept.compression,
            compressor,
            peer_max_message_size,
            idle_timeout: Duration::from_millis(u64::from(accept.idle_timeout_ms)),
            ping_interval,
            last_received: now,
            next_ping: now + ping_interval,
            next_ping_id: 0,
            outstanding: VecDeque::new(),
            limiter: RateLimiter::new(self.config.rate_limit),
        }));
        self.events.push_back(SessionEvent::Connected {
            client_id: self.client_id,
            codec: accept.codec,
            compression: accept.compression,
        });
    }

    fn check_handshake_header(header: &Header) -> Result<(), PacketError> {
        if header.route_id != ROUTE_HANDSHAKE {
            return Err(PacketError::Unexpected("expected a handshake packet"));
        }
        if header.codec != CodecId::Raw
            || header.message_id != 0
            || header.correlation_id.is_some()
            || header.schema_hash.is_some()
            || header.tick.is_some()
            || header.flags.contains(Flags::COMPRESSED)
        {
            return Err(PacketError::Unexpected("malformed handshake header"));
        }
        Ok(())
    }

    fn handle_client_hello(&mut self, frame: &[u8]) -> Result<(), PacketError> {
        let decoded = Header::decode(frame, MAX_HANDSHAKE_BODY)?;
        Self::check_handshake_header(&decoded.header)?;
        if decoded.header.flags.contains(Flags::ENCRYPTED) != self.encrypted {
            return Err(PacketError::SecurityMismatch);
        }
        let State::ServerAwaitHello { keypair, deadline } = &self.state else {
            return Err(PacketError::Unexpected("not awaiting a hello"));
        };
        let deadline = *deadline;
        let (mut noise, hello_bytes) = match keypair {
            Some(keypair) => {
                let mut noise =
                    NoiseHandshake::responder(keypair).map_err(PacketError::Handshake)?;
                let payload = noise.read(decoded.body).map_err(PacketError::Handshake)?;
                (Some(noise), payload)
            }
            None => (None, decoded.body.to_vec()),
        };
        // From here on the client is talking to the right server: refusals travel
        // inside the (authenticated) Noise response.
        let outcome = Hello::decode(&hello_bytes)
            .map_err(|error| (DisconnectReason::ProtocolViolation, error.to_string()))
            .and_then(|hello| {
                if hello.protocol_hash != self.registry.protocol_hash() {
                    return Err((
                        DisconnectReason::SchemaMismatch,
                        format!(
                            "protocol hash {:016x} does not match the server's {:016x}",
                            hello.protocol_hash,
                            self.registry.protocol_hash()
                        ),
                    ));
                }
                let codec = negotiate_codec(&hello.known_codecs(), &self.config.codecs)
                    .ok_or((DisconnectReason::NoCommonCodec, String::new()))?;
                let compression =
                    negotiate_compression(&hello.known_compression(), &self.config.compression);
                Ok((hello, codec, compression))
            });
        match outcome {
            Ok((hello, codec, compression)) => {
                let accept = Accept {
                    codec,
                    compression,
                    client_id: self.client_id,
                    max_message_size: self.config.max_message_size.clamp(
                        super::handshake::MIN_MESSAGE_SIZE,
                        super::handshake::MAX_MESSAGE_SIZE,
                    ) as u32,
                    ping_interval_ms: self.config.ping_interval.as_millis().clamp(1, 60_000) as u32,
                    idle_timeout_ms: self.config.idle_timeout.as_millis().clamp(1, 600_000) as u32,
                };
                self.state = State::ServerAwaitAuth {
                    noise,
                    accept,
                    peer_max_message_size: hello.max_message_size as usize,
                    deadline,
                };
                self.events
                    .push_back(SessionEvent::AuthRequested { token: hello.token });
                Ok(())
            }
            Err((reason, detail)) => {
                self.state = State::ServerAwaitAuth {
                    noise: noise.take(),
                    accept: Accept {
                        codec: CodecId::Raw,
                        compression: CompressionId::None,
                        client_id: self.client_id,
                        max_message_size: 0,
                        ping_interval_ms: 0,
                        idle_timeout_ms: 0,
                    },
                    peer_max_message_size: 0,
                    deadline,
                };
                self.close(reason, Initiator::Local, detail);
                Err(PacketError::Refused(reason))
            }
        }
    }

    fn handle_server_response(&mut self, now: Instant, frame: &[u8]) -> Result<(), PacketError> {
        let decoded = Header::decode(frame, MAX_HANDSHAKE_BODY)?;
        Self::check_handshake_header(&decoded.header)?;
        let flagged = decoded.header.flags.contains(Flags::ENCRYPTED);
        let State::ClientHandshake { noise, .. } = &mut self.state else {
            return Err(PacketError::Unexpected("not awaiting a response"));
        };
        let (response, authenticated) = match (noise.as_mut(), flagged) {
            (Some(noise), true) => {
                let payload = noise.read(decoded.body).map_err(PacketError::Handshake)?;
                (Response::decode(&payload)?, true)
            }
            (None, false) => (Response::decode(decoded.body)?, true),
            // A plaintext answer to an encrypted hello can only be a refusal
            // (the server could not or would not run Noise). It is not
            // authenticated, so it can end the attempt but never connect.
            (Some(_), false) => (Response::decode(decoded.body)?, false),
            (None, true) => return Err(PacketError::SecurityMismatch),
        };
        match response {
            Response::Accepted(accept) if authenticated => {
                let offered_codec = self.config.codecs.contains(&accept.codec);
                let offered_compression = accept.compression == CompressionId::None
                    || self.config.compression.contains(&accept.compression);
                if !offered_codec || !offered_compression {
                    return Err(PacketError::Unexpected(
                        "server chose something not offered",
                    ));
                }
                let keys = match noise.take() {
                    Some(noise) => Some(noise.into_traffic_keys().map_err(PacketError::Handshake)?),
                    None => None,
                };
                self.client_id = accept.client_id;
                let peer_max = accept.max_message_size as usize;
                self.establish(now, keys, accept, peer_max);
                Ok(())
            }
            Response::Accepted(_) => Err(PacketError::SecurityMismatch),
            Response::Rejected { reason, detail } => {
                let detail = if authenticated {
                    detail
                } else {
                    format!("{detail} (unauthenticated)")
                };
                self.close(reason, Initiator::Peer, detail);
                Ok(())
            }
        }
    }

    fn open_established_frame(
        &mut self,
        now: Instant,
        frame: &[u8],
    ) -> Result<Vec<OpenedPacket>, PacketError> {
        let packets = FramePackets::new(frame, self.config.max_message_size + TAG_LEN)?;
        let mut opened = Vec::new();
        for packet in packets {
            opened.push(self.open_established(now, packet?)?);
        }
        Ok(opened)
    }

    fn open_established(
        &mut self,
        now: Instant,
        decoded: FramePacket<'_>,
    ) -> Result<OpenedPacket, PacketError> {
        let header = decoded.header;
        let State::Established(est) = &mut self.state else {
            return Err(PacketError::Unexpected("not connected"));
        };
        if header.flags.contains(Flags::ENCRYPTED) != self.encrypted {
            return Err(PacketError::SecurityMismatch);
        }
        est.replay.check(header.message_id)?;
        let mut body = Vec::new();
        match &est.opener {
            Some(opener) => opener
                .open(
                    &decoded.bytes[..decoded.header_len],
                    header.message_id,
                    decoded.body,
                    &mut body,
                )
                .map_err(|_| PacketError::DecryptFailed)?,
            None => body.extend_from_slice(decoded.body),
        }
        // Authenticated: only now may state change.
        est.replay.commit(header.message_id);
        est.last_received = now;
        // What the byte budget will charge: the size the body expands to.
        let decompressed_len = if header.flags.contains(Flags::COMPRESSED) {
            est.compressor
                .declared_size(&body)
                .map_err(|error| match error {
                    CompressionError::NotNegotiated => {
                        PacketError::Unexpected("compression was not negotiated")
                    }
                    other => PacketError::Decompress(other.to_string()),
                })?
        } else {
            0
        };
        Ok(OpenedPacket {
            header,
            wire_len: decoded.bytes.len(),
            decompressed_len,
            body,
        })
    }

    fn deliver_established(
        &mut self,
        now: Instant,
        packet: OpenedPacket,
    ) -> Result<(), PacketError> {
        let OpenedPacket { header, body, .. } = packet;
        let State::Established(est) = &mut self.state else {
            return Err(PacketError::Unexpected("not connected"));
        };
        match header.route_id {
            ROUTE_PING | ROUTE_PONG | ROUTE_DISCONNECT => {
                if header.codec != CodecId::Raw
                    || header.flags.contains(Flags::COMPRESSED)
                    || header.correlation_id.is_some()
                    || header.schema_hash.is_some()
                {
                    return Err(PacketError::Unexpected("malformed control header"));
                }
                let message = ControlMessage::decode(header.route_id, &body)?;
                self.handle_control(now, message);
                Ok(())
            }
            route if route <= LAST_RESERVED_ROUTE => Err(PacketError::UnknownRoute(route)),
            route => {
                let info = self
                    .registry
                    .get(route)
                    .ok_or(PacketError::UnknownRoute(route))?;
                if !self.role.peer().may_send(info.direction) {
                    return Err(PacketError::WrongDirection(route));
                }
                if header
                    .schema_hash
                    .is_some_and(|hash| hash != info.schema_hash)
                {
                    return Err(PacketError::SchemaMismatch(route));
                }
                if header.codec != est.codec && header.codec != CodecId::Raw {
                    return Err(PacketError::Unexpected("codec was not negotiated"));
                }
                let payload = if header.flags.contains(Flags::COMPRESSED) {
                    if est.compression == CompressionId::None {
                        return Err(PacketError::Unexpected("compression was not negotiated"));
                    }
                    let mut out = Vec::new();
                    est.compressor
                        .decompress(&body, &mut out)
                        .map_err(|e| PacketError::Decompress(e.to_string()))?;
                    out
                } else {
                    body
                };
                self.stats.messages_in += 1;
                self.events
                    .push_back(SessionEvent::Message(ReceivedMessage {
                        route_id: route,
                        message_id: header.message_id,
                        correlation_id: header.correlation_id,
                        tick: header.tick,
                        codec: header.codec,
                        payload,
                    }));
                Ok(())
            }
        }
    }

    fn handle_control(&mut self, now: Instant, message: ControlMessage) {
        match message {
            ControlMessage::Ping { id } => {
                let _ = self.send_control(&ControlMessage::Pong { id });
            }
            ControlMessage::Pong { id } => {
                let State::Established(est) = &mut self.state else {
                    return;
                };
                if let Some(position) = est.outstanding.iter().position(|(sent, _)| *sent == id) {
                    let (_, sent_at) = est.outstanding[position];
                    est.outstanding.drain(..=position);
                    self.rtt.sample(now.saturating_duration_since(sent_at));
                }
            }
            ControlMessage::Disconnect { reason, detail } => {
                self.close(reason, Initiator::Peer, detail);
            }
        }
    }
}
