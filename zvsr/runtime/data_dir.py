"""A replica's data directory: how it decides between a first start and a recovery, and (later) its log.

Theory of operation
-------------------
VR Revisited lets a replica run without a disk, provided a replica that restarts *knows* it lost its memory
and runs the Recovery protocol (§4.3) before taking part in anything again (ARCHITECTURE rule 12): a replica
that forgot its promises and voted or acknowledged as if fresh could let a quorum lose an acknowledged
operation. So the one thing a replica must be able to tell at start is "have I ever run before?".

That is the marker file ``replica.json`` in the replica's data directory, written once, atomically
(temporary file, fsync, rename, fsync of the directory), before the replica sends anything:
- no marker: first start. Write the marker (once the sockets are bound, before anything is sent), start the
  core normally (`recovering=False`);
- a marker for this cluster and replica index: this process was restarted. Until the write-ahead log exists
  nothing else is durable, so start the core with `recovering=True`;
- a marker for another cluster id or replica index: refuse to start (`StorageError`) — the directory belongs to
  someone else, and using it would make this replica lie about its identity or history;
- a marker that cannot be read (truncated, not JSON, fields missing): refuse too. It can only be damage, and
  treating damage as "first start" is exactly the amnesia rule 12 forbids. A leftover ``replica.json.tmp``
  without a marker is a first start that crashed before its rename — it sent nothing, so it starts afresh.

Without a configured data dir (``data_dir = None``) the replica uses a temporary directory that it removes on
close, and every start is a first start: such a replica must not be restarted into a running cluster under
the same index without its memory (the launchers always configure a data dir).

Initialisation. A directory without a marker is a first start only with `init=True` (`zvsr node --init`,
which `zvsr cluster up` passes for a brand-new cluster): otherwise it is taken to be a replica whose disk was
lost or wiped, and it runs Recovery (it writes its marker, and the view state Recovery ends with). A wiped
replica that started "fresh" in view 0 with an empty log would break the quorum intersection it promised.

Durability. Beside the marker live the write-ahead log (``wal.log``) and the superblock (``superblock.a/.b``,
`zvsr.storage`). A first start writes an empty superblock (view 0) before its marker. A restart that finds the
marker *and* a superblock comes back from disk (`START_DISK`): the core is rebuilt from the superblock's view
state and the log's entries (`durable`). A marker without a superblock means the replica lost its disk, or
crashed before Recovery finished: it runs Recovery (`START_RECOVERY`), and the view state Recovery ends with
writes the superblock.

Snapshots. A `PersistSnapshot` writes ``snapshot-<op>.zvsr`` atomically, then compacts the log (`rebase`): the
new ``wal.log`` names that snapshot (op, size, blake2b-16) and holds only the entries kept, and older snapshot
files are deleted. A restart reads the snapshot the log names, checks its size and checksum, and hands it to
the core with the log (`DurableState.snapshot`, `log_base`).

Damage. A log damaged anywhere but its tail, a snapshot that is missing or fails its checksum, or a superblock
whose both copies are bad: the replica never serves or applies damaged state. Its data files are moved aside
into ``damaged-<time>/`` (kept for the operator), and the replica repairs itself from its peers by running
Recovery (`START_RECOVERY`), exactly as one whose disk was lost. (A torn tail is simply cut: it was never
synced, so nothing depended on it; the missing ops come back from the primary by the usual repair.)

`persist(records)` is the driver's step 1 of the core's contract (``zvsr.protocol.ready``) and returns only
once the records are durable: log records first, one fdatasync for all of them (group commit: a step's
records, however many), and only then the superblock — so the view state on disk never claims a log
(last_normal_view) that the log on disk does not hold yet. With ``fsync = "never"`` nothing is synced: a power
cut can then lose acknowledged writes, a process crash cannot.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from zvsr.protocol import snapshots
from zvsr.protocol.ready import PersistLog, PersistRecord, PersistSnapshot, PersistViewState
from zvsr.protocol.replica import DurableState
from zvsr.storage import (
    Superblock,
    SuperblockCorruption,
    SuperblockState,
    WalCorruption,
    WalError,
    WriteAheadLog,
)
from zvsr.storage.wal import WAL_NAME, SnapshotRef

_log = logging.getLogger("zvsr.storage")

MARKER_NAME: Final = "replica.json"
MARKER_FORMAT: Final = "zvsr.replica"
MARKER_VERSION: Final = 1

START_FIRST: Final = "first_start"
START_RECOVERY: Final = "recovery"
START_DISK: Final = "restart_from_disk"
SNAPSHOT_PREFIX: Final = "snapshot-"
SNAPSHOT_SUFFIX: Final = ".zvsr"


class StorageError(Exception):
    """The data directory cannot be used by this replica; the message says why and what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Marker:
    cluster_id: int
    replica: int
    replica_count: int
    epoch: int
    created: str  # ISO 8601, informational


