"""View change (§4.2, ARCHITECTURE rules 5, 6, 11), as scenarios: suspicion, StartViewChange from f others,
DoViewChange to the new primary, the quorum counting the new primary itself, log selection, StartView,
re-sending on timers, escalation to the next view, and what late or stale replicas get."""

from __future__ import annotations

from scenarios import (
    counted,
    entry,
    header,
    operations,
    steady_config,
    view_change_to_one,
    view_one_learns_commit_from_replica_3,
)

from zvsr.constants import PREPARE_RESEND_BACKOFF_MAX, VIEW_CHANGE_COMMITTED_OPS_MAX
from zvsr.protocol.messages import (
    Commit,
    DoViewChange,
    LogEntry,
    Prepare,
    PrepareOk,
    Reply,
    StartView,
    StartViewChange,
    StartViewChangeProbe,
)
from zvsr.protocol.replica import Status
from zvsr.sim.harness import Cluster, matching


def do_view_change(
    *,
    view: int,
    sender: int,
    log: tuple[LogEntry, ...] = (),
    last_normal_view: int = 0,
    commit_number: int = 0,
) -> DoViewChange:
    return DoViewChange(
        **header(view=view, replica=sender),
        last_normal_view=last_normal_view,
        op_number=len(log),
        commit_number=commit_number,
        log=log,
    )


# --- the whole round ----------------------------------------------------------------------------------------


def test_backups_replace_a_silent_primary_and_the_new_primary_takes_over() -> None:
    """Replica 0 is cut off. A backup's primary timeout fires; StartViewChange, DoViewChange and StartView
    follow; replica 1 (view 1 mod 3) is primary, replica 2 its backup, both normal in view 1."""
    cluster = Cluster(3)  # default jitter: which backup suspects first does not matter
    cluster.partition({0}, {1, 2})
    cluster.run_until(lambda: all(r.status is Status.NORMAL and r.view_number == 1 for r in cluster.replicas[1:]))
    kinds = [type(item.message) for item in cluster.sent if item.source != 0]
    assert StartViewChange in kinds and DoViewChange in kinds and StartView in kinds
    assert [item.to for item in cluster.sent if isinstance(item.message, DoViewChange)] == [1]
    for replica in cluster.replicas[1:]:
        assert replica.last_normal_view == 1 and replica.primary_index() == 1
    cluster.request(client_id=1, request_number=1, to=1)
    cluster.deliver_all()
    assert cluster.replicas[1].commit_number == 1
    assert [r.view for r in cluster.replies if isinstance(r, Reply)] == [1]


def test_do_view_change_only_after_start_view_change_from_f_others() -> None:
    """5 replicas (f = 2). Replica 2 joins view 1 on replica 1's StartViewChange; a duplicate of it does not
    count twice; replica 3's makes f others, and replica 2 sends its DoViewChange to replica 1 only."""
    cluster = Cluster(5)
    backup = cluster.replicas[2]
    cluster.inject(2, StartViewChange(**header(view=1, replica=1)))
    assert backup.status is Status.VIEW_CHANGE and backup.view_number == 1
    assert sorted(item.to for item in cluster.queued(StartViewChange, source=2)) == [0, 1, 3, 4]
    cluster.inject(2, StartViewChange(**header(view=1, replica=1)))
    assert not cluster.queued(DoViewChange)
    cluster.inject(2, StartViewChange(**header(view=1, replica=3)))
    dvcs = cluster.queued(DoViewChange, source=2)
    assert [item.to for item in dvcs] == [1]
    assert dvcs[0].message == do_view_change(view=1, sender=2)
    cluster.inject(2, StartViewChange(**header(view=1, replica=4)))
    assert len(cluster.queued(DoViewChange, source=2)) == 1, "DoViewChange is sent once (re-sent on a timer)"


