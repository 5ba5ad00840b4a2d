//! Identity is settled only after key confirmation: the token travels in the
//! client's first sealed packet (AUTH), never in the replayable Noise message 1.

use super::*;
use mokosh_net::protocol::control::{ControlMessage, ROUTE_AUTH, ROUTE_AUTH_OK, ROUTE_DISCONNECT};
use mokosh_net::protocol::handshake::{MAX_HANDSHAKE_BODY, Response};
use mokosh_net::protocol::session::SendError;

fn plaintext_configs(session: SessionConfig) -> (ClientConfig, ServerConfig) {
    (
        ClientConfig {
            security: ClientSecurity::Plaintext,
            auth_token: b"plain-token".to_vec(),
            registry: registry(),
            session: session.clone(),
        },
        ServerConfig {
            security: ServerSecurity::Plaintext,
            registry: registry(),
            session,
        },
    )
}

/// A plaintext-mode frame (no sealing) with an explicit counter.
fn plain_frame(route: u16, counter: u64, body: &[u8]) -> Vec<u8> {
    let mut header = Header::new(CodecId::Raw, route);
    header.message_id = counter;
    header.payload_len = body.len() as u32;
    let mut frame = Vec::new();
    header.encode(&mut frame);
    frame.extend_from_slice(body);
    frame
}

fn control_body(message: &ControlMessage) -> Vec<u8> {
    let mut body = Vec::new();
    message.encode(&mut body).expect("fits");
    body
}

fn drain_events(session: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

fn drain_frames(session: &mut Session) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| session.poll_transmit()).collect()
}

fn route_of(frame: &[u8]) -> u16 {
    Header::decode(frame, 1 << 20)
        .expect("valid envelope")
        .header
        .route_id
}

fn authenticates(events: &[SessionEvent]) -> bool {
    events.iter().any(|event| {
        matches!(
            event,
            SessionEvent::AuthRequested { .. } | SessionEvent::Connected { .. }
        )
    })
}

#[test]
fn replayed_hello_never_authenticates() {
    let now = Instant::now();
    let (client, server) = encrypted_configs(registry(), SessionConfig::default());
    // The victim connects; an eavesdropper records every client frame.
    let mut victim = Session::client(&client, now).unwrap();
    let mut real_server = Session::server(&server, 1, now);
    let mut recorded = Vec::new();
    for _ in 0..4 {
        for frame in drain_frames(&mut victim) {
            real_server.handle_packet(now, &frame).unwrap();
            recorded.push(frame);
        }
        for event in drain_events(&mut real_server) {
            if matches!(event, SessionEvent::AuthRequested { .. }) {
                real_server.accept(now).unwrap();
            }
        }
        for frame in drain_frames(&mut real_server) {
            victim.handle_packet(now, &frame).unwrap();
        }
    }
    assert!(victim.is_connected() && real_server.is_connected());
    assert_eq!(recorded.len(), 2, "hello and AUTH");
    assert_eq!(route_of(&recorded[1]), ROUTE_AUTH);

    // Replay message 1 alone on a fresh connection: keys the replayer lacks,
    // no AuthRequested, no Connected, and a handshake timeout in the end.
    let mut fresh = Session::server(&server, 2, now);
    fresh.handle_packet(now, &recorded[0]).unwrap();
    assert!(!authenticates(&drain_events(&mut fresh)));
    assert_eq!(fresh.state(), SessionState::Handshaking);
    let deadline = fresh.poll_timeout().unwrap();
    fresh.handle_timeout(deadline);
    assert_eq!(
        fresh.state(),
        SessionState::Closed(DisconnectReason::HandshakeTimeout)
    );
    assert!(!authenticates(&drain_events(&mut fresh)));

    // Replay message 1 and then the victim's sealed AUTH: it was sealed under
    // the victim's keys, so it fails authentication before the token is read.
    let mut fresh = Session::server(&server, 3, now);
    fresh.handle_packet(now, &recorded[0]).unwrap();
    assert_eq!(
        fresh.handle_packet(now, &recorded[1]),
        Err(PacketError::DecryptFailed)
    );
    assert_eq!(
        fresh.state(),
        SessionState::Closed(DisconnectReason::DecryptFailed)
    );
    assert!(!authenticates(&drain_events(&mut fresh)));
}

#[test]
fn auth_failed_travels_in_a_sealed_disconnect() {
    let now = Instant::now();
    let (client, server) = encrypted_configs(registry(), SessionConfig::default());
    let mut pair = SessionPair::new(&client, &server, now);
    pair.auto_accept = false;
    pair.pump(now);
    assert!(matches!(
        pair.server_events.as_slice(),
        [SessionEvent::AuthRequested { token }] if token == b"test-token"
    ));
    assert_eq!(pair.client.state(), SessionState::Handshaking);
    pair.server
        .reject(DisconnectReason::AuthFailed, "bad token")
        .unwrap();
    let frame = pair.server.poll_transmit().expect("a DISCONNECT");
    let decoded = Header::decode(&frame, 1 << 20).unwrap();
    assert_eq!(decoded.header.route_id, ROUTE_DISCONNECT);
    assert!(decoded.header.flags.contains(Flags::ENCRYPTED));
    pair.client.handle_packet(now, &frame).unwrap();
    pair.pump(now);
    assert_eq!(
        disconnect_reason(&pair.client_events),
        Some((DisconnectReason::AuthFailed, Initiator::Peer))
    );
    assert!(
        !pair
            .client_events
            .iter()
            .any(|e| matches!(e, SessionEvent::Connected { .. }))
    );
}

