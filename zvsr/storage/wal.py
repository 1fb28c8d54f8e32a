"""The write-ahead log: a replica's log (`LogEntry` 1..n) in one append-only file, ``wal.log``.

Theory of operation
-------------------
The core describes every change to its log as a `PersistLog(op_number_first, entries)`: "the log from
op_number_first on is replaced by `entries`" (an append, a truncation after a view change, or both). The file
never changes in place; each change appends records, and replaying the records from the start rebuilds the log:

- a *batch* record ``[5, op_number_first, chain, view, client_id, request_number, operation, timestamp, view,
  …]`` appends consecutive ops from ``op_number_first`` (which must be ``last + 1``), five fields per entry;
  ``chain`` is the chain value of its *last* entry (replay recomputes every entry's, below, and checks that
  they end there). One `persist_log` call — a Prepare's batch on a backup, a step's appends on the primary —
  is one batch record (cut into several only past `_BATCH_RECORD_FILL` bytes): one msgpack pack and one
  record checksum per batch instead of per entry;
- an *entry* record ``[4, view, op_number, client_id, request_number, operation, timestamp, chain]`` appends
  op ``op_number`` (``last + 1``), with its own chain value. Files written before cluster time hold kind-1
  entry records ``[1, view, op_number, client_id, request_number, operation, chain]`` (read as timestamp 0,
  with their own chain formula, below). Both are still read, never written: the record kind is the format
  version, so a file may hold kinds 1, 4 and 5 in any order, and an upgraded replica opens its old log as
  it is and appends kind-5 records after it. (A replica downgraded to a version without kind 5 would see
  its new records as a damaged log and refuse or repair it: upgrades are one way.);
- a *truncate* record ``[2, op_number]`` says "the log ends at op_number; later entries are void" (``base <=
  op_number <= last``);
- a *base* record ``[3, log_base, chain, snapshot_op, snapshot_size, snapshot_checksum]`` says "the log now
  starts after op log_base, whose chain value is ``chain``; the state up to snapshot_op is the snapshot file of
  that size and blake2b-16" (`Snapshots and compaction` below).

Each record on disk is ``length (4 bytes, big-endian) | blake2b-16(payload) | payload`` where the payload is
the msgpack (``use_bin_type=True``) list above, at most `MESSAGE_BYTES_MAX` bytes.

``chain`` is a hash chain in the manner of TigerBeetle's: ``chain(op) = blake2b-16(chain(op - 1) ||
struct(">QQQQQQ", view, op_number, client_id, request_number, timestamp, len(operation)) || operation)``, with
``chain(0)`` = 16 zero bytes (a kind-1 record's chain omits the timestamp: ``struct(">QQQQQ", ...)``). After a
truncation to k the next entry continues from ``chain(k)``, so the chain always covers exactly the current log: a
log whose entries were swapped, lost or mixed with another log's does not verify. The record checksum catches
damage to one record; the chain catches records that are each intact but do not form this log (a bug, or a file
spliced from elsewhere).

Durability is the caller's: `persist_log` only buffers records; `sync` writes them and ``fdatasync``s the file
once for everything buffered since the last sync (group commit: the driver syncs once per step, before it
sends anything of that step's Ready). A write or fsync that fails leaves the log unusable (`WalError` from then
on): after a failed fsync the kernel may have dropped the dirty pages, so retrying could claim durability that
does not exist.

Snapshots and compaction
------------------------
When the core snapshots (`PersistSnapshot`), the storage writes the snapshot file first (atomically), then
calls `rebase`: a new file is written beside the log — a base record, then the entries kept (those after
log_base, with their chain values) — fsynced, renamed over ``wal.log`` and the directory fsynced. The kept
entries are not encoded again: their records are copied byte for byte from the old file, starting at the
current record of the first kept op (every record after it belongs to ops after log_base: a truncation below
that op would have rewritten it later in the file), so compaction costs one read and one write, not a
re-encoding of a whole snapshot interval of log (which stalled a busy replica for tens of ms every interval).
That record may be a batch record that begins at or before log_base: replay skips its ops up to the base
(allowed only in the record right after the base record) and checks the chain from the base's value on.
So the log on disk is either the old one or the compacted one, never half of each, and it always names the
snapshot that covers what it dropped; disk use is bounded by the log kept (one to two snapshot intervals), not
by history.
If the log ends before the snapshot's op (a snapshot installed from the primary), the new log starts right
after the snapshot. Entries at or before the base are never written again: `persist_log` skips them.

Replay and repair
-----------------
A crash can leave the last records written partially (torn): a short header, a short payload, or a payload
whose checksum does not match. Such records were never synced, so nothing depended on them (the driver sends
nothing before `sync` returns): replay stops at the first bad record, truncates the file to the end of the last
good one (``ftruncate`` + ``fsync``) and reports how many bytes it dropped (`repaired_bytes`).

That is only sound if the bad record really is the tail. So, before repairing, replay scans the bytes after the
bad record, at every offset, for a record whose length is in bounds and whose checksum verifies (a blake2b-16
match by chance is out of the question). If one exists, the damage is in the *middle* of the log — synced,
possibly acknowledged entries would be dropped by a repair — and open raises `WalCorruption` instead, naming
the offset: a replica must not come back with a log shorter than what it promised. This also covers a damaged
length field, which would otherwise make a middle record look like a torn tail. The conservative side of this
rule: a crash whose unsynced tail happened to reach the disk out of order (a later record intact, an earlier
one not) is also reported as corruption rather than repaired; the operator decides (e.g. wipe the data
directory and let the replica recover from its peers). Likewise an operation whose bytes embed a complete,
valid WAL record could, if torn, make its own tail look like middle corruption — again a refusal, never a
wrong log.

A record whose checksum verifies but whose content is wrong — undecodable, an op_number that does not follow,
a chain that does not match, a truncation beyond the end — cannot be torn; if it is the last record it is
treated like a torn one (same scan), otherwise `WalCorruption`. The chain and op_number checks are never
repaired: they raise.

`persist_log` skips the prefix of `entries` that is identical to what the log already holds (a StartView
carrying the whole log rewrites nothing it agrees with), so a truncate record is written only when the log
really diverges. This is a safety rule, not only a saving: a crash between a truncate record and the entries
after it leaves the log shorter than before, which is harmless only for entries that differ from the new
log (those were never committed: a committed op is at the same place in every later view's log). Truncating
an identical entry and then crashing would drop an op this replica had acknowledged — the simulator's disk
model follows the same rule, and found that when it did not.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr.constants import MESSAGE_BYTES_MAX
from zvsr.protocol.messages import LogEntry

WAL_NAME: Final = "wal.log"
HEADER_BYTES: Final = 4 + 16  # length + checksum
CHECKSUM_BYTES: Final = 16
CHAIN_GENESIS: Final = bytes(CHECKSUM_BYTES)
KIND_ENTRY_V1: Final = 1  # before cluster time: read, never written
KIND_TRUNCATE: Final = 2
KIND_BASE: Final = 3
KIND_ENTRY: Final = 4  # one entry per record: read, no longer written
KIND_BATCH: Final = 5  # the entries of one persist_log call (a Prepare's batch) in one record
# Bytes a batch record spends around each entry's operation, at most (five msgpack uints and a bin header), and
# the payload a batch record is filled to before the next one starts (one entry always fits a record alone).
_BATCH_ENTRY_OVERHEAD: Final = 5 * 9 + 5
_BATCH_RECORD_FILL: Final = MESSAGE_BYTES_MAX // 2
_BATCH_HEAD: Final = 3  # [KIND_BATCH, op_number_first, chain of the last entry], then five fields per entry
_BATCH_ENTRY_FIELDS: Final = 5

_LENGTH: Final = struct.Struct(">I")
_CHAIN_FIELDS: Final = struct.Struct(">QQQQQQ")
_CHAIN_FIELDS_V1: Final = struct.Struct(">QQQQQ")


class WalError(Exception):
    """The write-ahead log cannot be used (a failed write or fsync, or a misuse by the caller)."""


class WalCorruption(WalError):
    """The log on disk is damaged somewhere other than a torn tail; replaying it would give a wrong log."""


def checksum(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=CHECKSUM_BYTES).digest()


def chain_of(previous: bytes, entry: LogEntry) -> bytes:
    """The chain value of `entry`, following the entry whose chain value is `previous`.

    One hash call over the joined bytes (the same digest as updating a hash part by part): this runs once per
    entry on every replica, and a call with three `update`s costs twice as much."""
    fields = _CHAIN_FIELDS.pack(
        entry.view, entry.op_number, entry.client_id, entry.request_number, entry.timestamp, len(entry.operation)
    )
    return hashlib.blake2b(previous + fields + entry.operation, digest_size=CHECKSUM_BYTES).digest()


def chain_of_v1(previous: bytes, entry: LogEntry) -> bytes:
    """The chain value of a kind-1 record's entry (written before cluster time: no timestamp covered)."""
    digest = hashlib.blake2b(previous, digest_size=CHECKSUM_BYTES)
    digest.update(
        _CHAIN_FIELDS_V1.pack(
            entry.view, entry.op_number, entry.client_id, entry.request_number, len(entry.operation)
        )
    )
    digest.update(entry.operation)
    return digest.digest()


