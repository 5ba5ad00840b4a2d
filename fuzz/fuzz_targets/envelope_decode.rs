//! `Header::decode` and `FramePackets` on arbitrary frames, under several
//! payload limits.
//!
//! Properties: never panics; a decoded frame is fully accounted for
//! (header + body == frame, body length == declared length <= limit); the
//! canonical re-encoding of the header equals the bytes it was decoded from;
//! and decoding the re-encoded frame gives the same result. A batched frame
//! that reads without error is exactly its packets back to back, at most
//! `MAX_PACKETS_PER_FRAME` of them, each decoding alone to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mokosh_net::protocol::envelope::{FramePackets, Header, MAX_HEADER_LEN, MAX_PACKETS_PER_FRAME};

fuzz_target!(|data: &[u8]| {
    // The first two bytes pick a (small) limit; the whole input is also tried
    // as a frame with generous limits so no bytes are "wasted" on the limit.
    let (limit, frame) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => (0, data),
    };
    for (frame, max) in [
        (frame, limit),
        (data, 4096),
        (data, 64 * 1024),
        (data, usize::MAX),
    ] {
        check(frame, max);
        check_batch(frame, max);
    }
});

fn check_batch(frame: &[u8], max: usize) {
    let Ok(packets) = FramePackets::new(frame, max) else {
        return;
    };
    let Ok(packets) = packets.collect::<Result<Vec<_>, _>>() else {
        return;
    };
    assert!(!packets.is_empty() && packets.len() <= MAX_PACKETS_PER_FRAME);
    let mut offset = 0;
    for packet in &packets {
        assert_eq!(packet.offset, offset);
        assert_eq!(&frame[offset..offset + packet.bytes.len()], packet.bytes);
        let alone = Header::decode(packet.bytes, max).expect("a packet decodes alone");
        assert_eq!(alone.header, packet.header);
        assert_eq!(alone.body, packet.body);
        offset += packet.bytes.len();
    }
    assert_eq!(offset, frame.len());
}

fn check(frame: &[u8], max: usize) {
    let Ok(decoded) = Header::decode(frame, max) else {
        return;
    };
    let header = decoded.header;
    assert!(decoded.header_len <= MAX_HEADER_LEN);
    assert_eq!(decoded.header_len + decoded.body.len(), frame.len());
    assert_eq!(decoded.body, &frame[decoded.header_len..]);
    assert_eq!(decoded.body.len(), header.payload_len as usize);
    assert!(decoded.body.len() <= max);
    assert_eq!(header.encoded_len(), decoded.header_len);

    let mut again = Vec::new();
    header.encode(&mut again);
    assert_eq!(
        &again[..],
        &frame[..decoded.header_len],
        "re-encoding is not canonical for {header:?}"
    );
    again.extend_from_slice(decoded.body);
    assert_eq!(Header::decode(&again, max), Ok(decoded));
}
