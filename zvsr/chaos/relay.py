"""A ZeroMQ-aware TCP relay that `zvsr chaos` puts in front of a replica, to lose, delay, duplicate and reorder
whole messages on chosen links.

Theory of operation
-------------------
One relay process runs in each replica's namespace (`python -m zvsr.chaos.relay`). The replica binds its peer
and heartbeat ports on 127.0.0.1 there; the relay listens on the replica's public address with the same ports
and forwards every connection to them, so every message another replica sends to this one (to its peer
ROUTER) and every heartbeat this one publishes to another (its PUB) passes through it. The connection's source
address says which replica is at the other end.

TCP itself never loses, duplicates or reorders bytes within a connection, and a kernel fault on a TCP link
ends up cutting both directions (lost acknowledgements stall the sender). What ZeroMQ does see on a bad
network is messages that never arrive, arrive late, or arrive twice or out of order across reconnects — so the
relay acts on *messages*: it reads just enough ZMTP 3 (the 64-byte greeting, passed through as it comes; then
frames: a flags byte — MORE 1, LONG 2, COMMAND 4 — a 1- or 8-byte size and the body) to find each message
and, for the direction that carries the replica's traffic (into the peer port; out of the heartbeat port),
applies the policy set for that source: drop it, hold it for a delay, send it twice, or let the next one
overtake it. Commands (the handshake, ZMTP PING/PONG, subscriptions) always pass, in order, so connections
stay up: a dropped direction is a one-way link at the message level, which the kernel cannot make over TCP.

Control: a Unix socket (path-based, so it crosses namespaces) taking one JSON object per line —
``{"op": "policy", "source": ADDRESS, "to_replica": {...}, "from_replica": {...}}`` where each side is
``{"drop": bool, "delay_ms": [low, high], "duplicate": p, "reorder": p}``, or ``{"op": "clear"}`` — and
answering ``{"ok": true}``. `RelayControl` is the driver's side of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from zvsr.constants import CHAOS_COMMAND_TIMEOUT_S

GREETING_BYTES: Final = 64  # ZMTP 3: signature 10, version 2, mechanism 20, as-server 1, filler 31
FLAG_MORE: Final = 0x01
FLAG_LONG: Final = 0x02
FLAG_COMMAND: Final = 0x04
READ_BYTES: Final = 65536
FRAME_BYTES_MAX: Final = 512 * 1024 * 1024  # beyond any frame a replica sends (MESSAGE_BYTES_MAX is 256 MiB)


@dataclass
class Policy:
    """What happens to the messages of one direction of one source's connections."""

    drop: bool = False
    delay_ms: tuple[int, int] = (0, 0)
    duplicate: float = 0.0
    reorder: float = 0.0

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Policy:
        low, high = value.get("delay_ms", (0, 0))
        return cls(
            drop=bool(value.get("drop", False)),
            delay_ms=(int(low), int(high)),
            duplicate=float(value.get("duplicate", 0.0)),
            reorder=float(value.get("reorder", 0.0)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "drop": self.drop,
            "delay_ms": list(self.delay_ms),
            "duplicate": self.duplicate,
            "reorder": self.reorder,
        }

    @property
    def passive(self) -> bool:
        return not self.drop and self.delay_ms == (0, 0) and self.duplicate == 0 and self.reorder == 0


@dataclass
class Route:
    """One listening port: connections to `listen` go to `target`; `inbound` says which direction carries the
    replica's messages (True: towards the replica, the peer port; False: from it, the heartbeat port)."""

    listen: tuple[str, int]
    target: tuple[str, int]
    inbound: bool


@dataclass
class Relay:
    routes: list[Route]
    seed: int
    policies: dict[tuple[str, bool], Policy] = field(default_factory=dict)  # (source, towards replica) -> policy
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def policy(self, source: str, towards_replica: bool) -> Policy | None:
        policy = self.policies.get((source, towards_replica))
        return None if policy is None or policy.passive else policy

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # --- connections ----------------------------------------------------------------------------------------

    async def serve(self, control: Path) -> None:
        servers: list[asyncio.Server] = []
        for route in self.routes:
            servers.append(await asyncio.start_server(functools.partial(self._connection, route), *route.listen))
        control.unlink(missing_ok=True)
        servers.append(await asyncio.start_unix_server(self._control, path=str(control)))
        await asyncio.gather(*(server.serve_forever() for server in servers))

    async def _connection(self, route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = str(writer.get_extra_info("peername")[0])
        try:
            target_reader, target_writer = await asyncio.open_connection(*route.target)
        except OSError:
            writer.close()
            return
        self.count("connections")
        for sock in (writer.get_extra_info("socket"), target_writer.get_extra_info("socket")):
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Upstream: the connecting side towards the replica; downstream: the replica's side back to it.
        pumps = [
            self._pump(reader, target_writer, source, towards_replica=True, faulty=route.inbound),
            self._pump(target_reader, writer, source, towards_replica=False, faulty=not route.inbound),
        ]
        tasks = [asyncio.create_task(pump) for pump in pumps]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for end in (writer, target_writer):
            with contextlib.suppress(Exception):
                end.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        source: str,
        *,
        towards_replica: bool,
        faulty: bool,
    ) -> None:
        out = _Outgoing(writer, self)
        try:
            greeting = 0
            while greeting < GREETING_BYTES:  # as it comes: each side waits for part of the other's
                data = await reader.read(GREETING_BYTES - greeting)
                if not data:
                    return
                greeting += len(data)
                out.now(data)
                await out.drain()
            while True:
                message, command = await _read_message(reader)
                policy = self.policy(source, towards_replica) if faulty and not command else None
                if policy is None:
                    out.now(message)
                else:
                    out.with_policy(message, policy, self.rng)
                await out.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return
        finally:
            out.close()

    # --- control --------------------------------------------------------------------------------------------

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer: dict[str, Any] = {"ok": True}
                try:
                    request = json.loads(line)
                    if request["op"] == "policy":
                        source = str(request["source"])
                        for key, towards in (("to_replica", True), ("from_replica", False)):
                            if key in request:
                                self.policies[(source, towards)] = Policy.from_json(request[key])
                    elif request["op"] == "clear":
                        self.policies.clear()
                    elif request["op"] == "counts":
                        answer["counts"] = dict(self.counts)
                    else:
                        answer = {"ok": False, "error": f"unknown op {request['op']!r}"}
                except (ValueError, KeyError, TypeError) as error:
                    answer = {"ok": False, "error": str(error)}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    """One whole ZMTP message (all its frames, as they were on the wire), or one command frame."""
    parts = []
    while True:
        flags = (await reader.readexactly(1))[0]
        size_bytes = await reader.readexactly(8 if flags & FLAG_LONG else 1)
        size = int.from_bytes(size_bytes, "big")
        if size > FRAME_BYTES_MAX:
            raise ConnectionError(f"frame of {size} bytes")
        parts.append(bytes([flags]) + size_bytes + await reader.readexactly(size))
        if flags & FLAG_COMMAND:
            return parts[0], True
        if not flags & FLAG_MORE:
            return b"".join(parts), False


class _Outgoing:
    """One direction's writer: messages pass at once, or at their release time (delay), in order unless a
    reorder lets one overtake the one before it."""

    def __init__(self, writer: asyncio.StreamWriter, relay: Relay) -> None:
        self.writer = writer
        self.relay = relay
        self.queue: deque[tuple[float, bytes]] = deque()
        self.last_release = 0.0
        self.held: bytes | None = None  # a message another one will overtake
        self.task: asyncio.Task[None] | None = None

    def now(self, data: bytes) -> None:
        if self.queue or self.held is not None:
            self._queue(time.monotonic(), data)
        else:
            self.writer.write(data)

    def with_policy(self, message: bytes, policy: Policy, rng: random.Random) -> None:
        if policy.drop:
            self.relay.count("dropped")
            return
        copies = 2 if rng.random() < policy.duplicate else 1
        if copies == 2:
            self.relay.count("duplicated")
        release = time.monotonic() + rng.uniform(*policy.delay_ms) / 1000
        for _ in range(copies):
            if self.held is None and rng.random() < policy.reorder:
                self.held = message  # the next message goes first
                self.relay.count("reordered")
                continue
            self._queue(release, message)
            if self.held is not None:
                self._queue(release, self.held)
                self.held = None

    def _queue(self, release: float, data: bytes) -> None:
        release = max(release, self.last_release)  # in order, but for the reorders made on purpose
        self.last_release = release
        self.queue.append((release, data))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._release())

    async def _release(self) -> None:
        while self.queue:
            release, data = self.queue[0]
            wait = release - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self.queue.popleft()
            self.writer.write(data)
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.drain()

    async def drain(self) -> None:
        if not self.queue:
            await self.writer.drain()

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


