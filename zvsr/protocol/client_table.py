"""The client table (§4, §4.1 steps 2 and 7): at-most-once execution of client requests, for registered sessions.

Theory of operation. A client session exists only once it is *registered*: a new client's first request is a
register op — request_number 0, no operation, and a random `client_id` of its own choosing (the register's
*nonce*) — that goes through the log like any op, so every replica opens the session at the same op number. The
session's id is the op number N of its register: the reply carries N, and the client sends every later request as
client_id N, numbered 1, 2, ... (TigerBeetle's session number, used as the client id.) Op numbers never repeat, so
neither do session ids: a session that is gone is gone for good.

The table keeps, per session, the latest request it executed and the result sent for it, in execution order,
which is the same on every replica; so a request is judged the same way whichever replica is primary:
- from a session the table does not hold (never registered, or evicted): refused with `session_expired`, never
  executed;
- older than the latest executed: dropped (the client has moved on);
- equal to it: the cached result is sent again, never a second execution (also after a failover);
- already in the log but not executed (`pending`): dropped, its reply comes when it commits (VR-NOTES §11.5);
- newer: executed once, when committed — if its session still exists then (`executable`).

A register retry (the same nonce) is answered from the table while the session has executed nothing else; later
it is dropped. One that arrives after its session was evicted opens a new session, which nobody uses until it is
evicted in turn: a slot wasted, never a request executed twice.

The table is bounded (`client_table_max`). Only a register adds a row, so eviction happens there, decided from
the table alone — the least recently executed session goes — so every replica evicts the same session at the same
op. Nothing of an evicted session is remembered, and nothing needs to be: a request of it that arrives later finds
no session and is refused; one already in the log finds none when it commits and is refused there, at every
replica alike. So at-most-once holds without a window, whatever the churn of sessions. Rows travel in snapshots
(`zvsr.protocol.snapshots`) in the same order, so a replica that installs one evicts exactly as the others do.

Implicit sessions (`require_registration` off, the core's default until every client registers): a request
numbered 1 from a client the table does not hold also opens a session, under the client's own id, as before
registration existed. That leaves the hole registration closes — a late retry of the first request of an evicted
session is executed again — so the node turns it on with the `require_registration` option, and the simulator
always runs with it on.

`pending` and `pending_registers` are derived state: rebuilt from the uncommitted log suffix whenever the log is
replaced.
"""

from __future__ import annotations

import struct
from collections.abc import ItemsView, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Final

from zvsr.protocol.messages import INTERNAL_CLIENT_ID, LogEntry

# A register op: the request number of a session's first request, which carries no operation.
REGISTER_REQUEST_NUMBER: Final = 0
# The result reported (`Ready.executed`) for a committed request the table refused (its session was evicted
# before it committed): empty, which no application result is (a result is one msgpack value).
REFUSED_RESULT: Final = b""
# What a client is told when its session is gone (at admission, or when a request of it commits).
SESSION_EXPIRED_TEXT: Final = (
    "the cluster holds no session for this client_id (never registered, or evicted): not executed; "
    "register a new session"
)
_REGISTER_RESULT: Final = struct.Struct(">BQ")
_MSGPACK_UINT64: Final = 0xCF


def register_result(op_number: int) -> bytes:
    """The reply to a register op: the session id, its op number, as a msgpack uint 64 (written out here because
    the core imports no serialization library; tests check msgpack reads it back)."""
    return _REGISTER_RESULT.pack(_MSGPACK_UINT64, op_number)


def parse_register_result(result: bytes) -> int | None:
    """The session id in a register reply (any msgpack unsigned int encoding), or None if it is not one."""
    if not result:
        return None
    first = result[0]
    if first < 0x80 and len(result) == 1:
        return first
    sizes = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
    size = sizes.get(first)
    if size is None or len(result) != 1 + size:
        return None
    return int.from_bytes(result[1:], "big")


@dataclass(slots=True)
class ClientEntry:
    """§4 client-table entry: the session's latest executed request (0: only its register) and the result sent
    for it; `nonce` is the client_id its register came with (0 for a row from a snapshot written before
    registration existed)."""

    request_number: int
    result: bytes
    nonce: int = 0


class Admission(Enum):
    """What the table says of an arriving request (the primary acts on it in `Replica.on_request`)."""

    NEW = "new"  # execute it (after it commits); a register op when its request_number is 0
    OLDER = "older request number"  # superseded (or a late register copy): drop
    CACHED = "cached reply"  # the latest executed again (or a register retry): re-send its result
    IN_PROGRESS = "already in progress"  # in the log or queued, not yet executed: drop
    SESSION_EXPIRED = "session expired"  # no session (never registered, or evicted): refuse


