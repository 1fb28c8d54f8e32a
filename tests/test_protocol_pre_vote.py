"""Pre-vote (docs/design.md, "Pre-vote"), as scenarios: a backup whose primary goes silent asks the others with
StartViewChangeProbe and starts a view change only once a quorum, itself included, has lost the primary too.
A replica that is cut off, or can send but not receive, keeps its view and returns without a view change; a
replica cut off in a view change waits in it instead of climbing; with the primary really gone from a
majority, the view still changes; and a primary that hears no quorum goes quiet so that it is replaced."""

from __future__ import annotations

from scenarios import header, steady_config

from zvsr.constants import PRIMARY_QUIET_AFTER_QUORUM_TIMEOUTS
from zvsr.protocol.config import Config
from zvsr.protocol.messages import (
    DoViewChange,
    ReplicaMessage,
    StartView,
    StartViewChange,
    StartViewChangeProbe,
)
from zvsr.protocol.replica import Status
from zvsr.sim.harness import Cluster, matching

VIEW_CHANGE_KINDS = (StartViewChange, DoViewChange, StartView)


def run(cluster: Cluster, ticks: int) -> None:
    """Every replica ticks, and everything that can be delivered is, each tick."""
    for _ in range(ticks):
        cluster.tick()
        cluster.deliver_all()


def sent(cluster: Cluster, kind: type[ReplicaMessage] | tuple[type[ReplicaMessage], ...]) -> list[int]:
    """The senders of every message of `kind` so far, in order."""
    return [item.source for item in cluster.sent if isinstance(item.message, kind)]


def probe(*, view: int, replica: int) -> StartViewChangeProbe:
    return StartViewChangeProbe(**header(view=view, replica=replica))


# --- a cut-off replica does not disturb the majority ---------------------------------------------------------


def test_a_cut_off_backup_probes_keeps_its_view_and_returns_without_a_view_change() -> None:
    """Replica 2 is cut off for 50 primary timeouts. It probes again and again but never raises its view; the
    majority never hears of a view change. Healed, it follows primary 0 in view 0 and acknowledges its ops."""
    config = Config(replica_count=3)
    cluster = Cluster(3, config=config)
    cluster.partition({2}, {0, 1})
    run(cluster, 50 * config.primary_timeout_ticks)
    assert [(r.status, r.view_number) for r in cluster.replicas] == [(Status.NORMAL, 0)] * 3
    assert sent(cluster, StartViewChangeProbe).count(2) >= 40, "it asked, on its probe timer"
    cluster.heal()
    run(cluster, 2 * config.primary_timeout_ticks)
    cluster.request(client_id=1, request_number=1, op=b"x", to=0)
    run(cluster, config.heartbeat_ticks)
    assert [(r.status, r.view_number, r.commit_number) for r in cluster.replicas] == [(Status.NORMAL, 0, 1)] * 3
    assert sent(cluster, VIEW_CHANGE_KINDS) == [], "no view change, before or after the heal"
    assert not cluster.replicas[2].timers.probe.running, "it stopped probing once it heard the primary"


def test_a_backup_that_can_send_but_not_receive_never_moves_the_view() -> None:
    """Replica 2's inbound links are cut: it hears nothing, its probes reach the others, who still hear primary 0
    and only count them. The asymmetric partition heals: no view change ever happened."""
    config = Config(replica_count=3)
    cluster = Cluster(3, config=config)
    cluster.block(0, 2)
    cluster.block(1, 2)
    run(cluster, 30 * config.primary_timeout_ticks)
    assert 2 in sent(cluster, StartViewChangeProbe)
    assert cluster.replicas[1].votes.without_primary.get(2) is not None, "replica 1 heard replica 2's probes"
    cluster.heal()
    run(cluster, 2 * config.primary_timeout_ticks)
    assert [(r.status, r.view_number) for r in cluster.replicas] == [(Status.NORMAL, 0)] * 3
    assert sent(cluster, VIEW_CHANGE_KINDS) == []


def test_a_backup_that_can_receive_but_not_send_has_no_reason_to_probe() -> None:
    """Replica 2's outbound links are cut: it still hears primary 0's heartbeats, so it never suspects; primary 0
    commits with replica 1's acknowledgements alone."""
    config = Config(replica_count=3)
    cluster = Cluster(3, config=config)
    cluster.block(2, 0)
    cluster.block(2, 1)
    run(cluster, 30 * config.primary_timeout_ticks)
    cluster.request(client_id=1, request_number=1, to=0)
    run(cluster, config.heartbeat_ticks)
    assert cluster.replicas[0].commit_number == 1
    assert sent(cluster, (StartViewChangeProbe, *VIEW_CHANGE_KINDS)) == []


# --- with the primary really gone from a majority, the view changes -----------------------------------------


