//! The server's static key pair and the client's pinned public key.
//!
//! Secret hygiene: the private half of a [`KeyPair`] lives in a
//! [`Zeroizing`] buffer, so every copy (clones included) is overwritten when it
//! is dropped; `KeyPair` has no derived `PartialEq` (equality compares the
//! public halves, which never touches secret bytes) and its `Debug` prints only
//! the public key.

use zeroize::Zeroizing;

use super::x25519;
use super::{CryptoError, KEY_LEN};

/// An X25519 public key (32 bytes). Its text form is 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; KEY_LEN]);

impl PublicKey {
    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let mut key = [0u8; KEY_LEN];
        decode_hex(text.trim(), &mut key)?;
        Ok(PublicKey(key))
    }
    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }
}

impl core::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl core::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A server's static X25519 key pair.
///
/// * The private key is zeroized when the pair (or any clone of it) is dropped.
/// * `Debug` never prints the private key.
/// * Two pairs are equal when their public keys are equal. The public key is
///   derived from the private key, so this identifies the pair without
///   comparing (or timing) secret bytes.
/// * The public key is derived once, when the pair is made; handshakes reuse it
///   instead of recomputing it per connection.
#[derive(Clone)]
pub struct KeyPair {
    private: Zeroizing<[u8; KEY_LEN]>,
    public: PublicKey,
}

impl KeyPair {
    /// Generates a fresh key pair from the operating system's random source.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut private = Zeroizing::new([0u8; KEY_LEN]);
        x25519::fill_random(private.as_mut())?;
        Ok(Self::derive(private))
    }

    /// Rebuilds a key pair from its private key (the public key is derived).
    ///
    /// The argument is a copy the caller owns; zeroize it after the call if it
    /// came from somewhere sensitive (or use [`from_private_hex`](Self::from_private_hex)).
    pub fn from_private(private: [u8; KEY_LEN]) -> Result<Self, CryptoError> {
        Ok(Self::derive(Zeroizing::new(private)))
    }

    /// Parses the private key from 64 hex digits.
    pub fn from_private_hex(text: &str) -> Result<Self, CryptoError> {
        let mut private = Zeroizing::new([0u8; KEY_LEN]);
        decode_hex(text.trim(), &mut private)?;
        Ok(Self::derive(private))
    }

    fn derive(private: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let public = PublicKey(x25519::public_key(&private));
        KeyPair { private, public }
    }

    /// The private key as 64 hex digits (for saving to a key file). The
    /// returned string is a plain `String`: wrap it in
    /// [`zeroize::Zeroizing`] (or write it out and drop it) if it must not
    /// linger in memory.
    pub fn private_hex(&self) -> String {
        encode_hex(self.private.as_ref())
    }

    /// The public key to give to clients.
    pub const fn public(&self) -> PublicKey {
        self.public
    }

    pub(crate) fn private_bytes(&self) -> &[u8; KEY_LEN] {
        &self.private
    }
}

/// The private key is a [`Zeroizing`] buffer, wiped when the pair is dropped.
impl zeroize::ZeroizeOnDrop for KeyPair {}

impl PartialEq for KeyPair {
    fn eq(&self, other: &Self) -> bool {
        self.public == other.public
    }
}

impl Eq for KeyPair {}

impl core::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .field("private", &"<redacted>")
            .finish()
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

/// Decodes exactly `2 * KEY_LEN` hex digits into `key`.
fn decode_hex(text: &str, key: &mut [u8; KEY_LEN]) -> Result<(), CryptoError> {
    let digits = text.as_bytes();
    if digits.len() != KEY_LEN * 2 {
        return Err(CryptoError::InvalidKeyEncoding);
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(CryptoError::InvalidKeyEncoding),
    };
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        key[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_hex() {
        let pair = KeyPair::generate().unwrap();
        let again = KeyPair::from_private_hex(&pair.private_hex()).unwrap();
        assert_eq!(pair, again);
        assert_eq!(pair.private_bytes(), again.private_bytes());
        assert_eq!(
            PublicKey::from_hex(&pair.public().to_hex()).unwrap(),
            pair.public()
        );
        assert!(PublicKey::from_hex("zz").is_err());
        assert!(PublicKey::from_hex(&"g".repeat(64)).is_err());
        assert_ne!(pair, KeyPair::generate().unwrap());
    }

    #[test]
    fn debug_never_prints_the_private_key() {
        let pair = KeyPair::from_private([0xAB; KEY_LEN]).unwrap();
        let secret = pair.private_hex();
        for text in [format!("{pair:?}"), format!("{pair:#?}")] {
            assert!(!text.contains(&secret), "{text}");
            assert!(!text.to_lowercase().contains("abab"), "{text}");
            assert!(text.contains(&pair.public().to_hex()), "{text}");
        }
    }

    #[test]
    fn public_key_matches_rfc_7748() {
        // RFC 7748 section 6.1: Alice's private and public key.
        let private = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
        let public = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
        assert_eq!(
            KeyPair::from_private_hex(private)
                .unwrap()
                .public()
                .to_hex(),
            public
        );
    }
}
