"""What must hold after every simulator event, checked incrementally so a run stays fast.

- committed-prefix agreement: every replica's op n, once committed there, equals everyone else's committed op n;
- each replica executes the committed log in order, each op once, exactly up to its commit_number, as its
  Ready says (`executed`, `restored`): commit_number never decreases within one replica's life (a diskless
  crash starts a new life), and each op's result is the one the committed log gives;
- one log per view: replicas in normal status in view v hold prefixes of one and the same log;
- app state identical at equal commit_number (snapshot digests);
- no (client_id, request_number) is committed at two op numbers, nor executed twice (the cluster's own ops,
  client_id 0, have no request to repeat; a register op, request_number 0, may be retried after its session was
  evicted and opens another session);
- registered sessions (`SessionOracle`, a model of the client table written apart from it): the app applies a
  committed request only if its session was registered and not evicted when it committed, and each register op
  opens the session named by its op number, evicting the least recently executed one beyond the bound;
- cluster time: the committed log's timestamps strictly increase, across view changes, restarts and snapshots;
- every Reply a client receives carries the result committed for its (client_id, request_number);
- acknowledged ops survive into every later view: a replica starting a view as its primary holds every op a
  client was answered for, at its op number (and every backup of the view holds a prefix of that log).

Leases (`LeaseChecker`; lease ops are kept out of the linearizability history, whose model knows nothing of
time). Every replica applies the same lease_expire ops with the same results at the same op numbers: the
result check above covers that, and `LeaseChecker` counts them so a run shows it was exercised. Besides:
- fencing tokens: each lock grant in the committed log has a token larger than every grant before it;
- no lease ends early: a lease_expire that ends a lease was proposed at least TTL / (1 + SIM_CLOCK_RATE_SPREAD)
  of virtual time after the lease was last refreshed — proposed, not committed: the grant or keepalive that set
  its deadline, or the first op of the expire op's view (the app's failover refresh), whichever came later.
  Cluster time advances at one primary's clock rate within a view (at most 1 + spread of virtual time), and a
  new view's first op restarts every lease, so this is exact: a holder that keeps alive and whose keepalives
  get committed never loses its lease, whatever a failover costs. It is the liveness promise of leases ("a
  holder keeping alive whose keepalives are answered keeps its lease"), judged where it can be judged exactly:
  in every phase, the healed liveness phase included (holders keep alive through it). Judged from the client
  instead — a lease_not_found for a holder that sends every TTL/3 and got answers — it would also blame the
  cluster for a network too slow for the TTL: with a 200 ms TTL and up to 40 ms a hop, a keepalive can take
  more than the 0.6 TTL a holder sending every TTL/3 has left (seed 100140 in `zvsr sim --seed 100000`);
- never two holders at once, as clients see it: a holder believes it holds a lock from the reply granting it
  until (the first send of its last acknowledged keepalive or grant) + TTL / (1 + spread) of virtual time, or
  until it sends a revoke; no other client may be granted that lock while one believes it holds it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr.protocol.client_table import (
    REFUSED_RESULT,
    REGISTER_REQUEST_NUMBER,
    parse_register_result,
    register_result,
    session_id,
)
from zvsr.protocol.membership import is_reconfiguration
from zvsr.protocol.messages import INTERNAL_CLIENT_ID, LogEntry, Reply
from zvsr.protocol.ready import PersistLog, Ready
from zvsr.protocol.replica import Replica, Status
from zvsr.protocol.state_machine import StateMachine


class Violation(AssertionError):
    def __init__(self, seed: int, invariant: str, report: str) -> None:
        super().__init__(report)
        self.seed = seed
        self.invariant = invariant
        self.report = report


class SessionOracle:
    """Which committed requests the app may apply, from the committed log alone: a session is opened by its
    register op (id: the op number) and lives until `size_max` others were opened or used after it; a request
    applies only in a live session and above its latest number. Deliberately not `ClientTable`: a checker sharing
    the code it checks cannot fail."""

    def __init__(self, size_max: int) -> None:
        self.size_max = size_max
        self.sessions: OrderedDict[int, int] = OrderedDict()  # session id -> latest request applied, LRU first
        self.opened_by: dict[int, int] = {}  # session id -> the op number of its register

    def register(self, entry: LogEntry) -> int:
        """Open the session of register op `entry`; its id (`session_id`: the definition of ids, not a check)."""
        session = session_id(entry.client_id, entry.op_number)
        self.opened_by[session] = entry.op_number
        self.sessions[session] = 0
        if len(self.sessions) > self.size_max:
            self.sessions.popitem(last=False)
        return session

    def applies(self, client_id: int, request_number: int) -> bool:
        latest = self.sessions.get(client_id)
        if latest is None or request_number <= latest:
            return False
        self.sessions[client_id] = request_number
        self.sessions.move_to_end(client_id)
        return True


class Checker:
    def __init__(
        self,
        *,
        reference: StateMachine,
        violation: Callable[[str], Violation],
        leases: LeaseChecker | None = None,
        client_table_max: int | None = None,
    ) -> None:
        """`reference`: a fresh copy of the app, fed the committed log once; `violation`: how the simulation
        turns a broken invariant into a report (with its seed and trace); `leases`: told every committed op."""
        self._violation = violation
        self.leases = leases
        self.committed: list[LogEntry] = []  # the one committed log, op n at index n - 1
        self.committed_results: list[bytes] = []
        self.committed_at: dict[tuple[int, int], int] = {}  # (client_id, request_number) -> op_number
        self.digests: dict[int, bytes] = {}  # commit_number -> app snapshot digest
        # op_number -> (entry a client got a reply for, the (epoch, view) of that reply)
        self.acknowledged: dict[int, tuple[LogEntry, tuple[int, int]]] = {}
        # (epoch, view) -> longest log seen in normal status there
        self.view_logs: dict[tuple[int, int], list[LogEntry | None]] = {}
        # Per replica id (new replicas join): commit_number, (epoch, view, normal) and op last checked.
        self.checked_commit: dict[int, int] = {}
        self.checked_view: dict[int, tuple[int, int, bool]] = {}
        self.checked_view_op: dict[int, int] = {}
        self.reply_epochs: dict[tuple[int, int, int], int] = {}  # (client_id, request_number, view) -> epoch
        # Reads answered without a log entry (zvsr.protocol.reads): not committed; the linearizability check
        # over the clients' history judges their results.
        self.served_reads: set[tuple[int, int]] = set()
        self.reference = reference
        self.sessions = None if client_table_max is None else SessionOracle(client_table_max)
        self.sessions_evicted_refusals = 0  # committed requests refused (their session was gone): seen to happen

    def fail(self, what: str) -> Violation:
        return self._violation(what)

    def on_crash(self, index: int) -> None:
        self.checked_commit.pop(index, None)
        self.checked_view.pop(index, None)
        self.checked_view_op.pop(index, None)

    def executed_before_crash(self, index: int, replica: Replica, ready: Ready) -> None:
        """A step whose writes were torn by a crash: what it executed is committed all the same."""
        self._check_executed(index, replica, ready)

    def after_step(self, index: int, replica: Replica, ready: Ready) -> None:
        self._check_executed(index, replica, ready)
        self._check_view_log(index, replica)
        # A Reply carries its view, not its epoch: remember the epoch each was sent in (the earliest, if two
        # epochs ever answered in the same view number), so an acknowledgement is ordered by (epoch, view).
        for client_id, request_number, _ in ready.reads:
            self.served_reads.add((client_id, request_number))
        for reply in ready.replies:
            if isinstance(reply, Reply):
                key = (reply.client_id, reply.request_number, reply.view)
                self.reply_epochs[key] = min(self.reply_epochs.get(key, replica.epoch), replica.epoch)

    def _check_executed(self, index: int, replica: Replica, ready: Ready) -> None:
        """What the replica says it executed (`Ready.executed`, `Ready.restored`) is the committed log, in order,
        each op exactly once, and brings it exactly to its commit_number; its app state agrees with every other
        replica's at that op. The core's own report is checked, not its internals: a driver relies on it."""
        before = self.checked_commit.get(index, 0)
        expected = before + 1  # the next op the replica may execute
        restores = iter(ready.restored)
        restore = next(restores, None)
        for op_number, entry, result in ready.executed:
            while restore is not None and restore < op_number:
                # A snapshot installed before this op: the state jumps to it. Every op in a snapshot was committed
                # (and checked) at the replica that took it first.
                self._check_restore(index, restore, expected - 1)
                expected = restore + 1
                restore = next(restores, None)
            if op_number != expected:
                raise self.fail(f"r{index}: executed op {op_number} where op {expected} was next")
            expected += 1
            if op_number <= len(self.committed):
                if self.committed[op_number - 1] != entry:
                    raise self.fail(
                        f"r{index}: committed op {op_number} differs: {entry} vs {self.committed[op_number - 1]}"
                    )
            else:
                key = (entry.client_id, entry.request_number)
                register = entry.request_number == REGISTER_REQUEST_NUMBER
                repeatable = entry.client_id == INTERNAL_CLIENT_ID or register
                if key in self.committed_at and not repeatable:
                    raise self.fail(f"request {key} committed twice: ops {self.committed_at[key]} and {op_number}")
                if self.committed and entry.timestamp <= self.committed[-1].timestamp:
                    raise self.fail(
                        f"cluster time went backwards: op {op_number} stamped {entry.timestamp} after "
                        f"{self.committed[-1].timestamp} (views {self.committed[-1].view} -> {entry.view})"
                    )
                self.committed_at[key] = op_number
                self.committed.append(entry)
                if self._session_op(entry):
                    continue
                # A reference copy of the app, fed the committed log once, gives the result each op must have
                # (a reconfiguration is the core's, never the app's: its first execution gives it).
                if is_reconfiguration(entry.operation):
                    self.committed_results.append(result)
                    continue
                self.committed_results.append(self.reference.apply(entry))
                if self.leases is not None:
                    self.leases.on_commit(entry, self.committed_results[-1])
            if result != self.committed_results[op_number - 1]:
                raise self.fail(f"r{index}: op {op_number} gave a result that differs from the committed one")
        for later in (restore, *restores):
            if later is not None:
                self._check_restore(index, later, expected - 1)
                expected = later + 1
        commit_number = replica.commit_number
        if commit_number != expected - 1:
            raise self.fail(f"r{index}: commit_number {commit_number}, but executed up to op {expected - 1}")
        if commit_number == before:
            return
        self.checked_commit[index] = commit_number
        digest = hashlib.blake2b(replica.state_machine.snapshot(), digest_size=16).digest()
        known = self.digests.setdefault(commit_number, digest)
        if known != digest:
            raise self.fail(f"r{index}: app state at commit_number {commit_number} differs from another replica")

    def _session_op(self, entry: LogEntry) -> bool:
        """A register op, or a request the oracle says is refused: its result is the table's, not the app's."""
        if self.sessions is None or entry.client_id == INTERNAL_CLIENT_ID:
            return False
        if entry.request_number == REGISTER_REQUEST_NUMBER:
            self.committed_results.append(register_result(self.sessions.register(entry)))
            return True
        if self.sessions.applies(entry.client_id, entry.request_number) or is_reconfiguration(entry.operation):
            return False  # (a reconfiguration runs even without its session: its epoch makes it at-most-once)
        self.sessions_evicted_refusals += 1
        self.committed_results.append(REFUSED_RESULT)
        return True

    def _check_restore(self, index: int, snapshot_op: int, executed: int) -> None:
        if snapshot_op < executed or snapshot_op > len(self.committed):
            raise self.fail(
                f"r{index}: restored a snapshot at op {snapshot_op} after executing op {executed} "
                f"({len(self.committed)} ops committed in the cluster)"
            )

    def _check_view_log(self, index: int, replica: Replica) -> None:
        # A replica in state transfer still holds its old view's log: it is not (yet) one of this view's.
        normal = replica.status is Status.NORMAL and not replica.state_transfer
        view = (replica.epoch, replica.view_number)
        state = (*view, normal)
        if state != self.checked_view.get(index):
            self.checked_view[index] = state
            self.checked_view_op[index] = 0
            if normal and replica.is_primary():
                # A view's log is the one its primary starts with; backups hold prefixes of it (checked
                # below), so an acknowledged op survives iff every new primary holds it.
                self._check_acknowledged(index, replica)
        if not normal:
            return
        start = self.checked_view_op.get(index, 0)
        if start > replica.op_number:  # a state transfer truncated the uncommitted suffix
            start = 0
        start = max(start, replica.log_base)  # ops in the snapshot: committed, checked above
        view_log = self.view_logs.setdefault(view, [])
        for op_number in range(start + 1, replica.op_number + 1):
            entry = replica.entry(op_number)
            assert entry is not None
            if op_number <= len(view_log):
                known = view_log[op_number - 1]
                if known is None:
                    view_log[op_number - 1] = entry
                elif known != entry:
                    raise self.fail(f"r{index}: two logs in (epoch, view) {view} at op {op_number}")
            elif op_number == len(view_log) + 1:
                view_log.append(entry)
            else:  # the first replica of this view we see started from a snapshot: fill the gap with None
                view_log.extend([None] * (op_number - len(view_log) - 1))
                view_log.append(entry)
        self.checked_view_op[index] = replica.op_number

    def _check_acknowledged(self, index: int, replica: Replica) -> None:
        view = (replica.epoch, replica.view_number)
        for op_number, (entry, acknowledged_in) in self.acknowledged.items():
            if view <= acknowledged_in:
                continue  # a primary of an older view may start late; it cannot commit anything (no quorum)
            if op_number <= replica.log_base:
                continue  # executed and folded into its snapshot: the commit checks cover it
            if op_number > replica.op_number or replica.entry(op_number) != entry:
                raise self.fail(
                    f"r{index}: entered (epoch, view) {view} without acknowledged op {op_number} ({entry})"
                )

    def on_client_reply(self, message: Any) -> None:
        if not isinstance(message, Reply):
            return
        key = (message.client_id, message.request_number)
        op_number = self.committed_at.get(key)
        if message.request_number == REGISTER_REQUEST_NUMBER and self.sessions is not None:
            # Its result names the session its own register op opened (a retry's: the same one, from the table).
            op_number = self.sessions.opened_by.get(parse_register_result(message.result) or 0)
            if op_number is None or self.committed[op_number - 1].client_id != key[0]:
                raise self.fail(f"client got a register reply {message} that names no register op of its own")
        if op_number is None and key in self.served_reads:
            return
        if op_number is None:
            raise self.fail(f"client got a reply for {key}, which is not committed")
        if message.result != self.committed_results[op_number - 1]:
            raise self.fail(f"client got a result for {key} that differs from the committed one")
        previous = self.acknowledged.get(op_number)
        sent_in = (self.reply_epochs[(message.client_id, message.request_number, message.view)], message.view)
        view = sent_in if previous is None else min(previous[1], sent_in)
        self.acknowledged[op_number] = (self.committed[op_number - 1], view)


@dataclass(slots=True)
class Holding:
    """A client's belief that it holds a lock: from the reply granting it (`start`) until `end` (virtual ms)."""

    name: str
    owner: str
    start: int
    end: float


