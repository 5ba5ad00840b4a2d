//! WebSocket over TCP (`ws://`), and over TLS (`wss://`, `tls` feature), on an
//! [`IoRuntime`].
//!
//! The server checks its connection caps before the WebSocket upgrade, bounds
//! the TLS handshake (if any) plus the upgrade with
//! [`IoConfig::handshake_timeout`] and enforces [`IoConfig::allowed_origins`]
//! during the upgrade. Every accepted connection gets its own task; a hostile or
//! broken connection only ever ends itself.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{StatusCode, header};
use tracing::debug;

use super::conn::{self, EndpointShared};
use super::limits::{AcceptLimiter, Unauthenticated, ip_key};
use super::{
    ClientEndpoint, CloseCause, ConnectionId, Counter, EndpointGuard, IoConfig, IoRuntime,
    ServerEndpoint,
};

/// Listen backlog for server sockets.
const BACKLOG: u32 = 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors) to avoid spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// The message of the `HandshakeFailed` a `wss://` URL gets without the `tls` feature.
#[cfg(not(feature = "tls"))]
const WSS_NEEDS_TLS: &str = "wss:// needs the `tls` feature";

/// What wraps accepted TCP streams before the WebSocket upgrade.
#[derive(Clone)]
enum ServerWrap {
    /// `ws://`: the upgrade runs on the TCP stream.
    Plain,
    /// `wss://`: a TLS handshake first.
    #[cfg(feature = "tls")]
    Tls(tokio_rustls::TlsAcceptor),
}

/// Binds `addr` and starts accepting `ws://` connections on `runtime`.
///
/// Returns an error only if binding fails; everything after that is reported
/// through [`ServerEndpoint::events`] and [`ServerEndpoint::counters`].
pub fn listen(
    runtime: &IoRuntime,
    addr: SocketAddr,
    config: IoConfig,
) -> std::io::Result<ServerEndpoint> {
    listen_with(runtime, addr, config, ServerWrap::Plain)
}

/// Binds `addr` and starts accepting `wss://` connections on `runtime`
/// (`tls` feature).
///
/// Like [`listen`], with a TLS handshake before the WebSocket upgrade. The
/// TLS handshake and the upgrade together must finish within
/// [`IoConfig::handshake_timeout`] (else `handshake_timeouts` is counted); a
/// failed TLS handshake (a plain `ws://` client, an untrusting client, garbage)
/// is counted in `handshake_failures` and ends only that connection. See
/// [`super::tls::server_config_from_pem`] for building `tls`.
#[cfg(feature = "tls")]
pub fn listen_tls(
    runtime: &IoRuntime,
    addr: SocketAddr,
    config: IoConfig,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<ServerEndpoint> {
    listen_with(
        runtime,
        addr,
        config,
        ServerWrap::Tls(tokio_rustls::TlsAcceptor::from(tls)),
    )
}

fn listen_with(
    runtime: &IoRuntime,
    addr: SocketAddr,
    config: IoConfig,
    wrap: ServerWrap,
) -> std::io::Result<ServerEndpoint> {
    let listener = {
        let _enter = runtime.handle().enter();
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)?
    };
    let local_addr = listener.local_addr().ok();
    let connections = config.max_connections;
    let (shared, events) = EndpointShared::new(config, connections);
    let counters = Arc::clone(&shared.counters);
    let (shutdown_tx, shutdown_rx) = watch::channel(());
    runtime
        .handle()
        .spawn(accept_loop(listener, wrap, shared, shutdown_rx));
    Ok(ServerEndpoint {
        events,
        local_addr,
        counters,
        _guard: EndpointGuard::Task(shutdown_tx),
    })
}

/// Starts connecting to `url` (`ws://host:port/path`) in the background.
///
/// The outcome arrives on [`ClientEndpoint::events`]: [`IoEvent::Opened`]
/// on success, otherwise a lone [`IoEvent::Closed`] with
/// [`CloseCause::Io`], [`CloseCause::HandshakeFailed`] or
/// [`CloseCause::HandshakeTimeout`]. The connection id is always
/// `ConnectionId(1)`.
///
/// `wss://` URLs need the `tls` feature; they then trust the Mozilla root
/// store (see `connect_with_tls` for other roots). Without the feature a
/// `wss://` URL ends with `HandshakeFailed("wss:// needs the `tls` feature")`.
///
/// [`IoEvent::Opened`]: super::IoEvent::Opened
/// [`IoEvent::Closed`]: super::IoEvent::Closed
pub fn connect(runtime: &IoRuntime, url: &str, config: IoConfig) -> ClientEndpoint {
    connect_with(runtime, url, config, None)
}

