"""Child processes of a bench run: started in their own session, always SIGKILLed (with their group) at the end.

`Children` is a context manager; leaving it — normally, by an exception or by Ctrl-C — kills every process it
started, by process group, and reaps it. Lines from a child's stdout are read with a deadline, never a blind
wait.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO


class ChildError(RuntimeError):
    """A child process did not do what was expected of it in time (the message says which and why)."""


class Children:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[str]] = []

    def spawn(self, module: str, arguments: list[str], *, name: str, stdin: bool = False) -> subprocess.Popen[str]:
        """`python -m module arguments…`, stdout a pipe (text), stderr appended to `<log_dir>/<name>.log`."""
        with open(self.log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module, *arguments],
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        if process in self.processes:
            self.processes.remove(process)

    def kill_all(self) -> None:
        for process in list(self.processes):
            self.kill(process)

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.kill_all()


def read_line(process: subprocess.Popen[str], *, timeout_s: float, what: str) -> str:
    """The next line the child writes to stdout, within `timeout_s`."""
    stream: IO[str] | None = process.stdout
    assert stream is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            if selector.select(left):
                line = stream.readline()
                if not line:
                    raise ChildError(f"{what}: the process exited (code {process.wait(timeout=10)})")
                return line.rstrip("\n")
