"""Control message bodies (PROTOCOL.md section 10)."""

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
RESERVED_ROUTES = range(4, 16)
FIRST_APP_ROUTE = 16

MAX_DETAIL_LEN = 256

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


Control = Union[Ping, Pong, Disconnect]


def decode_control(route: int, body: bytes) -> Control:
    if route in (ROUTE_PING, ROUTE_PONG):
        if len(body) != 8:
            raise ProtocolError("PING/PONG body must be exactly 8 bytes")
        (ping_id,) = struct.unpack("<Q", body)
        return Ping(ping_id) if route == ROUTE_PING else Pong(ping_id)
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
