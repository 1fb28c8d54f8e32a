"""The data directory's start decision (ARCHITECTURE rule 12): first start, restart into Recovery, or refusal."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest

from zvsr.protocol import snapshots
from zvsr.protocol.messages import LogEntry
from zvsr.protocol.ready import PersistLog, PersistSnapshot, PersistViewState
from zvsr.protocol.replica import DurableState
from zvsr.runtime.data_dir import MARKER_NAME, START_DISK, START_FIRST, START_RECOVERY, Storage, StorageError
from zvsr.storage.superblock import CHECKSUM_BYTES, FORMAT, VERSION, decode


def open_replica(path: Path | None, *, replica: int = 1, cluster_id: int = 7, init: bool = True) -> Storage:
    return Storage.open(path, cluster_id=cluster_id, replica=replica, replica_count=3, init=init)


def test_an_empty_data_dir_without_init_is_a_lost_disk_and_recovers(tmp_path: Path) -> None:
    """A wiped replica must not start empty in view 0 (amnesia); it runs Recovery and writes its marker."""
    storage = open_replica(tmp_path, init=False)
    assert storage.start == START_RECOVERY and storage.recovering and storage.durable is None
    assert not storage.marker_found, "the node says the directory was empty, not that it found a marker"
    storage.begin()
    assert (tmp_path / MARKER_NAME).exists()
    assert not (tmp_path / "superblock.a").exists()  # the view state Recovery ends with writes it
    storage.close()
    assert open_replica(tmp_path, init=False).start == START_RECOVERY  # still nothing durable: recover again


def test_a_first_start_writes_its_marker_only_when_it_begins(tmp_path: Path) -> None:
    path = tmp_path / "data" / "replica-1"  # missing parents are created
    storage = open_replica(path)
    assert storage.start == START_FIRST and not storage.recovering
    assert not (path / MARKER_NAME).exists()  # nothing is written before the node is ready to run
    storage.begin()
    marker = json.loads((path / MARKER_NAME).read_text())
    assert {k: marker[k] for k in ("format", "cluster_id", "replica", "replica_count")} == {
        "format": "zvsr.replica",
        "cluster_id": 7,
        "replica": 1,
        "replica_count": 3,
    }
    assert not (path / (MARKER_NAME + ".tmp")).exists()


def test_a_restart_with_its_superblock_comes_back_from_disk(tmp_path: Path) -> None:
    first = open_replica(tmp_path)
    first.begin()
    entry = LogEntry(view=0, op_number=1, client_id=5, request_number=1, operation=b"x", timestamp=1)
    first.persist([PersistLog(op_number_first=1, entries=(entry,))])
    first.persist([PersistViewState(view_number=2, last_normal_view=2, commit_number=1)])
    first.close()
    again = open_replica(tmp_path)
    assert again.start == START_DISK and not again.recovering
    assert again.durable == DurableState(view_number=2, last_normal_view=2, commit_number=1, log=(entry,))
    again.begin()  # writes nothing: the marker stays as the first start wrote it
    assert again.marker.replica == 1


def test_a_restart_that_finds_the_marker_but_no_superblock_recovers(tmp_path: Path) -> None:
    open_replica(tmp_path).begin()
    for name in ("superblock.a", "superblock.b"):
        (tmp_path / name).unlink(missing_ok=True)
    again = open_replica(tmp_path)
    assert again.start == START_RECOVERY and again.recovering and again.durable is None
    assert again.marker_found


@pytest.mark.parametrize(("replica", "cluster_id"), [(2, 7), (1, 8)])
def test_a_marker_of_another_replica_or_cluster_is_refused(tmp_path: Path, replica: int, cluster_id: int) -> None:
    open_replica(tmp_path).begin()
    with pytest.raises(StorageError, match="belongs to replica 1 of cluster 7"):
        open_replica(tmp_path, replica=replica, cluster_id=cluster_id)


@pytest.mark.parametrize("content", [b"", b"{not json", b"[]", b'{"format": "zvsr.replica", "version": 1}'])
def test_a_damaged_marker_is_refused_rather_than_taken_for_a_first_start(tmp_path: Path, content: bytes) -> None:
    (tmp_path / MARKER_NAME).write_bytes(content)
    with pytest.raises(StorageError, match="refusing to start"):
        open_replica(tmp_path)


def test_a_leftover_temporary_marker_is_a_first_start_that_never_ran(tmp_path: Path) -> None:
    (tmp_path / (MARKER_NAME + ".tmp")).write_bytes(b"{half")
    storage = open_replica(tmp_path)
    assert storage.start == START_FIRST
    storage.begin()
    assert json.loads((tmp_path / MARKER_NAME).read_text())["replica"] == 1


def test_without_a_data_dir_a_temporary_one_is_used_and_removed(tmp_path: Path) -> None:
    storage = open_replica(None)
    assert storage.temporary and storage.start == START_FIRST and storage.path.is_dir()
    storage.begin()
    storage.persist([PersistViewState(view_number=1, last_normal_view=1, commit_number=0)])  # a no-op, for now
    storage.close()
    assert not storage.path.exists()
    storage.close()  # idempotent


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError):
        open_replica(tmp_path / "file")


# --- snapshots and damage --------------------------------------------------------------------------------------


def log_entries(first: int, last: int) -> tuple[LogEntry, ...]:
    return tuple(
        LogEntry(view=0, op_number=op, client_id=5, request_number=op, operation=b"op%d" % op, timestamp=op)
        for op in range(first, last + 1)
    )


def a_replica_with_a_snapshot(path: Path) -> bytes:
    """Ops 1..12 persisted, a snapshot at op 10 keeping the log after op 6, view state at op 12."""
    data = snapshots.encode(10, [(5, 0, 10, b"result-10")], b"app-state-at-10")
    storage = open_replica(path)
    storage.begin()
    storage.persist([PersistLog(op_number_first=1, entries=log_entries(1, 12))])
    storage.persist([PersistSnapshot(op_number=10, log_base=6, data=data)])
    storage.persist([PersistViewState(view_number=1, last_normal_view=1, commit_number=12)])
    assert storage.snapshot_op == 10
    storage.close()
    return data


def test_a_restart_reads_the_snapshot_the_log_names_and_the_log_after_its_base(tmp_path: Path) -> None:
    data = a_replica_with_a_snapshot(tmp_path)
    again = open_replica(tmp_path)
    assert again.start == START_DISK
    assert again.durable == DurableState(
        view_number=1, last_normal_view=1, commit_number=12, log=log_entries(7, 12), log_base=6, snapshot=data
    )
    again.close()


def test_a_newer_snapshot_replaces_the_older_file(tmp_path: Path) -> None:
    a_replica_with_a_snapshot(tmp_path)
    storage = open_replica(tmp_path)
    storage.begin()
    storage.persist([PersistLog(op_number_first=13, entries=log_entries(13, 20))])
    storage.persist([PersistSnapshot(op_number=20, log_base=10, data=snapshots.encode(20, [], b"s20"))])
    storage.close()
    assert sorted(p.name for p in tmp_path.glob("snapshot-*")) == [f"snapshot-{20:020d}.zvsr"]
    again = open_replica(tmp_path)
    assert again.durable is not None and again.durable.log_base == 10 and again.durable.log == log_entries(11, 20)
    again.close()


@pytest.mark.parametrize("damage", ["wal_middle", "snapshot_flipped", "snapshot_missing", "superblock_both"])
def test_damaged_durable_state_is_moved_aside_and_the_replica_recovers(tmp_path: Path, damage: str) -> None:
    """Never start on damaged state; never refuse forever either: repair from the peers (Recovery)."""
    a_replica_with_a_snapshot(tmp_path)
    snapshot_file = tmp_path / f"snapshot-{10:020d}.zvsr"
    if damage == "wal_middle":
        data = bytearray((tmp_path / "wal.log").read_bytes())
        data[60] ^= 0x01  # inside the base record: intact entry records follow
        (tmp_path / "wal.log").write_bytes(bytes(data))
    elif damage == "snapshot_flipped":
        data = bytearray(snapshot_file.read_bytes())
        data[-1] ^= 0x01
        snapshot_file.write_bytes(bytes(data))
    elif damage == "snapshot_missing":
        snapshot_file.unlink()
    else:
        for name in ("superblock.a", "superblock.b"):
            (tmp_path / name).write_bytes(b"garbage")
    storage = open_replica(tmp_path)
    assert storage.start == START_RECOVERY and storage.recovering and storage.durable is None
    assert storage.damaged is not None and storage.damaged.parent == tmp_path
    assert (storage.damaged / "wal.log").exists()  # kept for the operator
    storage.begin()  # Recovery starts from an empty log
    assert storage.wal is not None and storage.wal.last_op_number == 0
    storage.close()
    assert (tmp_path / MARKER_NAME).exists()


# --- the epoch of the view state (VR Revisited §7) --------------------------------------------------------------


def test_the_view_state_keeps_its_epoch_across_a_restart(tmp_path: Path) -> None:
    """Replica 1 entered epoch 2 in view 7 (a reconfiguration): a restart hands the core epoch 2 with the view
    state, the check that the log's configuration and the view state agree."""
    first = open_replica(tmp_path)
    first.begin()
    first.persist([PersistViewState(view_number=7, last_normal_view=7, commit_number=0, epoch=2)])
    first.close()
    again = open_replica(tmp_path)
    assert again.durable is not None and again.durable.epoch == 2 and again.durable.view_number == 7


