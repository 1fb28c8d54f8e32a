"""Answers a replica gives outside the VR protocol: the status query, and the reply to unreadable input.

Theory of operation
-------------------
A replica's client port speaks the client protocol of `zvsr.wire.codec` (Request in; Reply, Redirect, Error
out). More shapes share that port, numbered after the protocol's kinds (replica 1..10, client 20..23) so
they can never be mistaken for one:

======  ===============  ==================================================================================
type    message          fields
======  ===============  ==================================================================================
30      StatusQuery      none: exactly ``{"type": 30}``
31      Status           ``type`` plus the fields of `zvsr.runtime.node.ReplicaNode.status` (see there):
                         replica, cluster, epoch, status, view, role, primary, op_number, commit_number,
                         last_normal_view, state_transfer, start, last_heard_ms, acknowledged, counters, traffic,
                         uptime_s, endpoints, data_dir, log_first_op, log_last_op, snapshot_op,
                         cluster_time_ns, data_dir_bytes, fsync, metrics, watch_history
23      Error (bare)     ``{"type": 23, "code": "bad_request", "message": str}``
32      SnapshotQuery    ``{"type": 32, "prefix": str}``: the watch stream's snapshot (below)
33      Snapshot         ``{"type": 33, "op_number": uint, "items": {str: value}}``, or on failure
                         ``{"type": 33, "error": code, "message": str}``
36      HistoryQuery     ``{"type": 36, "from_op": uint}``: the watch stream's ops after ``from_op`` (below)
37      History          ``{"type": 37, "first_op": uint, "last_op": uint, "ops": [[uint, bin, bin], ...]}``,
                         or on failure ``{"type": 37, "error": code, "message": str}``
38      TransferQuery    ``{"type": 38, "to": uint}``: hand the primary role to replica ``to`` (below)
39      TransferAnswer   ``{"type": 39, "view": uint}``, or on failure ``{"type": 39, "error": code,
                         "message": str}``
======  ===============  ==================================================================================

(34 and 35, the backup query, are `zvsr.runtime.backup_query`'s.)

The watch stream (zguide's Clone pattern; docs/protocol.md §12) adds two shapes on a replica's *watch* XPUB,
each sent as two frames ``[topic, payload]``:

======  ===============  ==================================================================================
type    message          fields (topic)
======  ===============  ==================================================================================
40      WatchOp          ``{"type": 40, "op_number": uint, "operation": bin, "result": bin}`` (``op``)
41      WatchCommit      ``{"type": 41, "commit_number": uint}`` (``commit``), every
                         `WATCH_COMMIT_INTERVAL_MS` while subscribed: the replica executed every op up
                         to it (and published, before this, those executed while subscribed)
======  ===============  ==================================================================================

A snapshot answer's ``items`` are the app's keys starting with ``prefix`` and their values, as of
``op_number`` (the replica's commit_number when it answered). Its error codes: ``unavailable`` (the replica is
recovering and has no state yet: ask another), ``unsupported`` (the app cannot list keys), ``too_large`` (the
answer would exceed `SNAPSHOT_ANSWER_BYTES_MAX`: use a narrower prefix), ``bad_request`` (a type-32 map of
another shape).

A history answer says which executed ops the replica holds in memory (`zvsr.runtime.watch_history`): ops
``first_op``..``last_op`` (none if ``first_op`` is ``last_op + 1``), and lists in ``ops`` the first of them after
``from_op``, consecutive, as ``[op_number, operation, result]`` — at most `WATCH_HISTORY_CHUNK_OPS_MAX` ops and
about `WATCH_HISTORY_CHUNK_BYTES` bytes (at least one op when there is one): ask again after the last one. If
``from_op + 1 < first_op`` the ops after ``from_op`` are *compacted* — no longer held — and ``ops`` is empty. Its
error codes: ``unavailable`` (recovering, or starting), ``unsupported`` (the replica has no watch endpoint, so
keeps no history), ``bad_request``.

A transfer query asks the primary to hand its role to member ``to`` for planned maintenance
(`zvsr.runtime.transfer`, the core's `Replica.transfer_primary`): it starts the view change to the next view
``to`` leads, and answers that ``view`` at once — the change completes (or not) afterwards, which the asker sees
in ``to``'s status. Its error codes: ``not_primary`` (the replica asked is not the primary in normal status;
the message names the primary it believes in), ``behind`` (``to`` has not acknowledged every op committed yet:
under load it may lag by the ops in flight, so ask again), ``refused`` (the core's other reasons: ``to`` is no
other member, or a reconfiguration is in progress), ``bad_request`` (a type-38 map of another shape).

The status answer is diagnostics, not protocol: nothing in it is an acknowledgement, it may be read at any
moment, and its fields may grow (readers must ignore keys they do not know). Map keys are str, except in
``last_heard_ms``, which maps a peer's replica index (int) to the age in ms of the last valid message from it
(nil if none yet), and ``acknowledged`` (a primary's: backup index (int) → the highest op it acknowledged in
this view; empty on a backup); msgpack readers need ``strict_map_key=False`` for them.

Unreadable input on the client port. A client that sent something other than a Request or a StatusQuery gets
an answer rather than silence, so a REQ socket is never left waiting:
- if the payload is a msgpack map whose ``client_id`` and ``request_number`` are valid numbers, a full
  `Error` (type 23, every field) with code ``bad_request`` for that request, which every client decodes;
- otherwise a *bare* Error: type 23 with only ``code`` (always ``bad_request``) and ``message`` — no view,
  client_id or request_number, because there is no request to name. `decode_client_reply` refuses it
  (missing fields): to a client it is "the replica could not read what you sent", and it can never be taken
  for the answer to one of its requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr.constants import (
    CLIENT_MESSAGE_BYTES_MAX,
    ERROR_MESSAGE_CHARS_MAX,
    ID_MAX,
    OPERATION_BYTES_MAX,
    REPLICA_ID_MAX,
    RESULT_BYTES_MAX,
    SNAPSHOT_ANSWER_BYTES_MAX,
    STATUS_ANSWER_BYTES_MAX,
    TRANSFER_ANSWER_BYTES_MAX,
    WATCH_HISTORY_ANSWER_BYTES_MAX,
    WATCH_HISTORY_CHUNK_OPS_MAX,
    WATCH_MESSAGE_BYTES_MAX,
)
from zvsr.protocol.messages import ERROR_BAD_REQUEST
from zvsr.wire.codec import (
    REASON_MISSING_FIELD,
    REASON_NOT_A_MAP,
    REASON_NOT_MSGPACK,
    REASON_OUT_OF_RANGE,
    REASON_TOO_LARGE,
    REASON_UNEXPECTED_TYPE,
    REASON_UNKNOWN_FIELD,
    REASON_WRONG_TYPE,
    TYPE_ERROR,
    DecodeError,
)

TYPE_STATUS_QUERY: Final = 30
TYPE_STATUS_ANSWER: Final = 31

_STATUS_QUERY: Final = {"type": TYPE_STATUS_QUERY}


def encode_status_query() -> bytes:
    data: bytes = msgpack.packb(_STATUS_QUERY, use_bin_type=True)
    return data


def is_status_query(data: bytes) -> bool:
    """Whether `data` is exactly the map ``{"type": 30}`` (any valid msgpack spelling of it)."""
    if len(data) > CLIENT_MESSAGE_BYTES_MAX:
        return False
    value = _unpack_or_none(data)
    return type(value) is dict and value == _STATUS_QUERY and type(value["type"]) is int


def encode_status(status: Mapping[str, Any]) -> bytes:
    """``{"type": 31, **status}``; `status` holds only msgpack-native values."""
    data: bytes = msgpack.packb({"type": TYPE_STATUS_ANSWER, **status}, use_bin_type=True)
    return data


def decode_status(data: bytes) -> dict[str, Any]:
    """A status answer as a dict (with its ``type``); DecodeError if `data` is not one."""
    if len(data) > STATUS_ANSWER_BYTES_MAX:
        raise DecodeError(REASON_TOO_LARGE, f"status answer of {len(data)} bytes > {STATUS_ANSWER_BYTES_MAX}")
    value = _unpack_or_none(data, strict_map_key=False)
    if value is None:
        raise DecodeError(REASON_NOT_MSGPACK, "status answer is not one msgpack value")
    if type(value) is not dict:
        raise DecodeError(REASON_NOT_A_MAP, f"status answer is {type(value).__name__}")
    if value.get("type") != TYPE_STATUS_ANSWER or type(value.get("type")) is not int:
        # The type's kind, never its repr: a hostile value can nest deeper than repr can recurse.
        kind = type(value.get("type")).__name__
        raise DecodeError(REASON_UNEXPECTED_TYPE, f"not a status answer: type is {kind}")
    return value


def encode_bare_error(message: str) -> bytes:
    """The bare ``bad_request`` Error for input that names no request (see the module docstring)."""
    data: bytes = msgpack.packb(
        {"type": TYPE_ERROR, "code": ERROR_BAD_REQUEST, "message": _clip(message)}, use_bin_type=True
    )
    return data


def request_ids(data: bytes) -> tuple[int, int] | None:
    """(client_id, request_number) of an unreadable request, if it names them validly; else None."""
    if len(data) > CLIENT_MESSAGE_BYTES_MAX:
        return None
    value = _unpack_or_none(data)
    if type(value) is not dict:
        return None
    client_id, request_number = value.get("client_id"), value.get("request_number")
    if type(client_id) is int and type(request_number) is int:
        if 0 <= client_id <= ID_MAX and 0 <= request_number <= ID_MAX:
            return client_id, request_number
    return None


def clip_message(message: str) -> str:
    """An error message cut to ERROR_MESSAGE_CHARS_MAX characters (what the codec lets through)."""
    return _clip(message)


def _clip(message: str) -> str:
    if len(message) > ERROR_MESSAGE_CHARS_MAX:
        message = message[: ERROR_MESSAGE_CHARS_MAX - 3] + "..."
    # Lone surrogates cannot be encoded as UTF-8 (msgpack str): replace them.
    return message.encode("utf-8", "replace").decode("utf-8")


def _unpack_or_none(data: bytes, *, strict_map_key: bool = True) -> Any:
    size = len(data)
    try:
        # Every element takes at least one byte, so the input size bounds every container honestly.
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=strict_map_key,
            max_bin_len=size,
            max_str_len=size,
            max_array_len=size,
            max_map_len=size,
            max_ext_len=0,
        )
    except Exception:  # ValueError subclasses, UnicodeDecodeError, TypeError (unhashable key), StackError…
        return None


# --- the watch stream: snapshot query and answer (client port), published ops (watch PUB) ------------------

TYPE_SNAPSHOT_QUERY: Final = 32
TYPE_SNAPSHOT_ANSWER: Final = 33
TYPE_WATCH_OP: Final = 40
TYPE_WATCH_COMMIT: Final = 41

TOPIC_OP: Final = b"op"  # first frame of a WatchOp
TOPIC_COMMIT: Final = b"commit"  # first frame of a WatchCommit

# A snapshot answer's error codes (see the module docstring).
SNAPSHOT_UNAVAILABLE: Final = "unavailable"
SNAPSHOT_UNSUPPORTED: Final = "unsupported"
SNAPSHOT_TOO_LARGE: Final = "too_large"
SNAPSHOT_BAD_REQUEST: Final = ERROR_BAD_REQUEST
SNAPSHOT_ERRORS: Final = frozenset(
    {SNAPSHOT_UNAVAILABLE, SNAPSHOT_UNSUPPORTED, SNAPSHOT_TOO_LARGE, SNAPSHOT_BAD_REQUEST}
)

_SNAPSHOT_QUERY_KEYS: Final = frozenset({"type", "prefix"})
_SNAPSHOT_KEYS: Final = frozenset({"type", "op_number", "items"})
_SNAPSHOT_ERROR_KEYS: Final = frozenset({"type", "error", "message"})
_WATCH_OP_KEYS: Final = frozenset({"type", "op_number", "operation", "result"})
_WATCH_COMMIT_KEYS: Final = frozenset({"type", "commit_number"})


@dataclass(frozen=True, slots=True)
class SnapshotAnswer:
    """A decoded type-33 answer: `items` as of `op_number`, or `error` (a code) and `message`."""

    op_number: int = 0
    items: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class WatchOp:
    """One executed operation as published: its op number, the operation and the app's result (bytes)."""

    op_number: int
    operation: bytes
    result: bytes


