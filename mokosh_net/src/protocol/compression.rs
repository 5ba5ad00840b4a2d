//! Optional payload compression (zstd or LZ4) with bounded decompression.
//!
//! A connection negotiates one [`CompressionId`] during the handshake (see
//! [`negotiate_compression`]). A sender then runs each encoded payload through
//! [`Compressor::compress`]; only when it returns `true` does the payload go
//! out compressed, with the envelope's "compressed" flag set. A receiver runs
//! flagged payloads through [`Compressor::decompress`].
//!
//! # When a payload is compressed
//!
//! A payload is sent compressed only if all of these hold:
//! the negotiated algorithm is not `none`; the payload is at least
//! [`CompressionConfig::threshold`] bytes (default 128); it is at most
//! [`CompressionConfig::max_decompressed_size`] bytes (so the peer can accept
//! it); and the compressed form, *including* any length prefix, is strictly
//! smaller than the payload. Otherwise it is sent as-is, flag clear.
//!
//! # Wire formats
//!
//! **`none` (id 0).** No transformation. A payload flagged as compressed on a
//! connection that negotiated `none` is a protocol error.
//!
//! **`zstd` (id 1).** The compressed payload is exactly one Zstandard frame
//! (RFC 8878), and nothing else:
//!
//! * it starts with the frame magic number `28 B5 2F FD` (0xFD2FB528
//!   little-endian); skippable frames (`0x184D2A5?`) and legacy formats are
//!   rejected;
//! * its frame header MUST carry `Frame_Content_Size`, which MUST equal the
//!   length of the decompressed payload (Mokosh writers always set it;
//!   a frame without it is rejected);
//! * the frame MUST span the whole payload: no second frame, no trailing
//!   bytes;
//! * no dictionary is used (`Dictionary_ID` absent or 0); the optional
//!   content checksum is accepted and verified but Mokosh writers do not emit
//!   it (the AEAD layer already authenticates the payload).
//!
//! **`lz4` (id 2).** `u32` little-endian decompressed length, followed by one
//! raw LZ4 *block* (the LZ4 block format, not the LZ4 frame format) that
//! decompresses to exactly that many bytes:
//!
//! ```text
//! +----------------------+------------------------------+
//! | len: u32 LE (4 B)    | LZ4 block (rest of payload)  |
//! +----------------------+------------------------------+
//! ```
//!
//! # Decompression limits
//!
//! The decompressed size is known from the header (zstd `Frame_Content_Size`,
//! lz4 length prefix) and checked against
//! [`CompressionConfig::max_decompressed_size`] **before** any output buffer
//! is allocated ([`CompressionError::TooLarge`]). Output is then produced
//! into a buffer of exactly that size and the produced length must equal the
//! declared one ([`CompressionError::SizeMismatch`]). For lz4, a declared
//! length above 255 × the block length is impossible for a valid block (each
//! input byte expands to at most 255 output bytes) and is rejected as well
//! ([`CompressionError::ImplausibleSize`]), so a small packet can never make
//! the receiver reserve a large buffer.
//!
//! # Context reuse
//!
//! A [`Compressor`] creates its zstd compression and decompression contexts
//! (or its LZ4 hash table) once, in [`Compressor::new`], and reuses them for
//! every call. Keep one per connection (or per worker thread).

use core::fmt;
use std::io;

use zstd::zstd_safe;

/// Identifies a compression algorithm on the wire (one byte).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CompressionId {
    /// No compression.
    None = 0,
    /// One Zstandard frame with its content size in the header.
    Zstd = 1,
    /// A `u32` LE length prefix followed by one raw LZ4 block.
    Lz4 = 2,
}

impl CompressionId {
    /// Every algorithm, in the order Mokosh prefers them.
    pub const ALL: [CompressionId; 3] =
        [CompressionId::Zstd, CompressionId::Lz4, CompressionId::None];
}

