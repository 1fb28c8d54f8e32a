"""Fuzzing zvsr's trust boundaries: frame generators, and a live driver that throws them at a running cluster.

Theory of operation
-------------------
Every byte a zvsr process reads from a socket is untrusted (docs/protocol.md §10): bad input must be dropped
and counted, never crash a process, never lose or corrupt committed data. This module produces bad input and
checks that promise, at two levels:

- **frame generators** (`FrameGenerator`, and the mutators it is built of): payloads made from seeds — the
  golden vectors (`clients/testdata/vectors.json`: valid messages of every kind, non-canonical encodings,
  invalid inputs, coordination-app operations) and freshly encoded valid messages of every kind, plus
  request / reply batches (`zvsr.wire.batch`) for the client ports — that are
  mutated at the byte level (flips, truncation, insertion, splicing two messages, trailing bytes) and at the
  msgpack level (a field of the wrong type, numbers at the edges 0 / 2^64−1 / 2^64 / −1, keys added, removed
  or spelled as bin, deep nesting, huge declared lengths, a lying map header); and multipart shapes that are
  wrong for the socket (extra or missing empty delimiters, empty routing frames, thousands of frames), plus
  frames just under and just over each socket's MAXMSGSIZE. Everything is driven by one `random.Random`, so
  a seed reproduces a run's frames. The hypothesis tests (tests/test_fuzz_codec.py) drive the same mutators
  with hypothesis' `Random`.
- **the live driver** (`run_live_fuzz`): one thread per bound socket of a cluster — every replica's peer
  ROUTER, every replica's client ROUTER, the proxy's frontend — each sending its share of the frames from
  several DEALERs as fast as the receiver takes them (blocking sends, bounded by a send timeout), while a
  client workload runs through the proxy (`Workload`, the `Load` of tests/test_processes.py on keys of its
  own). On a peer port a DEALER with a random routing id only reaches the identity check, so the peer
  threads also send bursts from a DEALER whose routing id impersonates another member (``b"r1"``); only
  those frames reach the peer decoder. Afterwards it checks: every process is alive, the cluster still
  serves (a put and a get through the proxy), no acknowledged write is lost and no increment ran twice, the
  workload's history is linearizable (`zvsr.lincheck`), the bad-input counters of every replica (peer and
  client side) and of the proxy grew (status query), no decoder failed outside its contract (the node's
  ``(our bug)`` counters stay at zero) and every answer that came back was readable.

What the driver deliberately does not send: a *valid* replica message of the cluster's own cluster id and
epoch from an impersonated routing id. That is a forged protocol message, not bad input: VR tolerates crash
faults, not Byzantine ones, and routing ids are authenticated only with CurveZMQ (ARCHITECTURE §4). So the
cluster under test gets a random 64-bit cluster id, and fresh messages never carry it.

Connections end two ways. With `resets` (the default, and what a crashed or hostile peer does) a sender drops
a connection whenever it likes — after a burst, and with a TCP reset when a send timed out because the
replica's queue for it was full. That aborts replicas today: libzmq 4.3.5 asserts (``!_io_error``,
stream_engine_base.cpp:310) when a connection to a ROUTER with ZMTP heartbeats — the peer ROUTER — is reset
while the replica's receive queue for it is full (tests/test_fuzz_live.py reduces it to its trigger). Without
`resets`, peer-port connections are kept open until the replicas have drained them (their counters stop
growing) and only then closed, which avoids that trigger and lets the run check everything else.

Costs to know about. Impersonation is not free for the cluster: ROUTER_HANDOVER gives the impersonator the
real peer's routing id, and the real peer's messages on that link vanish until its ZMTP heartbeat times out
(~3 s) and it reconnects (see `zvsr.runtime.node`). Bursts are therefore spaced (`impersonation_interval_s`).
Oversized frames on the peer port are 256 MiB (MESSAGE_BYTES_MAX) and cost each replica about twice that in
memory for a moment; `huge=False` leaves them out.

`zvsr fuzz` (`fuzz_command`) starts its own local cluster (`zvsr.runtime.processes.ProcessCluster` in a
temporary directory), runs the driver, prints a summary and exits 0 only if every check passed.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
import secrets
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click
import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq

from zvsr import constants as c
from zvsr.protocol.messages import (
    ERROR_CODES,
    Commit,
    DoViewChange,
    Error,
    GetSnapshot,
    GetState,
    LogEntry,
    NewState,
    Prepare,
    PrepareOk,
    Recovery,
    RecoveryResponse,
    Redirect,
    Reply,
    Request,
    SnapshotChunk,
    StartView,
    StartViewChange,
)
from zvsr.runtime.config import ClusterConfig
from zvsr.wire.admin import encode_status_query
from zvsr.wire.codec import DecodeError, Message, decode_client_reply, encode

if TYPE_CHECKING:
    from zvsr.lincheck import CheckResult, Operation
    from zvsr.runtime.processes import ProcessCluster

Socket = zmq.Socket[bytes]

PEER: Final = "peer"  # a replica's peer ROUTER: [routing id][message]
CLIENT: Final = "client"  # a replica's client ROUTER: the REQ-compatible envelope
PROXY: Final = "proxy"  # the proxy's frontend ROUTER: the same envelope, also bare operations
PORTS: Final = (PEER, CLIENT, PROXY)

VECTORS_PATH: Final = Path(__file__).resolve().parent.parent / "clients" / "testdata" / "vectors.json"

REPLICA_KINDS: Final = (
    Prepare,
    PrepareOk,
    Commit,
    StartViewChange,
    DoViewChange,
    StartView,
    GetState,
    NewState,
    Recovery,
    RecoveryResponse,
    GetSnapshot,
    SnapshotChunk,
)
CLIENT_KINDS: Final = (Request, Reply, Redirect, Error)
ALL_KINDS: Final = REPLICA_KINDS + CLIENT_KINDS

# --- msgpack, byte by byte ------------------------------------------------------------------------------------

# Numbers at the edges, as raw msgpack. 2^64 has no msgpack integer encoding at all (uint64 is the widest), so
# it travels as a float64 — and as a uint64 followed by one byte too many (trailing bytes).
EDGE_NUMBERS: Final[tuple[bytes, ...]] = (
    b"\x00",  # 0
    b"\xcf" + b"\x00" * 8,  # 0 as uint64 (non-canonical, valid)
    b"\xcd\x00\x00",  # 0 as uint16
    b"\x01",
    b"\x0e",  # 14: the largest replica index
    b"\x0f",  # 15: REPLICAS_MAX
    b"\xce\xff\xff\xff\xff",  # 2^32 - 1
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
EDGE_INTS: Final = (0, 1, 14, 15, 2**32 - 1, 2**32, 2**53 + 1, c.ID_MAX - 1, c.ID_MAX)

# Container and string headers that declare far more than follows.
HUGE_HEADERS: Final[tuple[bytes, ...]] = (
    b"\xdd\xff\xff\xff\xff",  # array32 of 4 294 967 295
    b"\xdd\x00\x3d\x09\x00",  # array32 of LOG_ENTRIES_MAX
    b"\xdd\x00\x3d\x09\x01",  # array32 of LOG_ENTRIES_MAX + 1
    b"\xdc\xff\xff",  # array16
    b"\xdf\xff\xff\xff\xff",  # map32
    b"\xde\xff\xff",  # map16
    b"\xc6\xff\xff\xff\xff",  # bin32
    b"\xc6\x00\x01\x00\x01",  # bin32 of OPERATION_BYTES_MAX + 1
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

INTERESTING_BYTES: Final = (
    0x00, 0x01, 0x0F, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7,
    0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD3, 0xD4, 0xD8, 0xD9, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xE0,
    0xFF,
)  # fmt: skip

FIELD_NAMES: Final = (
    "type", "cluster", "epoch", "view", "replica", "op_number", "commit_number", "entries", "last_normal_view",
    "log", "nonce", "snapshot_op", "offset", "size", "checksum", "data", "client_id", "request_number",
    "operation", "result", "primary", "code", "message",
)  # fmt: skip


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


def container_bomb(size: int) -> bytes:
    """A Request-looking map of `size` bytes whose `client_id` is an array of empty arrays.

    Unpacked in one call, every byte of it becomes a Python list before the codec can look at the field:
    about 60 bytes of memory per input byte. The codec unpacks frames this big field by field instead (see
    `zvsr.wire.codec._unpack_streaming` and tests/test_fuzz_codec.py).
    """
    head = b"\x82\xa4type\x14\xa9client_id"
    per = min(c.LOG_ENTRIES_MAX, max(1, size))
    body_size = size - len(head) - 5
    chunks: list[bytes] = []
    while body_size > 0:
        count = min(per, body_size - 5) if body_size > per + 5 else body_size - 5
        if count <= 0:
            break
        chunks.append(b"\xdd" + struct.pack(">I", count) + b"\x90" * count)
        body_size -= count + 5
    return head + b"\xdd" + struct.pack(">I", len(chunks)) + b"".join(chunks)


def _array32(count: int, body: bytes) -> bytes:
    return b"\xdd" + struct.pack(">I", count) + body


def _log_frame(body: bytes) -> bytes:
    """A DoViewChange-looking map of only `type` and `log`: the codec must refuse it without building it."""
    return b"\x82\xa4type\x05\xa3log" + body


def _padded(size: int, unit: bytes, wrap: Callable[[int, bytes], bytes]) -> bytes:
    count = max(1, (size - 16) // len(unit))
    return wrap(count, unit * count)


# Hostile content for a frame of about `size` bytes, by shape: each is the cheapest way we know to make one
# input byte cost many bytes of Python objects if unpacked naively. tests/test_fuzz_codec.py bounds them all.
CONTENT_BOMBS: Final[dict[str, Callable[[int], bytes]]] = {
    "nested empty arrays": container_bomb,
    "empty maps": lambda size: _log_frame(_padded(size, b"\x80", _array32)),
    "two-character strings": lambda size: _log_frame(_padded(size, b"\xa2xy", _array32)),
    "three-byte ints": lambda size: _log_frame(_padded(size, b"\xcd\x01\x00", _array32)),
    "well-typed entries": lambda size: _log_frame(
        _padded(size, b"\x95" + b"\xcd\x01\x00" * 4 + b"\xc4\x00", _array32)
    ),
    "arrays of five empty arrays": lambda size: _log_frame(_padded(size, b"\x95\x90\x90\x90\x90\x90", _array32)),
    "deep five-arrays": lambda size: _log_frame(
        _array32(1, b"\x95\x90\x90\x90\x90" * max(1, (size - 16) // 5) + b"\x90")
    ),
}


def content_bomb(rng: random.Random, size: int) -> bytes:
    return CONTENT_BOMBS[rng.choice(sorted(CONTENT_BOMBS))](size)


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
    """Arrays or maps nested 2..20 000 deep (the app allows 64; msgpack's C unpacker stops at 1024)."""
    depth = rng.choice((2, 63, 64, 65, 100, 1000, 1023, 1024, 1025, 5000, 20_000))
    if rng.random() < 0.5:
        return b"\x91" * depth + b"\xc0"
    return b"\x81\xa1k" * depth + b"\xc0"


# --- seeds ------------------------------------------------------------------------------------------------------

DEFAULT_OPERATIONS: Final = (
    packb({"op": "get", "key": "a"}),
    packb({"op": "put", "key": "a", "value": 1}),
    packb({"op": "delete", "key": "a"}),
    packb({"op": "cas", "key": "a", "expected": None, "new": [1, {"x": b"y"}]}),
    packb({"op": "incr", "key": "n", "by": -3}),
    packb({"op": "lock", "name": "l", "owner": "o"}),
    packb({"op": "unlock", "name": "l", "owner": "o"}),
)


@dataclass(frozen=True)
class Seeds:
    """What mutations start from: valid encodings, invalid inputs and app operations (all bytes)."""

    messages: tuple[bytes, ...]  # valid messages of every kind (canonical and non-canonical encodings)
    invalid: tuple[bytes, ...]  # inputs a decoder refuses, one fault each
    operations: tuple[bytes, ...]  # coordination-app operations (msgpack values, some not)


@functools.lru_cache(maxsize=4)
def load_seeds(path: Path | None = None) -> Seeds:
    """The golden vectors as seeds; without the file (an installed package), a few operations only."""
    path = VECTORS_PATH if path is None else path
    if not path.is_file():
        return Seeds(messages=(), invalid=(), operations=DEFAULT_OPERATIONS)
    vectors = json.loads(path.read_text(encoding="utf-8"))
    messages = [bytes.fromhex(v["hex"]) for v in vectors.get("messages", [])]
    messages += [bytes.fromhex(v["hex"]) for v in vectors.get("noncanonical", [])]
    invalid = [bytes.fromhex(v["hex"]) for v in vectors.get("invalid", [])]
    operations = list(DEFAULT_OPERATIONS)
    for step in vectors.get("coordination", {}).get("sequence", []):
        operations.append(bytes.fromhex(step["op"]["hex"]))
        operations.append(bytes.fromhex(step["result"]["hex"]))
    return Seeds(messages=tuple(messages), invalid=tuple(invalid), operations=tuple(operations))


# --- fresh valid messages ---------------------------------------------------------------------------------------


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


def random_operation(rng: random.Random, seeds: Seeds | None = None) -> bytes:
    """An operation for a Request or a bare one for the proxy: a coordination op, mutated or not, or bytes."""
    seeds = load_seeds() if seeds is None else seeds
    pick = rng.random()
    if pick < 0.35:
        return rng.choice(seeds.operations)
    if pick < 0.6:
        return mutate_structure(rng, rng.choice(seeds.operations))
    if pick < 0.8:
        return mutate_bytes(rng, rng.choice(seeds.operations), seeds.operations)
    if pick < 0.9:
        return packb(random_value(rng))
    return rng.randbytes(rng.randrange(64))


def _entries(rng: random.Random, *, view: int, first: int, count: int, seeds: Seeds) -> tuple[LogEntry, ...]:
    return tuple(
        LogEntry(
            view=rng.randint(0, view),
            op_number=first + index,
            client_id=random_number(rng),
            request_number=random_number(rng),
            operation=rng.choice(seeds.operations) if rng.random() < 0.5 else rng.randbytes(rng.randrange(16)),
        )
        for index in range(count)
    )


def fresh_message(
    rng: random.Random,
    kind: type | None = None,
    *,
    avoid_cluster: int | None = None,
    seeds: Seeds | None = None,
) -> Message:
    """A valid message of `kind` (a random kind if None) with random fields; never of cluster `avoid_cluster`."""
    seeds = load_seeds() if seeds is None else seeds
    kind = rng.choice(ALL_KINDS) if kind is None else kind
    cluster = random_number(rng)
    if cluster == avoid_cluster:
        cluster = (cluster + 1) % (c.ID_MAX + 1)
    view = random_number(rng)
    header = {"cluster": cluster, "epoch": random_number(rng), "view": view, "replica": rng.randrange(15)}
    op_number = rng.randrange(8) if rng.random() < 0.8 else random_number(rng)
    commit_number = rng.randint(0, op_number)
    if kind is Prepare:
        count = rng.randint(1, 4)
        op_number = max(op_number, count)
        commit_number = rng.randint(0, op_number)
        entries = _entries(rng, view=view, first=op_number - count + 1, count=count, seeds=seeds)
        return Prepare(**header, op_number=op_number, commit_number=commit_number, entries=entries)
    if kind is PrepareOk:
        return PrepareOk(**header, op_number=op_number)
    if kind is Commit:
        return Commit(**header, commit_number=commit_number, op_number=op_number)
    if kind is StartViewChange:
        return StartViewChange(**header)
    if kind in (DoViewChange, StartView):
        op_number = rng.randrange(6)
        commit_number = rng.randint(0, op_number)
        kept = rng.randint(0, op_number)
        log = _entries(rng, view=view, first=op_number - kept + 1, count=kept, seeds=seeds)
        if kind is StartView:
            return StartView(**header, op_number=op_number, commit_number=commit_number, log=log)
        last_normal_view = rng.randint(0, view)
        return DoViewChange(
            **header, last_normal_view=last_normal_view, op_number=op_number, commit_number=commit_number, log=log
        )
    if kind is GetState:
        return GetState(**header, op_number=op_number)
    if kind is NewState:
        count = rng.randrange(4)
        op_number = max(op_number, count)
        commit_number = rng.randint(0, op_number)
        first = rng.randint(1, op_number - count + 1) if count else 1
        entries = _entries(rng, view=view, first=first, count=count, seeds=seeds)
        return NewState(**header, op_number=op_number, commit_number=commit_number, entries=entries)
    if kind is Recovery:
        return Recovery(**header, nonce=random_number(rng))
    if kind is RecoveryResponse:
        if rng.random() < 0.5:
            nonce = random_number(rng)
            return RecoveryResponse(**header, nonce=nonce, log=None, op_number=None, commit_number=None)
        op_number = rng.randrange(6)
        kept = rng.randint(0, op_number)
        log = _entries(rng, view=view, first=op_number - kept + 1, count=kept, seeds=seeds)
        commit_number = rng.randint(0, op_number)
        return RecoveryResponse(
            **header, nonce=random_number(rng), log=log, op_number=op_number, commit_number=commit_number
        )
    if kind is GetSnapshot:
        return GetSnapshot(**header, snapshot_op=random_number(rng), offset=random_number(rng))
    if kind is SnapshotChunk:
        data = rng.randbytes(rng.randrange(64))
        offset = rng.randrange(1 << 20)
        size = min(c.SNAPSHOT_BYTES_MAX, offset + len(data) + rng.randrange(1 << 20))
        return SnapshotChunk(
            **header,
            snapshot_op=random_number(rng),
            size=size,
            checksum=rng.randbytes(16),
            offset=offset,
            data=data,
        )
    if kind is Request:
        operation = random_operation(rng, seeds)[: c.OPERATION_BYTES_MAX]
        return Request(client_id=random_number(rng), request_number=random_number(rng), operation=operation)
    if kind is Reply:
        result = rng.choice(seeds.operations)
        return Reply(view=view, client_id=random_number(rng), request_number=random_number(rng), result=result)
    if kind is Redirect:
        return Redirect(
            view=view, primary=rng.randrange(15), client_id=random_number(rng), request_number=random_number(rng)
        )
    if kind is Error:
        message = "".join(chr(rng.choice((0x61, 0xE9, 0x1F600))) for _ in range(rng.randrange(12)))
        return Error(
            view=view,
            client_id=random_number(rng),
            request_number=random_number(rng),
            code=rng.choice(sorted(ERROR_CODES)),
            message=message,
        )
    raise TypeError(f"not a message kind: {kind!r}")


def fresh_batch(rng: random.Random, *, seeds: Seeds | None = None) -> bytes:
    """A valid RequestBatch (or, now and then, ReplyBatch) of `zvsr.wire.batch`: what a proxy sends a replica."""
    from zvsr.wire.batch import encode_reply_batch, encode_request_batch

    count = rng.choice((1, 2, 3, 8, 256)) if rng.random() < 0.95 else 256
    if rng.random() < 0.8:  # small operations, so that even 256 of them fit the client port's MAXMSGSIZE
        requests = [
            Request(client_id=random_number(rng), request_number=random_number(rng), operation=operation[:200])
            for operation in (random_operation(rng, seeds) for _ in range(count))
        ]
        return encode_request_batch([encode(request) for request in requests])
    kinds = (Reply, Redirect, Error)
    return encode_reply_batch([encode(fresh_message(rng, rng.choice(kinds), seeds=seeds)) for _ in range(count)])


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


# --- frames for each port ---------------------------------------------------------------------------------------


class FrameGenerator:
    """Fuzzed payloads and multipart messages for a port; deterministic for a seed.

    `payload(port)` is one frame's bytes; `frames(port)` is what a DEALER sends to that port — usually the
    right shape around a fuzzed payload, sometimes a wrong one. `stats` counts the strategies used.
    """

    def __init__(self, seed: int, *, seeds: Seeds | None = None, avoid_cluster: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.seeds = load_seeds() if seeds is None else seeds
        self.avoid_cluster = avoid_cluster
        self.stats: Counter[str] = Counter()
        # A pool of fresh valid encodings, renewed as it is used, so a fresh message costs little per frame.
        self._fresh: dict[str, list[bytes]] = {port: [] for port in PORTS}

    def fresh(self, port: str) -> bytes:
        """A valid encoding of a kind that belongs on `port` (mostly), of another cluster than ours."""
        pool = self._fresh[port]
        if len(pool) < 64 or self.rng.random() < 0.1:
            if port != PEER and self.rng.random() < 0.1:
                pool.append(fresh_batch(self.rng, seeds=self.seeds))
            else:
                pool.append(encode(self._fresh_message(port)))
            if len(pool) > 256:
                pool.pop(self.rng.randrange(len(pool)))
        return self.rng.choice(pool)

    def _fresh_message(self, port: str) -> Message:
        rng = self.rng
        if port == PEER:
            kind: type = rng.choice(REPLICA_KINDS) if rng.random() < 0.9 else rng.choice(CLIENT_KINDS)
        else:
            kind = Request if rng.random() < 0.7 else rng.choice(ALL_KINDS)
        return fresh_message(rng, kind, avoid_cluster=self.avoid_cluster, seeds=self.seeds)

    def seed(self, port: str) -> bytes:
        """A valid input to start mutating from: a vector or a fresh message."""
        if self.seeds.messages and self.rng.random() < 0.3:
            return self.rng.choice(self.seeds.messages)
        return self.fresh(port)

    def payload(self, port: str = PEER) -> bytes:
        rng = self.rng
        pick = rng.random()
        if pick < 0.0005:
            self.stats["container bomb"] += 1
            # The peer port takes frames up to MESSAGE_BYTES_MAX; the others refuse anything this big unread.
            sizes = (4096, 65_536, c.CLIENT_MESSAGE_BYTES_MAX) + ((1 << 20, 4 << 20) if port == PEER else ())
            return content_bomb(rng, rng.choice(sizes))
        if pick < 0.08:
            self.stats["random bytes"] += 1
            size = rng.choice((0, 1, 2, 5, 16, 64, 256, 1024)) if rng.random() < 0.95 else rng.randrange(66_000)
            return rng.randbytes(size)
        if pick < 0.13:
            self.stats["random msgpack"] += 1
            return packb(random_value(rng))
        if pick < 0.2:
            self.stats["valid"] += 1
            return self.seed(port)
        if pick < 0.23 and self.seeds.invalid:
            self.stats["invalid vector"] += 1
            return rng.choice(self.seeds.invalid)
        if pick < 0.26:
            self.stats["status query"] += 1
            query = encode_status_query()
            return query if rng.random() < 0.5 else mutate_bytes(rng, query)
        if pick < 0.3 and port != PEER:
            self.stats["operation"] += 1
            operation = random_operation(rng, self.seeds)
            if port == PROXY and rng.random() < 0.5:
                return operation  # a bare operation
            request = Request(
                client_id=random_number(rng),
                request_number=random_number(rng),
                operation=operation[: c.OPERATION_BYTES_MAX],
            )
            return encode(request)
        if pick < 0.7:
            self.stats["structure mutation"] += 1
            data = mutate_structure(rng, self.seed(port))
            if rng.random() < 0.25:
                data = mutate_bytes(rng, data, self.seeds.messages)
            return data
        self.stats["byte mutation"] += 1
        data = self.seed(port)
        for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
            data = mutate_bytes(rng, data, self.seeds.messages)
        return data

    def frames(self, port: str) -> list[bytes]:
        """One multipart message for a DEALER to send to `port` (the ROUTER adds the routing id)."""
        rng = self.rng
        payload = self.payload(port)
        pick = rng.random()
        if port == PEER:
            if pick < 0.85:
                return [payload]
            self.stats["wrong shape"] += 1
            if pick < 0.89:
                return [b"", payload]
            if pick < 0.93:
                return [payload, rng.choice((payload, b""))]
            if pick < 0.96:
                return [rng.randbytes(rng.randrange(4)) for _ in range(rng.randint(3, 10))]
            if pick < 0.98:
                return self._many_frames()
            return [b""]
        if pick < 0.45:
            return [b"", payload]  # REQ
        if pick < 0.75:
            return [payload]  # raw DEALER
        if pick < 0.81:  # through brokers: valid up to 6 hops (8 frames with the identity), refused beyond
            hops = [rng.randbytes(rng.randint(1, 8)) for _ in range(rng.randint(1, 7))]
            return [*hops, b"", payload]
        self.stats["wrong shape"] += 1
        if pick < 0.85:
            return [b"", b"", payload]  # an empty routing frame
        if pick < 0.89:
            return [payload, payload or b"x", payload]  # no delimiter before the payload
        if pick < 0.92:
            return [b"", payload, b""]
        if pick < 0.96:
            return self._many_frames()
        return rng.choice(([b""], [b"", b""], [b"", b"", b""]))

    def _many_frames(self) -> list[bytes]:
        rng = self.rng
        count = rng.randint(9, 64) if rng.random() < 0.9 else rng.choice((1000, 10_000))
        frames = [b"x"] * (count - 2) + [b"", encode_status_query()]
        return frames


def limit_payloads(limit: int, *, size_delta: Sequence[int] = (-1, 0, 1)) -> list[bytes]:
    """Frames of `limit` + delta bytes that look like a Request whose operation fills them (bin32).

    A frame of at most `limit` bytes passes libzmq's MAXMSGSIZE and reaches the decoder (which refuses it: the
    operation is too large); one byte more makes libzmq drop the sender's connection.
    """
    head = b"\x84\xa4type\x14\xa9client_id\x01\xaerequest_number\x01\xa9operation"
    frames = []
    for delta in size_delta:
        size = limit + delta
        body = size - len(head) - 5
        frames.append(head + b"\xc6" + struct.pack(">I", body) + bytes(body))
    return frames


@functools.lru_cache(maxsize=1)
def _peer_limit_buffer() -> bytes:
    """MESSAGE_BYTES_MAX + 1 bytes: a Prepare-looking map whose last field declares a bin of the rest."""
    head = b"\x88\xa4type\x01\xa7cluster\x07\xa5epoch\x01\xa4view\x01\xa7replica\x01\xa9op_number\x01"
    head += b"\xadcommit_number\x01\xa7entries"
    size = c.MESSAGE_BYTES_MAX + 1
    body = size - len(head) - 5
    return head + b"\xc6" + struct.pack(">I", body) + bytes(body)


# --- the workload: the Load of tests/test_processes.py, on keys of its own ---------------------------------------


@dataclass
class Workload:
    """Clients writing through the proxy while the fuzz runs, with their history recorded for the checks.

    Each client puts increasing numbers to its own key, reads it back and increments a shared counter; keys
    live under `prefix`, which no fuzzed operation can name.
    """

    proxy: str
    clients: int = 4
    prefix: str = field(default_factory=lambda: f"fuzz-load/{secrets.token_hex(8)}/")
    timeout_ms: int = 8000
    history: list[Operation] = field(default_factory=list)
    acknowledged_puts: dict[str, Any] = field(default_factory=dict)
    acknowledged_increments: int = 0
    unknown_increments: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.monotonic)
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def counter_key(self) -> str:
        return f"{self.prefix}counter"

    def run(self) -> None:
        self.threads = [
            threading.Thread(target=self._client, args=(n,), name=f"fuzz-load-{n}", daemon=True)
            for n in range(self.clients)
        ]
        for thread in self.threads:
            thread.start()

    def finish(self, timeout_s: float = 30) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=timeout_s)

    def acknowledged(self) -> int:
        from zvsr.lincheck import UNKNOWN

        with self.lock:
            return sum(1 for op in self.history if op.output is not UNKNOWN)

    def _client(self, number: int) -> None:
        from zvsr.client import Client, Timeout, ZvsrError
        from zvsr.lincheck import UNKNOWN

        key = f"{self.prefix}k{number}"
        with Client(self.proxy, timeout_ms=self.timeout_ms) as client:
            for sequence in itertools.count():
                if self.stop.is_set():
                    return
                operation: dict[str, Any]
                if sequence % 3 == 2:
                    operation = {"op": "incr", "key": self.counter_key, "by": 1}
                elif sequence % 3 == 1:
                    operation = {"op": "get", "key": key}
                else:
                    operation = {"op": "put", "key": key, "value": sequence}
                call = time.monotonic() - self.started
                try:
                    result = client.execute(operation)
                except Timeout:
                    self._record(number, operation, UNKNOWN, call, None)
                    continue
                except ZvsrError as error:
                    self._record(number, operation, UNKNOWN, call, None)
                    with self.lock:
                        self.errors[error.code] += 1
                    time.sleep(0.05)
                    continue
                self._record(number, operation, result, call, time.monotonic() - self.started)

    def _record(
        self, number: int, operation: dict[str, Any], result: Any, call: float, done: float | None
    ) -> None:
        from zvsr.lincheck import UNKNOWN, Operation

        with self.lock:
            if result is UNKNOWN or done is None:
                self.history.append(Operation(number, operation, UNKNOWN, call))
                if operation["op"] == "incr":
                    self.unknown_increments += 1
                return
            self.history.append(Operation(number, operation, result, call, done))
            if operation["op"] == "put":
                self.acknowledged_puts[operation["key"]] = operation["value"]
            elif operation["op"] == "incr":
                self.acknowledged_increments += 1

    def lost_writes(self, timeout_ms: int = 10_000) -> list[str]:
        """Acknowledged writes the cluster no longer has (`check_after_load` of tests/test_processes.py)."""
        from zvsr.client import Client

        lost = []
        with Client(self.proxy, timeout_ms=timeout_ms) as client:
            counter = client.get(self.counter_key) or 0
            low, high = self.acknowledged_increments, self.acknowledged_increments + self.unknown_increments
            if not low <= counter <= high:
                lost.append(f"counter is {counter}, not in {low}..{high} (acknowledged..acknowledged+unknown)")
            for key, value in self.acknowledged_puts.items():
                # A later put in flight at the end (outcome unknown) may have won; an older value never.
                stored = client.get(key)
                if stored is None or stored < value:
                    lost.append(f"acknowledged write {key}={value} lost (now {stored!r})")
        return lost

    def write_history(self, path: Path) -> None:
        """The history as JSON lines in the `zvsr` format of `zvsr.lincheck` (`zvsr lincheck --format zvsr`)."""
        with self.lock:
            history = list(self.history)
        with open(path, "w", encoding="utf-8") as out:
            for op in history:
                record: dict[str, Any] = {"client": op.client_id, "op": op.input, "call": op.call}
                if not op.pending:
                    record["result"] = op.output
                    record["return"] = op.return_
                out.write(json.dumps(record, default=repr) + "\n")

    def linearizability(self, timeout_s: float = 60) -> CheckResult:
        from zvsr.lincheck import ZvsrModel, check

        with self.lock:
            history = list(self.history)
        return check(history, ZvsrModel(), timeout_s=timeout_s)


