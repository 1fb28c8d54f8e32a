"""msgpack, byte by byte: what the fuzzers need that `msgpack.packb` will not write.

Theory of operation
-------------------
A decoder is tested by inputs no well-behaved encoder produces: numbers in a format too wide for them (valid
but non-canonical), headers that declare more elements or bytes than follow, maps whose header lies about
their count, numbers that do not fit any field. This module builds such bytes by hand: `packb` is the one
canonical encoder (what zvsr itself writes), `pack_map` / `pack_array` assemble already-encoded parts under a
header that may lie, `widen` re-encodes a value with every int and length at its widest, and the tables
(`EDGE_NUMBERS`, `HUGE_HEADERS`, `INTERESTING_BYTES`) are raw encodings at the edges of the system's limits
(`zvsr.constants`) and of msgpack's own formats. Nothing here is random: `zvsr.fuzz.mutations` picks from it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr import constants as c


def packb(value: Any) -> bytes:
    """`value` as msgpack, the way zvsr writes it (bin for bytes, str for str)."""
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def _length_header(small: int, formats: tuple[tuple[int, int, str], ...], count: int) -> bytes:
    if small >= 0 and count < (16 if small in (0x80, 0x90) else 32):
        return bytes([small | count])
    for limit, code, fmt in formats:
        if count < limit:
            return bytes([code]) + struct.pack(fmt, count)
    raise ValueError(f"length {count} does not fit msgpack")


def map_header(count: int) -> bytes:
    return _length_header(0x80, ((2**16, 0xDE, ">H"), (2**32, 0xDF, ">I")), count)


def array_header(count: int) -> bytes:
    return _length_header(0x90, ((2**16, 0xDC, ">H"), (2**32, 0xDD, ">I")), count)


def pack_map(items: Sequence[tuple[bytes, bytes]], *, declared: int | None = None) -> bytes:
    """A msgpack map of already-encoded keys and values; `declared` makes the header lie about the count."""
    header = map_header(len(items) if declared is None else declared)
    return header + b"".join(key + value for key, value in items)


def pack_array(items: Sequence[bytes], *, declared: int | None = None) -> bytes:
    return array_header(len(items) if declared is None else declared) + b"".join(items)


def widen(value: Any) -> bytes:
    """`value` in a valid but non-canonical encoding: every int and length in its widest format."""
    if value is None or type(value) is bool or type(value) is float:
        return packb(value)
    if type(value) is int:
        return (b"\xcf" + struct.pack(">Q", value)) if value >= 0 else (b"\xd3" + struct.pack(">q", value))
    if type(value) is bytes:
        return b"\xc6" + struct.pack(">I", len(value)) + value
    if type(value) is str:
        data = value.encode("utf-8")
        return b"\xdb" + struct.pack(">I", len(data)) + data
    if type(value) is list or type(value) is tuple:
        return b"\xdd" + struct.pack(">I", len(value)) + b"".join(widen(item) for item in value)
    if type(value) is dict:
        body = b"".join(widen(k) + widen(v) for k, v in value.items())
        return b"\xdf" + struct.pack(">I", len(value)) + body
    return packb(value)


# Numbers at the edges, as raw msgpack. 2^64 has no msgpack integer encoding at all (uint64 is the widest), so
# it travels as a float64 — and as a uint64 followed by one byte too many (trailing bytes).
EDGE_NUMBERS: Final[tuple[bytes, ...]] = (
    b"\x00",  # 0
    b"\xcf" + b"\x00" * 8,  # 0 as uint64 (non-canonical, valid)
    b"\xcd\x00\x00",  # 0 as uint16
    b"\x01",
    packb(c.REPLICAS_MAX - 1),  # the largest replica id of a first configuration (ids 0..n-1)
    packb(c.REPLICAS_MAX),
    b"\xce\xff\xff\xff\xff",  # 2^32 - 1 = REPLICA_ID_MAX, the largest replica id
    b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00",  # 2^32
    b"\xcf\x00\x20\x00\x00\x00\x00\x00\x01",  # 2^53 + 1
    b"\xcf" + b"\xff" * 7 + b"\xfe",  # 2^64 - 2
    b"\xcf" + b"\xff" * 8,  # 2^64 - 1 = ID_MAX
    b"\xcb" + struct.pack(">d", 2.0**64),  # 2^64 as float64
    b"\xcf" + b"\xff" * 8 + b"\x00",  # "2^64": one byte too many
    b"\xff",  # -1 (negative fixint)
    b"\xd0\xff",  # -1 as int8
    b"\xd3" + b"\xff" * 8,  # -1 as int64
    b"\xd3\x80" + b"\x00" * 7,  # -2^63
    b"\xd3\x00\x00\x00\x00\x00\x00\x00\x01",  # +1 as int64 (a signed format for a non-negative value)
    b"\xc2",  # false
    b"\xc3",  # true
    b"\xc0",  # nil
    b"\xca\x3f\x80\x00\x00",  # 1.0 as float32
    b"\xcb" + struct.pack(">d", math.nan),
)

# Container and string headers that declare far more than follows.
HUGE_HEADERS: Final[tuple[bytes, ...]] = (
    b"\xdd\xff\xff\xff\xff",  # array32 of 4 294 967 295
    b"\xdd" + struct.pack(">I", c.LOG_ENTRIES_MAX),
    b"\xdd" + struct.pack(">I", c.LOG_ENTRIES_MAX + 1),
    b"\xdc\xff\xff",  # array16
    b"\xdf\xff\xff\xff\xff",  # map32
    b"\xde\xff\xff",  # map16
    b"\xc6\xff\xff\xff\xff",  # bin32
    b"\xc6" + struct.pack(">I", c.OPERATION_BYTES_MAX + 1),
    b"\xc5\xff\xff",  # bin16
    b"\xc4\xff",  # bin8
    b"\xdb\xff\xff\xff\xff",  # str32
    b"\xda\xff\xff",  # str16
    b"\xd9\xff",  # str8
    b"\xc9\xff\xff\xff\xff\x05",  # ext32
    b"\xc8\xff\xff\x05",  # ext16
    b"\xc7\xff\x05",  # ext8
    b"\xd8\x05",  # fixext16
)

# Bytes that mean something to a msgpack reader: type markers and the edges of the fix formats.
INTERESTING_BYTES: Final = (
    0x00, 0x01, 0x0F, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7,
    0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD3, 0xD4, 0xD8, 0xD9, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xE0,
    0xFF,
)  # fmt: skip