crate::protocol::wire_id::wire_id! {
    CompressionId, CompressionError::UnknownCompressionId,
    None = 0 => "none",
    Zstd = 1 => "zstd",
    Lz4 = 2 => "lz4",
}

/// Picks the compression algorithm for a connection.
///
/// The client sends an ordered preference list (most preferred first); the
/// server picks the **first entry of the client's list that it supports**.
/// Compression is optional, so [`CompressionId::None`] is always considered
/// supported (a client listing it first is asking for no compression), and
/// an empty offer or no overlap yields `None` rather than a failure.
/// Duplicates in the offer are ignored.
#[must_use]
pub fn negotiate_compression(
    client_offer: &[CompressionId],
    server_supported: &[CompressionId],
) -> CompressionId {
    client_offer
        .iter()
        .copied()
        .find(|offered| *offered == CompressionId::None || server_supported.contains(offered))
        .unwrap_or(CompressionId::None)
}

/// Tuning and limits for a [`Compressor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressionConfig {
    /// Payloads shorter than this are never compressed (default 128 bytes).
    pub threshold: usize,
    /// zstd compression level (default 1; see [`CompressionConfig::DEFAULT`]).
    /// Must be within `zstd::compression_level_range()`; `0` means zstd's
    /// default (3).
    pub zstd_level: i32,
    /// Largest decompressed payload accepted (default 1 MiB). Should match
    /// the largest plaintext payload the envelope accepts.
    pub max_decompressed_size: usize,
}

