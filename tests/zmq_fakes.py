"""Test doubles on real ZeroMQ sockets: scriptable fake replicas and heartbeat publishers, free ports, waiting.

A `FakeReplica` binds a ROUTER at a replica's client endpoint and runs in a thread; for every request it
receives (decoded with the real codec) it records (request, envelope shape) and asks its `script` what to
answer: a list of messages (`Reply` / `Redirect` / `Error`, encoded here; raw bytes are sent as they are), or
nothing. Tests wait for conditions with deadlines (`wait_for`), never for fixed times.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import zmq

from zvsr.protocol.client_table import REGISTER_REQUEST_NUMBER, register_result
from zvsr.protocol.messages import ClientReply, Commit, LogEntry, Reply, Request
from zvsr.runtime.cluster_config import ClusterConfig
from zvsr.runtime.processes import free_ports, loopback_config, wait_for
from zvsr.runtime.proxy import Proxy

__all__ = ["free_ports", "wait_for"]  # re-exported for the tests that use these fakes
from zvsr.wire.batch import decode_request_batch, encode_reply_batch, is_request_batch
from zvsr.wire.codec import DecodeError, decode_request, encode

T = TypeVar("T")

Script = Callable[[Request], list[ClientReply | bytes]]


local_config = loopback_config


_SESSION_IDS_BASE = 1 << 32


def silent(request: Request) -> list[ClientReply | bytes]:
    return []


def echo_result(result: bytes = b"\xc0", *, view: int = 0) -> Script:
    """Answer every request like a primary of `view`, with `result` (default: msgpack nil)."""

    def script(request: Request) -> list[ClientReply | bytes]:
        return [
            Reply(view=view, client_id=request.client_id, request_number=request.request_number, result=result)
        ]

    return script


@dataclass
class Received:
    request: Request
    frames: int  # frames before the payload: 1 for a DEALER peer, 2 for a REQ-style one


@dataclass
class FakeReplica:
    endpoint: str
    context: zmq.Context[zmq.Socket[bytes]]
    script: Script = silent
    received: list[Received] = field(default_factory=list)
    garbage: int = 0
    registered: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> FakeReplica:
        router = self.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.bind(self.endpoint)
        self._thread = threading.Thread(target=self._run, args=(router,), daemon=True)
        self._thread.start()
        return self

    def requests(self) -> list[Request]:
        with self._lock:
            return [r.request for r in self.received]

    def _run(self, router: zmq.Socket[bytes]) -> None:
        try:
            while not self._stop.is_set():
                if not router.poll(10):
                    continue
                frames = router.recv_multipart()
                envelope, payload = frames[:-1], frames[-1]
                # A proxy's RequestBatch: each request handled alone, the answers in one ReplyBatch (as a replica).
                batched = is_request_batch(payload)
                answers: list[bytes] = []
                for element in decode_request_batch(payload) if batched else [payload]:
                    try:
                        request = decode_request(element)
                    except DecodeError:
                        self.garbage += 1
                        continue
                    with self._lock:
                        script = self.script
                        if request.request_number == REGISTER_REQUEST_NUMBER and script is not silent:
                            # A live fake registers every session itself (ids above any a test uses), so scripts
                            # and `received` see only operations.
                            self.registered += 1
                            result = register_result(_SESSION_IDS_BASE + self.registered)
                            answers.append(
                                encode(Reply(view=0, client_id=request.client_id, request_number=0, result=result))
                            )
                            continue
                        self.received.append(Received(request, len(envelope)))
                    answers += [a if isinstance(a, bytes) else encode(a) for a in script(request)]
                if batched and len(answers) > 1:
                    answers = [encode_reply_batch(answers)]
                for data in answers:
                    router.send_multipart([*envelope, data])
        finally:
            router.close(linger=0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            assert not self._thread.is_alive()


@contextmanager
def fake_replicas(
    config: ClusterConfig, context: zmq.Context[zmq.Socket[bytes]], *scripts: Script
) -> Iterator[list[FakeReplica]]:
    """One fake per replica of `config` (scripts in index order; missing ones are silent)."""
    with ExitStack() as stack:
        fakes = []
        for index, address in enumerate(config.replicas):
            script = scripts[index] if index < len(scripts) else silent
            fake = FakeReplica(address.client, context, script).start()
            stack.callback(fake.stop)
            fakes.append(fake)
        yield fakes


class FakeHeartbeat:
    """A PUB at a replica's heartbeat endpoint that publishes Commit messages on demand."""

    def __init__(self, endpoint: str, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.socket = context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(endpoint)

    def publish(self, *, cluster: int, view: int, replica: int, epoch: int = 0) -> None:
        commit = Commit(cluster=cluster, epoch=epoch, view=view, replica=replica, commit_number=0, op_number=0)
        self.socket.send(encode(commit))

    def close(self) -> None:
        self.socket.close(linger=0)


class FakeApp:
    """A primary's client table over the real coordination app, without replication: executes each
    (client_id, request_number) once and answers a repeat from its cache (rule 8), like the real one."""

    def __init__(self, *, view: int = 0) -> None:
        from zvsr.apps.adapter import MsgpackStateMachine
        from zvsr.apps.coordination import CoordinationApp

        self.view = view
        self.machine = MsgpackStateMachine(CoordinationApp())
        self.executed: list[Request] = []
        self._table: dict[int, tuple[int, bytes]] = {}
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> list[ClientReply | bytes]:
        with self._lock:
            latest = self._table.get(request.client_id)
            if latest is not None and request.request_number < latest[0]:
                return []
            if latest is not None and request.request_number == latest[0]:
                result = latest[1]
            else:
                self.executed.append(request)
                entry = LogEntry(
                    view=self.view,
                    op_number=len(self.executed),
                    client_id=request.client_id,
                    request_number=request.request_number,
                    operation=request.operation,
                    timestamp=len(self.executed) * 1_000_000,  # a millisecond of cluster time per op
                )
                result = self.machine.apply(entry)
                self._table[request.client_id] = (request.request_number, result)
        return [
            Reply(
                view=self.view, client_id=request.client_id, request_number=request.request_number, result=result
            )
        ]


# --- real replica nodes, in threads of this process ---------------------------------------------------------

try:
    from zvsr.runtime.node import ReplicaNode
except ImportError:  # the node is written in parallel with its clients; their node tests skip until it exists
    ReplicaNode = None  # type: ignore[assignment,misc]

NODES_AVAILABLE = ReplicaNode is not None

# Failover within a few hundred milliseconds, with room for one busy CPU running every thread of the test.
NODE_TIMEOUTS = {
    "heartbeat_ticks": 4,
    "primary_timeout_ticks": 25,
    "primary_timeout_jitter_ticks": 15,
    "view_change_timeout_ticks": 50,
    "quorum_timeout_ticks": 40,
}


class NodeCluster:
    """Replica nodes of `config`, each running in its own thread; `stop(i)` closes one (its ports go away)."""

    def __init__(self, config: ClusterConfig, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.config = config
        self._running: dict[int, tuple[object, threading.Event, threading.Thread]] = {}
        try:
            for index in range(len(config.replicas)):
                node = ReplicaNode(config, index, context=context, seed=index + 1, init=True)
                stop = threading.Event()
                thread = threading.Thread(target=node.run, args=(stop,), daemon=True, name=f"replica-{index}")
                self._running[index] = (node, stop, thread)
                thread.start()
        except BaseException:
            self.close()
            raise

    def stop(self, index: int) -> None:
        node, stop, thread = self._running.pop(index)
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive(), f"replica {index} did not stop"
        node.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        for index in list(self._running):
            self.stop(index)


@contextmanager
def node_cluster(config: ClusterConfig, context: zmq.Context[zmq.Socket[bytes]]) -> Iterator[NodeCluster]:
    cluster = NodeCluster(config, context)
    try:
        yield cluster
    finally:
        cluster.close()


def node_config(**settings: Any) -> ClusterConfig:
    return local_config(timeouts=dict(NODE_TIMEOUTS), **settings)


class IncrementLoad:
    """One client incrementing counter "n" in a thread, counting what was acknowledged and what is unknown."""

    def __init__(self, increment: Callable[[], object], unknown: type[Exception]) -> None:
        self.acknowledged = 0
        self.unknown = 0
        self.errors: list[Exception] = []
        self._increment = increment
        self._unknown_error = unknown
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._increment()
            except self._unknown_error:
                self.unknown += 1
            except Exception as error:  # reported by the test
                self.errors.append(error)
                return
            else:
                self.acknowledged += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=20)
        assert not self._thread.is_alive()

    @classmethod
    def across_loss_of_replica_0(
        cls, increment: Callable[[], object], unknown: type[Exception], stop_replica_0: Callable[[], None]
    ) -> IncrementLoad:
        """Increment until 20 are acknowledged, stop replica 0 (the first primary), go on for 20 more."""
        load = cls(increment, unknown)
        try:
            wait_for(lambda: load.acknowledged >= 20, timeout_s=10, what="increments before the failover")
            stop_replica_0()
            after = load.acknowledged
            wait_for(lambda: load.acknowledged >= after + 20, timeout_s=15, what="increments after it")
        finally:
            load.stop()
        assert load.errors == []
        return load


@contextmanager
def running_proxy(
    config: ClusterConfig, context: zmq.Context[zmq.Socket[bytes]], *, seed: int = 7
) -> Iterator[Proxy]:
    """A proxy running in its own thread, stopped and closed on exit."""
    proxy = Proxy(config, context=context, seed=seed)
    stop = threading.Event()
    thread = threading.Thread(target=proxy.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive()
        proxy.close()
