"""Restart from disk (rule 12): a replica comes back with its durable view state and log and keeps its promises."""

from __future__ import annotations

from dataclasses import replace

from zvsr.protocol.messages import Prepare, Reply, StartViewChange
from zvsr.protocol.replica import Status
from zvsr.sim.harness import Cluster


def test_a_backup_restarted_from_disk_keeps_its_log_and_rejoins_as_a_backup() -> None:
    cluster = Cluster(3)
    for number in range(1, 4):
        cluster.request(client_id=1, request_number=number, op=b"op%d" % number)
    cluster.deliver_all()
    disk = cluster.durable_state(1)
    cluster.crash_and_restart_from_disk(1, replace(disk, commit_number=0))  # commit persisted lazily
    backup = cluster.replicas[1]
    assert backup.status is Status.NORMAL and not backup.is_primary()
    assert [e.operation for e in backup.log] == [b"op1", b"op2", b"op3"]
    cluster.tick(10)
    cluster.deliver_all()
    assert backup.commit_number == 3  # learnt from the primary's heartbeat
    assert cluster.apps[1].applied == [b"op1", b"op2", b"op3"]


def test_a_restarted_primary_re_executes_silently_and_serves_the_cached_reply() -> None:
    cluster = Cluster(3)
    cluster.request(client_id=7, request_number=1, op=b"x")
    cluster.deliver_all()
    cluster.replies.clear()
    cluster.crash_and_restart_from_disk(0, cluster.durable_state(0))
    primary = cluster.replicas[0]
    assert primary.status is Status.NORMAL and primary.is_primary() and primary.commit_number == 1
    assert cluster.replies == []  # nothing is answered twice by re-execution
    cluster.request(client_id=7, request_number=1, op=b"x")
    assert [r.result for r in cluster.replies if isinstance(r, Reply)] == [b"1"]
    assert cluster.apps[0].applied == [b"x"]


def test_a_replica_restarted_during_a_view_change_votes_again_in_the_same_view() -> None:
    cluster = Cluster(3)
    cluster.request(client_id=1, request_number=1, op=b"a")
    cluster.deliver_all()
    cluster.partition({0}, {1, 2})
    cluster.time_out(1, joined_by={2})
    assert cluster.replicas[1].status is Status.VIEW_CHANGE
    view = cluster.replicas[1].view_number
    cluster.drop(lambda m: True)
    cluster.crash_and_restart_from_disk(1, cluster.durable_state(1))
    restarted = cluster.replicas[1]
    assert restarted.status is Status.VIEW_CHANGE and restarted.view_number == view
    assert any(isinstance(m.message, StartViewChange) and m.message.view == view for m in cluster.queue)
    cluster.run_until(
        lambda: cluster.replicas[1].status is Status.NORMAL and cluster.replicas[2].status is Status.NORMAL
    )
    assert [e.operation for e in cluster.replicas[cluster.replicas[1].primary_index()].log] == [b"a"]


def test_a_backup_restarted_from_disk_does_not_accept_prepares_of_an_older_view() -> None:
    cluster = Cluster(3)
    disk = cluster.durable_state(2)
    cluster.crash_and_restart_from_disk(2, replace(disk, view_number=4, last_normal_view=3))
    restarted = cluster.replicas[2]
    assert restarted.view_number == 4 and restarted.status is Status.VIEW_CHANGE
    cluster.request(client_id=1, request_number=1, op=b"old view")
    cluster.deliver(lambda m: isinstance(m.message, Prepare) and m.to == 2)
    assert restarted.op_number == 0
