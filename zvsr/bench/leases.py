"""Leases on real processes: no spurious expiry across kill -9s of the primary; lock takeover after a holder's.

    python -m zvsr.bench.leases [--kills 20] [--rounds 5] [--ttl-ms 1000] [--fsync always|never] [--out FILE]
    python -m zvsr.bench.leases --quick [--out FILE]

Method: a fresh local 3-replica cluster and a proxy as real processes (default protocol timeouts, as
`zvsr.bench.failover`); lock holders are worker processes (`python -m zvsr.bench.leases worker`, below), each
a `zvsr.client.Client` through the proxy that grants itself a lease of `--ttl-ms`, takes a lock with it and keeps
the lease alive every TTL/3 of its own monotonic clock, reporting each answer as a JSON line.

(a) Spurious expiries. One holder keeps its lease alive while the primary is killed with SIGKILL `--kills`
times; after each kill the bench waits for a new primary, restarts the killed replica and waits until it has
caught up, then the next kill. A spurious expiry is a keepalive answered ``lease_not_found``: the cluster ended
a lease whose holder never stopped keeping it alive (goal: 0). Keepalives the client timed out on are counted
apart (outcome unknown: not an expiry). `failover_s` is from each kill until a replica says it is primary in
normal status (polled); `belief_gap_s` is, around each kill, the longest time from the send of an acknowledged
keepalive to the acknowledgement of the next — how long the holder could not be sure of its lease. A gap above
the TTL is a failover that outlasted what was left of the lease as the holder saw it, which only the app's
failover refresh (docs/design.md, "Cluster time and expiry") lets it survive (`outlasted_ttl` counts them).

(b) Lock takeover. A holder holds a lock and a waiter (another worker, with its own lease) tries to take it
every `POLL_MS`; the holder is killed with SIGKILL and the takeover time is from the kill to the waiter's
grant (the waiter's clock, CLOCK_MONOTONIC, is the bench's). The waiter then holds, a new waiter starts, and
the next round kills the new holder. Goal: at most TTL + 1 s; each grant's fencing token must exceed the
killed holder's.

It prints a summary and, with --out, writes the figures as JSON. --quick (2 kills, 2 rounds) is a smoke run of
about 10 s; the default run takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from zvsr.bench.procs import ChildError, Children
from zvsr.bench.stats import median
from zvsr.client import AppError, Client, ZvsrError
from zvsr.runtime.processes import ProcessCluster, wait_for

SCHEMA: Final = "zvsr-bench-leases/1"
POLL_MS: Final = 50  # a waiter tries the lock this often
TAKEOVER_SLACK_S: Final = 1.0  # goal: a waiter takes the lock within TTL + this after its holder's kill
WARM_KEEPALIVES: Final = 3  # keepalives acknowledged between kills, so each kill hits a steady holder


# --- the worker ------------------------------------------------------------------------------------------------


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


def worker(proxy: str, lock: str, ttl_ms: int, owner: str, poll_ms: int) -> None:
    """Hold `lock` with a lease of `ttl_ms`, kept alive every ttl/3, until killed; report on stdout, one JSON
    line per event: granted, waiting (the first refusal of the lock: another holder has it; the worker tries
    again every `poll_ms`), locked (with the fencing token), keepalive (acknowledged; `sent` is when it was
    sent), lost (a keepalive or lock answered lease_not_found: the worker starts over with a new lease), error
    (a call that timed out or was refused: outcome unknown). Every event has `t`, the worker's monotonic clock
    when it reported it (CLOCK_MONOTONIC: the same clock in every process of the machine)."""
    interval_s = ttl_ms / 3 / 1000
    with Client(proxy, timeout_ms=ttl_ms) as client:
        while True:
            try:
                sent = time.monotonic()
                lease = client.execute({"op": "lease_grant", "ttl_ms": ttl_ms})["lease"]
            except ZvsrError as error:
                _emit("error", op="lease_grant", error=error.code)
                continue
            _emit("granted", lease=lease, sent=sent)
            _hold(client, lock, lease, owner, sent + interval_s, interval_s, poll_ms / 1000)


def _hold(
    client: Client, lock: str, lease: int, owner: str, keepalive_at: float, interval_s: float, poll_s: float
) -> None:
    """Keep `lease` alive, take `lock` with it (polling while another holds it); return once the lease is lost."""
    locked = refused = False
    poll_at = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= keepalive_at:
            keepalive_at = now + interval_s
            try:
                client.execute({"op": "lease_keepalive", "lease": lease})
            except AppError as error:
                _emit("lost", lease=lease, sent=now, error=error.code)
                return
            except ZvsrError as error:
                _emit("error", op="lease_keepalive", lease=lease, sent=now, error=error.code)
                keepalive_at = time.monotonic()  # at once: the lease may be running out
                continue
            _emit("keepalive", lease=lease, sent=now)
        elif not locked and now >= poll_at:
            poll_at = now + poll_s
            try:
                answer = client.execute({"op": "lock", "name": lock, "owner": owner, "lease": lease})
            except AppError as error:
                _emit("lost", lease=lease, sent=now, error=error.code)
                return
            except ZvsrError as error:
                _emit("error", op="lock", lease=lease, sent=now, error=error.code)
                continue
            if answer["ok"]:
                locked = True
                _emit("locked", lease=lease, lock=lock, owner=owner, token=answer["token"], sent=now)
            elif not refused:
                refused = True
                _emit("waiting", lease=lease, lock=lock, holder=answer["owner"], token=answer["token"], sent=now)
        else:
            time.sleep(max(0.0, (keepalive_at if locked else min(keepalive_at, poll_at)) - now))


# --- driving workers -------------------------------------------------------------------------------------------


@dataclass
class Worker:
    """A worker process and the events it reported (read by a thread, in order)."""

    process: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    arrived: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    def wait(self, event: str, *, timeout_s: float, since: float = 0.0) -> dict[str, Any]:
        """The first event named `event` about something sent at or after `since`, waiting up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            for reported in list(self.events):
                if reported["event"] == event and reported.get("sent", reported["t"]) >= since:
                    return reported
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                raise ChildError(f"worker {self.process.pid}: no {event!r} within {timeout_s:.0f} s")
            try:
                self.arrived.get(timeout=min(left, 0.5))
            except queue.Empty:
                pass

    def count(self, event: str, *, since: float = 0.0) -> int:
        return sum(1 for e in list(self.events) if e["event"] == event and e.get("sent", e["t"]) >= since)


