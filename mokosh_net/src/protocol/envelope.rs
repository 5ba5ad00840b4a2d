//! The binary envelope: one header in front of every packet.
//!
//! A packet is a [`Header`] followed by exactly [`Header::payload_len`] body
//! bytes. A transport frame (one WebSocket binary message) carries one
//! handshake packet, or — after the handshake — one or more packets back to
//! back ([`FramePackets`], at most [`MAX_PACKETS_PER_FRAME`]). The header is
//! compact and flag-driven; optional fields cost nothing when absent:
//!
//! ```text
//! offset  size      field
//! 0       1         version          protocol version, currently 1
//! 1       1         flags            bit 0 ENCRYPTED, bit 1 COMPRESSED,
//!                                    bit 2 CORRELATION, bit 3 SCHEMA,
//!                                    bit 4 TICK, bits 5-7 zero
//! 2       1         codec            1 JSON, 2 Postcard, 3 Raw
//! 3       1-3       route id         varint, <= 65535
//! .       1-10      message id       varint u64 (the per-direction packet counter)
//! .       1-10      correlation id   varint u64, only if CORRELATION
//! .       8         schema hash      u64 little-endian, only if SCHEMA
//! .       1-5       tick             varint u32, only if TICK
//! .       1-5       payload length   varint, <= the configured maximum
//! ```
//!
//! A typical game message (route < 128, a few thousand packets in, 100-byte
//! payload) has a 7-8 byte header (10-11 with a tick); the worst case is
//! [`MAX_HEADER_LEN`] bytes. All varints are canonical LEB128 (see
//! [`super::varint`]).
//!
//! Decoding never panics and never allocates: the frame length is checked against
//! the configured maximum **before anything else**, every field is bounds-checked,
//! and the declared payload length must fit in the rest of the frame (and, for a
//! single-packet frame, match it exactly).

use thiserror::Error;

use super::codec::CodecId;
use super::varint::{self, VarintError};

/// The protocol version this implementation speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// The longest possible header in bytes (all optional fields present, every
/// varint at its widest for its field).
pub const MAX_HEADER_LEN: usize = 3 + 3 + 10 + 10 + 8 + 5 + 5;

/// The most packets one frame may carry. A receiver refuses a frame with more
/// ([`EnvelopeError::TooManyPackets`]); senders stop a batch at this count.
pub const MAX_PACKETS_PER_FRAME: usize = 64;

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
    /// The sender's network tick (varint `u32`) follows.
    pub const TICK: Flags = Flags(0x10);
    /// Every bit that has a meaning in version 1.
    pub const KNOWN: Flags = Flags(0x1f);

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
    /// ENCRYPTED / COMPRESSED flags. CORRELATION, SCHEMA and TICK are derived
    /// from the optional fields below when encoding and set from the wire when
    /// decoding.
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
    /// The sender's network tick when the packet was sealed, when it set one.
    pub tick: Option<u32>,
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
    /// The declared payload length does not match the bytes after the header
    /// (in a batched frame: more than the bytes left, i.e. a truncated packet).
    #[error("declared payload length {declared} but {actual} bytes follow the header")]
    LengthMismatch {
        /// Declared length.
        declared: u32,
        /// Bytes actually present.
        actual: usize,
    },
    /// A frame holds more than [`MAX_PACKETS_PER_FRAME`] packets.
    #[error("frame holds more than {max} packets")]
    TooManyPackets {
        /// The limit.
        max: usize,
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
            tick: None,
            payload_len: 0,
        }
    }

    /// The flags byte as it goes on the wire (optional-field bits derived from the
    /// fields).
    pub fn wire_flags(&self) -> Flags {
        let mut flags = self.flags;
        flags.set(Flags::CORRELATION, self.correlation_id.is_some());
        flags.set(Flags::SCHEMA, self.schema_hash.is_some());
        flags.set(Flags::TICK, self.tick.is_some());
        flags
    }

    /// Exact encoded length of this header.
    pub fn encoded_len(&self) -> usize {
        3 + varint::encoded_len(u64::from(self.route_id))
            + varint::encoded_len(self.message_id)
            + self.correlation_id.map_or(0, varint::encoded_len)
            + if self.schema_hash.is_some() { 8 } else { 0 }
            + self
                .tick
                .map_or(0, |tick| varint::encoded_len(u64::from(tick)))
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
        if let Some(tick) = self.tick {
            varint::write(u64::from(tick), out);
        }
        varint::write(u64::from(self.payload_len), out);
    }

    /// Decodes a frame that holds exactly one packet (a handshake frame): the
    /// header and its body.
    ///
    /// `max_payload_len` bounds the body; frames longer than
    /// `max_payload_len + MAX_HEADER_LEN` are rejected before any byte is parsed.
    /// Returns the header, its encoded length and the body slice.
    pub fn decode(frame: &[u8], max_payload_len: usize) -> Result<Decoded<'_>, EnvelopeError> {
        check_frame_len(frame, max_payload_len)?;
        let decoded = Self::decode_prefix(frame, max_payload_len)?;
        if decoded.packet_len() != frame.len() {
            return Err(EnvelopeError::LengthMismatch {
                declared: decoded.header.payload_len,
                actual: frame.len() - decoded.header_len,
            });
        }
        Ok(decoded)
    }

    /// Decodes the packet at the start of `input` (which may be followed by
    /// more packets). The body must fit in `input`; bytes after it are left for
    /// the next packet. Does not check the frame length: see [`FramePackets`].
    pub fn decode_prefix(
        frame: &[u8],
        max_payload_len: usize,
    ) -> Result<Decoded<'_>, EnvelopeError> {
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
        let tick = if flags.contains(Flags::TICK) {
            let rest = frame.get(cursor..).unwrap_or_default();
            let (tick, used) =
                varint::read_bounded(rest, u64::from(u32::MAX)).map_err(|source| {
                    if source == VarintError::Truncated {
                        EnvelopeError::Truncated
                    } else {
                        EnvelopeError::Varint {
                            field: "tick",
                            source,
                        }
                    }
                })?;
            cursor += used;
            Some(tick as u32)
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
        let rest = &frame[cursor..];
        let Some(body) = rest.get(..payload_len as usize) else {
            return Err(EnvelopeError::LengthMismatch {
                declared: payload_len,
                actual: rest.len(),
            });
        };
        let mut stored_flags = flags;
        stored_flags.set(Flags::CORRELATION | Flags::SCHEMA | Flags::TICK, false);
        Ok(Decoded {
            header: Header {
                version,
                flags: stored_flags,
                codec,
                route_id,
                message_id,
                correlation_id,
                schema_hash,
                tick,
                payload_len,
            },
            header_len: cursor,
            body,
        })
    }
}