/// Like [`connect`], but `wss://` URLs use `tls` (custom roots: a private CA
/// or a self-signed server, see [`super::tls::client_config_from_pem`]).
/// `ws://` URLs ignore `tls`. `tls` feature.
///
/// The whole TLS handshake plus WebSocket upgrade is bounded by
/// [`IoConfig::handshake_timeout`]; a failed TLS handshake (e.g. an untrusted
/// certificate) ends with [`CloseCause::HandshakeFailed`].
#[cfg(feature = "tls")]
pub fn connect_with_tls(
    runtime: &IoRuntime,
    url: &str,
    config: IoConfig,
    tls: Arc<rustls::ClientConfig>,
) -> ClientEndpoint {
    connect_with(runtime, url, config, Some(tls))
}

/// The client TLS config of one connection attempt (`None`: the default).
#[cfg(feature = "tls")]
type ClientTls = Option<Arc<rustls::ClientConfig>>;
#[cfg(not(feature = "tls"))]
type ClientTls = Option<std::convert::Infallible>;

fn connect_with(
    runtime: &IoRuntime,
    url: &str,
    config: IoConfig,
    tls: ClientTls,
) -> ClientEndpoint {
    let (shared, events) = EndpointShared::new(config, 1);
    let counters = Arc::clone(&shared.counters);
    let (shutdown_tx, shutdown_rx) = watch::channel(());
    runtime
        .handle()
        .spawn(client_task(url.to_owned(), tls, shared, shutdown_rx));
    ClientEndpoint {
        events,
        counters,
        _guard: EndpointGuard::Task(shutdown_tx),
    }
}

/// The client's single connection id.
const CLIENT_ID: ConnectionId = ConnectionId(1);

/// Whether `url` asks for TLS.
#[cfg(not(feature = "tls"))]
fn is_wss(url: &str) -> bool {
    url.get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss://"))
}

async fn client_task(
    url: String,
    tls: ClientTls,
    shared: Arc<EndpointShared>,
    mut shutdown: watch::Receiver<()>,
) {
    let ws_config = Some(conn::ws_config(&shared.config));
    #[cfg(not(feature = "tls"))]
    let attempt = {
        let _ = tls;
        if is_wss(&url) {
            shared.counters.bump(Counter::HandshakeFailure);
            let cause = CloseCause::HandshakeFailed(WSS_NEEDS_TLS.to_owned());
            debug!(%url, ?cause, "websocket connect failed");
            conn::deliver_failed(&shared, CLIENT_ID, cause, &shutdown).await;
            return;
        }
        tokio_tungstenite::connect_async_with_config(url.as_str(), ws_config, true)
    };
    #[cfg(feature = "tls")]
    let attempt = {
        // `ws://` URLs ignore the connector.
        let tls = tls.unwrap_or_else(super::tls::webpki_roots_client_config);
        tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            ws_config,
            true,
            Some(tokio_tungstenite::Connector::Rustls(tls)),
        )
    };
    let result = tokio::select! {
        _ = shutdown.changed() => return,
        r = tokio::time::timeout(shared.config.handshake_timeout, attempt) => r,
    };
    let failure = match result {
        Ok(Ok((ws, _response))) => {
            let remote = ws.get_ref().get_ref().peer_addr().ok();
            conn::run_connection(ws, CLIENT_ID, remote, None, shared, shutdown).await;
            return;
        }
        Err(_elapsed) => {
            shared.counters.bump(Counter::HandshakeTimeout);
            CloseCause::HandshakeTimeout
        }
        Ok(Err(WsError::Io(e))) => {
            shared.counters.bump(Counter::HandshakeFailure);
            #[cfg(feature = "tls")]
            if let Some(tls_failure) = super::tls::tls_failure(&e) {
                CloseCause::HandshakeFailed(tls_failure)
            } else {
                CloseCause::Io(e.to_string())
            }
            #[cfg(not(feature = "tls"))]
            CloseCause::Io(e.to_string())
        }
        Ok(Err(WsError::Http(response))) => {
            // A readable refusal (e.g. HTTP 503 at the server's caps).
            shared.counters.bump(Counter::HandshakeFailure);
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            CloseCause::HandshakeFailed(format!(
                "refused by the server (HTTP {}): {body}",
                response.status().as_u16()
            ))
        }
        Ok(Err(e)) => {
            shared.counters.bump(Counter::HandshakeFailure);
            CloseCause::HandshakeFailed(e.to_string())
        }
    };
    debug!(%url, cause = ?failure, "websocket connect failed");
    conn::deliver_failed(&shared, CLIENT_ID, failure, &shutdown).await;
}

