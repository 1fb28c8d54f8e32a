"""Snapshots: their encoding, the ones a replica keeps and serves, and the one it is downloading.

A replica's snapshot is the application state and the client table after op `op_number`, as bytes, with the
cluster time of that op (`timestamp`), so that a replica restarted from it, or installing it, never stamps or
reads a cluster time before it (docs/design.md, "Cluster time").

Snapshots let a replica drop the log before them (memory and disk stay bounded while the log grows forever)
and let a replica that is far behind catch up without the ops it missed. The client table travels with the app
state: without it, a client's retry of an op folded into the snapshot could be executed a second time on a
replica that installed the snapshot (§4.1, ARCHITECTURE rule 8).

The encoding is a fixed binary layout (the core imports no serialization library; see tests/test_purity.py):

    magic "ZVSRSNP5" | op_number u64 | timestamp u64 | client count u32
    | client count x (session id u64 | nonce u64 | request_number u64 | result length u32 | result)
    | configuration length u32 | configuration
    | app state length u64 | app state

The configuration is the one in force at op_number (`zvsr.protocol.membership` encoding: epoch, members, ...): a
replica that installs the snapshot knows who its peers were, and replaying the log after it repeats every
reconfiguration since. Snapshots written before sessions were registered ("ZVSRSNP4": rows without a nonce, and
a list of expired client_ids after them, which is read and dropped: `zvsr.protocol.client_table`), before
reconfiguration ("ZVSRSNP3": no configuration either, so epoch 0) and before cluster time ("ZVSRSNP2": no
timestamp either, so 0) still decode, so a data directory from an older version opens as it is; their rows get
nonce 0 (a register retry of theirs is not recognised: nothing is lost but a row). The client table is in
least-recently-executed-first order, so a replica that installs the snapshot evicts exactly as the others do.

all integers big-endian. `decode` checks every length against the input, so damaged or hostile bytes give a
`SnapshotError`, never a partial state; integrity against bit flips is the checksum's job (`checksum`), checked
by whoever moved the bytes (the storage layer, or the receiver of a snapshot transfer).

Serving (`Snapshots`, the replica's part). The primary serves its latest snapshot in chunks (GetSnapshot /
SnapshotChunk) to a replica that is behind its log. A download takes time while the primary keeps taking
snapshots and dropping log: so every snapshot being downloaded is *pinned* — kept, with the log after it —
until `snapshot_pin_ticks` after the downloader last asked. A slow download never chases truncation (no
livelock); a downloader that went away releases its pin by silence.

Downloading (`SnapshotDownload`). Chunks are appended strictly in order, and the whole is checked against the
announced size and checksum, and decoded, before anything is installed: a damaged or hostile transfer is
dropped, never half-installed. The handlers that drive both sides are in `zvsr.protocol.replica`
(`on_get_snapshot`, `on_snapshot_chunk`).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from zvsr.protocol.messages import SnapshotChunk

MAGIC: Final = b"ZVSRSNP5"
MAGIC_V4: Final = b"ZVSRSNP4"  # before registered sessions: read, never written
MAGIC_V3: Final = b"ZVSRSNP3"  # before reconfiguration: read, never written
MAGIC_V2: Final = b"ZVSRSNP2"  # before cluster time: read, never written
CHECKSUM_BYTES: Final = 16
_HEAD: Final = struct.Struct(">8sQQI")
_HEAD_V2: Final = struct.Struct(">8sQI")
_CLIENT: Final = struct.Struct(">QQQI")
_CLIENT_V4: Final = struct.Struct(">QQI")
_APP: Final = struct.Struct(">Q")
_COUNT: Final = struct.Struct(">I")
_ID: Final = struct.Struct(">Q")


class SnapshotError(ValueError):
    """Bytes that are not a well-formed snapshot."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    op_number: int
    timestamp: int  # the cluster time of op `op_number` (0 in a snapshot from before cluster time)
    client_table: tuple[tuple[int, int, int, bytes], ...]  # (session id, nonce, request_number, result)
    app_state: bytes
    membership: bytes = b""  # the configuration at op_number (empty: a snapshot from before reconfiguration)


def checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=CHECKSUM_BYTES).digest()


