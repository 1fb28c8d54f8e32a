"""From a user's `App` over msgpack values to the core's `StateMachine` over bytes; and loading apps by name.

Theory of operation
-------------------
The protocol core treats operations and results as opaque bytes (`zvsr.protocol.state_machine`). The adapter
sits between it and the application and owns three promises the core relies on:

1. `apply` never raises. Bytes that are not one msgpack value (or nest deeper than `OPERATION_NESTING_MAX`)
   give ``{"error": "bad_request", "message": ...}`` without reaching the app; an exception from the app gives
   ``{"error": "app_error", "message": "<ExceptionType>: <text>"}``; a result that msgpack cannot encode, or
   that encodes to more than RESULT_BYTES_MAX bytes, gives an ``app_error`` too. One bad operation therefore
   costs one error reply, never a replica (and never all replicas at once, which is what a deterministic crash
   on a committed operation would do).
2. `apply` is deterministic whenever the app is. Error messages are fixed strings or the app's own exception
   text; memory addresses (``<object at 0x7f…>``) are scrubbed from the latter, because they differ between
   replicas and results are stored in the replicated client table. Messages are cut to
   ERROR_MESSAGE_CHARS_MAX characters.
3. Whatever reaches the app is a plain msgpack value within bounds (operation size, nesting), so anything the
   app stores can be encoded again in a snapshot.

Cluster time reaches the app as an `OpContext` (op_number, timestamp_ns, view of the log entry), for apps
whose ``apply`` takes a second parameter; the adapter decides once, from the signature, when it wraps the app,
so apps written against ``apply(op)`` run unchanged. An app's optional ``due(timestamp_ns)`` is asked on the
primary; its answer is encoded (and bounded) like an operation, and an exception or an unencodable answer
counts as "nothing due" (`due_failures`), because a timer must not stop the primary.

`load_app("package.module:Class")` imports the module, instantiates the class with no arguments and checks the
instance has callable `apply`, `snapshot` and `restore`; every failure is an `AppLoadError` whose message says
what was wrong, so `zvsr node --app …` can print it and exit.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr.apps.base import ERROR_APP_ERROR, ERROR_BAD_REQUEST, AnyApp, App, ContextApp, OpContext, error_result

# Re-exported (`as` itself) until zvsr.fuzz.mutations imports it from zvsr.constants: it predates the move.
from zvsr.constants import (
    ERROR_MESSAGE_CHARS_MAX,
    OPERATION_BYTES_MAX,
    OPERATION_NESTING_MAX,
    READS_PENDING_MAX,
    RESULT_BYTES_MAX,
)

if TYPE_CHECKING:
    from zvsr.protocol.messages import LogEntry
    from zvsr.protocol.state_machine import ReadOnlyQueries, StateMachine

DEFAULT_APP_SPEC: Final = "zvsr.apps.coordination:CoordinationApp"

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_NOT_DECODED: Final = object()
_new_tuple = tuple.__new__


class AppLoadError(Exception):
    """An app spec names nothing usable; the message says what and why."""


class MsgpackStateMachine:
    """The core's `StateMachine` (bytes in, bytes out) over an `App` of msgpack values."""

    __slots__ = (
        "_app",
        "_packer",
        "_with_context",
        "_due",
        "due_failures",
        "_read_only",
        "_query",
        "_read_only_marks",
        "_decoded_reads",
    )

    def __init__(self, app: AnyApp) -> None:
        self._app = app
        # One packer per state machine: reused for speed, and a state machine is driven by one thread.
        self._packer = msgpack.Packer(use_bin_type=True)
        self._with_context = takes_context(app.apply)
        due = getattr(app, "due", None)
        self._due: Callable[[int], Any] | None = due if callable(due) else None
        self.due_failures = 0  # due() raised or answered something that is not an operation
        # Read-only ops (zvsr.apps.base): only an app that declares both methods has any.
        read_only, query = getattr(app, "read_only", None), getattr(app, "query", None)
        declared = callable(read_only) and callable(query)
        self._read_only: Callable[[Any], Any] | None = read_only if declared else None
        self._query: Callable[[Any], Any] | None = query if declared else None
        # The msgpack encodings of the strings every read-only op holds (`read_only_strings`, zvsr.apps.base):
        # an operation holding none of them is a write without a decode. A read encoded otherwise (str 8 for a
        # short string, say) just goes through the log: the filter only ever says "not read-only".
        strings = getattr(app, "read_only_strings", None) if declared else None
        self._read_only_marks: tuple[bytes, ...] | None = (
            tuple(msgpack.packb(text) for text in strings) if strings else None
        )
        # A read's operation decoded by `read_only`, kept for its `query` (the read waits in between): a get is
        # decoded once, not twice. Taken by `query`; bounded, since a read may be dropped instead (view change).
        self._decoded_reads: dict[bytes, Any] = {}

    @property
    def app(self) -> AnyApp:
        return self._app

    def apply(self, entry: LogEntry) -> bytes:
        op, problem = _decode_operation(entry.operation)
        if problem is not None:
            return self._error(ERROR_BAD_REQUEST, problem)
        try:
            if self._with_context:
                # tuple.__new__ skips the NamedTuple constructor's Python-level __new__: ~120 ns less per op.
                context = _new_tuple(OpContext, (entry.op_number, entry.timestamp, entry.view))
                result = cast(ContextApp, self._app).apply(op, context)
            else:
                result = cast(App, self._app).apply(op)
        except Exception as error:  # the app's bug or refusal; the replica must survive it (promise 1)
            return self._error(ERROR_APP_ERROR, _describe(error))
        return self._result(result)

    def read_only(self, operation: bytes) -> bool:
        """The app's declaration (`App.read_only`); False for an app that declares nothing, an operation that
        is not valid msgpack, or a declaration that raises or answers anything but True: the log is the
        safe default."""
        if self._read_only is None:
            return False
        marks = self._read_only_marks
        if marks is not None and not any(mark in operation for mark in marks):
            return False
        op, problem = _decode_operation(operation)
        if problem is not None:
            return False
        try:
            reads = self._read_only(op) is True
        except Exception:
            return False
        if reads:
            decoded = self._decoded_reads
            if len(decoded) >= READS_PENDING_MAX:
                decoded.clear()
            decoded[operation] = op
        return reads

    def query(self, operation: bytes) -> bytes:
        """A read-only op's result at the current state (`App.query`), encoded and bounded as `apply`'s are."""
        op = self._decoded_reads.pop(operation, _NOT_DECODED)
        if op is _NOT_DECODED:
            op, problem = _decode_operation(operation)
            if problem is not None:
                return self._error(ERROR_BAD_REQUEST, problem)
        if self._query is None:
            return self._error(ERROR_BAD_REQUEST, "the app declares no read-only operations")
        try:
            result = self._query(op)
        except Exception as error:
            return self._error(ERROR_APP_ERROR, _describe(error))
        return self._result(result)

    def _result(self, result: Any) -> bytes:
        try:
            data: bytes = self._packer.pack(result)
        except Exception as error:
            return self._error(ERROR_APP_ERROR, f"result cannot be encoded as msgpack: {_describe(error)}")
        if len(data) > RESULT_BYTES_MAX:
            return self._error(ERROR_APP_ERROR, f"result is {len(data)} bytes > {RESULT_BYTES_MAX}")
        return data

    def due(self, timestamp_ns: int) -> bytes | None:
        if self._due is None:
            return None
        try:
            op = self._due(timestamp_ns)
            if op is None:
                return None
            data: bytes = self._packer.pack(op)
        except Exception:  # the app's bug: no timer fires, the primary lives on
            self.due_failures += 1
            return None
        if len(data) > OPERATION_BYTES_MAX:
            self.due_failures += 1
            return None
        return data

    def snapshot(self) -> bytes:
        data = self._app.snapshot()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"{type(self._app).__name__}.snapshot() returned {type(data).__name__}, not bytes")
        return bytes(data)

    def restore(self, data: bytes) -> None:
        self._app.restore(data)

    def _error(self, code: str, message: str) -> bytes:
        if len(message) > ERROR_MESSAGE_CHARS_MAX:
            message = message[: ERROR_MESSAGE_CHARS_MAX - 3] + "..."
        # Exception text may hold lone surrogates, which UTF-8 cannot encode: replace them, deterministically.
        message = message.encode("utf-8", "replace").decode("utf-8")
        data: bytes = self._packer.pack(error_result(code, message))
        return data


