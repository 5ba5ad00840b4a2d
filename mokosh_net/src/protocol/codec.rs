//! Payload codecs: how a typed message value becomes bytes and back.
//!
//! A connection negotiates exactly one [`CodecId`] during the handshake (see
//! [`negotiate_codec`]); every application payload on that connection is then
//! encoded with [`encode`] and decoded with [`decode`].
//!
//! # Codecs
//!
//! | id | name       | body                                                         |
//! |----|------------|--------------------------------------------------------------|
//! | 1  | `json`     | one JSON value (RFC 8259) as produced by `serde_json`        |
//! | 2  | `postcard` | one value in the [postcard] wire format (varint lengths)     |
//! | 3  | `raw`      | the bytes verbatim; only byte-string values are allowed      |
//!
//! Id `0` is reserved and never valid.
//!
//! # Decoding rules (all codecs)
//!
//! * The payload must contain **exactly one** value. Any byte left over after
//!   the value is an error ([`CodecError::TrailingBytes`]). For JSON this
//!   includes whitespace: no whitespace may precede or follow the value.
//! * JSON: before parsing, the payload is scanned once and rejected with
//!   [`CodecError::JsonTooDeep`] if `[`/`{` nesting (counted outside string
//!   literals) exceeds [`DecodeLimits::max_json_depth`] (default 32). A value
//!   of `[]` has depth 1; a scalar has depth 0. `serde_json`'s own fixed limit
//!   of 128 remains as a backstop, so limits above 128 have no further effect.
//! * Postcard: sequence and map lengths are varints taken from the input.
//!   They never drive an unbounded allocation: postcard 1.x reports no size
//!   hint for a sequence whose declared length exceeds the remaining input,
//!   and serde's own collection impls cap any pre-allocation from a size hint
//!   (`serde::de::size_hint::cautious`, at most 1 MiB). A length that the
//!   input cannot back fails with "unexpected end of input". Map size hints
//!   are *not* clamped by postcard, so hand-written `Deserialize` impls must
//!   never pre-allocate from `size_hint()` without a cap of their own.
//! * Raw: the whole payload is handed to the target type as one byte string.
//!
//! # The raw codec
//!
//! `raw` is what Mokosh control messages and opaque application payloads use:
//! the value already *is* bytes (for instance a frame encoded by a schema of
//! its own), so it is sent verbatim with no framing at all. Only values that
//! serialize as a byte string (`Serializer::serialize_bytes`), optionally
//! wrapped in newtype structs, are accepted; anything else fails with
//! [`CodecError::RawRequiresBytes`]. [`RawBytes`] is the canonical payload
//! type; `serde_bytes`-annotated fields and newtypes around them work too.
//! Note that a plain `Vec<u8>` or `&[u8]` serializes as a *sequence* in serde,
//! not as a byte string, and is therefore rejected.
//!
//! [postcard]: https://postcard.jamesmunns.com/wire-format

use serde::Serialize;
use serde::de::{self, DeserializeOwned};

mod raw;

pub use raw::RawBytes;
use raw::{RawDeserializer, RawSerializer};

/// Identifies a payload codec on the wire (one byte).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CodecId {
    /// JSON via `serde_json`. Human readable; meant for debugging and web peers.
    Json = 1,
    /// The compact postcard binary format. The default for typed messages.
    Postcard = 2,
    /// Bytes passed through verbatim (control messages, opaque payloads).
    Raw = 3,
}

impl CodecId {
    /// Every codec, in the order Mokosh prefers them.
    pub const ALL: [CodecId; 3] = [CodecId::Postcard, CodecId::Raw, CodecId::Json];
}

crate::protocol::wire_id::wire_id! {
    CodecId, CodecError::UnknownCodecId,
    Json = 1 => "json",
    Postcard = 2 => "postcard",
    Raw = 3 => "raw",
}

