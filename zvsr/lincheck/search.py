"""Linearizability search: Wing & Gong's backtracking with Lowe's memoisation, as in Porcupine.

Theory of operation
-------------------
Each part of the history (see ``Model.partition``) is checked on its own.  Its operations become call and
return events sorted by time, kept in a doubly linked list.  The search walks the list from the front:

* at a call event, it tries to linearize that operation *now*: if the model accepts it from the current
  state and the pair (set of linearized operations, new state) has not been seen before, the operation's
  call and return events are unlinked ("lifted"), the old state is pushed on a stack, and the walk
  restarts from the front;
* at a return event, the operation it closes should already have taken effect but has not, so the search
  backtracks: it pops the last linearized operation, relinks its events and moves on to the next
  candidate after it.  An empty stack means no linearization exists.

Any operation whose call precedes the first remaining return is a candidate, which is exactly the
real-time order constraint.  The memo table makes the search visit each (set, state) pair once; the set
is a Python int used as a bitset.

Ties: a return is taken to precede a call only when its time is strictly smaller.  Events at equal times
sort calls first, so operations that touch at one instant count as concurrent -- the permissive reading
(Porcupine sorts the same way).

Unknown outcomes: an operation whose outcome is unknown gets its return at +infinity, so it never forces
a backtrack and may be linearized at any point after its call.  The search succeeds as soon as every
operation with a *finite* return has been linearized; the pending operations left over are the ones that
never took effect.  Operations with a ``FAILED`` output are dropped before the search, as are read-only
operations with an unknown output: neither can constrain anything.

Budget: the search polls a monotonic clock and gives up with the verdict ``"unknown"`` once the deadline
passes, so a caller always gets an answer in bounded time.

Diagnostics on failure: with every return before some return event R lifted, the prefix of the history
before R is linearizable.  The search records the latest such R it ever reaches; that gives the longest
linearizable prefix, the operation R closes (which no order could fit) and one linearization of the
prefix.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from zvsr.lincheck.history import FAILED, UNKNOWN, Operation
from zvsr.lincheck.models import Model

__all__ = ["CheckResult", "PartitionReport", "Verdict", "check"]

Verdict = Literal["ok", "illegal", "unknown"]

# How many lift/backtrack moves between two looks at the clock: the clock costs far more than a move, and
# a few thousand moves take well under a millisecond.
_CLOCK_EVERY = 1024


@dataclass(frozen=True)
class PartitionReport:
    """Outcome of the search on one part of the history."""

    index: int
    label: str
    verdict: Verdict
    operations: int
    states_explored: int
    elapsed_s: float
    # Illegal parts only: the number of call/return events (of ``events``) in the longest linearizable
    # prefix, the operation whose return ends it, and a linearization of that prefix.
    events: int = 0
    longest_prefix_events: int | None = None
    first_unlinearizable: Operation | None = None
    partial_linearization: tuple[Operation, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    """Verdict of :func:`check` with enough detail to find the offending part of a history.

    ``verdict`` is ``"ok"`` (linearizable), ``"illegal"`` (not linearizable) or ``"unknown"`` (the time
    budget ran out first).  ``failure`` is the report of the illegal part, or of the part that ran out of
    time.  ``partition_count`` is the number of parts the model split the history into and ``partitions``
    holds the reports of those that were searched (all of them unless the check stopped early).
    """

    verdict: Verdict
    operations: int
    elapsed_s: float
    partition_count: int = 0
    partitions: tuple[PartitionReport, ...] = ()
    failure: PartitionReport | None = None
    timeout_s: float | None = None
    model: Model | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    @property
    def states_explored(self) -> int:
        return sum(p.states_explored for p in self.partitions)

    def summary(self) -> str:
        """One line for people."""
        head = f"{self.operations} operations, {self.partition_count} partition(s), {self.elapsed_s:.3f} s"
        if self.verdict == "ok":
            return f"linearizable ({head})"
        fail = self.failure
        if self.verdict == "unknown":
            where = f" while checking {fail.label}" if fail else ""
            return f"unknown: time budget of {self.timeout_s} s exceeded{where} ({head})"
        assert fail is not None
        op = fail.first_unlinearizable
        blame = ""
        if op is not None:
            what = self.model.describe_operation(op.input, op.output) if self.model else repr(op.input)
            blame = (
                f"; no linearization fits client {op.client_id}'s {what} (call {op.call:g}, return {op.return_:g})"
            )
        return (
            f"NOT linearizable: {fail.label}: longest linearizable prefix is {fail.longest_prefix_events} of "
            f"{fail.events} events{blame} ({head})"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (operations rendered as text by the model)."""

        def op_json(op: Operation) -> dict[str, Any]:
            text = self.model.describe_operation(op.input, op.output) if self.model else repr(op.input)
            ret = op.return_ if math.isfinite(op.return_) else None
            return {"client": op.client_id, "call": op.call, "return": ret, "op": text}

        def part_json(p: PartitionReport) -> dict[str, Any]:
            out: dict[str, Any] = {
                "index": p.index,
                "label": p.label,
                "verdict": p.verdict,
                "operations": p.operations,
                "states_explored": p.states_explored,
                "elapsed_s": round(p.elapsed_s, 6),
            }
            if p.verdict == "illegal":
                out["events"] = p.events
                out["longest_prefix_events"] = p.longest_prefix_events
                out["first_unlinearizable"] = op_json(p.first_unlinearizable) if p.first_unlinearizable else None
                out["partial_linearization"] = [op_json(op) for op in p.partial_linearization]
            return out

        return {
            "verdict": self.verdict,
            "summary": self.summary(),
            "operations": self.operations,
            "partitions": self.partition_count,
            "partitions_searched": len(self.partitions),
            "elapsed_s": round(self.elapsed_s, 6),
            "timeout_s": self.timeout_s,
            "states_explored": self.states_explored,
            "failure": part_json(self.failure) if self.failure else None,
        }