class ClientTable:
    __slots__ = ("entries", "nonces", "pending", "pending_registers", "require_registration", "size_max")

    def __init__(self, *, size_max: int, require_registration: bool = True) -> None:
        assert size_max >= 1
        self.size_max = size_max
        self.require_registration = require_registration
        # Sessions by id, least recently executed first (dict order): the oldest is evicted beyond size_max.
        self.entries: dict[int, ClientEntry] = {}
        self.nonces: dict[int, int] = {}  # register nonce -> session id, for every session in `entries`
        self.pending: dict[int, int] = {}  # session id -> request_number in the log (or queued), not executed
        self.pending_registers: set[int] = set()  # nonces of register ops in the log (or queued), not executed

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

    def admit(
        self, client_id: int, request_number: int, *, commit_number: int = 0, op_number: int = 0
    ) -> Admission:
        """§4.1 step 2, plus the session rules: how the primary must treat this request. `commit_number` and
        `op_number` are the primary's: a session whose register op is in its log but not executed yet (its id
        lies between them) is not refused, only dropped until it is."""
        if request_number == REGISTER_REQUEST_NUMBER:
            return self._admit_register(client_id)
        entry = self.entries.get(client_id)
        if entry is None:
            pending = self.pending.get(client_id)
            if self.require_registration:
                registering = commit_number < client_id <= op_number  # its register may be in our log
                return Admission.IN_PROGRESS if registering else Admission.SESSION_EXPIRED
            if request_number > 1 and pending is None:
                return Admission.SESSION_EXPIRED
            # An implicit session: its first request, or one after it while it is still in the log.
            return Admission.IN_PROGRESS if pending is not None and request_number <= pending else Admission.NEW
        if request_number < entry.request_number:
            return Admission.OLDER
        if request_number == entry.request_number:
            return Admission.CACHED
        pending = self.pending.get(client_id)
        if pending is not None and request_number <= pending:
            return Admission.IN_PROGRESS
        return Admission.NEW

    def _admit_register(self, nonce: int) -> Admission:
        session = self.nonces.get(nonce)
        if session is not None:
            # A retry: its reply again while the session has done nothing else (the client may not have it).
            return Admission.CACHED if self.entries[session].request_number == 0 else Admission.OLDER
        return Admission.IN_PROGRESS if nonce in self.pending_registers else Admission.NEW

    def cached_result(self, client_id: int, request_number: int) -> bytes:
        """The result to re-send for an `Admission.CACHED` request."""
        if request_number == REGISTER_REQUEST_NUMBER:
            return self.entries[self.nonces[client_id]].result
        return self.entries[client_id].result

    def register(self, nonce: int, op_number: int) -> tuple[bytes, int | None]:
        """Execute register op `op_number` (in execution order, the same on every replica): open session
        `op_number`, evicting the least recently executed session beyond the bound. Returns the register's result
        and the evicted session id, if any."""
        entries = self.entries
        result = register_result(op_number)
        stale = entries.pop(op_number, None)  # only a pre-registration row whose random id was this op number
        if stale is not None:
            self.nonces.pop(stale.nonce, None)
        old = self.nonces.get(nonce)
        if old is None:  # (a register retried after its session was evicted opens another one: see above)
            self.nonces[nonce] = op_number
        entries[op_number] = ClientEntry(0, result, nonce)
        self.pending_registers.discard(nonce)
        return result, self._evict_beyond_bound()

    def _evict_beyond_bound(self) -> int | None:
        """The least recently executed session goes if the table is over its bound; its id, if one went."""
        entries = self.entries
        if len(entries) <= self.size_max:
            return None
        evicted = next(iter(entries))
        gone = entries.pop(evicted)
        if self.nonces.get(gone.nonce) == evicted:
            del self.nonces[gone.nonce]
        return evicted

    def executable(self, client_id: int, request_number: int) -> bool:
        """May this committed request be applied? Only in a session that exists: a request whose session was
        evicted after it entered the log is refused, never applied."""
        entry = self.entries.get(client_id)
        if entry is None:
            return request_number == 1 and not self.require_registration
        return request_number > entry.request_number

    def executed(self, client_id: int, request_number: int, result: bytes) -> None:
        """Record an execution, in execution order (the same on every replica)."""
        entries = self.entries
        known = entries.pop(client_id, None)
        if known is None and not self.executable(client_id, request_number):
            # A reconfiguration whose session is gone (`ReplicaState._commit_up_to`): nothing to remember.
            return self.refused(client_id, request_number)
        if known is None:  # an implicit session opens (`executable` allowed it)
            assert request_number == 1 and not self.require_registration, "request of no session executed"
            entries[client_id] = ClientEntry(request_number, result)
            self._evict_beyond_bound()
        else:
            assert request_number > known.request_number, "request executed twice"
            entries[client_id] = ClientEntry(request_number, result, known.nonce)
        self.refused(client_id, request_number)

    def refused(self, client_id: int, request_number: int) -> None:
        """A committed request is done (executed, or refused because `executable` said no)."""
        if self.pending.get(client_id) == request_number:
            del self.pending[client_id]

    def rebuild_pending(self, uncommitted: Iterable[LogEntry]) -> None:
        """The requests in the log beyond commit_number are in progress: a retry of one must not be appended
        again (VR-NOTES §11.5)."""
        self.pending = {}
        self.pending_registers = set()
        for entry in uncommitted:
            if entry.client_id == INTERNAL_CLIENT_ID:
                continue
            if entry.request_number == REGISTER_REQUEST_NUMBER:
                self.pending_registers.add(entry.client_id)
            else:
                self.pending[entry.client_id] = entry.request_number

    def add_pending(self, client_id: int, request_number: int) -> None:
        """A request entered the log (or the primary's queue)."""
        if request_number == REGISTER_REQUEST_NUMBER:
            self.pending_registers.add(client_id)
        else:
            self.pending[client_id] = request_number

    def rows(self) -> Iterator[tuple[int, int, int, bytes]]:
        """(session id, nonce, request_number, result), least recently executed first: the snapshot's order."""
        return ((client_id, e.nonce, e.request_number, e.result) for client_id, e in self.entries.items())

    def restore(self, rows: Iterable[tuple[int, int, int, bytes]]) -> None:
        """Take a snapshot's table (pending is rebuilt by the caller, from the log after the snapshot)."""
        self.entries = {client_id: ClientEntry(number, result, nonce) for client_id, nonce, number, result in rows}
        self.nonces = {e.nonce: client_id for client_id, e in self.entries.items() if e.nonce}
        self.pending = {}
        self.pending_registers = set()

    def invariants(self) -> None:
        assert len(self.entries) <= self.size_max
        assert len(self.nonces) <= len(self.entries)
