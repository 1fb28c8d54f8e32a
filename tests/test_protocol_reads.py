"""Reads without a log entry (zvsr.protocol.reads), as scenarios on the hand-driven cluster, and the mutants they
catch: a primary that answers without a quorum's confirmation, and a read lease longer than the backups' promise.

The harness's EchoLog answers a read ("read..." op) with the number of ops it has applied, so a stale answer is a
smaller number than the writes acknowledged before the read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from mutants import assert_caught, patch_method

from zvsr.constants import (
    READ_LEASE_CLOCK_DRIFT,
    READ_MODE_LEASE,
    READ_MODE_LOG,
    SIM_CLOCK_RATE_SPREAD,
    TICK_MS,
)
from zvsr.protocol import reads
from zvsr.protocol.cluster_time import Clock
from zvsr.protocol.config import Config
from zvsr.protocol.messages import Commit, Prepare, PrepareOk, Reply, Request, StartViewChange
from zvsr.protocol.replica import Status
from zvsr.sim.harness import Cluster, matching
from zvsr.sim.simulator import SimOptions, run_seed

MonkeyPatch = pytest.MonkeyPatch


def _answers(cluster: Cluster, client_id: int, request_number: int) -> list[bytes]:
    return [
        r.result
        for r in cluster.replies
        if isinstance(r, Reply) and r.client_id == client_id and r.request_number == request_number
    ]


def _write(cluster: Cluster, client_id: int, request_number: int, to: int = 0) -> None:
    cluster.request(client_id=client_id, request_number=request_number, op=b"w", to=to)
    cluster.deliver_all()
    assert _answers(cluster, client_id, request_number), "the write was acknowledged"


def scenario_read_waits_for_one_confirmation_round() -> None:
    """Client 1 wrote op 1; its read reaches primary 0, which sends a Commit with a new round; nothing is answered
    until backups echo it, then the read is answered with op 1's state and the log does not grow."""
    cluster = Cluster(3)
    _write(cluster, 1, 1)
    primary = cluster.replicas[0]
    cluster.request(client_id=1, request_number=2, op=b"read")
    assert _answers(cluster, 1, 2) == [], "answered before any backup confirmed the round"
    rounds = [item.message.read_round for item in cluster.queued(Commit, source=0)]
    assert rounds and all(r == primary.reads.read_round > 0 for r in rounds)
    cluster.deliver(matching(Commit))
    echoes = cluster.queued(PrepareOk, to=0)
    assert {item.message.read_round for item in echoes} == {primary.reads.read_round}
    cluster.deliver(matching(PrepareOk), limit=1)  # one backup + the primary: a quorum of 3
    assert _answers(cluster, 1, 2) == [b"1"]
    assert primary.op_number == 1, "a read got a log entry"
    assert primary.counters["read served: read index"] == 1


def scenario_deposed_primary_never_answers() -> None:
    """Primary 0 acknowledged op 1 and is cut off from 1 and 2, which move to view 1 and acknowledge op 2 there.
    A read reaching 0 before its quorum timeout is never answered: its rounds reach no backup."""
    cluster = Cluster(3)
    _write(cluster, 1, 1)
    cluster.partition({0}, {1, 2})
    cluster.time_out(1, joined_by={2})
    cluster.deliver_all()
    new = cluster.replicas[1]
    assert new.status is Status.NORMAL and new.view_number == 1 and new.is_primary()
    _write(cluster, 2, 1, to=1)
    cluster.request(client_id=1, request_number=2, op=b"read", to=0)
    for _ in range(cluster.replicas[0].config.quorum_timeout_ticks - 1):
        cluster.tick(only={0})
        cluster.deliver_all()
    assert _answers(cluster, 1, 2) == [], "a deposed primary answered a read (op 2 was acknowledged in view 1)"
    cluster.heal()
    cluster.run_until(lambda: cluster.replicas[0].view_number == 1 and cluster.replicas[0].commit_number == 2)
    assert not cluster.replicas[0].reads.pending, "reads of a view we left are dropped"


