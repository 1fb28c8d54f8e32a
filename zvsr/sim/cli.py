"""`zvsr sim`: run the deterministic simulator over many seeds; exit 0 only with zero violations."""

from __future__ import annotations

import sys
import time

import click

from zvsr.constants import READ_MODE_LEASE, READ_MODES, REPLICAS_MAX
from zvsr.sim.network import NetworkOptions
from zvsr.sim.simulator import SimOptions, Violation, run_seed


@click.command("sim")
@click.option("--seeds", type=click.IntRange(min=1), default=100, show_default=True, help="How many seeds.")
@click.option(
    "--seed", type=click.IntRange(min=0), default=None, help="First seed (default: 0, or the one to replay)."
)
@click.option("--replicas", type=click.IntRange(1, REPLICAS_MAX), default=3, show_default=True)
@click.option("--clients", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--events",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Events in the safety phase of each seed.",
)
@click.option(
    "--loss",
    type=click.FloatRange(0, 0.5),
    default=None,
    help="Fixed message loss for every seed (default: each seed draws its own fault rates: swarm testing).",
)
@click.option("--no-lincheck", is_flag=True, help="Skip the linearizability check at the end of each seed.")
@click.option("--keep-going", is_flag=True, help="Run every seed even after a violation.")
@click.option("--verbose", is_flag=True, help="One line per seed.")
@click.option(
    "--no-reconfigure", is_flag=True, help="No reconfigurations among the faults (every seed keeps its members)."
)
@click.option(
    "--read-mode",
    type=click.Choice(READ_MODES),
    default=None,
    help="How gets are served (default: odd seeds lease, even seeds read_index; without swarm, read_index).",
)
@click.option(
    "--churn",
    is_flag=True,
    help="Session churn: a client table of 3, clients that often start new sessions, and late copies of requests.",
)
def sim_command(
    seeds: int,
    seed: int | None,
    replicas: int,
    clients: int,
    events: int,
    loss: float | None,
    no_lincheck: bool,
    keep_going: bool,
    verbose: bool,
    no_reconfigure: bool,
    read_mode: str | None,
    churn: bool,
) -> None:
    """Run SEEDS simulations with faults; print any violation with its seed and trace."""
    first = seed if seed is not None else 0
    options = SimOptions(
        replicas=replicas,
        clients=clients,
        events=events,
        network=NetworkOptions(loss=loss if loss is not None else NetworkOptions().loss),
        swarm=loss is None,
        check_linearizability=not no_lincheck,
        reconfigure=not no_reconfigure,
        read_mode=read_mode,
        churn=churn,
    )
    violations = 0
    total_events = 0
    total_ops = 0
    total_expire_ops = 0
    total_lock_grants = 0
    total_epochs = 0
    total_refused = 0
    reconfigured = 0
    total_reads = 0
    lease_seeds = 0
    unknown_verdicts = 0
    started = time.monotonic()
    for current in range(first, first + seeds):
        try:
            result = run_seed(current, options)
        except Violation as violation:
            violations += 1
            click.echo(violation.report, err=True)
            click.echo(
                f"replay: zvsr sim --seeds 1 --seed {current} --replicas {replicas} --events {events}",
                err=True,
            )
            if not keep_going:
                break
            continue
        total_events += result.events
        total_ops += result.ops_ok
        total_expire_ops += result.lease_expire_ops
        total_lock_grants += result.lock_grants
        total_epochs += result.epochs
        total_refused += result.refused_expired
        reconfigured += result.epochs > 0
        total_reads += result.reads_served
        lease_seeds += result.read_mode == READ_MODE_LEASE
        unknown_verdicts += result.linearizable == "unknown"
        if verbose:
            click.echo(
                f"seed={current} events={result.events} ops={result.ops_ok} unknown={result.ops_unknown} "
                f"views={result.views} virtual_ms={result.virtual_ms} lincheck={result.linearizable} "
                f"lease_expire_ops={result.lease_expire_ops} leases_expired={result.leases_expired} "
                f"lock_grants={result.lock_grants} epochs={result.epochs} read_mode={result.read_mode} "
                f"reads_served={result.reads_served}"
            )
    elapsed = time.monotonic() - started
    click.echo(
        f"seeds={seeds} violations={violations} events={total_events} ops={total_ops} "
        f"lincheck_unknown={unknown_verdicts} lease_expire_ops={total_expire_ops} lock_grants={total_lock_grants} "
        f"reconfigurations={total_epochs} seeds_reconfigured={reconfigured} reads_served={total_reads} "
        f"lease_seeds={lease_seeds} refused_at_commit={total_refused} elapsed_s={elapsed:.1f}"
    )
    sys.exit(1 if violations else 0)
