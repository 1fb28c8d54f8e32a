"""Failover time after kill -9 of the primary, with the default timeouts: median of N runs.

Method: a local 3-replica cluster and a proxy as real processes; one client writes through the proxy in a
loop; the primary is killed with SIGKILL; failover time is from the kill to the first write acknowledged after
it that was also *issued* after it (a reply already on its way at the kill says nothing about failover).
Each run starts a fresh cluster. Run: `python bench/failover.py --runs 5`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from zvsr.client import Client, ZvsrError
from zvsr.runtime.processes import process_cluster, wait_for


def one_run(root: Path) -> float:
    with process_cluster(root, timeouts={}) as cluster:
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
        wait_for(lambda: len(acknowledged) >= 200, timeout_s=30, what="a steady write load")
        primary = cluster.wait_for_primary()
        killed_at = time.monotonic()
        cluster.kill(primary)
        wait_for(lambda: acknowledged[-1][0] > killed_at, timeout_s=30, what="a write issued after the kill")
        stop.set()
        thread.join(timeout=15)
        new_primary = cluster.wait_for_primary(other_than=primary)
        assert new_primary != primary
        return next(done for issued, done in acknowledged if issued > killed_at) - killed_at


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    results = []
    for run in range(arguments.runs):
        with tempfile.TemporaryDirectory(prefix="zvsr-failover-") as root:
            seconds = one_run(Path(root))
        results.append(seconds)
        print(f"run {run + 1}: failover {seconds * 1000:.0f} ms", flush=True)
    print(
        f"failover after kill -9 (default timeouts): median {statistics.median(results) * 1000:.0f} ms, "
        f"min {min(results) * 1000:.0f} ms, max {max(results) * 1000:.0f} ms over {len(results)} runs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
