//! Golden test vectors: every hex block in `docs/PROTOCOL.md` marked
//! `<!-- vector: NAME -->` is recomputed here and compared byte for byte, and
//! every vector computed here must be in the document. Run with
//! `MOKOSH_PRINT_VECTORS=1` to print the computed blocks (for editing the doc).

use std::collections::BTreeMap;

use super::codec::CodecId;
use super::compression::CompressionId;
use super::control::{ControlMessage, DisconnectReason};
use super::crypto::{KeyPair, NoiseHandshake, PacketSealer};
use super::envelope::{Flags, Header};
use super::handshake::{Accept, Hello, Response};
use super::message::Direction;
use super::registry::{MessageInfo, MessageRegistry};
use super::schema::Schema;
use super::varint;

const SPEC: &str = include_str!("../../../docs/PROTOCOL.md");

fn key(first: u8) -> [u8; 32] {
    core::array::from_fn(|i| first.wrapping_add(i as u8))
}

fn computed() -> BTreeMap<&'static str, Vec<u8>> {
    let mut vectors = BTreeMap::new();

    let mut out = Vec::new();
    varint::write(300, &mut out);
    vectors.insert("varint-300", out);

    let typical = Header {
        flags: Flags::ENCRYPTED,
        message_id: 5_000,
        payload_len: 116,
        ..Header::new(CodecId::Postcard, 100)
    };
    let mut out = Vec::new();
    typical.encode(&mut out);
    vectors.insert("envelope-typical", out);

    let full = Header {
        flags: Flags::ENCRYPTED | Flags::COMPRESSED,
        message_id: 1,
        correlation_id: Some(7),
        schema_hash: Some(0x0123_4567_89ab_cdef),
        tick: Some(1_000),
        payload_len: 300,
        ..Header::new(CodecId::Json, 16_384)
    };
    let mut out = Vec::new();
    full.encode(&mut out);
    vectors.insert("envelope-all-fields", out);

    let mut out = Vec::new();
    Header {
        tick: Some(1_000),
        ..typical
    }
    .encode(&mut out);
    vectors.insert("envelope-tick", out);

    let hello = Hello::new(
        &[CodecId::Postcard, CodecId::Json],
        &[CompressionId::Zstd, CompressionId::Lz4],
        0x1122_3344_5566_7788,
        65_536,
    );
    let mut hello_bytes = Vec::new();
    hello
        .encode(&mut hello_bytes)
        .expect("hello fits its limits");
    vectors.insert("hello", hello_bytes.clone());

    let accept = Response::Accepted(Accept {
        codec: CodecId::Postcard,
        compression: CompressionId::Zstd,
        max_message_size: 65_536,
        ping_interval_ms: 1_000,
        idle_timeout_ms: 10_000,
    });
    let mut accept_bytes = Vec::new();
    accept.encode(&mut accept_bytes);
    vectors.insert("response-accept", accept_bytes.clone());

    let mut out = Vec::new();
    Response::Rejected {
        reason: DisconnectReason::AuthFailed,
        detail: "bad token".into(),
    }
    .encode(&mut out);
    vectors.insert("response-reject", out);

    let mut out = Vec::new();
    ControlMessage::Ping { id: 1 }
        .encode(&mut out)
        .expect("fits");
    vectors.insert("control-ping", out);

    let mut out = Vec::new();
    ControlMessage::Disconnect {
        reason: DisconnectReason::Kicked,
        detail: "bye".into(),
    }
    .encode(&mut out)
    .expect("fits");
    vectors.insert("control-disconnect", out);

    let auth = ControlMessage::Auth {
        token: b"token".to_vec(),
    };
    let mut auth_bytes = Vec::new();
    auth.encode(&mut auth_bytes).expect("fits");
    vectors.insert("control-auth", auth_bytes.clone());
    let auth_ok = ControlMessage::AuthOk { client_id: 42 };
    let mut auth_ok_bytes = Vec::new();
    auth_ok.encode(&mut auth_ok_bytes).expect("fits");
    vectors.insert("control-auth-ok", auth_ok_bytes.clone());

    // Sealing with a fixed traffic key: counters 0 and 1.
    let mut sealer = PacketSealer::new(key(0x00));
    for (name, payload) in [
        ("sealed-counter-0", b"hello"),
        ("sealed-counter-1", b"world"),
    ] {
        let mut header = Header::new(CodecId::Postcard, 100);
        let mut out = Vec::new();
        sealer
            .seal(&mut header, payload, &mut out)
            .expect("fresh sealer");
        vectors.insert(name, out);
    }
    // The same packets at tick 1000, then both batched in one frame.
    let mut sealer = PacketSealer::new(key(0x00));
    let mut frame = Vec::new();
    for (name, payload) in [("sealed-tick-0", b"hello"), ("sealed-tick-1", b"world")] {
        let mut header = Header {
            tick: Some(1_000),
            ..Header::new(CodecId::Postcard, 100)
        };
        let mut out = Vec::new();
        sealer
            .seal(&mut header, payload, &mut out)
            .expect("fresh sealer");
        frame.extend_from_slice(&out);
        vectors.insert(name, out);
    }
    vectors.insert("frame-two-packets", frame);

    // The Noise handshake with fixed keys.
    let server = KeyPair::from_private(key(0x01)).expect("valid key");
    vectors.insert("noise-server-public", server.public().0.to_vec());
    let mut initiator =
        NoiseHandshake::initiator_fixed(&server.public(), &key(0x40)).expect("initiator");
    let mut responder = NoiseHandshake::responder_fixed(&server, &key(0x80)).expect("responder");
    let message1 = initiator.write(&hello_bytes).expect("message 1");
    assert_eq!(responder.read(&message1).expect("read 1"), hello_bytes);
    let message2 = responder.write(&accept_bytes).expect("message 2");
    assert_eq!(initiator.read(&message2).expect("read 2"), accept_bytes);
    vectors.insert("noise-message-1", message1);
    vectors.insert("noise-message-2", message2);
    let (c2s, s2c) = initiator.raw_split();
    assert_eq!(responder.raw_split(), (c2s, s2c));
    vectors.insert("noise-key-client-to-server", c2s.to_vec());
    vectors.insert("noise-key-server-to-client", s2c.to_vec());
    // The first sealed packet each way: the client's AUTH, the server's AUTH_OK.
    for (name, traffic_key, message, body) in [
        ("noise-sealed-auth", c2s, &auth, &auth_bytes),
        ("noise-sealed-auth-ok", s2c, &auth_ok, &auth_ok_bytes),
    ] {
        let mut header = Header::new(CodecId::Raw, message.route());
        let mut out = Vec::new();
        PacketSealer::new(traffic_key)
            .seal(&mut header, body, &mut out)
            .expect("fresh sealer");
        vectors.insert(name, out);
    }

    // Schema and protocol hashes, as 64-bit values most significant byte first.
    vectors.insert(
        "schema-hash-golden",
        Golden::SCHEMA_HASH.to_be_bytes().to_vec(),
    );
    let mut registry = MessageRegistry::new();
    registry
        .register_raw(MessageInfo::new(100, "Golden", Golden::SCHEMA_HASH))
        .expect("route 100 is free");
    vectors.insert(
        "protocol-hash-golden",
        registry.protocol_hash().to_be_bytes().to_vec(),
    );
    let mut registry = MessageRegistry::new();
    registry
        .register_raw(
            MessageInfo::new(100, "Golden", Golden::SCHEMA_HASH)
                .with_direction(Direction::ClientToServer),
        )
        .expect("route 100 is free");
    vectors.insert(
        "protocol-hash-golden-client-to-server",
        registry.protocol_hash().to_be_bytes().to_vec(),
    );

    vectors
}