def start_worker(children: Children, proxy: str, lock: str, *, ttl_ms: int, owner: str, name: str) -> Worker:
    process = children.spawn(
        "zvsr.bench.leases",
        ["worker", "--proxy", proxy, "--lock", lock, "--ttl-ms", str(ttl_ms), "--owner", owner],
        name=name,
    )
    started = Worker(process)

    def read() -> None:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                event = json.loads(line)
                started.events.append(event)
                started.arrived.put(event)
        except (ValueError, OSError):  # the pipe closed under us (the worker was killed): nothing more comes
            pass

    threading.Thread(target=read, name=f"{name}-reader", daemon=True).start()
    return started


def restart_and_catch_up(cluster: ProcessCluster, index: int, *, primary: int, timeout_s: float = 30) -> None:
    """Restart replica `index` and wait until it is in normal status in the view of `primary` with every op
    `primary` had committed when it was restarted."""
    before = cluster.status(primary)
    assert before is not None, f"r{primary} does not answer"
    cluster.start_node(index)

    def caught_up() -> bool:
        mine = cluster.status(index)
        return (
            mine is not None
            and mine.get("status") == "normal"
            and mine["view"] >= before["view"]
            and mine["commit_number"] >= before["commit_number"]
        )

    wait_for(caught_up, timeout_s=timeout_s, what=f"r{index} to restart and catch up", interval_s=0.05)


# --- the two measurements --------------------------------------------------------------------------------------