def test_new_primary_needs_quorum_including_itself_and_counts_each_sender_once() -> None:
    cluster = Cluster(5)
    primary = cluster.replicas[1]
    cluster.inject(1, StartViewChange(**header(view=1, replica=2)))
    assert primary.status is Status.VIEW_CHANGE and 1 in primary.votes.do_view_change_from
    cluster.inject(1, do_view_change(view=1, sender=2))
    cluster.inject(1, do_view_change(view=1, sender=2))
    assert primary.status is Status.VIEW_CHANGE, "two DoViewChange from one replica are one vote"
    cluster.inject(1, do_view_change(view=1, sender=3))
    assert primary.status is Status.NORMAL and primary.view_number == 1
    assert sorted(item.to for item in cluster.queued(StartView, source=1)) == [0, 2, 3, 4]


def test_do_view_change_of_a_newer_view_makes_its_primary_join_and_count_it() -> None:
    """Replica 1, normal in view 0, gets replica 2's DoViewChange for view 1: it moves to view 1 with its own
    vote, counts replica 2's, and in a 3-cluster that is a quorum."""
    cluster = Cluster(3)
    cluster.inject(1, do_view_change(view=1, sender=2))
    primary = cluster.replicas[1]
    assert primary.status is Status.NORMAL and primary.view_number == 1 and primary.is_primary()


def test_do_view_change_to_a_replica_that_is_not_the_views_primary_is_ignored() -> None:
    cluster = Cluster(3)
    cluster.inject(2, do_view_change(view=1, sender=0))
    assert cluster.replicas[2].status is Status.NORMAL and cluster.replicas[2].view_number == 0
    assert counted(cluster.replicas[2], "on_do_view_change", "not the primary") == 1


def test_votes_of_older_views_are_ignored() -> None:
    cluster = Cluster(3)
    cluster.inject(1, StartViewChange(**header(view=3, replica=2)))
    cluster.queue.clear()
    cluster.inject(1, StartViewChange(**header(view=2, replica=2)))
    cluster.inject(1, do_view_change(view=1, sender=2))
    assert cluster.replicas[1].view_number == 3 and not cluster.queue
    assert cluster.replicas[1].counters["on_start_view_change: older view"] == 1


def test_a_replica_far_behind_jumps_to_the_view_it_hears_of() -> None:
    cluster = Cluster(3)
    cluster.inject(2, StartViewChange(**header(view=5, replica=1)))
    assert cluster.replicas[2].view_number == 5 and cluster.replicas[2].status is Status.VIEW_CHANGE


# --- log selection ------------------------------------------------------------------------------------------


def test_new_primarys_own_log_wins_when_it_is_the_best() -> None:
    """Replica 1's own log has the newest last_normal_view: it keeps it, whatever the others send."""
    cluster = Cluster(3, config=steady_config(3))
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    cluster.deliver_all()
    primary = cluster.replicas[1]
    assert operations(primary.log) == [b"a"]
    cluster.inject(1, StartViewChange(**header(view=4, replica=2)))  # view 4: primary is replica 1
    longer = tuple(entry(n, b"old", view=0) for n in (1, 2, 3))
    cluster.inject(1, do_view_change(view=4, sender=2, log=longer, last_normal_view=0))
    assert primary.status is Status.NORMAL
    assert operations(primary.log) == [b"old", b"old", b"old"], "same last_normal_view: the longer log wins"


def test_commit_number_is_the_largest_reported_even_from_a_shorter_log() -> None:
    cluster = Cluster(3, config=steady_config(3))
    log = (entry(1, b"a"), entry(2, b"b"))
    cluster.inject(1, StartViewChange(**header(view=1, replica=2)))
    cluster.queue.clear()
    primary = cluster.replicas[1]
    cluster.inject(1, do_view_change(view=1, sender=2, log=log, commit_number=1))
    assert operations(primary.log) == [b"a", b"b"] and primary.commit_number == 1
    assert cluster.apps[1].applied == [b"a"]


# --- StartView: install, execute, acknowledge ---------------------------------------------------------------


