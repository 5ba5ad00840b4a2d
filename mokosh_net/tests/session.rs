//! Session state machine tests on virtual time (no sockets, no clock reads
//! beyond one base `Instant`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mokosh_derive::GameMessage;
use mokosh_net::protocol::codec::CodecId;
use mokosh_net::protocol::codec::DecodeLimits;
use mokosh_net::protocol::compression::CompressionId;
use mokosh_net::protocol::control::DisconnectReason;
use mokosh_net::protocol::envelope::{Flags, Header};
use mokosh_net::protocol::message::GameMessage;
use mokosh_net::protocol::rate_limit::RateLimitConfig;
use mokosh_net::protocol::registry::MessageRegistry;
use mokosh_net::protocol::schema::Schema;
use mokosh_net::protocol::session::{
    ClientConfig, ClientSecurity, Initiator, PacketError, ServerConfig, ServerSecurity, Session,
    SessionConfig, SessionEvent, SessionState,
};
use mokosh_net::protocol::testing::{SessionPair, encrypted_configs};
use serde::{Deserialize, Serialize};

/// The AUTH / AUTH_OK exchange that ends the handshake (issue 6, finding 4).
#[path = "session/handshake_auth.rs"]
mod handshake_auth;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 100]
struct Input {
    sequence: u32,
    direction: (f32, f32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 101]
struct WorldState {
    tick: u64,
    players: Vec<(u32, f32, f32)>,
}

mod v2 {
    use super::*;

    /// Same route and name as `Input`, one more field: a different schema.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
    #[route_id = 100]
    pub(super) struct Input {
        pub(super) sequence: u32,
        pub(super) direction: (f32, f32),
        pub(super) jump: bool,
    }
}

const INPUT_ROUTE: u16 = Input::ROUTE_ID;
const STATE_ROUTE: u16 = WorldState::ROUTE_ID;

fn registry() -> Arc<MessageRegistry> {
    let mut registry = MessageRegistry::new();
    registry
        .register::<Input>()
        .and_then(|r| r.register::<WorldState>())
        .expect("distinct routes");
    Arc::new(registry)
}

fn other_registry() -> Arc<MessageRegistry> {
    let mut registry = MessageRegistry::new();
    registry
        .register::<v2::Input>()
        .and_then(|r| r.register::<WorldState>())
        .expect("distinct routes");
    Arc::new(registry)
}

fn connected(session: SessionConfig) -> (SessionPair, Instant) {
    let now = Instant::now();
    let mut pair = SessionPair::with_registry(registry(), session, now);
    pair.connect(now).expect("handshake completes");
    (pair, now)
}

fn disconnect_reason(events: &[SessionEvent]) -> Option<(DisconnectReason, Initiator)> {
    events.iter().find_map(|event| match event {
        SessionEvent::Disconnected {
            reason, initiator, ..
        } => Some((*reason, *initiator)),
        _ => None,
    })
}

#[test]
fn handshake_negotiates_and_reports_connected() {
    let (pair, _) = connected(SessionConfig::default());
    assert_eq!(pair.client.codec(), Some(CodecId::Postcard));
    assert_eq!(pair.client.compression(), Some(CompressionId::Zstd));
    assert_eq!(pair.client.client_id(), 1);
    assert!(pair.client.is_encrypted());
    assert!(
        matches!(pair.server_events[0], SessionEvent::AuthRequested { ref token } if token == b"test-token")
    );
    assert!(
        pair.client_events
            .iter()
            .any(|e| matches!(e, SessionEvent::Connected { client_id: 1, .. }))
    );
    assert!(
        pair.server_events
            .iter()
            .any(|e| matches!(e, SessionEvent::Connected { .. }))
    );
}

#[test]
fn messages_flow_both_ways_in_order() {
    let (mut pair, now) = connected(SessionConfig::default());
    for i in 0..50u8 {
        pair.client
            .send(INPUT_ROUTE, CodecId::Postcard, &[i; 10], None)
            .unwrap();
    }
    pair.server
        .send(STATE_ROUTE, CodecId::Postcard, b"state", Some(7))
        .unwrap();
    pair.pump(now);
    let received = pair.server_messages();
    assert_eq!(received.len(), 50);
    for (i, message) in received.iter().enumerate() {
        assert_eq!(message.route_id, INPUT_ROUTE);
        assert_eq!(message.payload, vec![i as u8; 10]);
    }
    let replies = pair.client_messages();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].correlation_id, Some(7));
    assert_eq!(replies[0].payload, b"state");
    assert!(pair.server_errors.is_empty() && pair.client_errors.is_empty());
}

