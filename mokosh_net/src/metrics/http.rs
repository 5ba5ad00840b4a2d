//! The built-in `GET /metrics` endpoint (feature `metrics-http`): hyper's
//! HTTP/1.1 server behind an accept loop that caps connections in total and
//! per client address.
//!
//! One request per connection (no keep-alive), bounded request heads, a
//! deadline to send the head and one for the whole exchange.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE as CONTENT_TYPE_HEADER, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::CONTENT_TYPE;

/// Largest request head (request line + headers) read, in bytes. Longer heads
/// get `431 Request Header Fields Too Large`.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Time a client has to send its whole request head; slower clients are
/// disconnected without an answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has, after [`READ_TIMEOUT`], to take the response before the
/// connection is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections served at once; further connections are closed
/// immediately without a response until a slot frees up.
pub const MAX_CONNECTIONS: usize = 64;
/// Most connections served at once from one client address (IPv4-mapped IPv6
/// addresses count as their IPv4 address, and IPv6 addresses by their /64
/// prefix, which one host usually holds whole), so a single host cannot take
/// all [`MAX_CONNECTIONS`] slots from a scraper.
pub const MAX_CONNECTIONS_PER_IP: usize = 8;

/// A running metrics endpoint (see [`serve_metrics`]). Dropping it stops the
/// listener and aborts the connections in progress.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
    _shutdown: oneshot::Sender<()>,
}

impl MetricsServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        // Dropping `_shutdown` also wakes the accept loop; aborting makes the
        // stop independent of that loop being polled promptly.
        self.task.abort();
    }
}

/// The text a scrape returns; called once per `GET /metrics`.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `GET /metrics` on `addr` (127.0.0.1:9100 style) on the given tokio
/// runtime handle until the returned guard is dropped.
///
/// The socket is bound before this returns, so bind errors (address in use,
/// permission) are reported here. Each request is answered, then the
/// connection is closed:
///
/// * `GET /metrics` (any query string) → `200` with `render()` as the body and
///   [`CONTENT_TYPE`] (e.g. [`MetricsCollector::renderer`](super::MetricsCollector::renderer));
///   `HEAD /metrics` → the same headers, no body;
/// * another path → `404`; another method → `405` (with `Allow: GET, HEAD`);
/// * a request head over [`MAX_REQUEST_HEAD`] bytes → `431`; unparsable →
///   `400`; not complete within [`READ_TIMEOUT`] (blank lines only, half a
///   request line, nothing) → closed without an answer.
///
/// Every connection runs in its own task and is dropped after
/// [`READ_TIMEOUT`] + [`WRITE_TIMEOUT`] whatever it does; at most
/// [`MAX_CONNECTIONS`] are served at once, and at most
/// [`MAX_CONNECTIONS_PER_IP`] from one address, so a slow or hostile client
/// cannot block a scraper. `render` runs on a runtime worker thread, so it
/// should be quick.
///
/// The runtime behind `handle` must have I/O and time enabled (e.g.
/// `Builder::enable_all`); tokio panics otherwise. It may be a current-thread
/// runtime as long as something keeps driving it.
///
/// The endpoint has no authentication and no TLS: bind it to loopback or a
/// private interface. An application with its own HTTP server can serve
/// [`MetricsCollector::render`](super::MetricsCollector::render) instead.
pub fn serve_metrics(
    handle: &Handle,
    addr: SocketAddr,
    render: Render,
) -> io::Result<MetricsServer> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local_addr = std_listener.local_addr()?;
    let listener = {
        let _entered = handle.enter();
        TcpListener::from_std(std_listener)?
    };
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let task = handle.spawn(accept_loop(listener, render, shutdown_rx));
    tracing::info!(%local_addr, "metrics endpoint listening");
    Ok(MetricsServer {
        local_addr,
        task,
        _shutdown: shutdown_tx,
    })
}

/// The address a connection from `ip` is counted under: IPv4 (mapped or
/// not) as itself, IPv6 by its /64 prefix.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((v6.to_bits() & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// Connections in progress, in total and per client address (see
/// [`address_key`]).
#[derive(Debug, Default)]
struct Occupancy {
    per_ip: HashMap<IpAddr, usize>,
    by_task: HashMap<tokio::task::Id, IpAddr>,
}

impl Occupancy {
    /// Whether one more connection from `ip` fits under both caps.
    fn admits(&self, ip: IpAddr) -> bool {
        self.by_task.len() < MAX_CONNECTIONS
            && self.per_ip.get(&address_key(ip)).copied().unwrap_or(0) < MAX_CONNECTIONS_PER_IP
    }

    fn add(&mut self, task: tokio::task::Id, ip: IpAddr) {
        let ip = address_key(ip);
        *self.per_ip.entry(ip).or_default() += 1;
        self.by_task.insert(task, ip);
    }

    fn remove(&mut self, task: tokio::task::Id) {
        let Some(ip) = self.by_task.remove(&task) else {
            return;
        };
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, render: Render, mut shutdown: oneshot::Receiver<()>) {
    // Dropping the set (when this loop ends or is aborted) aborts every
    // connection task.
    let mut connections = JoinSet::new();
    let mut occupancy = Occupancy::default();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(error) => error.id(),
                };
                occupancy.remove(id);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ip = peer.ip();
                    if !occupancy.admits(ip) {
                        tracing::debug!(%peer, "metrics endpoint: connection limit reached; closing");
                        drop(stream);
                        continue;
                    }
                    let task = connections.spawn(serve_connection(stream, Arc::clone(&render)));
                    occupancy.add(task.id(), ip);
                }
                Err(error) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Serves one request on `stream` within the endpoint's limits, then returns.
