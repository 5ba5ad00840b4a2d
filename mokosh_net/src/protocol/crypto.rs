//! Keys, the Noise handshake, and per-packet sealing.
//!
//! **Handshake.** Mokosh uses the Noise pattern
//! `Noise_NK_25519_ChaChaPoly_BLAKE2s` ([`NOISE_PATTERN`]) with the prologue
//! [`NOISE_PROLOGUE`]: the server has a static X25519 key pair whose public half
//! is given to clients out of band; the client pins it. The client's first
//! message (`-> e, es`) carries its hello encrypted; the server's reply
//! (`<- e, ee`) carries the accept or reject. A client that talks to anyone but
//! the holder of the pinned key fails to read the reply. Every connection gets
//! fresh ephemeral keys, so there are no shared or long-lived traffic keys.
//!
//! **Transport.** After the handshake, Noise's `Split()` yields two 32-byte keys:
//! the first seals client→server packets, the second server→client. Each packet
//! is sealed with ChaCha20-Poly1305 (RFC 8439) under its direction's key with
//!
//! * nonce = 4 zero bytes ‖ the 64-bit packet counter, little-endian (the
//!   counter is the header's message id, assigned at seal time, starting at 0);
//! * associated data = the **entire encoded envelope header**, so no header
//!   field (route, flags, codec, counter, length) can be altered;
//! * the 16-byte tag appended to the ciphertext.
//!
//! The counter never wraps: [`PacketSealer`] refuses to seal once it would need
//! counter `u64::MAX` ([`CryptoError::CounterExhausted`]); the session then closes.
//!
//! ChaCha20 and Poly1305 pick their AVX2 backends at run time (CPU feature
//! detection in the `chacha20` 0.10 / `poly1305` 0.9 crates), so no
//! `-C target-cpu=native` is needed; [`simd_backend`] reports what is in use and
//! the benchmark prints it.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use thiserror::Error;
use zeroize::Zeroizing;

use super::envelope::{Flags, Header};

mod keys;
mod x25519;

pub use keys::{KeyPair, PublicKey};

/// The Noise protocol name used for every Mokosh handshake.
pub const NOISE_PATTERN: &str = "Noise_NK_25519_ChaChaPoly_BLAKE2s";
/// The Noise prologue; it binds the handshake to this protocol and version.
pub const NOISE_PROLOGUE: &[u8] = b"mokosh/1";
/// Length of a ChaCha20-Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Length of an X25519 key.
pub const KEY_LEN: usize = 32;
/// Largest Noise message (Noise spec limit).
pub const MAX_NOISE_MESSAGE: usize = 65_535;

/// Errors from key handling, the handshake, and sealing/opening.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A key string is not 64 hex digits.
    #[error("invalid key encoding: expected 64 hex digits")]
    InvalidKeyEncoding,
    /// The Noise state machine refused the message (wrong key, tampering, ...).
    #[error("noise handshake failed: {0}")]
    Handshake(String),
    /// The packet failed authentication.
    #[error("packet failed authentication")]
    Authentication,
    /// The packet is too short to hold a tag.
    #[error("sealed body shorter than the tag")]
    Truncated,
    /// The send counter is exhausted; the session must end.
    #[error("send counter exhausted")]
    CounterExhausted,
    /// The body is too large for this protocol.
    #[error("body too large to seal")]
    TooLarge,
}

fn noise_builder(resolver: x25519::Resolver) -> Result<snow::Builder<'static>, CryptoError> {
    let params = NOISE_PATTERN
        .parse()
        .map_err(|e: snow::Error| CryptoError::Handshake(e.to_string()))?;
    Ok(snow::Builder::with_resolver(params, Box::new(resolver)))
}

/// The largest handshake message `write` can produce for a `payload_len`-byte
/// payload: up to two public keys (each possibly encrypted, with a tag) plus
/// the encrypted payload and its tag. The NK messages use one unencrypted key.
const fn handshake_message_bound(payload_len: usize) -> usize {
    let bound = payload_len.saturating_add(2 * (KEY_LEN + TAG_LEN) + TAG_LEN);
    if bound < MAX_NOISE_MESSAGE {
        bound
    } else {
        MAX_NOISE_MESSAGE
    }
}

/// Noise handshake in progress, for one side.
pub struct NoiseHandshake {
    state: snow::HandshakeState,
}

impl core::fmt::Debug for NoiseHandshake {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NoiseHandshake")
            .field("initiator", &self.state.is_initiator())
            .finish()
    }
}

