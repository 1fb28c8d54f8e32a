"""Failover time after kill -9 of the primary, with the default timeouts.

Method: a fresh local 3-replica cluster and a proxy as real processes (default timeouts, the given fsync
mode); one client (`zvsr.client.Client`) writes through the proxy in a loop; after a steady `WARM_WRITES`
writes the primary is killed with SIGKILL; failover time is from the kill to the first write acknowledged after
it that was also *issued* after it (a reply already on its way at the kill says nothing about failover).
Each run starts a fresh cluster, so runs are independent. `zvsr bench` runs it as one of its phases, next
to every other figure and the baselines; run alone, it reports the median of N runs:

    python -m zvsr.bench.failover [--runs 5] [--fsync always|never]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Final

from zvsr.bench.stats import median
from zvsr.client import Client, ZvsrError
from zvsr.constants import READ_MODE_DEFAULT
from zvsr.runtime.processes import ProcessCluster, wait_for

WARM_WRITES: Final = 200


def make_cluster(
    root: Path,
    *,
    fsync: str,
    timeouts: dict[str, int] | None = None,
    metrics: bool = False,
    replicas: int = 3,
    read_mode: str = READ_MODE_DEFAULT,
) -> ProcessCluster:
    """A ProcessCluster (not started) of `replicas` with default protocol timeouts unless given, and this fsync
    mode; with `metrics`, every replica and the proxy serve Prometheus /metrics; `read_mode`: how the app's
    read-only ops are served (`zvsr.protocol.reads`)."""
    root.mkdir(parents=True, exist_ok=True)
    timeouts = {} if timeouts is None else timeouts
    return ProcessCluster(
        root, replicas=replicas, timeouts=timeouts, fsync=fsync, metrics=metrics, read_mode=read_mode
    )


def one_run(root: Path, *, fsync: str = "always") -> float:
    """Seconds from the kill of the primary to the first write issued and acknowledged after it."""
    cluster = make_cluster(root, fsync=fsync)
    try:
        cluster.start()
        cluster.wait_for_primary(timeout_s=30)
        acknowledged: list[tuple[float, float]] = []  # (issued, acknowledged)
        stop = threading.Event()

        def writer() -> None:
            with Client(cluster.config.proxy, timeout_ms=10_000) as client:
                n = 0
                while not stop.is_set():
                    issued = time.monotonic()
                    try:
                        client.put("failover", n)
                    except ZvsrError:
                        continue
                    acknowledged.append((issued, time.monotonic()))
                    n += 1

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        try:
            wait_for(lambda: len(acknowledged) >= WARM_WRITES, timeout_s=30, what="a steady write load")
            primary = cluster.wait_for_primary()
            killed_at = time.monotonic()
            cluster.kill(primary)
            wait_for(lambda: acknowledged[-1][0] > killed_at, timeout_s=30, what="a write issued after the kill")
        finally:
            stop.set()
            thread.join(timeout=15)
        new_primary = cluster.wait_for_primary(other_than=primary)
        assert new_primary != primary
        return next(done for issued, done in acknowledged if issued > killed_at) - killed_at
    except BaseException:
        (root / "failure.log").write_text(cluster.logs())
        raise
    finally:
        cluster.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description="Failover time after kill -9 of the primary: median of N runs.")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fsync", choices=("always", "never"), default="always")
    arguments = parser.parse_args()
    results = []
    for run in range(arguments.runs):
        with tempfile.TemporaryDirectory(prefix="zvsr-failover-") as root:
            seconds = one_run(Path(root) / "cluster", fsync=arguments.fsync)
        results.append(seconds)
        print(f"run {run + 1}: failover {seconds * 1000:.0f} ms", flush=True)
    print(
        f"failover after kill -9 (default timeouts): median {median(results) * 1000:.0f} ms, "
        f"min {min(results) * 1000:.0f} ms, max {max(results) * 1000:.0f} ms over {len(results)} runs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
