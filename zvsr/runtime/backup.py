"""`zvsr backup` and `zvsr restore`: a verified copy of a replica's snapshot, and a new cluster seeded from it.

Theory of operation
-------------------
What a backup is. A replica's snapshot (`zvsr.protocol.snapshots`) is the app state *and* the client table after
op N, with the cluster time of op N: everything committed up to N, and the at-most-once memory of every client
session, so a retry of a request folded into it is answered, never executed again. A backup is one such snapshot
with its op number, cluster id and checksum, in a small self-describing file. Ops after N are not in it.

Taking one (`take_backup`). The snapshot is asked of the running replica over its client port (the backup
query, `zvsr.runtime.backup_query`): never by reading another process's data dir, whose files are not
consistent while it runs. By default the replica asked is the primary of the highest view in normal status
(found with the status query), whose latest snapshot is the most recent; `replica` chooses another. The bytes
come in chunks of `SNAPSHOT_CHUNK_BYTES`, the replica pinning that snapshot meanwhile; a snapshot that went away
all the same (``gone``) starts the download over, at most `BACKUP_RESTARTS_MAX` times. Before it reports
success the backup checks the whole against the checksum the replica announced and that it decodes as a
snapshot of the announced op, writes the file atomically (temporary file, fsync, rename, fsync of the
directory), and reads the file back through `read_backup`, which checks everything again.

A replica snapshots every `snapshot_interval_ops` committed ops (default 10 000), so a young cluster may have
none: the backup then says so. `fresh=True` (`zvsr backup --fresh`) asks the replica to encode its state at
its commit_number now instead (see `zvsr.runtime.backup_query`): the newest possible backup, at the cost of one
`snapshot()` of the app on the replica's loop.

The file (all integers big-endian; 76 bytes of header, then the snapshot):

======  =====  ===============================================================================================
offset  bytes  field
======  =====  ===============================================================================================
0       8      magic ``ZVSRBKUP``
8       4      format version (1)
12      8      cluster id (of the cluster the snapshot was taken from)
20      8      op number N (the snapshot's)
28      8      cluster time of op N, ns (the snapshot's; 0 for a snapshot from before cluster time)
36      8      size of the snapshot in bytes
44      16     blake2b-16 of the snapshot (the checksum the replicas use for it: `snapshots.checksum`)
60      16     blake2b-16 of bytes 0..59 (the header's own checksum)
76      size   the snapshot, as the replicas encode it
======  =====  ===============================================================================================

`read_backup` refuses a file whose magic or version is not these, whose header checksum fails, whose length is
not exactly 76 + size, whose snapshot checksum fails, or whose snapshot does not decode at op N with that
cluster time: a damaged byte anywhere is refused, never restored.

Restoring (`restore`). Replica i of a *new* cluster (every replica of it from the same backup) gets, in its
empty data dir, exactly what a replica that installed the snapshot in view 0 with nothing after it would have
written (`zvsr.runtime.data_dir.seed_from_snapshot`): the snapshot file, a WAL holding only the base record that
names it, the superblock (view 0, last normal view 0, commit_number N) and the marker, last. Started without
``--init``, each node restarts from disk in normal status in view 0 with state = the snapshot, an empty log
after it and commit_number N; replica 0 is the primary, and the first new op is N + 1. Before reporting success
the restore opens the directory as a node would (`Storage.open`) and checks that it restarts from disk with
that state. It refuses a data dir that is not empty, a backup that fails any check above, and a backup of
another cluster id than the cluster file's unless `force_cluster_id` (a copy of one cluster's state into a
cluster with another id, e.g. a staging copy of production).
"""

from __future__ import annotations

import hashlib
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import zmq

from zvsr import constants as c
from zvsr.protocol import membership, snapshots
from zvsr.runtime.backup_query import (
    GONE,
    NO_SNAPSHOT,
    BackupChunk,
    BackupQuery,
    BackupQueryError,
    decode_answer,
    encode_query,
)
from zvsr.runtime.cluster_config import ClusterConfig
from zvsr.runtime.data_dir import START_DISK, Marker, Storage, StorageError, seed_from_snapshot, write_atomically
from zvsr.runtime.security import client_options
from zvsr.runtime.status import collect_status

MAGIC: Final = b"ZVSRBKUP"
VERSION: Final = 1
CHECKSUM_BYTES: Final = 16
_FIELDS: Final = struct.Struct(">8sIQQQQ16s")  # magic, version, cluster, op, cluster time, size, checksum
HEADER_BYTES: Final = _FIELDS.size + CHECKSUM_BYTES  # 76


