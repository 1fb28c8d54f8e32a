"""Snapshot scenarios shared by `test_protocol_snapshots.py` and `test_snapshot_mutations.py` — a helpers
module, not a test module (STYLE rule 15).

Each scenario is a plain function that raises AssertionError when the snapshot rule it pins is broken: the test
module runs it as a test, and `test_snapshot_mutations.py` runs it with a flaw re-introduced into the core and
checks that it fails. The helpers (a cluster that keeps what its Readys persisted, committing ops, idling, ...)
are used by both.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TypeVar

from scenarios import counted, header, operations, view_change_to_one

from zvsr.constants import RECOVERY_STALL_ROUNDS
from zvsr.protocol import snapshots
from zvsr.protocol.config import Config
from zvsr.protocol.messages import (
    Commit,
    GetSnapshot,
    GetState,
    NewState,
    Prepare,
    PrepareOk,
    Recovery,
    RecoveryResponse,
    ReplicaMessage,
    Reply,
    SnapshotChunk,
    StartView,
)
from zvsr.protocol.ready import PersistLog, PersistRecord, PersistSnapshot, Ready
from zvsr.protocol.replica import Replica, Status
from zvsr.sim.harness import Cluster, matching
from zvsr.sim.simulator import Disk

# --- helpers ------------------------------------------------------------------------------------------------

# --- helpers ------------------------------------------------------------------------------------------------


def snapshot_config(*, interval: int = 3, chunk: int = 16, **overrides: int) -> Config:
    """Three replicas, no jitter on the primary timeout (ticks count exactly), snapshots every `interval` ops
    sent in chunks of `chunk` bytes."""
    return Config(
        replica_count=3,
        primary_timeout_jitter_ticks=0,
        snapshot_interval_ops=interval,
        snapshot_chunk_bytes=chunk,
        **overrides,
    )


@dataclass
class DiskCluster(Cluster):
    """A Cluster that also keeps what every replica's Readys asked to persist: the records themselves, and a disk
    written from them the way the node's storage writes them (`zvsr.sim.simulator.Disk`)."""

    persisted: dict[int, list[PersistRecord]] = field(default_factory=dict)
    disks: dict[int, Disk] = field(default_factory=dict)

    def flush(self, index: int) -> None:
        replica = self.replicas[index]
        real = replica.ready

        def recorded() -> Ready:
            out = real()
            self.persisted.setdefault(index, []).extend(out.persist)
            self.disks.setdefault(index, Disk()).apply(out.persist)
            return out

        replica.ready = recorded  # type: ignore[method-assign]
        try:
            super().flush(index)
        finally:
            del replica.ready

    def crash_and_recover(self, index: int) -> None:
        self.disks[index] = Disk()  # a diskless crash: the replica comes back with nothing
        super().crash_and_recover(index)