def test_backups_that_both_lost_the_primary_change_view_after_their_probes() -> None:
    """Primary 0 is cut off. Both backups' timeouts fire and each probes; the second probe makes a quorum and the
    view change runs as in the paper. Probes come first; the whole takes about one primary timeout."""
    config = Config(replica_count=3)
    cluster = Cluster(3, config=config)
    cluster.partition({0}, {1, 2})
    ticks = 0
    while not all(r.status is Status.NORMAL and r.view_number == 1 for r in cluster.replicas[1:]):
        run(cluster, 1)
        ticks += 1
        assert ticks < 3 * config.primary_timeout_ticks, "no view change within three primary timeouts"
    kinds = [type(item.message) for item in cluster.sent if item.source != 0]
    assert kinds.index(StartViewChangeProbe) < kinds.index(StartViewChange)
    assert ticks <= config.primary_timeout_ticks + config.primary_timeout_jitter_ticks + 2


def test_a_primary_heard_by_one_backup_of_five_is_still_replaced() -> None:
    """5 replicas. Primary 0 reaches replica 1 only; replicas 2, 3 and 4 lose it, probe, and make a quorum of
    three. Replica 1 (the primary of view 1) joins on their StartViewChange even though it still hears primary 0,
    and view 1 starts; replica 0 installs it from replica 1."""
    config = Config(replica_count=5)
    cluster = Cluster(5, config=config)
    cluster.partition({0}, {2, 3, 4})
    cluster.run_until(lambda: cluster.replicas[1].status is Status.NORMAL and cluster.replicas[1].view_number == 1)
    run(cluster, config.heartbeat_ticks)
    assert all(r.view_number == 1 and r.status is Status.NORMAL for r in cluster.replicas)
    assert set(sent(cluster, StartViewChangeProbe)) >= {2, 3, 4}
    cluster.request(client_id=1, request_number=1, to=1)
    run(cluster, config.heartbeat_ticks)
    assert all(r.commit_number == 1 for r in cluster.replicas)


def test_a_replica_behind_in_views_counts_and_the_view_moves_past_every_view_heard_of() -> None:
    """5 replicas. Replica 3's primary is silent; replica 4 says the same of view 0, replica 2 of view 2 (it is
    ahead). Three without a primary: replica 3 starts the view change to view 3, past both."""
    cluster = Cluster(5, config=steady_config(5))
    cluster.block(0, 3)
    cluster.time_out(3, joined_by=set())
    cluster.inject(3, probe(view=0, replica=4))
    assert cluster.replicas[3].status is Status.NORMAL, "two without a primary are not a quorum of five"
    cluster.inject(3, probe(view=2, replica=2))
    assert (cluster.replicas[3].status, cluster.replicas[3].view_number) == (Status.VIEW_CHANGE, 3)


# --- probes are counted only while they are fresh, and only by a replica whose primary is silent ------------


def test_a_probe_older_than_a_primary_timeout_does_not_count() -> None:
    """Replica 1 probed once, then heard its primary again. A primary timeout later replica 2 loses the primary:
    replica 1's old probe is no vote any more, so replica 2 stays in view 0. A fresh one would do."""
    config = steady_config(3)
    cluster = Cluster(3, config=config)
    cluster.inject(2, probe(view=0, replica=1))
    assert cluster.replicas[2].status is Status.NORMAL, "replica 2 still hears its primary: it only counts it"
    run(cluster, 2 * config.heartbeat_ticks)  # primary 0's heartbeats: replica 2's timeout starts again
    cluster.block(0, 2)
    cluster.time_out(2, joined_by=set())
    assert cluster.replicas[2].status is Status.NORMAL and cluster.replicas[2].view_number == 0
    cluster.inject(2, probe(view=0, replica=1))
    assert (cluster.replicas[2].status, cluster.replicas[2].view_number) == (Status.VIEW_CHANGE, 1)


def test_the_primary_and_a_replica_that_hears_its_primary_never_act_on_probes() -> None:
    cluster = Cluster(5, config=steady_config(5))
    for sender in (2, 3, 4):
        cluster.inject(0, probe(view=0, replica=sender))
        cluster.inject(1, probe(view=0, replica=sender))
    assert [(r.status, r.view_number) for r in cluster.replicas] == [(Status.NORMAL, 0)] * 5
    assert cluster.replicas[0].counters["on_start_view_change_probe: we are the primary"] == 3
    assert not cluster.queue, "no answer, no vote"


# --- a replica cut off during a view change waits in it --------------------------------------------------------


