"""A transport-agnostic client session (sections 7, 8, 9, 10, 13).

Feed it whole transport messages (``receive_frame`` splits a frame into its
packets, section 2); it returns packets to send, which ``batch`` joins into
frames. The handshake is hello -> response -> sealed AUTH (``auth_frame``) ->
sealed AUTH_OK (``receive`` sets ``client_id`` and ``connected``); until
AUTH_OK only AUTH_OK or DISCONNECT may arrive and nothing but AUTH may be sent.
Compression and rate limiting are not implemented: a COMPRESSED application
packet is handed back with ``compressed=True`` and its body still compressed.
``tick`` (if set) goes into every packet sealed after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Union

from . import ProtocolError
from .control import (FIRST_APP_ROUTE, RESERVED_ROUTES, ROUTE_AUTH, ROUTE_AUTH_OK,
                      ROUTE_DISCONNECT, ROUTE_HANDSHAKE, ROUTE_PING, ROUTE_PONG, Auth, AuthOk,
                      Control, Disconnect, Ping, Pong, decode_control)
from .envelope import (CODEC_RAW, HANDSHAKE_BODY_LIMIT, TAG_LEN, Header, Packet, batch,
                       decode_frame, decode_packet)
from .schema import CLIENT_TO_SERVER, SERVER_TO_CLIENT
from .handshake import Accept, Hello, Refuse, decode_response
from .noise_nk import NoiseInitiator
from .seal import MAX_SEND_COUNTER, open_packet, seal

R_PROTOCOL_VIOLATION = 4
R_REPLAY = 6
R_SCHEMA_MISMATCH = 8
R_COUNTER_EXHAUSTED = 13
R_SECURITY_MISMATCH = 17


class HandshakeRefused(Exception):
    def __init__(self, refusal: Refuse, authenticated: bool):
        super().__init__(f"refused with status {refusal.status}: {refusal.detail!r}"
                         f" ({'authenticated' if authenticated else 'UNAUTHENTICATED'})")
        self.refusal = refusal
        self.authenticated = authenticated


@dataclass(frozen=True)
class AppMessage:
    header: Header
    body: bytes  # still compressed if header.compressed


Received = Union[Control, AppMessage]


class ClientSession:
    def __init__(self, hello: Hello, server_public: Optional[bytes],
                 registry: Mapping[int, int], *, token: bytes = b"", plaintext: bool = False,
                 ephemeral_private: Optional[bytes] = None,
                 directions: Optional[Mapping[int, int]] = None):
        if plaintext == (server_public is not None):
            raise ValueError("give a pinned server key, or plaintext=True, not both")
        self.hello = hello
        self.token = Auth(token).token  # validates the length
        self.client_id: Optional[int] = None  # set by AUTH_OK
        self.connected = False
        self._sent_auth = False
        self.registry = dict(registry)  # route -> SCHEMA_HASH
        self.directions = dict(directions or {})  # route -> direction word (section 4)
        self.tick: Optional[int] = None  # the network tick put in sealed packets
        self.plaintext = plaintext
        self._noise = None if plaintext else NoiseInitiator(server_public, ephemeral_private)
        self.accept: Optional[Accept] = None
        self._k_send: Optional[bytes] = None
        self._k_recv: Optional[bytes] = None
        self._send_counter = 0
        self._recv_counter = 0
        self._sent_hello = False

    # -- handshake ----------------------------------------------------------

    def hello_frame(self) -> bytes:
        if self._sent_hello:
            raise RuntimeError("hello already sent")
        self._sent_hello = True
        body = self.hello.encode()
        if self._noise is not None:
            body = self._noise.write_message_1(body)
        header = Header(route=ROUTE_HANDSHAKE, message_id=0, codec=CODEC_RAW,
                        payload_len=len(body), encrypted=not self.plaintext)
        return header.encode() + body

    def on_handshake_frame(self, frame: bytes) -> Accept:
        """Process the single response packet. Returns the Accept or raises."""
        pkt = decode_packet(frame, HANDSHAKE_BODY_LIMIT)
        h = pkt.header
        if (h.route != ROUTE_HANDSHAKE or h.codec != CODEC_RAW or h.message_id != 0
                or h.compressed or h.correlation_id is not None or h.schema_hash is not None):
            raise ProtocolError("malformed handshake packet")
        if h.encrypted and self.plaintext:
            raise ProtocolError("encrypted response in plaintext mode", R_SECURITY_MISMATCH)
        if not h.encrypted and not self.plaintext:
            # Only an unauthenticated refusal can arrive this way.
            response = decode_response(pkt.body)
            if isinstance(response, Refuse):
                raise HandshakeRefused(response, authenticated=False)
            raise ProtocolError("plaintext accept in an encrypted session", R_SECURITY_MISMATCH)
        body = pkt.body if self.plaintext else self._noise.read_message_2(pkt.body)
        response = decode_response(body)
        if isinstance(response, Refuse):
            raise HandshakeRefused(response, authenticated=not self.plaintext)
        response.check_offer(self.hello)
        self.accept = response
        if self._noise is not None:
            self._k_send, self._k_recv = self._noise.split()
        return response

    def auth_frame(self) -> bytes:
        """The first sealed packet (7.5): AUTH with the token, counter 0."""
        if self.accept is None or self._sent_auth:
            raise RuntimeError("AUTH goes once, right after the accept")
        self._sent_auth = True
        return self._control_frame(Auth(self.token))

    # -- sending ------------------------------------------------------------

    def _next_counter(self) -> int:
        if self.accept is None:
            raise RuntimeError("handshake not complete")
        if self._send_counter > MAX_SEND_COUNTER:
            raise ProtocolError("send counter exhausted", R_COUNTER_EXHAUSTED)
        counter = self._send_counter
        self._send_counter += 1
        return counter

    def _frame(self, header: Header, body: bytes) -> bytes:
        if len(body) > self.accept.max_message_size:
            raise ValueError("body larger than the server's max message size")
        if self.plaintext:
            return header.encode() + body
        return seal(self._k_send, header, body)

    def send(self, route: int, codec: int, body: bytes, *, compressed: bool = False,
             correlation_id: Optional[int] = None, with_schema: bool = False) -> bytes:
        """Frame an already serialized (and, if ``compressed``, compressed) body."""
        if not self.connected:
            raise RuntimeError("no application messages before AUTH_OK")
        if route not in self.registry:
            raise ValueError(f"route {route} is not registered")
        if self.directions.get(route) == SERVER_TO_CLIENT:
            raise ValueError(f"route {route} travels server to client only")
        if codec not in (self.accept.codec, CODEC_RAW):
            raise ValueError("codec must be the negotiated one or Raw")
        if compressed and self.accept.compression == 0:
            raise ValueError("compression was not negotiated")
        header = Header(route=route, message_id=self._next_counter(), codec=codec,
                        payload_len=len(body), encrypted=not self.plaintext,
                        compressed=compressed, correlation_id=correlation_id,
                        schema_hash=self.registry[route] if with_schema else None,
                        tick=self.tick)
        return self._frame(header, body)

    def send_control(self, message: Control) -> bytes:
        if isinstance(message, (Auth, AuthOk)):
            raise ValueError("AUTH is sent by auth_frame; AUTH_OK only by servers")
        if not self.connected and not isinstance(message, Disconnect):
            raise RuntimeError("only DISCONNECT may be sent before AUTH_OK")
        return self._control_frame(message)

    def _control_frame(self, message: Control) -> bytes:
        body = message.encode()
        header = Header(route=message.route, message_id=self._next_counter(), codec=CODEC_RAW,
                        payload_len=len(body), encrypted=not self.plaintext, tick=self.tick)
        return self._frame(header, body)

    def batch(self, packets: list[bytes]) -> list[bytes]:
        """Join packets from ``send``/``send_control``, in order, into as few
        frames as the server's max message size allows (section 2)."""
        body_limit = self.accept.max_message_size + (0 if self.plaintext else TAG_LEN)
        return batch(packets, body_limit)

    # -- receiving (section 8, "Receiving") -----------------------------------

    def receive(self, frame: bytes) -> Received:
        """Receive a frame that holds exactly one packet."""
        received = self.receive_frame(frame)
        if len(received) != 1:
            raise ValueError(f"frame holds {len(received)} packets; use receive_frame")
        return received[0]

    def receive_frame(self, frame: bytes) -> list[Received]:
        """Every packet of a frame, processed in order (section 2). The first
        bad packet raises; packets before it have been processed."""
        if self.accept is None:
            raise RuntimeError("handshake not complete")
        own_max = self.hello.max_message_size
        body_limit = own_max if self.plaintext else own_max + TAG_LEN
        return [self._receive_packet(pkt) for pkt in decode_frame(frame, body_limit)]  # 1

    def _receive_packet(self, pkt: Packet) -> Received:
        h = pkt.header
        if h.encrypted == self.plaintext:                               # 2
            raise ProtocolError("ENCRYPTED flag does not match the session", R_SECURITY_MISMATCH)
        if h.message_id != self._recv_counter:                          # 3 (strict)
            raise ProtocolError(f"expected message id {self._recv_counter}, got {h.message_id}",
                                R_REPLAY)
        body = pkt.body if self.plaintext else open_packet(self._k_recv, pkt)  # 4
        self._recv_counter += 1                                         # 5
        # 6, 7: decompression and rate limiting are not implemented here.
        return self._dispatch(h, body)                                  # 8, 9

    def _dispatch(self, h: Header, body: bytes) -> Received:
        # 7.7: before AUTH_OK only AUTH_OK or DISCONNECT; after it, never
        # AUTH_OK again; AUTH never reaches a client.
        if not self.connected and h.route not in (ROUTE_AUTH_OK, ROUTE_DISCONNECT):
            raise ProtocolError(f"route {h.route} before AUTH_OK", R_PROTOCOL_VIOLATION)
        if self.connected and h.route in (ROUTE_AUTH, ROUTE_AUTH_OK):
            raise ProtocolError(f"route {h.route} after AUTH_OK", R_PROTOCOL_VIOLATION)
        if h.route == ROUTE_AUTH:
            raise ProtocolError("AUTH is client -> server only", R_PROTOCOL_VIOLATION)
        if h.route in (ROUTE_PING, ROUTE_PONG, ROUTE_DISCONNECT, ROUTE_AUTH_OK):
            if (h.codec != CODEC_RAW or h.compressed or h.correlation_id is not None
                    or h.schema_hash is not None):
                raise ProtocolError("control messages use codec Raw and no flags but ENCRYPTED")
            message = decode_control(h.route, body)
            if isinstance(message, AuthOk):
                if not self._sent_auth:
                    raise ProtocolError("AUTH_OK before AUTH", R_PROTOCOL_VIOLATION)
                self.client_id = message.client_id
                self.connected = True
            return message
        if h.route == ROUTE_HANDSHAKE or h.route in RESERVED_ROUTES:
            raise ProtocolError(f"route {h.route} is not allowed after the handshake")
        assert h.route >= FIRST_APP_ROUTE
        if h.route not in self.registry:
            raise ProtocolError(f"unregistered route {h.route}")
        if self.directions.get(h.route) == CLIENT_TO_SERVER:
            raise ProtocolError(f"route {h.route} travels client to server only")
        if h.codec not in (self.accept.codec, CODEC_RAW):
            raise ProtocolError("codec is neither the negotiated one nor Raw")
        if h.schema_hash is not None and h.schema_hash != self.registry[h.route]:
            raise ProtocolError("schema hash mismatch", R_SCHEMA_MISMATCH)
        if h.compressed and self.accept.compression == 0:
            raise ProtocolError("COMPRESSED packet but no compression negotiated")
        return AppMessage(h, body)

    def answer(self, message: Received) -> Optional[bytes]:
        """Convenience: the PONG frame for a PING, else None."""
        if isinstance(message, Ping):
            return self.send_control(Pong(message.ping_id))
        return None
