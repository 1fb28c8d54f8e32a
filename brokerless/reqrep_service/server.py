"""The ledger service as it ran before zvsr: one process, one REP socket, the state in its memory.

    python -m brokerless.reqrep_service.server [--endpoint tcp://127.0.0.1:5555]

The zguide's hello-world server with a real handler: receive a msgpack request, hand it to `Ledger.handle`,
send the msgpack reply. Simple, and a single point of failure: kill this process and the service is gone, and
so is every balance (`app.py` is the same handler replicated by zvsr; the client does not change).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq

from brokerless.reqrep_service.service import Ledger, bad_request

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


def reply_to(ledger: Ledger, frame: bytes) -> bytes:
    """One request frame in, one reply frame out (a REP socket must answer every request)."""
    try:
        request: Any = msgpack.unpackb(frame, raw=False)
    except Exception:
        reply: Any = bad_request("a request is one msgpack value")
    else:
        reply = ledger.handle(request)
    data: bytes = msgpack.packb(reply, use_bin_type=True)
    return data


def serve(endpoint: str) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    socket = context.socket(zmq.REP)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind(endpoint)
    print(f"ledger service on {endpoint}", flush=True)
    ledger = Ledger()
    try:
        while True:
            socket.send(reply_to(ledger, socket.recv()))
    finally:
        socket.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help=f"where to bind (default {DEFAULT_ENDPOINT})")
    arguments = parser.parse_args(argv)
    try:
        serve(arguments.endpoint)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
