"""`zvsr bench`: the command (click). See `zvsr.bench.runner` for the phases and docs/benchmarks.md."""

from __future__ import annotations

import json
import sys
from typing import Any

import click


@click.command("bench")
@click.option(
    "--quick", is_flag=True, help="A smoke run, under 60 s: short windows, one repetition, no PySyncObj."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object to stdout (progress stays on stderr)."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Results file (JSON). Default: bench/results/<timestamp>.json under the current directory.",
)
@click.option(
    "--runs", type=click.IntRange(1, 99), default=None, help="Repetitions per figure (median). [3; quick 1]"
)
@click.option("--clients", type=click.IntRange(1, 64), default=None, help="Load-generator processes, C. [2]")
@click.option(
    "--window", type=click.IntRange(1, 4096), default=None, help="Requests in flight per client, W. [64]"
)
@click.option(
    "--duration", "duration_s", type=click.FloatRange(0.1), default=None, help="Throughput window, s. [4]"
)
@click.option("--steady", "steady_s", type=click.FloatRange(0.1), default=None, help="Steady-load phase, s. [60]")
@click.option(
    "--curve-window", "curve_s", type=click.FloatRange(0.1), default=None, help="Window of a curve point, s. [2]"
)
@click.option(
    "--curves/--no-curves",
    default=None,
    help="Client-count, value-size and 5-replica curves, and the read mix per read_mode (phase 5). [on]",
)
@click.option(
    "--failover-runs", type=click.IntRange(1, 99), default=None, help="Failover repetitions. [5; quick 1]"
)
@click.option(
    "--pysyncobj/--no-pysyncobj",
    default=None,
    help="Measure the PySyncObj baseline. [when installed, except with --quick]",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Parent of the work directory (cluster data, fdatasync probe). [the system temp dir]",
)
@click.option("--keep", is_flag=True, help="Keep the work directory (logs, data) instead of removing it.")
@click.option(
    "--metrics",
    is_flag=True,
    default=None,
    help="Clusters serve Prometheus /metrics, each scraped once a second (to price the metrics). [off]",
)
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def bench_command(
    quick: bool,
    as_json: bool,
    out: str | None,
    no_progress: bool,
    **options: Any,
) -> None:
    """Measure zvsr on this machine against baselines run in the same run; print a table of ratios."""
    from zvsr.bench import runner  # here, not at import: `zvsr node` starts without loading the bench
    from zvsr.bench.progress import Progress

    defaults = runner.Settings.quick_defaults() if quick else {}
    settings = runner.Settings(**{**defaults, **{k: v for k, v in options.items() if v is not None}})
    with_pysyncobj = (
        settings.pysyncobj if settings.pysyncobj is not None else (not quick and runner.pysyncobj_available())
    )
    progress = Progress(runner.plan(settings, with_pysyncobj), enabled=not no_progress)
    try:
        result = runner.clean_for_json(runner.run(settings, progress=progress))
    except KeyboardInterrupt:
        progress.note("interrupted: every process stopped, temporary files removed")
        raise SystemExit(130) from None
    except (RuntimeError, AssertionError, OSError) as error:
        raise click.ClickException(f"bench failed: {type(error).__name__}: {error}") from error
    path = runner.results_path(out, result["started"])
    result["results_file"] = str(path)
    runner.write_results(result, path)
    table = runner.format_table(result)
    if as_json:
        click.echo(table, err=True)
        click.echo(f"results: {path}", err=True)
        sys.stdout.write(json.dumps(result, allow_nan=False) + "\n")
    else:
        click.echo(table)
        click.echo(f"\nresults: {path}")
