"""Independent Python reference implementation of the Mokosh wire protocol v1
(client side, plus a minimal Noise responder for test vectors).

Written from docs/PROTOCOL.md alone. Modules:

* ``varint``    -- canonical unsigned LEB128 (section 1)
* ``envelope``  -- envelope header encode/decode (section 3)
* ``handshake`` -- Hello / Response bodies (sections 7.3, 7.4)
* ``control``   -- PING / PONG / DISCONNECT bodies (section 10)
* ``noise_nk``  -- Noise_NK_25519_ChaChaPoly_BLAKE2s, prologue ``mokosh/1`` (7.2)
* ``seal``      -- ChaCha20-Poly1305 packet sealing (section 8)
* ``schema``    -- schema hashes and the protocol hash (section 11)
* ``session``   -- a transport-agnostic client session tying these together
"""


class ProtocolError(Exception):
    """A violation of the wire protocol. ``reason`` is a section-10 reason code."""

    def __init__(self, message: str, reason: int = 4):  # 4 = ProtocolViolation
        super().__init__(message)
        self.reason = reason
