//! A fresh server `Session` fed a sequence of arbitrary frames and timer ticks.
//!
//! Input: one mode byte, then records `[op: u8][len: u16 LE][len bytes]`:
//! op & 3 == 0 -> deliver the bytes as a frame; 1 -> advance virtual time by
//! (op >> 2) * 100 ms and run `handle_timeout`; 2 -> both; 3 -> answer a
//! pending `AuthRequested` (accept if op & 4, else reject).
//! Mode byte: bit 0 = plaintext server (else Noise with the fixed fuzz key).
//!
//! Properties: never panics; never `Connected` unless the harness accepted an
//! `AuthRequested`; with Noise never an `AuthRequested` at all (the token only
//! travels in a sealed AUTH, which the fuzzer cannot seal: a replayed or forged
//! hello never authenticates); in plaintext mode `AuthRequested` only for a
//! frame whose first packet is a well-formed AUTH carrying exactly its token,
//! after a hello; every transmitted frame is a well-formed envelope (or a
//! batch of them); once closed, stays closed.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mokosh_fuzz::{Input, configs};
use mokosh_net::protocol::control::{ControlMessage, DisconnectReason, ROUTE_AUTH};
use mokosh_net::protocol::envelope::FramePackets;
use mokosh_net::protocol::session::{
    PacketError, ServerConfig, Session, SessionConfig, SessionEvent,
};

fn server_config(plaintext: bool) -> &'static ServerConfig {
    static NOISE: OnceLock<ServerConfig> = OnceLock::new();
    static PLAIN: OnceLock<ServerConfig> = OnceLock::new();
    let cell = if plaintext { &PLAIN } else { &NOISE };
    cell.get_or_init(|| configs(!plaintext, SessionConfig::default()).1)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let plaintext = mode & 1 == 1;
    let start = Instant::now();
    let mut now = start;
    let mut server = Session::server(server_config(plaintext), 77, now);

    let mut auth_pending = false; // AuthRequested seen, not yet answered
    let mut accepted = false;
    let mut connected = false;
    let mut closed = false;

    let mut records = 0;
    while !input.is_empty() && records < 256 {
        records += 1;
        let op = input.u8();
        let frame = input.chunk();
        let action = op & 3;
        if action == 1 || action == 2 {
            now += Duration::from_millis(u64::from(op >> 2) * 100);
            server.handle_timeout(now);
        }
        let mut delivered = None;
        match action {
            0 | 2 => {
                let result = server.handle_packet(now, frame);
                if closed {
                    assert_eq!(result, Err(PacketError::Closed));
                }
                if let Err(error) = &result {
                    if error.is_fatal() {
                        assert!(server.is_closed(), "fatal {error:?} left the session open");
                    }
                }
                delivered = Some(frame);
            }
            3 if auth_pending => {
                auth_pending = false;
                if op & 4 != 0 {
                    server.accept(now).expect("accept after AuthRequested");
                    accepted = true;
                } else {
                    server
                        .reject(DisconnectReason::AuthFailed, "fuzz")
                        .expect("reject after AuthRequested");
                }
            }
            _ => {}
        }

        while let Some(event) = server.poll_event() {
            match event {
                SessionEvent::AuthRequested { token } => {
                    assert!(!auth_pending && !accepted && !connected && !closed);
                    let frame = delivered.expect("AuthRequested without a packet");
                    assert!(plaintext, "AuthRequested from unsealed fuzz input");
                    check_plain_auth(frame, &token);
                    auth_pending = true;
                }
                SessionEvent::Connected { client_id, .. } => {
                    assert!(accepted, "Connected without an accepted AuthRequested");
                    assert!(!connected && !closed, "second Connected");
                    assert_eq!(client_id, 77);
                    connected = true;
                }
                SessionEvent::Message(_) => {
                    // Only possible once connected, and from a genuine peer
                    // when encrypted (the fuzzer cannot seal).
                    assert!(connected && !closed);
                    assert!(plaintext, "sealed message accepted from fuzz input");
                }
                SessionEvent::Disconnected { .. } => {
                    assert!(!closed, "second Disconnected");
                    closed = true;
                    auth_pending = false;
                }
            }
        }
        assert_eq!(server.is_closed(), closed);
        if closed {
            assert!(server.poll_timeout().is_none());
        }

        while let Some(out) = server.poll_transmit() {
            // Every frame the server emits is a well-formed envelope (or, after
            // the handshake, a batch of them).
            let packets = FramePackets::new(&out, usize::MAX)
                .map(|packets| packets.collect::<Result<Vec<_>, _>>());
            if let Err(error) | Ok(Err(error)) = packets {
                panic!("server transmitted a malformed frame ({error}): {out:02x?}");
            }
        }
    }
});

/// In plaintext mode an `AuthRequested` must come from a frame of well-formed
/// packets whose first is an AUTH carrying exactly its token (later packets
/// of the batch may be refused after it).
fn check_plain_auth(frame: &[u8], token: &[u8]) {
    let first = FramePackets::new(frame, usize::MAX)
        .expect("AuthRequested from an oversized frame")
        .next()
        .expect("AuthRequested from an empty frame")
        .expect("AuthRequested from a malformed frame");
    assert_eq!(first.header.route_id, ROUTE_AUTH);
    let auth = ControlMessage::decode(ROUTE_AUTH, first.body)
        .expect("AuthRequested from a malformed AUTH");
    assert_eq!(
        auth,
        ControlMessage::Auth {
            token: token.to_vec()
        }
    );
}
