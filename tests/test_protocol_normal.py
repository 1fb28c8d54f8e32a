"""Normal operation (§4.1), as scenarios: prepare, acknowledge, commit by quorum, execute, reply; batching,
pipelining, commit piggybacked on Prepare or sent as a Commit heartbeat; the gates in front of the log
(`unavailable`, `busy`, redirect, view change) and the rule-1 filter on every replica message."""

from __future__ import annotations

from typing import Any

from scenarios import entry, header, operations, steady_config

from zvsr.protocol.config import Config
from zvsr.protocol.messages import (
    ERROR_BUSY,
    ERROR_UNAVAILABLE,
    ERROR_VIEW_CHANGE,
    Commit,
    Error,
    GetState,
    Prepare,
    PrepareOk,
    Redirect,
    Reply,
    Request,
    StartViewChange,
)
from zvsr.protocol.replica import Status
from zvsr.sim.harness import Cluster, matching
from zvsr.wire.codec import decode_replica_message, encode


def replies_of(cluster: Cluster, kind: type) -> list[Any]:
    return [reply for reply in cluster.replies if isinstance(reply, kind)]


# --- prepare, acknowledge, commit, reply --------------------------------------------------------------------


def test_primary_prepares_commits_with_one_ack_in_three_cluster_and_replies() -> None:
    """Primary 0 appends op 1 and broadcasts Prepare; replica 1's PrepareOk makes a quorum of two; the primary
    executes op 1 and answers the client. Replica 2 never saw the Prepare: it does not matter."""
    cluster = Cluster(3)
    primary = cluster.replicas[0]
    cluster.request(client_id=7, request_number=1, op=b"x", to=0)
    assert primary.op_number == 1 and primary.commit_number == 0
    prepares = cluster.queued(Prepare, source=0)
    assert sorted(item.to for item in prepares) == [1, 2]
    message = prepares[0].message
    assert (message.view, message.replica, message.op_number, message.commit_number) == (0, 0, 1, 0)
    assert message.entries == (entry(1, b"x", client_id=7),) == (primary.log[0],)
    cluster.drop(matching(Prepare, to=2))
    cluster.deliver(matching(Prepare, to=1))
    assert [(item.to, item.message) for item in cluster.queued(PrepareOk)] == [
        (0, PrepareOk(**header(view=0, replica=1), op_number=1))
    ]
    assert not cluster.replies
    cluster.deliver_all()
    assert primary.commit_number == 1
    assert cluster.replies == [Reply(view=0, client_id=7, request_number=1, result=b"1")]
    assert cluster.apps[0].applied == [b"x"] and cluster.apps[1].applied == []  # backups do not know it yet


def test_five_cluster_commits_only_after_two_backups_acknowledge() -> None:
    cluster = Cluster(5)
    primary = cluster.replicas[0]
    cluster.request(client_id=1, request_number=1, op=b"x", to=0)
    cluster.deliver(matching(Prepare))
    cluster.deliver(matching(PrepareOk, source=1))
    assert primary.commit_number == 0 and not cluster.replies
    cluster.deliver(matching(PrepareOk, source=3))
    assert primary.commit_number == 1 and len(replies_of(cluster, Reply)) == 1
    cluster.deliver_all()  # the late acknowledgements change nothing
    assert primary.commit_number == 1 and len(replies_of(cluster, Reply)) == 1


def test_backup_acknowledges_to_the_sender_in_the_prepares_view() -> None:
    cluster = Cluster(3)
    cluster.request(client_id=1, request_number=1, to=0)
    cluster.deliver(matching(Prepare, to=2))
    oks = cluster.queued(PrepareOk, source=2)
    assert [(item.to, item.message.view, item.message.op_number) for item in oks] == [(0, 0, 1)]


def test_duplicate_prepare_is_acknowledged_again_but_appended_once() -> None:
    cluster = Cluster(3)
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    prepare = cluster.queued(Prepare, to=1)[0].message
    cluster.inject(1, prepare)
    cluster.inject(1, prepare)
    backup = cluster.replicas[1]
    assert operations(backup.log) == [b"a"] and backup.op_number == 1
    assert len(cluster.queued(PrepareOk, source=1)) == 2