_local = threading.local()


def encode_record(payload_items: list[Any]) -> bytes:
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:  # one Packer per thread: msgpack documents that a Packer is not thread-safe
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    payload: bytes = packer.pack(payload_items)
    if len(payload) > MESSAGE_BYTES_MAX:
        raise WalError(f"a WAL record of {len(payload)} bytes exceeds MESSAGE_BYTES_MAX ({MESSAGE_BYTES_MAX})")
    return _LENGTH.pack(len(payload)) + checksum(payload) + payload


def _record_at(data: bytes, offset: int) -> bytes | None:
    """The payload of an intact record (bounded length, checksum verified) at `offset`, or None."""
    if len(data) - offset < HEADER_BYTES:
        return None
    (length,) = _LENGTH.unpack_from(data, offset)
    start = offset + HEADER_BYTES
    if length == 0 or length > MESSAGE_BYTES_MAX or start + length > len(data):
        return None
    payload = data[start : start + length]
    if checksum(payload) != data[offset + 4 : start]:
        return None
    return payload


def _intact_record_after(data: bytes, offset: int) -> int | None:
    """The offset of the first intact record strictly after `offset`, or None (see the module docstring)."""
    for candidate in range(offset + 1, len(data) - HEADER_BYTES + 1):
        if _record_at(data, candidate) is not None:
            return candidate
    return None


