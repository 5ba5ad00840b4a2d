//! `encryption_compression_demo`: what compression and encryption do to a
//! message on the wire, and what encryption refuses.
//!
//! ```text
//! cargo run --example encryption_compression_demo
//! ```
//!
//! Everything runs on the sans-IO protocol core through
//! `mokosh::protocol::testing::SessionPair` (a client and a server session wired
//! back to back), so every frame can be captured and inspected; no sockets, no
//! clocks beyond one `Instant`, deterministic sizes.
//!
//! 1. A world snapshot of 400 entities (compressible, like real snapshots) is
//!    sent client → server and server → client with compression off, zstd and
//!    lz4 (`SessionConfig::compression` on both sides). For each frame it prints
//!    the serialized size, the header bytes and flags, the ciphertext and the
//!    16-byte Poly1305 tag, and checks the receiver decodes an equal snapshot.
//! 2. A sealed frame with one bit flipped — in the ciphertext, then in the
//!    header (which is authenticated as associated data) — is rejected with
//!    `PacketError::DecryptFailed`, and the receiving session closes.
//! 3. A plaintext client cannot talk to an encrypted server, nor an encrypted
//!    client to a plaintext server: both end with `SecurityMismatch`.
//!
//! Exits 0 when every check holds, 1 otherwise.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use mokosh::GameMessage;
use mokosh::protocol::codec;
use mokosh::protocol::crypto::TAG_LEN;
use mokosh::protocol::envelope::Flags;
use mokosh::protocol::testing::SessionPair;
use mokosh::protocol::{
    ClientConfig, ClientSecurity, CompressionId, DecodeLimits, DisconnectReason, Header, KeyPair,
    MessageRegistry, PacketError, ServerConfig, ServerSecurity, Session, SessionConfig,
    SessionEvent,
};
use serde::{Deserialize, Serialize};

/// One replicated entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, mokosh::Schema)]
struct EntityState {
    id: u32,
    kind: String,
    position: (f32, f32, f32),
    velocity: (f32, f32, f32),
    health: u16,
}

/// The world, server → client (and, for the demo, client → server too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 300]
struct Snapshot {
    tick: u64,
    entities: Vec<EntityState>,
}

/// A small message for the tampering part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 301]
struct Chat {
    text: String,
}

/// A deterministic snapshot: entities on a grid, most of them standing still,
/// as in a real game (which is why snapshots compress well).
fn snapshot(entities: u32) -> Snapshot {
    let kinds = ["tree", "rock", "player", "npc_guard"];
    Snapshot {
        tick: 4242,
        entities: (0..entities)
            .map(|id| EntityState {
                id,
                kind: kinds[(id % 4) as usize].to_owned(),
                position: ((id % 20) as f32 * 2.0, 0.0, (id / 20) as f32 * 2.0),
                velocity: if id % 4 == 2 {
                    (1.0, 0.0, 0.5)
                } else {
                    (0.0, 0.0, 0.0)
                },
                health: if id % 4 == 2 { 100 } else { 0 },
            })
            .collect(),
    }
}

fn registry() -> Arc<MessageRegistry> {
    let mut registry = MessageRegistry::new();
    registry
        .register::<Snapshot>()
        .and_then(|registry| registry.register::<Chat>())
        .expect("distinct routes");
    Arc::new(registry)
}

/// A connected, encrypted session pair that offers / supports only `compression`.
fn pair(compression: CompressionId, now: Instant) -> SessionPair {
    let config = SessionConfig {
        compression: vec![compression],
        ..SessionConfig::default()
    };
    let mut pair = SessionPair::with_registry(registry(), config, now);
    pair.connect(now).expect("handshake");
    pair
}

/// Describes a sealed frame: header | ciphertext | tag.
fn anatomy(frame: &[u8]) -> String {
    match Header::decode(frame, usize::MAX) {
        Ok(decoded) => {
            let flags = decoded.header.flags;
            let mut names = Vec::new();
            if flags.contains(Flags::ENCRYPTED) {
                names.push("ENCRYPTED");
            }
            if flags.contains(Flags::COMPRESSED) {
                names.push("COMPRESSED");
            }
            let tag = if flags.contains(Flags::ENCRYPTED) {
                TAG_LEN
            } else {
                0
            };
            format!(
                "header {} B [{}] + ciphertext {} B + tag {} B = {} B",
                decoded.header_len,
                names.join("|"),
                decoded.body.len() - tag,
                tag,
                frame.len()
            )
        }
        Err(error) => format!("undecodable header: {error}"),
    }
}

/// Sends `message` from `from` to `to` frame by frame; returns the frame and
/// what `to` decoded.
fn transfer(
    from: &mut Session,
    to: &mut Session,
    now: Instant,
    message: &Snapshot,
) -> (Vec<u8>, Option<Snapshot>) {
    let before = from.stats().bytes_out;
    from.send_message(message).expect("send");
    let frame = from.poll_transmit().expect("one frame");
    assert!(from.poll_transmit().is_none());
    assert_eq!(from.stats().bytes_out - before, frame.len() as u64);
    if let Err(error) = to.handle_packet(now, &frame) {
        println!("      receiver refused it: {error}");
        return (frame, None);
    }
    let mut received = None;
    while let Some(event) = to.poll_event() {
        if let SessionEvent::Message(message) = event {
            received = message.decode::<Snapshot>(&DecodeLimits::default()).ok();
        }
    }
    (frame, received)
}