#[test]
fn plaintext_only_when_both_sides_say_so() {
    let now = Instant::now();
    let session = SessionConfig::default();
    let client = ClientConfig {
        security: ClientSecurity::Plaintext,
        auth_token: Vec::new(),
        registry: registry(),
        session: session.clone(),
    };
    let server = ServerConfig {
        security: ServerSecurity::Plaintext,
        registry: registry(),
        session: session.clone(),
    };
    let mut pair = SessionPair::new(&client, &server, now);
    pair.connect(now).expect("plaintext pair connects");
    assert!(!pair.client.is_encrypted());
    pair.client
        .send(INPUT_ROUTE, CodecId::Postcard, b"hi", None)
        .unwrap();
    pair.pump(now);
    assert_eq!(pair.server_messages()[0].payload, b"hi");

    // Plaintext client against an encrypted server: refused, never downgraded.
    let (_, encrypted_server) = encrypted_configs(registry(), session.clone());
    let mut pair = SessionPair::new(&client, &encrypted_server, now);
    assert_eq!(pair.connect(now), Err(DisconnectReason::SecurityMismatch));

    // Encrypted client against a plaintext server: refused as well.
    let (encrypted_client, _) = encrypted_configs(registry(), session);
    let mut pair = SessionPair::new(&encrypted_client, &server, now);
    assert_eq!(pair.connect(now), Err(DisconnectReason::SecurityMismatch));
    // The refusal came in plaintext, outside Noise: marked unauthenticated.
    assert_eq!(
        disconnect_reason(&pair.client_events),
        Some((
            DisconnectReason::SecurityMismatch,
            Initiator::UnauthenticatedPeer
        ))
    );
}

#[test]
fn wrong_pinned_key_fails_the_handshake() {
    let now = Instant::now();
    let (client, _) = encrypted_configs(registry(), SessionConfig::default());
    let (_, server) = encrypted_configs(registry(), SessionConfig::default());
    let mut pair = SessionPair::new(&client, &server, now);
    assert_eq!(pair.connect(now), Err(DisconnectReason::HandshakeFailed));
    assert!(matches!(pair.server_errors[0], PacketError::Handshake(_)));
    assert!(pair.server.is_closed() && pair.client.is_closed());
}

#[test]
fn schema_mismatch_is_refused_at_the_handshake() {
    let now = Instant::now();
    let (mut client, server) = encrypted_configs(registry(), SessionConfig::default());
    client.registry = other_registry();
    let mut pair = SessionPair::new(&client, &server, now);
    assert_eq!(pair.connect(now), Err(DisconnectReason::SchemaMismatch));
    assert_eq!(
        pair.server_errors,
        vec![PacketError::Refused(DisconnectReason::SchemaMismatch)]
    );
    // The refusal was authenticated (inside Noise).
    assert!(matches!(
        pair.client_events.last(),
        Some(SessionEvent::Disconnected { detail, initiator: Initiator::Peer, .. })
            if detail.contains("protocol hash")
    ));
}

