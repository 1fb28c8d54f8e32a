"""Fuzzed frames for each port of a cluster: seeds, fresh valid messages, content bombs, `FrameGenerator`.

Theory of operation
-------------------
Every byte a zvsr process reads from a socket is untrusted (docs/protocol.md §10). The payloads made here
start from seeds — the golden vectors (`clients/testdata/vectors.json`: valid messages of every kind,
non-canonical encodings, invalid inputs, coordination-app operations) and freshly encoded valid messages of
every kind (`fresh_message`), plus request / reply batches (`zvsr.wire.batch`) for the client ports — which are
then mutated at the byte and at the msgpack level (`zvsr.fuzz.mutations`). `FrameGenerator.frames` wraps a
payload in a multipart shape that is usually right for the socket and sometimes wrong (extra or missing empty
delimiters, empty routing frames, thousands of frames); `limit_payloads` and `peer_limit_buffer` are frames
just under and just over each socket's MAXMSGSIZE; `CONTENT_BOMBS` are frames built to cost many bytes of
Python objects per input byte if unpacked naively. Everything is driven by one `random.Random`, so a seed
reproduces a run's frames.

Fresh messages never carry the cluster id of the cluster under test (`avoid_cluster`): a valid message of the
cluster's own id and epoch from an impersonated routing id is a forged protocol message, not bad input (see
`zvsr.fuzz.live`).
"""

from __future__ import annotations

import functools
import json
import random
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from zvsr import constants as c
from zvsr.fuzz.msgpack_bytes import packb
from zvsr.fuzz.mutations import mutate_bytes, mutate_structure, random_number, random_value
from zvsr.protocol.membership import Member, Membership
from zvsr.protocol.messages import (
    CLIENT_MESSAGES,
    ERROR_CODES,
    REPLICA_MESSAGES,
    Commit,
    DoViewChange,
    EpochStarted,
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
    StartEpoch,
    StartView,
    StartViewChange,
    StartViewChangeProbe,
)
from zvsr.wire.admin import encode_status_query
from zvsr.wire.codec import Message, encode

PEER: Final = "peer"  # a replica's peer ROUTER: [routing id][message]
CLIENT: Final = "client"  # a replica's client ROUTER: the REQ-compatible envelope
PROXY: Final = "proxy"  # the proxy's frontend ROUTER: the same envelope, also bare operations
PORTS: Final = (PEER, CLIENT, PROXY)

# The repository's golden vectors (zvsr/fuzz/ -> zvsr/ -> the checkout); absent from an installed package.
VECTORS_PATH: Final = Path(__file__).resolve().parents[2] / "clients" / "testdata" / "vectors.json"

# The message kinds, in the protocol's own order (frames per seed depend on it).
REPLICA_KINDS: Final = REPLICA_MESSAGES
CLIENT_KINDS: Final = CLIENT_MESSAGES
ALL_KINDS: Final = REPLICA_KINDS + CLIENT_KINDS

# --- content bombs ----------------------------------------------------------------------------------------------