def scenario_new_primary_reads_after_the_ops_its_view_started_with() -> None:
    """Primary 0 acknowledged ops 1 and 2; only backup 1 holds op 2, and no backup heard that it committed. 0 is
    cut off; 1 and 2 move to view 1, whose primary 1 starts with op 2 in its log, not committed there yet. A read
    reaching 1 is answered only after op 2 is executed there: the answer counts both writes."""
    cluster = Cluster(3)
    _write(cluster, 1, 1)
    cluster.request(client_id=2, request_number=1, op=b"w", to=0)
    cluster.drop(matching(Prepare, to=2))
    cluster.deliver(matching(Prepare, to=1))
    cluster.deliver(matching(PrepareOk, to=0))
    assert _answers(cluster, 2, 1), "op 2 was acknowledged by primary 0"
    cluster.partition({0}, {1, 2})
    cluster.drop()
    cluster.time_out(1, joined_by={2})
    cluster.deliver_all(where=lambda item: not isinstance(item.message, PrepareOk))  # the view change, no acks
    new = cluster.replicas[1]
    assert new.status is Status.NORMAL and new.view_number == 1 and new.is_primary()
    assert new.commit_number == 1 and new.op_number == 2, "view 1 starts with op 2 prepared, not committed"
    cluster.request(client_id=1, request_number=2, op=b"read", to=1)
    cluster.run_until(lambda: bool(_answers(cluster, 1, 2)))
    assert _answers(cluster, 1, 2) == [b"2"], "a read in view 1 missed op 2, which primary 0 acknowledged"


def test_read_waits_for_one_confirmation_round() -> None:
    scenario_read_waits_for_one_confirmation_round()


def test_deposed_primary_in_a_minority_never_answers_a_read() -> None:
    scenario_deposed_primary_never_answers()


def test_a_new_primary_answers_a_read_only_after_the_ops_its_view_started_with() -> None:
    scenario_new_primary_reads_after_the_ops_its_view_started_with()


def test_one_round_answers_every_read_waiting_for_it() -> None:
    """Three reads arrive in one step: one round (one Commit per backup) answers them all."""
    cluster = Cluster(3)
    _write(cluster, 1, 1)
    _write(cluster, 2, 1)
    _write(cluster, 3, 1)
    for client_id in (1, 2, 3):
        cluster.replicas[0].on_request(
            dataclasses.replace(_request(client_id), request_number=2, operation=b"read")
        )
    cluster.flush(0)
    assert len(cluster.queued(Commit, source=0)) == 2  # one per backup
    cluster.deliver_all()
    assert [_answers(cluster, c, 2) for c in (1, 2, 3)] == [[b"3"], [b"3"], [b"3"]]


def test_reads_ride_on_prepares_under_load() -> None:
    """A read and a write arrive in one step: the round rides on the write's Prepare, and no Commit is sent."""
    cluster = Cluster(3)
    _write(cluster, 1, 1)
    _write(cluster, 2, 1)
    primary = cluster.replicas[0]
    primary.on_request(dataclasses.replace(_request(1), request_number=2, operation=b"read"))
    primary.on_request(dataclasses.replace(_request(2), request_number=2, operation=b"w"))
    cluster.flush(0)
    assert cluster.queued(Commit, source=0) == []
    prepares = cluster.queued(Prepare, source=0)
    assert prepares and all(item.message.read_round == primary.reads.read_round for item in prepares)
    cluster.deliver_all()
    # The read is concurrent with the write: its round was confirmed by the PrepareOks that committed op 3.
    assert _answers(cluster, 1, 2) in ([b"2"], [b"3"]) and _answers(cluster, 2, 2) == [b"3"]


def _request(client_id: int) -> Request:
    return Request(client_id=client_id, request_number=1, operation=b"w")


def test_a_clients_first_request_goes_through_the_log_even_if_it_reads() -> None:
    """Client 9 is unknown: its first request, a read, is logged (its session starts), so its next write with a
    larger number is new; its later reads are not logged, and a late copy of an older read gets nothing."""
    cluster = Cluster(3)
    primary = cluster.replicas[0]
    cluster.request(client_id=9, request_number=1, op=b"read")
    cluster.deliver_all()
    assert primary.op_number == 1 and _answers(cluster, 9, 1) == [b"1"]
    cluster.request(client_id=9, request_number=2, op=b"read")
    cluster.deliver_all()
    assert primary.op_number == 1 and _answers(cluster, 9, 2) == [b"1"]
    cluster.request(client_id=9, request_number=3, op=b"w")
    cluster.deliver_all()
    assert primary.op_number == 2 and _answers(cluster, 9, 3) == [b"2"]
    cluster.request(client_id=9, request_number=2, op=b"read")  # older than the latest: dropped
    cluster.deliver_all()
    assert _answers(cluster, 9, 2) == [b"1"]


def test_read_mode_log_puts_reads_in_the_log() -> None:
    cluster = Cluster(3, config=Config(replica_count=3, read_mode=READ_MODE_LOG))
    _write(cluster, 1, 1)
    cluster.request(client_id=1, request_number=2, op=b"read")
    cluster.deliver_all()
    assert cluster.replicas[0].op_number == 2 and _answers(cluster, 1, 2) == [b"2"]


