//! Mokosh control messages and the disconnect reason codes.
//!
//! Control messages use the reserved routes `0..=15` and the Raw codec, with the
//! fixed layouts below (after opening; they are sealed like any other packet):
//!
//! | route | name        | body                                                      |
//! |-------|-------------|-----------------------------------------------------------|
//! | 0     | HANDSHAKE   | see [`handshake`](super::handshake) (only before sealing) |
//! | 1     | PING        | `u64 LE ping id`                                          |
//! | 2     | PONG        | `u64 LE ping id` copied from the PING                     |
//! | 3     | DISCONNECT  | `u8 reason` ‖ `varint len (<= 256)` ‖ `len bytes UTF-8`   |
//! | 4     | AUTH        | `varint len (<= 1024)` ‖ `len bytes token` (client only)  |
//! | 5     | AUTH_OK     | `u64 LE client id` (server only)                          |
//!
//! AUTH and AUTH_OK are the last step of the handshake (see
//! [`session`](super::session)): they are sealed, so only a peer holding the
//! session keys can send them. Routes `6..=15` are reserved; receiving one is
//! a protocol violation.

use super::reader::{Reader, WireError};

/// Route of the handshake messages.
pub const ROUTE_HANDSHAKE: u16 = 0;
/// Route of keepalive pings.
pub const ROUTE_PING: u16 = 1;
/// Route of keepalive pongs.
pub const ROUTE_PONG: u16 = 2;
/// Route of the disconnect notice.
pub const ROUTE_DISCONNECT: u16 = 3;
/// Route of the client's credentials (its first sealed packet).
pub const ROUTE_AUTH: u16 = 4;
/// Route of the server's acceptance of those credentials.
pub const ROUTE_AUTH_OK: u16 = 5;
/// Longest auth token, in bytes.
pub const MAX_TOKEN_LEN: usize = 1024;
/// Longest human-readable detail carried in a reject or disconnect, in bytes.
pub const MAX_DETAIL_LEN: usize = 256;

/// Why a session ended (or a handshake was refused). Sent on the wire as one
/// byte so both sides can read it; games can match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The application on one side asked to disconnect.
    Requested,
    /// Nothing was received for the idle timeout.
    IdleTimeout,
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// The peer sent something the protocol does not allow.
    ProtocolViolation,
    /// A packet failed authentication (tampered or wrong keys).
    DecryptFailed,
    /// A packet counter was replayed or out of order.
    Replay,
    /// The peer kept exceeding its rate limits.
    RateLimited,
    /// The peers' message registries differ (protocol hash mismatch), or a
    /// message carried a schema hash that does not match its route.
    SchemaMismatch,
    /// The authentication hook rejected the peer's token.
    AuthFailed,
    /// The server is shutting down.
    ServerShutdown,
    /// The server removed this client.
    Kicked,
    /// The peers speak different protocol versions.
    VersionMismatch,
    /// The send counter ran out; the session must be re-established.
    CounterExhausted,
    /// The peer did not read its messages fast enough.
    SlowConsumer,
    /// A message exceeded the maximum message size.
    MessageTooLarge,
    /// The peers support no common codec.
    NoCommonCodec,
    /// One side requires encryption and the other offered plaintext (or the
    /// reverse); Mokosh never downgrades.
    SecurityMismatch,
    /// The Noise handshake failed (usually: the client pinned another server key).
    HandshakeFailed,
    /// The server has no room for another client.
    ServerFull,
    /// The transport closed without a DISCONNECT (network failure, peer
    /// process gone). Usually only seen locally.
    ConnectionLost,
    /// A code this implementation does not know (from a newer peer).
    Unknown(u8),
}

