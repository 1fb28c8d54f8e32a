"""The watcher side of the watch stream: a live local copy of the keys under a prefix (the zguide's Clone).

Theory of operation
-------------------
Every replica with a ``watch`` endpoint publishes each operation it executes, numbered by op_number, on a PUB
socket (`zvsr.runtime.watch_publisher`; frames and types in docs/protocol.md §12), and keeps the latest ones in
memory to answer history queries (`zvsr.runtime.watch_history`). All replicas execute the same ops in the same
order, so each publishes the same numbered stream, at its own pace. A `Watcher` keeps a copy of the
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
   the watcher asks every replica for its history after its op_number (the history query, type 36) and
   applies the ops of an answer that has them — the changes in a gap are reported like any other, none is
   skipped. A long gap comes in chunks, asked one after the other from the replica that had the first.
5. compaction: if no replica that answers still holds the next op (each keeps its latest
   `WATCH_HISTORY_OPS_MAX` ops, fewer after a restart), the watcher says so (a COMPACTED notice) and resyncs: a
   new snapshot (step 2; the buffered ops after it are kept) replaces its state, listed key by key (RESYNC).

Started `from_op` N (`zvsr watch --from-op N`), it skips step 2: its state is "after op N" (its keys unknown),
and it asks the history after N at once (step 4), then follows the stream; every change after op N is
reported exactly once, or a COMPACTED notice says the ops after N are gone, and a resync follows (step 5).

The ordering, de-duplication, gap and compaction logic is `CloneState`, sans-IO (unit-tested without sockets);
`Watcher` drives it with ZeroMQ sockets. The copy is eventually consistent, not linearizable: it is the state
after some committed op_number, which only moves forward (a snapshot older than the copy is refused).

Events. Iterating a `Watcher` (or calling `poll`) yields `WatchEvent(op_number, key, value, deleted, kind)`
for every change to a key under the prefix: one per key of the first snapshot (kind SNAPSHOT), one per put /
delete / successful cas / incr (CHANGE), and after a compaction one per key of the new snapshot, and per key of
the copy that is gone, deleted (RESYNC). With ``notices=True`` also the COMPACTED notice, and a SYNCED notice
after each snapshot's keys. `state` is the copy (key -> value).

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
from typing import Any, Final, NamedTuple

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq

from zvsr import constants as c
from zvsr.connect import Curve, apply_curve, check_endpoints, curve_for_replicas
from zvsr.runtime.cluster_config import ClusterConfig, load_config
from zvsr.wire import admin
from zvsr.wire.codec import DecodeError

Change = tuple[str, Any, bool]  # (key, value, deleted)
Derive = Callable[[bytes, bytes, str], list[Change]]


# What a `WatchEvent` is (its `kind`). Changes of a key: an op changed it (CHANGE); it is in the first snapshot
# (SNAPSHOT); a resync after a compaction lists it (RESYNC). Notices, not about one key (key ""): the ops after
# op_number are no longer held by any replica (COMPACTED: value is the oldest op they hold, or None if none can
# say), so a resync from a snapshot follows; a snapshot was taken (SYNCED: the state as of op_number is complete
# — the SNAPSHOT or RESYNC events before it list every key; value is the number of keys).
CHANGE: Final = "change"
SNAPSHOT: Final = "snapshot"
RESYNC: Final = "resync"
COMPACTED: Final = "compacted"
SYNCED: Final = "synced"
NOTICES: Final = frozenset({COMPACTED, SYNCED})

# What a `CloneState` needs fetched (`needs`).
NEED_SNAPSHOT: Final = "snapshot"
NEED_HISTORY: Final = "history"


class WatchEvent(NamedTuple):
    """A key under the prefix changed as of `op_number`: now `value`, or removed (`deleted`, value None); or a
    notice (`kind` COMPACTED or SYNCED, key ""). See the kinds above."""

    op_number: int
    key: str
    value: Any
    deleted: bool = False
    kind: str = CHANGE


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


# --- the Clone algorithm, sans-IO -----------------------------------------------------------------------------


class CloneState:
    """Ordering, de-duplication, gap detection and catching up of one watcher; `now` is in seconds (monotonic).

    Feed it `on_op`, `on_commit`, `on_history`, `on_compacted` and `on_snapshot`; ask `needs(now)` what to fetch.
    With `from_op`, it starts as the state after op `from_op` without knowing it (`state` holds only the keys
    changed since), and first fetches the history after it.
    """

    def __init__(
        self,
        prefix: str,
        *,
        gap_ms: int = c.WATCH_GAP_MS,
        pending_max: int = c.WATCH_PENDING_OPS_MAX,
        derive: Derive = coordination_changes,
        from_op: int | None = None,
    ) -> None:
        if type(prefix) is not str:
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if from_op is not None and (type(from_op) is not int or not 0 <= from_op <= c.ID_MAX):
            raise ValueError(f"from_op must be an op number (0..{c.ID_MAX}), not {from_op!r}")
        self.prefix = prefix
        self.state: dict[str, Any] = {}
        self.op_number = 0  # `state` is the state after ops 1..op_number (once synced)
        self.synced = False  # a snapshot was taken, or the watch started after a given op
        self.catching_up = False  # started after an op, and behind the highest op known: ask the history now
        self.answered = True  # started after an op: a replica's history answered (or said compacted)
        self.compacted = False  # no replica holds the op after op_number: a snapshot must replace the state
        self.pending: dict[int, tuple[bytes, bytes]] = {}  # ops after op_number not yet applied
        self.highest = 0  # the highest op_number known committed: from ops, WatchCommits and history answers
        self.resyncs = 0  # snapshots taken after the first
        self.duplicates = 0  # ops dropped as already applied or buffered
        self.overflows = 0  # times the buffer passed pending_max and was dropped
        self._gap_s = gap_ms / 1000
        self._pending_max = pending_max
        self._derive = derive
        self._gap_since: float | None = None  # when op_number + 1 was first found missing
        self._gap_at = 0  # ... for this op_number
        self._refill = False  # the buffer overflowed: ask the history now
        if from_op is not None:
            self.synced, self.catching_up, self.answered = True, True, False
            self.op_number = self.highest = from_op

    @property
    def ready(self) -> bool:
        """A snapshot was taken, or the history after `from_op` answered: events now follow the cluster."""
        return self.synced and self.answered

    # --- input

    def on_op(self, op_number: int, operation: bytes, result: bytes, now: float) -> list[WatchEvent]:
        if op_number > self.highest:
            self.highest = op_number
        if (self.synced and op_number <= self.op_number) or op_number in self.pending:
            self.duplicates += 1
            return []
        if len(self.pending) >= self._pending_max:  # far behind (or never synced): drop, refetch from history
            self.pending.clear()
            self.overflows += 1
            self._refill = self.synced
        self.pending[op_number] = (operation, result)
        return self._advance(now)

    def on_commit(self, commit_number: int, now: float) -> None:
        """A replica's WatchCommit: it executed (and published) every op up to `commit_number`."""
        if commit_number > self.highest:
            self.highest = commit_number
        self._check_gap(now)

    def on_history(self, answer: admin.HistoryAnswer, now: float) -> list[WatchEvent] | None:
        """A replica's history answer: apply its ops (those not applied yet); None if that replica does not hold
        the op after op_number (compacted there: ask the others, `on_compacted` if none does)."""
        if answer.last_op > self.highest:  # that many ops exist, held there or not
            self.highest = answer.last_op
        if not self.synced or not answer.holds_after(self.op_number):
            self._check_gap(now)
            return None
        self._refill, self.answered = False, True
        events: list[WatchEvent] = []
        for op in answer.ops:
            events += self.on_op(op.op_number, op.operation, op.result, now)
        if self.op_number >= self.highest:  # nothing known is missing: caught up (later ones are gaps)
            self.catching_up = False
        self._check_gap(now)
        return events

    def on_compacted(self, oldest_op: int | None, now: float) -> list[WatchEvent]:
        """No replica holds the op after op_number (the oldest they hold is `oldest_op`, if any said): announce
        it; a snapshot replaces the state next (`needs`)."""
        self.compacted, self.answered, self.catching_up, self._refill = True, True, False, False
        return [WatchEvent(self.op_number, "", oldest_op, False, COMPACTED)]

    def on_snapshot(self, op_number: int, items: dict[str, Any], now: float) -> list[WatchEvent] | None:
        """Take a snapshot (the state after ops 1..op_number); None if it is older than the copy (refused).

        The first lists every key (SNAPSHOT); a later one (a resync) lists every key too (RESYNC), and the keys
        of the copy that are gone as deleted; then a SYNCED notice, then the buffered ops after it."""
        if self.synced and op_number < self.op_number:
            return None
        fresh = {key: items[key] for key in sorted(items) if type(key) is str and key.startswith(self.prefix)}
        kind = RESYNC if self.synced else SNAPSHOT
        events = [WatchEvent(op_number, key, None, True, kind) for key in sorted(self.state) if key not in fresh]
        events += [WatchEvent(op_number, key, value, False, kind) for key, value in fresh.items()]
        events.append(WatchEvent(op_number, "", len(fresh), False, SYNCED))
        if self.synced:
            self.resyncs += 1
        self.state, self.op_number, self.synced = fresh, op_number, True
        self.catching_up = self.compacted = self._refill = False
        self.answered = True
        self._gap_since = None
        if op_number > self.highest:
            self.highest = op_number
        for stale in [n for n in self.pending if n <= op_number]:
            del self.pending[stale]
        return events + self._advance(now)

    # --- questions

    def needs(self, now: float) -> str | None:
        """What to fetch now: a snapshot (not synced yet, or compacted), the history after op_number (catching up
        after `from_op`, a gap that outlived its bound, or an overflowed buffer), or nothing (None)."""
        if not self.synced or self.compacted:
            return NEED_SNAPSHOT
        if self.catching_up or self._refill:
            return NEED_HISTORY
        self._check_gap(now)
        if self._gap_since is not None and now - self._gap_since >= self._gap_s:
            return NEED_HISTORY
        return None

    def gap_deadline(self) -> float | None:
        """When the current gap (if any) makes `needs` ask for the history."""
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
    """One round of snapshot or history queries (`kind`: NEED_SNAPSHOT or NEED_HISTORY): the answers so far, by
    replica index."""

    def __init__(self, kind: str, now: float, op_number: int) -> None:
        self.kind = kind
        self.op_number = op_number  # history: the copy's op_number the answers are about
        self.sent_at = now
        self.first_answer_at: float | None = None
        self.answers: dict[int, admin.SnapshotAnswer] = {}  # snapshot answers
        self.compacted: dict[int, int | None] = {}  # history: replicas that do not hold the op (their oldest)
        self.lagging: set[int] = set()  # history: replicas that hold every op after it they have: none yet

    def answered(self, now: float) -> None:
        if self.first_answer_at is None:
            self.first_answer_at = now

    def restart(self, now: float) -> None:
        self.sent_at = now
        self.first_answer_at = None
        self.answers.clear()
        self.compacted.clear()
        self.lagging.clear()