def test_read_mode_must_be_known() -> None:
    with pytest.raises(ValueError, match="read_mode"):
        Config(replica_count=3, read_mode="stale")


# --- lease mode: clocks at different rates -------------------------------------------------------------------


class Clocks:
    """Virtual time in ns, and a clock per replica that runs at its own rate (within READ_LEASE_CLOCK_DRIFT)."""

    def __init__(self, rates: dict[int, float]) -> None:
        self.now = 0
        self.rates = rates

    def of(self, index: int) -> Clock:
        return lambda: int(self.now * self.rates[index])

    def advance_ms(self, ms: float) -> None:
        self.now += int(ms * 1_000_000)


def _lease_cluster(clocks: Clocks) -> Cluster:
    config = Config(replica_count=3, read_mode=READ_MODE_LEASE)
    cluster = Cluster(3, config=config, clocks={i: clocks.of(i) for i in range(3)})
    return cluster


def scenario_lease_ends_before_a_new_view_can_start(clocks: Clocks) -> None:
    """Lease mode, primary 0's clock slow and the backups' fast. 0 holds a lease from a confirmed round, is cut off
    from 1 and 2, which wait out their promise and move to view 1 and acknowledge op 2. A read reaching 0 after
    that is not answered from its lease (it has expired by 0's own clock), nor by a round."""
    cluster = _lease_cluster(clocks)
    config = cluster.replicas[0].config
    promise_ms = config.primary_timeout_ticks * TICK_MS
    clocks.advance_ms(promise_ms * 2)  # every replica's start-up promise is over
    _write(cluster, 1, 1)
    cluster.tick(config.heartbeat_ticks, only={0})  # a heartbeat starts a round: the lease
    cluster.deliver_all()
    primary = cluster.replicas[0]
    assert primary.reads.lease_until(1) is not None
    cluster.request(client_id=1, request_number=2, op=b"read")
    assert _answers(cluster, 1, 2) == [b"1"], "a lease read waits for nothing"
    cluster.partition({0}, {1, 2})
    # 1 and 2 refuse a view change while their promise holds ...
    header = {"cluster": config.cluster, "epoch": config.epoch, "view": 1}
    cluster.inject(2, StartViewChange(**header, replica=1))
    assert cluster.replicas[2].status is Status.NORMAL
    # ... and once it is over (on their fast clocks), they move on and acknowledge op 2.
    for _ in range(1000):
        clocks.advance_ms(TICK_MS)
        cluster.tick(only={1, 2})
        cluster.deliver_all()
        if cluster.replicas[1].is_primary() and cluster.replicas[1].status is Status.NORMAL:
            break
    assert cluster.replicas[1].view_number == 1
    _write(cluster, 2, 1, to=1)
    cluster.request(client_id=1, request_number=3, op=b"read", to=0)
    cluster.deliver_all()
    assert _answers(cluster, 1, 3) == [], (
        "the old primary answered from a lease that outlived its backups' promise"
    )


def test_lease_read_is_answered_alone_and_ends_before_a_new_view() -> None:
    scenario_lease_ends_before_a_new_view_can_start(Clocks({0: 0.95, 1: 1.05, 2: 1.05}))


def test_backup_under_promise_neither_joins_nor_starts_a_view_change() -> None:
    clocks = Clocks({0: 1.0, 1: 1.0, 2: 1.0})
    cluster = _lease_cluster(clocks)
    config = cluster.replicas[0].config
    header = {"cluster": config.cluster, "epoch": config.epoch, "view": 1}
    cluster.inject(2, StartViewChange(**header, replica=1))  # at start-up, every replica has promised
    assert cluster.replicas[2].status is Status.NORMAL
    assert cluster.replicas[2].counters["on_start_view_change: read lease promised to our primary"] == 1
    clocks.advance_ms(config.primary_timeout_ticks * TICK_MS + 1)
    cluster.inject(2, StartViewChange(**header, replica=1))
    assert cluster.replicas[2].status is Status.VIEW_CHANGE


def test_lease_is_the_promise_shrunk_by_the_drift_bound() -> None:
    config = Config(replica_count=3, read_mode=READ_MODE_LEASE)
    promise = reads.promise_ns(config)
    assert promise == config.primary_timeout_ticks * TICK_MS * 1_000_000
    assert reads.lease_ns(config) < promise * (1 - 0.05) / (1 + 0.05) + 1


# --- mutants -------------------------------------------------------------------------------------------------