def spurious_expiries(cluster: ProcessCluster, children: Children, *, kills: int, ttl_ms: int) -> dict[str, Any]:
    """Phase (a): one holder keeps alive through `kills` kill -9s of the primary."""
    holder = start_worker(children, cluster.config.proxy, "bench/a", ttl_ms=ttl_ms, owner="holder-a", name="a")
    holder.wait("locked", timeout_s=30)
    failovers: list[float] = []
    gaps: list[float] = []
    for kill in range(kills):
        steady_from = time.monotonic()
        wait_for(
            lambda: holder.count("keepalive", since=steady_from) >= WARM_KEEPALIVES,  # noqa: B023  # called now
            timeout_s=30,
            what="a steady holder",
        )
        primary = cluster.wait_for_primary(timeout_s=30)
        killed_at = time.monotonic()
        cluster.kill(primary)
        new_primary = cluster.wait_for_primary(other_than=primary, timeout_s=30)
        failovers.append(time.monotonic() - killed_at)
        holder.wait("keepalive", timeout_s=30, since=killed_at)  # one sent after the kill was acknowledged
        gaps.append(belief_gap(holder, killed_at))
        restart_and_catch_up(cluster, primary, primary=new_primary)
        print(
            f"kill {kill + 1}/{kills}: r{primary}; new primary r{new_primary} after "
            f"{failovers[-1] * 1000:.0f} ms; the holder was unsure of its lease for {gaps[-1] * 1000:.0f} ms "
            f"(ttl {ttl_ms} ms)",
            flush=True,
        )
    lease = [e for e in holder.events if e["event"] == "locked"][-1]["lease"]
    with Client(cluster.config.proxy, timeout_ms=10_000) as client:
        alive = client.execute({"op": "lease_ttl", "lease": lease}, raise_app_errors=False)
    children.kill(holder.process)
    lost = holder.count("lost")
    return {
        "kills": kills,
        "spurious_expiries": lost,
        "keepalive_errors": sum(
            1 for e in holder.events if e["event"] == "error" and e["op"] == "lease_keepalive"
        ),
        "keepalives": holder.count("keepalive"),
        "failover_s": failovers,
        "belief_gap_s": gaps,
        "outlasted_ttl": sum(1 for gap in gaps if gap * 1000 > ttl_ms),
        "lease_alive_at_end": isinstance(alive, dict) and "error" not in alive,
    }


def belief_gap(holder: Worker, at: float) -> float:
    """The longest time, around `at`, from the send of an acknowledged keepalive to the acknowledgement of the
    next: how long the holder could not be sure its lease lived (sure, that is, with its own clock: a lease is
    acknowledged for a TTL from the keepalive's send)."""
    acked = [event for event in list(holder.events) if event["event"] == "keepalive"]
    return max(
        (
            later["t"] - earlier["sent"]
            for earlier, later in zip(acked, acked[1:], strict=False)
            if earlier["sent"] <= at <= later["t"]
        ),
        default=0.0,
    )


def lock_takeover(cluster: ProcessCluster, children: Children, *, rounds: int, ttl_ms: int) -> dict[str, Any]:
    """Phase (b): kill -9 the holder; how long until the waiter holds the lock."""
    proxy = cluster.config.proxy
    holder = start_worker(children, proxy, "bench/b", ttl_ms=ttl_ms, owner="b0", name="b0")
    token = holder.wait("locked", timeout_s=30)["token"]
    takeovers: list[float] = []
    tokens = [token]
    for round_ in range(1, rounds + 1):
        waiter = start_worker(children, proxy, "bench/b", ttl_ms=ttl_ms, owner=f"b{round_}", name=f"b{round_}")
        waiter.wait("waiting", timeout_s=30)  # it was refused the lock: the holder has it
        killed_at = time.monotonic()
        children.kill(holder.process)
        locked = waiter.wait("locked", timeout_s=ttl_ms / 1000 + 30)
        takeovers.append(locked["t"] - killed_at)
        tokens.append(locked["token"])
        print(
            f"round {round_}/{rounds}: the waiter holds the lock {takeovers[-1] * 1000:.0f} ms after its holder's "
            f"kill -9 (token {tokens[-2]} -> {tokens[-1]})",
            flush=True,
        )
        holder = waiter
    children.kill(holder.process)
    return {
        "rounds": rounds,
        "takeover_s": takeovers,
        "takeover_median_s": median(takeovers),
        "takeover_max_s": max(takeovers),
        "tokens": tokens,
        "tokens_increase": all(a < b for a, b in zip(tokens, tokens[1:], strict=False)),
    }