def container_bomb(size: int) -> bytes:
    """A Request-looking map of `size` bytes whose `client_id` is an array of empty arrays.

    Unpacked in one call, every byte of it becomes a Python list before the codec can look at the field:
    about 60 bytes of memory per input byte. The codec unpacks frames this big field by field instead (see
    `zvsr.wire.unpack` and tests/test_fuzz_codec.py).
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
        _padded(size, b"\x96" + b"\xcd\x01\x00" * 4 + b"\xc4\x00" + b"\xcd\x01\x00", _array32)
    ),
    "arrays of six empty arrays": lambda size: _log_frame(
        _padded(size, b"\x96\x90\x90\x90\x90\x90\x90", _array32)
    ),
    "deep six-arrays": lambda size: _log_frame(
        _array32(1, b"\x96\x90\x90\x90\x90\x90" * max(1, (size - 16) // 6) + b"\x90")
    ),
}


def content_bomb(rng: random.Random, size: int) -> bytes:
    return CONTENT_BOMBS[rng.choice(sorted(CONTENT_BOMBS))](size)


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
            timestamp=random_number(rng),
        )
        for index in range(count)
    )


def random_replica_id(rng: random.Random) -> int:
    """A replica id (`replica`, `primary`): mostly a small one, as in epoch 0, now and then any of 0..2^32-1."""
    if rng.random() < 0.8:
        return rng.randrange(c.REPLICAS_MAX)
    return rng.choice((c.REPLICA_ID_MAX, rng.randint(0, c.REPLICA_ID_MAX)))


def random_membership(rng: random.Random, *, epoch: int, start_op: int) -> bytes:
    """A StartEpoch's `membership`: mostly a well-formed configuration (`zvsr.protocol.membership`), sometimes
    bytes the codec passes on unread (it checks only the bin bound; the core decodes the layout)."""
    if rng.random() < 0.2:
        return rng.randbytes(rng.randrange(64))
    ids = rng.sample(range(c.REPLICAS_MAX + 4), rng.randint(1, c.REPLICAS_MAX))
    members = tuple(Member(i, rng.randbytes(rng.randrange(24))) for i in ids)
    old = tuple(rng.sample(range(max(ids) + 1), rng.randint(0, min(c.REPLICAS_MAX, max(ids) + 1))))
    return Membership(
        epoch=epoch,
        start_op=start_op,
        members=members,
        start_view=rng.choice((0, 1, rng.randrange(2**32))),
        old=old,
        highest_id=max(ids) + rng.randrange(3),
    ).encode()


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
    epoch = random_number(rng)
    header = {"cluster": cluster, "epoch": epoch, "view": view, "replica": random_replica_id(rng)}
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
    if kind is StartViewChangeProbe:
        return StartViewChangeProbe(**header)
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
    if kind is StartEpoch:
        membership = random_membership(rng, epoch=epoch, start_op=op_number)
        return StartEpoch(**header, op_number=op_number, membership=membership)
    if kind is EpochStarted:
        return EpochStarted(**header)
    if kind is Request:
        operation = random_operation(rng, seeds)[: c.OPERATION_BYTES_MAX]
        return Request(client_id=random_number(rng), request_number=random_number(rng), operation=operation)
    if kind is Reply:
        result = rng.choice(seeds.operations)
        return Reply(view=view, client_id=random_number(rng), request_number=random_number(rng), result=result)
    if kind is Redirect:
        return Redirect(
            view=view,
            primary=random_replica_id(rng),
            client_id=random_number(rng),
            request_number=random_number(rng),
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

    most = c.BATCH_MESSAGES_MAX
    count = rng.choice((1, 2, 3, 8, most)) if rng.random() < 0.95 else most
    if rng.random() < 0.8:  # small operations, so that even a full batch fits the client port's MAXMSGSIZE
        requests = [
            Request(client_id=random_number(rng), request_number=random_number(rng), operation=operation[:200])
            for operation in (random_operation(rng, seeds) for _ in range(count))
        ]
        return encode_request_batch([encode(request) for request in requests])
    kinds = (Reply, Redirect, Error)
    return encode_reply_batch([encode(fresh_message(rng, rng.choice(kinds), seeds=seeds)) for _ in range(count)])


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
        # More frames than any client envelope may have (CLIENT_ENVELOPE_FRAMES_MAX), ending in a status query.
        fewest = c.CLIENT_ENVELOPE_FRAMES_MAX + 1
        count = rng.randint(fewest, 64) if rng.random() < 0.9 else rng.choice((1000, 10_000))
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
def peer_limit_buffer() -> bytes:
    """MESSAGE_BYTES_MAX + 1 bytes: a Prepare-looking map whose last field declares a bin of the rest."""
    head = b"\x88\xa4type\x01\xa7cluster\x07\xa5epoch\x01\xa4view\x01\xa7replica\x01\xa9op_number\x01"
    head += b"\xadcommit_number\x01\xa7entries"
    size = c.MESSAGE_BYTES_MAX + 1
    body = size - len(head) - 5
    return head + b"\xc6" + struct.pack(">I", body) + bytes(body)
