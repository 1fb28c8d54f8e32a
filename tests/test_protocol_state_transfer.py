"""State transfer (§5.2, ARCHITECTURE rules 3, 7, 11), as scenarios: a backup repairs a gap in its own view
with GetState / NewState in bounded chunks; a replica that learns of a newer view from its primary drops its
uncommitted suffix, fetches the view's log, and becomes a normal member only once it holds it."""

from __future__ import annotations

import scenarios
from scenarios import counted, entry, header, missed_view_one, operations, steady_config, view_change_to_one

from zvsr.protocol.config import Config
from zvsr.protocol.messages import (
    Commit,
    GetState,
    NewState,
    Prepare,
    PrepareOk,
    StartViewChange,
)
from zvsr.protocol.replica import Status
from zvsr.sim.harness import Cluster, matching

# --- gap repair in one view ---------------------------------------------------------------------------------


def test_backup_missing_a_prepare_fetches_the_gap_and_then_acknowledges() -> None:
    """Replica 2 misses the Prepare of op 1; the Prepare of op 2 shows a gap: it asks primary 0 for what follows
    its op 0, appends both ops, and acknowledges op 2."""
    cluster = Cluster(3)
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    cluster.drop(matching(Prepare, to=2))
    cluster.request(client_id=2, request_number=1, op=b"b", to=0)
    cluster.deliver(matching(Prepare, to=2))
    backup = cluster.replicas[2]
    assert backup.log == [] and backup.counters["on_prepare: gap"] == 1
    assert not cluster.queued(PrepareOk, source=2)
    assert [(i.to, i.message) for i in cluster.queued(GetState, source=2)] == [
        (0, GetState(**header(view=0, replica=2), op_number=0))
    ]
    cluster.deliver(matching(GetState))
    new_state = cluster.queued(NewState, to=2)[0].message
    assert (new_state.view, new_state.replica, new_state.op_number) == (0, 0, 2)
    assert operations(new_state.entries) == [b"a", b"b"]
    cluster.deliver(matching(NewState))
    assert operations(backup.log) == [b"a", b"b"] and not backup.state_transfer
    assert [i.message.op_number for i in cluster.queued(PrepareOk, source=2)] == [2]


def test_large_gap_is_transferred_in_bounded_chunks() -> None:
    """Replica 2 misses five ops; NewState carries at most two entries; it asks again after each chunk."""
    config = Config(replica_count=3, new_state_entries_max=2)
    cluster = Cluster(3, config=config)
    for client in range(1, 6):
        cluster.request(client_id=client, request_number=1, op=b"op%d" % client, to=0)
    cluster.drop(matching(Prepare, to=2))
    cluster.deliver_all()
    assert cluster.replicas[2].log == []
    cluster.tick(config.heartbeat_ticks, only={0})  # the heartbeat tells replica 2 the primary is at op 5
    cluster.deliver_all()
    chunks = [i.message for i in cluster.sent if isinstance(i.message, NewState)]
    assert [[e.op_number for e in chunk.entries] for chunk in chunks] == [[1, 2], [3, 4], [5]]
    asked = [i.message.op_number for i in cluster.sent if isinstance(i.message, GetState)]
    assert asked == [0, 2, 4]
    assert operations(cluster.replicas[2].log) == operations(cluster.replicas[0].log)
    assert cluster.replicas[2].commit_number == 5
    cluster.check_applied()


def test_new_state_chunks_are_bounded_by_bytes_too() -> None:
    config = Config(replica_count=3, new_state_bytes_max=5)
    cluster = Cluster(3, config=config)
    for client, op in enumerate([b"aaa", b"bbb", b"c", b"dddddddd"], start=1):
        cluster.request(client_id=client, request_number=1, op=op, to=0)
    cluster.drop(matching(Prepare, to=2))
    cluster.deliver_all()
    cluster.tick(config.heartbeat_ticks, only={0})
    cluster.deliver_all()
    chunks = [[e.op_number for e in i.message.entries] for i in cluster.sent if isinstance(i.message, NewState)]
    assert chunks == [[1], [2, 3], [4]]
    assert operations(cluster.replicas[2].log) == [b"aaa", b"bbb", b"c", b"dddddddd"]


