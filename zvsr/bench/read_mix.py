"""A read-heavy mix (90% get, 10% put) through the proxy, once per read_mode, in one run: the figures are ratios.

`read_mix(modes, ...)` starts a fresh 3-replica cluster of real processes (127.0.0.1) per mode, runs `clients`
closed-loop clients for `seconds`, and answers ops/s and the mean latency per mode. `zvsr bench` runs it as a
phase of its own (`steps`, `run_phase`, `conclude`, with the curves); alone:
``python -m zvsr.bench.read_mix [--seconds S] [--clients C]``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zvsr.client import Client
from zvsr.constants import READ_MODES
from zvsr.runtime.processes import process_cluster

if TYPE_CHECKING:
    from zvsr.bench.curves import PhaseContext
    from zvsr.bench.runner import Report, Settings

GET_SHARE = 0.9
KEYS = 100
BENCH_CLIENTS = 16  # closed-loop clients of the `zvsr bench` phase
BENCH_WINDOW_FACTOR = 2  # its window per mode and run: this many curve windows (`Settings.curve_s`)


def _client_loop(proxy: str, seed: int, until: float, counts: list[int], latency: list[float]) -> None:
    prng = random.Random(seed)
    with Client(proxy, timeout_ms=10_000) as client:
        client.put(f"mix-{seed}", 0)  # the session's first request is logged: keep it out of the timing
        done, spent = 0, 0.0
        while time.monotonic() < until:
            key = f"mix-{prng.randrange(KEYS)}"
            started = time.monotonic()
            if prng.random() < GET_SHARE:
                client.get(key)
            else:
                client.put(key, done)
            spent += time.monotonic() - started
            done += 1
    counts.append(done)
    latency.append(spent)


def _run_mode(mode: str, seconds: float, clients: int) -> tuple[int, float]:
    """(ops done, seconds spent waiting on them) by `clients` closed-loop clients on a fresh cluster."""
    with tempfile.TemporaryDirectory() as root, process_cluster(Path(root), read_mode=mode) as cluster:
        cluster.wait_for_primary()
        counts: list[int] = []
        latency: list[float] = []
        until = time.monotonic() + seconds
        threads = [
            threading.Thread(target=_client_loop, args=(cluster.config.proxy, n, until, counts, latency))
            for n in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts), sum(latency)


def read_mix(
    modes: tuple[str, ...] = READ_MODES, *, seconds: float = 5.0, clients: int = 4, repeats: int = 1
) -> dict[str, Any]:
    """Ops/s and mean latency per mode; with `repeats` > 1 the modes take turns (log, read_index, lease, log, ...)
    so that a neighbour's load on a shared machine falls on every mode alike, and the figures are the totals."""
    done = dict.fromkeys(modes, 0)
    waited = dict.fromkeys(modes, 0.0)
    for _ in range(repeats):
        for mode in modes:
            ops, spent = _run_mode(mode, seconds, clients)
            done[mode] += ops
            waited[mode] += spent
    results: dict[str, Any] = {}
    for mode in modes:
        ops, spent = done[mode], waited[mode]
        results[mode] = {
            "ops_per_s": round(ops / (seconds * repeats), 1),
            "mean_latency_ms": round(1000 * spent / max(ops, 1), 3),
        }
    if "log" in results:
        base = results["log"]["ops_per_s"] or 1.0
        for figures in results.values():
            figures["throughput_vs_log"] = round(figures["ops_per_s"] / base, 2)
    return results


def steps(settings: Settings) -> int:
    """Progress steps `run_phase` takes."""
    return settings.runs * len(READ_MODES)


def run_phase(context: PhaseContext) -> None:
    """Each repetition runs every mode in turn (log, read_index, lease), each on a fresh cluster."""
    settings, report = context.settings, context.report
    seconds = settings.curve_s * BENCH_WINDOW_FACTOR
    for r in range(1, settings.runs + 1):
        for mode in READ_MODES:
            context.progress.step(f"90% get / 10% put, read_mode {mode} (run {r}/{settings.runs})")
            ops, spent = _run_mode(mode, seconds, BENCH_CLIENTS)
            what = f"90% get / 10% put, {BENCH_CLIENTS} clients one call at a time each, read_mode {mode}"
            report.add(f"read_mix_{mode}_ops_s", ops / seconds, unit="ops/s", system="zvsr", what=what)
            mean_ms = 1000 * spent / ops if ops else float("nan")
            report.add(f"read_mix_{mode}_mean_ms", mean_ms, unit="ms", system="zvsr", what=f"{what}: mean")


def conclude(report: Report) -> None:
    """The issue's target: the read-heavy mix at least 3x faster in read_index mode than through the log."""
    report.ratio("read_mix_read_index_vs_log", "read_mix_read_index_ops_s", "read_mix_log_ops_s", (">=", 3.0))
    report.ratio("read_mix_lease_vs_log", "read_mix_lease_ops_s", "read_mix_log_ops_s", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    arguments = parser.parse_args()
    figures = read_mix(seconds=arguments.seconds, clients=arguments.clients, repeats=arguments.repeats)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
