"""Write pause of a rolling restart (planned maintenance), against a kill -9 failover in the same run.

Method: a fresh local 3-replica cluster and a proxy as real processes (default protocol timeouts, fsync always);
`WRITERS` clients (`zvsr.fuzz.workload.Workload`: put, get, incr each) load it through the proxy. After a
steady `WARM_WRITES` acknowledgements:

1. *rolling restart*: each backup in turn (whoever is a backup at that step) is stopped (SIGTERM) and started
   again, and we wait until it counts towards quorums again (the primary reports it acknowledged every op
   committed: its status's ``acknowledged``); then the primary role is handed to a restarted backup
   (`zvsr member transfer`, `zvsr.runtime.transfer`) and the old primary is restarted the same way. Each step
   records the primary and its view before and after, so a view change a restart caused shows;
2. *failover*: the primary is killed with SIGKILL and started again once a new primary leads.

A *write pause* is the longest time, within a phase, between two consecutive acknowledgements (the first one
counted from the phase's start). The figures are the longest pause of each step of the rolling restart, the
failover's pause, their ratio, and the total time of each phase. Results go to
bench/results/rolling-restart-<time>.json:

    python -m zvsr.bench.rolling_restart [--runs 1] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from zvsr.bench.failover import make_cluster
from zvsr.fuzz.workload import Workload
from zvsr.lincheck import Operation
from zvsr.runtime.processes import ProcessCluster, wait_for
from zvsr.runtime.transfer import transfer

WARM_WRITES: Final = 200
WRITERS: Final = 4
SETTLE_WRITES: Final = 100  # acknowledgements between two steps, so each step's pause is its own
STEP_TIMEOUT_S: Final = 60.0


def longest_pause(history: Iterable[Operation], start: float, end: float) -> tuple[float, float]:
    """The longest time in [start, end] (seconds on the workload's clock) without an acknowledgement — between
    `start` and the first one, between two consecutive ones, or between the last one and `end` — and when it
    began."""
    returns = sorted(op.return_ for op in history if not op.pending and op.return_ is not None)
    moments = [start, *(t for t in returns if start < t < end), end]
    return max((b - a, a) for a, b in zip(moments, moments[1:], strict=False))


def settle(load: Workload, writes: int = SETTLE_WRITES) -> None:
    """Until `writes` more operations were acknowledged: the cluster serves again."""
    target = load.acknowledged() + writes
    wait_for(lambda: load.acknowledged() >= target, timeout_s=STEP_TIMEOUT_S, what=f"{writes} more writes")


def restart(cluster: ProcessCluster, replica: int) -> dict[str, float]:
    """Stop `replica` (SIGTERM), start it again and wait until it counts towards quorums again: in normal
    status, and the primary reports it acknowledged every op committed (its status's ``acknowledged``)."""
    stopping = time.monotonic()
    cluster.stop(replica)
    starting = time.monotonic()
    cluster.start_node(replica)

    def caught_up() -> bool:
        status = cluster.status(replica)
        if status is None or status.get("status") != "normal":
            return False
        primary = cluster.status(status["primary"]) if status["primary"] != replica else status
        if primary is None or primary.get("role") != "primary":
            return False
        acknowledged: int = primary["acknowledged"].get(replica, 0)
        committed: int = primary["commit_number"]
        return replica == status["primary"] or acknowledged >= committed

    wait_for(caught_up, timeout_s=STEP_TIMEOUT_S, what=f"r{replica} to restart and catch up")
    return {"stop_s": stopping, "start_s": starting, "caught_up_s": time.monotonic()}


def primary_view(cluster: ProcessCluster) -> tuple[int, int]:
    """The primary in normal status and its view, once there is one."""
    primary = cluster.wait_for_primary(timeout_s=STEP_TIMEOUT_S)
    status = cluster.status(primary)
    return primary, -1 if status is None else status["view"]


def step(cluster: ProcessCluster, load: Workload, name: str, action: Any) -> dict[str, Any]:
    """Run `action()` under the load; its write pause, duration (until the cluster served again) and the
    primary and view before and after (a view change the step caused shows there)."""
    before = primary_view(cluster)
    start = time.monotonic() - load.started
    detail = action() or {}
    settle(load)
    end = time.monotonic() - load.started
    after = primary_view(cluster)
    with load.lock:
        history = list(load.history)
    pause, began = longest_pause(history, start, end)
    result = {
        "step": name,
        "pause_s": pause,
        "pause_began_s": began - start,  # from the step's start, as the moments below
        "duration_s": end - start,
        "primary_view_before": list(before),
        "primary_view_after": list(after),
    }
    for key, value in detail.items():  # monotonic moments of the action: from the step's start
        result[key] = value - load.started - start if key.endswith("_s") else value
    return result


def one_run(root: Path) -> dict[str, Any]:
    cluster = make_cluster(root, fsync="always")
    load: Workload | None = None
    try:
        cluster.start()
        cluster.wait_for_primary(timeout_s=30)
        load = Workload(cluster.config.proxy, clients=WRITERS, timeout_ms=10_000)
        load.run()
        wait_for(lambda: load.acknowledged() >= WARM_WRITES, timeout_s=30, what="a steady write load")
        rolling_start = time.monotonic()
        steps: list[dict[str, Any]] = []
        restarted: set[int] = set()
        # The backups first — whoever is a backup at each step: a restart may itself have moved the role.
        while True:
            primary = cluster.wait_for_primary()
            pending = [r for r in cluster.config.ids if r not in restarted and r != primary]
            if not pending:
                break
            backup = pending[0]
            steps.append(step(cluster, load, f"restart backup r{backup}", lambda b=backup: restart(cluster, b)))
            restarted.add(backup)
        primary = cluster.wait_for_primary()
        if primary not in restarted:
            target = min(restarted)

            def hand_over() -> dict[str, Any]:
                done = transfer(cluster.config, target, timeout_ms=10_000)
                return {"transfer_ms": round(done.elapsed_s * 1000)}

            steps.append(step(cluster, load, f"transfer r{primary} -> r{target}", hand_over))
            steps.append(step(cluster, load, f"restart old primary r{primary}", lambda: restart(cluster, primary)))
        rolling_total = time.monotonic() - rolling_start

        killed = cluster.wait_for_primary()

        def kill() -> None:
            cluster.kill(killed)
            cluster.wait_for_primary(timeout_s=STEP_TIMEOUT_S, other_than=killed)

        failover = step(cluster, load, f"kill -9 primary r{killed}", kill)
        cluster.start_node(killed)
        load.finish()
        lost = load.lost_writes()
        rolling_pause = max(s["pause_s"] for s in steps)
        return {
            "steps": steps,
            "rolling_pause_s": rolling_pause,
            "rolling_total_s": rolling_total,
            "failover": failover,
            "failover_pause_s": failover["pause_s"],
            "ratio": rolling_pause / failover["pause_s"],
            "acknowledged": load.acknowledged(),
            "errors": dict(load.errors),
            "lost_writes": lost,
        }
    except BaseException:
        (root / "failure.log").write_text(cluster.logs())
        raise
    finally:
        if load is not None:
            load.finish()
        cluster.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description="Write pause of a rolling restart vs a kill -9 failover.")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", default="bench/results")
    arguments = parser.parse_args()
    runs = []
    for run in range(arguments.runs):
        with tempfile.TemporaryDirectory(prefix="zvsr-rolling-") as root:
            result = one_run(Path(root) / "cluster")
        runs.append(result)
        for s in result["steps"]:
            extra = f" (transfer {s['transfer_ms']} ms)" if "transfer_ms" in s else ""
            (p0, v0), (p1, v1) = s["primary_view_before"], s["primary_view_after"]
            moved = f"; primary r{p0} view {v0} -> r{p1} view {v1}; pause began at {s['pause_began_s']:.2f} s"
            if "stop_s" in s:
                moved += f" (stop {s['stop_s']:.2f}, start {s['start_s']:.2f}, caught up {s['caught_up_s']:.2f} s)"
            print(f"run {run + 1}: {s['step']}: pause {s['pause_s'] * 1000:.0f} ms{extra}{moved}", flush=True)
        print(
            f"run {run + 1}: rolling restart longest pause {result['rolling_pause_s'] * 1000:.0f} ms, total "
            f"{result['rolling_total_s']:.1f} s; kill -9 failover pause "
            f"{result['failover_pause_s'] * 1000:.0f} ms; ratio {result['ratio']:.2f}; "
            f"lost writes {len(result['lost_writes'])}",
            flush=True,
        )
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"rolling-restart-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    document = {"writers": WRITERS, "fsync": "always", "timeouts": "default", "runs": runs}
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path}")
    return 1 if any(r["lost_writes"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
