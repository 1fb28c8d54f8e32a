"""Cluster time (zvsr.protocol.cluster_time): the primary stamps entries, stamps never go backwards, a new primary
continues from the log it adopted, a restarted replica from its disk; the app's timers are proposed only by the
primary, one at a time, and an op proposed by a deposed primary never commits."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from scenarios import commit_in_view_zero, steady_config, view_change_to_one

from zvsr.protocol import snapshots
from zvsr.protocol.cluster_time import ClusterTime
from zvsr.protocol.messages import INTERNAL_CLIENT_ID, Error, Prepare, Reply, Request
from zvsr.protocol.replica import DurableState
from zvsr.sim.harness import Cluster, EchoLog

SECOND = 1_000_000_000


@dataclass
class FakeClock:
    """A monotonic clock a scenario sets by hand (ns); each replica may have its own origin."""

    now: int = 0

    def __call__(self) -> int:
        return self.now


def stamps(cluster: Cluster, index: int) -> list[int]:
    return [entry.timestamp for entry in cluster.replicas[index].log]


def test_the_primary_stamps_every_entry_with_its_clock_and_two_ops_in_one_instant_get_distinct_stamps() -> None:
    clock = FakeClock(now=7 * SECOND)
    cluster = Cluster(3, config=steady_config(3), clocks={0: clock})
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    cluster.request(client_id=2, request_number=1, op=b"b", to=0)
    clock.now += 2 * SECOND
    cluster.request(client_id=3, request_number=1, op=b"c", to=0)
    first, second, third = stamps(cluster, 0)
    # The primary's cluster clock started at 0 when it started (7 s on its own clock).
    assert (first, second) == (1, 2), "the same instant: the second stamp is the first + 1 ns"
    assert third == 2 * SECOND
    cluster.deliver_all()
    assert stamps(cluster, 1) == stamps(cluster, 2) == [first, second, third], "backups hold the primary's stamps"


def test_a_new_primary_continues_from_the_largest_stamp_it_learned_plus_its_own_elapsed_time() -> None:
    """Primary 0 stamps op 1 at 50 s of cluster time; replica 1 (whose own clock reads 1000 s) receives it,
    then 3 s pass on replica 1's clock while 0 dies; replica 1 leads view 1 and stamps op 2 at 53 s: time ran
    on through the failover, measured by its own clock from the moment it learned the stamp."""
    primary_clock, clock_1 = FakeClock(now=0), FakeClock(now=1000 * SECOND)
    cluster = Cluster(3, config=steady_config(3), clocks={0: primary_clock, 1: clock_1})
    primary_clock.now = 50 * SECOND
    commit_in_view_zero(cluster, b"a")
    assert stamps(cluster, 1) == [50 * SECOND]
    clock_1.now += 3 * SECOND
    view_change_to_one(cluster, without={0})
    cluster.request(client_id=9, request_number=1, op=b"b", to=1)
    assert stamps(cluster, 1) == [50 * SECOND, 53 * SECOND]


def test_a_new_primary_whose_clock_is_behind_never_stamps_before_the_log_it_adopted() -> None:
    """Replica 1 never heard op 2 (stamped 90 s) but adopts it in the view change: its next stamp follows it,
    although its own cluster clock only reached 40 s."""
    primary_clock = FakeClock(now=0)
    cluster = Cluster(3, config=steady_config(3), clocks={0: primary_clock, 1: FakeClock(), 2: FakeClock()})
    primary_clock.now = 40 * SECOND
    commit_in_view_zero(cluster, b"a")
    primary_clock.now = 90 * SECOND
    cluster.request(client_id=5, request_number=1, op=b"b", to=0)
    cluster.deliver(lambda item: isinstance(item.message, Prepare) and item.to == 2)  # only replica 2 gets op 2
    cluster.drop(lambda item: item.source == 0 or item.to == 0)
    view_change_to_one(cluster, without={0})
    assert [entry.operation for entry in cluster.replicas[1].log] == [b"a", b"b"]
    cluster.request(client_id=9, request_number=1, op=b"c", to=1)
    assert stamps(cluster, 1) == [40 * SECOND, 90 * SECOND, 90 * SECOND + 1]


def test_a_restarted_replica_resumes_cluster_time_from_its_log_and_does_not_count_its_downtime() -> None:
    clock = FakeClock(now=0)
    config = steady_config(1)
    cluster = Cluster(1, config=config, clocks={0: clock})
    clock.now = 30 * SECOND
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    durable = cluster.durable_state(0)
    clock.now = 500 * SECOND  # a new process: its clock is anywhere; the downtime is not counted
    cluster.crash_and_restart_from_disk(0, durable)
    clock.now += SECOND
    cluster.request(client_id=1, request_number=2, op=b"b", to=0)
    assert stamps(cluster, 0) == [30 * SECOND, 31 * SECOND]


def test_a_snapshot_carries_the_cluster_time_of_its_last_op_and_a_replica_restored_from_it_stamps_later() -> None:
    clock = FakeClock(now=0)
    config = steady_config(1, snapshot_interval_ops=2)
    cluster = Cluster(1, config=config, clocks={0: clock})
    for number in (1, 2):
        clock.now = number * 10 * SECOND
        cluster.request(client_id=number, request_number=1, op=b"op", to=0)
    replica = cluster.replicas[0]
    assert replica.snapshot_op == 2
    assert snapshots.decode(replica.snapshots.data).timestamp == 20 * SECOND
    durable = DurableState(
        view_number=0, last_normal_view=0, commit_number=2, log=(), log_base=2, snapshot=replica.snapshots.data
    )
    clock.now = 0  # a clock that restarted from zero (a reboot)
    cluster.crash_and_restart_from_disk(0, durable)
    cluster.request(client_id=3, request_number=1, op=b"c", to=0)
    assert stamps(cluster, 0) == [20 * SECOND + 1]


def test_a_snapshot_from_before_cluster_time_decodes_with_timestamp_0() -> None:
    # A ZVSRSNP2 snapshot: no timestamp, no configuration; client rows without a nonce; an expired list.
    old = b"".join(
        [
            struct.pack(">8sQI", snapshots.MAGIC_V2, 4, 1),
            struct.pack(">QQI", 1, 2, 1),
            b"r",
            struct.pack(">IQ", 1, 9),
            struct.pack(">Q", 3),
            b"app",
        ]
    )
    decoded = snapshots.decode(old)
    assert (decoded.op_number, decoded.timestamp, decoded.app_state) == (4, 0, b"app")
    assert decoded.client_table == ((1, 0, 2, b"r"),)
    assert snapshots.op_number_of(old) == 4


def test_cluster_time_on_a_backup_follows_the_largest_stamp_and_never_goes_back() -> None:
    clock = FakeClock(now=100)
    time = ClusterTime(clock)
    time.learn(5_000)
    clock.now += 10
    assert time.now() == 5_010
    time.learn(4_000)  # an older stamp (a re-sent Prepare): nothing moves
    assert time.now() == 5_010
    clock.now += 5
    assert time.stamp() == 5_015 and time.stamp() == 5_016, "stamps strictly increase"


# --- the app's timers: proposed by the primary only, through the log ----------------------------------------


def with_timer(cluster: Cluster, due_at: int) -> None:
    for app in cluster.apps:
        app.due_at = due_at


def test_the_primary_proposes_a_due_timer_as_the_clusters_own_op_once_and_every_replica_applies_it() -> None:
    clock = FakeClock(now=0)
    cluster = Cluster(3, config=steady_config(3), clocks={0: clock, 1: FakeClock(), 2: FakeClock()})
    with_timer(cluster, due_at=2 * SECOND)
    cluster.tick(3)
    assert cluster.replicas[0].op_number == 0, "not due yet"
    clock.now = 2 * SECOND
    cluster.tick(1, only={0})
    cluster.tick(1, only={0})  # asked again while the first is in flight: not proposed twice
    primary = cluster.replicas[0]
    assert primary.op_number == 1
    timer = primary.log[0]
    assert (timer.client_id, timer.request_number, timer.operation) == (INTERNAL_CLIENT_ID, 0, EchoLog.TIMER_OP)
    assert timer.timestamp >= 2 * SECOND
    cluster.deliver_all()
    cluster.tick(primary.config.heartbeat_ticks, only={0})
    cluster.deliver_all()
    assert all(app.applied == [EchoLog.TIMER_OP] for app in cluster.apps)
    assert all(app.due_at is None for app in cluster.apps)
    assert not cluster.replies, "the cluster's own op has no client to answer"
    assert INTERNAL_CLIENT_ID not in primary.client_table, "and no client-table row"
    assert all(not app.due_asked for app in cluster.apps[1:]), "a backup never asks its app what is due"


def test_a_request_from_client_id_0_is_refused_and_never_executed() -> None:
    cluster = Cluster(3, config=steady_config(3))
    cluster.replicas[0].on_request(Request(client_id=INTERNAL_CLIENT_ID, request_number=1, operation=b"x"))
    cluster.flush(0)
    assert cluster.replicas[0].op_number == 0
    [error] = cluster.replies
    assert isinstance(error, Error) and error.code == "bad_request" and "reserved" in error.message


def test_a_timer_proposed_by_a_primary_cut_off_from_its_backups_never_commits() -> None:
    """Primary 0 is partitioned away; its cluster clock passes the timer's deadline and it appends the timer op
    (it has heard from a quorum recently). The majority moves to view 1 without it; when 0 rejoins it adopts
    view 1's log, and its timer op is executed nowhere: only the new primary may propose it again."""
    clock = FakeClock(now=0)
    cluster = Cluster(3, config=steady_config(3), clocks={0: clock, 1: FakeClock(), 2: FakeClock()})
    commit_in_view_zero(cluster, b"a")
    with_timer(cluster, due_at=SECOND)
    cluster.partition({0}, {1, 2})
    clock.now = SECOND
    cluster.tick(1, only={0})
    assert cluster.replicas[0].log[-1].operation == EchoLog.TIMER_OP, "the deposed primary proposed it"
    view_change_to_one(cluster, without={0})
    cluster.request(client_id=7, request_number=1, op=b"b", to=1)
    cluster.heal()
    cluster.run_until(lambda: all(r.view_number == 1 and r.commit_number == 2 for r in cluster.replicas))
    assert all(app.applied == [b"a", b"b"] for app in cluster.apps), "the deposed primary's timer op never ran"
    assert any(isinstance(reply, Reply) and reply.client_id == 7 for reply in cluster.replies)


