//! The binary envelope: one header in front of every packet.
//!
//! A packet is one transport frame (one WebSocket binary message): a [`Header`]
//! followed by exactly [`Header::payload_len`] body bytes. The header is compact
//! and flag-driven; optional fields cost nothing when absent:
//!
//! ```text
//! offset  size      field
//! 0       1         version          protocol version, currently 1
//! 1       1         flags            bit 0 ENCRYPTED, bit 1 COMPRESSED,
//!                                    bit 2 CORRELATION, bit 3 SCHEMA, bits 4-7 zero
//! 2       1         codec            1 JSON, 2 Postcard, 3 Raw
//! 3       1-3       route id         varint, <= 65535
//! .       1-10      message id       varint u64 (the per-direction packet counter)
//! .       1-10      correlation id   varint u64, only if CORRELATION
//! .       8         schema hash      u64 little-endian, only if SCHEMA
//! .       1-5       payload length   varint, <= the configured maximum
//! ```
//!
//! A typical game message (route < 128, a few thousand packets in, 100-byte
//! payload) has a 7-8 byte header; the worst case is [`MAX_HEADER_LEN`] bytes.
//! All varints are canonical LEB128 (see [`super::varint`]).
//!
//! Decoding never panics and never allocates: the frame length is checked against
//! the configured maximum **before anything else**, every field is bounds-checked,
//! and the declared payload length must match the rest of the frame exactly.

use thiserror::Error;

use super::codec::CodecId;
use super::varint::{self, VarintError};

/// The protocol version this implementation speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// The longest possible header in bytes (all optional fields present, every
/// varint at its widest for its field).
pub const MAX_HEADER_LEN: usize = 3 + 3 + 10 + 10 + 8 + 5;

/// Bit flags carried in byte 1 of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// The body is sealed with ChaCha20-Poly1305 (16-byte tag at its end). On a
    /// handshake route it means "the body is a Noise handshake message".
    pub const ENCRYPTED: Flags = Flags(0x01);
    /// The body (after opening) is compressed with the session's algorithm.
    pub const COMPRESSED: Flags = Flags(0x02);
    /// A correlation id follows the message id.
    pub const CORRELATION: Flags = Flags(0x04);
    /// An 8-byte schema hash follows.
    pub const SCHEMA: Flags = Flags(0x08);
    /// Every bit that has a meaning in version 1.
    pub const KNOWN: Flags = Flags(0x0f);

    /// No flags set.
    pub const fn empty() -> Self {
        Flags(0)
    }
    /// The raw byte.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Parses a flags byte, rejecting reserved bits.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        if bits & !Self::KNOWN.0 != 0 {
            None
        } else {
            Some(Flags(bits))
        }
    }
    /// Whether every flag in `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Sets or clears the flags in `other`.
    pub fn set(&mut self, other: Flags, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// A decoded (or to-be-encoded) envelope header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Protocol version; [`PROTOCOL_VERSION`] for everything this crate sends.
    pub version: u8,
    /// ENCRYPTED / COMPRESSED flags. CORRELATION and SCHEMA are derived from the
    /// optional fields below when encoding and set from the wire when decoding.
    pub flags: Flags,
    /// How the (opened, decompressed) body is serialized.
    pub codec: CodecId,
    /// Which message type the body is. `0..=15` are Mokosh control routes.
    pub route_id: u16,
    /// The sender's per-direction packet counter (also the AEAD nonce).
    pub message_id: u64,
    /// Links a reply to a request, when present.
    pub correlation_id: Option<u64>,
    /// Schema hash of the message type, when the sender includes it.
    pub schema_hash: Option<u64>,
    /// Length of the body that follows the header, in bytes (including the
    /// 16-byte tag when ENCRYPTED).
    pub payload_len: u32,
}

/// Why a frame is not a valid envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The frame is longer than the configured maximum (checked first).
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// Length of the frame.
        len: usize,
        /// The configured maximum frame length.
        max: usize,
    },
    /// The frame ended inside the header.
    #[error("frame truncated inside the header")]
    Truncated,
    /// The version byte is not one this implementation speaks.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// A reserved flag bit is set.
    #[error("reserved flag bits set: {0:#04x}")]
    ReservedFlags(u8),
    /// The codec byte names no known codec.
    #[error("unknown codec id {0}")]
    UnknownCodec(u8),
    /// A varint field is malformed.
    #[error("malformed varint in {field}: {source}")]
    Varint {
        /// Which header field.
        field: &'static str,
        /// What was wrong with it.
        source: VarintError,
    },
    /// The declared payload length exceeds the configured maximum.
    #[error("declared payload length {declared} exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// Declared length.
        declared: u64,
        /// The configured maximum.
        max: usize,
    },
    /// The declared payload length does not match the bytes after the header.
    #[error("declared payload length {declared} but {actual} bytes follow the header")]
    LengthMismatch {
        /// Declared length.
        declared: u32,
        /// Bytes actually present.
        actual: usize,
    },
}

