"""Protocol scenarios shared by the test modules — a helpers module, not a test module (STYLE rule 15).

Builders (configs, log entries, message headers, a view change to replica 1, ...) and scenario functions.
Each scenario is a plain function that raises AssertionError when the rule it pins is broken: a test module
runs it as a test (`test_protocol_rules.py` for the seed review's flaws S1-S14 and the paper's holes,
`test_protocol_client.py`, `test_protocol_state_transfer.py`, `test_protocol_sessions.py`), and
`test_mutations.py` runs the same function with the flaw re-introduced into the core and checks that it fails.
The section headings keep the seed review's numbers (S1-S14, as the review lists them). Scenarios are built by
hand with `zvsr.sim.harness.Cluster`: messages move only when the scenario says so.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import typing

from zvsr.protocol import messages
from zvsr.protocol.client_table import REGISTER_REQUEST_NUMBER, parse_register_result
from zvsr.protocol.config import Config
from zvsr.protocol.messages import (
    ERROR_SESSION_EXPIRED,
    Commit,
    DoViewChange,
    Error,
    GetState,
    LogEntry,
    NewState,
    Prepare,
    PrepareOk,
    Reply,
    StartView,
    StartViewChange,
    StartViewChangeProbe,
)
from zvsr.protocol.replica import Replica, Status
from zvsr.sim.harness import Cluster, InFlight, matching

# --- helpers ------------------------------------------------------------------------------------------------


def steady_config(replica_count: int, **overrides: int) -> Config:
    """Default bounds, but no jitter on the primary timeout, so a scenario can count ticks exactly."""
    return Config(replica_count=replica_count, primary_timeout_jitter_ticks=0, **overrides)


def entry(op_number: int, operation: bytes, *, view: int = 0, client_id: int = 9) -> LogEntry:
    return LogEntry(
        view=view,
        op_number=op_number,
        client_id=client_id,
        request_number=op_number,
        operation=operation,
        timestamp=op_number,
    )


def header(*, view: int, replica: int) -> dict[str, int]:
    return {"cluster": 0, "epoch": 0, "view": view, "replica": replica}


def operations(log: list[LogEntry] | tuple[LogEntry, ...]) -> list[bytes]:
    return [e.operation for e in log]


def commit_in_view_zero(cluster: Cluster, *ops: bytes) -> None:
    """The primary of view 0 commits `ops` (one client each) and every backup learns of it by heartbeat."""
    primary = cluster.replicas[0]
    for number, op in enumerate(ops, start=1):
        cluster.request(client_id=100 + number, request_number=1, op=op, to=0)
    cluster.deliver_all()
    cluster.tick(primary.config.heartbeat_ticks, only={0})
    cluster.deliver_all()
    assert all(r.commit_number == primary.op_number for r in cluster.replicas)


def view_change_to_one(cluster: Cluster, *, without: set[int]) -> None:
    """Replica 1 times out on the primary of view 0 — so did enough other backups, whose probes make its quorum
    (pre-vote) — and starts view 1 with every replica not in `without` (those get nothing from then on: their
    messages are dropped)."""

    def excluded(item: InFlight) -> bool:
        return item.to in without or item.source in without

    cluster.drop(excluded)
    cluster.time_out(1, joined_by=also_without_primary(cluster, 1))
    assert cluster.replicas[1].view_number == 1
    for _ in range(20):
        cluster.drop(excluded)
        if not cluster.deliver(lambda item: not excluded(item)):
            break
    cluster.drop(excluded)
    assert cluster.replicas[1].status is Status.NORMAL and cluster.replicas[1].view_number == 1


def also_without_primary(cluster: Cluster, index: int) -> set[int]:
    """Backups other than `index` that lost the primary too, just enough for a quorum with it (pre-vote)."""
    replica = cluster.replicas[index]
    others = [i for i in range(replica.config.replica_count) if i not in (index, replica.primary_index())]
    return set(others[: replica.config.quorum - 1])


def counted(replica: Replica, handler: str, *words: str) -> int:
    """How often `handler` dropped a message for a reason mentioning every one of `words` (replica.counters)."""
    return sum(
        count
        for reason, count in replica.counters.items()
        if reason.startswith(f"{handler}:") and all(word in reason for word in words)
    )


def acknowledged(cluster: Cluster, client_id: int, request_number: int) -> Reply:
    for reply in cluster.replies:
        if isinstance(reply, Reply) and reply.client_id == client_id and reply.request_number == request_number:
            return reply
    raise AssertionError(f"no reply for client {client_id} request {request_number}")


# --- S1: PrepareOk goes to primary(prepare.view), the sender ------------------------------------------------


def prepare_ok_goes_to_the_sender() -> None:
    """Replica 2 misses the view change to view 1 (primary 1). Replica 0 is then cut off, so op 1 of view 1 can
    only commit with replica 2's PrepareOk: replica 2 must send it to replica 1, in view 1 — never to the primary
    of the view it still believed in."""
    cluster = Cluster(3, config=steady_config(3))
    view_change_to_one(cluster, without={2})
    cluster.partition({0}, {1, 2})
    mark = len(cluster.sent)
    cluster.request(client_id=1, request_number=1, op=b"B", to=1)
    cluster.deliver_all()
    oks = [item for item in cluster.sent[mark:] if isinstance(item.message, PrepareOk) and item.source == 2]
    assert oks, "replica 2 never acknowledged"
    for item in oks:
        assert item.to == 1 and item.message.view == 1, f"PrepareOk to r{item.to} in view {item.message.view}"
    assert cluster.replicas[1].commit_number == 1
    assert acknowledged(cluster, 1, 1).view == 1


# --- S2: heartbeats carry a view; only the current primary's resets the timer -------------------------------


def stale_heartbeats_do_not_reset_the_primary_timeout() -> None:
    """View 1 (primary 1) is running; replica 2 is its backup. The old primary 0 still sends Commit heartbeats of
    view 0, and replica 0 also claims view 1 in a Commit: neither may keep replica 2 from suspecting replica 1."""
    timeout = steady_config(3).primary_timeout_ticks
    for stale in (
        Commit(**header(view=0, replica=0), commit_number=0, op_number=0),  # older view
        Commit(**header(view=1, replica=0), commit_number=0, op_number=0),  # not the primary of view 1
    ):
        cluster = Cluster(3, config=steady_config(3))
        view_change_to_one(cluster, without={0})
        cluster.deliver_all()
        backup = cluster.replicas[2]
        assert backup.view_number == 1 and backup.status is Status.NORMAL
        cluster.tick(timeout - 1, only={2})
        cluster.inject(2, stale)
        cluster.tick(1, only={2})
        assert backup.timers.primary.fired(), f"{stale} reset the timer"
        assert cluster.queued(StartViewChangeProbe, source=2), "replica 2 suspects replica 1: it probes"
    # Control: the real primary's heartbeat does reset it.
    cluster = Cluster(3, config=steady_config(3))
    view_change_to_one(cluster, without={0})
    cluster.deliver_all()
    cluster.tick(timeout - 1, only={2})
    cluster.inject(2, Commit(**header(view=1, replica=1), commit_number=0, op_number=0))
    cluster.tick(timeout - 1, only={2})
    assert cluster.replicas[2].view_number == 1 and cluster.replicas[2].status is Status.NORMAL
    assert not cluster.replicas[2].timers.primary.fired()


# --- S3: committed ops are executed after a view change, at the new primary and at backups ------------------


def view_one_learns_commit_from_replica_3() -> Cluster:
    """5 replicas. Primary 0 commits A and B, but only replica 3 hears of the commit. Replicas 0 and 4 are cut
    off; view 1 starts with replicas 1, 2, 3, and the new primary learns commit_number 2 from replica 3."""
    cluster = Cluster(5, config=steady_config(5))
    cluster.request(client_id=1, request_number=1, op=b"A", to=0)
    cluster.request(client_id=2, request_number=1, op=b"B", to=0)
    cluster.deliver_all()
    assert cluster.replicas[0].commit_number == 2
    assert [r.commit_number for r in cluster.replicas[1:]] == [0, 0, 0, 0]
    cluster.tick(cluster.replicas[0].config.heartbeat_ticks, only={0})
    cluster.deliver(matching(Commit, source=0, to=3))
    cluster.drop(matching(source=0))
    assert cluster.replicas[3].commit_number == 2
    cluster.partition({0, 4}, {1, 2, 3})
    view_change_to_one(cluster, without={0, 4})
    cluster.deliver_all()
    return cluster


def new_primary_executes_committed_ops() -> None:
    """The new primary must execute A and B, which it learned are committed from a DoViewChange."""
    cluster = view_one_learns_commit_from_replica_3()
    primary = cluster.replicas[1]
    assert primary.status is Status.NORMAL and primary.view_number == 1
    assert primary.commit_number == 2 and cluster.apps[1].applied == [b"A", b"B"]
    cluster.check_applied()


def backup_executes_committed_ops_on_start_view() -> None:
    """Replica 4 (holding A and B, commit_number 0) comes back, gets replica 2's StartViewChange of view 1 late,
    joins and asks to join view 1; the primary answers with StartView (commit_number 2). After installing it,
    replica 4 must have executed A and B."""
    cluster = view_one_learns_commit_from_replica_3()
    cluster.heal()
    cluster.partition({0}, {1, 2, 3, 4})
    late = cluster.replicas[4]
    assert late.commit_number == 0 and operations(late.log) == [b"A", b"B"]
    cluster.inject(4, StartViewChange(**header(view=1, replica=2)))
    assert late.view_number == 1
    cluster.deliver(matching(StartViewChange, source=4, to=1))
    cluster.deliver(matching(StartView, source=1, to=4))
    assert late.status is Status.NORMAL and late.view_number == 1
    assert late.commit_number == 2 and cluster.apps[4].applied == [b"A", b"B"]
    cluster.check_applied()


# --- S4: NewState only from the primary of our view ---------------------------------------------------------


def _replica_2_in_state_transfer() -> Cluster:
    """A committed everywhere; view 1 starts without replica 2, which then receives a Prepare of view 1 and
    starts state transfer (GetState held in the queue)."""
    cluster = Cluster(3, config=steady_config(3))
    commit_in_view_zero(cluster, b"A")
    view_change_to_one(cluster, without={2})
    cluster.request(client_id=2, request_number=1, op=b"B", to=1)
    cluster.deliver(matching(Prepare, source=1, to=2))
    cluster.drop(matching(Prepare, source=1, to=2))
    backup = cluster.replicas[2]
    assert backup.state_transfer and backup.view_number == 1 and backup.commit_number == 1
    return cluster


def new_state_only_from_the_primary_of_our_view() -> None:
    """Replica 2 waits for view 1's log. NewState claiming to be it, from replica 0 (not primary of view 1), from
    another view, or a stale answer that would move it backwards, changes nothing. (A NewState from the right
    primary whose only fault is a lower commit_number is not a forgery: it must never lower ours — S14 — but it
    must not block the transfer either; see test_protocol_state_transfer.py.)"""
    cluster = _replica_2_in_state_transfer()
    backup = cluster.replicas[2]
    before = (list(backup.log), backup.op_number, backup.commit_number, backup.view_number)
    bogus = (entry(2, b"evil1", view=1), entry(3, b"evil2", view=1))
    for forged in (
        NewState(**header(view=1, replica=0), op_number=3, commit_number=3, entries=bogus),  # not primary(1)
        NewState(**header(view=0, replica=0), op_number=3, commit_number=3, entries=bogus),  # older view
        NewState(**header(view=4, replica=1), op_number=3, commit_number=3, entries=bogus),  # newer view
        NewState(**header(view=1, replica=1), op_number=0, commit_number=0, entries=()),  # stale: backwards
    ):
        cluster.inject(2, forged)
        assert (list(backup.log), backup.op_number, backup.commit_number, backup.view_number) == before, forged
        assert backup.state_transfer
        assert not cluster.queued(PrepareOk, source=2)
    assert b"evil1" not in cluster.apps[2].applied
    # Control: the real answer from the primary of view 1 completes the transfer.
    cluster.deliver_all()
    assert not backup.state_transfer and operations(backup.log) == [b"A", b"B"]


# --- S5: the DoViewChange quorum counts the new primary itself ----------------------------------------------


def do_view_change_quorum_counts_self(replica_count: int) -> None:
    """Replica 0 (and in a 5-cluster replica 4) is down. Replica 1 becomes primary of view 1 with its own
    DoViewChange plus f others: one peer in a 3-cluster, two in a 5-cluster."""
    cluster = Cluster(replica_count, config=steady_config(replica_count))
    down = {0} if replica_count == 3 else {0, 4}
    up = set(range(replica_count)) - down
    cluster.partition(down, up)
    cluster.time_out(1, joined_by=also_without_primary(cluster, 1))
    peers_heard = 0
    while cluster.replicas[1].status is not Status.NORMAL:
        if cluster.deliver(matching(DoViewChange, to=1), limit=1):
            peers_heard += 1
            continue
        assert cluster.deliver(lambda item: not isinstance(item.message, DoViewChange)), "view change stalled"
    assert peers_heard == (replica_count - 1) // 2
    assert cluster.replicas[1].view_number == 1


# --- S6: the log is chosen by max (last_normal_view, op_number) over ALL DoViewChanges ----------------------

VOTES_BEST_BY_VIEW = (
    # (sender, last_normal_view, commit_number, log): the best log (newest normal view) arrives FIRST.
    (2, 4, 0, (entry(1, b"A"), entry(2, b"B", view=4))),
    (3, 3, 1, (entry(1, b"A"), entry(2, b"X", view=3), entry(3, b"X", view=3), entry(4, b"X", view=3))),
)
VOTES_BEST_BY_OP_NUMBER = (
    # Same last_normal_view: the longer log wins; it arrives first, the shorter one last.
    (2, 3, 1, (entry(1, b"A"), entry(2, b"B", view=3), entry(3, b"C", view=3))),
    (3, 3, 0, (entry(1, b"A"), entry(2, b"B", view=3))),
)


def log_chosen_from_all_do_view_changes(
    votes: tuple[tuple[int, int, int, tuple[LogEntry, ...]], ...],
) -> None:
    """5 replicas; replica 1 (empty log) collects DoViewChange for view 6 from replicas 2 and 3 (crafted). It
    must install the log with the largest (last_normal_view, op_number) among all of them — here the one that
    arrived first — with commit_number the largest reported."""
    cluster = Cluster(5, config=steady_config(5))
    primary = cluster.replicas[1]
    cluster.inject(1, StartViewChange(**header(view=6, replica=4)))
    assert primary.status is Status.VIEW_CHANGE and primary.view_number == 6
    for sender, last_normal_view, commit_number, log in votes:
        cluster.inject(
            1,
            DoViewChange(
                **header(view=6, replica=sender),
                last_normal_view=last_normal_view,
                op_number=len(log),
                commit_number=commit_number,
                log=log,
            ),
        )
    best = max(votes, key=lambda vote: (vote[1], len(vote[3])))
    assert primary.status is Status.NORMAL and primary.view_number == 6
    assert primary.log == list(best[3]), f"installed {operations(primary.log)}"
    assert primary.commit_number == max(vote[2] for vote in votes)
    start_views = cluster.queued(StartView, source=1)
    assert start_views and all(item.message.log == best[3] for item in start_views)
    cluster.check_applied()


# --- S7: timers belong to roles -----------------------------------------------------------------------------


def new_primary_starts_heartbeats() -> None:
    """After view 1 starts (replica 0 is gone), the cluster stays idle for three primary timeouts: the new
    primary's Commit heartbeats must keep its backup from suspecting it (and probing, pre-vote)."""
    config = steady_config(3)
    cluster = Cluster(3, config=config)
    cluster.partition({0}, {1, 2})
    view_change_to_one(cluster, without={0})
    cluster.deliver_all()
    started = len(cluster.sent)
    for _ in range(3 * config.primary_timeout_ticks):
        cluster.tick(only={1, 2})
        cluster.deliver_all()
    assert [(r.view_number, r.status) for r in cluster.replicas[1:]] == [(1, Status.NORMAL)] * 2
    probes = [item for item in cluster.sent[started:] if isinstance(item.message, StartViewChangeProbe)]
    assert probes == [], "the backup suspected its new primary"