def test_stamps_strictly_increase_along_a_log_that_crossed_two_view_changes() -> None:
    clocks = {index: FakeClock(now=index * 777 * SECOND) for index in range(3)}
    cluster = Cluster(3, config=steady_config(3), clocks=clocks)
    commit_in_view_zero(cluster, b"a", b"b")
    view_change_to_one(cluster, without={0})
    cluster.request(client_id=20, request_number=1, op=b"c", to=1)
    cluster.deliver_all()
    log = cluster.replicas[1].log
    assert [entry.operation for entry in log] == [b"a", b"b", b"c"]
    assert all(earlier.timestamp < later.timestamp for earlier, later in zip(log, log[1:], strict=False))


def test_a_backup_whose_clock_runs_fast_rebases_on_every_newer_stamp_and_does_not_drift_ahead() -> None:
    """The primary stamps 1 s, then 2 s; the backup's clock runs 10% fast. Its cluster clock continues from the
    latest stamp with its own elapsed time (2.11 s, 0.1 s after it), not from its older, larger estimate
    (1 s + 1.21 s = 2.21 s): rate differences do not pile up over a backup's uptime."""
    clock = FakeClock(now=0)
    time = ClusterTime(clock)
    time.learn(1 * SECOND)
    clock.now = 1_100_000_000  # 1 s of real time at 1.1x
    time.learn(2 * SECOND)
    clock.now = 1_210_000_000  # another 0.1 s real, 0.11 s on this clock
    assert time.now() == 2 * SECOND + 110_000_000
    assert time.stamp() > 2 * SECOND, "and its stamps still follow every stamp it learned"
