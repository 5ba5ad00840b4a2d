//! Metrics counters, the one mapping from session endings to rejections (also
//! through the server plugin), and the Prometheus text parsed back. The exact
//! text is golden-tested in `metrics::exposition`'s unit tests; the HTTP
//! endpoint in `tests/metrics_http.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use mokosh_net::metrics::{Metrics, MetricsCollector, MetricsSnapshot, Rejection};
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
    use std::time::Duration;

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
            "mokosh_io_connections_refused_total{reason=\"rate\"}",
            "mokosh_io_connections_refused_total{reason=\"unauthenticated\"}",
        ]
    );
    assert_eq!(f["mokosh_io_connections_closed_total"].samples.len(), 3);
    assert_eq!(
        single(&f, "mokosh_io_queue_full_connections_total", "counter"),
        0
    );
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