enum Side<'a> {
    Initiator(&'a PublicKey),
    Responder(&'a KeyPair),
}

/// The two traffic keys that come out of a finished handshake.
pub struct TrafficKeys {
    /// Seals packets this side sends.
    pub sealer: PacketSealer,
    /// Opens packets this side receives.
    pub opener: PacketOpener,
}

impl NoiseHandshake {
    /// The client side, pinned to the server's public key.
    pub fn initiator(server_key: &PublicKey) -> Result<Self, CryptoError> {
        Self::build(Side::Initiator(server_key), None)
    }

    /// The server side, holding the static key pair.
    pub fn responder(keypair: &KeyPair) -> Result<Self, CryptoError> {
        Self::build(Side::Responder(keypair), None)
    }

    /// Test-vector support: an initiator with a fixed ephemeral key.
    #[cfg(test)]
    pub(crate) fn initiator_fixed(
        server_key: &PublicKey,
        ephemeral: &[u8; KEY_LEN],
    ) -> Result<Self, CryptoError> {
        Self::build(Side::Initiator(server_key), Some(ephemeral))
    }

    /// Test-vector support: a responder with a fixed ephemeral key.
    #[cfg(test)]
    pub(crate) fn responder_fixed(
        keypair: &KeyPair,
        ephemeral: &[u8; KEY_LEN],
    ) -> Result<Self, CryptoError> {
        Self::build(Side::Responder(keypair), Some(ephemeral))
    }

    fn build(side: Side<'_>, ephemeral: Option<&[u8; KEY_LEN]>) -> Result<Self, CryptoError> {
        let resolver = match side {
            Side::Initiator(_) => x25519::Resolver::new(),
            Side::Responder(keypair) => x25519::Resolver::with_static(keypair),
        };
        let mut builder = noise_builder(resolver)?;
        if let Some(ephemeral) = ephemeral {
            builder = builder.fixed_ephemeral_key_for_testing_only(ephemeral);
        }
        let builder = builder.prologue(NOISE_PROLOGUE);
        let state = match side {
            Side::Initiator(server_key) => builder
                .and_then(|b| b.remote_public_key(&server_key.0))
                .and_then(|b| b.build_initiator()),
            Side::Responder(keypair) => builder
                .and_then(|b| b.local_private_key(keypair.private_bytes()))
                .and_then(|b| b.build_responder()),
        }
        .map_err(|e| CryptoError::Handshake(e.to_string()))?;
        Ok(NoiseHandshake { state })
    }

    /// Test-vector support: the raw split keys (initiator→responder first).
    #[cfg(test)]
    pub(crate) fn raw_split(&mut self) -> ([u8; KEY_LEN], [u8; KEY_LEN]) {
        self.state.dangerously_get_raw_split()
    }

    /// Writes the next handshake message carrying `payload` (encrypted). The
    /// output buffer is sized to the message, not to the Noise maximum.
    pub fn write(&mut self, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if payload.len() > MAX_NOISE_MESSAGE {
            return Err(CryptoError::TooLarge);
        }
        let mut out = vec![0u8; handshake_message_bound(payload.len())];
        let len = self
            .state
            .write_message(payload, &mut out)
            .map_err(|e| CryptoError::Handshake(e.to_string()))?;
        out.truncate(len);
        Ok(out)
    }

    /// Reads the peer's handshake message and returns its decrypted payload.
    pub fn read(&mut self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if message.len() > MAX_NOISE_MESSAGE {
            return Err(CryptoError::TooLarge);
        }
        let mut out = vec![0u8; message.len()];
        let len = self
            .state
            .read_message(message, &mut out)
            .map_err(|e| CryptoError::Handshake(e.to_string()))?;
        out.truncate(len);
        Ok(out)
    }

    /// Whether both handshake messages have been processed.
    pub fn is_finished(&self) -> bool {
        self.state.is_handshake_finished()
    }

    /// Splits the finished handshake into this side's traffic keys.
    pub fn into_traffic_keys(mut self) -> Result<TrafficKeys, CryptoError> {
        if !self.state.is_handshake_finished() {
            return Err(CryptoError::Handshake("handshake not finished".into()));
        }
        // (initiator→responder, responder→initiator), wiped once the ciphers
        // hold their keys.
        let split = Zeroizing::new(self.state.dangerously_get_raw_split());
        let (send, receive) = if self.state.is_initiator() {
            (&split.0, &split.1)
        } else {
            (&split.1, &split.0)
        };
        Ok(TrafficKeys {
            sealer: PacketSealer::new(*send),
            opener: PacketOpener::new(*receive),
        })
    }
}

fn nonce_for(counter: u64) -> Nonce {
    let mut nonce = Nonce::default();
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    nonce
}

/// Seals outgoing packets for one direction.
pub struct PacketSealer {
    cipher: ChaCha20Poly1305,
    next: u64,
}

impl core::fmt::Debug for PacketSealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PacketSealer")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl PacketSealer {
    /// A sealer with `key`, starting at counter 0.
    pub fn new(key: [u8; KEY_LEN]) -> Self {
        PacketSealer {
            cipher: ChaCha20Poly1305::new(&Key::from(key)),
            next: 0,
        }
    }

    /// The counter the next sealed packet will carry.
    pub const fn next_counter(&self) -> u64 {
        self.next
    }

    #[cfg(test)]
    pub(crate) fn set_next_counter(&mut self, next: u64) {
        self.next = next;
    }

    /// Seals one packet: assigns the counter to `header.message_id`, sets the
    /// ENCRYPTED flag and payload length, appends header ‖ ciphertext ‖ tag to
    /// `out`, and returns the counter used.
    pub fn seal(
        &mut self,
        header: &mut Header,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u64, CryptoError> {
        let counter = self.next;
        if counter == u64::MAX {
            return Err(CryptoError::CounterExhausted);
        }
        let payload_len = plaintext
            .len()
            .checked_add(TAG_LEN)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(CryptoError::TooLarge)?;
        header.message_id = counter;
        header.flags.set(Flags::ENCRYPTED, true);
        header.payload_len = payload_len;
        let start = out.len();
        header.encode(out);
        let body_start = out.len();
        out.extend_from_slice(plaintext);
        let (aad, body) = out[start..].split_at_mut(body_start - start);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce_for(counter), aad, body.into())
            .map_err(|_| CryptoError::TooLarge)?;
        out.extend_from_slice(&tag);
        self.next = counter + 1;
        Ok(counter)
    }
}

