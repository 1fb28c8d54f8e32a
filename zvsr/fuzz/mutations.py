"""Random msgpack values and the mutators that turn a valid encoding into bad input.

Theory of operation
-------------------
Everything here is a pure function of a `random.Random` and its input, so a seed reproduces what it made
(and hypothesis can drive the same functions with its own `Random`, tests/test_fuzz_codec.py).

- *values*: `random_value` (any msgpack type, numbers at the edges, nesting), `random_raw_value` (one encoded
  value, often not what a field wants and sometimes not msgpack), `deep_nesting`, `random_number` (a valid
  64-bit number, mostly small).
- *byte-level mutations* (`mutate_bytes`, one of `BYTE_MUTATIONS`): flips, truncation, insertion, splicing
  two messages, trailing bytes.
- *msgpack-level mutations* (`mutate_structure`, one of `STRUCTURE_MUTATIONS`): a field of the wrong type,
  numbers at the edges, keys added, removed, duplicated or spelled as bin, deep nesting, huge declared
  lengths, a fault inside a log entry, a lying map header, keys reordered with every number at its widest.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr import constants as c
from zvsr.constants import OPERATION_NESTING_MAX
from zvsr.fuzz.msgpack_bytes import (
    EDGE_NUMBERS,
    HUGE_HEADERS,
    INTERESTING_BYTES,
    pack_array,
    pack_map,
    packb,
    widen,
)

# --- values -------------------------------------------------------------------------------------------------

EDGE_INTS: Final = (
    0, 1, c.REPLICAS_MAX - 1, c.REPLICAS_MAX, c.REPLICA_ID_MAX, c.REPLICA_ID_MAX + 1, 2**53 + 1,
    c.ID_MAX - 1, c.ID_MAX,
)  # fmt: skip

FIELD_NAMES: Final = (
    "type", "cluster", "epoch", "view", "replica", "op_number", "commit_number", "entries", "last_normal_view",
    "log", "nonce", "snapshot_op", "offset", "size", "checksum", "data", "client_id", "request_number",
    "operation", "result", "primary", "code", "message", "membership",
)  # fmt: skip


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A random msgpack-encodable value: every type, edge numbers, nesting up to 3 levels."""
    pick = rng.randrange(12 if depth < 3 else 9)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.choice(EDGE_INTS)
    if pick == 3:
        return rng.randint(-(2**63), c.ID_MAX)
    if pick == 4:
        return rng.choice((0.0, -0.0, 1.0, 1.5, math.inf, -math.inf, math.nan, 2.0**64, rng.random()))
    if pick == 5:
        characters = (0x41, 0x7A, 0xE9, 0x4E2D, 0x1F600, rng.randrange(0xD7FF))
        return "".join(chr(rng.choice(characters)) for _ in range(rng.randrange(8)))
    if pick == 6:
        return rng.randbytes(rng.randrange(12))
    if pick == 7:
        return rng.choice(FIELD_NAMES)
    if pick == 8:
        return msgpack.ExtType(rng.randrange(128), rng.randbytes(rng.choice((0, 1, 2, 4, 8, 16, 3))))
    if pick == 9:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(6))]
    if pick == 10:
        return {rng.choice(FIELD_NAMES): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [rng.randrange(16) for _ in range(4)] + [rng.randbytes(3)]  # a log entry, nearly


def random_raw_value(rng: random.Random) -> bytes:
    """One encoded value, often not what any field wants, sometimes not msgpack at all."""
    pick = rng.randrange(10)
    if pick < 5:
        return packb(random_value(rng))
    if pick < 7:
        return rng.choice(EDGE_NUMBERS)
    if pick == 7:
        return rng.choice(HUGE_HEADERS) + rng.randbytes(rng.randrange(8))
    if pick == 8:
        return bytes([rng.choice(INTERESTING_BYTES)])
    return deep_nesting(rng)


def deep_nesting(rng: random.Random) -> bytes:
    """Arrays or maps nested 2..20 000 deep: around the app's limit, and msgpack's (its C unpacker: 1024)."""
    app = OPERATION_NESTING_MAX
    depth = rng.choice((2, app - 1, app, app + 1, 100, 1000, 1023, 1024, 1025, 5000, 20_000))
    if rng.random() < 0.5:
        return b"\x91" * depth + b"\xc0"
    return b"\x81\xa1k" * depth + b"\xc0"


def random_number(rng: random.Random) -> int:
    """A valid 64-bit number: mostly small, sometimes huge or at an edge."""
    pick = rng.random()
    if pick < 0.5:
        return rng.randrange(16)
    if pick < 0.7:
        return rng.randrange(2**16)
    if pick < 0.9:
        return rng.getrandbits(64)
    return rng.choice(EDGE_INTS)


# --- mutators ---------------------------------------------------------------------------------------------------

BYTE_MUTATIONS: Final = (
    "flip", "set", "insert", "delete", "truncate", "duplicate", "splice", "trailing", "concat",
)  # fmt: skip
STRUCTURE_MUTATIONS: Final = (
    "field_type",
    "edge_number",
    "add_key",
    "remove_key",
    "bin_key",
    "duplicate_key",
    "swap_type",
    "deep_nesting",
    "huge_length",
    "entry",
    "lying_header",
    "many_keys",
    "reorder",
)


def mutate_bytes(
    rng: random.Random, data: bytes, others: Sequence[bytes] = (), *, kind: str | None = None
) -> bytes:
    """One byte-level mutation of `data` (`kind` one of BYTE_MUTATIONS, random if None)."""
    kind = rng.choice(BYTE_MUTATIONS) if kind is None else kind
    buffer = bytearray(data)
    size = len(buffer)
    at = rng.randrange(size + 1)
    if kind == "flip" and size:
        at = min(at, size - 1)
        buffer[at] ^= 1 << rng.randrange(8)
    elif kind == "set" and size:
        buffer[min(at, size - 1)] = rng.choice(INTERESTING_BYTES)
    elif kind == "insert":
        buffer[at:at] = rng.randbytes(rng.choice((1, 1, 2, 4, 9, 64)))
    elif kind == "delete" and size:
        del buffer[at : at + rng.choice((1, 1, 2, 4, 9))]
    elif kind == "truncate":
        del buffer[at:]
    elif kind == "duplicate" and size:
        end = min(size, at + rng.randrange(1, 32))
        buffer[at:at] = buffer[at:end]
    elif kind == "splice":
        other = rng.choice(others) if others else data
        buffer = buffer[:at] + other[rng.randrange(len(other) + 1) :]
    elif kind == "trailing":
        buffer += rng.choice((b"\xc0", b"\x00", b"\xc1", packb(random_value(rng))))
    elif kind == "concat":
        buffer += rng.choice(others) if others else data
    else:  # a mutation that needs bytes, on empty input
        buffer += rng.randbytes(1)
    return bytes(buffer)


def _items(data: bytes) -> list[tuple[Any, Any]] | None:
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # not msgpack (or not hashable keys): no structure to mutate
        return None
    if type(value) is not dict:
        return None
    return list(value.items())


def mutate_structure(rng: random.Random, data: bytes, *, kind: str | None = None) -> bytes:
    """One msgpack-level mutation of the map in `data` (`kind` one of STRUCTURE_MUTATIONS, random if None).

    Input that is not a msgpack map (or one too deeply nested to pack again) gets a byte-level mutation instead.
    """
    items = _items(data)
    if not items:
        return mutate_bytes(rng, data)
    kind = rng.choice(STRUCTURE_MUTATIONS) if kind is None else kind
    try:
        return _mutate_items(rng, items, kind)
    except (ValueError, RecursionError):  # msgpack's packer stops at 512 levels, `widen` at Python's limit
        return mutate_bytes(rng, data)


def _mutate_items(rng: random.Random, items: list[tuple[Any, Any]], kind: str) -> bytes:
    raw = [(packb(key), packb(value)) for key, value in items]
    index = rng.randrange(len(raw))
    key, value = items[index]
    declared: int | None = None
    if kind == "field_type":
        raw[index] = (raw[index][0], packb(_other_type(rng, value)))
    elif kind == "edge_number":
        raw[index] = (raw[index][0], rng.choice(EDGE_NUMBERS))
    elif kind == "add_key":
        keys = (packb(rng.choice(FIELD_NAMES)), packb("extra"), packb(b"view"), packb(1), b"\xc0", b"\x91\x01")
        new_key = rng.choice(keys)
        raw.insert(rng.randrange(len(raw) + 1), (new_key, random_raw_value(rng)))
    elif kind == "remove_key":
        del raw[index]
    elif kind == "bin_key" and type(key) is str:
        raw[index] = (packb(key.encode("utf-8")), raw[index][1])
    elif kind == "duplicate_key":
        raw.insert(rng.randrange(len(raw) + 1), (raw[index][0], random_raw_value(rng)))
    elif kind == "swap_type":
        type_index = next((i for i, (k, _) in enumerate(items) if k == "type"), index)
        number = rng.choice((0, 1, 2, 3, 5, 8, 10, 12, 13, 19, 20, 21, 22, 23, 24, 26, 27, 30, 31, 255, c.ID_MAX))
        raw[type_index] = (raw[type_index][0], packb(number))
    elif kind == "deep_nesting":
        raw[index] = (raw[index][0], deep_nesting(rng))
    elif kind == "huge_length":
        raw[index] = (raw[index][0], rng.choice(HUGE_HEADERS) + rng.randbytes(rng.randrange(8)))
    elif kind == "entry":
        lists = [i for i, (_, v) in enumerate(items) if type(v) is list]
        if lists:
            index = rng.choice(lists)
            raw[index] = (raw[index][0], _mutate_entries(rng, items[index][1]))
        else:
            raw[index] = (raw[index][0], packb([[random_number(rng) for _ in range(4)] + [b"op"]]))
    elif kind == "lying_header":
        declared = max(0, len(raw) + rng.choice((-2, -1, 1, 2, 100)))
    elif kind == "many_keys":
        for number in range(rng.randrange(10, 20)):
            raw.append((packb(f"k{number}"), packb(number)))
    elif kind == "reorder":  # valid, non-canonical: keys shuffled, every number and length at its widest
        shuffled = list(items)
        rng.shuffle(shuffled)
        raw = [(widen(k), widen(v)) for k, v in shuffled]
    else:
        raw[index] = (raw[index][0], random_raw_value(rng))
    return pack_map(raw, declared=declared)


def _other_type(rng: random.Random, value: Any) -> Any:
    for _ in range(8):
        other = random_value(rng)
        if type(other) is not type(value):
            return other
    return None if value is not None else True


def _mutate_entries(rng: random.Random, entries: list[Any]) -> bytes:
    """An entry list with one fault: an element of another type or at an edge, a short or long entry, a gap."""
    raws = [packb(e) for e in entries]
    if not entries or rng.random() < 0.15:
        raws.append(packb([random_number(rng) for _ in range(4)] + [b"op"]))
        return pack_array(raws)
    index = rng.randrange(len(entries))
    entry = entries[index]
    if type(entry) is not list:
        raws[index] = random_raw_value(rng)
        return pack_array(raws)
    parts = [packb(part) for part in entry]
    pick = rng.randrange(6)
    if pick == 0 and parts:
        parts[rng.randrange(len(parts))] = rng.choice(EDGE_NUMBERS)
    elif pick == 1 and parts:
        parts[rng.randrange(len(parts))] = random_raw_value(rng)
    elif pick == 2 and parts:
        del parts[rng.randrange(len(parts))]
    elif pick == 3:
        parts.append(packb(random_value(rng)))
    elif pick == 4 and len(parts) > 1:
        parts[1] = packb(random_number(rng))  # op_number out of sequence (usually)
    else:
        raws[index] = rng.choice(HUGE_HEADERS)
        return pack_array(raws)
    raws[index] = pack_array(parts)
    return pack_array(raws, declared=len(raws) + (rng.choice((-1, 1)) if rng.random() < 0.1 else 0))
