//! Metrics counters, the Prometheus text rendering (parsed back), and the
//! `/metrics` HTTP endpoint exercised with a raw TCP client on 127.0.0.1.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mokosh_net::metrics::{
    MAX_CONNECTIONS, MAX_REQUEST_HEAD, Metrics, MetricsServer, MetricsSnapshot, READ_TIMEOUT,
    Rejection, serve_metrics,
};
use mokosh_net::protocol::DisconnectReason;

// ---------------------------------------------------------------- counters

#[test]
fn counters_and_snapshot() {
    let m = Metrics::new();
    assert_eq!(m.snapshot(), MetricsSnapshot::default());
    for _ in 0..3 {
        m.connection_opened();
    }
    m.connection_closed();
    m.bytes_in(100);
    m.bytes_in(23);
    m.bytes_out(7);
    m.message_in();
    m.message_in();
    m.message_out();
    for (i, why) in Rejection::ALL.into_iter().enumerate() {
        for _ in 0..=i {
            m.reject(why);
        }
    }
    let s = m.snapshot();
    assert_eq!(s.connections_total, 3);
    assert_eq!(s.connections_active, 2);
    assert_eq!(s.bytes_in, 123);
    assert_eq!(s.bytes_out, 7);
    assert_eq!(s.messages_in, 2);
    assert_eq!(s.messages_out, 1);
    for (i, why) in Rejection::ALL.into_iter().enumerate() {
        assert_eq!(s.rejected(why), i as u64 + 1, "{why:?}");
        assert_eq!(s.rejections[i], i as u64 + 1);
    }
    assert_eq!(s.rejected_total(), (1..=12).sum::<u64>());
    let copy = s.clone();
    assert_eq!(copy, s);
}

#[test]
fn active_gauge_never_goes_below_zero() {
    let m = Metrics::new();
    m.connection_closed();
    m.connection_opened();
    m.connection_closed();
    m.connection_closed();
    let s = m.snapshot();
    assert_eq!(s.connections_active, 0);
    assert_eq!(s.connections_total, 1);
}

#[test]
fn counters_are_exact_under_concurrency() {
    let m = Arc::new(Metrics::new());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    m.connection_opened();
                    m.bytes_in(3);
                    m.message_out();
                    m.reject(Rejection::Replay);
                    m.connection_closed();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = m.snapshot();
    assert_eq!(s.connections_total, 40_000);
    assert_eq!(s.connections_active, 0);
    assert_eq!(s.bytes_in, 120_000);
    assert_eq!(s.messages_out, 40_000);
    assert_eq!(s.rejected(Rejection::Replay), 40_000);
    assert_eq!(s.rejected_total(), 40_000);
}

#[test]
fn rejection_labels_and_indices() {
    assert_eq!(Rejection::ALL.len(), Rejection::COUNT);
    let mut seen = std::collections::HashSet::new();
    for (i, why) in Rejection::ALL.into_iter().enumerate() {
        assert_eq!(why.index(), i);
        let label = why.label();
        assert!(seen.insert(label), "duplicate {label}");
        assert!(!label.is_empty());
        assert!(
            label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{label}"
        );
        assert!(!label.starts_with('_') && !label.ends_with('_'));
    }
    assert_eq!(Rejection::DecryptFailed.label(), "decrypt_failed");
    assert_eq!(Rejection::ProtocolViolation.label(), "protocol_violation");
}

#[test]
fn rejections_from_disconnect_reasons() {
    use DisconnectReason as D;
    let cases = [
        (D::IdleTimeout, Some(Rejection::Timeout)),
        (D::HandshakeTimeout, Some(Rejection::Timeout)),
        (D::DecryptFailed, Some(Rejection::DecryptFailed)),
        (D::Replay, Some(Rejection::Replay)),
        (D::RateLimited, Some(Rejection::RateLimited)),
        (D::SchemaMismatch, Some(Rejection::SchemaMismatch)),
        (D::AuthFailed, Some(Rejection::AuthFailed)),
        (D::SlowConsumer, Some(Rejection::SlowConsumer)),
        (D::MessageTooLarge, Some(Rejection::Oversized)),
        (D::SecurityMismatch, Some(Rejection::SecurityMismatch)),
        (D::HandshakeFailed, Some(Rejection::HandshakeFailed)),
        (D::VersionMismatch, Some(Rejection::HandshakeFailed)),
        (D::ProtocolViolation, Some(Rejection::ProtocolViolation)),
        (D::Requested, None),
        (D::Kicked, None),
        (D::ServerShutdown, None),
        (D::ServerFull, None),
        (D::Unknown(200), None),
    ];
    for (reason, expected) in cases {
        assert_eq!(Rejection::from_disconnect(reason), expected, "{reason:?}");
    }
}