def commit_ops(cluster: Cluster, first: int, last: int, *, to: int = 0, among: set[int] | None = None) -> None:
    """The primary `to` commits ops `first`..`last` one at a time, op n for client 1 + n % 2 (two clients
    alternate, request numbers counting up), operation b"op<n>"; blocked replicas miss them. With `among`, only
    messages between those replicas move (the others stay queued)."""
    for n in range(first, last + 1):
        cluster.request(client_id=1 + n % 2, request_number=(n + 1) // 2, op=b"op%d" % n, to=to)
        if among is None:
            cluster.deliver_all()
        else:
            cluster.deliver_all(where=lambda item: item.source in among and item.to in among)


def heartbeat(cluster: Cluster, primary: int = 0) -> None:
    """The primary's Commit heartbeat goes out and everything it causes is delivered."""
    cluster.tick(cluster.replicas[primary].config.heartbeat_ticks, only={primary})
    cluster.deliver_all()


def idle(cluster: Cluster, ticks: int, *, frozen: int) -> None:
    """`ticks` ticks of every replica but `frozen` (a process that stopped), delivering everything among the
    others after each; what is sent to `frozen` is lost."""
    others = set(range(cluster.replica_count)) - {frozen}
    for _ in range(ticks):
        cluster.tick(only=others)
        cluster.drop(matching(to=frozen))
        cluster.deliver_all()


M = TypeVar("M", bound=ReplicaMessage)


def sent(cluster: Cluster, kind: type[M], *, source: int | None = None, to: int | None = None) -> list[M]:
    """Every message of `kind` ever queued from `source` to `to` (None: any), oldest first."""
    where = matching(kind, source=source, to=to)
    return [item.message for item in cluster.sent if where(item)]  # type: ignore[misc]


def queued(cluster: Cluster, kind: type[M], *, source: int | None = None, to: int | None = None) -> list[M]:
    """The queued messages of `kind`, oldest first (typed: `Cluster.queued` gives InFlight items)."""
    return [item.message for item in cluster.queued(kind, source=source, to=to)]  # type: ignore[misc]


def same_state(cluster: Cluster, a: int, b: int) -> None:
    """Replicas `a` and `b` executed the same ops and hold the same client table."""
    ra, rb = cluster.replicas[a], cluster.replicas[b]
    assert ra.commit_number == rb.commit_number, f"r{a} at {ra.commit_number}, r{b} at {rb.commit_number}"
    assert cluster.apps[a].applied == cluster.apps[b].applied, f"r{a} and r{b} executed different ops"
    assert table(ra) == table(rb), f"r{a} and r{b} hold different client tables"


def status(replica: Replica) -> Status:
    """The replica's status, read through a call: it changes under the steps a scenario takes."""
    return replica.status


def table(replica: Replica) -> dict[int, tuple[int, bytes]]:
    return {client: (e.request_number, e.result) for client, e in replica.client_table.items()}


def ten_ops_without(cluster: Cluster, behind: int) -> None:
    """Replica `behind` is cut off while primary 0 commits ops 1..10 with the third replica: with interval 3
    the others snapshot at ops 3, 6 and 9 and keep the log after op 6."""
    others = {0, 1, 2} - {behind}
    cluster.partition({behind}, others)
    commit_ops(cluster, 1, 10)
    primary = cluster.replicas[0]
    assert (primary.commit_number, primary.snapshot_op, primary.log_base) == (10, 9, 6)
    assert cluster.replicas[behind].op_number == 0


ALL_OPS = [b"op%d" % n for n in range(1, 11)]


# --- 1. cadence: a snapshot every interval, the log kept from the previous one --------------------------------


def scenario_snapshot_cadence() -> None:
    """Interval 3, ten ops committed everywhere: every replica snapshotted at ops 3, 6 and 9, holds snapshot 9,
    and dropped the log up to its previous snapshot (op 6) from memory; its Ready asked the disk for
    PersistSnapshot(9, 9, data): the durable log starts at the snapshot (only memory keeps ops 7..9 for peers),
    the data decoding to op 9, the app state after op 9 and both clients' latest requests up to op 9."""
    cluster = DiskCluster(3, config=snapshot_config())
    commit_ops(cluster, 1, 10)
    heartbeat(cluster)
    for index, replica in enumerate(cluster.replicas):
        assert (replica.commit_number, replica.snapshot_op, replica.log_base) == (10, 9, 6), f"r{index}"
        assert replica.counters.get("snapshot taken", 0) == 3
        assert [e.op_number for e in replica.log] == [7, 8, 9, 10]
        assert replica.entry(6) is None and replica.entry(1) is None
        entry = replica.entry(7)
        assert entry is not None and entry.operation == b"op7"
        snapshot_records = [r for r in cluster.persisted[index] if isinstance(r, PersistSnapshot)]
        assert [(r.op_number, r.log_base) for r in snapshot_records] == [(3, 3), (6, 6), (9, 9)]
        last = snapshots.decode(snapshot_records[-1].data)
        assert last.op_number == 9 and snapshot_records[-1].data == replica.snapshots.data
        # op 9 is client 2's request 5, op 8 client 1's request 4; the result is the op count (EchoLog)
        assert sorted(last.client_table) == [(1, 0, 4, b"8"), (2, 0, 5, b"9")]  # implicit sessions: no nonce
        restored = type(cluster.apps[index])()
        restored.restore(last.app_state)
        assert restored.applied == ALL_OPS[:9]
        disk = cluster.disks[index]
        assert disk.snapshot == replica.snapshots.data and disk.log_base == 9
        assert [e.op_number for e in disk.log] == [10] and disk.log == replica.log[3:]
    cluster.check_applied()


def scenario_installed_snapshot_is_persisted_before_the_log_after_it() -> None:
    """A backup installing snapshot 9 asks its storage for PersistSnapshot(9, log_base 9) and, after it in the
    same Ready, the log from op 10 on (the storage writes in order; no log record ever precedes the snapshot
    it follows)."""
    cluster = DiskCluster(3, config=snapshot_config())
    ten_ops_without(cluster, behind=2)
    cluster.heal()
    heartbeat(cluster)  # replica 2 installs snapshot 9, then fetches op 10
    kinds = [type(r) for r in cluster.persisted[2]]
    assert PersistSnapshot in kinds
    at = kinds.index(PersistSnapshot)
    assert all(kind is not PersistLog for kind in kinds[:at]), "log written before the snapshot it follows"
    record = cluster.persisted[2][at]
    assert isinstance(record, PersistSnapshot) and (record.op_number, record.log_base) == (9, 9)
    after = cluster.persisted[2][at + 1]
    assert isinstance(after, PersistLog) and after.op_number_first == 10


# --- 2. a backup behind the log's start catches up by snapshot transfer, in chunks ---------------------------


def scenario_catch_up_by_snapshot_in_chunks() -> None:
    """Replica 2 is cut off through three snapshots. Healed, it hears the heartbeat (op 10), asks GetState(0):
    op 0 is folded into primary 0's snapshot, so the answer is SnapshotChunk(9, offset 0) of 16 bytes; it asks
    for the rest with GetSnapshot, installs snapshot 9 once whole, fetches op 10 with GetState(9)."""
    cluster = Cluster(3, config=snapshot_config(chunk=16))
    ten_ops_without(cluster, behind=2)
    cluster.heal()
    heartbeat(cluster)
    backup = cluster.replicas[2]
    same_state(cluster, 0, 2)
    assert backup.commit_number == 10 and cluster.apps[2].applied == ALL_OPS
    assert (backup.snapshot_op, backup.log_base, operations(backup.log)) == (9, 9, [b"op10"])
    size = len(cluster.replicas[0].snapshots.data)
    chunks = sent(cluster, SnapshotChunk, source=0, to=2)
    assert len(chunks) == -(-size // 16) >= 3
    assert [c.offset for c in chunks] == list(range(0, size, 16))
    assert {(c.snapshot_op, c.size) for c in chunks} == {(9, size)}
    asks = sent(cluster, GetSnapshot, source=2, to=0)
    assert len(asks) == len(chunks) - 1 >= 2, "the rest of the snapshot is asked for with GetSnapshot"
    assert [a.offset for a in asks] == [c.offset for c in chunks[1:]]
    assert [m.op_number for m in sent(cluster, GetState, source=2)] == [0, 9]
    assert cluster.replicas[0].counters.get("on_get_state: snapshot sent", 0) == 1
    assert backup.counters.get("snapshot installed", 0) == 1
    cluster.check_applied()
    # and it is a full member again: the next op commits with its acknowledgement alone
    cluster.partition({1}, {0, 2})
    commit_ops(cluster, 11, 11)
    assert cluster.replicas[0].commit_number == 11 and backup.op_number == 11


# --- 3. the client table travels in the snapshot: no double execution ----------------------------------------


def scenario_no_double_execution_after_snapshot_install() -> None:
    """Client 7's request 1 is op 1, committed by replicas 0 and 2 while replica 1 is cut off, and folded into
    their snapshots. Replica 1 catches up by installing snapshot 9 (it never saw op 1's entry), then becomes
    primary of view 1. Client 7 retries request 1 there: it gets the cached result, b"1", and nothing
    executes again on any replica."""
    cluster = Cluster(3, config=snapshot_config())
    cluster.partition({1}, {0, 2})
    cluster.request(client_id=7, request_number=1, op=b"once", to=0)
    cluster.deliver_all()
    first = [r for r in cluster.replies if isinstance(r, Reply) and r.client_id == 7]
    assert len(first) == 1 and first[0].result == b"1"
    for n in range(2, 11):
        cluster.request(client_id=100 + n, request_number=1, op=b"op%d" % n, to=0)
        cluster.deliver_all()
    cluster.heal()
    heartbeat(cluster)
    new_primary = cluster.replicas[1]
    assert new_primary.counters.get("snapshot installed", 0) == 1 and new_primary.entry(1) is None
    assert new_primary.commit_number == 10 and len(cluster.apps[1].applied) == 10
    assert table(new_primary).get(7) == (1, b"1")
    cluster.partition({0}, {1, 2})
    view_change_to_one(cluster, without={0})
    assert new_primary.is_primary() and new_primary.view_number == 1
    cluster.replies.clear()
    cluster.request(client_id=7, request_number=1, op=b"once", to=1)
    assert [(type(r), r.result, r.view) for r in cluster.replies] == [(Reply, b"1", 1)]  # type: ignore[union-attr]
    assert new_primary.counters.get("on_request: cached reply", 0) == 1
    assert not cluster.queued(Prepare), "a request folded into the snapshot was prepared again"
    heartbeat(cluster, primary=1)
    assert [len(cluster.apps[i].applied) for i in (1, 2)] == [10, 10]
    assert cluster.apps[1].applied.count(b"once") == 1
    same_state(cluster, 1, 2)


# --- 4. no livelock: the snapshot being downloaded is pinned, and the pin expires ----------------------------


def scenario_slow_download_completes_while_the_primary_keeps_snapshotting() -> None:
    """Replica 2 downloads snapshot 9 in 8-byte chunks, one chunk per 15 ticks, while primary 0 commits three
    ops (one snapshot) between chunks. The primary keeps serving snapshot 9 and the log after it (the pin):
    the download completes, replica 2 fetches the log after op 9 and reaches the primary's commit_number."""
    config = snapshot_config(chunk=8, snapshot_pin_ticks=100)
    cluster = Cluster(3, config=config)
    ten_ops_without(cluster, behind=2)
    cluster.heal()
    cluster.tick(config.heartbeat_ticks, only={0})
    cluster.deliver(matching(Commit, to=2))
    cluster.deliver(matching(GetState, source=2))
    primary, backup = cluster.replicas[0], cluster.replicas[2]
    size = len(primary.snapshots.data)
    rounds = -(-size // 8)
    assert rounds >= 10
    next_op = 11
    for round_ in range(rounds):
        assert cluster.deliver(matching(SnapshotChunk, source=0, to=2), limit=1) == 1, f"round {round_}"
        if round_ == rounds - 1:
            break
        assert cluster.deliver(matching(GetSnapshot, source=2, to=0), limit=1) == 1
        cluster.drop(lambda item: 2 in (item.source, item.to) and not isinstance(item.message, SnapshotChunk))
        commit_ops(cluster, next_op, next_op + 2, among={0, 1})
        next_op += 3
        for _ in range(15):  # 15 < primary_timeout_ticks: replica 2 hears the primary through its chunks
            cluster.tick()
            # replica 2 only gets the one chunk; its re-asks (repair timer) and all else to or from it are lost
            cluster.drop(lambda item: 2 in (item.source, item.to) and not isinstance(item.message, SnapshotChunk))
            cluster.deliver_all(where=lambda item: 2 not in (item.source, item.to))
        assert len(cluster.queued(SnapshotChunk, to=2)) == 1
        assert primary.commit_number == next_op - 1 and primary.snapshot_op == 3 * ((next_op - 1) // 3)
        assert primary.log_base == 9, "the log after the pinned snapshot was dropped"
        assert 9 in primary.snapshots.pinned and primary.snapshots.pins[2][0] == 9
        assert backup.snapshots.download is not None and backup.snapshots.download.snapshot_op == 9, (
            "the download started over"
        )
        assert backup.status is Status.NORMAL and backup.view_number == 0
    assert (
        backup.counters.get("snapshot installed", 0) == 1
        and backup.counters.get("snapshot download started", 0) == 1
    )
    assert backup.commit_number == 9 and backup.snapshot_op == 9
    cluster.deliver_all()  # GetState(9): the log after op 9 is still at the primary
    heartbeat(cluster)
    assert primary.commit_number == next_op - 1 > 30
    same_state(cluster, 0, 2)
    cluster.check_applied()


def scenario_pin_expires_without_requests() -> None:
    """Replica 2 takes one chunk of snapshot 9 and falls silent. While the pin lives, primary 0 snapshots at
    ops 12 and 15 but keeps the log after op 9; once snapshot_pin_ticks pass without a request from replica 2,
    the next snapshot drops the pin, the pinned snapshot, and the log up to the previous snapshot."""
    config = snapshot_config(snapshot_pin_ticks=40)
    cluster = Cluster(3, config=config)
    ten_ops_without(cluster, behind=2)
    cluster.heal()
    cluster.tick(config.heartbeat_ticks, only={0})
    cluster.deliver(matching(Commit, to=2))
    cluster.deliver(matching(GetState, source=2))
    cluster.deliver(matching(SnapshotChunk, to=2))
    cluster.deliver(matching(GetSnapshot, source=2))  # the primary's last request from replica 2
    primary = cluster.replicas[0]
    asked_at = primary.snapshots.pins[2][1]
    assert primary.snapshots.pins == {2: (9, asked_at)}
    cluster.partition({2}, {0, 1})
    commit_ops(cluster, 11, 15)
    assert primary.snapshot_op == 15 and primary.log_base == 9 and 9 in primary.snapshots.pinned
    idle(cluster, config.snapshot_pin_ticks - (primary.now - asked_at), frozen=2)
    assert primary.now - asked_at == config.snapshot_pin_ticks
    commit_ops(cluster, 16, 18)  # a snapshot at op 18, exactly snapshot_pin_ticks after the last ask: pinned
    assert primary.snapshot_op == 18 and primary.log_base == 9 and 2 in primary.snapshots.pins
    idle(cluster, 1, frozen=2)
    commit_ops(cluster, 19, 21)  # one tick later: expired
    assert primary.snapshot_op == 21
    assert primary.snapshots.pins == {} and primary.snapshots.pinned == {}
    assert primary.log_base == 18 and [e.op_number for e in primary.log] == [19, 20, 21]
    # The downloader comes back asking for the rest of snapshot 9: it is gone; it gets the latest from offset 0
    cluster.heal()
    backup = cluster.replicas[2]
    assert backup.snapshots.download is not None and backup.snapshots.download.snapshot_op == 9
    cluster.tick(config.repair_ticks, only={2})
    cluster.deliver(matching(GetSnapshot, source=2))
    restart = queued(cluster, SnapshotChunk, to=2)[-1]
    assert (restart.snapshot_op, restart.offset) == (21, 0)
    cluster.deliver_all()
    heartbeat(cluster)
    same_state(cluster, 0, 2)


def scenario_download_overtaken_by_the_log_is_dropped() -> None:
    """A download that the log overtakes is abandoned, and its pin lets go of the primary's log.

    Replica 2 is cut off while ops 1..4 commit; ops 5..12 are then prepared (acknowledged by replica 1 later).
    Healed, replica 2 asks GetState(0); the answer, NewState(n=12, k=4, ops 1..12), is delayed in the network.
    Ops 5..12 commit and primary 0 snapshots at op 12, dropping the log up to op 9, so replica 2's next
    GetState(0) gets SnapshotChunk(12, offset 0): it starts downloading snapshot 12 (its next GetSnapshot is
    lost). Then the delayed NewState arrives and a heartbeat commits ops 1..12 from the log: commit_number 12,
    nothing left to download. Later one Prepare to replica 2 is lost (a gap, repaired by the primary's resend).

    Replica 2 must not keep asking for snapshot 12 (every chunk of it is refused as "not ahead of our
    commit_number"), and the primary, no longer asked for it, lets the pin expire after snapshot_pin_ticks and
    keeps at most two intervals of log."""
    config = snapshot_config(chunk=8, snapshot_pin_ticks=40)
    cluster = Cluster(3, config=config)
    primary, backup = cluster.replicas[0], cluster.replicas[2]
    cluster.partition({2}, {0, 1})
    commit_ops(cluster, 1, 4)
    for n in range(5, 13):  # prepared to replica 1; its acknowledgements are held back
        cluster.request(client_id=1 + n % 2, request_number=(n + 1) // 2, op=b"op%d" % n, to=0)
    cluster.deliver(matching(Prepare, to=1))
    cluster.drop(matching(to=2))
    cluster.heal()
    cluster.tick(config.heartbeat_ticks, only={0})
    cluster.deliver(matching(Commit, to=2))
    cluster.deliver(matching(GetState, source=2))
    assert [(m.op_number, m.commit_number) for m in queued(cluster, NewState, to=2)] == [(12, 4)]
    delayed = cluster.queued(NewState, to=2)
    cluster.queue = [item for item in cluster.queue if item not in delayed]
    cluster.deliver(matching(PrepareOk, source=1))
    assert (primary.commit_number, primary.snapshot_op) == (12, 12) and primary.log_base > 0
    cluster.drop(matching(to=2))
    cluster.tick(config.repair_ticks, only={2})
    cluster.tick(config.heartbeat_ticks, only={0})
    cluster.deliver(matching(Commit, to=2))
    cluster.deliver(matching(GetState, source=2))
    cluster.deliver(matching(SnapshotChunk, to=2))
    assert backup.snapshots.download is not None and backup.snapshots.download.snapshot_op == 12
    assert cluster.drop(matching(GetSnapshot, source=2)) == 1  # lost
    cluster.queue.extend(delayed)
    cluster.deliver(matching(NewState, to=2))
    heartbeat(cluster)
    assert backup.commit_number == 12 and cluster.apps[2].applied == [b"op%d" % n for n in range(1, 13)]
    asked_before = len(sent(cluster, GetSnapshot, source=2))

    cluster.request(client_id=50, request_number=1, op=b"gap", to=0)
    cluster.drop(matching(Prepare, to=2))
    client = 51
    for _ in range(20):  # 200 ticks, an op every 10
        cluster.request(client_id=client, request_number=1, op=b"more", to=0)
        client += 1
        for _ in range(10):
            cluster.tick()
            cluster.deliver_all()
    heartbeat(cluster)
    same_state(cluster, 0, 2)  # the gap was repaired
    asked = sent(cluster, GetSnapshot, source=2)[asked_before:]
    assert len(asked) <= 1, (
        f"replica 2 asked {len(asked)} more times for snapshot {asked[0].snapshot_op}, at or below its "
        f"commit_number {backup.commit_number}; download left in place: {backup.snapshots.download is not None}"
    )
    assert primary.snapshots.pins == {} and primary.snapshots.pinned == {}, "the pin never expires"
    assert primary.op_number - primary.log_base <= 2 * config.snapshot_interval_ops, (
        f"primary keeps the log after op {primary.log_base} while its snapshot is at {primary.snapshot_op}"
    )


# --- 5. a snapshot that does not arrive whole is never installed --------------------------------------------


def chunk_for(
    cluster: Cluster, to: int, *, data: bytes, checksum: bytes, size: int | None = None
) -> SnapshotChunk:
    primary = cluster.replicas[0]
    return SnapshotChunk(
        **header(view=primary.view_number, replica=0),
        snapshot_op=snapshots.op_number_of(primary.snapshots.data),
        size=len(data) if size is None else size,
        checksum=checksum,
        offset=0,
        data=data,
    )


def scenario_corrupted_snapshot_is_never_installed() -> None:
    """Replica 2, cut off through three snapshots, is handed snapshot 9 whole in one chunk from primary 0, but
    with a flipped byte (and the true checksum), then with the true bytes and a wrong checksum: neither is
    installed (commit_number stays 0, nothing is executed), both are counted; the genuine transfer then
    succeeds."""
    cluster = Cluster(3, config=snapshot_config(chunk=1024))
    ten_ops_without(cluster, behind=2)
    backup = cluster.replicas[2]
    good = cluster.replicas[0].snapshots.data
    flipped = bytearray(good)
    flipped[-1] ^= 0x01  # in the app state: it would still decode
    snapshots.decode(bytes(flipped))
    cluster.inject(2, chunk_for(cluster, 2, data=bytes(flipped), checksum=snapshots.checksum(good)))
    cluster.inject(2, chunk_for(cluster, 2, data=good, checksum=snapshots.checksum(b"other")))
    assert backup.counters.get("on_snapshot_chunk: snapshot checksum mismatch", 0) == 2
    assert "snapshot installed" not in backup.counters
    assert backup.commit_number == 0 and backup.snapshot_op == 0 and cluster.apps[2].applied == []
    assert backup.snapshots.download is None and not cluster.queued(GetState, source=2)
    cluster.heal()
    heartbeat(cluster)
    same_state(cluster, 0, 2)


# --- 6. recovery from a primary whose log is truncated ------------------------------------------------------


def scenario_recovery_fetches_the_primarys_snapshot() -> None:
    """Ten ops committed everywhere, then replica 2 loses its memory. Primary 0 answers its Recovery with the
    log after op 6: replica 2 fetches the latest snapshot (GetSnapshot snapshot_op 0) in chunks, still
    recovering, and finishes with snapshot 9 plus op 10 from the answer: normal, same state as the others."""
    cluster = DiskCluster(3, config=snapshot_config(chunk=32))
    commit_ops(cluster, 1, 10)
    heartbeat(cluster)
    cluster.crash_and_recover(2)
    recovering = cluster.replicas[2]
    cluster.deliver(matching(Recovery))
    answer = queued(cluster, RecoveryResponse, source=0)[0]
    assert answer.op_number == 10 and answer.log is not None and [e.op_number for e in answer.log] == [7, 8, 9, 10]
    cluster.deliver(matching(RecoveryResponse))
    assert status(recovering) is Status.RECOVERING
    assert len(cluster.queued(GetSnapshot, source=2)) == 1
    assert [(m.snapshot_op, m.offset) for m in queued(cluster, GetSnapshot, source=2, to=0)] == [(0, 0)]
    cluster.deliver(matching(GetSnapshot))
    cluster.deliver(matching(SnapshotChunk))
    assert status(recovering) is Status.RECOVERING, "recovery finished before the snapshot was whole"
    cluster.deliver_all()
    assert status(recovering) is Status.NORMAL and recovering.view_number == 0
    assert (recovering.snapshot_op, recovering.log_base, operations(recovering.log)) == (9, 9, [b"op10"])
    assert len(sent(cluster, SnapshotChunk, to=2)) == -(-len(cluster.replicas[0].snapshots.data) // 32) >= 2
    same_state(cluster, 0, 2)
    cluster.check_applied()
    assert cluster.disks[2].snapshot == recovering.snapshots.data and cluster.disks[2].log_base == 9
    assert cluster.disks[2].last_normal_view == 0 and cluster.disks[2].initialized


def scenario_recovery_starts_over_when_the_primary_changes_view() -> None:
    """Replica 2 recovers and starts fetching primary 0's snapshot in view 0. Before the second chunk, replicas
    0 and 1 move to view 1 (primary 1); view 0's chunks are lost and primary 0 no longer serves view 0. Replica 2
    notices the download stalled, starts over with a new nonce, and recovers from primary 1 in view 1."""
    config = snapshot_config(chunk=16)
    cluster = Cluster(3, config=config)
    commit_ops(cluster, 1, 10)
    heartbeat(cluster)
    cluster.crash_and_recover(2)
    recovering = cluster.replicas[2]
    first_nonce = recovering.recovery.nonce
    cluster.deliver(matching(Recovery))
    cluster.deliver(matching(RecoveryResponse))
    cluster.deliver(matching(GetSnapshot))
    cluster.deliver(matching(SnapshotChunk))
    assert recovering.snapshots.download is not None and len(recovering.snapshots.download.data) == 16
    view_change_to_one(cluster, without={2})  # drops replica 2's GetSnapshot and anything to it
    assert recovering.status is Status.RECOVERING
    cluster.tick(config.recovery_resend_ticks, only={2})  # one quiet round: a slow link, not yet a stall
    assert recovering.counters.get("recovery: snapshot download stalled, starting over", 0) == 0
    assert recovering.recovery.nonce == first_nonce
    cluster.tick(RECOVERY_STALL_ROUNDS * config.recovery_resend_ticks, only={2})
    assert recovering.counters.get("recovery: snapshot download stalled, starting over", 0) == 1
    assert recovering.recovery.nonce != first_nonce
    assert {m.nonce for m in queued(cluster, Recovery, source=2)} == {recovering.recovery.nonce}
    cluster.run_until(lambda: recovering.status is Status.NORMAL, ticks_max=200)
    assert recovering.view_number == 1 and recovering.commit_number == 10
    assert [m for m in sent(cluster, GetSnapshot, source=2, to=1) if m.view == 1] != []
    heartbeat(cluster, primary=1)
    same_state(cluster, 1, 2)
    cluster.check_applied()


# --- 7. a new primary behind the chosen log's snapshot skips the view -----------------------------------------


def scenario_primary_elect_behind_the_chosen_log_skips_the_view() -> None:
    """Replica 1 is cut off while 0 and 2 commit ten ops (their logs now start after op 6). Then primary 0 is
    cut off. Replica 1 is primary of view 1, but the best vote (replica 2's) starts after op 6 and replica 1
    executed nothing: it moves on to view 2. Replica 2 leads view 2 and replica 1 catches up by snapshot
    transfer; all ten ops survive and new ops commit."""
    cluster = Cluster(3, config=snapshot_config())
    cluster.partition({1}, {0, 2})
    commit_ops(cluster, 1, 10)
    heartbeat(cluster)
    cluster.heal()
    cluster.drop()
    cluster.partition({0}, {1, 2})
    skipping, leader = cluster.replicas[1], cluster.replicas[2]
    cluster.run_until(lambda: leader.status is Status.NORMAL and leader.view_number >= 1, ticks_max=400)
    assert skipping.counters.get("view change: behind the chosen log's snapshot, skipping the view", 0) >= 1
    assert leader.view_number == 2 and leader.is_primary() and leader.commit_number == 10
    cluster.run_until(lambda: skipping.commit_number == 10 and not skipping.state_transfer, ticks_max=200)
    assert skipping.view_number == 2 and skipping.last_normal_view == 2
    assert skipping.counters.get("snapshot installed", 0) == 1
    commit_ops(cluster, 11, 13, to=2)
    heartbeat(cluster, primary=2)
    assert leader.commit_number == 13
    same_state(cluster, 1, 2)
    assert cluster.apps[2].applied == ALL_OPS + [b"op11", b"op12", b"op13"]
    cluster.check_applied()


# --- 8. StartView whose log starts after our commit_number: state transfer with a snapshot -------------------


def scenario_start_view_beyond_our_commit_keeps_the_old_log_until_the_new_one_is_whole() -> None:
    """Ops 1..2 are committed everywhere and op 3 is prepared at replica 2 but its commit never reaches it.
    Replica 2 is cut off; 0 and 1 commit up to op 10 and move to view 1 (primary 1), whose log starts after op
    6. View 1's StartView reaches replica 2 late: its log starts after replica 2's commit_number (2), so it
    adopts view 1 and fetches snapshot 9, keeping its old log (ops 1..3, last_normal_view 0) — also on disk —
    until the whole of view 1's log is there; then the snapshot and the log after it replace it."""
    config = snapshot_config(chunk=16)
    cluster = DiskCluster(3, config=config)
    commit_ops(cluster, 1, 2)
    heartbeat(cluster)
    cluster.request(client_id=2, request_number=2, op=b"op3", to=0)  # as commit_ops would
    cluster.deliver(matching(Prepare))
    cluster.drop(lambda item: item.to == 2 or item.source == 2)
    backup = cluster.replicas[2]
    assert (backup.op_number, backup.commit_number) == (3, 2)
    cluster.partition({2}, {0, 1})
    cluster.deliver_all()
    commit_ops(cluster, 4, 10)
    view_change_to_one(cluster, without={2})
    start_view = sent(cluster, StartView, source=1, to=2)[-1]
    assert start_view.op_number - len(start_view.log) == 6 and start_view.view == 1
    cluster.heal()
    cluster.inject(2, start_view)
    old_log = operations(backup.log)
    assert old_log == [b"op1", b"op2", b"op3"]
    assert backup.state_transfer and backup.view_number == 1 and backup.last_normal_view == 0
    assert [m.op_number for m in queued(cluster, GetState, source=2)] == [2]
    cluster.deliver(matching(GetState, source=2))
    while cluster.deliver(matching((SnapshotChunk, GetSnapshot))):
        pass
    transfer = backup.state_transfer
    assert transfer is not None and transfer.snapshot is not None and backup.snapshots.download is None
    assert snapshots.op_number_of(transfer.snapshot) == 9
    assert operations(backup.log) == old_log and backup.commit_number == 2 and backup.snapshot_op == 0
    assert backup.last_normal_view == 0 and cluster.apps[2].applied == [b"op1", b"op2"]
    disk = cluster.disks[2]
    assert operations(disk.log) == old_log and disk.snapshot is None
    assert (disk.view_number, disk.last_normal_view) == (1, 0)
    assert [m.op_number for m in queued(cluster, GetState, source=2)] == [9], (
        "the view's log is asked for after the snapshot"
    )
    cluster.deliver_all()
    assert not backup.state_transfer and backup.last_normal_view == 1
    assert (backup.snapshot_op, backup.log_base, operations(backup.log)) == (9, 9, [b"op10"])
    assert disk.snapshot == backup.snapshots.data and operations(disk.log) == [b"op10"]
    assert (disk.view_number, disk.last_normal_view) == (1, 1)
    heartbeat(cluster, primary=1)
    same_state(cluster, 1, 2)
    cluster.check_applied()


# --- 9. restart from disk with a snapshot --------------------------------------------------------------------


def scenario_restart_from_disk_with_a_snapshot() -> None:
    """Client 7's request is op 2, among ten ops, folded into snapshot 9. Primary 0 restarts from its disk
    (snapshot 9, the log after op 6): its app state and client table come back from the snapshot plus op 10.
    It leaves view 0 for view 1 (a restarted primary does not go on proposing in its view), and client 7's retry
    at primary 1 gets the cached result, not a second execution."""
    cluster = Cluster(3, config=snapshot_config())
    commit_ops(cluster, 1, 1)
    cluster.request(client_id=7, request_number=1, op=b"once", to=0)
    cluster.deliver_all()
    for n in range(3, 11):
        cluster.request(client_id=100 + n, request_number=1, op=b"op%d" % n, to=0)
        cluster.deliver_all()
    before = list(cluster.apps[0].applied)
    tables = table(cluster.replicas[0])
    disk = cluster.durable_state(0)
    assert disk.log_base == 6 and disk.snapshot is not None and snapshots.op_number_of(disk.snapshot) == 9
    cluster.replies.clear()
    cluster.crash_and_restart_from_disk(0, disk)
    restarted = cluster.replicas[0]
    assert (restarted.status, restarted.view_number) == (Status.VIEW_CHANGE, 1)
    assert (restarted.commit_number, restarted.snapshot_op, restarted.log_base) == (10, 9, 6)
    assert cluster.apps[0].applied == before and table(restarted) == tables
    assert cluster.replies == [], "re-execution after a restart answers nobody"
    cluster.run_until(lambda: all((r.status, r.view_number) == (Status.NORMAL, 1) for r in cluster.replicas))
    cluster.replies.clear()
    cluster.request(client_id=7, request_number=1, op=b"once", to=1)
    assert [(type(r), r.result) for r in cluster.replies] == [(Reply, b"2")]  # type: ignore[union-attr]
    assert not cluster.queued(Prepare)
    assert cluster.apps[0].applied.count(b"once") == 1 and len(cluster.apps[0].applied) == 10
    cluster.check_applied()


def scenario_restart_from_the_disk_the_readys_wrote() -> None:
    """The same, but replica 2 restarts from the disk its Readys' records wrote (not from its memory), after it
    installed snapshot 9 by transfer: the snapshot, the log after it and the view state are all there."""
    cluster = DiskCluster(3, config=snapshot_config())
    cluster.partition({2}, {0, 1})
    cluster.request(client_id=7, request_number=1, op=b"once", to=0)
    cluster.deliver_all()
    for n in range(2, 11):
        cluster.request(client_id=100 + n, request_number=1, op=b"op%d" % n, to=0)
        cluster.deliver_all()
    cluster.heal()
    heartbeat(cluster)
    backup = cluster.replicas[2]
    assert backup.counters.get("snapshot installed", 0) == 1
    tables = table(backup)
    state = cluster.disks[2].state()
    assert state.snapshot is not None and state.log_base == 9 and operations(state.log) == [b"op10"]
    cluster.crash_and_restart_from_disk(2, replace(state, commit_number=0))  # commit_number is lazy
    restarted = cluster.replicas[2]
    assert restarted.status is Status.NORMAL and restarted.commit_number == 9  # the snapshot's
    assert table(restarted).get(7) == (1, b"1")
    assert cluster.apps[2].applied == [b"once"] + [b"op%d" % n for n in range(2, 10)]
    heartbeat(cluster)  # op 10 is executed once the primary says it is committed
    assert restarted.commit_number == 10 and table(restarted) == tables
    assert cluster.apps[2].applied == [b"once"] + [b"op%d" % n for n in range(2, 11)]
    cluster.partition({0}, {1, 2})
    view_change_to_one(cluster, without={0})
    cluster.replies.clear()
    cluster.request(client_id=7, request_number=1, op=b"once", to=1)
    assert [(type(r), r.result) for r in cluster.replies] == [(Reply, b"1")]  # type: ignore[union-attr]
    heartbeat(cluster, primary=1)
    same_state(cluster, 1, 2)
    cluster.check_applied()


# --- 10. chunks from the wrong sender, an old view, or out of order ---------------------------------------------


def scenario_stray_chunks_are_ignored_and_counted() -> None:
    """Replica 2 is behind snapshot 9. A chunk from a backup, one from view 0 once replica 2 is in view 1, one
    that does not start a snapshot, one that skips ahead of the download, and one of a snapshot not ahead of our
    commit_number are each dropped, counted by reason; none starts or moves a download."""
    cluster = Cluster(3, config=snapshot_config(chunk=1024))
    ten_ops_without(cluster, behind=2)
    backup = cluster.replicas[2]
    good = cluster.replicas[0].snapshots.data
    checksum = snapshots.checksum(good)

    def chunk(*, view: int, sender: int, offset: int, data: bytes, snapshot_op: int = 9) -> SnapshotChunk:
        return SnapshotChunk(
            **header(view=view, replica=sender),
            snapshot_op=snapshot_op,
            size=len(good),
            checksum=checksum,
            offset=offset,
            data=data,
        )

    cluster.inject(2, chunk(view=0, sender=1, offset=0, data=good))
    assert counted(backup, "on_snapshot_chunk", "sender is not the primary") == 1
    cluster.inject(2, chunk(view=0, sender=0, offset=8, data=good[8:]))
    assert counted(backup, "on_snapshot_chunk", "not the start of a snapshot") == 1
    assert backup.snapshots.download is None
    cluster.inject(2, chunk(view=0, sender=0, offset=0, data=good[:8]))
    assert backup.snapshots.download is not None and len(backup.snapshots.download.data) == 8
    cluster.inject(2, chunk(view=0, sender=0, offset=16, data=good[16:24]))
    assert counted(backup, "on_snapshot_chunk", "out of order") == 1
    cluster.inject(2, chunk(view=0, sender=0, offset=0, data=good[:8]))  # a duplicate of the first
    assert counted(backup, "on_snapshot_chunk", "out of order") == 2
    assert len(backup.snapshots.download.data) == 8
    assert backup.commit_number == 0 and "snapshot installed" not in backup.counters

    # replica 2 learns of view 1 (primary 1): view 0's primary's chunks are from an old view
    cluster.partition({0}, {1, 2})
    cluster.heal()
    cluster.partition({0}, {1, 2})
    cluster.time_out(1, joined_by={2})
    cluster.run_until(lambda: backup.view_number == 1 and backup.status is Status.NORMAL, ticks_max=300)
    assert backup.snapshots.download is None or backup.snapshots.download.view == 1
    cluster.inject(2, chunk(view=0, sender=0, offset=0, data=good))
    assert counted(backup, "on_snapshot_chunk", "other view") == 1
    cluster.run_until(lambda: backup.commit_number == 10 and not backup.state_transfer, ticks_max=300)
    cluster.inject(2, chunk(view=1, sender=1, offset=0, data=good))  # 9 <= 10: installing it would go back
    assert counted(backup, "on_snapshot_chunk", "not ahead of our commit_number") == 1
    assert backup.commit_number == 10
    same_state(cluster, 1, 2)
