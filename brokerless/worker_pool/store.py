"""The fenced resource: a numbered journal that serves only the newest holder of the writer lock.

    python -m brokerless.worker_pool.store [--endpoint tcp://127.0.0.1:5560]
    python -m brokerless.worker_pool.store --check [--endpoint ...]     # verify a running store's journal

A stand-in for whatever the workers must not touch two at a time — a file on a shared volume, a table of a
database without transactions, a device, an external API numbering its calls. Here it is a journal of slots
0, 1, 2, … that a writer appends to the way one appends to a file: ask its length, write the next slot. Two
writers at once would both read length n and both write slot n, and one record would be lost. So writers take
the zvsr lock first (worker.py) and send its **fencing token** with every request, and the journal checks it:

- a request whose token is lower than the highest token the journal has seen is **refused**
  (``{"ok": false, "reason": "stale token", "highest": h}``) and changes nothing;
- otherwise the token becomes the highest, and the request is served.

Reads are fenced too: a new holder's first request (its length query) shuts the old holder out *before* the
new one writes, so a holder that was paused after reading the length (and lost the lock meanwhile) can
never write the slot the new holder is about to write. zvsr hands out lock tokens from one counter that only
grows, so "newer holder" and "higher token" are the same thing. This is the only check the resource needs;
it needs no zvsr client and no clock.

Requests (msgpack maps over REQ/REP):

- ``{"cmd": "length", "token": t, "writer": w}`` -> ``{"ok": true, "length": n}``
- ``{"cmd": "write", "token": t, "writer": w, "slot": i, "record": r}`` -> ``{"ok": true}``; ``i`` may be at most
  the length (i < length overwrites, which a correct pool never does; the journal counts it)
- ``{"cmd": "dump"}`` -> everything: ``slots`` (``[token, writer, record]`` each), ``accepted`` (every
  served request, in order: ``[token, writer, cmd, slot]``), ``accepted_at`` (when each was served: the
  store's `time.monotonic()`), ``refused`` (every refused one: ``[token, highest, writer, cmd, slot,
  record]``), ``overwrites``, ``highest``

`verify(dump)` checks a dump: the tokens of served requests never decrease, every refused request was stale
when it came, no slot was written twice, no job is in two slots.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5560"


class FencedJournal:
    def __init__(self) -> None:
        self.highest = 0
        self.slots: list[list[Any]] = []  # [token, writer, record]
        self.accepted: list[list[Any]] = []  # [token, writer, cmd, slot]
        self.accepted_at: list[float] = []  # time.monotonic() of each accepted request
        self.refused: list[list[Any]] = []  # [token, highest, writer, cmd, slot, record]
        self.overwrites = 0

    def handle(self, request: Any) -> dict[str, Any]:
        if type(request) is not dict or request.get("cmd") not in ("length", "write", "dump"):
            return {"error": "bad_request", "message": "'cmd' must be length, write or dump"}
        cmd = request["cmd"]
        if cmd == "dump":
            return {
                "ok": True,
                "highest": self.highest,
                "slots": self.slots,
                "accepted": self.accepted,
                "accepted_at": self.accepted_at,
                "refused": self.refused,
                "overwrites": self.overwrites,
            }
        token, writer, slot = request.get("token"), request.get("writer"), request.get("slot")
        if type(token) is not int or token < 1 or type(writer) is not str:
            return {"error": "bad_request", "message": "'token' must be an int >= 1 and 'writer' a str"}
        if cmd == "write" and (
            type(slot) is not int or not 0 <= slot <= len(self.slots) or "record" not in request
        ):
            return {"error": "bad_request", "message": f"write: needs 'slot' 0..{len(self.slots)} and 'record'"}
        if token < self.highest:  # the fence
            self.refused.append([token, self.highest, writer, cmd, slot, request.get("record")])
            return {"ok": False, "reason": "stale token", "highest": self.highest}
        self.highest = token
        self.accepted.append([token, writer, cmd, slot])
        self.accepted_at.append(time.monotonic())
        if cmd == "length":
            return {"ok": True, "length": len(self.slots)}
        assert type(slot) is int
        if slot < len(self.slots):
            self.overwrites += 1
            self.slots[slot] = [token, writer, request["record"]]
        else:
            self.slots.append([token, writer, request["record"]])
        return {"ok": True}


def verify(dump: dict[str, Any]) -> dict[str, Any]:
    """What a dump shows: counts, and `problems` (empty if the journal was only ever served in token order)."""
    problems: list[str] = []
    highest = 0
    for token, writer, cmd, slot in dump["accepted"]:
        if token < highest:
            problems.append(f"{writer} was served {cmd} {slot} with token {token} after token {highest}")
        highest = max(highest, token)
    for token, seen, writer, cmd, _, _ in dump["refused"]:
        if token >= seen:
            problems.append(f"{writer}'s {cmd} with token {token} was refused, yet not older than {seen}")
    if dump["overwrites"]:
        problems.append(f"{dump['overwrites']} slot(s) written twice: a record was lost")
    jobs: dict[Any, int] = {}
    for index, (_, _, record) in enumerate(dump["slots"]):
        job = record.get("job") if isinstance(record, dict) else None
        if job in jobs:
            problems.append(f"job {job} is in slots {jobs[job]} and {index}")
        jobs[job] = index
    tokens = [token for token, _, _ in dump["slots"]]
    return {
        "slots": len(dump["slots"]),
        "jobs": sorted(job for job in jobs if job is not None),
        "tokens": len(set(tokens)),
        "refused": len(dump["refused"]),
        "refused_writes": [[writer, record] for _, _, writer, cmd, _, record in dump["refused"] if cmd == "write"],
        "problems": problems,
    }


def request(endpoint: str, message: dict[str, Any], *, timeout_ms: int = 5000) -> Any:
    """One request to the store (or any REP service here) on a fresh REQ socket."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.connect(endpoint)
        socket.send(msgpack.packb(message, use_bin_type=True))
        if not socket.poll(timeout_ms, zmq.POLLIN):
            raise TimeoutError(f"no answer from {endpoint} within {timeout_ms} ms")
        return msgpack.unpackb(socket.recv(), raw=False)
    finally:
        socket.close()


def serve(endpoint: str) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    socket = context.socket(zmq.REP)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind(endpoint)
    print(f"store: fenced journal on {endpoint}", flush=True)
    journal = FencedJournal()
    try:
        while True:
            frame = socket.recv()
            try:
                message = msgpack.unpackb(frame, raw=False)
            except Exception:
                reply: dict[str, Any] = {"error": "bad_request", "message": "a request is one msgpack value"}
            else:
                reply = journal.handle(message)
                if reply.get("reason") == "stale token":
                    print(
                        f"store: refused {message['writer']}'s {message['cmd']}: token {message['token']} < "
                        f"{reply['highest']}",
                        flush=True,
                    )
            socket.send(msgpack.packb(reply, use_bin_type=True))
    finally:
        socket.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help=f"default {DEFAULT_ENDPOINT}")
    parser.add_argument("--check", action="store_true", help="verify a running store's journal and exit")
    arguments = parser.parse_args(argv)
    if arguments.check:
        report = verify(request(arguments.endpoint, {"cmd": "dump"}))
        report["jobs"] = len(report["jobs"])
        print(json.dumps(report, indent=2))
        return 1 if report["problems"] else 0
    try:
        serve(arguments.endpoint)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