def test_prepare_of_an_older_view_is_ignored() -> None:
    cluster = Cluster(3)
    cluster.inject(1, StartViewChange(**header(view=2, replica=2)))  # replica 1 moves on to view 2
    cluster.queue.clear()
    cluster.inject(
        1, Prepare(**header(view=0, replica=0), op_number=1, commit_number=0, entries=(entry(1, b"x"),))
    )
    assert cluster.replicas[1].log == [] and not cluster.queue
    assert cluster.replicas[1].counters["on_prepare: older view"] == 1


def test_backups_execute_exactly_the_committed_prefix() -> None:
    cluster = Cluster(3)
    for number in range(1, 6):
        cluster.request(client_id=number, request_number=1, op=bytes([96 + number]), to=0)
        cluster.deliver_all()
        cluster.check_applied()
    assert [r.commit_number for r in cluster.replicas] == [5, 4, 4]  # op 5 travels with the next message
    cluster.tick(cluster.replicas[0].config.heartbeat_ticks, only={0})
    cluster.deliver_all()
    assert [r.commit_number for r in cluster.replicas] == [5, 5, 5]
    assert all(app.applied == [b"a", b"b", b"c", b"d", b"e"] for app in cluster.apps)
    cluster.check_applied()


# --- batching and pipelining (§6.2) -------------------------------------------------------------------------


def test_requests_arriving_in_one_step_go_out_in_one_prepare() -> None:
    """Three requests reach primary 0 before the driver takes its output: one Prepare carries all three."""
    cluster = Cluster(3)
    primary = cluster.replicas[0]
    for client in (1, 2, 3):
        primary.on_request(Request(client_id=client, request_number=1, operation=bytes([48 + client])))
    cluster.flush(0)
    prepares = cluster.queued(Prepare, to=1)
    assert len(prepares) == 1
    assert [e.op_number for e in prepares[0].message.entries] == [1, 2, 3]
    assert prepares[0].message.op_number == 3
    cluster.deliver(matching(Prepare, to=1))
    assert [item.message.op_number for item in cluster.queued(PrepareOk, source=1)] == [3]  # one ack for all
    cluster.deliver_all()
    assert primary.commit_number == 3
    assert [(r.client_id, r.result) for r in replies_of(cluster, Reply)] == [(1, b"1"), (2, b"2"), (3, b"3")]


def test_batches_are_bounded_by_entry_count_and_by_bytes() -> None:
    config = Config(replica_count=3, prepare_entries_max=2, prepare_bytes_max=10)
    cluster = Cluster(3, config=config)
    primary = cluster.replicas[0]
    for client, op in enumerate([b"aa", b"bb", b"cc", b"ddddddddd", b"eeeeeeeeeeeeeeee"], start=1):
        primary.on_request(Request(client_id=client, request_number=1, operation=op))
    cluster.flush(0)
    batches = [[e.op_number for e in item.message.entries] for item in cluster.queued(Prepare, to=1)]
    # Two per Prepare at most; ops 3 and 4 together exceed 10 bytes; an op larger than the bound goes alone.
    assert batches == [[1, 2], [3], [4], [5]]
    cluster.deliver_all()
    assert primary.commit_number == 5


def test_pipelining_several_prepares_in_flight_and_cumulative_acks() -> None:
    """Primary 0 prepares ops 1, 2, 3 in three steps before any acknowledgement. Replica 1's ack of op 3 alone
    commits all three (a PrepareOk for n says: I hold every op up to n)."""
    cluster = Cluster(3)
    primary = cluster.replicas[0]
    for client in (1, 2, 3):
        cluster.request(client_id=client, request_number=1, to=0)
    assert len(cluster.queued(Prepare, to=1)) == 3 and primary.commit_number == 0
    cluster.deliver(matching(Prepare, to=1))
    cluster.drop(lambda item: isinstance(item.message, PrepareOk) and item.message.op_number < 3)
    cluster.deliver(matching(PrepareOk, source=1))
    assert primary.commit_number == 3
    assert [r.client_id for r in replies_of(cluster, Reply)] == [1, 2, 3]
    cluster.inject(0, PrepareOk(**header(view=0, replica=1), op_number=2))  # a late, older ack: no effect
    assert primary.commit_number == 3 and primary.pipeline.prepare_ok[1] == 3


