//! `Hello::decode` and `Response::decode` on arbitrary bytes.
//!
//! Properties: never panics; whatever decodes re-encodes to exactly the input
//! bytes (the formats are canonical: canonical varints, no trailing bytes),
//! and decodes again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mokosh_net::protocol::handshake::{
    Hello, MAX_MESSAGE_SIZE, MAX_OFFERS, MIN_MESSAGE_SIZE, Response,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = Hello::decode(data) {
        assert!(!hello.codecs.is_empty() && hello.codecs.len() <= MAX_OFFERS);
        assert!(hello.compression.len() <= MAX_OFFERS);
        let size = hello.max_message_size as usize;
        assert!((MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&size));
        let mut out = Vec::new();
        hello
            .encode(&mut out)
            .expect("a decoded hello must re-encode");
        assert_eq!(out, data, "hello re-encoding differs: {hello:?}");
        assert_eq!(Hello::decode(&out).as_ref(), Ok(&hello));
        // The helpers only filter.
        assert!(hello.known_codecs().len() <= hello.codecs.len());
        assert!(hello.known_compression().len() <= hello.compression.len());
    }

    if let Ok(response) = Response::decode(data) {
        let mut out = Vec::new();
        response.encode(&mut out);
        assert_eq!(out, data, "response re-encoding differs: {response:?}");
        assert_eq!(Response::decode(&out).as_ref(), Ok(&response));
    }
});