def backup_timer_restarts_on_start_view() -> None:
    """5 replicas, replica 0 gone. Replica 2 has not heard from replica 0 for one tick less than its timeout
    when view 1 starts without it; it then installs StartView. Its primary timer must start over — no spurious
    view change on the next tick — and must be armed: silence from replica 1 is noticed after a full timeout."""
    config = steady_config(5)
    timeout = config.primary_timeout_ticks
    cluster = Cluster(5, config=config)
    cluster.partition({0}, {1, 2, 3, 4})
    cluster.tick(timeout - 1, only={2})
    view_change_to_one(cluster, without={0, 2})
    start_view = next(item for item in cluster.sent if isinstance(item.message, StartView) and item.to == 2)
    cluster.inject(2, start_view.message)  # it was dropped on the way; now it arrives
    backup = cluster.replicas[2]
    assert backup.view_number == 1 and backup.status is Status.NORMAL
    ticks = cluster.tick_until(2, backup.timers.primary.fired, ticks_max=3 * timeout)
    assert ticks == timeout, f"backup suspected the new primary after {ticks} ticks, expected {timeout}"


# --- S8: no vestigial messages ------------------------------------------------------------------------------

PAPER_REPLICA_MESSAGES = {
    "Prepare",
    "PrepareOk",
    "Commit",
    "StartViewChange",
    "DoViewChange",
    "StartView",
    "GetState",
    "NewState",
    "Recovery",
    "RecoveryResponse",
}
# The one addition, documented in docs/protocol.md: the paper keeps the whole log; zvsr truncates it after
# snapshots, and a replica behind the oldest kept op fetches the snapshot in chunks.
SNAPSHOT_TRANSFER_MESSAGES = {"GetSnapshot", "SnapshotChunk"}
# §7 reconfiguration (the paper's STARTEPOCH / EPOCHSTARTED; CHECKEPOCH is not needed: a replica of an older
# epoch is told the new one by whoever it talks to).
EPOCH_MESSAGES = {"StartEpoch", "EpochStarted"}
# And pre-vote (docs/design.md): a backup asks whether the others lost the primary too before it changes view.
PRE_VOTE_MESSAGES = {"StartViewChangeProbe"}
ZVSR_REPLICA_MESSAGES = PAPER_REPLICA_MESSAGES | SNAPSHOT_TRANSFER_MESSAGES | EPOCH_MESSAGES | PRE_VOTE_MESSAGES


