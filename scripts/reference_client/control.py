"""Control message bodies (PROTOCOL.md sections 7.5 and 10)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Union

from . import ProtocolError
from .varint import U32_MAX, decode_varint, encode_varint

ROUTE_HANDSHAKE = 0
ROUTE_PING = 1
ROUTE_PONG = 2
ROUTE_DISCONNECT = 3
ROUTE_AUTH = 4
ROUTE_AUTH_OK = 5
RESERVED_ROUTES = range(6, 16)
FIRST_APP_ROUTE = 16

MAX_DETAIL_LEN = 256
MAX_TOKEN_LEN = 1024

REASONS = {
    1: "Requested", 2: "IdleTimeout", 3: "HandshakeTimeout", 4: "ProtocolViolation",
    5: "DecryptFailed", 6: "Replay", 7: "RateLimited", 8: "SchemaMismatch",
    9: "AuthFailed", 10: "ServerShutdown", 11: "Kicked", 12: "VersionMismatch",
    13: "CounterExhausted", 14: "SlowConsumer", 15: "MessageTooLarge",
    16: "NoCommonCodec", 17: "SecurityMismatch", 18: "HandshakeFailed", 19: "ServerFull",
}
REASON_CODES = {name: code for code, name in REASONS.items()}


def reason_name(code: int) -> str:
    return REASONS.get(code, f"Unknown({code})")


@dataclass(frozen=True)
class Ping:
    ping_id: int
    route = ROUTE_PING

    def encode(self) -> bytes:
        return struct.pack("<Q", self.ping_id)


@dataclass(frozen=True)
class Pong:
    ping_id: int
    route = ROUTE_PONG

    def encode(self) -> bytes:
        return struct.pack("<Q", self.ping_id)


@dataclass(frozen=True)
class Disconnect:
    reason: int
    detail: str = ""
    route = ROUTE_DISCONNECT

    def __post_init__(self) -> None:
        if not 1 <= self.reason <= 255:
            raise ValueError("disconnect reason must be non-zero u8")
        if len(self.detail.encode("utf-8")) > MAX_DETAIL_LEN:
            raise ValueError("detail longer than 256 bytes")

    def encode(self) -> bytes:
        detail = self.detail.encode("utf-8")
        return bytes((self.reason,)) + encode_varint(len(detail)) + detail


@dataclass(frozen=True)
class Auth:
    """Client -> server, its first sealed packet: the credentials."""
    token: bytes
    route = ROUTE_AUTH

    def __post_init__(self) -> None:
        if len(self.token) > MAX_TOKEN_LEN:
            raise ValueError("token longer than 1024 bytes")

    def encode(self) -> bytes:
        return encode_varint(len(self.token)) + self.token


@dataclass(frozen=True)
class AuthOk:
    """Server -> client, its first sealed packet: accepted, with the client id."""
    client_id: int
    route = ROUTE_AUTH_OK

    def encode(self) -> bytes:
        return struct.pack("<Q", self.client_id)


Control = Union[Ping, Pong, Disconnect, Auth, AuthOk]


def decode_control(route: int, body: bytes) -> Control:
    if route in (ROUTE_PING, ROUTE_PONG, ROUTE_AUTH_OK):
        if len(body) != 8:
            raise ProtocolError("PING/PONG/AUTH_OK body must be exactly 8 bytes")
        (value,) = struct.unpack("<Q", body)
        if route == ROUTE_AUTH_OK:
            return AuthOk(value)
        return Ping(value) if route == ROUTE_PING else Pong(value)
    if route == ROUTE_AUTH:
        length, pos = decode_varint(body, 0, U32_MAX)
        if length > MAX_TOKEN_LEN:
            raise ProtocolError("AUTH token too long")
        if len(body) - pos != length:
            raise ProtocolError("AUTH token length mismatch")
        return Auth(bytes(body[pos:]))
    if route == ROUTE_DISCONNECT:
        if not body:
            raise ProtocolError("empty DISCONNECT")
        reason = body[0]
        if reason == 0:
            raise ProtocolError("DISCONNECT reason must be non-zero")
        length, pos = decode_varint(body, 1, U32_MAX)
        if length > MAX_DETAIL_LEN:
            raise ProtocolError("DISCONNECT detail too long")
        if len(body) - pos != length:
            raise ProtocolError("DISCONNECT detail length mismatch")
        try:
            detail = body[pos:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("DISCONNECT detail is not UTF-8") from exc
        return Disconnect(reason, detail)
    raise ProtocolError(f"route {route} is not a control route")