def test_start_view_installs_the_log_and_backups_acknowledge_uncommitted_ops_which_then_commit() -> None:
    """Primary 0 prepared A and B at both backups, but no acknowledgement arrived. In view 1 they are
    uncommitted: replica 2 acknowledges them on StartView, the new primary commits them and answers their
    clients in view 1."""
    cluster = Cluster(3, config=steady_config(3))
    cluster.request(client_id=1, request_number=1, op=b"A", to=0)
    cluster.request(client_id=2, request_number=1, op=b"B", to=0)
    cluster.deliver(matching(Prepare))
    cluster.drop(matching(PrepareOk))
    cluster.partition({0}, {1, 2})
    cluster.time_out(1, joined_by={2})  # both backups lost primary 0: replica 2's probe makes the quorum
    cluster.deliver(matching((StartViewChange, DoViewChange)))
    cluster.deliver(matching(StartViewChange))
    cluster.deliver(matching(DoViewChange))
    assert cluster.replicas[1].status is Status.NORMAL and cluster.replicas[1].commit_number == 0
    cluster.deliver(matching(StartView, to=2))
    backup = cluster.replicas[2]
    assert backup.status is Status.NORMAL and backup.view_number == 1 and operations(backup.log) == [b"A", b"B"]
    assert [(i.to, i.message.view, i.message.op_number) for i in cluster.queued(PrepareOk, source=2)] == [
        (1, 1, 2)
    ]
    cluster.deliver_all()
    assert cluster.replicas[1].commit_number == 2
    assert [(r.view, r.client_id) for r in cluster.replies if isinstance(r, Reply)] == [(1, 1), (1, 2)]
    cluster.check_applied()


def test_re_sent_start_view_to_an_installed_backup_only_repeats_its_acknowledgement() -> None:
    cluster = Cluster(3, config=steady_config(3))
    view_change_to_one(cluster, without={0})
    cluster.deliver_all()
    cluster.request(client_id=1, request_number=1, op=b"x", to=1)
    cluster.deliver_all()
    start_view = next(i.message for i in cluster.sent if isinstance(i.message, StartView) and i.to == 2)
    backup = cluster.replicas[2]
    cluster.inject(2, start_view)  # older content than what replica 2 holds now: never go back
    assert operations(backup.log) == [b"x"]
    assert [item.message.op_number for item in cluster.queued(PrepareOk, source=2)] == [1]
    assert counted(backup, "on_start_view", "already") == 1


def test_start_view_of_an_older_view_is_ignored() -> None:
    cluster = Cluster(3)
    cluster.inject(2, StartViewChange(**header(view=4, replica=1)))
    cluster.inject(2, StartView(**header(view=1, replica=1), op_number=0, commit_number=0, log=()))
    assert cluster.replicas[2].view_number == 4 and cluster.replicas[2].status is Status.VIEW_CHANGE


def test_primary_answers_a_late_start_view_change_or_do_view_change_with_start_view() -> None:
    """View 1 started without replica 2. When replica 1's StartViewChange reaches replica 2 late, replica 2 joins
    and asks for view 1; primary 1 answers with StartView (whose DoViewChange or StartViewChange it may have
    missed)."""
    config = steady_config(3)
    cluster = Cluster(3, config=config)
    view_change_to_one(cluster, without={2})
    cluster.inject(2, StartViewChange(**header(view=1, replica=1)))
    assert cluster.replicas[2].view_number == 1
    cluster.deliver(matching(StartViewChange, source=2, to=1))
    assert [item.to for item in cluster.queued(StartView, source=1)] == [2]
    cluster.deliver(matching(StartView, to=2))
    assert cluster.replicas[2].status is Status.NORMAL and cluster.replicas[2].view_number == 1
    cluster.tick(config.view_change_timeout_ticks, only={1})  # answered at most once per view-change timeout
    cluster.inject(1, do_view_change(view=1, sender=2))
    assert [item.to for item in cluster.queued(StartView, source=1)] == [2]