def takes_context(apply: Callable[..., Any]) -> bool:
    """Whether a bound ``apply`` takes the op's context: ``apply(op, ctx)`` (or ``*args``), not ``apply(op)``."""
    try:
        parameters = inspect.signature(apply).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): the original interface
        return False
    positional = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


def _decode_operation(operation: bytes) -> tuple[Any, str | None]:
    """(the operation's msgpack value, None), or (None, why it is refused). Messages are fixed strings, so
    replicas running different msgpack versions still produce identical results."""
    size = len(operation)
    if size > OPERATION_BYTES_MAX:
        return None, f"operation is {size} bytes > {OPERATION_BYTES_MAX}"
    try:
        # Every element takes at least one byte, so the input size bounds every container honestly.
        op = msgpack.unpackb(
            operation,
            raw=False,
            strict_map_key=False,  # maps with int keys are ordinary msgpack from other languages
            max_bin_len=size,
            max_str_len=size,
            max_array_len=size,
            max_map_len=size,
            max_ext_len=size,
        )
    except Exception:  # ValueError subclasses, UnicodeDecodeError, TypeError (unhashable map key)…
        return None, "operation is not a single valid msgpack value"
    if not _nesting_within(op, OPERATION_NESTING_MAX):
        return None, f"operation nests deeper than {OPERATION_NESTING_MAX} levels"
    return op, None


