#!/usr/bin/env python3
"""Recompute every ``<!-- vector: NAME -->`` block of docs/PROTOCOL.md.

Usage: check_vectors.py [path/to/PROTOCOL.md]

Each vector is rebuilt from this package using only the inputs the document
states for it (see RECIPES; where the document does not state an input, the
recipe says so). Where it makes sense the document's bytes are also decoded
and compared with those inputs. One line per vector, then ``N passed, M failed``;
the exit status is non-zero if anything failed.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from reference_client import schema  # noqa: E402
from reference_client.control import Auth, AuthOk, Disconnect, Ping, decode_control  # noqa: E402
from reference_client.envelope import (CODEC_JSON, CODEC_POSTCARD, CODEC_RAW,  # noqa: E402
                                       Header, batch, decode_frame, decode_packet)
from reference_client.handshake import Accept, Hello, Refuse, decode_response  # noqa: E402
from reference_client.noise_nk import NoiseInitiator, NoiseResponder, x25519_public  # noqa: E402
from reference_client.seal import open_packet, seal  # noqa: E402
from reference_client.varint import U16_MAX, decode_varint, encode_varint  # noqa: E402

VECTOR_RE = re.compile(r"<!--\s*vector:\s*([A-Za-z0-9_.-]+)\s*-->\s*```[a-z]*\n(.*?)```", re.S)
MARKER_RE = re.compile(r"<!--\s*vector:")


def parse_vectors(text: str) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Return ``([(name, bytes)], [problems])`` in document order."""
    vectors, problems = [], []
    for m in VECTOR_RE.finditer(text):
        tokens = m.group(2).split()
        if not all(re.fullmatch(r"[0-9a-f]{2}", t) for t in tokens):
            problems.append(f"vector {m.group(1)}: block is not lowercase hex byte pairs")
            continue
        vectors.append((m.group(1), bytes(int(t, 16) for t in tokens)))
    if len(MARKER_RE.findall(text)) != len(vectors) + len(problems):
        problems.append("a `<!-- vector: -->` marker is not followed by a fenced block")
    return vectors, problems


# --- inputs stated by the document ------------------------------------------

# 7.3: "Postcard then JSON; zstd then lz4; protocol hash 0x1122334455667788; 65536"
HELLO = Hello(codecs=(CODEC_POSTCARD, CODEC_JSON), compressions=(1, 2),
              protocol_hash=0x1122334455667788, max_message_size=65536)

# Server side used for the accept: supports codecs JSON/Postcard/Raw and zstd/lz4
# and picks "the first entry of the client's list that it supports" (5, 6, 7.5).
SERVER_CODECS = {CODEC_JSON, CODEC_POSTCARD, CODEC_RAW}
SERVER_COMPRESSIONS = {1, 2}


def negotiate(offered, supported, none=None):
    return next((x for x in offered if x in supported), none)


# 7.4 does not state the accept's inputs. Derived here: codec / compression by
# negotiation against HELLO; max message size, ping interval and idle timeout
# are the section-12 defaults (64 KiB, 1 s, 10 s).
ACCEPT = Accept(codec=negotiate(HELLO.codecs, SERVER_CODECS),
                compression=negotiate(HELLO.compressions, SERVER_COMPRESSIONS, 0),
                max_message_size=64 * 1024,
                ping_interval_ms=1000, idle_timeout_ms=10_000)
# 7.4 states the refusal's inputs: AuthFailed (9), detail "bad token".
REFUSE = Refuse(status=9, detail="bad token")

# 7.5 / 7.8: AUTH with token `token`, AUTH_OK with client id 42.
AUTH = Auth(b"token")
AUTH_OK = AuthOk(42)

# 7.8
SERVER_STATIC = bytes(range(0x01, 0x21))
CLIENT_EPHEMERAL = bytes(range(0x40, 0x60))
SERVER_EPHEMERAL = bytes(range(0x80, 0xA0))

# 8: key 00..1f, route 100, codec Postcard; "hello" at counter 0, "world" at 1.
SEAL_KEY = bytes(range(0x00, 0x20))

# 11: struct Golden { id: u32, tags: Vec<String> }, on route 100.
GOLDEN = schema.struct_("Golden", schema.shape_named([
    ("id", schema.primitive("u32")),
    ("tags", schema.vec(schema.STRING)),
]))