class Watcher:
    """A live copy of the keys under `prefix` (see the module docstring). Use from one thread; close it.

    `watch_endpoints` and `client_endpoints`: every replica's, in index order (one of each per replica).
    `curve`: CurveZMQ settings with the replicas' public keys in index order (or one for all). Iterate for
    `WatchEvent`s (blocking), or call `poll(timeout_ms)`; `state` is the copy, as of `op_number`.
    `from_op`: start after that op (every change after it, from the replicas' history) instead of from a
    snapshot. `notices`: also yield the COMPACTED and SYNCED notices (key "").
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
        from_op: int | None = None,
        notices: bool = False,
    ) -> None:
        watch_endpoints, client_endpoints = list(watch_endpoints), list(client_endpoints)
        if not watch_endpoints or len(watch_endpoints) != len(client_endpoints):
            raise ValueError("give every replica's watch and client endpoint, in index order")
        if curve is not None:
            curve.check(len(watch_endpoints))
        check_endpoints(watch_endpoints + client_endpoints)
        self.clone = CloneState(prefix, gap_ms=gap_ms, derive=derive, from_op=from_op)
        self._snapshot_query = admin.encode_snapshot_query(prefix)
        self._notices = notices
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
        """The first snapshot was taken (or, started after an op, the history after it answered)."""
        return self.clone.ready

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
        """Wait until the first snapshot is taken, or with `from_op` the history after it answered (the events
        stay queued for `poll`); whether it was."""
        self._pump(time.monotonic() + timeout_ms / 1000, lambda: self.clone.ready)
        return self.clone.ready

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
        if not clone.ready and not self._heard and now - self._started < c.WATCH_JOIN_MS / 1000:
            return  # joining: ask only once a first message proves a subscription live (or after WATCH_JOIN_MS)
        need = clone.needs(now)
        fetch = self._fetch
        if fetch is not None and fetch.kind != need:
            fetch = self._fetch = None  # the missing op arrived meanwhile, or the history turned out compacted
        elif fetch is not None and fetch.op_number != clone.op_number:
            if fetch.kind == NEED_HISTORY:
                # Progress: the round's answers were about an older op. The next chunk is asked already (or the
                # stream brought the op): ask everyone again only if nothing comes within the retry interval.
                fetch.restart(now)
            fetch.op_number = clone.op_number
        if need is None:
            return
        if fetch is None:
            self._fetch = _Fetch(need, now, clone.op_number)
            self._send_queries(need)
            return
        if need == NEED_SNAPSHOT:
            self._take_snapshot(fetch, now)
        else:
            self._decide_compacted(fetch, now)
        if self._fetch is fetch and now - fetch.sent_at >= c.WATCH_SNAPSHOT_RETRY_MS / 1000:
            fetch.restart(now)
            self._send_queries(need)

    def _decided(self, fetch: _Fetch, now: float) -> bool:
        """Every replica answered the round, or the grace after the first answer is over."""
        if fetch.first_answer_at is None:
            return False
        answered = len(fetch.answers) + len(fetch.compacted) + len(fetch.lagging)
        return answered >= len(self._queriers) or now - fetch.first_answer_at >= c.WATCH_SNAPSHOT_GRACE_MS / 1000

    def _take_snapshot(self, fetch: _Fetch, now: float) -> None:
        """The freshest answer of the round, once decided (a lagging backup's is older, but consistent)."""
        if not fetch.answers or not self._decided(fetch, now):
            return
        best = max(fetch.answers.values(), key=lambda answer: answer.op_number)
        events = self.clone.on_snapshot(best.op_number, best.items, now)
        if events is not None:
            self._count("snapshots taken")
            self._emit(events)
            self._fetch = None
            return
        self._count("snapshots refused (older than the copy)")
        fetch.answers.clear()
        fetch.first_answer_at = None

    def _decide_compacted(self, fetch: _Fetch, now: float) -> None:
        """The history after op_number: compacted when no replica gave the next op and at least one said it no
        longer holds it. One that lags (it has not executed the op yet) does not hold the round open: it may
        never catch up by executing it (a partition, or a snapshot installed), and the resync is announced."""
        if not fetch.compacted or not self._decided(fetch, now):
            return
        oldest = [op for op in fetch.compacted.values() if op is not None]
        self._count("history: compacted")
        self._emit(self.clone.on_compacted(min(oldest) if oldest else None, now))
        self._fetch = None

    def _next_timer(self, now: float) -> float:
        """When `_step` may have something to do without any input."""
        if self._fetch is not None or not self.clone.ready:
            return now + 0.02
        gap = self.clone.gap_deadline()
        return now + 1.0 if gap is None else max(now, gap)

    def _send_queries(self, kind: str) -> None:
        history = kind == NEED_HISTORY
        query = admin.encode_history_query(self.clone.op_number) if history else self._snapshot_query
        self._count("history queries sent" if history else "snapshot queries sent")
        for index in range(len(self._queriers)):
            self._send_query(index, query)

    def _send_query(self, index: int, query: bytes) -> None:
        try:
            self._queriers[index].send_multipart([b"", query], zmq.NOBLOCK)
        except zmq.Again:  # that replica's queue is full (it is down): the next round retries
            pass

    def _emit(self, events: list[WatchEvent]) -> None:
        if self._notices:
            self._events.extend(events)
        else:
            self._events.extend(event for event in events if event.kind not in NOTICES)

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
            self._emit(self.clone.on_op(message.op_number, message.operation, message.result, now))
        else:
            self.clone.on_commit(message.commit_number, now)

    def _on_answer(self, index: int, data: bytes, now: float) -> None:
        fetch = self._fetch
        try:
            answer = admin.decode_watch_answer(data)
        except DecodeError:
            self._count("answer: undecodable")  # e.g. the bare Error of a replica too old to know the query
            if fetch is not None and fetch.kind == NEED_HISTORY:
                fetch.compacted[index] = None  # it cannot give the history
                fetch.answered(now)
            return
        if isinstance(answer, admin.HistoryAnswer):
            self._on_history(index, answer, now)
            return
        if answer.error is not None:
            if answer.error == admin.SNAPSHOT_UNAVAILABLE:  # recovering: the others answer
                self._count("snapshot: replica unavailable")
                return
            raise WatchError(answer.error, answer.message)
        if fetch is None or fetch.kind != NEED_SNAPSHOT:
            return  # a late answer to a round already decided
        fetch.answers[index] = answer
        fetch.answered(now)

    def _on_history(self, index: int, answer: admin.HistoryAnswer, now: float) -> None:
        """Apply a history answer's ops; record whether that replica holds the op after the copy's; a chunk that
        advanced the copy is followed at once by a query for the next one, to the same replica."""
        fetch = self._fetch if self._fetch is not None and self._fetch.kind == NEED_HISTORY else None
        if answer.error == admin.HISTORY_UNAVAILABLE:
            self._count("history: replica unavailable")
            return
        if answer.error == admin.HISTORY_BAD_REQUEST:
            raise WatchError(answer.error, answer.message)
        clone = self.clone
        before = clone.op_number
        if fetch is not None and fetch.op_number != before:
            fetch = None  # an answer about an older op_number: it says nothing of the round's
        events = None if answer.error is not None else clone.on_history(answer, now)
        if fetch is not None:
            fetch.answered(now)
        if events is None:  # compacted there (or unsupported)
            self._count("history: replica lacks the op")
            if fetch is not None:
                fetch.compacted[index] = answer.first_op if answer.error is None else None
            return
        self._emit(events)
        if clone.op_number == before:
            if fetch is not None:
                fetch.lagging.add(index)  # nothing after the copy's op yet (or only ops buffered already)
            return
        self._count("history: ops applied", clone.op_number - before)
        if clone.op_number < answer.last_op:  # a chunk: that replica holds more
            self._send_query(index, admin.encode_history_query(clone.op_number))

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

    def _count(self, reason: str, amount: int = 1) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + amount

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
    from_op: int | None = None,
    notices: bool = False,
) -> Watcher:
    """A `Watcher`: a live copy of the keys under `prefix`, and their changes as events.

    `cluster`: a `ClusterConfig` or the path of a cluster TOML file. The watch stream is published by the
    replicas, not by proxies (a `Client` talks to proxies), so the watcher connects to every replica's
    ``watch`` and ``client`` endpoint, which the configuration names. `curve`: by default, from the
    configuration's ``[security]`` (``client_key`` and the replicas' public keys). `from_op`: every change after
    that op (from the replicas' history), instead of a snapshot first; `notices`: see `Watcher`. Close the
    watcher after use. Also reachable as `zvsr.client.watch`.

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
        from_op=from_op,
        notices=notices,
    )
