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


def test_a_restarted_primary_re_executes_silently_leaves_its_view_and_the_cached_reply_is_served() -> None:
    """Primary 0 commits op 1 and restarts from disk: it re-executes op 1 without answering anyone, and moves to
    view 1 rather than go on proposing in view 0 (see the torn-write scenario below). Primary 1 of view 1 serves
    the retry from the client table: op 1 ran once on every replica."""
    cluster = Cluster(3)
    cluster.request(client_id=7, request_number=1, op=b"x")
    cluster.deliver_all()
    cluster.replies.clear()
    cluster.crash_and_restart_from_disk(0, cluster.durable_state(0))
    restarted = cluster.replicas[0]
    assert (restarted.status, restarted.view_number, restarted.commit_number) == (Status.VIEW_CHANGE, 1, 1)
    assert cluster.replies == []  # nothing is answered twice by re-execution
    cluster.run_until(lambda: all((r.status, r.view_number) == (Status.NORMAL, 1) for r in cluster.replicas))
    cluster.replies.clear()
    cluster.request(client_id=7, request_number=1, op=b"x", to=1)
    assert [r.result for r in cluster.replies if isinstance(r, Reply)] == [b"1"]
    cluster.run_until(lambda: all(r.commit_number == 1 for r in cluster.replicas))
    assert [app.applied for app in cluster.apps] == [[b"x"]] * 3


def test_a_primary_whose_torn_write_dropped_ops_it_prepared_never_prepares_others_at_their_numbers() -> None:
    """Primary 0 commits op 1, then prepares op 2 (b"lost") just as it is cut off; replicas 1 and 2 change to
    view 1 and commit another op 2 (b"new") there. Healed, primary 0 is handed view 1's StartView, which replaces
    its op 2, and crashes in the middle of writing it: the log's truncation lands, the view state does not. It
    restarts from disk in view 0 with op 1 only — the primary of view 0 on paper — and a request reaches it. It
    must not prepare it as op 2 of view 0 (a second op 2 in view 0, beside the b"lost" it sent): it moves to
    view 1, where primary 1 brings it over, and every replica ends with view 1's log. (`zvsr sim`, seed 913.)"""
    cluster = Cluster(3)
    cluster.request(client_id=1, request_number=1, op=b"a")
    cluster.deliver_all()
    cluster.partition({0}, {1, 2})
    cluster.request(client_id=2, request_number=1, op=b"lost", to=0)
    cluster.run_until(lambda: all((r.status, r.view_number) == (Status.NORMAL, 1) for r in cluster.replicas[1:]))
    cluster.request(client_id=3, request_number=1, op=b"new", to=1)
    cluster.run_until(lambda: cluster.replicas[1].commit_number == 2)
    disk = cluster.durable_state(0)
    assert (disk.view_number, [e.operation for e in disk.log]) == (0, [b"a", b"lost"])
    cluster.heal()
    cluster.crash_and_restart_from_disk(0, replace(disk, log=disk.log[:1]))  # torn: the truncation landed
    restarted_at = len(cluster.sent)
    cluster.request(client_id=4, request_number=1, op=b"other", to=0)
    cluster.run_until(lambda: len({(r.status, r.view_number) for r in cluster.replicas}) == 1)
    sent = [item.message for item in cluster.sent[restarted_at:]]
    assert [m for m in sent if isinstance(m, Prepare) and m.view == 0] == [], "no prepare of view 0 after it"
    assert [(r.status, r.view_number) for r in cluster.replicas] == [(Status.NORMAL, 1)] * 3
    assert [[e.operation for e in r.log[:2]] for r in cluster.replicas] == [[b"a", b"new"]] * 3


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
