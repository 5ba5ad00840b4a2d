//! A connected, encrypted server `Session` fed genuine sealed frames, mutations
//! of them, reflected server frames and arbitrary bytes.
//!
//! Input: one mode byte (bit 0: sliding replay window instead of strict order;
//! bit 1: per-message schema hashes), then records `[op: u8][operands]`, see
//! `Op` below. A fresh pair is connected for every input (the Noise ephemeral
//! keys are random, but every operation is defined relative to genuine frames,
//! so inputs keep their meaning across runs).
//!
//! Properties (besides never panicking):
//! * `handle_packet` returns `Ok` only for a frame byte-identical to one the
//!   client genuinely sealed, and only once per packet counter;
//! * a `SessionEvent::Message` is only produced by such a frame, and carries
//!   exactly the route, codec, correlation id and payload that were sent;
//! * frames the server sealed itself are never accepted (no reflection);
//! * with strict replay, the next genuine in-order frame is always accepted
//!   while connected (a rejected forgery changes no counter).
#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mokosh_fuzz::{Input, ROUTE_A, ROUTE_B, configs, established_session_config};
use mokosh_net::protocol::codec::CodecId;
use mokosh_net::protocol::envelope::{Flags, FramePackets, Header};
use mokosh_net::protocol::replay::ReplayMode;
use mokosh_net::protocol::session::{ClientConfig, ServerConfig, Session, SessionEvent};
use mokosh_net::protocol::testing::SessionPair;

const MAX_RECORDS: usize = 64;

/// A frame the client really sealed, and the message it carries (None for
/// control packets such as pings).
struct Genuine {
    frame: Vec<u8>,
    counter: u64,
    message: Option<Sent>,
}

#[derive(Debug, Clone, PartialEq)]
struct Sent {
    route_id: u16,
    codec: CodecId,
    correlation_id: Option<u64>,
    payload: Vec<u8>,
}

fn pair_configs(mode: u8) -> &'static (ClientConfig, ServerConfig) {
    static CONFIGS: OnceLock<Vec<(ClientConfig, ServerConfig)>> = OnceLock::new();
    let all = CONFIGS.get_or_init(|| {
        (0..4u8)
            .map(|mode| {
                let replay = if mode & 1 == 0 {
                    ReplayMode::Strict
                } else {
                    ReplayMode::Window(64)
                };
                let mut session = established_session_config(replay);
                session.include_schema_hash = mode & 2 != 0;
                configs(true, session)
            })
            .collect()
    });
    &all[usize::from(mode & 3)]
}

struct Harness {
    client: Session,
    server: Session,
    now: Instant,
    strict: bool,
    genuine: Vec<Genuine>,
    reflected: Vec<Vec<u8>>,
    accepted: HashSet<u64>,
    next_expected: u64,
}

impl Harness {
    /// Splits each batched frame into its packets; each is kept as a
    /// single-packet frame (which receivers accept too).
    fn collect_client_frames(&mut self, message: Option<Sent>) {
        while let Some(frame) = self.client.poll_transmit() {
            for packet in FramePackets::new(&frame, usize::MAX).expect("client frame length") {
                let packet = packet.expect("client sealed a malformed frame");
                self.genuine.push(Genuine {
                    frame: packet.bytes.to_vec(),
                    counter: packet.header.message_id,
                    message: message.clone(),
                });
            }
        }
    }

    fn collect_server_frames(&mut self) {
        while let Some(frame) = self.server.poll_transmit() {
            for packet in FramePackets::new(&frame, usize::MAX).expect("server frame length") {
                let packet = packet.expect("server sealed a malformed frame");
                if self.reflected.len() < 32 {
                    self.reflected.push(packet.bytes.to_vec());
                }
            }
        }
    }

    fn deliver(&mut self, frame: &[u8]) {
        let was_connected = self.server.is_connected();
        let genuine = self.genuine.iter().position(|g| g.frame == frame);
        let result = self.server.handle_packet(self.now, frame);

        if let Some(index) = genuine {
            let counter = self.genuine[index].counter;
            if was_connected && self.strict && counter == self.next_expected {
                assert_eq!(result, Ok(()), "genuine in-order frame {counter} rejected");
            }
            if result.is_ok() {
                assert!(
                    self.accepted.insert(counter),
                    "counter {counter} accepted twice"
                );
                self.next_expected = counter + 1;
            }
        } else {
            assert!(result.is_err(), "forged frame accepted: {frame:02x?}");
        }

        let mut messages = 0;
        while let Some(event) = self.server.poll_event() {
            if let SessionEvent::Message(message) = event {
                messages += 1;
                let index = genuine.unwrap_or_else(|| {
                    panic!("Message from a frame that was never sealed: {frame:02x?}")
                });
                let g = &self.genuine[index];
                assert!(result.is_ok());
                assert_eq!(message.message_id, g.counter);
                let received = Sent {
                    route_id: message.route_id,
                    codec: message.codec,
                    correlation_id: message.correlation_id,
                    payload: message.payload,
                };
                assert_eq!(
                    Some(&received),
                    g.message.as_ref(),
                    "message altered in transit"
                );
            }
        }
        // An accepted application frame yields exactly one message.
        let expected = match genuine {
            Some(index) if result.is_ok() => usize::from(self.genuine[index].message.is_some()),
            _ => 0,
        };
        assert_eq!(
            messages, expected,
            "wrong number of messages for {result:?}"
        );
        self.collect_server_frames();
    }

