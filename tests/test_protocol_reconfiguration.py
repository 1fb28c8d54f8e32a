"""Reconfiguration (VR Revisited §7): epochs, scenario by scenario, on the hand-driven cluster.

A reconfiguration is an op in the log, admitted only for the current epoch, one at a time, and the last op of its
epoch. Executing it starts the next epoch in view 0 on every replica that executes it; the new members catch up
(committed ops, or a snapshot, from a replica of a later epoch) before they take part; the replicas that leave
serve them until a quorum of the new configuration has started, then stop. A replica of an older epoch is told
the new one and catches up; a message of an older epoch never changes a replica's state.
"""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]
import pytest
import reconfiguration_scenarios
from reconfiguration_scenarios import committed_ops, reconfigurable, reply_to, settle
from scenarios import commit_in_view_zero, operations, steady_config
from snapshot_scenarios import DiskCluster

from zvsr.protocol import membership
from zvsr.protocol.membership import Member, Membership, is_reconfiguration, reconfiguration_operation
from zvsr.protocol.messages import (
    ERROR_BAD_REQUEST,
    ERROR_BUSY,
    ERROR_VIEW_CHANGE,
    EpochStarted,
    Error,
    LogEntry,
    Prepare,
    Reply,
    StartEpoch,
)
from zvsr.protocol.ready import PersistLog
from zvsr.protocol.replica import Status
from zvsr.protocol.replica_state import DurableState
from zvsr.sim.harness import Cluster


def test_a_configuration_and_a_reconfiguration_op_round_trip_and_damage_is_an_error() -> None:
    config = Membership.initial(3).next((Member(1, b"tcp://b"), Member(2), Member(3, b"tcp://d")), 9, 4)
    assert membership.decode(config.encode()) == config
    assert (config.epoch, config.start_op, config.old) == (1, 9, (0, 1, 2))
    assert (config.joining(), config.leaving()) == ((3,), (0,))
    # The epoch's first view (4) is led by its first member; views go on from there, round robin.
    assert config.primary(4) == 1 and config.primary(5) == 2 and config.primary(9) == 3 and config.quorum == 2
    op = reconfiguration_operation(1, config.members)
    assert is_reconfiguration(op) and membership.parse_reconfiguration(op).members == config.members
    for damaged in (op[:-1], op + b"x", b"\xc1nonsense", op[:25]):
        with pytest.raises(membership.MembershipError):
            membership.parse_reconfiguration(damaged)
    with pytest.raises(membership.MembershipError):
        membership.decode(config.encode()[:-1])
    assert msgpack.unpackb(membership.result_bytes(1)) == {"epoch": 1}
    assert msgpack.unpackb(membership.result_bytes(2**40)) == {"epoch": 2**40}


def test_an_app_operation_can_never_be_taken_for_a_reconfiguration() -> None:
    """0xc1 is the one byte msgpack never uses: every msgpack-encoded app op starts with another."""
    for value in (None, 0, -1, 2**63, "put", b"x", [1], {"op": "put"}, 1.5, True):
        assert not is_reconfiguration(msgpack.packb(value))


# --- replace, grow, shrink --------------------------------------------------------------------------------------


def test_replace_replica_0_by_a_new_replica_3() -> None:
    """3 replicas commit A. An admin asks primary 0 for members (1, 2, 3): the op commits in epoch 0, every old
    replica enters epoch 1 (view 0, primary 1), new replica 3 is told by StartEpoch, catches up A and the
    reconfiguration, and starts; replica 0 stops once a quorum of epoch 1 started. B then commits on 1, 2, 3."""
    cluster = reconfigurable(3)
    commit_in_view_zero(cluster, b"A")
    new = cluster.add_replica()
    assert cluster.replicas[new].status is Status.TRANSITIONING
    cluster.reconfigure((1, 2, 3))
    settle(cluster)
    answer = reply_to(cluster, 77, 1)
    assert isinstance(answer, Reply) and msgpack.unpackb(answer.result) == {"epoch": 1}
    for index in (1, 2, 3):
        replica = cluster.replicas[index]
        assert (replica.epoch, replica.status, replica.membership.ids) == (1, Status.NORMAL, (1, 2, 3))
    assert cluster.replicas[1].is_primary()
    leaving = cluster.replicas[0]
    assert leaving.status is Status.LEAVING and leaving.stopped
    cluster.request(client_id=5, request_number=1, op=b"B", to=1)
    settle(cluster, 10)
    assert isinstance(reply_to(cluster, 5, 1), Reply)
    assert [op for op in committed_ops(cluster, 3) if not is_reconfiguration(op)] == [b"A", b"B"]
    assert committed_ops(cluster, 1) == committed_ops(cluster, 2) == committed_ops(cluster, 3)
    cluster.check_applied()