/// Connection slots of one server endpoint: total, per address key, and
/// connections not yet authenticated.
#[derive(Default)]
struct Slots {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    unauthenticated: Arc<AtomicUsize>,
}

/// One taken slot; released on drop (when the connection task ends).
struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

/// The body of the HTTP 503 a refused upgrade gets at the total cap.
pub const REFUSED_TOTAL_CAP: &str = "server full: connection limit reached";
/// The body of the HTTP 503 a refused upgrade gets at the per-address cap.
pub const REFUSED_IP_CAP: &str = "server full: too many connections from this address";
/// The body of the HTTP 503 a refused upgrade gets from the arrival-rate limit.
pub const REFUSED_RATE: &str = "server busy: too many new connections, retry later";
/// The body of the HTTP 503 a refused upgrade gets when too many
/// connections are still authenticating.
pub const REFUSED_UNAUTHENTICATED: &str = "server busy: too many connections authenticating";

/// Most refusals answered with HTTP 503 at once; beyond it, a refused TCP
/// connection is simply closed (a storm must not buy itself tasks).
const MAX_REFUSALS_IN_FLIGHT: usize = 32;
/// How long a refused connection may take to send its upgrade request.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

impl Slot {
    /// Takes a slot for the address key `ip`, or counts the refusal and
    /// returns its reason.
    fn acquire(
        slots: &Arc<Slots>,
        ip: IpAddr,
        shared: &EndpointShared,
    ) -> Result<(Self, Unauthenticated), &'static str> {
        let config = &shared.config;
        // Only the accept loop takes slots, so check-then-increment cannot race.
        if slots.total.load(Ordering::Acquire) >= config.max_connections {
            shared.counters.bump(Counter::RefusedTotalCap);
            return Err(REFUSED_TOTAL_CAP);
        }
        let Some(unauthenticated) =
            Unauthenticated::acquire(&slots.unauthenticated, config.max_unauthenticated)
        else {
            shared.counters.bump(Counter::RefusedUnauthenticated);
            return Err(REFUSED_UNAUTHENTICATED);
        };
        {
            let mut per_ip = slots.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= config.max_connections_per_ip {
                shared.counters.bump(Counter::RefusedIpCap);
                if *n == 0 {
                    per_ip.remove(&ip);
                }
                return Err(REFUSED_IP_CAP);
            }
            *n += 1;
        }
        slots.total.fetch_add(1, Ordering::AcqRel);
        let slot = Self {
            slots: Arc::clone(slots),
            ip,
        };
        Ok((slot, unauthenticated))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut per_ip = self.slots.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
        self.slots.total.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn accept_loop(
    listener: TcpListener,
    wrap: ServerWrap,
    shared: Arc<EndpointShared>,
    mut shutdown: watch::Receiver<()>,
) {
    let slots = Arc::new(Slots::default());
    let refusals = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut limiter = AcceptLimiter::new(shared.config.accept_rate, std::time::Instant::now());
    let mut next_id = 1u64;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                debug!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let key = ip_key(peer.ip(), shared.config.ipv6_prefix_len);
        let admitted = match limiter.admit(key, std::time::Instant::now()) {
            Ok(()) => Slot::acquire(&slots, key, &shared),
            Err(_) => {
                shared.counters.bump(Counter::RefusedRate);
                Err(REFUSED_RATE)
            }
        };
        let (slot, unauthenticated) = match admitted {
            Ok(admitted) => admitted,
            Err(reason) => {
                debug!(%peer, reason, "connection refused");
                refuse(stream, reason, &wrap, &refusals);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let id = ConnectionId(next_id);
        next_id += 1;
        tokio::spawn(serve_connection(
            stream,
            wrap.clone(),
            peer,
            id,
            (slot, unauthenticated),
            Arc::clone(&shared),
            shutdown.clone(),
        ));
    }
    debug!("accept loop stopped");
}

/// Answers a refused `ws://` upgrade with HTTP 503 and `reason` as the body
/// (which WebSocket clients surface as an HTTP error), within a bounded number
/// of tasks and time. `wss://` refusals and refusals beyond that bound are
/// closed without an answer: a TLS handshake per refusal would cost what the
/// limits protect.
fn refuse(
    stream: TcpStream,
    reason: &'static str,
    wrap: &ServerWrap,
    refusals: &Arc<tokio::sync::Semaphore>,
) {
    if !matches!(wrap, ServerWrap::Plain) {
        return;
    }
    let Ok(permit) = Arc::clone(refusals).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        // The signature is tungstenite's `Callback`; the large `Err` is theirs.
        #[allow(clippy::result_large_err)]
        let callback = move |_: &Request, _: Response| {
            let mut refusal = ErrorResponse::new(Some(reason.to_owned()));
            *refusal.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            Err(refusal)
        };
        let _ = tokio::time::timeout(
            REFUSAL_TIMEOUT,
            tokio_tungstenite::accept_hdr_async(stream, callback),
        )
        .await;
    });
}

