"""The client table (§4, §4.1 steps 2 and 7): at-most-once execution of client requests.

Theory of operation. Every request carries (client_id, request_number). The table keeps, per client, the latest
request it executed and the result sent for it, in execution order, which is the same on every replica; so a
request is judged the same way whichever replica is primary when it arrives:
- older than the latest executed: dropped (the client has moved on);
- equal to it: the cached result is sent again, never a second execution (also after a failover);
- already in the log but not executed (`pending`): dropped, its reply comes when it commits (VR-NOTES §11.5);
- newer: executed once, when committed.

The table is bounded (`client_table_max`): beyond, the least recently executed session is evicted, and its
client_id is remembered as expired (bounded the same way) so a retry from it is refused with
`session_expired` instead of being executed a second time. Entries and expired ids travel in snapshots
(`zvsr.protocol.snapshots`), in the same order, so a replica that installs one evicts exactly as the others do.

`pending` is derived state: rebuilt from the uncommitted log suffix whenever the log is replaced.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from zvsr.protocol.messages import INTERNAL_CLIENT_ID, LogEntry


@dataclass(slots=True)
class ClientEntry:
    """§4 client-table entry: the client's latest executed request and the result sent for it."""

    request_number: int
    result: bytes


class Admission(Enum):
    """What the table says of an arriving request (the primary acts on it in `Replica.on_request`)."""

    NEW = "new"  # execute it (after it commits)
    OLDER = "older request number"  # superseded: drop
    CACHED = "cached reply"  # the latest executed again: re-send its result
    IN_PROGRESS = "already in progress"  # in the log or queued, not yet executed: drop
    SESSION_EXPIRED = "session expired"  # an evicted (or never seen, mid-session) client: refuse


class ClientTable:
    __slots__ = ("entries", "expired", "pending", "size_max")

    def __init__(self, *, size_max: int) -> None:
        assert size_max >= 1
        self.size_max = size_max
        # Least recently executed first (dict order): the oldest entry is evicted beyond size_max.
        self.entries: dict[int, ClientEntry] = {}
        self.expired: dict[int, None] = {}  # evicted client_ids, oldest first, also bounded by size_max
        self.pending: dict[int, int] = {}  # client_id -> request_number in the log (or queued), not executed

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self.entries

    def __getitem__(self, client_id: int) -> ClientEntry:
        return self.entries[client_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self.entries)

    def items(self) -> ItemsView[int, ClientEntry]:
        return self.entries.items()

    def get(self, client_id: int) -> ClientEntry | None:
        return self.entries.get(client_id)

    def admit(self, client_id: int, request_number: int) -> Admission:
        """§4.1 step 2, plus the session rules: how the primary must treat this request."""
        entry = self.entries.get(client_id)
        if entry is not None and request_number < entry.request_number:
            return Admission.OLDER
        if entry is not None and request_number == entry.request_number:
            return Admission.CACHED
        pending = self.pending.get(client_id)
        if pending is not None and request_number <= pending:
            return Admission.IN_PROGRESS
        if entry is None and pending is None and (request_number > 1 or client_id in self.expired):
            # A session starts at request 1. Anything else from a client we do not know may be a retry of a
            # request executed before its entry was evicted: refuse, so it is never executed twice.
            return Admission.SESSION_EXPIRED
        return Admission.NEW

    def executed(self, client_id: int, request_number: int, result: bytes) -> bool:
        """Record an execution, in execution order (the same on every replica); evict beyond the bound.
        True if a session was evicted to make room."""
        entries = self.entries
        known = entries.pop(client_id, None)
        assert known is None or request_number > known.request_number, "request executed twice"
        entries[client_id] = ClientEntry(request_number, result)
        if self.pending.get(client_id) == request_number:
            del self.pending[client_id]
        self.expired.pop(client_id, None)
        if len(entries) > self.size_max:
            evicted = next(iter(entries))
            del entries[evicted]
            expired = self.expired
            expired[evicted] = None
            if len(expired) > self.size_max:
                del expired[next(iter(expired))]
            return True
        return False

    def rebuild_pending(self, uncommitted: Iterable[LogEntry]) -> None:
        """The requests in the log beyond commit_number are in progress: a retry of one must not be appended
        again (VR-NOTES §11.5)."""
        self.pending = {e.client_id: e.request_number for e in uncommitted if e.client_id != INTERNAL_CLIENT_ID}

    def rows(self) -> Iterator[tuple[int, int, bytes]]:
        """(client_id, request_number, result), least recently executed first: the snapshot's order."""
        return ((client_id, e.request_number, e.result) for client_id, e in self.entries.items())

    def restore(self, rows: Iterable[tuple[int, int, bytes]], expired: Iterable[int]) -> None:
        """Take a snapshot's table (pending is rebuilt by the caller, from the log after the snapshot)."""
        self.entries = {client_id: ClientEntry(number, result) for client_id, number, result in rows}
        self.expired = dict.fromkeys(expired)
        self.pending = {}

    def invariants(self) -> None:
        assert len(self.entries) <= self.size_max
        assert len(self.expired) <= self.size_max