@dataclass(frozen=True, slots=True)
class WatchCommit:
    """A replica's commit_number: every op up to it was published (by that replica) before this."""

    commit_number: int


def _query_fields(data: bytes, type_number: int, keys: frozenset[str], shape: str) -> dict[str, Any] | None:
    """The map of a query of `type_number`: None if `data` is not a map with that ``type`` at all (not ours, the
    next decoder may take it); DecodeError if it is one of another shape than `shape` (a ``bad_request``)."""
    if len(data) > CLIENT_MESSAGE_BYTES_MAX:
        return None
    value = _unpack_or_none(data)
    if type(value) is not dict or value.get("type") != type_number or type(value["type"]) is not int:
        return None
    if value.keys() != keys:
        raise DecodeError(REASON_UNKNOWN_FIELD, f"a {shape}")
    return value


def encode_snapshot_query(prefix: str) -> bytes:
    data: bytes = msgpack.packb({"type": TYPE_SNAPSHOT_QUERY, "prefix": prefix}, use_bin_type=True)
    return data


def decode_snapshot_query(data: bytes) -> str | None:
    """The prefix of a snapshot query; None if `data` is not a map with ``type`` 32 at all (not ours);
    DecodeError if it is one of another shape (it gets a ``bad_request`` snapshot answer)."""
    shape = 'snapshot query is exactly {"type": 32, "prefix": str}'
    value = _query_fields(data, TYPE_SNAPSHOT_QUERY, _SNAPSHOT_QUERY_KEYS, shape)
    if value is None:
        return None
    prefix = value["prefix"]
    if type(prefix) is not str:
        raise DecodeError(REASON_WRONG_TYPE, f"snapshot query: prefix must be a str, not {type(prefix).__name__}")
    return prefix