def test_get_state_beyond_the_primarys_log_is_ignored() -> None:
    cluster = Cluster(3)
    cluster.inject(0, GetState(**header(view=0, replica=1), op_number=3))
    assert not cluster.queue and cluster.replicas[0].counters["on_get_state: op_number beyond ours"] == 1


def test_new_state_that_does_not_follow_our_log_is_ignored() -> None:
    cluster = Cluster(3)
    cluster.inject(
        1, NewState(**header(view=0, replica=0), op_number=3, commit_number=0, entries=(entry(3, b"c"),))
    )
    assert cluster.replicas[1].log == []
    assert counted(cluster.replicas[1], "on_new_state", "follow") == 1


def test_new_state_is_ignored_outside_normal_status() -> None:
    cluster = Cluster(3)
    cluster.inject(2, StartViewChange(**header(view=1, replica=0)))
    cluster.inject(
        2, NewState(**header(view=1, replica=1), op_number=1, commit_number=0, entries=(entry(1, b"a"),))
    )
    assert cluster.replicas[2].log == []
    assert cluster.replicas[2].counters["on_new_state: status view_change"] == 1


# --- a newer view learned from its primary (rule 3) ---------------------------------------------------------


def test_commit_of_a_newer_view_starts_state_transfer_and_the_replica_rejoins() -> None:
    config = steady_config(3)
    cluster = missed_view_one(config, b"B", b"C")
    cluster.tick(config.heartbeat_ticks, only={1})
    cluster.drop(matching(to=0))
    cluster.deliver(matching(Commit, to=2))
    backup = cluster.replicas[2]
    assert backup.view_number == 1 and backup.state_transfer and backup.last_normal_view == 0
    assert not cluster.queued(PrepareOk, source=2), "no acknowledgement before the view's log is installed"
    assert [(i.to, i.message.view, i.message.op_number) for i in cluster.queued(GetState, source=2)] == [(1, 1, 1)]
    cluster.deliver_all()
    assert not backup.state_transfer and backup.last_normal_view == 1
    assert operations(backup.log) == [b"A", b"B", b"C"]
    assert cluster.replicas[1].pipeline.prepare_ok[2] == 3
    cluster.check_applied()


def test_replica_in_state_transfer_neither_acknowledges_prepares_nor_commits() -> None:
    config = steady_config(3)
    cluster = missed_view_one(config, b"B")
    cluster.tick(config.heartbeat_ticks, only={1})
    cluster.deliver(matching(Commit, to=2))
    cluster.drop(matching(GetState))  # lost
    backup = cluster.replicas[2]
    assert backup.state_transfer
    cluster.request(client_id=20, request_number=1, op=b"D", to=1)
    cluster.deliver(matching(Prepare, to=2))
    assert counted(backup, "on_prepare", "log") == 1
    cluster.tick(config.heartbeat_ticks, only={1})
    cluster.deliver(matching(Commit, to=2))
    assert not cluster.queued(PrepareOk, source=2)
    assert backup.commit_number == 1 and operations(backup.log) == [b"A"]  # it executes only what it holds


def test_lost_get_state_is_resent_on_the_repair_timer() -> None:
    config = steady_config(3)
    cluster = missed_view_one(config, b"B")
    cluster.tick(config.heartbeat_ticks, only={1})
    cluster.deliver(matching(Commit, to=2))
    cluster.drop(matching(GetState))
    cluster.tick(config.repair_ticks - 1, only={2})
    assert not cluster.queued(GetState)
    cluster.tick(1, only={2})
    assert [i.to for i in cluster.queued(GetState, source=2)] == [1]
    cluster.deliver_all()
    assert not cluster.replicas[2].state_transfer