pub(super) fn serve_connection<S>(stream: S, render: Render) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let response = respond(&request, &*render);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    async move {
        // Errors (timeouts, resets, parse errors already answered) end the
        // connection; there is nothing else to do with them.
        let _ = tokio::time::timeout(READ_TIMEOUT + WRITE_TIMEOUT, connection).await;
    }
}

fn respond(
    request: &Request<Incoming>,
    render: &(dyn Fn() -> String + Send + Sync),
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    // Origin-form `/metrics` only: `*`, absolute URLs and other paths are 404.
    let origin_form = request.uri().scheme().is_none() && request.uri().authority().is_none();
    if !origin_form || request.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND);
    }
    // hyper leaves the body out of a HEAD response but keeps its length.
    let mut response = Response::new(Full::new(Bytes::from(render())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(CONTENT_TYPE));
    response
}

fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{status}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE_HEADER,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    //! Timeouts on tokio's virtual clock (`start_paused`): no wall-clock
    //! measurement, no waiting.

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    fn render() -> Render {
        Arc::new(|| "x_total 1\n".to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_dropped_at_the_read_timeout() {
        let (mut client, server) = tokio::io::duplex(4096);
        let started = Instant::now();
        let serving = tokio::spawn(serve_connection(server, render()));
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        let waited = started.elapsed();
        serving.await.unwrap();
        assert!(reply.is_empty(), "{:?}", String::from_utf8_lossy(&reply));
        assert!(waited >= READ_TIMEOUT, "{waited:?}");
        assert!(waited < READ_TIMEOUT + WRITE_TIMEOUT, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_sent_head_is_dropped_at_the_read_timeout() {
        let (mut client, server) = tokio::io::duplex(4096);
        let started = Instant::now();
        let serving = tokio::spawn(serve_connection(server, render()));
        client.write_all(b"GET /met").await.unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        serving.await.unwrap();
        assert!(reply.is_empty());
        assert!(started.elapsed() >= READ_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_is_dropped_after_both_timeouts() {
        // A tiny pipe: the response cannot be written while nobody reads.
        let (mut client, server) = tokio::io::duplex(16);
        let started = Instant::now();
        let serving = tokio::spawn(serve_connection(server, render()));
        client
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        serving.await.unwrap();
        let waited = started.elapsed();
        assert!(waited >= READ_TIMEOUT + WRITE_TIMEOUT, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_client_is_answered_without_waiting() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let started = Instant::now();
        let serving = tokio::spawn(serve_connection(server, render()));
        client
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        serving.await.unwrap();
        let reply = String::from_utf8(reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nx_total 1\n"), "{reply}");
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn occupancy_caps_per_address_and_in_total() {
        let mut occupancy = Occupancy::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut ids = Vec::new();
        let mut set = JoinSet::new();
        let _entered = rt.enter();
        for _ in 0..MAX_CONNECTIONS + 1 {
            ids.push(set.spawn(async {}).id());
        }
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for &id in &ids[..MAX_CONNECTIONS_PER_IP] {
            assert!(occupancy.admits(a));
            occupancy.add(id, a);
        }
        assert!(!occupancy.admits(a));
        occupancy.remove(ids[0]);
        assert!(occupancy.admits(a));
        occupancy.add(ids[0], a);
        // Other addresses fill the rest, up to the total cap.
        for (n, &id) in ids[MAX_CONNECTIONS_PER_IP..MAX_CONNECTIONS]
            .iter()
            .enumerate()
        {
            let ip = IpAddr::from([198, 51, 100, n as u8]);
            assert!(occupancy.admits(ip));
            occupancy.add(id, ip);
        }
        assert!(!occupancy.admits("203.0.113.9".parse().unwrap()));
        occupancy.remove(ids[MAX_CONNECTIONS - 1]);
        assert!(occupancy.admits("203.0.113.9".parse().unwrap()));
        // Removing an unknown task is harmless.
        occupancy.remove(ids[MAX_CONNECTIONS]);
        set.abort_all();
    }

    #[test]
    fn one_ipv6_prefix_counts_as_one_address() {
        let mut occupancy = Occupancy::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _entered = rt.enter();
        let mut set = JoinSet::new();
        // One host rotating through the addresses of its /64.
        for n in 1..=MAX_CONNECTIONS_PER_IP as u16 {
            let ip = IpAddr::from([0x2001, 0xdb8, 0, 7, 0, 0, 0, n]);
            assert!(occupancy.admits(ip));
            occupancy.add(set.spawn(async {}).id(), ip);
        }
        let same_prefix = IpAddr::from([0x2001, 0xdb8, 0, 7, 0xffff, 1, 2, 3]);
        assert!(!occupancy.admits(same_prefix));
        // Another /64, and an IPv4-mapped address, are other addresses.
        assert!(occupancy.admits(IpAddr::from([0x2001, 0xdb8, 0, 8, 0, 0, 0, 1])));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        occupancy.add(set.spawn(async {}).id(), mapped);
        assert_eq!(
            occupancy
                .per_ip
                .get(&"192.0.2.1".parse::<IpAddr>().unwrap()),
            Some(&1)
        );
        set.abort_all();
    }
}
