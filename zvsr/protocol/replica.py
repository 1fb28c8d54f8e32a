"""The VR Revisited replica as a pure state machine (sans-IO).

Theory of operation. A `Replica` is driven by three inputs — `on_message` (a decoded replica message),
`on_request` (a decoded client request) and `tick` (one unit of logical time) — and produces one output,
`ready()`, which says what to persist, what to send, what to answer, and which ops it executed, in that order
(see `ready.py`). It never touches a socket, a file, a clock or a global random generator: the same object runs
under the ZeroMQ node and under the deterministic simulator.

State is named as in the paper (§4): view_number, status, op_number, log, commit_number, client_table, plus
last_normal_view (v' in DoViewChange). `commit_number` is also the number of the last executed operation: ops
are applied to the state machine the moment they are known committed, so "committed" and "executed" never
disagree inside one replica. The state, and the mechanics that change it without deciding when (appending,
installing and truncating the log, executing, snapshots, restart from disk, the output), are in
`replica_state.py`; what one sub-protocol owns lives in a named part with its own reset: `client_table`,
`state_transfer`, `snapshots`, `timers`, `pipeline`, `votes`, `recovery` (docs/design.md has the map).

This file is the protocol: the dispatch and every handler, in the paper's order — normal operation (§4.1),
view change (§4.2), recovery (§4.3), state transfer (§5.2), snapshots — with the role transitions they make,
and `invariants()`. Each handler starts with guards — status, older view, newer view, is the sender the primary
of that view — and every dropped message is counted with its reason (and logged, if a logger is attached);
then it asserts what the guards established; then it acts.

Where this departs from a literal reading of the paper, ARCHITECTURE §3 is the reason:
- A replica that learns of a newer view from its primary's Prepare or Commit (rule 3) adopts the view and
  fetches its log with GetState, keeping its old log until all of the new one is here, and does NOT advance
  last_normal_view until then (`zvsr.protocol.state_transfer`). This closes the hole Vanlightly's TLA+ model
  found in the paper, where a truncated log reported with the new last_normal_view wins a later view change.
- GetState is answered only by the primary of that view, in normal status, and NewState is accepted only from
  it (rule 7), in chunks, never moving commit_number backwards.
- The primary answers `unavailable` when it has not heard from a quorum recently (rule 10), and goes quiet
  (no heartbeats, no prepares) when that lasts, so that backups that still hear it replace it (check-quorum).
- Pre-vote: a backup whose primary goes silent asks the others with StartViewChangeProbe, and starts a view
  change only once a quorum, itself included, has no primary either; a replica in a view change gives up on it
  for the next on the same condition. A cut-off replica never raises its view alone (docs/design.md).
- Batching: requests received in one step are appended at once and go out in as few Prepares as the bounds
  allow when the driver calls `ready()`; pipelining: up to `pipeline_ops_max` uncommitted ops are in flight.
"""

from __future__ import annotations

from typing import assert_never

from zvsr.constants import PRIMARY_QUIET_AFTER_QUORUM_TIMEOUTS, RECOVERY_STALL_ROUNDS
from zvsr.protocol import snapshots
from zvsr.protocol.client_table import Admission
from zvsr.protocol.messages import (
    ERROR_BAD_REQUEST,
    ERROR_BUSY,
    ERROR_SESSION_EXPIRED,
    ERROR_UNAVAILABLE,
    ERROR_VIEW_CHANGE,
    INTERNAL_CLIENT_ID,
    Commit,
    DoViewChange,
    GetSnapshot,
    GetState,
    LogEntry,
    NewState,
    Prepare,
    PrepareOk,
    Recovery,
    RecoveryResponse,
    Redirect,
    ReplicaMessage,
    Request,
    SnapshotChunk,
    StartView,
    StartViewChange,
    StartViewChangeProbe,
)
from zvsr.protocol.ready import BROADCAST
from zvsr.protocol.replica_state import DurableState, Logger, ReplicaState, Status
from zvsr.protocol.state_transfer import StateTransfer

__all__ = ["DurableState", "Logger", "Replica", "Status"]


