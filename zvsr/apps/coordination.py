"""The built-in coordination service: a key-value store with compare-and-set, counters, and fenced locks.

Theory of operation
-------------------
`CoordinationApp` is an ordinary `App` (`zvsr.apps.base`): every replica applies the same committed operations
in the same order, so every copy holds the same state. Reads go through the log like writes (the core does
that), so every answer is linearizable. Nothing here reads time or randomness; locks therefore have no leases
or expiry — a lock is held until its owner unlocks it, and fencing tokens make a stale holder harmless.

Operations are msgpack maps with key ``"op"``. Keys and lock names are str; owners are str; values are any
msgpack value (nested at most `OPERATION_NESTING_MAX` deep: the adapter refuses deeper operations). Extra or
missing fields, wrong field types and unknown ops give ``{"error": "bad_request", "message": ...}``; the app
never raises. Error results are maps with exactly the keys ``error`` and ``message``. A stored value may have
that shape too, so a client reading one trusts the op it sent: a well-formed get never fails.

=========================================================  =================================================
operation                                                  result
=========================================================  =================================================
``{"op": "get", "key": k}``                                the value, or None if k is missing
``{"op": "put", "key": k, "value": v}``                    None
``{"op": "delete", "key": k}``                             True if k existed, else False
``{"op": "cas", "key": k, "expected": e, "new": n}``       ``{"ok": bool, "value": k's value after the op}``
``{"op": "incr", "key": k, "by": n}`` (``by`` optional)    the new int value (``by`` defaults to 1)
``{"op": "lock", "name": n, "owner": o}``                  ``{"ok": bool, "owner": holder, "token": int}``
``{"op": "unlock", "name": n, "owner": o}``                ``{"ok": bool}``
=========================================================  =================================================

Details:

- ``get`` answers None both for a missing key and for a key holding None; ``delete``'s answer tells them
  apart.
- ``cas`` sets k to n iff k currently holds e; ``expected: None`` means "k must be missing" (so it is
  create-if-absent, and a key holding None never matches it). Values compare as msgpack values, not as
  Python objects: ``1``, ``1.0`` and ``true`` are all different, and maps compare regardless of key order.
  ``value`` is k's value after the op (None if missing), so a failed cas tells the caller what to retry with.
- ``incr`` counts a missing key as 0; ``by`` may be negative. A stored value that is not an int gives
  ``{"error": "type_error", ...}``; a result outside msgpack's int range (-2**63 .. 2**64-1) gives
  ``{"error": "out_of_range", ...}``. Neither changes anything.
- ``lock`` grants a free lock to o with a fresh fencing token and answers ``ok: true``. If o already holds it,
  it answers ``ok: true`` with the same token (re-entrant, no count: one unlock releases it). If another owner
  holds it, it answers ``ok: false`` with that holder and its token. Tokens come from one counter per app that
  increases on every grant and is never reused, so a resource that remembers the highest token it has seen
  can refuse a stale holder (fencing).
- ``unlock`` releases the lock iff o holds it (``ok: true``); anything else is ``ok: false`` and changes
  nothing.

Snapshots are the msgpack map ``{"format": "zvsr.coordination", "version": 1, "data": {k: v}, "locks":
{name: [owner, token]}, "last_token": int}``, with data and locks in sorted key order, so equal states give
identical bytes. `restore` checks the structure and every invariant (str keys, distinct positive tokens not
above ``last_token``) and replaces the state only if all hold; otherwise it raises ValueError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr.apps.base import ERROR_BAD_REQUEST, OpContext, error_result

ERROR_TYPE_ERROR: Final = "type_error"
ERROR_OUT_OF_RANGE: Final = "out_of_range"

SNAPSHOT_FORMAT: Final = "zvsr.coordination"
SNAPSHOT_VERSION: Final = 1

# msgpack integers: int64 for negatives, uint64 for positives. A counter outside could not be encoded again.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1

# op -> (required fields, optional fields), not counting "op" itself.
_FIELDS: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "get": (frozenset({"key"}), frozenset()),
    "put": (frozenset({"key", "value"}), frozenset()),
    "delete": (frozenset({"key"}), frozenset()),
    "cas": (frozenset({"key", "expected", "new"}), frozenset()),
    "incr": (frozenset({"key"}), frozenset({"by"})),
    "lock": (frozenset({"name", "owner"}), frozenset()),
    "unlock": (frozenset({"name", "owner"}), frozenset()),
}
_STR_FIELDS: Final = ("key", "name", "owner")
_SNAPSHOT_KEYS: Final = frozenset({"format", "version", "data", "locks", "last_token"})

_MISSING: Final = object()


class _BadRequest(Exception):
    pass


class CoordinationApp:
    """Key-value store, counters and fenced locks; see the module docstring for every operation."""

    __slots__ = ("_data", "_locks", "_last_token", "_handlers")

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._locks: dict[str, tuple[str, int]] = {}  # name -> (owner, fencing token)
        self._last_token = 0  # the one token counter: the token of the latest grant
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "get": self._get,
            "put": self._put,
            "delete": self._delete,
            "cas": self._cas,
            "incr": self._incr,
            "lock": self._lock,
            "unlock": self._unlock,
        }

    # --- App ------------------------------------------------------------------------------------------------

    def apply(self, op: Any, ctx: OpContext) -> Any:
        try:
            name = _check_request(op)
        except _BadRequest as error:
            return error_result(ERROR_BAD_REQUEST, str(error))
        return self._handlers[name](op)

    def snapshot(self) -> bytes:
        state = {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "data": {key: self._data[key] for key in sorted(self._data)},
            "locks": {name: list(self._locks[name]) for name in sorted(self._locks)},
            "last_token": self._last_token,
        }
        data: bytes = msgpack.packb(state, use_bin_type=True)
        return data

    def restore(self, data: bytes) -> None:
        try:
            state = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as error:
            raise ValueError(f"coordination snapshot is not msgpack: {type(error).__name__}") from error
        data_map, locks, last_token = _check_snapshot(state)
        # Replace only after every check passed: a rejected snapshot leaves the state as it was.
        self._data = data_map
        self._locks = locks
        self._last_token = last_token

    # --- read-only views (not operations: nothing replicated goes through them) ----------------------------

    def items_with_prefix(self, prefix: str) -> dict[str, Any]:
        """The keys starting with `prefix` and their values, in sorted key order; locks are not included.

        Read-only and local: a replica answers the watch stream's snapshot query with it
        (zvsr.runtime.watch_publisher), consistent with its commit_number because the node's single thread
        calls it between core steps.
        """
        if type(prefix) is not str:
            raise TypeError(f"prefix must be a str, not {_kind(prefix)}")
        return {key: self._data[key] for key in sorted(self._data) if key.startswith(prefix)}

    # --- operations (the request is already checked) --------------------------------------------------------

    def _get(self, op: dict[str, Any]) -> Any:
        return self._data.get(op["key"])

    def _put(self, op: dict[str, Any]) -> None:
        self._data[op["key"]] = op["value"]

    def _delete(self, op: dict[str, Any]) -> bool:
        return self._data.pop(op["key"], _MISSING) is not _MISSING

    def _cas(self, op: dict[str, Any]) -> dict[str, Any]:
        key, expected = op["key"], op["expected"]
        current = self._data.get(key, _MISSING)
        if expected is None:
            ok = current is _MISSING
        else:
            ok = current is not _MISSING and _same_value(current, expected)
        if ok:
            self._data[key] = op["new"]
        return {"ok": ok, "value": self._data.get(key)}

    def _incr(self, op: dict[str, Any]) -> Any:
        key, by = op["key"], op.get("by", 1)
        if type(by) is not int:
            return error_result(ERROR_BAD_REQUEST, f"incr: 'by' must be an int, not {_kind(by)}")
        current = self._data.get(key, 0)
        if type(current) is not int:
            return error_result(ERROR_TYPE_ERROR, f"incr: key {key!r} holds {_kind(current)}, not an int")
        value = current + by
        if not _INT_MIN <= value <= _INT_MAX:
            return error_result(ERROR_OUT_OF_RANGE, f"incr: {current} + {by} is outside msgpack's int range")
        self._data[key] = value
        return value

    def _lock(self, op: dict[str, Any]) -> dict[str, Any]:
        name, owner = op["name"], op["owner"]
        holder = self._locks.get(name)
        if holder is None:
            self._last_token += 1
            holder = self._locks[name] = (owner, self._last_token)
        return {"ok": holder[0] == owner, "owner": holder[0], "token": holder[1]}

    def _unlock(self, op: dict[str, Any]) -> dict[str, bool]:
        name, owner = op["name"], op["owner"]
        holder = self._locks.get(name)
        if holder is None or holder[0] != owner:
            return {"ok": False}
        del self._locks[name]
        return {"ok": True}


# --- checks -------------------------------------------------------------------------------------------------


_KINDS: Final[dict[type, str]] = {
    type(None): "nil",
    bool: "a bool",
    int: "an int",
    float: "a float",
    str: "a str",
    bytes: "bytes",
    list: "an array",
    dict: "a map",
}


def _kind(value: object) -> str:
    """A msgpack-level name for a value's type, for error messages that read the same in every language."""
    return _KINDS.get(type(value), "an ext value")