impl DisconnectReason {
    /// The wire code.
    pub const fn code(self) -> u8 {
        match self {
            DisconnectReason::Requested => 1,
            DisconnectReason::IdleTimeout => 2,
            DisconnectReason::HandshakeTimeout => 3,
            DisconnectReason::ProtocolViolation => 4,
            DisconnectReason::DecryptFailed => 5,
            DisconnectReason::Replay => 6,
            DisconnectReason::RateLimited => 7,
            DisconnectReason::SchemaMismatch => 8,
            DisconnectReason::AuthFailed => 9,
            DisconnectReason::ServerShutdown => 10,
            DisconnectReason::Kicked => 11,
            DisconnectReason::VersionMismatch => 12,
            DisconnectReason::CounterExhausted => 13,
            DisconnectReason::SlowConsumer => 14,
            DisconnectReason::MessageTooLarge => 15,
            DisconnectReason::NoCommonCodec => 16,
            DisconnectReason::SecurityMismatch => 17,
            DisconnectReason::HandshakeFailed => 18,
            DisconnectReason::ServerFull => 19,
            DisconnectReason::ConnectionLost => 20,
            DisconnectReason::Unknown(code) => code,
        }
    }

    /// Decodes a wire code; `0` is not a reason (it means "accepted" in the
    /// handshake response) and maps to `Unknown(0)`.
    pub const fn from_code(code: u8) -> Self {
        match code {
            1 => DisconnectReason::Requested,
            2 => DisconnectReason::IdleTimeout,
            3 => DisconnectReason::HandshakeTimeout,
            4 => DisconnectReason::ProtocolViolation,
            5 => DisconnectReason::DecryptFailed,
            6 => DisconnectReason::Replay,
            7 => DisconnectReason::RateLimited,
            8 => DisconnectReason::SchemaMismatch,
            9 => DisconnectReason::AuthFailed,
            10 => DisconnectReason::ServerShutdown,
            11 => DisconnectReason::Kicked,
            12 => DisconnectReason::VersionMismatch,
            13 => DisconnectReason::CounterExhausted,
            14 => DisconnectReason::SlowConsumer,
            15 => DisconnectReason::MessageTooLarge,
            16 => DisconnectReason::NoCommonCodec,
            17 => DisconnectReason::SecurityMismatch,
            18 => DisconnectReason::HandshakeFailed,
            19 => DisconnectReason::ServerFull,
            20 => DisconnectReason::ConnectionLost,
            other => DisconnectReason::Unknown(other),
        }
    }
}

impl core::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DisconnectReason::Unknown(code) => write!(f, "unknown reason {code}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// A disconnect reason is also an error (e.g. the result of a failed connect).
impl std::error::Error for DisconnectReason {}

/// A decoded control message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// Keepalive request.
    Ping {
        /// Echoed back in the pong.
        id: u64,
    },
    /// Keepalive answer.
    Pong {
        /// The id of the ping being answered.
        id: u64,
    },
    /// The sender is closing the session.
    Disconnect {
        /// Why.
        reason: DisconnectReason,
        /// Human-readable detail (may be empty).
        detail: String,
    },
    /// Client only, first sealed packet: the credentials for the server's
    /// authentication hook.
    Auth {
        /// Opaque credentials (at most [`MAX_TOKEN_LEN`] bytes).
        token: Vec<u8>,
    },
    /// Server only: the credentials were accepted; the session is connected.
    AuthOk {
        /// The id the server gave this client.
        client_id: u64,
    },
}

impl ControlMessage {
    /// The route this message travels on.
    pub const fn route(&self) -> u16 {
        match self {
            ControlMessage::Ping { .. } => ROUTE_PING,
            ControlMessage::Pong { .. } => ROUTE_PONG,
            ControlMessage::Disconnect { .. } => ROUTE_DISCONNECT,
            ControlMessage::Auth { .. } => ROUTE_AUTH,
            ControlMessage::AuthOk { .. } => ROUTE_AUTH_OK,
        }
    }

