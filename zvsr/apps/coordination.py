"""The built-in coordination service: a key-value store with compare-and-set, counters, fenced locks and leases.

Theory of operation
-------------------
`CoordinationApp` is an ordinary `App` (`zvsr.apps.base`): every replica applies the same committed operations,
each with the same `OpContext`, in the same order, so every copy holds the same state. Reads are linearizable
whether they go through the log or not (the core sees to it: `zvsr.protocol.reads`). Nothing here reads a clock
or randomness: the only time is the op's cluster time, ``ctx.timestamp_ns`` (see "Leases and time" below).

Read-only operations: ``get`` and ``lease_list`` (`read_only`, `query`): with a cluster's read_mode read_index or
lease (the default is read_index) the primary answers them from its state without a log entry, with the same
result the log would have given. Every other op, and a malformed get, goes through the log.

Operations are msgpack maps with key ``"op"``. Keys and lock names are str; owners are str; lease ids,
``ttl_ms`` and ``lock_delay_ms`` are ints; values are any msgpack value (nested at most `OPERATION_NESTING_MAX`
deep: the adapter refuses deeper operations). Extra or missing fields, wrong field types and unknown ops give
``{"error": "bad_request", "message": ...}``; the app never raises. Error results are maps with exactly the keys
``error`` and ``message``, and an op that gives one changes nothing (what happens before every op, whatever it
is, is under "Leases and time"). A stored value may have that shape too, so a client reading one trusts the op
it sent: a well-formed get never fails. Fields in brackets are optional.

============================================================  ==================================================
operation                                                     result
============================================================  ==================================================
``{"op": "get", "key": k}``                                   the value, or None if k is missing
``{"op": "put", "key": k, "value": v[, "lease": id]}``        None
``{"op": "delete", "key": k}``                                True if k existed, else False
``{"op": "cas", "key": k, "expected": e, "new": n}``          ``{"ok": bool, "value": k's value after the op}``
``{"op": "incr", "key": k[, "by": n]}``                       the new int value (``by`` defaults to 1)
``{"op": "lock", "name": n, "owner": o[, "lease": id]}``      ``{"ok": bool, "owner": holder, "token": int}``,
                                                              and ``"delay_ms": int`` while n is in a lock delay
``{"op": "unlock", "name": n, "owner": o}``                   ``{"ok": bool}``
``{"op": "lease_grant", "ttl_ms": t[, "lock_delay_ms": d]}``  ``{"lease": id, "ttl_ms": t}``
``{"op": "lease_keepalive", "lease": id}``                    the int ms the lease now has left: its ttl_ms
``{"op": "lease_revoke", "lease": id}``                       ``{"ok": bool, "deleted": [keys]}``
``{"op": "lease_ttl", "lease": id}``                          ``{"lease": id, "ttl_ms": t, "remaining_ms": int,
                                                              "keys": [keys], "locks": [names]}``
``{"op": "lease_list"}``                                      the live lease ids, ascending
``{"op": "lease_expire"}``                                    ``{"expired": [ids], "deleted": [keys]}``
============================================================  ==================================================

Details (lists in results are sorted: ids ascending, names in code-point order):

- ``get`` answers None both for a missing key and for a key holding None; ``delete``'s answer tells them
  apart.
- ``cas`` sets k to n iff k currently holds e; ``expected: None`` means "k must be missing" (so it is
  create-if-absent, and a key holding None never matches it). Values compare as msgpack values, not as
  Python objects: ``1``, ``1.0`` and ``true`` are all different, and maps compare regardless of key order.
  ``value`` is k's value after the op (None if missing), so a failed cas tells the caller what to retry with.
- ``incr`` counts a missing key as 0; ``by`` may be negative. A stored value that is not an int gives
  ``{"error": "type_error", ...}``; a result outside msgpack's int range (-2**63 .. 2**64-1) gives
  ``{"error": "out_of_range", ...}``.
- ``lock`` grants a free lock to o with a fresh fencing token and answers ``ok: true``. If o already holds it,
  it answers ``ok: true`` with the same token (re-entrant, no count: one unlock releases it). If another owner
  holds it, it answers ``ok: false`` with that holder and its token. Tokens come from one counter per app that
  increases on every grant and is never reused, so a resource that remembers the highest token it has seen
  can refuse a stale holder (fencing).
- ``unlock`` releases the lock iff o holds it (``ok: true``); anything else is ``ok: false`` and changes
  nothing.
- ``lease_grant`` creates a lease that lives ``ttl_ms`` (`LEASE_TTL_MS_MIN` .. `LEASE_TTL_MS_MAX`) from the op's
  cluster time unless kept alive; ``lock_delay_ms`` (0 .. `LEASE_LOCK_DELAY_MS_MAX`, default 0) is its lock
  delay. Ids come from one counter per app, starting at 1, never reused. Out of range: ``out_of_range``; with
  `LEASES_MAX` leases live: ``lease_limit``.
- ``lease_keepalive`` restarts the lease's ttl from the op's time and answers its ttl_ms.
- ``lease_revoke`` ends the lease now: its keys are deleted (``deleted`` lists them), its locks released, with
  no lock delay. An unknown lease gives ``{"ok": false, "deleted": []}``.
- ``lease_ttl`` describes a live lease: its ttl, the whole ms left until its deadline (0 once it passed), and
  the keys and locks attached to it.
- ``lease_expire`` ends the leases whose deadline is at or before the op's time, smallest deadline first (ties:
  smaller id): at most `LEASE_EXPIRE_BATCH_MAX`, and no more than fit their key and lock names in
  `LEASE_NAMES_BYTES_MAX` (the first always does); the rest stay due. Their keys are deleted, their locks
  released, each into the lease's lock delay. ``expired`` lists the ended leases, ``deleted`` their keys.
- ``"lease": id`` on ``put`` attaches the key to that lease (it is deleted when the lease ends); a put without
  it detaches the key from any lease (as in etcd), and so does deleting the key. ``cas`` and ``incr`` keep a
  key's attachment (a key they create has none). On ``lock``, a grant attaches the lock to the lease (it is
  released when the lease ends); a re-entrant lock changes nothing (same token, same lease or none); an
  ``unlock`` detaches. A key or lock is attached to one lease at most: attaching it to another moves it.
- Leases named by an op must be live, else ``lease_not_found`` (``lease_revoke`` excepted). Attaching a name to
  a lease that already has `LEASE_KEYS_MAX` keys and locks, or whose names would then take more than
  `LEASE_NAMES_BYTES_MAX` bytes encoded (UTF-8 + 5 each), gives ``lease_keys_limit``. ``lease_list`` and the
  names a lease_ttl, lease_revoke or lease_expire lists therefore always fit in one result.

Leases and time
---------------
A lease's deadline is in cluster time: the ns timestamp the primary stamped on the op that granted it or kept
it alive, plus its ttl. Cluster time is identical on every replica and only grows along the log, so every
replica agrees on every deadline, but no replica acts on one by itself: a lease ends only when a
``lease_expire`` op (or a revoke) is applied, and the lease_expire op decides at its own timestamp. The primary
asks `due` between steps with the current cluster time and proposes ``{"op": "lease_expire"}`` through the log
when a live lease's deadline has passed; a client may send one too, harmlessly. Until that op is applied, a
lease past its deadline is still live (a keepalive restarts it; nothing it holds was released meanwhile).

Failover: the app remembers the view of the last op it applied (every op, malformed ones too). When an op comes
with a larger view, before that op is handled, every live lease's deadline becomes at least that op's time plus
its ttl. A new primary's first ops therefore never expire a lease granted or kept alive before the failover:
its holder gets a whole ttl, measured on the new primary's clock, to reach the new primary and keep it alive
(etcd refreshes leases on a leader change for the same reason). A new primary may still propose one
lease_expire that ends nothing, because `due` cannot know the view of the op it proposes.

Lock delay: when an expiring lease had ``lock_delay_ms`` > 0, each lock it held stays unavailable to everyone
until the expire op's time plus the delay (as Consul's lock-delay): ``lock`` answers ``{"ok": false, "owner":
None, "token": <the last holder's token>, "delay_ms": <whole ms left, rounded up>}``, so a holder that did not
notice its lease ending has that long to stop before a new holder (with a larger token) starts. A revoke, being
deliberate, has no delay. A delay is forgotten at the first op at or after its end.

Snapshots are the msgpack map ``{"format": "zvsr.coordination", "version": 2, "data": {k: v}, "locks": {name:
[owner, token]}, "last_token": int, "leases": {id: [ttl_ms, deadline_ns, lock_delay_ms, [keys], [locks]]},
"lock_delays": {name: [until_ns, token]}, "last_lease_id": int, "last_view": int}``, every map in sorted key
order and every list of names sorted, so equal states give identical bytes. `restore` also takes version 1
(the first five keys: no leases, last_view 0). It checks the structure and every invariant (str keys; distinct
positive tokens, held or delayed, not above ``last_token``; no lock both held and delayed; lease ids 1 ..
``last_lease_id``; ttl_ms >= 1; every attached key exists and every attached lock is held, each on one lease at
most) and replaces the state only if all hold; otherwise it raises ValueError. Admission bounds (`LEASES_MAX`,
`LEASE_KEYS_MAX`, ...) are not checked there, so a snapshot taken under other bounds still restores.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Container
from typing import Any, Final, NamedTuple

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr import constants as c
from zvsr.apps.base import ERROR_BAD_REQUEST, OpContext, error_result

ERROR_TYPE_ERROR: Final = "type_error"
ERROR_OUT_OF_RANGE: Final = "out_of_range"
ERROR_LEASE_NOT_FOUND: Final = "lease_not_found"  # no live lease with that id (never granted, or ended)
ERROR_LEASE_LIMIT: Final = "lease_limit"  # LEASES_MAX leases are live
ERROR_LEASE_KEYS_LIMIT: Final = "lease_keys_limit"  # the lease has LEASE_KEYS_MAX names, or LEASE_NAMES_BYTES_MAX

SNAPSHOT_FORMAT: Final = "zvsr.coordination"
SNAPSHOT_VERSION: Final = 2  # what `snapshot` writes; `restore` also reads version 1

# msgpack integers: int64 for negatives, uint64 for positives. A counter outside could not be encoded again.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1

_NS_PER_MS: Final = 1_000_000
_STR_HEADER_BYTES_MAX: Final = 5  # msgpack str32: 0xdb and a 4-byte length

# op -> (required fields, optional fields), not counting "op" itself.
_FIELDS: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "get": (frozenset({"key"}), frozenset()),
    "put": (frozenset({"key", "value"}), frozenset({"lease"})),
    "delete": (frozenset({"key"}), frozenset()),
    "cas": (frozenset({"key", "expected", "new"}), frozenset()),
    "incr": (frozenset({"key"}), frozenset({"by"})),
    "lock": (frozenset({"name", "owner"}), frozenset({"lease"})),
    "unlock": (frozenset({"name", "owner"}), frozenset()),
    "lease_grant": (frozenset({"ttl_ms"}), frozenset({"lock_delay_ms"})),
    "lease_keepalive": (frozenset({"lease"}), frozenset()),
    "lease_revoke": (frozenset({"lease"}), frozenset()),
    "lease_ttl": (frozenset({"lease"}), frozenset()),
    "lease_list": (frozenset(), frozenset()),
    "lease_expire": (frozenset(), frozenset()),
}
# Ops whose result is a function of the state alone and whose apply changes nothing but the bookkeeping every op
# does first (lease refresh at a new view, ending lock delays), which neither of them reads.
_READ_ONLY_OPS: Final = frozenset({"get", "lease_list"})
_STR_FIELDS: Final = ("key", "name", "owner")
_INT_FIELDS: Final = ("lease", "ttl_ms", "lock_delay_ms")
# Derived from the above for `_check_request`: the keys each op may and must have ("op" included), and the
# fields of a fixed type it may carry, in the order they are checked.
_ALLOWED_KEYS: Final = {name: required | optional | {"op"} for name, (required, optional) in _FIELDS.items()}
_REQUIRED_KEYS: Final = {name: required | {"op"} for name, (required, _) in _FIELDS.items()}
_TYPED_FIELDS: Final = {
    name: tuple(
        (field, kind)
        for fields, kind in ((_STR_FIELDS, str), (_INT_FIELDS, int))
        for field in fields
        if field in required | optional
    )
    for name, (required, optional) in _FIELDS.items()
}
_SNAPSHOT_KEYS_V1: Final = frozenset({"format", "version", "data", "locks", "last_token"})
_SNAPSHOT_KEYS: Final[dict[int, frozenset[str]]] = {
    1: _SNAPSHOT_KEYS_V1,
    2: _SNAPSHOT_KEYS_V1 | {"leases", "lock_delays", "last_lease_id", "last_view"},
}
# The deadline heap is rebuilt when it holds more than twice the live leases plus this many entries.
_HEAP_SLACK: Final = 64

_MISSING: Final = object()


class _Refused(Exception):
    """An operation refused before it changed anything; `code` and the message make its error result."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _BadRequest(_Refused):
    def __init__(self, message: str) -> None:
        super().__init__(ERROR_BAD_REQUEST, message)


