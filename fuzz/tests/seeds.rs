//! Seed corpus generator for the fuzz targets.
//!
//! `MOKOSH_WRITE_SEEDS=1 cargo test --test seeds` (from `fuzz/`) rewrites
//! `fuzz/seeds/<target>/`; without the variable it only checks that every
//! target has committed seeds. All seeds come from the library's own encoders,
//! so they are valid inputs the fuzzer can mutate from.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use mokosh_fuzz::{ROUTE_A, ROUTE_B, Sample, configs, push_chunk};
use mokosh_net::protocol::codec::{self, CodecId, RawBytes};
use mokosh_net::protocol::compression::{CompressionConfig, CompressionId, Compressor};
use mokosh_net::protocol::control::{ControlMessage, DisconnectReason};
use mokosh_net::protocol::envelope::{Flags, Header};
use mokosh_net::protocol::handshake::{Accept, Hello, Response};
use mokosh_net::protocol::session::{Session, SessionConfig};

const TARGETS: [&str; 7] = [
    "envelope_decode",
    "handshake_decode",
    "control_decode",
    "decompress",
    "codec_decode",
    "server_session",
    "established_session",
];

type Seeds = BTreeMap<&'static str, Vec<(String, Vec<u8>)>>;

fn add(seeds: &mut Seeds, target: &'static str, name: &str, bytes: Vec<u8>) {
    seeds
        .entry(target)
        .or_default()
        .push((name.to_owned(), bytes));
}

fn envelope(seeds: &mut Seeds) {
    let cases = [
        ("plain", Header::new(CodecId::Postcard, 100), &b"abc"[..]),
        (
            "all-fields",
            Header {
                flags: Flags::ENCRYPTED | Flags::COMPRESSED,
                message_id: 1 << 40,
                correlation_id: Some(300),
                schema_hash: Some(0xdead_beef_cafe_f00d),
                ..Header::new(CodecId::Json, 65_535)
            },
            &b"{\"a\":1}"[..],
        ),
        ("handshake", Header::new(CodecId::Raw, 0), &[][..]),
    ];
    for (name, mut header, body) in cases {
        header.payload_len = body.len() as u32;
        let mut frame = 4096u16.to_le_bytes().to_vec();
        header.encode(&mut frame);
        frame.extend_from_slice(body);
        add(seeds, "envelope_decode", name, frame);
    }
}

fn handshake(seeds: &mut Seeds) {
    let hello = Hello::new(
        &[CodecId::Postcard, CodecId::Json],
        &[CompressionId::Zstd, CompressionId::Lz4],
        0x0123_4567_89ab_cdef,
        65_536,
    );
    let mut out = Vec::new();
    hello.encode(&mut out).unwrap();
    add(seeds, "handshake_decode", "hello", out);

    let accepted = Response::Accepted(Accept {
        codec: CodecId::Postcard,
        compression: CompressionId::Lz4,
        max_message_size: 65_536,
        ping_interval_ms: 1000,
        idle_timeout_ms: 10_000,
    });
    let rejected = Response::Rejected {
        reason: DisconnectReason::AuthFailed,
        detail: "bad token".into(),
    };
    for (name, response) in [("accepted", accepted), ("rejected", rejected)] {
        let mut out = Vec::new();
        response.encode(&mut out);
        add(seeds, "handshake_decode", name, out);
    }
}

fn control(seeds: &mut Seeds) {
    let messages = [
        ("ping", ControlMessage::Ping { id: 5 }),
        ("pong", ControlMessage::Pong { id: u64::MAX }),
        (
            "disconnect",
            ControlMessage::Disconnect {
                reason: DisconnectReason::Kicked,
                detail: "bye ✓".into(),
            },
        ),
        (
            "auth",
            ControlMessage::Auth {
                token: b"token".to_vec(),
            },
        ),
        ("auth-ok", ControlMessage::AuthOk { client_id: 7 }),
    ];
    for (name, message) in messages {
        let mut out = vec![message.route() as u8];
        message.encode(&mut out).unwrap();
        add(seeds, "control_decode", name, out);
    }
}

