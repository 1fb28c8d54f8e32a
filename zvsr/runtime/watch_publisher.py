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
the later ops, asking the replicas' history (`zvsr.runtime.watch_history`) for those it finds missing.

Learning what the core executed. The core reports every op it executed in the step's Ready
(`Ready.executed`: op_number, log entry, result), and every snapshot it installed over the app state
(`Ready.restored`). The node hands the list to `publish` after executing the Ready. Op numbers are exact: after a
restore the ops follow the snapshot's op_number, and a watcher that misses the ops a snapshot folded in sees a
gap and fills it from another replica's history, or resyncs. A step that executes more than
`WATCH_STEP_OPS_MAX` ops (a restart re-executing a long log) is not published, and counted ("watch: ops not
published"): nobody is subscribed that early anyway, and a gap in the stream is always safe.

Re-execution at restart. A replica restarted from disk re-executes its committed log prefix; those ops are
in its first Ready, with op numbers watchers already have: they ignore every op at or below their state's
op_number, so repeats are harmless.

Publishing happens after the step's Ready was executed (persisted, sent): every op published is committed
(the core executes committed ops only). The socket drops at its high-water mark (`NODE_WATCH_SNDHWM` per
subscriber) instead of blocking the loop: a slow watcher loses ops and fetches them. With CurveZMQ on, it is a
CURVE server in the ``clients`` ZAP domain, so every admitted client (and proxy) key may subscribe.

Nobody watching costs (almost) nothing. The socket is an XPUB, which is a PUB to its subscribers but also
hands the node every *first* subscription to a topic and every *last* unsubscription (a subscriber that goes
away unsubscribes). The node reads them in its poll loop (`drain_subscriptions`) and encodes and sends
nothing — ops nor WatchCommits — while no subscription is active.
No op a live subscriber could have received is skipped: the node sees a subscription at the latest in the
step in which it took effect, and a watcher takes its snapshot only after the first message it received.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import zmq

from zvsr import constants as c
from zvsr.protocol.ready import Executed
from zvsr.wire import admin
from zvsr.wire.codec import DecodeError

REASON_UNPUBLISHED: Final = "watch: ops not published"  # counted per op not published (see above)
REASON_SEND_FAILED: Final = "watch: publish failed"


class WatchPublisher:
    """Publishes the ops each Ready executed on a bound XPUB socket, while some subscription is active (see the
    module docstring)."""

    def __init__(
        self,
        socket: zmq.Socket[bytes],
        count: Callable[[str, int], None],
        *,
        commit_interval_ms: int = c.WATCH_COMMIT_INTERVAL_MS,
        step_ops_max: int = c.WATCH_STEP_OPS_MAX,
    ) -> None:
        self.socket = socket
        self._count = count
        self._step_ops_max = step_ops_max
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

    def publish(self, executed: list[Executed], commit_number: int, now: float) -> None:
        """After a Ready was executed: publish its executed ops, and the commit_number when it is due."""
        if not self.topics:  # nobody is subscribed: nothing to encode or send
            return
        if len(executed) > self._step_ops_max:
            self._count(REASON_UNPUBLISHED, len(executed))
            executed = []
        send = self.socket.send_multipart
        try:
            for op_number, entry, result in executed:
                # An XPUB never blocks and never raises Again: at the HWM it drops (the watcher fetches them).
                send((admin.TOPIC_OP, admin.encode_watch_op(op_number, entry.operation, result)), zmq.NOBLOCK)
            if executed:
                self._count("watch: ops published", len(executed))
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