def mutant_read_without_confirmation(monkeypatch: MonkeyPatch) -> None:
    """The primary answers a read as soon as it has executed its read index: no quorum confirms it still leads."""
    patch_method(
        monkeypatch,
        "confirmed_round",
        lambda original: lambda self, needed: self.read_round + 1,
        owner=reads.Reads,
    )


def mutant_lease_longer_than_the_promise(monkeypatch: MonkeyPatch) -> None:
    """The primary holds its lease for three promises: past the moment its backups may join a new view."""
    monkeypatch.setattr(reads, "lease_ns", lambda config: 3 * reads.promise_ns(config))


def test_mutant_read_without_confirmation_is_caught(monkeypatch: MonkeyPatch) -> None:
    mutant_read_without_confirmation(monkeypatch)
    assert_caught(scenario_deposed_primary_never_answers)


def test_mutant_lease_longer_than_the_promise_is_caught(monkeypatch: MonkeyPatch) -> None:
    mutant_lease_longer_than_the_promise(monkeypatch)
    assert_caught(lambda: scenario_lease_ends_before_a_new_view_can_start(Clocks({0: 0.95, 1: 1.05, 2: 1.05})))


def mutant_stale_confirmation(monkeypatch: MonkeyPatch) -> None:
    """A read takes the latest round already sent as its confirmation: an echo sent before it arrived counts."""

    def wait(self: reads.Reads, request: Request, commit_number: int) -> None:
        self.pending.append(reads.PendingRead(request, self.read_index(commit_number), self.read_round))

    monkeypatch.setattr(reads.Reads, "wait", wait)


def test_mutant_stale_confirmation_is_caught(monkeypatch: MonkeyPatch) -> None:
    mutant_stale_confirmation(monkeypatch)
    assert_caught(scenario_deposed_primary_never_answers)


def mutant_lease_ten_promises_long(monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setattr(reads, "lease_ns", lambda config: 10 * reads.promise_ns(config))


# (mutant, replicas, read_mode, events per seed, seeds at most): the simulator's own faults (a deposed primary
# partitioned off or with a stalled clock, clocks at different rates) must expose each within the bound.
SIMULATOR_CATCHES = [
    # Since sessions register through the log the simulator meets a deposed primary serving reads less often (it
    # refuses sessions registered after it was cut off): seed 208 in lease mode (read_index: seed 291; each
    # seed's own mode, 5000 events: none in 300). Before, seed 59 of 80.
    (mutant_read_without_confirmation, 3, READ_MODE_LEASE, 3000, 250),
    (mutant_lease_ten_promises_long, 3, READ_MODE_LEASE, 2000, 250),  # seed 208 (seed 3 before registration)
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("install", "replicas", "read_mode", "events", "seeds"),
    SIMULATOR_CATCHES,
    ids=[f"{m.__name__}-{r}" for m, r, *_ in SIMULATOR_CATCHES],
)
def test_simulator_catches_read_mutant_within_bounded_seeds(
    monkeypatch: MonkeyPatch,
    install: Callable[[MonkeyPatch], None],
    replicas: int,
    read_mode: str | None,
    events: int,
    seeds: int,
) -> None:
    options = SimOptions(replicas=replicas, events=events, read_mode=read_mode)
    install(monkeypatch)
    for seed in range(seeds):
        try:
            run_seed(seed, options)
        except AssertionError:  # a Violation: here the linearizability check over the clients' history
            break
    else:
        pytest.fail(f"{install.__name__}: the simulator found nothing in {seeds} seeds")
    monkeypatch.undo()
    assert run_seed(seed, options).seed == seed, "the unmutated core must pass the catching seed"


def test_a_vote_from_the_primary_itself_frees_a_backup_from_its_promise() -> None:
    """Lease mode: primary 0 hands its role to 1 (a planned transfer): its StartViewChange frees the backups at
    once, since a primary that left its view serves no read there."""
    clocks = Clocks({0: 1.0, 1: 1.0, 2: 1.0})
    cluster = _lease_cluster(clocks)
    _write(cluster, 1, 1)
    assert cluster.replicas[2].reads.promised(clocks.now), "the backups are under promise"
    assert cluster.replicas[0].transfer_primary(1) is None
    cluster.flush(0)
    cluster.deliver_all()
    new = cluster.replicas[1]
    assert new.status is Status.NORMAL and new.is_primary() and new.view_number == 1


def test_the_simulators_clock_rates_stay_within_the_leases_drift_bound() -> None:
    """The simulator draws clock rates within SIM_CLOCK_RATE_SPREAD: a lease that allowed for less drift would be
    tested against clocks it does not promise to survive (and the other way round, the test would prove less)."""
    assert SIM_CLOCK_RATE_SPREAD <= READ_LEASE_CLOCK_DRIFT
