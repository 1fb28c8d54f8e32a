"""Recovery (§4.3, ARCHITECTURE rule 12): a replica restarted without its memory asks everyone with a fresh
nonce, takes part in nothing until it has f+1 answers with that nonce including one from the primary of the
latest view it learns of, and then copies that primary's state."""

from __future__ import annotations

from scenarios import entry, header, operations, steady_config

from zvsr.protocol.messages import (
    ERROR_UNAVAILABLE,
    Commit,
    DoViewChange,
    Error,
    GetState,
    LogEntry,
    Prepare,
    PrepareOk,
    Recovery,
    RecoveryResponse,
    StartView,
    StartViewChange,
)
from zvsr.protocol.replica import Status
from zvsr.sim.harness import Cluster, matching


def committed_cluster(replica_count: int, *ops: bytes) -> Cluster:
    cluster = Cluster(replica_count, config=steady_config(replica_count))
    for client, op in enumerate(ops, start=1):
        cluster.request(client_id=client, request_number=1, op=op, to=0)
    cluster.deliver_all()
    cluster.tick(cluster.replicas[0].config.heartbeat_ticks, only={0})
    cluster.deliver_all()
    return cluster


def response(
    *,
    view: int,
    sender: int,
    nonce: int,
    log: tuple[LogEntry, ...] = (),
    commit_number: int = 0,
    primary: bool,
) -> RecoveryResponse:
    if not primary:
        return RecoveryResponse(
            **header(view=view, replica=sender), nonce=nonce, log=None, op_number=None, commit_number=None
        )
    return RecoveryResponse(
        **header(view=view, replica=sender), nonce=nonce, log=log, op_number=len(log), commit_number=commit_number
    )


def test_backup_restarted_without_memory_recovers_the_primarys_state() -> None:
    cluster = committed_cluster(3, b"A", b"B")
    cluster.crash_and_recover(2)
    recovering = cluster.replicas[2]
    assert recovering.status is Status.RECOVERING and recovering.log == []
    recoveries = cluster.queued(Recovery, source=2)
    assert sorted(i.to for i in recoveries) == [0, 1]
    assert {i.message.nonce for i in recoveries} == {recovering.recovery.nonce}
    cluster.deliver(matching(Recovery))
    answers = {i.source: i.message for i in cluster.queued(RecoveryResponse, to=2)}
    assert answers[0].log is not None and operations(answers[0].log) == [b"A", b"B"]
    assert answers[1].log is None and answers[1].op_number is None and answers[1].commit_number is None
    cluster.deliver_all()
    assert recovering.status is Status.NORMAL and recovering.view_number == 0 and recovering.last_normal_view == 0
    assert operations(recovering.log) == [b"A", b"B"] and recovering.commit_number == 2
    assert cluster.apps[2].applied == [b"A", b"B"]
    entry_ = recovering.client_table[2]
    assert (entry_.request_number, entry_.result) == (1, b"2"), "the client table is rebuilt by execution"


def test_recovery_needs_f_plus_one_answers_including_the_primarys() -> None:
    cluster = committed_cluster(5, b"A")
    cluster.crash_and_recover(4)
    recovering = cluster.replicas[4]
    cluster.deliver(matching(Recovery))
    for sender in (1, 2, 3):  # a quorum of answers, but none from the primary
        cluster.deliver(matching(RecoveryResponse, source=sender))
        assert recovering.status is Status.RECOVERING
    cluster.deliver(matching(RecoveryResponse, source=0))
    assert recovering.status is Status.NORMAL and operations(recovering.log) == [b"A"]


def test_the_primarys_answer_alone_is_not_enough() -> None:
    cluster = committed_cluster(5, b"A")
    cluster.crash_and_recover(4)
    recovering = cluster.replicas[4]
    cluster.deliver(matching(Recovery))
    cluster.deliver(matching(RecoveryResponse, source=0))
    cluster.deliver(matching(RecoveryResponse, source=1))
    assert recovering.status is Status.RECOVERING
    cluster.deliver(matching(RecoveryResponse, source=2))
    assert recovering.status is Status.NORMAL


