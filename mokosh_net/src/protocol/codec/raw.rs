//! The raw codec: [`RawBytes`], and a serializer/deserializer pair that only
//! knows byte strings (see the [parent module](super) for the rules).

use core::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Serialize, ser};

use super::CodecError;

// ---------------------------------------------------------------------------
// RawBytes
// ---------------------------------------------------------------------------

/// The canonical payload type for the [`CodecId::Raw`](super::CodecId::Raw) codec: an owned byte
/// string.
///
/// It serializes with `serialize_bytes` (so `raw` writes it verbatim, postcard
/// as a length-prefixed byte string and JSON as an array of numbers) and
/// deserializes from a byte string (or, for self-describing formats like
/// JSON, from an array of numbers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawBytes(pub Vec<u8>);

impl RawBytes {
    /// Returns the inner bytes.
    #[must_use]
    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

/// `RawBytes` hashes as the one-word sequence `H[str("RawBytes")]`.
impl crate::protocol::schema::Schema for RawBytes {
    const SCHEMA_HASH: u64 = crate::protocol::schema::SchemaHasher::new()
        .write_str("RawBytes")
        .finish();
}

impl From<Vec<u8>> for RawBytes {
    fn from(bytes: Vec<u8>) -> Self {
        RawBytes(bytes)
    }
}

impl From<&[u8]> for RawBytes {
    fn from(bytes: &[u8]) -> Self {
        RawBytes(bytes.to_vec())
    }
}

impl From<RawBytes> for Vec<u8> {
    fn from(bytes: RawBytes) -> Self {
        bytes.0
    }
}

impl AsRef<[u8]> for RawBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl core::ops::Deref for RawBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for RawBytes {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for RawBytes {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(RawBytesVisitor)
    }
}

struct RawBytesVisitor;

impl<'de> Visitor<'de> for RawBytesVisitor {
    type Value = RawBytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawBytes, E> {
        Ok(RawBytes(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<RawBytes, E> {
        Ok(RawBytes(v))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawBytes, A::Error> {
        // Never trust a length hint from the input beyond a small cap.
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            bytes.push(b);
        }
        Ok(RawBytes(bytes))
    }
}

// ---------------------------------------------------------------------------
// The raw codec: a serializer/deserializer that only knows byte strings.
// ---------------------------------------------------------------------------

/// Internal error of the raw (de)serializer; mapped to [`CodecError`].
#[derive(Debug)]
pub(super) enum RawError {
    RequiresBytes,
    Custom(String),
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawError::RequiresBytes => f.write_str("the raw codec only carries byte strings"),
            RawError::Custom(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for RawError {}

impl ser::Error for RawError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        RawError::Custom(msg.to_string())
    }
}

impl de::Error for RawError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        RawError::Custom(msg.to_string())
    }
}

impl From<RawError> for CodecError {
    fn from(err: RawError) -> Self {
        match err {
            RawError::RequiresBytes => CodecError::RawRequiresBytes,
            RawError::Custom(message) => CodecError::Raw { message },
        }
    }
}

/// Writes byte strings verbatim; rejects everything else.
pub(super) struct RawSerializer<'a> {
    pub(super) out: &'a mut Vec<u8>,
}

type Reject = ser::Impossible<(), RawError>;

macro_rules! reject_scalars {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method(self, _v: $ty) -> Result<(), RawError> {
                Err(RawError::RequiresBytes)
            }
        )*
    };
}

impl ser::Serializer for RawSerializer<'_> {
    type Ok = ();
    type Error = RawError;
    type SerializeSeq = Reject;
    type SerializeTuple = Reject;
    type SerializeTupleStruct = Reject;
    type SerializeTupleVariant = Reject;
    type SerializeMap = Reject;
    type SerializeStruct = Reject;
    type SerializeStructVariant = Reject;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), RawError> {
        self.out.extend_from_slice(v);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), RawError> {
        value.serialize(self)
    }

    reject_scalars!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<(), RawError> {
        Err(RawError::RequiresBytes)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), RawError> {
        Err(RawError::RequiresBytes)
    }

    fn serialize_unit(self) -> Result<(), RawError> {
        Err(RawError::RequiresBytes)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<(), RawError> {
        Err(RawError::RequiresBytes)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), RawError> {
        Err(RawError::RequiresBytes)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Reject, RawError> {
        Err(RawError::RequiresBytes)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Reject, RawError> {
        Err(RawError::RequiresBytes)
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Reject, RawError> {
        Err(RawError::RequiresBytes)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Reject, RawError> {
        Err(RawError::RequiresBytes)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Reject, RawError> {
        Err(RawError::RequiresBytes)
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Reject, RawError> {
        Err(RawError::RequiresBytes)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Reject, RawError> {
        Err(RawError::RequiresBytes)
    }
}

/// Hands the whole input to the target as one byte string; rejects any other
/// request.
pub(super) struct RawDeserializer<'de> {
    pub(super) bytes: &'de [u8],
}

impl<'de> de::Deserializer<'de> for RawDeserializer<'de> {
    type Error = RawError;

    fn is_human_readable(&self) -> bool {
        false
    }

    /// Self-describing requests (untagged enums, `serde_json::Value`, ...) are
    /// refused: raw payloads carry no type information.
    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, RawError> {
        Err(RawError::RequiresBytes)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_borrowed_bytes(self.bytes)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_byte_buf(self.bytes.to_vec())
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, RawError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        option unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}
