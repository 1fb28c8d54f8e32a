"""Pipelined throughput of one AsyncClient through the proxy: batched (the default) against ``batch=False``.

Method: a fresh local 3-replica cluster and a proxy as real processes (default timeouts, the given fsync
mode). One AsyncClient keeps `--inflight` puts in flight (that many coroutines, each putting to its own key in
a loop) for `--seconds`; the two settings alternate in one run, `--runs` times each, and the medians of their
ops/s and their ratio are printed. ``batch=False`` is the client as it was before pipelining: one request at a
time (its concurrent calls wait for each other):

    python -m zvsr.bench.async_client [--runs 3] [--seconds 3] [--inflight 64] [--fsync never]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from zvsr.bench.failover import make_cluster
from zvsr.bench.stats import median
from zvsr.client import AsyncClient


async def ops_per_second(proxy: str, *, batch: bool, inflight: int, seconds: float) -> float:
    """Acknowledged puts per second of one AsyncClient with `inflight` calls outstanding."""
    async with AsyncClient(proxy, timeout_ms=20_000, batch=batch) as client:
        await asyncio.gather(*(client.put(f"bench/{i}", 0) for i in range(inflight)))  # sessions warm
        done = 0
        end = time.monotonic() + seconds

        async def worker(key: str) -> None:
            nonlocal done
            n = 0
            while time.monotonic() < end:
                await client.put(key, n)
                n += 1
                done += 1

        start = time.monotonic()
        await asyncio.gather(*(worker(f"bench/{i}") for i in range(inflight)))
        return done / (time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--fsync", choices=("always", "never"), default="never")
    arguments = parser.parse_args()
    results: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="zvsr-async-client-") as root:
        cluster = make_cluster(Path(root) / "cluster", fsync=arguments.fsync)
        try:
            cluster.start()
            cluster.wait_for_primary(timeout_s=30)
            for run in range(arguments.runs):
                for batch in (True, False) if run % 2 == 0 else (False, True):  # neither always goes first
                    measured = ops_per_second(
                        cluster.config.proxy, batch=batch, inflight=arguments.inflight, seconds=arguments.seconds
                    )
                    rate = asyncio.run(measured)
                    results[batch].append(rate)
                    print(f"run {run + 1}: batch={batch}: {rate:,.0f} ops/s", flush=True)
        finally:
            cluster.cleanup()
    batched, unbatched = median(results[True]), median(results[False])
    print(
        f"AsyncClient, {arguments.inflight} in flight, fsync {arguments.fsync}: batched {batched:,.0f} ops/s, "
        f"batch=False {unbatched:,.0f} ops/s (medians of {arguments.runs}): ratio {batched / unbatched:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
