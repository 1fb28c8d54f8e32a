"""The votes of a view change (§4.2), for the view in `Replica.view_number`.

Theory of operation. A replica that starts a view change counts StartViewChange messages; with a quorum
(itself included) it sends DoViewChange, once, to the new view's primary. That primary counts DoViewChange
messages, its own included (rule 5); with a quorum it starts the view with the log of the vote with the
largest (last_normal_view, op_number) — among all the votes, not the last one received (seed flaw S6) — and the
largest commit_number of any vote. Votes belong to one view: they are cleared whenever the view changes.

Pre-vote (docs/design.md). `without_primary` remembers which replicas said, and when, that they have no working
primary: a StartViewChangeProbe (a backup whose primary went silent), or a StartViewChange or DoViewChange (a
replica in view-change status). A backup leaves its view only when such word from a quorum, itself included,
is fresh; a replica in a view change gives up on it for the next view only on the same condition. So a
replica that is cut off never raises its view alone.
"""

from __future__ import annotations

from zvsr.protocol.messages import DoViewChange


class ViewChangeVotes:
    __slots__ = (
        "start_view_change_from",
        "do_view_change_from",
        "do_view_change_sent",
        "without_primary",
        "start_view_sent_at",
    )

    def __init__(self) -> None:
        self.start_view_change_from: set[int] = set()
        self.do_view_change_from: dict[int, DoViewChange] = {}
        self.do_view_change_sent = False
        self.without_primary: dict[int, tuple[int, int]] = {}  # replica -> (its view, when we heard it)
        self.start_view_sent_at: dict[int, int] = {}  # the new primary: replica -> when we last re-sent StartView

    def reset(self) -> None:
        self.start_view_change_from = set()
        self.do_view_change_from = {}
        self.do_view_change_sent = False
        self.without_primary = {}
        self.start_view_sent_at = {}

    def heard_without_primary(self, replica: int, view: int, now: int) -> None:
        self.without_primary[replica] = (view, now)

    def views_without_primary(self, *, since: int) -> list[int]:
        """The views of the replicas that said at `since` or later that they have no primary (not counting us)."""
        return [view for view, at in self.without_primary.values() if at >= since]

    def best(self) -> DoViewChange:
        """§4.2 step 3: the log to start the view with."""
        return max(self.do_view_change_from.values(), key=lambda m: (m.last_normal_view, m.op_number))

    def commit_number(self) -> int:
        return max(m.commit_number for m in self.do_view_change_from.values())
