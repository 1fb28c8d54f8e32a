"""`zvsr watch PREFIX`: print the committed changes under a key prefix as they happen (a `zvsr.watch.Watcher`).

Theory of operation
-------------------
The command is a loop over a `Watcher` with notices on (`zvsr.watch`): it prints each event as one line, on
stdout, as it arrives — human-readable by default, one JSON object per line with ``--json`` — and the notices
(the watch started, ops compacted, a resync done) on stderr in human mode, as JSON lines on stdout with
``--json``. Human lines::

    op 12  snapshot  config/a = 1        a key as it is in the first snapshot (op 12)
    op 17  put  config/a = 2             op 17 set it (put, cas, incr)
    op 18  del  config/a                 op 18 removed it (delete, a lease that ended)
    op 40  resync  config/b = 3          after a compaction: a key as it is in the new snapshot (op 40)
    op 40  resync del  config/a          ... a key that is gone

Keys print as they are unless they hold spaces or unprintable characters (then as a JSON string); values print
as JSON (bytes as hex). With ``--json`` every line is an object with an ``event``:

- ``snapshot``, ``change``, ``resync``: ``{"event", "op_number", "key", "value", "deleted"}``;
- ``synced``: ``{"event": "synced", "op_number", "keys"}`` after the keys of a snapshot (first or resync): the
  state as of ``op_number`` is complete (``keys`` keys);
- ``compacted``: ``{"event": "compacted", "from_op", "oldest_available"}``: the replicas no longer hold the
  ops after ``from_op`` (the oldest they hold is ``oldest_available``, null if none said): a ``resync`` follows.

Without ``--from-op`` it starts with the prefix's current keys (``snapshot``), then ``synced``, then the
changes. ``--from-op N`` starts after op N instead: every change with op_number > N, none missed and none twice
(from the replicas' history, `zvsr.runtime.watch_history`), then the live ones; to resume a watch, pass the
op_number of the last line seen. If the replicas no longer hold op N + 1, ``compacted`` says so and a full
``resync`` of the prefix follows — never a silent gap.

It follows every replica, so it goes on through a failover. SIGINT (Ctrl-C) and SIGTERM end it with status 0
after closing its sockets; so does a closed stdout (``| head``). It fails (status 1) if no replica answers
within ``--timeout-ms`` at the start, naming the endpoints it tried.

It takes the client-side commands' shared options (`zvsr.cli_options`: ``--config``, ``--timeout-ms``,
``--json``, before or after its name) and finds its cluster as they do; `zvsr.cli` adds it to the command tree.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from types import FrameType
from typing import Any, TextIO

import click
import zmq

from zvsr.cli_options import ClientSettings, client_command
from zvsr.constants import CLIENT_TIMEOUT_MS, ID_MAX
from zvsr.runtime.cluster_config import ClusterConfig
from zvsr.watch import COMPACTED, RESYNC, SNAPSHOT, SYNCED, WatchError, WatchEvent, watch

WAKE_MS = 200  # the loop looks at its stop flag this often (a signal's handler only sets the flag)


# --- what a line says ---------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """An app value as JSON can hold it: bytes as hex, map keys as str (msgpack allows int, bytes... keys)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json.dumps(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def json_line(event: WatchEvent) -> str:
    """One ``--json`` line (see the module docstring)."""
    if event.kind == COMPACTED:
        shown: dict[str, Any] = {"event": COMPACTED, "from_op": event.op_number, "oldest_available": event.value}
    elif event.kind == SYNCED:
        shown = {"event": SYNCED, "op_number": event.op_number, "keys": event.value}
    else:
        shown = {
            "event": event.kind,
            "op_number": event.op_number,
            "key": event.key,
            "value": jsonable(event.value),
            "deleted": event.deleted,
        }
    return json.dumps(shown)


def human_line(event: WatchEvent) -> str:
    """One human stdout line for a key's event (not a notice: see `notice_line`)."""
    if event.kind == SNAPSHOT:
        tag = "snapshot"
    elif event.kind == RESYNC:
        tag = "resync del" if event.deleted else "resync"
    else:
        tag = "del" if event.deleted else "put"
    line = f"op {event.op_number}  {tag}  {shown_key(event.key)}"
    return line if event.deleted else f"{line} = {json.dumps(jsonable(event.value))}"


def notice_line(event: WatchEvent, prefix: str, *, first: bool) -> str:
    """The human stderr line of a notice; `first`: no snapshot was taken before this one."""
    if event.kind == COMPACTED:
        oldest = "" if event.value is None else f" (the oldest they hold is op {event.value})"
        return (
            f"compacted: the replicas no longer hold the ops after op {event.op_number}{oldest}: "
            f"resyncing from a snapshot of {prefix!r}"
        )
    keys = f"{event.value} key{'' if event.value == 1 else 's'}"
    if first:
        return f"watching {prefix!r}: {keys} as of op {event.op_number}; changes follow (Ctrl-C to stop)"
    return f"resynced {prefix!r}: {keys} as of op {event.op_number}; changes follow"


def shown_key(key: str) -> str:
    """The key as it is, or as a JSON string if it is empty or holds spaces or unprintable characters."""
    plain = key and key.isprintable() and not any(character.isspace() for character in key)
    return key if plain else json.dumps(key)


# --- the loop -----------------------------------------------------------------------------------------------


class WatchStartError(Exception):
    """No replica answered at the start."""


class _StopSignals:
    """SIGINT and SIGTERM set `requested` instead of interrupting: the loop ends at its next wake-up. The
    previous handlers come back on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        self.requested = True

    def __enter__(self) -> _StopSignals:
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


class _Printer:
    """Each event as its line: key events on `out`; notices on `err` in human mode, on `out` with --json."""

    def __init__(self, prefix: str, *, as_json: bool, out: TextIO, err: TextIO) -> None:
        self.prefix = prefix
        self.as_json = as_json
        self.out = out
        self.err = err
        self.started = False  # a first snapshot was listed, or a compaction said a resync comes

    def show(self, event: WatchEvent) -> None:
        if self.as_json:
            self._write(self.out, json_line(event))
        elif event.kind == COMPACTED or event.kind == SYNCED:
            self._write(self.err, notice_line(event, self.prefix, first=not self.started))
        else:
            self._write(self.out, human_line(event))
        if event.kind == COMPACTED or event.kind == SYNCED:
            self.started = True

    def say(self, line: str) -> None:
        """A line for the human reader only (stderr; nothing with --json)."""
        if not self.as_json:
            self._write(self.err, line)

    def _write(self, stream: TextIO, line: str) -> None:
        stream.write(line + "\n")
        stream.flush()  # a line as soon as it happens, also into a pipe


def run_watch(
    config: ClusterConfig,
    prefix: str,
    *,
    from_op: int | None = None,
    as_json: bool = False,
    timeout_ms: int = CLIENT_TIMEOUT_MS,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> None:
    """Print the changes under `prefix` until SIGINT or SIGTERM (see the module docstring). Raises
    WatchStartError if no replica answers within `timeout_ms` at the start, WatchError if the cluster refuses.
    `out` and `err`: sys.stdout and sys.stderr as they are when it runs, by default."""
    printer = _Printer(prefix, as_json=as_json, out=out or sys.stdout, err=err or sys.stderr)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with (
            _StopSignals() as stop,  # first: a signal never finds the watcher half made
            watch(config, prefix, context=context, from_op=from_op, notices=True) as watcher,
        ):
            deadline = time.monotonic() + timeout_ms / 1000
            while not watcher.wait_synced(WAKE_MS):
                if stop.requested:
                    return
                if time.monotonic() >= deadline:
                    raise WatchStartError(f"no replica answered within {timeout_ms} ms")
            if from_op is not None and not watcher.clone.compacted:
                printer.say(f"watching {prefix!r}: the changes after op {from_op}, then new ones (Ctrl-C to stop)")
            while not stop.requested:
                for event in watcher.poll(WAKE_MS):
                    printer.show(event)
    finally:
        context.term()


# --- the click command ----------------------------------------------------------------------------------------


@click.command("watch")
@click.argument("prefix")
@click.option(
    "--from-op",
    type=click.IntRange(0, ID_MAX),
    default=None,
    metavar="N",
    help="Start after op N: every change with a higher op number, then live (no snapshot first). "
    "To resume, give the op number of the last line seen.",
)
@client_command("config", "timeout_ms", "json", timeout_ms=CLIENT_TIMEOUT_MS)
def watch_command(prefix: str, from_op: int | None, settings: ClientSettings) -> None:
    """Print the committed changes under PREFIX as they happen (`""` for every key), until Ctrl-C.

    First the keys under PREFIX as they are (`snapshot`), then each change: `op 17  put  a = 1`,
    `op 18  del  a`. With --from-op N, the changes after op N instead of the snapshot. --json: one JSON object
    per line. --timeout-ms: how long to wait for a first answer. docs/operations.md, "Watching keys".
    """
    try:
        run_watch(
            settings.config, prefix, from_op=from_op, as_json=settings.as_json, timeout_ms=settings.timeout_ms
        )
    except WatchStartError as error:
        raise settings.unreachable(str(error), replicas=True, watch=True) from error
    except (WatchError, ValueError) as error:  # refused (e.g. too_large), or a replica without a watch endpoint
        raise click.ClickException(str(error)) from error
    except BrokenPipeError:  # the reader went away (`| head`): done, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's last flush does not fail again
