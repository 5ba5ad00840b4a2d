//! The established session's wire behaviour: packets batched into frames,
//! the network tick, message directions, the byte budget on decompressed
//! bytes, and codec negotiation. Virtual time only.

use std::sync::Arc;
use std::time::Instant;

use mokosh_derive::GameMessage;
use mokosh_net::protocol::codec::{self, CodecId};
use mokosh_net::protocol::control::DisconnectReason;
use mokosh_net::protocol::crypto::TAG_LEN;
use mokosh_net::protocol::envelope::{
    EnvelopeError, FramePackets, Header, MAX_HEADER_LEN, MAX_PACKETS_PER_FRAME,
};
use mokosh_net::protocol::message::{Direction, GameMessage};
use mokosh_net::protocol::rate_limit::RateLimitConfig;
use mokosh_net::protocol::registry::MessageRegistry;
use mokosh_net::protocol::session::{
    ClientConfig, ClientSecurity, PacketError, SendError, ServerConfig, ServerSecurity,
    SessionConfig, SessionState,
};
use mokosh_net::protocol::testing::{SessionPair, encrypted_configs};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 100]
struct Input {
    sequence: u32,
    padding: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 101]
struct WorldState {
    tick: u64,
    players: Vec<(u32, f32, f32)>,
}

fn registry() -> Arc<MessageRegistry> {
    let mut registry = MessageRegistry::new();
    registry
        .register_with::<Input>(Direction::ClientToServer)
        .and_then(|r| r.register_with::<WorldState>(Direction::ServerToClient))
        .expect("distinct routes");
    Arc::new(registry)
}

fn connected(session: SessionConfig, now: Instant) -> SessionPair {
    let mut pair = SessionPair::with_registry(registry(), session, now);
    pair.connect(now).expect("handshake");
    pair
}

fn input(sequence: u32, padding: usize) -> Input {
    Input {
        sequence,
        padding: vec![sequence as u8; padding],
    }
}

fn drain(session: &mut mokosh_net::protocol::session::Session) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| session.poll_transmit()).collect()
}

fn sequences(pair: &mut SessionPair) -> Vec<u32> {
    pair.server_messages()
        .iter()
        .map(|message| {
            message
                .decode::<Input>(&Default::default())
                .expect("decodes")
                .sequence
        })
        .collect()
}

#[test]
fn queued_packets_leave_in_as_few_frames_as_allowed() {
    let now = Instant::now();
    let session = SessionConfig {
        rate_limit: RateLimitConfig::unlimited(),
        ..SessionConfig::default()
    };
    let mut pair = connected(session, now);
    for sequence in 0..200 {
        pair.client.send_message(&input(sequence, 4)).unwrap();
    }
    let frames = drain(&mut pair.client);
    // 200 small packets: 64 + 64 + 64 + 8.
    assert_eq!(frames.len(), 200usize.div_ceil(MAX_PACKETS_PER_FRAME));
    for frame in &frames {
        pair.server.handle_packet(now, frame).unwrap();
    }
    pair.pump(now);
    assert_eq!(sequences(&mut pair), (0..200).collect::<Vec<_>>());
}

#[test]
fn frames_stay_within_the_peers_max_message_size() {
    let now = Instant::now();
    let server_max = 1024;
    let session = SessionConfig {
        max_message_size: server_max,
        compression: Vec::new(),
        ..SessionConfig::default()
    };
    let mut pair = connected(session, now);
    for sequence in 0..60 {
        pair.client.send_message(&input(sequence, 150)).unwrap();
    }
    let frames = drain(&mut pair.client);
    let limit = server_max + TAG_LEN + MAX_HEADER_LEN;
    assert!(frames.iter().all(|frame| frame.len() <= limit));
    // Several packets share a frame, so far fewer frames than packets.
    assert!(frames.len() < 20, "{} frames", frames.len());
    let mut counters = Vec::new();
    for frame in &frames {
        for packet in FramePackets::new(frame, server_max + TAG_LEN).unwrap() {
            counters.push(packet.unwrap().header.message_id);
        }
        pair.server.handle_packet(now, frame).unwrap();
    }
    // Consecutive counters, in order (the handshake's AUTH may have used some).
    let first = counters[0];
    assert_eq!(counters, (first..first + 60).collect::<Vec<u64>>());
    pair.pump(now);
    assert_eq!(sequences(&mut pair), (0..60).collect::<Vec<_>>());
}

