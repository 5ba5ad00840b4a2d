//! The built-in `/metrics` HTTP endpoint (feature `metrics-http`) exercised
//! with raw TCP clients on 127.0.0.0/8. Its timeouts are tested on virtual
//! time in `metrics::http`'s unit tests.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mokosh_net::metrics::{
    CONTENT_TYPE, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP, MAX_REQUEST_HEAD, Metrics,
    MetricsCollector, MetricsServer, serve_metrics,
};

/// Five sessions opened, so a scrape has something recognisable to show.
fn sample_metrics() -> Metrics {
    let metrics = Metrics::new();
    for _ in 0..5 {
        metrics.connection_opened();
    }
    metrics
}

struct Fixture {
    // Field order: the server must drop before the runtime.
    server: MetricsServer,
    metrics: Arc<Metrics>,
    _rt: tokio::runtime::Runtime,
}

fn start() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let metrics = Arc::new(sample_metrics());
    let server = serve_metrics(
        rt.handle(),
        "127.0.0.1:0".parse().unwrap(),
        MetricsCollector::new(Arc::clone(&metrics)).renderer(),
    )
    .unwrap();
    assert!(server.local_addr().ip().is_loopback());
    assert_ne!(server.local_addr().port(), 0);
    Fixture {
        server,
        metrics,
        _rt: rt,
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    with_timeouts(stream)
}

/// Connects to `addr` from the loopback address `source` (Linux routes all
/// of 127.0.0.0/8 to loopback), so a test can play several client hosts.
fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((source, 0).into()).unwrap();
        socket.connect(addr).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    with_timeouts(stream)
}

fn with_timeouts(stream: TcpStream) -> TcpStream {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reading the reply");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of head");
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert!(
        matches!(parts.next(), Some("HTTP/1.1" | "HTTP/1.0")),
        "{status_line}"
    );
    let status = parts.next().unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").expect("header line");
            (k.to_ascii_lowercase(), v.to_string())
        })
        .collect::<HashMap<_, _>>();
    let body = raw[end + 4..].to_vec();
    if let Some(len) = headers.get("content-length") {
        let len: usize = len.parse().unwrap();
        assert!(body.is_empty() || body.len() == len, "content-length");
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn request(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut stream = connect(addr);
    stream.write_all(raw).unwrap();
    read_reply(&mut stream)
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n").as_bytes(),
    )
}

