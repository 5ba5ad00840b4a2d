//! A sans-IO test harness: two [`Session`]s wired back to back.
//!
//! Used by this crate's tests, the benchmarks and the fuzz targets, and useful
//! for games that want to unit-test their own message handling without sockets.
//!
//! ```
//! use std::time::Instant;
//! use mokosh_net::protocol::testing::SessionPair;
//!
//! let now = Instant::now();
//! let mut pair = SessionPair::new_encrypted(Default::default(), now);
//! pair.connect(now).expect("handshake");
//! assert!(pair.client.is_connected() && pair.server.is_connected());
//! ```

use std::sync::Arc;
use std::time::Instant;

use super::control::DisconnectReason;
use super::crypto::KeyPair;
use super::registry::MessageRegistry;
use super::session::{
    ClientConfig, ClientSecurity, PacketError, ServerConfig, ServerSecurity, Session,
    SessionConfig, SessionEvent,
};

/// A client and a server session connected by an in-memory, lossless, ordered
/// link. Nothing moves until [`pump`](Self::pump) is called.
#[derive(Debug)]
pub struct SessionPair {
    /// The client side.
    pub client: Session,
    /// The server side.
    pub server: Session,
    /// Events the client emitted during pumping, in order.
    pub client_events: Vec<SessionEvent>,
    /// Events the server emitted during pumping, in order.
    pub server_events: Vec<SessionEvent>,
    /// Errors the client returned for received packets.
    pub client_errors: Vec<PacketError>,
    /// Errors the server returned for received packets.
    pub server_errors: Vec<PacketError>,
    /// Whether the server accepts every `AuthRequested` automatically.
    pub auto_accept: bool,
}

impl SessionPair {
    /// A pair from explicit configurations (client id 1).
    pub fn new(client: &ClientConfig, server: &ServerConfig, now: Instant) -> Self {
        SessionPair {
            client: Session::client(client, now).expect("client configuration is valid"),
            server: Session::server(server, 1, now),
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_errors: Vec::new(),
            server_errors: Vec::new(),
            auto_accept: true,
        }
    }

    /// An encrypted pair with a fresh server key, sharing `registry`.
    pub fn with_registry(
        registry: Arc<MessageRegistry>,
        session: SessionConfig,
        now: Instant,
    ) -> Self {
        let (client, server) = encrypted_configs(registry, session);
        Self::new(&client, &server, now)
    }

    /// An encrypted pair with an empty registry and `session` settings.
    pub fn new_encrypted(session: SessionConfig, now: Instant) -> Self {
        Self::with_registry(Arc::new(MessageRegistry::new()), session, now)
    }

    /// Moves every queued frame across (both directions) until nothing is left,
    /// collecting events and errors.
    pub fn pump(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            while let Some(frame) = self.client.poll_transmit() {
                moved = true;
                if let Err(error) = self.server.handle_packet(now, &frame) {
                    self.server_errors.push(error);
                }
            }
            while let Some(event) = self.server.poll_event() {
                if self.auto_accept && matches!(event, SessionEvent::AuthRequested { .. }) {
                    let _ = self.server.accept(now);
                }
                self.server_events.push(event);
                moved = true;
            }
            while let Some(frame) = self.server.poll_transmit() {
                moved = true;
                if let Err(error) = self.client.handle_packet(now, &frame) {
                    self.client_errors.push(error);
                }
            }
            while let Some(event) = self.client.poll_event() {
                self.client_events.push(event);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    /// Runs both sessions' timers, then pumps.
    pub fn tick(&mut self, now: Instant) {
        self.client.handle_timeout(now);
        self.server.handle_timeout(now);
        self.pump(now);
    }

    /// Pumps the handshake; returns the client's disconnect reason on failure.
    pub fn connect(&mut self, now: Instant) -> Result<(), DisconnectReason> {
        self.pump(now);
        if self.client.is_connected() && self.server.is_connected() {
            return Ok(());
        }
        Err(self
            .client_events
            .iter()
            .find_map(|event| match event {
                SessionEvent::Disconnected { reason, .. } => Some(*reason),
                _ => None,
            })
            .unwrap_or(DisconnectReason::HandshakeTimeout))
    }

    /// Takes the messages the server has received so far.
    pub fn server_messages(&mut self) -> Vec<super::session::ReceivedMessage> {
        take_messages(&mut self.server_events)
    }

    /// Takes the messages the client has received so far.
    pub fn client_messages(&mut self) -> Vec<super::session::ReceivedMessage> {
        take_messages(&mut self.client_events)
    }
}

fn take_messages(events: &mut Vec<SessionEvent>) -> Vec<super::session::ReceivedMessage> {
    let mut messages = Vec::new();
    events.retain(|event| match event {
        SessionEvent::Message(message) => {
            messages.push(message.clone());
            false
        }
        _ => true,
    });
    messages
}

/// Matching encrypted client and server configurations with a fresh key pair.
pub fn encrypted_configs(
    registry: Arc<MessageRegistry>,
    session: SessionConfig,
) -> (ClientConfig, ServerConfig) {
    let keypair = KeyPair::generate().expect("the OS random source works");
    (
        ClientConfig {
            security: ClientSecurity::Pinned(keypair.public()),
            auth_token: b"test-token".to_vec(),
            registry: registry.clone(),
            session: session.clone(),
        },
        ServerConfig {
            security: ServerSecurity::Noise(keypair),
            registry,
            session,
        },
    )
}
