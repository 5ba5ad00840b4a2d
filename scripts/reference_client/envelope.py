"""Envelope header (PROTOCOL.md sections 2 and 3)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from . import ProtocolError
from .varint import U16_MAX, U32_MAX, U64_MAX, decode_varint, encode_varint

VERSION = 1

FLAG_ENCRYPTED = 0x01
FLAG_COMPRESSED = 0x02
FLAG_CORRELATION = 0x04
FLAG_SCHEMA = 0x08
FLAGS_RESERVED = 0xF0

CODEC_JSON = 1
CODEC_POSTCARD = 2
CODEC_RAW = 3
VALID_CODECS = (CODEC_JSON, CODEC_POSTCARD, CODEC_RAW)

MAX_HEADER_LEN = 40
TAG_LEN = 16
HANDSHAKE_BODY_LIMIT = 2048

# Disconnect / refusal reason used for a version mismatch (section 10).
REASON_VERSION_MISMATCH = 12
REASON_MESSAGE_TOO_LARGE = 15


@dataclass(frozen=True)
class Header:
    route: int
    message_id: int
    codec: int
    payload_len: int
    encrypted: bool = False
    compressed: bool = False
    correlation_id: Optional[int] = None
    schema_hash: Optional[int] = None
    version: int = VERSION

    @property
    def flags(self) -> int:
        flags = 0
        if self.encrypted:
            flags |= FLAG_ENCRYPTED
        if self.compressed:
            flags |= FLAG_COMPRESSED
        if self.correlation_id is not None:
            flags |= FLAG_CORRELATION
        if self.schema_hash is not None:
            flags |= FLAG_SCHEMA
        return flags

    def encode(self) -> bytes:
        if self.version != VERSION:
            raise ValueError("only version 1 can be encoded")
        if self.codec not in VALID_CODECS:
            raise ValueError(f"invalid codec {self.codec}")
        if not 0 <= self.route <= U16_MAX:
            raise ValueError("route id out of range")
        if not 0 <= self.message_id <= U64_MAX:
            raise ValueError("message id out of range")
        if not 0 <= self.payload_len <= U32_MAX:
            raise ValueError("payload length out of range")
        out = bytearray((self.version, self.flags, self.codec))
        out += encode_varint(self.route)
        out += encode_varint(self.message_id)
        if self.correlation_id is not None:
            if not 0 <= self.correlation_id <= U64_MAX:
                raise ValueError("correlation id out of range")
            out += encode_varint(self.correlation_id)
        if self.schema_hash is not None:
            out += struct.pack("<Q", self.schema_hash)
        out += encode_varint(self.payload_len)
        assert len(out) <= MAX_HEADER_LEN
        return bytes(out)


@dataclass(frozen=True)
class Packet:
    header: Header
    header_bytes: bytes  # exactly as received: the AEAD associated data
    body: bytes


def frame_limit(body_limit: int) -> int:
    """Largest acceptable frame for a given payload-length limit."""
    return body_limit + MAX_HEADER_LEN


def decode_packet(frame: bytes, body_limit: int) -> Packet:
    """Decode one transport message, checking in the order of section 3.

    ``body_limit`` is the largest declared payload length accepted: 2048
    during the handshake; ``max_message_size + 16`` for a sealed session (the
    tag is counted in the payload length), so the frame limit of step 1 is
    ``max_message_size + 16 + 40``.
    """
    # Step 1: whole frame size, before reading any byte.
    if len(frame) > frame_limit(body_limit):
        raise ProtocolError("frame too large", REASON_MESSAGE_TOO_LARGE)

    # Step 2: version, reserved flags, codec -- in that order.
    if len(frame) < 1:
        raise ProtocolError("truncated header")
    version = frame[0]
    if version != VERSION:
        raise ProtocolError(f"unsupported version {version}", REASON_VERSION_MISMATCH)
    if len(frame) < 2:
        raise ProtocolError("truncated header")
    flags = frame[1]
    if flags & FLAGS_RESERVED:
        raise ProtocolError(f"reserved flag bits set: {flags:#04x}")
    if len(frame) < 3:
        raise ProtocolError("truncated header")
    codec = frame[2]
    if codec not in VALID_CODECS:
        raise ProtocolError(f"invalid codec {codec}")

    # Step 3: varints (canonical, in range), then the payload length.
    pos = 3
    route, pos = decode_varint(frame, pos, U16_MAX)
    message_id, pos = decode_varint(frame, pos, U64_MAX)
    correlation_id = None
    if flags & FLAG_CORRELATION:
        correlation_id, pos = decode_varint(frame, pos, U64_MAX)
    schema_hash = None
    if flags & FLAG_SCHEMA:
        if len(frame) - pos < 8:
            raise ProtocolError("truncated schema hash")
        (schema_hash,) = struct.unpack_from("<Q", frame, pos)
        pos += 8
    payload_len, pos = decode_varint(frame, pos, U32_MAX)
    if payload_len > body_limit:
        raise ProtocolError("declared payload length above the body limit", REASON_MESSAGE_TOO_LARGE)
    if payload_len != len(frame) - pos:
        raise ProtocolError("declared payload length does not match the frame")

    header = Header(
        route=route,
        message_id=message_id,
        codec=codec,
        payload_len=payload_len,
        encrypted=bool(flags & FLAG_ENCRYPTED),
        compressed=bool(flags & FLAG_COMPRESSED),
        correlation_id=correlation_id,
        schema_hash=schema_hash,
        version=version,
    )
    return Packet(header=header, header_bytes=bytes(frame[:pos]), body=bytes(frame[pos:]))