#[test]
fn codec_negotiation_edge_cases() {
    let now = Instant::now();
    // No overlap.
    let (mut client, mut server) = encrypted_configs(registry(), SessionConfig::default());
    client.session.codecs = vec![CodecId::Json];
    server.session.codecs = vec![CodecId::Postcard];
    let mut pair = SessionPair::new(&client, &server, now);
    assert_eq!(pair.connect(now), Err(DisconnectReason::NoCommonCodec));
    // The client's order wins; compression falls back to none without overlap.
    let (mut client, mut server) = encrypted_configs(registry(), SessionConfig::default());
    client.session.codecs = vec![CodecId::Json, CodecId::Postcard];
    client.session.compression = vec![CompressionId::Lz4];
    server.session.compression = vec![CompressionId::Zstd];
    let mut pair = SessionPair::new(&client, &server, now);
    pair.connect(now).unwrap();
    assert_eq!(pair.client.codec(), Some(CodecId::Json));
    assert_eq!(pair.client.compression(), Some(CompressionId::None));
    // Raw is always allowed next to the negotiated codec, others are not.
    assert!(
        pair.client
            .send(INPUT_ROUTE, CodecId::Raw, b"x", None)
            .is_ok()
    );
    assert!(
        pair.client
            .send(INPUT_ROUTE, CodecId::Postcard, b"x", None)
            .is_err()
    );
}

#[test]
fn auth_hook_can_reject() {
    let now = Instant::now();
    let (client, server) = encrypted_configs(registry(), SessionConfig::default());
    let mut pair = SessionPair::new(&client, &server, now);
    pair.auto_accept = false;
    pair.pump(now);
    assert_eq!(pair.server.state(), SessionState::AwaitingAuth);
    pair.server
        .reject(DisconnectReason::AuthFailed, "bad token")
        .unwrap();
    pair.pump(now);
    assert_eq!(
        disconnect_reason(&pair.client_events),
        Some((DisconnectReason::AuthFailed, Initiator::Peer))
    );
    assert!(pair.server.accept(now).is_err());
}

#[test]
fn handshake_timeout_on_both_sides() {
    let now = Instant::now();
    let (client, server) = encrypted_configs(registry(), SessionConfig::default());
    let mut pair = SessionPair::new(&client, &server, now);
    pair.auto_accept = false;
    pair.pump(now);
    let later = now + Duration::from_secs(5);
    assert_eq!(pair.server.poll_timeout(), Some(later));
    pair.tick(later - Duration::from_millis(1));
    assert!(!pair.server.is_closed());
    pair.tick(later);
    assert_eq!(
        pair.server.state(),
        SessionState::Closed(DisconnectReason::HandshakeTimeout)
    );
    // The server told the client why (inside Noise).
    assert_eq!(
        pair.client.state(),
        SessionState::Closed(DisconnectReason::HandshakeTimeout)
    );

    // A silent server: the client times out alone.
    let mut lonely = Session::client(&client, now).unwrap();
    lonely.handle_timeout(later);
    assert_eq!(
        lonely.state(),
        SessionState::Closed(DisconnectReason::HandshakeTimeout)
    );
}

#[test]
fn keepalive_measures_rtt_and_idle_timeout_fires() {
    let (mut pair, now) = connected(SessionConfig::default());
    // The client pings after one interval; the pong arrives 30 ms later.
    let t1 = now + Duration::from_secs(1);
    pair.client.handle_timeout(t1);
    let ping = pair.client.poll_transmit().expect("ping queued");
    pair.server.handle_packet(t1, &ping).unwrap();
    let pong = pair.server.poll_transmit().expect("pong queued");
    pair.client
        .handle_packet(t1 + Duration::from_millis(30), &pong)
        .unwrap();
    let rtt = pair.client.rtt();
    assert_eq!(rtt.samples, 1);
    assert_eq!(rtt.latest, Duration::from_millis(30));
    assert_eq!(rtt.smoothed, Duration::from_millis(30));
    assert_eq!(rtt.jitter, Duration::from_millis(15));

    // Nothing received for 10 s: the server drops the client.
    let silent = t1 + Duration::from_secs(10);
    pair.server.handle_timeout(silent);
    assert_eq!(
        pair.server.state(),
        SessionState::Closed(DisconnectReason::IdleTimeout)
    );
    // The client learns it from the DISCONNECT.
    pair.pump(silent);
    assert_eq!(
        disconnect_reason(&pair.client_events),
        Some((DisconnectReason::IdleTimeout, Initiator::Peer))
    );
}

