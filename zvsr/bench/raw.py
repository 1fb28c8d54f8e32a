"""The raw pyzmq baselines: an echo server and a Python forwarder, each its own process.

- ``python -m zvsr.bench.raw echo --bind E``: a ROUTER that sends every message straight back (all frames,
  so the answer finds its way back through any number of ROUTER/DEALER hops);
- ``python -m zvsr.bench.raw forward --bind E --connect B``: a ROUTER frontend and a DEALER backend, moving
  messages both ways in Python — the shape of the zvsr proxy (sync `zmq.Poller`, drain each ready socket with
  NOBLOCK, at most `DRAIN_MAX` at a time) without any protocol work. Client → forwarder → echo server is the
  ceiling of a Python request relay on this machine; client → echo server is one raw network round trip.

Each prints ``ready`` once its sockets are bound and then serves until killed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Final

import zmq

from zvsr import constants as c

DRAIN_MAX: Final = c.PROXY_DRAIN_MAX  # as the zvsr proxy drains, so the two are compared like for like
_NOBLOCK: Final = int(zmq.NOBLOCK)


def _socket(context: zmq.Context[zmq.Socket[bytes]], kind: int) -> zmq.Socket[bytes]:
    socket = context.socket(kind)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, 0)
    socket.setsockopt(zmq.RCVHWM, 0)
    return socket


def echo(bind: str) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    server = _socket(context, zmq.ROUTER)
    server.bind(bind)
    print("ready", flush=True)
    recv, send = server.recv_multipart, server.send_multipart
    while True:
        server.poll()
        for _ in range(DRAIN_MAX):
            try:
                frames = recv(_NOBLOCK)
            except zmq.Again:
                break
            send(frames, _NOBLOCK)


def forward(bind: str, connect: str) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    frontend = _socket(context, zmq.ROUTER)
    frontend.bind(bind)
    backend = _socket(context, zmq.DEALER)
    backend.connect(connect)
    poller = zmq.Poller()
    poller.register(frontend, zmq.POLLIN)
    poller.register(backend, zmq.POLLIN)
    routes = {frontend: backend, backend: frontend}
    print("ready", flush=True)
    while True:
        for source, _ in poller.poll():
            destination = routes[source]
            recv, send = source.recv_multipart, destination.send_multipart
            for _ in range(DRAIN_MAX):
                try:
                    frames = recv(_NOBLOCK)
                except zmq.Again:
                    break
                send(frames, _NOBLOCK)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("echo", "forward"))
    parser.add_argument("--bind", required=True)
    parser.add_argument("--connect", default=None)
    arguments = parser.parse_args(argv)
    if arguments.role == "echo":
        echo(arguments.bind)
    else:
        if arguments.connect is None:
            parser.error("forward needs --connect")
        forward(arguments.bind, arguments.connect)
    return 0


if __name__ == "__main__":
    sys.exit(main())