def encode(
    op_number: int,
    client_table: Iterable[tuple[int, int, int, bytes]],
    app_state: bytes,
    *,
    timestamp: int = 0,
    membership: bytes = b"",
) -> bytes:
    parts: list[bytes] = []
    count = 0
    for client_id, nonce, request_number, result in client_table:
        parts.append(_CLIENT.pack(client_id, nonce, request_number, len(result)))
        parts.append(result)
        count += 1
    return b"".join(
        [
            _HEAD.pack(MAGIC, op_number, timestamp, count),
            *parts,
            _COUNT.pack(len(membership)),
            membership,
            _APP.pack(len(app_state)),
            app_state,
        ]
    )


def _header(data: bytes) -> tuple[int, int, int, int, bytes]:
    """(op_number, timestamp, client count, header size, magic) of any snapshot format."""
    if len(data) < _HEAD_V2.size:
        raise SnapshotError(f"snapshot of {len(data)} bytes is shorter than its header")
    magic = data[:8]
    if magic in (MAGIC, MAGIC_V4, MAGIC_V3):
        head = _HEAD
    elif magic == MAGIC_V2:
        head = _HEAD_V2
    else:
        raise SnapshotError("not a zvsr snapshot (bad magic)")
    if len(data) < head.size:
        raise SnapshotError(f"snapshot of {len(data)} bytes is shorter than its header")
    if head is _HEAD:
        _, op_number, timestamp, count = _HEAD.unpack_from(data, 0)
    else:
        _, op_number, count = _HEAD_V2.unpack_from(data, 0)
        timestamp = 0
    return int(op_number), int(timestamp), int(count), head.size, magic


def op_number_of(data: bytes) -> int:
    """The op_number a snapshot covers, read from its header."""
    return _header(data)[0]


def decode(data: bytes) -> Snapshot:
    op_number, timestamp, count, offset, magic = _header(data)
    table, offset = _decode_table(data, offset, count, current=magic == MAGIC)
    if magic != MAGIC:  # the expired client_ids of an older format: registration made them needless
        if offset + _COUNT.size > len(data):
            raise SnapshotError("snapshot ends before its expired sessions")
        (expired_count,) = _COUNT.unpack_from(data, offset)
        offset += _COUNT.size + expired_count * _ID.size
        if offset > len(data):
            raise SnapshotError("snapshot ends inside its expired sessions")
    membership = b""
    if magic in (MAGIC, MAGIC_V4):
        if offset + _COUNT.size > len(data):
            raise SnapshotError("snapshot ends before its configuration")
        (membership_length,) = _COUNT.unpack_from(data, offset)
        offset += _COUNT.size
        if offset + membership_length > len(data):
            raise SnapshotError("snapshot ends inside its configuration")
        membership = data[offset : offset + membership_length]
        offset += membership_length
    if offset + _APP.size > len(data):
        raise SnapshotError("snapshot ends before its app state")
    (length,) = _APP.unpack_from(data, offset)
    offset += _APP.size
    if offset + length != len(data):
        raise SnapshotError(f"snapshot app state of {length} bytes does not end the snapshot")
    return Snapshot(
        op_number=op_number,
        timestamp=timestamp,
        client_table=tuple(table),
        app_state=data[offset:],
        membership=membership,
    )


def _decode_table(
    data: bytes, offset: int, count: int, *, current: bool
) -> tuple[list[tuple[int, int, int, bytes]], int]:
    """The client-table rows from `offset` on, and the offset after them; rows of an older format get nonce 0."""
    row = _CLIENT if current else _CLIENT_V4
    table: list[tuple[int, int, int, bytes]] = []
    for _ in range(count):
        if offset + row.size > len(data):
            raise SnapshotError("snapshot ends inside its client table")
        if current:
            client_id, nonce, request_number, length = _CLIENT.unpack_from(data, offset)
        else:
            client_id, request_number, length = _CLIENT_V4.unpack_from(data, offset)
            nonce = 0
        offset += row.size
        if offset + length > len(data):
            raise SnapshotError("snapshot ends inside a client-table result")
        table.append((client_id, nonce, request_number, data[offset : offset + length]))
        offset += length
    return table, offset


# --- the replica's part: snapshots kept, served and downloaded --------------------------------------------------


@dataclass(slots=True)
class SnapshotDownload:
    """A snapshot arriving in chunks from the primary of `view` (held in memory: one app state's size)."""

    view: int
    snapshot_op: int
    size: int
    checksum: bytes
    data: bytearray
    progress_at: int  # `now` of the last chunk that moved it forward


