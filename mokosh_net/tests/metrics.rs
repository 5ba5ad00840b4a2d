//! Metrics counters, the rejection mapping, the Prometheus text (parsed back),
//! and the `/metrics` HTTP endpoint exercised with raw TCP clients on
//! 127.0.0.0/8. The endpoint's timeouts are tested on virtual time in
//! `metrics::http`'s unit tests; the exact text is golden-tested in
//! `metrics::exposition`'s.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mokosh_net::metrics::{
    CONTENT_TYPE, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP, MAX_REQUEST_HEAD, Metrics,
    MetricsCollector, MetricsServer, MetricsSnapshot, Rejection, serve_metrics,
};
use mokosh_net::protocol::{DisconnectReason, Initiator};

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
fn session_endings_map_to_rejections_in_one_place() {
    use DisconnectReason as D;
    let cases = [
        (D::IdleTimeout, Some(Rejection::Timeout)),
        (D::HandshakeTimeout, Some(Rejection::Timeout)),
        (D::SlowConsumer, Some(Rejection::SlowConsumer)),
        (D::AuthFailed, Some(Rejection::AuthFailed)),
        // Counted at the refused packet, not again at the ending.
        (D::DecryptFailed, None),
        (D::Replay, None),
        (D::RateLimited, None),
        (D::SchemaMismatch, None),
        (D::MessageTooLarge, None),
        (D::SecurityMismatch, None),
        (D::HandshakeFailed, None),
        (D::VersionMismatch, None),
        (D::NoCommonCodec, None),
        (D::ProtocolViolation, None),
        // Not rejections.
        (D::Requested, None),
        (D::Kicked, None),
        (D::ServerShutdown, None),
        (D::ServerFull, None),
        (D::CounterExhausted, None),
        (D::ConnectionLost, None),
        (D::Unknown(200), None),
    ];
    for (reason, expected) in cases {
        assert_eq!(
            Rejection::for_disconnect(reason, Initiator::Local),
            expected,
            "{reason:?}"
        );
        // Whatever the peer says about itself is never this side's rejection.
        assert_eq!(
            Rejection::for_disconnect(reason, Initiator::Peer),
            None,
            "{reason:?}"
        );
    }
}

#[test]
fn a_session_ending_is_counted_once() {
    let m = Metrics::new();
    for _ in 0..30 {
        m.connection_opened();
        m.session_closed(DisconnectReason::SlowConsumer, Initiator::Local);
    }
    m.connection_opened();
    m.session_closed(DisconnectReason::IdleTimeout, Initiator::Peer);
    m.connection_opened();
    m.session_closed(DisconnectReason::IdleTimeout, Initiator::Local);
    let s = m.snapshot();
    assert_eq!(s.rejected(Rejection::SlowConsumer), 30);
    assert_eq!(s.rejected(Rejection::Timeout), 1);
    assert_eq!(s.rejected_total(), 31);
    assert_eq!(s.connections_active, 0);
    assert_eq!(s.connections_total, 32);
}

/// A client that times the server out tells it so (DISCONNECT with
/// `IdleTimeout`); that is the client's timeout, not one of the server's, so
/// the server's timeout rejections stay at zero. (Before the mapping took the
/// initiator into account, the server counted it: this test failed with 1.)
#[cfg(all(feature = "server", feature = "client"))]
#[test]
fn a_peer_announcing_its_own_idle_timeout_is_not_counted_by_the_server() {
    use mokosh_net::client::{ConnectionState, ToServer};
    use mokosh_net::protocol::KeyPair;
    use mokosh_net::server::MokoshServer;
    use mokosh_net::shared::MokoshAppExt;
    use mokosh_net::testing::{TestNetwork, client_app, server_app};

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, mokosh_derive::GameMessage)]
    #[route_id = 100]
    struct Input {
        sequence: u32,
    }

    let keypair = KeyPair::generate().unwrap();
    let quiet = Duration::from_secs(3600);
    // The server never speaks first (no pings) and announces a short idle
    // timeout; the client keeps sending, so only the client goes idle.
    let mut server = server_app(keypair.clone(), |config| {
        config.session.ping_interval = quiet;
        config.session.idle_timeout = Duration::from_millis(300);
    });
    server.add_game_message::<Input>();
    let mut client = client_app(keypair.public(), "player", |config| {
        config.session.ping_interval = quiet;
    });
    client.add_game_message::<Input>();
    let mut network = TestNetwork::new(server, vec![client]);
    assert!(network.run_until(120, |net| net.all_connected()));
    let mut sequence = 0;
    let left = network.run_until(600, |net| {
        sequence += 1;
        net.clients[0]
            .world_mut()
            .write_message(ToServer::new(Input { sequence }));
        net.server.world().resource::<MokoshServer>().client_count() == 0
    });
    assert!(left, "the client never left");
    assert_eq!(
        network.client_state(0),
        ConnectionState::Disconnected {
            last: Some(DisconnectReason::IdleTimeout)
        }
    );
    let metrics = network
        .server
        .world()
        .resource::<MokoshServer>()
        .metrics()
        .snapshot();
    assert!(metrics.messages_in > 0, "the client was not sending");
    assert_eq!(metrics.rejected(Rejection::Timeout), 0);
    assert_eq!(metrics.rejected_total(), 0);
    assert_eq!(metrics.connections_active, 0);
    assert_eq!(metrics.connections_total, 1);
}