#[test]
fn client_that_never_sends_auth_times_out() {
    let now = Instant::now();
    let (client, server) = encrypted_configs(registry(), SessionConfig::default());
    let mut client = Session::client(&client, now).unwrap();
    let mut server = Session::server(&server, 1, now);
    let hello = client.poll_transmit().unwrap();
    server.handle_packet(now, &hello).unwrap();
    // Message 2 reaches the client, but its AUTH is lost.
    let response = server.poll_transmit().unwrap();
    client.handle_packet(now, &response).unwrap();
    let auth = client.poll_transmit().unwrap();
    assert_eq!(route_of(&auth), ROUTE_AUTH);
    let later = now + SessionConfig::default().handshake_timeout;
    assert_eq!(server.poll_timeout(), Some(later));
    server.handle_timeout(later - Duration::from_millis(1));
    assert_eq!(server.state(), SessionState::Handshaking);
    server.handle_timeout(later);
    assert_eq!(
        server.state(),
        SessionState::Closed(DisconnectReason::HandshakeTimeout)
    );
    assert!(!authenticates(&drain_events(&mut server)));
    // The client, waiting for AUTH_OK, gets the sealed verdict.
    for frame in drain_frames(&mut server) {
        client.handle_packet(now, &frame).unwrap();
    }
    assert_eq!(
        client.state(),
        SessionState::Closed(DisconnectReason::HandshakeTimeout)
    );
}

#[test]
fn client_sends_only_auth_until_auth_ok() {
    let now = Instant::now();
    let (client, server) = encrypted_configs(registry(), SessionConfig::default());
    let mut client = Session::client(&client, now).unwrap();
    let mut server = Session::server(&server, 9, now);
    server
        .handle_packet(now, &client.poll_transmit().unwrap())
        .unwrap();
    client
        .handle_packet(now, &server.poll_transmit().unwrap())
        .unwrap();
    assert_eq!(client.state(), SessionState::Handshaking);
    assert_eq!(
        client.send(INPUT_ROUTE, CodecId::Postcard, b"early", None),
        Err(SendError::NotConnected)
    );
    // No PING either, however long the server deliberates.
    client.handle_timeout(now + Duration::from_secs(4));
    let frames = drain_frames(&mut client);
    assert_eq!(frames.len(), 1);
    assert_eq!(route_of(&frames[0]), ROUTE_AUTH);
    server.handle_packet(now, &frames[0]).unwrap();
    assert_eq!(server.state(), SessionState::AwaitingAuth);
    server.accept(now).unwrap();
    let ok = server.poll_transmit().unwrap();
    assert_eq!(route_of(&ok), ROUTE_AUTH_OK);
    client.handle_packet(now, &ok).unwrap();
    assert!(client.is_connected());
    assert_eq!(client.client_id(), 9);
    assert!(
        drain_events(&mut client)
            .iter()
            .any(|e| matches!(e, SessionEvent::Connected { client_id: 9, .. }))
    );
}

#[test]
fn packets_out_of_auth_phase_are_violations() {
    let now = Instant::now();
    let (client, server) = plaintext_configs(SessionConfig::default());
    let ping = control_body(&ControlMessage::Ping { id: 0 });
    let auth = control_body(&ControlMessage::Auth {
        token: b"t".to_vec(),
    });

    // Server waiting for AUTH: an application message instead.
    let mut pair = SessionPair::new(&client, &server, now);
    let hello = pair.client.poll_transmit().unwrap();
    pair.server.handle_packet(now, &hello).unwrap();
    let early = plain_frame(INPUT_ROUTE, 0, b"x");
    assert!(matches!(
        pair.server.handle_packet(now, &early),
        Err(PacketError::Unexpected(_))
    ));
    assert!(!authenticates(&drain_events(&mut pair.server)));
    assert_eq!(
        pair.server.state(),
        SessionState::Closed(DisconnectReason::ProtocolViolation)
    );

    // Server deciding: a PING after the AUTH.
    let mut pair = SessionPair::new(&client, &server, now);
    pair.auto_accept = false;
    pair.pump(now);
    assert_eq!(pair.server.state(), SessionState::AwaitingAuth);
    assert!(
        pair.server
            .handle_packet(now, &plain_frame(1, 1, &ping))
            .is_err()
    );
    assert_eq!(
        pair.server.state(),
        SessionState::Closed(DisconnectReason::ProtocolViolation)
    );

    // Connected: a second AUTH.
    let mut pair = SessionPair::new(&client, &server, now);
    pair.connect(now).unwrap();
    assert!(
        pair.server
            .handle_packet(now, &plain_frame(ROUTE_AUTH, 1, &auth))
            .is_err()
    );
    assert_eq!(
        pair.server.state(),
        SessionState::Closed(DisconnectReason::ProtocolViolation)
    );
}

