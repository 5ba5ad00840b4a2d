"""Noise_NK_25519_ChaChaPoly_BLAKE2s with prologue ``mokosh/1`` (section 7.2).

Thin wrappers over the ``noiseprotocol`` package. Ephemeral private keys may
be fixed for reproducing test vectors; production callers leave them ``None``
so the library generates fresh ones.
"""

from __future__ import annotations

import warnings
from typing import Optional

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from noise.connection import Keypair, NoiseConnection

from . import ProtocolError

PROTOCOL_NAME = b"Noise_NK_25519_ChaChaPoly_BLAKE2s"
PROLOGUE = b"mokosh/1"
DHLEN = 32
TAG_LEN = 16
REASON_HANDSHAKE_FAILED = 18


def x25519_public(private: bytes) -> bytes:
    """Public key for a 32-byte X25519 private key (clamping per RFC 7748)."""
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def parse_public_key_hex(text: str) -> bytes:
    """The out-of-band server key: 64 hex digits."""
    key = bytes.fromhex(text.strip())
    if len(key) != 32:
        raise ValueError("server public key must be 32 bytes")
    return key


def _connection(initiator: bool) -> NoiseConnection:
    conn = NoiseConnection.from_name(PROTOCOL_NAME)
    conn.set_prologue(PROLOGUE)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    return conn


def _start(conn: NoiseConnection, fixed_ephemeral: bool) -> None:
    with warnings.catch_warnings():
        if fixed_ephemeral:  # the library warns (rightly) about fixed ephemerals
            warnings.simplefilter("ignore")
        conn.start_handshake()


def _split_keys(conn: NoiseConnection, initiator: bool) -> tuple[bytes, bytes]:
    """``(k1, k2)`` from Split(): k1 seals client->server, k2 server->client."""
    proto = conn.noise_protocol
    enc, dec = bytes(proto.cipher_state_encrypt.k), bytes(proto.cipher_state_decrypt.k)
    return (enc, dec) if initiator else (dec, enc)


class NoiseInitiator:
    """Client side: ``-> e, es`` carrying the Hello, ``<- e, ee`` carrying the Response."""

    def __init__(self, server_public: bytes, ephemeral_private: Optional[bytes] = None):
        if len(server_public) != 32:
            raise ValueError("server public key must be 32 bytes")
        self._conn = _connection(initiator=True)
        self._conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, server_public)
        if ephemeral_private is not None:
            self._conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral_private)
        _start(self._conn, ephemeral_private is not None)

    def write_message_1(self, hello: bytes) -> bytes:
        return bytes(self._conn.write_message(hello))

    def read_message_2(self, message: bytes) -> bytes:
        if len(message) < DHLEN + TAG_LEN:
            raise ProtocolError("Noise message 2 too short", REASON_HANDSHAKE_FAILED)
        try:
            return bytes(self._conn.read_message(message))
        except Exception as exc:  # InvalidTag, bad point, ...
            raise ProtocolError(f"Noise message 2 rejected: {exc!r}", REASON_HANDSHAKE_FAILED) from exc

    def split(self) -> tuple[bytes, bytes]:
        if not self._conn.handshake_finished:
            raise RuntimeError("handshake not finished")
        return _split_keys(self._conn, initiator=True)


class NoiseResponder:
    """Minimal server side, used to reproduce the message-2 vector."""

    def __init__(self, static_private: bytes, ephemeral_private: Optional[bytes] = None):
        self._conn = _connection(initiator=False)
        self._conn.set_keypair_from_private_bytes(Keypair.STATIC, static_private)
        if ephemeral_private is not None:
            self._conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral_private)
        _start(self._conn, ephemeral_private is not None)

    def read_message_1(self, message: bytes) -> bytes:
        if len(message) < DHLEN + TAG_LEN:
            raise ProtocolError("Noise message 1 too short", REASON_HANDSHAKE_FAILED)
        try:
            return bytes(self._conn.read_message(message))
        except Exception as exc:
            raise ProtocolError(f"Noise message 1 rejected: {exc!r}", REASON_HANDSHAKE_FAILED) from exc

    def write_message_2(self, response: bytes) -> bytes:
        return bytes(self._conn.write_message(response))

    def split(self) -> tuple[bytes, bytes]:
        if not self._conn.handshake_finished:
            raise RuntimeError("handshake not finished")
        return _split_keys(self._conn, initiator=False)
