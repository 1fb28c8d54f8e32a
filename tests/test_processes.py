"""End to end: real replica and proxy processes on 127.0.0.1, killed, paused and restarted under load.

Each test states the scenario; each waits for conditions with deadlines and cleans up every process.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest
import zmq

from zvsr.client import Client, SessionExpired
from zvsr.constants import TICK_MS
from zvsr.fuzz.workload import Workload
from zvsr.lincheck import ZvsrModel, check
from zvsr.protocol.client_table import REGISTER_REQUEST_NUMBER, parse_register_result
from zvsr.protocol.messages import ERROR_SESSION_EXPIRED, Error, Reply, Request
from zvsr.runtime.processes import (
    TEST_TIMEOUTS,
    ProcessCluster,
    process_cluster,
    wait_for,
)
from zvsr.runtime.status import query
from zvsr.wire import decode_client_reply, encode

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    with process_cluster(tmp_path) as started:
        started.wait_for_primary()
        yield started


# --- a load of several clients, recorded for the checks: the fuzzer's workload (zvsr.fuzz.workload) ----------


def check_after_load(cluster: ProcessCluster, load: Workload) -> None:
    """Every acknowledged write is there, no increment ran twice, and the history is linearizable."""
    with Client(cluster.config.proxy, timeout_ms=10_000) as client:
        counter = client.get(load.counter_key) or 0
        assert load.acknowledged_increments <= counter <= load.acknowledged_increments + load.unknown_increments
        for key, value in load.acknowledged_puts.items():
            # Each client writes increasing numbers to its own key; a later put that was in flight (outcome
            # unknown) at the end may have won, an older value never.
            stored = client.get(key)
            assert stored is not None and stored >= value, f"acknowledged write {key}={value} lost ({stored})"
    verdict = check(load.history, ZvsrModel(), timeout_s=60)
    assert verdict.verdict == "ok", verdict.summary()


# --- the scenarios -----------------------------------------------------------------------------------------------


def test_kill_9_of_the_primary_under_load_loses_nothing_acknowledged(cluster: ProcessCluster) -> None:
    """Four clients write through the proxy; the primary is killed with SIGKILL; writes go on in a new view."""
    load = Workload(cluster.config.proxy)
    load.run()
    wait_for(lambda: load.acknowledged() >= 100, timeout_s=30, what="100 acknowledged ops")
    primary = cluster.wait_for_primary()
    cluster.kill(primary)
    before = load.acknowledged()
    new_primary = cluster.wait_for_primary(other_than=primary, timeout_s=30)
    assert new_primary != primary
    wait_for(lambda: load.acknowledged() >= before + 100, timeout_s=60, what="100 more ops after failover")
    load.finish()
    check_after_load(cluster, load)


def test_sigstop_of_the_primary_then_sigcont_returns_it_as_a_backup(cluster: ProcessCluster) -> None:
    """The primary is frozen longer than the view-change timeout, the others move on, then it thaws."""
    load = Workload(cluster.config.proxy, clients=2)
    load.run()
    wait_for(lambda: load.acknowledged() >= 50, timeout_s=30, what="50 acknowledged ops")
    primary = cluster.wait_for_primary()
    cluster.pause(primary)
    try:
        new_primary = cluster.wait_for_primary(other_than=primary, timeout_s=30)
        before = load.acknowledged()
        wait_for(lambda: load.acknowledged() >= before + 50, timeout_s=60, what="ops in the new view")
    finally:
        cluster.resume(primary)

    def thawed_as_backup() -> bool:
        answer = cluster.status(primary)
        leader = cluster.status(new_primary)
        return bool(
            answer
            and leader
            and answer["status"] == "normal"
            and answer["role"] == "backup"
            and answer["view"] == leader["view"]
        )

    wait_for(thawed_as_backup, timeout_s=30, what="the old primary to rejoin as a backup")
    load.finish()
    check_after_load(cluster, load)
    primaries = [i for i, answer in cluster.statuses().items() if answer.get("role") == "primary"]
    assert len(primaries) == 1, f"split brain: {primaries}"


def test_a_backup_restarted_without_its_memory_recovers_and_catches_up(cluster: ProcessCluster) -> None:
    primary = cluster.wait_for_primary()
    backup = next(i for i in range(3) if i != primary)
    with Client(cluster.config.proxy, timeout_ms=10_000) as client:
        for n in range(50):
            client.put(f"before-{n}", n)
        cluster.kill(backup)
        for name in ("superblock.a", "superblock.b", "wal.log"):  # its disk is gone too
            (cluster.root / "data" / f"replica-{backup}" / name).unlink(missing_ok=True)
        for n in range(50):
            client.put(f"during-{n}", n)
        cluster.start_node(backup)
        for n in range(20):
            client.put(f"after-{n}", n)
    log = cluster.root / f"replica-{backup}.log"

    def caught_up() -> bool:
        answers = cluster.statuses()
        mine, leader = answers.get(backup), answers.get(primary)
        return bool(
            mine
            and leader
            and mine["status"] == "normal"
            and mine["op_number"] == leader["op_number"]
            and mine["commit_number"] >= 120
        )

    wait_for(caught_up, timeout_s=30, what="the restarted backup to catch up")
    assert re.search(r"recover", log.read_text(), re.IGNORECASE), "the restart did not run the recovery protocol"


def test_kill_9_of_every_replica_under_load_then_restart_loses_nothing_acknowledged(
    cluster: ProcessCluster,
) -> None:
    """Power cut: all replicas die at once while four clients write; they restart from their disks."""
    load = Workload(cluster.config.proxy)
    load.run()
    wait_for(lambda: load.acknowledged() >= 150, timeout_s=30, what="150 acknowledged ops")
    for index in range(3):
        cluster.kill(index)
    acknowledged_at_the_cut = load.acknowledged()
    for index in range(3):
        cluster.start_node(index)
    cluster.wait_for_primary(timeout_s=30)
    wait_for(lambda: load.acknowledged() >= acknowledged_at_the_cut + 100, timeout_s=60, what="ops after restart")
    load.finish()
    for index in range(3):
        assert "restart from disk" in (cluster.root / f"replica-{index}.log").read_text()
    check_after_load(cluster, load)


def test_a_plain_zmq_req_client_that_knows_nothing_of_zvsr_gets_answers(cluster: ProcessCluster) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    request = context.socket(zmq.REQ)
    request.setsockopt(zmq.LINGER, 0)
    request.setsockopt(zmq.RCVTIMEO, 10_000)
    try:
        request.connect(cluster.config.proxy)
        request.send(msgpack.packb({"op": "put", "key": "legacy", "value": "works"}))
        request.recv()
        request.send(msgpack.packb({"op": "get", "key": "legacy"}))
        assert msgpack.unpackb(request.recv()) == "works"
        request.send(msgpack.packb({"op": "incr", "key": "legacy-counter", "by": 5}))
        assert msgpack.unpackb(request.recv()) == 5
    finally:
        request.close()
        context.term()


def test_garbage_on_every_bound_socket_is_counted_and_the_cluster_keeps_serving(cluster: ProcessCluster) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    garbage = [b"", b"\xc1", b"\x81\xa4type\x63", b"\x80" * 100, os.urandom(4096), msgpack.packb({"type": 1})]
    sockets = []
    try:
        for address in cluster.config.replicas:
            for endpoint, identity in ((address.peer, b"r9"), (address.peer, b"r1"), (address.client, None)):
                dealer = context.socket(zmq.DEALER)
                dealer.setsockopt(zmq.LINGER, 0)
                if identity is not None:
                    dealer.setsockopt(zmq.ROUTING_ID, identity)
                dealer.connect(endpoint)
                sockets.append(dealer)
                for frame in garbage:
                    dealer.send_multipart([b"", frame])
                    dealer.send_multipart([frame])
                    dealer.send_multipart([frame, frame, frame])
        proxy = context.socket(zmq.DEALER)
        proxy.setsockopt(zmq.LINGER, 0)
        proxy.connect(cluster.config.proxy)
        sockets.append(proxy)
        for frame in garbage:
            proxy.send_multipart([b"", frame])
        with Client(cluster.config.proxy, timeout_ms=10_000) as client:
            client.put("still", "serving")
            assert client.get("still") == "serving"

        def counted() -> bool:
            answers = cluster.statuses()
            return len(answers) == 3 and all(
                sum(answer.get("counters", {}).values()) > 0 for answer in answers.values()
            )

        wait_for(counted, timeout_s=10, what="every replica to count the bad input")
        for process in cluster.nodes.values():
            assert process.poll() is None, "a node died of bad input"
        assert cluster.proxy is not None and cluster.proxy.poll() is None, "the proxy died of bad input"
    finally:
        for s in sockets:
            s.close()
        context.term()


# --- snapshots, truncation and repair (durability) -------------------------------------------------------------


def caught_up_with_primary(cluster: ProcessCluster, index: int, *, commit_at_least: int) -> bool:
    answers = cluster.statuses()
    mine = answers.get(index)
    leaders = [a for a in answers.values() if a.get("role") == "primary" and a.get("status") == "normal"]
    return bool(
        mine
        and leaders
        and mine["status"] == "normal"
        and not mine["state_transfer"]
        and mine["op_number"] == leaders[0]["op_number"]
        and mine["commit_number"] >= commit_at_least
    )


def test_a_backup_down_through_several_snapshots_catches_up_by_snapshot_transfer(tmp_path: Path) -> None:
    """Snapshots every 40 ops: a backup is killed at op ~60 and misses 300 more (7 snapshots, the log before
    them truncated everywhere); restarted from its disk, it can only catch up by fetching a snapshot."""
    with process_cluster(tmp_path, snapshot_interval_ops=40) as cluster:
        primary = cluster.wait_for_primary()
        backup = next(i for i in range(3) if i != primary)
        with Client(cluster.config.proxy, timeout_ms=10_000) as client:
            for n in range(60):
                client.put(f"before-{n}", n)
            cluster.kill(backup)
            for n in range(300):
                client.put(f"during-{n}", n)
            leader = cluster.status(primary)
            assert leader is not None and leader["log_first_op"] > 70, "the primary kept its whole log"
            cluster.start_node(backup)
            wait_for(
                lambda: caught_up_with_primary(cluster, backup, commit_at_least=360),
                timeout_s=60,
                what="the restarted backup to catch up",
            )
            mine = cluster.status(backup)
            assert mine is not None and mine["start"] == "restart_from_disk"
            assert mine["counters"].get("snapshot installed", 0) >= 1, mine["counters"]
            assert mine["snapshot_op"] >= 320
            data = cluster.root / "data" / f"replica-{backup}"
            assert len(list(data.glob("snapshot-*.zvsr"))) == 1  # older snapshots deleted
            # The caught-up backup is now needed for every quorum: stop the other backup and read everything.
            other = next(i for i in range(3) if i not in (primary, backup))
            cluster.kill(other)
            assert client.get("before-7") == 7 and client.get("during-299") == 299
            client.put("after", "yes")
            assert client.get("after") == "yes"


@pytest.mark.parametrize("damage", ["torn_tail", "flipped_middle"])
def test_a_replica_whose_log_was_damaged_repairs_itself_from_its_peers(tmp_path: Path, damage: str) -> None:
    """A torn tail is cut and the missing ops come back from the primary; a flipped bit in the middle moves the
    damaged files aside and the replica recovers (Recovery) — it never serves or applies the damaged log."""
    with process_cluster(tmp_path) as cluster:
        primary = cluster.wait_for_primary()
        backup = next(i for i in range(3) if i != primary)
        with Client(cluster.config.proxy, timeout_ms=10_000) as client:
            for n in range(80):
                client.put(f"key-{n}", n)
            wait_for(
                lambda: caught_up_with_primary(cluster, backup, commit_at_least=80),
                timeout_s=30,
                what="the backup to hold every op",
            )
            cluster.kill(backup)
            wal = cluster.root / "data" / f"replica-{backup}" / "wal.log"
            data = bytearray(wal.read_bytes())
            if damage == "torn_tail":
                del data[-37:]  # the last record cut short, as a crash mid-write leaves it
            else:
                data[len(data) // 2] ^= 0x40
            wal.write_bytes(bytes(data))
            for n in range(80, 100):
                client.put(f"key-{n}", n)
            cluster.start_node(backup)
            wait_for(
                lambda: caught_up_with_primary(cluster, backup, commit_at_least=100),
                timeout_s=60,
                what="the damaged backup to repair itself",
            )
            mine = cluster.status(backup)
            assert mine is not None
            log = (cluster.root / f"replica-{backup}.log").read_text()
            if damage == "torn_tail":
                assert mine["start"] == "restart_from_disk" and "cut a torn tail" in log
            else:
                assert mine["start"] == "recovery" and "damaged" in log
                assert list((cluster.root / "data" / f"replica-{backup}").glob("damaged-*/wal.log"))
            other = next(i for i in range(3) if i not in (primary, backup))
            cluster.kill(other)  # the repaired replica is part of every quorum from now on
            assert [client.get(f"key-{n}") for n in range(100)] == list(range(100))


def test_an_evicted_session_gets_session_expired_and_the_client_carries_on(tmp_path: Path) -> None:
    """With room for 2 sessions: client A writes, B and C register and write (A's session is evicted); A's next
    call gets SessionExpired — nothing executed for it — and the call after that runs in a new session, which A
    registers by itself. A legacy REQ client behind the proxy gets the error map once, then works again."""
    with process_cluster(tmp_path, client_table_max=2, require_registration=True) as cluster:
        cluster.wait_for_primary()
        proxy = cluster.config.proxy
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        legacy = context.socket(zmq.REQ)
        legacy.setsockopt(zmq.LINGER, 0)
        legacy.setsockopt(zmq.RCVTIMEO, 10_000)
        legacy.connect(proxy)
        try:
            with Client(proxy, timeout_ms=10_000) as a, Client(proxy) as b, Client(proxy) as c:
                legacy.send(msgpack.packb({"op": "incr", "key": "legacy", "by": 1}))
                assert msgpack.unpackb(legacy.recv()) == 1
                assert a.incr("a") == 1
                first_id = a.client_id
                b.put("b", 1)
                c.put("c", 1)
                with pytest.raises(SessionExpired):
                    a.incr("a")
                assert a.client_id != first_id
                assert a.incr("a") == 2  # the refused call did not execute; the new session's did
                legacy.send(msgpack.packb({"op": "incr", "key": "legacy", "by": 1}))
                assert msgpack.unpackb(legacy.recv())["error"] == "session_expired"
                legacy.send(msgpack.packb({"op": "incr", "key": "legacy", "by": 1}))
                assert msgpack.unpackb(legacy.recv()) == 2
        finally:
            legacy.close()
            context.term()


def test_a_retry_delayed_past_three_tables_of_new_sessions_is_refused_and_the_counter_shows_one(
    tmp_path: Path,
) -> None:
    """A raw client registers through the proxy and increments a counter; the answer comes, but the client keeps
    the request's bytes, as a retry stuck in some queue. 3 x client_table_max new sessions register and write (the
    raw session is evicted, and nothing of it remains). Then the retry arrives: session_expired, never a second
    increment; the counter shows 1."""
    table_max = 2
    with process_cluster(tmp_path, client_table_max=table_max, require_registration=True) as cluster:
        cluster.wait_for_primary()
        proxy = cluster.config.proxy
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        raw = context.socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.setsockopt(zmq.RCVTIMEO, 10_000)
        raw.connect(proxy)
        try:
            nonce = 0x5EED_0000_0001
            raw.send(encode(Request(client_id=nonce, request_number=REGISTER_REQUEST_NUMBER, operation=b"")))
            registered = decode_client_reply(raw.recv())
            assert isinstance(registered, Reply) and registered.client_id == nonce
            session = parse_register_result(registered.result)
            assert session is not None
            increment = encode(
                Request(client_id=session, request_number=1, operation=msgpack.packb({"op": "incr", "key": "n"}))
            )
            raw.send(increment)
            first = decode_client_reply(raw.recv())
            assert isinstance(first, Reply) and msgpack.unpackb(first.result) == 1
            for _ in range(3 * table_max):
                with Client(proxy, timeout_ms=10_000) as other:
                    other.put("churn", 1)
            raw.send(increment)  # the delayed retry
            late = decode_client_reply(raw.recv())
            assert isinstance(late, Error) and late.code == ERROR_SESSION_EXPIRED
            with Client(proxy, timeout_ms=10_000) as reader:
                assert reader.get("n") == 1
        finally:
            raw.close()
            context.term()


def test_many_clients_through_the_proxy_are_batched_and_each_increment_runs_once(cluster: ProcessCluster) -> None:
    """32 clients increment one counter 20 times each through the proxy: the proxy sends RequestBatches to the
    primary (and gets ReplyBatches), and the counter ends at exactly 640."""
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with Client(cluster.config.proxy, timeout_ms=20_000) as c:
                for _ in range(20):
                    c.incr("batched")
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not errors, errors[:3]
    with Client(cluster.config.proxy) as c:
        assert c.get("batched") == 640
    proxy = query(cluster.config.proxy, timeout_ms=2000, context=cluster.context)
    assert proxy is not None and proxy["counters"].get("request batches sent", 0) >= 1
    primary = cluster.status(cluster.wait_for_primary())
    assert primary is not None and primary["counters"].get("client: request batches", 0) >= 1


@pytest.mark.timeout(60)
def test_a_new_cluster_whose_primary_starts_last_settles_in_view_0(tmp_path: Path) -> None:
    """Replicas 1 and 2 of a new cluster start and wait longer than their primary timeout (with jitter) before
    replica 0, the primary of view 0, starts at all: the startup grace keeps them from a view change, and the
    cluster serves in view 0 (a clean `zvsr cluster up` must not begin with a view change)."""
    # A grace longer than the default's 2 s, so a slow CI machine starting replica 0 cannot run past it.
    cluster = ProcessCluster(tmp_path, timeouts={**TEST_TIMEOUTS, "startup_grace_ticks": 400})
    try:
        for index in (1, 2):
            cluster.start_node(index)
        cluster.start_proxy()
        suspect_ticks = TEST_TIMEOUTS["primary_timeout_ticks"] + TEST_TIMEOUTS["primary_timeout_jitter_ticks"]
        suspect_after_s = suspect_ticks * TICK_MS / 1000

        def both_up_past_their_timeout() -> bool:
            statuses = cluster.statuses()
            return all(
                index in statuses and statuses[index]["uptime_s"] > 1.5 * suspect_after_s for index in (1, 2)
            )

        wait_for(both_up_past_their_timeout, timeout_s=30, what="replicas 1 and 2 up past their primary timeout")
        assert {status["view"] for status in cluster.statuses().values()} == {0}, "a view change before r0 ran"
        cluster.start_node(0)
        assert cluster.wait_for_primary(timeout_s=30) == 0
        views = {index: status["view"] for index, status in cluster.statuses().items()}
        assert views == {0: 0, 1: 0, 2: 0}, views
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.cleanup()
