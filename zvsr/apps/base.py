"""The user-facing application interface: a deterministic state machine over msgpack values.

A zvsr cluster replicates a log of operations; every replica feeds the committed ones, in op_number order, to
its own copy of the application. For the copies to stay identical the application must be deterministic: the
result of `apply` and the bytes of `snapshot` may depend only on the operations applied so far (and the
snapshot restored) — never on time, randomness, the process, the host, dict ordering of unordered inputs,
floating-point environment, or object identities.

Operations and results are msgpack values (None, bool, int, float, str, bytes, lists, maps), so clients in any
language can speak to any application. `zvsr.apps.adapter.MsgpackStateMachine` turns an `App` into the bytes
interface the protocol core uses (`zvsr.protocol.state_machine.StateMachine`), decoding operations, encoding
results, and turning an app's exceptions into error results so that a bad operation can never crash a replica.

An app plugs in by name: `zvsr node --app package.module:Class` imports the module, calls `Class()` with no
arguments, and checks that the instance has `apply`, `snapshot` and `restore` (`zvsr.apps.adapter.load_app`).
"""

from __future__ import annotations

from typing import Any, Final, Protocol, runtime_checkable

# Error results share one shape, {"error": code, "message": text}, whoever produces them.
ERROR_BAD_REQUEST: Final = "bad_request"  # the operation itself is malformed; retrying cannot help
ERROR_APP_ERROR: Final = "app_error"  # the application raised, or returned something unencodable


@runtime_checkable
class App(Protocol):
    """A deterministic application. Keep each call pure with respect to everything but the app's own state."""

    def apply(self, op: Any) -> Any:
        """Execute one committed operation (a msgpack value) and return its result (a msgpack value).

        Raising is allowed but discouraged: the adapter turns it into an ``app_error`` result for the client.
        State changes made before the exception stay (they are equally made on every replica).
        """
        ...

    def snapshot(self) -> bytes:
        """The whole state, as bytes that are identical on every replica that applied the same operations."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state with that of a snapshot; raise ValueError for bytes that are not one."""
        ...


def error_result(code: str, message: str) -> dict[str, str]:
    """The conventional error result, e.g. ``{"error": "bad_request", "message": "key must be a str"}``."""
    return {"error": code, "message": message}