def test_full_pipeline_queues_requests_and_full_queue_answers_busy() -> None:
    config = Config(replica_count=3, pipeline_ops_max=1, request_queue_max=1)
    cluster = Cluster(3, config=config)
    primary = cluster.replicas[0]
    cluster.request(client_id=1, request_number=1, to=0)
    cluster.request(client_id=2, request_number=1, to=0)  # waits: one op already in flight
    assert primary.op_number == 1 and len(primary.pipeline.request_queue) == 1
    cluster.request(client_id=3, request_number=1, to=0)  # the queue is full too
    busy = replies_of(cluster, Error)
    assert [(e.client_id, e.code) for e in busy] == [(3, ERROR_BUSY)]
    cluster.request(client_id=2, request_number=1, to=0)  # a retry of the queued one is not queued twice
    assert len(primary.pipeline.request_queue) == 1 and len(replies_of(cluster, Error)) == 1
    cluster.deliver_all()  # op 1 commits; the queued request takes its place in the pipeline and commits too
    assert primary.commit_number == 2 and not primary.pipeline.request_queue
    assert [r.client_id for r in replies_of(cluster, Reply)] == [1, 2]


# --- commit travels on the next Prepare, or as a Commit heartbeat -------------------------------------------


def test_commit_number_is_piggybacked_on_the_next_prepare() -> None:
    cluster = Cluster(3)
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    cluster.deliver_all()
    assert cluster.replicas[1].commit_number == 0
    cluster.request(client_id=2, request_number=1, op=b"b", to=0)
    assert {item.message.commit_number for item in cluster.queued(Prepare)} == {1}
    cluster.deliver(matching(Prepare))
    assert [r.commit_number for r in cluster.replicas[1:]] == [1, 1]
    assert cluster.apps[1].applied == [b"a"] == cluster.apps[2].applied


def test_idle_primary_sends_commit_as_heartbeat_and_backups_answer() -> None:
    cluster = Cluster(3)
    heartbeat = cluster.replicas[0].config.heartbeat_ticks
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    cluster.deliver_all()
    cluster.tick(heartbeat - 1, only={0})
    assert not cluster.queued(Commit)
    cluster.tick(1, only={0})
    commits = cluster.queued(Commit, source=0)
    assert sorted(item.to for item in commits) == [1, 2]
    assert commits[0].message == Commit(**header(view=0, replica=0), commit_number=1, op_number=1)
    cluster.deliver(matching(Commit))
    assert [r.commit_number for r in cluster.replicas] == [1, 1, 1]
    # Each backup answers a heartbeat with a PrepareOk: that is how the primary knows it has a quorum.
    assert sorted(item.source for item in cluster.queued(PrepareOk, to=0)) == [1, 2]


def test_the_primary_heartbeats_on_schedule_even_while_it_sends_prepares() -> None:
    """Under load Prepares flow all the time, but they travel on the peer connections, which a restarted backup
    may not have back yet (the primary's DEALER reconnects with backoff); the Commit heartbeat also goes out on
    the PUB, which the restarted backup subscribes to itself. So the heartbeat keeps its schedule: a backup
    back from a restart hears its primary before its timeout, instead of starting a view change."""
    cluster = Cluster(3)
    heartbeat = cluster.replicas[0].config.heartbeat_ticks
    cluster.tick(heartbeat - 1, only={0})
    cluster.request(client_id=1, request_number=1, to=0)  # a Prepare went out
    assert not cluster.queued(Commit)
    cluster.tick(1, only={0})
    assert cluster.queued(Commit)


def test_a_heartbeat_makes_a_backup_repair_only_committed_ops_it_misses() -> None:
    """Prepared-but-uncommitted ops are usually still in flight to a backup (and re-sent if lost): a heartbeat
    that shows them does not trigger GetState; one that shows committed ops the backup lacks does."""
    cluster = Cluster(3)
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    cluster.drop(matching(Prepare, to=2))
    cluster.deliver_all(where=lambda item: item.to != 2 and item.source != 2)  # op 1 commits with replica 1
    assert cluster.replicas[0].commit_number == 1 and cluster.replicas[2].op_number == 0
    cluster.inject(2, Commit(**header(view=0, replica=0), commit_number=0, op_number=1))
    assert not cluster.queued(GetState, source=2)
    cluster.inject(2, Commit(**header(view=0, replica=0), commit_number=1, op_number=1))
    assert cluster.queued(GetState, source=2)