def test_start_view_carries_the_largest_commit_number() -> None:
    """The new primary learned from replica 3's DoViewChange that ops 1-2 are committed; the StartView it
    broadcasts must say so (k = max), so that backups execute them now (§4.2 step 5)."""
    cluster = view_one_learns_commit_from_replica_3()
    start_views = [item.message for item in cluster.sent if isinstance(item.message, StartView)]
    assert start_views and all(m.commit_number == 2 for m in start_views), [m.commit_number for m in start_views]
    assert cluster.replicas[2].commit_number == 2


# --- accounting and timers ----------------------------------------------------------------------------------


def test_prepare_ok_accounting_is_cleared_on_every_view_change() -> None:
    cluster = Cluster(3)
    cluster.request(client_id=1, request_number=1, to=0)
    cluster.deliver_all()
    primary = cluster.replicas[0]
    assert primary.pipeline.prepare_ok == {1: 1, 2: 1}
    cluster.inject(0, StartViewChange(**header(view=1, replica=1)))
    assert primary.pipeline.prepare_ok == {} and primary.pipeline.view == 1


def test_view_change_votes_are_resent_on_a_timer() -> None:
    """All first-round votes are lost. The resend timer sends StartViewChange (and, once sent, DoViewChange)
    again, and the view change completes."""
    config = steady_config(3)
    cluster = Cluster(3, config=config)
    cluster.partition({0}, {1, 2})
    cluster.time_out(2, joined_by={1})
    cluster.drop(matching(StartViewChange, source=2))  # lost
    cluster.tick(config.view_change_resend_ticks, only={2})
    assert [item.to for item in cluster.queued(StartViewChange, source=2) if item.to == 1] == [1]
    cluster.deliver(matching(StartViewChange, to=1))  # replica 1 joins, votes, and replica 2 now has f others
    cluster.deliver(matching(StartViewChange, to=2))
    cluster.drop(matching(DoViewChange))  # lost
    assert cluster.replicas[1].status is Status.VIEW_CHANGE
    # DoViewChange, the big vote, goes again when the view-change timeout passes without a new view.
    ticks_max = config.view_change_timeout_ticks + config.view_change_resend_ticks
    cluster.tick_until(2, lambda: bool(cluster.queued(DoViewChange, source=2)), ticks_max=ticks_max)
    assert [item.to for item in cluster.queued(DoViewChange, source=2)] == [1]
    cluster.deliver_all()
    assert [(r.status, r.view_number) for r in cluster.replicas[1:]] == [(Status.NORMAL, 1)] * 2


def test_view_change_escalates_to_the_next_view_with_backoff_when_the_new_primary_stays_silent() -> None:
    """5 replicas; replicas 0 and 1 are down, so view 1 (primary 1) can never start. The others give up on it
    after view_change_timeout_ticks and start view 2, whose primary is replica 2, which succeeds."""
    config = steady_config(5)
    cluster = Cluster(5, config=config)
    cluster.partition({0, 1}, {2, 3, 4})
    views: dict[int, int] = {}  # view -> tick at which replica 3 entered it
    for now in range(1, 400):
        cluster.tick(only={2, 3, 4})
        cluster.deliver_all()
        views.setdefault(cluster.replicas[3].view_number, now)
        if cluster.replicas[3].view_number == 2 and cluster.replicas[3].status is Status.NORMAL:
            break
    assert cluster.replicas[2].is_primary() and cluster.replicas[2].status is Status.NORMAL
    assert views[2] - views[1] >= config.view_change_timeout_ticks
    assert cluster.replicas[2].view_number == 2


