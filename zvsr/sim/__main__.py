"""`python -m zvsr.sim` is `zvsr sim`."""

from zvsr.sim.cli import sim_command

sim_command()