class _Lease:
    """A live lease. Its keys and locks are also indexed by name (`CoordinationApp._key_lease`, `_lock_lease`)."""

    __slots__ = ("ttl_ms", "deadline_ns", "lock_delay_ms", "keys", "locks", "name_bytes")

    def __init__(self, ttl_ms: int, deadline_ns: int, lock_delay_ms: int) -> None:
        self.ttl_ms = ttl_ms
        self.deadline_ns = deadline_ns  # cluster time at which it may be expired
        self.lock_delay_ms = lock_delay_ms
        self.keys: set[str] = set()
        self.locks: set[str] = set()
        self.name_bytes = 0  # the encoded size of its keys' and locks' names, at most (`_name_bytes`)


class _State(NamedTuple):
    """The replicated state of a checked snapshot."""

    data: dict[str, Any]
    locks: dict[str, tuple[str, int]]
    last_token: int
    leases: dict[int, _Lease]
    key_lease: dict[str, int]
    lock_lease: dict[str, int]
    lock_delays: dict[str, tuple[int, int]]
    last_lease_id: int
    last_view: int


class CoordinationApp:
    """Key-value store, counters, fenced locks and leases; see the module docstring for every operation."""

    __slots__ = (
        "_data",
        "_locks",
        "_last_token",
        "_leases",
        "_key_lease",
        "_lock_lease",
        "_lock_delays",
        "_last_lease_id",
        "_last_view",
        "_deadlines",
        "_delay_ends",
        "_handlers",
    )

    def __init__(self) -> None:
        # Replicated state: in the snapshot, and a function of the ops applied and their contexts alone.
        self._data: dict[str, Any] = {}
        self._locks: dict[str, tuple[str, int]] = {}  # name -> (owner, fencing token)
        self._last_token = 0  # the one token counter: the token of the latest grant
        self._leases: dict[int, _Lease] = {}  # the live leases
        self._key_lease: dict[str, int] = {}  # key -> the lease it is attached to
        self._lock_lease: dict[str, int] = {}  # held lock -> the lease it is attached to
        self._lock_delays: dict[str, tuple[int, int]] = {}  # name -> (until_ns, the last holder's token)
        self._last_lease_id = 0  # the one lease id counter: the id of the latest grant
        self._last_view = 0  # the view of the last op applied
        # Local bookkeeping, not replicated (rebuilt on restore), so `due` and lease_expire need not scan every
        # lease: heaps with lazy deletion. An entry (deadline_ns, id) is current iff that lease is live with that
        # deadline; every live lease has a current entry. Likewise (until_ns, name) for lock delays.
        self._deadlines: list[tuple[int, int]] = []
        self._delay_ends: list[tuple[int, str]] = []
        self._handlers: dict[str, Callable[[dict[str, Any], int], Any]] = {
            "get": self._get,
            "put": self._put,
            "delete": self._delete,
            "cas": self._cas,
            "incr": self._incr,
            "lock": self._lock,
            "unlock": self._unlock,
            "lease_grant": self._lease_grant,
            "lease_keepalive": self._lease_keepalive,
            "lease_revoke": self._lease_revoke,
            "lease_ttl": self._lease_ttl,
            "lease_list": self._lease_list,
            "lease_expire": self._lease_expire,
        }

    # --- App ------------------------------------------------------------------------------------------------

    def apply(self, op: Any, ctx: OpContext) -> Any:
        now = ctx.timestamp_ns
        # Before the op, whatever it is (malformed too), so that every replica does the same at the same op.
        if ctx.view > self._last_view and self._leases:
            self._refresh_leases(now)
        self._last_view = ctx.view
        if self._delay_ends and self._delay_ends[0][0] <= now:
            self._end_lock_delays(now)
        try:
            name = _check_request(op)
            return self._handlers[name](op, now)
        except _Refused as refused:
            return error_result(refused.code, str(refused))

    def snapshot(self) -> bytes:
        leases = self._leases
        state = {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "data": {key: self._data[key] for key in sorted(self._data)},
            "locks": {name: list(self._locks[name]) for name in sorted(self._locks)},
            "last_token": self._last_token,
            "leases": {
                lease_id: [
                    leases[lease_id].ttl_ms,
                    leases[lease_id].deadline_ns,
                    leases[lease_id].lock_delay_ms,
                    sorted(leases[lease_id].keys),
                    sorted(leases[lease_id].locks),
                ]
                for lease_id in sorted(leases)
            },
            "lock_delays": {name: list(self._lock_delays[name]) for name in sorted(self._lock_delays)},
            "last_lease_id": self._last_lease_id,
            "last_view": self._last_view,
        }
        data: bytes = msgpack.packb(state, use_bin_type=True)
        return data

    def restore(self, data: bytes) -> None:
        try:
            state = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as error:
            raise ValueError(f"coordination snapshot is not msgpack: {type(error).__name__}") from error
        checked = _check_snapshot(state)
        # Replace only after every check passed: a rejected snapshot leaves the state as it was.
        self._data = checked.data
        self._locks = checked.locks
        self._last_token = checked.last_token
        self._leases = checked.leases
        self._key_lease = checked.key_lease
        self._lock_lease = checked.lock_lease
        self._lock_delays = checked.lock_delays
        self._last_lease_id = checked.last_lease_id
        self._last_view = checked.last_view
        self._rebuild_deadlines()
        self._delay_ends = [(until, name) for name, (until, _) in checked.lock_delays.items()]
        heapq.heapify(self._delay_ends)

    def due(self, timestamp_ns: int) -> dict[str, str] | None:
        """``{"op": "lease_expire"}`` if a live lease's deadline is at or before `timestamp_ns`, else None.

        Asked by the primary between steps, with the current cluster time (zvsr.apps.base). Changes nothing
        replicated, and is cheap: a look at the top of the deadline heap.
        """
        deadline = self.next_deadline_ns()
        return {"op": "lease_expire"} if deadline is not None and deadline <= timestamp_ns else None

    # --- read-only operations (zvsr.protocol.state_machine.ReadOnlyQueries, via the adapter) -----------------

    # Every read-only op names itself in "op" (a msgpack string): a write holding neither is not decoded to ask.
    read_only_strings: Final = tuple(sorted(_READ_ONLY_OPS))

    def read_only(self, op: Any) -> bool:
        """Whether `op` is a well-formed get or lease_list: the primary may answer it without a log entry."""
        try:
            return _check_request(op) in _READ_ONLY_OPS
        except _Refused:
            return False

    def query(self, op: Any) -> Any:
        """The result of a read-only op at the current state, changing nothing (`read_only` said yes)."""
        try:
            name = _check_request(op)
        except _Refused as refused:
            return error_result(refused.code, str(refused))
        if name not in _READ_ONLY_OPS:
            return error_result(ERROR_BAD_REQUEST, f"{name} is not a read-only operation")
        return self._handlers[name](op, 0)  # neither reads the op's time

    # --- read-only views (not operations: nothing replicated goes through them) ----------------------------

    def next_deadline_ns(self) -> int | None:
        """The earliest deadline of a live lease, None if there is none.

        Read-only as far as the replicated state goes; it drops stale heap entries it finds on top.
        """
        heap, leases = self._deadlines, self._leases
        while heap:
            deadline, lease_id = heap[0]
            lease = leases.get(lease_id)
            if lease is not None and lease.deadline_ns == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def items_with_prefix(self, prefix: str) -> dict[str, Any]:
        """The keys starting with `prefix` and their values, in sorted key order; locks are not included.

        Read-only and local: a replica answers the watch stream's snapshot query with it
        (zvsr.runtime.watch_publisher), consistent with its commit_number because the node's single thread
        calls it between core steps.
        """
        if type(prefix) is not str:
            raise TypeError(f"prefix must be a str, not {_kind(prefix)}")
        return {key: self._data[key] for key in sorted(self._data) if key.startswith(prefix)}

    # --- operations (the request is already checked; `now` is its cluster time) ----------------------------
    #
    # A handler refuses (raises _Refused) before it changes anything.

    def _get(self, op: dict[str, Any], now: int) -> Any:
        return self._data.get(op["key"])

    def _put(self, op: dict[str, Any], now: int) -> None:
        key = op["key"]
        if "lease" not in op:
            self._data[key] = op["value"]
            self._detach_key(key)
            return
        lease_id, lease = self._live_lease(op)
        if key not in lease.keys:
            _check_room(op, lease_id, lease, key)
        self._data[key] = op["value"]
        self._attach_key(key, lease_id, lease)

    def _delete(self, op: dict[str, Any], now: int) -> bool:
        key = op["key"]
        if self._data.pop(key, _MISSING) is _MISSING:
            return False
        self._detach_key(key)
        return True

    def _cas(self, op: dict[str, Any], now: int) -> dict[str, Any]:
        key, expected = op["key"], op["expected"]
        current = self._data.get(key, _MISSING)
        if expected is None:
            ok = current is _MISSING
        else:
            ok = current is not _MISSING and _same_value(current, expected)
        if ok:
            self._data[key] = op["new"]
        return {"ok": ok, "value": self._data.get(key)}

    def _incr(self, op: dict[str, Any], now: int) -> Any:
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

    def _lock(self, op: dict[str, Any], now: int) -> dict[str, Any]:
        name, owner = op["name"], op["owner"]
        lease_id, lease = self._live_lease(op) if "lease" in op else (0, None)
        holder = self._locks.get(name)
        if holder is None:
            delay = self._lock_delays.get(name)
            if delay is not None:  # still running: `apply` forgot those that ended at or before `now`
                until, token = delay
                return {"ok": False, "owner": None, "token": token, "delay_ms": -((now - until) // _NS_PER_MS)}
            if lease is not None:
                _check_room(op, lease_id, lease, name)
            self._last_token += 1
            holder = self._locks[name] = (owner, self._last_token)
            if lease is not None:
                self._lock_lease[name] = lease_id
                lease.locks.add(name)
                lease.name_bytes += _name_bytes(name)
        return {"ok": holder[0] == owner, "owner": holder[0], "token": holder[1]}

    def _unlock(self, op: dict[str, Any], now: int) -> dict[str, bool]:
        name, owner = op["name"], op["owner"]
        holder = self._locks.get(name)
        if holder is None or holder[0] != owner:
            return {"ok": False}
        del self._locks[name]
        lease_id = self._lock_lease.pop(name, None)
        if lease_id is not None:
            lease = self._leases[lease_id]
            lease.locks.remove(name)
            lease.name_bytes -= _name_bytes(name)
        return {"ok": True}

    def _lease_grant(self, op: dict[str, Any], now: int) -> dict[str, int]:
        ttl_ms, lock_delay_ms = op["ttl_ms"], op.get("lock_delay_ms", 0)
        if not c.LEASE_TTL_MS_MIN <= ttl_ms <= c.LEASE_TTL_MS_MAX:
            raise _Refused(
                ERROR_OUT_OF_RANGE,
                f"lease_grant: ttl_ms {ttl_ms} is outside {c.LEASE_TTL_MS_MIN}..{c.LEASE_TTL_MS_MAX} "
                "(LEASE_TTL_MS_MIN..LEASE_TTL_MS_MAX)",
            )
        if not 0 <= lock_delay_ms <= c.LEASE_LOCK_DELAY_MS_MAX:
            raise _Refused(
                ERROR_OUT_OF_RANGE,
                f"lease_grant: lock_delay_ms {lock_delay_ms} is outside 0..{c.LEASE_LOCK_DELAY_MS_MAX} "
                "(LEASE_LOCK_DELAY_MS_MAX)",
            )
        if len(self._leases) >= c.LEASES_MAX:
            raise _Refused(ERROR_LEASE_LIMIT, f"lease_grant: {c.LEASES_MAX} leases are live (LEASES_MAX)")
        self._last_lease_id += 1
        lease_id = self._last_lease_id
        lease = self._leases[lease_id] = _Lease(ttl_ms, _after(now, ttl_ms), lock_delay_ms)
        self._schedule(lease_id, lease)
        return {"lease": lease_id, "ttl_ms": ttl_ms}

    def _lease_keepalive(self, op: dict[str, Any], now: int) -> int:
        lease_id, lease = self._live_lease(op)
        deadline = _after(now, lease.ttl_ms)
        if deadline != lease.deadline_ns:
            lease.deadline_ns = deadline
            self._schedule(lease_id, lease)
        return lease.ttl_ms

    def _lease_revoke(self, op: dict[str, Any], now: int) -> dict[str, Any]:
        lease_id = op["lease"]
        if lease_id not in self._leases:
            return {"ok": False, "deleted": []}
        deleted = self._end_lease(lease_id, now, lock_delay=False)
        self._tidy_deadlines()
        return {"ok": True, "deleted": sorted(deleted)}

    def _lease_ttl(self, op: dict[str, Any], now: int) -> dict[str, Any]:
        lease_id, lease = self._live_lease(op)
        return {
            "lease": lease_id,
            "ttl_ms": lease.ttl_ms,
            "remaining_ms": max(0, lease.deadline_ns - now) // _NS_PER_MS,
            "keys": sorted(lease.keys),
            "locks": sorted(lease.locks),
        }

    def _lease_list(self, op: dict[str, Any], now: int) -> list[int]:
        return sorted(self._leases)

    def _lease_expire(self, op: dict[str, Any], now: int) -> dict[str, list[Any]]:
        # The current heap entries, popped in (deadline, id) order, are the live leases in that order, whatever
        # stale entries a replica's heap also holds: the batch is the same on every replica.
        heap, leases = self._deadlines, self._leases
        expired: list[int] = []
        deleted: list[str] = []
        name_bytes = 0
        while heap and len(expired) < c.LEASE_EXPIRE_BATCH_MAX:
            deadline, lease_id = heap[0]
            lease = leases.get(lease_id)
            if lease is None or lease.deadline_ns != deadline:
                heapq.heappop(heap)
                continue
            if deadline > now or (expired and name_bytes + lease.name_bytes > c.LEASE_NAMES_BYTES_MAX):
                break
            heapq.heappop(heap)
            name_bytes += lease.name_bytes
            expired.append(lease_id)
            deleted += self._end_lease(lease_id, now, lock_delay=True)
        self._tidy_deadlines()
        return {"expired": sorted(expired), "deleted": sorted(deleted)}

    # --- leases ---------------------------------------------------------------------------------------------

    def _live_lease(self, op: dict[str, Any]) -> tuple[int, _Lease]:
        lease_id: int = op["lease"]
        lease = self._leases.get(lease_id)
        if lease is None:
            raise _Refused(ERROR_LEASE_NOT_FOUND, f"{op['op']}: no lease {lease_id}")
        return lease_id, lease

    def _attach_key(self, key: str, lease_id: int, lease: _Lease) -> None:
        if self._key_lease.get(key) == lease_id:
            return
        self._detach_key(key)
        self._key_lease[key] = lease_id
        lease.keys.add(key)
        lease.name_bytes += _name_bytes(key)

    def _detach_key(self, key: str) -> None:
        lease_id = self._key_lease.pop(key, None)
        if lease_id is not None:
            lease = self._leases[lease_id]
            lease.keys.remove(key)
            lease.name_bytes -= _name_bytes(key)

    def _end_lease(self, lease_id: int, now: int, *, lock_delay: bool) -> list[str]:
        """End a live lease: delete its keys, release its locks (into its lock delay if `lock_delay`); its keys."""
        lease = self._leases.pop(lease_id)
        for key in lease.keys:
            del self._data[key]
            del self._key_lease[key]
        until = _after(now, lease.lock_delay_ms) if lock_delay and lease.lock_delay_ms > 0 else None
        for name in lease.locks:
            _, token = self._locks.pop(name)
            del self._lock_lease[name]
            if until is not None:
                self._lock_delays[name] = (until, token)
                heapq.heappush(self._delay_ends, (until, name))
        return list(lease.keys)

    def _refresh_leases(self, now: int) -> None:
        """The first op of a larger view: give every live lease at least its ttl from now (failover)."""
        for lease in self._leases.values():
            lease.deadline_ns = max(lease.deadline_ns, _after(now, lease.ttl_ms))
        self._rebuild_deadlines()

    def _end_lock_delays(self, now: int) -> None:
        heap, delays = self._delay_ends, self._lock_delays
        while heap and heap[0][0] <= now:
            until, name = heapq.heappop(heap)
            delay = delays.get(name)
            if delay is not None and delay[0] == until:
                del delays[name]

    def _schedule(self, lease_id: int, lease: _Lease) -> None:
        """The lease got a new deadline: a current heap entry for it (its older ones go stale)."""
        heapq.heappush(self._deadlines, (lease.deadline_ns, lease_id))
        self._tidy_deadlines()

    def _tidy_deadlines(self) -> None:
        """Rebuild the heap once stale entries outnumber current ones (amortized O(1) per change)."""
        if len(self._deadlines) > 2 * len(self._leases) + _HEAP_SLACK:
            self._rebuild_deadlines()

    def _rebuild_deadlines(self) -> None:
        self._deadlines = [(lease.deadline_ns, lease_id) for lease_id, lease in self._leases.items()]
        heapq.heapify(self._deadlines)


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
    keys = op.keys()
    # Every replica checks every op it applies: set comparisons of the key view allocate nothing, and only the
    # fields this op may carry are type-checked; the diagnosis runs only on failure.
    if keys <= _ALLOWED_KEYS[name] and keys >= _REQUIRED_KEYS[name]:
        for field, kind in _TYPED_FIELDS[name]:
            if field in op and type(op[field]) is not kind:
                raise _BadRequest(f"{name}: {field!r} must be {_kind(kind())}, not {_kind(op[field])}")
        return name
    required, optional = _FIELDS[name]
    present = keys - {"op"}
    if not required <= present:
        raise _BadRequest(f"{name}: missing {', '.join(sorted(required - present))}")
    unknown = present - required - optional
    raise _BadRequest(f"{name}: unknown field(s) {', '.join(sorted(repr(field) for field in unknown))}")


def _check_room(op: dict[str, Any], lease_id: int, lease: _Lease, name: str) -> None:
    """Refuse (`lease_keys_limit`) to attach one more key or lock, `name`, to `lease`."""
    if len(lease.keys) + len(lease.locks) >= c.LEASE_KEYS_MAX:
        raise _Refused(
            ERROR_LEASE_KEYS_LIMIT,
            f"{op['op']}: lease {lease_id} has {c.LEASE_KEYS_MAX} keys and locks (LEASE_KEYS_MAX)",
        )
    if lease.name_bytes + _name_bytes(name) > c.LEASE_NAMES_BYTES_MAX:
        raise _Refused(
            ERROR_LEASE_KEYS_LIMIT,
            f"{op['op']}: the names attached to lease {lease_id} would take more than "
            f"{c.LEASE_NAMES_BYTES_MAX} bytes (LEASE_NAMES_BYTES_MAX)",
        )


def _name_bytes(name: str) -> int:
    """What a key or lock name takes in a result at most: its UTF-8 bytes and the longest str header."""
    return len(name.encode("utf-8", "surrogatepass")) + _STR_HEADER_BYTES_MAX


def _after(now: int, ms: int) -> int:
    """The cluster time `ms` milliseconds after `now`, kept within msgpack's ints so snapshots encode."""
    return min(now + ms * _NS_PER_MS, _INT_MAX)


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


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _is_sorted_names(value: Any) -> bool:
    """A list of distinct str in ascending order (how a snapshot lists a lease's keys and locks)."""
    return (
        type(value) is list
        and all(type(name) is str for name in value)
        and all(a < b for a, b in zip(value, value[1:], strict=False))
    )


def _check_snapshot(state: Any) -> _State:
    """The replicated state of a well-formed snapshot (version 1 or 2), or ValueError."""
    if type(state) is not dict:
        raise ValueError(f"coordination snapshot: not a map but {_kind(state)}")
    version = state.get("version")
    keys = _SNAPSHOT_KEYS.get(version) if type(version) is int else None
    if state.get("format") != SNAPSHOT_FORMAT or keys is None:
        raise ValueError(f"coordination snapshot: unsupported format {state.get('format')!r} v{version!r}")
    if state.keys() != keys:
        raise ValueError(f"coordination snapshot: v{version} is a map with keys {', '.join(sorted(keys))}")
    data, raw_locks, last_token = state["data"], state["locks"], state["last_token"]
    if not _is_count(last_token):
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
    tokens = {token for _, token in locks.values()}
    if len(tokens) != len(locks):
        raise ValueError("coordination snapshot: two locks share a fencing token")
    if version == 1:
        return _State(data, locks, last_token, {}, {}, {}, {}, 0, 0)
    last_lease_id, last_view = state["last_lease_id"], state["last_view"]
    if not _is_count(last_lease_id) or not _is_count(last_view):
        raise ValueError("coordination snapshot: last_lease_id and last_view must be ints >= 0")
    leases, key_lease, lock_lease = _check_leases(state["leases"], data, locks, last_lease_id)
    raw_delays = state["lock_delays"]
    if type(raw_delays) is not dict:
        raise ValueError("coordination snapshot: lock_delays must be a map")
    lock_delays: dict[str, tuple[int, int]] = {}
    for name, delay in raw_delays.items():
        if not (
            type(name) is str
            and type(delay) is list
            and len(delay) == 2
            and _is_count(delay[0])
            and type(delay[1]) is int
            and 1 <= delay[1] <= last_token
        ):
            raise ValueError(f"coordination snapshot: bad lock delay {name!r}: {delay!r}")
        if name in locks:
            raise ValueError(f"coordination snapshot: lock {name!r} is both held and in a lock delay")
        if delay[1] in tokens:
            raise ValueError("coordination snapshot: two locks share a fencing token")
        tokens.add(delay[1])
        lock_delays[name] = (delay[0], delay[1])
    return _State(data, locks, last_token, leases, key_lease, lock_lease, lock_delays, last_lease_id, last_view)


def _check_leases(
    raw_leases: Any, data: dict[str, Any], locks: dict[str, tuple[str, int]], last_lease_id: int
) -> tuple[dict[int, _Lease], dict[str, int], dict[str, int]]:
    """The leases of a v2 snapshot and the key and lock indexes, or ValueError."""
    if type(raw_leases) is not dict:
        raise ValueError("coordination snapshot: leases must be a map")
    leases: dict[int, _Lease] = {}
    key_lease: dict[str, int] = {}
    lock_lease: dict[str, int] = {}
    for lease_id, entry in raw_leases.items():
        if not (type(lease_id) is int and 1 <= lease_id <= last_lease_id):
            raise ValueError(f"coordination snapshot: lease id {lease_id!r} is not in 1..last_lease_id")
        if not (
            type(entry) is list
            and len(entry) == 5
            and type(entry[0]) is int
            and entry[0] >= 1
            and _is_count(entry[1])
            and _is_count(entry[2])
            and _is_sorted_names(entry[3])
            and _is_sorted_names(entry[4])
        ):
            raise ValueError(
                f"coordination snapshot: lease {lease_id} is not [ttl_ms >= 1, deadline_ns >= 0, "
                "lock_delay_ms >= 0, [keys, sorted, distinct], [locks, sorted, distinct]]"
            )
        lease = leases[lease_id] = _Lease(entry[0], entry[1], entry[2])
        attachments: tuple[tuple[str, list[str], Container[str], dict[str, int], set[str], str], ...] = (
            ("key", entry[3], data, key_lease, lease.keys, "missing"),
            ("lock", entry[4], locks, lock_lease, lease.locks, "free"),
        )
        for kind, names, present, owners, attached, absent in attachments:
            for name in names:
                if name not in present:
                    raise ValueError(
                        f"coordination snapshot: lease {lease_id} holds {kind} {name!r}, which is {absent}"
                    )
                if name in owners:
                    raise ValueError(
                        f"coordination snapshot: {kind} {name!r} is on leases {owners[name]} and {lease_id}"
                    )
                owners[name] = lease_id
                attached.add(name)
                lease.name_bytes += _name_bytes(name)
    return leases, key_lease, lock_lease
