//! The envelope: header encoding, single-packet decoding and batched frames.
use mokosh_net::protocol::codec::CodecId;
use mokosh_net::protocol::envelope::{
    EnvelopeError, Flags, FramePackets, Header, MAX_HEADER_LEN, MAX_PACKETS_PER_FRAME,
    PROTOCOL_VERSION,
};
use mokosh_net::protocol::varint;
use proptest::prelude::*;

fn sample() -> Header {
    Header {
        flags: Flags::ENCRYPTED,
        message_id: 1234,
        payload_len: 3,
        ..Header::new(CodecId::Postcard, 100)
    }
}

#[test]
fn typical_header_is_small() {
    let header = Header {
        flags: Flags::ENCRYPTED,
        message_id: 5_000,
        payload_len: 100 + 16,
        ..Header::new(CodecId::Postcard, 100)
    };
    assert_eq!(header.encoded_len(), 7);
    let mut with_schema = header;
    with_schema.schema_hash = Some(u64::MAX);
    assert!(with_schema.encoded_len() <= 20);
}

#[test]
fn max_header_len_is_an_upper_bound() {
    let header = Header {
        route_id: u16::MAX,
        message_id: u64::MAX,
        correlation_id: Some(u64::MAX),
        schema_hash: Some(u64::MAX),
        tick: Some(u32::MAX),
        payload_len: u32::MAX,
        ..Header::new(CodecId::Raw, 0)
    };
    assert_eq!(header.encoded_len(), MAX_HEADER_LEN);
}

fn tiny_packet(message_id: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    Header {
        message_id,
        payload_len: 1,
        ..Header::new(CodecId::Raw, 16)
    }
    .encode(&mut bytes);
    bytes.push(0xaa);
    bytes
}

#[test]
fn frame_packet_count_is_bounded() {
    let full: Vec<u8> = (0..MAX_PACKETS_PER_FRAME as u64)
        .flat_map(tiny_packet)
        .collect();
    assert_eq!(FramePackets::new(&full, 4096).unwrap().count(), 64);
    assert!(FramePackets::new(&full, 4096).unwrap().all(|p| p.is_ok()));
    let mut over = full.clone();
    over.extend(tiny_packet(64));
    let results: Vec<_> = FramePackets::new(&over, 4096).unwrap().collect();
    assert_eq!(results.len(), MAX_PACKETS_PER_FRAME + 1);
    assert_eq!(
        results.last(),
        Some(&Err(EnvelopeError::TooManyPackets {
            max: MAX_PACKETS_PER_FRAME
        }))
    );
}

#[test]
fn frame_limits_are_checked_before_parsing() {
    let frame: Vec<u8> = (0..10).flat_map(tiny_packet).collect();
    // 10 packets of 7 bytes: over a 10-byte body limit as a whole frame.
    assert_eq!(
        FramePackets::new(&frame, 10).err(),
        Some(EnvelopeError::FrameTooLarge {
            len: 70,
            max: 10 + MAX_HEADER_LEN
        })
    );
    assert_eq!(
        FramePackets::new(&[], 10).err(),
        Some(EnvelopeError::Truncated)
    );
    // A single-packet decode refuses a batch (trailing bytes).
    assert!(matches!(
        Header::decode(&frame, 1024),
        Err(EnvelopeError::LengthMismatch {
            declared: 1,
            actual: 64
        })
    ));
}

#[test]
fn decode_checks_frame_length_first() {
    // A frame with a bad version but too long is reported as too long.
    let frame = vec![9u8; 100];
    assert_eq!(
        Header::decode(&frame, 10),
        Err(EnvelopeError::FrameTooLarge {
            len: 100,
            max: 10 + MAX_HEADER_LEN
        })
    );
}

#[test]
fn truncation_at_every_offset_is_rejected() {
    let header = Header {
        correlation_id: Some(99_999),
        schema_hash: Some(0xdead_beef),
        tick: Some(70_000),
        ..sample()
    };
    let mut frame = Vec::new();
    header.encode(&mut frame);
    frame.extend_from_slice(b"abc");
    assert!(Header::decode(&frame, 1024).is_ok());
    for cut in 0..frame.len() {
        assert!(Header::decode(&frame[..cut], 1024).is_err(), "cut at {cut}");
    }
}

#[test]
fn length_field_extremes() {
    let mut frame = vec![PROTOCOL_VERSION, 0, CodecId::Raw.as_u8(), 16, 0];
    let mut huge = frame.clone();
    varint::write(u64::MAX, &mut huge);
    assert!(matches!(
        Header::decode(&huge, 1024),
        Err(EnvelopeError::PayloadTooLarge { .. })
    ));
    let mut over_u32 = frame.clone();
    varint::write(u64::from(u32::MAX) + 1, &mut over_u32);
    assert!(matches!(
        Header::decode(&over_u32, usize::MAX),
        Err(EnvelopeError::PayloadTooLarge { .. })
    ));
    varint::write(5, &mut frame);
    frame.extend_from_slice(b"abcd");
    assert_eq!(
        Header::decode(&frame, 1024),
        Err(EnvelopeError::LengthMismatch {
            declared: 5,
            actual: 4
        })
    );
}

