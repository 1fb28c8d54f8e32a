"""Messages of VR Revisited (Liskov & Cowling 2012), as frozen, slotted, keyword-only dataclasses.

Only the codec (`zvsr.wire`) turns bytes into these; the core never sees bytes on the wire. The message set is
closed (ARCHITECTURE rule 9, seed flaw S8: no vestigial messages): `REPLICA_MESSAGES` and `CLIENT_MESSAGES` list
every kind that exists, and the codec rejects anything else.

Every replica-to-replica message carries `cluster`, `epoch`, `view` and `replica` (the sender's index): rule 1.
Client requests carry (client_id, request_number) for the client table (§4.1, rule 8). Application operations
and results are opaque bytes (msgpack in practice, decoded only by the application adapter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# The client id of operations the primary proposes itself (an app's timers, `StateMachine.due`). No client may
# use it: the core refuses a Request from it (bad_request), so no reply or client-table row ever belongs to it.
INTERNAL_CLIENT_ID: Final = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEntry:
    """One client request at its place in the log.

    `view` is the view in which the primary assigned `op_number`; it is kept so that logs can be compared and
    so a later checksum chain (durability) has something stable to cover. `timestamp` is the cluster time (ns)
    at which that primary assigned it: it never decreases along a log (docs/design.md, "Cluster time"), and
    the app sees it as `OpContext.timestamp_ns`. Client id `INTERNAL_CLIENT_ID` marks an operation the primary
    proposed itself (an app's `due`): it has no client, no reply and no client-table row.
    """

    view: int
    op_number: int
    client_id: int
    request_number: int
    operation: bytes
    timestamp: int


# --- replica <-> replica -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare:
    """§4.1 PREPARE, batched: `entries` are consecutive ops ending at `op_number`."""

    cluster: int
    epoch: int
    view: int
    replica: int
    op_number: int
    commit_number: int
    entries: tuple[LogEntry, ...]
    # The primary's latest read confirmation round (`zvsr.protocol.reads`); backups echo it in their PrepareOk.
    read_round: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PrepareOk:
    """§4.1 PREPAREOK: the sender holds every op up to `op_number` of this view's log.

    `read_round` echoes the round of the Prepare or Commit this answers (0: it answers neither): proof that the
    sender was a backup in normal status in this view after the primary sent that round (`zvsr.protocol.reads`).
    """

    cluster: int
    epoch: int
    view: int
    replica: int
    op_number: int
    read_round: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    """§4.1 COMMIT; doubles as the primary's heartbeat (rule 4), also published on PUB/SUB.

    `op_number` is the primary's op_number so an idle backup can notice it is missing a tail (repair, rule 11).
    """

    cluster: int
    epoch: int
    view: int
    replica: int
    commit_number: int
    op_number: int
    read_round: int = 0  # as in Prepare


@dataclass(frozen=True, slots=True, kw_only=True)
class StartViewChange:
    """§4.2 STARTVIEWCHANGE for the new view `view`."""

    cluster: int
    epoch: int
    view: int
    replica: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DoViewChange:
    """§4.2 DOVIEWCHANGE: the sender's log, last normal view (v'), op_number and commit_number.

    `log` is the part of the log the sender keeps: ops op_number - len(log) + 1 .. op_number. Ops before it are
    committed and folded into the sender's snapshot (the same holds for StartView and RecoveryResponse).
    """

    cluster: int
    epoch: int
    view: int
    replica: int
    last_normal_view: int
    op_number: int
    commit_number: int
    log: tuple[LogEntry, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StartView:
    """§4.2 STARTVIEW from the new primary: the log of the new view."""

    cluster: int
    epoch: int
    view: int
    replica: int
    op_number: int
    commit_number: int
    log: tuple[LogEntry, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetState:
    """§5.2 GETSTATE: the sender has the log of `view` up to `op_number` and asks for what follows."""

    cluster: int
    epoch: int
    view: int
    replica: int
    op_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NewState:
    """§5.2 NEWSTATE: `entries` follow the requester's op_number; at most a bounded chunk of them."""

    cluster: int
    epoch: int
    view: int
    replica: int
    op_number: int
    commit_number: int
    entries: tuple[LogEntry, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovery:
    """§4.3 RECOVERY: a replica that lost its memory asks for state; `nonce` ties responses to this attempt.

    `view` is 0: a recovering replica does not know the current view.
    """

    cluster: int
    epoch: int
    view: int
    replica: int
    nonce: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryResponse:
    """§4.3 RECOVERYRESPONSE; `log`, `op_number`, `commit_number` are present only from the primary of `view`."""

    cluster: int
    epoch: int
    view: int
    replica: int
    nonce: int
    log: tuple[LogEntry, ...] | None
    op_number: int | None
    commit_number: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetSnapshot:
    """Ask the primary of `view` for the bytes of its snapshot `snapshot_op` from `offset` on.

    Sent by a replica whose log ends before the primary's oldest kept op (the primary answered its GetState
    with a SnapshotChunk), and by a recovering replica (`snapshot_op` 0: "your latest"). Not in the paper,
    whose replicas keep the whole log (§5.3 only sketches checkpoints).
    """

    cluster: int
    epoch: int
    view: int
    replica: int
    snapshot_op: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotChunk:
    """A bounded piece of the primary's snapshot at `snapshot_op`: `data` is bytes `offset`.. of `size`.

    `checksum` (blake2b-16 of the whole snapshot) lets the receiver refuse a snapshot that did not arrive
    whole. A chunk at offset 0 of another snapshot than the one being fetched restarts the download.
    """

    cluster: int
    epoch: int
    view: int
    replica: int
    snapshot_op: int
    size: int
    checksum: bytes
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StartEpoch:
    """§7.1 STARTEPOCH: epoch `epoch` started after op `op_number` (the reconfiguration op, committed) with the
    configuration `membership` (`zvsr.protocol.membership` encoding). Sent by replicas of the previous epoch to
    the members that join, until they answer EpochStarted, and by any replica to a peer it hears from in an
    older epoch (§7.2's laggards): the receiver fetches the committed ops it lacks instead of acting on its
    old epoch."""

    cluster: int
    epoch: int
    view: int
    replica: int
    op_number: int
    membership: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochStarted:
    """§7.1 EPOCHSTARTED: the sender, a member of `epoch`, holds the log up to the epoch's start. A replica
    leaving the configuration stops once a quorum of the new one has said so."""

    cluster: int
    epoch: int
    view: int
    replica: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StartViewChangeProbe:
    """Asks the others whether they lost the primary of `view` too (not in the paper: docs/design.md, "Pre-vote").

    A backup, normal in `view`, sends it (and re-sends it) while it has not heard from that view's primary for a
    primary timeout. It starts the view change to view + 1 only once a quorum, itself included, has said so
    within a primary timeout, so a replica that is cut off never raises its view alone. Receiving one never
    changes a view; it is a vote of no confidence that expires.
    """

    cluster: int
    epoch: int
    view: int
    replica: int


ReplicaMessage = (
    Prepare
    | PrepareOk
    | Commit
    | StartViewChange
    | DoViewChange
    | StartView
    | GetState
    | NewState
    | Recovery
    | RecoveryResponse
    | GetSnapshot
    | SnapshotChunk
    | StartEpoch
    | EpochStarted
    | StartViewChangeProbe
)

REPLICA_MESSAGES: Final = (
    Prepare,
    PrepareOk,
    Commit,
    StartViewChange,
    DoViewChange,
    StartView,
    GetState,
    NewState,
    Recovery,
    RecoveryResponse,
    GetSnapshot,
    SnapshotChunk,
    StartEpoch,
    EpochStarted,
    StartViewChangeProbe,
)


# --- client <-> replica ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """§4.1 REQUEST. A client has at most one request outstanding; retries reuse `request_number`."""

    client_id: int
    request_number: int
    operation: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """§4.1 REPLY: the result of executing the request, from the primary of `view`."""

    view: int
    client_id: int
    request_number: int
    result: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect:
    """Not the primary: `primary` is the replica this one believes is primary of `view` (ARCHITECTURE §4)."""

    view: int
    primary: int
    client_id: int
    request_number: int


# Error codes a replica (and later the proxy) may answer with. Each is a clear, retryable-or-not reason.
ERROR_UNAVAILABLE: Final = "unavailable"  # primary has not heard from f peers recently: rule 10
ERROR_BUSY: Final = "busy"  # a named bound on queued work is reached
ERROR_BAD_REQUEST: Final = "bad_request"  # the request itself is malformed (never retried)
ERROR_VIEW_CHANGE: Final = "view_change"  # no primary right now; retry shortly
ERROR_TIMEOUT: Final = "timeout"  # used by clients/proxies: no answer in time
# The cluster no longer remembers this client_id (its client-table entry was evicted): it cannot tell a retry
# from a new request, so it executes neither. Never retried; the client starts a new session (a new client_id).
ERROR_SESSION_EXPIRED: Final = "session_expired"
ERROR_CODES: Final = frozenset(
    {ERROR_UNAVAILABLE, ERROR_BUSY, ERROR_BAD_REQUEST, ERROR_VIEW_CHANGE, ERROR_TIMEOUT, ERROR_SESSION_EXPIRED}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    """A request was not executed (and, for this request_number, was not put in the log by this answer)."""

    view: int
    client_id: int
    request_number: int
    code: str
    message: str


ClientReply = Reply | Redirect | Error
CLIENT_MESSAGES: Final = (Request, Reply, Redirect, Error)