# --- the live driver --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One bound socket under fire."""

    label: str  # "peer r0", "client r0", "proxy"
    port: str  # PEER, CLIENT or PROXY
    endpoint: str
    replica: int | None  # the replica that binds it (None for the proxy)


@dataclass
class TargetStats:
    label: str
    endpoint: str
    sent: int = 0  # multipart messages accepted by libzmq (each one counts as one frame of the budget)
    impersonated: int = 0  # of those, sent with another member's routing id (peer ports)
    bursts: int = 0
    oversized: int = 0  # frames at or beyond the socket's MAXMSGSIZE
    send_timeouts: int = 0
    abandoned: int = 0  # frames of the budget not sent because the target's process died
    answers: int = 0
    unreadable_answers: int = 0
    unreadable_examples: list[str] = field(default_factory=list)
    strategies: Counter[str] = field(default_factory=Counter)
    failure: str | None = None  # the sender thread itself failed (our bug, reported as a problem)
    elapsed_s: float = 0.0


@dataclass
class FuzzReport:
    frames: int
    seed: int
    replicas: int
    elapsed_s: float = 0.0
    fuzz_elapsed_s: float = 0.0
    fuzz_started_s: float = 0.0  # when the fuzz started, in seconds after the run started
    targets: list[TargetStats] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    serves: bool = False
    serve_problem: str | None = None
    acknowledged_ops: int = 0
    acknowledged_during_fuzz: int = 0
    workload_errors: dict[str, int] = field(default_factory=dict)
    lost_writes: list[str] = field(default_factory=list)
    writes_checked: bool = False
    linearizable: str = "not checked"  # "ok", "illegal", "unknown"
    linearizability_summary: str = ""
    bad_input_before: dict[str, dict[str, int]] = field(default_factory=dict)
    bad_input_after: dict[str, dict[str, int]] = field(default_factory=dict)
    decoder_bugs: dict[str, dict[str, int]] = field(default_factory=dict)
    log_problems: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def sent(self) -> int:
        return sum(t.sent for t in self.targets)

    def summary(self) -> str:
        rate = self.sent / self.fuzz_elapsed_s if self.fuzz_elapsed_s else 0.0
        lines = [
            f"zvsr fuzz: {self.sent} frames sent (budget {self.frames}), seed {self.seed}, "
            f"{self.replicas} replicas, {self.elapsed_s:.1f} s in all, fuzzing {self.fuzz_elapsed_s:.1f} s "
            f"from +{self.fuzz_started_s:.1f} s ({rate:,.0f} frames/s)",
            "frames sent per target:",
        ]
        for t in self.targets:
            extra = []
            if t.impersonated:
                extra.append(f"{t.impersonated} impersonating a member in {t.bursts} bursts")
            if t.oversized:
                extra.append(f"{t.oversized} at/over MAXMSGSIZE")
            if t.answers:
                extra.append(f"{t.answers} answers, {t.unreadable_answers} unreadable")
            if t.send_timeouts:
                extra.append(f"{t.send_timeouts} send timeouts")
            if t.abandoned:
                extra.append(f"{t.abandoned} not sent: the target died")
            if t.failure:
                extra.append(f"SENDER FAILED: {t.failure}")
            lines.append(f"  {t.label:<10} {t.sent:>9}  {t.endpoint}  {'; '.join(extra)}")
        lines.append(f"crashes: {len(self.crashes)}" + (f" ({'; '.join(self.crashes)})" if self.crashes else ""))
        lost = len(self.lost_writes) if self.writes_checked else "not checked (cluster unreadable)"
        lines.append(
            f"lost writes: {lost} (acknowledged ops {self.acknowledged_ops}, "
            f"{self.acknowledged_during_fuzz} while fuzzing; workload errors {dict(self.workload_errors) or 0})"
        )
        for problem in self.lost_writes[:10]:
            lines.append(f"  {problem}")
        verdict = {"ok": "yes", "illegal": "NO"}.get(self.linearizable, self.linearizable)
        lines.append(f"linearizable: {verdict} ({self.linearizability_summary})")
        serves = "yes" if self.serves else f"NO: {self.serve_problem}"
        lines.append(f"cluster serves after the fuzz: {serves}")
        lines.append("bad-input counters (before -> after):")
        for name in sorted(self.bad_input_after):
            before, after = self.bad_input_before.get(name, {}), self.bad_input_after[name]
            parts = [f"{side} {before.get(side, 0)} -> {after[side]}" for side in sorted(after)]
            lines.append(f"  {name:<6} {', '.join(parts)}")
        bugs = {name: counts for name, counts in self.decoder_bugs.items() if counts}
        lines.append(f"decoder failures outside the contract ('our bug' counters): {bugs or 0}")
        if self.log_problems:
            lines.append(f"log lines that point at a bug: {len(self.log_problems)}")
            lines.extend(f"  {line}" for line in self.log_problems[:10])
        strategies: Counter[str] = Counter()
        for t in self.targets:
            strategies.update(t.strategies)
        lines.append("payload strategies: " + ", ".join(f"{k} {v}" for k, v in strategies.most_common()))
        lines.append("result: " + ("PASS" if self.ok else "FAIL: " + "; ".join(self.problems)))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "frames": self.frames,
            "sent": self.sent,
            "seed": self.seed,
            "replicas": self.replicas,
            "elapsed_s": round(self.elapsed_s, 3),
            "fuzz_elapsed_s": round(self.fuzz_elapsed_s, 3),
            "targets": [
                {
                    "label": t.label,
                    "endpoint": t.endpoint,
                    "sent": t.sent,
                    "impersonated": t.impersonated,
                    "bursts": t.bursts,
                    "oversized": t.oversized,
                    "send_timeouts": t.send_timeouts,
                    "abandoned": t.abandoned,
                    "answers": t.answers,
                    "unreadable_answers": t.unreadable_answers,
                    "unreadable_examples": t.unreadable_examples,
                    "failure": t.failure,
                    "strategies": dict(t.strategies),
                }
                for t in self.targets
            ],
            "crashes": self.crashes,
            "serves": self.serves,
            "acknowledged_ops": self.acknowledged_ops,
            "acknowledged_during_fuzz": self.acknowledged_during_fuzz,
            "workload_errors": self.workload_errors,
            "lost_writes": self.lost_writes,
            "writes_checked": self.writes_checked,
            "linearizable": self.linearizable,
            "linearizability_summary": self.linearizability_summary,
            "bad_input_before": self.bad_input_before,
            "bad_input_after": self.bad_input_after,
            "decoder_bugs": self.decoder_bugs,
            "log_problems": self.log_problems,
            "problems": self.problems,
        }