/// Part 1. Returns whether every round trip delivered an equal snapshot.
fn sizes(now: Instant) -> bool {
    let message = snapshot(400);
    let mut serialized = Vec::new();
    codec::encode(codec::CodecId::Postcard, &message, &mut serialized).expect("serializable");
    println!(
        "== 1. a {}-entity snapshot: {} bytes serialized (postcard)",
        message.entities.len(),
        serialized.len()
    );
    let mut ok = true;
    for compression in [CompressionId::None, CompressionId::Zstd, CompressionId::Lz4] {
        let mut pair = pair(compression, now);
        let negotiated = pair.client.compression();
        println!("-- compression {compression} (negotiated: {negotiated:?})");
        ok &= negotiated == Some(compression);
        for (direction, (frame, received)) in [
            (
                "client → server",
                transfer(&mut pair.client, &mut pair.server, now, &message),
            ),
            (
                "server → client",
                transfer(&mut pair.server, &mut pair.client, now, &message),
            ),
        ] {
            let intact = received.as_ref() == Some(&message);
            println!(
                "   {direction}: {:5} B serialized → {:5} B on the wire ({:5.1}%): {}{}",
                serialized.len(),
                frame.len(),
                100.0 * frame.len() as f64 / serialized.len() as f64,
                anatomy(&frame),
                if intact {
                    ""
                } else {
                    "  <-- NOT RECEIVED INTACT"
                }
            );
            ok &= intact;
        }
    }
    ok
}

/// Part 2: flips one bit at `position` (counted from the frame's end when
/// negative) in a sealed frame. Returns whether the server refused it with
/// `DecryptFailed` and closed.
fn tamper(now: Instant, what: &str, position: isize) -> bool {
    let mut pair = pair(CompressionId::Zstd, now);
    pair.client
        .send_message(&Chat {
            text: "transfer 10 gold to bob".into(),
        })
        .expect("send");
    let mut frame = pair.client.poll_transmit().expect("one frame");
    let at = if position < 0 {
        frame.len() - position.unsigned_abs()
    } else {
        position as usize
    };
    frame[at] ^= 0x01;
    let result = pair.server.handle_packet(now, &frame);
    let closed_with =
        std::iter::from_fn(|| pair.server.poll_event()).find_map(|event| match event {
            SessionEvent::Disconnected { reason, .. } => Some(reason),
            _ => None,
        });
    // The server's DISCONNECT reaches the client, which closes too.
    pair.pump(now);
    println!(
        "   bit flipped in the {what} (byte {at} of {}): handle_packet → {result:?}; server session closed with {closed_with:?}; client state {:?}",
        frame.len(),
        pair.client.state()
    );
    result == Err(PacketError::DecryptFailed)
        && closed_with == Some(DisconnectReason::DecryptFailed)
        && pair.server.is_closed()
}

/// Part 3: a handshake between `client` and `server` security settings.
/// Returns the reason each side ended with.
fn mismatch(
    now: Instant,
    client: ClientSecurity,
    server: ServerSecurity,
) -> (Option<DisconnectReason>, Option<DisconnectReason>) {
    let session = SessionConfig::default();
    let client = ClientConfig {
        security: client,
        auth_token: b"player".to_vec(),
        registry: registry(),
        session: session.clone(),
    };
    let server = ServerConfig {
        security: server,
        registry: registry(),
        session,
    };
    let mut pair = SessionPair::new(&client, &server, now);
    let client_result = pair.connect(now).err();
    let server_reason = pair.server_events.iter().find_map(|event| match event {
        SessionEvent::Disconnected { reason, .. } => Some(*reason),
        _ => None,
    });
    println!(
        "   client: {:?}, server errors: {:?}",
        client_result,
        pair.server_errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    (client_result, server_reason)
}

fn main() -> ExitCode {
    let now = Instant::now();
    let mut ok = sizes(now);

    println!("\n== 2. tampering: a sealed frame with one bit flipped");
    ok &= tamper(now, "Poly1305 tag", -1);
    ok &= tamper(now, "ciphertext", -(TAG_LEN as isize) - 3);
    // Byte 3 is the first byte of the route id varint: flipping its low bit
    // turns route 301 (Chat) into 300 (Snapshot), a valid route. The header is
    // authenticated as associated data, so rerouting a message is detected just
    // like changing its contents.
    ok &= tamper(now, "header (route id)", 3);

    println!("\n== 3. encryption is never silently dropped");
    let keypair = KeyPair::generate().expect("OS randomness");
    println!("-- plaintext client → encrypted server");
    let (client, server) = mismatch(
        now,
        ClientSecurity::Plaintext,
        ServerSecurity::Noise(keypair.clone()),
    );
    ok &= client == Some(DisconnectReason::SecurityMismatch);
    ok &= server == Some(DisconnectReason::SecurityMismatch);
    println!("-- encrypted client → plaintext server");
    let (client, _) = mismatch(
        now,
        ClientSecurity::Pinned(keypair.public()),
        ServerSecurity::Plaintext,
    );
    ok &= client == Some(DisconnectReason::SecurityMismatch);

    if ok {
        println!("\nOK: compressed + sealed round trips intact; tampering and downgrades refused");
        ExitCode::SUCCESS
    } else {
        eprintln!("\nFAIL: see above");
        ExitCode::FAILURE
    }
}