// ---------------------------------------------------------------- rendering

#[derive(Debug)]
struct Family {
    kind: String,
    help: String,
    samples: Vec<(String, u64)>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A strict parser for the subset of the 0.0.4 text format we emit: every
/// family is `# HELP`, `# TYPE`, then its samples; samples are
/// `name[{label="value",...}] u64`. Returns families by name; panics on any
/// malformed line.
fn parse(text: &str) -> HashMap<String, Family> {
    assert!(text.ends_with('\n'), "missing final newline");
    let mut families: HashMap<String, Family> = HashMap::new();
    let mut current: Option<String> = None;
    let mut pending_help: Option<(String, String)> = None;
    for line in text.lines() {
        assert!(!line.is_empty(), "empty line");
        assert!(!line.contains('\r'), "CR in {line:?}");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP without text");
            assert!(valid_name(name), "bad name {name:?}");
            assert!(pending_help.is_none(), "two HELPs in a row");
            pending_help = Some((name.to_string(), help.to_string()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE without kind");
            let (help_name, help) = pending_help.take().expect("TYPE without HELP");
            assert_eq!(help_name, name, "HELP/TYPE name mismatch");
            assert!(matches!(kind, "counter" | "gauge"), "kind {kind:?}");
            assert!(!families.contains_key(name), "family {name} declared twice");
            families.insert(
                name.to_string(),
                Family {
                    kind: kind.to_string(),
                    help,
                    samples: Vec::new(),
                },
            );
            current = Some(name.to_string());
        } else {
            assert!(!line.starts_with('#'), "unexpected comment {line:?}");
            assert!(pending_help.is_none(), "HELP without TYPE");
            let (series, value) = line.rsplit_once(' ').expect("sample without value");
            let value: u64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value in {line:?}"));
            let name = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').expect("unclosed labels");
                    for pair in labels.split(',') {
                        let (k, v) = pair.split_once('=').expect("label without =");
                        assert!(valid_name(k), "label name {k:?}");
                        assert!(
                            v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                            "label value {v:?}"
                        );
                        assert!(!v[1..v.len() - 1].contains('"'));
                    }
                    name
                }
                None => series,
            };
            assert!(valid_name(name), "bad sample name {name:?}");
            let family = current.as_ref().expect("sample before any TYPE");
            assert_eq!(name, family, "sample outside its family");
            families
                .get_mut(family)
                .unwrap()
                .samples
                .push((series.to_string(), value));
        }
    }
    assert!(pending_help.is_none());
    for (name, family) in &families {
        assert!(!family.samples.is_empty(), "{name} has no samples");
    }
    families
}

fn single(families: &HashMap<String, Family>, name: &str, kind: &str) -> u64 {
    let f = families
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"));
    assert_eq!(f.kind, kind, "{name}");
    assert!(!f.help.is_empty());
    assert_eq!(f.samples.len(), 1, "{name}");
    assert_eq!(f.samples[0].0, name);
    f.samples[0].1
}

fn sample_metrics() -> Metrics {
    let m = Metrics::new();
    for _ in 0..5 {
        m.connection_opened();
    }
    m.connection_closed();
    m.bytes_in(1_000_000);
    m.bytes_out(2_000);
    for _ in 0..9 {
        m.message_in();
    }
    m.message_out();
    m.reject(Rejection::Replay);
    m.reject(Rejection::Replay);
    m.reject(Rejection::AuthFailed);
    m
}

#[test]
fn render_parses_back_to_the_counters() {
    let m = sample_metrics();
    let text = m.render_prometheus(&[]);
    let f = parse(&text);
    assert_eq!(single(&f, "mokosh_connections_total", "counter"), 5);
    assert_eq!(single(&f, "mokosh_connections_active", "gauge"), 4);
    assert_eq!(
        single(&f, "mokosh_bytes_received_total", "counter"),
        1_000_000
    );
    assert_eq!(single(&f, "mokosh_bytes_sent_total", "counter"), 2_000);
    assert_eq!(single(&f, "mokosh_messages_received_total", "counter"), 9);
    assert_eq!(single(&f, "mokosh_messages_sent_total", "counter"), 1);

    let rejections = &f["mokosh_rejections_total"];
    assert_eq!(rejections.kind, "counter");
    assert_eq!(rejections.samples.len(), Rejection::COUNT);
    for (why, (series, value)) in Rejection::ALL.into_iter().zip(&rejections.samples) {
        assert_eq!(
            series,
            &format!("mokosh_rejections_total{{reason=\"{}\"}}", why.label())
        );
        let expected = match why {
            Rejection::Replay => 2,
            Rejection::AuthFailed => 1,
            _ => 0,
        };
        assert_eq!(*value, expected, "{why:?}");
    }
    assert_eq!(f.len(), 7);
}

