//! What a session reports: events, received messages, errors, statistics and
//! the RTT estimate.

use std::time::Duration;

use thiserror::Error;

#[cfg(doc)]
use super::Session;
use crate::protocol::codec::{self, CodecError, CodecId, DecodeLimits};
use crate::protocol::compression::CompressionId;
use crate::protocol::control::DisconnectReason;
use crate::protocol::crypto::CryptoError;
use crate::protocol::envelope::{EnvelopeError, Header};
use crate::protocol::message::{Direction, GameMessage};
use crate::protocol::reader::WireError;
use crate::protocol::replay::ReplayError;

/// Which end of the connection closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// This side.
    Local,
    /// The remote peer, authenticated: a sealed DISCONNECT, or a refusal
    /// inside Noise message 2 (or any refusal in plaintext mode).
    Peer,
    /// Client only: a plaintext refusal answering an encrypted hello. The
    /// server could not (or would not) run Noise, so nothing proves who sent
    /// it: anyone on the path could have forged it. It ends the attempt but
    /// should be treated as advisory (e.g. worth a retry, not a user-facing
    /// verdict).
    UnauthenticatedPeer,
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
    pub(super) header: Header,
    pub(super) wire_len: usize,
    /// Declared decompressed size when COMPRESSED, else 0.
    pub(super) decompressed_len: usize,
    pub(super) body: Vec<u8>,
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
    /// Server only: the client's sealed AUTH arrived, so the sender holds this
    /// session's keys (a replayed hello can never get here). Its hello had
    /// passed the version, encryption, schema and codec checks. Call
    /// [`Session::accept`] or [`Session::reject`] after checking `token`.
    AuthRequested {
        /// The client's credentials.
        token: Vec<u8>,
    },
    /// The handshake completed: server after [`Session::accept`], client on
    /// the server's AUTH_OK.
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
    pub(super) fn sample(&mut self, rtt: Duration) {
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
    /// Handshake in progress (including, with keys agreed, the AUTH / AUTH_OK
    /// exchange).
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
