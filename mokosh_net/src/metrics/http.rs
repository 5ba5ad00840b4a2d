//! A deliberately tiny HTTP/1.1 server for `GET /metrics`.
//!
//! One request per connection, no keep-alive, no request bodies, no chunked
//! encoding: read the request head (bounded in size and time), answer, close.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// Largest request head (request line + headers) read, in bytes. Longer heads
/// get `431 Request Header Fields Too Large`.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Time a client has to send its whole request head; slower clients get
/// `408 Request Timeout`.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to accept the response before the connection is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections served at once; further connections are closed
/// immediately without a response until a slot frees up.
pub const MAX_CONNECTIONS: usize = 64;

/// After answering, how long to keep reading (and discarding) what the client
/// still sends, so closing does not reset the connection before it has read
/// the response.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_MAX_BYTES: usize = 64 * 1024;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

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

/// Serves `GET /metrics` as Prometheus text on `addr` (127.0.0.1:9100 style)
/// on the given tokio runtime handle until the returned guard is dropped.
///
/// The socket is bound before this returns, so bind errors (address in use,
/// permission) are reported here. Each request calls `render` and answers:
///
/// * `GET /metrics` (any query string) → `200` with
///   `Content-Type: text/plain; version=0.0.4` and the rendered text;
///   `HEAD /metrics` → the same headers, no body;
/// * another path → `404`; another method → `405` (with `Allow: GET, HEAD`);
/// * a request head over [`MAX_REQUEST_HEAD`] bytes → `431`; not complete
///   within [`READ_TIMEOUT`] → `408`; unparsable → `400`;
///
/// then closes the connection. Every connection runs in its own task, reads
/// and writes are bounded by [`READ_TIMEOUT`] and [`WRITE_TIMEOUT`], and at
/// most [`MAX_CONNECTIONS`] are served at once, so a slow or hostile client
/// cannot block others for long. `render` runs on a runtime worker thread, so
/// it should be quick (e.g. [`Metrics::render_prometheus`](super::Metrics::render_prometheus)).
///
/// The runtime behind `handle` must have I/O and time enabled (e.g.
/// `Builder::enable_all`); tokio panics otherwise. It may be a current-thread
/// runtime as long as something keeps driving it.
///
/// The endpoint has no authentication and no TLS: bind it to loopback or a
/// private interface.
pub fn serve_metrics(
    handle: &Handle,
    addr: SocketAddr,
    render: Arc<dyn Fn() -> String + Send + Sync>,
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

async fn accept_loop(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    mut shutdown: oneshot::Receiver<()>,
) {
    // Dropping the set (when this loop ends or is aborted) aborts every
    // connection task.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= MAX_CONNECTIONS {
                        tracing::debug!(%peer, "metrics endpoint: connection limit reached; closing");
                        drop(stream);
                        continue;
                    }
                    connections.spawn(serve_connection(stream, Arc::clone(&render)));
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

enum HeadError {
    TooLarge,
    Io,
}

/// Reads until the blank line ending the head; returns the head bytes.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut buf = vec![0u8; MAX_REQUEST_HEAD];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(HeadError::TooLarge);
        }
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|_| HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io);
        }
        // Search only the region that could contain a new terminator.
        let from = len.saturating_sub(3);
        len += n;
        if let Some(end) = find_head_end(&buf[from..len]) {
            buf.truncate(from + end);
            return Ok(buf);
        }
    }
}

/// Index just past the first `\r\n\r\n` (or bare `\n\n`), if any.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

struct Response {
    status: &'static str,
    extra_headers: &'static str,
    body: String,
    send_body: bool,
}

impl Response {
    fn plain(status: &'static str) -> Self {
        Self {
            status,
            extra_headers: "",
            body: format!("{status}\n"),
            send_body: true,
        }
    }
}

fn route(head: &[u8], render: &(dyn Fn() -> String + Send + Sync)) -> Response {
    let Ok(head) = std::str::from_utf8(head) else {
        return Response::plain("400 Bad Request");
    };
    let request_line = head.lines().next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::plain("400 Bad Request");
    };
    if method.is_empty() || !version.starts_with("HTTP/1.") {
        return Response::plain("400 Bad Request");
    }
    let path = target.split('?').next().unwrap_or("");
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return Response {
                extra_headers: "Allow: GET, HEAD\r\n",
                ..Response::plain("405 Method Not Allowed")
            };
        }
    };
    if path != "/metrics" {
        return Response {
            send_body: !head_only,
            ..Response::plain("404 Not Found")
        };
    }
    Response {
        status: "200 OK",
        extra_headers: "",
        body: render(),
        send_body: !head_only,
    }
}

async fn serve_connection(mut stream: TcpStream, render: Arc<dyn Fn() -> String + Send + Sync>) {
    let response = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => route(&head, &*render),
        Ok(Err(HeadError::TooLarge)) => Response::plain("431 Request Header Fields Too Large"),
        Ok(Err(HeadError::Io)) => return,
        Err(_elapsed) => Response::plain("408 Request Timeout"),
    };
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        response.status,
        if response.status.starts_with("200") {
            CONTENT_TYPE
        } else {
            "text/plain; charset=utf-8"
        },
        response.body.len(),
        response.extra_headers,
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        if response.send_body {
            stream.write_all(response.body.as_bytes()).await?;
        }
        stream.flush().await?;
        stream.shutdown().await
    };
    if !matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(()))) {
        return;
    }
    // Drain what the client may still be sending (e.g. the rest of an
    // oversized head), briefly, so the close is graceful rather than a reset
    // that could discard the response before the client reads it.
    let drain = async {
        let mut scratch = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_MAX_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
