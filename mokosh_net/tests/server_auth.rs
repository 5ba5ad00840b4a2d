//! The server plugin's authentication work (two-App tests on virtual time):
//! provider code never runs on the game thread, an unanswered request times
//! out and its future is dropped, closing a connection aborts its request,
//! concurrency is bounded, and one identity holds a bounded number of
//! sessions.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::ThreadId;
use std::time::Duration;

use bevy_app::App;
use mokosh_derive::GameMessage;
use mokosh_net::auth::{
    AuthFuture, AuthProvider, AuthRequest, BuildProfile, Identity, UNCONFIGURED_MESSAGE,
    default_provider_for,
};
use mokosh_net::client::{ConnectionState, MokoshClient};
use mokosh_net::metrics::Rejection;
use mokosh_net::protocol::{DisconnectReason, KeyPair};
use mokosh_net::server::{
    ClientConnected, ClientDisconnected, ConnectionRejected, MokoshServer, ServerPluginConfig,
    SessionsPerIdentity, WhenIdentityFull,
};
use mokosh_net::shared::MokoshAppExt;
use mokosh_net::testing::{TestNetwork, client_app, observe, seen, server_app};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 100]
struct Input {
    sequence: u32,
}

fn server(keypair: &KeyPair, configure: impl FnOnce(&mut ServerPluginConfig)) -> App {
    let mut app = server_app(keypair.clone(), configure);
    app.add_game_message::<Input>();
    observe::<ClientConnected>(&mut app);
    observe::<ClientDisconnected>(&mut app);
    observe::<ConnectionRejected>(&mut app);
    app
}

fn client(keypair: &KeyPair, token: &str) -> App {
    let mut app = client_app(keypair.public(), token, |_| {});
    app.add_game_message::<Input>();
    app
}

fn mokosh(app: &App) -> &MokoshServer {
    app.world().resource::<MokoshServer>()
}