def encode_snapshot_answer(op_number: int, items: Mapping[str, Any]) -> bytes:
    """``{"type": 33, "op_number": n, "items": {...}}``; `items` holds msgpack values (the app's)."""
    data: bytes = msgpack.packb(
        {"type": TYPE_SNAPSHOT_ANSWER, "op_number": op_number, "items": dict(items)}, use_bin_type=True
    )
    return data


def encode_snapshot_error(code: str, message: str) -> bytes:
    assert code in SNAPSHOT_ERRORS, code
    data: bytes = msgpack.packb(
        {"type": TYPE_SNAPSHOT_ANSWER, "error": code, "message": _clip(message)}, use_bin_type=True
    )
    return data


def decode_snapshot_answer(data: bytes) -> SnapshotAnswer:
    """A type-33 answer; DecodeError if `data` is not one (e.g. the bare Error of a replica without the query)."""
    if len(data) > SNAPSHOT_ANSWER_BYTES_MAX:
        raise DecodeError(REASON_TOO_LARGE, f"snapshot answer of {len(data)} bytes > {SNAPSHOT_ANSWER_BYTES_MAX}")
    # Stored values are any msgpack values, int-keyed maps included.
    return _snapshot_answer(_map_of_type(data, TYPE_SNAPSHOT_ANSWER, "snapshot answer", strict_map_key=False))