def _is_uint(value: object) -> bool:
    return type(value) is int and 0 <= value <= 2**64 - 1


def _decode(payload: bytes) -> tuple[int, list[Any]] | None:
    """(kind, fields) of a well-formed payload, or None."""
    try:
        items = msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=True)
    except Exception:  # msgpack raises a variety of errors on garbage
        return None
    if not isinstance(items, list) or not items:
        return None
    kind = items[0]
    if kind == KIND_BATCH and type(kind) is int:
        return _decode_batch(items)
    if kind == KIND_ENTRY and type(kind) is int and len(items) == 8:
        view, op_number, client_id, request_number, operation, timestamp, chain = items[1:]
        if (
            all(_is_uint(v) for v in (view, op_number, client_id, request_number, timestamp))
            and type(operation) is bytes
            and type(chain) is bytes
            and len(chain) == CHECKSUM_BYTES
        ):
            return KIND_ENTRY, items[1:]
    elif kind == KIND_ENTRY_V1 and type(kind) is int and len(items) == 7:
        view, op_number, client_id, request_number, operation, chain = items[1:]
        if (
            all(_is_uint(v) for v in (view, op_number, client_id, request_number))
            and type(operation) is bytes
            and type(chain) is bytes
            and len(chain) == CHECKSUM_BYTES
        ):
            # The same fields as a kind-4 record, with the timestamp these entries never had.
            return KIND_ENTRY_V1, [view, op_number, client_id, request_number, operation, 0, chain]
    elif kind == KIND_TRUNCATE and type(kind) is int and len(items) == 2 and _is_uint(items[1]):
        return KIND_TRUNCATE, items[1:]
    elif kind == KIND_BASE and type(kind) is int and len(items) == 6:
        log_base, chain, snapshot_op, size, snapshot_checksum = items[1:]
        if (
            all(_is_uint(v) for v in (log_base, snapshot_op, size))
            and type(chain) is bytes
            and len(chain) == CHECKSUM_BYTES
            and type(snapshot_checksum) is bytes
            and len(snapshot_checksum) == CHECKSUM_BYTES
            and log_base <= snapshot_op
        ):
            return KIND_BASE, items[1:]
    return None