def check(history: Sequence[Operation], model: Model, timeout_s: float | None = None) -> CheckResult:
    """Decide whether ``history`` is linearizable with respect to ``model``.

    ``timeout_s`` bounds the wall-clock time of the whole check (``None`` or ``0``: no bound).  Parts are
    searched smallest first so that a quick counter-example is found before a long search starts; the
    first illegal part ends the check.
    """
    start = time.monotonic()
    deadline = start + timeout_s if timeout_s else math.inf
    relevant = [op for op in history if _relevant(op, model)]
    parts = sorted(model.partition(relevant), key=len)
    reports: list[PartitionReport] = []
    verdict: Verdict = "ok"
    failure: PartitionReport | None = None
    for index, part in enumerate(parts):
        report = _check_part(index, model.describe_partition(part), part, model, deadline)
        reports.append(report)
        if report.verdict != "ok":
            verdict, failure = report.verdict, report
            break
    return CheckResult(
        verdict=verdict,
        operations=len(history),
        elapsed_s=time.monotonic() - start,
        partition_count=len(parts),
        partitions=tuple(reports),
        failure=failure,
        timeout_s=timeout_s or None,
        model=model,
    )


def _relevant(op: Operation, model: Model) -> bool:
    if op.output is FAILED:
        return False
    return not (op.pending and model.is_read_only(op.input))


def _check_part(
    index: int, label: str, ops: Sequence[Operation], model: Model, deadline: float
) -> PartitionReport:
    start = time.monotonic()
    outcome = _search(ops, model, deadline)
    illegal = outcome.verdict == "illegal"
    return PartitionReport(
        index=index,
        label=label,
        verdict=outcome.verdict,
        operations=len(ops),
        states_explored=outcome.states,
        elapsed_s=time.monotonic() - start,
        events=2 * len(ops),
        longest_prefix_events=outcome.prefix_events if illegal else None,
        first_unlinearizable=ops[outcome.blocking_op] if illegal else None,
        partial_linearization=tuple(ops[i] for i in outcome.linearization),
    )


