"""The replica side of the watch stream: publish every executed operation, answer the snapshot query.

Theory of operation
-------------------
The watch stream is the zguide's Clone pattern over a VR cluster (docs/protocol.md §12). Each replica with a
``watch`` endpoint binds an XPUB there and publishes, for every operation its core executes, one message
``[b"op", WatchOp]`` (``{"type": 40, "op_number", "operation", "result"}``, `zvsr.wire.admin`), in op_number
order; every `WATCH_COMMIT_INTERVAL_MS` it also publishes ``[b"commit", WatchCommit]`` with its
commit_number, so a watcher can tell that it missed the tail of the stream. A watcher (`zvsr.watch`)
subscribes to every replica, asks one for a snapshot of a key prefix with its op_number (the snapshot query,
answered here from the app between core steps, so it is exactly the state after ops 1..op_number), and applies
the later ops, resyncing when it finds a gap.

Learning what the core executed without touching it. The protocol core is sans-IO and must not change for
this; it calls ``state_machine.apply(operation)`` for each op it executes, in order, exactly once per replica
lifetime (`Replica._commit_up_to`), and ``state_machine.restore(app_state)`` when it jumps to a snapshot
(restart from disk, state transfer, recovery). `WatchRecorder` wraps the node's `MsgpackStateMachine`, passes
every call through, and records (operation, result) per apply. It does not know op numbers: `_commit_up_to`
moves commit_number only after its whole batch, so "commit_number + 1 at apply time" would be wrong for the
2nd op of a batch. Instead the node tells `take` its commit_number before and after a reactor step:

- no restore in the step: the ops are exactly before+1 .. after (checked: their count must match);
- restores in the step: the ops before the first restore still follow ``before``; those after the last one
  end at ``after`` (after a restore the core executes on from the snapshot's op, contiguously). Ops between
  two restores in one step cannot be numbered and are not published (a watcher sees a gap and resyncs).

Anything that does not add up is not published and is counted ("watch: ops not published"): a gap in the
stream is always safe, a wrongly numbered op never is. A step that executes more than `WATCH_STEP_OPS_MAX`
ops (a restart re-executing a long log) is not published either: nobody is subscribed that early anyway.

Re-execution at restart. A replica restarted from disk re-executes its committed log prefix (`_restore`);
those applies are published at its first step, with op numbers watchers already have: they ignore every op at
or below their state's op_number, so repeats are harmless. (No watcher is connected to a socket bound a
moment ago, so in practice they are not even sent: see below.)

Publishing happens after the step's Ready was executed (persisted, sent): every op published is committed
(the core executes committed ops only). The socket drops at its high-water mark (`NODE_WATCH_SNDHWM` per
subscriber) instead of blocking the loop: a slow watcher loses ops and resyncs. With CurveZMQ on, it is a
CURVE server in the ``clients`` ZAP domain, so every admitted client (and proxy) key may subscribe.

Nobody watching costs (almost) nothing. The socket is an XPUB, which is a PUB to its subscribers but also
hands the node every *first* subscription to a topic and every *last* unsubscription (a subscriber that goes
away unsubscribes). The node reads them in its poll loop (`drain_subscriptions`) and encodes and sends
nothing — ops nor WatchCommits — while no subscription is active; the recorder is still emptied every step.
No op a live subscriber could have received is skipped: the node sees a subscription at the latest in the
step in which it took effect, and a watcher takes its snapshot only after the first message it received.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import zmq

from zvsr import constants as c
from zvsr.protocol.state_machine import StateMachine
from zvsr.wire import admin
from zvsr.wire.codec import DecodeError

Numbered = tuple[int, bytes, bytes]  # (op_number, operation, result)

REASON_UNPUBLISHED: Final = "watch: ops not published"  # counted per op not published (see above)
REASON_SEND_FAILED: Final = "watch: publish failed"


class WatchRecorder:
    """A `StateMachine` that passes every call to `machine` and records each apply (see the module docstring).

    `take` hands the recorded ops over, numbered, and starts over; the node calls it once per reactor step.
    """

    __slots__ = ("_machine", "_segments", "_recorded", "_ops_max", "_overflowed")

    def __init__(self, machine: StateMachine, *, ops_max: int = c.WATCH_STEP_OPS_MAX) -> None:
        self._machine = machine
        self._ops_max = ops_max
        # Ops applied since the last take, split at each restore: segment i follows the i-th restore.
        self._segments: list[list[tuple[bytes, bytes]]] = [[]]
        self._recorded = 0
        self._overflowed = 0  # applies not recorded in this step, beyond ops_max

    def apply(self, operation: bytes) -> bytes:
        result = self._machine.apply(operation)
        if self._recorded < self._ops_max:
            self._segments[-1].append((operation, result))
            self._recorded += 1
        else:
            self._overflowed += 1
        return result

    def snapshot(self) -> bytes:
        return self._machine.snapshot()

    def restore(self, data: bytes) -> None:
        self._machine.restore(data)
        self._segments.append([])

    def take(self, before: int, after: int) -> tuple[list[Numbered], int]:
        """(the ops executed since the last take, numbered; how many cannot be published). `before` and
        `after` are the core's commit_number at the last take and now."""
        segments, overflowed = self._segments, self._overflowed
        if len(segments) == 1 and not segments[0] and not overflowed:  # most steps execute nothing
            return [], 0
        self._segments, self._recorded, self._overflowed = [[]], 0, 0
        total = sum(len(segment) for segment in segments) + overflowed
        if overflowed:
            return [], total
        first, last = segments[0], segments[-1]
        if len(segments) == 1:
            if len(first) != after - before:  # cannot happen if the core keeps its contract: publish nothing
                return [], total
            return [(before + 1 + i, op, result) for i, (op, result) in enumerate(first)], 0
        numbered = [(before + 1 + i, op, result) for i, (op, result) in enumerate(first)]
        last_from = after - len(last) + 1
        if numbered and last_from <= numbered[-1][0]:  # a restore always jumps forward; anything else: drop
            return [], total
        numbered += [(last_from + i, op, result) for i, (op, result) in enumerate(last)]
        return numbered, total - len(numbered)