def _decode_batch(items: list[Any]) -> tuple[int, list[Any]] | None:
    """A batch record's (KIND_BATCH, [op_number_first, chain, entries]), its fields checked, or None."""
    count, extra = divmod(len(items) - _BATCH_HEAD, _BATCH_ENTRY_FIELDS)
    if count < 1 or extra:
        return None
    op_number_first, chain = items[1], items[2]
    if not _is_uint(op_number_first) or type(chain) is not bytes or len(chain) != CHECKSUM_BYTES:
        return None
    entries: list[LogEntry] = []
    for start in range(_BATCH_HEAD, len(items), _BATCH_ENTRY_FIELDS):
        view, client_id, request_number, operation, timestamp = items[start : start + _BATCH_ENTRY_FIELDS]
        if not (_is_uint(view) and _is_uint(client_id) and _is_uint(request_number) and _is_uint(timestamp)):
            return None
        if type(operation) is not bytes:
            return None
        entries.append(
            LogEntry(
                view=view,
                op_number=op_number_first + len(entries),
                client_id=client_id,
                request_number=request_number,
                operation=operation,
                timestamp=timestamp,
            )
        )
    if entries[-1].op_number > 2**64 - 1:
        return None
    return KIND_BATCH, [op_number_first, chain, entries]


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """The snapshot a compacted log names: its op number, size and blake2b-16."""

    op_number: int
    size: int
    checksum: bytes


@dataclass(slots=True)
class _Replayed:
    entries: list[LogEntry]
    chains: list[bytes]
    offsets: list[int]  # offsets[i]: where the record of entries[i] starts in the file
    base: int = 0
    snapshot: SnapshotRef | None = None