impl CompressionConfig {
    /// The defaults.
    ///
    /// zstd level 1 was chosen by measurement on game-like payloads (the
    /// ignored `measure_zstd_levels` test in `tests/compression.rs`, release
    /// build): on a 1664-byte 64-player snapshot level 3 was ~6% smaller
    /// (1409 vs 1493 bytes) but ~25% slower to compress (10.5 vs 8.2 µs) and
    /// ~50% slower to decompress; on a 960-byte input batch it was ~4%
    /// smaller at similar speed. Per-packet latency on the server's hot path
    /// matters more than the last few percent, so level 1 is the default.
    pub const DEFAULT: CompressionConfig = CompressionConfig {
        threshold: 128,
        zstd_level: 1,
        max_decompressed_size: 1 << 20,
    };
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why compression or decompression failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressionError {
    /// A compression id byte that names no algorithm.
    #[error("unknown compression id {id}")]
    UnknownCompressionId {
        /// The byte received.
        id: u8,
    },
    /// [`CompressionConfig::zstd_level`] is outside zstd's range.
    #[error("zstd level {level} outside {min}..={max}")]
    InvalidLevel {
        /// The configured level.
        level: i32,
        /// Smallest accepted level.
        min: i32,
        /// Largest accepted level.
        max: i32,
    },
    /// A payload was flagged as compressed but the connection uses `none`.
    #[error("payload flagged as compressed but no compression was negotiated")]
    NotNegotiated,
    /// The payload is too short to hold the header of its format.
    #[error("compressed payload truncated")]
    Truncated,
    /// The payload is not a single, plain zstd frame (bad magic, skippable or
    /// legacy frame, malformed header or blocks).
    #[error("invalid zstd frame: {reason}")]
    InvalidFrame {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The zstd frame header does not record the decompressed size.
    #[error("zstd frame does not declare its content size")]
    UnknownContentSize,
    /// Bytes follow the single zstd frame.
    #[error("{count} byte(s) after the zstd frame")]
    TrailingBytes {
        /// How many bytes follow the frame.
        count: usize,
    },
    /// The declared decompressed size exceeds the configured maximum.
    #[error("declared decompressed size {declared} exceeds the maximum {max}")]
    TooLarge {
        /// Size declared by the payload header.
        declared: u64,
        /// [`CompressionConfig::max_decompressed_size`].
        max: usize,
    },
    /// An lz4 length prefix larger than the block could possibly expand to.
    #[error("declared size {declared} impossible for a {compressed}-byte LZ4 block")]
    ImplausibleSize {
        /// Size declared by the length prefix.
        declared: u64,
        /// Length of the LZ4 block.
        compressed: usize,
    },
    /// Decompression produced a different length than declared.
    #[error("decompressed {actual} bytes but {declared} were declared")]
    SizeMismatch {
        /// Size declared by the payload header.
        declared: u64,
        /// Bytes actually produced.
        actual: usize,
    },
    /// zstd reported an error (corrupt data, context creation failure...).
    #[error("zstd: {0}")]
    Zstd(#[source] io::Error),
    /// The LZ4 block is corrupt.
    #[error("lz4: {0}")]
    Lz4Decompress(#[source] lz4_flex::block::DecompressError),
    /// LZ4 compression failed (not expected with a correctly sized buffer).
    #[error("lz4: {0}")]
    Lz4Compress(#[source] lz4_flex::block::CompressError),
}

/// Magic number opening every (non-skippable) zstd frame, as it appears on
/// the wire.
pub const ZSTD_FRAME_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Length of the lz4 format's `u32` little-endian size prefix.
pub const LZ4_SIZE_PREFIX_LEN: usize = 4;

/// Largest expansion of one LZ4 block byte (a match-length byte of 255).
const LZ4_MAX_EXPANSION: usize = 255;

/// Compresses and decompresses payloads for one connection, reusing its
/// compression contexts across calls.
pub struct Compressor {
    algorithm: CompressionId,
    config: CompressionConfig,
    engine: Engine,
}

/// The per-algorithm state, created once in [`Compressor::new`].
enum Engine {
    None,
    Zstd {
        compressor: Box<zstd::bulk::Compressor<'static>>,
        decompressor: Box<zstd::bulk::Decompressor<'static>>,
    },
    Lz4 {
        table: Box<lz4_flex::block::CompressTable>,
    },
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor")
            .field("algorithm", &self.algorithm)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// Creates a compressor for `algorithm`, allocating its contexts now.
    ///
    /// Fails if the zstd level is out of range or zstd cannot allocate its
    /// contexts.
    pub fn new(
        algorithm: CompressionId,
        config: CompressionConfig,
    ) -> Result<Self, CompressionError> {
        let engine = match algorithm {
            CompressionId::None => Engine::None,
            CompressionId::Zstd => {
                let range = zstd::compression_level_range();
                if !range.contains(&config.zstd_level) {
                    return Err(CompressionError::InvalidLevel {
                        level: config.zstd_level,
                        min: *range.start(),
                        max: *range.end(),
                    });
                }
                let mut compressor = zstd::bulk::Compressor::new(config.zstd_level)
                    .map_err(CompressionError::Zstd)?;
                // The wire format requires the content size in the header;
                // the checksum is redundant under AEAD.
                compressor
                    .set_parameter(zstd_safe::CParameter::ContentSizeFlag(true))
                    .map_err(CompressionError::Zstd)?;
                compressor
                    .set_parameter(zstd_safe::CParameter::ChecksumFlag(false))
                    .map_err(CompressionError::Zstd)?;
                compressor
                    .set_parameter(zstd_safe::CParameter::DictIdFlag(false))
                    .map_err(CompressionError::Zstd)?;
                let decompressor =
                    zstd::bulk::Decompressor::new().map_err(CompressionError::Zstd)?;
                Engine::Zstd {
                    compressor: Box::new(compressor),
                    decompressor: Box::new(decompressor),
                }
            }
            CompressionId::Lz4 => Engine::Lz4 {
                table: Box::new(lz4_flex::block::CompressTable::default()),
            },
        };
        Ok(Compressor {
            algorithm,
            config,
            engine,
        })
    }

    /// The algorithm this compressor implements.
    #[must_use]
    pub fn algorithm(&self) -> CompressionId {
        self.algorithm
    }

    /// The configuration this compressor was created with.
    #[must_use]
    pub fn config(&self) -> &CompressionConfig {
        &self.config
    }

    /// Compresses `input`, appending the result to `out`.
    ///
    /// Returns `Ok(true)` if compressed bytes were appended (send them with
    /// the compressed flag set). Returns `Ok(false)` and leaves `out`
    /// untouched if the algorithm is `none`, `input` is shorter than the
    /// threshold or longer than `max_decompressed_size`, or compression would
    /// not make it strictly smaller; send `input` uncompressed then.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<bool, CompressionError> {
        if input.len() < self.config.threshold || input.len() > self.config.max_decompressed_size {
            return Ok(false);
        }
        let start = out.len();
        let result = match &mut self.engine {
            Engine::None => return Ok(false),
            Engine::Zstd { compressor, .. } => zstd_compress(compressor, input, out),
            Engine::Lz4 { table } => lz4_compress(table, input, out),
        };
        match result {
            Ok(true) => Ok(true),
            other => {
                out.truncate(start);
                other
            }
        }
    }

    /// The decompressed size `input` declares (zstd `Frame_Content_Size`, or
    /// the lz4 prefix), checked against `max_decompressed_size` (and, for lz4,
    /// the block length) without decompressing or allocating anything. A
    /// receiver charges this to its byte budget before doing the work;
    /// [`decompress`](Self::decompress) then insists on exactly this size.
    pub fn declared_size(&self, input: &[u8]) -> Result<usize, CompressionError> {
        let max = self.config.max_decompressed_size;
        match &self.engine {
            Engine::None => Err(CompressionError::NotNegotiated),
            Engine::Zstd { .. } => zstd_declared_size(input, max).map(|(size, _)| size),
            Engine::Lz4 { .. } => lz4_declared_size(input, max).map(|(size, _, _)| size),
        }
    }

    /// Decompresses one payload produced by [`compress`](Self::compress)
    /// (in the format described in the [module docs](self)), appending the
    /// result to `out`.
    ///
    /// Hostile input never allocates more than `max_decompressed_size` and
    /// never panics. On error `out` is restored to its original length.
    pub fn decompress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
        let start = out.len();
        let max = self.config.max_decompressed_size;
        let result = match &mut self.engine {
            Engine::None => Err(CompressionError::NotNegotiated),
            Engine::Zstd { decompressor, .. } => zstd_decompress(decompressor, input, max, out),
            Engine::Lz4 { .. } => lz4_decompress(input, max, out),
        };
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

/// Appends one zstd frame; `Ok(false)` if it is not smaller than `input`.
/// The caller truncates `out` on anything but `Ok(true)`.
fn zstd_compress(
    compressor: &mut zstd::bulk::Compressor<'static>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<bool, CompressionError> {
    let start = out.len();
    out.reserve(zstd_safe::compress_bound(input.len()));
    // The cursor makes zstd write into `out`'s spare capacity after `start`.
    let mut cursor = io::Cursor::new(&mut *out);
    cursor.set_position(start as u64);
    let written = compressor
        .compress_to_buffer(input, &mut cursor)
        .map_err(CompressionError::Zstd)?;
    Ok(written < input.len())
}

/// Appends the lz4 length prefix and block; `Ok(false)` if not smaller.
/// The caller truncates `out` on anything but `Ok(true)`.
fn lz4_compress(
    table: &mut lz4_flex::block::CompressTable,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<bool, CompressionError> {
    let Ok(len) = u32::try_from(input.len()) else {
        return Ok(false);
    };
    let start = out.len();
    let block_start = start + LZ4_SIZE_PREFIX_LEN;
    out.extend_from_slice(&len.to_le_bytes());
    out.resize(
        block_start + lz4_flex::block::get_maximum_output_size(input.len()),
        0,
    );
    let written = lz4_flex::block::compress_into_with_table(input, &mut out[block_start..], table)
        .map_err(CompressionError::Lz4Compress)?;
    out.truncate(block_start + written);
    Ok(LZ4_SIZE_PREFIX_LEN + written < input.len())
}

/// Reads a zstd frame's declared size from its header (no allocation).
/// Returns the size as `usize` and as declared.
fn zstd_declared_size(input: &[u8], max: usize) -> Result<(usize, u64), CompressionError> {
    if input.len() < ZSTD_FRAME_MAGIC.len() {
        return Err(CompressionError::Truncated);
    }
    if input[..ZSTD_FRAME_MAGIC.len()] != ZSTD_FRAME_MAGIC {
        return Err(CompressionError::InvalidFrame {
            reason: "not a zstd frame (bad magic, skippable or legacy frame)",
        });
    }
    // Header only: no allocation, no decompression yet.
    let declared = match zstd_safe::get_frame_content_size(input) {
        Ok(Some(size)) => size,
        Ok(None) => return Err(CompressionError::UnknownContentSize),
        Err(_) => {
            return Err(CompressionError::InvalidFrame {
                reason: "malformed or truncated frame header",
            });
        }
    };
    match usize::try_from(declared) {
        Ok(size) if size <= max => Ok((size, declared)),
        _ => Err(CompressionError::TooLarge { declared, max }),
    }
}

/// Decompresses exactly one zstd frame that declares its size.
fn zstd_decompress(
    decompressor: &mut zstd::bulk::Decompressor<'static>,
    input: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let (size, declared) = zstd_declared_size(input, max)?;
    // Walks the block headers (still no allocation) to find where the frame
    // ends; it must end exactly at the end of the payload.
    let frame_len = zstd_safe::find_frame_compressed_size(input).map_err(|code| {
        CompressionError::InvalidFrame {
            reason: zstd_safe::get_error_name(code),
        }
    })?;
    if frame_len != input.len() {
        return Err(CompressionError::TrailingBytes {
            count: input.len().saturating_sub(frame_len),
        });
    }
    let start = out.len();
    // Exactly `size` bytes of room: zstd cannot write past the declared size.
    out.resize(start + size, 0);
    let produced = decompressor
        .decompress_to_buffer(input, &mut out[start..])
        .map_err(CompressionError::Zstd)?;
    if produced != size {
        return Err(CompressionError::SizeMismatch {
            declared,
            actual: produced,
        });
    }
    Ok(())
}

/// Reads the lz4 length prefix and checks it (no allocation). Returns the
/// size, as declared, and the block.
fn lz4_declared_size(input: &[u8], max: usize) -> Result<(usize, u32, &[u8]), CompressionError> {
    let Some((prefix, block)) = input.split_first_chunk::<LZ4_SIZE_PREFIX_LEN>() else {
        return Err(CompressionError::Truncated);
    };
    let declared = u32::from_le_bytes(*prefix);
    let size = match usize::try_from(declared) {
        Ok(size) if size <= max => size,
        _ => {
            return Err(CompressionError::TooLarge {
                declared: u64::from(declared),
                max,
            });
        }
    };
    if size > block.len().saturating_mul(LZ4_MAX_EXPANSION) {
        return Err(CompressionError::ImplausibleSize {
            declared: u64::from(declared),
            compressed: block.len(),
        });
    }
    Ok((size, declared, block))
}

/// Decompresses a `u32` LE length prefix plus one LZ4 block.
fn lz4_decompress(input: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let (size, declared, block) = lz4_declared_size(input, max)?;
    let start = out.len();
    out.resize(start + size, 0);
    let produced = lz4_flex::block::decompress_into(block, &mut out[start..])
        .map_err(CompressionError::Lz4Decompress)?;
    if produced != size {
        return Err(CompressionError::SizeMismatch {
            declared: u64::from(declared),
            actual: produced,
        });
    }
    Ok(())
}
