"""Recovery (§4.3): a replica that lost its state comes back by asking the others, with a fresh nonce.

Theory of operation. The recovering replica broadcasts Recovery with a new nonce and takes part in nothing else.
It waits for answers to that nonce from a quorum of *other* replicas (it holds nothing itself), one of which must
be the primary of the latest view among them; that primary's answer carries its log, op_number and
commit_number. If the primary's log starts after a snapshot, the replica first downloads that snapshot from the
same primary in the same view (`primary` remembers the answer meanwhile); a download that stops moving for
`RECOVERY_STALL_ROUNDS` resend periods means the primary went away or changed view, and recovery starts over with
a new nonce, so a stale answer can never complete it.
"""

from __future__ import annotations

from collections.abc import Callable

from zvsr.protocol.messages import RecoveryResponse


class RecoveryState:
    __slots__ = ("nonce", "responses", "primary", "progress_at")

    def __init__(self) -> None:
        self.nonce = 0
        self.responses: dict[int, RecoveryResponse] = {}  # replica -> its latest answer to our nonce
        self.primary: RecoveryResponse | None = None  # the primary's answer, while we fetch its snapshot
        self.progress_at = 0  # `now` when that fetch began

    def begin(self, nonce: int) -> None:
        self.nonce = nonce
        self.responses = {}
        self.primary = None

    def add(self, response: RecoveryResponse, *, quorum: int, primary_of: Callable[[int], int]) -> bool:
        """Take an answer to our nonce; True once a quorum answered, including the latest view's primary."""
        previous = self.responses.get(response.replica)
        if previous is None or response.view >= previous.view:
            self.responses[response.replica] = response
        if len(self.responses) < quorum:  # §4.3: f + 1 answers from others
            return False
        latest = max(r.view for r in self.responses.values())
        primary = self.responses.get(primary_of(latest))
        return primary is not None and primary.view == latest and primary.log is not None

    def primary_answer(self, primary_of: Callable[[int], int]) -> RecoveryResponse:
        """The answer `add` found complete: the latest view's primary's."""
        latest = max(r.view for r in self.responses.values())
        answer = self.responses[primary_of(latest)]
        assert answer.log is not None and answer.op_number is not None and answer.commit_number is not None
        return answer