class Storage:
    """One replica's data directory. Open it with `Storage.open`; `start` says which path the replica takes."""

    def __init__(self, *, path: Path, start: str, marker: Marker, temporary: bool, fsync: bool = True) -> None:
        self.path = path
        self.start = start
        self.marker = marker
        self.temporary = temporary
        self.fsync = fsync
        self._closed = False
        self.superblock: SuperblockState | None = None
        self.durable: DurableState | None = None
        self.wal: WriteAheadLog | None = None
        self.repaired_bytes = 0
        self.damaged: Path | None = None  # where damaged files were moved, if this start found any
        self.marker_found = False  # the marker was there before this start (else: written by this start)
        # Called with the seconds each sync of persist() took (write + fdatasync), with fsync on: the node's
        # zvsr_disk_wal_fsync_duration_seconds (zvsr.runtime.metrics). None: not timed.
        self.sync_observer: Callable[[float], None] | None = None

    @property
    def recovering(self) -> bool:
        """Whether the core must start with the Recovery protocol (§4.3)."""
        return self.start == START_RECOVERY

    @property
    def marker_path(self) -> Path:
        return self.path / MARKER_NAME

    @classmethod
    def open(
        cls,
        path: Path | None,
        *,
        cluster_id: int,
        replica: int,
        replica_count: int,
        epoch: int = 0,
        fsync: bool = True,
        init: bool = False,
    ) -> Storage:
        """Take the data directory `path` (created if missing), or a temporary one if None, and decide which
        start this is. Writes nothing yet: `begin()` writes the marker of a first start."""
        temporary = path is None
        try:
            if path is None:
                path = Path(tempfile.mkdtemp(prefix=f"zvsr-r{replica}-"))
            else:
                _make_directory(path)
            exists = (path / MARKER_NAME).exists()
        except OSError as error:
            raise StorageError(f"data directory {path}: {error}") from error
        if exists:
            marker = _read_marker(path / MARKER_NAME)
            if marker.cluster_id != cluster_id or marker.replica != replica:
                raise StorageError(
                    f"{path} belongs to replica {marker.replica} of cluster {marker.cluster_id}, "
                    f"not replica {replica} of cluster {cluster_id}: refusing to start "
                    "(point this replica at its own data directory)"
                )
            storage = cls(path=path, start=START_RECOVERY, marker=marker, temporary=temporary, fsync=fsync)
            storage.marker_found = True
            storage._load()
            return storage
        marker = Marker(
            cluster_id=cluster_id,
            replica=replica,
            replica_count=replica_count,
            epoch=epoch,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        # An empty directory is a brand-new replica of a brand-new cluster only when the operator says so
        # (`--init`); otherwise it is a replica that lost its disk, which must not vote with state it no
        # longer has: it runs Recovery. A temporary directory is always new.
        start = START_FIRST if init or temporary else START_RECOVERY
        return cls(path=path, start=start, marker=marker, temporary=temporary, fsync=fsync)

    def _load(self) -> None:
        """A restart: with a superblock, read the durable state back; without one, Recovery. Damage of any
        durable file moves the files aside and runs Recovery (repair from peers), never a start on bad state."""
        try:
            superblock = Superblock.read(self.path)
        except SuperblockCorruption as error:
            return self._quarantine(str(error))
        if superblock is None:
            return
        if superblock.cluster_id != self.marker.cluster_id or superblock.replica != self.marker.replica:
            raise StorageError(f"{self.path}: the superblock belongs to another replica or cluster")
        try:
            wal, entries = WriteAheadLog.open(self.path, fsync=self.fsync)
        except WalCorruption as error:
            return self._quarantine(str(error))
        except WalError as error:
            raise StorageError(f"{self.path}: {error}; refusing to start") from error
        snapshot: bytes | None = None
        if wal.snapshot is not None:
            snapshot = self._read_snapshot(wal.snapshot)
            if snapshot is None:
                wal.close()
                return self._quarantine(f"snapshot {wal.snapshot.op_number} is missing or damaged")
        self.wal = wal
        self.repaired_bytes = wal.repaired_bytes
        self.superblock = superblock
        self.durable = DurableState(
            view_number=superblock.view_number,
            last_normal_view=superblock.last_normal_view,
            commit_number=superblock.commit_number,
            log=tuple(entries),
            log_base=wal.log_base,
            snapshot=snapshot,
            epoch=superblock.epoch,
        )
        self.start = START_DISK
        self._remove_snapshots(keep=None if wal.snapshot is None else wal.snapshot.op_number)

    def _quarantine(self, problem: str) -> None:
        """Move the damaged durable files aside and take the Recovery path."""
        target = self.path / time.strftime("damaged-%Y%m%dT%H%M%SZ", time.gmtime())
        suffix = 0
        while target.exists():
            suffix += 1
            target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
        try:
            target.mkdir()
            for item in list(self.path.iterdir()):
                if item.is_file() and item.name != MARKER_NAME:
                    item.rename(target / item.name)
            _fsync_directory(target)
            _fsync_directory(self.path)
        except OSError as error:
            raise StorageError(f"{self.path}: {problem}; moving damaged files aside failed: {error}") from error
        _log.error(
            "%s: %s: the damaged files are in %s; this replica recovers its state from its peers (Recovery)",
            self.path,
            problem,
            target,
        )
        self.damaged = target
        self.superblock = None
        self.durable = None
        self.start = START_RECOVERY

    def _snapshot_path(self, op_number: int) -> Path:
        return self.path / snapshot_file_name(op_number)

    def _read_snapshot(self, ref: SnapshotRef) -> bytes | None:
        try:
            data = self._snapshot_path(ref.op_number).read_bytes()
        except OSError:
            return None
        if len(data) != ref.size or snapshots.checksum(data) != ref.checksum:
            return None
        try:
            if snapshots.op_number_of(data) != ref.op_number:
                return None
        except snapshots.SnapshotError:
            return None
        return data

    def _remove_snapshots(self, *, keep: int | None) -> None:
        """Delete snapshot files other than `keep` (older ones, and any a crash left unreferenced)."""
        for item in self.path.glob(f"{SNAPSHOT_PREFIX}*"):
            if keep is None or item.name != self._snapshot_path(keep).name:
                item.unlink(missing_ok=True)

    def begin(self) -> None:
        """Called once the replica is ready to run and before it sends anything: a first start writes its
        marker now, so a start that failed earlier (a port in use, say) does not count as having run."""
        try:
            if self.wal is None:
                # A first start, or a Recovery: whatever log is here is not trusted; Recovery rewrites it whole.
                (self.path / WAL_NAME).unlink(missing_ok=True)
                self._remove_snapshots(keep=None)
                self.wal, _ = WriteAheadLog.open(self.path, fsync=self.fsync)
            if not self.marker_path.exists():
                if self.start == START_FIRST:
                    epoch = self.marker.epoch
                    self._write_view_state(
                        PersistViewState(view_number=0, last_normal_view=0, commit_number=0, epoch=epoch)
                    )
                write_atomically(self.marker_path, _marker_bytes(self.marker))
        except (OSError, WalError) as error:
            raise StorageError(f"cannot initialise {self.path}: {error}") from error

    def persist(self, records: Sequence[PersistRecord]) -> None:
        """Make `records` durable before returning (contract step 1): the log first, then the view state."""
        assert self.wal is not None, "begin() first"
        view_state: PersistViewState | None = None
        for record in records:
            if isinstance(record, PersistLog):
                self.wal.persist_log(record.op_number_first, record.entries)
            elif isinstance(record, PersistSnapshot):
                self._persist_snapshot(record)
            else:
                view_state = record  # only the latest matters; written after the log is durable
        observe = self.sync_observer
        if observe is None or not self.fsync:
            self.wal.sync()
        else:
            started = time.perf_counter()
            self.wal.sync()
            observe(time.perf_counter() - started)
        if view_state is not None:
            self._write_view_state(view_state)

    def _persist_snapshot(self, record: PersistSnapshot) -> None:
        """The snapshot file first (atomically), then the log compacted to name it, then old files go."""
        assert self.wal is not None
        path = self._snapshot_path(record.op_number)
        try:
            if self.fsync:
                write_atomically(path, record.data)
            else:
                temporary = path.with_name(path.name + ".tmp")
                temporary.write_bytes(record.data)
                os.replace(temporary, path)
            self.wal.rebase(
                SnapshotRef(record.op_number, len(record.data), snapshots.checksum(record.data)), record.log_base
            )
            self._remove_snapshots(keep=record.op_number)
        except OSError as error:
            raise StorageError(f"{self.path}: writing snapshot {record.op_number} failed: {error}") from error

    def _write_view_state(self, record: PersistViewState) -> None:
        previous = self.superblock
        # Rule 12 across epochs (§7): a replica's (epoch, view) only moves forward; going back would let it vote
        # again in a view (or act in an epoch) it has left. The core never asks for it: this is the last check.
        if previous is not None and (record.epoch, record.view_number) < (previous.epoch, previous.view_number):
            raise StorageError(
                f"{self.path}: refusing to move the view state back from epoch {previous.epoch} view "
                f"{previous.view_number} to epoch {record.epoch} view {record.view_number}"
            )
        self.superblock = Superblock.write(
            self.path,
            SuperblockState(
                view_number=record.view_number,
                last_normal_view=record.last_normal_view,
                commit_number=record.commit_number,
                epoch=record.epoch,
                cluster_id=self.marker.cluster_id,
                replica=self.marker.replica,
                sequence=0 if previous is None else previous.sequence,
            ),
            fsync=self.fsync,
        )

    def size_bytes(self) -> int:
        """Bytes the replica's live files hold (moved-aside damaged files are not counted)."""
        total = 0
        try:
            for entry in os.scandir(self.path):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            return -1  # shown as unknown; status must never fail
        return total

    @property
    def snapshot_op(self) -> int:
        return 0 if self.wal is None or self.wal.snapshot is None else self.wal.snapshot.op_number

    def close(self) -> None:
        """Release the directory; a temporary one is removed."""
        if self._closed:
            return
        self._closed = True
        if self.wal is not None:
            self.wal.close()
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)


