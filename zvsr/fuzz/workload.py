"""A client workload with its history recorded: what the live fuzz and the real-process tests run alongside.

Theory of operation
-------------------
`Workload` starts a few client threads (`zvsr.client.Client`) that write through the proxy: each puts
increasing numbers to its own key, reads it back and increments a shared counter, all under a random `prefix`
that no fuzzed operation can name. Every call is recorded as a `zvsr.lincheck.Operation` — with its result, or
as pending when the outcome is unknown (a timeout or an error) — along with what was acknowledged. After the
run the checks read the cluster back: `lost_writes` (no acknowledged put is missing or older, and the counter
lies between the acknowledged increments and those plus the unknown ones: none ran twice) and
`linearizability` (the history against `zvsr.lincheck.ZvsrModel`). `write_history` saves the history for
`zvsr lincheck --format zvsr`.
"""

from __future__ import annotations

import itertools
import json
import math
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zvsr.client import Client, Timeout, ZvsrError
from zvsr.lincheck import UNKNOWN, CheckResult, Operation, ZvsrModel, check


@dataclass
class Workload:
    """Clients writing through the proxy while the fuzz runs, with their history recorded for the checks.

    Each client puts increasing numbers to its own key, reads it back and increments a shared counter; keys
    live under `prefix`, which no fuzzed operation can name.
    """

    proxy: str
    clients: int = 4
    prefix: str = field(default_factory=lambda: f"fuzz-load/{secrets.token_hex(8)}/")
    timeout_ms: int = 8000
    history: list[Operation] = field(default_factory=list)
    acknowledged_puts: dict[str, Any] = field(default_factory=dict)
    acknowledged_increments: int = 0
    unknown_increments: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.monotonic)
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def counter_key(self) -> str:
        return f"{self.prefix}counter"

    def run(self) -> None:
        self.threads = [
            threading.Thread(target=self._client, args=(n,), name=f"fuzz-load-{n}", daemon=True)
            for n in range(self.clients)
        ]
        for thread in self.threads:
            thread.start()

    def finish(self, timeout_s: float = 30) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=timeout_s)

    def acknowledged(self) -> int:
        with self.lock:
            return sum(1 for op in self.history if op.output is not UNKNOWN)

    def now(self) -> float:
        """Seconds since the workload started: the clock of `Operation.call` and `return_`."""
        return time.monotonic() - self.started

    def writes_acknowledged(self, *, after: float, until: float = math.inf) -> list[float]:
        """When the writes (puts and incrs) acknowledged from `after` to `until` completed (`now()` seconds),
        in order."""
        with self.lock:
            return sorted(
                op.return_
                for op in self.history
                if not op.pending and after <= op.return_ <= until and op.input["op"] in ("put", "incr")
            )

    def first_write_acknowledged(self, *, after: float) -> float | None:
        return next(iter(self.writes_acknowledged(after=after)), None)

    def _client(self, number: int) -> None:
        key = f"{self.prefix}k{number}"
        with Client(self.proxy, timeout_ms=self.timeout_ms) as client:
            for sequence in itertools.count():
                if self.stop.is_set():
                    return
                operation: dict[str, Any]
                if sequence % 3 == 2:
                    operation = {"op": "incr", "key": self.counter_key, "by": 1}
                elif sequence % 3 == 1:
                    operation = {"op": "get", "key": key}
                else:
                    operation = {"op": "put", "key": key, "value": sequence}
                call = time.monotonic() - self.started
                try:
                    result = client.execute(operation)
                except Timeout:
                    self._record(number, operation, UNKNOWN, call, None)
                    continue
                except ZvsrError as error:
                    self._record(number, operation, UNKNOWN, call, None)
                    with self.lock:
                        self.errors[error.code] += 1
                    time.sleep(0.05)
                    continue
                self._record(number, operation, result, call, time.monotonic() - self.started)

    def _record(
        self, number: int, operation: dict[str, Any], result: Any, call: float, done: float | None
    ) -> None:
        with self.lock:
            if result is UNKNOWN or done is None:
                self.history.append(Operation(number, operation, UNKNOWN, call))
                if operation["op"] == "incr":
                    self.unknown_increments += 1
                return
            self.history.append(Operation(number, operation, result, call, done))
            if operation["op"] == "put":
                self.acknowledged_puts[operation["key"]] = operation["value"]
            elif operation["op"] == "incr":
                self.acknowledged_increments += 1

    def lost_writes(self, timeout_ms: int = 10_000) -> list[str]:
        """Acknowledged writes the cluster no longer has (`check_after_load` of tests/test_processes.py)."""
        lost = []
        with Client(self.proxy, timeout_ms=timeout_ms) as client:
            counter = client.get(self.counter_key) or 0
            low, high = self.acknowledged_increments, self.acknowledged_increments + self.unknown_increments
            if not low <= counter <= high:
                lost.append(f"counter is {counter}, not in {low}..{high} (acknowledged..acknowledged+unknown)")
            for key, value in self.acknowledged_puts.items():
                # A later put in flight at the end (outcome unknown) may have won; an older value never.
                stored = client.get(key)
                if stored is None or stored < value:
                    lost.append(f"acknowledged write {key}={value} lost (now {stored!r})")
        return lost

    def write_history(self, path: Path) -> None:
        """The history as JSON lines in the `zvsr` format of `zvsr.lincheck` (`zvsr lincheck --format zvsr`)."""
        with self.lock:
            history = list(self.history)
        with open(path, "w", encoding="utf-8") as out:
            for op in history:
                record: dict[str, Any] = {"client": op.client_id, "op": op.input, "call": op.call}
                if not op.pending:
                    record["result"] = op.output
                    record["return"] = op.return_
                out.write(json.dumps(record, default=repr) + "\n")

    def linearizability(self, timeout_s: float = 60) -> CheckResult:
        with self.lock:
            history = list(self.history)
        return check(history, ZvsrModel(), timeout_s=timeout_s)
