//! (temporary minimal definition; replaced by the codec branch)
#![allow(missing_docs)]
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecId {
    Json = 1,
    Postcard = 2,
    Raw = 3,
}
impl CodecId {
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}
impl TryFrom<u8> for CodecId {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            1 => Ok(Self::Json),
            2 => Ok(Self::Postcard),
            3 => Ok(Self::Raw),
            o => Err(o),
        }
    }
}
pub fn negotiate_codec(client_offer: &[CodecId], server_supported: &[CodecId]) -> Option<CodecId> {
    client_offer
        .iter()
        .copied()
        .find(|c| server_supported.contains(c))
}