def snapshot_file_name(op_number: int) -> str:
    """The name of the snapshot file of op `op_number` in a data directory."""
    return f"{SNAPSHOT_PREFIX}{op_number:020d}{SNAPSHOT_SUFFIX}"


def seed_from_snapshot(path: Path, marker: Marker, snapshot: bytes) -> SnapshotRef:
    """Write into the empty (or missing) directory `path` exactly what replica `marker.replica` would hold after
    installing `snapshot` in view 0 with nothing after it (`zvsr restore`, zvsr.runtime.backup): the snapshot
    file, a log holding only the base record that names it (as `WriteAheadLog.rebase` writes after an install),
    the superblock (view 0, last normal view 0, commit_number = the snapshot's op) and, last, the marker. Every
    file is written atomically and fsynced. A seed interrupted before the marker leaves a directory without one,
    which a node takes for a lost disk (Recovery) and a second seed refuses as not empty: empty it and seed
    again. The caller checks the snapshot's integrity (its checksum) first; this refuses one that does not
    decode. The node then restarts from disk (`Storage.open`, START_DISK) in normal status in view 0."""
    try:
        op_number = snapshots.decode(snapshot).op_number
    except snapshots.SnapshotError as error:
        raise StorageError(f"the snapshot does not decode: {error}") from error
    if op_number == 0:
        raise StorageError("a snapshot of op 0 holds nothing to restore")
    try:
        _make_directory(path)
        if any(path.iterdir()):
            raise StorageError(f"{path} is not empty: a data dir is seeded only when it holds nothing")
        write_atomically(path / snapshot_file_name(op_number), snapshot)
        ref = SnapshotRef(op_number, len(snapshot), snapshots.checksum(snapshot))
        wal, _ = WriteAheadLog.open(path, fsync=True)
        try:
            wal.rebase(ref, op_number)
        finally:
            wal.close()
        Superblock.write(
            path,
            SuperblockState(
                view_number=0,
                last_normal_view=0,
                commit_number=op_number,
                epoch=marker.epoch,
                cluster_id=marker.cluster_id,
                replica=marker.replica,
            ),
        )
        write_atomically(path / MARKER_NAME, _marker_bytes(marker))
    except (OSError, WalError) as error:
        raise StorageError(f"cannot seed {path}: {error}") from error
    return ref