class BackupError(Exception):
    """A backup cannot be taken, read or restored; the message says why (and what to do)."""


class BackupUnreachable(BackupError):
    """No replica (or not the one asked) answered in time: the cluster is down, or not where the file says."""


def _checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=CHECKSUM_BYTES).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Backup:
    """A snapshot of cluster `cluster_id` after op `op_number` (cluster time `timestamp` ns)."""

    cluster_id: int
    op_number: int
    timestamp: int
    snapshot: bytes

    @property
    def size(self) -> int:
        return len(self.snapshot)

    @property
    def checksum(self) -> bytes:
        return snapshots.checksum(self.snapshot)

    @classmethod
    def of_snapshot(cls, cluster_id: int, snapshot: bytes) -> Backup:
        """The backup of `snapshot` (its op number and cluster time read from it); BackupError if it does not
        decode."""
        try:
            decoded = snapshots.decode(snapshot)
        except snapshots.SnapshotError as error:
            raise BackupError(f"the snapshot does not decode: {error}") from error
        return cls(
            cluster_id=cluster_id, op_number=decoded.op_number, timestamp=decoded.timestamp, snapshot=snapshot
        )

    def describe(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster_id,
            "op_number": self.op_number,
            "cluster_time_ns": self.timestamp,
            "size": self.size,
            "blake2b": self.checksum.hex(),
        }


def encode_backup(backup: Backup) -> bytes:
    fields = _FIELDS.pack(
        MAGIC, VERSION, backup.cluster_id, backup.op_number, backup.timestamp, backup.size, backup.checksum
    )
    return fields + _checksum(fields) + backup.snapshot