def test_escalation_backs_off() -> None:
    """7 replicas; 0, 1 and 2 are down, so views 1 and 2 never start. The four others — a quorum without a
    primary — give up on each after a timeout that grows, and view 3 (primary 3) starts."""
    config = steady_config(7)
    cluster = Cluster(7, config=config)
    cluster.partition({0, 1, 2}, {3, 4, 5, 6})
    entered: dict[int, int] = {}
    for now in range(1, 2000):
        cluster.tick(only={3, 4, 5, 6})
        cluster.deliver_all()
        entered.setdefault(cluster.replicas[4].view_number, now)
        if cluster.replicas[3].status is Status.NORMAL and cluster.replicas[3].view_number == 3:
            break
    assert sorted(entered) == [0, 1, 2, 3]
    gaps = [entered[2] - entered[1], entered[3] - entered[2]]
    assert gaps[0] >= config.view_change_timeout_ticks
    assert gaps[1] > gaps[0], f"no backoff: {gaps}"


def test_without_a_quorum_a_view_change_waits_instead_of_climbing() -> None:
    """3 of 5 down: the two others cannot make a quorum of probes, so they never leave view 0; put in a view
    change by a StartViewChange, they stay in that view (re-sending their votes) rather than try view after
    view."""
    config = steady_config(5)
    cluster = Cluster(5, config=config)
    cluster.partition({0, 1, 2}, {3, 4})
    for _ in range(400):
        cluster.tick(only={3, 4})
        cluster.deliver_all()
    assert [(r.status, r.view_number) for r in cluster.replicas[3:]] == [(Status.NORMAL, 0)] * 2
    cluster.inject(3, StartViewChange(**header(view=1, replica=4)))
    for _ in range(20 * config.view_change_timeout_ticks):
        cluster.tick(only={3, 4})
        cluster.deliver_all()
    assert [(r.status, r.view_number) for r in cluster.replicas[3:]] == [(Status.VIEW_CHANGE, 1)] * 2


def test_new_primary_sends_heartbeats_and_backups_stay_quiet() -> None:
    config = steady_config(3)
    cluster = Cluster(3, config=config)
    view_change_to_one(cluster, without={0})
    cluster.tick(config.heartbeat_ticks, only={1})
    assert sorted(item.to for item in cluster.queued(Commit, source=1)) == [0, 2]


def test_a_brand_new_backup_gives_the_primary_of_view_0_the_startup_grace_once() -> None:
    """A new cluster: replica 1 starts, the primary of view 0 has not started yet. Replica 1 waits the startup
    grace on top of its primary timeout before it suspects anyone; once it has heard from the primary, a
    silence is suspected after the plain timeout again."""
    grace, timeout = 50, 20
    cluster = Cluster(3, config=steady_config(3, startup_grace_ticks=grace, primary_timeout_ticks=timeout))
    backup = cluster.replicas[1]
    waited = cluster.tick_until(1, backup.timers.primary.fired)
    assert waited == timeout + grace
    assert [item.to for item in cluster.queued(StartViewChangeProbe, source=1)] == [0, 2]
    # The same replica restarted from its disk gets no grace: it is not a cluster starting up.
    restarted = Cluster(3, config=steady_config(3, startup_grace_ticks=grace, primary_timeout_ticks=timeout))
    restarted.crash_and_restart_from_disk(1, restarted.durable_state(1))
    assert restarted.tick_until(1, restarted.replicas[1].timers.primary.fired) == timeout


def test_the_startup_grace_lasts_one_period_a_heartbeat_resets_to_the_plain_primary_timeout() -> None:
    grace, timeout = 50, 20
    cluster = Cluster(3, config=steady_config(3, startup_grace_ticks=grace, primary_timeout_ticks=timeout))
    cluster.tick(5, only={0})  # the primary's heartbeats go out
    cluster.deliver_all()
    backup = cluster.replicas[1]
    assert cluster.tick_until(1, backup.timers.primary.fired) == timeout


# --- the size of view-change messages --------------------------------------------------------------------------


