"""The backup query: a replica's latest snapshot, asked for in chunks on its client port (`zvsr backup`).

Theory of operation
-------------------
`zvsr backup` (`zvsr.runtime.backup`) must copy a running replica's snapshot without reading its data dir (a
copy of a running replica's files is not consistent: the WAL may be mid-compaction). So the replica serves it,
the way it serves the status and watch-snapshot queries of `zvsr.wire.admin`, on its client port, numbered
after them (admin's 30..33 and 40..41; the protocol's kinds are 1..10 and 20..23):

======  ===============  ==================================================================================
type    message          fields
======  ===============  ==================================================================================
34      BackupQuery      ``{"type": 34, "snapshot_op": uint, "offset": uint, "fresh": bool}``
35      BackupChunk      ``{"type": 35, "cluster": uint, "snapshot_op": uint, "size": uint,
                         "checksum": bin (blake2b-16 of the whole snapshot), "offset": uint, "data": bin}``,
                         or on failure ``{"type": 35, "error": code, "message": str}``
======  ===============  ==================================================================================

A download starts with ``snapshot_op`` 0 and ``offset`` 0: the replica answers the first chunk of its latest
snapshot (the core's `Snapshots.data`: the app state and client table after op ``snapshot_op``, in the encoding
of `zvsr.protocol.snapshots`) and *pins* it. The client then asks for that ``snapshot_op`` at each following
offset; every chunk holds at most `SNAPSHOT_CHUNK_BYTES` bytes, like the replicas' own SnapshotChunks. The pin
keeps the snapshot's bytes (a reference to the core's immutable ``bytes``, not a copy) while the core goes on
taking newer ones, until `BACKUP_PIN_MS` after the last chunk asked for it, so a download of a large snapshot
never chases a replica that keeps snapshotting; at most `BACKUP_PINS_MAX` are kept (the least recently asked
goes). A snapshot neither pinned nor the latest any more answers ``gone``: start over.

``fresh`` (only with ``snapshot_op`` 0): instead of its latest snapshot, the replica encodes one of its state
now, exactly as the core's own would be at its commit_number — `snapshots.encode` of the app's `snapshot()`,
the client table's rows and expired ids, and the stamp of op commit_number — between two core steps, so the
state is exactly that after ops 1..commit_number, all committed. Nothing of the core changes (its snapshot
schedule, log and disk stay as they are), so it needs nothing of `zvsr.protocol` beyond reading. It costs the
replica one `snapshot()` of the app on its loop, as a scheduled snapshot does.

Error codes: ``no_snapshot`` (the replica has taken no snapshot yet, and with ``fresh`` it has committed
nothing), ``unavailable`` (the replica is recovering: it has no state), ``gone`` (above), ``bad_request`` (a
type-34 map of another shape, or an offset beyond the snapshot).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr import constants as c
from zvsr.protocol import snapshots
from zvsr.protocol.replica import Replica, Status
from zvsr.wire.admin import clip_message
from zvsr.wire.errors import DecodeError
from zvsr.wire.unpack import unpack_map

TYPE_BACKUP_QUERY: Final = 34
TYPE_BACKUP_ANSWER: Final = 35

NO_SNAPSHOT: Final = "no_snapshot"
UNAVAILABLE: Final = "unavailable"
GONE: Final = "gone"
BAD_REQUEST: Final = "bad_request"
ERRORS: Final = frozenset({NO_SNAPSHOT, UNAVAILABLE, GONE, BAD_REQUEST})

_QUERY_KEYS: Final = frozenset({"type", "snapshot_op", "offset", "fresh"})
_CHUNK_KEYS: Final = frozenset({"type", "cluster", "snapshot_op", "size", "checksum", "offset", "data"})
_ERROR_KEYS: Final = frozenset({"type", "error", "message"})


class BackupQueryError(ValueError):
    """Bytes that are not a well-formed backup query or answer."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupQuery:
    snapshot_op: int  # 0: start a download (the latest snapshot, or a fresh one)
    offset: int
    fresh: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupChunk:
    """One answer: `data` at `offset` of the snapshot of op `snapshot_op` (`size` bytes, blake2b-16 `checksum`)
    of cluster `cluster`; or `error` (a code) and `message`."""

    cluster: int = 0
    snapshot_op: int = 0
    size: int = 0
    checksum: bytes = b""
    offset: int = 0
    data: bytes = b""
    error: str | None = None
    message: str = ""