def _snapshot_answer(value: dict[Any, Any]) -> SnapshotAnswer:
    if value.keys() == _SNAPSHOT_ERROR_KEYS:
        error, message = value["error"], value["message"]
        if type(error) is not str or type(message) is not str:
            raise DecodeError(REASON_WRONG_TYPE, "snapshot answer: error and message must be str")
        return SnapshotAnswer(error=error, message=message)
    _exact_keys(value, _SNAPSHOT_KEYS, "snapshot answer")
    op_number, items = _number(value, "op_number", "snapshot answer"), value["items"]
    if type(items) is not dict or any(type(key) is not str for key in items):
        raise DecodeError(REASON_WRONG_TYPE, "snapshot answer: items must be a map with str keys")
    return SnapshotAnswer(op_number=op_number, items=items)


# --- the history query: the ops a replica executed lately (client port) -----------------------------------------

TYPE_HISTORY_QUERY: Final = 36
TYPE_HISTORY_ANSWER: Final = 37

HISTORY_UNAVAILABLE: Final = SNAPSHOT_UNAVAILABLE
HISTORY_UNSUPPORTED: Final = SNAPSHOT_UNSUPPORTED
HISTORY_BAD_REQUEST: Final = ERROR_BAD_REQUEST
HISTORY_ERRORS: Final = frozenset({HISTORY_UNAVAILABLE, HISTORY_UNSUPPORTED, HISTORY_BAD_REQUEST})

