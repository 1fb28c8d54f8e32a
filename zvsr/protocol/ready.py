"""What the core hands its driver after each step, and the order in which the driver must act on it.

The contract (ARCHITECTURE §2; etcd-io/raft's Ready in spirit), followed by the ZeroMQ runtime and the simulator:
1. persist `persist`, in order, durably where a data dir is configured;
2. only then send `messages` (PrepareOk and view-change votes depend on step 1);
3. only then send `replies` to clients (the state machine has already applied the committed operations in
   memory; no effect of that leaves the process before step 1 is done);
4. call `Replica.ready()` again next step (taking a Ready clears it: that is the "done").
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


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistSnapshot:
    """The state after op `op_number` is `data` (a `zvsr.protocol.snapshot` encoding); the log before op
    `log_base + 1` may be dropped (`log_base <= op_number`). Comes before any PersistLog of the same Ready: a
    snapshot installed from the primary may be followed by log that starts right after it."""

    op_number: int
    log_base: int
    data: bytes


PersistRecord = PersistLog | PersistViewState | PersistSnapshot


@dataclass(frozen=True, slots=True)
class Envelope:
    to: int  # a replica index, or BROADCAST
    message: ReplicaMessage


@dataclass(slots=True)
class Ready:
    persist: list[PersistRecord] = field(default_factory=list)
    messages: list[Envelope] = field(default_factory=list)
    replies: list[ClientReply] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.persist or self.messages or self.replies)