def bad_input_counts(answer: dict[str, Any] | None) -> dict[str, int]:
    """From a status answer: bad input counted on each side (replica: peer, client; proxy: frontend)."""
    counters: dict[str, int] = {} if answer is None else dict(answer.get("counters") or {})
    if answer is not None and answer.get("role") == "proxy":
        return {"frontend": sum(v for k, v in counters.items() if str(k).startswith("bad request: "))}
    peer = sum(
        v
        for k, v in counters.items()
        if str(k).startswith("peer: ") or k == "on_message: other cluster or epoch"
    )
    client = sum(
        v for k, v in counters.items() if str(k).startswith(("client: bad envelope", "client: decode error"))
    )
    return {"peer": peer, "client": client}


def decoder_bug_counts(answer: dict[str, Any] | None) -> dict[str, int]:
    """Counters a node keeps when a decoder raised something other than DecodeError (`(our bug)`)."""
    counters: dict[str, int] = {} if answer is None else dict(answer.get("counters") or {})
    return {str(k): v for k, v in counters.items() if "our bug" in str(k)}


def _readable_answer(port: str, payload: bytes) -> str | None:
    """None if an answer from `port` is well formed, else what is wrong with it."""
    from zvsr.wire.batch import decode_reply_batch, is_reply_batch

    if port == CLIENT and is_reply_batch(payload):  # a replica answers a RequestBatch with ReplyBatches
        try:
            elements = decode_reply_batch(payload)
        except DecodeError as error:
            return f"{error}: {payload[:60]!r}"
        return next((p for p in (_readable_answer(port, e) for e in elements) if p is not None), None)
    try:
        value = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as error:
        return f"not msgpack ({type(error).__name__}): {payload[:40]!r}"
    if port == PROXY and type(value) is not dict:
        return None  # a bare result value
    if type(value) is not dict:
        return f"not a map: {payload[:40]!r}"
    kind = value.get("type")
    if port == PROXY and kind is None and set(value) >= {"error", "message"}:
        return None  # a legacy error map
    if port == PROXY and kind not in (21, 22, 23, 31):
        return None  # a bare result that happens to be a map
    if kind == 31:
        return None
    if kind == 23 and set(value) == {"type", "code", "message"}:
        return None  # the bare error: "could not read what you sent"
    try:
        decode_client_reply(payload)
    except DecodeError as error:
        return f"{error}: {payload[:60]!r}"
    return None


