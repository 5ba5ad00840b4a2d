//! `wss://` over real connections on 127.0.0.1 (`tls` feature), with a
//! self-signed certificate generated at test time.
//!
//! An ECS-less driver thread echoes every frame the server receives. Every
//! wait is bounded; every test ends by dropping the server and checking that
//! each `Opened` connection got exactly one `Closed`.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mokosh_net::io::tls::{self, TlsError, rustls};
use mokosh_net::io::{
    ClientEndpoint, CloseCause, ConnectionId, ConnectionLink, IoConfig, IoEvent, IoRuntime,
    ServerEndpoint, websocket,
};

const WAIT: Duration = Duration::from_secs(10);

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost: (cert PEM, key PEM).
fn self_signed() -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("rcgen");
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

#[derive(Default)]
struct DriverState {
    links: HashMap<ConnectionId, ConnectionLink>,
    opened: HashMap<ConnectionId, u32>,
    closed: HashMap<ConnectionId, Vec<CloseCause>>,
}

/// The stand-in for the ECS: echoes every frame.
struct Driver {
    state: Arc<Mutex<DriverState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Driver {
    fn start(server: &ServerEndpoint) -> Self {
        let events = server.events().clone();
        let state = Arc::new(Mutex::new(DriverState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(event) = events.recv_timeout(Duration::from_millis(1)) else {
                        continue;
                    };
                    let mut st = state.lock().unwrap();
                    match event {
                        IoEvent::Opened { id, link, .. } => {
                            *st.opened.entry(id).or_default() += 1;
                            st.links.insert(id, link);
                        }
                        IoEvent::Frame { id, frame } => {
                            let link = st.links.get(&id).expect("frame for unknown id").clone();
                            let _ = link.send(frame);
                            link.frame_consumed();
                        }
                        IoEvent::Closed { id, cause } => {
                            assert!(st.opened.contains_key(&id), "Closed without Opened");
                            st.closed.entry(id).or_default().push(cause);
                            st.links.remove(&id);
                        }
                    }
                }
            })
        };
        Self {
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn opened_count(&self) -> usize {
        self.state.lock().unwrap().opened.len()
    }

    /// Drops the server and checks exactly one Closed per Opened.
    fn finish(mut self, server: ServerEndpoint) {
        drop(server);
        wait_until("every connection closed", || {
            let st = self.state.lock().unwrap();
            st.opened.keys().all(|id| st.closed.contains_key(id))
        });
        std::thread::sleep(Duration::from_millis(50));
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let st = self.state.lock().unwrap();
        for (id, n) in &st.opened {
            assert_eq!(*n, 1, "{id} opened twice");
            assert_eq!(st.closed[id].len(), 1, "{id}: {:?}", st.closed[id]);
        }
    }
}

/// A `wss://` server with a fresh self-signed certificate; returns the
/// certificate PEM for clients to trust.
fn tls_server(rt: &IoRuntime, config: IoConfig) -> (ServerEndpoint, SocketAddr, Driver, String) {
    let (cert_pem, key_pem) = self_signed();
    let server_tls = tls::server_config_from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let server =
        websocket::listen_tls(rt, "127.0.0.1:0".parse().unwrap(), config, server_tls).unwrap();
    let addr = server.local_addr().unwrap();
    let driver = Driver::start(&server);
    (server, addr, driver, cert_pem)
}

fn wss(addr: SocketAddr) -> String {
    format!("wss://{addr}/game")
}

fn trusting(cert_pem: &str) -> Arc<rustls::ClientConfig> {
    tls::client_config_from_pem(cert_pem.as_bytes()).unwrap()
}

fn expect_opened(endpoint: &ClientEndpoint, addr: SocketAddr) -> ConnectionLink {
    match endpoint.events().recv_timeout(WAIT).expect("client event") {
        IoEvent::Opened { link, remote, .. } => {
            assert_eq!(remote, Some(addr));
            link
        }
        other => panic!("expected Opened, got {other:?}"),
    }
}

/// The lone `Closed` of a client whose connection attempt failed.
fn expect_failed(endpoint: &ClientEndpoint) -> CloseCause {
    match endpoint.events().recv_timeout(WAIT).expect("client event") {
        IoEvent::Closed { cause, .. } => cause,
        other => panic!("expected a lone Closed, got {other:?}"),
    }
}

fn round_trip(endpoint: &ClientEndpoint, link: &ConnectionLink, payload: Vec<u8>) {
    link.send(payload.clone()).unwrap();
    match endpoint.events().recv_timeout(WAIT).expect("echo") {
        IoEvent::Frame { frame, .. } => assert_eq!(frame, payload),
        other => panic!("expected echo, got {other:?}"),
    }
    link.frame_consumed();
}

fn expect_closed(endpoint: &ClientEndpoint) -> CloseCause {
    loop {
        match endpoint.events().recv_timeout(WAIT).expect("client Closed") {
            IoEvent::Closed { cause, .. } => return cause,
            IoEvent::Frame { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn wss_echo_round_trips() {
    let rt = IoRuntime::new(2).unwrap();
    let (server, addr, driver, cert_pem) = tls_server(&rt, IoConfig::default());

    let client =
        websocket::connect_with_tls(&rt, &wss(addr), IoConfig::default(), trusting(&cert_pem));
    let link = expect_opened(&client, addr);
    for payload in [b"hello".to_vec(), Vec::new(), vec![0x5A; 60 * 1024]] {
        round_trip(&client, &link, payload);
    }
    // Many frames in flight at once, in order.
    for i in 0..200u32 {
        link.send(i.to_le_bytes().to_vec()).unwrap();
    }
    for i in 0..200u32 {
        match client.events().recv_timeout(WAIT).expect("echo") {
            IoEvent::Frame { frame, .. } => assert_eq!(frame, i.to_le_bytes()),
            other => panic!("expected echo, got {other:?}"),
        }
        link.frame_consumed();
    }
    let snapshot = server.counters().snapshot();
    assert_eq!(snapshot.connections_accepted, 1);
    assert_eq!(snapshot.handshake_failures, 0);

    link.close();
    assert_eq!(expect_closed(&client), CloseCause::Local);
    wait_until("server Closed", || {
        driver.state.lock().unwrap().closed.len() == 1
    });
    assert_eq!(
        driver.state.lock().unwrap().closed[&ConnectionId(1)],
        vec![CloseCause::PeerClosed]
    );
    driver.finish(server);
}

#[test]
fn plain_clients_on_the_tls_port_fail_alone() {
    let rt = IoRuntime::new(2).unwrap();
    let (server, addr, driver, cert_pem) = tls_server(&rt, IoConfig::default());
    let good =
        websocket::connect_with_tls(&rt, &wss(addr), IoConfig::default(), trusting(&cert_pem));
    let good_link = expect_opened(&good, addr);
    round_trip(&good, &good_link, b"before".to_vec());

    // A plain ws:// client: the server's TLS handshake fails on its HTTP request.
    let plain = websocket::connect(&rt, &format!("ws://{addr}/game"), IoConfig::default());
    let cause = expect_failed(&plain);
    assert!(
        matches!(cause, CloseCause::HandshakeFailed(_) | CloseCause::Io(_)),
        "{cause:?}"
    );
    wait_until("plain client counted", || {
        server.counters().snapshot().handshake_failures == 1
    });

    // Raw garbage on the TLS port.
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    raw.write_all(b"\x16\x03\x01\x00\x05garbage garbage garbage")
        .unwrap();
    wait_until("garbage counted", || {
        server.counters().snapshot().handshake_failures == 2
    });
    drop(raw);

    // Nothing of this reached the ECS or disturbed the good connection.
    round_trip(&good, &good_link, b"after".to_vec());
    let again =
        websocket::connect_with_tls(&rt, &wss(addr), IoConfig::default(), trusting(&cert_pem));
    let again_link = expect_opened(&again, addr);
    round_trip(&again, &again_link, b"new".to_vec());
    let snapshot = server.counters().snapshot();
    assert_eq!(snapshot.connections_accepted, 2);
    assert_eq!(snapshot.connections_active, 2);
    assert_eq!(snapshot.handshake_failures, 2);
    assert_eq!(driver.opened_count(), 2);
    driver.finish(server);
}

#[test]
fn clients_that_do_not_trust_the_certificate_fail_the_handshake() {
    let rt = IoRuntime::new(2).unwrap();
    let (server, addr, driver, cert_pem) = tls_server(&rt, IoConfig::default());

    // `connect` trusts the Mozilla roots, which did not sign our certificate.
    let default_roots = websocket::connect(&rt, &wss(addr), IoConfig::default());
    match expect_failed(&default_roots) {
        CloseCause::HandshakeFailed(text) => assert!(text.starts_with("TLS:"), "{text}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(default_roots.counters().snapshot().handshake_failures, 1);

    // A client that trusts some other self-signed certificate.
    let (other_cert, _) = self_signed();
    let other =
        websocket::connect_with_tls(&rt, &wss(addr), IoConfig::default(), trusting(&other_cert));
    match expect_failed(&other) {
        CloseCause::HandshakeFailed(text) => assert!(text.starts_with("TLS:"), "{text}"),
        other => panic!("{other:?}"),
    }

    // Both refusals reached the server as failed handshakes, nothing else.
    wait_until("server-side failures", || {
        server.counters().snapshot().handshake_failures == 2
    });
    assert_eq!(driver.opened_count(), 0);

    // A trusting client still gets in.
    let good =
        websocket::connect_with_tls(&rt, &wss(addr), IoConfig::default(), trusting(&cert_pem));
    let link = expect_opened(&good, addr);
    round_trip(&good, &link, b"ok".to_vec());
    driver.finish(server);
}

#[test]
fn the_tls_handshake_counts_against_the_handshake_timeout() {
    let rt = IoRuntime::new(2).unwrap();
    let config = IoConfig {
        handshake_timeout: Duration::from_millis(300),
        ..IoConfig::default()
    };
    let (server, addr, driver, cert_pem) = tls_server(&rt, config);

    // Silent before the TLS handshake.
    let silent = std::net::TcpStream::connect(addr).unwrap();
    wait_until("silent TCP timed out", || {
        server.counters().snapshot().handshake_timeouts == 1
    });
    drop(silent);

    // TLS handshake done, then silent before the WebSocket upgrade.
    let client_tls = trusting(&cert_pem);
    let tls_done = rt.handle().block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        tokio_rustls::TlsConnector::from(client_tls)
            .connect(name, tcp)
            .await
            .expect("TLS handshake")
    });
    wait_until("silent TLS timed out", || {
        server.counters().snapshot().handshake_timeouts == 2
    });
    drop(tls_done);

    let snapshot = server.counters().snapshot();
    assert_eq!(snapshot.handshake_failures, 0);
    assert_eq!(snapshot.connections_accepted, 0);
    assert_eq!(driver.opened_count(), 0);
    driver.finish(server);
}

#[test]
fn connect_with_tls_on_a_ws_url_is_plain() {
    let rt = IoRuntime::new(1).unwrap();
    let server =
        websocket::listen(&rt, "127.0.0.1:0".parse().unwrap(), IoConfig::default()).unwrap();
    let addr = server.local_addr().unwrap();
    let driver = Driver::start(&server);
    let (cert_pem, _) = self_signed();
    let client = websocket::connect_with_tls(
        &rt,
        &format!("ws://{addr}/game"),
        IoConfig::default(),
        trusting(&cert_pem),
    );
    let link = expect_opened(&client, addr);
    round_trip(&client, &link, b"plain".to_vec());
    driver.finish(server);
}

#[test]
fn pem_helpers_report_bad_input() {
    let (cert_pem, key_pem) = self_signed();
    let (other_cert, other_key) = self_signed();
    assert!(tls::server_config_from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).is_ok());
    assert!(matches!(
        tls::server_config_from_pem(b"", key_pem.as_bytes()),
        Err(TlsError::NoCertificates)
    ));
    assert!(matches!(
        tls::server_config_from_pem(cert_pem.as_bytes(), cert_pem.as_bytes()),
        Err(TlsError::NoPrivateKey)
    ));
    assert!(matches!(
        tls::server_config_from_pem(
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            key_pem.as_bytes()
        ),
        Err(TlsError::Pem(_))
    ));
    assert!(matches!(
        tls::server_config_from_pem(other_cert.as_bytes(), key_pem.as_bytes()),
        Err(TlsError::Rustls(_))
    ));
    // A chain of two certificates parses (validity is the client's business).
    let chain = format!("{cert_pem}{other_cert}");
    assert!(tls::server_config_from_pem(chain.as_bytes(), key_pem.as_bytes()).is_ok());
    let _ = other_key;

    assert!(tls::client_config_from_pem(cert_pem.as_bytes()).is_ok());
    assert!(matches!(
        tls::client_config_from_pem(b"no pem here"),
        Err(TlsError::NoCertificates)
    ));
    // The default client config is built once and shared.
    assert!(Arc::ptr_eq(
        &tls::webpki_roots_client_config(),
        &tls::webpki_roots_client_config()
    ));
}