def test_grow_from_3_to_5_and_shrink_back_to_3() -> None:
    reconfiguration_scenarios.grow_from_3_to_5_and_shrink_back_to_3()


def test_replacing_every_replica_hands_the_state_to_the_new_group() -> None:
    """(0, 1, 2) -> (3, 4, 5): no replica stays, so only the leaving ones can tell the new ones anything."""
    reconfiguration_scenarios.replacing_every_replica_hands_the_state_to_the_new_group()


def test_a_new_replica_catches_up_from_a_snapshot_when_the_log_was_truncated() -> None:
    cluster = reconfigurable(3, snapshot_interval_ops=2, snapshot_chunk_bytes=16)
    commit_in_view_zero(cluster, b"A", b"B", b"C", b"D", b"E")
    assert cluster.replicas[0].log_base > 0
    cluster.add_replica()
    cluster.reconfigure((0, 1, 2, 3))
    settle(cluster)
    joined = cluster.replicas[3]
    assert (joined.status, joined.epoch) == (Status.NORMAL, 1)
    assert joined.counters.get("snapshot installed", 0) >= 1
    assert joined.state_machine.snapshot() == cluster.replicas[0].state_machine.snapshot()


# --- admission -------------------------------------------------------------------------------------------------


def test_while_a_reconfiguration_is_in_flight_requests_wait_and_a_second_one_is_refused() -> None:
    cluster = reconfigurable(3)
    cluster.add_replica()
    cluster.reconfigure((0, 1, 2, 3))  # appended, not delivered: in flight
    assert cluster.replicas[0].reconfiguration_op == 1
    cluster.request(client_id=5, request_number=1, op=b"X", to=0)
    answer = reply_to(cluster, 5, 1)
    assert isinstance(answer, Error) and answer.code == ERROR_VIEW_CHANGE
    cluster.reconfigure((0, 1), client_id=78)
    answer = reply_to(cluster, 78, 1)
    assert isinstance(answer, Error) and answer.code == ERROR_BUSY and "in progress" in answer.message
    assert operations(cluster.replicas[0].log)[1:] == []  # nothing after the reconfiguration


@pytest.mark.parametrize(
    ("epoch", "members", "words"),
    [
        (1, (0, 1, 2, 3), "epoch 1, but the cluster is in epoch 0"),
        (0, (0, 1, 2), "unchanged"),
        (0, (0, 1, 1), "twice"),
        (0, (), "1..15 members"),
    ],
)
def test_a_bad_reconfiguration_is_refused_with_a_clear_error(
    epoch: int, members: tuple[int, ...], words: str
) -> None:
    cluster = reconfigurable(3)
    operation = reconfiguration_operation(epoch, tuple(Member(i) for i in members)) if members else b"\xc1zvsr"
    cluster.request(client_id=5, request_number=1, op=operation, to=0)
    answer = reply_to(cluster, 5, 1)
    assert isinstance(answer, Error) and answer.code == ERROR_BAD_REQUEST
    assert words in answer.message or (not members and "malformed" in answer.message)
    assert cluster.replicas[0].op_number == 0


def test_an_id_used_before_cannot_come_back() -> None:
    cluster = reconfigurable(3)
    cluster.reconfigure((0, 1))
    settle(cluster)
    assert cluster.replicas[0].epoch == 1
    cluster.reconfigure((0, 1, 2), request_number=2)
    answer = reply_to(cluster, 77, 2)
    assert isinstance(answer, Error) and "was used before" in answer.message


