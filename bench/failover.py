"""Failover time after kill -9 of the primary, with the default timeouts: median of N runs.

A thin wrapper: the method and the code are in `zvsr.bench.failover`, which `zvsr bench` runs as one of its
phases (with every other figure and the baselines). Run this alone: `python bench/failover.py --runs 5`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from zvsr.bench.failover import one_run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
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
        f"failover after kill -9 (default timeouts): median {statistics.median(results) * 1000:.0f} ms, "
        f"min {min(results) * 1000:.0f} ms, max {max(results) * 1000:.0f} ms over {len(results)} runs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
