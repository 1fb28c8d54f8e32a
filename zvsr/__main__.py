"""`python -m zvsr` is the `zvsr` command (the launcher starts its children this way)."""

from zvsr.cli import main

main()