def test_recovery_waits_for_the_primary_of_the_latest_view_it_learns_of() -> None:
    """Replica 0 answers as primary of view 0, but replicas 2 and 3 are in view 1: the state must come from the
    primary of view 1 (replica 1), not from the deposed primary."""
    cluster = Cluster(5, config=steady_config(5))
    cluster.crash_and_recover(4)
    recovering = cluster.replicas[4]
    nonce = recovering.recovery.nonce
    old = (entry(1, b"A"),)
    new = (entry(1, b"A"), entry(2, b"B", view=1))
    cluster.inject(4, response(view=0, sender=0, nonce=nonce, log=old, commit_number=1, primary=True))
    cluster.inject(4, response(view=1, sender=2, nonce=nonce, primary=False))
    cluster.inject(4, response(view=1, sender=3, nonce=nonce, primary=False))
    assert recovering.status is Status.RECOVERING
    cluster.inject(4, response(view=1, sender=1, nonce=nonce, log=new, commit_number=1, primary=True))
    assert recovering.status is Status.NORMAL and recovering.view_number == 1
    assert recovering.log == list(new) and recovering.commit_number == 1
    assert [(i.to, i.message.op_number) for i in cluster.queued(PrepareOk, source=4)] == [(1, 2)], (
        "it holds an uncommitted op of view 1: it acknowledges it to the primary"
    )


def test_answers_to_an_older_recovery_are_ignored() -> None:
    """Replica 2 restarts twice. Answers to the first attempt (its old nonce) must not complete the second."""
    cluster = committed_cluster(3, b"A")
    cluster.crash_and_recover(2)
    first_nonce = cluster.replicas[2].recovery.nonce
    cluster.deliver(matching(Recovery))
    stale = [i.message for i in cluster.queue if isinstance(i.message, RecoveryResponse)]
    assert len(stale) == 2
    cluster.crash_and_recover(2)  # lost its memory again, before the answers arrived
    recovering = cluster.replicas[2]
    assert recovering.recovery.nonce != first_nonce
    for message in stale:
        cluster.inject(2, message)
    assert recovering.status is Status.RECOVERING
    assert recovering.counters["on_recovery_response: other nonce"] == 2
    cluster.deliver_all()
    assert recovering.status is Status.NORMAL


def test_recovering_replica_takes_part_in_nothing() -> None:
    cluster = committed_cluster(3, b"A")
    cluster.crash_and_recover(2)
    cluster.queue.clear()
    recovering = cluster.replicas[2]
    for message in (
        Prepare(**header(view=0, replica=0), op_number=2, commit_number=1, entries=(entry(2, b"B"),)),
        Commit(**header(view=0, replica=0), commit_number=1, op_number=1),
        StartViewChange(**header(view=1, replica=1)),
        DoViewChange(**header(view=2, replica=1), last_normal_view=0, op_number=0, commit_number=0, log=()),
        StartView(**header(view=1, replica=1), op_number=1, commit_number=1, log=(entry(1, b"A"),)),
        GetState(**header(view=0, replica=1), op_number=0),
        Recovery(**header(view=0, replica=1), nonce=5),
    ):
        cluster.inject(2, message)
        assert recovering.status is Status.RECOVERING and recovering.log == [] and recovering.view_number == 0
        assert not cluster.queue, f"answered {type(message).__name__}"
    cluster.request(client_id=9, request_number=1, to=2)
    assert [(type(r), r.code) for r in cluster.replies if isinstance(r, Error)] == [(Error, ERROR_UNAVAILABLE)]


def test_only_replicas_in_normal_status_answer_recovery() -> None:
    cluster = committed_cluster(3, b"A")
    cluster.inject(1, StartViewChange(**header(view=1, replica=0)))
    cluster.queue.clear()
    cluster.crash_and_recover(2)
    cluster.deliver(matching(Recovery, to=1))
    assert not cluster.queued(RecoveryResponse)
    assert cluster.replicas[1].counters["on_recovery: status view_change"] == 1


def test_recovery_is_resent_with_the_same_nonce_until_answered() -> None:
    cluster = committed_cluster(3, b"A")
    cluster.crash_and_recover(2)
    recovering = cluster.replicas[2]
    cluster.queue.clear()  # lost
    cluster.tick(recovering.config.recovery_resend_ticks, only={2})
    resent = cluster.queued(Recovery, source=2)
    assert sorted(i.to for i in resent) == [0, 1]
    assert {i.message.nonce for i in resent} == {recovering.recovery.nonce}
    cluster.deliver_all()
    assert recovering.status is Status.NORMAL


def test_recovering_primary_waits_for_the_others_to_change_view() -> None:
    """The primary of view 0 itself restarts without memory. Its peers' answers name view 0, whose primary is
    the recovering replica: it cannot finish. The backups, no longer hearing a primary, start view 1; the
    recovering replica does not take part, and then recovers from view 1's primary as its backup."""
    cluster = committed_cluster(3, b"A")
    cluster.crash_and_recover(0)
    recovering = cluster.replicas[0]
    cluster.deliver_all()
    assert recovering.status is Status.RECOVERING
    cluster.run_until(lambda: recovering.status is Status.NORMAL)
    assert recovering.view_number >= 1 and not recovering.is_primary()
    assert operations(recovering.log) == [b"A"] and cluster.apps[0].applied == [b"A"]
    cluster.check_applied()
