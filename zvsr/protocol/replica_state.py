"""The replica's state, and the steps that change it without deciding when (sans-IO, like `replica.py`).

Theory of operation. `Replica` (`replica.py`) is the protocol: the dispatch, one handler per message kind, the
role transitions and `invariants()`; it decides *when* the log, the execution point or the view change. This
base holds *what* changes and how, keeping the invariants the handlers rely on:
- the paper's state (§4): view_number, status, last_normal_view, the log (ops log_base + 1 .. op_number; those
  before are in the latest snapshot), commit_number (also the last op executed), and the named parts that one
  sub-protocol each owns: `client_table`, `state_transfer`, `snapshots`, `timers`, `pipeline`, `votes`,
  `recovery`, and `cluster_time` (the stamps on entries, learned from every log we hold);
- the log's mechanics: append, install a view's log over our suffix, truncate before a snapshot;
- execution: committed ops applied in order, exactly once, each recorded in the client table and reported in
  the Ready (`Executed`), with a reply from the primary;
- snapshots taken every interval, restored from disk or installed from the primary (reported as `restored`);
- restart from disk (rule 12), and the output: what to persist, send and answer (`ready()`, `Outbox`).
Nothing here sends or writes: everything lands in the Outbox, which the driver takes with `ready()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from zvsr.constants import TICK_MS, VIEW_CHANGE_COMMITTED_OPS_MAX
from zvsr.protocol import membership, snapshots
from zvsr.protocol.client_table import (
    REFUSED_RESULT,
    REGISTER_REQUEST_NUMBER,
    SESSION_EXPIRED_TEXT,
    ClientTable,
)
from zvsr.protocol.cluster_time import Clock, ClusterTime
from zvsr.protocol.config import Config
from zvsr.protocol.membership import (
    RECONFIGURATION_MARK,
    Membership,
    is_reconfiguration,
    parse_reconfiguration,
    result_bytes,
)
from zvsr.protocol.messages import (
    ERROR_SESSION_EXPIRED,
    INTERNAL_CLIENT_ID,
    Commit,
    DoViewChange,
    Error,
    LogEntry,
    Prepare,
    PrepareOk,
    ReplicaMessage,
    Reply,
    Request,
    StartView,
)
from zvsr.protocol.pipeline import Pipeline
from zvsr.protocol.reads import Reads
from zvsr.protocol.ready import BROADCAST, Envelope, Outbox, PersistLog, PersistSnapshot, PersistViewState, Ready
from zvsr.protocol.recovery import RecoveryState
from zvsr.protocol.state_machine import ReadOnlyQueries, StateMachine
from zvsr.protocol.state_transfer import StateTransfer
from zvsr.protocol.timeout import Prng, Timeout
from zvsr.protocol.timers import RoleTimers
from zvsr.protocol.view_change import ViewChangeVotes


class Status(Enum):
    NORMAL = "normal"
    VIEW_CHANGE = "view_change"
    RECOVERING = "recovering"
    # §7: our epoch is over (or we are a new replica): fetching the committed ops up to an epoch we belong to.
    # Takes part in nothing of the old epoch meanwhile.
    TRANSITIONING = "transitioning"
    # Not a member of the current epoch any more: serves the committed state to the new members until a quorum
    # of them has started the epoch, then stops (`Replica.stopped`).
    LEAVING = "leaving"


@dataclass(frozen=True, slots=True, kw_only=True)
class DurableState:
    """What a restarted replica reads back from its disk (superblock and write-ahead log)."""

    view_number: int
    last_normal_view: int
    commit_number: int
    log: tuple[LogEntry, ...]  # ops log_base + 1 ..
    log_base: int = 0
    snapshot: bytes | None = None  # the latest snapshot (its op_number >= log_base), if any
    # The epoch the view state belongs to. The configuration itself is not stored apart: it is in the snapshot
    # and the committed log (replaying them repeats every reconfiguration); this is the check that they agree.
    epoch: int = 0


Logger = Callable[[str], None]


class ReplicaState:
    """The base of `Replica`: its state and mechanics. Constructed with a durable state, it is restored from it;
    then `_enter_initial_role` (the protocol's, in `Replica`) starts the role that state implies."""

    def __init__(
        self,
        *,
        config: Config,
        replica: int,
        state_machine: StateMachine,
        prng: Prng,
        recovering: bool = False,
        durable: DurableState | None = None,
        logger: Logger | None = None,
        clock: Clock | None = None,
        membership: Membership | None = None,
        joining: bool = False,
    ) -> None:
        assert not (recovering and durable is not None)
        assert not (joining and (recovering or durable is not None))
        self.config = config
        self.replica = replica
        self.state_machine = state_machine
        self.prng = prng
        self.logger = logger

        # The configuration of our epoch (§7): epoch 0's is the cluster file's replicas 0..n-1.
        self.membership = (
            membership if membership is not None else Membership.initial(config.replica_count, epoch=config.epoch)
        )
        self.peers = self.membership.peers_of(replica)  # BROADCAST goes to these
        self.next_membership: Membership | None = None  # a reconfiguration executed in this step
        self.reconfiguration_op = 0  # a reconfiguration in our log after commit_number (the epoch's last op)
        self.stopped = False  # left the configuration and handed over: the driver may stop us
        self.epoch_started_from: set[int] = set()  # members of our epoch that said EpochStarted
        self.catch_up_from: int | None = None  # TRANSITIONING: who serves us the committed ops
        self.catch_up_stale = False  # it did not answer our last ask: the next replica of a later epoch will
        self.catch_up_silent = 0  # asks in a row that got nothing
        # Our log is still one our epoch's views could have given us (nothing replaced or dropped by catching
        # up): we may take part in its view changes again if catching up stalls.
        self.catch_up_intact = True
        self.told_epoch_at: dict[int, int] = {}  # laggard -> when we last sent it StartEpoch
        self.view_number = 0
        self.last_normal_view = 0
        self.status = Status.RECOVERING if recovering else Status.NORMAL
        if joining or (not recovering and durable is None and replica not in self.membership):
            self.status = Status.TRANSITIONING
        self.log: list[LogEntry] = []  # ops log_base + 1 .. op_number; those before are in the snapshot
        self.log_base = 0
        self.op_number = 0
        self.commit_number = 0
        self.client_table = ClientTable(
            size_max=config.client_table_max, require_registration=config.require_registration
        )
        self.state_transfer: StateTransfer | None = None  # rule 3: adopted a view, fetching its log
        self.snapshots = snapshots.Snapshots(pin_ticks=config.snapshot_pin_ticks)
        self.timers = RoleTimers(config)
        # Runs beside the role timers: re-announce a new epoch to members that have not started it.
        self.epoch_announce = Timeout("epoch_announce", after=config.view_change_resend_ticks)
        self.catch_up_timer = Timeout("catch_up", after=config.repair_ticks)

        self.pipeline = Pipeline()  # primary: ops in flight, PrepareOk of this view, queued requests
        self.votes = ViewChangeVotes()  # of the view change to view_number
        self.recovery = RecoveryState()

        # Logical time and liveness of peers (rule 10).
        self.now = 0
        self.last_heard: dict[int, int] = {}
        # Cluster time (cluster_time.py): the driver's monotonic clock, or our ticks when it gives none.
        self.cluster_time = ClusterTime(clock if clock is not None else self._tick_clock)
        self.executed_timestamp = 0  # the stamp of op commit_number (what a snapshot taken now records)
        # Reads without a log entry (reads.py): only for a state machine that declares its read-only ops.
        self.queries = state_machine if isinstance(state_machine, ReadOnlyQueries) else None
        self.reads = Reads(config, prng, self.cluster_time.clock())

        self._outbox = Outbox()
        self.counters: dict[str, int] = {}

        # A brand-new replica (no disk, no recovery): a new cluster starting up (`startup_grace_ticks`).
        self.first_start = durable is None and not recovering and not joining
        if durable is not None:
            self._restore(durable)
        self._enter_initial_role()

    def _enter_initial_role(self) -> None:
        """Start the timers and first messages of the role the state implies (defined by `Replica`)."""
        raise NotImplementedError

    def _serve_reads(self) -> None:
        """Answer the waiting reads that may be answered now (defined by `Replica`)."""
        raise NotImplementedError

    def _tick_clock(self) -> int:
        """The clock of a replica whose driver gives none: its ticks, as nanoseconds."""
        return self.now * TICK_MS * 1_000_000

    # --- restart from disk (rule 12) ---------------------------------------------------------------------------

    def _restore(self, durable: DurableState) -> None:
        """Come back with what was durable: the view state and the log, and re-execute the committed prefix.

        Everything we ever acknowledged or voted for was durable before it left (the Ready contract), so the
        restarted replica keeps every promise it made. If the last durable view is the last normal one we are
        back in normal status there (as its primary or a backup); otherwise we had left it for a view change
        (or were fetching its log) and resume voting in that view: never an older one.
        """
        assert durable.last_normal_view <= durable.view_number
        base = durable.log_base
        assert all(entry.op_number == base + index + 1 for index, entry in enumerate(durable.log))
        self.view_number = durable.view_number
        self.last_normal_view = durable.last_normal_view
        self.log = list(durable.log)
        self.log_base = base
        self.op_number = base + len(self.log)
        if durable.snapshot is not None:
            self._restore_snapshot(durable.snapshot)
            if self.op_number < self.snapshots.op_number:  # the log after the snapshot is empty
                self.log, self.log_base, self.op_number = [], self.snapshots.op_number, self.snapshots.op_number
        assert self.log_base <= self.commit_number
        # The time we were down is not counted: cluster time resumes from the largest stamp on disk.
        self.cluster_time.learn(self.log[-1].timestamp if self.log else self.executed_timestamp)
        # commit_number is persisted lazily: it is a lower bound, and the primary tells us the rest. Executing
        # in view-change status keeps the primary from answering clients for ops it answered before the crash.
        # Replaying a reconfiguration moves us into its epoch (entering an epoch persists its commit_number, so
        # the replay reaches every epoch the view state may belong to).
        self.status = Status.VIEW_CHANGE
        target = min(max(durable.commit_number, self.commit_number), self.op_number)
        while self.commit_number < target:
            self._commit_up_to(target)
            if self.next_membership is not None:
                self._set_membership(self.next_membership)
        assert self.membership.epoch >= durable.epoch, "the view state belongs to an epoch the log never reached"
        if self.membership.epoch > durable.epoch:
            # The write that entered the epoch was torn after its snapshot: its view state never landed, so
            # nothing of the new epoch left us. Start it as entering it does, in its first view.
            self.view_number = self.last_normal_view = self.membership.start_view
            self._outbox.view_state = True
        self._drop_ops_after_our_epochs_end()
        self.pipeline.view = self.view_number
        self.pipeline.prepared = self.op_number
        self._rebuild_client_pending()
        if self.replica not in self.membership:
            # A replica that joined and never caught up, or one that left: nothing of this epoch is ours.
            self.status = Status.LEAVING if self.replica in self.membership.old else Status.TRANSITIONING
        elif durable.last_normal_view == durable.view_number:
            self.status = Status.NORMAL
        self._log(f"restored from disk: view {self.view_number}, op {self.op_number}, commit {self.commit_number}")

    def _drop_ops_after_our_epochs_end(self) -> None:
        """A step that catches up across an epoch's end writes the ops after it and the next epoch's view state
        together; a write torn between them leaves a log holding ops of an epoch we never durably entered, after
        the reconfiguration that ends ours (simulator seed 1482, 5 replicas). Nothing of that epoch left us (its
        view state never landed); its ops are copies of ops committed there, fetched again once we enter it. So
        our epoch ends at its reconfiguration again, as it does everywhere else (no primary appends after one)."""
        epoch = self.membership.epoch
        for entry in self.log[self.commit_number - self.log_base :]:
            operation = entry.operation
            if not (is_reconfiguration(operation) and parse_reconfiguration(operation).epoch == epoch):
                continue
            if entry.op_number < self.op_number:
                self._count("restart: ops after our epoch's end dropped")
                del self.log[entry.op_number - self.log_base :]
                self.op_number = entry.op_number
                self._outbox.log_changed_from(entry.op_number + 1)
            return

    # --- identities and diagnostics ----------------------------------------------------------------------------

    def primary_index(self, view: int | None = None) -> int:
        return self.membership.primary(self.view_number if view is None else view)

    def is_primary(self) -> bool:
        return self.membership.primary(self.view_number) == self.replica

    @property
    def epoch(self) -> int:
        return self.membership.epoch

    def _set_membership(self, membership: Membership) -> None:
        """Take the configuration of a (later) epoch: who our peers are, and whom BROADCAST reaches."""
        assert membership.epoch >= self.membership.epoch
        self.membership = membership
        self.peers = membership.peers_of(self.replica)
        self.next_membership = None
        self.epoch_started_from = set()
        self.told_epoch_at = {}

    @property
    def snapshot_op(self) -> int:
        """The op_number of our latest snapshot (0: none yet)."""
        return self.snapshots.op_number

    def _header(self) -> dict[str, int]:
        return {
            "cluster": self.config.cluster,
            "epoch": self.membership.epoch,
            "view": self.view_number,
            "replica": self.replica,
        }

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def _ignore(self, handler: str, reason: str) -> None:
        self._count(f"{handler}: {reason}")
        if self.logger is not None:
            self._log(f"{handler}: ignored ({reason})")

    def _log(self, text: str) -> None:
        if self.logger is not None:
            self.logger(f"r{self.replica} {self.status.value} v{self.view_number}: {text}")

    # --- output: what the driver must do (ready.py) ------------------------------------------------------------

    def ready(self) -> Ready:
        """Take what this step produced. Flushes batched Prepares first (primary)."""
        if self.status is Status.NORMAL and self.is_primary():
            self._flush_prepares()
        if self.reads.pending:
            self._serve_reads()
        self._maybe_take_snapshot()
        outbox = self._outbox
        out = outbox.ready
        # The order storage writes them in: the snapshot, the log after it, then the view state (which must
        # never claim a log the disk does not hold yet). Inline, not an Outbox method: with one request at a
        # time this runs once per message, and the call would cost more than the work.
        if outbox.snapshot is not None:
            out.persist.append(outbox.snapshot)
            outbox.snapshot = None
        if outbox.log_from is not None:
            # Ops up to log_base are in the snapshot persisted above (or an earlier one): never rewritten.
            base = self.log_base
            first = max(outbox.log_from, base + 1)
            out.persist.append(PersistLog(op_number_first=first, entries=tuple(self.log[first - 1 - base :])))
            outbox.log_from = None
        if outbox.view_state:
            view_state = PersistViewState(
                view_number=self.view_number,
                last_normal_view=self.last_normal_view,
                commit_number=self.commit_number,
                epoch=self.membership.epoch,
            )
            out.persist.append(view_state)
            outbox.view_state = False
        outbox.ready = Ready()
        return out

    def _send(self, to: int, message: ReplicaMessage) -> None:
        assert to == BROADCAST or (to >= 0 and to != self.replica)
        self._outbox.ready.messages.append(Envelope(to, message))

    def _reply(self, client_id: int, request_number: int, result: bytes) -> None:
        self._outbox.ready.replies.append(
            Reply(view=self.view_number, client_id=client_id, request_number=request_number, result=result)
        )

    def _answer_error(self, request: Request, code: str, text: str) -> None:
        self._count(f"on_request: {code}")
        self._error_reply(request.client_id, request.request_number, code, text)

    def _error_reply(self, client_id: int, request_number: int, code: str, text: str) -> None:
        self._outbox.ready.replies.append(
            Error(
                view=self.view_number, client_id=client_id, request_number=request_number, code=code, message=text
            )
        )

    # --- the log -----------------------------------------------------------------------------------------------

    def entry(self, op_number: int) -> LogEntry | None:
        """Op `op_number` of our log, or None if it is folded into the snapshot (or beyond op_number)."""
        if self.log_base < op_number <= self.op_number:
            return self.log[op_number - self.log_base - 1]
        return None

    def _entries_after(self, op_number: int, count_max: int, bytes_max: int) -> tuple[LogEntry, ...]:
        """Entries op_number+1 .. bounded by count and operation bytes (always at least one if any)."""
        assert self.log_base <= op_number < self.op_number
        out: list[LogEntry] = []
        size = 0
        start = op_number - self.log_base
        for entry in self.log[start : start + count_max]:
            size += len(entry.operation)
            if out and size > bytes_max:
                break
            out.append(entry)
        return tuple(out)

    def _append_request(self, request: Request) -> None:
        # In progress from now on (before `_append_new`: a one-replica quorum executes it there and then).
        self.client_table.add_pending(request.client_id, request.request_number, self.op_number + 1)
        self._append_new(request.client_id, request.request_number, request.operation)

    def _append_new(self, client_id: int, request_number: int, operation: bytes) -> None:
        """The primary appends an op at the end of its log, stamped with cluster time."""
        self.op_number += 1
        self.log.append(
            LogEntry(
                view=self.view_number,
                op_number=self.op_number,
                client_id=client_id,
                request_number=request_number,
                operation=operation,
                timestamp=self.cluster_time.stamp(),
            )
        )
        self._outbox.log_changed_from(self.op_number)
        if self.membership.quorum == 1:
            self._commit_up_to(self.op_number)

    def _append_entry(self, entry: LogEntry) -> None:
        """A backup appends an op of the primary's (the caller learns the batch's last stamp once)."""
        assert entry.op_number == self.op_number + 1
        assert not self.log or entry.timestamp >= self.log[-1].timestamp, "cluster time went backwards"
        self.log.append(entry)
        self.op_number += 1
        self._outbox.log_changed_from(entry.op_number)
        if entry.client_id != INTERNAL_CLIENT_ID:
            self.client_table.add_pending(entry.client_id, entry.request_number, entry.op_number)

    def _install_log(self, log: tuple[LogEntry, ...], base: int) -> None:
        """Replace our log after commit_number by the view's (`log` holds ops base + 1 ..). Where both hold an
        op we executed, they must agree (committed ops are in every later view's log at the same place)."""
        commit = self.commit_number
        assert base <= commit <= base + len(log), "new log does not cover what we executed"
        overlap = range(max(base, self.log_base), commit)
        assert all(log[op - base] == self.log[op - self.log_base] for op in overlap), "committed prefix changed"
        del self.log[commit - self.log_base :]
        self.log.extend(log[commit - base :])
        self.op_number = base + len(log)
        self._outbox.log_changed_from(commit + 1)
        self._rebuild_client_pending()
        if log:  # a new primary continues from the largest stamp of the log it adopted
            self.cluster_time.learn(log[-1].timestamp)

    def _truncate_log(self, op_number: int) -> None:
        """Drop ops up to `op_number` (committed, in a snapshot) from memory."""
        op_number = min(op_number, self.snapshots.op_number)
        if op_number <= self.log_base:
            return
        assert op_number <= self.commit_number
        del self.log[: op_number - self.log_base]
        self.log_base = op_number

    def _rebuild_client_pending(self) -> None:
        """Requests in the log beyond commit_number are in progress (VR-NOTES §11.5). Queued requests were never
        prepared; they are dropped and the clients retry."""
        self.pipeline.request_queue.clear()
        uncommitted = self.log[self.commit_number - self.log_base :]
        self.client_table.rebuild_pending(uncommitted)
        # A reconfiguration among them is the last op of the epoch: the primary appends nothing after it.
        self.reconfiguration_op = next((e.op_number for e in uncommitted if is_reconfiguration(e.operation)), 0)

    def _state_op_number(self) -> int:
        """The op after which we need the primary's log: ours, or during a transfer what we have collected."""
        return self.op_number if self.state_transfer is None else self.state_transfer.op_number()

    # --- messages built from our state -------------------------------------------------------------------------

    def _prepare(self, entries: tuple[LogEntry, ...]) -> Prepare:
        # A Prepare re-sent to a lagging backup may end before our commit_number; it can only vouch for its own
        # ops (a Prepare with commit_number > op_number is malformed on the wire). Commits tell the rest.
        return Prepare(
            **self._header(),
            op_number=entries[-1].op_number,
            commit_number=min(self.commit_number, entries[-1].op_number),
            entries=entries,
            read_round=self.reads.read_round,
        )

    def _prepare_ok_message(self, read_round: int = 0) -> PrepareOk:
        """`read_round`: the round of the Prepare or Commit this answers (reads.py), 0 if it answers neither."""
        return PrepareOk(**self._header(), op_number=self.op_number, read_round=read_round)

    def _commit_message(self) -> Commit:
        """The primary's heartbeat (rule 4), with its latest read confirmation round."""
        return Commit(
            **self._header(),
            commit_number=self.commit_number,
            op_number=self.op_number,
            read_round=self.reads.read_round,
        )

    def _view_change_log(self) -> tuple[LogEntry, ...]:
        """What a DoViewChange or StartView carries: every op after commit_number and at most
        VIEW_CHANGE_COMMITTED_OPS_MAX committed ones before them (VR-NOTES §8, "5.3 View change size"), so a view
        change does not grow with history. What it leaves out is committed, hence the same in every log that has
        it: a receiver whose commit_number reaches the suffix's start installs it, one behind fetches the rest
        (state transfer), and a new primary behind it skips the view (`Replica._maybe_start_view`)."""
        first = max(self.log_base, self.commit_number - VIEW_CHANGE_COMMITTED_OPS_MAX)
        return tuple(self.log[first - self.log_base :])

    def _do_view_change_message(self) -> DoViewChange:
        return DoViewChange(
            **self._header(),
            last_normal_view=self.last_normal_view,
            op_number=self.op_number,
            commit_number=self.commit_number,
            log=self._view_change_log(),
        )

    def _start_view_message(self) -> StartView:
        return StartView(
            **self._header(),
            op_number=self.op_number,
            commit_number=self.commit_number,
            log=self._view_change_log(),
        )

    # --- the primary's pipeline --------------------------------------------------------------------------------

    def _flush_prepares(self) -> None:
        """Send every op appended since the last flush, in as few bounded Prepares as possible (batching). A read
        that waits for a new confirmation round (reads.py) starts it here: on these Prepares, free, or on a Commit
        while few rounds are unconfirmed (`Reads.commit_round_due`)."""
        pipeline = self.pipeline
        reads = self.reads
        if reads.round_wanted:
            preparing = pipeline.prepared < self.op_number
            if preparing or reads.commit_round_due(self.membership.quorum - 1):
                reads.start_round(self.cluster_time.clock())
                if not preparing:
                    self._send(BROADCAST, self._commit_message())
        while pipeline.prepared < self.op_number:
            entries = self._entries_after(
                pipeline.prepared, self.config.prepare_entries_max, self.config.prepare_bytes_max
            )
            pipeline.prepared = entries[-1].op_number
            self._send(BROADCAST, self._prepare(entries))

    def _quorum_recently_heard(self, ticks: int | None = None) -> bool:
        """Quorum - 1 peers heard within `ticks` (by default the quorum timeout of rule 10)."""
        needed = self.membership.quorum - 1
        if needed == 0:
            return True
        horizon = self.now - (self.config.quorum_timeout_ticks if ticks is None else ticks)
        # A loop that stops at the quorum, not a generator over every peer: the primary asks this per request.
        for at in self.last_heard.values():
            if at >= horizon:
                needed -= 1
                if needed == 0:
                    return True
        return False

    def _reset_view_votes(self) -> None:
        self.votes.reset()
        self.pipeline.reset(self.view_number)

    # --- execution (§4.1 steps 5 and 7): ops run once, in order, and are reported ------------------------------

    def _commit_up_to(self, op_number: int) -> None:
        """Execute every op up to op_number, in order, exactly once; the primary replies to their clients.
        Each execution is reported in the Ready (`executed`), so the driver never has to guess."""
        assert op_number <= self.op_number
        if op_number <= self.commit_number:
            return
        replying = self.status is Status.NORMAL and self.is_primary()
        apply = self.state_machine.apply
        executed = self._outbox.ready.executed
        table = self.client_table
        internal = INTERNAL_CLIENT_ID
        mark = RECONFIGURATION_MARK
        entry = None
        for entry in self.log[self.commit_number - self.log_base : op_number - self.log_base]:
            client_id, request_number = entry.client_id, entry.request_number
            if client_id == internal:  # the cluster's own op: no client to answer or remember
                executed.append((entry.op_number, entry, apply(entry)))
                continue
            operation = entry.operation
            reconfiguration = operation and operation[0] == mark
            if request_number == REGISTER_REQUEST_NUMBER or (
                not table.executable(client_id, request_number) and not reconfiguration
            ):
                result = self._execute_session_op(entry, replying=replying)
                executed.append((entry.op_number, entry, result))
                continue
            if reconfiguration:
                # Executed even if its session is gone since: it is the last op of its epoch (nothing may follow it
                # in the log), and the epoch it names makes it at-most-once by itself (a repeat changes nothing).
                result = self._execute_reconfiguration(entry)
            else:
                result = apply(entry)
            executed.append((entry.op_number, entry, result))
            table.executed(client_id, request_number, result)
            if replying:
                self._reply(client_id, request_number, result)
            if self.next_membership is not None:
                break  # the last op of its epoch: what follows (a replay) belongs to the next
        assert entry is not None
        self.commit_number = entry.op_number
        self.executed_timestamp = entry.timestamp
        self._drop_overtaken_download()

    def _execute_session_op(self, entry: LogEntry, *, replying: bool) -> bytes:
        """A register op opens a session (and may evict one); a request whose session is gone by the time it
        commits is refused, never applied (`zvsr.protocol.client_table`). Decided from the table alone, so every
        replica does the same. Neither reaches the app; the result reported for a refused one is empty."""
        table = self.client_table
        if entry.request_number == REGISTER_REQUEST_NUMBER:
            result, evicted = table.register(entry.client_id, entry.op_number)
            if evicted is not None:
                self._count("client session evicted")
            if replying:
                self._reply(entry.client_id, REGISTER_REQUEST_NUMBER, result)
            return result
        table.refused(entry.client_id, entry.request_number)
        self._count("request of an expired session refused at commit")
        if replying:
            self._error_reply(entry.client_id, entry.request_number, ERROR_SESSION_EXPIRED, SESSION_EXPIRED_TEXT)
        return REFUSED_RESULT

    def _execute_reconfiguration(self, entry: LogEntry) -> bytes:
        """§7: a committed reconfiguration ends its epoch. No up-call into the app; the epoch is entered when the
        step ends (`Replica._enter_epoch`), or by the replay that executes it. One already behind us (we installed
        a snapshot of a later epoch, then execute the log it was taken from) changes nothing."""
        change = parse_reconfiguration(entry.operation)  # admitted by a primary: damage here is our bug
        self._count("reconfiguration executed")
        self.reconfiguration_op = 0
        if change.epoch == self.membership.epoch:
            self.next_membership = self.membership.next(change.members, entry.op_number, entry.view + 1)
        else:
            assert change.epoch < self.membership.epoch, "a reconfiguration from an epoch we never entered"
        return result_bytes(change.epoch + 1)

    # --- snapshots: taken, restored, installed -----------------------------------------------------------------

    def _maybe_take_snapshot(self) -> None:
        """Every snapshot_interval_ops committed ops: snapshot the app and client table, and drop the log
        before the previous snapshot (one interval of log stays, so peers slightly behind catch up from the
        log). A log needed by a download in progress stays too (the pins): no livelock.

        Only memory keeps that interval: the durable log starts at the new snapshot, which covers it. Keeping it
        on disk would cost a copy of one interval of log at every snapshot (the WAL rewrites what it keeps), a
        stall of ~1.5 s with 16 KiB values; a restarted replica serves peers behind its snapshot a snapshot."""
        interval = self.config.snapshot_interval_ops
        if interval == 0 or self.status is Status.RECOVERING:
            return
        if self.commit_number - self.snapshots.op_number < interval:
            return
        previous = self.snapshots.op_number
        table = self.client_table
        data = snapshots.encode(
            self.commit_number,
            table.rows(),
            self.state_machine.snapshot(),
            timestamp=self.executed_timestamp,
            membership=self.membership.encode(),
        )
        self.snapshots.take(self.commit_number, data, now=self.now)
        self._count("snapshot taken")
        self._truncate_log(self.snapshots.log_kept_from(previous, now=self.now))
        op_number = self.commit_number
        self._outbox.snapshot = PersistSnapshot(op_number=op_number, log_base=op_number, data=data)

    def _restore_snapshot(self, data: bytes) -> None:
        """Replace the app state and client table by a snapshot's; commit_number becomes its op_number."""
        snapshot = snapshots.decode(data)  # the caller verified the checksum; damage here is our bug
        self.state_machine.restore(snapshot.app_state)
        self.client_table.restore(snapshot.client_table)
        self.commit_number = snapshot.op_number
        self.executed_timestamp = snapshot.timestamp
        self.cluster_time.learn(snapshot.timestamp)
        self.snapshots.set_latest(snapshot.op_number, data)
        self._outbox.ready.restored.append(snapshot.op_number)
        if snapshot.membership:
            taken_in = membership.decode(snapshot.membership)
            if taken_in.epoch > self.membership.epoch:  # never back: the log after an older one repeats it
                self._set_membership(taken_in)

    def _install_snapshot(self, data: bytes, entries_after: list[LogEntry]) -> None:
        """A snapshot from the primary that is ahead of our commit_number, followed by the log `entries_after`
        it: the state machine jumps to the snapshot, the log restarts after it."""
        op_number = snapshots.op_number_of(data)
        assert op_number > self.commit_number
        assert all(entry.op_number == op_number + index + 1 for index, entry in enumerate(entries_after))
        self._log(f"install snapshot at op {op_number} (commit_number was {self.commit_number})")
        self._count("snapshot installed")
        self._restore_snapshot(data)
        self.log = list(entries_after)
        self.log_base = op_number
        self.op_number = op_number + len(self.log)
        self._outbox.snapshot = PersistSnapshot(op_number=op_number, log_base=op_number, data=data)
        # Always rewrite what follows the snapshot, even as nothing: a log we had after it may be stale.
        self._outbox.log_from = op_number + 1
        self._rebuild_client_pending()

    def _drop_overtaken_download(self) -> None:
        """A download whose snapshot we have executed past (the log got there first) is dropped: asking on for
        it would keep the primary's pin — and so its log — alive for nothing."""
        download = self.snapshots.download
        if download is not None and download.snapshot_op <= self.commit_number and self.status is Status.NORMAL:
            self.snapshots.download = None
            self._count("snapshot download overtaken by the log, dropped")