impl Header {
    /// A header for a message on `route_id` with `codec`; counters and lengths are
    /// filled in by the sealing step.
    pub const fn new(codec: CodecId, route_id: u16) -> Self {
        Header {
            version: PROTOCOL_VERSION,
            flags: Flags::empty(),
            codec,
            route_id,
            message_id: 0,
            correlation_id: None,
            schema_hash: None,
            payload_len: 0,
        }
    }

    /// The flags byte as it goes on the wire (optional-field bits derived from the
    /// fields).
    pub fn wire_flags(&self) -> Flags {
        let mut flags = self.flags;
        flags.set(Flags::CORRELATION, self.correlation_id.is_some());
        flags.set(Flags::SCHEMA, self.schema_hash.is_some());
        flags
    }

    /// Exact encoded length of this header.
    pub fn encoded_len(&self) -> usize {
        3 + varint::encoded_len(u64::from(self.route_id))
            + varint::encoded_len(self.message_id)
            + self.correlation_id.map_or(0, varint::encoded_len)
            + if self.schema_hash.is_some() { 8 } else { 0 }
            + varint::encoded_len(u64::from(self.payload_len))
    }

    /// Appends the encoded header to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.push(self.version);
        out.push(self.wire_flags().bits());
        out.push(self.codec.as_u8());
        varint::write(u64::from(self.route_id), out);
        varint::write(self.message_id, out);
        if let Some(correlation) = self.correlation_id {
            varint::write(correlation, out);
        }
        if let Some(hash) = self.schema_hash {
            out.extend_from_slice(&hash.to_le_bytes());
        }
        varint::write(u64::from(self.payload_len), out);
    }

    /// Decodes a whole frame: the header and its body.
    ///
    /// `max_payload_len` bounds the body; frames longer than
    /// `max_payload_len + MAX_HEADER_LEN` are rejected before any byte is parsed.
    /// Returns the header, its encoded length and the body slice.
    pub fn decode(frame: &[u8], max_payload_len: usize) -> Result<Decoded<'_>, EnvelopeError> {
        let max_frame = max_payload_len.saturating_add(MAX_HEADER_LEN);
        if frame.len() > max_frame {
            return Err(EnvelopeError::FrameTooLarge {
                len: frame.len(),
                max: max_frame,
            });
        }
        let [version, flags, codec, ..] = *frame else {
            return Err(EnvelopeError::Truncated);
        };
        if version != PROTOCOL_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        let flags = Flags::from_bits(flags).ok_or(EnvelopeError::ReservedFlags(flags))?;
        let codec = CodecId::try_from(codec).map_err(|_| EnvelopeError::UnknownCodec(codec))?;

        let mut cursor = 3;
        let mut next_varint = |field: &'static str, max: u64| {
            let rest = frame.get(cursor..).unwrap_or_default();
            let (value, used) = varint::read_bounded(rest, max).map_err(|source| {
                if source == VarintError::Truncated {
                    EnvelopeError::Truncated
                } else {
                    EnvelopeError::Varint { field, source }
                }
            })?;
            cursor += used;
            Ok::<u64, EnvelopeError>(value)
        };
        let route_id = next_varint("route id", u64::from(u16::MAX))? as u16;
        let message_id = next_varint("message id", u64::MAX)?;
        let correlation_id = if flags.contains(Flags::CORRELATION) {
            Some(next_varint("correlation id", u64::MAX)?)
        } else {
            None
        };
        let schema_hash = if flags.contains(Flags::SCHEMA) {
            let bytes = frame
                .get(cursor..cursor + 8)
                .ok_or(EnvelopeError::Truncated)?;
            cursor += 8;
            Some(u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])))
        } else {
            None
        };
        let rest = frame.get(cursor..).unwrap_or_default();
        let (declared, used) = varint::read(rest).map_err(|source| {
            if source == VarintError::Truncated {
                EnvelopeError::Truncated
            } else {
                EnvelopeError::Varint {
                    field: "payload length",
                    source,
                }
            }
        })?;
        cursor += used;
        if declared > max_payload_len as u64 || declared > u64::from(u32::MAX) {
            return Err(EnvelopeError::PayloadTooLarge {
                declared,
                max: max_payload_len,
            });
        }
        let payload_len = declared as u32;
        let body = &frame[cursor..];
        if body.len() != payload_len as usize {
            return Err(EnvelopeError::LengthMismatch {
                declared: payload_len,
                actual: body.len(),
            });
        }
        let mut stored_flags = flags;
        stored_flags.set(Flags::CORRELATION | Flags::SCHEMA, false);
        Ok(Decoded {
            header: Header {
                version,
                flags: stored_flags,
                codec,
                route_id,
                message_id,
                correlation_id,
                schema_hash,
                payload_len,
            },
            header_len: cursor,
            body,
        })
    }
}

