//! The handshake payloads: the client's [`Hello`] and the server's [`Response`].
//!
//! Both travel on route 0 (`HANDSHAKE`) with the Raw codec and message id 0.
//! With encryption (the default) the packet has the ENCRYPTED flag and its body
//! is a Noise handshake message whose encrypted payload is the structure below;
//! in explicitly configured plaintext mode the body is the structure itself.
//!
//! ```text
//! Hello (client -> server)
//!   u8       codec count n      1..=8
//!   n x u8   codec ids          client's preference order
//!   u8       compression count  0..=8
//!   m x u8   compression ids    client's preference order
//!   u64 LE   protocol hash      MessageRegistry::protocol_hash()
//!   varint   max message size   largest body the client accepts, 256..=2^30
//!
//! Response (server -> client)
//!   u8       status             0 = accepted, else a DisconnectReason code
//!   if accepted:
//!     u8     codec id           chosen from the client's list
//!     u8     compression id     chosen from the client's list, or 0 (none)
//!     varint max message size   largest body the server accepts
//!     varint ping interval ms   1..=60_000
//!     varint idle timeout ms    1..=600_000
//!   if rejected:
//!     varint detail length      0..=256
//!     bytes  UTF-8 detail
//! ```
//!
//! The hello carries no credentials and the response no client id: an
//! eavesdropper can replay Noise message 1, so identity is settled only after
//! the handshake, by the sealed AUTH / AUTH_OK control messages
//! ([`control`](super::control)).
//!
//! No trailing bytes are allowed. Unknown codec or compression ids in a hello
//! are kept (they simply never match) so newer clients can offer more.

use super::codec::CodecId;
use super::compression::CompressionId;
use super::control::{DisconnectReason, read_detail, write_detail};
use super::reader::{Reader, WireError};
use super::varint;

/// Most codec ids a hello may offer.
pub const MAX_OFFERS: usize = 8;
pub use super::control::MAX_TOKEN_LEN;
/// Smallest maximum message size either side may announce.
pub const MIN_MESSAGE_SIZE: usize = 256;
/// Largest maximum message size either side may announce (1 GiB).
pub const MAX_MESSAGE_SIZE: usize = 1 << 30;
/// Largest handshake body (Noise overhead included) a receiver accepts.
pub const MAX_HANDSHAKE_BODY: usize = 2048;

/// The maximum message size a side announces for a configured one: the
/// configured value clamped to `MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE`. A session
/// enforces exactly this value, so what is announced is what is enforced.
pub const fn clamp_message_size(configured: usize) -> usize {
    if configured < MIN_MESSAGE_SIZE {
        MIN_MESSAGE_SIZE
    } else if configured > MAX_MESSAGE_SIZE {
        MAX_MESSAGE_SIZE
    } else {
        configured
    }
}

/// The client's opening message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Codec ids in preference order (raw bytes: unknown ids are allowed).
    pub codecs: Vec<u8>,
    /// Compression ids in preference order.
    pub compression: Vec<u8>,
    /// The client's message registry hash.
    pub protocol_hash: u64,
    /// Largest body the client accepts.
    pub max_message_size: u32,
}

impl Hello {
    /// Builds a hello from typed offers.
    pub fn new(
        codecs: &[CodecId],
        compression: &[CompressionId],
        protocol_hash: u64,
        max_message_size: usize,
    ) -> Self {
        Hello {
            codecs: codecs.iter().map(|c| c.as_u8()).collect(),
            compression: compression.iter().map(|c| c.as_u8()).collect(),
            protocol_hash,
            max_message_size: clamp_message_size(max_message_size) as u32,
        }
    }

    /// The offered codecs this implementation knows, in order.
    pub fn known_codecs(&self) -> Vec<CodecId> {
        self.codecs
            .iter()
            .filter_map(|&id| CodecId::try_from(id).ok())
            .collect()
    }

    /// The offered compression algorithms this implementation knows, in order.
    pub fn known_compression(&self) -> Vec<CompressionId> {
        self.compression
            .iter()
            .filter_map(|&id| CompressionId::try_from(id).ok())
            .collect()
    }

