"""The `zvsr` command line (click). Each subcommand lives beside the layer it drives."""

from __future__ import annotations

import click

from zvsr import __version__
from zvsr.lincheck.cli import lincheck_command
from zvsr.sim.cli import sim_command


@click.group()
@click.version_option(__version__, prog_name="zvsr")
def main() -> None:
    """zvsr: Viewstamped Replication over ZeroMQ."""


main.add_command(sim_command, "sim")
main.add_command(lincheck_command, "lincheck")
