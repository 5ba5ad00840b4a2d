//! (temporary minimal definition; replaced by the codec branch)
#![allow(missing_docs)]
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompressionId {
    None = 0,
    Zstd = 1,
    Lz4 = 2,
}
impl CompressionId {
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}
impl TryFrom<u8> for CompressionId {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            0 => Ok(Self::None),
            1 => Ok(Self::Zstd),
            2 => Ok(Self::Lz4),
            o => Err(o),
        }
    }
}
pub fn negotiate_compression(
    client_offer: &[CompressionId],
    server_supported: &[CompressionId],
) -> CompressionId {
    client_offer
        .iter()
        .copied()
        .find(|c| server_supported.contains(c))
        .unwrap_or(CompressionId::None)
}
#[derive(Debug, Clone)]
pub struct CompressionConfig {
    pub threshold: usize,
    pub zstd_level: i32,
    pub max_decompressed_size: usize,
}
impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            threshold: 128,
            zstd_level: 1,
            max_decompressed_size: 65536,
        }
    }
}
#[derive(Debug, thiserror::Error)]
#[error("compression error")]
pub struct CompressionError;
pub struct Compressor {
    algorithm: CompressionId,
}
impl Compressor {
    pub fn new(
        algorithm: CompressionId,
        _config: CompressionConfig,
    ) -> Result<Self, CompressionError> {
        Ok(Self { algorithm })
    }
    pub fn compress(
        &mut self,
        _input: &[u8],
        _out: &mut Vec<u8>,
    ) -> Result<bool, CompressionError> {
        let _ = self.algorithm;
        Ok(false)
    }
    pub fn decompress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
        out.extend_from_slice(input);
        Ok(())
    }
}