def test_chunked_state_transfer_keeps_the_old_last_normal_view_until_the_last_chunk() -> None:
    """Rule 3: only a replica holding the view's whole log (up to the primary's op_number when it answered)
    may call the view its last normal one."""
    config = Config(replica_count=3, new_state_entries_max=1, primary_timeout_jitter_ticks=0)
    scenarios.chunked_state_transfer_keeps_the_old_last_normal_view(config)


def test_old_primary_rejoins_dropping_its_uncommitted_ops() -> None:
    """Primary 0 appended X, which nobody else received, then was cut off. View 1 (replicas 1, 2) puts Y at op 2.
    When replica 0 hears view 1's heartbeat it drops X, fetches view 1's log and becomes a backup."""
    config = steady_config(3)
    cluster = Cluster(3, config=config)
    cluster.request(client_id=1, request_number=1, op=b"A", to=0)
    cluster.deliver_all()
    cluster.tick(config.heartbeat_ticks, only={0})
    cluster.deliver_all()
    cluster.request(client_id=2, request_number=1, op=b"X", to=0)
    cluster.queue.clear()
    cluster.partition({0}, {1, 2})
    view_change_to_one(cluster, without={0})
    cluster.request(client_id=3, request_number=1, op=b"Y", to=1)
    cluster.deliver_all()
    old_primary = cluster.replicas[0]
    assert operations(old_primary.log) == [b"A", b"X"] and old_primary.is_primary()
    cluster.heal()
    cluster.tick(config.heartbeat_ticks, only={1})
    cluster.deliver_all()
    assert old_primary.view_number == 1 and not old_primary.is_primary() and not old_primary.state_transfer
    assert operations(old_primary.log) == [b"A", b"Y"]
    assert old_primary.client_table.pending.get(2) is None, "X is no longer in progress: the client will retry"
    cluster.check_applied()


def scenario_lagging_replicas_with_higher_commit_number_rejoin() -> None:
    """5 replicas. Primary 0 commits A (replicas 1, 2 hold it) and its heartbeat brings replica 4 up to
    commit_number 1. Replicas 0 and 4 are then cut off; view 1 starts with replicas 1, 2, 3 (log [A], commit
    number 0: none of them knew) and, before any acknowledgement of view 1 arrives, replicas 2 and 3 fail.
    Replicas 0, 1, 4 are a connected quorum. Replicas 0 and 4 hear view 1's heartbeat and ask for its log;
    the primary's NewState says commit_number 0, lower than theirs (1). They must still install the log (their
    commit_number simply stays 1), acknowledge, and the cluster must go on committing."""
    cluster = Cluster(5, config=steady_config(5))
    replicas = cluster.replicas
    cluster.request(client_id=1, request_number=1, op=b"A", to=0)
    cluster.drop(lambda item: isinstance(item.message, Prepare) and item.to in (3, 4))
    cluster.deliver_all()
    cluster.tick(replicas[0].config.heartbeat_ticks, only={0})
    cluster.drop(lambda item: item.to != 4)
    cluster.deliver_all()
    assert replicas[4].commit_number == 1 and operations(replicas[4].log) == [b"A"]
    cluster.partition({0, 4}, {1, 2, 3})
    cluster.queue.clear()
    cluster.time_out(1, joined_by={2, 3})
    for _ in range(20):
        cluster.drop(matching(PrepareOk))  # lost: nothing commits in view 1 yet
        if not cluster.deliver():
            break
    assert replicas[1].status is Status.NORMAL and replicas[1].commit_number == 0
    cluster.heal()
    cluster.partition({2, 3}, {0, 1, 4})
    cluster.request(client_id=2, request_number=1, op=b"B", to=1)
    for _ in range(200):
        cluster.tick(only={0, 1, 4})
        cluster.deliver_all()
    for index in (0, 4):
        assert not replicas[index].state_transfer, f"r{index} never installed view 1's log"
    assert replicas[1].commit_number == 2, "a connected quorum made no progress"


def test_lagging_replicas_that_know_a_higher_commit_number_still_install_the_views_log() -> None:
    scenario_lagging_replicas_with_higher_commit_number_rejoin()