#[test]
fn rejects_bad_fixed_fields() {
    let mut frame = Vec::new();
    sample().encode(&mut frame);
    frame.extend_from_slice(b"abc");
    let mut bad = frame.clone();
    bad[0] = 2;
    assert_eq!(
        Header::decode(&bad, 1024),
        Err(EnvelopeError::UnsupportedVersion(2))
    );
    let mut bad = frame.clone();
    bad[1] |= 0x20;
    assert_eq!(
        Header::decode(&bad, 1024),
        Err(EnvelopeError::ReservedFlags(0x21))
    );
    let mut bad = frame.clone();
    bad[2] = 0;
    assert_eq!(
        Header::decode(&bad, 1024),
        Err(EnvelopeError::UnknownCodec(0))
    );
    // Route id above u16::MAX.
    let mut bad = vec![PROTOCOL_VERSION, 0, 3];
    varint::write(70_000, &mut bad);
    bad.extend_from_slice(&[0, 0]);
    assert!(matches!(
        Header::decode(&bad, 1024),
        Err(EnvelopeError::Varint {
            field: "route id",
            ..
        })
    ));
}

fn arb_header() -> impl Strategy<Value = Header> {
    (
        0u8..4,
        prop_oneof![
            Just(CodecId::Json),
            Just(CodecId::Postcard),
            Just(CodecId::Raw)
        ],
        any::<u16>(),
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            |(flags, codec, route_id, message_id, correlation_id, schema_hash, tick)| Header {
                flags: Flags::from_bits(flags).unwrap_or_default(),
                message_id,
                correlation_id,
                schema_hash,
                tick,
                route_id,
                ..Header::new(codec, 0)
            },
        )
}

proptest! {
    #[test]
    fn round_trip(mut header in arb_header(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
        header.payload_len = body.len() as u32;
        let mut frame = Vec::new();
        header.encode(&mut frame);
        prop_assert_eq!(frame.len(), header.encoded_len());
        let header_len = frame.len();
        frame.extend_from_slice(&body);
        let decoded = Header::decode(&frame, 4096).unwrap();
        prop_assert_eq!(decoded.header, header);
        prop_assert_eq!(decoded.header_len, header_len);
        prop_assert_eq!(decoded.body, &body[..]);
    }

    /// Any split of a packet sequence into frames reads back as the same
    /// packets in the same order.
    #[test]
    fn any_split_into_frames_round_trips(
        packets in proptest::collection::vec(
            (arb_header(), proptest::collection::vec(any::<u8>(), 0..40)), 1..100),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
    ) {
        let encoded: Vec<(Header, Vec<u8>)> = packets
            .into_iter()
            .map(|(mut header, body)| {
                header.payload_len = body.len() as u32;
                let mut bytes = Vec::new();
                header.encode(&mut bytes);
                bytes.extend_from_slice(&body);
                (header, bytes)
            })
            .collect();
        // Frame boundaries: every frame non-empty and within the packet limit.
        let mut bounds: Vec<usize> = cuts.iter().map(|cut| cut.index(encoded.len())).collect();
        bounds.push(0);
        bounds.push(encoded.len());
        let mut at = 0;
        while at < encoded.len() {
            at += MAX_PACKETS_PER_FRAME;
            bounds.push(at.min(encoded.len()));
        }
        bounds.sort_unstable();
        bounds.dedup();
        let mut read_back = Vec::new();
        for range in bounds.windows(2) {
            let frame: Vec<u8> = encoded[range[0]..range[1]]
                .iter()
                .flat_map(|(_, bytes)| bytes.iter().copied())
                .collect();
            for packet in FramePackets::new(&frame, 1 << 20).unwrap() {
                let packet = packet.unwrap();
                prop_assert_eq!(&frame[packet.offset..packet.offset + packet.bytes.len()], packet.bytes);
                read_back.push((packet.header, packet.bytes.to_vec()));
            }
        }
        prop_assert_eq!(read_back, encoded);
    }

    /// Cutting a frame anywhere inside its last packet is a typed error
    /// (after the complete packets before it).
    #[test]
    fn truncated_trailing_packet_is_an_error(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6),
        cut in any::<proptest::sample::Index>(),
    ) {
        let mut frame = Vec::new();
        let mut last_start = 0;
        for (index, body) in bodies.iter().enumerate() {
            last_start = frame.len();
            let header = Header {
                message_id: index as u64,
                tick: Some(1_000),
                payload_len: body.len() as u32,
                ..Header::new(CodecId::Raw, 16)
            };
            header.encode(&mut frame);
            frame.extend_from_slice(body);
        }
        let cut_at = last_start + 1 + cut.index(frame.len() - last_start - 1);
        let results: Vec<_> = FramePackets::new(&frame[..cut_at], 4096)
            .map(Iterator::collect::<Vec<_>>)
            .unwrap_or_else(|error| vec![Err(error)]);
        let ok = results.iter().filter(|result| result.is_ok()).count();
        prop_assert_eq!(ok, bodies.len() - 1);
        let typed = matches!(
            results.last(),
            Some(Err(EnvelopeError::Truncated | EnvelopeError::LengthMismatch { .. }))
        );
        prop_assert!(typed, "last result {:?}", results.last());
    }

    #[test]
    fn arbitrary_bytes_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(decoded) = Header::decode(&frame, 4096) {
            // Whatever decodes re-encodes to the same bytes (canonical form).
            let mut again = Vec::new();
            decoded.header.encode(&mut again);
            prop_assert_eq!(&again[..], &frame[..decoded.header_len]);
        }
    }
}
