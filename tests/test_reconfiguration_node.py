"""Reconfiguration (VR Revisited §7) in the ZeroMQ runtime: real nodes in this process, one thread each.

The nodes follow the core's configuration: they connect to new members from the endpoints in the
reconfiguration, drop those that left, a new replica (--join) learns its peers from their StartEpoch, a replica
that is removed hands over and stops, and a restart takes the configuration from the durable state, not the file.
The changes are planned and sent as `zvsr member` does (zvsr.runtime.reconfigure), straight to the primary.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_cluster import LocalCluster, make_config, operation

from zvsr.client import AsyncClient, Client
from zvsr.protocol.messages import Reply, Request
from zvsr.runtime.backup import BackupError, restore, take_backup
from zvsr.runtime.cluster_config import ClusterConfig, ReplicaAddress
from zvsr.runtime.node import NodeStartError, ReplicaNode
from zvsr.runtime.processes import free_ports
from zvsr.runtime.reconfigure import (
    ReconfigurationError,
    ReconfigurationRefused,
    current,
    plan_add,
    plan_remove,
    plan_replace,
    submit,
)

pytestmark = pytest.mark.timeout(120)


def new_address() -> ReplicaAddress:
    ports = free_ports(4)
    return ReplicaAddress(
        peer=f"tcp://127.0.0.1:{ports[0]}",
        heartbeat=f"tcp://127.0.0.1:{ports[1]}",
        client=f"tcp://127.0.0.1:{ports[2]}",
        watch=f"tcp://127.0.0.1:{ports[3]}",
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(make_config(tmp_path / "data")).start()
    try:
        local.wait_status(0, "primary of view 0", lambda s: s["role"] == "primary" and s["status"] == "normal")
        yield local
    finally:
        local.close()


def put(config: ClusterConfig, key: str, value: int) -> None:
    """A write straight to the members the cluster file names (the client follows Redirects)."""
    members = current(config, timeout_ms=2000).membership
    endpoints = [a.client for i in members.ids if (a := config.address_of(i)) is not None]
    with Client(replicas=endpoints[:1], timeout_ms=10_000) as client:
        client.put(key, value)


def epoch_of(cluster: LocalCluster, replica: int) -> tuple[int, str]:
    status = cluster.status(replica)
    return status["epoch"], status["status"]


def test_grow_with_a_new_replica_then_shrink_and_the_removed_one_stops(cluster: LocalCluster) -> None:
    """r3 starts empty (--join) and waits; `member add` makes epoch 1 = {0, 1, 2, 3}; the members connect to it
    from the endpoints in the reconfiguration, it catches up and serves as a backup with the data written
    before. `member remove 1` makes epoch 2 = {0, 2, 3}: r1 hands over and its node returns by itself (left).
    The status shows the epoch and the members with their endpoints."""
    reply = cluster.call(0, Request(client_id=9, request_number=1, operation=operation("put", "a", value=1)))
    assert isinstance(reply, Reply)
    address = new_address()
    joiner = cluster.join(3, address)
    assert joiner.core.status.value == "transitioning" and joiner.status()["epoch"] == 0

    now = current(cluster.config, timeout_ms=2000)
    assert now.membership.ids == (0, 1, 2) and now.primary == 0
    plan = plan_add(now, address)
    assert plan.ids == (0, 1, 2, 3)
    assert submit(cluster.config, plan, timeout_ms=10_000, direct=True) == 1
    for replica in (0, 1, 2, 3):
        cluster.wait_status(replica, "epoch 1, normal", lambda s: (s["epoch"], s["status"]) == (1, "normal"))
    status = cluster.status(3)
    assert [m["id"] for m in status["membership"]["members"]] == [0, 1, 2, 3]
    assert status["membership"]["members"][3]["peer"] == address.peer and status["role"] == "backup"
    assert status["commit_number"] >= 2, "r3 holds the put and the reconfiguration"
    put(cluster.config, "b", 2)

    plan = plan_remove(current(cluster.config, timeout_ms=2000), 1)
    assert plan.ids == (0, 2, 3) and plan.removed == (1,)
    assert submit(cluster.config, plan, timeout_ms=10_000, direct=True) == 2
    cluster.wait_left(1)
    for replica in (0, 2, 3):
        cluster.wait_status(replica, "epoch 2", lambda s: (s["epoch"], s["status"]) == (2, "normal"))
    assert "r1" not in " ".join(f"r{p}" for p in cluster.status(0)["last_heard_ms"])
    put(cluster.config, "c", 3)
    with Client(replicas=[cluster.config.replicas[0].client], timeout_ms=10_000) as client:
        assert (client.get("a"), client.get("b"), client.get("c")) == (1, 2, 3)


def test_a_restart_takes_the_configuration_from_the_durable_state_and_warns_the_file_differs(
    cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """After `member replace 2` (epoch 1 = {0, 1, 3}), r0 restarts with the original file (replicas 0, 1, 2):
    its log replays the reconfiguration, so it is in epoch 1 with r1 and r3 as peers, and it says the durable
    state wins over the file."""
    original = cluster.config
    address = new_address()
    cluster.join(3, address)
    plan = plan_replace(current(cluster.config, timeout_ms=2000), 2, address)
    assert plan.ids == (0, 1, 3)
    assert submit(cluster.config, plan, timeout_ms=10_000, direct=True) == 1
    cluster.wait_status(3, "r3 normal in epoch 1", lambda s: (s["epoch"], s["status"]) == (1, "normal"))
    cluster.wait_left(2)
    cluster.stop(0)
    caplog.set_level(logging.WARNING, logger="zvsr.node")
    node = ReplicaNode(original, 0, seed=0)
    try:
        assert node.core.epoch == 1 and node.core.membership.ids == (0, 1, 3) and set(node.core.peers) == {1, 3}
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("the durable state wins" in line and "[0, 1, 2]" in line for line in warnings), warnings
    finally:
        node.close()


def test_a_new_member_that_lost_its_disk_recovers_in_the_current_epoch(cluster: LocalCluster) -> None:
    """r3 joined (epoch 1 = {0, 1, 2, 3}) and loses its data dir. Started again without --join it has no state:
    it asks the others for the configuration (status query), finds itself a member of epoch 1 and runs Recovery
    there (the first configuration, 0..2, does not include it)."""
    address = new_address()
    cluster.join(3, address)
    assert (
        submit(
            cluster.config,
            plan_add(current(cluster.config, timeout_ms=2000), address),
            timeout_ms=10_000,
            direct=True,
        )
        == 1
    )
    cluster.wait_status(3, "r3 normal in epoch 1", lambda s: (s["epoch"], s["status"]) == (1, "normal"))
    put(cluster.config, "x", 5)
    cluster.stop(3)
    data = cluster.config.replica_data_dir(3)
    assert data is not None
    for item in data.iterdir():
        item.unlink()
    cluster.start(3)
    assert cluster.nodes[3][0].core.status.value == "recovering" and cluster.nodes[3][0].core.epoch == 1
    status = cluster.wait_status(3, "r3 recovered", lambda s: s["status"] == "normal")
    assert status["epoch"] == 1 and status["commit_number"] >= 2, "the reconfiguration and the put"


def test_a_new_replica_restarted_before_it_was_added_still_joins(cluster: LocalCluster) -> None:
    """r3 is started with --join, stopped before anyone adds it, and started again (a restart from its data dir:
    --join no longer matters). Added then, it catches up as if it had waited all along."""
    address = new_address()
    cluster.join(3, address)
    cluster.stop(3)
    cluster.start(3)
    assert cluster.nodes[3][0].core.status.value == "transitioning"
    assert (
        submit(
            cluster.config,
            plan_add(current(cluster.config, timeout_ms=2000), address),
            timeout_ms=10_000,
            direct=True,
        )
        == 1
    )
    cluster.wait_status(3, "r3 normal in epoch 1", lambda s: (s["epoch"], s["status"]) == (1, "normal"))


def test_refusals_are_clear_before_and_after_sending(cluster: LocalCluster) -> None:
    """The plan refuses what it can see (a non-member, an id used before, endpoints a member has); the cluster
    refuses what only it knows (a reconfiguration of an epoch that is over), with the core's reason."""
    now = current(cluster.config, timeout_ms=2000)
    with pytest.raises(ReconfigurationError, match="replica 7 is not a member of epoch 0"):
        plan_remove(now, 7)
    with pytest.raises(ReconfigurationError, match="replica id 1 was used before"):
        plan_add(now, new_address(), replica=1)
    with pytest.raises(ReconfigurationError, match="replica 2 uses .* already"):
        plan_add(now, cluster.config.replicas[2])
    stale = plan_remove(now, 2)
    assert submit(cluster.config, stale, timeout_ms=10_000, direct=True) == 1
    with pytest.raises(ReconfigurationRefused, match="reconfiguration of epoch 0, but the cluster is in epoch 1"):
        submit(cluster.config, plan_remove(now, 1), timeout_ms=10_000, direct=True)