def _pack(value: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def _unpack_map(data: bytes, size_max: int, what: str) -> dict[str, Any] | None:
    """The msgpack map in `data` (bounded like every frame, `zvsr.wire.unpack`), None if `data` is not a map of
    `what`'s type."""
    try:
        value = unpack_map(data, size_max)
    except DecodeError:
        return None
    kind = TYPE_BACKUP_QUERY if what == "query" else TYPE_BACKUP_ANSWER
    if type(value.get("type")) is not int or value["type"] != kind:
        return None
    return value


def _uint(value: dict[str, Any], name: str, what: str) -> int:
    number = value[name]
    if type(number) is not int or not 0 <= number <= c.ID_MAX:
        raise BackupQueryError(f"backup {what}: {name} must be an unsigned integer")
    return number


def encode_query(query: BackupQuery) -> bytes:
    return _pack(
        {"type": TYPE_BACKUP_QUERY, "snapshot_op": query.snapshot_op, "offset": query.offset, "fresh": query.fresh}
    )


def decode_query(data: bytes) -> BackupQuery | None:
    """The query in `data`; None if it is not a map of type 34 at all (not ours); BackupQueryError if it is one of
    another shape (it gets a ``bad_request`` answer)."""
    value = _unpack_map(data, c.CLIENT_MESSAGE_BYTES_MAX, "query")
    if value is None:
        return None
    if value.keys() != _QUERY_KEYS:
        raise BackupQueryError(
            'a backup query is {"type": 34, "snapshot_op": uint, "offset": uint, "fresh": bool}'
        )
    fresh = value["fresh"]
    if type(fresh) is not bool:
        raise BackupQueryError("backup query: fresh must be a bool")
    query = BackupQuery(
        snapshot_op=_uint(value, "snapshot_op", "query"), offset=_uint(value, "offset", "query"), fresh=fresh
    )
    if query.snapshot_op == 0 and query.offset != 0:
        raise BackupQueryError("backup query: a download starts at offset 0 (snapshot_op 0)")
    if query.fresh and query.snapshot_op != 0:
        raise BackupQueryError("backup query: fresh only starts a download (snapshot_op 0)")
    return query


def encode_chunk(cluster: int, snapshot_op: int, data: bytes, checksum: bytes, offset: int) -> bytes:
    """The chunk of `data` (the whole snapshot) at `offset`: at most SNAPSHOT_CHUNK_BYTES bytes."""
    return _pack(
        {
            "type": TYPE_BACKUP_ANSWER,
            "cluster": cluster,
            "snapshot_op": snapshot_op,
            "size": len(data),
            "checksum": checksum,
            "offset": offset,
            "data": data[offset : offset + c.SNAPSHOT_CHUNK_BYTES],
        }
    )


def encode_error(code: str, message: str) -> bytes:
    assert code in ERRORS, code
    return _pack({"type": TYPE_BACKUP_ANSWER, "error": code, "message": clip_message(message)})


def decode_answer(data: bytes) -> BackupChunk:
    """A type-35 answer; BackupQueryError if `data` is not a well-formed one."""
    value = _unpack_map(data, c.BACKUP_ANSWER_BYTES_MAX, "answer")
    if value is None:
        raise BackupQueryError("not a backup answer (type 35), or larger than BACKUP_ANSWER_BYTES_MAX")
    if value.keys() == _ERROR_KEYS:
        error, message = value["error"], value["message"]
        if type(error) is not str or type(message) is not str:
            raise BackupQueryError("backup answer: error and message must be str")
        return BackupChunk(error=error, message=message)
    if value.keys() != _CHUNK_KEYS:
        raise BackupQueryError(f"backup answer: fields {sorted(map(str, value.keys()))}")
    checksum, chunk = value["checksum"], value["data"]
    if type(checksum) is not bytes or len(checksum) != snapshots.CHECKSUM_BYTES or type(chunk) is not bytes:
        raise BackupQueryError("backup answer: checksum must be 16 bytes of bin, data bin")
    answer = BackupChunk(
        cluster=_uint(value, "cluster", "answer"),
        snapshot_op=_uint(value, "snapshot_op", "answer"),
        size=_uint(value, "size", "answer"),
        checksum=checksum,
        offset=_uint(value, "offset", "answer"),
        data=chunk,
    )
    if (
        answer.snapshot_op == 0
        or answer.size > c.SNAPSHOT_BYTES_MAX
        or len(chunk) > c.SNAPSHOT_CHUNK_BYTES
        or answer.offset + len(chunk) > answer.size
    ):
        raise BackupQueryError("backup answer: snapshot_op 0, or a chunk outside the snapshot")
    return answer


# --- the replica's part -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pin:
    data: bytes
    checksum: bytes
    asked_at: float


class BackupServer:
    """Answers backup queries for one replica node: the core's latest snapshot (or a fresh one), pinned while it
    downloads (see the module docstring). Call `answer` between core steps, from the node's loop."""

    def __init__(
        self,
        cluster: int,
        *,
        pin_ms: int = c.BACKUP_PIN_MS,
        pins_max: int = c.BACKUP_PINS_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self.pins: dict[int, _Pin] = {}  # snapshot op -> its bytes, least recently asked first
        self._pin_s = pin_ms / 1000
        self._pins_max = pins_max
        self._clock = clock

    def answer(self, payload: bytes, core: Replica) -> bytes | None:
        """The answer to a backup query, or None if `payload` is not one."""
        try:
            query = decode_query(payload)
        except BackupQueryError as error:
            return encode_error(BAD_REQUEST, f"cannot read the backup query: {error}")
        if query is None:
            return None
        now = self._clock()
        for op in [op for op, pin in self.pins.items() if now - pin.asked_at > self._pin_s]:
            del self.pins[op]
        if core.status is Status.RECOVERING:
            return encode_error(UNAVAILABLE, "this replica is recovering and has no state: ask another")
        if query.snapshot_op == 0:
            if query.fresh:
                if core.commit_number == 0:
                    return encode_error(NO_SNAPSHOT, "this replica has committed nothing yet: nothing to back up")
                op_number, data = core.commit_number, fresh_snapshot(core)
                digest = snapshots.checksum(data)
            elif core.snapshots.op_number == 0:
                interval = core.config.snapshot_interval_ops
                return encode_error(
                    NO_SNAPSHOT,
                    f"this replica has taken no snapshot yet (it takes one every {interval} committed ops, "
                    f"0: never; it is at op {core.commit_number}); a fresh one can be asked for",
                )
            else:
                op_number, data, digest = core.snapshots.op_number, core.snapshots.data, core.snapshots.checksum
        else:
            op_number = query.snapshot_op
            pin = self.pins.get(op_number)
            if pin is not None:
                data, digest = pin.data, pin.checksum
            elif op_number == core.snapshots.op_number:
                data, digest = core.snapshots.data, core.snapshots.checksum
            else:
                return encode_error(GONE, f"snapshot {op_number} is no longer kept: start the backup over")
        if query.offset > len(data):
            return encode_error(
                BAD_REQUEST, f"offset {query.offset} is beyond snapshot {op_number} ({len(data)} B)"
            )
        self.pins.pop(op_number, None)
        self.pins[op_number] = _Pin(data, digest, now)
        while len(self.pins) > self._pins_max:
            del self.pins[next(iter(self.pins))]
        return encode_chunk(self.cluster, op_number, data, digest, query.offset)


def fresh_snapshot(core: Replica) -> bytes:
    """The core's state now (after ops 1..commit_number), encoded as its own snapshot at commit_number would be.
    Between core steps only; reads the core, changes nothing."""
    table = core.client_table
    return snapshots.encode(
        core.commit_number,
        table.rows(),
        core.state_machine.snapshot(),
        timestamp=core.executed_timestamp,
        membership=core.membership.encode(),  # the configuration in force, as the core's own snapshot carries
    )
