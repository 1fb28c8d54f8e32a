"""Real replica nodes for the socket tests (`test_node.py`, `test_batch.py`) — a helpers module, not a test
module (STYLE rule 15): a cluster of nodes in this process, one thread each, on 127.0.0.1, and the test clients
that talk to them. Waiting is always for a condition with a deadline, never a fixed sleep."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import zmq

from zvsr.protocol.messages import ClientReply, Request
from zvsr.runtime.cluster_config import ClusterConfig, ReplicaAddress
from zvsr.runtime.node import ReplicaNode
from zvsr.runtime.processes import loopback_config, wait_for
from zvsr.wire import admin, decode_client_reply, encode

# Small enough for a fast failover, large enough for three nodes and the test on a loaded 2-core machine.
TIMEOUTS = {"primary_timeout_ticks": 20, "primary_timeout_jitter_ticks": 10, "view_change_timeout_ticks": 40}


def make_config(data_dir: Path | None = None, replicas: int = 3) -> ClusterConfig:
    # These nodes are addressed with raw Requests of fixed client ids (the node's sockets, views and recovery are
    # under test here): sessions open implicitly. Registration: tests/test_protocol_sessions.py,
    # tests/test_processes.py.
    data = None if data_dir is None else str(data_dir)
    return loopback_config(replicas, data_dir=data, timeouts=dict(TIMEOUTS), require_registration=False)


def operation(op: str, key: str, **fields: Any) -> bytes:
    data: bytes = msgpack.packb({"op": op, "key": key, **fields}, use_bin_type=True)
    return data


class LocalCluster:
    """Nodes of one configuration, each running in its own thread; test clients on a shared context."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.nodes: dict[int, tuple[ReplicaNode, threading.Thread, threading.Event]] = {}
        self.failures: list[BaseException] = []
        self.started: set[int] = set()  # replicas started before: later starts are restarts (no --init)
        self._sockets: list[zmq.Socket[bytes]] = []
        self._reusable: dict[tuple[str, int], zmq.Socket[bytes]] = {}

    def start(self, *indexes: int) -> LocalCluster:
        for index in indexes or self.config.ids:
            self._run_node(ReplicaNode(self.config, index, seed=index, init=index not in self.started))
        return self

    def join(self, replica: int, address: ReplicaAddress) -> ReplicaNode:
        """Start a new replica `replica` at `address` (`zvsr node --join`); the file names it from now on."""
        self.config = self.config.with_replica(replica, address)
        node = ReplicaNode(self.config, replica, seed=replica, join=True)
        self._run_node(node)
        return node

    def _run_node(self, node: ReplicaNode) -> None:
        index = node.index
        self.started.add(index)
        stop = threading.Event()
        thread = threading.Thread(target=self._run, args=(node, stop), name=f"r{index}", daemon=True)
        self.nodes[index] = (node, thread, stop)
        thread.start()

    def _run(self, node: ReplicaNode, stop: threading.Event) -> None:
        try:
            node.run(stop)
        except BaseException as error:  # surfaced by close(): a node must never die on its own
            self.failures.append(error)

    def wait_left(self, index: int, *, timeout_s: float = 30) -> None:
        """Until replica `index` left the configuration: its core stopped and `run()` returned by itself."""
        node, thread, _ = self.nodes[index]
        wait_for(lambda: node.left, timeout_s=timeout_s, what=f"r{index} to leave the configuration")
        thread.join(timeout=timeout_s)
        assert not thread.is_alive(), f"r{index} left but its loop still runs"

    def stop(self, index: int) -> None:
        node, thread, stop = self.nodes.pop(index)
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
        node.close()

    def close(self) -> None:
        for index in list(self.nodes):
            self.stop(index)
        for s in self._sockets:
            s.close(linger=0)
        self.context.term()
        assert not self.failures, f"a node loop failed: {self.failures!r}"

    # --- test clients -------------------------------------------------------------------------------------

    def socket(self, kind: int, endpoint: str, **options: int | bytes) -> zmq.Socket[bytes]:
        s = self.context.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        for name, value in options.items():
            s.setsockopt(getattr(zmq, name), value)
        s.connect(endpoint)
        self._sockets.append(s)
        return s

    def client(self, index: int) -> zmq.Socket[bytes]:
        address = self.config.address_of(index)
        assert address is not None, f"r{index} is not in the cluster file"
        return self.socket(zmq.DEALER, address.client)

    def _reused(self, kind: str, index: int) -> zmq.Socket[bytes]:
        """One socket per (purpose, replica) for the whole test: polling loops must not leak descriptors."""
        key = (kind, index)
        if key not in self._reusable:
            self._reusable[key] = self.client(index)
        return self._reusable[key]

    def call(self, index: int, request: Request, *, timeout_s: float = 10.0) -> ClientReply:
        """Send `request` to replica `index` until an answer for it arrives (a client's retry: same number)."""
        s = self._reused("call", index)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            s.send(encode(request))
            while s.poll(300):
                answer = decode_client_reply(s.recv())
                if (answer.client_id, answer.request_number) == (request.client_id, request.request_number):
                    return answer  # anything else is a late answer to an earlier try
        raise AssertionError(f"no answer from r{index} to {request}")

    def status(self, index: int, *, timeout_s: float = 5.0) -> dict[str, Any]:
        s = self._reused("status", index)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            s.send_multipart([b"", admin.encode_status_query()])
            if s.poll(300):
                frames = s.recv_multipart()
                assert frames[0] == b""  # answered in the shape it was asked: REQ-style, delimiter first
                while s.poll(0):  # a late answer to an earlier try: the newest one wins
                    frames = s.recv_multipart()
                return admin.decode_status(frames[-1])
        raise AssertionError(f"no status from r{index}")

    def wait_status(self, index: int, what: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        def met() -> dict[str, Any] | None:
            status = self.status(index)
            return status if check(status) else None

        return wait_for(met, what=f"r{index}: {what}")