def run(*, kills: int, rounds: int, ttl_ms: int, fsync: str, root: Path) -> dict[str, Any]:
    started = time.monotonic()
    (root / "cluster").mkdir()
    cluster = ProcessCluster(root / "cluster", timeouts={}, fsync=fsync)  # default protocol timeouts
    try:
        with Children(root) as children:
            cluster.start()
            cluster.wait_for_primary(timeout_s=30)
            expiries = spurious_expiries(cluster, children, kills=kills, ttl_ms=ttl_ms)
            takeover = lock_takeover(cluster, children, rounds=rounds, ttl_ms=ttl_ms)
    except BaseException:
        print(cluster.logs(), file=sys.stderr)
        raise
    finally:
        cluster.cleanup()
    bound = ttl_ms / 1000 + TAKEOVER_SLACK_S
    return {
        "schema": SCHEMA,
        "settings": {"kills": kills, "rounds": rounds, "ttl_ms": ttl_ms, "fsync": fsync, "poll_ms": POLL_MS},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "spurious": expiries,
        "takeover": takeover,
        "goals": [
            {
                "name": "no_spurious_expiry",
                "value": expiries["spurious_expiries"],
                "op": "==",
                "bound": 0,
                "met": expiries["spurious_expiries"] == 0,
            },
            {
                "name": "takeover_within_ttl_plus_1s",
                "value": takeover["takeover_max_s"],
                "op": "<=",
                "bound": bound,
                "met": takeover["takeover_max_s"] <= bound,
            },
            {
                "name": "tokens_increase",
                "value": takeover["tokens_increase"],
                "op": "==",
                "bound": True,
                "met": takeover["tokens_increase"],
            },
        ],
        "duration_s": time.monotonic() - started,
    }


def summary(result: dict[str, Any]) -> str:
    spurious, takeover, ttl_ms = result["spurious"], result["takeover"], result["settings"]["ttl_ms"]
    failovers = spurious["failover_s"]
    lines = [
        f"spurious lease expiries across {spurious['kills']} kill -9s of the primary: "
        f"{spurious['spurious_expiries']} (goal 0); {spurious['keepalive_errors']} keepalives timed out; "
        f"failover (kill to a new primary) median {median(failovers) * 1000:.0f} ms, max "
        f"{max(failovers, default=0) * 1000:.0f} ms; the holder unsure of its lease for up to "
        f"{max(spurious['belief_gap_s'], default=0) * 1000:.0f} ms, longer than the TTL ({ttl_ms} ms) "
        f"{spurious['outlasted_ttl']} times",
        f"lock takeover after the holder's kill -9 ({takeover['rounds']} rounds, ttl {ttl_ms} ms): median "
        f"{takeover['takeover_median_s'] * 1000:.0f} ms, max {takeover['takeover_max_s'] * 1000:.0f} ms "
        f"(goal <= ttl + {TAKEOVER_SLACK_S:.0f} s); fencing tokens increase: {takeover['tokens_increase']}",
        "goals: " + ", ".join(f"{goal['name']} {'met' if goal['met'] else 'MISSED'}" for goal in result["goals"]),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    work = commands.add_parser("worker", help="a lock holder (used by the benchmark and the live tests)")
    work.add_argument("--proxy", required=True)
    work.add_argument("--lock", required=True)
    work.add_argument("--ttl-ms", type=int, required=True)
    work.add_argument("--owner", default=None)
    work.add_argument("--poll-ms", type=int, default=POLL_MS)
    parser.add_argument("--kills", type=int, default=20, help="kill -9s of the primary in phase (a)")
    parser.add_argument("--rounds", type=int, default=5, help="holder kill -9s in phase (b)")
    parser.add_argument("--ttl-ms", type=int, default=1000)
    parser.add_argument("--fsync", choices=("always", "never"), default="always")
    parser.add_argument("--out", default=None, help="write the figures as JSON to this file")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 kills, 2 rounds")
    arguments = parser.parse_args()
    if arguments.command == "worker":
        try:
            worker(
                arguments.proxy,
                arguments.lock,
                arguments.ttl_ms,
                arguments.owner or f"worker-{os.getpid()}",
                arguments.poll_ms,
            )
        except KeyboardInterrupt:
            pass
        return 0
    kills, rounds = (2, 2) if arguments.quick else (arguments.kills, arguments.rounds)
    with tempfile.TemporaryDirectory(prefix="zvsr-leases-") as root:
        result = run(kills=kills, rounds=rounds, ttl_ms=arguments.ttl_ms, fsync=arguments.fsync, root=Path(root))
    result["quick"] = arguments.quick
    print(summary(result))
    if arguments.out:
        Path(arguments.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0  # as every bench tool: the goals are figures to read (a missed one says MISSED), not a verdict


if __name__ == "__main__":
    sys.exit(main())
