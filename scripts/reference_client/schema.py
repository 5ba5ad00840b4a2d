"""Schema hashes and the protocol hash (PROTOCOL.md section 11).

A type is described by its 64-bit ``SCHEMA_HASH``. Helpers here build those
values the way the Rust ``#[derive(Schema)]`` / built-in impls are specified.
"""

from __future__ import annotations

import struct
from typing import Mapping, Optional, Sequence, Union

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x00000100000001B3
MASK64 = (1 << 64) - 1


def fnv1a(data: bytes, state: int = FNV_OFFSET) -> int:
    for b in data:
        state ^= b
        state = (state * FNV_PRIME) & MASK64
    return state


def str_word(s: str) -> int:
    """``str(s)``: FNV-1a-64 of the UTF-8 bytes, no length prefix."""
    return fnv1a(s.encode("utf-8"))


def mix(state: int, word: int) -> int:
    """Feed one 64-bit word (8 bytes, little-endian) into an FNV-1a state."""
    return fnv1a(struct.pack("<Q", word & MASK64), state)


Word = Union[int, str]


def H(*words: Word) -> int:
    """Word-sequence hash. A ``str`` argument stands for ``str(s)``; an ``int``
    is used as the word itself (a count, an ``N``, or a nested SCHEMA_HASH)."""
    state = FNV_OFFSET
    for w in words:
        state = mix(state, str_word(w) if isinstance(w, str) else w)
    return state


# --- built-in types --------------------------------------------------------

PRIMITIVE_NAMES = ("u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize "
                   "f32 f64 bool char").split()


def primitive(name: str) -> int:
    if name not in PRIMITIVE_NAMES and name not in ("()", "String"):
        raise ValueError(f"not a built-in scalar: {name}")
    return H(name)


UNIT = H("()")
STRING = H("String")


def vec(t: int) -> int: return H("Vec", t)
def vec_deque(t: int) -> int: return H("VecDeque", t)
def option(t: int) -> int: return H("Option", t)
def box(t: int) -> int: return H("Box", t)
def phantom_data(t: int) -> int: return H("PhantomData", t)
def array(t: int, n: int) -> int: return H("array", n, t)
def hash_map(k: int, v: int) -> int: return H("HashMap", k, v)
def btree_map(k: int, v: int) -> int: return H("BTreeMap", k, v)
def hash_set(t: int) -> int: return H("HashSet", t)
def btree_set(t: int) -> int: return H("BTreeSet", t)


def tuple_(*ts: int) -> int:
    if not 1 <= len(ts) <= 6:
        raise ValueError("tuples of 1..=6 elements")
    return H("tuple", len(ts), *ts)


# --- derived types ---------------------------------------------------------

def _strip_raw(name: str) -> str:
    return name[2:] if name.startswith("r#") else name


def shape_unit() -> list[Word]:
    return ["unit"]


def shape_tuple(fields: Sequence[int]) -> list[Word]:
    return ["tuple", len(fields), *fields]


def shape_named(fields: Sequence[tuple[str, int]]) -> list[Word]:
    words: list[Word] = ["named", len(fields)]
    for name, t in fields:
        words += [_strip_raw(name), t]
    return words


def struct_(name: str, shape: list[Word]) -> int:
    return H("struct", _strip_raw(name), *shape)


def enum(name: str, variants: Sequence[tuple[str, list[Word]]]) -> int:
    words: list[Word] = ["enum", _strip_raw(name), len(variants)]
    for vname, shape in variants:
        words += [_strip_raw(vname), *shape]
    return H(*words)


# --- protocol hash ---------------------------------------------------------

BOTH, CLIENT_TO_SERVER, SERVER_TO_CLIENT = 0, 1, 2  # direction words (section 4)


def protocol_hash(registry: Mapping[int, int],
                  directions: Optional[Mapping[int, int]] = None) -> int:
    """``registry`` maps route id -> message SCHEMA_HASH; ``directions`` maps
    route id -> direction word (BOTH when absent)."""
    directions = directions or {}
    words: list[Word] = ["mokosh.protocol", len(registry)]
    for route in sorted(registry):
        words += [route, registry[route], directions.get(route, BOTH)]
    return H(*words)
