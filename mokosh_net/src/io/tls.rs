//! TLS (`wss://`) for the WebSocket transport, with rustls on the `ring`
//! crypto provider. Only built with the `tls` cargo feature.
//!
//! The Mokosh protocol already encrypts and authenticates every packet end to
//! end (Noise + ChaCha20-Poly1305), so TLS adds no secrecy for Mokosh traffic;
//! it exists for deployments that need `wss://`: browsers (HTML5 exports) on
//! HTTPS pages, TLS-terminating proxies, networks that only pass TLS.
//!
//! * Server: build a config with [`server_config_from_pem`] (or by hand with
//!   the re-exported [`rustls`]) and pass it to [`websocket::listen_tls`].
//! * Client: [`websocket::connect`] accepts `wss://` URLs and trusts the
//!   Mozilla root store ([`webpki_roots_client_config`]);
//!   [`websocket::connect_with_tls`] takes any client config, e.g. one from
//!   [`client_config_from_pem`] for a self-signed or private CA.
//!
//! Configs built here use the `ring` provider explicitly, so they work even if
//! another crate in the build enables a second rustls provider.
//!
//! [`websocket::listen_tls`]: super::websocket::listen_tls
//! [`websocket::connect`]: super::websocket::connect
//! [`websocket::connect_with_tls`]: super::websocket::connect_with_tls

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The rustls version this crate is built against, so callers can build
/// configs without naming a matching version themselves.
pub use rustls;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate PEM holds no `CERTIFICATE` section.
    #[error("no certificate in the PEM input")]
    NoCertificates,
    /// The key PEM holds no private key section (PKCS#8, PKCS#1 or SEC1).
    #[error("no private key in the PEM input")]
    NoPrivateKey,
    /// The PEM input is malformed.
    #[error("malformed PEM: {0}")]
    Pem(#[source] pem::Error),
    /// rustls refused the certificates or key (e.g. unsupported key type, key
    /// not matching the certificate, unparsable certificate).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider of every config built by this module.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every `CERTIFICATE` section of `pem_bytes`, in order (at least one).
fn certificates(pem_bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::Pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates);
    }
    Ok(certs)
}

/// A server config from a PEM certificate chain (leaf first, then
/// intermediates) and a PEM private key (PKCS#8, PKCS#1 or SEC1), with the
/// `ring` provider, TLS 1.2 and 1.3, and no client authentication.
///
/// No ALPN protocol is configured: WebSocket clients (browsers included)
/// connect fine without one.
pub fn server_config_from_pem(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(cert_chain_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey,
        other => TlsError::Pem(other),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// A client config that trusts exactly the certificates in `roots_pem` (a
/// private CA, or a self-signed server certificate), with the `ring` provider.
pub fn client_config_from_pem(roots_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(roots_pem)? {
        roots.add(cert)?;
    }
    client_config(roots)
}

/// The client config `websocket::connect` uses for `wss://` URLs: the
/// Mozilla root store (`webpki-roots`), the `ring` provider. Built once.
pub fn webpki_roots_client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            client_config(roots).expect("the ring provider supports the default protocol versions")
        })
        .clone()
}

fn client_config(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Whether an IO error carries a rustls error (a failed TLS handshake), and
/// if so its text.
pub(crate) fn tls_failure(error: &std::io::Error) -> Option<String> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(|e| format!("TLS: {e}"))
}
