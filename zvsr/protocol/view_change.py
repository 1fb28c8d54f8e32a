"""The votes of a view change (§4.2), for the view in `Replica.view_number`.

Theory of operation. A replica that starts a view change counts StartViewChange messages; with a quorum
(itself included) it sends DoViewChange, once, to the new view's primary. That primary counts DoViewChange
messages, its own included (rule 5); with a quorum it starts the view with the log of the vote with the
largest (last_normal_view, op_number) — among all the votes, not the last one received (seed flaw S6) — and the
largest commit_number of any vote. Votes belong to one view: they are cleared whenever the view changes.
"""

from __future__ import annotations

from zvsr.protocol.messages import DoViewChange


class ViewChangeVotes:
    __slots__ = ("start_view_change_from", "do_view_change_from", "do_view_change_sent")

    def __init__(self) -> None:
        self.start_view_change_from: set[int] = set()
        self.do_view_change_from: dict[int, DoViewChange] = {}
        self.do_view_change_sent = False

    def reset(self) -> None:
        self.start_view_change_from = set()
        self.do_view_change_from = {}
        self.do_view_change_sent = False

    def best(self) -> DoViewChange:
        """§4.2 step 3: the log to start the view with."""
        return max(self.do_view_change_from.values(), key=lambda m: (m.last_normal_view, m.op_number))

    def commit_number(self) -> int:
        return max(m.commit_number for m in self.do_view_change_from.values())
