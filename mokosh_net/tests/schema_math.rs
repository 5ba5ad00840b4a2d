//! The `math` feature: `Schema` for `bevy_math`/`glam` types, their documented
//! hashes, and messages carrying them through every codec.

use bevy_math::{
    Affine2, Affine3A, BVec2, BVec3, BVec4, DMat2, DMat3, DMat4, DQuat, DVec2, DVec3, DVec4, IVec2,
    IVec3, IVec4, Mat2, Mat3, Mat3A, Mat4, Quat, UVec2, UVec3, UVec4, Vec2, Vec3, Vec3A, Vec4,
};
use mokosh_net::protocol::codec::{self, CodecId, DecodeLimits};
use mokosh_net::protocol::schema::{Schema, SchemaHasher};
use mokosh_net::protocol::{GameMessage, MessageRegistry};
use serde::{Deserialize, Serialize};

/// A transform update as a game would send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, mokosh_derive::GameMessage)]
#[route_id = 40]
struct Transform {
    entity: u32,
    translation: Vec3,
    rotation: Quat,
    scale: Vec3,
    velocity: Vec2,
    cell: IVec2,
    chunk: UVec3,
    aim: Vec4,
    precise: DVec3,
    model: Mat4,
}

fn sample() -> Transform {
    Transform {
        entity: 7,
        translation: Vec3::new(1.5, -2.25, 1e-7),
        rotation: Quat::from_xyzw(0.0, 0.707_106_77, 0.0, 0.707_106_77),
        scale: Vec3::splat(3.0),
        velocity: Vec2::new(-0.1, 0.2),
        cell: IVec2::new(-5, i32::MAX),
        chunk: UVec3::new(0, 1, u32::MAX),
        aim: Vec4::new(0.25, 0.5, 0.75, f32::MIN_POSITIVE),
        precise: DVec3::new(1e300, -1.0 / 3.0, 0.0),
        model: Mat4::from_cols_array(&core::array::from_fn(|i| i as f32 * 0.5 - 3.0)),
    }
}

#[test]
fn messages_with_math_types_round_trip_with_every_codec() {
    let message = sample();
    for codec in [CodecId::Json, CodecId::Postcard] {
        let mut bytes = Vec::new();
        codec::encode(codec, &message, &mut bytes).expect("encode");
        let back: Transform = codec::decode(codec, &bytes, &DecodeLimits::DEFAULT).expect("decode");
        assert_eq!(back, message, "{codec:?}");
    }
    // On the wire a math type is exactly its components, in order.
    let mut as_struct = Vec::new();
    codec::encode(CodecId::Postcard, &message.rotation, &mut as_struct).expect("encode");
    let mut as_array = Vec::new();
    codec::encode(
        CodecId::Postcard,
        &message.rotation.to_array(),
        &mut as_array,
    )
    .expect("encode");
    assert_eq!(as_struct, as_array, "a Quat is its four components");
    let json = serde_json::to_string(&message.translation).expect("json");
    assert_eq!(json, "[1.5,-2.25,1e-7]");
}

#[test]
fn math_messages_register() {
    let mut registry = MessageRegistry::new();
    registry.register::<Transform>().expect("register");
    assert_eq!(Transform::ROUTE_ID, 40);
    assert_ne!(Transform::SCHEMA_HASH, 0);
}