@dataclass
class _Outcome:
    verdict: Verdict
    states: int
    prefix_events: int = 0
    blocking_op: int = 0
    linearization: tuple[int, ...] = ()


def _search(ops: Sequence[Operation], model: Model, deadline: float) -> _Outcome:
    """Wing & Gong / Lowe search over one part; see the module docstring."""
    n = len(ops)
    # Events as (time, kind, op): kind 0 = call sorts before kind 1 = return at equal times.
    events: list[tuple[float, int, int]] = []
    completed = [0] * n
    for i, op in enumerate(ops):
        pending = op.output is UNKNOWN or op.return_ == math.inf
        completed[i] = 0 if pending else 1
        events.append((op.call, 0, i))
        events.append((math.inf if pending else op.return_, 1, i))
    events.sort()

    # Entries 1..2n are the events in order; 0 is the head sentinel and 2n+1 the tail sentinel.  Parallel
    # lists of ints are markedly faster in CPython than node objects.
    size = 2 * n + 2
    tail = size - 1
    nxt = list(range(1, size + 1))
    prv = list(range(-1, size - 1))
    op_of = [-1] * size
    match = [-1] * size  # for a call entry, its return entry; -1 for returns and sentinels
    call_entry = [0] * n
    for pos, (_, kind, i) in enumerate(events, start=1):
        op_of[pos] = i
        if kind == 0:
            call_entry[i] = pos
        else:
            match[call_entry[i]] = pos
    nxt[tail] = tail

    inputs = [op.input for op in ops]
    # Pending operations see UNKNOWN even if the record carried an output: their effect is not known.
    outputs = [UNKNOWN if not completed[i] else op.output for i, op in enumerate(ops)]
    bits = [1 << i for i in range(n)]
    step = model.step

    remaining = sum(completed)
    if remaining == 0:
        return _Outcome("ok", 0)

    state: Any = model.init()
    linearized = 0
    stack: list[tuple[int, Any]] = []
    seen: set[tuple[int, Any]] = set()
    best_return = 0
    best_stack: list[int] = []
    moves = 0
    monotonic = time.monotonic

    entry = nxt[0]
    while True:
        ret = match[entry]
        if ret >= 0:
            o = op_of[entry]
            legal, new_state = step(state, inputs[o], outputs[o])
            if legal:
                key = (linearized | bits[o], new_state)
                if key not in seen:
                    seen.add(key)
                    stack.append((entry, state))
                    state = new_state
                    linearized = key[0]
                    remaining -= completed[o]
                    if remaining == 0:
                        return _Outcome("ok", len(seen))
                    before, after = prv[entry], nxt[entry]
                    nxt[before] = after
                    prv[after] = before
                    before, after = prv[ret], nxt[ret]
                    nxt[before] = after
                    prv[after] = before
                    moves += 1
                    if moves % _CLOCK_EVERY == 0 and monotonic() > deadline:
                        return _Outcome("unknown", len(seen))
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:
            # A return event: its operation had to be linearized by now.
            if entry > best_return:
                best_return = entry
                best_stack = [e for e, _ in stack]
            if not stack:
                return _Outcome(
                    "illegal",
                    len(seen),
                    prefix_events=best_return - 1,
                    blocking_op=op_of[best_return],
                    linearization=tuple(op_of[e] for e in best_stack),
                )
            entry, state = stack.pop()
            o = op_of[entry]
            linearized ^= bits[o]
            remaining += completed[o]
            ret = match[entry]
            # Relink in the reverse order of the unlinking so the neighbours' pointers are valid again.
            nxt[prv[ret]] = ret
            prv[nxt[ret]] = ret
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            entry = nxt[entry]
            moves += 1
            if moves % _CLOCK_EVERY == 0 and monotonic() > deadline:
                return _Outcome("unknown", len(seen))
