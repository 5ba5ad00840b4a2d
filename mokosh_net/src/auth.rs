//! Client authentication: who is this client?
//!
//! The handshake carries an opaque **token** from the client (`ClientConfig`
//! sets it, the server sees it in the handshake). Deciding whether that token
//! is good can be slow — a database lookup, an HTTP call to a matchmaking
//! backend — so authentication is evaluated **off the game loop**: the server
//! plugin hands each [`AuthRequest`] to an [`AuthProvider`] on a tokio runtime
//! and polls the resulting [`AuthFuture`]. A provider answers with an
//! [`Identity`] (accept) or an [`AuthError`] (reject; the client is
//! disconnected with `DisconnectReason::AuthFailed`).
//!
//! Providers shipped here:
//!
//! | Provider | Use |
//! |---|---|
//! | [`TokenAuthProvider`] (+ [`TokenIssuer`]) | Production: HMAC-SHA256 signed, expiring tokens minted by your backend. |
//! | [`FnAuthProvider`] | Your own logic as an async closure. |
//! | [`DevAuthProvider`] | Development only: accepts everyone. |
//! | [`RejectAllProvider`] | Rejects everyone (what [`default_provider`] returns in release builds). |
//!
//! # Signed tokens (`v1`)
//!
//! A matchmaking/login backend that shares a secret with the game server mints
//! a token per player; the client passes it through unchanged; the game server
//! checks it with [`TokenAuthProvider`] without calling back to the backend.
//! The format is simple enough to mint from any language:
//!
//! ```text
//! token   = "v1" "." b64(payload) "." b64(tag)          (ASCII, at most 1024 bytes)
//! payload = expiry ‖ user_id
//!   expiry  = 8 bytes: unsigned 64-bit big-endian Unix time in whole seconds;
//!             the token is accepted while now ≤ expiry + leeway
//!   user_id = 1..=256 bytes of UTF-8 (becomes Identity::user_id)
//! tag     = HMAC-SHA256(key = secret, message = "mokosh-token-v1" ‖ payload)
//!             (the 15 ASCII bytes of the domain string, no terminator,
//!              immediately followed by the payload; tag is 32 bytes)
//! b64     = base64url (RFC 4648 §5 alphabet `A–Z a–z 0–9 - _`), no `=` padding,
//!           canonical (unused trailing bits must be zero)
//! secret  = at least 32 bytes, shared by issuer and game server; random bytes
//!           from a CSPRNG are strongly recommended
//! ```
//!
//! The verifier rejects, without panicking on any input:
//! tokens longer than 1024 bytes, a prefix other than `v1.`, any number of `.`
//! separators other than two, invalid or padded base64url, a tag that is not
//! 32 bytes, a payload shorter than 9 or longer than 264 bytes
//! ([`AuthError::Malformed`]); a tag that does not match, compared in constant
//! time ([`AuthError::BadSignature`]); a user id that is not UTF-8
//! ([`AuthError::Malformed`], checked after the tag); and tokens whose
//! `expiry + leeway` lies in the past ([`AuthError::Expired`]; default leeway
//! 30 s, see [`TokenAuthProvider::with_leeway`]).
//!
//! Tokens are bearer credentials: anyone holding one can use it until it
//! expires, so keep TTLs short (minutes) and send them over TLS to the client.
//!
//! Minting in Python, for a backend not written in Rust:
//!
//! ```python
//! import base64, hashlib, hmac, struct, time
//!
//! def b64(b: bytes) -> str:
//!     return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")
//!
//! def mint(secret: bytes, user_id: str, ttl_seconds: int) -> str:
//!     payload = struct.pack(">Q", int(time.time()) + ttl_seconds) + user_id.encode("utf-8")
//!     tag = hmac.new(secret, b"mokosh-token-v1" + payload, hashlib.sha256).digest()
//!     return "v1." + b64(payload) + "." + b64(tag)
//! ```
//!
//! Test vector: secret = the 32 ASCII bytes `0123456789abcdef0123456789abcdef`,
//! user id `alice`, expiry `1700000000` (2023-11-14T22:13:20Z):
//!
//! ```text
//! v1.AAAAAGVT8QBhbGljZQ.tYys-Npe8Ik9pM-aQ_GERX6T-JI8pIiRCEjdgTnmDa0
//! ```
//!
//! Issue → verify round trip:
//!
//! ```
//! use std::time::Duration;
//! use mokosh_net::auth::{AuthError, TokenAuthProvider, TokenIssuer};
//!
//! let secret = b"a shared secret of at least 32 bytes!!";
//!
//! // On the matchmaking backend:
//! let issuer = TokenIssuer::new(secret)?;
//! let token = issuer.issue("alice", Duration::from_secs(300))?;
//! assert!(token.starts_with("v1."));
//!
//! // On the game server (normally through the `AuthProvider` trait, off the game loop):
//! let provider = TokenAuthProvider::new(secret)?;
//! let identity = provider.verify(token.as_bytes())?;
//! assert_eq!(identity.user_id, "alice");
//! assert!(identity.expires_at.is_some());
//!
//! // A different secret does not verify it.
//! let other = TokenAuthProvider::new(b"another secret, also 32 bytes long")?;
//! assert_eq!(other.verify(token.as_bytes()), Err(AuthError::BadSignature));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Writing your own provider
//!
//! Implement [`AuthProvider`] directly, or wrap an async closure in
//! [`FnAuthProvider`]:
//!
//! ```
//! use std::sync::Arc;
//! use mokosh_net::auth::{AuthError, AuthProvider, AuthRequest, FnAuthProvider, Identity};
//!
//! let allowed = Arc::new(vec!["key-alice".to_string(), "key-bob".to_string()]);
//! let provider = FnAuthProvider::new(move |req: AuthRequest| {
//!     let allowed = Arc::clone(&allowed);
//!     async move {
//!         // Any async work can happen here (database, HTTP, ...).
//!         let key = std::str::from_utf8(&req.token).map_err(|_| AuthError::Malformed)?;
//!         if allowed.iter().any(|k| k == key) {
//!             Ok(Identity::new(key.trim_start_matches("key-")))
//!         } else {
//!             Err(AuthError::Rejected("unknown API key".into()))
//!         }
//!     }
//! });
//! let provider: Arc<dyn AuthProvider> = Arc::new(provider);
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # let req = AuthRequest { client_id: 1, remote: None, token: b"key-bob".to_vec() };
//! # assert_eq!(rt.block_on(provider.authenticate(req)).unwrap().user_id, "bob");
//! ```
//!
//! Implementing the trait by hand: return a boxed `'static` future, so clone
//! whatever state the future needs out of `&self` first.
//!
//! ```
//! use std::sync::Arc;
//! use mokosh_net::auth::{AuthError, AuthFuture, AuthProvider, AuthRequest, Identity};
//!
//! struct BanList {
//!     banned: Arc<std::collections::HashSet<String>>,
//! }
//!
//! impl AuthProvider for BanList {
//!     fn authenticate(&self, request: AuthRequest) -> AuthFuture {
//!         let banned = Arc::clone(&self.banned);
//!         Box::pin(async move {
//!             let name = String::from_utf8(request.token).map_err(|_| AuthError::Malformed)?;
//!             if banned.contains(&name) {
//!                 return Err(AuthError::Rejected("banned".into()));
//!             }
//!             Ok(Identity::new(name))
//!         })
//!     }
//! }
//! ```

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