fn check_frame_len(frame: &[u8], max_payload_len: usize) -> Result<(), EnvelopeError> {
    let max_frame = max_payload_len.saturating_add(MAX_HEADER_LEN);
    if frame.len() > max_frame {
        return Err(EnvelopeError::FrameTooLarge {
            len: frame.len(),
            max: max_frame,
        });
    }
    Ok(())
}

/// The packets of one post-handshake frame, in order.
///
/// The frame length is checked against `max_payload_len + MAX_HEADER_LEN`
/// before any byte is parsed ([`FramePackets::new`]); each packet is then
/// decoded with [`Header::decode_prefix`] (its body bounded by
/// `max_payload_len` too). A packet whose body runs past the end of the frame
/// is [`EnvelopeError::LengthMismatch`], a frame with more than
/// [`MAX_PACKETS_PER_FRAME`] packets is [`EnvelopeError::TooManyPackets`], and
/// an empty frame is [`EnvelopeError::Truncated`]. After the first error the
/// iterator yields nothing more.
///
/// ```
/// use mokosh_net::protocol::codec::CodecId;
/// use mokosh_net::protocol::envelope::{FramePackets, Header};
///
/// let mut frame = Vec::new();
/// for (route, body) in [(16, &b"ab"[..]), (17, &b"c"[..])] {
///     let header = Header { payload_len: body.len() as u32, ..Header::new(CodecId::Raw, route) };
///     header.encode(&mut frame);
///     frame.extend_from_slice(body);
/// }
/// let packets: Vec<_> = FramePackets::new(&frame, 1024)?.collect::<Result<_, _>>()?;
/// assert_eq!(packets.len(), 2);
/// assert_eq!((packets[1].header.route_id, packets[1].body), (17, &b"c"[..]));
/// # Ok::<(), mokosh_net::protocol::envelope::EnvelopeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FramePackets<'a> {
    rest: &'a [u8],
    max_payload_len: usize,
    offset: usize,
    count: usize,
    failed: bool,
}

impl<'a> FramePackets<'a> {
    /// Starts reading `frame`, whose length is checked first.
    pub fn new(frame: &'a [u8], max_payload_len: usize) -> Result<Self, EnvelopeError> {
        check_frame_len(frame, max_payload_len)?;
        if frame.is_empty() {
            return Err(EnvelopeError::Truncated);
        }
        Ok(FramePackets {
            rest: frame,
            max_payload_len,
            offset: 0,
            count: 0,
            failed: false,
        })
    }
}

impl<'a> Iterator for FramePackets<'a> {
    type Item = Result<FramePacket<'a>, EnvelopeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        if self.count == MAX_PACKETS_PER_FRAME {
            self.failed = true;
            return Some(Err(EnvelopeError::TooManyPackets {
                max: MAX_PACKETS_PER_FRAME,
            }));
        }
        match Header::decode_prefix(self.rest, self.max_payload_len) {
            Ok(decoded) => {
                let len = decoded.packet_len();
                let packet = FramePacket {
                    header: decoded.header,
                    bytes: &self.rest[..len],
                    header_len: decoded.header_len,
                    body: decoded.body,
                    offset: self.offset,
                };
                self.rest = &self.rest[len..];
                self.offset += len;
                self.count += 1;
                Some(Ok(packet))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

impl core::iter::FusedIterator for FramePackets<'_> {}

/// One packet of a frame, as yielded by [`FramePackets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePacket<'a> {
    /// The parsed header.
    pub header: Header,
    /// The whole packet: header and body (`bytes[..header_len]` is the AEAD
    /// associated data).
    pub bytes: &'a [u8],
    /// How many bytes the header took.
    pub header_len: usize,
    /// The body: exactly `header.payload_len` bytes.
    pub body: &'a [u8],
    /// Where the packet starts in its frame.
    pub offset: usize,
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

impl Decoded<'_> {
    /// Header plus body length: how many bytes this packet took.
    pub fn packet_len(&self) -> usize {
        self.header_len + self.body.len()
    }
}
