"""The Python client: the built-in coordination service (and any app) through proxies or straight to replicas.

Theory of operation
-------------------
A `Client` is one VR client (§4): a session registered through the log before its first call (a random 64-bit
nonce; the register's reply names the session id, its client_id from then on: docs/protocol.md §5,
"Registration"), request numbers 1, 2, … and at most one request outstanding (a lock serialises callers;
`AsyncClient` uses an asyncio lock, or, through proxies, runs concurrent calls on sessions of their own, sent in
RequestBatches: `zvsr.client_pipeline`). It speaks the zvsr client protocol — `Request` out, `Reply` /
`Redirect` / `Error` in (`zvsr.wire.codec`) — over one DEALER per endpoint (the zguide's Freelance pattern), so
each attempt goes to a chosen endpoint:

- via proxies (`Client("tcp://host:7700")` or several): a request goes to one proxy (the list is shuffled once
  per client, spreading load), which finds the primary, follows failover and retries toward the replicas
  itself, and answers by its own `request_timeout_ms`. The client keeps only its own deadline: it sends the
  same request again only when that proxy cannot answer — no connection to it (IMMEDIATE refuses the send: the
  next proxy at once), an error answer (`timeout`, `unavailable`, `busy`: the next proxy, while the deadline is
  ahead), or `CLIENT_PROXY_QUIET_MS` without any answer (a proxy restarted with the request in flight);
  this is the sans-IO `RelaySession`;
- direct (`Client(replicas=[...])`, the replicas' client endpoints in index order): the client finds the
  primary itself, following Redirects, and re-sends the same request to every replica on timeout: the sans-IO
  `ClientSession` that the proxy and the simulator run too. The replicas may change (reconfiguration, VR
  Revisited §7): when a Redirect names a replica it does not know, or a request has to be re-sent to every
  replica, the client asks them for the current configuration (the status query, at most every
  `CLIENT_MEMBERSHIP_ASK_MS`) and from a later one on addresses its members — connected at the endpoints it
  names — without a restart (with CurveZMQ, whose keys are by position, it keeps its replicas).

Both are in `zvsr.protocol.client_session` (docs/protocol.md, "Who retries what"). Because every retry carries the
same (client_id, request_number), the replicas' client table executes a request at most once however often it
is sent (rule 8).

A call ends in a result or an exception (`ZvsrError` and its subclasses). `Timeout` means the outcome is
unknown: the request may have been executed. `Unavailable` and `Busy` are raised only when the client *knows*
the request was not executed — every attempt that left was refused (`zvsr.runtime.outcome`) — otherwise a
call that ran out of time raises `Timeout`. `BadRequest` is the cluster refusing a malformed request;
`AppError` is the application answering ``{"error": code, "message": text}``.

Operations and their results are built and read by module-level functions (`_Call`), shared by `Client` and
`AsyncClient`; the exchange with the sockets (`_Exchange`) is shared too, and only the waiting differs (a
`zmq.Poller` or a `zmq.asyncio.Poller`).

Leases (the coordination app's ``lease_*`` operations) end keys and locks whose holder stopped renewing them:
`lease_grant` / `lease_keepalive` / `lease_revoke` / `lease_ttl` / `lease_list`, `put(..., lease=)` and
`lock(..., lease=)` (or `lock(..., ttl=)`, which grants the lease itself). `client.lease(ttl)` is a lease kept
alive in the background for the length of a with block (`Lease`: a thread with a client session of its own;
`AsyncLease`: an asyncio task), with `lost` and `valid_for()` — how long the holder may still act, measured from
the send time of its last acknowledged keepalive and shortened by `LEASE_CLOCK_DRIFT`, as cluster time may run
that much faster than the holder's clock.

`watch(config, prefix)` is the other way to read: a live, eventually consistent copy of the keys under a prefix
and a stream of their changes (`zvsr.watch.Watcher`, the zguide's Clone pattern over the replicas' watch
stream). It is a module function, not a `Client` method, because the stream comes from every replica's
``watch`` endpoint, which proxies do not carry: it takes the cluster configuration that names them. It is
defined in `zvsr.watch` and re-exported here, with `Curve` and the CLI's `curve_for_*` helpers (defined in
`zvsr.connect`, which both modules use): this module imports the watcher, never the other way round.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Generic, NamedTuple, TypeVar

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq
import zmq.asyncio

from zvsr.client_pipeline import Pipeline
from zvsr.connect import Curve as Curve  # re-exported: users build a Client with zvsr.client.Curve
from zvsr.connect import apply_curve, check_endpoints
from zvsr.connect import curve_for_proxy as curve_for_proxy
from zvsr.connect import curve_for_replicas as curve_for_replicas
from zvsr.constants import (
    CLIENT_DIRECT_RETRY_MAX_MS,
    CLIENT_DIRECT_RETRY_MS,
    CLIENT_MEMBERSHIP_ASK_MS,
    CLIENT_PROXY_QUIET_MS,
    CLIENT_REPLY_BYTES_MAX,
    CLIENT_SNDHWM,
    CLIENT_TICK_MS,
    CLIENT_TIMEOUT_MS,
    LEASE_CLOCK_DRIFT,
    OPERATION_BYTES_MAX,
    ZMTP_HEARTBEAT_IVL_MS,
    ZMTP_HEARTBEAT_TIMEOUT_MS,
)
from zvsr.protocol.client_session import ClientSession, Completion, RelaySession
from zvsr.protocol.messages import (
    ERROR_BAD_REQUEST,
    ERROR_BUSY,
    ERROR_SESSION_EXPIRED,
    ERROR_TIMEOUT,
    ERROR_UNAVAILABLE,
    Redirect,
    Request,
)
from zvsr.protocol.ready import BROADCAST
from zvsr.runtime.members import from_status, member_addresses
from zvsr.runtime.outcome import Attempts
from zvsr.watch import watch as watch  # re-exported: the README's zvsr.client.watch
from zvsr.wire.admin import decode_status, encode_status_query
from zvsr.wire.codec import DecodeError, decode_client_reply, encode

T = TypeVar("T")

# The app's result of an operation it could not execute, e.g. {"error": "type_error", "message": "..."}.
_ERROR_RESULT_KEYS: Final = frozenset({"error", "message"})
# Codes an application result carries when the client cannot make sense of it.
ERROR_UNEXPECTED_RESULT: Final = "unexpected_result"


# --- errors -------------------------------------------------------------------------------------------------


class ZvsrError(Exception):
    """A call that did not produce a result. `code` is the wire error code (or the app's, for AppError)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Unavailable(ZvsrError):
    """The cluster could not take the request (no primary reachable, or no quorum). It was NOT executed."""


class Busy(ZvsrError):
    """A bound on queued work was reached (at the proxy or the primary). It was NOT executed; retry later."""


class BadRequest(ZvsrError):
    """The cluster refused the request as malformed (never retried). It was not executed."""


class SessionExpired(ZvsrError):
    """The cluster evicted this client's session (the least recently active one, when another registered beyond
    `client_table_max`), so it executed nothing for this call and never will — but an earlier attempt of the
    same request may have executed before the eviction: like Timeout, the outcome is unknown. The client
    registers a new session for its next call, by itself."""


class Timeout(ZvsrError):
    """No result within the call's timeout. The outcome is UNKNOWN: the request may or may not have been
    executed (an attempt may have committed and only its answer was lost). Reading the state tells which."""


class AppError(ZvsrError):
    """The application executed the request and answered with an error result; `code` is the app's code
    (e.g. ``bad_request``, ``type_error``, ``out_of_range``, ``app_error``, ``lease_limit``)."""


class LeaseNotFound(AppError):
    """The lease named is not live: it expired, was revoked, or never existed (code ``lease_not_found``).
    Whatever was attached to it is gone (keys deleted, locks released)."""


# App error codes with their own exception class (every other app code is a plain AppError).
ERROR_LEASE_NOT_FOUND: Final = "lease_not_found"
_APP_ERRORS: Final[dict[str, type[AppError]]] = {ERROR_LEASE_NOT_FOUND: LeaseNotFound}

_ERRORS: Final[dict[str, type[ZvsrError]]] = {
    ERROR_UNAVAILABLE: Unavailable,
    ERROR_BUSY: Busy,
    ERROR_BAD_REQUEST: BadRequest,
    ERROR_TIMEOUT: Timeout,
    ERROR_SESSION_EXPIRED: SessionExpired,
}


# --- results of the coordination app ------------------------------------------------------------------------


class CasResult(NamedTuple):
    """`cas`: whether the value was swapped, and the key's value after the operation (None if missing)."""

    ok: bool
    value: Any


class LockResult(NamedTuple):
    """`lock`: whether `owner` holds the lock now, the holder, and the holder's fencing token.

    `lease`: the lease this call attached the lock to (its `lease` argument, or the lease its `ttl` granted);
    None without one. `delay_ms`: the lock is in its lock delay — its holder's lease expired, and nobody may take
    it for this long yet (`ok` is False, `owner` None, `token` the expired holder's).
    """

    ok: bool
    owner: str | None
    token: int
    lease: int | None = None
    delay_ms: int = 0


class LeaseGrant(NamedTuple):
    """`lease_grant`: the new lease's id and its time to live, in milliseconds of cluster time."""

    id: int
    ttl_ms: int


class LeaseStatus(NamedTuple):
    """`lease_ttl`: a live lease's time to live, the time it has left as of that op (ms of cluster time), and
    the keys and locks attached to it."""

    id: int
    ttl_ms: int
    remaining_ms: int
    keys: list[str]
    locks: list[str]


class RevokeResult(NamedTuple):
    """`lease_revoke`: whether the lease was live (it is ended now), and the keys deleted with it (its locks are
    released too)."""

    ok: bool
    deleted: list[str]


# --- operations and their results: shared by Client and AsyncClient -----------------------------------------


@dataclass(frozen=True, slots=True)
class _Call(Generic[T]):
    """One call: the encoded operation, and how to read its (msgpack-decoded) result."""

    operation: bytes
    parse: Callable[[Any], T]


def _pack(op: Any) -> bytes:
    data: bytes = msgpack.packb(op, use_bin_type=True)
    if len(data) > OPERATION_BYTES_MAX:
        raise BadRequest(ERROR_BAD_REQUEST, f"operation is {len(data)} bytes > {OPERATION_BYTES_MAX}")
    return data


def _str(name: str, value: object) -> str:
    if type(value) is not str:
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value


def _int(name: str, value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


def _lease_id(lease: object) -> int:
    return _int("lease", lease)


def _seconds_to_ms(name: str, seconds: float, *, zero: bool = False) -> int:
    """`seconds` (an int or float, at least a millisecond; or 0, with `zero`) in whole milliseconds."""
    if type(seconds) not in (int, float) or not math.isfinite(seconds) or seconds < (0 if zero else 1e-3):
        raise ValueError(f"{name} must be a {'' if zero else 'positive '}number of seconds, got {seconds!r}")
    return 0 if seconds == 0 else max(1, round(seconds * 1000))


def _is_str_list(value: Any) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def _is_error_result(value: Any) -> bool:
    return type(value) is dict and value.keys() == _ERROR_RESULT_KEYS and type(value["error"]) is str


def _checked(value: Any) -> Any:
    """`value`, unless it is the app's error result: then AppError."""
    if _is_error_result(value):
        raise _APP_ERRORS.get(value["error"], AppError)(value["error"], str(value["message"]))
    return value


def _unexpected(what: str, value: Any) -> AppError:
    return AppError(ERROR_UNEXPECTED_RESULT, f"{what}: unexpected result {value!r:.200}")


def _parse_any(value: Any) -> Any:
    return value


def _parse_none(value: Any) -> None:
    _checked(value)


def _parse_bool(value: Any) -> bool:
    if type(_checked(value)) is not bool:
        raise _unexpected("delete", value)
    return bool(value)


def _parse_int(value: Any) -> int:
    if type(_checked(value)) is not int:
        raise _unexpected("incr", value)
    return int(value)


def _parse_cas(value: Any) -> CasResult:
    if type(_checked(value)) is not dict or type(value.get("ok")) is not bool:
        raise _unexpected("cas", value)
    return CasResult(value["ok"], value.get("value"))


def _parse_lock(value: Any, lease: int | None = None) -> LockResult:
    if (
        type(_checked(value)) is not dict
        or type(value.get("ok")) is not bool
        or type(value.get("token")) is not int
        or type(value.get("delay_ms", 0)) is not int
    ):
        raise _unexpected("lock", value)
    ok = value["ok"]
    return LockResult(ok, value.get("owner"), value["token"], lease if ok else None, value.get("delay_ms", 0))


def _parse_lease_grant(value: Any) -> LeaseGrant:
    if (
        type(_checked(value)) is not dict
        or type(value.get("lease")) is not int
        or type(value.get("ttl_ms")) is not int
    ):
        raise _unexpected("lease_grant", value)
    return LeaseGrant(value["lease"], value["ttl_ms"])


def _parse_lease_keepalive(value: Any) -> int:
    if type(_checked(value)) is not int:
        raise _unexpected("lease_keepalive", value)
    return int(value)


def _parse_lease_revoke(value: Any) -> RevokeResult:
    if (
        type(_checked(value)) is not dict
        or type(value.get("ok")) is not bool
        or not _is_str_list(value.get("deleted"))
    ):
        raise _unexpected("lease_revoke", value)
    return RevokeResult(value["ok"], value["deleted"])


def _parse_lease_ttl(value: Any) -> LeaseStatus:
    if (
        type(_checked(value)) is not dict
        or any(type(value.get(field)) is not int for field in ("lease", "ttl_ms", "remaining_ms"))
        or not _is_str_list(value.get("keys"))
        or not _is_str_list(value.get("locks"))
    ):
        raise _unexpected("lease_ttl", value)
    return LeaseStatus(value["lease"], value["ttl_ms"], value["remaining_ms"], value["keys"], value["locks"])


def _parse_lease_list(value: Any) -> list[int]:
    if type(_checked(value)) is not list or any(type(item) is not int for item in value):
        raise _unexpected("lease_list", value)
    return list(value)


def _parse_unlock(value: Any) -> bool:
    if type(_checked(value)) is not dict or type(value.get("ok")) is not bool:
        raise _unexpected("unlock", value)
    return bool(value["ok"])


def _get(key: str) -> _Call[Any]:
    # A stored value may look like an error result; a well-formed get never fails, so it is not interpreted.
    return _Call(_pack({"op": "get", "key": _str("key", key)}), _parse_any)


def _put(key: str, value: Any, lease: int | None) -> _Call[None]:
    op = {"op": "put", "key": _str("key", key), "value": value}
    if lease is not None:
        op["lease"] = _lease_id(lease)
    return _Call(_pack(op), _parse_none)


def _delete(key: str) -> _Call[bool]:
    return _Call(_pack({"op": "delete", "key": _str("key", key)}), _parse_bool)


def _cas(key: str, expected: Any, new: Any) -> _Call[CasResult]:
    return _Call(_pack({"op": "cas", "key": _str("key", key), "expected": expected, "new": new}), _parse_cas)


def _incr(key: str, by: int) -> _Call[int]:
    if type(by) is not int:
        raise TypeError(f"by must be an int, not {type(by).__name__}")
    return _Call(_pack({"op": "incr", "key": _str("key", key), "by": by}), _parse_int)


def _lock(name: str, owner: str, lease: int | None = None) -> _Call[LockResult]:
    op: dict[str, Any] = {"op": "lock", "name": _str("name", name), "owner": _str("owner", owner)}
    if lease is not None:
        op["lease"] = _lease_id(lease)
    return _Call(_pack(op), lambda value: _parse_lock(value, lease))


def _unlock(name: str, owner: str) -> _Call[bool]:
    return _Call(_pack({"op": "unlock", "name": _str("name", name), "owner": _str("owner", owner)}), _parse_unlock)


def _lease_grant(ttl_ms: int, lock_delay_ms: int) -> _Call[LeaseGrant]:
    op = {"op": "lease_grant", "ttl_ms": _int("ttl_ms", ttl_ms)}
    if _int("lock_delay_ms", lock_delay_ms) != 0:  # the app's default: sent only when it is not
        op["lock_delay_ms"] = lock_delay_ms
    return _Call(_pack(op), _parse_lease_grant)


def _lease_keepalive(lease: int) -> _Call[int]:
    return _Call(_pack({"op": "lease_keepalive", "lease": _lease_id(lease)}), _parse_lease_keepalive)


def _lease_revoke(lease: int) -> _Call[RevokeResult]:
    return _Call(_pack({"op": "lease_revoke", "lease": _lease_id(lease)}), _parse_lease_revoke)


def _lease_ttl(lease: int) -> _Call[LeaseStatus]:
    return _Call(_pack({"op": "lease_ttl", "lease": _lease_id(lease)}), _parse_lease_ttl)


def _lease_list() -> _Call[list[int]]:
    return _Call(_pack({"op": "lease_list"}), _parse_lease_list)


def _lock_args(lease: int | None, ttl: float | None) -> int | None:
    """The ttl in ms for `lock(..., ttl=)` (None without), after checking that lease and ttl are not both given."""
    if ttl is None:
        return None
    if lease is not None:
        raise ValueError("give lock() a lease or a ttl, not both")
    return _seconds_to_ms("ttl", ttl)


def _execute(op: Any, raise_app_errors: bool) -> _Call[Any]:
    return _Call(_pack(op), _checked if raise_app_errors else _parse_any)


def _result_value(call: _Call[T], result: bytes) -> T:
    try:
        value = msgpack.unpackb(result, raw=False, strict_map_key=False)
    except Exception as error:  # the adapter always encodes results; anything else is not from a zvsr app
        raise AppError(ERROR_UNEXPECTED_RESULT, f"result is not msgpack ({type(error).__name__})") from error
    return call.parse(value)


def _new_nonce() -> int:
    """A register nonce (`zvsr.protocol.client_table`): random, never 0 (the cluster's own ops use client_id 0)."""
    return secrets.randbits(64) or 1


# --- the exchange: a ClientSession over one DEALER per endpoint, whatever waits for the sockets -------------


def _endpoints(
    proxy: str | Sequence[str] | None, replicas: Sequence[str] | None, timeout_ms: int, curve: Curve | None
) -> tuple[list[str], bool]:
    """(endpoints, via_proxies), after checking every argument (before any socket exists)."""
    if type(timeout_ms) is not int or timeout_ms < 1:
        raise ValueError(f"timeout_ms must be a positive int, got {timeout_ms!r}")
    if (proxy is None) == (replicas is None):
        raise ValueError("give either proxy endpoint(s) or replicas=[client endpoints], not both or neither")
    if proxy is not None:
        endpoints = [proxy] if isinstance(proxy, str) else list(proxy)
        random.shuffle(endpoints)  # spread clients over proxies; the order does not matter otherwise
    else:
        assert replicas is not None
        endpoints = list(replicas)  # index order: replica i is primary of views i, i + n, ...
    if not endpoints:
        raise ValueError("endpoints must be ZeroMQ endpoints like tcp://host:port, got none")
    check_endpoints(endpoints)
    if curve is not None:
        curve.check(len(endpoints))
    return endpoints, proxy is not None


def _connected_dealer(
    context: zmq.Context[Any], index: int, endpoint: str, curve: Curve | None, *, via_proxies: bool
) -> Any:
    """A DEALER connected to `endpoint` (replica `index`'s, for CurveZMQ), configured; closed if that fails. The
    sync and the asyncio clients' contexts make their own kind of socket."""
    socket = context.socket(zmq.DEALER)
    try:
        _configure(socket, via_proxies=via_proxies)
        apply_curve(socket, curve, index)
        socket.connect(endpoint)
    except BaseException:
        socket.close(linger=0)
        raise
    return socket


def _open_exchange(
    endpoints: Sequence[str],
    *,
    via_proxies: bool,
    timeout_ms: int,
    curve: Curve | None,
    open_socket: Callable[[int, str, Curve | None], zmq.Socket[bytes]],
    close_socket: Callable[[int], None],
    close_opened: Callable[[dict[int, zmq.Socket[bytes]]], None],
) -> _Exchange:
    """An `_Exchange` over a socket per endpoint (`open_socket`); direct to replicas, it opens and closes the
    sockets of replicas it learns of the same way, except with CurveZMQ (its keys are by position: no other
    replicas). If this fails, `close_opened` gets the sockets opened so far."""
    sockets: dict[int, zmq.Socket[bytes]] = {}
    try:
        for index, endpoint in enumerate(endpoints):
            sockets[index] = open_socket(index, endpoint, curve)
        learns = not via_proxies and curve is None
        return _Exchange(
            sockets,
            via_proxies=via_proxies,
            timeout_ms=timeout_ms,
            connect=(lambda replica, endpoint: open_socket(replica, endpoint, None)) if learns else None,
            disconnect=close_socket if learns else None,
        )
    except BaseException:
        close_opened(sockets)
        raise


def _close_all(sockets: Iterable[zmq.Socket[Any]]) -> None:
    for socket in sockets:
        socket.close(linger=0)


def _configure(socket: zmq.Socket[Any], *, via_proxies: bool) -> None:
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, CLIENT_SNDHWM)
    socket.setsockopt(zmq.MAXMSGSIZE, CLIENT_REPLY_BYTES_MAX)
    socket.setsockopt(zmq.HEARTBEAT_IVL, ZMTP_HEARTBEAT_IVL_MS)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMTP_HEARTBEAT_TIMEOUT_MS)
    if via_proxies:
        # IMMEDIATE: a send to a proxy with no connection up is refused at once, which is how the client knows
        # that proxy is gone and moves to the next (RelaySession.on_send_refused); a refused send is tried again
        # every tick, so a new client's first request leaves as soon as a connection is up.
        socket.setsockopt(zmq.IMMEDIATE, 1)
    # Direct to replicas, no IMMEDIATE: the first request of a new client waits in the queue until the connection
    # is up, instead of being refused and retried a retry period later. A dead endpoint's queue is bounded by
    # SNDHWM.