mod token;

pub use token::{
    DEFAULT_LEEWAY, MAX_TOKEN_LEN, MAX_USER_ID_LEN, MIN_SECRET_LEN, TOKEN_DOMAIN, TOKEN_PREFIX,
    TokenAuthProvider, TokenError, TokenIssuer,
};

/// One client asking to be let in. Handed to [`AuthProvider::authenticate`].
///
/// `Debug` does not print the token itself (only its length): tokens are
/// credentials and must not end up in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The server's id for the connecting client.
    pub client_id: u64,
    /// The client's address, when the transport knows it.
    pub remote: Option<SocketAddr>,
    /// The opaque token the client sent in its handshake.
    pub token: Vec<u8>,
}

impl fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("client_id", &self.client_id)
            .field("remote", &self.remote)
            .field("token_len", &self.token.len())
            .finish()
    }
}

/// Who an accepted client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The application's user id (for signed tokens: the id the issuer signed).
    pub user_id: String,
    /// When the credential stops being valid, if it expires. The server does
    /// not disconnect a client when this passes; the game may.
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    /// An identity with no expiry.
    pub fn new(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            expires_at: None,
        }
    }
}

/// Why a client was not let in. The client is disconnected with
/// `DisconnectReason::AuthFailed`; the detail is logged on the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token is not in the expected format.
    #[error("malformed token")]
    Malformed,
    /// The token's signature does not match (forged, tampered, or another secret).
    #[error("bad token signature")]
    BadSignature,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// The provider decided to refuse this client.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The provider could not decide (backend down, timeout, ...).
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

/// The future an [`AuthProvider`] returns: owned, `Send`, `'static`, so it can
/// run on any tokio worker.
pub type AuthFuture = Pin<Box<dyn Future<Output = Result<Identity, AuthError>> + Send + 'static>>;

/// Decides whether a client may connect.
///
/// Called once per handshake from a task on the server's IO runtime, never on
/// the game thread, so it may await slow I/O. It shares those worker threads
/// with the sockets, though: blocking or CPU-heavy work (a password hash, a
/// synchronous database driver) belongs in `tokio::task::spawn_blocking`,
/// awaited from the future. The server bounds the work (see
/// `AuthLimits` in `mokosh_net::server`): at most `max_concurrent` providers
/// run at once, a request unanswered after `timeout` is abandoned (its future
/// dropped, the client refused), and a request whose connection closes first
/// is aborted the same way. The returned future must not borrow
/// `self`: clone what it needs (see the [module docs](self) for examples).
/// A provider should bound its own latency (e.g. `tokio::time::timeout`) and
/// answer [`AuthError::Unavailable`] rather than hang.
pub trait AuthProvider: Send + Sync + 'static {
    /// Checks `request` and returns who the client is, or why it is refused.
    fn authenticate(&self, request: AuthRequest) -> AuthFuture;
}

