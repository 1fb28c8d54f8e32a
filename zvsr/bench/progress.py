"""A progress line on stderr: ``[#####-----] 7/23 0:42 zvsr pipelined (run 2/3)``.

On a terminal the line is redrawn in place; otherwise (CI logs, pipes) each step is one line. stdout is left
alone, so ``zvsr bench --json > out.json`` holds only the JSON.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 24


class Progress:
    def __init__(self, total: int, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.started = time.monotonic()
        self.tty = self.stream.isatty()
        self._drawn = False

    def step(self, label: str) -> None:
        """Announce the step that starts now (the previous one is done)."""
        if self.done < self.total:
            self.done += 1
        self._draw(f"{label}", final=False)

    def note(self, text: str) -> None:
        """A line of its own (a warning, a finished figure), without disturbing the bar."""
        if not self.enabled:
            return
        if self.tty and self._drawn:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._drawn = False

    def finish(self) -> None:
        self.done = self.total
        self._draw("done", final=True)

    def _draw(self, label: str, *, final: bool) -> None:
        if not self.enabled:
            return
        filled = int(WIDTH * (self.done - (0 if final else 1)) / self.total)
        elapsed = int(time.monotonic() - self.started)
        line = (
            f"[{'#' * filled}{'-' * (WIDTH - filled)}] {self.done}/{self.total} "
            f"{elapsed // 60}:{elapsed % 60:02d} {label}"
        )
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
            self._drawn = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
