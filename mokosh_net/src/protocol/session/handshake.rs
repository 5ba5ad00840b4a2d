//! The handshake: the client's hello, the server's authentication decision and
//! response, and the switch to the established state.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Established, Outgoing, Session, State};
use super::{Initiator, PacketError, SessionEvent, StateError};
use crate::protocol::codec::{CodecId, negotiate_codec};
use crate::protocol::compression::{
    CompressionConfig, CompressionError, CompressionId, Compressor, negotiate_compression,
};
use crate::protocol::control::{DisconnectReason, ROUTE_HANDSHAKE};
use crate::protocol::crypto::{NoiseHandshake, TrafficKeys};
use crate::protocol::envelope::{Flags, Header};
use crate::protocol::handshake::{
    Accept, Hello, MAX_HANDSHAKE_BODY, MAX_MESSAGE_SIZE, MIN_MESSAGE_SIZE, Response,
};
use crate::protocol::rate_limit::RateLimiter;
use crate::protocol::replay::ReplayGuard;

impl Session {
    /// Server only: accepts the client after [`SessionEvent::AuthRequested`].
    pub fn accept(&mut self, now: Instant) -> Result<(), StateError> {
        let State::ServerAwaitAuth { .. } = &self.state else {
            return Err(StateError::NotAwaitingAuth);
        };
        let State::ServerAwaitAuth {
            noise,
            accept,
            peer_max_message_size,
            ..
        } = std::mem::replace(&mut self.state, State::Closed(DisconnectReason::Requested))
        else {
            return Err(StateError::NotAwaitingAuth);
        };
        let mut body = Vec::new();
        Response::Accepted(accept).encode(&mut body);
        let keys = match noise {
            Some(mut noise) => match noise.write(&body).and_then(|message| {
                let keys = noise.into_traffic_keys()?;
                Ok((message, keys))
            }) {
                Ok((message, keys)) => {
                    self.queue_handshake(Flags::ENCRYPTED, &message);
                    Some(keys)
                }
                Err(error) => {
                    self.state = State::ServerAwaitHello {
                        keypair: None,
                        deadline: now,
                    };
                    self.close(
                        DisconnectReason::HandshakeFailed,
                        Initiator::Local,
                        error.to_string(),
                    );
                    return Ok(());
                }
            },
            None => {
                self.queue_handshake(Flags::empty(), &body);
                None
            }
        };
        self.establish(now, keys, accept, peer_max_message_size);
        Ok(())
    }

    /// Server only: refuses the client after [`SessionEvent::AuthRequested`];
    /// the reason (usually [`DisconnectReason::AuthFailed`]) is sent to it.
    pub fn reject(
        &mut self,
        reason: DisconnectReason,
        detail: impl Into<String>,
    ) -> Result<(), StateError> {
        if !matches!(self.state, State::ServerAwaitAuth { .. }) {
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

    pub(super) fn establish(
        &mut self,
        now: Instant,
        keys: Option<TrafficKeys>,
        accept: Accept,
        peer_max_message_size: usize,
    ) {
        let compression_config = CompressionConfig {
            max_decompressed_size: self.config.max_message_size,
            ..self.config.compression_config
        };
        let compressor = match Compressor::new(accept.compression, compression_config) {
            Ok(compressor) => compressor,
            Err(error) => {
                let error: CompressionError = error;
                self.close(
                    DisconnectReason::ProtocolViolation,
                    Initiator::Local,
                    error.to_string(),
                );
                return;
            }
        };
        let (sealer, opener) = match keys {
            Some(keys) => (Some(keys.sealer), Some(keys.opener)),
            None => (None, None),
        };
        let ping_interval = Duration::from_millis(u64::from(accept.ping_interval_ms));
        self.state = State::Established(Box::new(Established {
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
        self.events.push_back(SessionEvent::Connected {
            client_id: self.client_id,
            codec: accept.codec,
            compression: accept.compression,
        });
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

    pub(super) fn handle_client_hello(&mut self, frame: &[u8]) -> Result<(), PacketError> {
        let decoded = Header::decode(frame, MAX_HANDSHAKE_BODY)?;
        Self::check_handshake_header(&decoded.header)?;
        if decoded.header.flags.contains(Flags::ENCRYPTED) != self.encrypted {
            return Err(PacketError::SecurityMismatch);
        }
        let State::ServerAwaitHello { keypair, deadline } = &self.state else {
            return Err(PacketError::Unexpected("not awaiting a hello"));
        };
        let deadline = *deadline;
        let (mut noise, hello_bytes) = match keypair {
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
        let outcome = Hello::decode(&hello_bytes)
            .map_err(|error| (DisconnectReason::ProtocolViolation, error.to_string()))
            .and_then(|hello| {
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
            });
        match outcome {
            Ok((hello, codec, compression)) => {
                let accept = Accept {
                    codec,
                    compression,
                    client_id: self.client_id,
                    max_message_size: self
                        .config
                        .max_message_size
                        .clamp(MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE)
                        as u32,
                    ping_interval_ms: self.config.ping_interval.as_millis().clamp(1, 60_000) as u32,
                    idle_timeout_ms: self.config.idle_timeout.as_millis().clamp(1, 600_000) as u32,
                };
                self.state = State::ServerAwaitAuth {
                    noise,
                    accept,
                    peer_max_message_size: hello.max_message_size as usize,
                    deadline,
                };
                self.events
                    .push_back(SessionEvent::AuthRequested { token: hello.token });
                Ok(())
            }
            Err((reason, detail)) => {
                self.state = State::ServerAwaitAuth {
                    noise: noise.take(),
                    accept: Accept {
                        codec: CodecId::Raw,
                        compression: CompressionId::None,
                        client_id: self.client_id,
                        max_message_size: 0,
                        ping_interval_ms: 0,
                        idle_timeout_ms: 0,
                    },
                    peer_max_message_size: 0,
                    deadline,
                };
                self.close(reason, Initiator::Local, detail);
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
        let State::ClientHandshake { noise, .. } = &mut self.state else {
            return Err(PacketError::Unexpected("not awaiting a response"));
        };
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
                let keys = match noise.take() {
                    Some(noise) => Some(noise.into_traffic_keys().map_err(PacketError::Handshake)?),
                    None => None,
                };
                self.client_id = accept.client_id;
                let peer_max = accept.max_message_size as usize;
                self.establish(now, keys, accept, peer_max);
                Ok(())
            }
            Response::Accepted(_) => Err(PacketError::SecurityMismatch),
            Response::Rejected { reason, detail } => {
                let detail = if authenticated {
                    detail
                } else {
                    format!("{detail} (unauthenticated)")
                };
                self.close(reason, Initiator::Peer, detail);
                Ok(())
            }
        }
    }
}
