"""The watcher side of the watch stream: a live local copy of the keys under a prefix (the zguide's Clone).

Theory of operation
-------------------
Every replica with a ``watch`` endpoint publishes each operation it executes, numbered by op_number, on a PUB
socket (`zvsr.runtime.watch`; frames and types in docs/protocol.md §12). All replicas execute the same ops in
the same order, so each publishes the same numbered stream, at its own pace. A `Watcher` keeps a copy of the
coordination app's keys under one prefix:

1. it subscribes to *every* replica's watch PUB first, and buffers what arrives (a subscription takes effect
   asynchronously: it waits, at most `WATCH_JOIN_MS`, for a first message, which proves one is live);
2. it asks every replica for a snapshot of the prefix (the snapshot query, type 32, on the client port), and
   takes the freshest answer (highest op_number) among those that arrive within `WATCH_SNAPSHOT_GRACE_MS` of
   the first — a lagging backup answers with an older, but consistent, state;
3. it applies the buffered and later ops in op_number order, only those after its state's op_number, each
   exactly once: replicas repeat each other (and a restarted replica repeats itself), so an op at or below the
   state's op_number, or already buffered, is a duplicate and is dropped;
4. gaps: PUB/SUB drops messages (a slow watcher past the high-water mark, a reconnect). When an op after the
   next one arrives, or a replica's WatchCommit (its commit_number, every `WATCH_COMMIT_INTERVAL_MS`) says ops
   exist that the watcher lacks, and the next op does not arrive from *any* replica within `WATCH_GAP_MS`,
   the watcher resyncs: a new snapshot (step 2; the buffered ops after it are kept) replaces its state.

The ordering, de-duplication and gap logic is `CloneState`, sans-IO (unit-tested without sockets); `Watcher`
drives it with ZeroMQ sockets. The copy is eventually consistent, not linearizable: it is the state after some
committed op_number, which only moves forward (a snapshot older than the copy is refused).

Events. Iterating a `Watcher` (or calling `poll`) yields `WatchEvent(op_number, key, value, deleted)` for every
change to a key under the prefix: one per key of the first snapshot, one per put / delete / successful cas /
incr, and after a resync one per key that the new snapshot changed. `state` is the copy (key -> value).

What changes a key is read from the operation *and* its result (`coordination_changes`): ``put`` with result
nil sets the value; ``delete`` with result true removes the key; ``cas`` with ``ok: true`` sets ``new``;
``incr`` with an int result sets that int; ``lease_revoke`` and ``lease_expire`` (the primary's own op when a
lease's time is up) remove every key their result lists under ``deleted``, so a lease ending shows as deletes of
its keys; error results and ``get`` change nothing. Locks are not keys: the copy does not track them (the
snapshot query lists keys only). For another app, pass ``derive``: a function
from (operation, result, prefix) to the changes, and give that app an ``items_with_prefix(prefix)``.

The stream is on the replicas, not the proxies: a watcher needs every replica's watch and client endpoints
(`watch`, also offered as `zvsr.client.watch`, takes them from a cluster configuration). With CurveZMQ on, it
connects with a client key (``keys/clients``) and the replicas' public keys (`zvsr.connect`). This module
imports nothing from `zvsr.client`: the dependency points one way, client → watch.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq

from zvsr import constants as c
from zvsr.connect import Curve, apply_curve, check_endpoints, curve_for_replicas
from zvsr.runtime.cluster_config import ClusterConfig, load_config
from zvsr.wire import admin
from zvsr.wire.codec import DecodeError

Change = tuple[str, Any, bool]  # (key, value, deleted)
Derive = Callable[[bytes, bytes, str], list[Change]]


class WatchEvent(NamedTuple):
    """A key under the prefix changed as of `op_number`: now `value`, or removed (`deleted`, value None)."""

    op_number: int
    key: str
    value: Any
    deleted: bool = False


class WatchError(Exception):
    """The cluster refused the watch (`code`: ``unsupported``, ``too_large`` or ``bad_request``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


# --- what an executed op did ----------------------------------------------------------------------------------


def _unpack(data: bytes) -> tuple[bool, Any]:
    try:
        return True, msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:
        return False, None


def coordination_changes(operation: bytes, result: bytes, prefix: str) -> list[Change]:
    """The changes a coordination op (`zvsr.apps.coordination`) made to keys under `prefix`, read from the op
    and its result: the result says whether it took effect (see the module docstring).

    A lease that ends deletes its keys: ``lease_revoke`` and ``lease_expire`` list them in their result's
    ``deleted``, one delete each. A ``put`` with a lease is an ordinary put.
    """
    ok, op = _unpack(operation)
    if not ok or type(op) is not dict:
        return []
    name, key = op.get("op"), op.get("key")
    if name == "lease_revoke" or name == "lease_expire":
        ok, value = _unpack(result)
        deleted = value.get("deleted") if ok and type(value) is dict else None
        if type(deleted) is not list:  # an error result
            return []
        return [(gone, None, True) for gone in deleted if type(gone) is str and gone.startswith(prefix)]
    if type(key) is not str or not key.startswith(prefix):
        return []
    ok, value = _unpack(result)
    if not ok:
        return []
    if name == "put" and value is None and "value" in op:
        return [(key, op["value"], False)]
    if name == "delete" and value is True:
        return [(key, None, True)]
    if name == "cas" and type(value) is dict and value.get("ok") is True and "new" in op:
        return [(key, op["new"], False)]
    if name == "incr" and type(value) is int:
        return [(key, value, False)]
    return []


def _same(a: Any, b: Any) -> bool:
    """Equal as msgpack values (1, 1.0 and true differ); unencodable values are never equal."""
    try:
        return bool(msgpack.packb(a, use_bin_type=True) == msgpack.packb(b, use_bin_type=True))
    except Exception:
        return False


# --- the Clone algorithm, sans-IO -----------------------------------------------------------------------------


class CloneState:
    """Ordering, de-duplication and gap detection of one watcher; `now` is in seconds (monotonic).

    Feed it `on_op`, `on_commit` and `on_snapshot`; ask `needs_snapshot(now)` whether to fetch one.
    """

    def __init__(
        self,
        prefix: str,
        *,
        gap_ms: int = c.WATCH_GAP_MS,
        pending_max: int = c.WATCH_PENDING_OPS_MAX,
        derive: Derive = coordination_changes,
    ) -> None:
        if type(prefix) is not str:
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        self.prefix = prefix
        self.state: dict[str, Any] = {}
        self.op_number = 0  # `state` is the state after ops 1..op_number (once synced)
        self.synced = False  # a snapshot was taken
        self.pending: dict[int, tuple[bytes, bytes]] = {}  # ops after op_number not yet applied
        self.highest = 0  # the highest op_number known committed: from ops and WatchCommits
        self.resyncs = 0  # snapshots taken after the first
        self.duplicates = 0  # ops dropped as already applied or buffered
        self.overflows = 0  # times the buffer passed pending_max and was dropped
        self._gap_s = gap_ms / 1000
        self._pending_max = pending_max
        self._derive = derive
        self._gap_since: float | None = None  # when op_number + 1 was first found missing
        self._gap_at = 0  # ... for this op_number
        self._resync = False  # forced (buffer overflow)

    # --- input

    def on_op(self, op_number: int, operation: bytes, result: bytes, now: float) -> list[WatchEvent]:
        if op_number > self.highest:
            self.highest = op_number
        if (self.synced and op_number <= self.op_number) or op_number in self.pending:
            self.duplicates += 1
            return []
        if len(self.pending) >= self._pending_max:  # far behind (or never synced): start over from a snapshot
            self.pending.clear()
            self.overflows += 1
            self._resync = self.synced
        self.pending[op_number] = (operation, result)
        return self._advance(now)

    def on_commit(self, commit_number: int, now: float) -> None:
        """A replica's WatchCommit: it executed (and published) every op up to `commit_number`."""
        if commit_number > self.highest:
            self.highest = commit_number
        self._check_gap(now)

    def on_snapshot(self, op_number: int, items: dict[str, Any], now: float) -> list[WatchEvent] | None:
        """Take a snapshot (the state after ops 1..op_number); None if it is older than the copy (refused)."""
        if self.synced and op_number < self.op_number:
            return None
        fresh = {key: items[key] for key in sorted(items) if type(key) is str and key.startswith(self.prefix)}
        old = self.state
        events = [WatchEvent(op_number, key, None, True) for key in sorted(old) if key not in fresh]
        events += [
            WatchEvent(op_number, key, value, False)
            for key, value in fresh.items()
            if key not in old or not _same(old[key], value)
        ]
        if self.synced:
            self.resyncs += 1
        self.state, self.op_number, self.synced, self._resync = fresh, op_number, True, False
        self._gap_since = None
        if op_number > self.highest:
            self.highest = op_number
        for stale in [n for n in self.pending if n <= op_number]:
            del self.pending[stale]
        return events + self._advance(now)

    # --- questions

    def needs_snapshot(self, now: float) -> bool:
        """Not synced yet, or a gap outlived its bound (or the buffer overflowed): fetch a snapshot."""
        if not self.synced or self._resync:
            return True
        self._check_gap(now)
        return self._gap_since is not None and now - self._gap_since >= self._gap_s

    def gap_deadline(self) -> float | None:
        """When the current gap (if any) makes `needs_snapshot` true."""
        return None if self._gap_since is None else self._gap_since + self._gap_s

    # --- internals

    def _advance(self, now: float) -> list[WatchEvent]:
        events: list[WatchEvent] = []
        if not self.synced:
            return events
        pending, state, derive, prefix = self.pending, self.state, self._derive, self.prefix
        while (entry := pending.pop(self.op_number + 1, None)) is not None:
            self.op_number += 1
            for key, value, deleted in derive(entry[0], entry[1], prefix):
                if deleted:
                    state.pop(key, None)
                    events.append(WatchEvent(self.op_number, key, None, True))
                else:
                    state[key] = value
                    events.append(WatchEvent(self.op_number, key, value, False))
        self._check_gap(now)
        return events

    def _check_gap(self, now: float) -> None:
        if not self.synced or self.highest <= self.op_number:
            self._gap_since = None
        elif self._gap_since is None or self._gap_at != self.op_number:
            self._gap_since, self._gap_at = now, self.op_number


# --- over ZeroMQ ----------------------------------------------------------------------------------------------


class _Fetch:
    """One round of snapshot queries: the answers so far, by replica index."""

    def __init__(self, now: float) -> None:
        self.sent_at = now
        self.first_answer_at: float | None = None
        self.answers: dict[int, admin.SnapshotAnswer] = {}


class Watcher:
    """A live copy of the keys under `prefix` (see the module docstring). Use from one thread; close it.

    `watch_endpoints` and `client_endpoints`: every replica's, in index order (one of each per replica).
    `curve`: CurveZMQ settings with the replicas' public keys in index order (or one for all). Iterate for
    `WatchEvent`s (blocking), or call `poll(timeout_ms)`; `state` is the copy, as of `op_number`.
    """

    def __init__(
        self,
        watch_endpoints: Sequence[str],
        client_endpoints: Sequence[str],
        prefix: str = "",
        *,
        curve: Curve | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        gap_ms: int = c.WATCH_GAP_MS,
        derive: Derive = coordination_changes,
    ) -> None:
        watch_endpoints, client_endpoints = list(watch_endpoints), list(client_endpoints)
        if not watch_endpoints or len(watch_endpoints) != len(client_endpoints):
            raise ValueError("give every replica's watch and client endpoint, in index order")
        if curve is not None:
            curve.check(len(watch_endpoints))
        check_endpoints(watch_endpoints + client_endpoints)
        self.clone = CloneState(prefix, gap_ms=gap_ms, derive=derive)
        self._query = admin.encode_snapshot_query(prefix)
        context = zmq.Context.instance() if context is None else context
        self._subscribers: list[zmq.Socket[bytes]] = []
        self._queriers: list[zmq.Socket[bytes]] = []
        self._poller = zmq.Poller()
        self._index: dict[zmq.Socket[bytes], tuple[bool, int]] = {}  # socket -> (is a subscriber, replica)
        try:
            for index, endpoint in enumerate(watch_endpoints):
                subscriber = context.socket(zmq.SUB)
                self._subscribers.append(subscriber)
                self._options(subscriber, MAXMSGSIZE=c.WATCH_MESSAGE_BYTES_MAX, RCVHWM=c.NODE_WATCH_SNDHWM)
                apply_curve(subscriber, curve, index)
                subscriber.setsockopt(zmq.SUBSCRIBE, b"")  # both topics: ops and commits
                subscriber.connect(endpoint)
                self._register(subscriber, True, index)
            for index, endpoint in enumerate(client_endpoints):
                querier = context.socket(zmq.DEALER)
                self._queriers.append(querier)
                self._options(querier, MAXMSGSIZE=c.SNAPSHOT_ANSWER_BYTES_MAX + 1024, SNDHWM=c.WATCH_QUERY_SNDHWM)
                apply_curve(querier, curve, index)
                querier.connect(endpoint)
                self._register(querier, False, index)
        except BaseException:
            self._close_sockets()
            raise
        self._started = time.monotonic()
        self._heard = False  # a first message arrived: a subscription is live
        self._fetch: _Fetch | None = None
        self._events: deque[WatchEvent] = deque()
        self._closed = False
        self.counters: dict[str, int] = {}

    # --- the copy

    @property
    def state(self) -> dict[str, Any]:
        """The copy: key -> value, for the keys under the prefix (do not modify it)."""
        return self.clone.state

    @property
    def op_number(self) -> int:
        """The copy is the state after ops 1..op_number (0 before the first snapshot)."""
        return self.clone.op_number

    @property
    def synced(self) -> bool:
        return self.clone.synced

    @property
    def resyncs(self) -> int:
        return self.clone.resyncs

    # --- driving it

    def poll(self, timeout_ms: int = 0) -> list[WatchEvent]:
        """Receive and apply what arrived, waiting up to `timeout_ms` for at least one event; the events."""
        self._pump(time.monotonic() + timeout_ms / 1000, lambda: bool(self._events))
        events = list(self._events)
        self._events.clear()
        return events

    def wait_synced(self, timeout_ms: int) -> bool:
        """Wait until the first snapshot is taken (its events stay queued for `poll`); whether it was."""
        self._pump(time.monotonic() + timeout_ms / 1000, lambda: self.clone.synced)
        return self.clone.synced

    def _pump(self, deadline: float, done: Callable[[], bool]) -> None:
        if self._closed:
            raise RuntimeError("the watcher is closed")
        while True:
            now = time.monotonic()
            self._step(now)
            if done():
                return
            last = now >= deadline  # one more pass without waiting: poll(0) reads what already arrived
            wait_ms = 0 if last else int((min(deadline, self._next_timer(now)) - now) * 1000) + 1
            for socket, _ in self._poller.poll(wait_ms):
                subscriber, index = self._index[socket]
                self._drain(socket, subscriber, index)
            if last:
                self._step(time.monotonic())
                return

    def __iter__(self) -> Iterator[WatchEvent]:
        """Every event, forever (until the watcher is closed)."""
        while not self._closed:
            yield from self.poll(1000)

    # --- internals

    def _step(self, now: float) -> None:
        clone = self.clone
        fetch = self._fetch
        if fetch is None:
            joining = not clone.synced and not self._heard and now - self._started < c.WATCH_JOIN_MS / 1000
            if not joining and clone.needs_snapshot(now):
                self._fetch = _Fetch(now)
                self._send_queries()
            return
        if clone.synced and not clone.needs_snapshot(now):  # the missing op arrived meanwhile: no resync
            self._fetch = None
            return
        if fetch.answers and fetch.first_answer_at is not None:
            complete = len(fetch.answers) == len(self._queriers)
            if complete or now - fetch.first_answer_at >= c.WATCH_SNAPSHOT_GRACE_MS / 1000:
                best = max(fetch.answers.values(), key=lambda answer: answer.op_number)
                events = clone.on_snapshot(best.op_number, best.items, now)
                if events is not None:
                    self._count("snapshots taken")
                    self._events.extend(events)
                    self._fetch = None
                    return
                self._count("snapshots refused (older than the copy)")
                fetch.answers.clear()
                fetch.first_answer_at = None
        if now - fetch.sent_at >= c.WATCH_SNAPSHOT_RETRY_MS / 1000:
            fetch.sent_at = now
            fetch.answers.clear()
            fetch.first_answer_at = None
            self._send_queries()

    def _next_timer(self, now: float) -> float:
        """When `_step` may have something to do without any input."""
        if self._fetch is not None or not self.clone.synced:
            return now + 0.02
        gap = self.clone.gap_deadline()
        return now + 1.0 if gap is None else max(now, gap)

    def _send_queries(self) -> None:
        self._count("snapshot queries sent")
        for querier in self._queriers:
            try:
                querier.send_multipart([b"", self._query], zmq.NOBLOCK)
            except zmq.Again:  # that replica's queue is full (it is down): the next round retries
                continue

    def _drain(self, socket: zmq.Socket[bytes], subscriber: bool, index: int) -> None:
        for _ in range(c.WATCH_DRAIN_MAX):
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            now = time.monotonic()
            if subscriber:
                self._on_watch_message(index, frames, now)
            else:
                self._on_answer(index, frames[-1], now)

    def _on_watch_message(self, index: int, frames: list[bytes], now: float) -> None:
        """One message from replica `index`'s watch PUB (tests override this to lose some)."""
        if len(frames) != 2:
            self._count("watch: wrong frame count")
            return
        try:
            message = admin.decode_watch_message(frames[0], frames[1])
        except DecodeError:
            self._count("watch: undecodable")
            return
        self._heard = True
        if isinstance(message, admin.WatchOp):
            self._events.extend(self.clone.on_op(message.op_number, message.operation, message.result, now))
        else:
            self.clone.on_commit(message.commit_number, now)

    def _on_answer(self, index: int, data: bytes, now: float) -> None:
        try:
            answer = admin.decode_snapshot_answer(data)
        except DecodeError:
            self._count("snapshot: undecodable answer")  # e.g. a replica too old to know the query
            return
        fetch = self._fetch
        if answer.error is not None:
            if answer.error == admin.SNAPSHOT_UNAVAILABLE:  # recovering: the others answer
                self._count("snapshot: replica unavailable")
                return
            raise WatchError(answer.error, answer.message)
        if fetch is None:
            return  # a late answer to a round already decided
        fetch.answers[index] = answer
        if fetch.first_answer_at is None:
            fetch.first_answer_at = now

    def _options(self, socket: zmq.Socket[bytes], **options: int) -> None:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RECONNECT_IVL, c.NODE_RECONNECT_IVL_MS)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, c.NODE_RECONNECT_IVL_MAX_MS)
        socket.setsockopt(zmq.HEARTBEAT_IVL, c.ZMTP_HEARTBEAT_IVL_MS)
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, c.ZMTP_HEARTBEAT_TIMEOUT_MS)
        for name, value in options.items():
            socket.setsockopt(getattr(zmq, name), value)

    def _register(self, socket: zmq.Socket[bytes], subscriber: bool, index: int) -> None:
        self._poller.register(socket, zmq.POLLIN)
        self._index[socket] = (subscriber, index)

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def _close_sockets(self) -> None:
        for socket in self._subscribers + self._queriers:
            socket.close(linger=0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_sockets()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


# --- from a cluster configuration -------------------------------------------------------------------------------


def watch(
    cluster: ClusterConfig | str | Path,
    prefix: str = "",
    *,
    curve: Curve | None = None,
    context: zmq.Context[zmq.Socket[bytes]] | None = None,
    derive: Derive | None = None,
) -> Watcher:
    """A `Watcher`: a live copy of the keys under `prefix`, and their changes as events.

    `cluster`: a `ClusterConfig` or the path of a cluster TOML file. The watch stream is published by the
    replicas, not by proxies (a `Client` talks to proxies), so the watcher connects to every replica's
    ``watch`` and ``client`` endpoint, which the configuration names. `curve`: by default, from the
    configuration's ``[security]`` (``client_key`` and the replicas' public keys). Close the watcher after use.
    Also reachable as `zvsr.client.watch`.

        with watch("cluster.toml", "config/") as watcher:
            for event in watcher:           # WatchEvent(op_number, key, value, deleted)
                print(event.key, event.value, watcher.state)
    """
    config = cluster if isinstance(cluster, ClusterConfig) else load_config(cluster)
    without = [index for index, address in enumerate(config.replicas) if address.watch is None]
    if without:
        raise ValueError(
            f'replicas {without} have no watch endpoint: add watch = "tcp://..." to their [[replica]]'
        )
    return Watcher(
        [address.watch for address in config.replicas if address.watch is not None],
        [address.client for address in config.replicas],
        prefix,
        curve=curve_for_replicas(config) if curve is None else curve,
        context=context,
        derive=coordination_changes if derive is None else derive,
    )
