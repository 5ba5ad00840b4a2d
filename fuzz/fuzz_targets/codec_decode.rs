//! `codec::decode` for JSON, Postcard and Raw on arbitrary bytes.
//!
//! Properties: never panics; every value that decodes re-encodes, and the
//! re-encoding decodes to the same value and is a fixed point of
//! encode(decode(.)); Raw is the identity on bytes; the JSON nesting limit
//! holds for anything that decodes (checked on `serde_json::Value`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mokosh_fuzz::Sample;
use mokosh_net::protocol::codec::{self, CodecId, DecodeLimits, RawBytes};
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let limits = DecodeLimits {
        max_json_depth: usize::from(selector >> 4) * 4, // 0..=60
    };
    match selector & 0x0f {
        0 => round_trip::<Sample>(CodecId::Json, bytes, &limits),
        1 => round_trip::<Sample>(CodecId::Postcard, bytes, &limits),
        2 => round_trip::<RawBytes>(CodecId::Json, bytes, &limits),
        3 => round_trip::<RawBytes>(CodecId::Postcard, bytes, &limits),
        4 => json_value(bytes, &limits),
        5 => round_trip::<Vec<Option<String>>>(CodecId::Postcard, bytes, &limits),
        _ => {
            // Raw carries exactly the bytes, for any input.
            let raw: RawBytes = codec::decode(CodecId::Raw, bytes, &limits)
                .expect("raw decodes anything into RawBytes");
            assert_eq!(&raw[..], bytes);
            let mut out = Vec::new();
            codec::encode(CodecId::Raw, &raw, &mut out).expect("raw encodes RawBytes");
            assert_eq!(out, bytes);
            // And refuses everything that is not bytes.
            assert!(codec::decode::<u32>(CodecId::Raw, bytes, &limits).is_err());
            assert!(codec::decode::<Sample>(CodecId::Raw, bytes, &limits).is_err());
        }
    }
});

fn round_trip<T>(codec: CodecId, bytes: &[u8], limits: &DecodeLimits)
where
    T: Serialize + DeserializeOwned + PartialEq + core::fmt::Debug,
{
    let Ok(value) = codec::decode::<T>(codec, bytes, limits) else {
        return;
    };
    let mut first = Vec::new();
    codec::encode(codec, &value, &mut first).expect("a decoded value re-encodes");
    // The canonical form may nest deeper than the input did (JSON accepts a
    // string for a byte buffer but writes an array), so re-decode with room.
    let relaxed = DecodeLimits {
        max_json_depth: limits.max_json_depth + 16,
    };
    let again: T = codec::decode(codec, &first, &relaxed)
        .unwrap_or_else(|e| panic!("re-encoded {codec} value does not decode: {e}: {value:?}"));
    assert_eq!(again, value);
    let mut second = Vec::new();
    codec::encode(codec, &again, &mut second).expect("re-encodes");
    assert_eq!(first, second, "{codec} encoding is not a fixed point");
}

fn json_value(bytes: &[u8], limits: &DecodeLimits) {
    let Ok(value) = codec::decode::<serde_json::Value>(CodecId::Json, bytes, limits) else {
        return;
    };
    let depth = depth(&value);
    assert!(
        depth <= limits.max_json_depth,
        "decoded JSON nests {depth} deep, limit {}",
        limits.max_json_depth
    );
}

fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