#[test]
fn fresh_render_has_every_reason_at_zero() {
    let text = Metrics::new().render_prometheus(&[]);
    for why in Rejection::ALL {
        let line = format!("mokosh_rejections_total{{reason=\"{}\"}} 0\n", why.label());
        assert!(text.contains(&line), "missing {line:?}");
    }
    parse(&text);
}

#[test]
fn extra_counters_are_appended_and_sanitized() {
    let m = sample_metrics();
    let text = m.render_prometheus(&[
        ("mokosh_rooms_open", "Rooms currently open.", 3),
        ("game:ticks", "Ticks run.", u64::MAX),
        (
            "9 bad-name!",
            "Help with a \\ backslash\nand a newline\r.",
            1,
        ),
        ("", "empty name", 2),
    ]);
    let base = m.render_prometheus(&[]);
    assert!(
        text.starts_with(&base),
        "extras must come after the built-ins"
    );
    let f = parse(&text);
    assert_eq!(single(&f, "mokosh_rooms_open", "counter"), 3);
    assert_eq!(single(&f, "game:ticks", "counter"), u64::MAX);
    assert_eq!(single(&f, "__bad_name_", "counter"), 1);
    assert_eq!(
        f["__bad_name_"].help,
        "Help with a \\\\ backslash\\nand a newline ."
    );
    assert_eq!(single(&f, "_", "counter"), 2);
}

#[test]
fn renderer_reflects_live_values() {
    let m = Arc::new(Metrics::new());
    let render = Arc::clone(&m).prometheus_renderer();
    assert!(render().contains("mokosh_connections_total 0\n"));
    m.connection_opened();
    assert!(render().contains("mokosh_connections_total 1\n"));
}

// ---------------------------------------------------------------- HTTP

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
        Arc::clone(&metrics).prometheus_renderer(),
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
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
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
    assert_eq!(reply.headers["content-type"], "text/plain; version=0.0.4");
    assert_eq!(reply.headers["connection"], "close");
    let body = String::from_utf8(reply.body).unwrap();
    assert_eq!(
        reply.headers["content-length"].parse::<usize>().unwrap(),
        body.len()
    );
    assert_eq!(body, fx.metrics.render_prometheus(&[]));
    let f = parse(&body);
    assert_eq!(single(&f, "mokosh_connections_total", "counter"), 5);

    // Every request renders afresh; query strings are ignored.
    fx.metrics.connection_opened();
    let reply = get(addr, "/metrics?name[]=x");
    assert_eq!(reply.status, 200);
    let f = parse(std::str::from_utf8(&reply.body).unwrap());
    assert_eq!(single(&f, "mokosh_connections_total", "counter"), 6);

    // HTTP/1.0 and bare-LF heads are fine too.
    assert_eq!(request(addr, b"GET /metrics HTTP/1.0\n\n").status, 200);
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
        &b"\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET /metrics SPDY/3\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(request(addr, raw).status, 400, "{raw:?}");
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
    let _idle = connect(addr);
    let mut slow = connect(addr);
    slow.write_all(b"GET /met").unwrap();

    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(get(addr, "/metrics").status, 200);
    }
    assert!(
        started.elapsed() < READ_TIMEOUT / 2,
        "served in {:?}",
        started.elapsed()
    );
}

#[test]
fn idle_client_is_timed_out() {
    let fx = start();
    let mut idle = connect(fx.server.local_addr());
    let started = Instant::now();
    let reply = read_reply(&mut idle);
    let waited = started.elapsed();
    assert_eq!(reply.status, 408);
    assert!(
        waited >= READ_TIMEOUT - Duration::from_millis(100),
        "{waited:?}"
    );
    assert!(waited < READ_TIMEOUT + Duration::from_secs(3), "{waited:?}");
}

#[test]
fn connection_cap_sheds_excess_then_recovers() {
    let fx = start();
    let addr = fx.server.local_addr();
    let idle: Vec<_> = (0..MAX_CONNECTIONS).map(|_| connect(addr)).collect();
    // Give the accept loop time to take all of them.
    std::thread::sleep(Duration::from_millis(300));

    // Over the cap: closed without an answer.
    let mut excess = connect(addr);
    let _ = excess.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
    let mut buf = Vec::new();
    let got = excess.read_to_end(&mut buf);
    assert!(
        got.is_err() || buf.is_empty(),
        "excess connection was answered: {:?}",
        String::from_utf8_lossy(&buf)
    );

    // Once the idle clients leave, service resumes.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = connect(addr);
        let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        if raw.starts_with(b"HTTP/1.1 200 OK\r\n") {
            break;
        }
        assert!(Instant::now() < deadline, "service did not resume");
        std::thread::sleep(Duration::from_millis(50));
    }
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
