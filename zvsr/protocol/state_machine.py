"""The interface between the protocol core and the replicated application.

The core hands committed log entries to a `StateMachine` in op_number order, on every replica, exactly once per
replica lifetime; it stores the result in the client table (§4.1) so a retried request gets the same answer.
Operations and results are opaque bytes here; `zvsr.apps.adapter` turns a user's `apply(op[, ctx]) -> result`
over msgpack values into this interface. A state machine that also implements `ReadOnlyQueries` declares which
operations only read: the primary may then answer them without a log entry (`zvsr.protocol.reads`); one that does
not has every operation go through the log. Implementations must be deterministic: same entries (operation,
op_number, timestamp, view), same results, same snapshot bytes, on every replica.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from zvsr.protocol.messages import LogEntry


class StateMachine(Protocol):
    def apply(self, entry: LogEntry) -> bytes:
        """Execute one committed entry's operation, at the entry's place and cluster time; never raises for bad
        input (returns an error result instead)."""
        ...

    def due(self, timestamp_ns: int) -> bytes | None:
        """Asked on the primary only, with its cluster time: an operation the cluster must put through the log
        now (a timer of the app's that came due), or None. Must not change the state; never raises."""
        ...

    def snapshot(self) -> bytes:
        """The whole application state, deterministically encoded."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole application state with a snapshot's."""
        ...


@runtime_checkable
class ReadOnlyQueries(Protocol):
    """Optional: the read-only operations of a state machine (the core checks with `isinstance`, once).

    `read_only(operation)` is True only for an operation whose `apply` would change nothing (no state, no
    bookkeeping an op makes before it runs, such as the coordination app's lease refresh at a new view) and
    whose result depends on the state alone, never on the entry's place or cluster time. `query(operation)` is
    then that result, computed from the current state without changing it: the same bytes `apply` would have
    returned at the same state. Both are deterministic and never raise.
    """

    def read_only(self, operation: bytes) -> bool: ...

    def query(self, operation: bytes) -> bytes: ...
