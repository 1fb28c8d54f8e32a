"""`zvsr chaos`: the command (click). See `zvsr.chaos.run` for what a run does and checks.

Exit status: 0 when every check passed, 1 when one failed (the run's directory is kept and its path printed),
2 when this machine cannot make network namespaces (not root, no iproute2) — one line says why, nothing ran —
and 130 when interrupted (after cleaning up). The driver is imported when the command runs, not when the
`zvsr` command line loads.
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
from types import FrameType

import click


def _progress(text: str) -> None:
    click.echo(f"  {text}", err=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command("chaos")
@click.option("--replicas", type=click.Choice(["3", "5"]), default="3", show_default=True)
@click.option("--seed", type=int, default=None, help="Seed of the schedule of faults (default: random, printed).")
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Seconds to keep drawing faults for; the first round, every kind of fault once, always runs.",
)
@click.option("--kind", "kinds", multiple=True, help="Only these kinds of fault (repeat the option); default all.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--keep", is_flag=True, help="Keep the run's directory (history, logs, data) even when it passed.")
def chaos_command(
    replicas: str, seed: int | None, duration: float, kinds: tuple[str, ...], as_json: bool, keep: bool
) -> None:
    """Run a cluster in network namespaces under a seeded schedule of network and process faults, with a client
    workload through the proxy; check that no acknowledged write was lost and the history is linearizable, and
    report how long the cluster took to acknowledge a write again after each fault. Needs root."""
    from zvsr.chaos.nemesis import NEMESES  # here, not at import: `zvsr node` starts without the chaos tools
    from zvsr.chaos.netns import NetworkUnavailable
    from zvsr.chaos.run import run_chaos

    unknown = sorted(set(kinds) - set(NEMESES))
    if unknown:
        raise click.BadParameter(f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(NEMESES)}")
    seed = secrets.randbits(32) if seed is None else seed
    signal.signal(signal.SIGTERM, _interrupt)
    click.echo(f"zvsr chaos: seed {seed}, {replicas} replicas, duration {duration:g} s", err=True)
    try:
        report = run_chaos(
            replicas=int(replicas),
            seed=seed,
            duration_s=duration,
            keep=keep,
            kinds=list(kinds) or None,
            progress=_progress,
        )
    except NetworkUnavailable as error:
        click.echo(f"zvsr chaos: cannot run here: {error}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("zvsr chaos: interrupted; processes, namespaces and links removed", err=True)
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(report.summary())
    if not report.ok or keep:
        click.echo(f"history and logs kept in {report.run_dir}", err=True)
    sys.exit(0 if report.ok else 1)