_HISTORY_QUERY_KEYS: Final = frozenset({"type", "from_op"})
_HISTORY_KEYS: Final = frozenset({"type", "first_op", "last_op", "ops"})


@dataclass(frozen=True, slots=True)
class HistoryAnswer:
    """A decoded type-37 answer: the replica holds ops `first_op`..`last_op`; `ops` are the consecutive ones it
    sent (`WatchOp`s); or `error` (a code) and `message`."""

    first_op: int = 0
    last_op: int = 0
    ops: tuple[WatchOp, ...] = ()
    error: str | None = None
    message: str = ""

    def holds_after(self, op_number: int) -> bool:
        """Whether the replica holds the op after `op_number` (or every op after it, none yet): not compacted."""
        return self.error is None and op_number + 1 >= self.first_op


def encode_history_query(from_op: int) -> bytes:
    data: bytes = msgpack.packb({"type": TYPE_HISTORY_QUERY, "from_op": from_op}, use_bin_type=True)
    return data


def decode_history_query(data: bytes) -> int | None:
    """The ``from_op`` of a history query; None if `data` is not a map with ``type`` 36 at all (not ours);
    DecodeError if it is one of another shape (it gets a ``bad_request`` answer)."""
    shape = 'history query is exactly {"type": 36, "from_op": uint}'
    value = _query_fields(data, TYPE_HISTORY_QUERY, _HISTORY_QUERY_KEYS, shape)
    if value is None:
        return None
    return _number(value, "from_op", "history query")


def encode_history_answer(first_op: int, last_op: int, ops: list[tuple[int, bytes, bytes]]) -> bytes:
    """``{"type": 37, "first_op", "last_op", "ops": [[op_number, operation, result], ...]}``."""
    data: bytes = msgpack.packb(
        {"type": TYPE_HISTORY_ANSWER, "first_op": first_op, "last_op": last_op, "ops": ops}, use_bin_type=True
    )
    return data


def encode_history_error(code: str, message: str) -> bytes:
    assert code in HISTORY_ERRORS, code
    data: bytes = msgpack.packb(
        {"type": TYPE_HISTORY_ANSWER, "error": code, "message": _clip(message)}, use_bin_type=True
    )
    return data


def decode_history_answer(data: bytes) -> HistoryAnswer:
    """A type-37 answer; DecodeError if `data` is not a well-formed one."""
    if len(data) > WATCH_HISTORY_ANSWER_BYTES_MAX:
        limit = WATCH_HISTORY_ANSWER_BYTES_MAX
        raise DecodeError(REASON_TOO_LARGE, f"history answer of {len(data)} bytes > {limit}")
    return _history_answer(_map_of_type(data, TYPE_HISTORY_ANSWER, "history answer"))


def decode_watch_answer(data: bytes) -> SnapshotAnswer | HistoryAnswer:
    """A snapshot (type 33) or history (type 37) answer, read once; DecodeError if `data` is neither."""
    if len(data) > SNAPSHOT_ANSWER_BYTES_MAX:
        raise DecodeError(REASON_TOO_LARGE, f"answer of {len(data)} bytes > {SNAPSHOT_ANSWER_BYTES_MAX}")
    value = _unpack_or_none(data, strict_map_key=False)
    if type(value) is dict and type(value.get("type")) is int and value["type"] == TYPE_HISTORY_ANSWER:
        if len(data) > WATCH_HISTORY_ANSWER_BYTES_MAX:
            raise DecodeError(REASON_TOO_LARGE, f"history answer of {len(data)} bytes")
        return _history_answer(value)
    return _snapshot_answer(_checked_map(value, TYPE_SNAPSHOT_ANSWER, "snapshot answer"))