class WatchPublisher:
    """Publishes what a `WatchRecorder` recorded, on a bound XPUB socket, once per reactor step, while some
    subscription is active (see the module docstring)."""

    def __init__(
        self,
        socket: zmq.Socket[bytes],
        recorder: WatchRecorder,
        count: Callable[[str, int], None],
        *,
        commit_interval_ms: int = c.WATCH_COMMIT_INTERVAL_MS,
    ) -> None:
        self.socket = socket
        self.recorder = recorder
        self._count = count
        self._commit = 0  # the core's commit_number at the last publish (0 before the first: see the docstring)
        self._interval_s = commit_interval_ms / 1000
        self._next_commit = 0.0
        self.topics: set[bytes] = set()  # the subscribed topic prefixes (b"" for everything)

    def drain_subscriptions(self, now: float) -> None:
        """Read the XPUB's (un)subscription messages: ``\\x01`` + topic, ``\\x00`` + topic; ignore the rest."""
        socket, topics = self.socket, self.topics
        for _ in range(c.NODE_DRAIN_MAX):
            try:
                frame = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                self._count(REASON_SEND_FAILED, 1)
                return
            kind, topic = frame[:1], frame[1:]
            if kind == b"\x01" and len(topics) < c.WATCH_TOPICS_MAX:
                topics.add(topic)
            elif kind == b"\x00":
                topics.discard(topic)

    def publish(self, commit_number: int, now: float) -> None:
        ops, unpublished = self.recorder.take(self._commit, commit_number)
        self._commit = commit_number
        if not self.topics:  # nobody is subscribed: nothing to encode or send
            return
        if unpublished:
            self._count(REASON_UNPUBLISHED, unpublished)
        send = self.socket.send_multipart
        try:
            for op_number, operation, result in ops:
                # An XPUB never blocks and never raises Again: at the HWM it drops (the watcher resyncs).
                send((admin.TOPIC_OP, admin.encode_watch_op(op_number, operation, result)), zmq.NOBLOCK)
            if ops:
                self._count("watch: ops published", len(ops))
            if now >= self._next_commit:
                self._next_commit = now + self._interval_s
                send((admin.TOPIC_COMMIT, admin.encode_watch_commit(commit_number)), zmq.NOBLOCK)
        except zmq.ZMQError:
            self._count(REASON_SEND_FAILED, 1)


def snapshot_answer(payload: bytes, app: Any, commit_number: int, *, recovering: bool) -> bytes | None:
    """The answer to a snapshot query (type 32), or None if `payload` is not one. Call between core steps, so
    the app's state is exactly that after ops 1..commit_number."""
    try:
        prefix = admin.decode_snapshot_query(payload)
    except DecodeError as error:
        return admin.encode_snapshot_error(admin.SNAPSHOT_BAD_REQUEST, f"cannot read the snapshot query: {error}")
    if prefix is None:
        return None
    if recovering:  # a replica in Recovery (§4.3) has no state yet: commit_number 0 would be a lie
        return admin.encode_snapshot_error(admin.SNAPSHOT_UNAVAILABLE, "this replica is recovering: ask another")
    items_with_prefix = getattr(app, "items_with_prefix", None)
    if not callable(items_with_prefix):
        return admin.encode_snapshot_error(
            admin.SNAPSHOT_UNSUPPORTED, f"the app {type(app).__name__} has no items_with_prefix(prefix)"
        )
    try:
        items = items_with_prefix(prefix)
        data = admin.encode_snapshot_answer(commit_number, items)
    except Exception as error:  # the app's bug, or values msgpack cannot encode: the replica stays up
        return admin.encode_snapshot_error(
            admin.SNAPSHOT_UNSUPPORTED, f"items_with_prefix failed: {type(error).__name__}: {error}"
        )
    if len(data) > c.SNAPSHOT_ANSWER_BYTES_MAX:
        return admin.encode_snapshot_error(
            admin.SNAPSHOT_TOO_LARGE,
            f"the keys under {prefix!r} take {len(data)} bytes > {c.SNAPSHOT_ANSWER_BYTES_MAX}: "
            "watch a narrower prefix",
        )
    return data