class WriteAheadLog:
    """An open ``wal.log``. Create it with `WriteAheadLog.open`."""

    def __init__(
        self,
        path: Path,
        descriptor: int,
        *,
        fsync: bool,
        replayed: _Replayed,
        repaired_bytes: int,
        end: int,
    ) -> None:
        self.path = path
        self.repaired_bytes = repaired_bytes  # bytes of a torn tail dropped when this log was opened
        self._descriptor = descriptor
        self._fsync = fsync
        self._entries = replayed.entries  # ops _base + 1 ..
        self._chains = replayed.chains  # _chains[i] is the chain value of op _base + i; [0] is the anchor
        self._offsets = replayed.offsets  # _offsets[i]: file offset of the record of op _base + 1 + i
        self._end = end  # file offset after the last record, buffered ones included
        self._base = replayed.base
        self.snapshot = replayed.snapshot  # the snapshot the log's base record names, if any
        self._pending = bytearray()
        self._broken: str | None = None
        self._closed = False

    @classmethod
    def open(cls, directory: Path, *, fsync: bool = True) -> tuple[WriteAheadLog, list[LogEntry]]:
        """Open (or create) ``directory/wal.log``, replay it, repair a torn tail, and return the log it holds
        (entries log_base + 1 .. n in order; see `log_base` and `snapshot`). Raises `WalCorruption` if the log
        is damaged anywhere but its tail."""
        path = directory / WAL_NAME
        created = not path.exists()
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if created and fsync:
                _fsync_directory(directory)
            with open(descriptor, "rb", closefd=False) as file:
                data = file.read()
            replayed, good_end = _replay(data, path)
            repaired = len(data) - good_end
            if repaired:
                os.ftruncate(descriptor, good_end)
                if fsync:
                    os.fsync(descriptor)
            os.lseek(descriptor, good_end, os.SEEK_SET)
        except BaseException:
            os.close(descriptor)
            raise
        wal = cls(path, descriptor, fsync=fsync, replayed=replayed, repaired_bytes=repaired, end=good_end)
        return wal, list(replayed.entries)

    @property
    def entries(self) -> list[LogEntry]:
        """The current log after `log_base` (a copy), including records not yet synced."""
        return list(self._entries)

    @property
    def log_base(self) -> int:
        """The op the log starts after: ops up to it are in the snapshot."""
        return self._base

    @property
    def last_op_number(self) -> int:
        return self._base + len(self._entries)

    def persist_log(self, op_number_first: int, entries: Sequence[LogEntry]) -> None:
        """Replace the log from `op_number_first` on by `entries` (the core's `PersistLog`). Buffers the
        records; `sync` makes them durable. Entries at or before the base are in the snapshot: skipped."""
        self._check_usable()
        base = self._base
        last = self.last_op_number
        for index, entry in enumerate(entries):
            if entry.op_number != op_number_first + index:
                raise WalError(
                    f"persist_log from op {op_number_first}: entry {index} has op_number {entry.op_number}"
                )
        if op_number_first < 1:
            raise WalError(f"persist_log from op {op_number_first}: ops start at 1")
        if op_number_first <= base:
            entries = entries[base + 1 - op_number_first :]
            op_number_first = base + 1
        if not 1 <= op_number_first <= last + 1:
            raise WalError(f"persist_log from op {op_number_first} would leave a gap after op {last}")
        # Skip what the log already holds identically: its chain values are unchanged too.
        skip = 0
        while skip < len(entries) and op_number_first + skip <= last:
            if entries[skip] != self._entries[op_number_first + skip - base - 1]:
                break
            skip += 1
        first = op_number_first + skip
        # Encode everything before changing anything, so a failure leaves the log as it was.
        records = bytearray()
        if first <= last:  # the log diverges from (or ends before) what it holds at `first`: void the rest
            records += encode_record([KIND_TRUNCATE, first - 1])
        chains: list[bytes] = []
        offsets: list[int] = []
        end = self._end
        previous = self._chains[first - 1 - base]
        appended = entries[skip:]
        for entry in appended:
            previous = chain_of(previous, entry)
            chains.append(previous)
        for start, stop in _batch_groups(appended):
            offsets += [end + len(records)] * (stop - start)
            records += _batch_record(appended[start:stop], chains[stop - 1])
        self._pending += records
        self._end = end + len(records)
        del self._entries[first - 1 - base :]
        del self._chains[first - base :]
        del self._offsets[first - 1 - base :]
        self._entries.extend(entries[skip:])
        self._chains.extend(chains)
        self._offsets.extend(offsets)

    def rebase(self, snapshot: SnapshotRef, log_base: int) -> None:
        """Compact: the log now starts after `log_base` (or after the snapshot, if the log ends before it),
        naming `snapshot`. Durable when it returns (a new file renamed over the old one)."""
        self._check_usable()
        self.flush()
        if self._fsync:
            self._sync_descriptor()
        if self.last_op_number < snapshot.op_number:
            entries: list[LogEntry] = []
            chains = [CHAIN_GENESIS]  # the chain restarts: the snapshot, not an entry, precedes what follows
            base = snapshot.op_number
            kept_from = self._end
        else:
            base = max(log_base, self._base)
            entries = self._entries[base - self._base :]
            chains = self._chains[base - self._base :]
            kept_from = self._offsets[base - self._base] if entries else self._end
        head = encode_record([KIND_BASE, base, chains[0], snapshot.op_number, snapshot.size, snapshot.checksum])
        try:
            tail = os.pread(self._descriptor, self._end - kept_from, kept_from)
        except OSError as error:
            self._broken = f"compaction failed: {error}"
            raise WalError(f"{self.path}: {self._broken}") from error
        if len(tail) != self._end - kept_from:
            self._broken = f"compaction read {len(tail)} bytes of {self._end - kept_from}"
            raise WalError(f"{self.path}: {self._broken}")
        data = head + tail
        shift = len(head) - kept_from
        offsets = [offset + shift for offset in self._offsets[base - self._base :]] if entries else []
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            descriptor = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view) :]
                if self._fsync:
                    os.fsync(descriptor)
                os.replace(temporary, self.path)
                if self._fsync:
                    _fsync_directory(self.path.parent)
            except BaseException:
                os.close(descriptor)
                raise
        except OSError as error:
            self._broken = f"compaction failed: {error}"
            raise WalError(f"{self.path}: {self._broken}") from error
        os.close(self._descriptor)
        self._descriptor = descriptor
        os.lseek(descriptor, 0, os.SEEK_END)
        self._entries = list(entries)
        self._chains = list(chains)
        self._offsets = offsets
        self._end = len(data)
        self._base = base
        self.snapshot = snapshot

    def flush(self) -> None:
        """Hand buffered records to the operating system (not durable yet)."""
        self._check_usable()
        data = bytes(self._pending)
        self._pending.clear()
        written = 0
        try:
            while written < len(data):
                written += os.write(self._descriptor, data[written:] if written else data)
        except OSError as error:
            self._broken = f"write failed: {error}"
            raise WalError(f"{self.path}: {self._broken}") from error

    def sync(self) -> None:
        """Make every record persisted so far durable: write, then ``fdatasync`` (if fsync is enabled)."""
        self.flush()
        if self._fsync:
            self._sync_descriptor()

    def _sync_descriptor(self) -> None:
        try:
            os.fdatasync(self._descriptor)
        except OSError as error:
            self._broken = f"fdatasync failed: {error}"
            raise WalError(f"{self.path}: {self._broken}") from error

    def close(self) -> None:
        """Sync what is buffered (if still usable) and close the file. Idempotent."""
        if self._closed:
            return
        try:
            if self._broken is None:
                self.sync()
        finally:
            self._closed = True
            os.close(self._descriptor)

    def _check_usable(self) -> None:
        if self._closed:
            raise WalError(f"{self.path} is closed")
        if self._broken is not None:
            raise WalError(f"{self.path} is unusable ({self._broken}); restart the replica")