class _Exchange:
    """Drives one request at a time through a session over `sockets` (sync or shadows of async ones), keyed by
    proxy index or by replica id: a `RelaySession` via proxies (they retry toward the replicas; the client keeps
    its deadline), a `ClientSession` direct to the replicas (the client finds the primary and retries itself,
    and follows the replicas' configuration: `connect` and `disconnect` add and drop a replica's socket)."""

    def __init__(
        self,
        sockets: dict[int, zmq.Socket[bytes]],
        *,
        via_proxies: bool,
        timeout_ms: int,
        connect: Callable[[int, str], zmq.Socket[bytes]] | None = None,
        disconnect: Callable[[int], None] | None = None,
    ) -> None:
        self.sockets = sockets
        self._connect, self._disconnect = connect, disconnect
        self.epoch = 0  # of the configuration the direct session addresses (0: the endpoints as given)
        self._members: tuple[int, ...] = tuple(sockets)
        self._start_view = 0
        self._next_ask = 0.0
        self.timeout_ms = timeout_ms
        self.via_proxies = via_proxies
        self._target = "proxy" if via_proxies else "replica"
        self._deadline_ticks = max(1, math.ceil(timeout_ms / CLIENT_TICK_MS))
        self._prng = random.Random()  # retry jitter only
        self.session = self._new_session(_new_nonce())
        self._attempts = Attempts()
        self._wire = b""
        self._wire_for: Request | None = None  # the request `_wire` encodes (a registering session moves on)
        self._tick_s = CLIENT_TICK_MS / 1000
        self._next_tick = 0.0
        self.completion: Completion | None = None

    def _new_session(
        self, client_id: int, *, after: ClientSession | RelaySession | None = None
    ) -> ClientSession | RelaySession:
        """A session for `client_id`, keeping what `after` learnt (view, or proxy) and, for the same client_id
        only, its numbering (a new client_id starts from request 1: the cluster executes nothing else of a session
        it does not know)."""
        same_client = after is not None and after.client_id == client_id
        request_number = after.request_number if after is not None and same_client else 0
        registered = after is not None and same_client and after.registered
        if self.via_proxies:
            return RelaySession(
                client_id=client_id,
                relay_count=len(self.sockets),
                request_number=request_number,
                relay=after.relay if isinstance(after, RelaySession) else 0,
                deadline_ticks=self._deadline_ticks,
                quiet_ticks=max(1, CLIENT_PROXY_QUIET_MS // CLIENT_TICK_MS),
                register=True,
                registered=registered,
                new_nonce=_new_nonce,
            )
        session = ClientSession(
            client_id=client_id,
            replica_count=len(self.sockets),
            prng=self._prng,
            request_number=request_number,
            view=after.view if isinstance(after, ClientSession) else 0,
            request_timeout_ticks=max(1, CLIENT_DIRECT_RETRY_MS // CLIENT_TICK_MS),
            request_timeout_max_ticks=max(1, CLIENT_DIRECT_RETRY_MAX_MS // CLIENT_TICK_MS),
            deadline_ticks=self._deadline_ticks,
            register=True,
            registered=registered,
            new_nonce=_new_nonce,
        )
        if self.epoch:
            session.learn_configuration(self._members, self._start_view)
        return session

    @property
    def client_id(self) -> int:
        return self.session.client_id

    def begin(self, operation: bytes) -> None:
        request = self.session.submit(operation)
        self._wire, self._wire_for = encode(request), request
        self._attempts.start(fresh=True)  # this client never re-submits a number it used
        self.completion = None
        self._next_tick = time.monotonic() + self._tick_s
        self._flush()

    def abandon(self) -> None:
        """The caller gave up waiting (an exception, a cancelled coroutine): forget the request in flight.

        A session cannot drop its outstanding request, so a new one continues this client's numbering and what
        it learnt; a late answer to the abandoned number is then ignored like any stale answer."""
        self.session = self._new_session(self.session.client_id, after=self.session)
        self.completion = None

    def wait_ms(self) -> int:
        return max(0, math.ceil((self._next_tick - time.monotonic()) * 1000))

    def drain(self, index: int) -> None:
        socket = self.sockets.get(index)
        while socket is not None and self.completion is None:
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = decode_client_reply(frames[-1])
            except DecodeError:
                self._on_status_answer(frames[-1])  # or not from a zvsr peer: nothing to answer
                if self.sockets.get(index) is not socket:
                    return  # the configuration learnt has no place for this replica: its socket is closed
                continue
            if isinstance(reply, Redirect) and reply.primary not in self.sockets:
                self._ask_configuration()  # a primary we do not know: a configuration we do not know
            outstanding = self.session.outstanding
            if outstanding is None or reply.client_id != self.client_id:
                continue
            if reply.request_number == outstanding.request_number:
                self._attempts.on_answer(reply)
            self.session.on_reply(reply)
            self._flush()
            self.completion = self.session.take_completion()

    def advance(self) -> None:
        """Run the ticks that are due (catching up after a stall, so the deadline holds)."""
        now = time.monotonic()
        if now < self._next_tick or self.completion is not None:
            return
        ticks = int((now - self._next_tick) / self._tick_s) + 1
        self._next_tick += ticks * self._tick_s
        for _ in range(ticks):
            self.session.tick()
            self.completion = self.session.take_completion()
            if self.completion is not None:
                return
        self._flush()

    def _flush(self) -> None:
        session = self.session
        outstanding = session.outstanding
        if outstanding is not None and outstanding is not self._wire_for:  # registered: the operation goes out
            self._wire, self._wire_for = encode(outstanding), outstanding
            self._attempts.start(fresh=True)  # its own attempts: what they were answered says what to raise
        # A RelaySession told of a refused send names another proxy at once: send until it asks for nothing more
        # (each refusal names a proxy not yet tried this round, so this ends).
        while outbox := session.take_outbox():
            for destination, request in outbox:
                if request is not outstanding:
                    continue
                if destination == BROADCAST:
                    self._ask_configuration()  # no answer in time: maybe the replicas changed
                    targets = list(self.sockets.values())
                elif destination in self.sockets:
                    targets = [self.sockets[destination]]
                else:
                    self._ask_configuration()
                    continue
                for socket in targets:
                    try:
                        socket.send(self._wire, zmq.NOBLOCK)
                    except zmq.Again:  # proxy: not connected; replica: its queue is full. This attempt is lost.
                        if isinstance(session, RelaySession):
                            session.on_send_refused(destination)
                        continue
                    self._attempts.sent += 1

    # --- the replicas' configuration (direct mode) ---

    def _ask_configuration(self) -> None:
        if self.via_proxies or self._connect is None:
            return
        now = time.monotonic()
        if now < self._next_ask:
            return
        self._next_ask = now + CLIENT_MEMBERSHIP_ASK_MS / 1000
        query = encode_status_query()
        for socket in self.sockets.values():
            try:
                socket.send_multipart([b"", query], zmq.NOBLOCK)
            except zmq.Again:
                continue

    def _on_status_answer(self, data: bytes) -> None:
        """A replica's status answer: address the members of its configuration if it is a later one."""
        if self.via_proxies or self._connect is None or self._disconnect is None:
            return
        try:
            membership = from_status(decode_status(data))
        except DecodeError:
            return
        if membership is None or membership.epoch <= self.epoch:
            return
        addresses = member_addresses(membership)
        if set(addresses) != set(membership.ids):
            return
        for replica in [r for r in self.sockets if r not in addresses]:
            self._disconnect(replica)
            del self.sockets[replica]
        for replica, address in addresses.items():
            if replica not in self.sockets:
                self.sockets[replica] = self._connect(replica, address.client)
        self.epoch, self._members, self._start_view = membership.epoch, membership.ids, membership.start_view
        session = self.session
        if isinstance(session, ClientSession):
            session.learn_configuration(membership.ids, membership.start_view)
            if session.outstanding is not None:
                try:  # straight to the new primary: the retry timer would only add to the pause
                    self.sockets[session.primary].send(self._wire, zmq.NOBLOCK)
                    self._attempts.sent += 1
                except zmq.Again:
                    pass

    def result(self) -> bytes:
        """The result of the finished request, or its exception."""
        completion = self.completion
        assert completion is not None
        if completion.result is not None:
            return completion.result
        assert completion.error is not None
        if completion.error == ERROR_TIMEOUT:
            code, message = self._attempts.final_error(timeout_ms=self.timeout_ms, target=self._target)
        else:
            code, message = completion.error, completion.message
        # (session_expired: the session registers a new one for the next call by itself)
        raise _ERRORS.get(code, ZvsrError)(code, message)


# --- the clients --------------------------------------------------------------------------------------------


class _Settings(NamedTuple):
    """A client's constructor arguments, for the sessions of its own that it opens (a lease's keepalives)."""

    proxy: str | Sequence[str] | None
    replicas: Sequence[str] | None
    timeout_ms: int
    curve: Curve | None


class Client:
    """A thread-safe zvsr client (one request at a time). Use as a context manager, or call `close()`.

    `proxy`: one or more proxy endpoints; or `replicas`: every replica's client endpoint, in index order.
    `timeout_ms` bounds each call; past it the call raises `Timeout` (outcome unknown). `context`: a ZeroMQ
    context to use (default: the process-wide one). `curve`: CurveZMQ keys, for a cluster with security on.
    """

    def __init__(
        self,
        proxy: str | Sequence[str] | None = None,
        *,
        replicas: Sequence[str] | None = None,
        timeout_ms: int = CLIENT_TIMEOUT_MS,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        curve: Curve | None = None,
    ) -> None:
        endpoints, via_proxies = _endpoints(proxy, replicas, timeout_ms, curve)
        context = zmq.Context.instance() if context is None else context
        self._settings = _Settings(proxy, replicas, timeout_ms, curve)
        self._context = context
        self._lock = threading.Lock()
        self._poller = zmq.Poller()
        self._index: dict[zmq.Socket[bytes], int] = {}
        self._via_proxies = via_proxies
        self._exchange = _open_exchange(
            endpoints,
            via_proxies=via_proxies,
            timeout_ms=timeout_ms,
            curve=curve,
            open_socket=self._open,
            close_socket=self._close_one,
            close_opened=lambda opened: _close_all(opened.values()),
        )
        self._closed = False

    def _open(self, index: int, endpoint: str, curve: Curve | None) -> zmq.Socket[bytes]:
        socket: zmq.Socket[bytes] = _connected_dealer(
            self._context, index, endpoint, curve, via_proxies=self._via_proxies
        )
        self._poller.register(socket, zmq.POLLIN)
        self._index[socket] = index
        return socket

    def _close_one(self, index: int) -> None:
        socket = self._exchange.sockets[index]
        self._poller.unregister(socket)
        del self._index[socket]
        socket.close(linger=0)

    @property
    def client_id(self) -> int:
        return self._exchange.client_id

    # --- the coordination app ---

    def get(self, key: str) -> Any:
        """The value of `key`, or None if it is missing (or holds None)."""
        return self._run(_get(key))

    def put(self, key: str, value: Any, lease: int | None = None) -> None:
        """Set `key` to `value`; with `lease`, the key is deleted when that lease ends (LeaseNotFound: it is not
        live)."""
        self._run(_put(key, value, lease))

    def delete(self, key: str) -> bool:
        """Whether `key` existed."""
        return self._run(_delete(key))

    def cas(self, key: str, expected: Any, new: Any) -> CasResult:
        """Set `key` to `new` iff it holds `expected` (None: iff it is missing). Unpacks as (ok, value)."""
        return self._run(_cas(key, expected, new))

    def incr(self, key: str, by: int = 1) -> int:
        """Add `by` to the int at `key` (missing counts as 0); the new value."""
        return self._run(_incr(key, by))

    def lock(self, name: str, owner: str, lease: int | None = None, ttl: float | None = None) -> LockResult:
        """Take lock `name` for `owner` (re-entrant); ok=False names the current holder and its token.

        With `lease`, the lock is released when that lease ends. With `ttl` (seconds) instead, the call grants
        a lease of that length and locks with it: the result's `lease` is its id, which the caller keeps alive
        (`lease_keepalive`) or revokes; if the lock is not taken, the call revokes that lease again.
        """
        ttl_ms = _lock_args(lease, ttl)
        if ttl_ms is None:
            return self._run(_lock(name, owner, lease))
        _str("name", name), _str("owner", owner)  # checked before the grant
        grant = self.lease_grant(ttl_ms)
        try:
            result = self._run(_lock(name, owner, grant.id))
        except BaseException:  # Timeout included: the lock may be held with the lease; revoking releases it
            self._revoke_quietly(grant.id)
            raise
        if not result.ok:
            self._revoke_quietly(grant.id)
        return result

    def unlock(self, name: str, owner: str) -> bool:
        """Release lock `name` if `owner` holds it; whether it did."""
        return self._run(_unlock(name, owner))

    # --- leases ---

    def lease_grant(self, ttl_ms: int, lock_delay_ms: int = 0) -> LeaseGrant:
        """A new lease that ends `ttl_ms` milliseconds of cluster time after its grant or latest keepalive.

        `lock_delay_ms`: when it expires (not when it is revoked), its locks stay unavailable this long. Bounds
        are the app's: out of them, AppError ``out_of_range``; too many live leases, ``lease_limit``.
        """
        return self._run(_lease_grant(ttl_ms, lock_delay_ms))

    def lease_keepalive(self, lease: int) -> int:
        """Renew `lease` for a full ttl; the milliseconds it now has left. LeaseNotFound: it is not live."""
        return self._run(_lease_keepalive(lease))

    def lease_revoke(self, lease: int) -> RevokeResult:
        """End `lease` now: its keys are deleted and its locks released (at once, without lock delay)."""
        return self._run(_lease_revoke(lease))

    def lease_ttl(self, lease: int) -> LeaseStatus:
        """`lease`'s ttl, time left, keys and locks. LeaseNotFound: it is not live."""
        return self._run(_lease_ttl(lease))

    def lease_list(self) -> list[int]:
        """The ids of every live lease."""
        return self._run(_lease_list())

    def lease(self, ttl: float, *, lock_delay: float = 0) -> Lease:
        """A lease of `ttl` seconds kept alive in the background: ``with client.lease(ttl=10) as lease: ...``.

        Entering grants it (with this client); a daemon thread, on a client session of its own, keeps it alive
        every ttl/3 until the block ends, which revokes it. `lease.lost` is set if it ended meanwhile; see
        `Lease`.
        """
        return Lease(self, ttl, lock_delay)

    def execute(self, op: Any, *, raise_app_errors: bool = True) -> Any:
        """Run any operation (a msgpack value) and return the app's result value.

        With `raise_app_errors`, a result ``{"error": code, "message": text}`` raises AppError.
        """
        return self._run(_execute(op, raise_app_errors))

    def request(self, operation: bytes) -> bytes:
        """Send `operation` as it is and return the result bytes as the cluster gave them: for an app op already
        encoded, or an op of the cluster itself (a reconfiguration, `zvsr.runtime.reconfigure`). Errors as for
        every call."""
        if not isinstance(operation, bytes) or not 0 < len(operation) <= OPERATION_BYTES_MAX:
            raise ValueError(f"an operation is 1..{OPERATION_BYTES_MAX} bytes")
        return self._request(operation)

    # --- plumbing ---

    def _revoke_quietly(self, lease: int) -> None:
        """Revoke `lease`, ignoring failures: a lease that cannot be revoked now expires by itself."""
        try:
            self.lease_revoke(lease)
        except ZvsrError:
            pass

    def _session(self, *, timeout_ms: int) -> Client:
        """A new client (its own client_id and sockets) to the same endpoints with the same keys and context."""
        proxy, replicas, _, curve = self._settings
        return Client(proxy, replicas=replicas, timeout_ms=timeout_ms, context=self._context, curve=curve)

    def _run(self, call: _Call[T]) -> T:
        return _result_value(call, self._request(call.operation))

    def _request(self, operation: bytes) -> bytes:
        with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            exchange = self._exchange
            exchange.begin(operation)
            try:
                while exchange.completion is None:
                    for socket, _ in self._poller.poll(exchange.wait_ms()):
                        index = self._index.get(socket)  # None: dropped by a configuration learnt just now
                        if index is not None:
                            exchange.drain(index)
                    exchange.advance()
            except BaseException:
                exchange.abandon()
                raise
            return exchange.result()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for socket in self._exchange.sockets.values():
                socket.close(linger=0)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient:
    """`Client` for asyncio: the same API as coroutines.

    Through proxies, concurrent calls (``asyncio.gather``) are pipelined: each runs on a session of its own and
    those issued in one event-loop turn go out as one RequestBatch (`zvsr.client_pipeline`); `batch=False`, or
    direct to replicas, runs one request at a time per client (an asyncio lock).
    `context`: a `zmq.asyncio.Context` (default: one sharing the process-wide ZeroMQ context).
    """

    def __init__(
        self,
        proxy: str | Sequence[str] | None = None,
        *,
        replicas: Sequence[str] | None = None,
        timeout_ms: int = CLIENT_TIMEOUT_MS,
        context: zmq.asyncio.Context | None = None,
        curve: Curve | None = None,
        batch: bool = True,
    ) -> None:
        endpoints, via_proxies = _endpoints(proxy, replicas, timeout_ms, curve)
        context = zmq.asyncio.Context(zmq.Context.instance()) if context is None else context
        self._settings = _Settings(proxy, replicas, timeout_ms, curve)
        self._context = context
        self._lock = asyncio.Lock()
        self._poller = zmq.asyncio.Poller()
        self._index: dict[Any, int] = {}
        self._sockets: dict[int, zmq.asyncio.Socket] = {}
        self._via_proxies = via_proxies
        # The shadows are not closed on failure: closing the async sockets they share is what frees them.
        self._exchange = _open_exchange(
            endpoints,
            via_proxies=via_proxies,
            timeout_ms=timeout_ms,
            curve=curve,
            open_socket=self._open,
            close_socket=self._close_one,
            close_opened=lambda _: _close_all(self._sockets.values()),
        )
        self._closed = False
        shadows = self._exchange.sockets
        self._pipeline = _pipeline(self, shadows, timeout_ms) if batch and via_proxies else None

    def _open(self, index: int, endpoint: str, curve: Curve | None) -> zmq.Socket[bytes]:
        socket = _connected_dealer(self._context, index, endpoint, curve, via_proxies=self._via_proxies)
        self._sockets[index] = socket
        self._poller.register(socket, zmq.POLLIN)
        self._index[socket] = index
        # The asyncio poller waits on the async socket; the exchange sends and receives NOBLOCK through a plain
        # socket sharing it, exactly as the sync client does.
        return zmq.Socket.shadow(socket.underlying)

    def _close_one(self, index: int) -> None:
        socket = self._sockets.pop(index)
        self._poller.unregister(socket)
        del self._index[socket]
        socket.close(linger=0)

    @property
    def client_id(self) -> int:
        return self._exchange.client_id

    async def get(self, key: str) -> Any:
        return await self._run(_get(key))

    async def put(self, key: str, value: Any, lease: int | None = None) -> None:
        await self._run(_put(key, value, lease))

    async def delete(self, key: str) -> bool:
        return await self._run(_delete(key))

    async def cas(self, key: str, expected: Any, new: Any) -> CasResult:
        return await self._run(_cas(key, expected, new))

    async def incr(self, key: str, by: int = 1) -> int:
        return await self._run(_incr(key, by))

    async def lock(self, name: str, owner: str, lease: int | None = None, ttl: float | None = None) -> LockResult:
        ttl_ms = _lock_args(lease, ttl)
        if ttl_ms is None:
            return await self._run(_lock(name, owner, lease))
        _str("name", name), _str("owner", owner)
        grant = await self.lease_grant(ttl_ms)
        try:
            result = await self._run(_lock(name, owner, grant.id))
        except BaseException:
            await self._revoke_quietly(grant.id)
            raise
        if not result.ok:
            await self._revoke_quietly(grant.id)
        return result

    async def unlock(self, name: str, owner: str) -> bool:
        return await self._run(_unlock(name, owner))

    async def lease_grant(self, ttl_ms: int, lock_delay_ms: int = 0) -> LeaseGrant:
        return await self._run(_lease_grant(ttl_ms, lock_delay_ms))

    async def lease_keepalive(self, lease: int) -> int:
        return await self._run(_lease_keepalive(lease))

    async def lease_revoke(self, lease: int) -> RevokeResult:
        return await self._run(_lease_revoke(lease))

    async def lease_ttl(self, lease: int) -> LeaseStatus:
        return await self._run(_lease_ttl(lease))

    async def lease_list(self) -> list[int]:
        return await self._run(_lease_list())

    def lease(self, ttl: float, *, lock_delay: float = 0) -> AsyncLease:
        """`Client.lease` for asyncio: ``async with client.lease(ttl=10) as lease: ...``; an asyncio task, on a
        client session of its own, keeps the lease alive."""
        return AsyncLease(self, ttl, lock_delay)

    async def execute(self, op: Any, *, raise_app_errors: bool = True) -> Any:
        return await self._run(_execute(op, raise_app_errors))

    async def _revoke_quietly(self, lease: int) -> None:
        try:
            await self.lease_revoke(lease)
        except ZvsrError:
            pass

    def _session(self, *, timeout_ms: int) -> AsyncClient:
        proxy, replicas, _, curve = self._settings
        return AsyncClient(proxy, replicas=replicas, timeout_ms=timeout_ms, context=self._context, curve=curve)

    async def _run(self, call: _Call[T]) -> T:
        return _result_value(call, await self._request(call.operation))

    async def _request(self, operation: bytes) -> bytes:
        if self._pipeline is not None and not self._closed:
            return await self._pipeline.request(operation)
        async with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            exchange = self._exchange
            exchange.begin(operation)
            try:
                while exchange.completion is None:
                    for socket, _ in await self._poller.poll(exchange.wait_ms()):
                        index = self._index.get(socket)  # None: dropped by a configuration learnt just now
                        if index is not None:
                            exchange.drain(index)
                    exchange.advance()
            except BaseException:  # also asyncio.CancelledError, e.g. from asyncio.wait_for
                exchange.abandon()
                raise
            return exchange.result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pipeline is not None:
            self._pipeline.close()
        for socket in self._sockets.values():
            socket.close(linger=0)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _pipeline(client: AsyncClient, shadows: dict[int, zmq.Socket[bytes]], timeout_ms: int) -> Pipeline:
    """A pipelining AsyncClient's lanes over its proxies (zvsr.client_pipeline); its own exchange is the first."""
    return Pipeline(
        client._exchange,
        shadows,
        client._poller,
        client._index,
        lambda sockets: _Exchange(sockets, via_proxies=True, timeout_ms=timeout_ms),
    )


# --- leases kept alive in the background --------------------------------------------------------------------

# After a keepalive that failed (no answer in time, the cluster unavailable), the next one is tried this soon.
_KEEPALIVE_RETRY_S: Final = 5 * CLIENT_TICK_MS / 1000


class _LeaseClock:
    """What a holder knows of its lease's time: the send time (`time.monotonic()`) of the last acknowledged grant
    or keepalive, and the time left the cluster then gave it. The cluster renewed the lease at some moment after
    that send, so measuring from it is conservative."""

    def __init__(self, grant: LeaseGrant, sent: float) -> None:
        self.id = grant.id
        self.ttl_ms = grant.ttl_ms
        # (sent, remaining_ms), replaced whole: the keepalive thread writes it while the holder reads it.
        self._acknowledged = (sent, grant.ttl_ms)

    def acknowledged(self, sent: float, remaining_ms: int) -> None:
        if sent >= self._acknowledged[0]:
            self._acknowledged = (sent, min(remaining_ms, self.ttl_ms))

    @property
    def last_sent(self) -> float:
        return self._acknowledged[0]

    def valid_for(self, now: float) -> float:
        sent, remaining_ms = self._acknowledged
        return max(0.0, remaining_ms / 1000 * (1 - LEASE_CLOCK_DRIFT) - (now - sent))

    def silent_at(self) -> float:
        """When a whole ttl will have passed since the last acknowledged send: the lease is then taken as lost."""
        return self.last_sent + self.ttl_ms / 1000

    def keepalive_timeout_ms(self, client_timeout_ms: int) -> int:
        """A keepalive's bound: ttl/3 (so that a lost one leaves time for more within the ttl), at most the
        client's own timeout."""
        return max(1, min(client_timeout_ms, self.ttl_ms // 3))


class _KeptLease:
    """What `Lease` and `AsyncLease` share: the id, ttl, and `valid_for`."""

    def __init__(self, ttl: float, lock_delay: float) -> None:
        self._ttl_ms = _seconds_to_ms("ttl", ttl)
        self._lock_delay_ms = _seconds_to_ms("lock_delay", lock_delay, zero=True)
        self._clock: _LeaseClock | None = None
        self._ended = False

    @property
    def id(self) -> int:
        """The lease id (for `put(..., lease=)`, `lock(..., lease=)`)."""
        return self._granted().id

    @property
    def ttl(self) -> float:
        """The lease's time to live, in seconds (as granted; before that, as asked)."""
        return (self._ttl_ms if self._clock is None else self._clock.ttl_ms) / 1000

    def valid_for(self) -> float:
        """Seconds the holder may still assume it holds the lease (0 once lost or ended): from the send time of the
        last acknowledged keepalive or grant, the time left it was given × (1 - LEASE_CLOCK_DRIFT).

        Check it before acting on the lease. A process can pause between the check and the act, so a resource
        that must never serve two holders checks the lock's fencing token as well."""
        if self._clock is None or self._ended or self._lost():
            return 0.0
        return self._clock.valid_for(time.monotonic())

    def _granted(self) -> _LeaseClock:
        if self._clock is None:
            raise RuntimeError("the lease is not granted yet: enter its with block (or call start())")
        return self._clock

    def _lost(self) -> bool:
        raise NotImplementedError


class Lease(_KeptLease):
    """A lease kept alive in the background, for ``with client.lease(ttl=10) as lease:`` (`Client.lease`).

    Entering (or `start()`) grants it with the client; a daemon thread then renews it every ttl/3 over a client
    session of its own (a ZeroMQ socket must not be shared between threads), each keepalive bounded by ttl/3.
    Leaving (or `close()`) stops the thread and revokes the lease, which deletes its keys and releases its locks.

    `lost` (a threading.Event) is set when the lease is gone or must be taken for gone: a keepalive answered
    LeaseNotFound, or none succeeded for a whole ttl. The thread then stops, and the holder must stop acting on
    the lease (a new one is a new `client.lease(...)`). `valid_for()` says for how long it may still act.
    """

    def __init__(self, client: Client, ttl: float, lock_delay: float = 0) -> None:
        super().__init__(ttl, lock_delay)
        self._client = client
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Lease:
        """Grant the lease and start keeping it alive."""
        if self._clock is not None:
            raise RuntimeError("the lease was started already")
        sent = time.monotonic()
        clock = self._clock = _LeaseClock(self._client.lease_grant(self._ttl_ms, self._lock_delay_ms), sent)
        self._thread = threading.Thread(target=self._keep_alive, args=(clock,), name=f"zvsr-lease-{clock.id}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop keeping the lease alive and revoke it — best effort: a lease that cannot be revoked now (the
        cluster unreachable) expires by itself within its ttl. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._ended = True
        self._stop.set()
        thread.join()  # at most one keepalive in flight, bounded by its timeout
        self._client._revoke_quietly(self.id)

    def _lost(self) -> bool:
        return self.lost.is_set()

    def _keep_alive(self, clock: _LeaseClock) -> None:
        interval = clock.ttl_ms / 3000
        timeout_ms = clock.keepalive_timeout_ms(self._client._settings.timeout_ms)
        try:
            with self._client._session(timeout_ms=timeout_ms) as s:
                next_at = clock.last_sent + interval
                while not self._stop.wait(max(0.0, min(next_at, clock.silent_at()) - time.monotonic())):
                    if time.monotonic() >= clock.silent_at():
                        return  # no keepalive succeeded for a whole ttl
                    sent = time.monotonic()
                    try:
                        remaining_ms = s.lease_keepalive(clock.id)
                    except LeaseNotFound:
                        return
                    except ZvsrError:  # no answer in time, or refused: try again soon
                        next_at = time.monotonic() + _KEEPALIVE_RETRY_S
                        continue
                    clock.acknowledged(sent, remaining_ms)
                    next_at = sent + interval
        finally:
            if not self._stop.is_set():  # stopped other than by close(): the lease is taken for lost
                self.lost.set()

    def __enter__(self) -> Lease:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class AsyncLease(_KeptLease):
    """`Lease` for asyncio: ``async with client.lease(ttl=10) as lease:`` (`AsyncClient.lease`). An asyncio task
    keeps it alive, on a client session of its own so that a keepalive never waits behind the caller's requests;
    `lost` is an asyncio.Event."""

    def __init__(self, client: AsyncClient, ttl: float, lock_delay: float = 0) -> None:
        super().__init__(ttl, lock_delay)
        self._client = client
        self.lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> AsyncLease:
        """Grant the lease and start keeping it alive."""
        if self._clock is not None:
            raise RuntimeError("the lease was started already")
        sent = time.monotonic()
        clock = self._clock = _LeaseClock(await self._client.lease_grant(self._ttl_ms, self._lock_delay_ms), sent)
        self._task = asyncio.create_task(self._keep_alive(clock), name=f"zvsr-lease-{clock.id}")
        return self

    async def close(self) -> None:
        """Stop keeping the lease alive and revoke it (best effort, as `Lease.close`). Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        self._ended = True
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            await self._client._revoke_quietly(self.id)

    def _lost(self) -> bool:
        return self.lost.is_set()

    async def _keep_alive(self, clock: _LeaseClock) -> None:
        interval = clock.ttl_ms / 3000
        session = self._client._session(timeout_ms=clock.keepalive_timeout_ms(self._client._settings.timeout_ms))
        try:
            next_at = clock.last_sent + interval
            while True:
                now = time.monotonic()
                if now >= clock.silent_at():
                    return  # no keepalive succeeded for a whole ttl
                if now < next_at:
                    await asyncio.sleep(min(next_at, clock.silent_at()) - now)
                    continue
                sent = time.monotonic()
                try:
                    remaining_ms = await session.lease_keepalive(clock.id)
                except LeaseNotFound:
                    return
                except ZvsrError:  # no answer in time, or refused: try again soon
                    next_at = time.monotonic() + _KEEPALIVE_RETRY_S
                    continue
                clock.acknowledged(sent, remaining_ms)
                next_at = sent + interval
        finally:
            session.close()
            if not self._ended:  # stopped other than by close(): the lease is taken for lost
                self.lost.set()

    async def __aenter__(self) -> AsyncLease:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()
