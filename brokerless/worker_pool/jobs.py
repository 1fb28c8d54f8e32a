"""The job queue: a ROUTER handing out numbered jobs to whichever worker asks (the zguide's load balancing,
reduced to its core).

    python -m brokerless.worker_pool.jobs [--endpoint tcp://127.0.0.1:5561] [--jobs N]     # N=0: no end

Workers connect REQ sockets and send ``{"cmd": "next", "worker": name}``; the answer is
``{"job": n, "input": x}`` for jobs 1, 2, … up to N, then ``{"job": null}`` for ever after (the pool is done).
``{"cmd": "close"}`` ends the queue early (every later ``next`` gets ``{"job": null}``); ``{"cmd": "stats"}``
answers ``{"handed_out": n, "closed": bool, "by_worker": {name: count}, "last_job": {name: n}}`` (the job each
worker was handed last: the one a worker that died was doing).

A job is handed out once: a worker that dies with a job loses it (a real queue would hand out again what is
not acknowledged in time — the zguide's Paranoid Pirate — and the journal would then have to tolerate a job
done twice). Nothing here needs coordination: it is the ordinary ZeroMQ part of the pool.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5561"


def serve(endpoint: str, jobs: int) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind(endpoint)
    print(f"jobs: queue on {endpoint}, {jobs or 'unlimited'} jobs", flush=True)
    handed_out = 0
    closed = False
    by_worker: dict[str, int] = {}
    last_job: dict[str, int] = {}
    try:
        while True:
            *envelope, frame = socket.recv_multipart()  # [identity, b"", payload] from a REQ socket
            try:
                message: Any = msgpack.unpackb(frame, raw=False)
                cmd = message.get("cmd") if isinstance(message, dict) else None
            except Exception:
                cmd = None
            reply: dict[str, Any]
            if cmd == "next":
                if closed or (jobs and handed_out >= jobs):
                    reply = {"job": None}
                else:
                    handed_out += 1
                    worker = str(message.get("worker"))
                    by_worker[worker] = by_worker.get(worker, 0) + 1
                    last_job[worker] = handed_out
                    reply = {"job": handed_out, "input": handed_out}
            elif cmd == "close":
                closed = True
                reply = {"ok": True, "handed_out": handed_out}
            elif cmd == "stats":
                reply = {"handed_out": handed_out, "closed": closed, "by_worker": by_worker, "last_job": last_job}
            else:
                reply = {"error": "bad_request", "message": "'cmd' must be next, close or stats"}
            socket.send_multipart([*envelope, msgpack.packb(reply, use_bin_type=True)])
    finally:
        socket.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help=f"default {DEFAULT_ENDPOINT}")
    parser.add_argument("--jobs", type=int, default=500, help="how many jobs (default 500; 0: no end)")
    arguments = parser.parse_args(argv)
    try:
        serve(arguments.endpoint, arguments.jobs)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
