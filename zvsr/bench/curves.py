"""The curves of `zvsr bench`: throughput and p99 against client count and value size, and 5 replicas beside 3.

    python -m zvsr.bench.curves [--runs 1] [--duration 2] [--quick]     # this phase alone, a table on stdout

Three series, each point the bench's own load generator (`zvsr.bench.loadgen`) through the proxy of a fresh
``--fsync never`` cluster with default timeouts, like phase 1:

- **client count** (`CLIENT_COUNTS`: 1, 4, 16, 64): that many connections, each one client session with one
  request at a time (a strict client: a DEALER per client, spread over the bench's C load-generator processes);
  where the curve flattens is where the cluster, not the clients, sets the pace;
- **value size** (`VALUE_SIZES`: 16 B, 1 KiB, 16 KiB): the pipelined load (C × W sessions) putting values of
  that size, so the bytes every stage copies, checksums and sends grow 1000-fold;
- **5 replicas**: a 5-replica cluster, strict latency (1 session) and the pipelined load, beside the
  3-replica figures of phase 1 (ratios `five_replicas_*`: a commit still needs one PrepareOk round, but the
  primary sends and receives twice as many messages).

Figures: ``zvsr_clients_<n>_ops_s`` / ``_p99_ms``, ``zvsr_value_<size>_ops_s`` / ``_p99_ms``,
``zvsr_r5_strict_p50_ms`` / ``_p99_ms``, ``zvsr_r5_pipelined_ops_s`` / ``_p99_ms``; repetitions and medians as
every figure of the bench.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from zvsr.bench.procs import Children
from zvsr.bench.progress import Progress
from zvsr.bench.runner import Load, Report, Settings, _child_environment, run_load, zvsr_cluster

CLIENT_COUNTS: Final = (1, 4, 16, 64)
VALUE_SIZES: Final = ((16, "16b"), (1024, "1kib"), (16384, "16kib"))
FIVE_REPLICAS: Final = 5


@dataclass(frozen=True, slots=True)
class PhaseContext:
    """What a phase of the bench gets: where to report, spawn and keep files, and how to say what it does."""

    settings: Settings
    report: Report
    children: Children
    work: Path
    progress: Progress
    note_errors: Callable[[str, Load], None]


def steps(settings: Settings) -> int:
    """Progress steps `run_phase` takes."""
    return 2 + settings.runs * (len(CLIENT_COUNTS) + len(VALUE_SIZES) + 2)


def run_phase(context: PhaseContext) -> None:
    settings, report, progress = context.settings, context.report, context.progress
    runs = settings.runs
    progress.step("starting a 3-replica cluster (--fsync never) for the client-count and value-size curves")
    with zvsr_cluster(context.work / "cluster-curves", fsync="never") as cluster:
        for r in range(1, runs + 1):
            for clients in CLIENT_COUNTS:
                progress.step(f"{clients} strict clients (run {r}/{runs})")
                load = client_count_load(context, cluster.config.proxy, clients=clients)
                context.note_errors(f"zvsr_clients_{clients}", load)
                what = f"{clients} client connections, one request at a time each, through the proxy"
                _figures(report, f"zvsr_clients_{clients}", load, what)
            for size, label in VALUE_SIZES:
                progress.step(f"pipelined puts of {size}-byte values (run {r}/{runs})")
                load = value_size_load(context, cluster.config.proxy, value_bytes=size)
                context.note_errors(f"zvsr_value_{label}", load)
                what = f"pipelined puts of {size}-byte values, {settings.clients} clients x {settings.window}"
                _figures(report, f"zvsr_value_{label}", load, what)
    progress.step("starting a 5-replica cluster (--fsync never)")
    with zvsr_cluster(context.work / "cluster-five", fsync="never", replicas=FIVE_REPLICAS) as cluster:
        proxy = cluster.config.proxy
        for r in range(1, runs + 1):
            progress.step(f"5 replicas: strict latency (run {r}/{runs})")
            load = run_load(
                context.children,
                proxy,
                mode="zvsr",
                clients=1,
                sessions=1,
                warmup_s=settings.warmup_s,
                duration_s=settings.curve_s,
            )
            context.note_errors("zvsr_r5_strict", load)
            what = "5 replicas: one request at a time through the proxy"
            report.add("zvsr_r5_strict_p50_ms", load.p50_ms, unit="ms", system="zvsr", what=f"{what}: median")
            report.add("zvsr_r5_strict_p99_ms", load.p99_ms, unit="ms", system="zvsr", what=f"{what}: p99")
            progress.step(f"5 replicas: pipelined throughput (run {r}/{runs})")
            load = value_size_load(context, proxy, value_bytes=None)
            context.note_errors("zvsr_r5_pipelined", load)
            what = f"5 replicas: committed ops/s, {settings.clients} clients x {settings.window} in flight"
            _figures(report, "zvsr_r5_pipelined", load, what)


def conclude(report: Report) -> None:
    """The ratios of the phase (no targets: they describe, they do not judge)."""
    report.ratio("five_replicas_pipelined", "zvsr_r5_pipelined_ops_s", "zvsr_pipelined_ops_s", None)
    report.ratio("five_replicas_strict_p50", "zvsr_r5_strict_p50_ms", "zvsr_strict_p50_ms", None)


def client_count_load(context: PhaseContext, endpoint: str, *, clients: int) -> Load:
    """`clients` strict clients: one connection and one session each, over up to C load-generator processes."""
    processes = min(clients, context.settings.clients)
    per_process = clients // processes
    return run_load(
        context.children,
        endpoint,
        mode="zvsr",
        clients=processes,
        sessions=per_process,
        connections=per_process,
        warmup_s=context.settings.warmup_s,
        duration_s=context.settings.curve_s,
    )


def value_size_load(context: PhaseContext, endpoint: str, *, value_bytes: int | None) -> Load:
    """The pipelined load (C × W sessions), putting values of `value_bytes` (None: the bench's usual 32)."""
    return run_load(
        context.children,
        endpoint,
        mode="zvsr",
        clients=context.settings.clients,
        sessions=context.settings.window,
        warmup_s=context.settings.warmup_s,
        duration_s=context.settings.curve_s,
        value_bytes=value_bytes,
    )


def _figures(report: Report, name: str, load: Load, what: str) -> None:
    report.add(f"{name}_ops_s", load.ops_s, unit="ops/s", system="zvsr", what=what, completed=load.completed)
    report.add(f"{name}_p99_ms", load.p99_ms, unit="ms", system="zvsr", what=f"{what}: 99th percentile")


def format_curves(report: Report) -> str:
    """The three series as rows: throughput and p99 per point."""
    figures = report.figures
    rows = [f"{'point':28} {'ops/s':>9} {'p99 ms':>8}"]
    points = [(f"{n} client(s), 1 in flight each", f"zvsr_clients_{n}") for n in CLIENT_COUNTS]
    points += [(f"value {size} B, pipelined", f"zvsr_value_{label}") for size, label in VALUE_SIZES]
    points += [("5 replicas, pipelined", "zvsr_r5_pipelined")]
    for title, name in points:
        if f"{name}_ops_s" in figures:
            ops, p99 = figures[f"{name}_ops_s"]["value"], figures[f"{name}_p99_ms"]["value"]
            rows.append(f"{title:28} {ops:9,.0f} {p99:8.2f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--duration", type=float, default=2.0, help="measuring window of each point (s)")
    parser.add_argument("--quick", action="store_true", help="the --quick settings of zvsr bench")
    arguments = parser.parse_args(argv)
    settings = (
        Settings(**Settings.quick_defaults())
        if arguments.quick
        else Settings(runs=arguments.runs, curve_s=arguments.duration)
    )
    _child_environment()
    report = Report()
    progress = Progress(steps(settings))
    with tempfile.TemporaryDirectory(prefix="zvsr-curves-") as work, Children(Path(work)) as children:
        context = PhaseContext(settings, report, children, Path(work), progress, lambda name, load: None)
        run_phase(context)
    progress.finish()
    print(format_curves(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
