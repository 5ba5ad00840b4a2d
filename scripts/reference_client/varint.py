"""Canonical unsigned LEB128 varints (PROTOCOL.md section 1)."""

from . import ProtocolError

U16_MAX = (1 << 16) - 1
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1


class VarintError(ProtocolError):
    pass


def encode_varint(value: int) -> bytes:
    """Encode ``value`` (>= 0) in its canonical (shortest) LEB128 form."""
    if value < 0:
        raise ValueError("varint must be unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(buf: bytes, pos: int, max_value: int) -> tuple[int, int]:
    """Decode one varint from ``buf`` at ``pos``; return ``(value, new_pos)``.

    ``max_value`` is the width of the field (``U16_MAX``, ``U32_MAX``,
    ``U64_MAX``). Rejected: truncated input, a non-canonical encoding (a final
    ``0x00`` byte after another byte), more bytes than the width needs, and any
    value above ``max_value``. For u64 this is exactly "at most 10 bytes with
    the 10th byte <= 0x01".
    """
    max_bytes = (max_value.bit_length() + 6) // 7
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= len(buf):
            raise VarintError("truncated varint")
        if pos - start >= max_bytes:
            raise VarintError("varint too long for its field")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if byte == 0 and pos - start > 1:
        raise VarintError("non-canonical varint (trailing zero byte)")
    if value > max_value:
        raise VarintError("varint out of range for its field")
    return value, pos