class RelayControl:
    """The driver's end of a relay's control socket: one request, one answer (blocking, short timeout)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CHAOS_COMMAND_TIMEOUT_S)
            sock.connect(str(self.path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        result: dict[str, Any] = json.loads(answer)
        if not result.get("ok"):
            raise RuntimeError(f"relay {self.path}: {result.get('error')}")
        return result

    def set_policy(
        self, source: str, *, to_replica: Policy | None = None, from_replica: Policy | None = None
    ) -> None:
        request: dict[str, Any] = {"op": "policy", "source": source}
        if to_replica is not None:
            request["to_replica"] = to_replica.to_json()
        if from_replica is not None:
            request["from_replica"] = from_replica.to_json()
        self.request(request)

    def clear(self) -> None:
        self.request({"op": "clear"})

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = self.request({"op": "counts"})["counts"]
        return counts

    def ready(self) -> bool:
        try:
            self.request({"op": "counts"})
        except (OSError, ValueError, RuntimeError):
            return False
        return True


def _endpoint(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--control", type=Path, required=True, help="Unix socket path for the driver")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="LISTEN=TARGET:in|out",
        help="host:port=host:port:in (messages towards the replica) or :out (from it)",
    )
    arguments = parser.parse_args(argv)
    routes = []
    for text in arguments.route:
        listen, rest = text.split("=", 1)
        target, direction = rest.rsplit(":", 1)
        routes.append(Route(_endpoint(listen), _endpoint(target), inbound=direction == "in"))
    relay = Relay(routes, arguments.seed)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(relay.serve(arguments.control))


if __name__ == "__main__":
    main()