/// The result of [`Header::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The parsed header.
    pub header: Header,
    /// How many bytes the header took (the AEAD associated data is
    /// `frame[..header_len]`).
    pub header_len: usize,
    /// The body: exactly `header.payload_len` bytes.
    pub body: &'a [u8],
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Header {
        Header {
            flags: Flags::ENCRYPTED,
            message_id: 1234,
            payload_len: 3,
            ..Header::new(CodecId::Postcard, 100)
        }
    }

    #[test]
    fn typical_header_is_small() {
        let header = Header {
            flags: Flags::ENCRYPTED,
            message_id: 5_000,
            payload_len: 100 + 16,
            ..Header::new(CodecId::Postcard, 100)
        };
        assert_eq!(header.encoded_len(), 7);
        let mut with_schema = header;
        with_schema.schema_hash = Some(u64::MAX);
        assert!(with_schema.encoded_len() <= 20);
    }

    #[test]
    fn max_header_len_is_an_upper_bound() {
        let header = Header {
            route_id: u16::MAX,
            message_id: u64::MAX,
            correlation_id: Some(u64::MAX),
            schema_hash: Some(u64::MAX),
            payload_len: u32::MAX,
            ..Header::new(CodecId::Raw, 0)
        };
        assert_eq!(header.encoded_len(), MAX_HEADER_LEN);
    }

    #[test]
    fn decode_checks_frame_length_first() {
        // A frame with a bad version but too long is reported as too long.
        let frame = vec![9u8; 100];
        assert_eq!(
            Header::decode(&frame, 10),
            Err(EnvelopeError::FrameTooLarge {
                len: 100,
                max: 10 + MAX_HEADER_LEN
            })
        );
    }

    #[test]
    fn truncation_at_every_offset_is_rejected() {
        let header = Header {
            correlation_id: Some(99_999),
            schema_hash: Some(0xdead_beef),
            ..sample()
        };
        let mut frame = Vec::new();
        header.encode(&mut frame);
        frame.extend_from_slice(b"abc");
        assert!(Header::decode(&frame, 1024).is_ok());
        for cut in 0..frame.len() {
            assert!(Header::decode(&frame[..cut], 1024).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn length_field_extremes() {
        let mut frame = vec![PROTOCOL_VERSION, 0, CodecId::Raw.as_u8(), 16, 0];
        let mut huge = frame.clone();
        varint::write(u64::MAX, &mut huge);
        assert!(matches!(
            Header::decode(&huge, 1024),
            Err(EnvelopeError::PayloadTooLarge { .. })
        ));
        let mut over_u32 = frame.clone();
        varint::write(u64::from(u32::MAX) + 1, &mut over_u32);
        assert!(matches!(
            Header::decode(&over_u32, usize::MAX),
            Err(EnvelopeError::PayloadTooLarge { .. })
        ));
        varint::write(5, &mut frame);
        frame.extend_from_slice(b"abcd");
        assert_eq!(
            Header::decode(&frame, 1024),
            Err(EnvelopeError::LengthMismatch {
                declared: 5,
                actual: 4
            })
        );
    }

    #[test]
    fn rejects_bad_fixed_fields() {
        let mut frame = Vec::new();
        sample().encode(&mut frame);
        frame.extend_from_slice(b"abc");
        let mut bad = frame.clone();
        bad[0] = 2;
        assert_eq!(
            Header::decode(&bad, 1024),
            Err(EnvelopeError::UnsupportedVersion(2))
        );
        let mut bad = frame.clone();
        bad[1] |= 0x10;
        assert_eq!(
            Header::decode(&bad, 1024),
            Err(EnvelopeError::ReservedFlags(0x11))
        );
        let mut bad = frame.clone();
        bad[2] = 0;
        assert_eq!(
            Header::decode(&bad, 1024),
            Err(EnvelopeError::UnknownCodec(0))
        );
        // Route id above u16::MAX.
        let mut bad = vec![PROTOCOL_VERSION, 0, 3];
        varint::write(70_000, &mut bad);
        bad.extend_from_slice(&[0, 0]);
        assert!(matches!(
            Header::decode(&bad, 1024),
            Err(EnvelopeError::Varint {
                field: "route id",
                ..
            })
        ));
    }

    fn arb_header() -> impl Strategy<Value = Header> {
        (
            0u8..4,
            prop_oneof![
                Just(CodecId::Json),
                Just(CodecId::Postcard),
                Just(CodecId::Raw)
            ],
            any::<u16>(),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(
                |(flags, codec, route_id, message_id, correlation_id, schema_hash)| Header {
                    flags: Flags::from_bits(flags).unwrap_or_default(),
                    message_id,
                    correlation_id,
                    schema_hash,
                    route_id,
                    ..Header::new(codec, 0)
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(mut header in arb_header(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
            header.payload_len = body.len() as u32;
            let mut frame = Vec::new();
            header.encode(&mut frame);
            prop_assert_eq!(frame.len(), header.encoded_len());
            let header_len = frame.len();
            frame.extend_from_slice(&body);
            let decoded = Header::decode(&frame, 4096).unwrap();
            prop_assert_eq!(decoded.header, header);
            prop_assert_eq!(decoded.header_len, header_len);
            prop_assert_eq!(decoded.body, &body[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(decoded) = Header::decode(&frame, 4096) {
                // Whatever decodes re-encodes to the same bytes (canonical form).
                let mut again = Vec::new();
                decoded.header.encode(&mut again);
                prop_assert_eq!(&again[..], &frame[..decoded.header_len]);
            }
        }
    }
}