    fn pick_genuine(&self, input: &mut Input<'_>) -> Option<Vec<u8>> {
        let index = usize::from(input.u8());
        (!self.genuine.is_empty()).then(|| self.genuine[index % self.genuine.len()].frame.clone())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let (client_config, server_config) = pair_configs(mode);
    let now = Instant::now();
    let mut pair = SessionPair::new(client_config, server_config, now);
    pair.connect(now).expect("the fuzz pair connects");
    let SessionPair { client, server, .. } = pair;

    let mut h = Harness {
        client,
        server,
        now,
        strict: mode & 1 == 0,
        genuine: Vec::new(),
        reflected: Vec::new(),
        accepted: HashSet::new(),
        // Counter 0 was the client's AUTH, consumed by the handshake.
        next_expected: 1,
    };

    let mut records = 0;
    while !input.is_empty() && records < MAX_RECORDS {
        records += 1;
        let op = input.u8();
        match op % 8 {
            // The client sends an application message (not yet delivered).
            0 => {
                let route_id = if op & 0x08 == 0 { ROUTE_A } else { ROUTE_B };
                let codec = if op & 0x10 == 0 {
                    h.client.codec().unwrap_or(CodecId::Raw)
                } else {
                    CodecId::Raw
                };
                let correlation_id = (op & 0x20 != 0).then(|| u64::from(input.u16()));
                let mut payload = input.chunk().to_vec();
                if op & 0x40 != 0 && !payload.is_empty() {
                    // Make it long and repetitive so it gets compressed.
                    while payload.len() < 512 {
                        payload.extend_from_within(..payload.len().min(512 - payload.len()));
                    }
                }
                if h.client
                    .send(route_id, codec, &payload, correlation_id)
                    .is_ok()
                {
                    h.collect_client_frames(Some(Sent {
                        route_id,
                        codec,
                        correlation_id,
                        payload,
                    }));
                } else {
                    h.collect_client_frames(None);
                }
            }
            // Deliver a genuine frame unchanged (possibly again: a replay).
            1 => {
                if let Some(frame) = h.pick_genuine(&mut input) {
                    h.deliver(&frame);
                }
            }
            // XOR fuzz bytes into a genuine frame at some offset.
            2 => {
                let Some(mut frame) = h.pick_genuine(&mut input) else {
                    continue;
                };
                let offset = usize::from(input.u16());
                let mask = input.chunk();
                let len = frame.len();
                for (i, m) in mask.iter().enumerate() {
                    frame[(offset + i) % len] ^= m;
                }
                h.deliver(&frame);
            }
            // Arbitrary bytes.
            3 => {
                let frame = input.chunk().to_vec();
                h.deliver(&frame);
            }
            // Truncate a genuine frame, or append bytes to it.
            4 => {
                let Some(mut frame) = h.pick_genuine(&mut input) else {
                    continue;
                };
                let cut = usize::from(input.u16());
                let extra = input.chunk();
                if extra.is_empty() {
                    frame.truncate(cut % frame.len());
                } else {
                    frame.extend_from_slice(extra);
                }
                h.deliver(&frame);
            }
            // Advance virtual time and run both sides' timers (pings, idle).
            5 => {
                h.now += Duration::from_millis(u64::from(input.u8()) * 50);
                h.client.handle_timeout(h.now);
                h.server.handle_timeout(h.now);
                h.collect_client_frames(None);
                h.collect_server_frames();
                while h.server.poll_event().is_some() {}
            }
            // Reflect one of the server's own sealed frames back at it,
            // optionally with one byte flipped.
            6 => {
                if h.reflected.is_empty() {
                    continue;
                }
                let index = usize::from(input.u8()) % h.reflected.len();
                let mut frame = h.reflected[index].clone();
                let flip = input.u16();
                if flip != 0 {
                    let at = usize::from(flip) % frame.len();
                    frame[at] ^= (flip >> 8) as u8 | 1;
                }
                h.deliver(&frame);
            }
            // Rewrite header fields of a genuine frame (counter, route, codec,
            // flags, correlation, schema), keeping its sealed body.
            _ => {
                let Some(frame) = h.pick_genuine(&mut input) else {
                    continue;
                };
                let decoded = Header::decode(&frame, usize::MAX).expect("genuine frame decodes");
                let mut header = decoded.header;
                let what = input.u8();
                let value = input.u16();
                match what % 6 {
                    0 => header.message_id = header.message_id.wrapping_add(u64::from(value)),
                    1 => header.route_id = value,
                    2 => {
                        header.codec = match value % 3 {
                            0 => CodecId::Json,
                            1 => CodecId::Postcard,
                            _ => CodecId::Raw,
                        }
                    }
                    3 => {
                        let flipped = !header.flags.contains(Flags::COMPRESSED);
                        header.flags.set(Flags::COMPRESSED, flipped);
                    }
                    4 => {
                        header.correlation_id = match header.correlation_id {
                            Some(_) => None,
                            None => Some(u64::from(value)),
                        }
                    }
                    _ => {
                        header.schema_hash = match header.schema_hash {
                            Some(hash) => Some(hash ^ u64::from(value | 1)),
                            None => Some(u64::from(value)),
                        }
                    }
                }
                let mut rewritten = Vec::new();
                header.encode(&mut rewritten);
                rewritten.extend_from_slice(decoded.body);
                h.deliver(&rewritten);
            }
        }
    }
});