def _history_answer(value: dict[Any, Any]) -> HistoryAnswer:
    if value.keys() == _SNAPSHOT_ERROR_KEYS:
        error, message = value["error"], value["message"]
        if type(error) is not str or type(message) is not str:
            raise DecodeError(REASON_WRONG_TYPE, "history answer: error and message must be str")
        return HistoryAnswer(error=error, message=message)
    _exact_keys(value, _HISTORY_KEYS, "history answer")
    first_op, last_op = _number(value, "first_op", "history answer"), _number(value, "last_op", "history answer")
    ops, entries = value["ops"], list[WatchOp]()
    if first_op == 0 or first_op > last_op + 1 or type(ops) is not list or len(ops) > WATCH_HISTORY_CHUNK_OPS_MAX:
        raise DecodeError(REASON_OUT_OF_RANGE, "history answer: first_op 0 or past last_op + 1, or ops not a list")
    for index, item in enumerate(ops):
        if type(item) is not list or len(item) != 3:
            raise DecodeError(REASON_WRONG_TYPE, "history answer: each op is [op_number, operation, result]")
        op_number, operation, result = item
        if type(op_number) is not int or type(operation) is not bytes or type(result) is not bytes:
            raise DecodeError(REASON_WRONG_TYPE, "history answer: an op is [uint, bin, bin]")
        # Consecutive ops the replica holds: a receiver may apply them in order without looking further.
        expected = op_number if index == 0 else entries[0].op_number + index
        if op_number != expected or not first_op <= op_number <= last_op:
            raise DecodeError(REASON_OUT_OF_RANGE, "history answer: ops not consecutive within first_op..last_op")
        if len(operation) > OPERATION_BYTES_MAX or len(result) > RESULT_BYTES_MAX:
            raise DecodeError(REASON_OUT_OF_RANGE, "history answer: operation or result too large")
        entries.append(WatchOp(op_number, operation, result))
    return HistoryAnswer(first_op=first_op, last_op=last_op, ops=tuple(entries))


def encode_watch_op(op_number: int, operation: bytes, result: bytes) -> bytes:
    data: bytes = msgpack.packb(
        {"type": TYPE_WATCH_OP, "op_number": op_number, "operation": operation, "result": result},
        use_bin_type=True,
    )
    return data


def encode_watch_commit(commit_number: int) -> bytes:
    data: bytes = msgpack.packb({"type": TYPE_WATCH_COMMIT, "commit_number": commit_number}, use_bin_type=True)
    return data


def decode_watch_message(topic: bytes, data: bytes) -> WatchOp | WatchCommit:
    """One message of the watch stream (its two frames); DecodeError if it is not a well-formed one."""
    if len(data) > WATCH_MESSAGE_BYTES_MAX:
        raise DecodeError(REASON_TOO_LARGE, f"watch message of {len(data)} bytes > {WATCH_MESSAGE_BYTES_MAX}")
    if topic == TOPIC_OP:
        value = _map_of_type(data, TYPE_WATCH_OP, "watch op")
        _exact_keys(value, _WATCH_OP_KEYS, "watch op")
        op_number = _number(value, "op_number", "watch op")
        operation, result = value["operation"], value["result"]
        if type(operation) is not bytes or type(result) is not bytes:
            raise DecodeError(REASON_WRONG_TYPE, "watch op: operation and result must be bin")
        if op_number == 0 or len(operation) > OPERATION_BYTES_MAX or len(result) > RESULT_BYTES_MAX:
            raise DecodeError(REASON_OUT_OF_RANGE, "watch op: op_number 0, or operation or result too large")
        return WatchOp(op_number, operation, result)
    if topic == TOPIC_COMMIT:
        value = _map_of_type(data, TYPE_WATCH_COMMIT, "watch commit")
        _exact_keys(value, _WATCH_COMMIT_KEYS, "watch commit")
        return WatchCommit(_number(value, "commit_number", "watch commit"))
    raise DecodeError(REASON_UNEXPECTED_TYPE, f"unknown watch topic {topic[:32]!r}")


def _map_of_type(data: bytes, kind: int, what: str, *, strict_map_key: bool = True) -> dict[str, Any]:
    return _checked_map(_unpack_or_none(data, strict_map_key=strict_map_key), kind, what)


def _checked_map(value: Any, kind: int, what: str) -> dict[str, Any]:
    if value is None:
        raise DecodeError(REASON_NOT_MSGPACK, f"{what} is not one msgpack value")
    if type(value) is not dict:
        raise DecodeError(REASON_NOT_A_MAP, f"{what} is {type(value).__name__}")
    found = value.get("type")
    if type(found) is not int or found != kind:  # no repr of the input: it may nest 1000 deep
        shown = found if type(found) is int else type(found).__name__
        raise DecodeError(REASON_UNEXPECTED_TYPE, f"not a {what}: type {shown}")
    return value