class Handshake:
    """Runs the 7.8 example once, both sides, cross-checking everything."""

    def __init__(self) -> None:
        server_public = x25519_public(SERVER_STATIC)
        client = NoiseInitiator(server_public, ephemeral_private=CLIENT_EPHEMERAL)
        server = NoiseResponder(SERVER_STATIC, ephemeral_private=SERVER_EPHEMERAL)
        self.server_public = server_public
        self.message_1 = client.write_message_1(HELLO.encode())
        hello_at_server = server.read_message_1(self.message_1)
        self.message_2 = server.write_message_2(ACCEPT.encode())
        response_at_client = client.read_message_2(self.message_2)
        self.client_keys = client.split()
        self.server_keys = server.split()
        self.round_trip_ok = (Hello.decode(hello_at_server) == HELLO
                              and decode_response(response_at_client) == ACCEPT
                              and self.client_keys == self.server_keys)


_hs: Optional[Handshake] = None


def hs() -> Handshake:
    global _hs
    if _hs is None:
        _hs = Handshake()
    return _hs


# --- recipes: name -> (compute, optional check of the document bytes) ---------

def _env_typical() -> Header:
    return Header(route=100, message_id=5000, codec=CODEC_POSTCARD, payload_len=116,
                  encrypted=True)


def _env_all() -> Header:
    return Header(route=16384, message_id=1, codec=CODEC_JSON, payload_len=300,
                  encrypted=True, compressed=True, correlation_id=7,
                  schema_hash=0x0123456789ABCDEF, tick=1000)


def _env_tick() -> Header:
    return Header(route=100, message_id=5000, codec=CODEC_POSTCARD, payload_len=116,
                  encrypted=True, tick=1000)


def _decode_header_only(doc: bytes, expect: Header) -> bool:
    # A header vector has no body; give decode_packet a body of the declared size.
    pkt = decode_packet(doc + bytes(expect.payload_len), body_limit=1 << 20)
    return pkt.header == expect and pkt.header_bytes == doc


def _sealed(counter: int, text: bytes, tick: Optional[int] = None) -> bytes:
    return seal(SEAL_KEY, Header(route=100, message_id=counter, codec=CODEC_POSTCARD,
                                 payload_len=0, encrypted=True, tick=tick), text)


def _open_sealed(doc: bytes, counter: int, text: bytes, tick: Optional[int] = None) -> bool:
    pkt = decode_packet(doc, body_limit=1024 + 16)
    return (pkt.header.message_id == counter and pkt.header.tick == tick
            and open_packet(SEAL_KEY, pkt) == text)


def _open_frame(doc: bytes) -> bool:
    packets = decode_frame(doc, body_limit=1024 + 16)
    return ([(p.header.message_id, p.header.tick, open_packet(SEAL_KEY, p)) for p in packets]
            == [(0, 1000, b"hello"), (1, 1000, b"world")])


def _first_sealed(key: bytes, message) -> bytes:
    """7.8: the first sealed packet one way: route of the message, codec Raw, counter 0."""
    return seal(key, Header(route=message.route, message_id=0, codec=CODEC_RAW,
                            payload_len=0, encrypted=True), message.encode())


def _open_first(doc: bytes, key: bytes, message) -> bool:
    pkt = decode_packet(doc, body_limit=2048)
    return (pkt.header.route == message.route and pkt.header.message_id == 0
            and decode_control(message.route, open_packet(key, pkt)) == message)


def _be64(v: int) -> bytes:
    return v.to_bytes(8, "big")  # "shown as the 64-bit value, most significant byte first"


Recipe = tuple[Callable[[], bytes], Optional[Callable[[bytes], bool]]]

