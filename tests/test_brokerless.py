"""The brokerless examples (brokerless/) end to end, on real processes on 127.0.0.1.

- reqrep_service: the ledger handler as a zvsr app (snapshot/restore), the pre-zvsr REP server with its REQ
  client, and the same unchanged client against a cluster's proxy while the primary is killed with SIGKILL:
  every acknowledged request is in the final state exactly once.
- worker_pool: workers serialising their writes to a fenced journal with a zvsr lock held with a lease; one is
  paused inside the critical section until its lease expired, one is killed holding the lock (its lease expires
  and the lock goes on), then the zvsr primary is killed: the journal never served a stale token, every job is
  written exactly once (but the one lost with the killed worker), and work goes on after the failover.

Ports come from the kernel; every process is killed at the end; waits are for conditions, with deadlines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest
import zmq

from brokerless.reqrep_service.app import LedgerApp
from brokerless.reqrep_service.client import LedgerClient, NoAnswer, ServiceError
from brokerless.worker_pool.store import request as store_request
from brokerless.worker_pool.store import verify
from zvsr.apps import MsgpackStateMachine
from zvsr.client import Client, LeaseNotFound
from zvsr.constants import LEASE_CLOCK_DRIFT
from zvsr.protocol.messages import LogEntry
from zvsr.runtime.processes import ProcessCluster, free_ports, process_cluster, wait_for

LEDGER_APP = "brokerless.reqrep_service.app:LedgerApp"
# What worker.py logs when --crash-at-job kills it inside the critical section.
DIED = re.compile(r"w3: job (?P<job>\d+): dying with the lock \(token (?P<token>\d+), lease (?P<lease>\d+)")


def _kill_group(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=10)


# --- reqrep_service ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def _entry(operation: bytes) -> LogEntry:
    """An op as a replica applies it (the ledger app takes apply(op): its place and time do not matter)."""
    return LogEntry(view=0, op_number=1, client_id=1, request_number=1, operation=operation, timestamp=1)


def test_ledger_app_snapshot_restores_the_same_state_and_refuses_garbage() -> None:
    ops = [
        {"cmd": "deposit", "account": "alice", "amount": 100, "memo": "salary"},
        {"cmd": "withdraw", "account": "alice", "amount": 300, "memo": "car"},
        {"cmd": "transfer", "from": "alice", "to": "bob", "amount": 30, "memo": "lunch"},
        {"cmd": "deposit", "account": "bob", "amount": 1.5},
        {"op": "get", "key": "zvsr:ready"},  # what `zvsr cluster up` sends to any app to see it is up
        {"cmd": "history", "account": "alice"},
    ]
    machine = MsgpackStateMachine(LedgerApp())
    results = [msgpack.unpackb(machine.apply(_entry(msgpack.packb(op))), raw=False) for op in ops]
    assert results[0] == {"ok": True, "entry": 1, "balance": 100}
    assert results[1] == {"ok": False, "reason": "insufficient funds", "balance": 100}
    assert results[2] == {"ok": True, "entry": 2, "balance": 70}
    assert results[3]["error"] == "bad_request" and results[4]["error"] == "bad_request"
    assert results[5] == {"ok": True, "entries": [[1, 100, "salary"], [2, -30, "lunch"]], "more": False}

    copy = MsgpackStateMachine(LedgerApp())
    copy.restore(machine.snapshot())
    assert copy.snapshot() == machine.snapshot()
    more = [{"cmd": "deposit", "account": "carol", "amount": 5}, {"cmd": "balance", "account": "bob"}]
    assert [copy.apply(_entry(msgpack.packb(op))) for op in more] == [
        machine.apply(_entry(msgpack.packb(op))) for op in more
    ]
    assert copy.snapshot() == machine.snapshot()

    state = msgpack.unpackb(machine.snapshot(), raw=False)
    state["accounts"]["bob"][0] += 1  # a balance that is not the sum of its history
    before = copy.snapshot()
    for garbage in (b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb(state)):
        with pytest.raises(ValueError):
            copy.restore(garbage)
    assert copy.snapshot() == before


@pytest.mark.timeout(30)
def test_before_zvsr_the_rep_server_serves_the_req_client() -> None:
    endpoint = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    server = subprocess.Popen(
        [sys.executable, "-m", "brokerless.reqrep_service.server", "--endpoint", endpoint],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with LedgerClient(endpoint, timeout_ms=10_000, context=context) as client:
            assert client.deposit("alice", 100, "salary") == {"ok": True, "entry": 1, "balance": 100}
            assert client.transfer("alice", "bob", 30, "lunch")["balance"] == 70
            assert client.withdraw("bob", 31)["ok"] is False
            assert client.history("bob") == [[2, 30, "lunch"]]
            with pytest.raises(ServiceError) as refused:
                client.call({"cmd": "deposit", "account": "alice", "amount": -5})
            assert refused.value.code == "bad_request"
            assert client.stats() == {"ok": True, "accounts": 2, "entries": 2, "total": 100}
    finally:
        _kill_group(server)
        context.term()


@dataclass
class DepositLoad:
    """Threads depositing through their own unchanged LedgerClient each, recording what they were told."""

    endpoint: str
    context: zmq.Context[zmq.Socket[bytes]]
    threads: int = 3
    acknowledged: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # memo -> (account, amount, entry)
    failed: dict[str, str] = field(default_factory=dict)  # memo -> error code ("no_answer": the client timed out)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(self.threads)]
        for thread in threads:
            thread.start()
        return threads

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def _run(self, number: int) -> None:
        # The client's timeout is above the proxy's request timeout (10 s in ProcessCluster): the proxy's own
        # retries across the failover end first, and its answer (a result or an error map) reaches the client.
        with LedgerClient(self.endpoint, timeout_ms=20_000, context=self.context) as client:
            sequence = 0
            while not self.stop.is_set():
                sequence += 1
                account = "shared" if sequence % 2 else f"own-{number}"
                memo, amount = f"t{number}-{sequence}", sequence % 5 + 1
                try:
                    reply = client.deposit(account, amount, memo)
                except ServiceError as error:
                    outcome: tuple[str, int, int] | str = error.code
                except NoAnswer:
                    outcome = "no_answer"
                else:
                    ok = reply.get("ok") is True and type(reply.get("entry")) is int
                    outcome = (account, amount, reply["entry"]) if ok else f"unexpected reply {reply!r}"
                with self.lock:
                    if isinstance(outcome, str):
                        self.failed[memo] = outcome
                    else:
                        self.acknowledged[memo] = outcome


def caught_up(cluster: ProcessCluster, index: int) -> bool:
    """Whether replica `index` is a normal backup holding every op the primary had committed a moment ago
    (the primary is asked first, so a load that keeps committing cannot keep the two from ever matching)."""
    leader = cluster.primary()
    if leader is None or leader == index:
        return False
    committed = (cluster.status(leader) or {}).get("commit_number")
    mine = cluster.status(index)
    return bool(
        committed is not None
        and mine
        and mine["status"] == "normal"
        and not mine.get("state_transfer")
        and mine["commit_number"] >= committed
    )


@pytest.mark.timeout(90)
def test_the_unchanged_req_client_through_the_proxy_survives_kill_9_of_the_primary(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    """The ledger app on three replicas, snapshots every 40 ops; three REQ clients deposit through the proxy
    (bare operations, protocol.md §8). A backup is killed and restarted from its disk (its snapshot goes through
    LedgerApp.restore); then the primary is killed, and the restarted replica usually leads the next view, so
    the final state is read from a restored app (a view change meanwhile may give the lead to another)."""
    with process_cluster(tmp_path, app=LEDGER_APP, snapshot_interval_ops=40) as cluster:
        primary = cluster.wait_for_primary()
        successor = (primary + 1) % 3  # the primary of the next view, unless the view changes meanwhile
        load = DepositLoad(cluster.config.proxy, context)
        threads = load.start()
        try:
            wait_for(lambda: load.count() >= 60, timeout_s=30, what="60 acknowledged deposits")
            cluster.kill(successor)
            count = load.count()
            wait_for(lambda: load.count() >= count + 30, timeout_s=30, what="30 deposits without the backup")
            cluster.start_node(successor)
            wait_for(lambda: caught_up(cluster, successor), timeout_s=30, what="the restarted backup to catch up")
            restarted = cluster.status(successor)
            assert restarted is not None and restarted["start"] == "restart_from_disk", restarted
            assert restarted["snapshot_op"] > 0, restarted

            primary = cluster.wait_for_primary()
            cluster.kill(primary)  # kill -9, with deposits in flight
            at_kill = load.count()
            new_primary = cluster.wait_for_primary(other_than=primary, timeout_s=30)
            wait_for(lambda: load.count() >= at_kill + 60, timeout_s=30, what="60 deposits after the failover")
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
        if new_primary != successor:
            print(f"replica {new_primary} leads, not the restored replica {successor}: restore checked less")

        with LedgerClient(cluster.config.proxy, timeout_ms=20_000, context=context) as client:
            accounts = {"shared", *(f"own-{n}" for n in range(load.threads))}
            found: Counter[str] = Counter()
            where: dict[str, tuple[str, int, int]] = {}
            for account in accounts:
                history = client.history(account)
                assert client.balance(account) == sum(delta for _, delta, _ in history)
                for entry, delta, memo in history:
                    found[memo] += 1
                    where[memo] = (account, delta, entry)
            stats = client.stats()

    assert not [code for code in load.failed.values() if code.startswith("unexpected")], load.failed
    doubled = sorted(memo for memo, times in found.items() if times > 1)
    assert not doubled, f"{len(doubled)} deposits applied twice: {doubled[:20]}"
    lost = sorted(memo for memo in load.acknowledged if memo not in found)
    assert not lost, f"{len(lost)} acknowledged deposits lost: {lost[:20]}"
    for memo, booked in load.acknowledged.items():
        assert where[memo] == booked, f"{memo} acknowledged as {booked}, booked as {where[memo]}"
    # Every deposit in the ledger was sent by a client; one refused as certainly not executed is not there.
    assert found.keys() <= load.acknowledged.keys() | load.failed.keys()
    not_executed = [memo for memo, code in load.failed.items() if code in ("unavailable", "busy")]
    assert not set(not_executed) & found.keys(), "a deposit refused as not executed was booked"
    assert stats["entries"] == len(found) and stats["total"] == sum(delta for _, delta, _ in where.values())
    assert load.count() >= at_kill + 60


# --- worker_pool ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_worker_pool_fences_a_stale_writer_and_survives_kill_9_of_the_primary(tmp_path: Path) -> None:
    """Three workers, lease 1 s. w2 is paused (SIGSTOP) 5 s inside its critical section: its lease expires, the
    lock goes to another worker, and w2's stale write is refused. w3 is killed (SIGKILL) holding the lock, right
    after renewing its lease: nobody releases the lock for it, yet the next token is served a whole ttl later,
    once its lease expired through the log. Then the zvsr primary is killed while the pool keeps writing."""
    with process_cluster(tmp_path) as cluster:
        cluster.wait_for_primary()
        store, jobs = (f"tcp://127.0.0.1:{port}" for port in free_ports(2))
        log = open(tmp_path / "pool.log", "wb")  # noqa: SIM115  # closed below, after the pool exited
        pool = subprocess.Popen(
            [
                sys.executable, "-m", "brokerless.worker_pool.pool",
                "--proxy", cluster.config.proxy,
                "--workers", "3",
                "--jobs", "0",
                "--lease-s", "1",
                "--work-ms", "10",
                "--stall", "2:3:5",
                "--crash", "3:4",
                "--store-endpoint", store,
                "--jobs-endpoint", jobs,
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )  # fmt: skip
        try:

            def journal() -> dict[str, Any]:
                dump: dict[str, Any] = store_request(store, {"cmd": "dump"}, timeout_ms=10_000)
                return dump

            def stale_write_redone() -> tuple[int, int] | None:
                """(w2's refused token, the token it rewrote the job with), once both happened."""
                dump = journal()
                for token, _, writer, cmd, _, record in dump["refused"]:
                    if writer == "w2" and cmd == "write":
                        again = [slot for slot in dump["slots"] if slot[2]["job"] == record["job"]]
                        return (token, again[0][0]) if again else None
                return None

            refused_token, rewritten_token = wait_for(
                stale_write_redone, timeout_s=40, what="w2's stale write to be refused, and the job redone"
            )
            assert rewritten_token > refused_token

            def dead_holder_replaced() -> tuple[int, int] | None:
                """(index of w3's last served request, index of the next one), once the next one was served."""
                accepted = journal()["accepted"]
                mine = [index for index, (_, writer, _, _) in enumerate(accepted) if writer == "w3"]
                return (mine[-1], mine[-1] + 1) if mine and mine[-1] + 1 < len(accepted) else None

            died = wait_for(
                lambda: DIED.search((tmp_path / "pool.log").read_text(errors="replace")),
                timeout_s=40,
                what="w3 to die holding the lock",
            )
            dead_holder = wait_for(
                dead_holder_replaced, timeout_s=20, what="dead w3's lock to go to another worker"
            )
            with Client(cluster.config.proxy, timeout_ms=10_000) as client, pytest.raises(LeaseNotFound):
                client.lease_ttl(int(died.group("lease")))  # it expired: nobody revokes another worker's lease
            primary = cluster.wait_for_primary()
            at_kill = len(journal()["slots"])
            cluster.kill(primary)
            cluster.wait_for_primary(other_than=primary, timeout_s=30)
            wait_for(
                lambda: len(journal()["slots"]) >= at_kill + 40, timeout_s=40, what="40 jobs after the failover"
            )
            last = journal()
            pool.send_signal(signal.SIGTERM)  # the pool closes the queue; the workers finish the job in hand
            output, _ = pool.communicate(timeout=60)
            assert pool.returncode in (0, 1), pool.returncode
            report = json.loads(output)
        except BaseException:
            print((tmp_path / "pool.log").read_text(errors="replace")[-6000:])
            raise
        finally:
            _kill_group(pool)
            log.close()

    assert report["problems"] == [], report["problems"]
    assert report["missing_jobs"] == [] and report["unknown_jobs"] == []
    (lost_job,) = report["crashed"].values()
    assert list(report["crashed"]) == ["w3"] and type(lost_job) is int
    assert report["slots"] == report["handed_out"] - 1 >= at_kill + 40  # all but the job lost with w3
    assert report["worker_exit_codes"] == {"w1": 0, "w2": 0, "w3": -signal.SIGKILL}
    assert lost_job not in [slot[2]["job"] for slot in last["slots"]]
    # The stalled job: its stale write was refused, and w2 wrote it again under a newer token.
    stale = [record for writer, record in report["refused_writes"] if writer == "w2"]
    assert stale, report["refused_writes"]
    # The journal as the test saw it: one writer per token, tokens in order, the stale token refused.
    check = verify(last)
    assert check["problems"] == []
    writers: dict[int, set[str]] = {}
    for token, writer, _, _ in last["accepted"]:
        writers.setdefault(token, set()).add(writer)
    assert all(len(names) == 1 for names in writers.values()), "two writers used one token"
    job = stale[0]["job"]
    assert [slot[:2] for slot in last["slots"] if slot[2]["job"] == job] == [[rewritten_token, "w2"]]
    # The killed holder: its last request (its length query, under its token) was served, it never wrote, and the
    # next request — from another worker, under a newer token — was served only after a whole lease ttl (1 s):
    # the lock stayed w3's until its lease expired, and nobody broke it.
    assert int(died.group("job")) == lost_job
    mine, following = dead_holder
    token, writer, cmd, _ = last["accepted"][mine]
    assert (token, writer, cmd) == (int(died.group("token")), "w3", "length")
    assert last["accepted"][following][0] > token and last["accepted"][following][1] != "w3"
    assert last["accepted_at"][following] - last["accepted_at"][mine] >= 1.0 * (1 - LEASE_CLOCK_DRIFT)


# --- config distribution: agents follow a prefix through a failover ------------------------------------------


def read_agent_file(path: Path) -> dict[str, Any] | None:
    try:
        document: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return document


@pytest.mark.timeout(120)
def test_config_agents_keep_their_copy_in_sync_across_a_kill_9_of_the_primary(tmp_path: Path) -> None:
    """Two agents watch config/web/; an operator changes it, the primary is killed, it changes again: each
    agent's file ends equal to the cluster's keys under the prefix (and holds nothing else), its op_number only
    ever moving forward."""
    from zvsr.client import Client

    with process_cluster(tmp_path) as cluster:
        cluster.wait_for_primary()
        outs = [tmp_path / f"agent-{n}.json" for n in range(2)]
        agents = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "brokerless.config_distribution.agent",
                    "--config",
                    str(cluster.path),
                    "--prefix",
                    "config/web/",
                    "--out",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
            for out in outs
        ]
        seen_ops: list[list[int]] = [[], []]

        def agents_hold(expected: dict[str, Any]) -> bool:
            for n, out in enumerate(outs):
                document = read_agent_file(out)
                if document is None:
                    return False
                seen_ops[n].append(document["op_number"])
                if document["config"] != expected:
                    return False
            return True

        try:
            with Client(cluster.config.proxy, timeout_ms=10_000) as client:
                client.put("config/web/mode", "active")
                client.put("config/web/workers", 4)
                client.put("config/db/url", "elsewhere")  # another prefix: not the agents' business
                wait_for(
                    lambda: agents_hold({"mode": "active", "workers": 4}), timeout_s=30, what="the first sync"
                )
                primary = cluster.wait_for_primary()
                cluster.kill(primary)
                cluster.wait_for_primary(other_than=primary, timeout_s=30)
                client.put("config/web/mode", "draining")
                client.incr("config/web/workers", 2)
                client.delete("config/web/missing")
                client.put("config/web/banner", "maintenance at 22:00")
                expected = {"mode": "draining", "workers": 6, "banner": "maintenance at 22:00"}
                wait_for(lambda: agents_hold(expected), timeout_s=30, what="the agents to follow the failover")
            for ops in seen_ops:
                assert ops == sorted(ops), "an agent's copy went back in time"
        finally:
            for agent in agents:
                if agent.poll() is None:
                    os.killpg(agent.pid, signal.SIGTERM)
            for agent in agents:
                try:
                    agent.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(agent.pid, signal.SIGKILL)
                    agent.wait()
        assert all(agent.returncode == 0 for agent in agents)
