"""Run a reactor in the foreground until asked to stop: SIGTERM / SIGINT in the main thread, or an Event.

Shared by the replica node and the proxy so both stop the same way: the signal only sets the event, the
reactor notices it within one tick and returns, and the caller's `close` always runs.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


def run_until_stopped(
    run: Callable[[threading.Event], None], close: Callable[[], None], stop: threading.Event | None = None
) -> None:
    stop = threading.Event() if stop is None else stop
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        for number in (signal.SIGTERM, signal.SIGINT):
            previous[number] = signal.signal(number, request_stop)
    try:
        run(stop)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        close()