def message_set_is_closed() -> None:
    assert {kind.__name__ for kind in messages.REPLICA_MESSAGES} == ZVSR_REPLICA_MESSAGES
    assert len(messages.REPLICA_MESSAGES) == len(ZVSR_REPLICA_MESSAGES)
    assert not hasattr(messages, "ViewChangeOk")
    from zvsr.protocol.replica import Replica

    # The dispatch matches every member of the union (mypy checks it is exhaustive); each has its handler.
    assert set(typing.get_args(messages.ReplicaMessage)) == set(messages.REPLICA_MESSAGES), "a kind not dispatched"
    for kind in messages.REPLICA_MESSAGES:
        handler = "on_" + re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower()  # as mutants.handler_name
        assert callable(getattr(Replica, handler, None)), f"{kind.__name__} has no handler {handler}"


def message_kinds_sent_by_every_sub_protocol() -> set[str]:
    """Normal operation, a view change, state transfer, snapshots, recovery (which, with the primary's log
    truncated, fetches its snapshot) and a reconfiguration replacing replica 2 by a new replica 3: collect what
    goes over the wire."""
    config = steady_config(3, snapshot_interval_ops=2, snapshot_chunk_bytes=8)
    cluster = Cluster(3, config=dataclasses.replace(config, reconfiguration=True))
    commit_in_view_zero(cluster, b"A")
    view_change_to_one(cluster, without={2})
    for number, op in enumerate((b"B", b"C", b"D", b"E"), start=1):
        cluster.request(client_id=2, request_number=number, op=op, to=1)
        cluster.deliver_all()
    assert cluster.replicas[1].log_base > 0  # snapshots at ops 2 and 4: the log before op 3 is gone
    cluster.crash_and_recover(0)
    cluster.deliver_all()
    assert cluster.replicas[0].status is Status.NORMAL
    assert cluster.replicas[0].commit_number >= 4
    cluster.add_replica()
    cluster.reconfigure((0, 1, 3), to=1)
    for _ in range(50):
        cluster.deliver_all()
        cluster.tick()
    assert cluster.replicas[3].status is Status.NORMAL and cluster.replicas[2].stopped
    return {type(item.message).__name__ for item in cluster.sent}


