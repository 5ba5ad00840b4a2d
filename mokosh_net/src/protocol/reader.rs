//! A bounds-checked cursor over received bytes, used by the fixed-layout
//! decoders (handshake and control messages). Every read either returns the
//! requested bytes or [`WireError`]; nothing here can panic or allocate.

use thiserror::Error;

use super::varint::{self, VarintError};

/// Why a fixed-layout message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message ended early.
    #[error("message truncated")]
    Truncated,
    /// A varint field is malformed or out of range.
    #[error("malformed varint: {0}")]
    Varint(VarintError),
    /// Bytes were left over after the last field.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A field holds a value the format does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if len > self.bytes.len() {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64, WireError> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    pub(crate) fn varint(&mut self, max: u64) -> Result<u64, WireError> {
        let (value, used) = varint::read_bounded(self.bytes, max).map_err(|e| match e {
            VarintError::Truncated => WireError::Truncated,
            other => WireError::Varint(other),
        })?;
        self.bytes = &self.bytes[used..];
        Ok(value)
    }

    /// A varint length (at most `max`) followed by that many bytes. The length is
    /// checked against both `max` and the bytes actually present before use.
    pub(crate) fn length_prefixed(&mut self, max: usize) -> Result<&'a [u8], WireError> {
        let len = self.varint(max as u64)? as usize;
        self.take(len)
    }

    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.bytes.len()))
        }
    }
}