    /// Appends the encoding to `out`. Fails if a list is too long.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        if self.codecs.is_empty() || self.codecs.len() > MAX_OFFERS {
            return Err(WireError::Invalid("codec count"));
        }
        if self.compression.len() > MAX_OFFERS {
            return Err(WireError::Invalid("compression count"));
        }
        out.push(self.codecs.len() as u8);
        out.extend_from_slice(&self.codecs);
        out.push(self.compression.len() as u8);
        out.extend_from_slice(&self.compression);
        out.extend_from_slice(&self.protocol_hash.to_le_bytes());
        varint::write(u64::from(self.max_message_size), out);
        Ok(())
    }

    /// Decodes a hello; every length is checked before use.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut reader = Reader::new(bytes);
        let codec_count = usize::from(reader.u8()?);
        if codec_count == 0 || codec_count > MAX_OFFERS {
            return Err(WireError::Invalid("codec count"));
        }
        let codecs = reader.take(codec_count)?.to_vec();
        let compression_count = usize::from(reader.u8()?);
        if compression_count > MAX_OFFERS {
            return Err(WireError::Invalid("compression count"));
        }
        let compression = reader.take(compression_count)?.to_vec();
        let protocol_hash = reader.u64_le()?;
        let max_message_size = reader.varint(MAX_MESSAGE_SIZE as u64)? as u32;
        if (max_message_size as usize) < MIN_MESSAGE_SIZE {
            return Err(WireError::Invalid("max message size"));
        }
        reader.finish()?;
        Ok(Hello {
            codecs,
            compression,
            protocol_hash,
            max_message_size,
        })
    }
}

/// What the server granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    /// The codec both sides use.
    pub codec: CodecId,
    /// The compression both sides use (may be `None`).
    pub compression: CompressionId,
    /// Largest body the server accepts.
    pub max_message_size: u32,
    /// How often each side pings, in milliseconds.
    pub ping_interval_ms: u32,
    /// Silence after which each side gives up, in milliseconds.
    pub idle_timeout_ms: u32,
}

/// The server's answer to a hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The client is in.
    Accepted(Accept),
    /// The client is refused.
    Rejected {
        /// Why.
        reason: DisconnectReason,
        /// Human-readable detail.
        detail: String,
    },
}