# --- S9: PrepareOk accounting is keyed by view --------------------------------------------------------------


def old_view_acks_do_not_commit() -> None:
    """View 1 (primary 1) without replica 0. The new primary prepares B at op 1. A PrepareOk of view 0 for op 1
    from replica 2 (an ack of whatever op 1 was in view 0) must not commit B; replica 2's ack of view 1 does."""
    cluster = Cluster(3, config=steady_config(3))
    cluster.partition({0}, {1, 2})
    view_change_to_one(cluster, without={0})
    cluster.deliver_all()
    primary = cluster.replicas[1]
    assert primary.pipeline.prepare_ok == {} and primary.pipeline.view == 1
    cluster.request(client_id=1, request_number=1, op=b"B", to=1)
    cluster.inject(1, PrepareOk(**header(view=0, replica=2), op_number=1))
    assert primary.commit_number == 0, "an acknowledgement of view 0 committed an op of view 1"
    assert not any(isinstance(reply, Reply) for reply in cluster.replies)
    cluster.deliver_all()
    assert primary.commit_number == 1
    assert acknowledged(cluster, 1, 1).view == 1


# --- S10: a Prepare of a newer view means state transfer first ----------------------------------------------


def newer_view_prepare_fetches_the_views_log_first() -> None:
    """5 replicas. A is committed everywhere. Primary 0 prepares X at op 2, which only replica 2 receives. View 1
    starts with replicas 1, 3, 4 (X is not in its log); replica 1 prepares Y (op 2) and Z (op 3). Replica 2 missed
    all of it and now receives the Prepare of Z in view 1. It must adopt view 1, ask replica 1 for view 1's log
    after its commit_number (1), replace its uncommitted X with it, and acknowledge only then — in view 1, to
    replica 1. (Whether X is dropped at once, as the paper says, or only when view 1's log replaces it, is the
    core's choice: VR-NOTES §11.1; this scenario checks what both must give.)"""
    cluster = Cluster(5, config=steady_config(5))
    commit_in_view_zero(cluster, b"A")
    cluster.request(client_id=2, request_number=1, op=b"X", to=0)
    cluster.deliver(matching(Prepare, source=0, to=2))
    cluster.queue.clear()  # nobody else gets X; replica 2's ack is lost
    backup = cluster.replicas[2]
    assert operations(backup.log) == [b"A", b"X"] and backup.commit_number == 1
    cluster.partition({0, 2}, {1, 3, 4})
    view_change_to_one(cluster, without={0, 2})
    cluster.deliver_all()
    cluster.request(client_id=3, request_number=1, op=b"Y", to=1)
    cluster.request(client_id=4, request_number=1, op=b"Z", to=1)
    cluster.heal()
    cluster.partition({0}, {1, 2, 3, 4})
    cluster.drop(matching(to=2))  # the Prepares to replica 2 are still queued: drop Y's ...
    z_prepare = next(p for p in cluster.sent if isinstance(p.message, Prepare) and p.message.op_number == 3)
    mark = len(cluster.sent)
    cluster.inject(2, z_prepare.message)  # ... and deliver only Z's
    assert backup.view_number == 1 and backup.status is Status.NORMAL and backup.state_transfer
    assert backup.last_normal_view == 0, "view 1's log is not installed yet"
    assert backup.commit_number == 1, "X is not committed: it must not be executed"
    assert not cluster.queued(PrepareOk, source=2), "acknowledged before holding the log of view 1"
    asked = [(item.to, item.message.view, item.message.op_number) for item in cluster.queued(GetState, source=2)]
    assert asked == [(1, 1, 1)], "view 1's log is asked for after the committed prefix, not after X"
    cluster.deliver_all()
    assert not backup.state_transfer and backup.last_normal_view == 1
    assert operations(backup.log) == [b"A", b"Y", b"Z"] == operations(cluster.replicas[1].log)
    oks = [item for item in cluster.sent[mark:] if isinstance(item.message, PrepareOk) and item.source == 2]
    assert oks and all(item.to == 1 and item.message.view == 1 for item in oks)
    assert cluster.replicas[1].pipeline.prepare_ok.get(2) == 3
    cluster.check_applied()


