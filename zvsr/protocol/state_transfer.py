"""State transfer (§5.2, ARCHITECTURE rules 3 and 7): a backup fetching the log of a view it has adopted.

Theory of operation. A replica that hears its view's primary (or a newer view's) without having installed that
view's log — it missed StartView — adopts the view and fetches the log after its commit_number from the
primary with GetState / NewState, in bounded chunks. Until the whole of it is here, its old log stays as it
was, with the old last_normal_view: exactly what a replica that never saw the view would report in a further
view change. Truncating at the start (the paper's literal reading) can lose an op committed with our own
PrepareOk, and advancing last_normal_view early is the hole Vanlightly's TLA+ model found (docs/design.md).

A `StateTransfer` holds what has arrived so far: the log entries after `base` (our commit_number when it
began), or, if the primary's log starts after ops we have not executed, its snapshot plus the entries after
that. Nothing in it is persisted or executed until `Replica._finish_state_transfer` installs it whole; a view
change or a newer view simply drops it (the replica is left exactly as before the transfer began).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zvsr.protocol import snapshots
from zvsr.protocol.messages import LogEntry


@dataclass(slots=True)
class StateTransfer:
    base: int  # our commit_number when the transfer began: the view's log is fetched after it
    entries: list[LogEntry] = field(default_factory=list)  # collected, after `base` or after `snapshot`
    snapshot: bytes | None = None  # the primary's snapshot, when we were behind its log

    def op_number(self) -> int:
        """The op after which we still need the primary's log."""
        start = self.base if self.snapshot is None else snapshots.op_number_of(self.snapshot)
        return start + len(self.entries)

    def take_snapshot(self, data: bytes) -> None:
        """A downloaded snapshot of the primary's: the entries collected before it no longer follow it."""
        self.snapshot = data
        self.entries = []
