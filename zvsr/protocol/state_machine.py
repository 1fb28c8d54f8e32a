"""The interface between the protocol core and the replicated application.

The core hands committed operations to a `StateMachine` in op_number order, on every replica, exactly once per
replica lifetime; it stores the result in the client table (§4.1) so a retried request gets the same answer.
Operations and results are opaque bytes here; `zvsr.apps.adapter` turns a user's `apply(op) -> result` over
msgpack values into this interface. Implementations must be deterministic: same operations, same results, same
snapshot bytes, on every replica.
"""

from __future__ import annotations

from typing import Protocol


class StateMachine(Protocol):
    def apply(self, operation: bytes) -> bytes:
        """Execute one committed operation; never raises for bad input (returns an error result instead)."""
        ...

    def snapshot(self) -> bytes:
        """The whole application state, deterministically encoded."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole application state with a snapshot's."""
        ...