def test_primary_resends_prepares_to_a_backup_whose_acknowledgements_stall() -> None:
    """Replica 2 acknowledged op 1, then the Prepare of op 2 to it was lost. After its acknowledgement has not
    moved for a resend period, the primary sends it op 2 again."""
    cluster = Cluster(3)
    resend = cluster.replicas[0].config.prepare_resend_ticks
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    cluster.deliver_all()
    cluster.request(client_id=2, request_number=1, op=b"b", to=0)
    cluster.drop(matching(Prepare, to=2))
    cluster.deliver_all()
    cluster.tick(2 * resend, only={0})
    cluster.drop(matching(Commit))
    resent = cluster.queued(Prepare, to=2)
    assert [[e.op_number for e in item.message.entries] for item in resent] == [[2]]
    assert cluster.replicas[0].counters["prepare resent"] == 1
    cluster.deliver_all()
    assert operations(cluster.replicas[2].log) == [b"a", b"b"]


# --- gates in front of the log: unavailable, redirect, view change ------------------------------------------


def test_primary_that_has_not_heard_a_quorum_answers_unavailable_and_recovers_after_heal() -> None:
    config = steady_config(3)
    cluster = Cluster(3, config=config)
    cluster.partition({0}, {1, 2})
    cluster.tick(config.quorum_timeout_ticks, only={0})
    cluster.deliver_all()
    cluster.request(client_id=1, request_number=1, to=0)  # exactly at the horizon: still heard
    assert cluster.replicas[0].op_number == 1
    cluster.tick(1, only={0})
    cluster.deliver_all()
    cluster.request(client_id=2, request_number=1, to=0)
    errors = replies_of(cluster, Error)
    assert [(e.client_id, e.code, e.view) for e in errors] == [(2, ERROR_UNAVAILABLE, 0)]
    assert cluster.replicas[0].op_number == 1, "an unavailable answer must not put the request in the log"
    cluster.heal()
    cluster.tick(config.heartbeat_ticks, only={0})
    cluster.deliver_all()  # the backups answer the heartbeat: the primary hears a quorum again
    cluster.request(client_id=2, request_number=1, to=0)
    assert cluster.replicas[0].op_number == 2


def test_five_cluster_needs_two_backups_heard_recently() -> None:
    config = steady_config(5)
    cluster = Cluster(5, config=config)
    cluster.partition({0, 1}, {2, 3, 4})
    for _ in range(config.quorum_timeout_ticks + 1):
        cluster.tick(only={0, 1})
        cluster.deliver_all()  # replica 1 keeps answering heartbeats: one backup is not enough
    assert cluster.replicas[1].status is Status.NORMAL
    cluster.request(client_id=1, request_number=1, to=0)
    assert [e.code for e in replies_of(cluster, Error)] == [ERROR_UNAVAILABLE]


def test_backup_redirects_the_client_to_the_primary_it_knows() -> None:
    cluster = Cluster(3)
    cluster.request(client_id=5, request_number=3, to=2)
    assert cluster.replies == [Redirect(view=0, primary=0, client_id=5, request_number=3)]
    assert cluster.replicas[2].log == [] and not cluster.queue


def test_replica_in_view_change_answers_view_change() -> None:
    cluster = Cluster(3)
    cluster.inject(2, StartViewChange(**header(view=1, replica=1)))
    assert cluster.replicas[2].status is Status.VIEW_CHANGE
    cluster.request(client_id=5, request_number=1, to=2)
    assert [(e.code, e.client_id) for e in replies_of(cluster, Error)] == [(ERROR_VIEW_CHANGE, 5)]


# --- rule 1: cluster, epoch, membership ---------------------------------------------------------------------


