"""The primary's pipeline (§4.1 steps 3-5): ops prepared but not yet committed, and who acknowledged what.

Theory of operation. The primary appends requests to its log and sends them in Prepares (`prepared`: the last op
sent). Each backup answers PrepareOk with the highest op it holds; `prepare_ok` keeps, per backup, the highest
acknowledged *in this view* (rule 6: accounting is keyed by view and cleared on every view change, so an
acknowledgement of an older view's op at the same number never commits this view's op). An op is committed once
a quorum holds it, counting the primary. At most `pipeline_ops_max` ops are uncommitted at once; requests beyond
wait in `request_queue` (bounded: beyond, `busy`), and are dropped at a view change (they were never prepared;
their clients retry). Since ZeroMQ drops silently, a backup whose acknowledgement has not moved since the last
look is sent its missing prepares again (`stalled`) — then after 2, 4, ... looks, up to PREPARE_RESEND_BACKOFF_MAX,
while it still does not move: over a slow link the acknowledgement is late, not lost, and re-sending on every
look would queue copy after copy of the same prepares in front of everything else (issue 17's storm).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from zvsr.constants import PREPARE_RESEND_BACKOFF_MAX
from zvsr.protocol.messages import Request


class Pipeline:
    __slots__ = (
        "view",
        "prepare_ok",
        "prepared",
        "request_queue",
        "internal_op",
        "_prepare_ok_at_last_look",
        "_resend_backoff",
    )

    def __init__(self) -> None:
        self.view = 0  # the view the acknowledgements below belong to
        self.prepare_ok: dict[int, int] = {}  # backup -> highest op it acknowledged in `view`
        self.prepared = 0  # the highest op already sent in a Prepare
        self.request_queue: deque[Request] = deque()
        self.internal_op = 0  # the cluster's own op (an app timer) of `view` not yet committed; 0: none
        self._prepare_ok_at_last_look: dict[int, int] = {}
        self._resend_backoff: dict[int, tuple[int, int]] = {}  # backup -> (looks between re-sends, looks left)

    def reset(self, view: int) -> None:
        """A new view: no acknowledgement carries over (rule 6), and queued requests are dropped."""
        self.view = view
        self.prepare_ok = {}
        self._prepare_ok_at_last_look = {}
        self._resend_backoff = {}
        self.request_queue.clear()
        self.internal_op = 0

    def acknowledged(self, backup: int, op_number: int) -> None:
        if op_number > self.prepare_ok.get(backup, -1):
            self.prepare_ok[backup] = op_number

    def committable(self, backups_needed: int) -> int | None:
        """The highest op that `backups_needed` backups acknowledged (None: not that many answered yet)."""
        acks = sorted(self.prepare_ok.values(), reverse=True)
        return acks[backups_needed - 1] if len(acks) >= backups_needed else None

    def stalled(self, log_base: int, op_number: int) -> Iterator[tuple[int, int]]:
        """(backup, its highest acknowledged op) for each backup behind us whose acknowledgement has not moved
        since the last look. A backup behind `log_base` is left out: it needs our snapshot, and asks for it with
        GetState when our heartbeat shows it is behind."""
        for backup, acked in self.prepare_ok.items():
            moved = self._prepare_ok_at_last_look.get(backup) != acked
            self._prepare_ok_at_last_look[backup] = acked
            if moved or not log_base <= acked < op_number:
                self._resend_backoff.pop(backup, None)
                continue
            period, left = self._resend_backoff.get(backup, (1, 0))
            if left > 1:
                self._resend_backoff[backup] = (period, left - 1)
                continue
            period = min(2 * period, PREPARE_RESEND_BACKOFF_MAX)
            self._resend_backoff[backup] = (period, period)
            yield backup, acked
