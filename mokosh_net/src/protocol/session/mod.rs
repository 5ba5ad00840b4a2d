//! The session state machine: handshake, sealing, replay, rate limits, keepalive
//! and timeouts for one connection, on either side.
//!
//! A [`Session`] is sans-IO. The owner (an IO task, a test, a fuzzer) drives it:
//!
//! 1. feed every received frame to [`Session::handle_packet`] with the current
//!    time;
//! 2. call [`Session::handle_timeout`] when [`Session::poll_timeout`] says so
//!    (or simply every tick);
//! 3. drain [`Session::poll_transmit`] and send each frame, in order, as one
//!    transport message;
//! 4. drain [`Session::poll_event`] for connections, messages and disconnects.
//!
//! ```text
//!  client                                   server
//!  Session::client ── HANDSHAKE(hello) ───▶ Session::server
//!                  ◀── HANDSHAKE(response) ─  (session keys exist now)
//!  sealed AUTH{token} ════════════════════▶ event AuthRequested{token}
//!                                           accept() / reject(reason)
//!  event Connected ◀════ sealed AUTH_OK{id} ═ event Connected
//!          (or     ◀════ sealed DISCONNECT(AuthFailed))
//!  send()/events   ◀══ sealed packets ═════▶ send()/events
//!  PING/PONG every ping interval, both directions; RTT from own clock
//! ```
//!
//! The credentials travel in the client's first sealed packet, not in the
//! replayable Noise message 1, so [`SessionEvent::AuthRequested`] proves the
//! sender holds this session's keys. The handshake timeout covers everything
//! up to AUTH_OK.
//!
//! Every error on a received packet is returned as a [`PacketError`] (so the
//! caller can count it) and, if [`PacketError::is_fatal`], the session has
//! already closed itself with the matching [`DisconnectReason`], queued a
//! best-effort DISCONNECT for the peer, and emitted
//! [`SessionEvent::Disconnected`]. A packet that fails authentication changes
//! no counter, window or timer.

mod config;
mod established;
mod events;
mod handshake;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use config::{ClientConfig, ClientSecurity, ServerConfig, ServerSecurity, SessionConfig};
pub use events::{
    Initiator, MessageDecodeError, OpenedPacket, PacketError, ReceivedMessage, Role, RttEstimate,
    SendError, SessionEvent, SessionState, SessionStats, StateError,
};

use super::codec::CodecId;
use super::compression::{CompressionId, Compressor};
use super::control::{ControlMessage, DisconnectReason, MAX_TOKEN_LEN};
use super::crypto::TAG_LEN;
use super::crypto::{CryptoError, KeyPair, NoiseHandshake, PacketOpener, PacketSealer};
use super::envelope::{Flags, MAX_HEADER_LEN, MAX_PACKETS_PER_FRAME};
use super::handshake::clamp_message_size;
use super::handshake::{Hello, Response};
use super::rate_limit::{RateLimitError, RateLimiter};
use super::registry::MessageRegistry;
use super::replay::ReplayGuard;

/// Highest reserved (control) route id.
const LAST_RESERVED_ROUTE: u16 = 15;
/// How many unanswered pings are remembered for RTT measurement.
const MAX_OUTSTANDING_PINGS: usize = 8;

enum State {
    ClientHandshake {
        noise: Option<Box<NoiseHandshake>>,
        token: Vec<u8>,
        deadline: Instant,
    },
    ServerAwaitHello {
        keypair: Option<KeyPair>,
        deadline: Instant,
    },
    /// Keys exist (or plaintext was agreed); `Established::phase` says whether
    /// the AUTH exchange is done.
    Established(Box<Established>),
    Closed(DisconnectReason),
}

/// Where a keyed session is in the AUTH exchange that ends the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Client: AUTH sent, waiting for AUTH_OK. Server: waiting for AUTH.
    Authenticating { deadline: Instant },
    /// Server only: AUTH received, waiting for `accept` / `reject`.
    AwaitingDecision { deadline: Instant },
    /// Connected: application messages and keepalive flow.
    Ready,
}

struct Established {
    phase: Phase,
    sealer: Option<PacketSealer>,
    opener: Option<PacketOpener>,
    /// Plaintext mode's send counter (the sealer keeps its own).
    plain_next: u64,
    replay: ReplayGuard,
    codec: CodecId,
    compression: CompressionId,
    compressor: Compressor,
    peer_max_message_size: usize,
    idle_timeout: Duration,
    ping_interval: Duration,
    last_received: Instant,
    next_ping: Instant,
    next_ping_id: u64,
    outstanding: VecDeque<(u64, Instant)>,
    limiter: RateLimiter,
}