#[test]
fn regular_traffic_keeps_the_session_alive() {
    let (mut pair, now) = connected(SessionConfig::default());
    for second in 1..=60 {
        pair.tick(now + Duration::from_secs(second));
    }
    assert!(pair.client.is_connected() && pair.server.is_connected());
    assert!(pair.client.rtt().samples >= 59);
    assert!(pair.server.rtt().samples >= 59);
}

#[test]
fn replayed_packet_closes_the_session() {
    let (mut pair, now) = connected(SessionConfig::default());
    pair.client
        .send(INPUT_ROUTE, CodecId::Postcard, b"once", None)
        .unwrap();
    let frame = pair.client.poll_transmit().unwrap();
    pair.server.handle_packet(now, &frame).unwrap();
    let error = pair.server.handle_packet(now, &frame).unwrap_err();
    assert!(matches!(error, PacketError::Replay(_)));
    assert_eq!(
        pair.server.state(),
        SessionState::Closed(DisconnectReason::Replay)
    );
}

#[test]
fn tampered_packet_changes_nothing_and_closes() {
    let (mut pair, now) = connected(SessionConfig::default());
    pair.client
        .send(INPUT_ROUTE, CodecId::Postcard, b"payload", None)
        .unwrap();
    let frame = pair.client.poll_transmit().unwrap();
    let before = pair.server.stats();
    let mut tampered = frame.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x40;
    assert_eq!(
        pair.server.handle_packet(now, &tampered),
        Err(PacketError::DecryptFailed)
    );
    assert_eq!(pair.server.stats().messages_in, before.messages_in);
    assert_eq!(
        pair.server.state(),
        SessionState::Closed(DisconnectReason::DecryptFailed)
    );
    assert_eq!(
        pair.server.handle_packet(now, &frame),
        Err(PacketError::Closed)
    );
}

#[test]
fn clearing_the_encrypted_flag_is_a_downgrade_attempt() {
    let (mut pair, now) = connected(SessionConfig::default());
    pair.client
        .send(INPUT_ROUTE, CodecId::Postcard, b"payload", None)
        .unwrap();
    let mut frame = pair.client.poll_transmit().unwrap();
    frame[1] &= !Flags::ENCRYPTED.bits();
    assert_eq!(
        pair.server.handle_packet(now, &frame),
        Err(PacketError::SecurityMismatch)
    );
    assert!(pair.server.is_closed());
}

#[test]
fn rate_limit_drops_then_disconnects() {
    let session = SessionConfig {
        rate_limit: RateLimitConfig {
            messages_per_sec: 10,
            message_burst: 10,
            violation_burst: 5,
            ..RateLimitConfig::default()
        },
        ..SessionConfig::default()
    };
    let (mut pair, now) = connected(session);
    for _ in 0..10 {
        pair.client
            .send(INPUT_ROUTE, CodecId::Postcard, b"x", None)
            .unwrap();
    }
    pair.pump(now);
    assert_eq!(pair.server_messages().len(), 10);
    for _ in 0..5 {
        pair.client
            .send(INPUT_ROUTE, CodecId::Postcard, b"x", None)
            .unwrap();
    }
    pair.pump(now);
    // The five packets travel in one frame: one error for it, five drops.
    assert_eq!(
        pair.server_errors,
        [PacketError::RateLimited { fatal: false }]
    );
    assert!(pair.server.is_connected());
    assert_eq!(pair.server.stats().rate_limited, 5);
    pair.client
        .send(INPUT_ROUTE, CodecId::Postcard, b"x", None)
        .unwrap();
    pair.pump(now);
    assert_eq!(
        pair.server_errors.last(),
        Some(&PacketError::RateLimited { fatal: true })
    );
    assert_eq!(
        disconnect_reason(&pair.client_events),
        Some((DisconnectReason::RateLimited, Initiator::Peer))
    );
}