def _check_request(op: Any) -> str:
    """The op name of a well-formed request, or _BadRequest saying what is wrong with it."""
    if type(op) is not dict:
        raise _BadRequest(f"an operation is a map with key 'op', not {_kind(op)}")
    name = op.get("op")
    if type(name) is not str or name not in _FIELDS:
        raise _BadRequest(f"'op' must be one of {', '.join(sorted(_FIELDS))}")
    required, optional = _FIELDS[name]
    present = op.keys() - {"op"}
    if not required <= present:
        raise _BadRequest(f"{name}: missing {', '.join(sorted(required - present))}")
    unknown = present - required - optional
    if unknown:
        raise _BadRequest(f"{name}: unknown field(s) {', '.join(sorted(repr(field) for field in unknown))}")
    for field in _STR_FIELDS:
        if field in op and type(op[field]) is not str:
            raise _BadRequest(f"{name}: {field!r} must be a str, not {_kind(op[field])}")
    return name


def _same_value(a: Any, b: Any) -> bool:
    """Equality of msgpack values: 1, 1.0 and True differ; maps compare as sets of pairs.

    Recursive; the adapter bounds operation nesting, so stored values are shallow enough.
    """
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        if a.keys() != b.keys():
            return False
        # Keys equal as Python values may still differ as msgpack values (1 vs True vs 1.0).
        key_types = {key: type(key) for key in a}
        return all(type(key) is key_types[key] and _same_value(a[key], b[key]) for key in b)
    return bool(a == b)