# --- S11: client table, at-most-once ------------------------------------------------------------------------


def duplicate_request_executes_once() -> None:
    """Client 1 sends request 1 twice, before and after a failover; it is executed once and both answers carry
    the same result, the last one from the new primary."""
    cluster = Cluster(3, config=steady_config(3))
    cluster.request(client_id=1, request_number=1, op=b"A", to=0)
    cluster.deliver_all()
    first = acknowledged(cluster, 1, 1)
    cluster.replies.clear()
    cluster.request(client_id=1, request_number=1, op=b"A", to=0)  # a retry: the reply was lost
    assert cluster.replies == [first]
    assert not cluster.queued(Prepare), "a duplicate was prepared again"
    cluster.partition({0}, {1, 2})
    view_change_to_one(cluster, without={0})
    cluster.deliver_all()
    cluster.replies.clear()
    cluster.request(client_id=1, request_number=1, op=b"A", to=1)  # retry at the new primary
    assert len(cluster.replies) == 1 and isinstance(cluster.replies[0], Reply)
    assert cluster.replies[0].result == first.result and cluster.replies[0].view == 1
    cluster.tick(cluster.replicas[1].config.heartbeat_ticks, only={1})  # replica 2 learns the commit
    cluster.deliver_all()
    for index in (1, 2):
        assert cluster.apps[index].applied == [b"A"], f"r{index} executed the request more than once"


# --- S12: quorum gating is real -----------------------------------------------------------------------------


def isolated_primary_answers_unavailable() -> None:
    config = steady_config(3)
    cluster = Cluster(3, config=config)
    cluster.partition({0}, {1, 2})
    cluster.tick(config.quorum_timeout_ticks + 1, only={0})
    cluster.queue.clear()
    cluster.replies.clear()
    cluster.request(client_id=1, request_number=1, op=b"A", to=0)
    assert len(cluster.replies) == 1 and isinstance(cluster.replies[0], Error)
    assert cluster.replies[0].code == messages.ERROR_UNAVAILABLE
    assert cluster.replicas[0].op_number == 0 and not cluster.queued(Prepare)


def quorums_are_intersecting_majorities() -> None:
    for replica_count in range(1, 8):
        config = Config(replica_count=replica_count)
        quorum = config.quorum
        assert 2 * quorum > replica_count, f"n={replica_count}: quorum {quorum} is not a majority"
        assert quorum <= replica_count - config.f, f"n={replica_count}: f failures leave no quorum"
        if replica_count % 2 == 1:
            assert quorum == config.f + 1
        members = range(replica_count)
        for a, b in itertools.product(itertools.combinations(members, quorum), repeat=2):
            assert set(a) & set(b), f"n={replica_count}: quorums {a} and {b} do not intersect"


# --- S13: leader identity is checked on every leader-to-follower message ------------------------------------


def _leader_message_forgeries() -> list[tuple[int, object]]:
    """(receiver, message) pairs, each from a replica that is not primary(message.view)."""
    bogus = (entry(1, b"evil"),)
    return [
        (1, Prepare(**header(view=0, replica=2), op_number=1, commit_number=0, entries=bogus)),
        (1, Commit(**header(view=0, replica=2), commit_number=0, op_number=5)),
        (0, StartView(**header(view=1, replica=2), op_number=1, commit_number=0, log=bogus)),
        (1, NewState(**header(view=0, replica=2), op_number=1, commit_number=1, entries=bogus)),
    ]