def _nesting_within(value: Any, limit: int) -> bool:
    """Whether lists and maps in `value` nest at most `limit` deep. Iterative: it cannot recurse too far."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if type(item) is dict:
            children: Any = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        depth += 1
        if depth > limit:
            return False
        for child in children:
            if type(child) is dict or type(child) is list:
                pending.append((child, depth))
    return True


def _describe(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # a broken __str__ must not break the replica either
        text = "<unprintable>"
    return f"{type(error).__name__}: {_ADDRESS.sub('', text)}"


_APP_METHODS: Final = ("apply", "snapshot", "restore")


def load_app(spec: str) -> AnyApp:
    """Import ``package.module:Class`` (dotted attributes allowed), instantiate it, check it is an App."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise AppLoadError(f"app spec {spec!r} must look like 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise AppLoadError(f"app {spec!r}: cannot import module {module_name!r} ({error})") from error
    except Exception as error:  # a SyntaxError or any failure while the module runs
        raise AppLoadError(f"app {spec!r}: importing {module_name!r} failed: {_describe(error)}") from error
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(f"app {spec!r}: module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise AppLoadError(f"app {spec!r}: {attribute!r} is a {type(target).__name__}, not a class")
    try:
        app = target()
    except Exception as error:
        raise AppLoadError(f"app {spec!r}: {attribute}() failed: {_describe(error)}") from error
    missing = [name for name in _APP_METHODS if not callable(getattr(app, name, None))]
    if missing:
        raise AppLoadError(
            f"app {spec!r}: {type(app).__name__} lacks {', '.join(missing)}; "
            "an app needs apply(op), snapshot() and restore(data)"
        )
    return cast(AnyApp, app)


if TYPE_CHECKING:

    def _implements_state_machine(machine: MsgpackStateMachine) -> StateMachine:
        """Never called: makes mypy prove the adapter satisfies the core's interface."""
        return machine

    def _implements_read_only_queries(machine: MsgpackStateMachine) -> ReadOnlyQueries:
        """Never called: likewise for the optional read-only declaration."""
        return machine
