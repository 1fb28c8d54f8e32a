"""The user-facing application interface: a deterministic state machine over msgpack values.

A zvsr cluster replicates a log of operations; every replica feeds the committed ones, in op_number order, to
its own copy of the application. For the copies to stay identical the application must be deterministic: the
result of `apply` and the bytes of `snapshot` may depend only on the operations applied so far (and the
snapshot restored) — never on time, randomness, the process, the host, dict ordering of unordered inputs,
floating-point environment, or object identities.

Time comes from the log: the primary stamps every op with *cluster time* (`OpContext.timestamp_ns`), which never
goes backwards along the log, across view changes, restarts and snapshots (docs/design.md, "Cluster time").
An app that needs time (expiry, TTLs) takes `apply(op, ctx)` and reads `ctx.timestamp_ns`; it never reads a
clock. An app that wants something to happen at a time, with no client asking (a lease that expires),
implements `due(timestamp_ns)`: the primary asks it, with the current cluster time, for an operation to put
through the log, and every replica then applies that operation like any other.

Operations and results are msgpack values (None, bool, int, float, str, bytes, lists, maps), so clients in any
language can speak to any application. `zvsr.apps.adapter.MsgpackStateMachine` turns an `App` into the bytes
interface the protocol core uses (`zvsr.protocol.state_machine.StateMachine`), decoding operations, encoding
results, and turning an app's exceptions into error results so that a bad operation can never crash a replica.

An app plugs in by name: `zvsr node --app package.module:Class` imports the module, calls `Class()` with no
arguments, and checks that the instance has `apply`, `snapshot` and `restore` (`zvsr.apps.adapter.load_app`).
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple, Protocol, runtime_checkable

# Error results share one shape, {"error": code, "message": text}, whoever produces them.
ERROR_BAD_REQUEST: Final = "bad_request"  # the operation itself is malformed; retrying cannot help
ERROR_APP_ERROR: Final = "app_error"  # the application raised, or returned something unencodable


class OpContext(NamedTuple):
    """Where an operation is in the log, and the cluster time at which it was put there.

    Identical on every replica for the same op. `timestamp_ns` is the primary's stamp (nanoseconds of cluster
    time, not wall-clock time: it starts near 0 when a cluster is created and advances with the primaries'
    monotonic clocks); it strictly increases along the log for every op stamped since the cluster had cluster
    time. `view` is the view in which the op got its number: the first op of a view whose number is larger than
    the previous op's marks a failover.
    """

    op_number: int
    timestamp_ns: int
    view: int


@runtime_checkable
class App(Protocol):
    """A deterministic application. Keep each call pure with respect to everything but the app's own state."""

    def apply(self, op: Any) -> Any:
        """Execute one committed operation (a msgpack value) and return its result (a msgpack value).

        An app may instead define ``apply(self, op, ctx)``: it then gets the op's `OpContext` as well (the
        adapter looks at the signature once, when it wraps the app). Apps written against ``apply(op)`` keep
        working unchanged.

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


@runtime_checkable
class ContextApp(Protocol):
    """An `App` whose ``apply`` also takes the op's `OpContext` (an app that needs cluster time)."""

    def apply(self, op: Any, ctx: OpContext) -> Any: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


AnyApp = App | ContextApp  # what the adapter and `zvsr node --app` accept


# Optional, not part of the Protocol (most apps have no timers):
#
#     def due(self, timestamp_ns: int) -> Any:
#         """Called on the primary only, between operations, with the current cluster time: an operation
#         (msgpack value) to propose through the log now, or None. Must not change the app's state: it is a
#         question, and only the operation it returns, once committed, changes every replica alike. The
#         primary proposes at most one such operation at a time and asks again after it committed."""


# Optional too (apps with read-only operations; an app that declares nothing has every op go through the log):
#
#     def read_only(self, op: Any) -> bool:
#         """True only if `apply(op)` would change nothing and its result depends on the state alone (not on
#         the op's context: its time or place in the log). Deterministic; the primary asks it as a request
#         arrives, and may then answer the op without a log entry (the cluster's read_mode)."""
#
#     def query(self, op: Any) -> Any:
#         """The result `apply(op)` would give at the current state, without changing anything; called only
#         for an op `read_only` said True to."""
#
#     read_only_strings: tuple[str, ...]
#         """Optional, a speed-up: strings every read-only op holds as a msgpack string (e.g. its op name). An
#         operation whose bytes hold none of them is taken as not read-only without being decoded, so writes
#         do not pay a decode for the question. Leave it out unless every read-only op surely holds one."""


def error_result(code: str, message: str) -> dict[str, str]:
    """The conventional error result, e.g. ``{"error": "bad_request", "message": "key must be a str"}``."""
    return {"error": code, "message": message}
