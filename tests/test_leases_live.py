"""Leases end to end: real replica and proxy processes, and lock holders as worker processes (`python -m
zvsr.bench.leases worker`: a `zvsr.client.Client` through the proxy that grants itself a lease, takes a lock with
it, keeps the lease alive every TTL/3 and reports each answer as a JSON line). Holders and primaries are killed
with SIGKILL. Each test waits for reported events or cluster states with deadlines, never for a fixed time, and
every process is killed at the end (the cluster by `process_cluster`, the workers by `Children`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zvsr.bench.leases import Worker, start_worker
from zvsr.bench.procs import Children
from zvsr.client import Client
from zvsr.runtime.processes import ProcessCluster, process_cluster, wait_for

TTL_MS = 2000
LOCK = "job"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    (tmp_path / "cluster").mkdir()
    with process_cluster(tmp_path / "cluster") as started:
        started.wait_for_primary(timeout_s=30)
        yield started


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    with Children(tmp_path) as started:  # each worker's stderr in <tmp_path>/<name>.log
        yield started


def worker(cluster: ProcessCluster, children: Children, owner: str) -> Worker:
    return start_worker(children, cluster.config.proxy, LOCK, ttl_ms=TTL_MS, owner=owner, name=owner)


def keeps_alive(holder: Worker) -> None:
    """Wait until `holder` has a keepalive acknowledged that it sent from now on."""
    holder.wait("keepalive", timeout_s=10, since=time.monotonic())


@pytest.mark.timeout(120)
def test_a_killed_holders_lock_goes_to_a_waiter_within_its_ttl_with_a_larger_token(
    cluster: ProcessCluster, children: Children
) -> None:
    """A worker holds lock "job" with a 2 s lease, kept alive every TTL/3; a second worker, with a lease of its
    own, is refused the lock and keeps asking. The holder is killed with kill -9: its lease is no longer kept
    alive, the cluster expires it and releases the lock, and the waiter gets it within TTL + 1 s of the kill,
    with a larger fencing token."""
    holder = worker(cluster, children, "holder")
    held = holder.wait("locked", timeout_s=30)
    waiter = worker(cluster, children, "waiter")
    refused = waiter.wait("waiting", timeout_s=30)
    assert (refused["holder"], refused["token"]) == ("holder", held["token"])
    keeps_alive(holder)
    killed_at = time.monotonic()
    children.kill(holder.process)
    taken = waiter.wait("locked", timeout_s=TTL_MS / 1000 + 30)
    took_s = taken["t"] - killed_at  # the waiter's clock is CLOCK_MONOTONIC, as ours
    assert took_s <= TTL_MS / 1000 + 1, f"the waiter got the lock {took_s:.2f} s after the kill"
    assert taken["token"] > held["token"]
    assert waiter.count("lost") == 0
    with Client(cluster.config.proxy, timeout_ms=10_000) as client:
        answer = client.lock(LOCK, "someone-else")
        assert (answer.ok, answer.owner, answer.token) == (False, "waiter", taken["token"])
        assert client.execute({"op": "lease_ttl", "lease": held["lease"]}, raise_app_errors=False)["error"] == (
            "lease_not_found"
        )


@pytest.mark.timeout(120)
def test_a_live_holder_keeps_its_lock_through_kill_9_of_the_primary(
    cluster: ProcessCluster, children: Children
) -> None:
    """A worker holds lock "job" with a 2 s lease, kept alive every TTL/3. The primary is killed with kill -9
    and a new view starts. The holder's lease is never expired: its keepalives go on succeeding after the
    failover, lease_ttl still shows it holding the lock, and the lock still answers with its owner and token."""
    holder = worker(cluster, children, "holder")
    held = holder.wait("locked", timeout_s=30)
    primary = cluster.wait_for_primary(timeout_s=30)
    keeps_alive(holder)
    cluster.kill(primary)
    new_primary = cluster.wait_for_primary(other_than=primary, timeout_s=30)
    failed_over_at = time.monotonic()
    wait_for(
        lambda: holder.count("keepalive", since=failed_over_at) >= 3,
        timeout_s=30,
        what="three keepalives sent after the failover acknowledged",
    )
    assert holder.count("lost") == 0, [e for e in holder.events if e["event"] == "lost"]
    assert [e["lease"] for e in holder.events if e["event"] == "granted"] == [held["lease"]], "a second lease"
    with Client(cluster.config.proxy, timeout_ms=10_000) as client:
        described = client.execute({"op": "lease_ttl", "lease": held["lease"]})
        assert described["locks"] == [LOCK]
        assert 0 < described["remaining_ms"] <= TTL_MS
        answer = client.lock(LOCK, "someone-else")
        assert (answer.ok, answer.owner, answer.token) == (False, "holder", held["token"])
    status = cluster.status(new_primary)
    assert status is not None and status["view"] > 0