def leader_messages_from_non_primary_are_dropped(index: int) -> None:
    cluster = Cluster(3, config=steady_config(3))
    to, forged = _leader_message_forgeries()[index]
    receiver = cluster.replicas[to]
    before = (list(receiver.log), receiver.view_number, receiver.status, receiver.commit_number)
    counted = sum(receiver.counters.values())
    cluster.inject(to, forged)  # type: ignore[arg-type]
    assert (list(receiver.log), receiver.view_number, receiver.status, receiver.commit_number) == before
    assert not cluster.queue, "the receiver answered a forged leader"
    assert sum(receiver.counters.values()) == counted + 1
    assert any("not the primary" in reason for reason in receiver.counters)


# --- S14: state transfer never moves a replica backwards ----------------------------------------------------


def new_state_cannot_regress() -> None:
    """Replica 1 holds A, B, both committed. A NewState from the primary of its view with a shorter log or a
    lower commit_number (a delayed answer to an old GetState) changes nothing."""
    cluster = Cluster(3, config=steady_config(3))
    commit_in_view_zero(cluster, b"A", b"B")
    cluster.queue.clear()
    backup = cluster.replicas[1]
    before = (list(backup.log), backup.op_number, backup.commit_number, list(cluster.apps[1].applied))
    for stale in (
        NewState(**header(view=0, replica=0), op_number=1, commit_number=1, entries=()),
        NewState(**header(view=0, replica=0), op_number=0, commit_number=0, entries=()),
        NewState(**header(view=0, replica=0), op_number=2, commit_number=1, entries=()),
    ):
        cluster.inject(1, stale)
        after = (list(backup.log), backup.op_number, backup.commit_number, list(cluster.apps[1].applied))
        assert after == before, f"{stale} moved replica 1 backwards"


def get_state_answered_only_by_primary_in_normal_status() -> None:
    cluster = Cluster(3, config=steady_config(3))
    commit_in_view_zero(cluster, b"A")
    cluster.queue.clear()
    cluster.inject(1, GetState(**header(view=0, replica=2), op_number=0))  # a backup: no answer
    assert not cluster.queued(NewState)
    cluster.inject(0, GetState(**header(view=1, replica=2), op_number=0))  # another view: no answer
    assert not cluster.queued(NewState)
    cluster.inject(0, GetState(**header(view=0, replica=2), op_number=0))  # control: the primary answers
    assert [(item.source, item.to) for item in cluster.queued(NewState)] == [(0, 2)]
    cluster.queue.clear()
    cluster.inject(0, StartViewChange(**header(view=1, replica=1)))  # primary 0 now votes in view 1
    cluster.queue.clear()
    assert cluster.replicas[0].status is Status.VIEW_CHANGE
    cluster.inject(0, GetState(**header(view=1, replica=2), op_number=0))
    assert not cluster.queued(NewState), "answered GetState while in view-change status"


# --- the paper's hole (VR-NOTES §11.1, ARCHITECTURE rule 3) -------------------------------------------------


def last_normal_view_kept_until_the_views_log_arrives(*, white_box: bool = True) -> None:
    """Vanlightly's trace, in 5 replicas. Primary 0 commits A with replicas 1, 2, 4 holding it, and answers the
    client; replica 3 misses it; then replica 0 is cut off. View 1 starts with replicas 1, 3, 4 (its log has A)
    but the StartView reaches nobody. Replica 4, still voting in view 1, gets a Prepare of view 1: it adopts
    view 1 and asks for the view's log (the paper: after truncating its own to commit_number 0, dropping A) —
    the answer is lost. Replica 3 gives up on view 1 and starts view 2, whose primary is replica 2; the
    DoViewChange quorum is replicas 2, 3, 4.

    Replica 4 must report its OLD last_normal_view (0): view 1's log never reached it. Had it reported 1 with
    its truncated (empty) log, that log would beat replica 2's [A] (last_normal_view 0) and the acknowledged
    A would be lost.
    `white_box=False` skips the checks of replica 4's internal state, leaving only the end-to-end outcome."""
    cluster = Cluster(5, config=steady_config(5))
    replicas = cluster.replicas
    cluster.request(client_id=1, request_number=1, op=b"A", to=0)
    cluster.drop(matching(Prepare, source=0, to=3))
    cluster.deliver_all()
    assert replicas[0].commit_number == 1 and acknowledged(cluster, 1, 1).view == 0
    assert [operations(r.log) for r in replicas] == [[b"A"], [b"A"], [b"A"], [], [b"A"]]
    cluster.partition({0}, {1, 2, 3, 4})

    # View 1: replica 3 times out, so do 1 and 4; they vote; replica 2 hears nothing; no StartView arrives.
    cluster.time_out(3, joined_by={1, 4})
    for _ in range(20):
        cluster.drop(lambda item: item.to == 2 or isinstance(item.message, StartView))
        if not cluster.deliver():
            break
    assert replicas[1].status is Status.NORMAL and replicas[1].view_number == 1
    assert operations(replicas[1].log) == [b"A"]
    assert replicas[3].status is Status.VIEW_CHANGE and replicas[4].status is Status.VIEW_CHANGE

    # Replica 4 receives a Prepare of view 1 (B at op 2) and starts state transfer; its GetState is lost.
    cluster.request(client_id=2, request_number=1, op=b"B", to=1)
    cluster.deliver(matching(Prepare, source=1, to=4))
    cluster.queue.clear()
    assert replicas[4].view_number == 1 and replicas[4].state_transfer
    if white_box:
        assert replicas[4].last_normal_view == 0

    # View 2 (primary 2): replica 3 gives up on view 1, and 2 and 4 have no primary either; replicas 2, 3, 4
    # take part, replica 1 hears nothing.
    cluster.time_out(3, joined_by={2, 4})
    cluster.drop(lambda item: not (isinstance(item.message, StartViewChange) and item.message.view == 2))
    for _ in range(20):
        cluster.drop(matching(to=1))
        if not cluster.deliver():
            break
    new_primary = replicas[2]
    assert new_primary.status is Status.NORMAL and new_primary.view_number == 2
    assert new_primary.log[:1] == [entry(1, b"A", client_id=1)], "the acknowledged op A was lost"
    for index in (2, 3, 4):
        assert replicas[index].view_number == 2 and operations(replicas[index].log[:1]) == [b"A"]
    cluster.check_applied()


