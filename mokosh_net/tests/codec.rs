//! Integration tests for `mokosh_net::protocol::codec`.

use std::collections::HashMap;

use mokosh_net::protocol::codec::{
    CodecError, CodecId, DecodeLimits, RawBytes, decode, encode, negotiate_codec,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
enum Action {
    Idle,
    Fire { weapon: u8 },
    Jump,
}

/// Shaped like a per-tick player input message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Input {
    tick: u32,
    move_x: f32,
    move_y: f32,
    aim: f32,
    action: Action,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Player {
    id: u32,
    pos: [f32; 3],
    vel: [f32; 3],
    health: u16,
}

/// Shaped like a world snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Snapshot {
    tick: u32,
    players: Vec<Player>,
}

/// A newtype around the raw payload type, as an app message might be.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Opaque(RawBytes);

/// A borrowed byte string serialized with `serialize_bytes`, like a
/// `#[serde(with = "serde_bytes")] &[u8]` field.
struct BytesRef<'a>(&'a [u8]);

impl Serialize for BytesRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

// JSON cannot round-trip NaN/inf, so keep floats finite for every codec.
fn finite() -> impl Strategy<Value = f32> {
    -1.0e6f32..1.0e6f32
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Idle),
        any::<u8>().prop_map(|weapon| Action::Fire { weapon }),
        Just(Action::Jump),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    (any::<u32>(), finite(), finite(), finite(), action()).prop_map(
        |(tick, move_x, move_y, aim, action)| Input {
            tick,
            move_x,
            move_y,
            aim,
            action,
        },
    )
}

fn player() -> impl Strategy<Value = Player> {
    (
        any::<u32>(),
        [finite(), finite(), finite()],
        [finite(), finite(), finite()],
        any::<u16>(),
    )
        .prop_map(|(id, pos, vel, health)| Player {
            id,
            pos,
            vel,
            health,
        })
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (any::<u32>(), prop::collection::vec(player(), 64))
        .prop_map(|(tick, players)| Snapshot { tick, players })
}

fn round_trip<T>(codec: CodecId, value: &T) -> T
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let mut buf = Vec::new();
    encode(codec, value, &mut buf).unwrap();
    decode(codec, &buf, &DecodeLimits::default()).unwrap()
}

proptest! {
    #[test]
    fn input_round_trips(value in input()) {
        for codec in [CodecId::Json, CodecId::Postcard] {
            prop_assert_eq!(&round_trip(codec, &value), &value);
        }
    }

    #[test]
    fn snapshot_round_trips(value in snapshot()) {
        for codec in [CodecId::Json, CodecId::Postcard] {
            prop_assert_eq!(&round_trip(codec, &value), &value);
        }
    }

    #[test]
    fn raw_bytes_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for codec in CodecId::ALL {
            let value = RawBytes(bytes.clone());
            prop_assert_eq!(&round_trip(codec, &value), &value);
        }
        // Raw is the identity on the wire.
        let mut buf = Vec::new();
        encode(CodecId::Raw, &RawBytes(bytes.clone()), &mut buf).unwrap();
        prop_assert_eq!(&buf, &bytes);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let limits = DecodeLimits::default();
        for codec in CodecId::ALL {
            let _ = decode::<Input>(codec, &bytes, &limits);
            let _ = decode::<Snapshot>(codec, &bytes, &limits);
            let _ = decode::<HashMap<String, Vec<u64>>>(codec, &bytes, &limits);
            let _ = decode::<RawBytes>(codec, &bytes, &limits);
        }
    }

    #[test]
    fn truncated_encodings_are_errors(value in snapshot(), cut in 0usize..10_000) {
        for codec in [CodecId::Json, CodecId::Postcard] {
            let mut buf = Vec::new();
            encode(codec, &value, &mut buf).unwrap();
            let cut = cut % buf.len();
            prop_assert!(decode::<Snapshot>(codec, &buf[..cut], &DecodeLimits::default()).is_err());
        }
    }
}

