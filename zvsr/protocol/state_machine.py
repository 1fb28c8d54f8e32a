"""The interface between the protocol core and the replicated application.

The core hands committed log entries to a `StateMachine` in op_number order, on every replica, exactly once per
replica lifetime; it stores the result in the client table (§4.1) so a retried request gets the same answer.
Operations and results are opaque bytes here; `zvsr.apps.adapter` turns a user's `apply(op[, ctx]) -> result`
over msgpack values into this interface. Implementations must be deterministic: same entries (operation,
op_number, timestamp, view), same results, same snapshot bytes, on every replica.
"""

from __future__ import annotations

from typing import Protocol

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