def last_normal_view_kept_with_a_stale_suffix() -> None:
    """The same rule seen from a core that keeps its old log until the new view's log arrives. 5 replicas.
    Primary 0 prepares X1, X2, X3, which only replica 4 receives; replica 0 is cut off. View 1 starts with
    replicas 1, 2, 3 (log empty); replica 1 commits B with them and answers the client. Replica 4 then gets a
    Prepare of view 1 (C, which nobody else gets) and starts state transfer; the answer is lost. Replica 2
    suspects replica 1 and starts view 2 with replicas 3 and 4.

    Replica 4's log still holds X1..X3 of view 0. It must report last_normal_view 0: reported as view 1's log,
    its three stale ops would beat the view-1 logs [B] of replicas 2 and 3, and the acknowledged B would be
    lost."""
    cluster = Cluster(5, config=steady_config(5))
    replicas = cluster.replicas
    for client, op in enumerate((b"X1", b"X2", b"X3"), start=1):
        cluster.request(client_id=client, request_number=1, op=op, to=0)
    cluster.drop(lambda item: isinstance(item.message, Prepare) and item.to != 4)
    cluster.deliver_all()
    assert operations(replicas[4].log) == [b"X1", b"X2", b"X3"] and replicas[0].commit_number == 0
    cluster.partition({0}, {1, 2, 3, 4})

    view_change_to_one(cluster, without={0, 4})
    cluster.request(client_id=10, request_number=1, op=b"B", to=1)
    cluster.deliver_all(where=lambda item: item.to != 4)
    assert replicas[1].commit_number == 1 and acknowledged(cluster, 10, 1).view == 1
    cluster.request(client_id=11, request_number=1, op=b"C", to=1)
    cluster.deliver(matching(Prepare, source=1, to=4))
    cluster.queue.clear()  # replica 4's GetState is lost, and nobody else hears of C (or of B's commit)
    assert replicas[4].view_number == 1 and replicas[4].state_transfer
    assert [r.commit_number for r in replicas[2:4]] == [0, 0]

    cluster.time_out(2, joined_by={3, 4})
    for _ in range(20):
        cluster.drop(matching(to=1))
        if not cluster.deliver():
            break
    new_primary = replicas[2]
    assert new_primary.status is Status.NORMAL and new_primary.view_number == 2
    assert operations(new_primary.log[:1]) == [b"B"], "the acknowledged op B was lost"
    cluster.check_applied()


def truncation_on_newer_view_keeps_committed_ops() -> None:
    """Beyond the paper's hole: the paper's truncation itself loses ops. 5 replicas: primary 0 commits A with
    replicas 1 and 2 and answers the client; replicas 3, 4 miss it. View 1 starts with replicas 1, 3, 4 (log
    [A]); its StartView reaches nobody. Replica 2 (normal, view 0, log [A], commit_number 0) gets a Prepare of
    view 1. If it truncates to commit_number 0 — even keeping last_normal_view 0 — then view 2 (primary 2),
    started by replicas 2, 3, 4, sees last_normal_view 0 and an empty log in every DoViewChange: A,
    acknowledged to its client, is in no log of view 2.

    A replica that reports last_normal_view v' must report its log of view v' too: keep it until the new view's
    log is installed (TigerBeetle likewise keeps the log_view's headers). Found by this suite against the first
    core (0abf605), whose _start_state_transfer truncated at once."""
    cluster = Cluster(5, config=steady_config(5))
    replicas = cluster.replicas
    cluster.request(client_id=1, request_number=1, op=b"A", to=0)
    cluster.drop(lambda item: isinstance(item.message, Prepare) and item.to in (3, 4))
    cluster.deliver_all()
    assert replicas[0].commit_number == 1 and acknowledged(cluster, 1, 1).view == 0
    cluster.partition({0}, {1, 2, 3, 4})

    cluster.time_out(3, joined_by={1, 4})
    for _ in range(20):
        cluster.drop(lambda item: item.to == 2 or isinstance(item.message, StartView))
        if not cluster.deliver():
            break
    assert replicas[1].status is Status.NORMAL and operations(replicas[1].log) == [b"A"]

    cluster.request(client_id=2, request_number=1, op=b"B", to=1)
    cluster.deliver(matching(Prepare, source=1, to=2))
    cluster.queue.clear()
    assert replicas[2].view_number == 1 and replicas[2].state_transfer

    cluster.time_out(3, joined_by={2, 4})
    cluster.drop(lambda item: not (isinstance(item.message, StartViewChange) and item.message.view == 2))
    for _ in range(20):
        cluster.drop(matching(to=1))
        if not cluster.deliver():
            break
    new_primary = replicas[2]
    assert new_primary.status is Status.NORMAL and new_primary.view_number == 2
    assert operations(new_primary.log[:1]) == [b"A"], "the acknowledged op A was lost"


# --- VR-NOTES §11.5: a request in the log but not committed stays in progress across a view change ---------


