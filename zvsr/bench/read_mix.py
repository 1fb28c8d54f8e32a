"""A read-heavy mix (90% get, 10% put) through the proxy, once per read_mode, in one run: the figures are ratios.

    python -m zvsr.bench.read_mix [--runs 1] [--seconds 4] [--clients 2] [--window 64] [--batch] [--quick]

The load is the bench's own pipelined load (`zvsr.bench.loadgen`, ``--get-share 0.9``): C load-generator
processes × W sessions in flight (the bench's `Settings.clients` × `Settings.window`), each request after a
session's first a get of the session's key with probability 0.9, else its put. Each mode in `READ_MODES` runs on
a fresh 3-replica ``--fsync never`` cluster with default timeouts (and its read_mode), measured for
`Settings.curve_s` × `BENCH_WINDOW_FACTOR` after the warm-up; within a repetition the modes take turns (log,
read_index, lease), so a neighbour's load on a shared machine falls on every mode alike. `zvsr bench` runs it as
a phase of its own (`steps`, `run_phase`, `conclude`, after the curves); alone it runs the same phase and prints
the figures and ratios.

Figures: ``read_mix_<mode>_ops_s`` (completed gets and puts per second) and ``read_mix_<mode>_p99_ms``; ratios
``read_mix_read_index_vs_log`` (the issue's target: >= 3) and ``read_mix_lease_vs_log``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Final

from zvsr.bench.curves import PhaseContext
from zvsr.bench.procs import Children
from zvsr.bench.progress import Progress
from zvsr.bench.runner import Load, Report, Settings, _child_environment, run_load, zvsr_cluster
from zvsr.constants import READ_MODES

GET_SHARE: Final = 0.9
BENCH_WINDOW_FACTOR: Final = 2  # the window per mode and run: this many curve windows (`Settings.curve_s`)


def steps(settings: Settings) -> int:
    """Progress steps `run_phase` takes."""
    return settings.runs * len(READ_MODES)


def mode_load(context: PhaseContext, mode: str, run: int, *, batch: bool = False) -> Load:
    """The read mix on a fresh ``--fsync never`` cluster in read_mode `mode` (the cluster's own directory)."""
    settings = context.settings
    with zvsr_cluster(context.work / f"cluster-read-{mode}-{run}", fsync="never", read_mode=mode) as cluster:
        return run_load(
            context.children,
            cluster.config.proxy,
            mode="zvsr",
            clients=settings.clients,
            sessions=settings.window,
            warmup_s=settings.warmup_s,
            duration_s=settings.curve_s * BENCH_WINDOW_FACTOR,
            batch=batch,
            get_share=GET_SHARE,
        )


def run_phase(context: PhaseContext, *, batch: bool = False) -> None:
    """Each repetition runs every mode in turn (log, read_index, lease), each on a fresh cluster; with `batch`,
    the load generators send each wake-up's requests as RequestBatches."""
    settings, report = context.settings, context.report
    pipelined = f"{settings.clients} clients x {settings.window} in flight{', batched' if batch else ''}"
    for r in range(1, settings.runs + 1):
        for mode in READ_MODES:
            context.progress.step(f"90% get / 10% put, read_mode {mode} (run {r}/{settings.runs})")
            load = mode_load(context, mode, r, batch=batch)
            context.note_errors(f"read_mix_{mode}", load)
            what = f"90% get / 10% put, {pipelined}, read_mode {mode}"
            report.add(
                f"read_mix_{mode}_ops_s",
                load.ops_s,
                unit="ops/s",
                system="zvsr",
                what=f"{what}: completed ops/s",
                completed=load.completed,
                completed_gets=load.completed_gets,
            )
            report.add(f"read_mix_{mode}_p99_ms", load.p99_ms, unit="ms", system="zvsr", what=f"{what}: p99")


def conclude(report: Report) -> None:
    """The issue's target: the read-heavy mix at least 3x faster in read_index mode than through the log."""
    report.ratio("read_mix_read_index_vs_log", "read_mix_read_index_ops_s", "read_mix_log_ops_s", (">=", 3.0))
    report.ratio("read_mix_lease_vs_log", "read_mix_lease_ops_s", "read_mix_log_ops_s", None)


def format_read_mix(report: Report) -> str:
    """One row per mode (ops/s, p99, the share of completions that were gets), then the ratios to log."""
    rows = [f"{'read_mode':12} {'ops/s':>9} {'p99 ms':>8} {'gets':>6}"]
    for mode in READ_MODES:
        ops, p99 = report.figures.get(f"read_mix_{mode}_ops_s"), report.figures.get(f"read_mix_{mode}_p99_ms")
        if ops is None or p99 is None:
            continue
        share = sum(ops["completed_gets"]) / max(1, sum(ops["completed"]))
        rows.append(f"{mode:12} {ops['value']:9,.0f} {p99['value']:8.2f} {share:6.1%}")
    for ratio in report.ratios:
        paired = f" (paired {ratio['paired_median']:.2f}x)" if "paired_median" in ratio else ""
        rows.append(f"{ratio['name']}: {ratio['value']:.2f}x{paired}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="repetitions (the modes take turns in each)")
    parser.add_argument("--seconds", type=float, help="measuring window per mode and run (s)")
    parser.add_argument("--clients", type=int, help="load-generator processes (C)")
    parser.add_argument("--window", type=int, help="sessions in flight per load generator (W)")
    parser.add_argument("--batch", action="store_true", help="send each wake-up's requests as RequestBatches")
    parser.add_argument("--quick", action="store_true", help="the --quick settings of zvsr bench")
    arguments = parser.parse_args(argv)
    options = Settings.quick_defaults() if arguments.quick else {"runs": arguments.runs}
    if arguments.seconds is not None:
        options["curve_s"] = arguments.seconds / BENCH_WINDOW_FACTOR
    if arguments.clients is not None:
        options["clients"] = arguments.clients
    if arguments.window is not None:
        options["window"] = arguments.window
    settings = Settings(**options)
    _child_environment()
    report = Report()
    progress = Progress(steps(settings))
    with tempfile.TemporaryDirectory(prefix="zvsr-read-mix-") as work, Children(Path(work)) as children:
        context = PhaseContext(settings, report, children, Path(work), progress, lambda name, load: None)
        run_phase(context, batch=arguments.batch)
    progress.finish()
    conclude(report)
    print(format_read_mix(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
