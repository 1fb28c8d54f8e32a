"""Histories: the operations a linearizability check is run on.

A history is a sequence of :class:`Operation` records, each the interval between a client's call and the
moment it saw the response.  Two sentinels stand in for outputs that carry no observation:

* :data:`UNKNOWN` -- the client never learnt the outcome (timeout, crash, log ended first).  Such an
  operation may have taken effect at any instant after its call, even after the client gave up waiting,
  or never at all.  The checker therefore treats its return time as +infinity, whatever the record says,
  and does not require it to be linearized.
* :data:`FAILED` -- the system told the client the operation definitely did not take effect (and it read
  nothing).  It constrains nothing, so the checker drops it.

An answer that *is* an observation, such as a compare-and-set that reported "no, the value differs",
is an ordinary output and not :data:`FAILED`.

:class:`HistoryRecorder` builds a history in memory from invoke/complete events, which is what a
simulator or a test harness usually has at hand.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final


class Outcome(enum.Enum):
    """Outputs that carry no observation (see the module docstring)."""

    UNKNOWN = "unknown"
    FAILED = "failed"

    def __repr__(self) -> str:
        return self.name


UNKNOWN: Final = Outcome.UNKNOWN
FAILED: Final = Outcome.FAILED


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of a history.

    ``input`` and ``output`` are interpreted by the model only.  ``return_`` is ``math.inf`` for an
    operation whose outcome is unknown; ``call`` must be finite and not later than ``return_``.  The
    checker treats an operation as pending when either its output is :data:`UNKNOWN` or its return is
    infinite, and then ignores the output it carries.
    """

    client_id: int
    input: Any
    output: Any
    call: float
    return_: float = math.inf

    def __post_init__(self) -> None:
        if not math.isfinite(self.call):
            raise ValueError(f"call time must be finite, got {self.call!r}")
        if self.return_ < self.call:
            raise ValueError(f"return time {self.return_!r} is before call time {self.call!r}")

    @property
    def pending(self) -> bool:
        """True when the outcome is unknown: the operation may or may not have taken effect."""
        return self.output is UNKNOWN or self.return_ == math.inf


class HistoryRecorder:
    """Collects invoke/complete events into a list of :class:`Operation`.

    Operations still open when :meth:`history` is called get an unknown outcome, as a client that never
    heard back cannot tell whether its request was applied.
    """

    def __init__(self) -> None:
        self._open: dict[int, tuple[int, Any, float]] = {}
        self._done: list[Operation] = []
        self._next_handle = 0

    def invoke(self, client_id: int, input: Any, time: float) -> int:
        """Record a call; returns a handle for :meth:`complete`."""
        handle = self._next_handle
        self._next_handle += 1
        self._open[handle] = (client_id, input, time)
        return handle

    def complete(self, handle: int, output: Any, time: float) -> None:
        """Record the response to the call ``handle``; ``output`` may be :data:`UNKNOWN` or :data:`FAILED`."""
        client_id, input, call = self._open.pop(handle)
        return_ = math.inf if output is UNKNOWN else time
        self._done.append(Operation(client_id, input, output, call, return_))

    def history(self) -> list[Operation]:
        """All operations, completed ones first, then the open ones with an unknown outcome."""
        still_open = [
            Operation(client_id, input, UNKNOWN, call, math.inf) for client_id, input, call in self._open.values()
        ]
        return [*self._done, *still_open]


def zvsr_operation(record: Mapping[str, Any]) -> Operation:
    """Turn one record of the ``zvsr`` history format (see :mod:`zvsr.lincheck.models`) into an Operation.

    Raises ``ValueError`` (or ``KeyError``/``TypeError``) when the record is malformed.
    """
    client = record["client"]
    if not isinstance(client, int) or isinstance(client, bool):
        raise ValueError(f"'client' must be an integer, got {client!r}")
    call = _time(record["call"], "call")
    ret_raw = record.get("return")
    status = record.get("status", "ok" if ret_raw is not None else "unknown")
    op = record["op"]
    if not isinstance(op, Mapping) or not isinstance(op.get("op"), str):
        raise ValueError(f"'op' must be an object with a string 'op' field, got {op!r}")
    if status == "fail":
        output: Any = FAILED
        return_ = _time(ret_raw, "return") if ret_raw is not None else math.inf
    elif status == "unknown" or ret_raw is None:
        output, return_ = UNKNOWN, math.inf
    elif status == "ok":
        output, return_ = record.get("result"), _time(ret_raw, "return")
    else:
        raise ValueError(f"'status' must be 'ok', 'fail' or 'unknown', got {status!r}")
    return Operation(client, dict(op), output, call, return_)


def _time(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"'{field}' must be a number, got {value!r}")
    return float(value)
