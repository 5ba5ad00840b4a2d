//! `codec_demo`: payload codecs (JSON, Postcard, Raw), compression, and codec
//! negotiation, measured on a deterministic batch of 1000 input messages.
//!
//! ```text
//! cargo run --example codec_demo            # human-readable tables
//! cargo run --example codec_demo -- --json  # the same data as JSON
//! ```
//!
//! Every number printed is computed by this program; the output is
//! deterministic (a `rand` `StdRng` from a fixed seed, no clocks).
//!
//! About the raw codec: `raw` sends bytes verbatim and only accepts byte
//! strings, so a typed struct has no "raw encoding" of its own. Here the
//! application packs each input into a fixed 17-byte little-endian layout
//! (u32 sequence, 2 × f32 direction, u8 buttons, f32 aim), which is what using
//! `raw` for game data means in practice: the size is the application's
//! packing, and the codec adds zero bytes of framing.

use std::process::ExitCode;

use mokosh::GameMessage;
use mokosh::protocol::codec::{self, CodecId, DecodeLimits, RawBytes, negotiate_codec};
use mokosh::protocol::compression::{
    CompressionConfig, CompressionId, Compressor, negotiate_compression,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;

const MESSAGES: usize = 1000;
const SEED: u64 = 0x5EED_1234_ABCD_0001;
/// Size of the hand-packed raw layout.
const PACKED_LEN: usize = 17;

/// One client input sample, as a game would send it every tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 16]
struct Input {
    sequence: u32,
    direction: (f32, f32),
    buttons: u8,
    aim: f32,
}

impl Input {
    /// The application's own fixed layout for the raw codec.
    fn pack(&self) -> [u8; PACKED_LEN] {
        let mut out = [0u8; PACKED_LEN];
        out[0..4].copy_from_slice(&self.sequence.to_le_bytes());
        out[4..8].copy_from_slice(&self.direction.0.to_le_bytes());
        out[8..12].copy_from_slice(&self.direction.1.to_le_bytes());
        out[12] = self.buttons;
        out[13..17].copy_from_slice(&self.aim.to_le_bytes());
        out
    }

    fn unpack(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; PACKED_LEN] = bytes.try_into().ok()?;
        let word = |at: usize| [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        Some(Input {
            sequence: u32::from_le_bytes(word(0)),
            direction: (f32::from_le_bytes(word(4)), f32::from_le_bytes(word(8))),
            buttons: bytes[12],
            aim: f32::from_le_bytes(word(13)),
        })
    }
}

/// A plausible input stream: the stick is held in one of 8 directions (or
/// released) for a few ticks at a time, buttons are pressed occasionally, and
/// the aim angle drifts.
fn generate(count: usize, seed: u64) -> Vec<Input> {
    const D: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const STICK: [(f32, f32); 9] = [
        (0.0, 0.0),
        (0.0, 1.0),
        (D, D),
        (1.0, 0.0),
        (D, -D),
        (0.0, -1.0),
        (-D, -D),
        (-1.0, 0.0),
        (-D, D),
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stick = STICK[0];
    let mut hold = 0;
    let mut aim: f32 = 0.0;
    (0..count)
        .map(|i| {
            if hold == 0 {
                stick = STICK[rng.random_range(0..STICK.len())];
                hold = rng.random_range(3..15);
            }
            hold -= 1;
            // Bit 0 fire, 1 jump, 2 crouch, 3 reload: mostly released.
            let mut buttons = 0u8;
            for bit in 0..4 {
                if rng.random_ratio(1, 8) {
                    buttons |= 1 << bit;
                }
            }
            let step = rng.random_range(-1000..=1000) as f32 / 20_000.0;
            aim = (aim + step).rem_euclid(std::f32::consts::TAU);
            Input {
                sequence: i as u32 + 1,
                direction: stick,
                buttons,
                aim,
            }
        })
        .collect()
}

/// One codec's encoding of the whole batch: the per-message payloads.
struct Encoded {
    label: &'static str,
    codec: CodecId,
    payloads: Vec<Vec<u8>>,
}

impl Encoded {
    fn total(&self) -> usize {
        self.payloads.iter().map(Vec::len).sum()
    }
    fn batch(&self) -> Vec<u8> {
        self.payloads.concat()
    }
}

fn encode_all(inputs: &[Input]) -> Result<Vec<Encoded>, String> {
    let limits = DecodeLimits::DEFAULT;
    let mut out = Vec::new();
    for (label, codec) in [("json", CodecId::Json), ("postcard", CodecId::Postcard)] {
        let mut payloads = Vec::with_capacity(inputs.len());
        for input in inputs {
            let mut bytes = Vec::new();
            codec::encode(codec, input, &mut bytes).map_err(|e| e.to_string())?;
            let back: Input = codec::decode(codec, &bytes, &limits).map_err(|e| e.to_string())?;
            if &back != input {
                return Err(format!("{label} round trip changed {input:?}"));
            }
            payloads.push(bytes);
        }
        out.push(Encoded {
            label,
            codec,
            payloads,
        });
    }
    let mut payloads = Vec::with_capacity(inputs.len());
    for input in inputs {
        let mut bytes = Vec::new();
        codec::encode(CodecId::Raw, &RawBytes(input.pack().to_vec()), &mut bytes)
            .map_err(|e| e.to_string())?;
        let back: RawBytes =
            codec::decode(CodecId::Raw, &bytes, &limits).map_err(|e| e.to_string())?;
        if Input::unpack(&back).as_ref() != Some(input) {
            return Err(format!("raw round trip changed {input:?}"));
        }
        payloads.push(bytes);
    }
    out.push(Encoded {
        label: "raw (17 B hand-packed)",
        codec: CodecId::Raw,
        payloads,
    });
    Ok(out)
}

fn reduction(bytes: usize, baseline: usize) -> f64 {
    // Rounded to 0.1 % so the printed and JSON values agree exactly.
    ((1.0 - bytes as f64 / baseline as f64) * 1000.0).round() / 10.0
}

struct CompressedRow {
    codec: &'static str,
    algorithm: CompressionId,
    input: usize,
    output: usize,
    per_message_compressed: usize,
}

fn compress_all(encoded: &[Encoded]) -> Result<Vec<CompressedRow>, String> {
    let mut rows = Vec::new();
    for enc in encoded {
        let batch = enc.batch();
        for algorithm in [CompressionId::Zstd, CompressionId::Lz4] {
            let mut compressor = Compressor::new(algorithm, CompressionConfig::DEFAULT)
                .map_err(|e| e.to_string())?;
            let mut packed = Vec::new();
            let smaller = compressor
                .compress(&batch, &mut packed)
                .map_err(|e| e.to_string())?;
            let output = if smaller {
                let mut unpacked = Vec::new();
                compressor
                    .decompress(&packed, &mut unpacked)
                    .map_err(|e| e.to_string())?;
                if unpacked != batch {
                    return Err(format!("{algorithm} round trip changed the batch"));
                }
                packed.len()
            } else {
                batch.len()
            };
            // What a session does with each message sent on its own.
            let mut per_message_compressed = 0;
            for payload in &enc.payloads {
                let mut scratch = Vec::new();
                if compressor
                    .compress(payload, &mut scratch)
                    .map_err(|e| e.to_string())?
                {
                    per_message_compressed += 1;
                }
            }
            rows.push(CompressedRow {
                codec: enc.label,
                algorithm,
                input: batch.len(),
                output,
                per_message_compressed,
            });
        }
    }
    Ok(rows)
}

fn list(codecs: &[CodecId]) -> String {
    let names: Vec<&str> = codecs.iter().map(|c| c.name()).collect();
    format!("[{}]", names.join(", "))
}

fn list_compression(ids: &[CompressionId]) -> String {
    let names: Vec<&str> = ids.iter().map(|c| c.name()).collect();
    format!("[{}]", names.join(", "))
}

fn main() -> ExitCode {
    let mut as_json = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => as_json = true,
            "-h" | "--help" => {
                println!("usage: codec_demo [--json]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("codec_demo: unknown argument {other:?}\nusage: codec_demo [--json]");
                return ExitCode::from(2);
            }
        }
    }
    match run(as_json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("codec_demo: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(as_json: bool) -> Result<(), String> {
    let inputs = generate(MESSAGES, SEED);
    let encoded = encode_all(&inputs)?;
    let json_total = encoded[0].total();
    let compressed = compress_all(&encoded)?;

    let codec_cases: [(&[CodecId], &[CodecId], &str); 6] = [
        (
            &[CodecId::Postcard, CodecId::Json],
            &[CodecId::Postcard, CodecId::Json, CodecId::Raw],
            "client's first choice is supported",
        ),
        (
            &[CodecId::Json, CodecId::Postcard],
            &[CodecId::Postcard, CodecId::Json],
            "client order wins; server order is irrelevant",
        ),
        (
            &[CodecId::Raw, CodecId::Postcard],
            &[CodecId::Postcard, CodecId::Json],
            "first supported entry of the offer",
        ),
        (
            &[CodecId::Json, CodecId::Json, CodecId::Postcard],
            &[CodecId::Postcard],
            "duplicates are harmless",
        ),
        (
            &[CodecId::Json],
            &[CodecId::Postcard],
            "no overlap: server refuses (NoCommonCodec)",
        ),
        (&[], &[CodecId::Postcard], "empty offer"),
    ];
    let compression_cases: [(&[CompressionId], &[CompressionId], &str); 4] = [
        (
            &[CompressionId::Zstd, CompressionId::Lz4],
            &[CompressionId::Zstd, CompressionId::Lz4],
            "client's first choice",
        ),
        (
            &[CompressionId::Zstd, CompressionId::Lz4],
            &[CompressionId::Lz4],
            "falls back to lz4",
        ),
        (
            &[CompressionId::None, CompressionId::Zstd],
            &[CompressionId::Zstd],
            "client asks for none first",
        ),
        (
            &[CompressionId::Zstd],
            &[],
            "no overlap: none (compression is optional)",
        ),
    ];

    if as_json {
        let report = json!({
            "messages": MESSAGES,
            "seed": format!("{SEED:#018x}"),
            "codecs": encoded.iter().map(|e| json!({
                "codec": e.codec.name(),
                "label": e.label,
                "bytes": e.total(),
                "bytes_per_message": e.total() as f64 / MESSAGES as f64,
                "reduction_vs_json_pct": reduction(e.total(), json_total),
            })).collect::<Vec<_>>(),
            "compression": compressed.iter().map(|r| json!({
                "codec": r.codec,
                "algorithm": r.algorithm.name(),
                "batch_bytes": r.input,
                "compressed_bytes": r.output,
                "reduction_vs_batch_pct": reduction(r.output, r.input),
                "reduction_vs_json_pct": reduction(r.output, json_total),
                "single_messages_compressed": r.per_message_compressed,
            })).collect::<Vec<_>>(),
            "compression_threshold_bytes": CompressionConfig::DEFAULT.threshold,
            "codec_negotiation": codec_cases.iter().map(|(offer, server, note)| json!({
                "client_offer": offer.iter().map(|c| c.name()).collect::<Vec<_>>(),
                "server_supports": server.iter().map(|c| c.name()).collect::<Vec<_>>(),
                "picked": negotiate_codec(offer, server).map(CodecId::name),
                "note": note,
            })).collect::<Vec<_>>(),
            "compression_negotiation": compression_cases.iter().map(|(offer, server, note)| json!({
                "client_offer": offer.iter().map(|c| c.name()).collect::<Vec<_>>(),
                "server_supports": server.iter().map(|c| c.name()).collect::<Vec<_>>(),
                "picked": negotiate_compression(offer, server).name(),
                "note": note,
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(());
    }

    println!("codec_demo: {MESSAGES} input messages (seed {SEED:#018x})");
    println!("Input {{ sequence: u32, direction: (f32, f32), buttons: u8, aim: f32 }}");
    println!("first message: {:?}", inputs[0]);
    println!();
    println!("Codec comparison (sum of the {MESSAGES} payloads, each encoded on its own)");
    println!(
        "  {:<24} {:>9} {:>9} {:>9}",
        "codec", "bytes", "B/msg", "vs JSON"
    );
    for e in &encoded {
        let versus = if e.codec == CodecId::Json {
            "baseline".to_string()
        } else {
            format!("-{:.1}%", reduction(e.total(), json_total))
        };
        println!(
            "  {:<24} {:>9} {:>9.2} {:>9}",
            e.label,
            e.total(),
            e.total() as f64 / MESSAGES as f64,
            versus
        );
    }
    println!("  Every payload was decoded again and compared with the original.");
    println!(
        "  raw: the application packs each input into {PACKED_LEN} bytes (lossless) and sends it"
    );
    println!(
        "  as RawBytes; raw adds no framing, so its size is exactly the application's layout."
    );
    println!();
    println!(
        "Compression of the same batch (the {MESSAGES} payloads concatenated), level/config = defaults"
    );
    println!(
        "  {:<24} {:<5} {:>9} {:>11} {:>10} {:>9}",
        "codec", "algo", "batch", "compressed", "vs batch", "vs JSON"
    );
    for r in &compressed {
        println!(
            "  {:<24} {:<5} {:>9} {:>11} {:>10} {:>9}",
            r.codec,
            r.algorithm.name(),
            r.input,
            r.output,
            format!("-{:.1}%", reduction(r.output, r.input)),
            format!("-{:.1}%", reduction(r.output, json_total)),
        );
    }
    let single: usize = compressed.iter().map(|r| r.per_message_compressed).sum();
    println!(
        "  Single input messages are below the {} B compression threshold: {single} of {}\n  \
         (message, codec, algorithm) combinations would be compressed when sent one by one.",
        CompressionConfig::DEFAULT.threshold,
        MESSAGES * compressed.len()
    );
    println!("  Compression pays for batches and snapshots, not for individual inputs.");
    println!();
    println!("Codec negotiation (server picks the first entry of the client's offer it supports)");
    for (offer, server, note) in &codec_cases {
        let picked = negotiate_codec(offer, server).map_or("none -> refuse", CodecId::name);
        println!(
            "  client {:<28} server {:<24} -> {:<14} ({note})",
            list(offer),
            list(server),
            picked
        );
    }
    println!("Compression negotiation");
    for (offer, server, note) in &compression_cases {
        println!(
            "  client {:<28} server {:<24} -> {:<14} ({note})",
            list_compression(offer),
            list_compression(server),
            negotiate_compression(offer, server).name()
        );
    }
    println!("Note: a session also accepts raw payloads on any connection, whatever codec was");
    println!("negotiated (raw carries bytes only, e.g. the packed inputs above).");
    Ok(())
}
