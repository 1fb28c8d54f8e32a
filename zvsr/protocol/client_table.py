"""The client table (§4, §4.1 steps 2 and 7): at-most-once execution of client requests, for registered sessions.

Theory of operation. A client session exists only once it is *registered*: a new client's first request is a
register op — request_number 0, no operation, and a random `client_id` of its own choosing (the register's
*nonce*) — that goes through the log like any op, so every replica opens the session at the same op number N.
The session's id is `session_id(nonce, N)`, a 64-bit digest of both: the reply carries it, and the client sends
every later request as that client_id, numbered 1, 2, ... (TigerBeetle's session number, folded into the client
id.) Op numbers never repeat, so neither do session ids (a repeat would be a 64-bit digest collision); and an id
cannot be guessed without the nonce, so no other client (nor a fuzzer) can speak for a session by accident.

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

import hashlib
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
_SESSION_KEY: Final = struct.Struct(">QQ")
_MSGPACK_UINT64: Final = 0xCF


def session_id(nonce: int, op_number: int) -> int:
    """The id of the session register op `op_number` with `nonce` opens: never 0 (the cluster's own client id)."""
    digest = hashlib.blake2b(_SESSION_KEY.pack(nonce, op_number), digest_size=8, person=b"zvsr-session").digest()
    return int.from_bytes(digest, "big") or 1


def register_result(session: int) -> bytes:
    """The reply to a register op: the session id, as a msgpack uint 64 (written out here because the core
    imports no serialization library; tests check msgpack reads it back)."""
    return _REGISTER_RESULT.pack(_MSGPACK_UINT64, session)


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
    __slots__ = (
        "entries",
        "nonces",
        "pending",
        "pending_registers",
        "pending_sessions",
        "require_registration",
        "size_max",
    )

    def __init__(self, *, size_max: int, require_registration: bool = True) -> None:
        assert size_max >= 1
        self.size_max = size_max
        self.require_registration = require_registration
        # Sessions by id, least recently executed first (dict order): the oldest is evicted beyond size_max.
        self.entries: dict[int, ClientEntry] = {}
        self.nonces: dict[int, int] = {}  # register nonce -> session id, for every session in `entries`
        self.pending: dict[int, int] = {}  # session id -> request_number in the log (or queued), not executed
        self.pending_registers: set[int] = set()  # nonces of register ops in the log (or queued), not executed
        self.pending_sessions: set[int] = set()  # the ids the register ops in the log will open

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
        """§4.1 step 2, plus the session rules: how the primary must treat this request. A session whose register
        op is in the log but not executed yet here is not refused, only dropped until it is."""
        if request_number == REGISTER_REQUEST_NUMBER:
            return self._admit_register(client_id)
        entry = self.entries.get(client_id)
        if entry is None:
            pending = self.pending.get(client_id)
            if self.require_registration:
                registering = client_id in self.pending_sessions
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
        """Execute register op `op_number` (in execution order, the same on every replica): open its session,
        evicting the least recently executed session beyond the bound. Returns the register's result and the
        evicted session id, if any."""
        entries = self.entries
        session = session_id(nonce, op_number)
        result = register_result(session)
        stale = entries.pop(session, None)  # only a row of a pre-registration snapshot with this very id
        if stale is not None:
            self.nonces.pop(stale.nonce, None)
        old = self.nonces.get(nonce)
        if old is None:  # (a register retried after its session was evicted opens another one: see above)
            self.nonces[nonce] = session
        entries[session] = ClientEntry(0, result, nonce)
        self.pending_registers.discard(nonce)
        self.pending_sessions.discard(session)
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
        self.pending_sessions = set()
        for entry in uncommitted:
            if entry.client_id != INTERNAL_CLIENT_ID:
                self.add_pending(entry.client_id, entry.request_number, entry.op_number)

    def add_pending(self, client_id: int, request_number: int, op_number: int | None) -> None:
        """A request entered the log at `op_number` (None: the primary's queue, not yet in the log)."""
        if request_number != REGISTER_REQUEST_NUMBER:
            self.pending[client_id] = request_number
            return
        self.pending_registers.add(client_id)
        if op_number is not None:
            self.pending_sessions.add(session_id(client_id, op_number))

    def rows(self) -> Iterator[tuple[int, int, int, bytes]]:
        """(session id, nonce, request_number, result), least recently executed first: the snapshot's order."""
        return ((client_id, e.nonce, e.request_number, e.result) for client_id, e in self.entries.items())

    def restore(self, rows: Iterable[tuple[int, int, int, bytes]]) -> None:
        """Take a snapshot's table (pending is rebuilt by the caller, from the log after the snapshot)."""
        self.entries = {client_id: ClientEntry(number, result, nonce) for client_id, nonce, number, result in rows}
        self.nonces = {e.nonce: client_id for client_id, e in self.entries.items() if e.nonce}
        self.pending = {}
        self.pending_registers = set()
        self.pending_sessions = set()

    def invariants(self) -> None:
        assert len(self.entries) <= self.size_max
        assert len(self.nonces) <= len(self.entries)