def test_view_change_messages_carry_the_uncommitted_ops_and_a_bounded_committed_suffix() -> None:
    """No snapshots: every replica keeps its whole log of 300 committed ops (+ 2 prepared, uncommitted).
    Replica 0 is cut off. The DoViewChange and the StartView carry the 2 uncommitted ops and the last
    VIEW_CHANGE_COMMITTED_OPS_MAX committed ones, not the 302 entries of the log: a view change's size does
    not grow with history (what a slow link can carry in a timeout). Replica 1 starts view 1 and commits
    the 2; replica 2 installs it and applies the same."""
    config = steady_config(3, snapshot_interval_ops=0)
    cluster = Cluster(3, config=config)
    for number in range(1, 301):
        cluster.request(client_id=number, request_number=1, op=b"%d" % number, to=0)
    cluster.deliver_all()
    cluster.tick(config.heartbeat_ticks, only={0})
    cluster.deliver_all()
    for number in (301, 302):
        cluster.request(client_id=number, request_number=1, op=b"u%d" % number, to=0)
    cluster.deliver(matching(Prepare))
    cluster.drop(matching(PrepareOk))
    assert [(r.op_number, r.commit_number) for r in cluster.replicas] == [(302, 300)] * 3
    cluster.partition({0}, {1, 2})
    view_change_to_one(cluster, without={0})
    cluster.deliver_all()
    cluster.tick(config.heartbeat_ticks, only={1})  # replica 2 learns the new commit_number
    cluster.deliver_all()
    kept = VIEW_CHANGE_COMMITTED_OPS_MAX + 2
    logs = [item.message.log for item in cluster.sent if isinstance(item.message, (DoViewChange, StartView))]
    assert logs and all(len(log) == kept and log[-1].op_number == 302 for log in logs), [len(log) for log in logs]
    states = [(r.status, r.view_number, r.commit_number) for r in cluster.replicas[1:]]
    assert states == [(Status.NORMAL, 1, 302)] * 2
    assert operations(cluster.replicas[2].log[-2:]) == [b"u301", b"u302"]
    cluster.check_applied()


def test_a_backup_behind_the_start_views_suffix_fetches_the_rest_by_state_transfer() -> None:
    """Replica 2 was cut off while 302 ops committed; then replica 0 is cut off and replicas 1 and 2 start view 1.
    The StartView's log starts VIEW_CHANGE_COMMITTED_OPS_MAX ops before op 302, past replica 2's commit_number 0:
    it adopts the view and fetches the log by state transfer, then holds and has applied all 302 ops."""
    config = steady_config(3, snapshot_interval_ops=0)
    cluster = Cluster(3, config=config)
    cluster.partition({2}, {0, 1})
    for number in range(1, 303):
        cluster.request(client_id=number, request_number=1, op=b"%d" % number, to=0)
    cluster.deliver_all()
    cluster.tick(config.heartbeat_ticks, only={0})  # replica 1 learns that all 302 are committed
    cluster.deliver_all()
    cluster.heal()
    cluster.partition({0}, {1, 2})
    view_change_to_one(cluster, without={0})
    cluster.deliver_all()
    start_view = next(item.message for item in cluster.sent if isinstance(item.message, StartView))
    assert start_view.log[0].op_number == 302 - VIEW_CHANGE_COMMITTED_OPS_MAX + 1
    backup = cluster.replicas[2]
    assert backup.counters["state transfer started"] == 1
    assert (backup.status, backup.view_number, backup.commit_number) == (Status.NORMAL, 1, 302)
    cluster.check_applied()


# --- re-sending without burying a slow link ---------------------------------------------------------------------


def sends_at(cluster: Cluster, kind: type, source: int, ticks: int) -> list[int]:
    """Tick replica `source` alone `ticks` times, delivering nothing; the ticks at which it sent `kind`."""
    at = []
    for now in range(1, ticks + 1):
        before = len(cluster.queued(kind, source=source))
        cluster.tick(only={source})
        if len(cluster.queued(kind, source=source)) > before:
            at.append(now)
    return at


