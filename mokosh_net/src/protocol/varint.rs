//! Canonical unsigned LEB128 variable-length integers.
//!
//! Each byte carries 7 bits of the value, least significant group first; the high
//! bit (`0x80`) says another byte follows. Mokosh accepts **only the canonical
//! (shortest) encoding**: a final byte of `0x00` after another byte is rejected as
//! [`VarintError::NonCanonical`], an encoding longer than any `u64` is
//! [`VarintError::Overflow`], and a well-formed value above a field's maximum
//! ([`read_bounded`]) is [`VarintError::OutOfRange`]. This keeps every header byte-for-byte unique,
//! which matters because headers are authenticated as associated data.
//!
//! | value range            | bytes |
//! |------------------------|-------|
//! | `0 ..= 127`            | 1     |
//! | `128 ..= 16_383`       | 2     |
//! | `16_384 ..= 2_097_151` | 3     |
//! | ... up to `u64::MAX`   | 10    |

use thiserror::Error;

/// The longest encoding of a `u64` (10 bytes).
pub const MAX_VARINT_LEN: usize = 10;

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VarintError {
    /// The input ended before the last byte of the varint.
    #[error("varint truncated")]
    Truncated,
    /// The varint was longer than necessary (a trailing `0x00` group).
    #[error("varint not in canonical (shortest) form")]
    NonCanonical,
    /// The encoding is longer than any `u64` (more than 64 bits of value).
    #[error("varint longer than 64 bits")]
    Overflow,
    /// A well-formed value above the field's maximum.
    #[error("value {value} is out of range (maximum {max})")]
    OutOfRange {
        /// The decoded value.
        value: u64,
        /// The largest value the field allows.
        max: u64,
    },
}

/// How many bytes [`write()`] uses for `value`.
pub const fn encoded_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends the canonical encoding of `value` to `out`.
pub fn write(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads one canonical varint from the start of `input`.
///
/// Returns the value and the number of bytes consumed. Never reads more than
/// [`MAX_VARINT_LEN`] bytes.
pub fn read(input: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    for (index, &byte) in input.iter().take(MAX_VARINT_LEN).enumerate() {
        let group = u64::from(byte & 0x7f);
        if index == MAX_VARINT_LEN - 1 && byte > 0x01 {
            return Err(VarintError::Overflow);
        }
        value |= group << (7 * index);
        if byte & 0x80 == 0 {
            if byte == 0 && index > 0 {
                return Err(VarintError::NonCanonical);
            }
            return Ok((value, index + 1));
        }
    }
    if input.len() >= MAX_VARINT_LEN {
        // Ten continuation bytes: longer than any u64.
        Err(VarintError::Overflow)
    } else {
        Err(VarintError::Truncated)
    }
}

/// Reads a varint that must be at most `max` (inclusive), e.g. a `u16` route
/// id; a larger value is [`VarintError::OutOfRange`].
pub fn read_bounded(input: &[u8], max: u64) -> Result<(u64, usize), VarintError> {
    let (value, used) = read(input)?;
    if value > max {
        return Err(VarintError::OutOfRange { value, max });
    }
    Ok((value, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(value, bytes) in cases {
            let mut out = Vec::new();
            write(value, &mut out);
            assert_eq!(out, bytes, "encoding of {value}");
            assert_eq!(encoded_len(value), bytes.len());
            assert_eq!(read(bytes), Ok((value, bytes.len())));
        }
    }

    #[test]
    fn rejects_bad_encodings() {
        assert_eq!(read(&[]), Err(VarintError::Truncated));
        assert_eq!(read(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(read(&[0x80, 0x00]), Err(VarintError::NonCanonical));
        assert_eq!(read(&[0xff, 0x80, 0x00]), Err(VarintError::NonCanonical));
        // 2^64 does not fit.
        let too_big = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02];
        assert_eq!(read(&too_big), Err(VarintError::Overflow));
        // Eleven bytes of continuation.
        assert_eq!(read(&[0xff; 11]), Err(VarintError::Overflow));
        assert_eq!(
            read_bounded(&[0x80, 0x80, 0x04], 65_535),
            Err(VarintError::OutOfRange {
                value: 65_536,
                max: 65_535
            })
        );
        assert_eq!(
            VarintError::OutOfRange {
                value: 65_536,
                max: 65_535
            }
            .to_string(),
            "value 65536 is out of range (maximum 65535)"
        );
        assert_eq!(read_bounded(&[0xff, 0xff, 0x03], 65_535), Ok((65_535, 3)));
    }

    proptest! {
        #[test]
        fn round_trip(value: u64, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut out = Vec::new();
            write(value, &mut out);
            prop_assert_eq!(out.len(), encoded_len(value));
            out.extend_from_slice(&tail);
            prop_assert_eq!(read(&out), Ok((value, encoded_len(value))));
        }

        #[test]
        fn never_panics_and_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            if let Ok((value, used)) = read(&bytes) {
                let mut again = Vec::new();
                write(value, &mut again);
                prop_assert_eq!(&again[..], &bytes[..used]);
            }
        }
    }
}