def test_a_replica_cut_off_in_a_view_change_does_not_climb_and_gets_start_view_when_it_returns() -> None:
    """Primary 0 is cut off; replicas 1 and 2 change to view 1, but replica 2 is cut off just before the
    StartView reaches it. Alone in its view change it does not try view 2, 3, ... (no quorum without a primary);
    healed, its re-sent StartViewChange gets the StartView of view 1 from replica 1. No higher view ever."""
    config = Config(replica_count=3)
    cluster = Cluster(3, config=config)
    cluster.partition({0}, {1, 2})
    start_view_to_2 = matching(StartView, to=2)
    while not (cluster.replicas[1].status is Status.NORMAL and cluster.replicas[1].view_number == 1):
        cluster.tick()
        cluster.drop(start_view_to_2)
        cluster.deliver_all(where=lambda item: not start_view_to_2(item))
        cluster.drop(start_view_to_2)
    assert (cluster.replicas[2].status, cluster.replicas[2].view_number) == (Status.VIEW_CHANGE, 1)
    cluster.partition({2}, {0, 1})
    run(cluster, 20 * config.view_change_timeout_ticks)
    assert (cluster.replicas[2].status, cluster.replicas[2].view_number) == (Status.VIEW_CHANGE, 1)
    assert cluster.replicas[2].counters["view change timeout: staying in this view"]
    cluster.heal()
    run(cluster, 2 * config.view_change_resend_ticks + config.heartbeat_ticks)
    assert [(r.status, r.view_number) for r in cluster.replicas] == [(Status.NORMAL, 1)] * 3
    assert max(item.message.view for item in cluster.sent) == 1


def test_a_backup_missing_start_view_and_backups_without_a_primary_still_move_on() -> None:
    """5 replicas; replicas 0 and 1 are gone. Replica 3 is in view change 1 (it missed view 1's StartView);
    replicas 2 and 4 are normal in view 1, whose primary (1) is gone. Replica 3's re-sent StartViewChange counts
    as one more without a primary for them, their probes count for it, and view 2 (primary 2) starts."""
    cluster = Cluster(5, config=Config(replica_count=5))
    cluster.partition({0, 1}, {2, 3, 4})
    cluster.inject(3, StartViewChange(**header(view=1, replica=1)))
    for backup in (2, 4):
        cluster.inject(backup, StartView(**header(view=1, replica=1), op_number=0, commit_number=0, log=()))
    cluster.queue.clear()
    assert [r.status for r in cluster.replicas[2:]] == [Status.NORMAL, Status.VIEW_CHANGE, Status.NORMAL]
    cluster.run_until(lambda: cluster.replicas[2].status is Status.NORMAL and cluster.replicas[2].view_number == 2)
    run(cluster, 1)
    assert [(r.status, r.view_number) for r in cluster.replicas[2:]] == [(Status.NORMAL, 2)] * 3


def test_a_stale_primary_joins_a_replica_of_a_newer_view_whose_primary_is_gone() -> None:
    """Primary 0 never heard of view 1; replica 2 is normal in view 1, whose primary (1) is gone. Replica 2's
    probes of view 1 tell replica 0 that its own view is over (a quorum left it), so replica 0 has no primary
    either: the two make a quorum and view 2 (primary 2) starts. (Found by `zvsr sim`: a recovering replica 1
    could never finish — the primary of the latest view was itself — and nothing moved.)"""
    cluster = Cluster(3, config=Config(replica_count=3))
    cluster.inject(2, StartView(**header(view=1, replica=1), op_number=0, commit_number=0, log=()))
    cluster.queue.clear()
    cluster.partition({1}, {0, 2})
    cluster.run_until(lambda: cluster.replicas[2].status is Status.NORMAL and cluster.replicas[2].view_number == 2)
    run(cluster, 1)
    replicas = (cluster.replicas[0], cluster.replicas[2])
    assert [(r.status, r.view_number) for r in replicas] == [(Status.NORMAL, 2)] * 2


# --- check-quorum: a primary that hears no quorum goes quiet ---------------------------------------------------


def test_a_primary_that_can_send_but_not_receive_goes_quiet_and_is_replaced() -> None:
    """Primary 0's inbound links are cut: its backups still hear its heartbeats, but no acknowledgement reaches
    it, so it can commit nothing. Having heard no quorum for PRIMARY_QUIET_AFTER_QUORUM_TIMEOUTS quorum timeouts
    it stops its heartbeats (check-quorum): its backups lose it, probe, and start view 1. Healed, replica 0
    follows view 1."""
    config = Config(replica_count=3)
    cluster = Cluster(3, config=config)
    cluster.block(1, 0)
    cluster.block(2, 0)
    quiet_after = PRIMARY_QUIET_AFTER_QUORUM_TIMEOUTS * config.quorum_timeout_ticks
    bound = quiet_after + config.primary_timeout_ticks + config.primary_timeout_jitter_ticks + 10
    ticks = 0
    while not all(r.status is Status.NORMAL and r.view_number == 1 for r in cluster.replicas[1:]):
        run(cluster, 1)
        ticks += 1
        assert ticks < bound, f"no view 1 within {bound} ticks"
    assert ticks > quiet_after, f"view 1 after {ticks} ticks, before primary 0 went quiet"
    assert cluster.replicas[0].counters["primary quiet: no quorum heard (ticks)"] > 0
    cluster.heal()
    run(cluster, 2 * config.heartbeat_ticks)
    assert [(r.status, r.view_number) for r in cluster.replicas] == [(Status.NORMAL, 1)] * 3


