//! The handshake: the client's hello, the server's response, the sealed
//! AUTH / AUTH_OK exchange and the authentication decision.
//!
//! The Noise messages only agree on keys and parameters. Identity is settled
//! afterwards: the client's first sealed packet is AUTH (its token), and the
//! server answers with a sealed AUTH_OK (the client id) or a sealed DISCONNECT.
//! A replayed Noise message 1 therefore yields keys the replayer does not
//! have, and never an [`SessionEvent::AuthRequested`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Established, Outgoing, Phase, Session, State};
use super::{Initiator, PacketError, SessionEvent, StateError};
use crate::protocol::codec::{CodecId, negotiate_codec};
use crate::protocol::compression::{
    CompressionConfig, CompressionError, CompressionId, Compressor, negotiate_compression,
};
use crate::protocol::control::{ControlMessage, DisconnectReason, ROUTE_HANDSHAKE};
use crate::protocol::crypto::{NoiseHandshake, TrafficKeys};
use crate::protocol::envelope::{Flags, Header};
use crate::protocol::handshake::{Accept, Hello, MAX_HANDSHAKE_BODY, Response};
use crate::protocol::rate_limit::RateLimiter;
use crate::protocol::replay::ReplayGuard;

impl Session {
    /// Server only: accepts the client after [`SessionEvent::AuthRequested`]:
    /// sends the sealed AUTH_OK and emits [`SessionEvent::Connected`].
    pub fn accept(&mut self, now: Instant) -> Result<(), StateError> {
        let State::Established(est) = &mut self.state else {
            return Err(StateError::NotAwaitingAuth);
        };
        if !matches!(est.phase, Phase::AwaitingDecision { .. }) {
            return Err(StateError::NotAwaitingAuth);
        }
        // Timers of the connected session start now (the decision may have
        // taken a while, during which the client may not send anything).
        est.phase = Phase::Ready;
        est.last_received = now;
        est.next_ping = now + est.ping_interval;
        let (codec, compression) = (est.codec, est.compression);
        let client_id = self.client_id;
        if self
            .send_control(&ControlMessage::AuthOk { client_id })
            .is_ok()
        {
            self.events.push_back(SessionEvent::Connected {
                client_id,
                codec,
                compression,
            });
        }
        Ok(())
    }

    /// Server only: refuses the client after [`SessionEvent::AuthRequested`];
    /// the reason (usually [`DisconnectReason::AuthFailed`]) is sent to it in
    /// a sealed DISCONNECT.
    pub fn reject(
        &mut self,
        reason: DisconnectReason,
        detail: impl Into<String>,
    ) -> Result<(), StateError> {
        if !matches!(&self.state, State::Established(est)
            if matches!(est.phase, Phase::AwaitingDecision { .. }))
        {
            return Err(StateError::NotAwaitingAuth);
        }
        self.close(reason, Initiator::Local, detail.into());
        Ok(())
    }

    pub(super) fn queue_handshake(&mut self, flags: Flags, body: &[u8]) {
        let mut header = Header::new(CodecId::Raw, ROUTE_HANDSHAKE);
        header.flags = flags;
        header.payload_len = body.len() as u32;
        let mut frame = Vec::with_capacity(header.encoded_len() + body.len());
        header.encode(&mut frame);
        frame.extend_from_slice(body);
        self.stats.packets_out += 1;
        self.stats.bytes_out += frame.len() as u64;
        self.transmit.push_back(Outgoing::Alone(frame));
    }

    /// Switches to the keyed state, still authenticating until `deadline`.
    fn establish(
        &mut self,
        now: Instant,
        keys: Option<TrafficKeys>,
        accept: Accept,
        peer_max_message_size: usize,
        deadline: Instant,
    ) -> Result<(), PacketError> {
        let compression_config = CompressionConfig {
            max_decompressed_size: self.config.max_message_size,
            ..self.config.compression_config
        };
        let compressor = Compressor::new(accept.compression, compression_config)
            .map_err(|error: CompressionError| PacketError::Decompress(error.to_string()))?;
        let (sealer, opener) = match keys {
            Some(keys) => (Some(keys.sealer), Some(keys.opener)),
            None => (None, None),
        };
        let ping_interval = Duration::from_millis(u64::from(accept.ping_interval_ms));
        self.state = State::Established(Box::new(Established {
            phase: Phase::Authenticating { deadline },
            sealer,
            opener,
            plain_next: 0,
            replay: ReplayGuard::new(self.config.replay, 0),
            codec: accept.codec,
            compression: accept.compression,
            compressor,
            peer_max_message_size,
            idle_timeout: Duration::from_millis(u64::from(accept.idle_timeout_ms)),
            ping_interval,
            last_received: now,
            next_ping: now + ping_interval,
            next_ping_id: 0,
            outstanding: VecDeque::new(),
            limiter: RateLimiter::new(self.config.rate_limit),
        }));
        Ok(())
    }

    fn check_handshake_header(header: &Header) -> Result<(), PacketError> {
        if header.route_id != ROUTE_HANDSHAKE {
            return Err(PacketError::Unexpected("expected a handshake packet"));
        }
        if header.codec != CodecId::Raw
            || header.message_id != 0
            || header.correlation_id.is_some()
            || header.schema_hash.is_some()
            || header.tick.is_some()
            || header.flags.contains(Flags::COMPRESSED)
        {
            return Err(PacketError::Unexpected("malformed handshake header"));
        }
        Ok(())
    }

