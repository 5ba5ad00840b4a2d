#!/usr/bin/env python3
"""Negative / behavioural tests of the reference client (not vectors).

Run: python -m unittest scripts/reference_client/test_rules.py  (from the repo
root, with the requirements installed), or run this file directly.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reference_client import ProtocolError, schema  # noqa: E402
from reference_client.control import (Auth, AuthOk, Disconnect, Ping, Pong,  # noqa: E402
                                      decode_control)
from reference_client.envelope import (CODEC_POSTCARD, CODEC_RAW, MAX_PACKETS_PER_FRAME,  # noqa: E402
                                       Header, batch, decode_frame, decode_packet)
from reference_client.handshake import Accept, Hello, Refuse  # noqa: E402
from reference_client.noise_nk import NoiseResponder, x25519_public  # noqa: E402
from reference_client.seal import open_packet, seal  # noqa: E402
from reference_client.session import AppMessage, ClientSession, HandshakeRefused  # noqa: E402
from reference_client.varint import U16_MAX, U32_MAX, U64_MAX, decode_varint, encode_varint  # noqa: E402


class Varint(unittest.TestCase):
    def test_round_trip(self):
        for v in (0, 1, 127, 128, 300, 16383, 16384, U16_MAX, U32_MAX, U64_MAX):
            enc = encode_varint(v)
            self.assertEqual(decode_varint(enc, 0, U64_MAX), (v, len(enc)))

    def test_rejections(self):
        bad = [
            (b"\x80\x00", U64_MAX),             # non-canonical zero
            (b"\xac\x82\x00", U64_MAX),         # trailing zero group
            (b"\x80", U64_MAX),                 # truncated
            (b"\x80\x80\x04", U16_MAX),         # 65536 > u16
            (b"\x80\x80\x80\x01", U16_MAX),     # 4 bytes for a u16
            (b"\xff" * 9 + b"\x02", U64_MAX),   # 10th byte > 0x01
            (b"\xff" * 10 + b"\x01", U64_MAX),  # 11 bytes
        ]
        for buf, width in bad:
            with self.subTest(buf=buf.hex()):
                with self.assertRaises(ProtocolError):
                    decode_varint(buf, 0, width)
        self.assertEqual(decode_varint(b"\xff" * 9 + b"\x01", 0, U64_MAX)[0], U64_MAX)
        self.assertEqual(decode_varint(b"\x00", 0, U64_MAX), (0, 1))


class Envelope(unittest.TestCase):
    def frame(self, **kw):
        h = Header(route=100, message_id=0, codec=CODEC_POSTCARD, payload_len=3, **kw)
        return h.encode() + b"abc"

    def test_order(self):
        good = self.frame()
        decode_packet(good, 256)
        # size before anything: an oversized frame with a bad version is "too large"
        with self.assertRaises(ProtocolError) as c:
            decode_packet(b"\x02" + bytes(400), 256)
        self.assertEqual(c.exception.reason, 15)
        # version before flags
        with self.assertRaises(ProtocolError) as c:
            decode_packet(b"\x02\xf0\x00", 256)
        self.assertEqual(c.exception.reason, 12)
        for bad in (b"\x01\x20\x02" + good[3:], b"\x01\x00\x00" + good[3:],
                    b"\x01\x00\x04" + good[3:], good + b"x", good[:-1],
                    b"\x01\x00\x02\x80\x00" + good[4:]):
            with self.subTest(bad=bad.hex()):
                with self.assertRaises(ProtocolError):
                    decode_packet(bad, 256)
        with self.assertRaises(ProtocolError):  # declared length above the limit
            decode_packet(self.frame(), 2)


class Frames(unittest.TestCase):
    def packet(self, i, **kw):
        body = bytes([i % 256]) * (i % 7)
        return Header(route=100, message_id=i, codec=CODEC_POSTCARD, payload_len=len(body),
                      **kw).encode() + body

    def test_any_split_reads_back_in_order(self):
        packets = [self.packet(i, tick=i * 3 if i % 2 else None) for i in range(150)]
        for limit in (16, 40, 100, 1000, 1 << 16):
            frames = batch(packets, limit)
            self.assertLessEqual(max(len(f) for f in frames), max(limit + 44, 12))
            read = [p for f in frames for p in decode_frame(f, 1 << 16)]
            self.assertEqual([p.header.message_id for p in read], list(range(150)))
            self.assertEqual(b"".join(p.header_bytes + p.body for p in read), b"".join(packets))

    def test_limits(self):
        packets = [self.packet(i) for i in range(MAX_PACKETS_PER_FRAME + 1)]
        self.assertEqual(len(decode_frame(b"".join(packets[:-1]), 1 << 16)),
                         MAX_PACKETS_PER_FRAME)
        self.assertEqual(len(batch(packets, 1 << 16)), 2)
        for bad in (b"".join(packets), b"", b"".join(packets[:3])[:-1]):
            with self.subTest(len=len(bad)):
                with self.assertRaises(ProtocolError):
                    decode_frame(bad, 1 << 16)
        with self.assertRaises(ProtocolError) as c:  # frame over the limit
            decode_frame(b"".join(packets[:20]), 16)
        self.assertEqual(c.exception.reason, 15)
        with self.assertRaises(ProtocolError):  # a handshake frame holds one packet
            decode_packet(b"".join(packets[:2]), 1 << 16)


class Bodies(unittest.TestCase):
    def test_hello_rules(self):
        ok = Hello((2,), (), 0, 256).encode()
        self.assertEqual(Hello.decode(ok).codecs, (2,))
        for bad in (ok + b"\x00", b"\x00" + ok[2:], ok.replace(b"\x80\x02", b"\xff\x01")):
            with self.assertRaises(ProtocolError):
                Hello.decode(bad)

    def test_control(self):
        self.assertEqual(decode_control(2, Pong(9).encode()), Pong(9))
        for route, body in ((1, b"\x00" * 7), (3, b"\x00\x00"), (3, b"\x01\x02a"),
                            (3, b"\x01\x01\xff")):
            with self.assertRaises(ProtocolError):
                decode_control(route, body)


SERVER_STATIC = bytes(range(1, 33))
GOLDEN = schema.struct_("Golden", schema.shape_named(
    [("id", schema.primitive("u32")), ("tags", schema.vec(schema.STRING))]))
REGISTRY = {100: GOLDEN}
HELLO = Hello((2, 1), (1, 2), schema.protocol_hash(REGISTRY), 65536)
ACCEPT = Accept(2, 1, 65536, 1000, 10000)


def server_reply(frame, response):
    server = NoiseResponder(SERVER_STATIC)
    pkt = decode_packet(frame, 2048)
    Hello.decode(server.read_message_1(pkt.body))
    body = server.write_message_2(response.encode())
    hdr = Header(route=0, message_id=0, codec=CODEC_RAW, payload_len=len(body), encrypted=True)
    return hdr.encode() + body, server


class Session(unittest.TestCase):
    def test_full_exchange(self):
        c = ClientSession(HELLO, x25519_public(SERVER_STATIC), REGISTRY, token=b"token")
        reply, server = server_reply(c.hello_frame(), ACCEPT)
        self.assertEqual(c.on_handshake_frame(reply), ACCEPT)
        k1, k2 = server.split()
        def s2c(counter, route, codec, body, **kw):
            return seal(k2, Header(route=route, message_id=counter, codec=codec,
                                   payload_len=0, **kw), body)
        # 7.5: the first sealed packet is AUTH with the token, counter 0.
        auth = decode_packet(c.auth_frame(), 2048)
        self.assertEqual((auth.header.route, auth.header.message_id), (4, 0))
        self.assertEqual(decode_control(4, open_packet(k1, auth)), Auth(b"token"))
        # 7.7: nothing else before AUTH_OK, either way.
        with self.assertRaises(RuntimeError):
            c.send(100, CODEC_POSTCARD, b"\x01\x00")
        with self.assertRaises(RuntimeError):
            c.send_control(Ping(0))
        early = ClientSession(HELLO, x25519_public(SERVER_STATIC), REGISTRY)
        early_reply, early_server = server_reply(early.hello_frame(), ACCEPT)
        early.on_handshake_frame(early_reply)
        early.auth_frame()
        with self.assertRaises(ProtocolError) as e:
            early.receive(seal(early_server.split()[1], Header(
                route=1, message_id=0, codec=CODEC_RAW, payload_len=0), Ping(5).encode()))
        self.assertEqual(e.exception.reason, 4)
        self.assertEqual(c.receive(s2c(0, 5, CODEC_RAW, AuthOk(42).encode())), AuthOk(42))
        self.assertTrue(c.connected)
        self.assertEqual(c.client_id, 42)
        # client -> server, after AUTH (counter 0)
        f = c.send(100, CODEC_POSTCARD, b"\x01\x00")
        self.assertEqual(decode_packet(f, 65536 + 16).header.message_id, 1)
        # server -> client: ping, app message with schema, then a replay
        self.assertEqual(c.receive(s2c(1, 1, CODEC_RAW, Ping(5).encode())), Ping(5))
        m = c.receive(s2c(2, 100, CODEC_POSTCARD, b"\x07", schema_hash=GOLDEN))
        self.assertIsInstance(m, AppMessage)
        with self.assertRaises(ProtocolError) as e:
            c.receive(s2c(2, 100, CODEC_POSTCARD, b"\x07"))
        self.assertEqual(e.exception.reason, 6)
        with self.assertRaises(ProtocolError) as e:  # wrong key -> DecryptFailed
            c.receive(seal(k1, Header(route=1, message_id=3, codec=CODEC_RAW,
                                      payload_len=0), Ping(1).encode()))
        self.assertEqual(e.exception.reason, 5)
        with self.assertRaises(ProtocolError):  # bad schema hash
            c.receive(s2c(3, 100, CODEC_POSTCARD, b"\x07", schema_hash=1))
        with self.assertRaises(ProtocolError):  # a second AUTH_OK
            c.receive(s2c(4, 5, CODEC_RAW, AuthOk(42).encode()))
        with self.assertRaises(ProtocolError):  # reserved route
            c.receive(s2c(5, 6, CODEC_RAW, b""))
        self.assertEqual(c.receive(s2c(6, 3, CODEC_RAW, Disconnect(10, "bye").encode())),
                         Disconnect(10, "bye"))

    def test_auth_failed_is_a_sealed_disconnect(self):
        c = ClientSession(HELLO, x25519_public(SERVER_STATIC), REGISTRY, token=b"bad")
        reply, server = server_reply(c.hello_frame(), ACCEPT)
        c.on_handshake_frame(reply)
        c.auth_frame()
        k2 = server.split()[1]
        verdict = seal(k2, Header(route=3, message_id=0, codec=CODEC_RAW, payload_len=0),
                       Disconnect(9, "bad token").encode())
        self.assertEqual(c.receive(verdict), Disconnect(9, "bad token"))
        self.assertFalse(c.connected)

    def test_refusals(self):
        c = ClientSession(HELLO, x25519_public(SERVER_STATIC), REGISTRY)
        reply, _ = server_reply(c.hello_frame(), Refuse(8, "schema"))
        with self.assertRaises(HandshakeRefused) as e:
            c.on_handshake_frame(reply)
        self.assertTrue(e.exception.authenticated)
        c = ClientSession(HELLO, x25519_public(SERVER_STATIC), REGISTRY)
        c.hello_frame()
        body = Refuse(17).encode()
        plain = Header(route=0, message_id=0, codec=CODEC_RAW, payload_len=len(body)).encode()
        with self.assertRaises(HandshakeRefused) as e:
            c.on_handshake_frame(plain + body)
        self.assertFalse(e.exception.authenticated)
        body = ACCEPT.encode()  # a plaintext accept never connects
        plain = Header(route=0, message_id=0, codec=CODEC_RAW, payload_len=len(body)).encode()
        c = ClientSession(HELLO, x25519_public(SERVER_STATIC), REGISTRY)
        c.hello_frame()
        with self.assertRaises(ProtocolError):
            c.on_handshake_frame(plain + body)

    def test_batches_ticks_and_directions(self):
        directions = {100: schema.BOTH, 101: schema.CLIENT_TO_SERVER,
                      102: schema.SERVER_TO_CLIENT}
        registry = {100: GOLDEN, 101: GOLDEN, 102: GOLDEN}
        hello = Hello((2, 1), (1, 2), schema.protocol_hash(registry, directions), 65536)
        c = ClientSession(hello, x25519_public(SERVER_STATIC), registry, token=b"t",
                          directions=directions)
        reply, server = server_reply(c.hello_frame(), ACCEPT)
        c.on_handshake_frame(reply)
        k1, k2 = server.split()

        def s2c(counter, route, body, codec=CODEC_POSTCARD):
            return seal(k2, Header(route=route, message_id=counter, codec=codec,
                                   payload_len=0, tick=counter), body)
        c.auth_frame()
        # AUTH_OK batched with the packets after it: processed in order.
        got = c.receive_frame(s2c(0, 5, AuthOk(9).encode(), CODEC_RAW) + s2c(1, 102, b"\x05")
                              + s2c(2, 1, Ping(3).encode(), CODEC_RAW))
        self.assertEqual(got[0], AuthOk(9))
        self.assertEqual(got[1].header.tick, 1)
        self.assertEqual(got[2], Ping(3))
        with self.assertRaises(ProtocolError):  # client-to-server only
            c.receive(s2c(3, 101, b""))
        c.tick = 77
        frames = c.batch([c.send(100, CODEC_POSTCARD, b"\x01"), c.send(101, CODEC_POSTCARD, b""),
                          c.send_control(Ping(0))])
        self.assertEqual(len(frames), 1)
        packets = decode_frame(frames[0], 65536 + 16)
        self.assertEqual([(p.header.message_id, p.header.tick) for p in packets],
                         [(1, 77), (2, 77), (3, 77)])
        with self.assertRaises(ValueError):  # server-to-client only
            c.send(102, CODEC_POSTCARD, b"")

    def test_unoffered_codec(self):
        c = ClientSession(HELLO, x25519_public(SERVER_STATIC), REGISTRY)
        reply, _ = server_reply(c.hello_frame(), Accept(3, 0, 256, 1, 1))
        with self.assertRaises(ProtocolError):
            c.on_handshake_frame(reply)


if __name__ == "__main__":
    unittest.main()