/// Opens incoming packets for one direction. Holds no replay state: the caller
/// checks the counter with a [`ReplayGuard`](super::replay::ReplayGuard) before
/// and commits it after a successful [`open`](Self::open).
pub struct PacketOpener {
    cipher: ChaCha20Poly1305,
}

impl core::fmt::Debug for PacketOpener {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PacketOpener").finish_non_exhaustive()
    }
}

impl PacketOpener {
    /// An opener with `key`.
    pub fn new(key: [u8; KEY_LEN]) -> Self {
        PacketOpener {
            cipher: ChaCha20Poly1305::new(&Key::from(key)),
        }
    }

    /// Verifies and decrypts a packet body. `header_bytes` is the encoded header
    /// exactly as received (the associated data), `counter` its message id.
    /// On success `out` holds the plaintext; on failure `out` is left empty.
    pub fn open(
        &self,
        header_bytes: &[u8],
        counter: u64,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let split = body
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(CryptoError::Truncated)?;
        let (ciphertext, tag) = body.split_at(split);
        let tag = Tag::try_from(tag).map_err(|_| CryptoError::Truncated)?;
        out.clear();
        out.extend_from_slice(ciphertext);
        let result = self.cipher.decrypt_inout_detached(
            &nonce_for(counter),
            header_bytes,
            out.as_mut_slice().into(),
            &tag,
        );
        if result.is_err() {
            out.clear();
            return Err(CryptoError::Authentication);
        }
        Ok(())
    }
}

