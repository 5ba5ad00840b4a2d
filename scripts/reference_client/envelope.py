"""Envelope header and frames of packets (PROTOCOL.md sections 2 and 3)."""

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
FLAG_TICK = 0x10
FLAGS_RESERVED = 0xE0

CODEC_JSON = 1
CODEC_POSTCARD = 2
CODEC_RAW = 3
VALID_CODECS = (CODEC_JSON, CODEC_POSTCARD, CODEC_RAW)

MAX_HEADER_LEN = 44  # 3 + 3 + 10 + 10 + 8 + 5 + 5
MAX_PACKETS_PER_FRAME = 64
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
    tick: Optional[int] = None
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
        if self.tick is not None:
            flags |= FLAG_TICK
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
        if self.tick is not None:
            if not 0 <= self.tick <= U32_MAX:
                raise ValueError("tick out of range")
            out += encode_varint(self.tick)
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
    """Decode a transport message holding exactly one packet (a handshake
    frame), checking in the order of section 3.

    ``body_limit`` is the largest declared payload length accepted: 2048
    during the handshake; ``max_message_size + 16`` for a sealed session (the
    tag is counted in the payload length), so the frame limit of step 1 is
    ``max_message_size + 16 + 44``.
    """
    # Step 1: whole frame size, before reading any byte.
    if len(frame) > frame_limit(body_limit):
        raise ProtocolError("frame too large", REASON_MESSAGE_TOO_LARGE)
    packet, end = _decode_at(frame, 0, body_limit)
    if end != len(frame):
        raise ProtocolError("declared payload length does not match the frame")
    return packet


def decode_frame(frame: bytes, body_limit: int) -> list[Packet]:
    """Split a post-handshake frame into its packets (section 2), in order.

    The frame length is checked first; then each packet is decoded from where
    the previous one ended. A frame that is empty, ends inside a packet, or
    holds more than ``MAX_PACKETS_PER_FRAME`` packets is refused.
    """
    if len(frame) > frame_limit(body_limit):
        raise ProtocolError("frame too large", REASON_MESSAGE_TOO_LARGE)
    if not frame:
        raise ProtocolError("empty frame")
    packets, pos = [], 0
    while pos < len(frame):
        if len(packets) == MAX_PACKETS_PER_FRAME:
            raise ProtocolError(f"more than {MAX_PACKETS_PER_FRAME} packets in one frame")
        packet, pos = _decode_at(frame, pos, body_limit)
        packets.append(packet)
    return packets


def batch(packets: list[bytes], body_limit: int) -> list[bytes]:
    """Join encoded packets, in order, into as few frames as the peer's limit
    allows (``body_limit``: the peer's max message size + 16)."""
    frames: list[bytes] = []
    current, count = bytearray(), 0
    for packet in packets:
        if current and (len(current) + len(packet) > frame_limit(body_limit)
                        or count == MAX_PACKETS_PER_FRAME):
            frames.append(bytes(current))
            current, count = bytearray(), 0
        current += packet
        count += 1
    if current:
        frames.append(bytes(current))
    return frames


def _decode_at(frame: bytes, start: int, body_limit: int) -> tuple[Packet, int]:
    """Decode the packet starting at ``start``; return it and where it ends."""
    # Step 2: version, reserved flags, codec -- in that order.
    if len(frame) < start + 1:
        raise ProtocolError("truncated header")
    version = frame[start]
    if version != VERSION:
        raise ProtocolError(f"unsupported version {version}", REASON_VERSION_MISMATCH)
    if len(frame) < start + 2:
        raise ProtocolError("truncated header")
    flags = frame[start + 1]
    if flags & FLAGS_RESERVED:
        raise ProtocolError(f"reserved flag bits set: {flags:#04x}")
    if len(frame) < start + 3:
        raise ProtocolError("truncated header")
    codec = frame[start + 2]
    if codec not in VALID_CODECS:
        raise ProtocolError(f"invalid codec {codec}")

    # Step 3: varints (canonical, in range), then the payload length.
    pos = start + 3
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
    tick = None
    if flags & FLAG_TICK:
        tick, pos = decode_varint(frame, pos, U32_MAX)
    payload_len, pos = decode_varint(frame, pos, U32_MAX)
    if payload_len > body_limit:
        raise ProtocolError("declared payload length above the body limit", REASON_MESSAGE_TOO_LARGE)
    end = pos + payload_len
    if end > len(frame):
        raise ProtocolError("declared payload length runs past the end of the frame")

    header = Header(
        route=route,
        message_id=message_id,
        codec=codec,
        payload_len=payload_len,
        encrypted=bool(flags & FLAG_ENCRYPTED),
        compressed=bool(flags & FLAG_COMPRESSED),
        correlation_id=correlation_id,
        schema_hash=schema_hash,
        tick=tick,
        version=version,
    )
    return Packet(header=header, header_bytes=bytes(frame[start:pos]),
                  body=bytes(frame[pos:end])), end