    /// Checks a hello against this server and picks codec and compression.
    fn evaluate_hello(
        &self,
        hello_bytes: &[u8],
    ) -> Result<(Hello, CodecId, CompressionId), (DisconnectReason, String)> {
        let hello = Hello::decode(hello_bytes)
            .map_err(|error| (DisconnectReason::ProtocolViolation, error.to_string()))?;
        if hello.protocol_hash != self.registry.protocol_hash() {
            return Err((
                DisconnectReason::SchemaMismatch,
                format!(
                    "protocol hash {:016x} does not match the server's {:016x}",
                    hello.protocol_hash,
                    self.registry.protocol_hash()
                ),
            ));
        }
        let codec = negotiate_codec(&hello.known_codecs(), &self.config.codecs)
            .ok_or((DisconnectReason::NoCommonCodec, String::new()))?;
        let compression =
            negotiate_compression(&hello.known_compression(), &self.config.compression);
        Ok((hello, codec, compression))
    }

    pub(super) fn handle_client_hello(
        &mut self,
        now: Instant,
        frame: &[u8],
    ) -> Result<(), PacketError> {
        let decoded = Header::decode(frame, MAX_HANDSHAKE_BODY)?;
        Self::check_handshake_header(&decoded.header)?;
        if decoded.header.flags.contains(Flags::ENCRYPTED) != self.encrypted {
            return Err(PacketError::SecurityMismatch);
        }
        let State::ServerAwaitHello { keypair, deadline } = &self.state else {
            return Err(PacketError::Unexpected("not awaiting a hello"));
        };
        let deadline = *deadline;
        let (noise, hello_bytes) = match keypair {
            Some(keypair) => {
                let mut noise =
                    NoiseHandshake::responder(keypair).map_err(PacketError::Handshake)?;
                let payload = noise.read(decoded.body).map_err(PacketError::Handshake)?;
                (Some(noise), payload)
            }
            None => (None, decoded.body.to_vec()),
        };
        // From here on the client is talking to the right server: refusals travel
        // inside the (authenticated) Noise response.
        let (response, outcome) = match self.evaluate_hello(&hello_bytes) {
            Ok((hello, codec, compression)) => {
                let accept = Accept {
                    codec,
                    compression,
                    max_message_size: self.config.max_message_size as u32,
                    ping_interval_ms: self.config.ping_interval.as_millis().clamp(1, 60_000) as u32,
                    idle_timeout_ms: self.config.idle_timeout.as_millis().clamp(1, 600_000) as u32,
                };
                (Response::Accepted(accept), Ok((hello, accept)))
            }
            Err((reason, detail)) => (
                Response::Rejected {
                    reason,
                    detail: detail.clone(),
                },
                Err((reason, detail)),
            ),
        };
        let mut body = Vec::new();
        response.encode(&mut body);
        let keys = match noise {
            Some(mut noise) => {
                let message = noise.write(&body).map_err(PacketError::Handshake)?;
                self.queue_handshake(Flags::ENCRYPTED, &message);
                match outcome {
                    Ok(_) => Some(noise.into_traffic_keys().map_err(PacketError::Handshake)?),
                    Err(_) => None,
                }
            }
            None => {
                self.queue_handshake(Flags::empty(), &body);
                None
            }
        };
        match outcome {
            Ok((hello, accept)) => {
                self.establish(now, keys, accept, hello.max_message_size as usize, deadline)
            }
            Err((reason, detail)) => {
                // The refusal is queued; close without sending another one.
                self.state = State::Closed(reason);
                self.events.push_back(SessionEvent::Disconnected {
                    reason,
                    initiator: Initiator::Local,
                    detail,
                });
                Err(PacketError::Refused(reason))
            }
        }
    }

    pub(super) fn handle_server_response(
        &mut self,
        now: Instant,
        frame: &[u8],
    ) -> Result<(), PacketError> {
        let decoded = Header::decode(frame, MAX_HANDSHAKE_BODY)?;
        Self::check_handshake_header(&decoded.header)?;
        let flagged = decoded.header.flags.contains(Flags::ENCRYPTED);
        let State::ClientHandshake {
            noise,
            token,
            deadline,
        } = &mut self.state
        else {
            return Err(PacketError::Unexpected("not awaiting a response"));
        };
        let deadline = *deadline;
        let (response, authenticated) = match (noise.as_mut(), flagged) {
            (Some(noise), true) => {
                let payload = noise.read(decoded.body).map_err(PacketError::Handshake)?;
                (Response::decode(&payload)?, true)
            }
            (None, false) => (Response::decode(decoded.body)?, true),
            // A plaintext answer to an encrypted hello can only be a refusal
            // (the server could not or would not run Noise). It is not
            // authenticated, so it can end the attempt but never connect.
            (Some(_), false) => (Response::decode(decoded.body)?, false),
            (None, true) => return Err(PacketError::SecurityMismatch),
        };
        match response {
            Response::Accepted(accept) if authenticated => {
                let offered_codec = self.config.codecs.contains(&accept.codec);
                let offered_compression = accept.compression == CompressionId::None
                    || self.config.compression.contains(&accept.compression);
                if !offered_codec || !offered_compression {
                    return Err(PacketError::Unexpected(
                        "server chose something not offered",
                    ));
                }
                let token = std::mem::take(token);
                let keys = match noise.take() {
                    Some(noise) => Some(noise.into_traffic_keys().map_err(PacketError::Handshake)?),
                    None => None,
                };
                let peer_max = accept.max_message_size as usize;
                self.establish(now, keys, accept, peer_max, deadline)?;
                // The first sealed packet: proves the keys and carries the token.
                let _ = self.send_control(&ControlMessage::Auth { token });
                Ok(())
            }
            Response::Accepted(_) => Err(PacketError::SecurityMismatch),
            Response::Rejected { reason, detail } => {
                let initiator = if authenticated {
                    Initiator::Peer
                } else {
                    Initiator::UnauthenticatedPeer
                };
                self.close(reason, initiator, detail);
                Ok(())
            }
        }
    }
}