fn decompress(seeds: &mut Seeds) {
    let plain: Vec<u8> = b"the quick brown fox jumps over the lazy dog; "
        .iter()
        .copied()
        .cycle()
        .take(600)
        .collect();
    let config = CompressionConfig {
        threshold: 0,
        ..CompressionConfig::default()
    };
    for (selector, id) in [(0u8, CompressionId::Zstd), (1, CompressionId::Lz4)] {
        let mut compressor = Compressor::new(id, config).unwrap();
        let mut out = vec![selector];
        assert!(compressor.compress(&plain, &mut out).unwrap());
        add(seeds, "decompress", id.name(), out);
        let mut raw = vec![selector];
        raw.extend_from_slice(&plain[..200]);
        add(seeds, "decompress", &format!("{}-plain", id.name()), raw);
    }
}

fn codecs(seeds: &mut Seeds) {
    let sample = Sample::example();
    let depth = 8 << 4; // max_json_depth 32
    let mut push = |name: &str, selector: u8, encode: &dyn Fn(&mut Vec<u8>)| {
        let mut out = vec![depth | selector];
        encode(&mut out);
        add(seeds, "codec_decode", name, out);
    };
    push("sample-json", 0, &|out| {
        codec::encode(CodecId::Json, &sample, out).unwrap()
    });
    push("sample-postcard", 1, &|out| {
        codec::encode(CodecId::Postcard, &sample, out).unwrap()
    });
    let raw = RawBytes(vec![1, 2, 3, 250]);
    push("bytes-json", 2, &|out| {
        codec::encode(CodecId::Json, &raw, out).unwrap()
    });
    push("bytes-postcard", 3, &|out| {
        codec::encode(CodecId::Postcard, &raw, out).unwrap()
    });
    push("value-json", 4, &|out| {
        out.extend_from_slice(br#"{"a":[1,{"b":null}],"c":"\"[{"}"#)
    });
    let strings = vec![Some("x".to_string()), None];
    push("strings-postcard", 5, &|out| {
        codec::encode(CodecId::Postcard, &strings, out).unwrap()
    });
    push("raw", 6, &|out| out.extend_from_slice(b"\x00raw bytes\xff"));
}

/// `[mode][op][chunk]...` records driving a fresh server with real client frames.
fn server_session(seeds: &mut Seeds) {
    for (name, encrypted) in [("noise", true), ("plaintext", false)] {
        let (client_config, server_config) = configs(encrypted, SessionConfig::default());
        let now = Instant::now();
        let mut client = Session::client(&client_config, now).unwrap();
        let mut server = Session::server(&server_config, 77, now);
        let hello = client.poll_transmit().unwrap();

        let mut seed = vec![u8::from(!encrypted)];
        seed.push(0); // deliver
        push_chunk(&mut seed, &hello);
        add(
            seeds,
            "server_session",
            &format!("{name}-hello"),
            seed.clone(),
        );

        server.handle_packet(now, &hello).unwrap();
        let response = server.poll_transmit().unwrap();
        client.handle_packet(now, &response).unwrap();
        // The client's sealed AUTH (only the plaintext one can reach the
        // AuthRequested state from fuzz input; the sealed one fails to open
        // against the harness's fresh keys, which is what it should do).
        let auth = client.poll_transmit().unwrap();
        seed.push(0);
        push_chunk(&mut seed, &auth);
        add(
            seeds,
            "server_session",
            &format!("{name}-auth"),
            seed.clone(),
        );
        server.handle_packet(now, &auth).unwrap();
        server.poll_event().unwrap(); // AuthRequested
        server.accept(now).unwrap();
        seed.push(3 | 4); // accept
        push_chunk(&mut seed, &[]);
        while let Some(frame) = server.poll_transmit() {
            client.handle_packet(now, &frame).unwrap();
        }
        assert!(client.is_connected());
        client
            .send(ROUTE_A, CodecId::Postcard, b"hello there", Some(9))
            .unwrap();
        client.send(ROUTE_B, CodecId::Raw, &[7; 300], None).unwrap();
        client.handle_timeout(now + Duration::from_secs(1)); // ping
        while let Some(frame) = client.poll_transmit() {
            seed.push(0);
            push_chunk(&mut seed, &frame);
        }
        seed.push((10 << 2) | 1); // advance 1 s, run timers
        push_chunk(&mut seed, &[]);
        client.disconnect(DisconnectReason::Requested, "done");
        while let Some(frame) = client.poll_transmit() {
            seed.push(2); // advance 0 s and deliver
            push_chunk(&mut seed, &frame);
        }
        add(seeds, "server_session", &format!("{name}-session"), seed);
    }
    let mut timeout = vec![0u8, (60 << 2) | 1];
    push_chunk(&mut timeout, &[]);
    add(seeds, "server_session", "timeout", timeout);
}

/// Operation sequences for the established-session target (see its docs).
fn established(seeds: &mut Seeds) {
    for mode in 0..4u8 {
        let mut seed = vec![mode];
        // send on A (negotiated codec), then deliver it
        seed.push(0x00);
        push_chunk(&mut seed, b"\x01\x02\x03");
        seed.extend_from_slice(&[1, 0]);
        // send a compressible message on B with a correlation id, deliver
        seed.extend_from_slice(&[0x08 | 0x20 | 0x40, 5, 0]);
        push_chunk(&mut seed, b"abcabc");
        seed.extend_from_slice(&[1, 1]);
        // replay the first frame
        seed.extend_from_slice(&[1, 0]);
        add(
            seeds,
            "established_session",
            &format!("m{mode}-send-replay"),
            seed,
        );

        let mut seed = vec![mode];
        seed.push(0x10); // raw codec on A
        push_chunk(&mut seed, b"payload");
        seed.extend_from_slice(&[5, 20]); // +1 s: pings both ways
        seed.extend_from_slice(&[2, 0, 10, 0]); // xor byte 10 of frame 0
        push_chunk(&mut seed, &[0x01]);
        seed.extend_from_slice(&[1, 0]); // then the genuine frame
        seed.extend_from_slice(&[6, 0, 0, 0]); // reflect a server ping
        add(
            seeds,
            "established_session",
            &format!("m{mode}-mutate"),
            seed,
        );

        let mut seed = vec![mode];
        seed.push(0x00);
        push_chunk(&mut seed, b"x");
        seed.extend_from_slice(&[7, 0, 0, 1, 0]); // counter + 1
        seed.extend_from_slice(&[4, 0, 3, 0]); // truncate
        push_chunk(&mut seed, &[]);
        seed.push(3); // arbitrary bytes
        push_chunk(&mut seed, &[1, 1, 2, 100, 0, 0]);
        add(
            seeds,
            "established_session",
            &format!("m{mode}-rewrite"),
            seed,
        );
    }
}

fn generate() -> Seeds {
    let mut seeds = Seeds::new();
    envelope(&mut seeds);
    handshake(&mut seeds);
    control(&mut seeds);
    decompress(&mut seeds);
    codecs(&mut seeds);
    server_session(&mut seeds);
    established(&mut seeds);
    seeds
}

#[test]
fn seeds() {
    let seeds = generate();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for target in TARGETS {
        assert!(seeds.get(target).is_some_and(|s| !s.is_empty()), "{target}");
    }
    if std::env::var_os("MOKOSH_WRITE_SEEDS").is_some() {
        for (target, files) in &seeds {
            let dir = root.join(target);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in files {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
    for target in TARGETS {
        let count = std::fs::read_dir(root.join(target))
            .map(|dir| dir.count())
            .unwrap_or(0);
        assert!(
            count > 0,
            "no committed seeds for {target}: run with MOKOSH_WRITE_SEEDS=1"
        );
    }
}