def _batch_groups(entries: Sequence[LogEntry]) -> list[tuple[int, int]]:
    """(start, stop) slices of `entries`, each as many consecutive entries as fill one batch record."""
    groups = []
    start = 0
    size = 0
    for index, entry in enumerate(entries):
        cost = len(entry.operation) + _BATCH_ENTRY_OVERHEAD
        if index > start and size + cost > _BATCH_RECORD_FILL:
            groups.append((start, index))
            start, size = index, 0
        size += cost
    if start < len(entries):
        groups.append((start, len(entries)))
    return groups


def _batch_record(entries: Sequence[LogEntry], chain: bytes) -> bytes:
    """One record for consecutive `entries`: one pack and one checksum, however many entries (`chain` is the
    last entry's chain value; replay recomputes every entry's and checks it ends there)."""
    items: list[Any] = [KIND_BATCH, entries[0].op_number, chain]
    for entry in entries:
        items += (entry.view, entry.client_id, entry.request_number, entry.operation, entry.timestamp)
    return encode_record(items)


def _entry_record(entry: LogEntry, chain: bytes) -> bytes:
    return encode_record(
        [
            KIND_ENTRY,
            entry.view,
            entry.op_number,
            entry.client_id,
            entry.request_number,
            entry.operation,
            entry.timestamp,
            chain,
        ]
    )