def test_messages_of_another_cluster_or_from_non_members_are_dropped_and_counted() -> None:
    cluster = Cluster(3)
    backup = cluster.replicas[1]
    good = Prepare(**header(view=0, replica=0), op_number=1, commit_number=0, entries=(entry(1, b"x"),))
    for forged, reason in (
        (
            Prepare(
                **{**header(view=0, replica=0), "cluster": 1}, op_number=1, commit_number=0, entries=good.entries
            ),
            "on_message: other cluster",
        ),
        (
            Prepare(**header(view=0, replica=3), op_number=1, commit_number=0, entries=good.entries),
            "on_message: sender is not a member of our epoch",
        ),
        (
            Prepare(**header(view=0, replica=1), op_number=1, commit_number=0, entries=good.entries),
            "on_message: sender claims our id",
        ),
    ):
        counted = backup.counters.get(reason, 0)
        cluster.inject(1, forged)
        assert backup.counters[reason] == counted + 1
        assert backup.log == [] and not cluster.queue
    cluster.inject(1, good)  # control
    assert operations(backup.log) == [b"x"]
    assert backup.counters["on_message: other cluster"] == 1


def test_a_message_of_a_newer_epoch_appends_nothing_and_makes_the_replica_catch_up_from_its_sender() -> None:
    """§7.2: a newer epoch exists only once our epoch's last op committed: backup 1 asks replica 0 for the
    committed ops after its commit_number instead of acting on the Prepare (it keeps its role in epoch 0 until
    what comes back takes it elsewhere: if nobody of the new epoch answers, epoch 0 must finish on its own)."""
    cluster = Cluster(3)
    backup = cluster.replicas[1]
    forged = Prepare(
        **{**header(view=0, replica=0), "epoch": 1}, op_number=1, commit_number=0, entries=(entry(1, b"x"),)
    )
    cluster.inject(1, forged)
    assert backup.log == [] and backup.status is Status.NORMAL and backup.catch_up_from == 0
    asks = [(item.to, item.message.epoch, item.message.op_number) for item in cluster.queued(GetState, source=1)]
    assert asks == [(0, 0, 0)]


def test_primary_ignores_acknowledgements_beyond_its_log_and_backups_ignore_acknowledgements() -> None:
    cluster = Cluster(3)
    cluster.inject(0, PrepareOk(**header(view=0, replica=1), op_number=5))
    assert cluster.replicas[0].commit_number == 0
    assert cluster.replicas[0].counters["on_prepare_ok: op_number beyond ours"] == 1
    cluster.inject(1, PrepareOk(**header(view=0, replica=2), op_number=0))
    assert cluster.replicas[1].counters["on_prepare_ok: not primary"] == 1


def test_prepares_resent_to_a_lagging_backup_vouch_only_for_their_own_ops() -> None:
    """Backup 2 acknowledges op 1, is cut off while the primary commits 300 more with backup 1, and comes back.
    The primary re-sends it the next 256 ops: that Prepare ends at op 257 while commit_number is 301, and must
    say commit_number 257 — the codec refuses a Prepare whose commit_number passes its last op, so the old
    stamp made every re-send to a backup more than a batch behind a wasted message (found by `zvsr bench`)."""
    cluster = Cluster(3, config=steady_config(3))
    cluster.request(client_id=1, request_number=1, op=b"op-1", to=0)
    cluster.deliver_all()
    cluster.partition({2}, {0, 1})
    for number in range(2, 302):
        cluster.request(client_id=1, request_number=number, op=b"op-%d" % number, to=0)
        cluster.deliver_all()
    assert cluster.replicas[0].commit_number == 301 and cluster.replicas[2].op_number == 1
    cluster.heal()
    cluster.sent.clear()
    cluster.tick(2 * cluster.replicas[0].config.prepare_resend_ticks, only={0})
    resent = [item.message for item in cluster.sent if isinstance(item.message, Prepare) and item.to == 2]
    assert resent, "the primary did not re-send to the lagging backup"
    for prepare in resent:
        assert prepare.commit_number <= prepare.op_number
        assert decode_replica_message(encode(prepare)) == prepare  # what the wire would carry
    cluster.deliver_all()
    assert cluster.replicas[2].commit_number >= resent[0].op_number
