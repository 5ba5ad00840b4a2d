//! `Compressor::decompress` (zstd and LZ4) on hostile input, plus a
//! compress -> decompress round trip of the input itself.
//!
//! Properties: never panics; the output never exceeds `max_decompressed_size`;
//! a failed call leaves the output buffer exactly as it was; whatever
//! decompresses re-compresses and decompresses back to the same bytes; and
//! anything `compress` accepts decompresses back to the original.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use mokosh_net::protocol::compression::{CompressionConfig, CompressionId, Compressor};

const MAX: usize = 64 * 1024;
/// Bytes already in the output buffer, to check append-only / restore-on-error.
const PREFIX: &[u8] = b"prefix";

fn config() -> CompressionConfig {
    CompressionConfig {
        threshold: 0,
        zstd_level: 1,
        max_decompressed_size: MAX,
    }
}

thread_local! {
    // Reused across inputs like a session reuses its compressor, so state
    // left behind by a failed call is exercised too.
    static ZSTD: RefCell<Compressor> =
        RefCell::new(Compressor::new(CompressionId::Zstd, config()).expect("zstd"));
    static LZ4: RefCell<Compressor> =
        RefCell::new(Compressor::new(CompressionId::Lz4, config()).expect("lz4"));
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let slot = if selector & 1 == 0 { &ZSTD } else { &LZ4 };
    slot.with(|compressor| {
        let mut compressor = compressor.borrow_mut();
        let compressor = &mut *compressor;

        // 1. Hostile input.
        let mut out = PREFIX.to_vec();
        match compressor.decompress(input, &mut out) {
            Ok(()) => {
                assert!(out.starts_with(PREFIX), "decompress clobbered the buffer");
                let produced = &out[PREFIX.len()..];
                assert!(
                    produced.len() <= MAX,
                    "decompressed {} bytes, limit {MAX}",
                    produced.len()
                );
                round_trip(compressor, produced);
            }
            Err(_) => assert_eq!(out, PREFIX, "a failed decompress left output behind"),
        }

        // 2. The input as plaintext.
        round_trip(compressor, input);
    });
});

fn round_trip(compressor: &mut Compressor, plain: &[u8]) {
    let mut packed = PREFIX.to_vec();
    match compressor.compress(plain, &mut packed) {
        Ok(true) => {
            assert!(packed.starts_with(PREFIX));
            let packed = &packed[PREFIX.len()..];
            assert!(
                packed.len() < plain.len(),
                "compress said smaller but is not"
            );
            let mut unpacked = Vec::new();
            compressor
                .decompress(packed, &mut unpacked)
                .expect("own output must decompress");
            assert_eq!(unpacked, plain, "round trip changed the data");
        }
        // Not worth compressing: the caller sends the plain bytes. Whatever
        // was written must have been rolled back.
        Ok(false) | Err(_) => assert_eq!(packed, PREFIX, "compress left output behind"),
    }
}