/// A queued packet: handshake packets travel alone, the others may be
/// batched into one frame by [`Session::poll_transmit`].
#[derive(Debug)]
enum Outgoing {
    Alone(Vec<u8>),
    Batchable(Vec<u8>),
}

/// One connection's protocol state, client or server. See the module docs.
pub struct Session {
    role: Role,
    client_id: u64,
    encrypted: bool,
    registry: Arc<MessageRegistry>,
    config: SessionConfig,
    state: State,
    transmit: VecDeque<Outgoing>,
    /// The network tick stamped on packets sealed from now on.
    tick: Option<u32>,
    events: VecDeque<SessionEvent>,
    rtt: RttEstimate,
    stats: SessionStats,
    encode_buffer: Vec<u8>,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("client_id", &self.client_id)
            .field("state", &self.state())
            .field("encrypted", &self.encrypted)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts a client session and queues the hello.
    pub fn client(config: &ClientConfig, now: Instant) -> Result<Self, CryptoError> {
        let hello = Hello::new(
            &config.session.codecs,
            &config.session.compression,
            config.registry.protocol_hash(),
            config.session.max_message_size,
        );
        let mut body = Vec::new();
        hello
            .encode(&mut body)
            .map_err(|_| CryptoError::Handshake("hello does not fit its limits".into()))?;
        if config.auth_token.len() > MAX_TOKEN_LEN {
            return Err(CryptoError::Handshake(format!(
                "auth token of {} bytes exceeds {MAX_TOKEN_LEN}",
                config.auth_token.len()
            )));
        }
        let (noise, body, flags) = match &config.security {
            ClientSecurity::Pinned(key) => {
                let mut noise = NoiseHandshake::initiator(key)?;
                let message = noise.write(&body)?;
                (Some(Box::new(noise)), message, Flags::ENCRYPTED)
            }
            ClientSecurity::Plaintext => (None, body, Flags::empty()),
        };
        let mut session = Session::new(
            Role::Client,
            0,
            noise.is_some(),
            config.registry.clone(),
            config.session.clone(),
            State::ClientHandshake {
                noise,
                token: config.auth_token.clone(),
                deadline: now + config.session.handshake_timeout,
            },
        );
        session.queue_handshake(flags, &body);
        Ok(session)
    }

    /// Starts a server session for a new connection, identified by `client_id`.
    pub fn server(config: &ServerConfig, client_id: u64, now: Instant) -> Self {
        let keypair = match &config.security {
            ServerSecurity::Noise(keypair) => Some(keypair.clone()),
            ServerSecurity::Plaintext => None,
        };
        Session::new(
            Role::Server,
            client_id,
            keypair.is_some(),
            config.registry.clone(),
            config.session.clone(),
            State::ServerAwaitHello {
                keypair,
                deadline: now + config.session.handshake_timeout,
            },
        )
    }

    fn new(
        role: Role,
        client_id: u64,
        encrypted: bool,
        registry: Arc<MessageRegistry>,
        mut config: SessionConfig,
        state: State,
    ) -> Self {
        // Announce exactly what is enforced.
        config.max_message_size = clamp_message_size(config.max_message_size);
        Session {
            role,
            client_id,
            encrypted,
            registry,
            config,
            state,
            transmit: VecDeque::new(),
            tick: None,
            events: VecDeque::new(),
            rtt: RttEstimate::default(),
            stats: SessionStats::default(),
            encode_buffer: Vec::new(),
        }
    }
}

impl Session {
    /// Which side this session is.
    pub const fn role(&self) -> Role {
        self.role
    }

    /// The client id (assigned by the server; 0 on a client before it connects).
    pub const fn client_id(&self) -> u64 {
        self.client_id
    }

    /// Whether traffic is encrypted (Noise + sealed packets).
    pub const fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// The coarse state.
    pub fn state(&self) -> SessionState {
        match &self.state {
            State::ClientHandshake { .. } | State::ServerAwaitHello { .. } => {
                SessionState::Handshaking
            }
            State::Established(est) => match est.phase {
                Phase::Authenticating { .. } => SessionState::Handshaking,
                Phase::AwaitingDecision { .. } => SessionState::AwaitingAuth,
                Phase::Ready => SessionState::Connected,
            },
            State::Closed(reason) => SessionState::Closed(*reason),
        }
    }

    /// Whether messages can be sent.
    pub fn is_connected(&self) -> bool {
        matches!(&self.state, State::Established(est) if est.phase == Phase::Ready)
    }

