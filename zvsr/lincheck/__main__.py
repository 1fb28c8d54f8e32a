"""``python -m zvsr.lincheck FILE --format FMT``: the lincheck command on its own (see cli.py)."""

from zvsr.lincheck.cli import lincheck_command

if __name__ == "__main__":
    lincheck_command(prog_name="python -m zvsr.lincheck")
