"""The client proxy: one stable endpoint that always finds the current primary, for zvsr and legacy clients.

Theory of operation
-------------------
A proxy is stateless in the sense that matters: it holds no replicated state, so any number may run and any
may be restarted; what it remembers (sessions, the current view) is a cache that makes it faster, never more
correct. One thread runs a sync `zmq.Poller` reactor (ARCHITECTURE §4): it drains each ready socket with NOBLOCK
(at most `PROXY_DRAIN_MAX` messages at a time, for fairness), then advances a logical clock of
`config.tick_ms` ticks computed from `time.monotonic()` (missed ticks are caught up, so deadlines hold under
load).

Sockets:
- frontend: a ROUTER bound at `config.proxy`. A message is `[routing frames…][payload]`: one identity frame
  for a DEALER peer, identity + empty delimiter for a REQ peer (more frames when it came through ROUTER/DEALER
  devices). The answer goes back with exactly the frames that came in, so each peer gets its own shape.
- backends: one DEALER per replica, connected to its client endpoint, so an attempt goes to a chosen replica;
  the replica answers in the DEALER shape. IMMEDIATE=1: a replica that is not connected refuses the send at
  once (counted as not sent) instead of queueing for it; ZMTP heartbeats drop the connection of a frozen one.
- heartbeats: one SUB per replica (CONFLATE=1 keeps only the newest, which needs one publisher per socket) on
  its heartbeat PUB. A `Commit` of our cluster and epoch, sent by the primary of its view (rule 1), names a
  view that has started: the proxy adopts it if it is newer than what it knew.

The replicas are those of the current configuration (VR Revisited §7), by replica id. The proxy starts with the
cluster file's and asks them for the current one at once, and every `PROXY_MEMBERSHIP_ASK_MS` until one answers
(the status query, on the same DEALERs: its answer carries the configuration, `zvsr.runtime.members`); it asks
again when a heartbeat names a later epoch, when a Redirect names a replica it does not know, and every
`PROXY_MEMBERSHIP_POLL_MS` in case it missed both. A later configuration is learnt without a restart: DEALERs
and SUBs to the new members are connected and those to replicas that left are closed; every session addresses
the new members (`ClientSession.learn_configuration`), and each request in flight is sent at once to the new
epoch's first primary. Clients see a pause, not an error.

Requests. Every request runs in a `ClientSession` (`zvsr.protocol.client_session`): the same sans-IO retry and
primary discovery the simulator's clients run. It sends to the primary of the view the proxy believes current,
follows Redirects, re-sends the *same* (client_id, request_number) to every replica on timeout (so failover is
at-most-once: the client table answers a retry of an executed request from its cache, rule 8), and gives up
after `config.request_timeout_ms`. The proxy owns the retries toward the replicas: its zvsr clients keep only
their own deadline and do not re-send on a timer (`RelaySession`; docs/protocol.md §5, "Who retries what"), so
every request is answered here, by this deadline. Two kinds of client:
- zvsr clients send a `Request` (codec type 20). The proxy relays it with the client's own numbers, one session
  per client_id, and answers with the encoded `Reply` (the replica's bytes, passed through) or an `Error`.
  A Redirect is followed, never passed on. The client's retry of the request in flight (same number) joins it:
  the answer goes to whichever route asked last.
- legacy clients know nothing of zvsr: any other msgpack value is a *bare operation* (e.g.
  ``{"op": "get", "key": "a"}`` from a zmq.REQ). The routing frames identify a session, which the proxy
  registers through the log before its first operation (a random nonce from `secrets`; the session runs with
  `register=True` and goes on under the session id the register names) and numbers 1, 2, …; the answer is the
  bare result value (the application's result bytes as they are), or ``{"error": code, "message": text}``.
Maps whose ``type`` is a zvsr client or admin type (20..23, 26, 30, 32, 36) are never bare operations; a snapshot
or history query (32, 36) is answered ``unsupported`` in its own answer type: a proxy holds no state.

A pipelining zvsr client may send a `RequestBatch` (type 26, `zvsr.wire.batch`): the requests of several of its
sessions in one message. Each element is handled as if it had come alone; from then on that route (its routing
frames; `PROXY_BATCH_SENDERS_MAX` routes, least recently used first out) gets its zvsr answers, per wake-up, in
`ReplyBatch`es. A malformed batch gets the bare Error, an element that is no valid Request the Error it would
get alone; each is counted by reason.

Timers: each request in flight is entered in a timer wheel at the tick its session's timers act next (a
re-send or its deadline; `ClientSession.ticks_until_due`), so a tick costs the requests due in it, not a walk
over every request in flight.

Every request gets exactly one answer, never a hang (the deadline is the session's): a result, or an error:
- ``timeout``: no result within `request_timeout_ms`; the request may or may not have been executed;
- ``unavailable``: certainly not executed — no replica was reachable, or every attempt was refused
  (`zvsr.runtime.outcome`);
- ``busy``: the client already has a request in flight (a legacy client's second one; a zvsr client's *older*
  number), or `PROXY_IN_FLIGHT_MAX` requests are in flight, or the session table (`PROXY_SESSIONS_MAX`) is
  full of sessions in use. A zvsr client's *newer* number supersedes the one in flight, which is answered
  ``timeout`` (outcome unknown): the client gave up on it, and must not be stalled until our deadline;
- ``bad_request``: the payload is not msgpack, a malformed zvsr message, or too large (a frame above
  `PROXY_FRAME_BYTES_MAX` never arrives: libzmq drops that connection), or a replica refused it as malformed.

Wire shapes of the answers:

==========================  =======================================  ========================================
                            zvsr client (sent a Request)             legacy client (sent a bare operation)
==========================  =======================================  ========================================
result                      `Reply` (type 21), the primary's bytes   the result value (the app's msgpack)
error                       `Error` (type 23): view, client_id,      ``{"error": code, "message": text}``
                            request_number, code, message
unreadable zvsr message     `Error` for the ids it names, else the   —
                            bare ``{"type": 23, "code":
                            "bad_request", "message": …}``
                            (as a replica answers: `zvsr.wire.admin`)
==========================  =======================================  ========================================

Payloads that are not msgpack, too large to read, or framed wrongly get the legacy map: nothing says which
kind of client sent them. The legacy error map is the shape of the app's own error results
(`zvsr.apps.base.error_result`), so a legacy client checks one thing. At-most-once for a legacy client holds
across the proxy's own retries; a legacy client that re-sends after a lost answer sends a new request.

View knowledge is shared: a new request starts at the proxy's best-known view, and a Reply, Redirect or
heartbeat of a newer view moves the proxy — and every request in flight in an older view, via a Redirect fed
to its session — to that view's primary.

Sessions are bounded (`PROXY_SESSIONS_MAX`, least recently used first out) and forgotten after
`PROXY_SESSION_IDLE_MS` idle. Forgetting is harmless: zvsr clients carry their own numbers, and a legacy peer
that comes back gets a new client_id (its earlier requests are all answered).

A status query ``{"type": 30}`` is answered ``{"type": 31, "role": "proxy", ...}`` with the known view and
primary, session and in-flight counts, counters, and the metrics URL. Bad input is counted in `counters` and
logged at most once per reason per `BAD_INPUT_LOG_INTERVAL_MS`.

Metrics (`zvsr.runtime.metrics`, when the proxy has a metrics port): every answer is counted by outcome in
`outcomes`; the reactor publishes a sample once per tick (outcomes, requests in flight, retries, the request
duration histogram) and prometheus_client's exporter threads serve ``/metrics`` from it.
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import random
import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq

from zvsr.constants import (
    CLIENT_ENVELOPE_FRAMES_MAX,
    CLIENT_MESSAGE_BYTES_MAX,
    CLIENT_REPLY_BYTES_MAX,
    HEARTBEAT_MESSAGE_BYTES_MAX,
    OPERATION_BYTES_MAX,
    PROXY_BACKEND_SNDHWM,
    PROXY_BATCH_SENDERS_MAX,
    PROXY_CATCH_UP_TICKS_MAX,
    PROXY_DRAIN_MAX,
    PROXY_EVICTION_SCAN_MAX,
    PROXY_FRAME_BYTES_MAX,
    PROXY_IN_FLIGHT_MAX,
    PROXY_MEMBERSHIP_ASK_MS,
    PROXY_MEMBERSHIP_POLL_MS,
    PROXY_SESSION_IDLE_MS,
    PROXY_SESSIONS_MAX,
    PROXY_SWEEP_MS,
    ZMTP_HEARTBEAT_IVL_MS,
    ZMTP_HEARTBEAT_TIMEOUT_MS,
)
from zvsr.protocol.client_session import ClientSession, Completion
from zvsr.protocol.client_table import REGISTER_REQUEST_NUMBER
from zvsr.protocol.membership import Membership
from zvsr.protocol.messages import (
    ERROR_BAD_REQUEST,
    ERROR_BUSY,
    ERROR_SESSION_EXPIRED,
    ERROR_TIMEOUT,
    ClientReply,
    Commit,
    Error,
    Redirect,
    Reply,
    Request,
)
from zvsr.protocol.ready import BROADCAST
from zvsr.runtime import security
from zvsr.runtime.cluster_config import ClusterConfig
from zvsr.runtime.envelope import ClientEnvelope, EnvelopeError, fast_recv, fast_send, parse_client_frames
from zvsr.runtime.logs import RateLimitedWarnings, setup_logging
from zvsr.runtime.members import from_status, member_addresses
from zvsr.runtime.metrics import OUTCOME_OK, PROXY_OUTCOMES, MetricsStartError, ProxyMetrics, ProxySample
from zvsr.runtime.outcome import Attempts
from zvsr.runtime.serving import run_until_stopped
from zvsr.wire.admin import (
    SNAPSHOT_UNSUPPORTED,
    TYPE_HISTORY_QUERY,
    TYPE_SNAPSHOT_QUERY,
    TYPE_STATUS_QUERY,
    clip_message,
    decode_status,
    encode_bare_error,
    encode_history_error,
    encode_snapshot_error,
    encode_status,
    encode_status_query,
    is_status_query,
    request_ids,
)
from zvsr.wire.batch import (
    TYPE_REQUEST_BATCH,
    batches,
    decode_reply_batch,
    decode_request_batch,
    encode_reply_batch,
    encode_request_batch,
    is_reply_batch,
    is_request_batch,
)
from zvsr.wire.codec import (
    TYPE_ERROR,
    TYPE_REDIRECT,
    TYPE_REPLY,
    TYPE_REQUEST,
    DecodeError,
    decode_client_reply,
    decode_replica_message,
    decode_request,
    encode,
)

log = logging.getLogger("zvsr.proxy")

# Maps with one of these `type`s are zvsr messages (`zvsr.wire.codec`, `zvsr.wire.admin`), never a legacy
# client's bare operation.
_ZVSR_TYPES: Final = frozenset(
    {TYPE_REQUEST, TYPE_REPLY, TYPE_REDIRECT, TYPE_ERROR, TYPE_STATUS_QUERY, TYPE_REQUEST_BATCH}
    | {TYPE_SNAPSHOT_QUERY, TYPE_HISTORY_QUERY}
)
# A proxy holds no state to read: these queries belong to a replica's client endpoint (docs/protocol.md).
_REPLICA_QUERY_TEXT: Final = "a proxy holds no state: send this query to a replica's client endpoint"
# How the codec (and every zvsr client that writes "type" first) begins a Request: map of 4, "type", 20. Such a
# payload goes straight to `decode_request`, the hot path; anything else is unpacked once to classify it.
_REQUEST_PREFIX: Final = b"\x84\xa4type\x14"
# Flags and option as plain ints: pyzmq's enum wrappers cost ~1 µs per call on the hot path.
_NOBLOCK: Final = int(zmq.NOBLOCK)
_NOBLOCK_SNDMORE: Final = int(zmq.NOBLOCK | zmq.SNDMORE)
_RCVMORE: Final = int(zmq.RCVMORE)


class _Session:
    """One client_id's session, plus where its outstanding request's answer goes."""

    __slots__ = (
        "session",
        "legacy_key",
        "route",
        "wire",
        "wire_for",
        "attempts",
        "last_used",
        "answered_number",
        "started",
        "synced",
    )

    def __init__(self, session: ClientSession, legacy_key: tuple[bytes, ...] | None, now: float) -> None:
        self.session = session
        self.legacy_key = legacy_key  # the routing frames of a legacy peer; None for a zvsr client
        self.route: ClientEnvelope | None = None  # routing frames of the request in flight
        self.wire = b""  # the encoded request in flight: encoded once, sent on every attempt
        self.wire_for: Request | None = None  # the request `wire` encodes (a registering session moves on)
        self.attempts = Attempts()
        self.last_used = now
        self.answered_number = -1  # the latest request_number this proxy answered for the client
        self.started = now  # when the request in flight arrived (the request duration histogram)
        self.synced = 0  # the proxy's tick count the session's timers have been brought up to (`Proxy._tick`)


class ProxyStartError(Exception):
    """The proxy cannot start (its endpoint cannot be bound); the message says which and why."""


class Proxy:
    """A client proxy for one cluster; see the module docstring.

    Sockets are bound and connected here (so an endpoint in use fails at once); `run` may then be called on
    another thread. Call `close` after `run` has returned.
    """

    def __init__(
        self,
        config: ClusterConfig,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        # The configuration the proxy addresses (§7): member ids in order, the view its first member leads, its
        # epoch; the file's until a replica tells us better (`_learn_membership`).
        self._members: tuple[int, ...] = config.ids
        self._start_view = 0
        self.epoch = config.epoch
        self._own_context = context is None
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context() if context is None else context
        self._prng = random.Random(seed)  # retry jitter only; client ids come from `secrets`
        self._tick_s = config.tick_ms / 1000
        self._deadline_ticks = max(1, -(-config.request_timeout_ms // config.tick_ms))
        self._now = time.monotonic()
        self.view = 0  # the newest view known to have started
        self._sessions: OrderedDict[int, _Session] = OrderedDict()  # by client_id, least recently used first
        self._legacy: dict[tuple[bytes, ...], int] = {}  # legacy routing frames -> client_id
        self._in_flight: dict[int, _Session] = {}
        # Timers: ticks so far, and per tick number the sessions whose timers act then (re-send, deadline). A
        # session is ticked only at those ticks (`ClientSession.ticks_until_due` / `advance`), so a tick costs
        # the sessions due in it, not a walk over every request in flight. Entries go stale when a request is
        # answered or its timers restart; they are skipped when their tick comes.
        self._tick_count = 0
        self._wheel: dict[int, list[_Session]] = {}
        # Requests to send to each replica at the end of this wake-up (batched): (session, encoded request).
        self._pending: dict[int, list[tuple[_Session, bytes]]] = {}
        # Clients that sent a RequestBatch (LRU, bounded) get their answers in ReplyBatches: those of one
        # wake-up, per route, sent at its end.
        self._batch_senders: OrderedDict[ClientEnvelope, None] = OrderedDict()
        self._answers: dict[ClientEnvelope, list[bytes]] = {}
        self.counters: Counter[str] = Counter()
        self.outcomes: dict[str, int] = dict.fromkeys(PROXY_OUTCOMES, 0)  # answers by outcome (metrics)
        self.retries = 0  # sends of a request after its first, counted when it is answered (metrics)
        self._metrics: ProxyMetrics | None = None
        self._bad_input_log = RateLimitedWarnings(log)
        self._sockets: list[zmq.Socket[bytes]] = []
        # CurveZMQ: a server to its clients (domain "clients"), a client of the replicas, with one key pair.
        self._keys = config.keys()
        self._pair = None if self._keys is None else self._keys.proxy_pair()
        self._authenticating = False
        self._backends: dict[int, zmq.Socket[bytes]] = {}
        self._backend_sends: dict[int, Callable[..., Any]] = {}
        self._heartbeats: dict[int, zmq.Socket[bytes]] = {}
        self._poller = zmq.Poller()
        self._handlers: dict[zmq.Socket[bytes], Callable[[], None]] = {}
        self._next_ask = 0.0  # when the configuration may be asked for again (event-driven asks are rate-limited)
        self._next_poll = 0.0  # when it is asked for anyway
        self._confirmed = False  # a replica answered with its configuration (until then: ask every ASK_MS)
        try:
            if self._keys is not None:
                self._keys.start_authenticator(self._context)
                self._authenticating = True
            self._frontend = self._socket(zmq.ROUTER)
            self._frontend.setsockopt(zmq.MAXMSGSIZE, PROXY_FRAME_BYTES_MAX)
            self._frontend.setsockopt(zmq.ROUTER_MANDATORY, 1)
            if self._pair is not None:
                self._curve(self._frontend, security.server_options(self._pair, security.DOMAIN_CLIENTS))
            try:
                self._frontend.bind(config.proxy)
            except zmq.ZMQError as error:
                raise ProxyStartError(f"cannot bind the proxy endpoint {config.proxy}: {error}") from error
            for replica, address in zip(config.ids, config.replicas, strict=True):
                self._connect_replica(replica, address.client, address.heartbeat)
            where = config.proxy_metrics()
            if where is not None:
                try:
                    self._metrics = ProxyMetrics(host=where[0], port=where[1])
                except MetricsStartError as error:
                    raise ProxyStartError(str(error)) from error
                self._publish_metrics(self._metrics)
        except BaseException:
            self.close()
            raise
        self.endpoint: str = self._frontend.getsockopt_string(zmq.LAST_ENDPOINT)
        self._frontend_send = fast_send(self._frontend)
        self._frontend_recv = fast_recv(self._frontend)
        self._poller.register(self._frontend, zmq.POLLIN)
        self._handlers[self._frontend] = self._drain_frontend

    # --- sockets --------------------------------------------------------------------------------------------

    def _socket(self, kind: int) -> zmq.Socket[bytes]:
        socket = self._context.socket(kind)
        self._sockets.append(socket)
        socket.setsockopt(zmq.LINGER, 0)
        return socket

    @staticmethod
    def _curve(socket: zmq.Socket[bytes], options: dict[str, int | bytes]) -> None:
        for name, value in options.items():
            socket.setsockopt(getattr(zmq, name), value)

    def _to_replica(self, socket: zmq.Socket[bytes], replica: int) -> None:
        if self._keys is not None and self._pair is not None:
            self._curve(socket, security.client_options(self._pair, self._keys.replicas[replica]))

    def _backend(self, replica: int, endpoint: str) -> zmq.Socket[bytes]:
        socket = self._socket(zmq.DEALER)
        self._to_replica(socket, replica)
        socket.setsockopt(zmq.IMMEDIATE, 1)
        socket.setsockopt(zmq.SNDHWM, PROXY_BACKEND_SNDHWM)
        socket.setsockopt(zmq.MAXMSGSIZE, CLIENT_REPLY_BYTES_MAX)
        socket.setsockopt(zmq.HEARTBEAT_IVL, ZMTP_HEARTBEAT_IVL_MS)
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMTP_HEARTBEAT_TIMEOUT_MS)
        socket.connect(endpoint)
        return socket

    def _heartbeat(self, replica: int, endpoint: str) -> zmq.Socket[bytes]:
        socket = self._socket(zmq.SUB)
        self._to_replica(socket, replica)
        socket.setsockopt(zmq.CONFLATE, 1)
        socket.setsockopt(zmq.MAXMSGSIZE, HEARTBEAT_MESSAGE_BYTES_MAX)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(endpoint)
        return socket

    def _connect_replica(self, replica: int, client: str, heartbeat: str) -> None:
        backend = self._backend(replica, client)
        self._backends[replica] = backend
        self._backend_sends[replica] = fast_send(backend)
        self._handlers[backend] = functools.partial(self._drain_backend, backend, replica)
        self._poller.register(backend, zmq.POLLIN)
        subscriber = self._heartbeat(replica, heartbeat)
        self._heartbeats[replica] = subscriber
        self._handlers[subscriber] = functools.partial(self._drain_heartbeats, subscriber)
        self._poller.register(subscriber, zmq.POLLIN)

    def _disconnect_replica(self, replica: int) -> None:
        for socket in (self._backends.pop(replica), self._heartbeats.pop(replica)):
            self._poller.unregister(socket)
            del self._handlers[socket]
            self._sockets.remove(socket)
            socket.close(linger=0)
        del self._backend_sends[replica]
        self._pending.pop(replica, None)

    def close(self) -> None:
        """Close every socket (and the context, if the proxy made it), stop the metrics listener. Not while
        `run` is running."""
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        for socket in self._sockets:
            socket.close(linger=0)
        self._sockets.clear()
        if self._authenticating:
            self._authenticating = False
            security.Keys.stop_authenticator(self._context)
        if self._own_context:
            self._context.term()
            self._own_context = False

    # --- the reactor ----------------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Serve until `stop` is set (checked at least every tick); forever without one."""
        poller = self._poller
        handlers = self._handlers
        self._now = time.monotonic()
        next_tick = self._now + self._tick_s
        next_sweep = self._now + PROXY_SWEEP_MS / 1000
        metrics = self._metrics
        log.info(
            "serving %s for %d replicas (cluster %d)",
            self.endpoint,
            len(self._members),
            self.config.cluster_id,
        )
        self._ask_membership()  # the file may predate a reconfiguration
        while stop is None or not stop.is_set():
            wait_ms = max(0, math.ceil((next_tick - time.monotonic()) * 1000))
            for socket, _ in poller.poll(wait_ms):
                self._now = time.monotonic()
                handler = handlers.get(socket)  # None: closed by a configuration learnt in this wake-up
                if handler is not None:
                    handler()
            self._now = now = time.monotonic()
            if now >= next_tick:
                ticks = int((now - next_tick) / self._tick_s) + 1
                next_tick += ticks * self._tick_s
                self._tick(min(ticks, PROXY_CATCH_UP_TICKS_MAX))
                if metrics is not None:
                    self._publish_metrics(metrics)
            self._send_pending()
            if self._answers:
                self._send_answers()
            if now >= next_sweep:
                next_sweep = now + PROXY_SWEEP_MS / 1000
                self._sweep_idle_sessions()
            if now >= self._next_poll:
                self._ask_membership()
        log.info("stopped")

    def serve(self, stop: threading.Event | None = None) -> None:
        """Run until `stop` is set or, in the main thread, SIGTERM / SIGINT arrives; then close."""
        run_until_stopped(self.run, self.close, stop)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def status(self) -> dict[str, Any]:
        """The status answer's fields (`zvsr.wire.admin` adds ``type``: 31). Diagnostics, not protocol."""
        return {
            "role": "proxy",
            "endpoint": self.endpoint,
            "cluster": self.config.cluster_id,
            "view": self.view,
            "primary": self._primary(self.view),
            "epoch": self.epoch,
            "members": list(self._members),
            "sessions": len(self._sessions),
            "in_flight": len(self._in_flight),
            "counters": dict(self.counters),
            "metrics": None if self._metrics is None else self._metrics.url,
        }

    def _publish_metrics(self, metrics: ProxyMetrics) -> None:
        """Once per tick: a sample of plain values for the exporter's threads (zvsr.runtime.metrics)."""
        metrics.publish(
            ProxySample(
                outcomes=dict(self.outcomes),
                inflight=len(self._in_flight),
                retries=self.retries,
                request_durations=metrics.request_seconds.snapshot(),
            )
        )

    # --- frontend -------------------------------------------------------------------------------------------

    def _drain_frontend(self) -> None:
        # `envelope.recv_frames`, inlined: this loop is the proxy's hot path.
        receive = self._frontend_recv
        for _ in range(PROXY_DRAIN_MAX):
            try:
                frame = receive(_NOBLOCK, copy=False)
            except zmq.Again:
                return
            frames = [frame.bytes]
            while frame.more:  # the rest of a multipart message is there already (atomic delivery)
                frame = receive(_NOBLOCK, copy=False)
                if len(frames) <= CLIENT_ENVELOPE_FRAMES_MAX:
                    frames.append(frame.bytes)  # surplus frames are read and dropped, never kept
            self._on_frontend(frames)

    def _on_frontend(self, frames: list[bytes]) -> None:
        self.counters["frontend messages"] += 1
        try:
            envelope, payload = parse_client_frames(frames)
        except EnvelopeError as error:
            # Answer the connection itself (its identity frame), in the raw DEALER shape.
            self._bad_input("envelope", str(error), legacy_route=(frames[0],))
            return
        if payload.startswith(_REQUEST_PREFIX):  # the hot path: a zvsr Request as the codec writes it
            try:
                request = decode_request(payload)
            except DecodeError as error:
                self._bad_zvsr_input(envelope, payload, error)
                return
            self._on_request(envelope, request, payload)
            return
        if len(payload) > CLIENT_MESSAGE_BYTES_MAX:
            if is_request_batch(payload):
                self.counters["bad request batch: too_large"] += 1
            detail = f"{len(payload)} bytes > {CLIENT_MESSAGE_BYTES_MAX}"
            self._bad_input("too_large", detail, legacy_route=envelope)
            return
        if is_request_batch(payload):  # a pipelining client's requests in one message
            self._on_request_batch(envelope, payload)
            return
        value, problem = _unpack_operation(payload)
        if problem is not None:
            self._bad_input("not_msgpack", problem, legacy_route=envelope)
            return
        if type(value) is dict:
            kind = value.get("type")
            if type(kind) is int and kind in _ZVSR_TYPES:
                self._on_zvsr_message(envelope, payload, kind)
                return
        if len(payload) > OPERATION_BYTES_MAX:
            detail = f"operation of {len(payload)} bytes > {OPERATION_BYTES_MAX}"
            self._bad_input("too_large", detail, legacy_route=envelope)
            return
        self._on_bare_operation(envelope, payload)

    def _on_zvsr_message(self, envelope: ClientEnvelope, payload: bytes, kind: int) -> None:
        if is_status_query(payload):
            self.counters["status queries"] += 1
            self._send_frontend(envelope, encode_status(self.status()))
            return
        if kind == TYPE_REQUEST_BATCH:  # a RequestBatch with its keys in another order
            self._on_request_batch(envelope, payload)
            return
        if kind in (TYPE_SNAPSHOT_QUERY, TYPE_HISTORY_QUERY):  # never a bare operation, never relayed
            self.counters["replica queries refused"] += 1
            encode_error = encode_snapshot_error if kind == TYPE_SNAPSHOT_QUERY else encode_history_error
            self._send_frontend(envelope, encode_error(SNAPSHOT_UNSUPPORTED, _REPLICA_QUERY_TEXT))
            return
        try:
            request = decode_request(payload)  # a Request with its keys in another order, or not a Request
        except DecodeError as error:
            self._bad_zvsr_input(envelope, payload, error)
            return
        self._on_request(envelope, request, payload)

    def _on_request_batch(self, envelope: ClientEnvelope, payload: bytes) -> None:
        """A RequestBatch from a pipelining client (zvsr.wire.batch): each element is handled as if it had come
        alone, and this route gets its answers in ReplyBatches from now on. A batch that does not decode gets a
        bare Error; an element that does not, the Error it would get alone (inside the answer batch)."""
        try:
            elements = decode_request_batch(payload)
        except DecodeError as error:
            self.counters[f"bad request batch: {error.reason}"] += 1
            self.outcomes[ERROR_BAD_REQUEST] += 1
            self._bad_input_log.warn(f"bad request batch ({error.reason})", str(error))
            self._send_frontend(envelope, encode_bare_error(clip_message(f"bad batch: {error}")))
            return
        senders = self._batch_senders
        if envelope in senders:
            senders.move_to_end(envelope)
        else:
            if len(senders) >= PROXY_BATCH_SENDERS_MAX:
                senders.popitem(last=False)  # the least recently batching route is answered unbatched again
            senders[envelope] = None
        self.counters["request batches received"] += 1
        for element in elements:
            try:
                request = decode_request(element)
            except DecodeError as error:
                self._bad_zvsr_input(envelope, element, error)
                continue
            self._on_request(envelope, request, element)

    def _on_request(self, envelope: ClientEnvelope, request: Request, payload: bytes) -> None:
        """A zvsr client's Request: relay it with the client's own (client_id, request_number)."""
        client_id, number = request.client_id, request.request_number
        state = self._sessions.get(client_id)
        if state is not None:
            outstanding = state.session.outstanding
            if state.legacy_key is not None:
                self._refuse_zvsr(envelope, request, ERROR_BAD_REQUEST, "client_id is in use by another client")
                return
            if outstanding is not None:
                if outstanding.request_number == number:
                    # The client's own retry of the request in flight: answer where it asks now.
                    state.route = envelope
                    self.counters["client retries joined"] += 1
                    return
                if number < outstanding.request_number:
                    self._refuse_zvsr(envelope, request, ERROR_BUSY, "this client already has a request in flight")
                    return
                # A newer number: the client gave up on the one in flight (one outstanding request per client,
                # §4) — its timeout may be shorter than ours. Refusing it `busy` until ours ran out would stall
                # the client for nothing; the replicas too let a newer request number overtake an older one.
                self._supersede(state, by=number)
            if number < state.session.request_number:
                message = f"request_number {number} is older than this client's {state.session.request_number}"
                self._refuse_zvsr(envelope, request, ERROR_BAD_REQUEST, message)
                return
        elif (state := self._new_session(client_id, legacy_key=None)) is None:
            self._refuse_zvsr(envelope, request, ERROR_BUSY, "the proxy's session table is full")
            return
        if len(self._in_flight) >= PROXY_IN_FLIGHT_MAX:
            self._refuse_zvsr(envelope, request, ERROR_BUSY, "the proxy has too many requests in flight")
            return
        fresh = number > state.answered_number
        self._addressing(state.session)
        state.session.view = max(state.session.view, self.view)  # an idle session may have slept through views
        state.session.submit(request.operation, request_number=number)
        self._start(state, envelope, payload, fresh=fresh)

    def _on_bare_operation(self, envelope: ClientEnvelope, operation: bytes) -> None:
        """A legacy client's bare msgpack operation: run it in the session of its routing frames."""
        key = tuple(envelope)
        client_id = self._legacy.get(key)
        state = None if client_id is None else self._sessions.get(client_id)
        if state is None:
            state = self._new_session(secrets.randbits(64), legacy_key=key, register=True)
            if state is None:
                self.outcomes[ERROR_BUSY] += 1
                self._send_frontend(envelope, _legacy_error(ERROR_BUSY, "the proxy's session table is full"))
                return
        elif state.session.outstanding is not None:
            self.counters["busy: request in flight"] += 1
            self.outcomes[ERROR_BUSY] += 1
            self._send_frontend(envelope, _legacy_error(ERROR_BUSY, "this client already has a request in flight"))
            return
        if len(self._in_flight) >= PROXY_IN_FLIGHT_MAX:
            self.counters["busy: in-flight bound"] += 1
            self.outcomes[ERROR_BUSY] += 1
            self._send_frontend(envelope, _legacy_error(ERROR_BUSY, "the proxy has too many requests in flight"))
            return
        self._addressing(state.session)
        state.session.view = max(state.session.view, self.view)
        request = state.session.submit(operation)
        self._start(state, envelope, encode(request), fresh=True)

    def _start(self, state: _Session, envelope: ClientEnvelope, wire: bytes, *, fresh: bool) -> None:
        state.route = envelope
        state.wire, state.wire_for = wire, state.session.outstanding
        state.attempts.start(fresh=fresh)
        state.last_used = state.started = self._now
        self._sessions.move_to_end(state.session.client_id)
        self._in_flight[state.session.client_id] = state
        self.counters["requests"] += 1
        state.synced = self._tick_count
        self._schedule(state)
        self._flush(state)

    # --- sessions -------------------------------------------------------------------------------------------

    def _client_session(
        self, client_id: int, *, request_number: int = 0, register: bool = False, registered: bool = False
    ) -> ClientSession:
        session = ClientSession(
            client_id=client_id,
            replica_count=len(self._members),
            prng=self._prng,
            request_number=request_number,
            view=self.view,
            deadline_ticks=self._deadline_ticks,
            register=register,
            registered=registered,
        )
        self._addressing(session)
        return session

    def _addressing(self, session: ClientSession) -> None:
        """Point `session` at the configuration the proxy knows (sessions learn it lazily: there may be many)."""
        if session.members != self._members and session.start_view <= self._start_view:
            session.learn_configuration(self._members, self._start_view)

    def _new_session(
        self, client_id: int, *, legacy_key: tuple[bytes, ...] | None, register: bool = False
    ) -> _Session | None:
        if len(self._sessions) >= PROXY_SESSIONS_MAX and not self._evict_one():
            self.counters["busy: session table full"] += 1
            return None
        state = _Session(self._client_session(client_id, register=register), legacy_key, self._now)
        self._sessions[client_id] = state
        if legacy_key is not None:
            self._legacy[legacy_key] = client_id
        self.counters["sessions created"] += 1
        return state

    def _supersede(self, state: _Session, *, by: int) -> None:
        """Drop the request in flight of a zvsr client that sent a newer one; its route gets `timeout`."""
        session = state.session
        outstanding, route = session.outstanding, state.route
        assert outstanding is not None and route is not None
        del self._in_flight[session.client_id]
        # A ClientSession cannot drop its outstanding request: a new one continues the client's numbering.
        state.session = self._client_session(
            session.client_id, request_number=session.request_number, registered=session.registered
        )
        state.route = None
        self.counters["requests superseded"] += 1
        self.outcomes[ERROR_TIMEOUT] += 1
        if state.attempts.sent > 1:
            self.retries += state.attempts.sent - 1
        message = f"superseded by request_number {by} of the same client; the outcome is unknown"
        error = Error(
            view=self.view,
            client_id=session.client_id,
            request_number=outstanding.request_number,
            code=ERROR_TIMEOUT,
            message=message,
        )
        self._answer(route, encode(error))

    def _rekey(self, state: _Session, old: int) -> None:
        """A legacy peer's session registered (it goes on under its session id: answers come addressed to it),
        or lost its session (back to its nonce, which its next request registers with)."""
        new = state.session.client_id
        del self._in_flight[old]
        self._in_flight[new] = state
        self._sessions.pop(old, None)
        self._sessions[new] = state
        if state.legacy_key is not None:
            self._legacy[state.legacy_key] = new
        self.counters["sessions re-keyed"] += 1

    def _evict_one(self) -> bool:
        """Forget the least recently used idle session, to make room for a new one.

        Only the oldest few are looked at: if they are all in flight, the table is full of work, and `busy`
        is the honest answer."""
        for count, (client_id, state) in enumerate(self._sessions.items()):
            if count == PROXY_EVICTION_SCAN_MAX:
                break
            if state.session.outstanding is None:
                self._forget(client_id)
                self.counters["sessions evicted (table full)"] += 1
                return True
        return False

    def _sweep_idle_sessions(self) -> None:
        idle_since = self._now - PROXY_SESSION_IDLE_MS / 1000
        while self._sessions:
            client_id, state = next(iter(self._sessions.items()))
            if state.last_used > idle_since:
                return
            if state.session.outstanding is not None:  # cannot outlive its deadline; keep it, look at the rest
                state.last_used = self._now
                self._sessions.move_to_end(client_id)
                continue
            self._forget(client_id)
            self.counters["sessions evicted (idle)"] += 1

    def _forget(self, client_id: int) -> None:
        state = self._sessions.pop(client_id)
        if state.legacy_key is not None:
            del self._legacy[state.legacy_key]

    # --- backends and heartbeats ----------------------------------------------------------------------------

    def _flush(self, state: _Session) -> None:
        """Send what the session asks for: its request in flight, to one replica or to all."""
        outbox = state.session.take_outbox()
        if not outbox:
            return
        outstanding = state.session.outstanding
        if outstanding is not state.wire_for and outstanding is not None:  # registered: request 1 of the session
            state.wire, state.wire_for = encode(outstanding), outstanding
            state.attempts.start(fresh=True)
        pending = self._pending
        for destination, request in outbox:
            if request is not outstanding:
                continue  # queued before the request completed (several ticks caught up at once)
            targets = self._members if destination == BROADCAST else (destination,)
            for replica in targets:
                if replica in self._backends:
                    pending.setdefault(replica, []).append((state, state.wire))
                else:  # a replica of another configuration: the session retries, or the proxy learns the new one
                    self.counters["sends to an unknown replica dropped"] += 1

    def _send_pending(self) -> None:
        """Send what this wake-up queued for each replica: one RequestBatch (zvsr.wire.batch) per replica where
        there are several, so the proxy and the primary pay one send and one receive per batch, not per
        request."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        for replica, queued in pending.items():
            send = self._backend_sends[replica]
            start = 0
            for batched, group in batches([wire for _, wire in queued], CLIENT_MESSAGE_BYTES_MAX):
                states = queued[start : start + len(group)]
                start += len(group)
                try:
                    send(encode_request_batch(group) if batched else group[0], _NOBLOCK)
                except zmq.Again:  # not connected (IMMEDIATE) or at the HWM: lost, like any message
                    self.counters["backend sends dropped"] += len(group)
                    continue
                for state, _ in states:
                    state.attempts.sent += 1
                if batched:
                    self.counters["request batches sent"] += 1

    def _drain_backend(self, socket: zmq.Socket[bytes], index: int) -> None:
        receive, option = socket.recv, socket.get
        for _ in range(PROXY_DRAIN_MAX):
            try:
                data = receive(_NOBLOCK)
            except zmq.Again:
                return
            while option(_RCVMORE):  # [payload] as sent; keep the last frame of anything longer
                data = receive(_NOBLOCK)
            if is_reply_batch(data):
                try:
                    elements = decode_reply_batch(data)
                except DecodeError as error:
                    self.counters[f"bad reply from replica: {error.reason}"] += 1
                    self._bad_input_log.warn(f"bad reply batch from replica {index}", str(error))
                    continue
            else:
                elements = [data]
            for element in elements:
                try:
                    reply = decode_client_reply(element)
                except DecodeError as error:
                    if self._on_status_answer(element):
                        if socket.closed:  # the configuration learnt has no place for this replica
                            return
                        continue
                    self.counters[f"bad reply from replica: {error.reason}"] += 1
                    self._bad_input_log.warn(f"bad reply from replica {index}", str(error))
                    continue
                self._on_backend_reply(reply, element)

    def _on_backend_reply(self, reply: ClientReply, data: bytes) -> None:
        state = self._in_flight.get(reply.client_id)
        if state is not None:
            outstanding = state.session.outstanding
            assert outstanding is not None
            if reply.request_number == outstanding.request_number:
                state.attempts.on_answer(reply)
            result = type(reply) is Reply
            # An Error may restart the retry timer, and a register's Reply sends the operation under the new
            # session id (its timers start again): bring the session's timers up to now first, and enter the
            # tick they act at next in the wheel after.
            restarts = not result or reply.request_number == REGISTER_REQUEST_NUMBER
            if restarts:
                self._sync(state)
            state.session.on_reply(reply)
            if state.session.client_id != reply.client_id:
                self._rekey(state, reply.client_id)
            self._flush(state)
            completion = state.session.take_completion()
            if completion is not None:
                self._finish(state, completion, reply_bytes=data if result else None)
            elif restarts:
                self._schedule(state)
        else:
            self.counters["replies after the answer"] += 1
        # Errors may name a view that never starts (a replica voting in it): only Reply / Redirect teach.
        if isinstance(reply, Redirect) and reply.primary not in self._backends:
            self._ask_membership(soon=True)  # a primary we do not know: a configuration we do not know
        elif not isinstance(reply, Error) and reply.view > self.view:
            self._learn_view(reply.view)

    def _drain_heartbeats(self, socket: zmq.Socket[bytes]) -> None:
        for _ in range(PROXY_DRAIN_MAX):
            try:
                data = socket.recv(_NOBLOCK)
            except zmq.Again:
                return
            try:
                message = decode_replica_message(data)
            except DecodeError as error:
                self.counters[f"bad heartbeat: {error.reason}"] += 1
                self._bad_input_log.warn("bad heartbeat", str(error))
                continue
            if not isinstance(message, Commit):
                self.counters["bad heartbeat: not a Commit"] += 1
                continue
            if message.cluster != self.config.cluster_id:
                self.counters["heartbeat of another cluster"] += 1
                self._bad_input_log.warn(
                    "heartbeat of another cluster",
                    f"cluster {message.cluster}, expected cluster {self.config.cluster_id}",
                )
                continue
            if message.epoch != self.epoch:
                # A later epoch: ask its configuration (a primary's heartbeat says it has started). An earlier
                # one: a replica that has not heard of ours yet; nothing to learn.
                self.counters["heartbeat of another epoch"] += 1
                if message.epoch > self.epoch:
                    self._ask_membership(soon=True)
                continue
            if message.replica != self._primary(message.view):
                self.counters["heartbeat not from the primary of its view"] += 1  # rule 1
                continue
            if message.view > self.view:
                self._learn_view(message.view)

    def _learn_view(self, view: int) -> None:
        """View `view` has started: use it, and move every request in flight in an older view to its primary."""
        self.view = view
        self.counters["views learnt"] += 1
        primary = self._primary(view)
        for state in list(self._in_flight.values()):
            session = state.session
            outstanding = session.outstanding
            if outstanding is not None and session.view < view:
                session.on_reply(
                    Redirect(
                        view=view,
                        primary=primary,
                        client_id=session.client_id,
                        request_number=outstanding.request_number,
                    )
                )
                self._flush(state)

    # --- the configuration (§7) ---------------------------------------------------------------------------

    def _primary(self, view: int) -> int:
        """The primary of `view` in the configuration the proxy knows (round robin from its first view)."""
        members = self._members
        return members[(view - self._start_view) % len(members)]

    def _ask_membership(self, *, soon: bool = False) -> None:
        """Send the status query to every replica we know (their answers carry the configuration); `soon`: a
        sign that it changed, answered within `PROXY_MEMBERSHIP_ASK_MS` (the periodic ask is rarer)."""
        now = self._now
        if soon and now < self._next_ask:
            return
        self._next_ask = now + PROXY_MEMBERSHIP_ASK_MS / 1000
        # Until a replica has answered (at start nothing is connected yet: IMMEDIATE refuses the sends), often.
        self._next_poll = now + (PROXY_MEMBERSHIP_POLL_MS if self._confirmed else PROXY_MEMBERSHIP_ASK_MS) / 1000
        query = encode_status_query()
        for send in self._backend_sends.values():
            try:
                send(query, _NOBLOCK)
            except zmq.Again:
                continue
        self.counters["configuration asked"] += 1

    def _on_status_answer(self, data: bytes) -> bool:
        """A replica's status answer (to `_ask_membership`): learn its configuration if it is a later one.
        False if `data` is no status answer."""
        try:
            answer = decode_status(data)
        except DecodeError:
            return False
        membership = from_status(answer)
        if membership is not None:
            self._confirmed = True
        if membership is None:
            self.counters["status answer without a configuration"] += 1
        elif membership.epoch > self.epoch or (
            membership.epoch == self.epoch and membership.start_view > self._start_view
        ):
            self._learn_membership(membership)
        elif membership.epoch == self.epoch and membership.ids != self._members:
            self._learn_membership(membership)  # the file listed them in another order (or others)
        return True

    def _learn_membership(self, membership: Membership) -> None:
        """Address the replicas of `membership` from now on (see the module docstring)."""
        addresses = member_addresses(membership)
        if set(addresses) != set(membership.ids):
            self.counters["configuration without endpoints ignored"] += 1
            return
        old = self._members
        self.epoch, self._members, self._start_view = membership.epoch, membership.ids, membership.start_view
        for replica in [r for r in self._backends if r not in membership]:
            self._disconnect_replica(replica)
        for replica, address in addresses.items():
            if replica not in self._backends:
                self._connect_replica(replica, address.client, address.heartbeat)
        self.counters["configurations learnt"] += 1
        log.info(
            "epoch %d (from view %d): replicas %s (were %s)",
            membership.epoch,
            membership.start_view,
            list(membership.ids),
            list(old),
        )
        view = max(self.view, membership.start_view)
        self.view = view
        primary = self._primary(view)
        for state in list(self._in_flight.values()):
            session = state.session
            self._addressing(session)
            session.view = max(session.view, view)
            if session.outstanding is not None:
                # Straight to the new epoch's primary: waiting for the session's retry timer would lengthen
                # the pause a reconfiguration costs the clients.
                self._pending.setdefault(primary, []).append((state, state.wire))

    # --- time -----------------------------------------------------------------------------------------------

    def _tick(self, ticks: int) -> None:
        for _ in range(ticks):
            self._tick_count = now = self._tick_count + 1
            for state in self._wheel.pop(now, ()):
                session = state.session
                if session.outstanding is None or self._in_flight.get(session.client_id) is not state:
                    continue  # answered since
                behind = now - state.synced
                due = session.ticks_until_due()
                if behind < due:
                    continue  # its timers restarted since: a later entry is the one that acts
                assert behind == due, "a session's acting tick was skipped"
                session.advance(behind - 1)
                session.tick()
                state.synced = now
                completion = session.take_completion()
                if completion is not None:
                    self._finish(state, completion, reply_bytes=None)
                else:
                    self._flush(state)
                    self._schedule(state)

    def _schedule(self, state: _Session) -> None:
        """Enter the tick at which the session's timers act next (its timers are current: `synced` is now)."""
        due = self._tick_count + state.session.ticks_until_due()
        self._wheel.setdefault(due, []).append(state)

    def _sync(self, state: _Session) -> None:
        """Bring the session's timers up to the proxy's tick count (none of the ticks skipped acts)."""
        behind = self._tick_count - state.synced
        if behind:
            state.session.advance(behind)
            state.synced = self._tick_count

    # --- answers --------------------------------------------------------------------------------------------

    def _finish(self, state: _Session, completion: Completion, *, reply_bytes: bytes | None) -> None:
        session = state.session
        del self._in_flight[session.client_id]
        route, state.route = state.route, None
        assert route is not None
        state.answered_number = completion.request_number
        legacy = state.legacy_key is not None
        sent = state.attempts.sent
        if sent > 1:
            self.retries += sent - 1
        metrics = self._metrics
        if metrics is not None:
            metrics.request_seconds.observe(self._now - state.started)
        if completion.result is not None:
            self.counters["results"] += 1
            self.outcomes[OUTCOME_OK] += 1
            if legacy:
                answer = completion.result  # the application's result value, as it encoded it
            elif reply_bytes is not None:
                answer = reply_bytes  # the replica's Reply, passed through
            else:
                answer = encode(
                    Reply(
                        view=session.view,
                        client_id=session.client_id,
                        request_number=completion.request_number,
                        result=completion.result,
                    )
                )
        else:
            assert completion.error is not None
            if completion.error in (ERROR_BAD_REQUEST, ERROR_SESSION_EXPIRED):
                code, message = completion.error, completion.message
            else:
                code, message = state.attempts.final_error(
                    timeout_ms=self.config.request_timeout_ms, target="replica"
                )
            self.counters[f"answered {code}"] += 1
            self.outcomes[code] = self.outcomes.get(code, 0) + 1
            if legacy:
                answer = _legacy_error(code, message)
            else:
                answer = encode(
                    Error(
                        view=self.view,
                        client_id=session.client_id,
                        request_number=completion.request_number,
                        code=code,
                        message=message,
                    )
                )
        if legacy:
            self._send_frontend(route, answer)
        else:
            self._answer(route, answer)
        if legacy and completion.error == ERROR_SESSION_EXPIRED:
            # The cluster forgot this legacy peer's session: its next request starts a new one (the expired
            # request itself was answered with the error, never executed twice).
            self._forget(session.client_id)

    def _refuse_zvsr(self, envelope: ClientEnvelope, request: Request, code: str, message: str) -> None:
        self.counters[f"refused: {code}"] += 1
        self.outcomes[code] = self.outcomes.get(code, 0) + 1
        error = Error(
            view=self.view,
            client_id=request.client_id,
            request_number=request.request_number,
            code=code,
            message=message,
        )
        self._answer(envelope, encode(error))

    def _bad_zvsr_input(self, envelope: ClientEnvelope, payload: bytes, error: DecodeError) -> None:
        """A zvsr message that is not a valid Request: an Error for the request it names, as a replica answers
        (`zvsr.wire.admin`); the bare Error (code and message only) if it names none."""
        self.counters[f"bad request: {error.reason}"] += 1
        self.outcomes[ERROR_BAD_REQUEST] += 1
        self._bad_input_log.warn(f"bad zvsr request ({error.reason})", str(error))
        message = clip_message(str(error))
        ids = request_ids(payload)
        if ids is None:
            self._answer(envelope, encode_bare_error(message))
            return
        client_id, request_number = ids
        answer = Error(
            view=self.view,
            client_id=client_id,
            request_number=request_number,
            code=ERROR_BAD_REQUEST,
            message=message,
        )
        self._answer(envelope, encode(answer))

    def _bad_input(self, reason: str, detail: str, *, legacy_route: ClientEnvelope) -> None:
        self.counters[f"bad request: {reason}"] += 1
        self.outcomes[ERROR_BAD_REQUEST] += 1
        self._bad_input_log.warn(f"bad request ({reason})", detail)
        self._send_frontend(legacy_route, _legacy_error(ERROR_BAD_REQUEST, f"{reason}: {detail}"))

    def _answer(self, envelope: ClientEnvelope, payload: bytes) -> None:
        """Answer a zvsr request with this wake-up's other answers (`_send_answers`, at its end)."""
        answers = self._answers.get(envelope)
        if answers is None:
            self._answers[envelope] = [payload]
        else:
            answers.append(payload)

    def _send_answers(self) -> None:
        """This wake-up's answers, sent back to back: one ReplyBatch per client that batches, else one message
        per answer. Sent one by one as replies came in, each would wake libzmq's I/O thread (a context switch
        and a TCP send of its own); back to back, the I/O thread takes them in one go."""
        answers, self._answers = self._answers, {}
        senders = self._batch_senders
        for envelope, payloads in answers.items():
            if envelope in senders:
                for batched, group in batches(payloads, CLIENT_REPLY_BYTES_MAX):
                    self._send_frontend(envelope, encode_reply_batch(group) if batched else group[0])
            else:
                for payload in payloads:
                    self._send_frontend(envelope, payload)

    def _send_frontend(self, envelope: ClientEnvelope, payload: bytes) -> None:
        try:
            # send_multipart, unrolled: ROUTER refuses (Again / EHOSTUNREACH) at the first frame or not at all.
            send = self._frontend_send
            for frame in envelope:
                send(frame, _NOBLOCK_SNDMORE)
            send(payload, _NOBLOCK)
        except zmq.Again:
            self.counters["answers dropped (client's queue full)"] += 1
        except zmq.ZMQError as error:
            if error.errno != errno.EHOSTUNREACH:
                raise
            self.counters["answers dropped (client gone)"] += 1


# --- helpers ------------------------------------------------------------------------------------------------


def _unpack_operation(payload: bytes) -> tuple[Any, str | None]:
    """(the payload's msgpack value, None) or (None, why not). Limits as the app adapter's: input-bounded."""
    size = len(payload)
    try:
        value = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=False,
            max_bin_len=size,
            max_str_len=size,
            max_array_len=size,
            max_map_len=size,
            max_ext_len=size,
        )
    except Exception as error:  # ValueError subclasses, UnicodeDecodeError, TypeError (unhashable key)...
        return None, f"not one msgpack value ({type(error).__name__})"
    return value, None


def _legacy_error(code: str, message: str) -> bytes:
    data: bytes = msgpack.packb({"error": code, "message": message}, use_bin_type=True)
    return data


def serve_proxy(config: ClusterConfig) -> None:
    """`zvsr proxy`: run one proxy until SIGTERM / SIGINT."""
    setup_logging(config.log_level, config.log_format)
    try:
        proxy = Proxy(config)
    except ProxyStartError as error:
        log.error("%s", error)
        raise SystemExit(1) from error
    proxy.serve()