/// Picks the codec for a connection.
///
/// The client sends its supported codecs as an ordered preference list
/// (`client_offer`, most preferred first); the server answers with the
/// **first entry of the client's list that it supports itself**. The server's
/// own ordering is irrelevant.
///
/// Edge cases:
/// * an empty offer (or an empty `server_supported`) yields `None`;
/// * duplicates in the offer are harmless: only the first occurrence can ever
///   be chosen, later ones are ignored;
/// * no overlap yields `None`, and the server should refuse the connection.
///
/// What a server *supports* is exactly `server_supported` (its
/// `SessionConfig::codecs`, Postcard and JSON by default). [`CodecId::Raw`] is
/// no exception: a Raw-only offer to a server that does not list Raw yields
/// `None` (`NoCommonCodec`). Raw needs no negotiation to be *used*: any
/// packet may carry a byte-string message as Raw whatever codec was agreed.
#[must_use]
pub fn negotiate_codec(client_offer: &[CodecId], server_supported: &[CodecId]) -> Option<CodecId> {
    client_offer
        .iter()
        .copied()
        .find(|offered| server_supported.contains(offered))
}

/// Limits applied while decoding untrusted payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Maximum nesting of JSON arrays/objects (default 32). `0` only admits
    /// scalars. Values above 128 are capped by `serde_json` itself.
    pub max_json_depth: usize,
}