class _TargetDied(Exception):
    """The process behind a target is gone: the rest of its frames are not sent (reported as abandoned)."""


def _target_alive(cluster: ProcessCluster, target: Target) -> bool:
    process = cluster.proxy if target.replica is None else cluster.nodes.get(target.replica)
    return process is None or process.poll() is None


class _Sender:
    """One thread's worth of fuzz: its target, its sockets, its frames."""

    def __init__(
        self,
        driver: _Driver,
        target: Target,
        quota: int,
        seed: int,
    ) -> None:
        self.driver = driver
        self.target = target
        self.quota = quota
        self.generator = FrameGenerator(seed, avoid_cluster=driver.cluster_id)
        self.rng = random.Random(seed ^ 0x5EED)
        self.stats = TargetStats(label=target.label, endpoint=target.endpoint)
        self.sockets: list[Socket] = []
        # Peer-port sockets kept open until the replicas drained (without `resets`): see `_Sender.release`.
        self.parked: list[Socket] = []

    def _dealer(self, identity: bytes | None = None, *, linger_ms: int = 2000) -> Socket:
        socket: Socket = self.driver.context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, linger_ms)
        socket.setsockopt(zmq.SNDTIMEO, self.driver.send_timeout_ms)
        socket.setsockopt(zmq.MAXMSGSIZE, c.CLIENT_REPLY_BYTES_MAX)
        socket.setsockopt(zmq.ROUTING_ID, identity if identity is not None else self._random_identity())
        socket.connect(self.target.endpoint)
        return socket

    def _random_identity(self) -> bytes:
        size = self.rng.choice((1, 2, 5, 16, 255))
        return bytes([self.rng.randrange(1, 256)]) + self.rng.randbytes(size - 1)

    def _send(self, socket: Socket, frames: Sequence[bytes | memoryview], *, copy: bool = True) -> bool:
        try:
            socket.send_multipart(frames, copy=copy)
        except zmq.Again:
            self.stats.send_timeouts += 1
            if not self.driver.alive(self.target):
                raise _TargetDied() from None
            return False
        self.stats.sent += 1
        return True

    def run(self) -> None:
        started = time.monotonic()
        try:
            self._run()
        except _TargetDied:
            self.stats.abandoned = self.quota - self.stats.sent
        except Exception as error:  # a bug of the fuzzer: report it rather than hide it in a thread
            self.stats.failure = f"{type(error).__name__}: {error}"
        finally:
            for socket in self.sockets:
                self.release(socket, linger_ms=2000)
            self.sockets = []
            self.stats.strategies = self.generator.stats
            self.stats.elapsed_s = time.monotonic() - started

    def _run(self) -> None:
        driver = self.driver
        self._send_oversized()
        self.sockets = [self._dealer() for _ in range(driver.sockets_per_target)]
        if self.target.port == PEER:
            self._run_peer()
            return
        for number in itertools.count():
            if self.stats.sent >= self.quota:
                break
            socket = self.sockets[number % len(self.sockets)]
            if not self._send(socket, self.generator.frames(self.target.port)):
                self._replace(socket)
            if number % 32 == 0:
                self._drain()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and self._drain():
            pass

    def _run_peer(self) -> None:
        driver = self.driver
        members = [i for i in range(driver.replica_count) if i != self.target.replica]
        last_burst = -math.inf
        number = 0
        paced_from, paced_sent = time.monotonic(), self.stats.sent
        while self.stats.sent < self.quota:
            if driver.peer_rate and self.stats.sent % 20 == 0:
                ahead = (self.stats.sent - paced_sent) / driver.peer_rate - (time.monotonic() - paced_from)
                if ahead > 0:
                    time.sleep(ahead)
            if members and driver.impersonation_burst and time.monotonic() - last_burst >= driver.impersonation_s:
                self._burst(rng_choice(self.rng, members))
                last_burst = time.monotonic()
                continue
            socket = self.sockets[number % len(self.sockets)]
            number += 1
            if not self._send(socket, self.generator.frames(PEER)):
                self._replace(socket)

    def _burst(self, member: int) -> None:
        """Frames from a DEALER whose routing id is `member`'s: they reach the peer decoder (see module doc)."""
        from zvsr.runtime.node import routing_id

        socket = self._dealer(routing_id(member))
        self.stats.bursts += 1
        try:
            for number in range(min(self.driver.impersonation_burst, self.quota - self.stats.sent)):
                if self.driver.peer_rate and number % 20 == 0:
                    time.sleep(20 / self.driver.peer_rate)
                if not self._send(socket, self.generator.frames(PEER)):
                    break
                self.stats.impersonated += 1
        finally:
            self.release(socket, linger_ms=2000)

    def _send_oversized(self) -> None:
        """Frames just under, at and just over the target's MAXMSGSIZE, each on a fresh connection."""
        port = self.target.port
        frames: list[tuple[bytes | memoryview, bytes | None]] = []
        if port == PEER and not self.driver.huge:
            return
        if port == PEER:
            from zvsr.runtime.node import routing_id

            members = [i for i in range(self.driver.replica_count) if i != self.target.replica]
            identity = routing_id(members[0]) if members else None
            buffer = memoryview(_peer_limit_buffer())
            frames = [(buffer[: c.MESSAGE_BYTES_MAX], identity), (buffer, identity)]
        else:
            limit = c.CLIENT_MESSAGE_BYTES_MAX if port == CLIENT else c.PROXY_FRAME_BYTES_MAX
            frames = [(payload, None) for payload in limit_payloads(limit)]
        for payload, identity in frames:
            socket = self._dealer(identity, linger_ms=20_000)
            try:
                shape: list[bytes | memoryview] = [payload] if port == PEER else [b"", payload]
                if self._send(socket, shape, copy=len(payload) < 1 << 20):
                    self.stats.oversized += 1
                    if port == PEER and identity is not None:
                        self.stats.impersonated += 1
            finally:
                self.release(socket, linger_ms=20_000)

    def _replace(self, socket: Socket) -> None:
        """A socket whose send timed out (the receiver's queue for it is full) is dropped for a new one: with
        an abrupt reset (TCP RST, what a crashed or hostile peer does) unless `resets` is off."""
        index = self.sockets.index(socket)
        self.release(socket, linger_ms=0)
        self.sockets[index] = self._dealer()

    def release(self, socket: Socket, *, linger_ms: int) -> None:
        """Close a socket we are done with — at once with `resets`; else a peer-port socket is parked until
        the driver has seen the replicas drain their queues (closing a connection while a replica's queue for
        it is full can abort the replica: libzmq's `!_io_error` assertion, see the module docstring)."""
        if self.driver.resets:
            socket.close(linger=linger_ms)
        elif self.target.port == PEER:
            self.parked.append(socket)
        else:
            socket.close(linger=max(linger_ms, 2000))

    def _drain(self) -> int:
        """Read the answers that came back (client ports and proxy); check each is readable."""
        received = 0
        for socket in self.sockets:
            while True:
                try:
                    frames = socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                received += 1
                self.stats.answers += 1
                problem = _readable_answer(self.target.port, frames[-1])
                if problem is not None:
                    self.stats.unreadable_answers += 1
                    if len(self.stats.unreadable_examples) < 5:
                        self.stats.unreadable_examples.append(problem)
        return received