def test_a_primary_that_hears_a_quorum_keeps_its_heartbeats_whatever_one_backup_does() -> None:
    """Replica 2's acknowledgements are lost; replica 1's are not: primary 0 still hears a quorum and leads."""
    config = Config(replica_count=3)
    cluster = Cluster(3, config=config)
    cluster.block(2, 0)
    run(cluster, 20 * config.quorum_timeout_ticks)
    assert [(r.status, r.view_number) for r in cluster.replicas] == [(Status.NORMAL, 0)] * 3
    assert "primary quiet: no quorum heard (ticks)" not in cluster.replicas[0].counters


def test_a_probe_of_an_older_view_is_not_counted() -> None:
    """Replica 2 has moved on to view 1, whose primary (1) it does not hear yet — after a heal connections come
    back one by one. A probe of view 0 arriving now (replica 0's, from when it lost view 0's primary, queued
    towards replica 2 during the partition) is about a view replica 2 has left: it must not make a quorum for a
    view change nobody needs (found by `zvsr chaos`: healing an isolated primary caused one view change in about
    four). A probe of view 1 does count. (A replica behind in views still joins: it counts the newer probes.)"""
    cluster = Cluster(3, config=steady_config(3))
    cluster.inject(2, StartView(**header(view=1, replica=1), op_number=0, commit_number=0, log=()))
    cluster.queue.clear()
    cluster.block(1, 2)
    cluster.time_out(2, joined_by=set())
    backup = cluster.replicas[2]
    cluster.inject(2, probe(view=0, replica=0))
    assert (backup.status, backup.view_number) == (Status.NORMAL, 1)
    assert backup.counters["on_start_view_change_probe: older view"] == 1
    cluster.inject(2, probe(view=1, replica=0))
    assert (backup.status, backup.view_number) == (Status.VIEW_CHANGE, 2)


def test_a_returning_primary_handed_a_backlog_of_stale_votes_neither_climbs_nor_drags_the_majority() -> None:
    """5 replicas. Primary 0 is cut off; replicas 1-4 change to view 1 (primary 1). Healed, replica 0 first gets
    what was queued for it during the cut, as TCP delivers a cut connection's backlog: replica 2's StartViewChange
    of view 1 at once (it joins view 1's view change), replicas 3's and 4's a moment before its view-change
    timeout, each sent once, long ago. Replica 1's StartView and heartbeats are late (its connection to 0 still in
    back-off). Replica 0 does not give up on view 1 for view 2 — the votes were said once, not kept up — and once
    replica 1 gets through it is normal in view 1. No message of view 2 is ever sent. (`zvsr chaos`: healing an
    isolated primary of 5 moved the majority's view, after the returning replica counted such a backlog.)"""
    config = Config(replica_count=5)
    cluster = Cluster(5, config=config)
    cluster.partition({0}, {1, 2, 3, 4})
    cluster.run_until(lambda: all((r.status, r.view_number) == (Status.NORMAL, 1) for r in cluster.replicas[1:]))
    cluster.heal()
    replica = cluster.replicas[0]
    cluster.inject(0, StartViewChange(**header(view=1, replica=2)))
    assert (replica.status, replica.view_number) == (Status.VIEW_CHANGE, 1)
    from_1_to_0 = matching(source=1, to=0)
    timer = replica.timers.view_change

    def step() -> None:
        cluster.tick()
        cluster.drop(from_1_to_0)
        cluster.deliver_all(where=lambda item: not from_1_to_0(item))
        cluster.drop(from_1_to_0)

    while timer.elapsed < timer.after - 2:
        step()
    for late in (3, 4):
        cluster.inject(0, StartViewChange(**header(view=1, replica=late)))
    for _ in range(4 * config.view_change_timeout_ticks):
        step()
    assert (replica.status, replica.view_number) == (Status.VIEW_CHANGE, 1)
    assert replica.counters["view change timeout: staying in this view"]
    run(cluster, 2 * config.view_change_timeout_max_ticks)
    assert [(r.status, r.view_number) for r in cluster.replicas] == [(Status.NORMAL, 1)] * 5
    assert max(item.message.view for item in cluster.sent) == 1
