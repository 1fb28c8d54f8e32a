"""Logging for zvsr processes: one line per event that starts with who said it, in text or JSON.

Theory of operation
-------------------
A failing run should read as a story (STYLE rule 12), so every line a replica writes starts with the replica
and its state at that moment: ``r1 normal v3: became primary of view 3``. The state is not formatted by each
caller: a `ReplicaLogger` (a `logging.LoggerAdapter`) asks its node for ``(status, view)`` when — and only
when — a record is actually emitted, and attaches ``replica``, ``status`` and ``view`` to the record; the
formatters below turn them into the prefix (text) or into fields (JSON):

    text:  r1 normal v3: became primary of view 3 (op_number 12, commit_number 12)
           r1 normal v3: WARNING peer: decode error (not_msgpack): … (4 more suppressed)
    json:  {"ts": "2026-05-09T07:35:25.123Z", "level": "info", "replica": 1, "status": "normal", "view": 3,
            "msg": "became primary of view 3 (op_number 12, commit_number 12)"}

INFO and DEBUG lines carry no level word (they are the story); WARNING and above say so after the prefix.
Records without replica context (the proxy, the CLI) start with the logger's name instead.

The protocol core formats its own lines as ``r1 normal v3: text`` and hands them to a callback; the node
attaches that callback only when DEBUG is enabled, strips the core's prefix and logs the text through its
`ReplicaLogger`, so core lines look exactly like the node's in both formats and cost nothing at INFO.

Bad input from outside must be visible but must not flood the log (a fuzzer or a misconfigured client can
send thousands of messages a second): `RateLimitedWarnings` writes at most one line per reason per interval
and says how many it suppressed; the totals are in the node's counters anyway.

`setup_logging(level, fmt)` is for processes (`zvsr node`, `zvsr proxy`): it configures the ``zvsr`` logger
hierarchy with one handler on stderr. Libraries and tests that embed a node leave logging to their host.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import IO, Any, Final

from zvsr.constants import BAD_INPUT_LOG_INTERVAL_MS, LOG_DETAIL_CHARS_MAX, LOG_WARNING_REASONS_MAX

ROOT_LOGGER: Final = "zvsr"
LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_HANDLER_NAME: Final = "zvsr-setup"

Context = Callable[[], tuple[str, int]]
"""What a replica's lines are prefixed with, read at emit time: (status, view)."""


class ReplicaLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds ``replica``, ``status``, ``view`` to every record it emits (read from `context` at that moment)."""

    def __init__(self, logger: logging.Logger, *, replica: int, context: Context) -> None:
        super().__init__(logger, {})
        self.replica = replica
        self._context = context

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        status, view = self._context()
        extra = kwargs.get("extra")
        fields = {"replica": self.replica, "status": status, "view": view}
        kwargs["extra"] = fields if extra is None else {**extra, **fields}
        return msg, kwargs


def _prefix(record: logging.LogRecord) -> str:
    replica = getattr(record, "replica", None)
    if replica is None:
        return f"{record.name}: "
    return f"r{replica} {getattr(record, 'status', '?')} v{getattr(record, 'view', '?')}: "


class TextFormatter(logging.Formatter):
    """``r1 normal v3: message``; ``WARNING`` (and above) after the prefix; tracebacks on following lines."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno <= logging.INFO else f"{record.levelname} "
        line = f"{_prefix(record)}{level}{record.getMessage()}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ms), level, replica, status, view, msg (+ logger, exc if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "replica": getattr(record, "replica", None),
            "status": getattr(record, "status", None),
            "view": getattr(record, "view", None),
            "msg": record.getMessage(),
            "logger": record.name,
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``: ``2026-05-09T07:35:25.123Z``."""
    return datetime.fromtimestamp(created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def setup_logging(level: str = "info", fmt: str = "text", *, stream: IO[str] | None = None) -> logging.Logger:
    """Configure the ``zvsr`` loggers of this process: `level` (debug/info/warning/error), `fmt` (text/json).

    Idempotent: a second call replaces the handler of the first. Records do not propagate to the root logger,
    so a host that also configured logging does not print them twice.
    """
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be text or json, got {fmt!r}")
    logger = logging.getLogger(ROOT_LOGGER)
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(LEVELS[level])
    logger.propagate = False
    return logger


class RateLimitedWarnings:
    """At most one warning per reason per interval; the lines in between are counted and reported with the next.

    `reason` should come from a fixed vocabulary (it keys the limiter); put anything peer-controlled in
    `detail`, which is cut to LOG_DETAIL_CHARS_MAX characters (a decode error may quote a hostile message).
    At most LOG_WARNING_REASONS_MAX reasons are tracked; beyond that the table starts afresh.
    """

    def __init__(
        self,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger],
        *,
        interval_ms: int = BAD_INPUT_LOG_INTERVAL_MS,
        clock: Callable[[], float] = time.monotonic,
        level: int = logging.WARNING,
    ) -> None:
        self._log = log
        self._interval_s = interval_ms / 1000
        self._clock = clock
        self._level = level
        self._last: dict[str, float] = {}  # reason -> when it was last written
        self._suppressed: dict[str, int] = {}

    def warn(self, reason: str, detail: str = "") -> bool:
        """Write `reason: detail` unless the same reason was written less than an interval ago; True if written."""
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self._interval_s:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return False
        if last is None and len(self._last) >= LOG_WARNING_REASONS_MAX:
            self._last.clear()
            self._suppressed.clear()
        self._last[reason] = now
        suppressed = self._suppressed.pop(reason, 0)
        if len(detail) > LOG_DETAIL_CHARS_MAX:
            detail = detail[: LOG_DETAIL_CHARS_MAX - 3] + "..."
        text = f"{reason}: {detail}" if detail else reason
        if suppressed:
            text = f"{text} ({suppressed} more suppressed)"
        self._log.log(self._level, text)
        return True

    def suppressed(self, reason: str) -> int:
        return self._suppressed.get(reason, 0)