def _marker_bytes(marker: Marker) -> bytes:
    document = {
        "format": MARKER_FORMAT,
        "version": MARKER_VERSION,
        "cluster_id": marker.cluster_id,
        "replica": marker.replica,
        "replica_count": marker.replica_count,
        "epoch": marker.epoch,
        "created": marker.created,
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def _read_marker(path: Path) -> Marker:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise StorageError(
            f"{path} cannot be read ({error}): refusing to start on a damaged data directory"
        ) from error
    fields = ("cluster_id", "replica", "replica_count", "epoch")
    if (
        not isinstance(document, dict)
        or document.get("format") != MARKER_FORMAT
        or document.get("version") != MARKER_VERSION
        or not all(type(document.get(name)) is int for name in fields)
    ):
        raise StorageError(f"{path} is not a zvsr replica marker (version {MARKER_VERSION}): refusing to start")
    return Marker(
        cluster_id=document["cluster_id"],
        replica=document["replica"],
        replica_count=document["replica_count"],
        epoch=document["epoch"],
        created=str(document.get("created", "")),
    )


def write_atomically(path: Path, data: bytes) -> None:
    """Temporary file, fsync, rename over `path`, fsync the directory: after a crash, all of it or none."""
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _make_directory(path: Path) -> None:
    """Create `path` and its missing parents, fsyncing each new entry's parent so the directory survives."""
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:  # another replica of a local cluster made the shared parent just now
            pass
        _fsync_directory(directory.parent)
    if not path.is_dir():
        raise StorageError(f"data directory {path} is not a directory")


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
