//! The established state: opening and delivering sealed packets, control
//! messages (PING, PONG, DISCONNECT), and sending.

use std::time::Instant;

use super::{Initiator, OpenedPacket, PacketError, ReceivedMessage, SendError, SessionEvent};
use super::{LAST_RESERVED_ROUTE, Outgoing, Phase, Session, State};
use crate::protocol::codec::{self, CodecId};
use crate::protocol::compression::{CompressionError, CompressionId};
use crate::protocol::control::{
    ControlMessage, DisconnectReason, ROUTE_AUTH, ROUTE_AUTH_OK, ROUTE_DISCONNECT, ROUTE_PING,
    ROUTE_PONG,
};
use crate::protocol::crypto::{CryptoError, TAG_LEN};
use crate::protocol::envelope::{Flags, FramePacket, FramePackets, Header};
use crate::protocol::message::GameMessage;
use crate::protocol::session::Role;

impl Session {
    /// Sends one application message (already serialized with `codec`) on
    /// `route_id`. Compresses it when worthwhile, seals it, and queues the frame.
    /// Returns the packet counter used.
    pub fn send(
        &mut self,
        route_id: u16,
        codec: CodecId,
        payload: &[u8],
        correlation_id: Option<u64>,
    ) -> Result<u64, SendError> {
        let est = match &self.state {
            State::Established(est) if est.phase == Phase::Ready => est,
            State::Closed(_) => return Err(SendError::Closed),
            _ => return Err(SendError::NotConnected),
        };
        if route_id <= LAST_RESERVED_ROUTE {
            return Err(SendError::UnknownRoute(route_id));
        }
        let info = self
            .registry
            .get(route_id)
            .ok_or(SendError::UnknownRoute(route_id))?;
        if !self.role.may_send(info.direction) {
            return Err(SendError::WrongDirection(route_id));
        }
        if codec != est.codec && codec != CodecId::Raw {
            return Err(SendError::CodecNotNegotiated(codec));
        }
        if payload.len() > est.peer_max_message_size {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: est.peer_max_message_size,
            });
        }
        let mut header = Header::new(codec, route_id);
        header.correlation_id = correlation_id;
        if self.config.include_schema_hash {
            header.schema_hash = Some(info.schema_hash);
        }
        let counter = self.send_packet(header, payload, true)?;
        self.stats.messages_out += 1;
        Ok(counter)
    }

    /// Serializes `message` with the negotiated codec and sends it on its route.
    pub fn send_message<M: GameMessage>(&mut self, message: &M) -> Result<u64, SendError> {
        self.send_message_correlated(message, None)
    }

    /// Like [`send_message`](Self::send_message) with a correlation id (for
    /// replies to requests).
    pub fn send_message_correlated<M: GameMessage>(
        &mut self,
        message: &M,
        correlation_id: Option<u64>,
    ) -> Result<u64, SendError> {
        let codec = match &self.state {
            State::Established(est) if est.phase == Phase::Ready => est.codec,
            State::Closed(_) => return Err(SendError::Closed),
            _ => return Err(SendError::NotConnected),
        };
        let mut buffer = std::mem::take(&mut self.encode_buffer);
        buffer.clear();
        let result = codec::encode(codec, message, &mut buffer)
            .map_err(|e| SendError::Encode(e.to_string()))
            .and_then(|()| self.send(M::ROUTE_ID, codec, &buffer, correlation_id));
        self.encode_buffer = buffer;
        result
    }

    pub(super) fn send_control(&mut self, message: &ControlMessage) -> Result<u64, SendError> {
        let mut body = Vec::new();
        message
            .encode(&mut body)
            .map_err(|error| SendError::Encode(error.to_string()))?;
        self.send_packet(Header::new(CodecId::Raw, message.route()), &body, false)
    }

    fn send_packet(
        &mut self,
        mut header: Header,
        body: &[u8],
        compress: bool,
    ) -> Result<u64, SendError> {
        let State::Established(est) = &mut self.state else {
            return Err(SendError::NotConnected);
        };
        header.tick = self.tick;
        let mut compressed = Vec::new();
        let body = if compress
            && est
                .compressor
                .compress(body, &mut compressed)
                .map_err(|e| SendError::Compress(e.to_string()))?
        {
            header.flags.set(Flags::COMPRESSED, true);
            &compressed[..]
        } else {
            body
        };
        let mut frame = Vec::with_capacity(header.encoded_len() + body.len() + 2 * TAG_LEN);
        let counter = match &mut est.sealer {
            Some(sealer) => sealer.seal(&mut header, body, &mut frame).map_err(|error| {
                if error == CryptoError::CounterExhausted {
                    SendError::CounterExhausted
                } else {
                    SendError::TooLarge {
                        len: body.len(),
                        max: u32::MAX as usize,
                    }
                }
            }),
            None if est.plain_next == u64::MAX => Err(SendError::CounterExhausted),
            None => {
                let counter = est.plain_next;
                est.plain_next += 1;
                header.message_id = counter;
                header.payload_len = body.len() as u32;
                header.encode(&mut frame);
                frame.extend_from_slice(body);
                Ok(counter)
            }
        };
        match counter {
            Ok(counter) => {
                self.stats.packets_out += 1;
                self.stats.bytes_out += frame.len() as u64;
                self.transmit.push_back(Outgoing::Batchable(frame));
                Ok(counter)
            }
            Err(SendError::CounterExhausted) => {
                // Nothing more can be sealed, not even a DISCONNECT.
                self.state = State::Closed(DisconnectReason::CounterExhausted);
                self.events.push_back(SessionEvent::Disconnected {
                    reason: DisconnectReason::CounterExhausted,
                    initiator: Initiator::Local,
                    detail: String::new(),
                });
                Err(SendError::CounterExhausted)
            }
            Err(other) => Err(other),
        }
    }

    pub(super) fn open_established_frame(
        &mut self,
        now: Instant,
        frame: &[u8],
    ) -> Result<Vec<OpenedPacket>, PacketError> {
        let packets = FramePackets::new(frame, self.config.max_message_size + TAG_LEN)?;
        let mut opened = Vec::new();
        for packet in packets {
            opened.push(self.open_established(now, packet?)?);
        }
        Ok(opened)
    }

    fn open_established(
        &mut self,
        now: Instant,
        decoded: FramePacket<'_>,
    ) -> Result<OpenedPacket, PacketError> {
        let header = decoded.header;
        let State::Established(est) = &mut self.state else {
            return Err(PacketError::Unexpected("not connected"));
        };
        if header.flags.contains(Flags::ENCRYPTED) != self.encrypted {
            return Err(PacketError::SecurityMismatch);
        }
        est.replay.check(header.message_id)?;
        let mut body = Vec::new();
        match &est.opener {
            Some(opener) => opener
                .open(
                    &decoded.bytes[..decoded.header_len],
                    header.message_id,
                    decoded.body,
                    &mut body,
                )
                .map_err(|_| PacketError::DecryptFailed)?,
            None => body.extend_from_slice(decoded.body),
        }
        // Authenticated: only now may state change.
        est.replay.commit(header.message_id);
        est.last_received = now;
        // A server opens a tick's frames before it applies that tick's
        // authentication results and delivers them after, so the phase at
        // delivery can already be `Ready`. Judge what a client sent before
        // AUTH_OK by the phase it was opened in.
        if self.role == Role::Server
            && est.phase != Phase::Ready
            && !matches!(header.route_id, ROUTE_AUTH | ROUTE_DISCONNECT)
        {
            return Err(PacketError::Unexpected(
                "packet not allowed before authentication completes",
            ));
        }
        // What the byte budget will charge: the size the body expands to.
        let decompressed_len = if header.flags.contains(Flags::COMPRESSED) {
            est.compressor
                .declared_size(&body)
                .map_err(|error| match error {
                    CompressionError::NotNegotiated => {
                        PacketError::Unexpected("compression was not negotiated")
                    }
                    other => PacketError::Decompress(other.to_string()),
                })?
        } else {
            0
        };
        Ok(OpenedPacket {
            header,
            wire_len: decoded.bytes.len(),
            decompressed_len,
            body,
        })
    }

    pub(super) fn deliver_established(
        &mut self,
        now: Instant,
        packet: OpenedPacket,
    ) -> Result<(), PacketError> {
        let OpenedPacket { header, body, .. } = packet;
        let State::Established(est) = &mut self.state else {
            return Err(PacketError::Unexpected("not connected"));
        };
        // Before AUTH_OK only the AUTH exchange (and DISCONNECT) may flow:
        // server waiting for AUTH accepts AUTH; client waiting for AUTH_OK
        // accepts AUTH_OK; a server deciding accepts nothing but DISCONNECT.
        // Once connected, AUTH and AUTH_OK are violations.
        let allowed = match (est.phase, self.role, header.route_id) {
            (_, _, ROUTE_DISCONNECT) => true,
            (Phase::Authenticating { .. }, Role::Server, route) => route == ROUTE_AUTH,
            (Phase::Authenticating { .. }, Role::Client, route) => route == ROUTE_AUTH_OK,
            (Phase::AwaitingDecision { .. }, _, _) => false,
            (Phase::Ready, _, route) => route != ROUTE_AUTH && route != ROUTE_AUTH_OK,
        };
        if !allowed {
            return Err(PacketError::Unexpected(
                "packet not allowed before authentication completes",
            ));
        }
        match header.route_id {
            ROUTE_PING | ROUTE_PONG | ROUTE_DISCONNECT | ROUTE_AUTH | ROUTE_AUTH_OK => {
                if header.codec != CodecId::Raw
                    || header.flags.contains(Flags::COMPRESSED)
                    || header.correlation_id.is_some()
                    || header.schema_hash.is_some()
                {
                    return Err(PacketError::Unexpected("malformed control header"));
                }
                let message = ControlMessage::decode(header.route_id, &body)?;
                self.handle_control(now, message);
                Ok(())
            }
            route if route <= LAST_RESERVED_ROUTE => Err(PacketError::UnknownRoute(route)),
            route => {
                let info = self
                    .registry
                    .get(route)
                    .ok_or(PacketError::UnknownRoute(route))?;
                if !self.role.peer().may_send(info.direction) {
                    return Err(PacketError::WrongDirection(route));
                }
                if header
                    .schema_hash
                    .is_some_and(|hash| hash != info.schema_hash)
                {
                    return Err(PacketError::SchemaMismatch(route));
                }
                if header.codec != est.codec && header.codec != CodecId::Raw {
                    return Err(PacketError::Unexpected("codec was not negotiated"));
                }
                let payload = if header.flags.contains(Flags::COMPRESSED) {
                    if est.compression == CompressionId::None {
                        return Err(PacketError::Unexpected("compression was not negotiated"));
                    }
                    let mut out = Vec::new();
                    est.compressor
                        .decompress(&body, &mut out)
                        .map_err(|e| PacketError::Decompress(e.to_string()))?;
                    out
                } else {
                    body
                };
                self.stats.messages_in += 1;
                self.events
                    .push_back(SessionEvent::Message(ReceivedMessage {
                        route_id: route,
                        message_id: header.message_id,
                        correlation_id: header.correlation_id,
                        tick: header.tick,
                        codec: header.codec,
                        payload,
                    }));
                Ok(())
            }
        }
    }

    fn handle_control(&mut self, now: Instant, message: ControlMessage) {
        match message {
            ControlMessage::Ping { id } => {
                let _ = self.send_control(&ControlMessage::Pong { id });
            }
            ControlMessage::Pong { id } => {
                let State::Established(est) = &mut self.state else {
                    return;
                };
                if let Some(position) = est.outstanding.iter().position(|(sent, _)| *sent == id) {
                    let (_, sent_at) = est.outstanding[position];
                    est.outstanding.drain(..=position);
                    self.rtt.sample(now.saturating_duration_since(sent_at));
                }
            }
            ControlMessage::Disconnect { reason, detail } => {
                self.close(reason, Initiator::Peer, detail);
            }
            // Routing above admits AUTH only on a server that waits for it.
            ControlMessage::Auth { token } => {
                let State::Established(est) = &mut self.state else {
                    return;
                };
                if let Phase::Authenticating { deadline } = est.phase {
                    est.phase = Phase::AwaitingDecision { deadline };
                    self.events.push_back(SessionEvent::AuthRequested { token });
                }
            }
            // Routing above admits AUTH_OK only on a client that waits for it.
            ControlMessage::AuthOk { client_id } => {
                let State::Established(est) = &mut self.state else {
                    return;
                };
                est.phase = Phase::Ready;
                est.last_received = now;
                est.next_ping = now + est.ping_interval;
                let (codec, compression) = (est.codec, est.compression);
                self.client_id = client_id;
                self.events.push_back(SessionEvent::Connected {
                    client_id,
                    codec,
                    compression,
                });
            }
        }
    }
}