def _check_snapshot(state: Any) -> tuple[dict[str, Any], dict[str, tuple[str, int]], int]:
    """The (data, locks, last_token) of a well-formed snapshot, or ValueError."""
    if type(state) is not dict or state.keys() != _SNAPSHOT_KEYS:
        raise ValueError("coordination snapshot: not a map with keys " + ", ".join(sorted(_SNAPSHOT_KEYS)))
    if state["format"] != SNAPSHOT_FORMAT or state["version"] != SNAPSHOT_VERSION:
        raise ValueError(f"coordination snapshot: unsupported format {state['format']!r} v{state['version']!r}")
    data, raw_locks, last_token = state["data"], state["locks"], state["last_token"]
    if type(last_token) is not int or last_token < 0:
        raise ValueError("coordination snapshot: last_token must be an int >= 0")
    if type(data) is not dict or any(type(key) is not str for key in data):
        raise ValueError("coordination snapshot: data must be a map with str keys")
    if type(raw_locks) is not dict:
        raise ValueError("coordination snapshot: locks must be a map")
    locks: dict[str, tuple[str, int]] = {}
    for name, holder in raw_locks.items():
        if not (
            type(name) is str
            and type(holder) is list
            and len(holder) == 2
            and type(holder[0]) is str
            and type(holder[1]) is int
            and 1 <= holder[1] <= last_token
        ):
            raise ValueError(f"coordination snapshot: bad lock {name!r}: {holder!r}")
        locks[name] = (holder[0], holder[1])
    if len({token for _, token in locks.values()}) != len(locks):
        raise ValueError("coordination snapshot: two locks share a fencing token")
    return data, locks, last_token