def test_start_view_change_goes_every_period_and_do_view_change_less_and_less_often() -> None:
    """Replica 2 voted for view 1 (with replica 1's StartViewChange, a quorum of 3) and sent its DoViewChange,
    then was cut off. Its StartViewChange (a few dozen bytes) goes again every VIEW_CHANGE_RESEND_TICKS; its
    DoViewChange, which carries its log's suffix, only when the view-change timeout passes without a new view,
    and that timeout backs off: over a slow link copies of it would queue behind it (issue 17's storm)."""
    config = steady_config(3)
    ticks = 20 * config.view_change_timeout_ticks
    at = {}
    for kind in (StartViewChange, DoViewChange):
        cluster = Cluster(3, config=config)
        cluster.partition({2}, {0, 1})
        cluster.inject(2, StartViewChange(**header(view=1, replica=1)))
        assert cluster.queued(DoViewChange, source=2)
        cluster.queue.clear()
        at[kind] = sends_at(cluster, kind, 2, ticks)
        assert cluster.replicas[2].view_number == 1, "alone, it never tried another view"
    assert at[StartViewChange][:3] == [config.view_change_resend_ticks * n for n in (1, 2, 3)]
    dvc_at = at[DoViewChange]
    gaps = [later - earlier for earlier, later in zip(dvc_at, dvc_at[1:], strict=False)]
    assert dvc_at[0] == config.view_change_timeout_ticks
    assert gaps[0] >= 2 * config.view_change_timeout_ticks and gaps[1] >= 4 * config.view_change_timeout_ticks
    assert max(gaps) <= config.view_change_timeout_max_ticks + config.view_change_timeout_ticks


def test_a_replica_that_keeps_asking_for_view_1_gets_start_view_at_most_once_per_view_change_timeout() -> None:
    """View 1 started without replica 2, which then votes for view 1 again and again (its StartView is lost each
    time). Primary 1 answers with StartView — the view's log suffix, the biggest message of a view change — at
    most once per view-change timeout, however often it is asked."""
    config = steady_config(3)
    cluster = Cluster(3, config=config)
    view_change_to_one(cluster, without={2})
    for _ in range(3 * config.view_change_timeout_ticks):
        cluster.inject(1, StartViewChange(**header(view=1, replica=2)))
        cluster.tick(only={1})
    answers = [item for item in cluster.queued(StartView, source=1) if item.to == 2]
    assert len(answers) == 3
    assert counted(cluster.replicas[1], "start view", "answered") == 3 * config.view_change_timeout_ticks - 3


def test_prepares_are_re_sent_less_and_less_often_to_a_backup_that_does_not_acknowledge() -> None:
    """Replica 2 holds ops 1-2 but its acknowledgements do not arrive (primary 0 last heard op 0 from it).
    Primary 0 re-sends the missing prepares after PREPARE_RESEND_TICKS without progress, then with doubling gaps
    up to PREPARE_RESEND_BACKOFF_MAX times that — on a slow link each re-send queues behind the last."""
    config = steady_config(3)
    cluster = Cluster(3, config=config)
    cluster.block(2, 0)
    cluster.request(client_id=1, request_number=1, to=0)
    cluster.deliver_all()
    cluster.inject(0, PrepareOk(**header(view=0, replica=2), op_number=0))
    cluster.request(client_id=2, request_number=1, to=0)
    cluster.deliver_all()
    sent_at = []
    initial = len(cluster.sent)
    for now in range(1, 3000):
        before = len(cluster.sent)
        cluster.tick()
        if any(isinstance(i.message, Prepare) and i.to == 2 for i in cluster.sent[before:]):
            sent_at.append(now)
        cluster.deliver_all()
    gaps = [later - earlier for earlier, later in zip(sent_at, sent_at[1:], strict=False)]
    resend = config.prepare_resend_ticks
    assert gaps[:3] == [2 * resend, 4 * resend, 8 * resend], gaps
    assert max(gaps) == PREPARE_RESEND_BACKOFF_MAX * resend
    resent = [i.message for i in cluster.sent[initial:] if isinstance(i.message, Prepare) and i.to == 2]
    assert [(p.entries[0].op_number, p.op_number) for p in resent] == [(1, 2)] * len(sent_at)