/// Each slow consumer the server drops is one `slow_consumer` rejection and
/// one refused frame, not two: the drop is counted where the session closes
/// (`Metrics::session_closed`), and nowhere else. (With the mapping in one
/// place but the flush still counting its own drop, this read 2 per drop, the
/// "60 for 30" of the issue.)
#[cfg(all(feature = "server", feature = "client"))]
#[test]
fn each_slow_consumer_drop_is_counted_once() {
    use mokosh_net::protocol::KeyPair;
    use mokosh_net::server::{MokoshServer, SendTarget, ToClients};
    use mokosh_net::shared::MokoshAppExt;
    use mokosh_net::testing::{TestNetwork, client_app, server_app};

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, mokosh_derive::GameMessage)]
    #[route_id = 100]
    struct Blob {
        bytes: Vec<u8>,
    }

    const STALLED: usize = 3;
    let keypair = KeyPair::generate().unwrap();
    let mut server = server_app(keypair.clone(), |config| {
        config.io.outbound_queue = 8;
    });
    server.add_game_message::<Blob>();
    let clients = (0..STALLED)
        .map(|_| {
            let mut client = client_app(keypair.public(), "player", |_| {});
            client.add_game_message::<Blob>();
            client
        })
        .collect();
    let mut network = TestNetwork::new(server, clients);
    assert!(network.run_until(120, |net| net.all_connected()));
    // The clients stop reading (their apps no longer update) while the
    // server keeps broadcasting.
    let mut dropped = false;
    for _ in 0..200 {
        for _ in 0..4 {
            network
                .server
                .world_mut()
                .write_message(ToClients::new(SendTarget::All, Blob { bytes: vec![7; 64] }));
        }
        network.server.update();
        if network
            .server
            .world()
            .resource::<MokoshServer>()
            .client_count()
            == 0
        {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the stalled clients were not dropped");
    let server = network.server.world().resource::<MokoshServer>();
    let metrics = server.metrics().snapshot();
    let io = server.io_counters().unwrap();
    assert_eq!(metrics.rejected(Rejection::SlowConsumer), STALLED as u64);
    assert_eq!(metrics.rejected_total(), STALLED as u64);
    assert_eq!(io.slow_consumers, STALLED as u64);
    let text = MetricsCollector::new(Arc::clone(server.metrics())).render();
    assert!(text.contains("mokosh_rejections_total{reason=\"slow_consumer\"} 3\n"));
}

// ---------------------------------------------------------------- rendering

#[derive(Debug)]
struct Family {
    kind: String,
    help: String,
    unit: Option<String>,
    samples: Vec<(String, u64)>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A strict parser for the subset of the OpenMetrics text format we emit:
/// every family is `# HELP`, `# TYPE`, an optional `# UNIT`, then its
/// samples (`name[{label="value",...}] u64`, counters suffixed `_total`); the
/// text ends with `# EOF`. Returns families by sample name (`x_total` for a
/// counter `x`); panics on any malformed line.
fn parse(text: &str) -> HashMap<String, Family> {
    let text = text.strip_suffix("# EOF\n").expect("missing # EOF");
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
            assert!(
                !name.ends_with("_total"),
                "family name {name} ends in _total"
            );
            assert!(pending_help.is_none(), "two HELPs in a row");
            pending_help = Some((name.to_string(), help.to_string()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE without kind");
            let (help_name, help) = pending_help.take().expect("TYPE without HELP");
            assert_eq!(help_name, name, "HELP/TYPE name mismatch");
            let series = match kind {
                "counter" => format!("{name}_total"),
                "gauge" => name.to_string(),
                _ => panic!("kind {kind:?}"),
            };
            assert!(!families.contains_key(&series), "{series} declared twice");
            families.insert(
                series.clone(),
                Family {
                    kind: kind.to_string(),
                    help,
                    unit: None,
                    samples: Vec::new(),
                },
            );
            current = Some(series);
        } else if let Some(rest) = line.strip_prefix("# UNIT ") {
            let (name, unit) = rest.split_once(' ').expect("UNIT without unit");
            assert!(name.ends_with(&format!("_{unit}")), "{line}");
            let family = families
                .get_mut(current.as_ref().expect("UNIT before TYPE"))
                .unwrap();
            assert!(family.samples.is_empty(), "UNIT after samples");
            family.unit = Some(unit.to_string());
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
        // Prometheus naming: one `_total`, at the end, and only on counters.
        assert_eq!(
            name.matches("_total").count(),
            usize::from(family.kind == "counter"),
            "{name}"
        );
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
    let m = Arc::new(sample_metrics());
    let text = m.render();
    let f = parse(&text);
    assert_eq!(single(&f, "mokosh_connections_total", "counter"), 5);
    assert_eq!(single(&f, "mokosh_connections_active", "gauge"), 4);
    assert_eq!(
        single(&f, "mokosh_received_bytes_total", "counter"),
        1_000_000
    );
    assert_eq!(
        f["mokosh_received_bytes_total"].unit.as_deref(),
        Some("bytes")
    );
    assert_eq!(single(&f, "mokosh_sent_bytes_total", "counter"), 2_000);
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
fn transport_counters_use_reason_labels() {
    let io = Arc::new(mokosh_net::io::IoCounters::default());
    let text = MetricsCollector::new(Arc::new(Metrics::new()))
        .with_io(io)
        .render();
    let f = parse(&text);
    let refused = &f["mokosh_io_connections_refused_total"];
    let series: Vec<&str> = refused.samples.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        series,
        [
            "mokosh_io_connections_refused_total{reason=\"cap\"}",
            "mokosh_io_connections_refused_total{reason=\"ip_cap\"}",
            "mokosh_io_connections_refused_total{reason=\"origin\"}",
        ]
    );
    assert_eq!(f["mokosh_io_connections_closed_total"].samples.len(), 3);
    assert_eq!(single(&f, "mokosh_io_frames_refused_total", "counter"), 0);
    assert_eq!(single(&f, "mokosh_io_connections_active", "gauge"), 0);
    assert!(
        !text.contains("_total_"),
        "a `_total` inside a name:\n{text}"
    );
    assert_eq!(f.len(), 7 + 7);
}

#[test]
fn fresh_render_has_every_reason_at_zero() {
    let text = Arc::new(Metrics::new()).render();
    for why in Rejection::ALL {
        let line = format!("mokosh_rejections_total{{reason=\"{}\"}} 0\n", why.label());
        assert!(text.contains(&line), "missing {line:?}");
    }
    parse(&text);
}

#[test]
fn the_collector_joins_an_application_registry() {
    use prometheus_client::metrics::counter::Counter;
    let m = Arc::new(sample_metrics());
    let mut registry = MetricsCollector::new(Arc::clone(&m)).into_registry();
    let ticks = Counter::<u64>::default();
    registry.register("game_ticks", "Ticks run.", ticks.clone());
    ticks.inc_by(7);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let f = parse(&text);
    assert_eq!(single(&f, "game_ticks_total", "counter"), 7);
    assert_eq!(single(&f, "mokosh_connections_total", "counter"), 5);
}

#[test]
fn renderer_reflects_live_values() {
    let m = Arc::new(Metrics::new());
    let render = MetricsCollector::new(Arc::clone(&m)).renderer();
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
