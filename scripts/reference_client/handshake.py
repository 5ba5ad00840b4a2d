"""Hello and Response bodies (PROTOCOL.md sections 7.3 and 7.4)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Union

from . import ProtocolError
from .varint import U32_MAX, U64_MAX, decode_varint, encode_varint

MAX_OFFERS = 8
MIN_MESSAGE_SIZE = 256
MAX_MESSAGE_SIZE = 1 << 30
MAX_DETAIL_LEN = 256
MAX_PING_INTERVAL_MS = 60_000
MAX_IDLE_TIMEOUT_MS = 600_000

STATUS_ACCEPTED = 0


def _u8(buf: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(buf):
        raise ProtocolError("truncated handshake body")
    return buf[pos], pos + 1


def _u64(buf: bytes, pos: int) -> tuple[int, int]:
    if len(buf) - pos < 8:
        raise ProtocolError("truncated handshake body")
    return struct.unpack_from("<Q", buf, pos)[0], pos + 8


def _bytes(buf: bytes, pos: int, n: int) -> tuple[bytes, int]:
    if len(buf) - pos < n:
        raise ProtocolError("truncated handshake body")
    return bytes(buf[pos:pos + n]), pos + n


def _no_trailing(buf: bytes, pos: int) -> None:
    if pos != len(buf):
        raise ProtocolError("trailing bytes after handshake body")


@dataclass(frozen=True)
class Hello:
    codecs: tuple[int, ...]
    compressions: tuple[int, ...]
    protocol_hash: int
    max_message_size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "codecs", tuple(self.codecs))
        object.__setattr__(self, "compressions", tuple(self.compressions))
        if not 1 <= len(self.codecs) <= MAX_OFFERS:
            raise ValueError("codec count must be 1..=8")
        if len(self.compressions) > MAX_OFFERS:
            raise ValueError("compression count must be 0..=8")
        if any(not 0 <= c <= 255 for c in self.codecs + self.compressions):
            raise ValueError("codec / compression ids are u8")
        if not 0 <= self.protocol_hash <= U64_MAX:
            raise ValueError("protocol hash is a u64")
        if not MIN_MESSAGE_SIZE <= self.max_message_size <= MAX_MESSAGE_SIZE:
            raise ValueError("max message size must be 256..=2^30")

    def encode(self) -> bytes:
        out = bytearray()
        out.append(len(self.codecs))
        out += bytes(self.codecs)
        out.append(len(self.compressions))
        out += bytes(self.compressions)
        out += struct.pack("<Q", self.protocol_hash)
        out += encode_varint(self.max_message_size)
        return bytes(out)

    @classmethod
    def decode(cls, buf: bytes) -> "Hello":
        pos = 0
        n, pos = _u8(buf, pos)
        if not 1 <= n <= MAX_OFFERS:
            raise ProtocolError("codec count must be 1..=8")
        codecs, pos = _bytes(buf, pos, n)
        m, pos = _u8(buf, pos)
        if m > MAX_OFFERS:
            raise ProtocolError("compression count must be 0..=8")
        compressions, pos = _bytes(buf, pos, m)
        protocol_hash, pos = _u64(buf, pos)
        max_size, pos = decode_varint(buf, pos, U32_MAX)
        if not MIN_MESSAGE_SIZE <= max_size <= MAX_MESSAGE_SIZE:
            raise ProtocolError("max message size out of range")
        _no_trailing(buf, pos)
        return cls(tuple(codecs), tuple(compressions), protocol_hash, max_size)


@dataclass(frozen=True)
class Accept:
    codec: int
    compression: int
    max_message_size: int
    ping_interval_ms: int
    idle_timeout_ms: int

    status = STATUS_ACCEPTED

    def encode(self) -> bytes:
        out = bytearray((STATUS_ACCEPTED, self.codec, self.compression))
        out += encode_varint(self.max_message_size)
        out += encode_varint(self.ping_interval_ms)
        out += encode_varint(self.idle_timeout_ms)
        return bytes(out)

    def check_offer(self, hello: Hello) -> None:
        """Client rule 7.7: the codec and compression must have been offered."""
        if self.codec not in hello.codecs:
            raise ProtocolError("server picked a codec the client did not offer")
        if self.compression != 0 and self.compression not in hello.compressions:
            raise ProtocolError("server picked a compression the client did not offer")


@dataclass(frozen=True)
class Refuse:
    status: int
    detail: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.status <= 255:
            raise ValueError("refusal status must be 1..=255")
        if len(self.detail.encode("utf-8")) > MAX_DETAIL_LEN:
            raise ValueError("detail longer than 256 bytes")

    def encode(self) -> bytes:
        detail = self.detail.encode("utf-8")
        return bytes((self.status,)) + encode_varint(len(detail)) + detail


Response = Union[Accept, Refuse]


def decode_response(buf: bytes) -> Response:
    pos = 0
    status, pos = _u8(buf, pos)
    if status == STATUS_ACCEPTED:
        codec, pos = _u8(buf, pos)
        compression, pos = _u8(buf, pos)
        max_size, pos = decode_varint(buf, pos, U32_MAX)
        if not MIN_MESSAGE_SIZE <= max_size <= MAX_MESSAGE_SIZE:
            raise ProtocolError("max message size out of range")
        ping, pos = decode_varint(buf, pos, U32_MAX)
        if not 1 <= ping <= MAX_PING_INTERVAL_MS:
            raise ProtocolError("ping interval out of range")
        idle, pos = decode_varint(buf, pos, U32_MAX)
        if not 1 <= idle <= MAX_IDLE_TIMEOUT_MS:
            raise ProtocolError("idle timeout out of range")
        _no_trailing(buf, pos)
        return Accept(codec, compression, max_size, ping, idle)
    length, pos = decode_varint(buf, pos, U32_MAX)
    if length > MAX_DETAIL_LEN:
        raise ProtocolError("refusal detail too long")
    raw, pos = _bytes(buf, pos, length)
    _no_trailing(buf, pos)
    try:
        detail = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("refusal detail is not UTF-8") from exc
    return Refuse(status, detail)


def encode_response(response: Response) -> bytes:
    return response.encode()
