//! Authentication providers: signed tokens (format, tampering, expiry,
//! hostile input), the development and reject-all providers, closures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use mokosh_net::auth::{
    AuthError, AuthProvider, AuthRequest, BuildProfile, DEFAULT_LEEWAY, DevAuthProvider,
    FnAuthProvider, Identity, MAX_TOKEN_LEN, MAX_USER_ID_LEN, MIN_SECRET_LEN, RejectAllProvider,
    TokenAuthProvider, TokenError, TokenIssuer, UNCONFIGURED_MESSAGE, default_provider,
    default_provider_for,
};
use proptest::prelude::*;
use sha2::Sha256;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const OTHER_SECRET: &[u8] = b"fedcba9876543210fedcba9876543210";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn issuer() -> TokenIssuer {
    TokenIssuer::new(SECRET).unwrap()
}

fn provider() -> TokenAuthProvider {
    TokenAuthProvider::new(SECRET).unwrap()
}

fn request(client_id: u64, token: &[u8]) -> AuthRequest {
    AuthRequest {
        client_id,
        remote: Some("127.0.0.1:4000".parse().unwrap()),
        token: token.to_vec(),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Mints a token from raw parts, independently of `TokenIssuer`.
fn mint_raw(secret: &[u8], payload: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(b"mokosh-token-v1");
    mac.update(payload);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1.{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(tag.as_slice())
    )
}

fn split(token: &str) -> (Vec<u8>, Vec<u8>) {
    let mut parts = token.split('.');
    assert_eq!(parts.next(), Some("v1"));
    let payload = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    let tag = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    assert_eq!(parts.next(), None);
    (payload, tag)
}

fn join(payload: &[u8], tag: &[u8]) -> String {
    format!(
        "v1.{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

#[test]
fn round_trip_sync_and_through_the_trait() {
    let token = issuer().issue("alice", Duration::from_secs(300)).unwrap();
    let identity = provider().verify(token.as_bytes()).unwrap();
    assert_eq!(identity.user_id, "alice");
    let expires_at = identity.expires_at.unwrap();
    let now = SystemTime::now();
    assert!(expires_at > now + Duration::from_secs(290));
    assert!(expires_at <= now + Duration::from_secs(300));

    let provider: Arc<dyn AuthProvider> = Arc::new(provider());
    let identity = block_on(provider.authenticate(request(1, token.as_bytes()))).unwrap();
    assert_eq!(identity.user_id, "alice");
}

#[test]
fn documented_test_vector() {
    let token = issuer().issue_at("alice", at(1_700_000_000)).unwrap();
    assert_eq!(
        token,
        "v1.AAAAAGVT8QBhbGljZQ.tYys-Npe8Ik9pM-aQ_GERX6T-JI8pIiRCEjdgTnmDa0"
    );
    // The issuer agrees with an independent implementation of the format.
    let mut payload = 1_700_000_000u64.to_be_bytes().to_vec();
    payload.extend_from_slice(b"alice");
    assert_eq!(token, mint_raw(SECRET, &payload));

    let identity = provider()
        .verify_at(token.as_bytes(), at(1_700_000_000))
        .unwrap();
    assert_eq!(
        identity,
        Identity {
            user_id: "alice".into(),
            expires_at: Some(at(1_700_000_000)),
        }
    );
}

#[test]
fn sub_second_expiry_is_truncated() {
    let token = issuer()
        .issue_at("bob", at(1_000) + Duration::from_millis(999))
        .unwrap();
    let identity = provider().verify_at(token.as_bytes(), at(1_000)).unwrap();
    assert_eq!(identity.expires_at, Some(at(1_000)));
}

#[test]
fn unicode_and_maximum_length_user_ids_round_trip() {
    let p = provider();
    for user in ["ünïcødé-玩家-🎮", &"x".repeat(MAX_USER_ID_LEN), "a"] {
        let token = issuer().issue_at(user, at(2_000_000_000)).unwrap();
        assert!(token.len() <= MAX_TOKEN_LEN);
        let identity = p.verify_at(token.as_bytes(), at(1_000)).unwrap();
        assert_eq!(identity.user_id, user);
    }
    // Largest multi-byte id that fits.
    let user = "é".repeat(MAX_USER_ID_LEN / 2);
    let token = issuer().issue_at(&user, at(2_000_000_000)).unwrap();
    assert_eq!(p.verify_at(token.as_bytes(), at(1)).unwrap().user_id, user);
}

#[test]
fn wrong_secret_is_a_bad_signature() {
    let token = issuer().issue("alice", Duration::from_secs(60)).unwrap();
    let other = TokenAuthProvider::new(OTHER_SECRET).unwrap();
    assert_eq!(other.verify(token.as_bytes()), Err(AuthError::BadSignature));
    let other_issuer = TokenIssuer::new(OTHER_SECRET).unwrap();
    let token = other_issuer
        .issue("alice", Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        provider().verify(token.as_bytes()),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn every_payload_and_tag_bit_flip_is_rejected() {
    let token = issuer().issue_at("mallory", at(2_000_000_000)).unwrap();
    let p = provider();
    let now = at(1_000);
    assert!(p.verify_at(token.as_bytes(), now).is_ok());
    let (payload, tag) = split(&token);
    for i in 0..payload.len() {
        for bit in 0..8 {
            let mut tampered = payload.clone();
            tampered[i] ^= 1 << bit;
            let t = join(&tampered, &tag);
            assert_eq!(
                p.verify_at(t.as_bytes(), now),
                Err(AuthError::BadSignature),
                "payload byte {i} bit {bit}"
            );
        }
    }
    for i in 0..tag.len() {
        for bit in 0..8 {
            let mut tampered = tag.clone();
            tampered[i] ^= 1 << bit;
            let t = join(&payload, &tampered);
            assert_eq!(
                p.verify_at(t.as_bytes(), now),
                Err(AuthError::BadSignature),
                "tag byte {i} bit {bit}"
            );
        }
    }
}

#[test]
fn every_text_byte_change_is_rejected() {
    let token = issuer().issue_at("mallory", at(2_000_000_000)).unwrap();
    let p = provider();
    let now = at(1_000);
    let bytes = token.as_bytes();
    for i in 0..bytes.len() {
        for replacement in [b'A', b'B', b'_', b'-', b'0', b'.', b'=', 0u8, 0xff] {
            if bytes[i] == replacement {
                continue;
            }
            let mut tampered = bytes.to_vec();
            tampered[i] = replacement;
            assert!(
                p.verify_at(&tampered, now).is_err(),
                "position {i} -> {replacement:#x}"
            );
        }
        // Deleting a byte.
        let mut shorter = bytes.to_vec();
        shorter.remove(i);
        assert!(p.verify_at(&shorter, now).is_err(), "deleted {i}");
    }
    // Appending.
    for extra in [&b"A"[..], b".", b"=", b" ", b"\n", b"\0"] {
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(extra);
        assert!(p.verify_at(&longer, now).is_err(), "appended {extra:?}");
    }
}

#[test]
fn truncated_tags_and_swapped_parts_are_rejected() {
    let token = issuer().issue_at("eve", at(2_000_000_000)).unwrap();
    let (payload, tag) = split(&token);
    let p = provider();
    for n in [0, 1, 16, 31] {
        let t = join(&payload, &tag[..n]);
        assert_eq!(p.verify_at(t.as_bytes(), at(0)), Err(AuthError::Malformed));
    }
    let mut long_tag = tag.clone();
    long_tag.push(0);
    let t = join(&payload, &long_tag);
    assert_eq!(p.verify_at(t.as_bytes(), at(0)), Err(AuthError::Malformed));
    let t = join(&tag, &payload);
    assert!(p.verify_at(t.as_bytes(), at(0)).is_err());
}

#[test]
fn expiry_with_default_leeway_both_sides_of_the_edge() {
    let expiry = 1_700_000_000;
    let token = issuer().issue_at("alice", at(expiry)).unwrap();
    let p = provider();
    assert_eq!(p.leeway(), DEFAULT_LEEWAY);
    assert_eq!(DEFAULT_LEEWAY, Duration::from_secs(30));
    let edge = at(expiry) + DEFAULT_LEEWAY;
    assert!(p.verify_at(token.as_bytes(), at(expiry)).is_ok());
    assert!(p.verify_at(token.as_bytes(), edge).is_ok());
    assert!(
        p.verify_at(token.as_bytes(), edge - Duration::from_secs(1))
            .is_ok()
    );
    assert_eq!(
        p.verify_at(token.as_bytes(), edge + Duration::from_nanos(1)),
        Err(AuthError::Expired)
    );
    assert_eq!(
        p.verify_at(token.as_bytes(), edge + Duration::from_secs(1)),
        Err(AuthError::Expired)
    );
    assert_eq!(
        p.verify_at(token.as_bytes(), at(expiry + 86_400)),
        Err(AuthError::Expired)
    );
    // Long before expiry (and before the epoch): fine.
    assert!(p.verify_at(token.as_bytes(), at(0)).is_ok());
    assert!(
        p.verify_at(token.as_bytes(), UNIX_EPOCH - Duration::from_secs(10))
            .is_ok()
    );
}

#[test]
fn expiry_with_configured_leeway_and_injected_clock() {
    static NOW: AtomicU64 = AtomicU64::new(0);
    fn clock() -> SystemTime {
        at(NOW.load(Ordering::SeqCst))
    }
    let expiry = 5_000;
    let token = issuer().issue_at("alice", at(expiry)).unwrap();

    // A plain fn pointer as the clock, zero leeway.
    let strict = provider().with_clock(clock).with_leeway(Duration::ZERO);
    NOW.store(expiry, Ordering::SeqCst);
    assert!(strict.verify(token.as_bytes()).is_ok());
    NOW.store(expiry + 1, Ordering::SeqCst);
    assert_eq!(strict.verify(token.as_bytes()), Err(AuthError::Expired));

    // A capturing closure, 10 s leeway, through the async trait.
    let now = Arc::new(Mutex::new(at(expiry + 10)));
    let shared = Arc::clone(&now);
    let lenient = provider()
        .with_leeway(Duration::from_secs(10))
        .with_clock(move || *shared.lock().unwrap());
    let lenient: Arc<dyn AuthProvider> = Arc::new(lenient);
    assert!(block_on(lenient.authenticate(request(1, token.as_bytes()))).is_ok());
    *now.lock().unwrap() = at(expiry + 11);
    assert_eq!(
        block_on(lenient.authenticate(request(1, token.as_bytes()))),
        Err(AuthError::Expired)
    );
}

#[test]
fn signature_is_checked_before_expiry() {
    // An expired token with a bad tag reports the tag, not the expiry.
    let token = TokenIssuer::new(OTHER_SECRET)
        .unwrap()
        .issue_at("alice", at(10))
        .unwrap();
    assert_eq!(
        provider().verify_at(token.as_bytes(), at(1_000_000)),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn malformed_inputs_are_rejected_without_panicking() {
    let good = issuer().issue_at("alice", at(2_000_000_000)).unwrap();
    let (payload, tag) = split(&good);
    let p = provider();
    let huge_valid_prefix = format!("{good}{}", "A".repeat(MAX_TOKEN_LEN));
    let mut cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"v1".to_vec(),
        b"v1.".to_vec(),
        b"v1..".to_vec(),
        b"v1...".to_vec(),
        b"nodots".to_vec(),
        b"V1.AAAA.AAAA".to_vec(),
        good.replacen("v1.", "v2.", 1).into_bytes(),
        good.replacen("v1.", "", 1).into_bytes(),
        b"v1.!!!!.####".to_vec(),
        b"v1.AAAAAGVT8QBhbGljZQ".to_vec(),
        format!("{good}.extra").into_bytes(),
        format!(
            "v1.{}=.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(&tag)
        )
        .into_bytes(),
        // Payload too short to hold an expiry and a user id.
        join(&[0u8; 8], &tag).into_bytes(),
        join(&[], &tag).into_bytes(),
        // Payload longer than the maximum.
        join(&vec![b'a'; 8 + MAX_USER_ID_LEN + 1], &tag).into_bytes(),
        // Over the length bound, and far over it.
        huge_valid_prefix.into_bytes(),
        vec![b'A'; MAX_TOKEN_LEN + 1],
        vec![b'.'; 10 * 1024 * 1024],
        vec![0xff; 4096],
    ];
    // Standard (not URL-safe) alphabet, when the token uses either character.
    let standard = good.replace('-', "+").replace('_', "/");
    if standard != good {
        cases.push(standard.into_bytes());
    }
    for case in cases {
        let shown = String::from_utf8_lossy(&case[..case.len().min(40)]).into_owned();
        assert_eq!(
            p.verify_at(&case, at(0)),
            Err(AuthError::Malformed),
            "{shown:?}"
        );
    }
    // Padding characters are not accepted even where they'd be canonical.
    let padded = format!(
        "v1.{}.{}=",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(&tag)
    );
    assert_eq!(
        p.verify_at(padded.as_bytes(), at(0)),
        Err(AuthError::Malformed)
    );
}

#[test]
fn authentic_but_invalid_contents() {
    let p = provider();
    // Signed, but the user id is not UTF-8.
    let mut payload = 2_000_000_000u64.to_be_bytes().to_vec();
    payload.extend_from_slice(&[0xff, 0xfe]);
    let token = mint_raw(SECRET, &payload);
    assert_eq!(
        p.verify_at(token.as_bytes(), at(0)),
        Err(AuthError::Malformed)
    );

    // Signed, with an expiry too far out for SystemTime: accepted, never expires.
    let mut payload = u64::MAX.to_be_bytes().to_vec();
    payload.extend_from_slice(b"forever");
    let token = mint_raw(SECRET, &payload);
    let identity = p.verify_at(token.as_bytes(), at(4_000_000_000)).unwrap();
    assert_eq!(identity.user_id, "forever");

    // Expiry 0 is long gone.
    let mut payload = 0u64.to_be_bytes().to_vec();
    payload.extend_from_slice(b"old");
    let token = mint_raw(SECRET, &payload);
    assert_eq!(
        p.verify_at(token.as_bytes(), at(1_000)),
        Err(AuthError::Expired)
    );
    // A huge leeway does not overflow.
    let forgiving = provider().with_leeway(Duration::MAX);
    assert!(forgiving.verify_at(token.as_bytes(), at(1_000)).is_ok());
}

#[test]
fn issuer_and_provider_reject_short_secrets() {
    for len in [0, 1, 16, MIN_SECRET_LEN - 1] {
        let secret = vec![7u8; len];
        assert_eq!(
            TokenIssuer::new(&secret).unwrap_err(),
            TokenError::SecretTooShort { len }
        );
        assert_eq!(
            TokenAuthProvider::new(&secret).unwrap_err(),
            TokenError::SecretTooShort { len }
        );
    }
    assert_eq!(MIN_SECRET_LEN, 32);
    assert!(TokenIssuer::new(&[7u8; MIN_SECRET_LEN]).is_ok());
    assert!(TokenAuthProvider::new(&[7u8; 1000]).is_ok());
    let msg = TokenIssuer::new(b"short").unwrap_err().to_string();
    assert!(msg.contains("32"), "{msg}");
}

#[test]
fn issuer_rejects_bad_user_ids_and_expiries() {
    let i = issuer();
    assert_eq!(
        i.issue("", Duration::from_secs(1)),
        Err(TokenError::EmptyUserId)
    );
    let long = "x".repeat(MAX_USER_ID_LEN + 1);
    assert_eq!(
        i.issue(&long, Duration::from_secs(1)),
        Err(TokenError::UserIdTooLong {
            len: MAX_USER_ID_LEN + 1
        })
    );
    assert_eq!(
        i.issue_at("alice", UNIX_EPOCH - Duration::from_secs(1)),
        Err(TokenError::ExpiryOutOfRange)
    );
    assert_eq!(
        i.issue("alice", Duration::MAX),
        Err(TokenError::ExpiryOutOfRange)
    );
}

#[test]
fn secrets_and_tokens_stay_out_of_debug_output() {
    let shown = format!("{:?} {:?}", issuer(), provider());
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
    let req = request(3, b"v1.secret-token-bytes");
    let shown = format!("{req:?}");
    assert!(!shown.contains("secret-token"), "{shown}");
    assert!(shown.contains("client_id: 3"), "{shown}");
}

#[test]
fn dev_provider_names_clients() {
    let dev = DevAuthProvider::new();
    let name = |token: &[u8]| block_on(dev.authenticate(request(7, token))).unwrap();
    assert_eq!(name(b"bob"), Identity::new("bob"));
    assert_eq!(name("ünï".as_bytes()).user_id, "ünï");
    assert_eq!(name(b"").user_id, "guest-7");
    assert_eq!(name(&[0xff, 0x00, 0xfe]).user_id, "guest-7");
    assert_eq!(name(b"bob").expires_at, None);
    assert_eq!(
        DevAuthProvider::identity_for(&request(42, b"")).user_id,
        "guest-42"
    );
}

/// Collects formatted log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn dev_provider_warns_once_on_construction() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let dev = DevAuthProvider::new();
        for id in 0..3 {
            block_on(dev.authenticate(request(id, b"x"))).unwrap();
        }
    });
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let needle = "development authentication: every client is accepted; do not use in production";
    assert_eq!(log.matches(needle).count(), 1, "{log}");
    assert!(log.contains("WARN"), "{log}");
}

#[test]
fn reject_all_provider_rejects_everyone() {
    let p = RejectAllProvider::unconfigured();
    assert_eq!(p.message(), UNCONFIGURED_MESSAGE);
    assert!(UNCONFIGURED_MESSAGE.contains("configure"));
    for token in [&b""[..], b"bob", b"v1.x.y"] {
        let err = block_on(p.authenticate(request(1, token))).unwrap_err();
        assert_eq!(err, AuthError::Rejected(UNCONFIGURED_MESSAGE.to_string()));
    }
    let custom = RejectAllProvider::new("maintenance");
    let err = block_on(custom.authenticate(request(1, b"bob"))).unwrap_err();
    assert_eq!(err.to_string(), "rejected: maintenance");
}

#[test]
fn default_provider_accepts_in_debug_builds() {
    let p = default_provider_for(BuildProfile::Debug);
    let identity = block_on(p.authenticate(request(9, b""))).unwrap();
    assert_eq!(identity.user_id, "guest-9");
}

/// Runs in every build (CI builds debug only): the release default is chosen
/// by value, not by `cfg`.
#[test]
fn default_provider_rejects_in_release_builds() {
    let p = default_provider_for(BuildProfile::Release);
    let err = block_on(p.authenticate(request(9, b"bob"))).unwrap_err();
    assert_eq!(err, AuthError::Rejected(UNCONFIGURED_MESSAGE.to_string()));
}

#[test]
fn default_provider_follows_the_build_profile() {
    assert_eq!(
        BuildProfile::CURRENT,
        if cfg!(debug_assertions) {
            BuildProfile::Debug
        } else {
            BuildProfile::Release
        }
    );
    let result = block_on(default_provider().authenticate(request(9, b"bob")));
    match BuildProfile::CURRENT {
        BuildProfile::Debug => assert_eq!(result.unwrap().user_id, "bob"),
        BuildProfile::Release => assert!(result.is_err()),
    }
}

#[test]
fn closure_provider() {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let p = FnAuthProvider::new(move |req: AuthRequest| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::task::yield_now().await;
            match req.token.as_slice() {
                b"ok" => Ok(Identity::new(format!("user-{}", req.client_id))),
                b"down" => Err(AuthError::Unavailable("backend down".into())),
                _ => Err(AuthError::Rejected("nope".into())),
            }
        }
    });
    let p: Arc<dyn AuthProvider> = Arc::new(p);
    assert_eq!(
        block_on(p.authenticate(request(5, b"ok"))).unwrap().user_id,
        "user-5"
    );
    assert_eq!(
        block_on(p.authenticate(request(5, b"down"))),
        Err(AuthError::Unavailable("backend down".into()))
    );
    assert!(block_on(p.authenticate(request(5, b"x"))).is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn providers_are_usable_from_a_multithreaded_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let issuer = issuer();
    let p: Arc<dyn AuthProvider> = Arc::new(provider());
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let token = issuer
                .issue(&format!("player-{i}"), Duration::from_secs(60))
                .unwrap();
            rt.spawn(p.authenticate(request(i, token.as_bytes())))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let identity = rt.block_on(h).unwrap().unwrap();
        assert_eq!(identity.user_id, format!("player-{i}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_or_verify(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let result = provider().verify_at(&bytes, at(0));
        prop_assert!(result.is_err());
    }

    #[test]
    fn token_shaped_strings_never_panic_or_verify(
        payload in "[A-Za-z0-9_=.-]{0,400}",
        tag in "[A-Za-z0-9_=.+/-]{0,60}",
    ) {
        let token = format!("v1.{payload}.{tag}");
        prop_assert!(provider().verify_at(token.as_bytes(), at(0)).is_err());
    }

    #[test]
    fn mutated_tokens_never_verify(
        user in "[a-z0-9]{1,40}",
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let token = issuer().issue_at(&user, at(2_000_000_000)).unwrap().into_bytes();
        let i = position.index(token.len());
        prop_assume!(token[i] != byte);
        let mut mutated = token.clone();
        mutated[i] = byte;
        prop_assert!(provider().verify_at(&mutated, at(0)).is_err());
    }

    #[test]
    fn issue_verify_round_trip(user in "\\PC{1,60}", expiry in 1u64..=4_000_000_000) {
        prop_assume!(user.len() <= MAX_USER_ID_LEN);
        let token = issuer().issue_at(&user, at(expiry)).unwrap();
        let identity = provider().verify_at(token.as_bytes(), at(expiry)).unwrap();
        prop_assert_eq!(identity.user_id, user);
        prop_assert_eq!(identity.expires_at, Some(at(expiry)));
    }
}