def request_in_progress_at_failover() -> None:
    """VR-NOTES §11.5. Client 2's request is prepared at every replica but not committed when primary 0 fails.
    The new primary's log holds it; the client's retry must not append it a second time; it commits once, and
    the new primary answers the client when it does."""
    cluster = Cluster(3, config=steady_config(3))
    cluster.request(client_id=2, request_number=1, op=b"c", to=0)
    cluster.deliver(matching(Prepare))
    cluster.queue.clear()  # the acknowledgements are lost: nothing commits in view 0
    cluster.partition({0}, {1, 2})
    cluster.time_out(1, joined_by={2})
    cluster.deliver(lambda item: not isinstance(item.message, PrepareOk))  # SVC, DVC
    cluster.deliver(lambda item: not isinstance(item.message, PrepareOk))  # StartView
    new_primary = cluster.replicas[1]
    assert new_primary.status is Status.NORMAL and operations(new_primary.log) == [b"c"]
    assert new_primary.commit_number == 0
    cluster.request(client_id=2, request_number=1, op=b"c", to=1)
    assert new_primary.op_number == 1, "the retry was appended a second time"
    cluster.deliver_all()  # replica 2's PrepareOk for the StartView commits it
    assert new_primary.commit_number == 1
    assert [r for r in cluster.replies if isinstance(r, Reply)] == [
        Reply(view=1, client_id=2, request_number=1, result=b"1")
    ]
    assert cluster.apps[1].applied == [b"c"]


# --- state transfer to a newer view learned from its primary (ARCHITECTURE rule 3) --------------------------


def missed_view_one(config: Config, *ops: bytes) -> Cluster:
    """A committed in view 0 everywhere. View 1 starts with replicas 0 and 1 only; its primary appends `ops`
    (acknowledged by replica 0). Replica 2 still believes in view 0 and has heard nothing of it."""
    cluster = Cluster(3, config=config)
    cluster.request(client_id=1, request_number=1, op=b"A", to=0)
    cluster.deliver_all()
    cluster.tick(config.heartbeat_ticks, only={0})
    cluster.deliver_all()
    view_change_to_one(cluster, without={2})
    for client, op in enumerate(ops, start=10):
        cluster.request(client_id=client, request_number=1, op=op, to=1)
    cluster.deliver_all(where=lambda item: item.to != 2 and item.source != 2)
    cluster.drop(matching(to=2))
    assert cluster.replicas[2].view_number == 0 and cluster.replicas[2].status is Status.NORMAL
    return cluster


def chunked_state_transfer_keeps_the_old_last_normal_view(config: Config) -> None:
    cluster = missed_view_one(config, b"B", b"C")
    cluster.tick(config.heartbeat_ticks, only={1})
    cluster.drop(matching(to=0))
    cluster.deliver(matching(Commit, to=2))
    backup = cluster.replicas[2]
    transferred: list[list[bytes]] = []
    while backup.state_transfer:
        cluster.deliver(matching(GetState, to=1))
        assert backup.last_normal_view == 0 and backup.state_transfer, f"after {transferred}"
        chunk = cluster.queued(NewState, to=2)
        assert len(chunk) == 1 and len(chunk[0].message.entries) <= 1
        transferred.append(operations(chunk[0].message.entries))
        cluster.deliver(matching(NewState, to=2))
    assert transferred == [[b"B"], [b"C"]]
    assert backup.last_normal_view == 1 and operations(backup.log) == [b"A", b"B", b"C"]


# --- bounded client sessions (issue 6) ---------------------------------------------------------------------


def sessions_cluster(**overrides: int) -> Cluster:
    config = steady_config(3, client_table_max=3, **overrides)
    return Cluster(3, config=dataclasses.replace(config, require_registration=True))


def run_to_commit(cluster: Cluster, client_id: int, request_number: int, op: bytes, *, to: int = 0) -> None:
    cluster.request(client_id=client_id, request_number=request_number, op=op, to=to)
    cluster.deliver_all()
    cluster.tick(cluster.replicas[to].config.heartbeat_ticks, only={to})  # backups learn the commit
    cluster.deliver_all()


def register(cluster: Cluster, nonce: int, *, to: int = 0) -> int:
    """Register a session with `nonce` through the log (at primary `to`); its id."""
    run_to_commit(cluster, nonce, REGISTER_REQUEST_NUMBER, b"", to=to)
    answer = [r for r in cluster.replies if isinstance(r, Reply) and r.client_id == nonce][-1]
    session = parse_register_result(answer.result)
    assert session is not None
    return session


def expired_answers(cluster: Cluster, client_id: int) -> list[Error]:
    return [
        r
        for r in cluster.replies
        if isinstance(r, Error) and r.client_id == client_id and r.code == ERROR_SESSION_EXPIRED
    ]


def retry_from_an_evicted_session_is_refused_and_never_executed_twice() -> None:
    """Session A's request 1 executed, its reply was lost, and A was evicted by three later registrations; then
    3 x client_table_max more sessions come and go. A's retry (and any later number of A) is refused, never run."""
    cluster = sessions_cluster()
    a = register(cluster, 101)
    run_to_commit(cluster, a, 1, b"a1")
    for nonce in (102, 103, 104):  # the third evicts A, the least recently executed
        register(cluster, nonce)
    assert a not in cluster.replicas[0].client_table
    for nonce in range(200, 209):  # churn: nothing of A is remembered, and nothing needs to be
        register(cluster, nonce)
    cluster.replies.clear()
    cluster.request(client_id=a, request_number=1, op=b"a1", to=0)
    cluster.request(client_id=a, request_number=2, op=b"a2", to=0)
    assert len(expired_answers(cluster, a)) == 2
    cluster.deliver_all()
    assert cluster.apps[0].applied == [b"a1"]