RECIPES: dict[str, Recipe] = {
    "varint-300": (
        lambda: encode_varint(300),
        lambda d: decode_varint(d, 0, U16_MAX) == (300, len(d))),
    "envelope-typical": (
        lambda: _env_typical().encode(),
        lambda d: _decode_header_only(d, _env_typical())),
    "envelope-all-fields": (
        lambda: _env_all().encode(),
        lambda d: _decode_header_only(d, _env_all())),
    "envelope-tick": (
        lambda: _env_tick().encode(),
        lambda d: _decode_header_only(d, _env_tick())),
    "hello": (
        lambda: HELLO.encode(),
        lambda d: Hello.decode(d) == HELLO),
    "response-accept": (
        lambda: ACCEPT.encode(),
        lambda d: decode_response(d) == ACCEPT),
    "response-reject": (
        lambda: REFUSE.encode(),
        lambda d: decode_response(d) == REFUSE),
    "noise-server-public": (lambda: hs().server_public, None),
    "noise-message-1": (
        lambda: hs().message_1,
        lambda d: NoiseResponder(SERVER_STATIC).read_message_1(d) == HELLO.encode()),
    "noise-message-2": (
        lambda: hs().message_2,
        lambda d: hs().round_trip_ok),
    "noise-key-client-to-server": (lambda: hs().client_keys[0], lambda d: hs().round_trip_ok),
    "noise-key-server-to-client": (lambda: hs().client_keys[1], lambda d: hs().round_trip_ok),
    "noise-sealed-auth": (
        lambda: _first_sealed(hs().client_keys[0], AUTH),
        lambda d: _open_first(d, hs().server_keys[0], AUTH)),
    "noise-sealed-auth-ok": (
        lambda: _first_sealed(hs().client_keys[1], AUTH_OK),
        lambda d: _open_first(d, hs().server_keys[1], AUTH_OK)),
    "control-auth": (
        lambda: AUTH.encode(),
        lambda d: decode_control(4, d) == AUTH),
    "control-auth-ok": (
        lambda: AUTH_OK.encode(),
        lambda d: decode_control(5, d) == AUTH_OK),
    "sealed-counter-0": (
        lambda: _sealed(0, b"hello"),
        lambda d: _open_sealed(d, 0, b"hello")),
    "sealed-counter-1": (
        lambda: _sealed(1, b"world"),
        lambda d: _open_sealed(d, 1, b"world")),
    "sealed-tick-0": (
        lambda: _sealed(0, b"hello", 1000),
        lambda d: _open_sealed(d, 0, b"hello", 1000)),
    "sealed-tick-1": (
        lambda: _sealed(1, b"world", 1000),
        lambda d: _open_sealed(d, 1, b"world", 1000)),
    "frame-two-packets": (
        lambda: b"".join(batch([_sealed(0, b"hello", 1000), _sealed(1, b"world", 1000)],
                               1024 + 16)),
        _open_frame),
    # Section 10 does not state these inputs: ping id 1; Kicked (11) with "bye".
    "control-ping": (
        lambda: Ping(1).encode(),
        lambda d: decode_control(1, d) == Ping(1)),
    "control-disconnect": (
        lambda: Disconnect(11, "bye").encode(),
        lambda d: decode_control(3, d) == Disconnect(11, "bye")),
    "schema-hash-golden": (lambda: _be64(GOLDEN), None),
    "protocol-hash-golden": (lambda: _be64(schema.protocol_hash({100: GOLDEN})), None),
    "protocol-hash-golden-client-to-server": (
        lambda: _be64(schema.protocol_hash({100: GOLDEN}, {100: schema.CLIENT_TO_SERVER})),
        None),
}


def _hex(b: bytes) -> str:
    return " ".join(f"{x:02x}" for x in b)


def check(name: str, doc: bytes) -> tuple[bool, str]:
    recipe = RECIPES.get(name)
    if recipe is None:
        return False, "no recipe for this vector in the reference client"
    compute, verify = recipe
    try:
        got = compute()
    except Exception as exc:  # report, do not crash the run
        return False, f"computing raised {exc!r}"
    if got != doc:
        at = next((i for i, (a, b) in enumerate(zip(got, doc)) if a != b), min(len(got), len(doc)))
        return False, (f"first difference at byte {at}\n      document: {_hex(doc)}\n"
                       f"      computed: {_hex(got)}")
    if verify is not None:
        try:
            if not verify(doc):
                return False, "bytes match but decoding the document's bytes disagrees"
        except Exception as exc:
            return False, f"decoding the document's bytes raised {exc!r}"
    return True, ""


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else os.path.join(HERE, "..", "..", "docs", "PROTOCOL.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    vectors, problems = parse_vectors(text)
    passed = failed = 0
    for p in problems:
        print(f"FAIL  (parse) {p}")
        failed += 1
    seen: set[str] = set()
    for name, doc in vectors:
        if name in seen:
            print(f"FAIL  {name}: duplicate vector name")
            failed += 1
            continue
        seen.add(name)
        ok, why = check(name, doc)
        if ok:
            passed += 1
            print(f"PASS  {name}")
        else:
            failed += 1
            print(f"FAIL  {name}: {why}")
    for name in RECIPES:
        if name not in seen:
            failed += 1
            print(f"FAIL  {name}: expected vector missing from the document")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
