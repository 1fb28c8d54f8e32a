"""Reconfiguration scenarios (VR Revisited §7) on the hand-driven cluster, shared by the scenario tests
(`test_protocol_reconfiguration.py`) and the mutation tests (`test_mutations.py`) — a helpers module, not a test
module (STYLE rule 15)."""

from __future__ import annotations

import dataclasses

from scenarios import commit_in_view_zero, header, steady_config

from zvsr.protocol.membership import is_reconfiguration
from zvsr.protocol.messages import Error, Prepare, PrepareOk, Reply, StartEpoch, StartViewChange
from zvsr.protocol.replica import Status
from zvsr.sim.harness import Cluster


def reconfigurable(replica_count: int, **overrides: int) -> Cluster:
    config = steady_config(replica_count, **overrides)
    return Cluster(replica_count, config=dataclasses.replace(config, reconfiguration=True))


def reply_to(cluster: Cluster, client_id: int, request_number: int) -> Reply | Error:
    answers = [
        r
        for r in cluster.replies
        if isinstance(r, Reply | Error) and (r.client_id, r.request_number) == (client_id, request_number)
    ]
    assert answers, f"no answer to ({client_id}, {request_number})"
    return answers[-1]


def settle(cluster: Cluster, ticks: int = 60) -> None:
    """Deliver everything, and tick, so periodic messages (StartEpoch re-sends, heartbeats) run their course."""
    for _ in range(ticks):
        cluster.deliver_all()
        cluster.tick()
    cluster.deliver_all()


def committed_ops(cluster: Cluster, index: int) -> list[bytes]:
    replica = cluster.replicas[index]
    return [e.operation for e in replica.log[: replica.commit_number - replica.log_base]]


# --- the codec of configurations ------------------------------------------------------------------------------


def replacing_every_replica_hands_the_state_to_the_new_group() -> None:
    """(0, 1, 2) -> (3, 4, 5): no replica stays, so only the leaving ones can tell the new ones anything."""
    cluster = reconfigurable(3)
    commit_in_view_zero(cluster, b"A", b"B")
    for _ in range(3):
        cluster.add_replica()
    cluster.reconfigure((3, 4, 5))
    settle(cluster)
    assert all(r.status is Status.LEAVING and r.stopped for r in cluster.replicas[:3])
    assert all(r.status is Status.NORMAL and r.epoch == 1 for r in cluster.replicas[3:])
    cluster.request(client_id=5, request_number=1, op=b"C", to=3)
    settle(cluster, 10)
    assert all(
        [op for op in committed_ops(cluster, i) if not is_reconfiguration(op)] == [b"A", b"B", b"C"]
        for i in (3, 4, 5)
    )


def grow_from_3_to_5_and_shrink_back_to_3() -> None:
    cluster = reconfigurable(3)
    commit_in_view_zero(cluster, b"A")
    cluster.add_replica()
    cluster.add_replica()
    cluster.reconfigure((0, 1, 2, 3, 4))
    settle(cluster)
    assert all(r.epoch == 1 and r.status is Status.NORMAL for r in cluster.replicas)
    assert cluster.replicas[0].membership.quorum == 3
    cluster.request(client_id=5, request_number=1, op=b"B", to=0)
    settle(cluster, 10)
    assert all(b"B" in committed_ops(cluster, i) for i in range(5))
    cluster.reconfigure((0, 1, 2), request_number=2)
    settle(cluster)
    assert [r.status for r in cluster.replicas] == [Status.NORMAL] * 3 + [Status.LEAVING] * 2
    assert cluster.replicas[3].stopped and cluster.replicas[4].stopped
    assert all(r.epoch == 2 and r.membership.ids == (0, 1, 2) for r in cluster.replicas[:3])
    cluster.request(client_id=5, request_number=2, op=b"C", to=0)
    settle(cluster, 10)
    assert [op for op in committed_ops(cluster, 2) if not is_reconfiguration(op)] == [b"A", b"B", b"C"]
    cluster.check_applied()


def a_message_of_an_older_epoch_changes_nothing_and_its_sender_is_told_the_epoch() -> None:
    cluster = reconfigurable(3)
    cluster.add_replica()
    cluster.reconfigure((0, 1, 2, 3))
    settle(cluster)
    backup = cluster.replicas[1]
    before = (list(backup.log), backup.view_number, backup.status, backup.commit_number)
    for stale in (
        Prepare(**header(view=0, replica=0), op_number=2, commit_number=1, entries=()),
        StartViewChange(**header(view=5, replica=2)),
        PrepareOk(**header(view=0, replica=2), op_number=9),
    ):
        cluster.inject(1, stale)
    assert (list(backup.log), backup.view_number, backup.status, backup.commit_number) == before
    told = cluster.queued(StartEpoch, source=1)
    assert {item.to for item in told} <= {0, 2} and told and all(item.message.epoch == 1 for item in told)
