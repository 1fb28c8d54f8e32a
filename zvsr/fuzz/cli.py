"""`zvsr fuzz`: the command (click). See `zvsr.fuzz.live` for what is sent and checked.

It starts its own local cluster (`zvsr.runtime.processes.ProcessCluster` in a temporary directory) with a
random cluster id derived from the seed, runs `zvsr.fuzz.live.run_live_fuzz` against it, prints the report
(`zvsr.fuzz.report.FuzzReport`: a summary, or `--json`) and exits 0 only if every check passed. The fuzzer
itself is imported when the command runs, not when the `zvsr` command line loads.
"""

from __future__ import annotations

import json
import random
import secrets
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from zvsr import constants as c

if TYPE_CHECKING:
    from zvsr.fuzz.report import FuzzReport

# The default of `zvsr.fuzz.live.IMPERSONATION_INTERVAL_S` (one burst per ZMTP heartbeat timeout), written out
# so that loading this command does not load the fuzzer.
IMPERSONATION_INTERVAL_S: Final = c.ZMTP_HEARTBEAT_TIMEOUT_MS / 1000


def _progress(text: str) -> None:
    click.echo(f"  {text}", err=True)


@click.command("fuzz")
@click.option("--frames", type=click.IntRange(min=1), default=100_000, show_default=True, help="Frames to send.")
@click.option("--seed", type=int, default=None, help="Seed for the frames (default: random, printed).")
@click.option("--replicas", type=click.IntRange(1, c.REPLICAS_MAX), default=3, show_default=True)
@click.option(
    "--huge/--no-huge",
    default=True,
    show_default=True,
    help="Also send frames at the peer ports' MAXMSGSIZE (256 MiB); client ports and the proxy always get "
    "theirs.",
)
@click.option(
    "--impersonation-interval",
    type=click.FloatRange(0),
    default=IMPERSONATION_INTERVAL_S,
    show_default=True,
    help="Seconds between bursts from a DEALER impersonating a member on each peer port.",
)
@click.option(
    "--resets/--no-resets",
    default=True,
    show_default=True,
    help="Drop connections at will, resetting (TCP RST) one whose send timed out; --no-resets keeps peer-port "
    "connections open until the replicas drained them (avoids the libzmq abort described in zvsr.fuzz.live).",
)
@click.option(
    "--peer-rate",
    type=click.FloatRange(min=1),
    default=None,
    help="Frames/s per peer port (default: as fast as they are taken).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--keep", is_flag=True, help="Keep the cluster's directory (logs, data, history.jsonl) and print its path."
)
def fuzz_command(
    frames: int,
    seed: int | None,
    replicas: int,
    huge: bool,
    impersonation_interval: float,
    resets: bool,
    peer_rate: float | None,
    as_json: bool,
    keep: bool,
) -> None:
    """Start a local cluster, throw fuzzed frames at every socket under a client workload, and check it.

    Exit status 0 only if no process crashed, the cluster still serves, no acknowledged write was lost, the
    history is linearizable and every bad-input counter grew.
    """
    from zvsr.fuzz.live import run_live_fuzz  # here, not at import: `zvsr node` starts without the fuzzer
    from zvsr.runtime.processes import ProcessCluster

    seed = secrets.randbits(32) if seed is None else seed
    root = Path(tempfile.mkdtemp(prefix="zvsr-fuzz-"))

    def echo(text: str) -> None:
        click.echo(text, err=as_json)

    echo(f"zvsr fuzz: seed {seed}, {frames} frames, {replicas} replicas, cluster in {root}")
    cluster = ProcessCluster(root, replicas=replicas, cluster_id=2**63 + random.Random(seed).getrandbits(62))
    report: FuzzReport | None = None
    try:
        cluster.start()
        cluster.wait_for_primary(timeout_s=30)
        report = run_live_fuzz(
            cluster,
            frames,
            seed,
            huge=huge,
            impersonation_interval_s=impersonation_interval,
            resets=resets,
            peer_rate=peer_rate,
            history_path=root / "history.jsonl" if keep else None,
            progress=_progress,
        )
    finally:
        if report is None:
            click.echo(cluster.logs(), err=True)
        cluster.cleanup()
        if keep:
            echo(f"kept {root}")
        else:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(report.summary())
    sys.exit(0 if report.ok else 1)
