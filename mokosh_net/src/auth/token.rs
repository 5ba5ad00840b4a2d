//! HMAC-SHA256 signed tokens (`v1`); the format is specified in the
//! [`auth`](super) module docs.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{AuthError, AuthFuture, AuthProvider, AuthRequest, Identity};

type HmacSha256 = Hmac<Sha256>;

/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest token the verifier looks at, in bytes; longer ones are rejected
/// as [`AuthError::Malformed`] before any decoding.
pub const MAX_TOKEN_LEN: usize = 1024;
/// Longest user id a token may carry, in bytes of UTF-8.
pub const MAX_USER_ID_LEN: usize = 256;
/// The text every `v1` token starts with.
pub const TOKEN_PREFIX: &str = "v1.";
/// The domain-separation string prepended to the payload before MACing.
pub const TOKEN_DOMAIN: &[u8] = b"mokosh-token-v1";
/// How long after its expiry a token is still accepted by default (clock skew
/// between issuer and game server).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

const EXPIRY_LEN: usize = 8;
const TAG_LEN: usize = 32;
const MAX_PAYLOAD_LEN: usize = EXPIRY_LEN + MAX_USER_ID_LEN;
/// base64url without padding: 4 characters per 3 bytes, rounded up.
const fn b64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}
const MAX_PAYLOAD_B64_LEN: usize = b64_len(MAX_PAYLOAD_LEN);
const TAG_B64_LEN: usize = b64_len(TAG_LEN);

/// Why a [`TokenIssuer`] or [`TokenAuthProvider`] could not be built, or a
/// token could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The shared secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("token secret is {len} bytes; at least {MIN_SECRET_LEN} are required")]
    SecretTooShort {
        /// The length that was given.
        len: usize,
    },
    /// The user id is empty.
    #[error("user id is empty")]
    EmptyUserId,
    /// The user id is longer than [`MAX_USER_ID_LEN`] bytes.
    #[error("user id is {len} bytes; at most {MAX_USER_ID_LEN} are allowed")]
    UserIdTooLong {
        /// The length that was given.
        len: usize,
    },
    /// The expiry is before the Unix epoch or not representable.
    #[error("token expiry is out of range")]
    ExpiryOutOfRange,
}

fn keyed_mac(secret: &[u8]) -> Result<HmacSha256, TokenError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(TokenError::SecretTooShort { len: secret.len() });
    }
    // HMAC accepts keys of any length; the error branch is unreachable but
    // handled rather than unwrapped.
    HmacSha256::new_from_slice(secret).map_err(|_| TokenError::SecretTooShort { len: secret.len() })
}

fn mac_over(key: &HmacSha256, payload: &[u8]) -> HmacSha256 {
    let mut mac = key.clone();
    mac.update(TOKEN_DOMAIN);
    mac.update(payload);
    mac
}

/// Mints `v1` tokens; runs on the backend that decides who may play
/// (matchmaking, login service). `Debug` does not print the secret.
#[derive(Clone)]
pub struct TokenIssuer {
    key: HmacSha256,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer").finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// An issuer signing with `secret` (at least [`MIN_SECRET_LEN`] bytes).
    pub fn new(secret: &[u8]) -> Result<Self, TokenError> {
        Ok(Self {
            key: keyed_mac(secret)?,
        })
    }

    /// A token for `user_id` that expires `ttl` from now (system clock).
    pub fn issue(&self, user_id: &str, ttl: Duration) -> Result<String, TokenError> {
        let expires_at = SystemTime::now()
            .checked_add(ttl)
            .ok_or(TokenError::ExpiryOutOfRange)?;
        self.issue_at(user_id, expires_at)
    }

    /// A token for `user_id` that expires at `expires_at` (truncated to whole
    /// seconds). `user_id` must be 1..=[`MAX_USER_ID_LEN`] bytes.
    pub fn issue_at(&self, user_id: &str, expires_at: SystemTime) -> Result<String, TokenError> {
        if user_id.is_empty() {
            return Err(TokenError::EmptyUserId);
        }
        if user_id.len() > MAX_USER_ID_LEN {
            return Err(TokenError::UserIdTooLong { len: user_id.len() });
        }
        let expiry = expires_at
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TokenError::ExpiryOutOfRange)?
            .as_secs();
        let mut payload = Vec::with_capacity(EXPIRY_LEN + user_id.len());
        payload.extend_from_slice(&expiry.to_be_bytes());
        payload.extend_from_slice(user_id.as_bytes());
        let tag = mac_over(&self.key, &payload).finalize().into_bytes();

