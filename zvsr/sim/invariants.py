"""What must hold after every simulator event, checked incrementally so a run stays fast.

- committed-prefix agreement: every replica's op n, once committed there, equals everyone else's committed op n;
- each replica executes the committed log in order, each op once, exactly up to its commit_number, as its
  Ready says (`executed`, `restored`): commit_number never decreases within one replica's life (a diskless
  crash starts a new life), and each op's result is the one the committed log gives;
- one log per view: replicas in normal status in view v hold prefixes of one and the same log;
- app state identical at equal commit_number (snapshot digests);
- no (client_id, request_number) is committed at two op numbers, nor executed twice (the cluster's own ops,
  client_id 0, have no request to repeat);
- cluster time: the committed log's timestamps strictly increase, across view changes, restarts and snapshots;
- every Reply a client receives carries the result committed for its (client_id, request_number);
- acknowledged ops survive into every later view: a replica starting a view as its primary holds every op a
  client was answered for, at its op number (and every backup of the view holds a prefix of that log).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from zvsr.protocol.messages import INTERNAL_CLIENT_ID, LogEntry, Reply
from zvsr.protocol.ready import Ready
from zvsr.protocol.replica import Replica, Status
from zvsr.protocol.state_machine import StateMachine


class Violation(AssertionError):
    def __init__(self, seed: int, invariant: str, report: str) -> None:
        super().__init__(report)
        self.seed = seed
        self.invariant = invariant
        self.report = report


class Checker:
    def __init__(self, *, replicas: int, reference: StateMachine, violation: Callable[[str], Violation]) -> None:
        """`reference`: a fresh copy of the app, fed the committed log once; `violation`: how the simulation
        turns a broken invariant into a report (with its seed and trace)."""
        self._violation = violation
        count = replicas
        self.committed: list[LogEntry] = []  # the one committed log, op n at index n - 1
        self.committed_results: list[bytes] = []
        self.committed_at: dict[tuple[int, int], int] = {}  # (client_id, request_number) -> op_number
        self.digests: dict[int, bytes] = {}  # commit_number -> app snapshot digest
        # op_number -> (entry a client got a reply for, the view of that reply)
        self.acknowledged: dict[int, tuple[LogEntry, int]] = {}
        self.view_logs: dict[int, list[LogEntry | None]] = {}  # view -> longest log seen in normal status there
        self.checked_commit = [0] * count
        self.checked_view = [(-1, False)] * count  # (view, normal) last checked
        self.checked_view_op = [0] * count
        self.reference = reference

    def fail(self, what: str) -> Violation:
        return self._violation(what)

    def on_crash(self, index: int) -> None:
        self.checked_commit[index] = 0
        self.checked_view[index] = (-1, False)
        self.checked_view_op[index] = 0

    def after_step(self, index: int, replica: Replica, ready: Ready) -> None:
        self._check_executed(index, replica, ready)
        self._check_view_log(index, replica)

    def _check_executed(self, index: int, replica: Replica, ready: Ready) -> None:
        """What the replica says it executed (`Ready.executed`, `Ready.restored`) is the committed log, in order,
        each op exactly once, and brings it exactly to its commit_number; its app state agrees with every other
        replica's at that op. The core's own report is checked, not its internals: a driver relies on it."""
        before = self.checked_commit[index]
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
                if key in self.committed_at and entry.client_id != INTERNAL_CLIENT_ID:
                    raise self.fail(f"request {key} committed twice: ops {self.committed_at[key]} and {op_number}")
                if self.committed and entry.timestamp <= self.committed[-1].timestamp:
                    raise self.fail(
                        f"cluster time went backwards: op {op_number} stamped {entry.timestamp} after "
                        f"{self.committed[-1].timestamp} (views {self.committed[-1].view} -> {entry.view})"
                    )
                self.committed_at[key] = op_number
                self.committed.append(entry)
                # A reference copy of the app, fed the committed log once, gives the result each op must have.
                self.committed_results.append(self.reference.apply(entry))
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

    def _check_restore(self, index: int, snapshot_op: int, executed: int) -> None:
        if snapshot_op < executed or snapshot_op > len(self.committed):
            raise self.fail(
                f"r{index}: restored a snapshot at op {snapshot_op} after executing op {executed} "
                f"({len(self.committed)} ops committed in the cluster)"
            )

    def _check_view_log(self, index: int, replica: Replica) -> None:
        # A replica in state transfer still holds its old view's log: it is not (yet) one of this view's.
        normal = replica.status is Status.NORMAL and not replica.state_transfer
        view = replica.view_number
        state = (view, normal)
        if state != self.checked_view[index]:
            self.checked_view[index] = state
            self.checked_view_op[index] = 0
            if state[1] and replica.is_primary():
                # A view's log is the one its primary starts with; backups hold prefixes of it (checked
                # below), so an acknowledged op survives iff every new primary holds it.
                self._check_acknowledged(index, replica)
        if not normal:
            return
        start = self.checked_view_op[index]
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
                    raise self.fail(f"r{index}: two logs in view {view} at op {op_number}")
            elif op_number == len(view_log) + 1:
                view_log.append(entry)
            else:  # the first replica of this view we see started from a snapshot: fill the gap with None
                view_log.extend([None] * (op_number - len(view_log) - 1))
                view_log.append(entry)
        self.checked_view_op[index] = replica.op_number

    def _check_acknowledged(self, index: int, replica: Replica) -> None:
        view = replica.view_number
        for op_number, (entry, acknowledged_in) in self.acknowledged.items():
            if view <= acknowledged_in:
                continue  # a primary of an older view may start late; it cannot commit anything (no quorum)
            if op_number <= replica.log_base:
                continue  # executed and folded into its snapshot: the commit checks cover it
            if op_number > replica.op_number or replica.entry(op_number) != entry:
                raise self.fail(
                    f"r{index}: entered view {replica.view_number} without acknowledged op {op_number} ({entry})"
                )

    def on_client_reply(self, message: Any) -> None:
        if not isinstance(message, Reply):
            return
        key = (message.client_id, message.request_number)
        op_number = self.committed_at.get(key)
        if op_number is None:
            raise self.fail(f"client got a reply for {key}, which is not committed")
        if message.result != self.committed_results[op_number - 1]:
            raise self.fail(f"client got a result for {key} that differs from the committed one")
        previous = self.acknowledged.get(op_number)
        view = message.view if previous is None else min(previous[1], message.view)
        self.acknowledged[op_number] = (self.committed[op_number - 1], view)