/// The server opens a tick's frames before it applies that tick's
/// authentication results, and delivers them after: a message the client
/// pipelined behind AUTH (before it could have seen AUTH_OK) must be refused
/// when it is opened, not judged by the phase at delivery time.
#[test]
fn message_pipelined_behind_auth_is_refused_even_if_accepted_before_delivery() {
    let now = Instant::now();
    let (client, server) = plaintext_configs(SessionConfig::default());
    let mut pair = SessionPair::new(&client, &server, now);
    pair.auto_accept = false;
    pair.pump(now);
    assert_eq!(pair.server.state(), SessionState::AwaitingAuth);
    // The client's AUTH used counter 0; its next packet is an application message.
    let early = plain_frame(INPUT_ROUTE, 1, b"early");
    let opened = pair.server.open_frame(now, &early);
    // The provider's answer is applied between opening and delivery.
    let _ = pair.server.accept(now);
    if let Ok(packets) = opened {
        for packet in packets {
            if pair.server.admit(now, &packet).is_ok() {
                let _ = pair.server.deliver(now, packet);
            }
        }
    }
    let events = drain_events(&mut pair.server);
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, SessionEvent::Message(_))),
        "a message sent before AUTH_OK was delivered: {events:?}"
    );
    assert_eq!(
        pair.server.state(),
        SessionState::Closed(DisconnectReason::ProtocolViolation)
    );
}

#[test]
fn malformed_hello_header_is_refused_with_protocol_violation() {
    let now = Instant::now();
    let (_, server) = encrypted_configs(registry(), SessionConfig::default());
    let mut server = Session::server(&server, 1, now);
    // A hello-sized packet on route 1 instead of 0 (step 2 of the server rules).
    let mut header = Header::new(CodecId::Raw, 1);
    header.flags = Flags::ENCRYPTED;
    header.payload_len = 48;
    let mut frame = Vec::new();
    header.encode(&mut frame);
    frame.extend_from_slice(&[0; 48]);
    assert!(matches!(
        server.handle_packet(now, &frame),
        Err(PacketError::Unexpected(_))
    ));
    assert_eq!(
        server.state(),
        SessionState::Closed(DisconnectReason::ProtocolViolation)
    );
    // The refusal is a plaintext response (flag clear): unauthenticated.
    let refusal = server.poll_transmit().unwrap();
    let decoded = Header::decode(&refusal, MAX_HANDSHAKE_BODY).unwrap();
    assert!(!decoded.header.flags.contains(Flags::ENCRYPTED));
    assert!(matches!(
        Response::decode(decoded.body),
        Ok(Response::Rejected {
            reason: DisconnectReason::ProtocolViolation,
            ..
        })
    ));
}

#[test]
fn announced_max_message_size_is_the_enforced_one() {
    // Configured below the protocol minimum: both sides announce 256, so 256
    // is what must be accepted.
    let session = SessionConfig {
        max_message_size: 10,
        compression: Vec::new(),
        ..SessionConfig::default()
    };
    let (mut pair, now) = connected(session);
    let payload = [7u8; 256];
    pair.client
        .send(INPUT_ROUTE, CodecId::Raw, &payload, None)
        .expect("within the announced 256 bytes");
    pair.server
        .send(STATE_ROUTE, CodecId::Raw, &payload, None)
        .expect("within the announced 256 bytes");
    pair.pump(now);
    assert!(
        pair.server_errors.is_empty() && pair.client_errors.is_empty(),
        "{:?} {:?}",
        pair.server_errors,
        pair.client_errors
    );
    assert_eq!(pair.server_messages()[0].payload, payload);
    assert_eq!(pair.client_messages()[0].payload, payload);
    assert_eq!(
        pair.client.send(INPUT_ROUTE, CodecId::Raw, &[0; 257], None),
        Err(SendError::TooLarge { len: 257, max: 256 })
    );
}

#[test]
fn a_slow_auth_decision_does_not_count_as_idle_time() {
    // The client may not send anything while the server decides, so the idle
    // timers of the connected session start at AUTH_OK, not before.
    let session = SessionConfig {
        handshake_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(10),
        ..SessionConfig::default()
    };
    let now = Instant::now();
    let (client, server) = encrypted_configs(registry(), session);
    let mut pair = SessionPair::new(&client, &server, now);
    pair.auto_accept = false;
    pair.pump(now);
    assert_eq!(pair.server.state(), SessionState::AwaitingAuth);
    let decided = now + Duration::from_secs(15);
    pair.server.accept(decided).unwrap();
    pair.tick(decided);
    assert!(pair.server.is_connected() && pair.client.is_connected());
    pair.tick(decided + Duration::from_millis(1500));
    assert!(pair.server.is_connected() && pair.client.is_connected());
}
