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

from zvsr.constants import PRIMARY_QUIET_AFTER_QUORUM_TIMEOUTS, READS_PENDING_MAX, RECOVERY_STALL_ROUNDS
from zvsr.protocol import membership, snapshots
from zvsr.protocol.client_table import REGISTER_REQUEST_NUMBER, SESSION_EXPIRED_TEXT, Admission
from zvsr.protocol.membership import MembershipError, is_reconfiguration, parse_reconfiguration
from zvsr.protocol.messages import (
    ERROR_BAD_REQUEST,
    ERROR_BUSY,
    ERROR_SESSION_EXPIRED,
    ERROR_UNAVAILABLE,
    ERROR_VIEW_CHANGE,
    INTERNAL_CLIENT_ID,
    Commit,
    DoViewChange,
    EpochStarted,
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
    StartEpoch,
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
        """Dispatch one decoded replica message: rule 1 checks first (cluster, epoch, sender), then the kind's
        handler; a reconfiguration it committed starts the next epoch once the handler is done."""
        if message.cluster != self.config.cluster:
            self._ignore("on_message", "other cluster")
        elif message.replica == self.replica:
            self._ignore("on_message", "sender claims our id")
        elif message.epoch != self.membership.epoch:
            self._on_other_epoch(message)
        elif message.replica not in self.membership.ids and type(message) is not StartEpoch:
            self._ignore("on_message", "sender is not a member of our epoch")
        elif (
            self.status is Status.TRANSITIONING or self.status is Status.LEAVING
        ) and not isinstance(message, (StartEpoch, EpochStarted)):
            self._ignore("on_message", f"status {self.status.value}")
        else:
            self._dispatch(message)
        if self.next_membership is not None:
            self._enter_epoch()

    def _dispatch(self, message: ReplicaMessage) -> None:
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
            case StartEpoch():
                self.on_start_epoch(message)
            case EpochStarted():
                self.on_epoch_started(message)
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
        elif self.status is Status.RECOVERING:
            self._tick_recovering()
        if self.catch_up_from is not None:
            self.catch_up_timer.tick()
            if self.catch_up_timer.fired():
                self._tick_catch_up()
        announce = self.epoch_announce
        if announce.running:
            announce.tick()
            if announce.fired():
                self._announce_epoch()
        if self.next_membership is not None:
            self._enter_epoch()

    def _enter_initial_role(self) -> None:
        """At construction: the role the (restored) state implies, with its timers and first messages."""
        if self.status is Status.RECOVERING:
            if self.replica not in self.membership:
                return self._stop("recovering, but not a member of the current epoch")
            self._start_recovery()
        elif self.status is Status.TRANSITIONING:
            self.timers.enter_transitioning()  # a new replica: it waits to hear of an epoch that includes it
        elif self.status is Status.LEAVING:
            self.timers.enter_transitioning()
            self.epoch_announce.start()
            self._announce_epoch()
        elif self.status is Status.VIEW_CHANGE:
            self._resume_view_change()
        elif self.is_primary() and not self.first_start:
            # Restarted from disk as the primary of its view: leave that view for the next rather than go on
            # proposing in it. What it prepared in the view may be gone from its disk — a write that replaced
            # its log with a newer view's (a StartView, an epoch's catch-up) can be torn after the log and
            # before the view state — and a primary that reused those op numbers would make two different ops
            # at one (view, op_number) (`zvsr sim`, seed 913). The view change is the ordinary one.
            self._log(f"restarted as the primary of view {self.view_number}: moving to the next view")
            self._start_view_change(self.view_number + 1)
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
        self._on_request(request)
        if self.next_membership is not None:  # a one-replica quorum commits as it appends
            self._enter_epoch()

    def _on_request(self, request: Request) -> None:
        if request.client_id == INTERNAL_CLIENT_ID:
            text = "client_id 0 is reserved for the cluster's own ops"
            return self._answer_error(request, ERROR_BAD_REQUEST, text)
        if request.request_number == REGISTER_REQUEST_NUMBER and request.operation:
            return self._answer_error(request, ERROR_BAD_REQUEST, "a register request (number 0) has no operation")
        if self.status is Status.RECOVERING:
            return self._answer_error(request, ERROR_UNAVAILABLE, "replica is recovering")
        if self.status is Status.TRANSITIONING:
            return self._answer_error(request, ERROR_UNAVAILABLE, "replica is catching up with a new epoch")
        if self.status is Status.LEAVING:
            text = f"replica left the configuration in epoch {self.membership.epoch}"
            return self._answer_error(request, ERROR_UNAVAILABLE, text)
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
            cached = self.client_table.cached_result(request.client_id, request.request_number)
            return self._reply(request.client_id, request.request_number, cached)
        if admission is Admission.SESSION_EXPIRED:
            return self._answer_error(request, ERROR_SESSION_EXPIRED, SESSION_EXPIRED_TEXT)
        if admission is not Admission.NEW:
            return self._count(f"on_request: {admission.value}")
        if not self._quorum_recently_heard():
            return self._answer_error(request, ERROR_UNAVAILABLE, "primary cannot reach a quorum")
        if self.reconfiguration_op:
            if is_reconfiguration(request.operation):
                text = f"another reconfiguration is in progress (op {self.reconfiguration_op})"
                return self._answer_error(request, ERROR_BUSY, text)
            # §7: the reconfiguration is the last op of its epoch; the next epoch's primary takes this one.
            return self._answer_error(request, ERROR_VIEW_CHANGE, "reconfiguration in progress")
        if self.reads.enabled and self._is_read(request):
            return self._admit_read(request)
        if is_reconfiguration(request.operation):
            return self._admit_reconfiguration(request)
        if self.op_number - self.commit_number >= self.config.pipeline_ops_max:
            if len(self.pipeline.request_queue) >= self.config.request_queue_max:
                return self._answer_error(request, ERROR_BUSY, "request queue is full")
            self.pipeline.request_queue.append(request)
            self.client_table.add_pending(request.client_id, request.request_number, None)
        else:
            self._append_request(request)

    def _admit_reconfiguration(self, request: Request) -> None:
        """§7: a new configuration goes through the log like any op, only for the current epoch, one at a time,
        and is the last op of its epoch. Every refusal is a clear error that is never retried as it is."""
        if not self.config.reconfiguration:
            text = "reconfiguration is not enabled for this cluster's runtime"
            return self._answer_error(request, ERROR_BAD_REQUEST, text)
        try:
            change = parse_reconfiguration(request.operation)
        except MembershipError as error:
            return self._answer_error(request, ERROR_BAD_REQUEST, f"malformed reconfiguration: {error}")
        if change.epoch != self.membership.epoch:
            text = f"reconfiguration of epoch {change.epoch}, but the cluster is in epoch {self.membership.epoch}"
            return self._answer_error(request, ERROR_BAD_REQUEST, text)
        refused = self.membership.check_change(change.members)
        if refused is not None:
            return self._answer_error(request, ERROR_BAD_REQUEST, refused)
        if self.pipeline.request_queue or self.op_number - self.commit_number >= self.config.pipeline_ops_max:
            return self._answer_error(request, ERROR_BUSY, "pipeline full; retry the reconfiguration")
        self._log(f"reconfiguration admitted: epoch {self.membership.epoch + 1}, members {change.members}")
        self._append_request(request)
        self.reconfiguration_op = self.op_number

    # --- reads without a log entry (reads.py) ------------------------------------------------------------------

    def _is_read(self, request: Request) -> bool:
        """A read-only op of a client the table knows (its first request goes through the log: reads.py)."""
        queries = self.queries
        return (
            queries is not None and request.client_id in self.client_table and queries.read_only(request.operation)
        )

    def _admit_read(self, request: Request) -> None:
        reads = self.reads
        self._sync_reads()
        lease = reads.lease_until(self.membership.quorum - 1)
        if lease is not None and self.commit_number >= reads.view_start_op and self.cluster_time.clock() < lease:
            self._count("read served: lease")
            return self._answer_read(request)
        if len(reads.pending) >= READS_PENDING_MAX:
            return self._answer_error(request, ERROR_BUSY, "too many reads waiting")
        reads.wait(request, self.commit_number)

    def _serve_reads(self) -> None:
        """Answer, in arrival order, each waiting read whose round a quorum has echoed and whose read index we
        have executed; drop them all if we are no longer the primary of their view."""
        reads = self.reads
        if self.status is not Status.NORMAL or not self.is_primary():
            self._count_reads_dropped(reads.drop())
            return
        self._sync_reads()
        confirmed = reads.confirmed_round(self.membership.quorum - 1)
        pending = reads.pending
        while pending and pending[0].read_round <= confirmed and pending[0].read_index <= self.commit_number:
            self._count("read served: read index")
            self._answer_read(pending.popleft().request)

    def _answer_read(self, request: Request) -> None:
        queries = self.queries
        assert queries is not None and self.status is Status.NORMAL and self.is_primary()
        self._reply(request.client_id, request.request_number, queries.query(request.operation))
        self._outbox.ready.reads.append((request.client_id, request.request_number, self.commit_number))

    def _sync_reads(self) -> None:
        self._count_reads_dropped(self.reads.sync(self.membership.epoch, self.view_number, self.op_number))

    def _count_reads_dropped(self, dropped: int) -> None:
        for _ in range(dropped):  # their clients retry
            self._count("reads dropped: not the primary of their view")

    def _promised_not_to_change_view(self, handler: str, sender: int | None = None) -> bool:
        """Lease mode: a backup in normal status that heard its primary within its promise (reads.py) neither
        starts nor joins a view change yet; the votes are re-sent, so it joins once the promise ends. A vote from
        that primary itself frees it: the primary left its view, and serves no read there any more (a planned
        transfer of the primary role costs no promise)."""
        if sender is not None and sender == self.primary_index():
            return False
        if self.status is Status.NORMAL and self.reads.promised(self.cluster_time.clock()):
            self._ignore(handler, "read lease promised to our primary")
            return True
        return False

    def _tick_primary(self) -> None:
        if not self._quorum_recently_heard(PRIMARY_QUIET_AFTER_QUORUM_TIMEOUTS * self.config.quorum_timeout_ticks):
            # Check-quorum: a primary that has heard no quorum for this long can commit nothing. Backups that still
            # hear it (it can send but not receive) would keep it forever: quiet, it lets them lose it and replace
            # it by pre-vote. Its timers keep running, so heartbeats resume the tick a quorum is heard again.
            self._count("primary quiet: no quorum heard (ticks)")
            return
        if self.timers.heartbeat.fired():
            self.timers.heartbeat.reset()
            if self.reads.lease_mode:
                self.reads.start_round(self.cluster_time.clock())  # renews the read lease while idle
            self._send(BROADCAST, self._commit_message())
        if self.timers.prepare_resend.fired():
            self.timers.prepare_resend.reset()
            self._resend_stalled_prepares()
        self._propose_due()

    def _propose_due(self) -> None:
        """Put the app's timer that came due (a lease's expiry) through the log as the cluster's own op. Only
        the primary asks, with its cluster time, one op at a time: a backup never acts on its own clock, and an
        op a deposed primary proposes cannot commit (its view's quorum has moved on)."""
        pipeline = self.pipeline
        if pipeline.internal_op > self.commit_number or self.reconfiguration_op:
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

    def transfer_primary(self, to: int) -> str | None:
        """Planned maintenance: hand the primary role to member `to` by a view change started on purpose — to
        the next view `to` leads — so restarting this replica costs no failure-detection timeout. Refused (the
        reason returned) unless we are the primary, `to` is another member that has acknowledged everything we
        committed (it can lead at once), and no reconfiguration is in flight. The view change is the ordinary
        one: it is safe whoever takes part, and if `to` cannot lead after all, the view after it takes over."""
        if self.status is not Status.NORMAL or not self.is_primary():
            return "not the primary in normal status"
        if to == self.replica:
            return "already the primary"
        if to not in self.membership:
            return f"replica {to} is not a member of epoch {self.membership.epoch}"
        if self.reconfiguration_op:
            return "a reconfiguration is in progress"
        acknowledged = self.pipeline.prepare_ok.get(to, 0)
        if acknowledged < self.commit_number:
            return f"replica {to} is behind (acknowledged op {acknowledged}, committed {self.commit_number})"
        view = self.view_number + 1
        while self.membership.primary(view) != to:
            view += 1
        self._log(f"transferring the primary role to r{to}: view change to view {view}")
        self._count("primary transfer")
        self._start_view_change(view)
        return None

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
        if message.read_round:
            self._sync_reads()
            self.reads.confirm(message.replica, message.read_round)
        self._commit_by_quorum()

    def _commit_by_quorum(self) -> None:
        """§4.1 step 5: an op is committed once quorum - 1 backups (plus us) acknowledged it in this view."""
        needed = self.membership.quorum - 1
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
        peers = self.membership.ids if heard is None else heard
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
        self.reads.promise(self.cluster_time.clock())
        self._send(self.primary_index(), self._prepare_ok_message(message.read_round))
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
        self.reads.promise(self.cluster_time.clock())
        # Also tells the primary we are alive, and echoes its read round.
        self._send(self.primary_index(), self._prepare_ok_message(message.read_round))
        self._commit_up_to(min(message.commit_number, self.op_number))

    def _accept_from_primary(self, handler: str, view: int, sender: int) -> bool:
        """Guards shared by Prepare and Commit: status, view, sender is that view's primary (rules 1, 3, 4)."""
        if self.status is Status.RECOVERING:
            self._ignore(handler, "recovering")
            return False
        if view < self.view_number:
            self._ignore(handler, "older view")
            return False
        if sender != self.membership.primary(view):
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
        if len(views) + 1 < self.membership.quorum:
            return
        if self._promised_not_to_change_view("suspect primary"):
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
            if self._promised_not_to_change_view("on_start_view_change", message.replica):
                return
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
        if self.membership.primary(view) == self.replica:
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
            if heard is not None and heard[0] == self.view_number and heard[2] >= since:
                return False
        # Word kept up for half a re-send period at least: a stuck replica re-sends its StartViewChange on that
        # timer, while a backlog of stale votes delivered in one burst after a partition has no such span.
        lasting = self.config.view_change_resend_ticks // 2
        views = self.votes.views_without_primary(since=since, lasting=lasting)
        return len(views) + 1 >= self.membership.quorum

    def _maybe_send_do_view_change(self) -> None:
        """§4.2 step 2: after StartViewChange from quorum - 1 others, send DoViewChange to the new primary."""
        votes = self.votes
        if votes.do_view_change_sent or len(votes.start_view_change_from) < self.membership.quorum:  # includes us
            return
        votes.do_view_change_sent = True
        self._send(self.primary_index(), self._do_view_change_message())

    def on_do_view_change(self, message: DoViewChange) -> None:
        if self.status is Status.RECOVERING:
            return self._ignore("on_do_view_change", "recovering")
        if message.view < self.view_number:
            return self._ignore("on_do_view_change", "older view")
        if self.membership.primary(message.view) != self.replica:
            return self._ignore("on_do_view_change", "we are not the primary of that view")
        if message.view == self.view_number and self.status is Status.NORMAL:
            self._answer_with_start_view(message.replica)  # it missed our StartView
            return self._ignore("on_do_view_change", "view already started")
        if message.view > self.view_number:
            if self._promised_not_to_change_view("on_do_view_change", message.replica):
                return
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
        if self.replica not in votes or len(votes) < self.membership.quorum:
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
        if message.replica != self.membership.primary(message.view):
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
        if not self.recovery.add(message, quorum=self.membership.quorum, primary_of=self.membership.primary):
            return
        primary = self.recovery.primary_answer(self.membership.primary)
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
        if message.replica != self.membership.primary(message.view):
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
            self.membership.primary(download.view),
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

    # --- epochs: reconfiguration (§7) -------------------------------------------------------------------------

    def _enter_epoch(self) -> None:
        """§7.1: we executed the reconfiguration that ends our epoch (at the end of the step that did). Every
        replica that executes it moves on; nothing of the old epoch is acted on after this."""
        new = self.next_membership
        assert new is not None and new.epoch == self.membership.epoch + 1
        assert self.commit_number == new.start_op == self.op_number, "ops after the epoch's last op"
        was_member = self.replica in self.membership and self.status is not Status.TRANSITIONING
        self._set_membership(new)
        self._begin_epoch(was_member=was_member)

    def _begin_epoch(self, *, was_member: bool) -> None:
        """Start the first view of our (new) epoch in the role its configuration gives us: a member with the log
        up to its start op (a backup, or the primary of that view); a replica that left (it serves the new members
        until a quorum of them has started); or, never a member, still catching up."""
        epoch = self.membership
        self._log(f"epoch {epoch.epoch} from op {epoch.start_op}: members {epoch.ids}")
        self._count("epoch entered")
        self.view_number = epoch.start_view
        self.last_normal_view = epoch.start_view
        self.state_transfer = None
        self.snapshots.download = None
        self._reset_view_votes()
        self.pipeline.prepared = self.op_number
        self._rebuild_client_pending()
        self._outbox.view_state = True  # (epoch, first view) and the commit_number that reached the epoch
        if self.replica in epoch or was_member or self.replica in epoch.old:
            self.catch_up_from = None  # we belong to it, or left it: nothing more to catch up
            self.catch_up_timer.stop()
            self.catch_up_intact = True
        if self.replica in epoch:
            self.status = Status.NORMAL
            if self.is_primary():
                self._enter_primary()
            else:
                self.timers.enter_backup(self.prng)
            if not was_member:  # we joined: the replicas that leave may stop once enough of us have started
                for leaving in epoch.leaving():
                    self._send(leaving, EpochStarted(**self._header()))
        elif was_member or self.replica in epoch.old:
            self.status = Status.LEAVING
            self.timers.enter_transitioning()
            self.snapshots.download = None
        else:
            assert self.status is Status.TRANSITIONING
            return
        self.epoch_announce.start()
        self._announce_epoch()

    def _announce_epoch(self) -> None:
        """StartEpoch to the members that have not said EpochStarted: a replica that stays tells the joiners
        (they hold nothing and hear from nobody else until they do); one that leaves tells every member."""
        epoch = self.membership
        if self.status is Status.LEAVING:
            targets = epoch.ids
        elif self.status is Status.NORMAL or self.status is Status.VIEW_CHANGE:
            targets = epoch.joining()
        else:
            targets = ()
        pending = [i for i in targets if i != self.replica and i not in self.epoch_started_from]
        if not pending:
            self.epoch_announce.stop()
            return
        message = StartEpoch(**self._header(), op_number=epoch.start_op, membership=epoch.encode())
        for replica in pending:
            self._send(replica, message)
        self.epoch_announce.reset()

    def on_start_epoch(self, message: StartEpoch) -> None:
        """§7.1/7.2: epoch `message.epoch` started. Ours, if we are a started member: say so. A later one: our
        epoch is over — a recovering replica recovers in the new one; any other fetches the committed ops up to
        it (`_catch_up`), and never acts on the old epoch again."""
        if message.epoch == self.membership.epoch:
            if self.status is Status.NORMAL or self.status is Status.VIEW_CHANGE:
                self._send(message.replica, EpochStarted(**self._header()))
            return self._ignore("on_start_epoch", "our epoch")
        assert message.epoch > self.membership.epoch
        try:
            announced = membership.decode(message.membership)
        except MembershipError as error:
            return self._ignore("on_start_epoch", f"malformed configuration ({error})")
        if announced.epoch != message.epoch or announced.start_op != message.op_number:
            return self._ignore("on_start_epoch", "configuration does not match the message")
        if self.status is Status.LEAVING:
            return self._stop("the cluster moved past the epoch we left")
        if self.status is Status.RECOVERING:
            # We hold nothing, so there is nothing to fetch: ask the new epoch's members for our state instead.
            self._log(f"recovering into epoch {announced.epoch}")
            self._set_membership(announced)
            if self.replica not in announced:
                return self._stop("recovering, but not a member of the current epoch")
            return self._start_recovery()
        self._catch_up(message.replica)

    def on_epoch_started(self, message: EpochStarted) -> None:
        self.epoch_started_from.add(message.replica)
        if self.status is Status.LEAVING and len(self.epoch_started_from) >= self.membership.quorum:
            self._stop(f"a quorum of epoch {self.membership.epoch} started it")

    def _stop(self, reason: str) -> None:
        if not self.stopped:
            self._log(f"stopping: {reason}")
            self._count("stopped")
        self.stopped = True
        self.epoch_announce.stop()
        self.timers.enter_transitioning()

    def _on_other_epoch(self, message: ReplicaMessage) -> None:
        """A message of another epoch never changes our state as it is. An older one: the sender lags — serve
        it committed state if it asks, else tell it the epoch (§7.2). A newer one: ours is over."""
        if message.epoch < self.membership.epoch:
            if self.status is Status.RECOVERING:
                return self._ignore("on_message", "older epoch, and we are recovering")
            match message:
                case GetState():
                    return self._serve_catch_up(message)
                case GetSnapshot():
                    return self._serve_catch_up_snapshot(message)
                case StartEpoch() | EpochStarted():
                    return self._ignore("on_message", "older epoch")
                case _:
                    self._tell_epoch(message.replica)
                    return self._ignore("on_message", "older epoch")
        match message:
            case StartEpoch():
                self.on_start_epoch(message)
            case NewState():
                self._on_catch_up_state(message)
            case SnapshotChunk():
                self._on_catch_up_chunk(message)
            case Recovery():  # its sender holds nothing it could serve us
                self._ignore("on_message", "newer epoch, from a recovering replica")
            case _:
                if self.status is Status.RECOVERING:
                    return self._ignore("on_message", "newer epoch, recovering: waiting for its StartEpoch")
                if self.status is Status.LEAVING:
                    return self._stop("the cluster moved past the epoch we left")
                self._catch_up(message.replica)

    def _tell_epoch(self, to: int) -> None:
        """§7.2: StartEpoch to a replica we heard from in an older epoch, at most once per resend period."""
        told = self.told_epoch_at.get(to)
        if told is not None and self.now - told < self.config.view_change_resend_ticks:
            return
        self.told_epoch_at[to] = self.now
        epoch = self.membership
        self._send(to, StartEpoch(**self._header(), op_number=epoch.start_op, membership=epoch.encode()))

    def _catch_up(self, source: int) -> None:
        """A replica of a later epoch (`source`) showed itself: our epoch is over. Fetch the committed ops after
        our commit_number from it and execute them, entering each epoch they start, until we reach one we belong
        to (`_on_catch_up_state`). Committed ops are the same on every replica, so any replica of a later epoch
        may serve them. A member of its (old) epoch keeps its role meanwhile: if every replica that holds the next
        epoch fails, the old epoch's own view change must still be able to finish the reconfiguration (§7.3)."""
        if self.catch_up_from is not None and not self.catch_up_stale:
            return  # asked already (maybe someone else): the catch-up timer asks again if nothing comes
        if self.catch_up_from is None:
            self._log(f"epoch {self.membership.epoch} is over: catching up from r{source}")
            self._count("epoch over: catching up")
            self.catch_up_silent = 0
        if source != self.catch_up_from and self.status is Status.TRANSITIONING:
            self.snapshots.download = None  # a download continues from the replica it started with only
        self.catch_up_from = source
        self.catch_up_stale = False
        self._ask_catch_up()

    def _ask_catch_up(self) -> None:
        source = self.catch_up_from
        assert source is not None
        download = self.snapshots.download
        if download is not None and self.status is Status.TRANSITIONING:
            ask = GetSnapshot(**self._header(), snapshot_op=download.snapshot_op, offset=len(download.data))
            self._send(source, ask)
        else:
            self._send(source, GetState(**self._header(), op_number=self.commit_number))
        self.catch_up_timer.reset()

    def _tick_catch_up(self) -> None:
        """Nothing came since the last ask: ask again, but take the next replica of a later epoch that shows itself
        instead (this one may have crashed). A member of its epoch whose log is intact gives up after a while and
        takes part in its old epoch again: a view change there finishes the reconfiguration if nobody else can."""
        self._count("catch up: asking again")
        self.catch_up_stale = True
        self.catch_up_silent += 1
        if (
            self.status is Status.TRANSITIONING
            and self.catch_up_intact
            and self.replica in self.membership
            and self.catch_up_silent >= RECOVERY_STALL_ROUNDS
        ):
            self._count("catch up: source silent, back to the old epoch")
            self.catch_up_from = None
            self.catch_up_timer.stop()
            return self._start_view_change(self.view_number + 1)
        self._ask_catch_up()

    def _to_transitioning(self) -> None:
        """Stop taking part in our (old) epoch: what we are about to hold is not one of its views' logs."""
        if self.status is Status.TRANSITIONING:
            return
        self._count("catch up: left the old epoch's views")
        self.status = Status.TRANSITIONING
        self.state_transfer = None
        self.snapshots.download = None
        self._reset_view_votes()
        self._rebuild_client_pending()
        self.timers.enter_transitioning()

    def _serve_catch_up(self, message: GetState) -> None:
        """A replica of an older epoch asks for what follows its commit_number: committed ops only, or our snapshot
        if they are folded into it."""
        have = message.op_number
        if have < self.log_base:
            self._count("catch up: snapshot served")
            return self._send_snapshot_chunk(message.replica, self.snapshots.op_number, 0)
        if have >= self.commit_number:
            return self._ignore("on_get_state", "older epoch, nothing committed after its op_number")
        cfg = self.config
        entries = self._entries_after(have, cfg.new_state_entries_max, cfg.new_state_bytes_max)
        entries = entries[: self.commit_number - have]
        self._count("catch up: ops served")
        self._send(
            message.replica,
            NewState(
                **self._header(), op_number=self.commit_number, commit_number=self.commit_number, entries=entries
            ),
        )

    def _serve_catch_up_snapshot(self, message: GetSnapshot) -> None:
        if self.snapshots.op_number == 0:
            return self._ignore("on_get_snapshot", "older epoch, no snapshot yet")
        self._send_snapshot_chunk(message.replica, message.snapshot_op, message.offset)

    def _on_catch_up_state(self, message: NewState) -> None:
        """Committed ops from a later epoch, following our commit_number, taken one at a time: one we hold
        identically is executed where it is; one we lack, or hold differently, takes us out of our old epoch's
        views first (our log is no longer one of theirs), and one we hold differently replaces the rest of our log
        (ours was never committed there: the committed one is). A reconfiguration among them enters its epoch;
        we stop at the first one we belong to, where the normal protocol brings us the rest."""
        if self.status is Status.RECOVERING or self.status is Status.LEAVING:
            return self._ignore("on_new_state", f"newer epoch, status {self.status.value}")
        if self.catch_up_from is None:
            return self._catch_up(message.replica)
        if not message.entries:
            return self._ignore("on_new_state", "newer epoch, no entries")
        if message.commit_number < message.entries[-1].op_number:
            return self._ignore("on_new_state", "newer epoch, uncommitted entries")
        if message.entries[0].op_number != self.commit_number + 1:
            return self._ignore("on_new_state", "newer epoch, does not follow our commit_number")
        if self.state_transfer is not None:
            # We were fetching a view's log of our epoch from its primary, which has moved on to the later epoch
            # (simulator seed 12308: it never answers, and waiting for it while ignoring the later epoch left us
            # out of both). Drop it, as a snapshot download of our epoch is dropped: our log is still intact, so
            # if the later epoch falls silent we take part in our old epoch's view change again.
            self._count("catch up: dropped a state transfer of our epoch")
            self._to_transitioning()
        self.catch_up_stale = False
        self.catch_up_silent = 0
        for entry in message.entries:
            op_number = entry.op_number
            held = self.entry(op_number)
            if held != entry:
                self._to_transitioning()
                if held is not None:
                    self.catch_up_intact = False
                    del self.log[op_number - 1 - self.log_base :]
                    self.op_number = op_number - 1
                    self._outbox.log_changed_from(op_number)
                    self._rebuild_client_pending()
                self._append_entry(entry)
            self._commit_up_to(op_number)
            if self.next_membership is not None:
                self._enter_epoch()
                if self.catch_up_from is None:  # a member of it now, or leaving it
                    break
        if self.log:
            self.cluster_time.learn(self.log[-1].timestamp)
        if self.catch_up_from is not None:
            self._ask_catch_up()

    def _on_catch_up_chunk(self, message: SnapshotChunk) -> None:
        """Our commit_number is folded into the source's snapshot: take it, as a replica that no longer takes part
        in its old epoch (whatever we hold after it is dropped: the log after the snapshot comes next)."""
        if self.catch_up_from is None or message.replica != self.catch_up_from:
            return self._ignore("on_snapshot_chunk", "newer epoch, not catching up from its sender")
        if message.snapshot_op <= self.commit_number:
            return self._ignore("on_snapshot_chunk", "newer epoch, snapshot not ahead of our commit_number")
        # A download of our own epoch (a state transfer from its primary) is dropped: that epoch is over.
        self._to_transitioning()
        refused = self.snapshots.append_chunk(message, now=self.now, count=self._count)
        if refused is not None:
            return self._ignore("on_snapshot_chunk", refused)
        self.catch_up_stale = False
        self.catch_up_silent = 0
        outcome = self.snapshots.finish_download()
        if isinstance(outcome, str):
            return self._ignore("on_snapshot_chunk", outcome)
        if outcome is not None:
            if self.op_number > snapshots.op_number_of(outcome):
                self.catch_up_intact = False  # we drop ops we hold after it
            was_member = self.replica in self.membership
            epoch = self.membership.epoch
            self._install_snapshot(outcome, [])
            if self.membership.epoch != epoch:
                self._begin_epoch(was_member=was_member and self.replica in self.membership.old)
        if self.catch_up_from is not None:
            self._ask_catch_up()

    # --- invariants -------------------------------------------------------------------------------------------

    def invariants(self) -> None:
        """Checked after every step by the tests and the simulator (TigerBeetle style)."""
        assert 0 <= self.log_base <= self.commit_number <= self.op_number == self.log_base + len(self.log)
        if self.status is not Status.RECOVERING:
            assert self.membership.start_op <= self.commit_number
        if self.status is Status.NORMAL or self.status is Status.VIEW_CHANGE:
            assert self.replica in self.membership, "a replica takes part in an epoch it is not a member of"
        assert self.peers == self.membership.peers_of(self.replica)
        if self.reconfiguration_op and (self.status is Status.NORMAL or self.status is Status.VIEW_CHANGE):
            # The epoch's last op: nothing after it in any log of its epoch.
            assert self.commit_number < self.reconfiguration_op == self.op_number
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
        self.reads.invariants()