/// `H[str(name)]`, computed from the specification (FNV-1a-64 of the name,
/// then FNV-1a-64 of that word's 8 little-endian bytes).
fn spec_leaf(name: &str) -> u64 {
    let fnv = |bytes: &[u8]| {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |state, &b| {
            (state ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    fnv(&fnv(name.as_bytes()).to_le_bytes())
}

#[test]
fn math_hashes_follow_the_spec_and_are_distinct() {
    let all: &[(&str, u64)] = &[
        ("Vec2", Vec2::SCHEMA_HASH),
        ("Vec3", Vec3::SCHEMA_HASH),
        ("Vec3A", Vec3A::SCHEMA_HASH),
        ("Vec4", Vec4::SCHEMA_HASH),
        ("DVec2", DVec2::SCHEMA_HASH),
        ("DVec3", DVec3::SCHEMA_HASH),
        ("DVec4", DVec4::SCHEMA_HASH),
        ("IVec2", IVec2::SCHEMA_HASH),
        ("IVec3", IVec3::SCHEMA_HASH),
        ("IVec4", IVec4::SCHEMA_HASH),
        ("UVec2", UVec2::SCHEMA_HASH),
        ("UVec3", UVec3::SCHEMA_HASH),
        ("UVec4", UVec4::SCHEMA_HASH),
        ("BVec2", BVec2::SCHEMA_HASH),
        ("BVec3", BVec3::SCHEMA_HASH),
        ("BVec4", BVec4::SCHEMA_HASH),
        ("Quat", Quat::SCHEMA_HASH),
        ("DQuat", DQuat::SCHEMA_HASH),
        ("Mat2", Mat2::SCHEMA_HASH),
        ("Mat3", Mat3::SCHEMA_HASH),
        ("Mat3A", Mat3A::SCHEMA_HASH),
        ("Mat4", Mat4::SCHEMA_HASH),
        ("DMat2", DMat2::SCHEMA_HASH),
        ("DMat3", DMat3::SCHEMA_HASH),
        ("DMat4", DMat4::SCHEMA_HASH),
        ("Affine2", Affine2::SCHEMA_HASH),
        ("Affine3A", Affine3A::SCHEMA_HASH),
    ];
    for (name, hash) in all {
        assert_eq!(*hash, spec_leaf(name), "{name}");
        assert_eq!(
            *hash,
            SchemaHasher::new().write_str(name).finish(),
            "{name}"
        );
    }
    let mut hashes: Vec<u64> = all.iter().map(|(_, hash)| *hash).collect();
    hashes.extend([<[f32; 3]>::SCHEMA_HASH, <(f32, f32, f32)>::SCHEMA_HASH]);
    let count = hashes.len();
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), count, "every math type hashes differently");
}

/// Golden values: a change here is a wire-protocol change.
#[test]
fn math_hash_vectors() {
    for (hash, expected) in [
        (Vec2::SCHEMA_HASH, 0xbc45_684c_4ed7_f4b1),
        (Vec3::SCHEMA_HASH, 0xcb50_1c61_ba62_6f6d),
        (Quat::SCHEMA_HASH, 0xd0da_2f47_3dbf_3886),
        (IVec2::SCHEMA_HASH, 0x33ea_3c61_2766_4c15),
        (Transform::SCHEMA_HASH, 0x5683_2634_eb7d_c81e),
    ] {
        assert_eq!(hash, expected, "{hash:#018x}");
    }
}

/// Every `| `Name` | `0x…` |` row of the math table in `docs/PROTOCOL.md`
/// section 11 is the hash this build computes (and the table is not empty).
#[test]
fn protocol_md_math_table_matches() {
    const SPEC: &str = include_str!("../../docs/PROTOCOL.md");
    let hashes: &[(&str, u64)] = &[
        ("Vec2", Vec2::SCHEMA_HASH),
        ("Vec3", Vec3::SCHEMA_HASH),
        ("Vec4", Vec4::SCHEMA_HASH),
        ("Quat", Quat::SCHEMA_HASH),
        ("IVec2", IVec2::SCHEMA_HASH),
        ("UVec3", UVec3::SCHEMA_HASH),
        ("Mat4", Mat4::SCHEMA_HASH),
    ];
    let mut checked = 0;
    for line in SPEC.lines() {
        let cells: Vec<&str> = line
            .split('|')
            .map(|cell| cell.trim().trim_matches('`'))
            .collect();
        let [_, name, value, _] = cells[..] else {
            continue;
        };
        let Some(hex) = value.strip_prefix("0x") else {
            continue;
        };
        let Some((_, hash)) = hashes.iter().find(|(known, _)| *known == name) else {
            panic!("docs/PROTOCOL.md lists {name}, which this test does not know");
        };
        assert_eq!(u64::from_str_radix(hex, 16).ok(), Some(*hash), "{name}");
        checked += 1;
    }
    assert_eq!(
        checked,
        hashes.len(),
        "every listed hash is in the document"
    );
}