impl Response {
    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Response::Accepted(accept) => {
                out.push(0);
                out.push(accept.codec.as_u8());
                out.push(accept.compression.as_u8());
                varint::write(u64::from(accept.max_message_size), out);
                varint::write(u64::from(accept.ping_interval_ms), out);
                varint::write(u64::from(accept.idle_timeout_ms), out);
            }
            Response::Rejected { reason, detail } => {
                // Code 0 means "accepted"; a reason can never encode as 0.
                out.push(match reason.code() {
                    0 => DisconnectReason::ProtocolViolation.code(),
                    code => code,
                });
                write_detail(detail, out);
            }
        }
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut reader = Reader::new(bytes);
        let status = reader.u8()?;
        let response = if status == 0 {
            let codec =
                CodecId::try_from(reader.u8()?).map_err(|_| WireError::Invalid("codec id"))?;
            let compression = CompressionId::try_from(reader.u8()?)
                .map_err(|_| WireError::Invalid("compression id"))?;
            let max_message_size = reader.varint(MAX_MESSAGE_SIZE as u64)? as u32;
            if (max_message_size as usize) < MIN_MESSAGE_SIZE {
                return Err(WireError::Invalid("max message size"));
            }
            let ping_interval_ms = reader.varint(60_000)? as u32;
            let idle_timeout_ms = reader.varint(600_000)? as u32;
            if ping_interval_ms == 0 || idle_timeout_ms == 0 {
                return Err(WireError::Invalid("timer"));
            }
            Response::Accepted(Accept {
                codec,
                compression,
                max_message_size,
                ping_interval_ms,
                idle_timeout_ms,
            })
        } else {
            Response::Rejected {
                reason: DisconnectReason::from_code(status),
                detail: read_detail(&mut reader)?,
            }
        };
        reader.finish()?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hello() -> Hello {
        Hello::new(
            &[CodecId::Postcard, CodecId::Json],
            &[CompressionId::Zstd],
            0x0123_4567_89ab_cdef,
            65_536,
        )
    }

    #[test]
    fn hello_round_trip_and_truncation() {
        let mut out = Vec::new();
        hello().encode(&mut out).unwrap();
        assert_eq!(Hello::decode(&out), Ok(hello()));
        for cut in 0..out.len() {
            assert!(Hello::decode(&out[..cut]).is_err(), "cut {cut}");
        }
        out.push(0);
        assert_eq!(Hello::decode(&out), Err(WireError::Trailing(1)));
    }

    #[test]
    fn hello_limits() {
        let mut h = hello();
        h.codecs = vec![2; MAX_OFFERS + 1];
        assert!(h.encode(&mut Vec::new()).is_err());
        // A forged max message size larger than the limit is rejected.
        let mut out = vec![1, 2, 0];
        out.extend_from_slice(&0u64.to_le_bytes());
        varint::write(u64::MAX, &mut out);
        assert!(matches!(Hello::decode(&out), Err(WireError::Varint(_))));
        assert_eq!(clamp_message_size(10), MIN_MESSAGE_SIZE);
        assert_eq!(clamp_message_size(usize::MAX), MAX_MESSAGE_SIZE);
        assert_eq!(clamp_message_size(4096), 4096);
        assert_eq!(Hello::decode(&[0]), Err(WireError::Invalid("codec count")));
        assert_eq!(Hello::decode(&[9]), Err(WireError::Invalid("codec count")));
    }

    #[test]
    fn unknown_offers_are_kept_but_ignored() {
        let mut h = hello();
        h.codecs = vec![200, CodecId::Json.as_u8()];
        let mut out = Vec::new();
        h.encode(&mut out).unwrap();
        let decoded = Hello::decode(&out).unwrap();
        assert_eq!(decoded.known_codecs(), vec![CodecId::Json]);
    }

    #[test]
    fn response_round_trip() {
        let accepted = Response::Accepted(Accept {
            codec: CodecId::Postcard,
            compression: CompressionId::Lz4,
            max_message_size: 65_536,
            ping_interval_ms: 1000,
            idle_timeout_ms: 10_000,
        });
        let rejected = Response::Rejected {
            reason: DisconnectReason::AuthFailed,
            detail: "bad token".into(),
        };
        for response in [accepted, rejected] {
            let mut out = Vec::new();
            response.encode(&mut out);
            assert_eq!(Response::decode(&out), Ok(response));
            for cut in 0..out.len() {
                assert!(Response::decode(&out[..cut]).is_err());
            }
        }
    }

    proptest! {
        #[test]
        fn hello_round_trips(
            codecs in proptest::collection::vec(any::<u8>(), 1..=MAX_OFFERS),
            compression in proptest::collection::vec(any::<u8>(), 0..=MAX_OFFERS),
            protocol_hash: u64,
            max_message_size in MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE,
        ) {
            let hello = Hello { codecs, compression, protocol_hash, max_message_size: max_message_size as u32 };
            let mut out = Vec::new();
            hello.encode(&mut out).unwrap();
            prop_assert_eq!(Hello::decode(&out), Ok(hello));
        }

        #[test]
        fn accept_round_trips(
            codec in prop_oneof![Just(CodecId::Json), Just(CodecId::Postcard), Just(CodecId::Raw)],
            compression in prop_oneof![Just(CompressionId::None), Just(CompressionId::Zstd), Just(CompressionId::Lz4)],
            max_message_size in MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE,
            ping_interval_ms in 1u32..=60_000,
            idle_timeout_ms in 1u32..=600_000,
        ) {
            let response = Response::Accepted(Accept {
                codec, compression, max_message_size: max_message_size as u32, ping_interval_ms, idle_timeout_ms,
            });
            let mut out = Vec::new();
            response.encode(&mut out);
            prop_assert_eq!(Response::decode(&out), Ok(response));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Hello::decode(&bytes);
            let _ = Response::decode(&bytes);
        }
    }
}