/// **Development only**: accepts every client.
///
/// The identity is the token interpreted as UTF-8 when it is valid UTF-8 and
/// not empty, else `guest-<client_id>`. Constructing one logs a warning
/// ("development authentication: every client is accepted; do not use in
/// production").
#[derive(Debug)]
pub struct DevAuthProvider {
    _private: (),
}

impl DevAuthProvider {
    /// Creates the provider and logs a warning that every client is accepted.
    pub fn new() -> Self {
        tracing::warn!(
            "development authentication: every client is accepted; do not use in production"
        );
        Self { _private: () }
    }

    /// The identity this provider gives `request` (no side effects).
    pub fn identity_for(request: &AuthRequest) -> Identity {
        match std::str::from_utf8(&request.token) {
            Ok(name) if !name.is_empty() => Identity::new(name),
            _ => Identity::new(format!("guest-{}", request.client_id)),
        }
    }
}

impl Default for DevAuthProvider {
    /// Same as [`DevAuthProvider::new`] (logs the warning).
    fn default() -> Self {
        Self::new()
    }
}

impl AuthProvider for DevAuthProvider {
    fn authenticate(&self, request: AuthRequest) -> AuthFuture {
        Box::pin(std::future::ready(Ok(Self::identity_for(&request))))
    }
}

/// Rejects every client with [`AuthError::Rejected`] carrying a fixed message.
///
/// [`default_provider`] returns [`RejectAllProvider::unconfigured`] in release
/// builds, so a server shipped without an explicit provider fails closed.
#[derive(Debug, Clone)]
pub struct RejectAllProvider {
    message: String,
}

/// The message of [`RejectAllProvider::unconfigured`].
pub const UNCONFIGURED_MESSAGE: &str = "no authentication provider configured: \
    the server operator must set one (e.g. TokenAuthProvider); \
    DevAuthProvider is only the default in debug builds";

impl RejectAllProvider {
    /// Rejects everyone with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Rejects everyone with [`UNCONFIGURED_MESSAGE`], telling the operator to
    /// configure a provider.
    pub fn unconfigured() -> Self {
        Self::new(UNCONFIGURED_MESSAGE)
    }

    /// The rejection message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl AuthProvider for RejectAllProvider {
    fn authenticate(&self, _request: AuthRequest) -> AuthFuture {
        Box::pin(std::future::ready(Err(AuthError::Rejected(
            self.message.clone(),
        ))))
    }
}

/// The kind of build a default is chosen for (see [`default_provider_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildProfile {
    /// `cfg(debug_assertions)`: development.
    Debug,
    /// No `debug_assertions`: what ships.
    Release,
}

impl BuildProfile {
    /// The profile this crate was compiled with.
    pub const CURRENT: BuildProfile = if cfg!(debug_assertions) {
        BuildProfile::Debug
    } else {
        BuildProfile::Release
    };
}

/// The provider a server uses when the application configured none:
/// [`default_provider_for`]`(`[`BuildProfile::CURRENT`]`)`.
pub fn default_provider() -> Arc<dyn AuthProvider> {
    default_provider_for(BuildProfile::CURRENT)
}

/// The default provider of a build `profile`:
///
/// * [`BuildProfile::Debug`]: a [`DevAuthProvider`] that accepts everyone (and
///   logs a warning), so examples and local testing work out of the box.
/// * [`BuildProfile::Release`]: a [`RejectAllProvider::unconfigured`] that
///   rejects every client with a message telling the operator to configure a
///   provider (and logs an error once, here). A release server therefore never
///   silently runs without authentication; set a [`TokenAuthProvider`] (or
///   your own [`AuthProvider`]) explicitly, or opt in to [`DevAuthProvider`]
///   knowingly.
///
/// Taking the profile as a value lets the release behaviour be tested in a
/// debug build.
pub fn default_provider_for(profile: BuildProfile) -> Arc<dyn AuthProvider> {
    match profile {
        BuildProfile::Debug => Arc::new(DevAuthProvider::new()),
        BuildProfile::Release => {
            tracing::error!("{UNCONFIGURED_MESSAGE}; every client will be rejected");
            Arc::new(RejectAllProvider::unconfigured())
        }
    }
}

/// Adapts an async closure `Fn(AuthRequest) -> impl Future<Output =
/// Result<Identity, AuthError>>` into an [`AuthProvider`]. See the
/// [module docs](self) for an example.
pub struct FnAuthProvider<F> {
    f: F,
}

impl<F> fmt::Debug for FnAuthProvider<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnAuthProvider").finish_non_exhaustive()
    }
}

impl<F, Fut> FnAuthProvider<F>
where
    F: Fn(AuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Identity, AuthError>> + Send + 'static,
{
    /// Wraps `f`; each authentication calls it once and awaits the future.
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F, Fut> AuthProvider for FnAuthProvider<F>
where
    F: Fn(AuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Identity, AuthError>> + Send + 'static,
{
    fn authenticate(&self, request: AuthRequest) -> AuthFuture {
        Box::pin((self.f)(request))
    }
}
