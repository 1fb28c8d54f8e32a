"""The PySyncObj baseline: one node of a 3-node PySyncObj (Raft) cluster, as its own process.

`python -m zvsr.bench.syncobj_node --self 127.0.0.1:P --partner 127.0.0.1:Q --partner …` starts a node whose
replicated state is a dict with one @replicated method, ``put(key, value)`` — the same operation as the zvsr
load (`zvsr.bench.loadgen`: a 32-byte value to a key per caller). PySyncObj has no separate client: callers
are threads of a node's own process, so the driver runs the load inside the leader's process. The node prints
``ready`` once it is synced with the cluster, then obeys one command per stdin line, one JSON line per answer:

- ``leader``: ``{"leader": "host:port" or null, "self": "host:port"}``
- ``load sync N START END``: N threads, each calling ``put(…, sync=True)`` in a loop (one write in flight per
  thread);
- ``load async N START END``: N writes kept in flight with callbacks: each callback issues the next write;
- answers ``{"completed": …, "latencies_us": […], "errors": {…}}`` for writes applied inside [START, END)
  (`time.monotonic()` instants, shared with the driver).

A write is complete when PySyncObj reports it applied on the leader after a majority stored it (its callback
with FAIL_REASON.SUCCESS, or `sync=True` returning). PySyncObj keeps its log in memory (no journal file) in
this configuration, so it compares with zvsr ``--fsync never``. ``--batch`` chooses
`appendEntriesUseBatch` (PySyncObj's default is on; off sends one AppendEntries per command at once).

`pysyncobj` is an optional dependency (`pip install zvsr[bench]`); it is imported only here, when a node runs.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import sys
import threading
import time
from typing import Any

VALUE = b"v" * 32


def _make_node(self_address: str, partners: list[str], *, batch: bool) -> Any:
    pysyncobj: Any = importlib.import_module("pysyncobj")

    class Store(pysyncobj.SyncObj):  # type: ignore[misc]  # pysyncobj is untyped (Any)
        def __init__(self) -> None:
            config = pysyncobj.SyncObjConf(appendEntriesUseBatch=batch, dynamicMembershipChange=False)
            super().__init__(self_address, partners, config)
            self.data: dict[str, bytes] = {}

        @pysyncobj.replicated  # type: ignore[untyped-decorator]
        def put(self, key: str, value: bytes) -> None:
            self.data[key] = value

    return Store()


class _Tally:
    def __init__(self, start: float, end: float) -> None:
        self.start = start
        self.end = end
        self.lock = threading.Lock()
        self.completed = 0
        self.latencies: list[int] = []
        self.errors: collections.Counter[str] = collections.Counter()

    def done(self, issued: float, error: Any) -> None:
        now = time.monotonic()
        with self.lock:
            if error:
                self.errors[str(error)] += 1
            elif self.start <= now < self.end:
                self.completed += 1
                self.latencies.append(int((now - issued) * 1_000_000))

    def report(self) -> dict[str, Any]:
        with self.lock:
            return {
                "completed": self.completed,
                "window_s": self.end - self.start,
                "latencies_us": list(self.latencies),
                "errors": dict(self.errors),
            }


def load_sync(node: Any, callers: int, tally: _Tally) -> None:
    def caller(index: int) -> None:
        key = f"bench/{index}"
        while time.monotonic() < tally.end:
            issued = time.monotonic()
            try:
                node.put(key, VALUE, sync=True, timeout=10)
            except Exception as error:  # SyncObjException(reason): count it and go on, as a client would
                tally.done(issued, type(error).__name__ + ":" + str(error))
                continue
            tally.done(issued, None)

    threads = [threading.Thread(target=caller, args=(n,), daemon=True) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=tally.end - time.monotonic() + 15)


def load_async(node: Any, in_flight: int, tally: _Tally) -> None:
    finished = threading.Event()
    outstanding = [in_flight]
    lock = threading.Lock()

    def issue(index: int) -> None:
        issued = time.monotonic()

        def callback(result: Any, error: Any) -> None:
            tally.done(issued, error)
            if time.monotonic() < tally.end:
                issue(index)
                return
            with lock:
                outstanding[0] -= 1
                if outstanding[0] == 0:
                    finished.set()

        node.put(f"bench/{index}", VALUE, callback=callback)

    for index in range(in_flight):
        issue(index)
    finished.wait(timeout=max(0.0, tally.end - time.monotonic()) + 15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--self", dest="self_address", required=True)
    parser.add_argument("--partner", action="append", default=[])
    parser.add_argument("--batch", choices=("on", "off"), default="on")
    arguments = parser.parse_args(argv)
    node = _make_node(arguments.self_address, arguments.partner, batch=arguments.batch == "on")
    deadline = time.monotonic() + 60
    while not node.isReady():
        if time.monotonic() > deadline:
            print("not ready after 60 s", file=sys.stderr)
            return 1
        time.sleep(0.01)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "leader":
            leader = node._getLeader()
            answer: dict[str, Any] = {
                "leader": None if leader is None else str(leader.address),
                "self": arguments.self_address,
            }
        elif words[0] == "load" and len(words) == 5 and words[1] in ("sync", "async"):
            tally = _Tally(float(words[3]), float(words[4]))
            (load_sync if words[1] == "sync" else load_async)(node, int(words[2]), tally)
            answer = tally.report()
        else:
            answer = {"error": f"unknown command {line.strip()!r}"}
        print(json.dumps(answer, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