def _exact_keys(value: dict[str, Any], keys: frozenset[str], what: str) -> None:
    if not keys <= value.keys():
        raise DecodeError(REASON_MISSING_FIELD, f"{what}: missing {', '.join(sorted(keys - value.keys()))}")
    if value.keys() != keys:
        raise DecodeError(REASON_UNKNOWN_FIELD, f"{what}: unknown fields {sorted(map(str, value.keys() - keys))}")


def _number(value: dict[str, Any], name: str, what: str) -> int:
    number = value[name]
    if type(number) is not int:
        raise DecodeError(REASON_WRONG_TYPE, f"{what}: {name} must be an int")
    if not 0 <= number <= ID_MAX:
        raise DecodeError(REASON_OUT_OF_RANGE, f"{what}: {name} {number} out of range")
    return number


# --- the transfer query: hand the primary role over for planned maintenance (client port) -------------------

TYPE_TRANSFER_QUERY: Final = 38
TYPE_TRANSFER_ANSWER: Final = 39

TRANSFER_NOT_PRIMARY: Final = "not_primary"
TRANSFER_BEHIND: Final = "behind"
TRANSFER_REFUSED: Final = "refused"
TRANSFER_BAD_REQUEST: Final = ERROR_BAD_REQUEST
TRANSFER_ERRORS: Final = frozenset({TRANSFER_NOT_PRIMARY, TRANSFER_BEHIND, TRANSFER_REFUSED, TRANSFER_BAD_REQUEST})

_TRANSFER_QUERY_KEYS: Final = frozenset({"type", "to"})
_TRANSFER_KEYS: Final = frozenset({"type", "view"})


@dataclass(frozen=True, slots=True)
class TransferAnswer:
    """A decoded type-39 answer: the view change to `view` started; or `error` (a code) and `message`."""

    view: int = 0
    error: str | None = None
    message: str = ""


def encode_transfer_query(to: int) -> bytes:
    data: bytes = msgpack.packb({"type": TYPE_TRANSFER_QUERY, "to": to}, use_bin_type=True)
    return data


def decode_transfer_query(data: bytes) -> int | None:
    """The ``to`` of a transfer query; None if `data` is not a map with ``type`` 38 at all (not ours);
    DecodeError if it is one of another shape (it gets a ``bad_request`` answer)."""
    shape = 'transfer query is exactly {"type": 38, "to": uint}'
    value = _query_fields(data, TYPE_TRANSFER_QUERY, _TRANSFER_QUERY_KEYS, shape)
    if value is None:
        return None
    to = _number(value, "to", "transfer query")
    if to > REPLICA_ID_MAX:
        raise DecodeError(REASON_OUT_OF_RANGE, f"transfer query: to {to} > {REPLICA_ID_MAX}")
    return to


def encode_transfer_answer(view: int) -> bytes:
    data: bytes = msgpack.packb({"type": TYPE_TRANSFER_ANSWER, "view": view}, use_bin_type=True)
    return data


def encode_transfer_error(code: str, message: str) -> bytes:
    assert code in TRANSFER_ERRORS, code
    data: bytes = msgpack.packb(
        {"type": TYPE_TRANSFER_ANSWER, "error": code, "message": _clip(message)}, use_bin_type=True
    )
    return data


def decode_transfer_answer(data: bytes) -> TransferAnswer:
    """A type-39 answer; DecodeError if `data` is not a well-formed one (e.g. the bare Error of a replica that
    does not know the query)."""
    if len(data) > TRANSFER_ANSWER_BYTES_MAX:
        raise DecodeError(REASON_TOO_LARGE, f"transfer answer of {len(data)} bytes > {TRANSFER_ANSWER_BYTES_MAX}")
    return read_transfer_answer(_unpack_or_none(data))


def read_transfer_answer(value: Any) -> TransferAnswer:
    """A type-39 answer already unpacked (any msgpack value); DecodeError if it is not a well-formed one."""
    value = _checked_map(value, TYPE_TRANSFER_ANSWER, "transfer answer")
    if value.keys() == _SNAPSHOT_ERROR_KEYS:
        error, message = value["error"], value["message"]
        if type(error) is not str or type(message) is not str:
            raise DecodeError(REASON_WRONG_TYPE, "transfer answer: error and message must be str")
        return TransferAnswer(error=error, message=message)
    _exact_keys(value, _TRANSFER_KEYS, "transfer answer")
    return TransferAnswer(view=_number(value, "view", "transfer answer"))
