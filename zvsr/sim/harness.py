"""A hand-driven cluster for scenario tests: replicas joined by an explicit message queue.

Nothing happens unless the test says so: `deliver()` moves queued messages (optionally filtered), `tick()`
advances logical time, `partition()` makes the network drop. Each step follows the core's output contract
(persist, then send, then reply) and checks every replica's invariants, so a scenario reads as a story:

    cluster = Cluster(3)
    cluster.request(client_id=1, request_number=1, op=b"x")   # to the primary of view 0
    cluster.deliver_all()
    assert cluster.replicas[1].commit_number == 1
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from zvsr.protocol.cluster_time import Clock
from zvsr.protocol.config import Config
from zvsr.protocol.membership import Member, is_reconfiguration, reconfiguration_operation
from zvsr.protocol.messages import ClientReply, LogEntry, ReplicaMessage, Request, StartViewChangeProbe
from zvsr.protocol.ready import BROADCAST, Executed
from zvsr.protocol.replica import DurableState, Replica, Status


class EchoLog:
    """A tiny deterministic state machine: remembers every operation; the result is the op count so far.
    Operations starting with `READ_PREFIX` are read-only: answered without a log entry, with the count so far.

    It has one timer, for cluster-time scenarios: with `due_at` set, `due` answers `TIMER_OP` once cluster time
    reaches it, and applying `TIMER_OP` clears it (as a lease expiry would)."""

    TIMER_OP = b"timer"
    READ_PREFIX = b"read"  # read-only ops (zvsr.protocol.reads): their result is the op count so far


    def __init__(self) -> None:
        self.applied: list[bytes] = []
        self.stamps: list[int] = []  # the cluster time of every op applied
        self.due_at: int | None = None
        self.due_asked: list[int] = []  # the cluster times `due` was asked at

    def apply(self, entry: LogEntry) -> bytes:
        self.applied.append(entry.operation)
        self.stamps.append(entry.timestamp)
        if entry.operation == self.TIMER_OP:
            self.due_at = None
        return str(len(self.applied)).encode()

    def due(self, timestamp_ns: int) -> bytes | None:
        self.due_asked.append(timestamp_ns)
        if self.due_at is not None and timestamp_ns >= self.due_at:
            return self.TIMER_OP
        return None

    def read_only(self, operation: bytes) -> bool:
        return operation.startswith(self.READ_PREFIX)

    def query(self, operation: bytes) -> bytes:
        return str(len(self.applied)).encode()

    def snapshot(self) -> bytes:
        return b"".join(len(op).to_bytes(4, "big") + op for op in self.applied)

    def restore(self, data: bytes) -> None:
        applied, offset = [], 0
        while offset < len(data):
            length = int.from_bytes(data[offset : offset + 4], "big")
            applied.append(data[offset + 4 : offset + 4 + length])
            offset += 4 + length
        self.applied = applied


@dataclass(slots=True)
class InFlight:
    source: int
    to: int
    message: ReplicaMessage


def matching(
    kind: type | tuple[type, ...] | None = None, *, source: int | None = None, to: int | None = None
) -> Callable[[InFlight], bool]:
    """A filter for `deliver` / `drop` / `queued`: messages of `kind` from `source` to `to` (None: any)."""

    def where(item: InFlight) -> bool:
        return (
            (kind is None or isinstance(item.message, kind))
            and (source is None or item.source == source)
            and (to is None or item.to == to)
        )

    return where


@dataclass
class Cluster:
    replica_count: int
    seed: int = 0
    config: Config | None = None
    queue: list[InFlight] = field(default_factory=list)
    sent: list[InFlight] = field(default_factory=list)  # every message ever queued, for assertions
    replies: list[ClientReply] = field(default_factory=list)
    blocked: set[tuple[int, int]] = field(default_factory=set)
    trace: list[str] = field(default_factory=list)
    incarnations: dict[int, int] = field(default_factory=dict)
    # What each replica's Readys reported in its current incarnation: ops executed, snapshots restored.
    executed: dict[int, list[Executed]] = field(default_factory=dict)
    restored: dict[int, list[int]] = field(default_factory=dict)
    # Replica index -> its monotonic clock (ns) for cluster time; a replica without one uses its ticks.
    clocks: dict[int, Clock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.config is None:
            self.config = Config(replica_count=self.replica_count)
        self.replicas: list[Replica] = [self._new_replica(i) for i in range(self.replica_count)]
        self.apps: list[EchoLog] = [r.state_machine for r in self.replicas]  # type: ignore[misc]
        for i in range(self.replica_count):
            self.flush(i)

    def _new_replica(
        self, index: int, *, recovering: bool = False, durable: DurableState | None = None, joining: bool = False
    ) -> Replica:
        assert self.config is not None
        # Each incarnation gets its own PRNG stream: a restarted replica must not reuse its recovery nonce.
        self.incarnations[index] = self.incarnations.get(index, 0) + 1
        self.executed[index], self.restored[index] = [], []
        return Replica(
            config=self.config,
            replica=index,
            state_machine=EchoLog(),
            prng=random.Random(f"{self.seed}/{index}/{self.incarnations[index]}"),
            recovering=recovering,
            durable=durable,
            logger=self.trace.append,
            clock=self.clocks.get(index),
            joining=joining,
        )

    def add_replica(self) -> int:
        """Start a brand-new replica (the next id), empty and joining: it waits to be told of an epoch that
        includes it (§7). Returns its id."""
        index = len(self.replicas)
        self.replicas.append(self._new_replica(index, joining=True))
        self.apps.append(self.replicas[index].state_machine)  # type: ignore[arg-type]
        self.flush(index)
        return index

    def reconfigure(
        self, members: tuple[int, ...], *, client_id: int = 77, request_number: int = 1, to: int | None = None
    ) -> None:
        """An admin client asks the primary (or `to`) for the configuration `members`, from its current epoch."""
        index = self.replicas[0].primary_index() if to is None else to
        epoch = self.replicas[index].epoch
        operation = reconfiguration_operation(epoch, tuple(Member(i) for i in members))
        self.request(client_id=client_id, request_number=request_number, op=operation, to=index)

    # --- driving -----------------------------------------------------------------------------------------

    def flush(self, index: int) -> None:
        """Follow the output contract for one replica: (persist: in memory here) then send, then reply."""
        replica = self.replicas[index]
        ready = replica.ready()
        for envelope in ready.messages:
            targets = replica.peers if envelope.to == BROADCAST else (envelope.to,)
            for to in targets:
                self.queue.append(InFlight(index, to, envelope.message))
                self.sent.append(self.queue[-1])
        self.replies.extend(ready.replies)
        self.executed[index].extend(ready.executed)
        self.restored[index].extend(ready.restored)
        replica.invariants()

    def request(self, *, client_id: int, request_number: int, op: bytes = b"op", to: int | None = None) -> None:
        index = self.replicas[0].primary_index() if to is None else to
        self.replicas[index].on_request(Request(client_id=client_id, request_number=request_number, operation=op))
        self.flush(index)

    def deliver(self, where: Callable[[InFlight], bool] = lambda m: True, *, limit: int | None = None) -> int:
        """Deliver queued messages matching `where` (others stay queued). Returns how many were delivered."""
        delivered = 0
        keep: list[InFlight] = []
        pending, self.queue = self.queue, []
        for item in pending:
            if (limit is None or delivered < limit) and where(item):
                delivered += 1
                if (item.source, item.to) in self.blocked or self.replicas[item.to].stopped:
                    continue  # a stopped replica's process has exited
                self.replicas[item.to].on_message(item.message)
                self.flush(item.to)
            else:
                keep.append(item)
        self.queue = keep + self.queue
        return delivered

    def deliver_all(self, *, where: Callable[[InFlight], bool] = lambda m: True, rounds: int = 100) -> None:
        """Deliver matching messages, and those they cause, until none match (others stay queued)."""
        for _ in range(rounds):
            if not self.deliver(where):
                return
        raise AssertionError("messages still flowing after many rounds")

    def queued(
        self, kind: type | tuple[type, ...] | None = None, *, source: int | None = None, to: int | None = None
    ) -> list[InFlight]:
        """The queued messages of `kind` from `source` to `to` (None: any), oldest first."""
        where = matching(kind, source=source, to=to)
        return [item for item in self.queue if where(item)]

    def inject(self, to: int, message: ReplicaMessage) -> None:
        """Hand replica `to` a message built by the test (a crafted, stale or forged one), then flush it."""
        self.replicas[to].on_message(message)
        self.flush(to)

    def check_applied(self) -> None:
        """Every replica's application executed exactly the operations of log[:commit_number], in order (those
        folded into a snapshot are checked by count: their entries are gone)."""
        for index, replica in enumerate(self.replicas):
            base = replica.log_base
            committed = [entry.operation for entry in replica.log[: replica.commit_number - base]]
            applied = self.apps[index].applied
            # Reconfigurations are executed by the core, not the app (§7: no up-call).
            app_ops = [op for op in committed if not is_reconfiguration(op)]
            if len(app_ops) == len(committed) and not replica.epoch:
                assert len(applied) == replica.commit_number, f"r{index} applied {len(applied)} ops"
            assert applied[len(applied) - len(app_ops) :] == app_ops, f"r{index} applied state != its log"
            self.check_reported(index)

    def check_reported(self, index: int) -> None:
        """What replica `index` reported executing (its Readys' `executed` and `restored`, this incarnation)
        is exactly what its app did: ops in order, each once, after the last restore; up to commit_number."""
        replica, app = self.replicas[index], self.apps[index]
        executed, restored = self.executed[index], self.restored[index]
        start = restored[-1] if restored else 0
        after = [(op_number, entry, result) for op_number, entry, result in executed if op_number > start]
        numbers = [op_number for op_number, _, _ in after]
        assert numbers == list(range(start + 1, replica.commit_number + 1)), (
            f"r{index} reported executing {numbers} after op {start}"
        )
        app_ops = [entry.operation for _, entry, _ in after if not is_reconfiguration(entry.operation)]
        assert app_ops == app.applied[len(app.applied) - len(app_ops) :], f"r{index} report != its app"
        if not any(is_reconfiguration(entry.operation) for _, entry, _ in executed):
            assert all(result == str(n).encode() for n, _, result in after), f"r{index} reported a wrong result"

    def drop(self, where: Callable[[InFlight], bool] = lambda m: True) -> int:
        before = len(self.queue)
        self.queue = [m for m in self.queue if not where(m)]
        return before - len(self.queue)

    def tick(self, count: int = 1, *, only: set[int] | None = None) -> None:
        for _ in range(count):
            for i, replica in enumerate(self.replicas):
                if (only is None or i in only) and not replica.stopped:
                    replica.tick()
                    self.flush(i)

    def tick_until(self, index: int, predicate: Callable[[], bool], *, ticks_max: int = 1000) -> int:
        """Tick only replica `index` until `predicate` holds (nothing is delivered); returns ticks taken."""
        for ticks in range(ticks_max + 1):
            if predicate():
                return ticks
            self.tick(only={index})
        raise AssertionError(f"condition not reached within {ticks_max} ticks of r{index}")

    def time_out(self, index: int, *, joined_by: set[int], ticks_max: int = 1000) -> int:
        """Replica `index` runs out of patience — a backup with its primary, or a replica with its view change —
        and the replicas `joined_by` have no primary either (pre-vote, docs/design.md): `index` is ticked alone
        until one tick before its timeout fires, handed a StartViewChangeProbe of its view from each of
        `joined_by` — twice, a re-send period apart, as replicas that keep asking send them — and ticked once
        more, so it starts a view change (the next one) if they make a quorum with it. Their own state is the
        scenario's business (they may be cut off by now). Returns the ticks taken."""
        assert self.config is not None
        replica = self.replicas[index]
        timer = replica.timers.view_change if replica.status is Status.VIEW_CHANGE else replica.timers.primary
        resend = self.config.view_change_resend_ticks
        ticks = self.tick_until(index, lambda: timer.elapsed >= timer.after - 1 - resend, ticks_max=ticks_max)
        for repeat in range(2):
            header = {"cluster": self.config.cluster, "epoch": self.config.epoch, "view": replica.view_number}
            for other in sorted(joined_by):
                self.inject(index, StartViewChangeProbe(**header, replica=other))
            if repeat == 0:
                ticks += self.tick_until(index, lambda: timer.elapsed >= timer.after - 1, ticks_max=ticks_max)
        self.tick(only={index})
        return ticks + 1

    def block(self, source: int, to: int) -> None:
        """Messages from `source` to `to` are dropped from now on (one way: the reverse still flows)."""
        self.blocked.add((source, to))

    def partition(self, a: set[int], b: set[int]) -> None:
        """Messages between the two sides are dropped from now on (both directions)."""
        for x in a:
            for y in b:
                self.blocked.add((x, y))
                self.blocked.add((y, x))

    def heal(self) -> None:
        self.blocked.clear()

    def crash_and_recover(self, index: int) -> None:
        """Diskless crash: a fresh replica, in recovering status, takes the index."""
        self.drop(lambda m: m.to == index or m.source == index)
        self.replicas[index] = self._new_replica(index, recovering=True)
        self.apps[index] = self.replicas[index].state_machine  # type: ignore[call-overload]
        self.flush(index)

    def crash_and_restart_from_disk(self, index: int, durable: DurableState) -> None:
        """Crash with the disk kept: a fresh process reads back `durable` (what the test says was persisted)."""
        self.drop(lambda m: m.to == index or m.source == index)
        self.replicas[index] = self._new_replica(index, durable=durable)
        self.apps[index] = self.replicas[index].state_machine  # type: ignore[call-overload]
        self.flush(index)

    def durable_state(self, index: int) -> DurableState:
        """What replica `index` has persisted so far, per the records its Readys carried (a perfect disk)."""
        replica = self.replicas[index]
        return DurableState(
            view_number=replica.view_number,
            last_normal_view=replica.last_normal_view,
            commit_number=replica.commit_number,
            log=tuple(replica.log),
            log_base=replica.log_base,
            snapshot=replica.snapshots.data if replica.snapshot_op else None,
            epoch=replica.epoch,
        )

    def run_until(self, predicate: Callable[[], bool], *, ticks_max: int = 2000) -> None:
        """Tick and deliver everything until `predicate` holds (a bounded wait: fails loudly)."""
        for _ in range(ticks_max):
            self.deliver_all()
            if predicate():
                return
            self.tick()
        raise AssertionError("condition not reached")