#[test]
fn a_truncated_trailing_packet_closes_the_session() {
    let now = Instant::now();
    let mut pair = connected(SessionConfig::default(), now);
    pair.client.send_message(&input(1, 4)).unwrap();
    pair.client.send_message(&input(2, 4)).unwrap();
    let frames = drain(&mut pair.client);
    assert_eq!(frames.len(), 1);
    let cut = &frames[0][..frames[0].len() - 1];
    assert!(matches!(
        pair.server.handle_packet(now, cut),
        Err(PacketError::Malformed(EnvelopeError::LengthMismatch { .. }))
    ));
    assert_eq!(
        pair.server.state(),
        SessionState::Closed(DisconnectReason::ProtocolViolation)
    );
}

#[test]
fn a_frame_with_too_many_packets_closes_the_session() {
    let now = Instant::now();
    let mut pair = connected(SessionConfig::default(), now);
    for sequence in 0..=MAX_PACKETS_PER_FRAME as u32 {
        pair.client.send_message(&input(sequence, 0)).unwrap();
    }
    let joined: Vec<u8> = drain(&mut pair.client).concat();
    assert_eq!(
        pair.server.handle_packet(now, &joined),
        Err(PacketError::Malformed(EnvelopeError::TooManyPackets {
            max: MAX_PACKETS_PER_FRAME
        }))
    );
    assert_eq!(
        pair.server.state(),
        SessionState::Closed(DisconnectReason::ProtocolViolation)
    );
}

#[test]
fn the_tick_travels_with_every_packet_sealed_after_it_is_set() {
    let now = Instant::now();
    let mut pair = connected(SessionConfig::default(), now);
    pair.client.send_message(&input(0, 0)).unwrap();
    pair.client.set_tick(41);
    pair.client.send_message(&input(1, 0)).unwrap();
    pair.client.set_tick(42);
    pair.client.send_message(&input(2, 0)).unwrap();
    assert_eq!(pair.client.tick(), Some(42));
    pair.pump(now);
    let ticks: Vec<Option<u32>> = pair.server_messages().iter().map(|m| m.tick).collect();
    assert_eq!(ticks, [None, Some(41), Some(42)]);

    pair.server.set_tick(7);
    pair.server
        .send_message(&WorldState {
            tick: 7,
            players: Vec::new(),
        })
        .unwrap();
    pair.pump(now);
    let ticks: Vec<Option<u32>> = pair.client_messages().iter().map(|m| m.tick).collect();
    assert_eq!(ticks, [Some(7)]);
}

#[test]
fn a_sender_refuses_a_message_in_the_wrong_direction() {
    let now = Instant::now();
    let mut pair = connected(SessionConfig::default(), now);
    let state = WorldState {
        tick: 1,
        players: Vec::new(),
    };
    assert_eq!(
        pair.client.send_message(&state),
        Err(SendError::WrongDirection(WorldState::ROUTE_ID))
    );
    assert_eq!(
        pair.server.send_message(&input(1, 0)),
        Err(SendError::WrongDirection(Input::ROUTE_ID))
    );
    assert!(pair.client.is_connected() && pair.server.is_connected());
}

/// A hostile (plaintext, hand-built) client sends a server-to-client message:
/// the server refuses it as a protocol violation.
#[test]
fn a_message_in_the_wrong_direction_closes_the_session() {
    let now = Instant::now();
    let session = SessionConfig::default();
    let client = ClientConfig {
        security: ClientSecurity::Plaintext,
        auth_token: b"token".to_vec(),
        registry: registry(),
        session: session.clone(),
    };
    let server = ServerConfig {
        security: ServerSecurity::Plaintext,
        registry: registry(),
        session,
    };
    let mut pair = SessionPair::new(&client, &server, now);
    pair.connect(now).expect("handshake");
    // A legitimate packet first, to learn the next counter.
    pair.client.send_message(&input(1, 0)).unwrap();
    let frame = pair.client.poll_transmit().expect("one frame");
    let last = FramePackets::new(&frame, 1 << 20)
        .unwrap()
        .last()
        .unwrap()
        .unwrap()
        .header
        .message_id;
    pair.server.handle_packet(now, &frame).unwrap();

    let mut body = Vec::new();
    let state = WorldState {
        tick: 1,
        players: Vec::new(),
    };
    codec::encode(CodecId::Postcard, &state, &mut body).unwrap();
    let header = Header {
        message_id: last + 1,
        payload_len: body.len() as u32,
        ..Header::new(CodecId::Postcard, WorldState::ROUTE_ID)
    };
    let mut forged = Vec::new();
    header.encode(&mut forged);
    forged.extend_from_slice(&body);
    assert_eq!(
        pair.server.handle_packet(now, &forged),
        Err(PacketError::WrongDirection(WorldState::ROUTE_ID))
    );
    assert_eq!(
        pair.server.state(),
        SessionState::Closed(DisconnectReason::ProtocolViolation)
    );
}