def test_an_old_superblock_without_an_epoch_reads_as_epoch_0(tmp_path: Path) -> None:
    """A copy written before reconfiguration existed (no ``epoch`` key) is epoch 0, and a restart from it starts
    the core in epoch 0; a copy whose epoch is not a number is no copy at all."""
    fields = {"sequence": 3, "view_number": 4, "last_normal_view": 4, "commit_number": 9, "cluster_id": 7}
    payload = msgpack.packb({"format": FORMAT, "version": VERSION, **fields, "replica": 1}, use_bin_type=True)
    old = hashlib.blake2b(payload, digest_size=CHECKSUM_BYTES).digest() + payload
    state = decode(old)
    assert state is not None and state.epoch == 0 and state.view_number == 4
    bad = msgpack.packb({"format": FORMAT, "version": VERSION, **fields, "replica": 1, "epoch": "2"})
    assert decode(hashlib.blake2b(bad, digest_size=CHECKSUM_BYTES).digest() + bad) is None

    first = open_replica(tmp_path)
    first.begin()
    first.close()
    for name in ("superblock.a", "superblock.b"):
        (tmp_path / name).unlink(missing_ok=True)
    (tmp_path / "superblock.a").write_bytes(old)
    again = open_replica(tmp_path)
    assert again.start == START_DISK and again.durable is not None and again.durable.epoch == 0


def test_the_view_state_never_moves_back_in_epoch_or_view(tmp_path: Path) -> None:
    """(epoch, view) only goes forward: epoch 1 view 5 may follow epoch 0 view 9 (views go on across epochs in
    the core, but the order is by epoch first); epoch 0 after epoch 1 is refused before anything is written."""
    storage = open_replica(tmp_path)
    storage.begin()
    storage.persist([PersistViewState(view_number=9, last_normal_view=9, commit_number=0, epoch=0)])
    storage.persist([PersistViewState(view_number=10, last_normal_view=10, commit_number=0, epoch=1)])
    with pytest.raises(StorageError, match="refusing to move the view state back from epoch 1 view 10"):
        storage.persist([PersistViewState(view_number=11, last_normal_view=11, commit_number=0, epoch=0)])
    with pytest.raises(StorageError, match="back from epoch 1 view 10 to epoch 1 view 9"):
        storage.persist([PersistViewState(view_number=9, last_normal_view=9, commit_number=0, epoch=1)])
    storage.close()
    durable = open_replica(tmp_path).durable
    assert durable is not None and (durable.epoch, durable.view_number) == (1, 10)