/// Which ChaCha20 and Poly1305 implementations this build runs on this CPU.
///
/// ChaCha20 chooses AVX2 or SSE2 at run time. Poly1305 chooses AVX2 at run time
/// unless the build sets `--cfg poly1305_backend="soft"` (this workspace's
/// `.cargo/config.toml` does: the portable Poly1305 is faster for game-sized
/// packets, see `benches/protocol.rs`).
pub fn simd_backend() -> String {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    let avx2 = false;
    let chacha = if cfg!(chacha20_backend = "soft") {
        "portable (forced)"
    } else if avx2 {
        "avx2 (run-time detected)"
    } else if cfg!(any(target_arch = "x86", target_arch = "x86_64")) {
        "sse2"
    } else {
        "portable"
    };
    let poly = if cfg!(poly1305_backend = "soft") {
        "portable (poly1305_backend=\"soft\")"
    } else if avx2 {
        "avx2 (run-time detected)"
    } else {
        "portable"
    };
    format!("chacha20: {chacha}; poly1305: {poly}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::CodecId;

    fn handshake() -> (TrafficKeys, TrafficKeys) {
        let server = KeyPair::generate().unwrap();
        let mut client = NoiseHandshake::initiator(&server.public()).unwrap();
        let mut responder = NoiseHandshake::responder(&server).unwrap();
        let m1 = client.write(b"hello").unwrap();
        assert_eq!(responder.read(&m1).unwrap(), b"hello");
        let m2 = responder.write(b"welcome").unwrap();
        assert_eq!(client.read(&m2).unwrap(), b"welcome");
        (
            client.into_traffic_keys().unwrap(),
            responder.into_traffic_keys().unwrap(),
        )
    }

    #[test]
    fn fresh_keys_per_connection_and_direction() {
        let (mut c1, s1) = handshake();
        let (mut c2, _s2) = handshake();
        let mut header = Header::new(CodecId::Raw, 20);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        c1.sealer.seal(&mut header, b"same", &mut a).unwrap();
        let mut header2 = Header::new(CodecId::Raw, 20);
        c2.sealer.seal(&mut header2, b"same", &mut b).unwrap();
        assert_ne!(a, b, "two connections must not share keys");
        // The server cannot open its own direction's packets with the receive key.
        let mut s1 = s1;
        let mut reply = Vec::new();
        let mut h = Header::new(CodecId::Raw, 20);
        s1.sealer.seal(&mut h, b"same", &mut reply).unwrap();
        assert_ne!(reply, a, "directions must use different keys");
    }

    #[test]
    fn seal_open_and_every_bit_flip_fails() {
        let (mut client, server) = handshake();
        let mut header = Header::new(CodecId::Postcard, 42);
        let mut packet = Vec::new();
        let counter = client
            .sealer
            .seal(&mut header, b"payload bytes", &mut packet)
            .unwrap();
        assert_eq!(counter, 0);
        let decoded = Header::decode(&packet, 1024).unwrap();
        let mut plain = Vec::new();
        server
            .opener
            .open(
                &packet[..decoded.header_len],
                counter,
                decoded.body,
                &mut plain,
            )
            .unwrap();
        assert_eq!(plain, b"payload bytes");

        for bit in 0..packet.len() * 8 {
            let mut tampered = packet.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            let rejected = match Header::decode(&tampered, 1024) {
                Err(_) => true,
                Ok(d) => server
                    .opener
                    .open(
                        &tampered[..d.header_len],
                        d.header.message_id,
                        d.body,
                        &mut plain,
                    )
                    .is_err(),
            };
            assert!(rejected, "bit {bit} flip accepted");
        }
    }

    #[test]
    fn handshake_messages_are_sized_to_their_content() {
        // Before: every `write` allocated (and kept) a 64 KiB buffer.
        let server = KeyPair::generate().unwrap();
        let mut client = NoiseHandshake::initiator(&server.public()).unwrap();
        let mut responder = NoiseHandshake::responder(&server).unwrap();
        let m1 = client.write(&[7; 100]).unwrap();
        assert_eq!(m1.len(), KEY_LEN + 100 + TAG_LEN);
        assert!(
            m1.capacity() <= handshake_message_bound(100),
            "{}",
            m1.capacity()
        );
        assert_eq!(responder.read(&m1).unwrap(), [7; 100]);
        let m2 = responder.write(b"").unwrap();
        assert_eq!(m2.len(), KEY_LEN + TAG_LEN);
        assert!(m2.capacity() < 1024, "{}", m2.capacity());
        assert_eq!(
            NoiseHandshake::initiator(&server.public())
                .unwrap()
                .write(&vec![0; MAX_NOISE_MESSAGE + 1]),
            Err(CryptoError::TooLarge)
        );
    }

    #[test]
    fn key_pairs_are_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<KeyPair>();
    }

    #[test]
    fn wrong_server_key_fails_the_handshake() {
        let server = KeyPair::generate().unwrap();
        let impostor = KeyPair::generate().unwrap();
        let mut client = NoiseHandshake::initiator(&server.public()).unwrap();
        let mut responder = NoiseHandshake::responder(&impostor).unwrap();
        let m1 = client.write(b"hello").unwrap();
        assert!(responder.read(&m1).is_err());
    }

    #[test]
    fn counter_never_wraps() {
        let (mut client, _) = handshake();
        client.sealer.set_next_counter(u64::MAX - 1);
        let mut out = Vec::new();
        let mut header = Header::new(CodecId::Raw, 20);
        assert_eq!(
            client.sealer.seal(&mut header, b"x", &mut out),
            Ok(u64::MAX - 1)
        );
        assert_eq!(
            client.sealer.seal(&mut header, b"x", &mut out),
            Err(CryptoError::CounterExhausted)
        );
    }
}
