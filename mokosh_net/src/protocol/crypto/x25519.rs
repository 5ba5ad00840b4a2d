//! X25519 for the Noise handshake, plugged into `snow` through its resolver.
//!
//! `snow`'s built-in X25519 re-derives a static public key from the private key
//! every time a handshake state is built (one scalar multiplication per hello
//! on the server) and never zeroizes its keys. [`Resolver`] keeps `snow`'s
//! hash, cipher and random source but supplies [`X25519`], which
//!
//! * takes the server's public key from its [`KeyPair`] (derived once, when the
//!   pair was made) instead of recomputing it per handshake;
//! * zeroizes the static and ephemeral private keys when the handshake state is
//!   dropped;
//! * computes exactly what `snow`'s own implementation computes (clamped
//!   Montgomery-ladder multiplication, RFC 7748), so the wire format and the
//!   golden vectors are unchanged.

use curve25519_dalek::montgomery::MontgomeryPoint;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::keys::KeyPair;
use super::{CryptoError, KEY_LEN};

/// The public key for `private` (X25519 with the base point).
pub(super) fn public_key(private: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    MontgomeryPoint::mul_base_clamped(*private).to_bytes()
}

/// Fills `out` from the operating system's random source (`snow`'s resolver).
pub(super) fn fill_random(out: &mut [u8]) -> Result<(), CryptoError> {
    let mut rng = DefaultResolver
        .resolve_rng()
        .ok_or_else(|| CryptoError::Handshake("no random source".into()))?;
    rng.try_fill_bytes(out)
        .map_err(|error| CryptoError::Handshake(error.to_string()))
}

/// `snow`'s default resolver with [`X25519`] for Diffie-Hellman. When built for
/// a responder it knows the static key pair, so setting that private key does
/// not re-derive its public key.
pub(super) struct Resolver {
    known: Option<KeyPair>,
}

impl Resolver {
    /// A resolver that derives every public key itself (the client side).
    pub(super) const fn new() -> Self {
        Resolver { known: None }
    }

    /// A resolver that reuses `keypair`'s public key for its private key.
    pub(super) fn with_static(keypair: &KeyPair) -> Self {
        Resolver {
            known: Some(keypair.clone()),
        }
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        DefaultResolver.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(X25519 {
                private: Zeroizing::new([0; KEY_LEN]),
                public: [0; KEY_LEN],
                known: self.known.clone(),
            })),
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// One X25519 key slot of a Noise handshake state (static or ephemeral).
struct X25519 {
    private: Zeroizing<[u8; KEY_LEN]>,
    public: [u8; KEY_LEN],
    /// A pair whose public key is already known (the server's static key).
    known: Option<KeyPair>,
}

impl Dh for X25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        KEY_LEN
    }

    fn priv_len(&self) -> usize {
        KEY_LEN
    }

    fn set(&mut self, private: &[u8]) {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        let len = private.len().min(KEY_LEN);
        key[..len].copy_from_slice(&private[..len]);
        self.public = match &self.known {
            // The static key: its public half was derived when the pair was made.
            Some(pair) if bool::from(pair.private_bytes().ct_eq(&*key)) => pair.public().0,
            _ => public_key(&key),
        };
        self.private = key;
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rng.try_fill_bytes(key.as_mut())?;
        self.public = public_key(&key);
        self.private = key;
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        self.private.as_ref()
    }

    fn dh(&self, public: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        // `snow` passes its key buffers, which may be longer than the key.
        let point: [u8; KEY_LEN] = public
            .get(..KEY_LEN)
            .and_then(|key| key.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        let shared = Zeroizing::new(MontgomeryPoint(point).mul_clamped(*self.private).to_bytes());
        out.get_mut(..KEY_LEN)
            .ok_or(snow::Error::Dh)?
            .copy_from_slice(shared.as_ref());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_what_snow_computes() {
        let bob = KeyPair::generate().unwrap();
        for seed in 0..8u8 {
            let private = [seed.wrapping_mul(37).wrapping_add(1); KEY_LEN];
            let mut ours = Resolver::new()
                .resolve_dh(&DHChoice::Curve25519)
                .expect("x25519");
            let mut theirs = DefaultResolver
                .resolve_dh(&DHChoice::Curve25519)
                .expect("snow x25519");
            ours.set(&private);
            theirs.set(&private);
            assert_eq!(ours.pubkey(), theirs.pubkey());
            assert_eq!(ours.privkey(), theirs.privkey());
            let (mut a, mut b) = ([0u8; KEY_LEN], [0u8; KEY_LEN]);
            // `snow` hands over a longer key buffer; only the first 32 bytes count.
            let mut buffer = [0xFFu8; 56];
            buffer[..KEY_LEN].copy_from_slice(&bob.public().0);
            ours.dh(&buffer, &mut a).unwrap();
            theirs.dh(&buffer, &mut b).unwrap();
            assert_eq!(a, b);
        }
        let slot = Resolver::new()
            .resolve_dh(&DHChoice::Curve25519)
            .expect("x25519");
        assert!(slot.dh(&[1; 16], &mut [0; KEY_LEN]).is_err(), "short key");
    }

    #[test]
    fn the_static_key_reuses_its_known_public_key() {
        let pair = KeyPair::generate().unwrap();
        let mut slot = Resolver::with_static(&pair)
            .resolve_dh(&DHChoice::Curve25519)
            .expect("x25519");
        slot.set(pair.private_bytes());
        assert_eq!(slot.pubkey(), pair.public().0);
        // Any other key is still derived, not mistaken for the static one.
        slot.set(&[7; KEY_LEN]);
        assert_eq!(slot.pubkey(), public_key(&[7; KEY_LEN]));
    }
}