def rng_choice(rng: random.Random, items: Sequence[int]) -> int:
    return items[rng.randrange(len(items))]


@dataclass
class _Driver:
    context: zmq.Context[Socket]
    cluster_id: int
    replica_count: int
    huge: bool
    sockets_per_target: int
    send_timeout_ms: int
    impersonation_s: float
    impersonation_burst: int
    resets: bool
    peer_rate: float | None
    alive: Callable[[Target], bool] = lambda _: True  # False once the process behind a target died


def endpoints_of(config: ClusterConfig) -> list[Target]:
    """Every bound socket of the cluster in `config`: peer and client ROUTERs of each replica, the proxy."""
    targets = [Target(f"peer r{i}", PEER, a.peer, i) for i, a in enumerate(config.replicas)]
    targets += [Target(f"client r{i}", CLIENT, a.client, i) for i, a in enumerate(config.replicas)]
    if config.proxy:
        targets.append(Target("proxy", PROXY, config.proxy, None))
    return targets


def _status(endpoint: str, context: zmq.Context[Socket], timeout_ms: int = 2000) -> dict[str, Any] | None:
    from zvsr.runtime.status import query

    return query(endpoint, timeout_ms=timeout_ms, context=context)


def run_live_fuzz(
    cluster: ProcessCluster | ClusterConfig,
    frames: int,
    seed: int,
    *,
    workload_clients: int = 4,
    huge: bool = True,
    sockets_per_target: int = 3,
    send_timeout_ms: int = 5000,
    impersonation_interval_s: float = 3.0,
    impersonation_burst: int = 2000,
    resets: bool = True,
    peer_rate: float | None = None,
    warm_up_ops: int = 20,
    after_ops: int = 20,
    lincheck_timeout_s: float = 60,
    history_path: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> FuzzReport:
    """Throw `frames` fuzzed frames at every bound socket of a running cluster under a client workload; check.

    `cluster` is a `ProcessCluster` (its processes are checked for crashes and its logs for decoder bugs) or
    just the `ClusterConfig` of a running cluster (then only what the sockets tell). See the module docstring
    for what is sent and checked; the report's `problems` lists every failed check (empty: all passed).
    `history_path`: where to write the workload's history (JSON lines, `zvsr lincheck --format zvsr`).
    """
    from zvsr.client import Client

    processes = None if isinstance(cluster, ClusterConfig) else cluster
    config = cluster if isinstance(cluster, ClusterConfig) else cluster.config
    say = progress or (lambda _: None)
    report = FuzzReport(frames=frames, seed=seed, replicas=len(config.replicas))
    started = time.monotonic()
    context: zmq.Context[Socket] = zmq.Context()
    targets = endpoints_of(config)
    status_endpoints = {f"r{i}": a.client for i, a in enumerate(config.replicas)}
    if config.proxy:
        status_endpoints["proxy"] = config.proxy
    deaths: dict[str, float] = {}
    watching = threading.Event()
    if processes is not None:
        threading.Thread(
            target=_watch_processes, args=(processes, deaths, started, watching), name="fuzz watch", daemon=True
        ).start()
    try:
        for name, endpoint in status_endpoints.items():
            report.bad_input_before[name] = bad_input_counts(_status(endpoint, context))
        workload = Workload(config.proxy, clients=workload_clients) if workload_clients and config.proxy else None
        if workload is not None:
            workload.run()
            _wait(lambda: workload.acknowledged() >= warm_up_ops, 30)
            acknowledged_before = workload.acknowledged()
            say(f"workload running ({acknowledged_before} ops acknowledged); fuzzing")
        driver = _Driver(
            context=zmq.Context(),
            cluster_id=config.cluster_id,
            replica_count=len(config.replicas),
            huge=huge,
            sockets_per_target=sockets_per_target,
            send_timeout_ms=send_timeout_ms,
            impersonation_s=impersonation_interval_s,
            impersonation_burst=impersonation_burst,
            resets=resets,
            peer_rate=peer_rate,
        )
        if processes is not None:
            driver.alive = functools.partial(_target_alive, processes)
        share, extra = divmod(frames, len(targets))
        senders = [
            _Sender(driver, target, share + (1 if index < extra else 0), seed * 1000 + index)
            for index, target in enumerate(targets)
        ]
        threads = [threading.Thread(target=s.run, name=f"fuzz {s.target.label}", daemon=True) for s in senders]
        fuzz_started = time.monotonic()
        report.fuzz_started_s = fuzz_started - started
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            deadline = time.monotonic() + 10
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            sent = sum(s.stats.sent for s in senders)
            say(f"{sent}/{frames} frames sent, {time.monotonic() - fuzz_started:.0f} s")
        parked = [socket for sender in senders for socket in sender.parked]
        if parked:  # wait until the replicas took everything, then close (see _Sender.release)
            say(f"waiting for the replicas to drain before closing {len(parked)} peer-port sockets")
            _wait_until_drained(status_endpoints, context)
            for socket in parked:
                socket.close(linger=0)
        driver.context.term()  # waits for what the sockets still hold (their linger)
        report.fuzz_elapsed_s = time.monotonic() - fuzz_started
        report.targets = [s.stats for s in senders]
        say(f"fuzz done in {report.fuzz_elapsed_s:.1f} s; checking")

        if workload is not None:
            during = workload.acknowledged() - acknowledged_before
            report.acknowledged_during_fuzz = during
            wanted = acknowledged_before + during + after_ops
            resumed = _wait(lambda: workload.acknowledged() >= wanted, 10 if deaths else 60)
            workload.finish()
            if history_path is not None:
                workload.write_history(history_path)
            report.acknowledged_ops = workload.acknowledged()
            report.workload_errors = dict(workload.errors)
            if not resumed:
                report.problems.append(f"the workload did not complete {after_ops} more ops after the fuzz")
        if processes is not None:
            report.crashes = [f"{name} at +{when:.1f} s" for name, when in sorted(deaths.items())]
            report.crashes += [name for name in _crashes(processes) if name not in deaths]
        replicas_dead = sum(1 for name in report.crashes if name.startswith("replica "))
        quorum_lost = replicas_dead > (len(config.replicas) - 1) // 2
        if quorum_lost:  # nothing can answer: say so instead of waiting for timeouts
            report.serve_problem = f"{replicas_dead} of {len(config.replicas)} replicas crashed"
        else:
            report.serves, report.serve_problem = _serves(config, Client)
        if workload is not None:
            if quorum_lost:
                report.problems.append("acknowledged writes not checked: a majority of the replicas crashed")
            else:
                try:
                    report.lost_writes = workload.lost_writes()
                    report.writes_checked = True
                except Exception as error:  # the cluster could not be read back: that is a failed check too
                    report.problems.append(f"cannot read the writes back: {type(error).__name__}: {error}")
            verdict = workload.linearizability(lincheck_timeout_s)
            report.linearizable = verdict.verdict
            report.linearizability_summary = verdict.summary()

        def counted() -> bool:
            report.bad_input_after = {}
            report.decoder_bugs = {}
            for name, endpoint in status_endpoints.items():
                answer = _status(endpoint, context)
                report.bad_input_after[name] = bad_input_counts(answer)
                report.decoder_bugs[name] = decoder_bug_counts(answer)
            return all(
                report.bad_input_after[name][side] > report.bad_input_before.get(name, {}).get(side, 0)
                for name in status_endpoints
                for side in report.bad_input_after[name]
            )

        grew = _wait(counted, 2 if quorum_lost else 15, interval_s=0.5)
        if processes is not None:
            report.log_problems = _log_problems(processes)
    finally:
        watching.set()
        context.term()
    report.elapsed_s = time.monotonic() - started
    _judge(report, grew=grew, workload=workload is not None)
    return report


def _wait_until_drained(endpoints: dict[str, str], context: zmq.Context[Socket], timeout_s: float = 60) -> None:
    """Until the bad-input counters of every replica stopped growing (for a second): they took everything."""
    previous: dict[str, dict[str, int]] = {}

    def settled() -> bool:
        nonlocal previous
        current = {name: bad_input_counts(_status(endpoint, context)) for name, endpoint in endpoints.items()}
        done, previous = current == previous, current
        return done

    _wait(settled, timeout_s, interval_s=1.0)


def _wait(condition: Callable[[], bool], timeout_s: float, *, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)


def _watch_processes(
    cluster: ProcessCluster, deaths: dict[str, float], started: float, done: threading.Event
) -> None:
    """Note when each process of `cluster` died (seconds since `started`), until `done` is set."""
    while not done.wait(0.2):
        for name in _crashes(cluster):
            deaths.setdefault(name, time.monotonic() - started)


def _crashes(cluster: ProcessCluster) -> list[str]:
    dead = [f"replica {i} exited with {p.returncode}" for i, p in cluster.nodes.items() if p.poll() is not None]
    if cluster.proxy is not None and cluster.proxy.poll() is not None:
        dead.append(f"proxy exited with {cluster.proxy.returncode}")
    return dead


def _serves(config: ClusterConfig, client_class: Any) -> tuple[bool, str | None]:
    key = f"fuzz-serves/{secrets.token_hex(8)}"
    try:
        with client_class(config.proxy, timeout_ms=15_000) as client:
            client.put(key, "yes")
            value = client.get(key)
    except Exception as error:  # any failure to serve is the finding
        return False, f"{type(error).__name__}: {error}"
    return (True, None) if value == "yes" else (False, f"read back {value!r}")


# Lines a process writes only when something went wrong on our side (not on the sender's).
_BUG_MARKERS: Final = ("our bug", "Traceback", "stopping on an unexpected error", "Assertion failed")


def _log_problems(cluster: ProcessCluster) -> list[str]:
    problems = []
    for path in sorted(cluster.root.glob("*.log")):
        with open(path, errors="replace") as log:
            for line in log:
                if any(marker in line for marker in _BUG_MARKERS):
                    problems.append(f"{path.name}: {line.strip()[:300]}")
    return problems


def _judge(report: FuzzReport, *, grew: bool, workload: bool) -> None:
    problems = report.problems
    if report.sent < report.frames:
        problems.append(f"only {report.sent} of {report.frames} frames were sent")
    for t in report.targets:
        if t.failure:
            problems.append(f"the sender for {t.label} failed: {t.failure}")
        if t.unreadable_answers:
            problems.append(f"{t.unreadable_answers} unreadable answers from {t.label}: {t.unreadable_examples}")
    if report.crashes:
        problems.append(f"crashes: {report.crashes}")
    if not report.serves:
        problems.append(f"the cluster does not serve after the fuzz: {report.serve_problem}")
    if workload:
        if report.lost_writes:
            problems.append(f"{len(report.lost_writes)} acknowledged writes lost")
        if report.linearizable != "ok":
            problems.append(f"history not linearizable: {report.linearizability_summary}")
    if not grew:
        problems.append("the bad-input counters did not all grow")
    bugs = {name: counts for name, counts in report.decoder_bugs.items() if counts}
    if bugs:
        problems.append(f"decoders failed outside their contract: {bugs}")
    if report.log_problems:
        problems.append(f"{len(report.log_problems)} log lines point at a bug")


def _progress(text: str) -> None:
    click.echo(f"  {text}", err=True)


# --- zvsr fuzz --------------------------------------------------------------------------------------------------


@click.command("fuzz")
@click.option("--frames", type=click.IntRange(min=1), default=100_000, show_default=True, help="Frames to send.")
@click.option("--seed", type=int, default=None, help="Seed for the frames (default: random, printed).")
@click.option("--replicas", type=click.IntRange(1, 15), default=3, show_default=True)
@click.option(
    "--huge/--no-huge",
    default=True,
    show_default=True,
    help="Also send frames at the peer ports' MAXMSGSIZE (256 MiB); client ports and the proxy always get "
    "theirs.",
)
@click.option(
    "--impersonation-interval",
    type=click.FloatRange(0),
    default=3.0,
    show_default=True,
    help="Seconds between bursts from a DEALER impersonating a member on each peer port.",
)
@click.option(
    "--resets/--no-resets",
    default=True,
    show_default=True,
    help="Drop connections at will, resetting (TCP RST) one whose send timed out; --no-resets keeps peer-port "
    "connections open until the replicas drained them (avoids the libzmq abort described in zvsr.fuzz).",
)
@click.option(
    "--peer-rate",
    type=click.FloatRange(min=1),
    default=None,
    help="Frames/s per peer port (default: as fast as they are taken).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--keep", is_flag=True, help="Keep the cluster's directory (logs, data, history.jsonl) and print its path."
)
def fuzz_command(
    frames: int,
    seed: int | None,
    replicas: int,
    huge: bool,
    impersonation_interval: float,
    resets: bool,
    peer_rate: float | None,
    as_json: bool,
    keep: bool,
) -> None:
    """Start a local cluster, throw fuzzed frames at every socket under a client workload, and check it.

    Exit status 0 only if no process crashed, the cluster still serves, no acknowledged write was lost, the
    history is linearizable and every bad-input counter grew.
    """
    from zvsr.runtime.processes import ProcessCluster

    seed = secrets.randbits(32) if seed is None else seed
    root = Path(tempfile.mkdtemp(prefix="zvsr-fuzz-"))

    def echo(text: str) -> None:
        click.echo(text, err=as_json)

    echo(f"zvsr fuzz: seed {seed}, {frames} frames, {replicas} replicas, cluster in {root}")
    cluster = ProcessCluster(root, replicas=replicas, cluster_id=2**63 + random.Random(seed).getrandbits(62))
    report: FuzzReport | None = None
    try:
        cluster.start()
        cluster.wait_for_primary(timeout_s=30)
        report = run_live_fuzz(
            cluster,
            frames,
            seed,
            huge=huge,
            impersonation_interval_s=impersonation_interval,
            resets=resets,
            peer_rate=peer_rate,
            history_path=root / "history.jsonl" if keep else None,
            progress=_progress,
        )
    finally:
        if report is None:
            click.echo(cluster.logs(), err=True)
        cluster.cleanup()
        if keep:
            echo(f"kept {root}")
        else:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(report.summary())
    sys.exit(0 if report.ok else 1)