#[derive(mokosh_derive::Schema)]
#[allow(dead_code)]
struct Golden {
    id: u32,
    tags: Vec<String>,
}

fn documented() -> BTreeMap<String, Vec<u8>> {
    let mut vectors = BTreeMap::new();
    let mut lines = SPEC.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- vector: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert_eq!(
            fence.trim(),
            "```text",
            "vector {name} must be followed by a text block"
        );
        let mut hex = String::new();
        for body in lines.by_ref() {
            if body.trim() == "```" {
                break;
            }
            hex.extend(body.chars().filter(|c| c.is_ascii_hexdigit()));
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
            .collect();
        assert!(
            vectors.insert(name.to_owned(), bytes).is_none(),
            "duplicate vector {name}"
        );
    }
    vectors
}

fn format_hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|chunk| {
            chunk
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn protocol_md_vectors_match_the_implementation() {
    let computed = computed();
    if std::env::var_os("MOKOSH_PRINT_VECTORS").is_some() {
        for (name, bytes) in &computed {
            println!(
                "<!-- vector: {name} -->\n```text\n{}\n```\n",
                format_hex(bytes)
            );
        }
    }
    let documented = documented();
    for (name, bytes) in &computed {
        let doc = documented
            .get(*name)
            .unwrap_or_else(|| panic!("vector {name} is missing from docs/PROTOCOL.md"));
        assert_eq!(
            format_hex(doc),
            format_hex(bytes),
            "vector {name} differs from docs/PROTOCOL.md"
        );
    }
    for name in documented.keys() {
        assert!(
            computed.contains_key(name.as_str()),
            "docs/PROTOCOL.md has a vector {name} that no test computes"
        );
    }
}