class LeaseChecker:
    """The lease invariants (module docstring): over the committed log, and over what lease clients are told.

    Times are virtual ms. The simulator reports every Ready (`on_ready`: when each entry was first proposed),
    the checker every op as it is first committed (`on_commit`), and the lease clients what they were answered
    (`lock_granted`, `belief_extended`, `released`)."""

    def __init__(self, *, spread: float, violation: Callable[[str], Violation]) -> None:
        self._violation = violation
        self.spread = spread
        self.proposed: dict[LogEntry, int] = {}  # entry -> virtual ms at which its primary appended it
        # The committed log as far as leases go.
        self.view = -1
        self.view_start = 0  # when the first committed op of the latest view was proposed (failover refresh)
        self.live: dict[int, tuple[int, int]] = {}  # lease id -> (ttl_ms, when its deadline was last set)
        self.lock_holders: dict[str, tuple[str, int]] = {}  # lock name -> (owner, token) of its last grant
        self.last_token = 0
        self.grants = 0  # lock grants committed (re-entrant ones not counted)
        self.expire_ops = 0  # lease_expire ops committed
        self.expired = 0  # leases they ended
        self.expired_early_margin_ms: float | None = None  # the smallest (proposal gap - TTL bound) seen
        # As clients see it.
        self.holdings: dict[str, list[Holding]] = {}

    def fail(self, what: str) -> Violation:
        return self._violation(what)

    def belief(self, sent_at: int, ttl_ms: int) -> float:
        """Until when a lease acknowledged for a grant or keepalive first sent at `sent_at` surely lives."""
        return sent_at + ttl_ms / (1 + self.spread)

    # --- the committed log --------------------------------------------------------------------------------

    def on_ready(self, ready: Ready, now: int) -> None:
        for record in ready.persist:
            if isinstance(record, PersistLog):
                for entry in record.entries:
                    self.proposed.setdefault(entry, now)

    def on_commit(self, entry: LogEntry, result: bytes) -> None:
        proposed = self.proposed.get(entry)
        if proposed is None:
            raise self.fail(f"op {entry.op_number} committed without ever being proposed: {entry}")
        if entry.view > self.view:
            self.view, self.view_start = entry.view, proposed
        try:
            op = msgpack.unpackb(entry.operation)
            answer = msgpack.unpackb(result)
        except Exception:  # not an op of ours (a fuzzer's bytes, say): nothing about leases
            return
        if type(op) is not dict or _is_error(answer):
            return
        kind = op.get("op")
        if kind == "lease_grant":
            self.live[answer["lease"]] = (op["ttl_ms"], proposed)
        elif kind == "lease_keepalive":
            lease = self.live.get(op["lease"])
            if lease is not None:
                self.live[op["lease"]] = (lease[0], proposed)
        elif kind == "lease_revoke":
            self.live.pop(op["lease"], None)
        elif kind == "lease_expire":
            self._expire(entry, proposed, answer["expired"])
        elif kind == "lock" and answer.get("ok") is True:
            self._granted(entry, op, answer["token"])

    def _expire(self, entry: LogEntry, proposed: int, expired: list[int]) -> None:
        self.expire_ops += 1
        for lease_id in expired:
            lease = self.live.pop(lease_id, None)
            if lease is None:
                raise self.fail(f"op {entry.op_number}: lease_expire ended lease {lease_id}, which was not live")
            ttl_ms, refreshed = lease
            since = max(refreshed, self.view_start)
            margin = (proposed - since) - ttl_ms / (1 + self.spread)
            if self.expired_early_margin_ms is None or margin < self.expired_early_margin_ms:
                self.expired_early_margin_ms = margin
            if margin < -1:  # 1 ms: virtual time is in whole ms
                raise self.fail(
                    f"lease {lease_id} (ttl {ttl_ms} ms) expired early: lease_expire (op {entry.op_number}, view "
                    f"{entry.view}) proposed at {proposed} ms, {proposed - since} ms after its last refresh at "
                    f"{since} ms (grant or keepalive at {refreshed} ms, view {self.view} began at "
                    f"{self.view_start} ms)"
                )
            self.expired += 1

    def _granted(self, entry: LogEntry, op: dict[str, Any], token: int) -> None:
        name, owner = op["name"], op["owner"]
        if self.lock_holders.get(name) == (owner, token):
            return  # re-entrant: the same grant
        if token <= self.last_token:
            raise self.fail(
                f"op {entry.op_number}: lock {name!r} granted to {owner!r} with fencing token {token}, not above "
                f"the last grant's {self.last_token}"
            )
        self.last_token = token
        self.lock_holders[name] = (owner, token)
        self.grants += 1

    # --- as the lease clients see it ------------------------------------------------------------------------

    def lock_granted(self, name: str, owner: str, now: int, end: float) -> Holding:
        """`owner` was just told it holds lock `name`; it believes so until `end` (if that is still ahead: a
        grant whose answer arrives after the holder's lease may have ended gives it nothing to act on)."""
        holding = Holding(name, owner, now, end)
        self._check_overlap(holding, now, end)
        self.holdings.setdefault(name, []).append(holding)
        return holding

    def belief_extended(self, holding: Holding, end: float) -> None:
        """The holder's lease was acknowledged again: it now believes it holds the lock until `end`."""
        if end <= holding.end:
            return
        self._check_overlap(holding, max(holding.start, holding.end), end)
        holding.end = end

    def _check_overlap(self, holding: Holding, start: float, end: float) -> None:
        """No other owner believes it holds `holding`'s lock at any time in [start, end)."""
        for other in self.holdings.get(holding.name, ()):
            if other.owner != holding.owner and max(start, other.start) < min(end, other.end):
                raise self.fail(
                    f"two holders of lock {holding.name!r}: {holding.owner} holds it from {holding.start} ms "
                    f"until {end:.1f} ms, {other.owner} from {other.start} ms until {other.end:.1f} ms"
                )

    def released(self, holding: Holding, now: int) -> None:
        """The holder gave the lock up (it sent a revoke): it no longer acts as its holder."""
        holding.end = min(holding.end, now)


def _is_error(value: Any) -> bool:
    return type(value) is dict and value.keys() == {"error", "message"}
