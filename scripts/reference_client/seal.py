"""Sealed packets: ChaCha20-Poly1305 under the direction key (section 8)."""

from __future__ import annotations

import dataclasses
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from . import ProtocolError
from .envelope import TAG_LEN, Header, Packet

MAX_SEND_COUNTER = (1 << 64) - 2  # counter 2^64 - 1 is never sent
REASON_DECRYPT_FAILED = 5


def nonce(counter: int) -> bytes:
    """``00 00 00 00`` || counter as u64 LE."""
    return b"\x00\x00\x00\x00" + struct.pack("<Q", counter)


def seal(key: bytes, header: Header, plaintext: bytes) -> bytes:
    """Build a full frame. ``header.payload_len`` is overwritten to count the tag;
    the ENCRYPTED flag is forced on. The nonce counter is the header's message id."""
    if header.message_id > MAX_SEND_COUNTER:
        raise ValueError("counter exhausted")
    hdr = dataclasses.replace(header, encrypted=True, payload_len=len(plaintext) + TAG_LEN)
    aad = hdr.encode()
    return aad + ChaCha20Poly1305(key).encrypt(nonce(hdr.message_id), plaintext, aad)


def open_packet(key: bytes, packet: Packet) -> bytes:
    """Verify and decrypt; the associated data is the header exactly as received."""
    if len(packet.body) < TAG_LEN:
        raise ProtocolError("sealed body shorter than the tag", REASON_DECRYPT_FAILED)
    try:
        return ChaCha20Poly1305(key).decrypt(
            nonce(packet.header.message_id), packet.body, packet.header_bytes)
    except InvalidTag as exc:
        raise ProtocolError("tag verification failed", REASON_DECRYPT_FAILED) from exc
