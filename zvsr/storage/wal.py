"""The write-ahead log: a replica's log (`LogEntry` 1..n) in one append-only file, ``wal.log``.

Theory of operation
-------------------
The core describes every change to its log as a `PersistLog(op_number_first, entries)`: "the log from
op_number_first on is replaced by `entries`" (an append, a truncation after a view change, or both). The file
never changes in place; each change appends records, and replaying the records from the start rebuilds the log:

- an *entry* record ``[1, view, op_number, client_id, request_number, operation, chain]`` appends op
  ``op_number``, which must be ``last + 1``;
- a *truncate* record ``[2, op_number]`` says "the log ends at op_number; later entries are void" (``0 <=
  op_number <= last``).

Each record on disk is ``length (4 bytes, big-endian) | blake2b-16(payload) | payload`` where the payload is
the msgpack (``use_bin_type=True``) list above, at most `MESSAGE_BYTES_MAX` bytes.

``chain`` is a hash chain in the manner of TigerBeetle's: ``chain(op) = blake2b-16(chain(op - 1) ||
struct(">QQQQQ", view, op_number, client_id, request_number, len(operation)) || operation)``, with
``chain(0)`` = 16 zero bytes. After a truncation to k the next entry continues from ``chain(k)``, so the chain
always covers exactly the current log: a log whose entries were swapped, lost or mixed with another log's does
not verify. The record checksum catches damage to one record; the chain catches records that are each intact
but do not form this log (a bug, or a file spliced from elsewhere).

Durability is the caller's: `persist_log` only buffers records; `sync` writes them and ``fdatasync``s the file
once for everything buffered since the last sync (group commit: the driver syncs once per step, before it
sends anything of that step's Ready). A write or fsync that fails leaves the log unusable (`WalError` from then
on): after a failed fsync the kernel may have dropped the dirty pages, so retrying could claim durability that
does not exist.

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
really diverges.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr.constants import MESSAGE_BYTES_MAX
from zvsr.protocol.messages import LogEntry

WAL_NAME: Final = "wal.log"
HEADER_BYTES: Final = 4 + 16  # length + checksum
CHECKSUM_BYTES: Final = 16
CHAIN_GENESIS: Final = bytes(CHECKSUM_BYTES)
KIND_ENTRY: Final = 1
KIND_TRUNCATE: Final = 2

_LENGTH: Final = struct.Struct(">I")
_CHAIN_FIELDS: Final = struct.Struct(">QQQQQ")


class WalError(Exception):
    """The write-ahead log cannot be used (a failed write or fsync, or a misuse by the caller)."""


class WalCorruption(WalError):
    """The log on disk is damaged somewhere other than a torn tail; replaying it would give a wrong log."""


def checksum(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=CHECKSUM_BYTES).digest()


def chain_of(previous: bytes, entry: LogEntry) -> bytes:
    """The chain value of `entry`, following the entry whose chain value is `previous`."""
    digest = hashlib.blake2b(previous, digest_size=CHECKSUM_BYTES)
    digest.update(
        _CHAIN_FIELDS.pack(
            entry.view, entry.op_number, entry.client_id, entry.request_number, len(entry.operation)
        )
    )
    digest.update(entry.operation)
    return digest.digest()


def encode_record(payload_items: list[Any]) -> bytes:
    payload: bytes = msgpack.packb(payload_items, use_bin_type=True)
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
    if kind == KIND_ENTRY and type(kind) is int and len(items) == 7:
        view, op_number, client_id, request_number, operation, chain = items[1:]
        if (
            all(_is_uint(v) for v in (view, op_number, client_id, request_number))
            and type(operation) is bytes
            and type(chain) is bytes
            and len(chain) == CHECKSUM_BYTES
        ):
            return KIND_ENTRY, items[1:]
    elif kind == KIND_TRUNCATE and type(kind) is int and len(items) == 2 and _is_uint(items[1]):
        return KIND_TRUNCATE, items[1:]
    return None


class WriteAheadLog:
    """An open ``wal.log``. Create it with `WriteAheadLog.open`."""

    def __init__(
        self,
        path: Path,
        descriptor: int,
        *,
        fsync: bool,
        entries: list[LogEntry],
        chains: list[bytes],
        repaired_bytes: int,
    ) -> None:
        self.path = path
        self.repaired_bytes = repaired_bytes  # bytes of a torn tail dropped when this log was opened
        self._descriptor = descriptor
        self._fsync = fsync
        self._entries = entries
        self._chains = chains  # _chains[op] is the chain value of op; _chains[0] is the genesis
        self._pending = bytearray()
        self._broken: str | None = None
        self._closed = False

    @classmethod
    def open(cls, directory: Path, *, fsync: bool = True) -> tuple[WriteAheadLog, list[LogEntry]]:
        """Open (or create) ``directory/wal.log``, replay it, repair a torn tail, and return the log it holds
        (entries 1..n in order). Raises `WalCorruption` if the log is damaged anywhere but its tail."""
        path = directory / WAL_NAME
        created = not path.exists()
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if created and fsync:
                _fsync_directory(directory)
            with open(descriptor, "rb", closefd=False) as file:
                data = file.read()
            entries, chains, good_end = _replay(data, path)
            repaired = len(data) - good_end
            if repaired:
                os.ftruncate(descriptor, good_end)
                if fsync:
                    os.fsync(descriptor)
            os.lseek(descriptor, good_end, os.SEEK_SET)
        except BaseException:
            os.close(descriptor)
            raise
        wal = cls(path, descriptor, fsync=fsync, entries=entries, chains=chains, repaired_bytes=repaired)
        return wal, list(entries)

    @property
    def entries(self) -> list[LogEntry]:
        """The current log (a copy), including records not yet synced."""
        return list(self._entries)

    @property
    def last_op_number(self) -> int:
        return len(self._entries)

    def persist_log(self, op_number_first: int, entries: Sequence[LogEntry]) -> None:
        """Replace the log from `op_number_first` on by `entries` (the core's `PersistLog`). Buffers the
        records; `sync` makes them durable."""
        self._check_usable()
        last = len(self._entries)
        if not 1 <= op_number_first <= last + 1:
            raise WalError(f"persist_log from op {op_number_first} would leave a gap after op {last}")
        for index, entry in enumerate(entries):
            if entry.op_number != op_number_first + index:
                raise WalError(
                    f"persist_log from op {op_number_first}: entry {index} has op_number {entry.op_number}"
                )
        # Skip what the log already holds identically: its chain values are unchanged too.
        skip = 0
        while skip < len(entries) and op_number_first + skip <= last:
            if entries[skip] != self._entries[op_number_first + skip - 1]:
                break
            skip += 1
        first = op_number_first + skip
        # Encode everything before changing anything, so a failure leaves the log as it was.
        records = bytearray()
        if first <= last:  # the log diverges from (or ends before) what it holds at `first`: void the rest
            records += encode_record([KIND_TRUNCATE, first - 1])
        chains: list[bytes] = []
        previous = self._chains[first - 1]
        for entry in entries[skip:]:
            previous = chain_of(previous, entry)
            chains.append(previous)
            records += encode_record(
                [
                    KIND_ENTRY,
                    entry.view,
                    entry.op_number,
                    entry.client_id,
                    entry.request_number,
                    entry.operation,
                    previous,
                ]
            )
        self._pending += records
        del self._entries[first - 1 :]
        del self._chains[first:]
        self._entries.extend(entries[skip:])
        self._chains.extend(chains)

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
        if not self._fsync:
            return
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


def _replay(data: bytes, path: Path) -> tuple[list[LogEntry], list[bytes], int]:
    """(entries, chains, end of the last good record) of the file contents `data`."""
    entries: list[LogEntry] = []
    chains: list[bytes] = [CHAIN_GENESIS]
    offset = 0
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
            return entries, chains, offset  # a torn tail: repaired by the caller
        assert payload is not None
        kind, fields = decoded
        if kind == KIND_TRUNCATE:
            (op_number,) = fields
            if op_number > len(entries):
                raise WalCorruption(
                    f"{path}: the truncate record at offset {offset} truncates to op {op_number}, "
                    f"beyond the end of the log (op {len(entries)})"
                )
            del entries[op_number:]
            del chains[op_number + 1 :]
        else:
            view, op_number, client_id, request_number, operation, chain = fields
            if op_number != len(entries) + 1:
                raise WalCorruption(
                    f"{path}: the entry record at offset {offset} has op_number {op_number}, "
                    f"expected {len(entries) + 1}"
                )
            entry = LogEntry(
                view=view,
                op_number=op_number,
                client_id=client_id,
                request_number=request_number,
                operation=operation,
            )
            expected = chain_of(chains[-1], entry)
            if chain != expected:
                raise WalCorruption(
                    f"{path}: the entry record at offset {offset} (op {op_number}) does not continue the hash "
                    f"chain (stored {chain.hex()}, computed {expected.hex()})"
                )
            entries.append(entry)
            chains.append(chain)
        offset += HEADER_BYTES + len(payload)
    return entries, chains, offset


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