class Replica(ReplicaState):
    """Built as `Replica(config=, replica=, state_machine=, prng=, recovering=False, durable=None, logger=None,
    clock=None)` (`ReplicaState.__init__`): fresh, recovering (§4.3: it lost its state), or restarted from
    `durable`; `clock` is a monotonic ns counter for cluster time (`cluster_time.py`)."""

    # --- inputs -----------------------------------------------------------------------------------------------

    def on_message(self, message: ReplicaMessage) -> None:
        """Dispatch one decoded replica message (rule 1 checks first, then the kind's handler)."""
        cfg = self.config
        if message.cluster != cfg.cluster or message.epoch != cfg.epoch:
            return self._ignore("on_message", "other cluster or epoch")
        if not 0 <= message.replica < cfg.replica_count or message.replica == self.replica:
            return self._ignore("on_message", "sender is not a peer")
        if message.view == self.view_number and self.status is Status.NORMAL:
            self.last_heard[message.replica] = self.now
        match message:
            case Prepare():
                self.on_prepare(message)
            case PrepareOk():
                self.on_prepare_ok(message)
            case Commit():
                self.on_commit(message)
            case StartViewChangeProbe():
                self.on_start_view_change_probe(message)
            case StartViewChange():
                self.on_start_view_change(message)
            case DoViewChange():
                self.on_do_view_change(message)
            case StartView():
                self.on_start_view(message)
            case Recovery():
                self.on_recovery(message)
            case RecoveryResponse():
                self.on_recovery_response(message)
            case GetState():
                self.on_get_state(message)
            case NewState():
                self.on_new_state(message)
            case GetSnapshot():
                self.on_get_snapshot(message)
            case SnapshotChunk():
                self.on_snapshot_chunk(message)
            case _:  # the codec builds only these kinds; anything else is our bug
                assert_never(message)

    def tick(self) -> None:
        """One unit of logical time: advance the timers and act on those of the current role that fired."""
        self.now += 1
        self.timers.tick()
        if self.status is Status.NORMAL:
            if self.is_primary():
                self._tick_primary()
            else:
                self._tick_backup()
        elif self.status is Status.VIEW_CHANGE:
            self._tick_view_change()
        else:
            self._tick_recovering()

    def _enter_initial_role(self) -> None:
        """At construction: the role the (restored) state implies, with its timers and first messages."""
        if self.status is Status.RECOVERING:
            self._start_recovery()
        elif self.status is Status.VIEW_CHANGE:
            self._resume_view_change()
        elif self.is_primary():
            self._enter_primary()
        else:
            self.timers.enter_backup(self.prng)
            if self.first_start:
                # The primary of view 0 may still be starting its process: no view change before it could.
                self.timers.primary.delay(self.config.startup_grace_ticks)

    # --- normal operation: primary (§4.1) ---------------------------------------------------------------------

    def on_request(self, request: Request) -> None:
        """§4.1 steps 1-3: a client request arrives at this replica."""
        if request.client_id == INTERNAL_CLIENT_ID:
            text = "client_id 0 is reserved for the cluster's own ops"
            return self._answer_error(request, ERROR_BAD_REQUEST, text)
        if self.status is Status.RECOVERING:
            return self._answer_error(request, ERROR_UNAVAILABLE, "replica is recovering")
        if self.status is Status.VIEW_CHANGE:
            return self._answer_error(request, ERROR_VIEW_CHANGE, "view change in progress")
        if not self.is_primary():
            redirect = Redirect(
                view=self.view_number,
                primary=self.primary_index(),
                client_id=request.client_id,
                request_number=request.request_number,
            )
            self._outbox.ready.replies.append(redirect)
            return
        assert self.state_transfer is None  # a primary installed its view's log when it started the view
        admission = self.client_table.admit(request.client_id, request.request_number)
        if admission is Admission.CACHED:
            # §4.1 step 2: the latest request again: re-send the cached reply, never execute twice.
            self._count("on_request: cached reply")
            cached = self.client_table[request.client_id]
            return self._reply(request.client_id, request.request_number, cached.result)
        if admission is Admission.SESSION_EXPIRED:
            text = "the cluster no longer knows this client session"
            return self._answer_error(request, ERROR_SESSION_EXPIRED, text)
        if admission is not Admission.NEW:
            return self._count(f"on_request: {admission.value}")
        if not self._quorum_recently_heard():
            return self._answer_error(request, ERROR_UNAVAILABLE, "primary cannot reach a quorum")
        if self.op_number - self.commit_number >= self.config.pipeline_ops_max:
            if len(self.pipeline.request_queue) >= self.config.request_queue_max:
                return self._answer_error(request, ERROR_BUSY, "request queue is full")
            self.pipeline.request_queue.append(request)
        else:
            self._append_request(request)
        self.client_table.pending[request.client_id] = request.request_number

    def _tick_primary(self) -> None:
        if not self._quorum_recently_heard(PRIMARY_QUIET_AFTER_QUORUM_TIMEOUTS * self.config.quorum_timeout_ticks):
            # Check-quorum: a primary that has heard no quorum for this long can commit nothing. Backups that still
            # hear it (it can send but not receive) would keep it forever: quiet, it lets them lose it and replace
            # it by pre-vote. Its timers keep running, so heartbeats resume the tick a quorum is heard again.
            self._count("primary quiet: no quorum heard (ticks)")
            return
        if self.timers.heartbeat.fired():
            self.timers.heartbeat.reset()
            heartbeat = Commit(**self._header(), commit_number=self.commit_number, op_number=self.op_number)
            self._send(BROADCAST, heartbeat)
        if self.timers.prepare_resend.fired():
            self.timers.prepare_resend.reset()
            self._resend_stalled_prepares()
        self._propose_due()

    def _propose_due(self) -> None:
        """Put the app's timer that came due (a lease's expiry) through the log as the cluster's own op. Only
        the primary asks, with its cluster time, one op at a time: a backup never acts on its own clock, and an
        op a deposed primary proposes cannot commit (its view's quorum has moved on)."""
        pipeline = self.pipeline
        if pipeline.internal_op > self.commit_number:
            return
        if self.op_number - self.commit_number >= self.config.pipeline_ops_max:
            return
        if not self._quorum_recently_heard():
            return
        operation = self.state_machine.due(self.cluster_time.now())
        if operation is None:
            return
        self._count("cluster op proposed")
        self._append_new(INTERNAL_CLIENT_ID, 0, operation)
        pipeline.internal_op = self.op_number

    def _resend_stalled_prepares(self) -> None:
        """Rule 11: ZeroMQ drops silently; a backup whose acknowledgements have not moved gets prepares again.
        Backups that acknowledged nothing in this view are not sent the log here: they learn the view from our
        Commit heartbeats and fetch it with GetState (rule 3), or get StartView again in answer to their votes."""
        cfg = self.config
        for backup, acked in self.pipeline.stalled(self.log_base, self.op_number):
            entries = self._entries_after(acked, cfg.prepare_entries_max, cfg.prepare_bytes_max)
            self._send(backup, self._prepare(entries))
            self._count("prepare resent")

    def _accept_as_primary(self, handler: str, view: int) -> bool:
        """Guards shared by what only the primary of our view answers (PrepareOk, GetState, GetSnapshot)."""
        if self.status is not Status.NORMAL:
            self._ignore(handler, f"status {self.status.value}")
            return False
        if view != self.view_number:
            self._ignore(handler, "other view")
            return False
        if not self.is_primary():
            self._ignore(handler, "not primary")
            return False
        return True

    def on_prepare_ok(self, message: PrepareOk) -> None:
        if not self._accept_as_primary("on_prepare_ok", message.view):
            return
        if message.op_number > self.op_number:
            return self._ignore("on_prepare_ok", "op_number beyond ours")
        assert self.pipeline.view == self.view_number
        self.pipeline.acknowledged(message.replica, message.op_number)
        self._commit_by_quorum()

    def _commit_by_quorum(self) -> None:
        """§4.1 step 5: an op is committed once quorum - 1 backups (plus us) acknowledged it in this view."""
        needed = self.config.quorum - 1
        candidate = self.op_number if needed == 0 else self.pipeline.committable(needed)
        if candidate is not None and candidate > self.commit_number:
            self._commit_up_to(candidate)
            queue = self.pipeline.request_queue
            while queue and self.op_number - self.commit_number < self.config.pipeline_ops_max:
                self._append_request(queue.popleft())

    def _enter_primary(self, *, heard: set[int] | None = None) -> None:
        self.timers.enter_primary()
        # A new primary has just heard from its DoViewChange voters; a cluster starting up in view 0 gives every
        # peer one quorum timeout to show itself before the primary answers `unavailable` (rule 10).
        peers = range(self.config.replica_count) if heard is None else heard
        self.last_heard = {i: self.now for i in peers if i != self.replica}

    # --- normal operation: backups (§4.1) ---------------------------------------------------------------------

    def on_prepare(self, message: Prepare) -> None:
        if not self._accept_from_primary("on_prepare", message.view, message.replica):
            return
        self.timers.primary.reset()
        if self.state_transfer is not None:
            return self._ignore("on_prepare", "waiting for the view's log")
        first = message.entries[0].op_number
        if first > self.op_number + 1:
            self._count("on_prepare: gap")
            return self._request_state()
        for entry in message.entries:
            if entry.op_number <= self.op_number:
                # The same view has one log (our log is a prefix of the primary's): a duplicate must match.
                assert entry.op_number <= self.log_base or self.entry(entry.op_number) == entry, (
                    "two logs in one view"
                )
                continue
            self._append_entry(entry)
        self.cluster_time.learn(message.entries[-1].timestamp)
        self._send(self.primary_index(), self._prepare_ok_message())
        self._commit_up_to(min(message.commit_number, self.op_number))

    def on_commit(self, message: Commit) -> None:
        if not self._accept_from_primary("on_commit", message.view, message.replica):
            return
        self.timers.primary.reset()
        if self.state_transfer is not None:
            # Our suffix may not be this view's: commit nothing until its log is installed.
            return self._ignore("on_commit", "waiting for the view's log")
        if message.commit_number > self.op_number:
            # We miss committed ops: repair (rule 11). Ops the primary prepared but has not committed are
            # usually still in flight to us (and re-sent if lost): asking for them too would double the traffic.
            self._request_state()
        self._send(self.primary_index(), self._prepare_ok_message())  # also tells the primary we are alive
        self._commit_up_to(min(message.commit_number, self.op_number))

    def _accept_from_primary(self, handler: str, view: int, sender: int) -> bool:
        """Guards shared by Prepare and Commit: status, view, sender is that view's primary (rules 1, 3, 4)."""
        if self.status is Status.RECOVERING:
            self._ignore(handler, "recovering")
            return False
        if view < self.view_number:
            self._ignore(handler, "older view")
            return False
        if sender != self.config.primary(view):
            self._ignore(handler, "sender is not the primary of its view")
            return False
        if view == self.view_number and self.status is Status.NORMAL:
            if self.is_primary():  # two primaries in one view cannot happen: some replica is confused
                self._ignore(handler, "we are the primary of this view")
                return False
            return True
        # A newer view, or our own view while we still vote in it: we missed its StartView (rule 3).
        self._start_state_transfer(view)
        return True

    def _tick_backup(self) -> None:
        if self.timers.primary.fired():
            self._suspect_primary()
            if self.status is not Status.NORMAL:
                return
        elif self.timers.probe.running:
            self.timers.probe.stop()  # the primary spoke again
        if self.timers.repair.fired():
            if self.state_transfer is not None or self.snapshots.download is not None:
                self._request_state(force=True)
            else:
                self.timers.repair.stop()

    # --- pre-vote (docs/design.md): a view change only when a quorum has lost the primary ----------------------

    def _primary_silent(self) -> bool:
        """A backup has not heard from the primary of its view for a primary timeout (jitter aside)."""
        return self.timers.primary.elapsed >= self.config.primary_timeout_ticks

    def _suspect_primary(self) -> None:
        """We have no working primary. Ask the others (and ask again, on a timer) whether they have one; start the
        view change only when a quorum, ourselves included, has said so within a primary timeout. Alone — cut off,
        or able to send but not to receive — we keep our view, so we come back without disturbing anyone."""
        probe = self.timers.probe
        if not probe.running or probe.fired():
            self._send(BROADCAST, StartViewChangeProbe(**self._header()))
            probe.start()
        views = self.votes.views_without_primary(since=self.now - self.config.primary_timeout_ticks)
        if len(views) + 1 < self.config.quorum:
            return
        self._log(f"primary timeout, and {len(views)} others have no primary either")
        # Past every view we heard of (a replica ahead of us in views counts: we have no primary in its view
        # either), so no view change goes back to a view someone has already left.
        self._start_view_change(max(self.view_number, *views) + 1)

    def on_start_view_change_probe(self, message: StartViewChangeProbe) -> None:
        """A replica with no primary asks whether we have one. Count it; if we have none either, this may be the
        word that makes a quorum. Nothing else: a probe never moves a view by itself.

        We have none if our primary is silent — or if the sender is normal in a newer view than ours: that view
        started with a quorum that left ours, so our view (with us as its primary, perhaps) can commit nothing,
        and that view's primary, which would have brought us over (rule 3), is silent too."""
        if self.status is Status.RECOVERING:
            return self._ignore("on_start_view_change_probe", "recovering")
        if message.view < self.view_number:
            # About a view we have left: late (queued during a partition) or from a replica behind us, which
            # moves up itself when it hears our probes (a newer view's), so nothing is lost by not counting it.
            return self._ignore("on_start_view_change_probe", "older view")
        newer = message.view > self.view_number
        if self.status is Status.NORMAL and self.is_primary() and not newer:
            return self._ignore("on_start_view_change_probe", "we are the primary")
        self.votes.heard_without_primary(message.replica, message.view, self.now)
        if self.status is Status.NORMAL and (newer or self._primary_silent()):
            self._suspect_primary()

    # --- view change (§4.2) -----------------------------------------------------------------------------------

    def on_start_view_change(self, message: StartViewChange) -> None:
        if self.status is Status.RECOVERING:
            return self._ignore("on_start_view_change", "recovering")
        if message.view < self.view_number:
            return self._ignore("on_start_view_change", "older view")
        if message.view == self.view_number and self.status is Status.NORMAL:
            if self.is_primary():
                self._answer_with_start_view(message.replica)  # it missed our StartView
            return self._ignore("on_start_view_change", "view already started")
        if message.view > self.view_number:
            self._start_view_change(message.view)
        assert self.status is Status.VIEW_CHANGE and message.view == self.view_number
        self.votes.start_view_change_from.add(message.replica)
        self.votes.heard_without_primary(message.replica, message.view, self.now)
        self._maybe_send_do_view_change()

    def _answer_with_start_view(self, to: int) -> None:
        """A replica that missed our StartView votes for our view again (its votes are re-sent on a timer): send
        it the StartView — the biggest message of a view change — at most once per view-change timeout, so a
        replica behind a slow link is not buried under copies of it."""
        sent = self.votes.start_view_sent_at.get(to)
        if sent is not None and self.now - sent < self.config.view_change_timeout_ticks:
            return self._count("start view: answered recently, not again yet")
        self.votes.start_view_sent_at[to] = self.now
        self._send(to, self._start_view_message())

    def _resume_view_change(self) -> None:
        """After a restart in view-change status: vote again in the same view (the votes were lost)."""
        self.votes.start_view_change_from.add(self.replica)
        if self.is_primary():
            self.votes.do_view_change_from[self.replica] = self._do_view_change_message()
            self.votes.do_view_change_sent = True
        self._send(BROADCAST, StartViewChange(**self._header()))
        self.timers.enter_view_change(self.prng)

    def _start_view_change(self, view: int) -> None:
        """§4.2 step 1: move to `view` in view-change status and tell everyone."""
        assert view > self.view_number
        self._log(f"start view change to view {view}")
        self.view_number = view
        self.status = Status.VIEW_CHANGE
        self.state_transfer = None  # the old log stands as it is (with its last_normal_view) in our vote
        self.snapshots.download = None
        self._reset_view_votes()
        self._rebuild_client_pending()
        self.votes.start_view_change_from.add(self.replica)
        if self.config.primary(view) == self.replica:
            self.votes.do_view_change_from[self.replica] = self._do_view_change_message()
            self.votes.do_view_change_sent = True
        self._outbox.view_state = True
        self._send(BROADCAST, StartViewChange(**self._header()))
        self.timers.enter_view_change(self.prng)
        self._maybe_send_do_view_change()
        self._maybe_start_view()

    def _tick_view_change(self) -> None:
        if self.timers.view_change.fired():
            if self._view_change_stalled():
                self._log("view change timeout: trying the next view")
                self._start_view_change(self.view_number + 1)
                return
            self._count("view change timeout: staying in this view")
            self.timers.view_change.backoff(self.prng)
            if self.votes.do_view_change_sent and not self.is_primary():
                # The one big vote (it carries our log's suffix) goes again at this backed-off pace, not on the
                # re-send timer: over a slow link a DoViewChange is late, not lost, and copies of it queued
                # behind it would only make the view change later still (issue 17's storm at 30 kbit/s).
                self._send(self.primary_index(), self._do_view_change_message())
        if self.timers.view_change_resend.fired():
            self.timers.view_change_resend.reset()
            self._send(BROADCAST, StartViewChange(**self._header()))

    def _view_change_stalled(self) -> bool:
        """Give up on this view for the next? Only if a quorum, us included, still has no primary (fresh word:
        pre-vote) and — unless we are the view's primary — that primary has gone silent (rule 11): while it
        re-sends its StartViewChange it is alive, and what is missing is a vote still on its way."""
        since = self.now - self.config.primary_timeout_ticks
        if not self.is_primary():
            heard = self.votes.without_primary.get(self.primary_index())
            if heard is not None and heard[0] == self.view_number and heard[1] >= since:
                return False
        return len(self.votes.views_without_primary(since=since)) + 1 >= self.config.quorum

    def _maybe_send_do_view_change(self) -> None:
        """§4.2 step 2: after StartViewChange from quorum - 1 others, send DoViewChange to the new primary."""
        votes = self.votes
        if votes.do_view_change_sent or len(votes.start_view_change_from) < self.config.quorum:  # includes us
            return
        votes.do_view_change_sent = True
        self._send(self.primary_index(), self._do_view_change_message())

    def on_do_view_change(self, message: DoViewChange) -> None:
        if self.status is Status.RECOVERING:
            return self._ignore("on_do_view_change", "recovering")
        if message.view < self.view_number:
            return self._ignore("on_do_view_change", "older view")
        if self.config.primary(message.view) != self.replica:
            return self._ignore("on_do_view_change", "we are not the primary of that view")
        if message.view == self.view_number and self.status is Status.NORMAL:
            self._answer_with_start_view(message.replica)  # it missed our StartView
            return self._ignore("on_do_view_change", "view already started")
        if message.view > self.view_number:
            self._start_view_change(message.view)
            if self.status is not Status.VIEW_CHANGE:
                return  # our own vote completed the view (a one-replica quorum)
        assert self.status is Status.VIEW_CHANGE and message.view == self.view_number
        assert self.is_primary()
        self.votes.start_view_change_from.add(message.replica)  # a DoViewChange implies its StartViewChange
        self.votes.heard_without_primary(message.replica, message.view, self.now)
        self.votes.do_view_change_from.setdefault(message.replica, message)
        self._maybe_start_view()

    def _maybe_start_view(self) -> None:
        """§4.2 step 3: with DoViewChange from a quorum *including ourselves*, pick the log with the largest
        (last_normal_view, op_number) among all of them, and the largest commit_number."""
        if self.status is not Status.VIEW_CHANGE or not self.is_primary():
            return
        votes = self.votes.do_view_change_from
        if self.replica not in votes or len(votes) < self.config.quorum:
            return
        best = self.votes.best()
        commit_number = self.votes.commit_number()
        assert commit_number <= best.op_number, "a committed op is missing from the chosen log"
        best_base = best.op_number - len(best.log)
        if best_base > self.commit_number:
            # The chosen log starts after ops we have not executed, and those live only in snapshots: we cannot
            # lead this view. Moving on to the next view is always safe; its primary is another replica, and
            # we catch up from it by snapshot transfer.
            self._count("view change: behind the chosen log's snapshot, skipping the view")
            self._log(f"cannot start view: chosen log starts after op {best_base}, executed {self.commit_number}")
            self._start_view_change(self.view_number + 1)
            return
        self._log(
            f"start view: log of r{best.replica} (v'={best.last_normal_view}, n={best.op_number}), "
            f"k={commit_number}, {len(votes)} votes"
        )
        self._install_log(best.log, best_base)
        self.status = Status.NORMAL
        self.state_transfer = None
        self.last_normal_view = self.view_number
        self._outbox.view_state = True
        self.pipeline.reset(self.view_number)
        self.pipeline.prepared = self.op_number  # the log travels in StartView, not in Prepares
        self._enter_primary(heard=set(votes))
        # Execute first: StartView must carry the largest commit_number of the votes (§4.2 step 3).
        self._commit_up_to(commit_number)
        self._send(BROADCAST, self._start_view_message())
        self._commit_by_quorum()

    def on_start_view(self, message: StartView) -> None:
        if self.status is Status.RECOVERING:
            return self._ignore("on_start_view", "recovering")
        if message.view < self.view_number:
            return self._ignore("on_start_view", "older view")
        if message.replica != self.config.primary(message.view):
            return self._ignore("on_start_view", "sender is not the primary of its view")
        if message.view == self.view_number and self.status is Status.NORMAL and self.state_transfer is None:
            if self.is_primary():
                return self._ignore("on_start_view", "we are the primary of this view")
            # A re-sent StartView: we hold this view's log, possibly more of it. Never go back.
            self._send(self.primary_index(), self._prepare_ok_message())
            return self._ignore("on_start_view", "view already installed")
        if message.commit_number < self.commit_number and message.op_number < self.commit_number:
            return self._ignore("on_start_view", "log shorter than our committed prefix")
        assert message.commit_number <= message.op_number
        base = message.op_number - len(message.log)
        if base > self.commit_number:
            # Its log starts after ops we have not executed (they are in the primary's snapshot): adopt the
            # view and fetch snapshot and log, keeping our old log until all of it is here (rule 3).
            if self.state_transfer is None or message.view != self.view_number:
                self._start_state_transfer(message.view)
            return
        self._log(f"install view {message.view}: n={message.op_number} k={message.commit_number}")
        self.view_number = message.view
        self.snapshots.download = None
        self._install_log(message.log, base)
        self.status = Status.NORMAL
        self.state_transfer = None
        self.last_normal_view = message.view
        self._outbox.view_state = True
        self._reset_view_votes()
        self.timers.enter_backup(self.prng)
        self._commit_up_to(max(self.commit_number, message.commit_number))
        if self.op_number > self.commit_number:
            self._send(self.primary_index(), self._prepare_ok_message())

    # --- recovery (§4.3) --------------------------------------------------------------------------------------

    def _start_recovery(self) -> None:
        self.recovery.begin(self.prng.getrandbits(64))
        self.snapshots.download = None
        self._send(BROADCAST, Recovery(**self._header(), nonce=self.recovery.nonce))
        self.timers.enter_recovering()

    def _ask_recovery_snapshot(self) -> None:
        primary = self.recovery.primary
        assert primary is not None
        if self.snapshots.download is not None:
            self._ask_next_chunk()
        else:
            header = self._header()
            header["view"] = primary.view
            self._send(primary.replica, GetSnapshot(**header, snapshot_op=0, offset=0))
        self.timers.recovery.reset()

    def _tick_recovering(self) -> None:
        if not self.timers.recovery.fired():
            return
        self.timers.recovery.reset()
        if self.recovery.primary is None:
            self._send(BROADCAST, Recovery(**self._header(), nonce=self.recovery.nonce))
            return
        # Ask again (a request or a chunk may have been lost) while the download moves; a primary quiet for
        # several rounds went away or changed view: begin again, with a new nonce.
        progress_at = self.recovery.progress_at
        if self.snapshots.download is not None:
            progress_at = max(progress_at, self.snapshots.download.progress_at)
        if self.now - progress_at <= RECOVERY_STALL_ROUNDS * self.config.recovery_resend_ticks:
            self._ask_recovery_snapshot()
            return
        self._count("recovery: snapshot download stalled, starting over")
        self._start_recovery()

    def on_recovery(self, message: Recovery) -> None:
        if self.status is not Status.NORMAL:
            return self._ignore("on_recovery", f"status {self.status.value}")
        if self.is_primary():
            response = RecoveryResponse(
                **self._header(),
                nonce=message.nonce,
                log=tuple(self.log),
                op_number=self.op_number,
                commit_number=self.commit_number,
            )
        else:
            response = RecoveryResponse(
                **self._header(), nonce=message.nonce, log=None, op_number=None, commit_number=None
            )
        self._send(message.replica, response)

    def on_recovery_response(self, message: RecoveryResponse) -> None:
        if self.status is not Status.RECOVERING:
            return self._ignore("on_recovery_response", f"status {self.status.value}")
        if message.nonce != self.recovery.nonce:
            return self._ignore("on_recovery_response", "other nonce")
        if self.recovery.primary is not None:
            return self._ignore("on_recovery_response", "already fetching the primary's snapshot")
        # §4.3: f + 1 responses from other replicas (a quorum not counting ourselves: we hold nothing).
        if not self.recovery.add(message, quorum=self.config.quorum, primary_of=self.config.primary):
            return
        primary = self.recovery.primary_answer(self.config.primary)
        assert primary.op_number is not None and primary.log is not None
        if primary.op_number > len(primary.log):
            # Its log starts after a snapshot: fetch that (still recovering: we vote for nothing meanwhile).
            self._log(f"recovery: fetching the snapshot of r{primary.replica} (view {primary.view})")
            self.recovery.primary = primary
            self.recovery.progress_at = self.now
            self.snapshots.download = None
            self._ask_recovery_snapshot()
            return
        self._finish_recovery(primary)

    def _finish_recovery(self, primary: RecoveryResponse, snapshot: bytes | None = None) -> None:
        """§4.3: take the primary's state. With a snapshot (fetched after its answer, from the same primary in
        the same view, so at least as recent), the log is the part of its answer after the snapshot."""
        assert primary.log is not None and primary.commit_number is not None and primary.op_number is not None
        assert self.commit_number == 0 and self.op_number == 0  # a fresh state machine
        self._log(f"recovered from r{primary.replica} in view {primary.view}")
        self.view_number = primary.view
        self.last_normal_view = primary.view
        self.status = Status.NORMAL
        self.recovery.primary = None
        base = primary.op_number - len(primary.log)
        if snapshot is None:
            assert base == 0
            self.log = list(primary.log)
            self.op_number = len(self.log)
            self._outbox.log_changed_from(1)
        else:
            snapshot_op = snapshots.op_number_of(snapshot)
            assert base <= snapshot_op  # the primary's log base never passes its snapshot
            self._install_snapshot(snapshot, list(primary.log[snapshot_op - base :]))
        if self.log:
            self.cluster_time.learn(self.log[-1].timestamp)
        self._outbox.view_state = True
        self._rebuild_client_pending()
        self._commit_up_to(max(self.commit_number, min(primary.commit_number, self.op_number)))
        self._reset_view_votes()
        self.timers.enter_backup(self.prng)
        if self.op_number > self.commit_number:
            self._send(self.primary_index(), self._prepare_ok_message())

    # --- state transfer (§5.2, rules 3 and 7) -----------------------------------------------------------------

    def _start_state_transfer(self, view: int) -> None:
        """Rule 3 / §5.2: adopt the view and fetch its log, after our commit_number, from its primary.

        The paper truncates the log to commit_number right here. That is unsafe, and not only through
        last_normal_view (Vanlightly's finding): the uncommitted suffix we would drop may hold an op that
        was committed in an older view with *our* PrepareOk, by a primary whose commit we never heard of. If
        we forget it and join the next view change, a quorum without that op can form (scenario test
        `test_state_transfer_keeps_an_op_committed_with_our_ack`). So we keep the old log, with the old
        last_normal_view — exactly what a replica that never saw this view would report — and replace the
        suffix only once the whole of the view's log has arrived (`_finish_state_transfer`).
        """
        assert view >= self.view_number
        self._log(f"state transfer to view {view} (commit_number {self.commit_number})")
        self._count("state transfer started")
        self.view_number = view
        self.status = Status.NORMAL
        self.state_transfer = StateTransfer(base=self.commit_number)
        self.snapshots.download = None
        self._outbox.view_state = True
        self._reset_view_votes()
        self._rebuild_client_pending()
        self.timers.enter_backup(self.prng)
        self._request_state(force=True)

    def _request_state(self, *, force: bool = False) -> None:
        repair = self.timers.repair
        if force or not repair.running or repair.fired():
            download = self.snapshots.download
            if download is not None and download.view == self.view_number:
                return self._ask_next_chunk()
            self._send(self.primary_index(), GetState(**self._header(), op_number=self._state_op_number()))
            repair.reset()

    def on_get_state(self, message: GetState) -> None:
        if not self._accept_as_primary("on_get_state", message.view):  # rule 7: only the primary serves state
            return
        if message.op_number > self.op_number:
            return self._ignore("on_get_state", "op_number beyond ours")
        if message.op_number < self.log_base:
            # What it misses is folded into our snapshot: send that first; it asks for the log after it.
            self._count("on_get_state: snapshot sent")
            return self._send_snapshot_chunk(message.replica, self.snapshots.op_number, 0)
        entries: tuple[LogEntry, ...] = ()
        if message.op_number < self.op_number:
            cfg = self.config
            entries = self._entries_after(message.op_number, cfg.new_state_entries_max, cfg.new_state_bytes_max)
        # §5.2 NEWSTATE<v, l, n, k>: n and k are ours; l is a bounded chunk, the requester asks for the rest.
        self._send(
            message.replica,
            NewState(
                **self._header(), op_number=self.op_number, commit_number=self.commit_number, entries=entries
            ),
        )

    def on_new_state(self, message: NewState) -> None:
        if self.status is not Status.NORMAL:
            return self._ignore("on_new_state", f"status {self.status.value}")
        if message.view != self.view_number:
            return self._ignore("on_new_state", "other view")
        if message.replica != self.primary_index():
            return self._ignore("on_new_state", "sender is not the primary")
        if self.is_primary():
            return self._ignore("on_new_state", "we are the primary")
        have = self._state_op_number()
        if message.op_number < have:
            return self._ignore("on_new_state", "would move op_number backwards")
        if message.entries and message.entries[0].op_number != have + 1:
            return self._ignore("on_new_state", "does not follow what we hold")
        assert message.commit_number <= message.op_number
        self.timers.primary.reset()
        transfer = self.state_transfer
        if transfer is not None:
            transfer.entries.extend(message.entries)
            if transfer.op_number() == message.op_number:
                # We hold everything the primary had when it answered, so at least the log this view started
                # with: only now may it replace our suffix and become our last normal view.
                self._finish_state_transfer(transfer)
        else:
            for entry in message.entries:
                self._append_entry(entry)
            if message.entries:
                self.cluster_time.learn(message.entries[-1].timestamp)
        if self._state_op_number() < message.op_number:
            self._request_state(force=True)
        else:
            self.timers.repair.stop()
        if self.state_transfer is None:
            # A NewState may know less of the commit point than we do (a new primary learns commit_number
            # from its voters only); _commit_up_to never moves it backwards (rule 7).
            self._commit_up_to(min(message.commit_number, self.op_number))
            self._send(self.primary_index(), self._prepare_ok_message())

    def _finish_state_transfer(self, transfer: StateTransfer) -> None:
        base = transfer.base
        assert base == self.commit_number  # nothing commits during a transfer
        self._log(f"state transfer done: ops {base + 1}..{transfer.op_number()}")
        if transfer.snapshot is not None:
            self._install_snapshot(transfer.snapshot, transfer.entries)
        else:
            del self.log[base - self.log_base :]
            self.log.extend(transfer.entries)
            self.op_number = self.log_base + len(self.log)
            self._outbox.log_changed_from(base + 1)
        if self.log:
            self.cluster_time.learn(self.log[-1].timestamp)
        self.state_transfer = None
        self.last_normal_view = self.view_number
        self._outbox.view_state = True
        self._rebuild_client_pending()
        self.timers.repair.stop()

    # --- snapshots -------------------------------------------------------------------------------------------

    def on_get_snapshot(self, message: GetSnapshot) -> None:
        """The primary serves its snapshot in chunks (rule 7: only the primary serves state)."""
        if not self._accept_as_primary("on_get_snapshot", message.view):
            return
        if self.snapshots.op_number == 0:
            return self._ignore("on_get_snapshot", "no snapshot yet")
        self._send_snapshot_chunk(message.replica, message.snapshot_op, message.offset)

    def _send_snapshot_chunk(self, to: int, snapshot_op: int, offset: int) -> None:
        chunk_bytes = self.config.snapshot_chunk_bytes
        self._send(
            to, self.snapshots.chunk(self._header(), to, snapshot_op, offset, now=self.now, size=chunk_bytes)
        )

    def on_snapshot_chunk(self, message: SnapshotChunk) -> None:
        if message.replica != self.config.primary(message.view):
            return self._ignore("on_snapshot_chunk", "sender is not the primary of its view")
        if self.status is Status.RECOVERING:
            primary = self.recovery.primary
            if primary is None or message.view != primary.view:
                return self._ignore("on_snapshot_chunk", "recovering, not fetching from this view")
            assert primary.op_number is not None and primary.log is not None
            if message.snapshot_op < primary.op_number - len(primary.log):
                return self._ignore("on_snapshot_chunk", "older than the log the primary recovers us with")
        elif self.status is Status.VIEW_CHANGE:
            return self._ignore("on_snapshot_chunk", "view change")
        elif message.view != self.view_number:
            return self._ignore("on_snapshot_chunk", "other view")
        elif self.is_primary():
            return self._ignore("on_snapshot_chunk", "we are the primary")
        if message.snapshot_op <= self.commit_number:  # installing it would move commit_number back
            self._drop_overtaken_download()
            return self._ignore("on_snapshot_chunk", "snapshot not ahead of our commit_number")
        refused = self.snapshots.append_chunk(message, now=self.now, count=self._count)
        if refused is not None:
            return self._ignore("on_snapshot_chunk", refused)
        self.timers.primary.reset()
        outcome = self.snapshots.finish_download()
        if outcome is None:
            return self._ask_next_chunk()
        if isinstance(outcome, str):
            return self._ignore("on_snapshot_chunk", outcome)
        self._snapshot_downloaded(outcome)

    def _ask_next_chunk(self) -> None:
        download = self.snapshots.download
        assert download is not None
        header = self._header()
        header["view"] = download.view  # a recovering replica asks in the view it is recovering into
        self._send(
            self.config.primary(download.view),
            GetSnapshot(**header, snapshot_op=download.snapshot_op, offset=len(download.data)),
        )
        self.timers.repair.reset()

    def _snapshot_downloaded(self, data: bytes) -> None:
        if self.status is Status.RECOVERING:
            assert self.recovery.primary is not None
            return self._finish_recovery(self.recovery.primary, snapshot=data)
        if self.state_transfer is not None:
            # Keep it on the side with the view's log after it, like the rest of the transfer.
            self.state_transfer.take_snapshot(data)
            return self._request_state(force=True)
        # The same view: our log is a prefix of the primary's, so what follows the snapshot in it stays.
        op_number = snapshots.op_number_of(data)
        kept = self.log[op_number - self.log_base :] if self.op_number > op_number else []
        self._install_snapshot(data, kept)
        self._request_state(force=True)

    # --- invariants -------------------------------------------------------------------------------------------

    def invariants(self) -> None:
        """Checked after every step by the tests and the simulator (TigerBeetle style)."""
        assert 0 <= self.log_base <= self.commit_number <= self.op_number == self.log_base + len(self.log)
        assert not self.log or self.log[-1].op_number == self.op_number
        assert self.log_base <= self.snapshots.op_number <= self.commit_number or self.status is Status.RECOVERING
        assert self.last_normal_view <= self.view_number
        if self.status is Status.NORMAL and self.state_transfer is None:
            assert self.last_normal_view == self.view_number
        if self.state_transfer is not None:
            assert self.status is Status.NORMAL and self.last_normal_view < self.view_number
            assert self.commit_number == self.state_transfer.base
        if self.status is Status.NORMAL and self.is_primary():
            assert self.state_transfer is None
            assert self.pipeline.view == self.view_number
            assert all(op <= self.op_number for op in self.pipeline.prepare_ok.values())
            assert self.op_number - self.commit_number <= self.config.pipeline_ops_max
        else:
            assert not self.pipeline.request_queue
        assert len(self.pipeline.request_queue) <= self.config.request_queue_max
        self.client_table.invariants()
        self.snapshots.invariants()
