"""Reconfiguration end to end (issue 14, VR Revisited §7): real replica and proxy processes on 127.0.0.1, four
writers through the proxy, and the operator's own commands (`zvsr node --join`, `zvsr member …`).

After each scenario: every acknowledged write is present (`Workload.lost_writes`), the history is linearizable by
`zvsr lincheck --format zvsr`, and the replicas that left exited 0 by themselves. The write pause — the longest
time without an acknowledged write while the change happens — is printed (run with -s to see it); the bound
asserted is loose (a loaded 2-core machine), the figures are the measurement.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from zvsr.fuzz.workload import Workload
from zvsr.runtime.cluster_config import ReplicaAddress
from zvsr.runtime.processes import ProcessCluster, free_ports, process_cluster, wait_for

pytestmark = pytest.mark.timeout(300)

PAUSE_BOUND_S = 5.0  # a change that stalls the writers longer than this is a bug, not load


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    with process_cluster(tmp_path) as started:
        started.wait_for_primary()
        yield started


def new_address() -> ReplicaAddress:
    ports = free_ports(4)
    peer, heartbeat, client, watch = (f"tcp://127.0.0.1:{port}" for port in ports)
    return ReplicaAddress(peer=peer, heartbeat=heartbeat, client=client, watch=watch)


def named(address: ReplicaAddress) -> str:
    return f"peer={address.peer},heartbeat={address.heartbeat},client={address.client},watch={address.watch}"


def more_writes(load: Workload, count: int, what: str, timeout_s: float = 60) -> None:
    target = load.acknowledged() + count
    wait_for(lambda: load.acknowledged() >= target, timeout_s=timeout_s, what=what)


def longest_gap(load: Workload, start: float, end: float) -> float:
    """The longest time between acknowledged writes (or the window's ends) in [start, end] (monotonic)."""
    with load.lock:
        done = sorted(
            op.return_ + load.started
            for op in load.history
            if not op.pending and op.input["op"] != "get" and op.return_ is not None
        )
    marks = [start, *(t for t in done if start <= t <= end), end]
    return max(b - a for a, b in zip(marks, marks[1:], strict=False))


def member(cluster: ProcessCluster, *arguments: str) -> str:
    """`zvsr member …` through the proxy; its output (it must succeed)."""
    result = cluster.cli("member", *arguments)
    assert result.returncode == 0, f"zvsr member {' '.join(arguments)}: {result.stdout}{result.stderr}"
    return result.stdout


def in_epoch(cluster: ProcessCluster, replica: int, epoch: int) -> bool:
    status = cluster.status(replica)
    return status is not None and status.get("epoch") == epoch and status.get("status") == "normal"


def check_history(cluster: ProcessCluster, load: Workload) -> None:
    assert not load.errors, f"clients through the proxy got errors: {dict(load.errors)}"
    assert load.lost_writes() == []
    history = cluster.root / "history.jsonl"
    load.write_history(history)
    verdict = subprocess.run(
        [sys.executable, "-m", "zvsr", "lincheck", str(history), "--format", "zvsr", "--timeout", "120"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert verdict.returncode == 0, f"zvsr lincheck: {verdict.stdout}{verdict.stderr}"


def left_cleanly(cluster: ProcessCluster, replica: int, epoch: int) -> None:
    process = cluster.nodes[replica]
    code = process.wait(timeout=30)
    assert code == 0, f"r{replica} exited {code}"
    log = (cluster.root / f"replica-{replica}.log").read_text()
    assert f"left the configuration in epoch {epoch}" in log


def test_a_replica_killed_with_sigkill_is_replaced_by_a_new_one_at_new_endpoints(
    cluster: ProcessCluster,
) -> None:
    """Four writers through the proxy. A backup is killed -9 (its host is gone for good); a new replica starts
    empty at new endpoints (`zvsr node --join --address`) and `zvsr member replace` swaps it in: epoch 1 has the
    two survivors and the new one, which catches up and serves. Nothing acknowledged is lost."""
    load = Workload(cluster.config.proxy, clients=4, timeout_ms=10_000)
    load.run()
    try:
        more_writes(load, 100, "100 acknowledged ops")
        primary = cluster.wait_for_primary()
        dead = next(i for i in (0, 1, 2) if i != primary)
        cluster.kill(dead)
        more_writes(load, 50, "writes with one replica down")
        address = new_address()
        cluster.join(3, address)
        started = time.monotonic()
        out = member(cluster, "replace", str(dead), "--address", named(address))
        survivors = [i for i in (0, 1, 2) if i != dead]
        first = [primary, *[i for i in survivors if i != primary]]
        assert out.splitlines()[0] == (f"epoch 0 -> 1: members 0, 1, 2 -> {', '.join(map(str, first))}, 3"), out
        wait_for(lambda: in_epoch(cluster, 3, 1), timeout_s=60, what="r3 normal in epoch 1")
        more_writes(load, 100, "writes in epoch 1")
        pause = longest_gap(load, started, time.monotonic())
        print(f"\nreplace (kill -9 then `member replace`): longest write pause {pause * 1000:.0f} ms")
        assert pause < PAUSE_BOUND_S
    finally:
        load.finish()
    status = cluster.status(3)
    assert status is not None and [m["id"] for m in status["membership"]["members"]] == [*first, 3]
    check_history(cluster, load)


def test_grow_from_3_to_5_then_shrink_to_3_and_the_removed_replicas_exit_0(cluster: ProcessCluster) -> None:
    """Four writers through the proxy. Two new replicas join (`member add` twice: epochs 1 and 2, five members);
    then two of the first replicas are removed (`member remove`: epochs 3 and 4): each hands over and exits 0 with
    "left the configuration". The proxy follows every change without a restart and the writers see no error."""
    load = Workload(cluster.config.proxy, clients=4, timeout_ms=10_000)
    load.run()
    pauses = {}
    try:
        more_writes(load, 100, "100 acknowledged ops")
        for epoch, replica in ((1, 3), (2, 4)):
            address = new_address()
            cluster.join(replica, address)
            started = time.monotonic()
            out = member(cluster, "add", "--address", named(address))
            assert out.splitlines()[0].startswith(f"epoch {epoch - 1} -> {epoch}: members "), out
            wait_for(partial(in_epoch, cluster, replica, epoch), timeout_s=60, what=f"r{replica} in epoch {epoch}")
            more_writes(load, 50, f"writes in epoch {epoch}")
            pauses[f"grow to {epoch + 3}"] = longest_gap(load, started, time.monotonic())
        primary = cluster.wait_for_primary()
        leaving = [i for i in (0, 1, 2) if i != primary]
        for epoch, replica in ((3, leaving[0]), (4, leaving[1])):
            started = time.monotonic()
            out = member(cluster, "remove", str(replica))
            assert f"removed r{replica}" in out, out
            left_cleanly(cluster, replica, epoch)
            more_writes(load, 50, f"writes in epoch {epoch}")
            pauses[f"shrink to {7 - epoch}"] = longest_gap(load, started, time.monotonic())
        out = member(cluster, "list")
        assert out.splitlines()[0].startswith("epoch 4 ") and out.splitlines()[0].endswith(
            f"members {primary}, 3, 4"
        ), out
    finally:
        load.finish()
    print("\n" + "\n".join(f"{what}: longest write pause {gap * 1000:.0f} ms" for what, gap in pauses.items()))
    assert max(pauses.values()) < PAUSE_BOUND_S
    check_history(cluster, load)
