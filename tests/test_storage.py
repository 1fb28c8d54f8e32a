"""The data directory's start decision (ARCHITECTURE rule 12): first start, restart into Recovery, or refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zvsr.protocol.messages import LogEntry
from zvsr.protocol.ready import PersistLog, PersistViewState
from zvsr.protocol.replica import DurableState
from zvsr.runtime.storage import MARKER_NAME, START_DISK, START_FIRST, START_RECOVERY, Storage, StorageError


def open_replica(path: Path | None, *, replica: int = 1, cluster_id: int = 7, init: bool = True) -> Storage:
    return Storage.open(path, cluster_id=cluster_id, replica=replica, replica_count=3, init=init)


def test_an_empty_data_dir_without_init_is_a_lost_disk_and_recovers(tmp_path: Path) -> None:
    """A wiped replica must not start empty in view 0 (amnesia); it runs Recovery and writes its marker."""
    storage = open_replica(tmp_path, init=False)
    assert storage.start == START_RECOVERY and storage.recovering and storage.durable is None
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
    entry = LogEntry(view=0, op_number=1, client_id=5, request_number=1, operation=b"x")
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