def _replay(data: bytes, path: Path) -> tuple[_Replayed, int]:
    """(the log, end of the last good record) of the file contents `data`."""
    log = _Replayed(entries=[], chains=[CHAIN_GENESIS], offsets=[])
    entries, chains, offsets = log.entries, log.chains, log.offsets
    offset = 0
    after_base = False  # the record just read was the base record (see _replay_batch)
    while offset < len(data):
        payload = _record_at(data, offset)
        decoded = _decode(payload) if payload is not None else None
        if decoded is None:
            following = _intact_record_after(data, offset)
            if following is not None:
                problem = "is damaged" if payload is None else "does not decode"
                raise WalCorruption(
                    f"{path}: the record at offset {offset} {problem}, but an intact record follows at offset "
                    f"{following}: the log is corrupt in the middle (not a torn tail); refusing to replay it"
                )
            return log, offset  # a torn tail: repaired by the caller
        assert payload is not None
        kind, fields = decoded
        last = log.base + len(entries)
        if kind == KIND_BASE:
            if offset != 0:
                raise WalCorruption(f"{path}: a base record at offset {offset}, not at the start of the log")
            log_base, chain, snapshot_op, size, snapshot_checksum = fields
            log.base = log_base
            log.snapshot = SnapshotRef(snapshot_op, size, snapshot_checksum)
            chains[:] = [chain]
            offset += HEADER_BYTES + len(payload)
            after_base = True
            continue
        elif kind == KIND_BATCH:
            _replay_batch(log, fields, offset=offset, after_base=after_base, path=path)
        elif kind == KIND_TRUNCATE:
            (op_number,) = fields
            if not log.base <= op_number <= last:
                raise WalCorruption(
                    f"{path}: the truncate record at offset {offset} truncates to op {op_number}, "
                    f"outside the log (ops {log.base}..{last})"
                )
            del entries[op_number - log.base :]
            del chains[op_number - log.base + 1 :]
            del offsets[op_number - log.base :]
        else:
            view, op_number, client_id, request_number, operation, timestamp, chain = fields
            if op_number != last + 1:
                raise WalCorruption(
                    f"{path}: the entry record at offset {offset} has op_number {op_number}, expected {last + 1}"
                )
            entry = LogEntry(
                view=view,
                op_number=op_number,
                client_id=client_id,
                request_number=request_number,
                operation=operation,
                timestamp=timestamp,
            )
            expected = (chain_of if kind == KIND_ENTRY else chain_of_v1)(chains[-1], entry)
            if chain != expected:
                raise WalCorruption(
                    f"{path}: the entry record at offset {offset} (op {op_number}) does not continue the hash "
                    f"chain (stored {chain.hex()}, computed {expected.hex()})"
                )
            entries.append(entry)
            chains.append(chain)
            offsets.append(offset)
        offset += HEADER_BYTES + len(payload)
        after_base = False
    return log, offset


def _replay_batch(log: _Replayed, fields: list[Any], *, offset: int, after_base: bool, path: Path) -> None:
    """Append a batch record's entries to `log`, checking that they follow it and continue its hash chain.

    Right after a base record the batch may begin at or before the base: compaction copies records byte for
    byte from the one holding the first op kept, so that record's earlier ops are in the snapshot. They are
    skipped; the chain is checked from the base record's chain value on."""
    op_number_first, chain, batch = fields
    last = log.base + len(log.entries)
    skip = last + 1 - op_number_first
    if not (skip == 0 or (after_base and 0 < skip < len(batch))):
        raise WalCorruption(
            f"{path}: the batch record at offset {offset} starts at op {op_number_first}, expected {last + 1}"
        )
    kept = batch[skip:]
    previous = log.chains[-1]
    chains = []
    for entry in kept:
        previous = chain_of(previous, entry)
        chains.append(previous)
    if previous != chain:
        raise WalCorruption(
            f"{path}: the batch record at offset {offset} (ops {op_number_first}..{batch[-1].op_number}) does "
            f"not continue the hash chain (stored {chain.hex()}, computed {previous.hex()})"
        )
    log.entries.extend(kept)
    log.chains.extend(chains)
    log.offsets.extend([offset] * len(kept))


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