#[test]
fn send_checks_route_size_and_state() {
    let (mut pair, _) = connected(SessionConfig {
        max_message_size: 1024,
        ..SessionConfig::default()
    });
    assert!(pair.client.send(3, CodecId::Raw, b"", None).is_err());
    assert!(pair.client.send(999, CodecId::Postcard, b"", None).is_err());
    assert!(
        pair.client
            .send(INPUT_ROUTE, CodecId::Postcard, &[0; 1025], None)
            .is_err()
    );
    assert!(
        pair.client
            .send(INPUT_ROUTE, CodecId::Postcard, &[0; 1024], None)
            .is_ok()
    );
    pair.client.disconnect(DisconnectReason::Requested, "bye");
    assert!(
        pair.client
            .send(INPUT_ROUTE, CodecId::Postcard, b"", None)
            .is_err()
    );
}

#[test]
fn garbage_before_and_after_the_handshake_never_panics() {
    let now = Instant::now();
    let (client, server) = encrypted_configs(registry(), SessionConfig::default());
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        vec![1, 0, 3, 0, 0, 0],
        vec![1, 1, 3, 0, 0, 5, 1, 2, 3, 4, 5],
        vec![0xff; 100],
        vec![1, 0x0f, 3, 0xff, 0xff, 0xff, 0xff],
    ];
    for input in &inputs {
        let mut fresh = Session::server(&server, 9, now);
        assert!(fresh.handle_packet(now, input).is_err());
        assert!(fresh.is_closed());
        let mut fresh_client = Session::client(&client, now).unwrap();
        assert!(fresh_client.handle_packet(now, input).is_err());
    }
    let (mut pair, now) = connected(SessionConfig::default());
    for input in &inputs {
        let _ = pair.server.handle_packet(now, input);
    }
    assert!(pair.server.is_closed());
}

#[test]
fn per_message_schema_hash_is_checked() {
    let session = SessionConfig {
        include_schema_hash: true,
        ..SessionConfig::default()
    };
    let (mut pair, now) = connected(session);
    pair.client
        .send(INPUT_ROUTE, CodecId::Postcard, b"ok", None)
        .unwrap();
    let frame = pair.client.poll_transmit().unwrap();
    let decoded = Header::decode(&frame, 4096).unwrap();
    assert_eq!(decoded.header.schema_hash, Some(Input::SCHEMA_HASH));
    pair.server.handle_packet(now, &frame).unwrap();
}

#[test]
fn large_compressible_messages_round_trip() {
    let (mut pair, now) = connected(SessionConfig::default());
    let big: Vec<u8> = (0..20_000u32).map(|i| (i % 7) as u8).collect();
    pair.client
        .send(INPUT_ROUTE, CodecId::Postcard, &big, None)
        .unwrap();
    pair.pump(now);
    assert_eq!(pair.server_messages()[0].payload, big);
}

#[test]
fn typed_messages_round_trip_with_every_codec() {
    for codecs in [vec![CodecId::Postcard], vec![CodecId::Json]] {
        let session = SessionConfig {
            codecs,
            ..SessionConfig::default()
        };
        let (mut pair, now) = connected(session);
        let input = Input {
            sequence: 9,
            direction: (0.5, -1.0),
        };
        pair.client.send_message(&input).unwrap();
        let state = WorldState {
            tick: 77,
            players: (0..64).map(|i| (i, i as f32, -(i as f32))).collect(),
        };
        pair.server
            .send_message_correlated(&state, Some(3))
            .unwrap();
        pair.pump(now);
        let limits = DecodeLimits::default();
        let received = pair.server_messages();
        assert!(received[0].is::<Input>());
        assert_eq!(received[0].decode::<Input>(&limits).unwrap(), input);
        assert!(received[0].decode::<WorldState>(&limits).is_err());
        let replies = pair.client_messages();
        assert_eq!(replies[0].decode::<WorldState>(&limits).unwrap(), state);
        assert_eq!(replies[0].correlation_id, Some(3));
    }
}