def decode_backup(data: bytes) -> Backup:
    """The backup in `data`; BackupError if it is not a whole, intact backup file of this version."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BackupError("not a zvsr backup (bad magic)")
    if len(data) < HEADER_BYTES:
        raise BackupError(f"a backup of {len(data)} bytes is shorter than its header ({HEADER_BYTES})")
    _, version, cluster_id, op_number, timestamp, size, digest = _FIELDS.unpack_from(data, 0)
    if version != VERSION:
        raise BackupError(f"backup format version {version} is not supported (this zvsr reads version {VERSION})")
    if _checksum(data[: _FIELDS.size]) != data[_FIELDS.size : HEADER_BYTES]:
        raise BackupError("the backup's header is damaged (header checksum mismatch)")
    if len(data) != HEADER_BYTES + size:
        raise BackupError(f"the backup holds {len(data) - HEADER_BYTES} snapshot bytes, its header says {size}")
    snapshot = data[HEADER_BYTES:]
    if snapshots.checksum(snapshot) != digest:
        raise BackupError("the backup's snapshot is damaged (blake2b checksum mismatch)")
    backup = Backup.of_snapshot(cluster_id, snapshot)
    if (backup.op_number, backup.timestamp) != (op_number, timestamp):
        raise BackupError(
            f"the backup's header says op {op_number} at cluster time {timestamp}, its snapshot op "
            f"{backup.op_number} at {backup.timestamp}"
        )
    return backup


def write_backup(path: Path, backup: Backup) -> None:
    """Write `backup` to `path` atomically: a temporary file beside it, fsync, rename, fsync of the directory."""
    try:
        write_atomically(path, encode_backup(backup))
    except OSError as error:
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)
        raise BackupError(f"cannot write {path}: {error}") from error


def read_backup(path: Path) -> Backup:
    """The backup in the file `path`, every check of `decode_backup` passed; BackupError otherwise."""
    try:
        with open(path, "rb") as file:
            data = file.read(HEADER_BYTES + c.SNAPSHOT_BYTES_MAX + 1)
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error}") from error
    try:
        return decode_backup(data)
    except BackupError as error:
        raise BackupError(f"{path}: {error}") from error


# --- taking a backup -----------------------------------------------------------------------------------------


def choose_replica(config: ClusterConfig, *, replica: int | None, timeout_ms: int) -> tuple[int, dict[str, Any]]:
    """(index, status) of the replica to back up: `replica`, or the primary of the highest normal view."""
    report = collect_status(config, timeout_ms=timeout_ms)
    entries = {entry["replica"]: entry for entry in report["replicas"] if entry.get("reachable")}
    if replica is not None:
        if not 0 <= replica < len(config.replicas):
            raise BackupError(f"replica {replica}: the cluster has replicas 0..{len(config.replicas) - 1}")
        if replica not in entries:
            raise BackupUnreachable(f"replica {replica} did not answer the status query within {timeout_ms} ms")
        return replica, entries[replica]
    primaries = [
        (entry.get("view", 0), index)
        for index, entry in entries.items()
        if entry.get("status") == "normal" and entry.get("role") == "primary"
    ]
    if not primaries:
        answered = ", ".join(f"r{index} {entry.get('status')}" for index, entry in sorted(entries.items()))
        error = BackupUnreachable if not entries else BackupError
        raise error(
            f"no primary in normal status answered within {timeout_ms} ms (answered: {answered or 'none'}): "
            "is the cluster up? (--replica N backs up one replica's snapshot)"
        )
    _, index = max(primaries)
    return index, entries[index]


def fetch_snapshot(
    config: ClusterConfig,
    replica: int,
    *,
    fresh: bool = False,
    timeout_ms: int = c.BACKUP_TIMEOUT_MS,
    context: zmq.Context[zmq.Socket[bytes]] | None = None,
) -> tuple[int, bytes]:
    """(cluster id, snapshot bytes) of replica `replica`'s latest snapshot (or a fresh one), downloaded with the
    backup query and checked against the checksum it announced. BackupError if it cannot be had."""
    own = context is None
    context = zmq.Context() if context is None else context
    keys, pair = config.keys(), config.client_pair()
    socket = context.socket(zmq.DEALER)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, c.BACKUP_ANSWER_BYTES_MAX)
        if keys is not None and pair is not None:
            for name, value in client_options(pair, keys.replicas[replica]).items():
                socket.setsockopt(getattr(zmq, name), value)
        socket.connect(config.replicas[replica].client)
        for _ in range(c.BACKUP_RESTARTS_MAX + 1):
            result = _download(socket, replica, fresh=fresh, timeout_ms=timeout_ms)
            if result is not None:
                return result
        raise BackupError(
            f"replica {replica} replaced its snapshot {c.BACKUP_RESTARTS_MAX + 1} times during the download "
            f"(each was kept {c.BACKUP_PIN_MS} ms after its last chunk): try again"
        )
    finally:
        socket.close()
        if own:
            context.term()


def _download(
    socket: zmq.Socket[bytes], replica: int, *, fresh: bool, timeout_ms: int
) -> tuple[int, bytes] | None:
    """One download from its start; None if the snapshot went away meanwhile (start over)."""
    first = _exchange(socket, BackupQuery(snapshot_op=0, offset=0, fresh=fresh), replica, timeout_ms)
    if first.error == GONE:
        return None
    data = bytearray(first.data)
    while len(data) < first.size:
        query = BackupQuery(snapshot_op=first.snapshot_op, offset=len(data))
        answer = _exchange(socket, query, replica, timeout_ms)
        if answer.error == GONE:
            return None
        if (answer.snapshot_op, answer.size, answer.checksum, answer.cluster) != (
            first.snapshot_op,
            first.size,
            first.checksum,
            first.cluster,
        ):
            raise BackupError(f"replica {replica} answered chunks of different snapshots in one download")
        if not answer.data:
            raise BackupError(f"replica {replica} answered an empty chunk at offset {len(data)} of {first.size}")
        data += answer.data
    snapshot = bytes(data)
    if snapshots.checksum(snapshot) != first.checksum:
        raise BackupError(
            f"the snapshot of op {first.snapshot_op} from replica {replica} arrived damaged (checksum)"
        )
    return first.cluster, snapshot


def _exchange(socket: zmq.Socket[bytes], query: BackupQuery, replica: int, timeout_ms: int) -> BackupChunk:
    """Send `query` and wait for its answer (a chunk at the offset asked, or an error other than ``gone``
    raised as BackupError)."""
    socket.send_multipart([b"", encode_query(query)])
    deadline = time.monotonic() + timeout_ms / 1000
    while (left := deadline - time.monotonic()) > 0:
        if not socket.poll(int(left * 1000) + 1):
            break
        frames = socket.recv_multipart()
        try:
            answer = decode_answer(frames[-1])
        except BackupQueryError:
            continue  # e.g. the bare Error of a replica that does not know the query: it times out below
        if answer.error is not None:
            if answer.error == GONE:
                return answer
            hint = ""
            if answer.error == NO_SNAPSHOT and not query.fresh:
                hint = ": `zvsr backup --fresh` has it encode its state now, or wait for its next snapshot"
            raise BackupError(f"replica {replica}: {answer.error}: {answer.message}{hint}")
        if answer.offset == query.offset and (query.snapshot_op in (0, answer.snapshot_op)):
            return answer
    raise BackupUnreachable(
        f"replica {replica} did not answer the backup query within {timeout_ms} ms "
        "(is it up, and does it run a zvsr with `zvsr backup`?)"
    )


def take_backup(
    config: ClusterConfig,
    out: Path,
    *,
    replica: int | None = None,
    fresh: bool = False,
    timeout_ms: int = c.BACKUP_TIMEOUT_MS,
) -> dict[str, Any]:
    """Back up the primary's (or `replica`'s) latest snapshot (or a fresh one) to `out`, verified; returns what
    was saved. BackupError if nothing was (see the module docstring)."""
    index, status = choose_replica(config, replica=replica, timeout_ms=min(timeout_ms, c.STATUS_TIMEOUT_MS))
    cluster, snapshot = fetch_snapshot(config, index, fresh=fresh, timeout_ms=timeout_ms)
    if cluster != config.cluster_id:
        raise BackupError(
            f"replica {index} belongs to cluster {cluster}, the cluster file says {config.cluster_id}"
        )
    backup = Backup.of_snapshot(cluster, snapshot)
    write_backup(out, backup)
    if read_backup(out) != backup:
        raise BackupError(f"{out} does not read back as what was written")
    return {
        "path": str(out),
        **backup.describe(),
        "replica": index,
        "role": status.get("role"),
        "view": status.get("view"),
        "fresh": fresh,
        "verified": True,
    }


# --- restoring ------------------------------------------------------------------------------------------------


def restore(
    backup_path: Path, config: ClusterConfig, replica: int, *, force_cluster_id: bool = False
) -> dict[str, Any]:
    """Seed replica `replica`'s empty data dir of `config` from the backup file (see the module docstring);
    returns what was written. BackupError if it refuses or fails."""
    if not 0 <= replica < len(config.replicas):
        raise BackupError(f"replica {replica}: the cluster has replicas 0..{len(config.replicas) - 1}")
    path = config.replica_data_dir(replica)
    if path is None:
        raise BackupError("the cluster file sets no [node] data_dir: there is no data dir to restore into")
    backup = read_backup(backup_path)
    if backup.cluster_id != config.cluster_id and not force_cluster_id:
        raise BackupError(
            f"the backup is of cluster {backup.cluster_id}, the cluster file is of cluster {config.cluster_id}: "
            "refusing (--force-cluster-id restores it into this cluster all the same)"
        )
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(
            f"{path} is not empty: restore only into an empty data dir (a replica's state is never overwritten)"
        )
    epoch = _epoch_of(backup.snapshot)
    if epoch is not None and epoch != config.epoch:
        # Its configuration names the members of that epoch (ids, endpoints) and every replica would replay into
        # it: a new cluster's 0..n-1 would not be its members. Refused rather than started wrong.
        raise BackupError(
            f"the backup was taken in epoch {epoch}, after a reconfiguration (the cluster file's first epoch is "
            f"{config.epoch}): restoring it into a new cluster is not supported yet"
        )
    marker = Marker(
        cluster_id=config.cluster_id,
        replica=replica,
        replica_count=len(config.replicas),
        epoch=config.epoch,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    try:
        seed_from_snapshot(path, marker, backup.snapshot)
        _check_restarts_from_disk(path, config, replica, backup)
    except StorageError as error:
        raise BackupError(str(error)) from error
    return {"data_dir": str(path), "replica": replica, **backup.describe(), "epoch": config.epoch}


def _epoch_of(snapshot: bytes) -> int | None:
    """The epoch of the configuration a snapshot carries; None if it carries none (taken before reconfiguration
    existed, in the cluster file's epoch)."""
    try:
        carried = snapshots.decode(snapshot).membership
        return None if not carried else membership.decode(carried).epoch
    except (snapshots.SnapshotError, membership.MembershipError) as error:
        raise BackupError(f"the backup's snapshot does not decode: {error}") from error


def _check_restarts_from_disk(path: Path, config: ClusterConfig, replica: int, backup: Backup) -> None:
    """Open the seeded directory as the node will, and check it restarts from disk with the backup's state."""
    storage = Storage.open(
        path, cluster_id=config.cluster_id, replica=replica, replica_count=len(config.replicas), epoch=config.epoch
    )
    try:
        durable = storage.durable
        if (
            storage.start != START_DISK
            or durable is None
            or durable.snapshot != backup.snapshot
            or durable.commit_number != backup.op_number
            or durable.log
            or (durable.view_number, durable.last_normal_view) != (0, 0)
        ):
            raise BackupError(
                f"{path} was written but does not open as a restart from the backup ({storage.start})"
            )
    finally:
        storage.close()