def test_starts_that_cannot_be_right_are_refused(tmp_path: Path) -> None:
    """--init for a replica that is not one of the first configuration's; a replica without state that is not a
    member of any configuration its peers know (here: none answers, so the first one); a new replica that the
    file does not name and whose endpoints nobody gave."""
    config = make_config(tmp_path / "data")
    with pytest.raises(NodeStartError, match="starts with --join"):
        ReplicaNode(config.with_replica(5, new_address()), 5, init=True)
    with pytest.raises(NodeStartError, match="not a member of epoch 0 .* as no replica answered"):
        ReplicaNode(config.with_replica(6, new_address()), 6)
    with pytest.raises(NodeStartError, match="has no endpoints"):
        ReplicaNode(config, 8, join=True)


def test_a_backup_taken_after_a_reconfiguration_is_refused_by_restore(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """Its snapshot carries epoch 1's configuration (r0, r1, r3): a new cluster of replicas 0..2 restored from it
    would replay into members it does not have. `zvsr restore` says so instead of seeding a cluster that cannot
    start."""
    address = new_address()
    cluster.join(3, address)
    plan = plan_replace(current(cluster.config, timeout_ms=2000), 2, address)
    assert submit(cluster.config, plan, timeout_ms=10_000, direct=True) == 1
    cluster.wait_status(0, "epoch 1", lambda s: s["epoch"] == 1 and s["status"] == "normal")
    saved = tmp_path / "after.zvsrbackup"
    take_backup(cluster.config, saved, replica=0, fresh=True)
    with pytest.raises(BackupError, match="taken in epoch 1, after a reconfiguration"):
        restore(saved, make_config(tmp_path / "restored"), 0)


def test_a_direct_client_follows_the_replicas_until_none_of_those_it_was_given_is_left(
    cluster: LocalCluster,
) -> None:
    """A `Client(replicas=[r0, r1, r2])`, and an `AsyncClient` alike, write while r0 (the primary), r1 and r2
    are replaced one by one by r3, r4 and r5: each change is learnt from the replicas (status query) without a
    restart, so the last writes go to replicas the clients were never given."""
    endpoints = [address.client for address in cluster.config.replicas]
    with Client(replicas=endpoints, timeout_ms=10_000) as client:
        async_client = AsyncClient(replicas=endpoints, timeout_ms=10_000)
        try:
            for step, (old, new) in enumerate(((0, 3), (1, 4), (2, 5)), start=1):
                client.put("k", step)
                assert asyncio.run(async_client.get("k")) == step
                address = new_address()
                cluster.join(new, address)
                plan = plan_replace(current(cluster.config, timeout_ms=2000), old, address)
                assert submit(cluster.config, plan, timeout_ms=10_000, direct=True) == step
                cluster.wait_left(old)
            client.put("k", 99)
            assert client.get("k") == 99 and asyncio.run(async_client.get("k")) == 99
        finally:
            async_client.close()