impl DecodeLimits {
    /// The default limits.
    pub const DEFAULT: DecodeLimits = DecodeLimits { max_json_depth: 32 };
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A codec id byte that names no codec (including the reserved `0`).
    #[error("unknown codec id {id}")]
    UnknownCodecId {
        /// The byte received.
        id: u8,
    },
    /// `serde_json` failed (syntax error, type mismatch, empty input...).
    #[error("JSON codec: {0}")]
    Json(#[source] serde_json::Error),
    /// The JSON payload nests arrays/objects deeper than allowed.
    #[error("JSON nesting exceeds the limit of {limit}")]
    JsonTooDeep {
        /// The configured [`DecodeLimits::max_json_depth`].
        limit: usize,
    },
    /// postcard failed (truncated input, invalid varint, type mismatch...).
    #[error("postcard codec: {0}")]
    Postcard(#[source] postcard::Error),
    /// Bytes were left over after one complete value.
    #[error("{count} trailing byte(s) after the encoded value")]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
    /// The raw codec was used with a type that is not a byte string.
    #[error("the raw codec only carries byte strings")]
    RawRequiresBytes,
    /// A type's own `Serialize`/`Deserialize` impl failed under the raw codec.
    #[error("raw codec: {message}")]
    Raw {
        /// The message reported by the type.
        message: String,
    },
}

/// Appends the encoding of `value` to `out`.
///
/// `out` is only appended to, so one buffer can be reused across messages
/// (clear it yourself). On error `out` is restored to its original length.
pub fn encode<T: Serialize + ?Sized>(
    codec: CodecId,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let start = out.len();
    let result = match codec {
        CodecId::Json => serde_json::to_writer(&mut *out, value).map_err(CodecError::Json),
        CodecId::Postcard => postcard::serialize_with_flavor(value, AppendToVec(&mut *out))
            .map_err(CodecError::Postcard),
        CodecId::Raw => value
            .serialize(RawSerializer { out: &mut *out })
            .map_err(CodecError::from),
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Decodes exactly one `T` from `bytes`.
///
/// See the [module documentation](self) for the rules each codec enforces.
pub fn decode<T: DeserializeOwned>(
    codec: CodecId,
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<T, CodecError> {
    match codec {
        CodecId::Json => decode_json(bytes, limits),
        CodecId::Postcard => {
            let (value, rest) = postcard::take_from_bytes(bytes).map_err(CodecError::Postcard)?;
            if rest.is_empty() {
                Ok(value)
            } else {
                Err(CodecError::TrailingBytes { count: rest.len() })
            }
        }
        CodecId::Raw => T::deserialize(RawDeserializer { bytes }).map_err(CodecError::from),
    }
}

fn decode_json<T: DeserializeOwned>(bytes: &[u8], limits: &DecodeLimits) -> Result<T, CodecError> {
    if json_nesting_exceeds(bytes, limits.max_json_depth) {
        return Err(CodecError::JsonTooDeep {
            limit: limits.max_json_depth,
        });
    }
    if bytes.first().is_some_and(|b| is_json_whitespace(*b)) {
        return Err(CodecError::Json(de::Error::custom(
            "leading whitespace is not allowed",
        )));
    }
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<T>();
    let value = match stream.next() {
        Some(Ok(value)) => value,
        Some(Err(err)) => return Err(CodecError::Json(err)),
        None => {
            return Err(CodecError::Json(de::Error::custom(
                "no JSON value in input",
            )));
        }
    };
    let consumed = stream.byte_offset();
    if consumed == bytes.len() {
        Ok(value)
    } else {
        Err(CodecError::TrailingBytes {
            count: bytes.len().saturating_sub(consumed),
        })
    }
}

const fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Returns `true` if `[`/`{` nesting outside string literals exceeds `limit`.
///
/// Linear, allocation-free, and stops at the first violation. It does not
/// validate the JSON; the parser does that afterwards. Stray closing brackets
/// never drive the depth below zero.
fn json_nesting_exceeds(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > limit {
                        return true;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    false
}

/// A postcard output flavor appending to a borrowed `Vec` (no temporary buffer).
struct AppendToVec<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendToVec<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trip_and_rejects() {
        for id in CodecId::ALL {
            assert_eq!(CodecId::try_from(id.as_u8()).unwrap(), id);
            assert_eq!(u8::from(id), id as u8);
        }
        for bad in [0u8, 4, 255] {
            assert!(matches!(
                CodecId::try_from(bad),
                Err(CodecError::UnknownCodecId { id }) if id == bad
            ));
        }
        assert_eq!(CodecId::Postcard.to_string(), "postcard");
    }

    #[test]
    fn depth_scan() {
        assert!(!json_nesting_exceeds(b"[[1]]", 2));
        assert!(json_nesting_exceeds(b"[[[1]]]", 2));
        assert!(!json_nesting_exceeds(b"1", 0));
        assert!(json_nesting_exceeds(b"[]", 0));
        // Brackets inside strings do not count, escaped quotes do not end them.
        assert!(!json_nesting_exceeds(br#"["[[[[", "\"[[[[", "\\"]"#, 1));
        assert!(json_nesting_exceeds(br#"["\\", [[]]]"#, 2));
        // Closers never push the depth negative.
        assert!(json_nesting_exceeds(b"]]]]{{{", 2));
        assert!(!json_nesting_exceeds(b"]]]]{{", 2));
    }

    #[test]
    fn encode_appends_and_restores_on_error() {
        let mut out = b"xy".to_vec();
        encode(CodecId::Postcard, &7u32, &mut out).unwrap();
        assert_eq!(out, b"xy\x07");
        assert!(encode(CodecId::Raw, &7u32, &mut out).is_err());
        assert_eq!(out, b"xy\x07");
        encode(CodecId::Raw, &RawBytes(b"abc".to_vec()), &mut out).unwrap();
        assert_eq!(out, b"xy\x07abc");
        encode(CodecId::Json, &[1u8, 2], &mut out).unwrap();
        assert_eq!(out, b"xy\x07abc[1,2]");
        // JSON refuses non-string map keys, postcard unknown-length sequences;
        // neither may leave a partial encoding behind.
        let map: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(matches!(
            encode(CodecId::Json, &map, &mut out),
            Err(CodecError::Json(_))
        ));
        struct UnknownLen;
        impl Serialize for UnknownLen {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(None)?;
                seq.serialize_element(&1u8)?;
                seq.end()
            }
        }
        assert!(matches!(
            encode(CodecId::Postcard, &UnknownLen, &mut out),
            Err(CodecError::Postcard(_))
        ));
        assert_eq!(out, b"xy\x07abc[1,2]");
    }

    #[test]
    fn json_whitespace_rules() {
        let limits = DecodeLimits::default();
        assert_eq!(decode::<u32>(CodecId::Json, b"12", &limits).unwrap(), 12);
        assert!(matches!(
            decode::<u32>(CodecId::Json, b"12 ", &limits),
            Err(CodecError::TrailingBytes { count: 1 })
        ));
        assert!(matches!(
            decode::<u32>(CodecId::Json, b" 12", &limits),
            Err(CodecError::Json(_))
        ));
        assert!(matches!(
            decode::<u32>(CodecId::Json, b"", &limits),
            Err(CodecError::Json(_))
        ));
    }
}