/// Sends on `channel` when dropped: proves a provider's future is gone.
struct DropSignal(mpsc::Sender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Never answers; its future reports when it is dropped.
struct NeverAnswers {
    called: Arc<AtomicUsize>,
    dropped: Mutex<mpsc::Sender<()>>,
}

impl NeverAnswers {
    fn new() -> (Arc<Self>, mpsc::Receiver<()>) {
        let (sender, dropped) = mpsc::channel();
        let provider = Arc::new(NeverAnswers {
            called: Arc::new(AtomicUsize::new(0)),
            dropped: Mutex::new(sender),
        });
        (provider, dropped)
    }
}

impl AuthProvider for NeverAnswers {
    fn authenticate(&self, _request: AuthRequest) -> AuthFuture {
        self.called.fetch_add(1, Ordering::SeqCst);
        let signal = DropSignal(self.dropped.lock().unwrap().clone());
        Box::pin(async move {
            let _signal = signal;
            std::future::pending().await
        })
    }
}

/// A bound for waiting on another thread; never an assertion about time.
const PATIENCE: Duration = Duration::from_secs(10);

#[test]
fn unanswered_authentication_is_refused_at_the_timeout_and_dropped() {
    let keypair = KeyPair::generate().unwrap();
    let (provider, dropped) = NeverAnswers::new();
    let auth: Arc<dyn AuthProvider> = provider.clone();
    let server = server(&keypair, |config| {
        config.auth = Some(auth);
        config.auth_limits.timeout = Duration::from_millis(200);
    });
    let mut network = TestNetwork::new(server, vec![client(&keypair, "patient")]);
    // 200 ms is 12 ticks of virtual time; the handshake timeout (5 s) is far.
    assert!(network.run_until(30, |net| {
        !seen::<ConnectionRejected>(&net.server).is_empty()
    }));
    assert_eq!(
        seen::<ConnectionRejected>(&network.server)[0].reason,
        DisconnectReason::AuthFailed
    );
    assert!(network.run_until(5, |net| {
        net.client_state(0)
            == ConnectionState::Disconnected {
                last: Some(DisconnectReason::AuthFailed),
            }
    }));
    let server = mokosh(&network.server);
    assert_eq!(server.counters().auth_timeouts, 1);
    assert_eq!(
        server.metrics().snapshot().rejected(Rejection::AuthFailed),
        1
    );
    assert_eq!(server.pending_authentications(), 0);
    let text = server.render_metrics();
    assert!(text.contains("mokosh_auth_timeouts_total 1"), "{text}");
    dropped
        .recv_timeout(PATIENCE)
        .expect("the provider's future is dropped");
    assert_eq!(provider.called.load(Ordering::SeqCst), 1);
}

#[test]
fn closing_a_connection_aborts_its_authentication() {
    let keypair = KeyPair::generate().unwrap();
    let (provider, dropped) = NeverAnswers::new();
    let server = server(&keypair, |config| config.auth = Some(provider.clone()));
    let mut network = TestNetwork::new(server, vec![client(&keypair, "leaving")]);
    assert!(network.run_until(30, |net| {
        mokosh(&net.server).pending_authentications() == 1
    }));
    network.clients[0]
        .world_mut()
        .resource_mut::<MokoshClient>()
        .disconnect();
    assert!(network.run_until(30, |net| { mokosh(&net.server).connection_count() == 0 }));
    let server = mokosh(&network.server);
    assert_eq!(server.pending_authentications(), 0);
    assert_eq!(server.counters().auth_aborted, 1);
    dropped
        .recv_timeout(PATIENCE)
        .expect("the provider's future is dropped when its connection closes");
}

/// Records the threads its code runs on.
struct RecordsThreads(Arc<Mutex<Vec<ThreadId>>>);

impl AuthProvider for RecordsThreads {
    fn authenticate(&self, request: AuthRequest) -> AuthFuture {
        let threads = Arc::clone(&self.0);
        threads.lock().unwrap().push(std::thread::current().id());
        Box::pin(async move {
            threads.lock().unwrap().push(std::thread::current().id());
            Ok(Identity::new(String::from_utf8_lossy(&request.token)))
        })
    }
}

#[test]
fn provider_code_never_runs_on_the_game_thread() {
    let keypair = KeyPair::generate().unwrap();
    let threads = Arc::new(Mutex::new(Vec::new()));
    let provider = Arc::new(RecordsThreads(Arc::clone(&threads)));
    let server = server(&keypair, |config| config.auth = Some(provider));
    let clients = (0..3).map(|i| client(&keypair, &format!("p{i}"))).collect();
    let mut network = TestNetwork::new(server, clients);
    assert!(network.run_until(60, |net| net.all_connected()));
    // The apps (and so every server system) run on this thread.
    let game_thread = std::thread::current().id();
    let threads = threads.lock().unwrap();
    assert_eq!(
        threads.len(),
        6,
        "authenticate() and its future, per client"
    );
    assert!(
        threads.iter().all(|&thread| thread != game_thread),
        "provider code ran on the game thread"
    );
}

/// Answers once the test opens the gate (one permit per answer).
struct Gated {
    gate: Arc<tokio::sync::Semaphore>,
    called: Arc<AtomicUsize>,
}

impl AuthProvider for Gated {
    fn authenticate(&self, request: AuthRequest) -> AuthFuture {
        self.called.fetch_add(1, Ordering::SeqCst);
        let gate = Arc::clone(&self.gate);
        Box::pin(async move {
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
            Ok(Identity::new(String::from_utf8_lossy(&request.token)))
        })
    }
}

#[test]
fn authentications_beyond_the_bounds_wait_or_are_refused() {
    let keypair = KeyPair::generate().unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let called = Arc::new(AtomicUsize::new(0));
    let provider = Arc::new(Gated {
        gate: Arc::clone(&gate),
        called: Arc::clone(&called),
    });
    let server = server(&keypair, |config| {
        config.auth = Some(provider);
        config.auth_limits.max_concurrent = 1;
        config.auth_limits.max_pending = 2;
    });
    let clients = (0..3).map(|i| client(&keypair, &format!("p{i}"))).collect();
    let mut network = TestNetwork::new(server, clients);
    // The third request finds two pending (one running, one waiting).
    assert!(network.run_until(30, |net| {
        !seen::<ConnectionRejected>(&net.server).is_empty()
    }));
    assert_eq!(
        seen::<ConnectionRejected>(&network.server)[0].reason,
        DisconnectReason::ServerFull
    );
    network.run_until(3, |_| false);
    let counters = mokosh(&network.server).counters();
    assert_eq!(counters.auth_overflows, 1);
    assert_eq!(counters.auth_queued, 1);
    assert_eq!(called.load(Ordering::SeqCst), 1, "one provider at a time");
    assert_eq!(mokosh(&network.server).pending_authentications(), 2);
    assert_eq!(
        network.client_state(2),
        ConnectionState::Disconnected {
            last: Some(DisconnectReason::ServerFull)
        }
    );

    // Open the gate: the running one answers, then the waiting one runs.
    gate.add_permits(2);
    assert!(network.run_until(30, |net| mokosh(&net.server).client_count() == 2));
    assert_eq!(called.load(Ordering::SeqCst), 2);
    assert_eq!(mokosh(&network.server).pending_authentications(), 0);
}

#[test]
fn release_default_provider_refuses_everyone() {
    let keypair = KeyPair::generate().unwrap();
    let server = server(&keypair, |config| {
        config.auth = Some(default_provider_for(BuildProfile::Release));
    });
    let mut network = TestNetwork::new(server, vec![client(&keypair, "anyone")]);
    assert!(network.run_until(30, |net| {
        !seen::<ConnectionRejected>(&net.server).is_empty()
    }));
    assert_eq!(
        seen::<ConnectionRejected>(&network.server)[0].reason,
        DisconnectReason::AuthFailed
    );
    assert_eq!(mokosh(&network.server).client_count(), 0);
    assert!(UNCONFIGURED_MESSAGE.contains("no authentication provider configured"));
}

fn same_identity_twice(when_full: WhenIdentityFull) -> TestNetwork {
    let keypair = KeyPair::generate().unwrap();
    let server = server(&keypair, |config| {
        config.sessions_per_identity = SessionsPerIdentity {
            max: NonZeroUsize::MIN,
            when_full,
        };
    });
    let mut network = TestNetwork::new(
        server,
        vec![client(&keypair, "alice"), client(&keypair, "bob")],
    );
    assert!(network.run_until(60, |net| net.all_connected()));
    network.connect_client(client(&keypair, "alice"));
    network.run_until(60, |net| {
        !seen::<ClientDisconnected>(&net.server).is_empty()
            || !seen::<ConnectionRejected>(&net.server).is_empty()
    });
    network.run_until(3, |_| false);
    network
}

#[test]
fn default_identity_cap_is_four_newest_replacing_oldest() {
    assert_eq!(
        SessionsPerIdentity::default(),
        SessionsPerIdentity {
            max: NonZeroUsize::new(4).unwrap(),
            when_full: WhenIdentityFull::ReplaceOldest,
        }
    );
}

#[test]
fn newest_session_of_an_identity_replaces_the_oldest() {
    let network = same_identity_twice(WhenIdentityFull::ReplaceOldest);
    let gone = seen::<ClientDisconnected>(&network.server);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].reason, DisconnectReason::Kicked);
    assert_eq!(
        network.client_state(0),
        ConnectionState::Disconnected {
            last: Some(DisconnectReason::Kicked)
        }
    );
    assert!(matches!(
        network.client_state(1),
        ConnectionState::Connected { .. }
    ));
    assert!(matches!(
        network.client_state(2),
        ConnectionState::Connected { .. }
    ));
    let server = mokosh(&network.server);
    assert_eq!(server.client_count(), 2);
    assert_eq!(server.counters().identity_replaced, 1);
}

#[test]
fn newest_session_of_a_full_identity_can_be_refused() {
    let network = same_identity_twice(WhenIdentityFull::RefuseNewest);
    assert!(seen::<ClientDisconnected>(&network.server).is_empty());
    assert_eq!(
        seen::<ConnectionRejected>(&network.server)[0].reason,
        DisconnectReason::AuthFailed
    );
    assert!(matches!(
        network.client_state(0),
        ConnectionState::Connected { .. }
    ));
    assert_eq!(
        network.client_state(2),
        ConnectionState::Disconnected {
            last: Some(DisconnectReason::AuthFailed)
        }
    );
    let server = mokosh(&network.server);
    assert_eq!(server.client_count(), 2);
    assert_eq!(server.counters().identity_refused, 1);
}