    /// Appends the body to `out`. An AUTH token longer than
    /// [`MAX_TOKEN_LEN`] is refused.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            ControlMessage::Ping { id }
            | ControlMessage::Pong { id }
            | ControlMessage::AuthOk { client_id: id } => {
                out.extend_from_slice(&id.to_le_bytes());
            }
            ControlMessage::Auth { token } => {
                if token.len() > MAX_TOKEN_LEN {
                    return Err(WireError::Invalid("token length"));
                }
                super::varint::write(token.len() as u64, out);
                out.extend_from_slice(token);
            }
            ControlMessage::Disconnect { reason, detail } => {
                out.push(reason.code());
                write_detail(detail, out);
            }
        }
        Ok(())
    }

    /// Decodes the body of a control message on `route`.
    pub fn decode(route: u16, body: &[u8]) -> Result<Self, WireError> {
        let mut reader = Reader::new(body);
        let message = match route {
            ROUTE_PING => ControlMessage::Ping {
                id: reader.u64_le()?,
            },
            ROUTE_PONG => ControlMessage::Pong {
                id: reader.u64_le()?,
            },
            ROUTE_DISCONNECT => {
                let code = reader.u8()?;
                if code == 0 {
                    return Err(WireError::Invalid("disconnect reason 0"));
                }
                ControlMessage::Disconnect {
                    reason: DisconnectReason::from_code(code),
                    detail: read_detail(&mut reader)?,
                }
            }
            ROUTE_AUTH => ControlMessage::Auth {
                token: reader.length_prefixed(MAX_TOKEN_LEN)?.to_vec(),
            },
            ROUTE_AUTH_OK => ControlMessage::AuthOk {
                client_id: reader.u64_le()?,
            },
            _ => return Err(WireError::Invalid("control route")),
        };
        reader.finish()?;
        Ok(message)
    }
}

/// Writes `varint len ‖ UTF-8`, truncating (on a char boundary) to
/// [`MAX_DETAIL_LEN`] bytes.
pub(crate) fn write_detail(detail: &str, out: &mut Vec<u8>) {
    let mut end = detail.len().min(MAX_DETAIL_LEN);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    super::varint::write(end as u64, out);
    out.extend_from_slice(&detail.as_bytes()[..end]);
}

pub(crate) fn read_detail(reader: &mut Reader<'_>) -> Result<String, WireError> {
    let bytes = reader.length_prefixed(MAX_DETAIL_LEN)?;
    core::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| WireError::Invalid("UTF-8 detail"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reason_codes_round_trip() {
        for code in 0..=255u8 {
            assert_eq!(DisconnectReason::from_code(code).code(), code);
        }
    }

    #[test]
    fn detail_is_truncated_on_char_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let mut out = Vec::new();
        ControlMessage::Disconnect {
            reason: DisconnectReason::Kicked,
            detail: long,
        }
        .encode(&mut out)
        .unwrap();
        let decoded = ControlMessage::decode(ROUTE_DISCONNECT, &out).unwrap();
        let ControlMessage::Disconnect { detail, .. } = decoded else {
            panic!("wrong message")
        };
        assert_eq!(detail.len(), 256);
    }

    #[test]
    fn rejects_malformed_bodies() {
        assert_eq!(
            ControlMessage::decode(ROUTE_PING, &[1, 2, 3]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            ControlMessage::decode(ROUTE_PONG, &[0; 9]),
            Err(WireError::Trailing(1))
        );
        assert!(ControlMessage::decode(ROUTE_DISCONNECT, &[0, 0]).is_err());
        assert!(ControlMessage::decode(ROUTE_DISCONNECT, &[4, 2, 0xff, 0xfe]).is_err());
        assert!(ControlMessage::decode(9, &[]).is_err());
        // A forged token length over the limit is refused before reading.
        assert!(ControlMessage::decode(ROUTE_AUTH, &[0x81, 0x08]).is_err());
        assert!(
            ControlMessage::Auth {
                token: vec![0; MAX_TOKEN_LEN + 1]
            }
            .encode(&mut Vec::new())
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn round_trip(id: u64, code in 1u8.., detail in ".{0,60}", token in proptest::collection::vec(any::<u8>(), 0..=MAX_TOKEN_LEN)) {
            for message in [
                ControlMessage::Ping { id },
                ControlMessage::Pong { id },
                ControlMessage::AuthOk { client_id: id },
                ControlMessage::Auth { token: token.clone() },
                ControlMessage::Disconnect { reason: DisconnectReason::from_code(code), detail: detail.clone() },
            ] {
                let mut out = Vec::new();
                message.encode(&mut out).unwrap();
                prop_assert_eq!(ControlMessage::decode(message.route(), &out), Ok(message));
            }
        }

        #[test]
        fn garbage_never_panics(route in 0u16..8, body in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = ControlMessage::decode(route, &body);
        }
    }
}
