"""What the core hands its driver after each step, and the order in which the driver must act on it.

The contract (ARCHITECTURE §2; etcd-io/raft's Ready in spirit), followed by the ZeroMQ runtime and the simulator:
1. persist `persist`, in order, durably where a data dir is configured;
2. only then send `messages` (PrepareOk and view-change votes depend on step 1);
3. only then send `replies` to clients (the state machine has already applied the committed operations in
   memory; no effect of that leaves the process before step 1 is done), and act on `executed` and `restored`
   (the watch stream publishes them; the simulator checks them);
4. call `Replica.ready()` again next step (taking a Ready clears it: that is the "done").

`executed` and `restored` say everything the core did to the state machine in the step, in order: every op it
applied, with its op number and result (`Executed`), and every snapshot it installed over the app state
(`restored`: the snapshot's op_number). Ops applied after a restore follow the snapshot's op_number; ops
before it precede it. Nothing outside the core needs to wrap the app to learn what happened (raft's
`Ready.CommittedEntries` plays the same part). The list is bounded by what one step can execute: the
pipeline (`pipeline_ops_max`) in normal operation, the kept log (two snapshot intervals) at a restart.
Because every message in a Ready is sent after all of its records are durable, "PrepareOk only after the
prepare is durable" and "votes only after the view state is durable" hold by construction, and a driver may
batch several Readys behind one fsync (group commit) as long as it keeps the order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from zvsr.protocol.messages import ClientReply, LogEntry, ReplicaMessage

BROADCAST: Final = -1  # destination meaning "every other replica"


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistLog:
    """The log from `op_number_first` on is replaced by `entries` (an append, a truncation, or both)."""

    op_number_first: int
    entries: tuple[LogEntry, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistViewState:
    """The superblock fields that must never go backwards across a restart (rule 12)."""

    view_number: int
    last_normal_view: int
    commit_number: int
    epoch: int = 0  # the view is a view of this epoch: (epoch, view_number) never goes backwards


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistSnapshot:
    """The state after op `op_number` is `data` (a `zvsr.protocol.snapshots` encoding); the log before op
    `log_base + 1` may be dropped (`log_base <= op_number`). Comes before any PersistLog of the same Ready: a
    snapshot installed from the primary may be followed by log that starts right after it."""

    op_number: int
    log_base: int
    data: bytes


PersistRecord = PersistLog | PersistViewState | PersistSnapshot


# One op the core applied to the state machine in a step: (op_number, its log entry, the result). A plain tuple,
# not a named one: one is built per committed op on every replica, and a NamedTuple's constructor costs ~10x.
Executed = tuple[int, LogEntry, bytes]


@dataclass(frozen=True, slots=True)
class Envelope:
    to: int  # a replica id, or BROADCAST (every other member of the sender's epoch: `ReplicaState.peers`)
    message: ReplicaMessage


@dataclass(slots=True)
class Ready:
    persist: list[PersistRecord] = field(default_factory=list)
    messages: list[Envelope] = field(default_factory=list)
    replies: list[ClientReply] = field(default_factory=list)
    executed: list[Executed] = field(default_factory=list)
    restored: list[int] = field(default_factory=list)  # op_number of each snapshot installed, in order
    # Reads answered without a log entry (`zvsr.protocol.reads`), among `replies`: (client_id, request_number,
    # the op the state was at). Nothing to persist or apply; the simulator's checker tells them from writes.
    reads: list[tuple[int, int, int]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.persist or self.messages or self.replies or self.executed or self.restored)


class Outbox:
    """What the core has produced since its driver last took a Ready (`Replica.ready`).

    Messages, replies and executed ops are collected as they happen. What to persist is collected as marks —
    a snapshot, the first log position that changed, whether the view state changed — and turned into records
    only when the Ready is taken (`ReplicaState.ready`), so a step that appends a thousand ops writes one
    PersistLog.
    """

    __slots__ = ("ready", "snapshot", "log_from", "view_state")

    def __init__(self) -> None:
        self.ready = Ready()
        self.snapshot: PersistSnapshot | None = None
        self.log_from: int | None = None  # the first op whose log entry changed (appended or replaced)
        self.view_state = False

    def log_changed_from(self, op_number: int) -> None:
        if self.log_from is None or op_number < self.log_from:
            self.log_from = op_number
