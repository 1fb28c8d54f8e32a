"""Command-line front end: ``lincheck FILE --format FMT [--timeout S] [--json]``.

Exit status: 0 linearizable, 1 not linearizable, 2 no verdict -- the file could not be read or parsed,
or the time budget ran out (verdict "unknown").  Scripts can thus treat anything but 0 and 1 as "the
check itself did not work" rather than as a finding about the system under test.

The command is a plain click command, exported as ``lincheck_command`` so the main ``zvsr`` CLI can mount
it with ``main.add_command(lincheck_command, "lincheck")``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from zvsr.lincheck.parsers import FORMATS, ParseError, load_history
from zvsr.lincheck.search import check

__all__ = ["EXIT_ERROR", "EXIT_ILLEGAL", "EXIT_OK", "lincheck_command"]

EXIT_OK = 0
EXIT_ILLEGAL = 1
EXIT_ERROR = 2


@click.command(name="lincheck")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(FORMATS)),
    required=True,
    help="History format (jepsen-register: Jepsen etcd logs; jepsen-kv: Jepsen EDN kv; zvsr: JSON lines).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Give up with verdict 'unknown' (exit 2) after this long. Default (or 0): no limit.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def lincheck_command(file: Path, fmt: str, timeout_s: float | None, as_json: bool) -> None:
    """Check that the history in FILE is linearizable.

    Exits 0 if it is, 1 if it is not, 2 on an unreadable or malformed file or when the time budget runs
    out.
    """
    try:
        history, model = load_history(file, fmt)
    except (OSError, UnicodeDecodeError, ParseError) as exc:
        _emit_error(f"cannot load {file}: {exc}", as_json)
        raise SystemExit(EXIT_ERROR) from None
    result = check(history, model, timeout_s)
    if as_json:
        click.echo(json.dumps({"file": str(file), "format": fmt, **result.to_json()}, default=str))
    else:
        click.echo(result.summary())
        if result.verdict == "illegal" and result.failure is not None:
            if result.failure.partial_linearization:
                click.echo("  end of a linearization of that prefix:")
            for op in result.failure.partial_linearization[-10:]:
                click.echo(f"  ... {model.describe_operation(op.input, op.output)}  (client {op.client_id})")
    code = {"ok": EXIT_OK, "illegal": EXIT_ILLEGAL}.get(result.verdict, EXIT_ERROR)
    raise SystemExit(code)


def _emit_error(message: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"verdict": "error", "error": message}))
    else:
        click.echo(f"error: {message}", err=True)
