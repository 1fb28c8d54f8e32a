"""`zvsr backup` and `zvsr restore` (zvsr.runtime.backup, zvsr.runtime.backup_query).

- The backup file: a round trip keeps every field; any damaged byte, a truncation, an extra byte, a wrong magic
  or an unknown version is refused.
- Restore: seeds an empty data dir that opens as a restart from disk with the snapshot's state; refuses a data
  dir that is not empty, a damaged backup, another cluster's backup (unless forced), a cluster file without a
  data dir, a replica not in the cluster.
- The backup query, on in-process nodes: no snapshot yet, a fresh one, chunks of a multi-chunk snapshot, the
  pin that keeps a snapshot being downloaded served while the replica takes newer ones, ``gone``, bad queries.
- End to end on real processes: writes under load through the proxy, `zvsr backup` of the primary, every data
  dir destroyed, `zvsr restore` of every replica, a plain start: every write acknowledged before the backup's op
  is there, a retry of a request in the backup is answered from the client table (not executed again), and the
  cluster serves new writes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest
import zmq
from local_cluster import TIMEOUTS, LocalCluster, operation

from zvsr import constants as c
from zvsr.client import Client
from zvsr.fuzz.workload import Workload
from zvsr.protocol import snapshots
from zvsr.protocol.client_table import REGISTER_REQUEST_NUMBER, parse_register_result
from zvsr.protocol.messages import Error, Redirect, Reply, Request
from zvsr.runtime import backup_query
from zvsr.runtime.backup import (
    HEADER_BYTES,
    MAGIC,
    Backup,
    BackupError,
    decode_backup,
    encode_backup,
    fetch_snapshot,
    read_backup,
    restore,
    write_backup,
)
from zvsr.runtime.cluster_config import ClusterConfig, to_toml
from zvsr.runtime.data_dir import MARKER_NAME, START_DISK, Storage, snapshot_file_name
from zvsr.runtime.processes import ProcessCluster, loopback_config, process_cluster, wait_for
from zvsr.wire import decode_client_reply, encode


def a_snapshot(op_number: int = 1234, *, timestamp: int = 987_654_321) -> bytes:
    app_state = msgpack.packb({"kv": {"a": 1, "b": "two"}}, use_bin_type=True)
    table = [(11, 5, 3, b"\x01"), (12, 6, 7, b"result")]
    return snapshots.encode(op_number, table, app_state, timestamp=timestamp)


def a_backup(cluster_id: int = 1, **fields: Any) -> Backup:
    return Backup.of_snapshot(cluster_id, a_snapshot(**fields))


# --- the backup file ----------------------------------------------------------------------------------------


def test_a_backup_file_round_trips_every_field(tmp_path: Path) -> None:
    backup = a_backup(7, op_number=1234, timestamp=555)
    assert (backup.cluster_id, backup.op_number, backup.timestamp) == (7, 1234, 555)
    data = encode_backup(backup)
    assert data[:8] == MAGIC and len(data) == HEADER_BYTES + backup.size == 76 + backup.size
    assert data[HEADER_BYTES:] == backup.snapshot
    assert decode_backup(data) == backup
    path = tmp_path / "b.zvsrbak"
    write_backup(path, backup)
    assert read_backup(path) == backup
    assert [p.name for p in tmp_path.iterdir()] == ["b.zvsrbak"]  # no temporary file left behind
    assert backup.describe() == {
        "cluster": 7,
        "op_number": 1234,
        "cluster_time_ns": 555,
        "size": backup.size,
        "blake2b": snapshots.checksum(backup.snapshot).hex(),
    }
    write_backup(path, a_backup(7, op_number=2000))  # over an older one: replaced whole
    assert read_backup(path).op_number == 2000


def test_a_backup_file_with_any_damaged_byte_is_refused() -> None:
    data = encode_backup(a_backup())
    for index in range(len(data)):
        damaged = bytearray(data)
        damaged[index] ^= 0x01
        with pytest.raises(BackupError):
            decode_backup(bytes(damaged))
    for cut in (0, 7, HEADER_BYTES - 1, HEADER_BYTES, len(data) - 1):
        with pytest.raises(BackupError):
            decode_backup(data[:cut])
    with pytest.raises(BackupError, match="snapshot bytes"):
        decode_backup(data + b"\x00")


def test_a_backup_file_of_another_magic_or_version_is_refused(tmp_path: Path) -> None:
    data = bytearray(encode_backup(a_backup()))
    with pytest.raises(BackupError, match="bad magic"):
        decode_backup(b"ZVSRSNP3" + bytes(data[8:]))
    with pytest.raises(BackupError, match="bad magic"):
        decode_backup(a_snapshot())  # a bare snapshot is not a backup
    # Version 2 with a header checksum that matches: refused for its version, not as damage.
    data[8:12] = (2).to_bytes(4, "big")
    data[60:76] = hashlib.blake2b(bytes(data[:60]), digest_size=16).digest()
    with pytest.raises(BackupError, match="version 2 is not supported"):
        decode_backup(bytes(data))
    path = tmp_path / "v2"
    path.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="v2: backup format version 2"):
        read_backup(path)
    with pytest.raises(BackupError, match="cannot read"):
        read_backup(tmp_path / "missing")


def test_a_backup_whose_snapshot_does_not_decode_is_refused() -> None:
    with pytest.raises(BackupError, match="does not decode"):
        Backup.of_snapshot(1, b"ZVSRSNP3" + bytes(10))


# --- restore ----------------------------------------------------------------------------------------------


def new_cluster(tmp_path: Path, **settings: Any) -> ClusterConfig:
    return loopback_config(3, data_dir=str(tmp_path / "new"), **settings)


def test_restore_seeds_a_data_dir_that_restarts_from_disk_with_the_snapshot(tmp_path: Path) -> None:
    backup = a_backup(1, op_number=1234, timestamp=555)
    write_backup(tmp_path / "b", backup)
    config = new_cluster(tmp_path, epoch=3)
    report = restore(tmp_path / "b", config, 2)
    assert report["op_number"] == 1234 and report["replica"] == 2
    path = config.replica_data_dir(2)
    assert path is not None
    names = sorted(p.name for p in path.iterdir())
    assert names == sorted([MARKER_NAME, "superblock.a", "wal.log", snapshot_file_name(1234)])
    assert (path / snapshot_file_name(1234)).read_bytes() == backup.snapshot
    marker = json.loads((path / MARKER_NAME).read_text())
    assert (marker["cluster_id"], marker["replica"], marker["replica_count"], marker["epoch"]) == (1, 2, 3, 3)
    storage = Storage.open(path, cluster_id=1, replica=2, replica_count=3, epoch=3)
    try:
        assert storage.start == START_DISK
        durable = storage.durable
        assert durable is not None
        assert (durable.view_number, durable.last_normal_view, durable.commit_number) == (0, 0, 1234)
        assert durable.log == () and durable.log_base == 1234 and durable.snapshot == backup.snapshot
    finally:
        storage.close()
    assert not (tmp_path / "new" / "replica-0").exists()  # only the replica named


def test_restore_refuses_a_data_dir_that_is_not_empty(tmp_path: Path) -> None:
    write_backup(tmp_path / "b", a_backup())
    config = new_cluster(tmp_path)
    restore(tmp_path / "b", config, 0)
    with pytest.raises(BackupError, match="not empty"):
        restore(tmp_path / "b", config, 0)  # a replica's own state (here: restored already)
    path = config.replica_data_dir(1)
    assert path is not None
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("mine")
    with pytest.raises(BackupError, match="not empty"):
        restore(tmp_path / "b", config, 1)
    assert [p.name for p in path.iterdir()] == ["notes.txt"]
    empty = config.replica_data_dir(2)
    assert empty is not None
    empty.mkdir()
    restore(tmp_path / "b", config, 2)  # an empty directory (a fresh mount, say) is fine


def test_restore_refuses_a_damaged_backup_and_writes_nothing(tmp_path: Path) -> None:
    data = bytearray(encode_backup(a_backup()))
    data[-3] ^= 0x40  # in the app state
    (tmp_path / "b").write_bytes(bytes(data))
    config = new_cluster(tmp_path)
    with pytest.raises(BackupError, match="checksum mismatch"):
        restore(tmp_path / "b", config, 0)
    assert not (tmp_path / "new").exists()


def test_restore_refuses_another_clusters_backup_unless_forced(tmp_path: Path) -> None:
    write_backup(tmp_path / "b", a_backup(cluster_id=9))
    config = new_cluster(tmp_path)  # cluster 1
    with pytest.raises(BackupError, match="backup is of cluster 9.*cluster 1.*--force-cluster-id"):
        restore(tmp_path / "b", config, 0)
    assert not (tmp_path / "new").exists()
    restore(tmp_path / "b", config, 0, force_cluster_id=True)
    path = config.replica_data_dir(0)
    assert path is not None
    assert json.loads((path / MARKER_NAME).read_text())["cluster_id"] == 1  # it joins the cluster of the file


def test_restore_refuses_a_cluster_without_data_dir_or_such_a_replica(tmp_path: Path) -> None:
    write_backup(tmp_path / "b", a_backup())
    with pytest.raises(BackupError, match="no \\[node\\] data_dir"):
        restore(tmp_path / "b", loopback_config(3), 0)
    with pytest.raises(BackupError, match="replicas 0..2"):
        restore(tmp_path / "b", new_cluster(tmp_path), 3)


@pytest.mark.timeout(60)
def test_the_restore_command_says_what_it_refuses(tmp_path: Path) -> None:
    write_backup(tmp_path / "b", a_backup(cluster_id=9))
    config = tmp_path / "cluster.toml"
    config.write_text(to_toml(new_cluster(tmp_path)))
    command = [sys.executable, "-m", "zvsr", "restore", str(tmp_path / "b"), "--config", str(config)]
    refused = subprocess.run([*command, "--replica", "0"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "backup is of cluster 9" in refused.stderr
    forced = subprocess.run(
        [*command, "--replica", "0", "--force-cluster-id"], capture_output=True, text=True, timeout=60
    )
    assert forced.returncode == 0, forced.stderr
    assert "restored replica 0" in forced.stdout and "op 1234" in forced.stdout


# --- the backup query, on in-process nodes -------------------------------------------------------------------


def ask(cluster: LocalCluster, index: int, query: bytes) -> backup_query.BackupChunk:
    s = cluster.client(index)
    s.setsockopt(zmq.MAXMSGSIZE, c.BACKUP_ANSWER_BYTES_MAX)
    s.send_multipart([b"", query])
    assert s.poll(5000), "no answer to the backup query"
    return backup_query.decode_answer(s.recv_multipart()[-1])


def query(snapshot_op: int = 0, offset: int = 0, *, fresh: bool = False) -> bytes:
    return backup_query.encode_query(backup_query.BackupQuery(snapshot_op=snapshot_op, offset=offset, fresh=fresh))


def put(cluster: LocalCluster, client_id: int, number: int, key: str, value: Any) -> None:
    request = Request(client_id=client_id, request_number=number, operation=operation("put", key, value=value))
    assert isinstance(cluster.call(0, request), Reply)


@pytest.mark.timeout(120)
def test_the_backup_query_serves_snapshots_in_chunks_pinned_while_they_download(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    # (raw Requests of fixed client ids fill the log here, as tests/local_cluster.py's: sessions open implicitly)
    config = loopback_config(
        3, data_dir=data, timeouts=dict(TIMEOUTS), snapshot_interval_ops=20, require_registration=False
    )
    cluster = LocalCluster(config).start()
    try:
        cluster.wait_status(0, "primary in normal status", lambda s: s["role"] == "primary")
        nothing = ask(cluster, 0, query())
        assert nothing.error == backup_query.NO_SNAPSHOT and "no snapshot yet" in nothing.message
        with pytest.raises(BackupError, match="no_snapshot: .*`zvsr backup --fresh`"):
            fetch_snapshot(config, 0, timeout_ms=5000)
        # 20 values of 60 KiB: a snapshot of more than one chunk (SNAPSHOT_CHUNK_BYTES, 1 MiB).
        for number in range(1, 21):
            put(cluster, 77, number, f"big/{number}", "x" * 60_000)
        cluster.wait_status(0, "a snapshot at op 20", lambda s: s["snapshot_op"] >= 20)
        first = ask(cluster, 0, query())
        assert first.error is None and first.cluster == 1 and first.snapshot_op >= 20
        assert first.size > c.SNAPSHOT_CHUNK_BYTES and len(first.data) == c.SNAPSHOT_CHUNK_BYTES
        pinned = first.snapshot_op
        # The replica moves on to newer snapshots; the one being downloaded stays served.
        for number in range(21, 41):
            put(cluster, 77, number, f"small/{number}", number)
        cluster.wait_status(0, "a newer snapshot", lambda s: s["snapshot_op"] > pinned)
        rest = ask(cluster, 0, query(pinned, len(first.data)))
        assert (rest.snapshot_op, rest.size, rest.checksum) == (pinned, first.size, first.checksum)
        whole = first.data + rest.data
        assert len(whole) == first.size and snapshots.checksum(whole) == first.checksum
        assert snapshots.decode(whole).op_number == pinned
        # Never pinned, not the latest: gone. Malformed: bad_request. Fresh: the state at commit_number now.
        assert ask(cluster, 0, query(pinned - 1)).error == backup_query.GONE
        assert ask(cluster, 0, msgpack.packb({"type": 34, "offset": 0})).error == backup_query.BAD_REQUEST
        assert ask(cluster, 0, query(pinned, first.size + 1)).error == backup_query.BAD_REQUEST
        commit = cluster.status(0)["commit_number"]
        cluster_id, fresh = fetch_snapshot(config, 0, fresh=True, timeout_ms=5000)
        decoded = snapshots.decode(fresh)
        assert cluster_id == 1 and decoded.op_number >= commit >= 40
        assert (77, 40) in {(client, number) for client, _, number, _ in decoded.client_table}
        _, latest = fetch_snapshot(config, 1, timeout_ms=5000)  # a backup's snapshot: the same encoding
        assert snapshots.decode(latest).op_number % 20 == 0
    finally:
        cluster.close()


# --- end to end: back up under load, lose every disk, restore, start --------------------------------------------


def zvsr(*arguments: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zvsr", *arguments], capture_output=True, text=True, timeout=timeout_s
    )


def call_until_answered(context: zmq.Context[zmq.Socket[bytes]], endpoint: str, request: Request) -> Reply | Error:
    """Send `request` to the replica at `endpoint` (a raw DEALER) until it answers it: Reply or Error."""
    s = context.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s.send(encode(request))
            while s.poll(300):
                answer = decode_client_reply(s.recv())
                if (answer.client_id, answer.request_number) != (request.client_id, request.request_number):
                    continue
                if isinstance(answer, Redirect):
                    raise AssertionError(f"{endpoint} is not the primary: {answer}")
                assert isinstance(answer, Reply | Error)
                return answer
        raise AssertionError(f"no answer from {endpoint} to {request}")
    finally:
        s.close()


@pytest.mark.timeout(240)
def test_backup_under_load_then_restore_every_replica_of_a_cluster_that_lost_every_disk(tmp_path: Path) -> None:
    with process_cluster(tmp_path, snapshot_interval_ops=50) as cluster:
        primary = cluster.wait_for_primary()
        endpoint = cluster.config.replicas[primary].client
        # A request executed before the backup: after the restore its retry must be answered, not executed. Its
        # session registers first (the table in the backup's snapshot holds it).
        register = Request(client_id=0xB0B, request_number=REGISTER_REQUEST_NUMBER, operation=b"")
        registered = call_until_answered(cluster.context, endpoint, register)
        assert isinstance(registered, Reply)
        session = parse_register_result(registered.result)
        assert session is not None
        probe = Request(client_id=session, request_number=1, operation=operation("incr", "probe", by=5))
        answered = call_until_answered(cluster.context, endpoint, probe)
        assert isinstance(answered, Reply) and msgpack.unpackb(answered.result) == 5
        load = Workload(cluster.config.proxy)
        load.run()
        wait_for(lambda: load.acknowledged() >= 150, timeout_s=60, what="150 acknowledged ops")
        with load.lock:
            puts_before = dict(load.acknowledged_puts)
            increments_before = load.acknowledged_increments
        # Every op acknowledged so far is at or below the primary's commit_number from now on.
        status = cluster.status(primary)
        assert status is not None and status["role"] == "primary"
        committed = status["commit_number"]
        wait_for(
            lambda: (s := cluster.status(primary)) is not None and s["snapshot_op"] >= committed,
            timeout_s=60,
            what=f"a snapshot at or after op {committed}",
        )
        out = tmp_path / "backup.zvsrbak"
        taken = zvsr("backup", "--config", str(cluster.path), str(out), "--json")  # still under load
        assert taken.returncode == 0, taken.stderr
        report = json.loads(taken.stdout)
        assert report["replica"] == primary and report["role"] == "primary" and report["verified"]
        backed_up = report["op_number"]
        assert backed_up >= committed, (backed_up, committed)
        assert read_backup(out).op_number == backed_up and out.stat().st_size == HEADER_BYTES + report["size"]
        fresh = zvsr("backup", "--config", str(cluster.path), str(tmp_path / "fresh.zvsrbak"), "--fresh")
        assert fresh.returncode == 0, fresh.stderr
        assert f"a fresh snapshot of replica {primary} (primary of view" in fresh.stdout
        match = re.search(r"op_number (\d+) ", fresh.stdout)
        assert match is not None and int(match.group(1)) >= committed, fresh.stdout
        assert read_backup(tmp_path / "fresh.zvsrbak").op_number == int(match.group(1))
        wait_for(lambda: load.acknowledged() >= 300, timeout_s=60, what="more ops after the backup")
        load.finish()
        with load.lock:
            increments_all = load.acknowledged_increments + load.unknown_increments

        # Every disk lost: stop everything, destroy every data dir, restore each replica, start without --init.
        for index in list(cluster.nodes):
            cluster.kill(index)
        assert cluster.proxy is not None
        cluster.proxy.kill()
        cluster.proxy.wait(timeout=10)
        shutil.rmtree(tmp_path / "data")
        for index in range(3):
            restored = zvsr("restore", str(out), "--config", str(cluster.path), "--replica", str(index))
            assert restored.returncode == 0, restored.stderr
            assert re.search(rf"restored replica {index} .*: op {backed_up} of cluster 1", restored.stdout)
        for index in range(3):
            cluster.start_node(index)  # a restart: no --init
        cluster.start_proxy()
        primary = cluster.wait_for_primary(timeout_s=30)
        status = cluster.status(primary)
        assert status is not None and status["start"] == START_DISK and status["commit_number"] >= backed_up

        with Client(cluster.config.proxy, timeout_ms=10_000) as client:
            for key, value in puts_before.items():
                stored = client.get(key)
                # Acknowledged before the backup's op: there. A later put (in the backup too) may have won.
                assert stored is not None and stored >= value, f"acknowledged write {key}={value} lost ({stored})"
            counter = client.get(load.counter_key) or 0
            assert increments_before <= counter <= increments_all
            # The cluster serves new writes, after the backup's op.
            client.put("after-restore", {"ok": True})
            assert client.get("after-restore") == {"ok": True}
        retried = call_until_answered(cluster.context, cluster.config.replicas[primary].client, probe)
        assert isinstance(retried, Reply) and msgpack.unpackb(retried.result) == 5  # from the client table
        with Client(cluster.config.proxy, timeout_ms=10_000) as client:
            assert client.get("probe") == 5  # not executed a second time

        def executed_past_the_backup(index: int) -> bool:
            answer = cluster.status(index)
            return answer is not None and answer["commit_number"] > backed_up

        wait_for(
            lambda: all(executed_past_the_backup(index) for index in range(3)),
            timeout_s=30,
            what="every replica to execute ops after the backup's",
        )


@pytest.mark.timeout(60)
def test_backup_of_a_cluster_that_is_down_says_so(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path)  # configured, never started
    try:
        result = zvsr("backup", "--config", str(cluster.path), str(tmp_path / "b"), "--timeout-ms", "200")
        assert result.returncode == 1 and "no primary in normal status answered" in result.stderr
        assert not (tmp_path / "b").exists()
    finally:
        cluster.cleanup()