#[test]
fn negotiation_table() {
    use CodecId::{Json as J, Postcard as P, Raw as R};
    let cases: &[(&[CodecId], &[CodecId], Option<CodecId>)] = &[
        // Client preference wins, not the server's order.
        (&[P, J], &[J, P], Some(P)),
        (&[J, P], &[P, J], Some(J)),
        // First supported entry, skipping unsupported ones.
        (&[R, J, P], &[P, J], Some(J)),
        // Empty offer / empty support.
        (&[], &[P, J, R], None),
        (&[P], &[], None),
        (&[], &[], None),
        // No overlap.
        (&[J], &[P, R], None),
        // Duplicates in the offer are ignored.
        (&[J, J, P, J], &[P], Some(P)),
        (&[P, P], &[P, J], Some(P)),
        (&[J, J], &[P], None),
        // Raw is supported only when listed, like any other codec.
        (&[R], &[P, J], None),
        (&[R], &[P, J, R], Some(R)),
    ];
    for (offer, supported, expected) in cases {
        assert_eq!(
            negotiate_codec(offer, supported),
            *expected,
            "offer {offer:?}, supported {supported:?}"
        );
    }
}

#[test]
fn json_depth_bomb_rejected_before_parsing() {
    let limits = DecodeLimits::default();
    let mut bomb = vec![b'['; 100_000];
    bomb.extend(std::iter::repeat_n(b']', 100_000));
    assert!(matches!(
        decode::<serde_json::Value>(CodecId::Json, &bomb, &limits),
        Err(CodecError::JsonTooDeep { limit: 32 })
    ));
    // Unbalanced: only openers.
    let opens = vec![b'{'; 100_000];
    assert!(matches!(
        decode::<serde_json::Value>(CodecId::Json, &opens, &limits),
        Err(CodecError::JsonTooDeep { .. })
    ));
}

#[test]
fn json_depth_limit_boundary() {
    let nested = |depth: usize| {
        let mut s = "[".repeat(depth);
        s.push_str(&"]".repeat(depth));
        s.into_bytes()
    };
    let limits = DecodeLimits { max_json_depth: 4 };
    assert!(decode::<serde_json::Value>(CodecId::Json, &nested(4), &limits).is_ok());
    assert!(matches!(
        decode::<serde_json::Value>(CodecId::Json, &nested(5), &limits),
        Err(CodecError::JsonTooDeep { limit: 4 })
    ));
    // Brackets inside strings, with escaped quotes, do not count.
    let tricky = br#"["[[[[[[[[", "\"{{{{{{{{", "\\", "]]]]"]"#;
    assert!(
        decode::<Vec<String>>(CodecId::Json, tricky, &DecodeLimits { max_json_depth: 1 }).is_ok()
    );
    // serde_json's own recursion limit (128) still applies above it.
    let generous = DecodeLimits {
        max_json_depth: 10_000,
    };
    assert!(matches!(
        decode::<serde_json::Value>(CodecId::Json, &nested(200), &generous),
        Err(CodecError::Json(_))
    ));
}

#[test]
fn json_garbage_and_unbalanced_inputs_are_errors() {
    let limits = DecodeLimits::default();
    let inputs: &[&[u8]] = &[
        b"",
        b"   ",
        b"]]]]",
        b"[1,2",
        b"{\"tick\":1",
        b"\"unterminated",
        b"\"\\",
        b"nul",
        b"\xff\xfe\x00",
        b"{\"tick\":1,\"move_x\":1e999}",
    ];
    for input in inputs {
        assert!(
            decode::<Input>(CodecId::Json, input, &limits).is_err(),
            "{input:?}"
        );
        assert!(decode::<serde_json::Value>(CodecId::Json, input, &limits).is_err());
    }
}

#[test]
fn trailing_bytes_rejected() {
    let limits = DecodeLimits::default();
    let value = Input {
        tick: 9,
        move_x: 0.5,
        move_y: -1.0,
        aim: 3.0,
        action: Action::Jump,
    };
    for codec in [CodecId::Json, CodecId::Postcard] {
        let mut buf = Vec::new();
        encode(codec, &value, &mut buf).unwrap();
        assert_eq!(decode::<Input>(codec, &buf, &limits).unwrap(), value);
        for extra in [&b"\0"[..], b" ", b"\n", b"xyz", b"{}"] {
            let mut longer = buf.clone();
            longer.extend_from_slice(extra);
            assert!(
                matches!(
                    decode::<Input>(codec, &longer, &limits),
                    Err(CodecError::TrailingBytes { count }) if count == extra.len()
                ),
                "{codec} with {extra:?}"
            );
        }
    }
    // Two concatenated JSON values.
    assert!(matches!(
        decode::<u32>(CodecId::Json, b"1 2", &limits),
        Err(CodecError::TrailingBytes { count: 2 })
    ));
}