/// The `Origin` allow-list check, run on the upgrade request.
fn origin_allowed(allowed: Option<&[String]>, request: &Request) -> bool {
    let Some(allowed) = allowed else {
        return true;
    };
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        // Native clients send no Origin; see `IoConfig::allowed_origins`.
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

async fn serve_connection(
    stream: TcpStream,
    wrap: ServerWrap,
    peer: SocketAddr,
    id: ConnectionId,
    (slot, unauthenticated): (Slot, Unauthenticated),
    shared: Arc<EndpointShared>,
    shutdown: watch::Receiver<()>,
) {
    let _slot = slot;
    // One budget for the TLS handshake (if any) and the WebSocket upgrade.
    let deadline = Instant::now() + shared.config.handshake_timeout;
    match wrap {
        ServerWrap::Plain => {
            upgrade_and_run(
                stream,
                deadline,
                peer,
                id,
                unauthenticated,
                shared,
                shutdown,
            )
            .await
        }
        #[cfg(feature = "tls")]
        ServerWrap::Tls(acceptor) => {
            let mut shutdown = shutdown;
            let result = tokio::select! {
                _ = shutdown.changed() => return,
                r = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => r,
            };
            let stream = match result {
                Ok(Ok(stream)) => stream,
                Err(_elapsed) => {
                    shared.counters.bump(Counter::HandshakeTimeout);
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
                Ok(Err(e)) => {
                    shared.counters.bump(Counter::HandshakeFailure);
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            upgrade_and_run(
                stream,
                deadline,
                peer,
                id,
                unauthenticated,
                shared,
                shutdown,
            )
            .await;
        }
    }
}

/// The WebSocket upgrade (finishing by `deadline`), then the connection.
async fn upgrade_and_run<S>(
    stream: S,
    deadline: Instant,
    peer: SocketAddr,
    id: ConnectionId,
    unauthenticated: Unauthenticated,
    shared: Arc<EndpointShared>,
    mut shutdown: watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let allowed = shared.config.allowed_origins.clone();
    let counters = Arc::clone(&shared.counters);
    // The signature is tungstenite's `Callback`; the large `Err` is theirs.
    #[allow(clippy::result_large_err)]
    let callback = move |request: &Request, response: Response| {
        if origin_allowed(allowed.as_deref(), request) {
            Ok(response)
        } else {
            counters.bump(Counter::RefusedOrigin);
            let mut refusal = ErrorResponse::new(Some("origin not allowed".to_owned()));
            *refusal.status_mut() = StatusCode::FORBIDDEN;
            Err(refusal)
        }
    };
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(conn::ws_config(&shared.config)),
    );
    let result = tokio::select! {
        _ = shutdown.changed() => return,
        r = tokio::time::timeout_at(deadline, handshake) => r,
    };
    let ws = match result {
        Ok(Ok(ws)) => ws,
        Err(_elapsed) => {
            shared.counters.bump(Counter::HandshakeTimeout);
            debug!(%peer, "websocket handshake timed out");
            return;
        }
        Ok(Err(WsError::Http(response))) => {
            // Refused by the origin check (already counted).
            debug!(%peer, status = %response.status(), "websocket upgrade refused");
            return;
        }
        Ok(Err(e)) => {
            shared.counters.bump(Counter::HandshakeFailure);
            debug!(%peer, error = %e, "websocket handshake failed");
            return;
        }
    };
    shared.counters.bump(Counter::Accepted);
    conn::run_connection(ws, id, Some(peer), Some(unauthenticated), shared, shutdown).await;
}