/// Finding 5: small frames that decompress to large bodies are charged their
/// decompressed size. Before the fix only the ~40 wire bytes of each packet
/// were charged, and all 20 messages (about 900 KiB decompressed) passed a
/// 512 KiB budget.
#[test]
fn the_byte_budget_counts_decompressed_bytes() {
    let now = Instant::now();
    let session = SessionConfig {
        rate_limit: RateLimitConfig {
            messages_per_sec: 1_000,
            message_burst: 1_000,
            bytes_per_sec: 1_024,
            byte_burst: 512 * 1024,
            violation_burst: 1_000,
        },
        ..SessionConfig::default()
    };
    let mut pair = connected(session, now);
    let mut wire = 0;
    for sequence in 0..20 {
        // ~45 KB of zeros in Postcard: compresses to a few dozen bytes.
        pair.client
            .send_message(&input(sequence, 45_000))
            .expect("fits the max message size");
    }
    let mut results = Vec::new();
    for frame in drain(&mut pair.client) {
        wire += frame.len();
        results.push(pair.server.handle_packet(now, &frame));
    }
    assert_eq!(results, [Err(PacketError::RateLimited { fatal: false })]);
    assert!(wire < 20 * 200, "compressed: {wire} bytes on the wire");
    pair.pump(now);
    let delivered = sequences(&mut pair);
    // 512 KiB of budget pays for 11 bodies of ~45 KB, not 20.
    assert_eq!(delivered, (0..11).collect::<Vec<_>>());
    assert_eq!(pair.server.stats().rate_limited, 9);
    assert!(pair.server.is_connected());
}

#[test]
fn an_offer_of_only_raw_needs_a_server_that_lists_raw() {
    let now = Instant::now();
    let offer_raw = |server_codecs: Vec<CodecId>| {
        let raw_only = SessionConfig {
            codecs: vec![CodecId::Raw],
            ..SessionConfig::default()
        };
        let (client, mut server) = encrypted_configs(registry(), raw_only);
        server.session.codecs = server_codecs;
        SessionPair::new(&client, &server, now).connect(now)
    };
    assert_eq!(
        offer_raw(SessionConfig::default().codecs),
        Err(DisconnectReason::NoCommonCodec)
    );
    assert_eq!(offer_raw(vec![CodecId::Postcard, CodecId::Raw]), Ok(()));
}

/// Handshake packets never carry a tick: a hello with the TICK flag is
/// refused.
#[test]
fn a_handshake_packet_with_a_tick_is_refused() {
    let now = Instant::now();
    let mut pair = SessionPair::with_registry(registry(), SessionConfig::default(), now);
    let hello = pair.client.poll_transmit().expect("hello");
    let decoded = Header::decode(&hello, 4096).expect("one packet");
    let mut forged = Vec::new();
    Header {
        tick: Some(1),
        ..decoded.header
    }
    .encode(&mut forged);
    forged.extend_from_slice(decoded.body);
    assert!(matches!(
        pair.server.handle_packet(now, &forged),
        Err(PacketError::Unexpected(_))
    ));
    assert!(pair.server.is_closed());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// However a sender groups its sealed packets into frames (within the
    /// limits), the receiver delivers every message once, in order.
    #[test]
    fn any_grouping_of_packets_into_frames_is_delivered_in_order(
        sizes in proptest::collection::vec(0usize..300, 1..120),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..20),
    ) {
        let now = Instant::now();
        let session = SessionConfig {
            rate_limit: RateLimitConfig::unlimited(),
            ..SessionConfig::default()
        };
        let mut pair = connected(session, now);
        for (sequence, size) in sizes.iter().enumerate() {
            pair.client.send_message(&input(sequence as u32, *size)).unwrap();
        }
        // Every packet, as sealed, out of the sender's own frames.
        let packets: Vec<Vec<u8>> = drain(&mut pair.client)
            .iter()
            .flat_map(|frame| {
                FramePackets::new(frame, 1 << 20)
                    .unwrap()
                    .map(|packet| packet.unwrap().bytes.to_vec())
                    .collect::<Vec<_>>()
            })
            .collect();
        prop_assert_eq!(packets.len(), sizes.len());
        // Regroup at arbitrary boundaries, at most 64 packets per frame.
        let mut bounds: Vec<usize> = cuts.iter().map(|cut| cut.index(packets.len())).collect();
        bounds.extend((0..=packets.len()).step_by(MAX_PACKETS_PER_FRAME));
        bounds.push(packets.len());
        bounds.sort_unstable();
        bounds.dedup();
        for range in bounds.windows(2) {
            let frame = packets[range[0]..range[1]].concat();
            prop_assert_eq!(pair.server.handle_packet(now, &frame), Ok(()));
        }
        pair.pump(now);
        prop_assert_eq!(sequences(&mut pair), (0..sizes.len() as u32).collect::<Vec<_>>());
    }
}