def test_reconfiguration_is_refused_where_the_runtime_has_not_enabled_it() -> None:
    cluster = Cluster(3, config=steady_config(3))
    cluster.reconfigure((0, 1, 2, 3))
    answer = reply_to(cluster, 77, 1)
    assert isinstance(answer, Error) and answer.code == ERROR_BAD_REQUEST and "not enabled" in answer.message


# --- failures during a transition ------------------------------------------------------------------------------


def test_primary_crashes_after_preparing_the_reconfiguration_and_the_next_view_completes_it() -> None:
    """Primary 0 prepares the reconfiguration; replicas 1 and 2 get it, 0's commit is lost with it. View 1's
    primary (1) finds it last in the chosen log, commits it, and the cluster enters epoch 1 without replica 0."""
    cluster = reconfigurable(3)
    commit_in_view_zero(cluster, b"A")
    cluster.add_replica()
    cluster.reconfigure((1, 2, 3))
    cluster.deliver_all(where=lambda m: isinstance(m.message, Prepare))
    cluster.drop(lambda m: m.source == 0 or m.to == 0)
    cluster.partition({0}, {1, 2, 3})
    settle(cluster, 300)  # replica 1 and 2 time out on primary 0: view 1, primary 1
    for index in (1, 2, 3):
        assert (cluster.replicas[index].epoch, cluster.replicas[index].status) == (1, Status.NORMAL)
    assert committed_ops(cluster, 1) == committed_ops(cluster, 3)


def test_a_replica_cut_off_during_the_transition_learns_the_epoch_and_catches_up() -> None:
    """Replica 2 is partitioned while epoch 1 (0, 1, 2, 3) starts and B commits. On healing it hears epoch 1,
    stops acting on epoch 0, fetches the committed ops and joins epoch 1 as a backup."""
    cluster = reconfigurable(3)
    commit_in_view_zero(cluster, b"A")
    cluster.add_replica()
    cluster.partition({2}, {0, 1, 3})
    cluster.reconfigure((0, 1, 2, 3))
    settle(cluster)
    cluster.request(client_id=5, request_number=1, op=b"B", to=0)
    settle(cluster, 10)
    laggard = cluster.replicas[2]
    assert laggard.epoch == 0
    cluster.heal()
    settle(cluster)
    assert (laggard.epoch, laggard.status) == (1, Status.NORMAL)
    settle(cluster, 60)
    assert committed_ops(cluster, 2) == committed_ops(cluster, 0)


def test_a_message_of_an_older_epoch_changes_nothing_and_its_sender_is_told_the_epoch() -> None:
    reconfiguration_scenarios.a_message_of_an_older_epoch_changes_nothing_and_its_sender_is_told_the_epoch()


def test_a_replica_restarted_from_disk_after_the_transition_is_back_in_the_new_epoch() -> None:
    cluster = reconfigurable(3)
    commit_in_view_zero(cluster, b"A")
    cluster.add_replica()
    cluster.reconfigure((0, 1, 2, 3))
    settle(cluster)
    for index in (2, 3):
        cluster.crash_and_restart_from_disk(index, cluster.durable_state(index))
        replica = cluster.replicas[index]
        assert (replica.epoch, replica.membership.ids, replica.status) == (1, (0, 1, 2, 3), Status.NORMAL)
    cluster.request(client_id=5, request_number=1, op=b"B", to=0)
    settle(cluster, 10)
    assert isinstance(reply_to(cluster, 5, 1), Reply)


