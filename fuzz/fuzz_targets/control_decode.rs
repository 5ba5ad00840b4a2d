//! `ControlMessage::decode(route, body)` on arbitrary routes and bodies.
//!
//! Properties: never panics; a decoded message belongs to the route it was
//! decoded for, and re-encodes to exactly the body bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mokosh_net::protocol::control::{ControlMessage, MAX_DETAIL_LEN, MAX_TOKEN_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    // Mostly the interesting routes 0..=6; the high bit picks a random-ish one.
    let route = if selector & 0x80 == 0 {
        u16::from(selector % 7)
    } else {
        u16::from(selector) * 257
    };
    let Ok(message) = ControlMessage::decode(route, body) else {
        return;
    };
    assert_eq!(message.route(), route);
    if let ControlMessage::Disconnect { reason, detail } = &message {
        assert_ne!(reason.code(), 0);
        assert!(detail.len() <= MAX_DETAIL_LEN);
    }
    if let ControlMessage::Auth { token } = &message {
        assert!(token.len() <= MAX_TOKEN_LEN);
    }
    let mut out = Vec::new();
    message
        .encode(&mut out)
        .expect("a decoded control message must re-encode");
    assert_eq!(out, body, "control re-encoding differs: {message:?}");
    assert_eq!(ControlMessage::decode(route, &out).as_ref(), Ok(&message));
});