#[test]
fn http_get_metrics() {
    let fx = start();
    let addr = fx.server.local_addr();
    let reply = get(addr, "/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], CONTENT_TYPE);
    assert_eq!(reply.headers["connection"], "close");
    let body = String::from_utf8(reply.body).unwrap();
    assert_eq!(
        reply.headers["content-length"].parse::<usize>().unwrap(),
        body.len()
    );
    assert_eq!(body, fx.metrics.render());
    assert!(body.contains("\nmokosh_connections_total 5\n"), "{body}");

    // Every request renders afresh; query strings are ignored.
    fx.metrics.connection_opened();
    let reply = get(addr, "/metrics?name[]=x");
    assert_eq!(reply.status, 200);
    let body = String::from_utf8(reply.body).unwrap();
    assert!(body.contains("\nmokosh_connections_total 6\n"), "{body}");

    // HTTP/1.0 and bare-LF heads are fine too.
    assert_eq!(request(addr, b"GET /metrics HTTP/1.0\n\n").status, 200);

    // A scrape is not a keep-alive connection.
    let reply = request(
        addr,
        b"GET /metrics HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
}

#[test]
fn http_head_has_no_body() {
    let fx = start();
    let reply = request(fx.server.local_addr(), b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
    assert!(reply.headers["content-length"].parse::<usize>().unwrap() > 0);
}

#[test]
fn http_not_found() {
    let fx = start();
    let addr = fx.server.local_addr();
    for path in [
        "/",
        "/metrics/",
        "/metricsx",
        "/other",
        "*",
        "http://x/metrics",
    ] {
        let reply = get(addr, path);
        assert_eq!(reply.status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&reply.body).contains("mokosh_"));
    }
}

#[test]
fn http_method_not_allowed() {
    let fx = start();
    let addr = fx.server.local_addr();
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "get"] {
        let reply = request(
            addr,
            format!("{method} /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.headers["allow"], "GET, HEAD");
    }
}

#[test]
fn http_bad_requests() {
    let fx = start();
    let addr = fx.server.local_addr();
    for raw in [
        &b"GET\r\n\r\n"[..],
        b"GET /metrics\r\n\r\n",
        b"GET /metrics SPDY/3\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
    ] {
        let reply = request(addr, raw);
        assert_eq!(reply.status, 400, "{raw:?}");
        assert!(!String::from_utf8_lossy(&reply.body).contains("mokosh_"));
    }
}

#[test]
fn http_oversized_head_is_rejected() {
    let fx = start();
    let addr = fx.server.local_addr();
    let mut raw = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    raw.resize(MAX_REQUEST_HEAD * 2, b'a');
    let reply = request(addr, &raw);
    assert_eq!(reply.status, 431);
    assert!(!String::from_utf8_lossy(&reply.body).contains("mokosh_"));

    // Just under the limit is still served.
    let mut raw = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    raw.resize(MAX_REQUEST_HEAD - 4, b'a');
    raw.extend_from_slice(b"\r\n\r\n");
    assert_eq!(raw.len(), MAX_REQUEST_HEAD);
    assert_eq!(request(addr, &raw).status, 200);

    // And the server keeps working.
    assert_eq!(get(addr, "/metrics").status, 200);
}

#[test]
fn idle_and_slow_clients_do_not_block_others() {
    let fx = start();
    let addr = fx.server.local_addr();
    // One connects and sends nothing; another sends half a request line.
    // (The timeouts that eventually drop them run on virtual time in the
    // unit tests of `metrics::http`.)
    let _idle = connect(addr);
    let mut slow = connect(addr);
    slow.write_all(b"GET /met").unwrap();
    for _ in 0..5 {
        assert_eq!(get(addr, "/metrics").status, 200);
    }
}

/// Whether the endpoint closed `stream` without answering.
fn refused(mut stream: TcpStream) -> bool {
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
    let mut buf = Vec::new();
    let got = stream.read_to_end(&mut buf);
    got.is_err() || buf.is_empty()
}

/// Waits (bounded) until a scrape from `source` succeeds again.
fn served_again(source: Ipv4Addr, addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = connect_from(source, addr);
        let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        if raw.starts_with(b"HTTP/1.1 200 OK\r\n") {
            return;
        }
        assert!(Instant::now() < deadline, "service did not resume");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_flood_from_one_address_is_capped_while_a_scraper_is_served() {
    let fx = start();
    let addr = fx.server.local_addr();
    let flooder = Ipv4Addr::LOCALHOST;
    let scraper = Ipv4Addr::new(127, 0, 0, 2);
    // Connections the endpoint keeps waiting for a request head...
    let held: Vec<_> = (0..MAX_CONNECTIONS_PER_IP)
        .map(|_| connect_from(flooder, addr))
        .collect();
    // ...and the rest of a flood from the same address.
    let excess: Vec<_> = (0..2 * MAX_CONNECTIONS_PER_IP)
        .map(|_| connect_from(flooder, addr))
        .collect();
    // A scraper on another address is served meanwhile, every time.
    for _ in 0..3 {
        let mut stream = connect_from(scraper, addr);
        stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_reply(&mut stream).status, 200);
    }
    // The excess was closed unanswered; the held ones are still open.
    for stream in excess {
        assert!(
            refused(stream),
            "a connection over the per-IP cap was served"
        );
    }
    // Once the flooder lets go, its address is served again.
    drop(held);
    served_again(flooder, addr);
}

#[test]
fn connection_cap_sheds_excess_then_recovers() {
    let fx = start();
    let addr = fx.server.local_addr();
    // Fill the total cap from many addresses, each under the per-IP cap.
    let hosts = MAX_CONNECTIONS.div_ceil(MAX_CONNECTIONS_PER_IP);
    let idle: Vec<_> = (0..MAX_CONNECTIONS)
        .map(|i| {
            let host = u8::try_from(10 + i % hosts).unwrap();
            connect_from(Ipv4Addr::new(127, 0, 1, host), addr)
        })
        .collect();
    // Over the total cap: closed without an answer, whatever the address.
    assert!(refused(connect_from(Ipv4Addr::new(127, 0, 2, 1), addr)));

    // Once the idle clients leave, service resumes.
    drop(idle);
    served_again(Ipv4Addr::new(127, 0, 2, 1), addr);
}

#[test]
fn dropping_the_server_stops_it() {
    let fx = start();
    let addr = fx.server.local_addr();
    assert_eq!(get(addr, "/metrics").status, 200);
    // Also abandons a connection in progress.
    let mut pending = connect(addr);
    drop(fx.server);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(_) => break,
            Ok(_) => {
                assert!(Instant::now() < deadline, "still accepting after drop");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let mut buf = Vec::new();
    let got = pending.read_to_end(&mut buf);
    assert!(got.is_err() || buf.is_empty());
}

#[test]
fn bind_errors_are_reported() {
    let fx = start();
    let taken = fx.server.local_addr();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = serve_metrics(rt.handle(), taken, Arc::new(String::new));
    assert!(result.is_err());
}

#[test]
fn works_on_a_current_thread_runtime_driven_elsewhere() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = serve_metrics(
        rt.handle(),
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(|| "custom_total 1\n".to_string()),
    )
    .unwrap();
    let addr = server.local_addr();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let driver = std::thread::spawn(move || {
        rt.block_on(async move {
            tokio::task::spawn_blocking(move || rx.recv())
                .await
                .unwrap()
                .ok();
        });
        rt
    });
    let reply = get(addr, "/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"custom_total 1\n");
    drop(server);
    tx.send(()).unwrap();
    drop(driver.join().unwrap());
}