        let mut token =
            String::with_capacity(TOKEN_PREFIX.len() + b64_len(payload.len()) + 1 + TAG_B64_LEN);
        token.push_str(TOKEN_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_slice(), &mut token);
        Ok(token)
    }
}

/// Where a [`TokenAuthProvider`] reads the current time.
type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Verifies `v1` tokens minted by a [`TokenIssuer`] (or any implementation of
/// the format in the [module docs](super)) sharing the same secret.
///
/// Verification is synchronous and cheap (one HMAC); through
/// [`AuthProvider`] it returns an already-completed future. The signature is
/// compared in constant time, and no input makes it panic. `Debug` does not
/// print the secret.
#[derive(Clone)]
pub struct TokenAuthProvider {
    key: HmacSha256,
    leeway: Duration,
    clock: Clock,
}

impl fmt::Debug for TokenAuthProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuthProvider")
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl TokenAuthProvider {
    /// A provider checking tokens signed with `secret` (at least
    /// [`MIN_SECRET_LEN`] bytes), using the system clock and
    /// [`DEFAULT_LEEWAY`].
    pub fn new(secret: &[u8]) -> Result<Self, TokenError> {
        Ok(Self {
            key: keyed_mac(secret)?,
            leeway: DEFAULT_LEEWAY,
            clock: Arc::new(SystemTime::now),
        })
    }

    /// Reads the current time from `clock` instead of the system clock (a
    /// plain `fn() -> SystemTime` works; so does a closure). For tests and
    /// simulations.
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Accepts tokens up to `leeway` past their expiry (default
    /// [`DEFAULT_LEEWAY`]).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The configured leeway.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Verifies `token` against the provider's clock.
    pub fn verify(&self, token: &[u8]) -> Result<Identity, AuthError> {
        self.verify_at(token, (self.clock)())
    }

    /// Verifies `token` as if the time were `now`.
    ///
    /// Accepted while `now ≤ expiry + leeway`; the returned identity's
    /// `expires_at` is the signed expiry (without leeway).
    pub fn verify_at(&self, token: &[u8], now: SystemTime) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let rest = token
            .strip_prefix(TOKEN_PREFIX.as_bytes())
            .ok_or(AuthError::Malformed)?;
        let mut parts = rest.split(|&b| b == b'.');
        let (Some(payload_b64), Some(tag_b64), None) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        if payload_b64.len() > MAX_PAYLOAD_B64_LEN || tag_b64.len() != TAG_B64_LEN {
            return Err(AuthError::Malformed);
        }

        // Decode into fixed buffers sized for the largest valid token. The
        // length checks above guarantee they are big enough for any input
        // that can decode successfully; anything else is an error, not a panic.
        let mut payload_buf = [0u8; MAX_PAYLOAD_LEN];
        let payload_len = URL_SAFE_NO_PAD
            .decode_slice(payload_b64, &mut payload_buf)
            .map_err(|_| AuthError::Malformed)?;
        let payload = payload_buf.get(..payload_len).ok_or(AuthError::Malformed)?;
        let mut tag_buf = [0u8; TAG_LEN + 3];
        let tag_len = URL_SAFE_NO_PAD
            .decode_slice(tag_b64, &mut tag_buf)
            .map_err(|_| AuthError::Malformed)?;
        if tag_len != TAG_LEN || payload.len() <= EXPIRY_LEN {
            return Err(AuthError::Malformed);
        }

        mac_over(&self.key, payload)
            .verify_slice(&tag_buf[..TAG_LEN])
            .map_err(|_| AuthError::BadSignature)?;

        // Authentic from here on.
        let (expiry_bytes, user_bytes) = payload.split_at(EXPIRY_LEN);
        let mut expiry = [0u8; EXPIRY_LEN];
        expiry.copy_from_slice(expiry_bytes);
        let expiry = u64::from_be_bytes(expiry);
        let user_id = std::str::from_utf8(user_bytes).map_err(|_| AuthError::Malformed)?;

        // An expiry too far in the future to represent never expires.
        let expires_at = UNIX_EPOCH.checked_add(Duration::from_secs(expiry));
        if let Some(deadline) = expires_at.and_then(|at| at.checked_add(self.leeway))
            && now > deadline
        {
            return Err(AuthError::Expired);
        }
        Ok(Identity {
            user_id: user_id.to_owned(),
            expires_at,
        })
    }
}

impl AuthProvider for TokenAuthProvider {
    fn authenticate(&self, request: AuthRequest) -> AuthFuture {
        Box::pin(std::future::ready(self.verify(&request.token)))
    }
}