def test_a_joining_replica_takes_part_in_nothing_before_it_caught_up() -> None:
    """A new member that holds nothing must not acknowledge or vote: its vote could lose committed ops."""
    cluster = reconfigurable(3)
    commit_in_view_zero(cluster, b"A")
    new = cluster.add_replica()
    cluster.reconfigure((0, 1, 2, 3))
    # Everything flows, except what would let replica 3 catch up.
    for _ in range(30):
        cluster.deliver_all(where=lambda m: m.to != new)
        cluster.drop(lambda m: m.to == new and not isinstance(m.message, StartEpoch | Prepare))
        cluster.deliver(lambda m: m.to == new)
        cluster.tick()
    joiner = cluster.replicas[new]
    assert joiner.status is Status.TRANSITIONING
    sent = {type(item.message).__name__ for item in cluster.sent if item.source == new}
    assert sent <= {"GetState", "GetSnapshot"}, f"a joiner that holds nothing sent {sent}"
    assert not any(isinstance(item.message, EpochStarted) for item in cluster.sent if item.source == new)


# --- planned maintenance: moving the primary role on purpose --------------------------------------------------


def test_primary_0_hands_its_role_to_replica_2_without_any_timeout() -> None:
    """Primary 0 commits A, then transfers to replica 2: its StartViewChange for view 2 (the next view replica 2
    leads) starts the view change at once; with messages delivered and no tick at all, replica 2 leads view 2
    with A, and B commits there."""
    cluster = reconfigurable(3)
    commit_in_view_zero(cluster, b"A")
    cluster.deliver_all()
    assert cluster.replicas[0].transfer_primary(2) is None
    cluster.flush(0)
    cluster.deliver_all()
    new = cluster.replicas[2]
    assert (new.status, new.view_number, new.is_primary()) == (Status.NORMAL, 2, True)
    assert all(r.view_number == 2 and r.status is Status.NORMAL for r in cluster.replicas)
    cluster.request(client_id=5, request_number=1, op=b"B", to=2)
    cluster.deliver_all()
    assert isinstance(reply_to(cluster, 5, 1), Reply)
    assert operations(cluster.replicas[0].log) == [b"A", b"B"]


@pytest.mark.parametrize(
    ("to", "words"), [(0, "already the primary"), (7, "not a member"), (1, "behind")]
)
def test_a_transfer_is_refused_with_a_reason(to: int, words: str) -> None:
    cluster = reconfigurable(3)
    commit_in_view_zero(cluster, b"A")
    cluster.drop(lambda m: m.source == 1)  # replica 1's acknowledgements are lost: it is behind
    cluster.request(client_id=5, request_number=1, op=b"B", to=0)
    cluster.deliver_all(where=lambda m: m.source != 1)
    refused = cluster.replicas[0].transfer_primary(to)
    assert refused is not None and words in refused
    assert cluster.replicas[1].transfer_primary(2) == "not the primary in normal status"


def test_a_restart_torn_between_a_catch_ups_log_and_the_next_epoch_drops_the_ops_after_our_epochs_end() -> None:
    """Replica 2 caught up across the end of epoch 0 in one step, and its write was torn in the middle: its disk
    holds ops 1..4, op 2 the reconfiguration that ends epoch 0 and ops 3..4 epoch 1's, while its view state
    still says epoch 0 (simulator seed 1482, 5 replicas). Back from disk it holds ops 1..2 only and has its disk
    drop 3..4: its epoch ends at its reconfiguration, as every epoch does, and the ops after it (copies of ops
    committed in epoch 1, never acknowledged by us) are fetched again once it enters epoch 1."""
    ends_epoch_0 = reconfiguration_operation(0, (Member(0), Member(1), Member(3)))
    log = tuple(
        LogEntry(view=0 if n <= 2 else 1, op_number=n, client_id=7, request_number=n, operation=op, timestamp=n)
        for n, op in enumerate((b"op1", ends_epoch_0, b"op3", b"op4"), start=1)
    )
    cluster = DiskCluster(3, config=reconfigurable(3).config)
    durable = DurableState(view_number=0, last_normal_view=0, commit_number=0, log=log, epoch=0)
    cluster.crash_and_restart_from_disk(2, durable)
    replica = cluster.replicas[2]
    assert (replica.epoch, replica.op_number, [e.op_number for e in replica.log]) == (0, 2, [1, 2])
    assert replica.counters["restart: ops after our epoch's end dropped"] == 1
    assert PersistLog(op_number_first=3, entries=()) in cluster.persisted[2]