    /// Whether this is a server session still waiting for the client's hello
    /// (the packet whose Noise handshake costs the server its X25519 work).
    pub fn awaits_hello(&self) -> bool {
        matches!(self.state, State::ServerAwaitHello { .. })
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// The current RTT estimate (zero samples until the first pong).
    pub const fn rtt(&self) -> RttEstimate {
        self.rtt
    }

    /// Traffic counters.
    pub const fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The message registry this session validates routes against.
    pub fn registry(&self) -> &Arc<MessageRegistry> {
        &self.registry
    }

    /// The negotiated codec, once the server accepted the hello.
    pub fn codec(&self) -> Option<CodecId> {
        match &self.state {
            State::Established(est) => Some(est.codec),
            _ => None,
        }
    }

    /// The negotiated compression, once the server accepted the hello.
    pub fn compression(&self) -> Option<CompressionId> {
        match &self.state {
            State::Established(est) => Some(est.compression),
            _ => None,
        }
    }

    /// The next frame to send, in order. After the handshake the queued
    /// packets are batched: one frame holds as many consecutive packets as
    /// fit the peer's frame limit (its max message size + 16 + 44 bytes) and
    /// [`MAX_PACKETS_PER_FRAME`]; a handshake packet always travels alone.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let mut frame = match self.transmit.pop_front()? {
            Outgoing::Alone(frame) => return Some(frame),
            Outgoing::Batchable(frame) => frame,
        };
        let limit = self.peer_frame_limit();
        let mut packets = 1;
        while packets < MAX_PACKETS_PER_FRAME {
            match self.transmit.front() {
                Some(Outgoing::Batchable(next)) if frame.len() + next.len() <= limit => {
                    frame.extend_from_slice(next);
                    self.transmit.pop_front();
                    packets += 1;
                }
                _ => break,
            }
        }
        Some(frame)
    }

    /// Sets the network tick that packets sealed from now on carry (in the
    /// envelope's TICK field; the peer sees it as [`ReceivedMessage::tick`]).
    /// Call it once per fixed step, before sending that step's messages.
    pub fn set_tick(&mut self, tick: u32) {
        self.tick = Some(tick);
    }

    /// The tick set by [`set_tick`](Self::set_tick), if any.
    pub const fn tick(&self) -> Option<u32> {
        self.tick
    }

    /// The largest frame the peer accepts: its max message size plus the tag
    /// and the longest header. Before the handshake completes, no batching.
    fn peer_frame_limit(&self) -> usize {
        match &self.state {
            State::Established(est) => est.peer_max_message_size + TAG_LEN + MAX_HEADER_LEN,
            _ => 0,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::ClientHandshake { deadline, .. } | State::ServerAwaitHello { deadline, .. } => {
                Some(*deadline)
            }
            State::Established(est) => match est.phase {
                Phase::Authenticating { deadline } | Phase::AwaitingDecision { deadline } => {
                    Some(deadline)
                }
                Phase::Ready => Some((est.last_received + est.idle_timeout).min(est.next_ping)),
            },
            State::Closed(_) => None,
        }
    }

    /// Processes one received frame: [`open_frame`](Self::open_frame), then
    /// [`admit`](Self::admit) and [`deliver`](Self::deliver) for each of its
    /// packets in order. A packet over the rate limit is dropped and the
    /// others still delivered; the frame's result is then that
    /// `RateLimited` error. A fatal error stops at its packet. See
    /// [`PacketError`] for what errors mean.
    pub fn handle_packet(&mut self, now: Instant, frame: &[u8]) -> Result<(), PacketError> {
        let mut dropped = None;
        for packet in self.open_frame(now, frame)? {
            if self.is_closed() {
                // A DISCONNECT earlier in the frame ended the session.
                break;
            }
            match self.admit(now, &packet) {
                Ok(()) => self.deliver(now, packet)?,
                Err(error) if !error.is_fatal() => dropped = dropped.or(Some(error)),
                Err(error) => return Err(error),
            }
        }
        dropped.map_or(Ok(()), Err)
    }

    /// Step 1 of receiving: splits the frame into its packets and, for each
    /// in order, decodes the envelope, checks the packet counter against the
    /// replay guard, verifies and decrypts the packet, and only then commits
    /// the counter and resets the idle timer. A compressed packet's declared
    /// size is read (not decompressed) for [`admit`](Self::admit). Handshake
    /// frames hold one packet and are processed completely here (returning
    /// no packets). Any error is fatal; packets before the bad one have been
    /// committed but are not returned, since the session is closed.
    pub fn open_frame(
        &mut self,
        now: Instant,
        frame: &[u8],
    ) -> Result<Vec<OpenedPacket>, PacketError> {
        self.stats.packets_in += 1;
        self.stats.bytes_in += frame.len() as u64;
        let result = match &self.state {
            State::ClientHandshake { .. } => {
                self.handle_server_response(now, frame).map(|()| Vec::new())
            }
            State::ServerAwaitHello { .. } => {
                self.handle_client_hello(now, frame).map(|()| Vec::new())
            }
            State::Established(_) => self.open_established_frame(now, frame),
            State::Closed(_) => return Err(PacketError::Closed),
        };
        self.close_if_fatal(result)
    }

    /// Step 2 of receiving: charges an opened packet to the peer's rate limits
    /// (one message, and [`OpenedPacket::budget_cost`] bytes).
    /// Over the limit the packet must be dropped (`RateLimited { fatal: false }`);
    /// persistently over it the session closes.
    pub fn admit(&mut self, now: Instant, packet: &OpenedPacket) -> Result<(), PacketError> {
        let result = match &mut self.state {
            // The sealed AUTH / AUTH_OK are part of the handshake: at most one
            // per side (anything else before AUTH_OK closes the session), so
            // they are not charged to the limits of the connected session.
            State::Established(est) if est.phase != Phase::Ready => Ok(()),
            State::Established(est) => match est.limiter.check(now, packet.budget_cost()) {
                Ok(()) => Ok(()),
                Err(RateLimitError::Dropped) => {
                    self.stats.rate_limited += 1;
                    Err(PacketError::RateLimited { fatal: false })
                }
                Err(_) => {
                    self.stats.rate_limited += 1;
                    Err(PacketError::RateLimited { fatal: true })
                }
            },
            State::Closed(_) => return Err(PacketError::Closed),
            _ => Err(PacketError::Unexpected("not connected")),
        };
        self.close_if_fatal(result)
    }

    /// Step 3 of receiving: acts on an admitted packet — answers pings,
    /// measures pongs, handles DISCONNECT, or decompresses and emits an
    /// application message.
    pub fn deliver(&mut self, now: Instant, packet: OpenedPacket) -> Result<(), PacketError> {
        if self.is_closed() {
            return Err(PacketError::Closed);
        }
        let result = self.deliver_established(now, packet);
        self.close_if_fatal(result)
    }

    fn close_if_fatal<T>(&mut self, result: Result<T, PacketError>) -> Result<T, PacketError> {
        if let Err(error) = &result
            && error.is_fatal()
            && !self.is_closed()
        {
            self.close(error.reason(), Initiator::Local, error.to_string());
        }
        result
    }

    /// Runs timers: handshake and idle timeouts, keepalive pings.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::ClientHandshake { deadline, .. } | State::ServerAwaitHello { deadline, .. } => {
                if now >= *deadline {
                    self.close(
                        DisconnectReason::HandshakeTimeout,
                        Initiator::Local,
                        String::new(),
                    );
                }
            }
            State::Established(est) => {
                if let Phase::Authenticating { deadline } | Phase::AwaitingDecision { deadline } =
                    est.phase
                {
                    if now >= deadline {
                        self.close(
                            DisconnectReason::HandshakeTimeout,
                            Initiator::Local,
                            String::new(),
                        );
                    }
                } else if now.saturating_duration_since(est.last_received) >= est.idle_timeout {
                    self.close(
                        DisconnectReason::IdleTimeout,
                        Initiator::Local,
                        String::new(),
                    );
                } else if now >= est.next_ping {
                    let id = est.next_ping_id;
                    est.next_ping_id += 1;
                    if est.outstanding.len() == MAX_OUTSTANDING_PINGS {
                        est.outstanding.pop_front();
                    }
                    est.outstanding.push_back((id, now));
                    est.next_ping = now + est.ping_interval;
                    let _ = self.send_control(&ControlMessage::Ping { id });
                }
            }
            State::Closed(_) => {}
        }
    }

    /// Ends the session: queues a DISCONNECT with `reason` for the peer (when
    /// connected) and emits [`SessionEvent::Disconnected`]. No-op when closed.
    pub fn disconnect(&mut self, reason: DisconnectReason, detail: impl Into<String>) {
        self.close(reason, Initiator::Local, detail.into());
    }
    fn close(&mut self, reason: DisconnectReason, initiator: Initiator, detail: String) {
        if self.is_closed() {
            return;
        }
        if initiator == Initiator::Local {
            let refusal = Response::Rejected {
                reason,
                detail: detail.clone(),
            };
            match &mut self.state {
                State::Established(_) => {
                    let _ = self.send_control(&ControlMessage::Disconnect {
                        reason,
                        detail: detail.clone(),
                    });
                }
                State::ServerAwaitHello { .. } => {
                    let mut body = Vec::new();
                    refusal.encode(&mut body);
                    self.queue_handshake(Flags::empty(), &body);
                }
                State::ClientHandshake { .. } | State::Closed(_) => {}
            }
        }
        self.state = State::Closed(reason);
        self.events.push_back(SessionEvent::Disconnected {
            reason,
            initiator,
            detail,
        });
    }
}