class Snapshots:
    """The latest snapshot of a replica, older ones kept while a peer downloads them, and our own download."""

    __slots__ = ("op_number", "data", "checksum", "pins", "pinned", "download", "_pin_ticks")

    def __init__(self, *, pin_ticks: int) -> None:
        self.op_number = 0  # of the latest snapshot (0: none yet)
        self.data = b""
        self.checksum = b""
        self.pins: dict[int, tuple[int, int]] = {}  # replica -> (snapshot op_number, `now` of its last ask)
        self.pinned: dict[int, tuple[bytes, bytes]] = {}  # older pinned snapshots: op_number -> (data, checksum)
        self.download: SnapshotDownload | None = None
        self._pin_ticks = pin_ticks

    def take(self, op_number: int, data: bytes, *, now: int) -> None:
        """Our new snapshot: it becomes the latest; the one it replaces stays served while a peer downloads it."""
        if self.op_number and self.is_pinned(self.op_number, now=now):
            self.pinned[self.op_number] = (self.data, self.checksum)
        self.set_latest(op_number, data)

    def set_latest(self, op_number: int, data: bytes) -> None:
        self.op_number = op_number
        self.data = data
        self.checksum = checksum(data)

    def log_kept_from(self, previous: int, *, now: int) -> int:
        """The op after which the log must stay: the previous snapshot's, or older while a download needs it."""
        self.expire_pins(now=now)
        return min([previous, *(op for op, _ in self.pins.values())])

    def is_pinned(self, op_number: int, *, now: int) -> bool:
        self.expire_pins(now=now)
        return any(op == op_number for op, _ in self.pins.values())

    def expire_pins(self, *, now: int) -> None:
        horizon = now - self._pin_ticks
        for replica, (_, asked_at) in list(self.pins.items()):
            if asked_at < horizon:
                del self.pins[replica]
        live = {op for op, _ in self.pins.values()}
        for op in list(self.pinned):
            if op not in live:
                del self.pinned[op]

    def chunk(
        self, header: dict[str, int], to: int, snapshot_op: int, offset: int, *, now: int, size: int
    ) -> SnapshotChunk:
        """The SnapshotChunk (of at most `size` bytes) answering `to`'s ask for `snapshot_op` at `offset`; that
        snapshot is pinned meanwhile. A snapshot no longer kept is answered with the latest, from its start."""
        self.expire_pins(now=now)
        if snapshot_op in self.pinned:
            data, digest = self.pinned[snapshot_op]
        else:
            if snapshot_op != self.op_number:
                offset = 0
            snapshot_op, data, digest = self.op_number, self.data, self.checksum
        offset = min(offset, len(data))
        self.pins[to] = (snapshot_op, now)
        return SnapshotChunk(
            **header,
            snapshot_op=snapshot_op,
            size=len(data),
            checksum=digest,
            offset=offset,
            data=data[offset : offset + size],
        )

    def append_chunk(self, message: SnapshotChunk, *, now: int, count: Callable[[str], None]) -> str | None:
        """Add a chunk to our download (starting one at offset 0). A reason if it cannot be added, else None."""
        download = self.download
        if download is None or download.snapshot_op != message.snapshot_op or download.view != message.view:
            if message.offset != 0:
                return "not the start of a snapshot"
            count("snapshot download started")
            download = SnapshotDownload(
                view=message.view,
                snapshot_op=message.snapshot_op,
                size=message.size,
                checksum=message.checksum,
                data=bytearray(),
                progress_at=now,
            )
            self.download = download
        if message.offset != len(download.data) or message.size != download.size:
            return "out of order"
        if not message.data and len(download.data) < download.size:
            return "empty chunk"
        download.data += message.data
        download.progress_at = now
        return None

    def finish_download(self) -> bytes | str | None:
        """After a chunk was added: None while more is to come; the verified snapshot once complete (the
        download ends); or why the whole is refused (the download ends, nothing is installed)."""
        download = self.download
        assert download is not None
        if len(download.data) < download.size:
            return None
        self.download = None
        if len(download.data) > download.size:
            return "more bytes than announced"
        data = bytes(download.data)
        if checksum(data) != download.checksum:
            return "snapshot checksum mismatch"
        try:
            if decode(data).op_number != download.snapshot_op:
                return "snapshot op_number mismatch"
        except SnapshotError as error:
            return f"malformed snapshot ({error})"
        return data

    def invariants(self) -> None:
        assert all(op < self.op_number for op in self.pinned)
        assert self.download is None or 0 <= len(self.download.data) <= self.download.size