#[test]
fn postcard_huge_length_fails_fast() {
    let limits = DecodeLimits::default();
    // Varint 2^60 (9 bytes) + one element: claims 2^60 elements.
    let mut huge = Vec::new();
    let mut n: u64 = 1 << 60;
    while n >= 0x80 {
        huge.push((n as u8) | 0x80);
        n >>= 7;
    }
    huge.push(n as u8);
    huge.push(1);
    assert_eq!(huge.len(), 10);
    // If any of these pre-allocated from the claimed length they would abort
    // the test process (2^60 * 8 bytes), not just fail.
    assert!(matches!(
        decode::<Vec<u64>>(CodecId::Postcard, &huge, &limits),
        Err(CodecError::Postcard(_))
    ));
    assert!(decode::<Vec<Player>>(CodecId::Postcard, &huge, &limits).is_err());
    assert!(decode::<Vec<Vec<u8>>>(CodecId::Postcard, &huge, &limits).is_err());
    assert!(decode::<String>(CodecId::Postcard, &huge, &limits).is_err());
    assert!(decode::<RawBytes>(CodecId::Postcard, &huge, &limits).is_err());
    assert!(decode::<HashMap<u64, u64>>(CodecId::Postcard, &huge, &limits).is_err());
    assert!(decode::<Snapshot>(CodecId::Postcard, &[&[0][..], &huge].concat(), &limits).is_err());
}

#[test]
fn raw_requires_bytes() {
    let limits = DecodeLimits::default();
    let mut buf = Vec::new();
    // Non-byte values are refused on encode and `buf` stays untouched.
    assert!(matches!(
        encode(CodecId::Raw, &7u32, &mut buf),
        Err(CodecError::RawRequiresBytes)
    ));
    assert!(matches!(
        encode(CodecId::Raw, &vec![1u8, 2, 3], &mut buf),
        Err(CodecError::RawRequiresBytes)
    ));
    assert!(matches!(
        encode(CodecId::Raw, "text", &mut buf),
        Err(CodecError::RawRequiresBytes)
    ));
    assert!(matches!(
        encode(CodecId::Raw, &Some(RawBytes::default()), &mut buf),
        Err(CodecError::RawRequiresBytes)
    ));
    assert!(buf.is_empty());
    // ... and on decode.
    assert!(matches!(
        decode::<Input>(CodecId::Raw, b"abc", &limits),
        Err(CodecError::RawRequiresBytes)
    ));
    assert!(matches!(
        decode::<u8>(CodecId::Raw, b"a", &limits),
        Err(CodecError::RawRequiresBytes)
    ));
    assert!(matches!(
        decode::<Vec<u8>>(CodecId::Raw, b"abc", &limits),
        Err(CodecError::RawRequiresBytes)
    ));
    assert!(matches!(
        decode::<serde_json::Value>(CodecId::Raw, b"abc", &limits),
        Err(CodecError::RawRequiresBytes)
    ));
    // Byte strings, also inside newtypes, pass through verbatim.
    encode(
        CodecId::Raw,
        &Opaque(RawBytes(b"payload".to_vec())),
        &mut buf,
    )
    .unwrap();
    encode(CodecId::Raw, &BytesRef(b"+more"), &mut buf).unwrap();
    assert_eq!(buf, b"payload+more");
    assert_eq!(
        decode::<Opaque>(CodecId::Raw, b"\x00\xffxyz", &limits).unwrap(),
        Opaque(RawBytes(b"\x00\xffxyz".to_vec()))
    );
    assert_eq!(
        decode::<RawBytes>(CodecId::Raw, b"", &limits).unwrap(),
        RawBytes::default()
    );
}

#[test]
fn encoded_sizes_of_1000_inputs() {
    let inputs: Vec<Input> = (0..1000u32)
        .map(|i| Input {
            tick: 10_000 + i,
            move_x: (i as f32 * 0.37).sin(),
            move_y: (i as f32 * 0.11).cos(),
            aim: i as f32 * 0.5,
            action: match i % 3 {
                0 => Action::Idle,
                1 => Action::Fire {
                    weapon: (i % 5) as u8,
                },
                _ => Action::Jump,
            },
        })
        .collect();
    let mut sizes = Vec::new();
    for codec in [CodecId::Json, CodecId::Postcard] {
        let mut total = 0;
        let mut buf = Vec::new();
        for input in &inputs {
            buf.clear();
            encode(codec, input, &mut buf).unwrap();
            total += buf.len();
        }
        println!("{codec}: 1000 input messages = {total} bytes");
        sizes.push(total);
    }
    assert!(sizes[1] < sizes[0], "postcard must be smaller than json");
}
