"""The replica side of the history query: the ops this replica executed lately, kept in memory for watchers.

Theory of operation
-------------------
A watcher (`zvsr.watch`) that lost ops from the watch stream (a gap), or that resumes after an op it saw in an
earlier run (`zvsr watch --from-op N`), needs every op after some op_number — and not only the operation but its
*result*, which says whether the op changed anything (a ``cas`` that failed, a ``delete`` of a missing key, a
lease that ended: `zvsr.watch.coordination_changes`). The log holds operations only, so the history is a ring of
what the watch stream publishes: ``(op_number, operation, result)`` of each executed op, in op_number order, the
latest `WATCH_HISTORY_OPS_MAX` of them and at most `WATCH_HISTORY_BYTES_MAX` bytes (the operation is the log
entry's own ``bytes``, shared, not copied). Re-deriving results by replaying the log on a copy of a snapshot
would cost a second state machine per replica; the ring costs a deque append per op.

What it holds is always a contiguous run: ops ``first_op``..``last_op``, every one committed (the core executes
committed ops only, and every replica executes the same op under the same number with the same result — the
app is deterministic). A jump breaks the run and starts a new one: a snapshot installed over the app state
(state transfer, recovery: `Ready.restored`) skips the ops inside it, so the ring restarts after the snapshot's
op_number. After a restart the ring is empty and refills from the core's re-execution of its log (the ops after
its latest snapshot), then from new ops: how far back a replica's history reaches depends on its uptime, its
snapshot interval and the bounds. A watcher asks every replica and uses one that holds what it needs; when none
does, the ops are *compacted* and it resyncs from a snapshot of its prefix (docs/protocol.md §12).

Answered between core steps (like the snapshot query): ``last_op`` is the last op whose step was executed by the
node, which may trail the core's commit_number by the ops of the step in progress; never the other way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from itertools import islice

from zvsr import constants as c
from zvsr.protocol.ready import Executed
from zvsr.wire import admin
from zvsr.wire.codec import DecodeError

_OP_OVERHEAD_BYTES = 24  # msgpack framing of one [op_number, operation, result] in an answer, at most


class WatchHistory:
    """The latest executed ops of one replica (see the module docstring). Used from the node's loop only."""

    def __init__(
        self, *, ops_max: int = c.WATCH_HISTORY_OPS_MAX, bytes_max: int = c.WATCH_HISTORY_BYTES_MAX
    ) -> None:
        assert ops_max >= 1 and bytes_max >= 1
        self._ops_max = ops_max
        self._bytes_max = bytes_max
        self.ops: deque[tuple[int, bytes, bytes]] = deque()
        self.base: int | None = None  # the op before the first held one; None until the first Ready
        self.size = 0  # bytes of the held operations and results
        self.dropped = 0  # ops dropped for the bounds (not for jumps)
        self.repairs = 0  # times the run disagreed with the core's commit_number and restarted (never, we hope)

    @property
    def first_op(self) -> int:
        assert self.base is not None
        return self.base + 1

    @property
    def last_op(self) -> int:
        assert self.base is not None
        return self.base + len(self.ops)

    def record(self, executed: Iterable[Executed], restored: list[int], commit_number: int) -> None:
        """After a Ready was executed: keep its executed ops; `restored`, the snapshots it installed;
        `commit_number`, the core's (equal to the last op executed: nothing runs between a Ready and this)."""
        ops = self.ops
        for op_number, entry, result in executed:
            if self.base is None or op_number != self.base + len(ops) + 1:  # a jump: a new run starts here
                self._restart(op_number - 1)
            ops.append((op_number, entry.operation, result))
            self.size += len(entry.operation) + len(result)
        for op_number in restored:  # a snapshot after the last held op: the ops up to it are not ours
            if self.base is None or op_number > self.base + len(ops):
                self._restart(op_number)
        base = commit_number if self.base is None else self.base  # None: nothing executed since the start
        while len(ops) > self._ops_max or (self.size > self._bytes_max and len(ops) > 1):
            _, operation, result = ops.popleft()
            self.size -= len(operation) + len(result)
            base += 1
            self.dropped += 1
        self.base = base
        if base + len(ops) != commit_number:  # our bug, but a watcher survives a gap: never the node's death
            self.repairs += 1
            self._restart(commit_number)

    def _restart(self, base: int) -> None:
        self.ops.clear()
        self.size = 0
        self.base = base

    def after(self, from_op: int) -> list[tuple[int, bytes, bytes]]:
        """The held ops after `from_op`, from the first: at most a chunk's ops and bytes (at least one)."""
        assert self.base is not None and from_op >= self.base
        chunk: list[tuple[int, bytes, bytes]] = []
        size = 0
        for item in islice(self.ops, from_op - self.base, None):
            size += len(item[1]) + len(item[2]) + _OP_OVERHEAD_BYTES
            if chunk and (size > c.WATCH_HISTORY_CHUNK_BYTES or len(chunk) >= c.WATCH_HISTORY_CHUNK_OPS_MAX):
                break
            chunk.append(item)
        return chunk


def history_answer(payload: bytes, history: WatchHistory | None, *, recovering: bool) -> tuple[bytes, str] | None:
    """The answer to a history query (type 36) and its outcome (``ok`` or the error code), or None if `payload`
    is not one. `history` is None on a replica without a watch endpoint (it keeps none)."""
    try:
        from_op = admin.decode_history_query(payload)
    except DecodeError as error:
        return _refuse(admin.HISTORY_BAD_REQUEST, f"cannot read the history query: {error}")
    if from_op is None:
        return None
    if history is None:
        return _refuse(admin.HISTORY_UNSUPPORTED, "this replica has no watch endpoint, so keeps no history")
    if recovering or history.base is None:  # no state yet (§4.3), or not started: what it holds would be a lie
        return _refuse(admin.HISTORY_UNAVAILABLE, "this replica is recovering: ask another")
    first_op, last_op = history.first_op, history.last_op
    ops = history.after(from_op) if first_op <= from_op + 1 <= last_op else []
    return admin.encode_history_answer(first_op, last_op, ops), "ok"


def _refuse(code: str, message: str) -> tuple[bytes, str]:
    return admin.encode_history_error(code, message), code
