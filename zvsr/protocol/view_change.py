"""The votes of a view change (§4.2), for the view in `Replica.view_number`.

Theory of operation. A replica that starts a view change counts StartViewChange messages; with a quorum
(itself included) it sends DoViewChange, once, to the new view's primary. That primary counts DoViewChange
messages, its own included (rule 5); with a quorum it starts the view with the log of the vote with the
largest (last_normal_view, op_number) — among all the votes, not the last one received (seed flaw S6) — and the
largest commit_number of any vote. Votes belong to one view: they are cleared whenever the view changes.

Pre-vote (docs/design.md). `without_primary` remembers which replicas said, and when, that they have no working
primary: a StartViewChangeProbe (a backup whose primary went silent), or a StartViewChange or DoViewChange (a
replica in view-change status). A backup leaves its view only when such word from a quorum, itself included,
is fresh; a replica in a view change gives up on it for the next view only on the same condition, and only
with word the others have *kept* saying, across a re-send period: a replica that returns from a partition gets
the messages queued for it in one burst (TCP delivers a cut connection's backlog when it heals), and a
StartViewChange sent once, by a replica that has long since seen the view start, must not read as a view
change still stuck. So a replica that is cut off never raises its view alone, nor when it returns.
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
        # replica -> (its view, when we first heard it say so in that view, when we last did)
        self.without_primary: dict[int, tuple[int, int, int]] = {}
        self.start_view_sent_at: dict[int, int] = {}  # the new primary: replica -> when we last re-sent StartView

    def reset(self) -> None:
        self.start_view_change_from = set()
        self.do_view_change_from = {}
        self.do_view_change_sent = False
        self.without_primary = {}
        self.start_view_sent_at = {}

    def heard_without_primary(self, replica: int, view: int, now: int) -> None:
        heard = self.without_primary.get(replica)
        first = heard[1] if heard is not None and heard[0] == view else now
        self.without_primary[replica] = (view, first, now)

    def views_without_primary(self, *, since: int, lasting: int = 0) -> list[int]:
        """The views of the replicas (not counting us) that said at `since` or later that they have no primary,
        and had been saying so in that view for at least `lasting` ticks by then."""
        heard = self.without_primary.values()
        return [view for view, first, last in heard if last >= since and last - first >= lasting]

    def best(self) -> DoViewChange:
        """§4.2 step 3: the log to start the view with."""
        return max(self.do_view_change_from.values(), key=lambda m: (m.last_normal_view, m.op_number))

    def commit_number(self) -> int:
        return max(m.commit_number for m in self.do_view_change_from.values())
