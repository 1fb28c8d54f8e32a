"""The live fuzz: fuzzed frames at every bound socket of a running cluster under a client workload, then checks.

Theory of operation
-------------------
`run_live_fuzz` runs one thread (`_Sender`) per bound socket of a cluster — every replica's peer ROUTER, every
replica's client ROUTER, the proxy's frontend — each sending its share of the frames (`zvsr.fuzz.generators`)
from several DEALERs as fast as the receiver takes them (blocking sends, bounded by a send timeout), while a
client workload runs through the proxy (`zvsr.fuzz.workload.Workload`, on keys of its own). On a peer port a
DEALER with a random routing id only reaches the identity check, so the peer threads also send bursts from a
DEALER whose routing id impersonates another member (``b"r1"``); only those frames reach the peer decoder.
Afterwards it checks: every process is alive, the cluster still serves (a put and a get through the proxy), no
acknowledged write is lost and no increment ran twice, the workload's history is linearizable
(`zvsr.lincheck`), the bad-input counters of every replica (peer and client side) and of the proxy grew
(status query), no decoder failed outside its contract (the node's ``(our bug)`` counters stay at zero) and
every answer that came back was readable. The results and the verdict are a `zvsr.fuzz.report.FuzzReport`.

What the driver deliberately does not send: a *valid* replica message of the cluster's own cluster id and
epoch from an impersonated routing id. That is a forged protocol message, not bad input: VR tolerates crash
faults, not Byzantine ones, and routing ids are authenticated only with CurveZMQ (ARCHITECTURE §4). So the
cluster under test gets a random 64-bit cluster id, and fresh messages never carry it.

Connections end two ways. With `resets` (the default, and what a crashed or hostile peer does) a sender drops
a connection whenever it likes — after a burst, and with a TCP reset when a send timed out because the
replica's queue for it was full. That aborts replicas today: libzmq 4.3.5 asserts (``!_io_error``,
stream_engine_base.cpp:310) when a connection to a ROUTER with ZMTP heartbeats — the peer ROUTER — is reset
while the replica's receive queue for it is full (tests/test_fuzz_live.py reduces it to its trigger). Without
`resets`, peer-port connections are kept open until the replicas have drained them (their counters stop
growing) and only then closed, which avoids that trigger and lets the run check everything else.

Costs to know about. Impersonation is not free for the cluster: ROUTER_HANDOVER gives the impersonator the
real peer's routing id, and the real peer's messages on that link vanish until its ZMTP heartbeat times out
(ZMTP_HEARTBEAT_TIMEOUT_MS, ~3 s) and it reconnects (see `zvsr.runtime.node`). Bursts are therefore spaced
(`impersonation_interval_s`). Oversized frames on the peer port are 256 MiB (MESSAGE_BYTES_MAX) and cost each
replica about twice that in memory for a moment; `huge=False` leaves them out.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq

from zvsr import constants as c
from zvsr.client import Client
from zvsr.fuzz.generators import CLIENT, PEER, PROXY, FrameGenerator, limit_payloads, peer_limit_buffer
from zvsr.fuzz.report import FuzzReport, TargetStats, bad_input_counts, decoder_bug_counts, judge
from zvsr.fuzz.workload import Workload
from zvsr.runtime import backup_query
from zvsr.runtime.cluster_config import ClusterConfig
from zvsr.runtime.node import routing_id
from zvsr.runtime.status import query
from zvsr.wire import admin
from zvsr.wire.admin import TYPE_STATUS_ANSWER
from zvsr.wire.batch import decode_reply_batch, is_reply_batch
from zvsr.wire.codec import TYPE_ERROR, TYPE_REDIRECT, TYPE_REPLY, DecodeError, decode_client_reply

if TYPE_CHECKING:
    from zvsr.runtime.processes import ProcessCluster

Socket = zmq.Socket[bytes]

# Spacing of impersonation bursts on a peer port: the impersonated peer's own link is dead until its ZMTP
# heartbeat times out and it reconnects (see above), so at most one burst per heartbeat timeout.
IMPERSONATION_INTERVAL_S: Final = c.ZMTP_HEARTBEAT_TIMEOUT_MS / 1000


@dataclass(frozen=True)
class Target:
    """One bound socket under fire."""

    label: str  # "peer r0", "client r0", "proxy"
    port: str  # PEER, CLIENT or PROXY
    endpoint: str
    replica: int | None  # the replica that binds it (None for the proxy)


# A replica's answers to the admin queries a fuzzed map may happen to be (a snapshot, history or backup query of
# the wrong shape gets a bad_request of the query's own answer type): each read by its own decoder.
_ADMIN_ANSWERS: Final[dict[int, Callable[[bytes], object]]] = {
    admin.TYPE_SNAPSHOT_ANSWER: admin.decode_snapshot_answer,
    admin.TYPE_HISTORY_ANSWER: admin.decode_history_answer,
    backup_query.TYPE_BACKUP_ANSWER: backup_query.decode_answer,
}


def _readable_answer(port: str, payload: bytes) -> str | None:
    """None if an answer from `port` is well formed, else what is wrong with it."""
    if port in (CLIENT, PROXY) and is_reply_batch(payload):  # a RequestBatch's answers come in ReplyBatches
        try:
            elements = decode_reply_batch(payload)
        except DecodeError as error:
            return f"{error}: {payload[:60]!r}"
        return next((p for p in (_readable_answer(port, e) for e in elements) if p is not None), None)
    try:
        value = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as error:
        return f"not msgpack ({type(error).__name__}): {payload[:40]!r}"
    if port == PROXY and type(value) is not dict:
        return None  # a bare result value
    if type(value) is not dict:
        return f"not a map: {payload[:40]!r}"
    kind = value.get("type")
    if port == PROXY and kind is None and set(value) >= {"error", "message"}:
        return None  # a legacy error map
    if port == PROXY and kind not in (TYPE_REPLY, TYPE_REDIRECT, TYPE_ERROR, TYPE_STATUS_ANSWER):
        return None  # a bare result that happens to be a map
    if kind == TYPE_STATUS_ANSWER:
        return None
    if kind == TYPE_ERROR and set(value) == {"type", "code", "message"}:
        return None  # the bare error: "could not read what you sent"
    if port == CLIENT and type(kind) is int and kind in _ADMIN_ANSWERS:
        try:
            _ADMIN_ANSWERS[kind](payload)
        except ValueError as error:  # DecodeError, BackupQueryError
            return f"{error}: {payload[:60]!r}"
        return None
    try:
        decode_client_reply(payload)
    except DecodeError as error:
        return f"{error}: {payload[:60]!r}"
    return None


class _TargetDied(Exception):
    """The process behind a target is gone: the rest of its frames are not sent (reported as abandoned)."""


def _target_alive(cluster: ProcessCluster, target: Target) -> bool:
    process = cluster.proxy if target.replica is None else cluster.nodes.get(target.replica)
    return process is None or process.poll() is None


class _Sender:
    """One thread's worth of fuzz: its target, its sockets, its frames."""

    def __init__(
        self,
        driver: _Driver,
        target: Target,
        quota: int,
        seed: int,
    ) -> None:
        self.driver = driver
        self.target = target
        self.quota = quota
        self.generator = FrameGenerator(seed, avoid_cluster=driver.cluster_id)
        self.rng = random.Random(seed ^ 0x5EED)
        self.stats = TargetStats(label=target.label, endpoint=target.endpoint)
        self.sockets: list[Socket] = []
        # Peer-port sockets kept open until the replicas drained (without `resets`): see `_Sender.release`.
        self.parked: list[Socket] = []

    def _dealer(self, identity: bytes | None = None, *, linger_ms: int = 2000) -> Socket:
        socket: Socket = self.driver.context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, linger_ms)
        socket.setsockopt(zmq.SNDTIMEO, self.driver.send_timeout_ms)
        socket.setsockopt(zmq.MAXMSGSIZE, c.CLIENT_REPLY_BYTES_MAX)
        socket.setsockopt(zmq.ROUTING_ID, identity if identity is not None else self._random_identity())
        socket.connect(self.target.endpoint)
        return socket

    def _random_identity(self) -> bytes:
        size = self.rng.choice((1, 2, 5, 16, 255))
        return bytes([self.rng.randrange(1, 256)]) + self.rng.randbytes(size - 1)

    def _send(self, socket: Socket, frames: Sequence[bytes | memoryview], *, copy: bool = True) -> bool:
        try:
            socket.send_multipart(frames, copy=copy)
        except zmq.Again:
            self.stats.send_timeouts += 1
            if not self.driver.alive(self.target):
                raise _TargetDied() from None
            return False
        self.stats.sent += 1
        return True

    def run(self) -> None:
        started = time.monotonic()
        try:
            self._run()
        except _TargetDied:
            self.stats.abandoned = self.quota - self.stats.sent
        except Exception as error:  # a bug of the fuzzer: report it rather than hide it in a thread
            self.stats.failure = f"{type(error).__name__}: {error}"
        finally:
            for socket in self.sockets:
                self.release(socket, linger_ms=2000)
            self.sockets = []
            self.stats.strategies = self.generator.stats
            self.stats.elapsed_s = time.monotonic() - started

    def _run(self) -> None:
        driver = self.driver
        self._send_oversized()
        self.sockets = [self._dealer() for _ in range(driver.sockets_per_target)]
        if self.target.port == PEER:
            self._run_peer()
            return
        for number in itertools.count():
            if self.stats.sent >= self.quota:
                break
            socket = self.sockets[number % len(self.sockets)]
            if not self._send(socket, self.generator.frames(self.target.port)):
                self._replace(socket)
            if number % 32 == 0:
                self._drain()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and self._drain():
            pass

    def _run_peer(self) -> None:
        driver = self.driver
        members = [i for i in range(driver.replica_count) if i != self.target.replica]
        last_burst = -math.inf
        number = 0
        paced_from, paced_sent = time.monotonic(), self.stats.sent
        while self.stats.sent < self.quota:
            if driver.peer_rate and self.stats.sent % 20 == 0:
                ahead = (self.stats.sent - paced_sent) / driver.peer_rate - (time.monotonic() - paced_from)
                if ahead > 0:
                    time.sleep(ahead)
            if members and driver.impersonation_burst and time.monotonic() - last_burst >= driver.impersonation_s:
                self._burst(rng_choice(self.rng, members))
                last_burst = time.monotonic()
                continue
            socket = self.sockets[number % len(self.sockets)]
            number += 1
            if not self._send(socket, self.generator.frames(PEER)):
                self._replace(socket)

    def _burst(self, member: int) -> None:
        """Frames from a DEALER whose routing id is `member`'s: they reach the peer decoder (see module doc)."""
        socket = self._dealer(routing_id(member))
        self.stats.bursts += 1
        try:
            for number in range(min(self.driver.impersonation_burst, self.quota - self.stats.sent)):
                if self.driver.peer_rate and number % 20 == 0:
                    time.sleep(20 / self.driver.peer_rate)
                if not self._send(socket, self.generator.frames(PEER)):
                    break
                self.stats.impersonated += 1
        finally:
            self.release(socket, linger_ms=2000)

    def _send_oversized(self) -> None:
        """Frames just under, at and just over the target's MAXMSGSIZE, each on a fresh connection."""
        port = self.target.port
        frames: list[tuple[bytes | memoryview, bytes | None]] = []
        if port == PEER and not self.driver.huge:
            return
        if port == PEER:
            members = [i for i in range(self.driver.replica_count) if i != self.target.replica]
            identity = routing_id(members[0]) if members else None
            buffer = memoryview(peer_limit_buffer())
            frames = [(buffer[: c.MESSAGE_BYTES_MAX], identity), (buffer, identity)]
        else:
            limit = c.CLIENT_MESSAGE_BYTES_MAX if port == CLIENT else c.PROXY_FRAME_BYTES_MAX
            frames = [(payload, None) for payload in limit_payloads(limit)]
        for payload, identity in frames:
            socket = self._dealer(identity, linger_ms=20_000)
            try:
                shape: list[bytes | memoryview] = [payload] if port == PEER else [b"", payload]
                if self._send(socket, shape, copy=len(payload) < 1 << 20):
                    self.stats.oversized += 1
                    if port == PEER and identity is not None:
                        self.stats.impersonated += 1
            finally:
                self.release(socket, linger_ms=20_000)

    def _replace(self, socket: Socket) -> None:
        """A socket whose send timed out (the receiver's queue for it is full) is dropped for a new one: with
        an abrupt reset (TCP RST, what a crashed or hostile peer does) unless `resets` is off."""
        index = self.sockets.index(socket)
        self.release(socket, linger_ms=0)
        self.sockets[index] = self._dealer()

    def release(self, socket: Socket, *, linger_ms: int) -> None:
        """Close a socket we are done with — at once with `resets`; else a peer-port socket is parked until
        the driver has seen the replicas drain their queues (closing a connection while a replica's queue for
        it is full can abort the replica: libzmq's `!_io_error` assertion, see the module docstring)."""
        if self.driver.resets:
            socket.close(linger=linger_ms)
        elif self.target.port == PEER:
            self.parked.append(socket)
        else:
            socket.close(linger=max(linger_ms, 2000))

    def _drain(self) -> int:
        """Read the answers that came back (client ports and proxy); check each is readable."""
        received = 0
        for socket in self.sockets:
            while True:
                try:
                    frames = socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                received += 1
                self.stats.answers += 1
                problem = _readable_answer(self.target.port, frames[-1])
                if problem is not None:
                    self.stats.unreadable_answers += 1
                    if len(self.stats.unreadable_examples) < 5:
                        self.stats.unreadable_examples.append(problem)
        return received


def rng_choice(rng: random.Random, items: Sequence[int]) -> int:
    return items[rng.randrange(len(items))]


@dataclass
class _Driver:
    context: zmq.Context[Socket]
    cluster_id: int
    replica_count: int
    huge: bool
    sockets_per_target: int
    send_timeout_ms: int
    impersonation_s: float
    impersonation_burst: int
    resets: bool
    peer_rate: float | None
    alive: Callable[[Target], bool] = lambda _: True  # False once the process behind a target died


def endpoints_of(config: ClusterConfig) -> list[Target]:
    """Every bound socket of the cluster in `config`: peer and client ROUTERs of each replica, the proxy."""
    targets = [Target(f"peer r{i}", PEER, a.peer, i) for i, a in enumerate(config.replicas)]
    targets += [Target(f"client r{i}", CLIENT, a.client, i) for i, a in enumerate(config.replicas)]
    if config.proxy:
        targets.append(Target("proxy", PROXY, config.proxy, None))
    return targets


def _status(endpoint: str, context: zmq.Context[Socket], timeout_ms: int = 2000) -> dict[str, Any] | None:
    return query(endpoint, timeout_ms=timeout_ms, context=context)


def run_live_fuzz(
    cluster: ProcessCluster | ClusterConfig,
    frames: int,
    seed: int,
    *,
    workload_clients: int = 4,
    huge: bool = True,
    sockets_per_target: int = 3,
    send_timeout_ms: int = 5000,
    impersonation_interval_s: float = IMPERSONATION_INTERVAL_S,
    impersonation_burst: int = 2000,
    resets: bool = True,
    peer_rate: float | None = None,
    warm_up_ops: int = 20,
    after_ops: int = 20,
    lincheck_timeout_s: float = 60,
    history_path: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> FuzzReport:
    """Throw `frames` fuzzed frames at every bound socket of a running cluster under a client workload; check.

    `cluster` is a `ProcessCluster` (its processes are checked for crashes and its logs for decoder bugs) or
    just the `ClusterConfig` of a running cluster (then only what the sockets tell). See the module docstring
    for what is sent and checked; the report's `problems` lists every failed check (empty: all passed).
    `history_path`: where to write the workload's history (JSON lines, `zvsr lincheck --format zvsr`).
    """
    processes = None if isinstance(cluster, ClusterConfig) else cluster
    config = cluster if isinstance(cluster, ClusterConfig) else cluster.config
    say = progress or (lambda _: None)
    report = FuzzReport(frames=frames, seed=seed, replicas=len(config.replicas))
    started = time.monotonic()
    context: zmq.Context[Socket] = zmq.Context()
    targets = endpoints_of(config)
    status_endpoints = {f"r{i}": a.client for i, a in enumerate(config.replicas)}
    if config.proxy:
        status_endpoints["proxy"] = config.proxy
    deaths: dict[str, float] = {}
    watching = threading.Event()
    if processes is not None:
        threading.Thread(
            target=_watch_processes, args=(processes, deaths, started, watching), name="fuzz watch", daemon=True
        ).start()
    try:
        for name, endpoint in status_endpoints.items():
            report.bad_input_before[name] = bad_input_counts(_status(endpoint, context))
        workload = Workload(config.proxy, clients=workload_clients) if workload_clients and config.proxy else None
        if workload is not None:
            workload.run()
            _wait(lambda: workload.acknowledged() >= warm_up_ops, 30)
            acknowledged_before = workload.acknowledged()
            say(f"workload running ({acknowledged_before} ops acknowledged); fuzzing")
        driver = _Driver(
            context=zmq.Context(),
            cluster_id=config.cluster_id,
            replica_count=len(config.replicas),
            huge=huge,
            sockets_per_target=sockets_per_target,
            send_timeout_ms=send_timeout_ms,
            impersonation_s=impersonation_interval_s,
            impersonation_burst=impersonation_burst,
            resets=resets,
            peer_rate=peer_rate,
        )
        if processes is not None:
            driver.alive = functools.partial(_target_alive, processes)
        share, extra = divmod(frames, len(targets))
        senders = [
            _Sender(driver, target, share + (1 if index < extra else 0), seed * 1000 + index)
            for index, target in enumerate(targets)
        ]
        threads = [threading.Thread(target=s.run, name=f"fuzz {s.target.label}", daemon=True) for s in senders]
        fuzz_started = time.monotonic()
        report.fuzz_started_s = fuzz_started - started
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            deadline = time.monotonic() + 10
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            sent = sum(s.stats.sent for s in senders)
            say(f"{sent}/{frames} frames sent, {time.monotonic() - fuzz_started:.0f} s")
        parked = [socket for sender in senders for socket in sender.parked]
        if parked:  # wait until the replicas took everything, then close (see _Sender.release)
            say(f"waiting for the replicas to drain before closing {len(parked)} peer-port sockets")
            _wait_until_drained(status_endpoints, context)
            for socket in parked:
                socket.close(linger=0)
        driver.context.term()  # waits for what the sockets still hold (their linger)
        report.fuzz_elapsed_s = time.monotonic() - fuzz_started
        report.targets = [s.stats for s in senders]
        say(f"fuzz done in {report.fuzz_elapsed_s:.1f} s; checking")

        if workload is not None:
            during = workload.acknowledged() - acknowledged_before
            report.acknowledged_during_fuzz = during
            wanted = acknowledged_before + during + after_ops
            resumed = _wait(lambda: workload.acknowledged() >= wanted, 10 if deaths else 60)
            workload.finish()
            if history_path is not None:
                workload.write_history(history_path)
            report.acknowledged_ops = workload.acknowledged()
            report.workload_errors = dict(workload.errors)
            if not resumed:
                report.problems.append(f"the workload did not complete {after_ops} more ops after the fuzz")
        if processes is not None:
            report.crashes = [f"{name} at +{when:.1f} s" for name, when in sorted(deaths.items())]
            report.crashes += [name for name in _crashes(processes) if name not in deaths]
        replicas_dead = sum(1 for name in report.crashes if name.startswith("replica "))
        quorum_lost = replicas_dead > (len(config.replicas) - 1) // 2
        if quorum_lost:  # nothing can answer: say so instead of waiting for timeouts
            report.serve_problem = f"{replicas_dead} of {len(config.replicas)} replicas crashed"
        else:
            report.serves, report.serve_problem = _serves(config, Client)
        if workload is not None:
            if quorum_lost:
                report.problems.append("acknowledged writes not checked: a majority of the replicas crashed")
            else:
                try:
                    report.lost_writes = workload.lost_writes()
                    report.writes_checked = True
                except Exception as error:  # the cluster could not be read back: that is a failed check too
                    report.problems.append(f"cannot read the writes back: {type(error).__name__}: {error}")
            verdict = workload.linearizability(lincheck_timeout_s)
            report.linearizable = verdict.verdict
            report.linearizability_summary = verdict.summary()

        def counted() -> bool:
            report.bad_input_after = {}
            report.decoder_bugs = {}
            for name, endpoint in status_endpoints.items():
                answer = _status(endpoint, context)
                report.bad_input_after[name] = bad_input_counts(answer)
                report.decoder_bugs[name] = decoder_bug_counts(answer)
            return all(
                report.bad_input_after[name][side] > report.bad_input_before.get(name, {}).get(side, 0)
                for name in status_endpoints
                for side in report.bad_input_after[name]
            )

        grew = _wait(counted, 2 if quorum_lost else 15, interval_s=0.5)
        if processes is not None:
            report.log_problems = _log_problems(processes)
    finally:
        watching.set()
        context.term()
    report.elapsed_s = time.monotonic() - started
    judge(report, grew=grew, workload=workload is not None)
    return report


def _wait_until_drained(endpoints: dict[str, str], context: zmq.Context[Socket], timeout_s: float = 60) -> None:
    """Until the bad-input counters of every replica stopped growing (for a second): they took everything."""
    previous: dict[str, dict[str, int]] = {}

    def settled() -> bool:
        nonlocal previous
        current = {name: bad_input_counts(_status(endpoint, context)) for name, endpoint in endpoints.items()}
        done, previous = current == previous, current
        return done

    _wait(settled, timeout_s, interval_s=1.0)


def _wait(condition: Callable[[], bool], timeout_s: float, *, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)


def _watch_processes(
    cluster: ProcessCluster, deaths: dict[str, float], started: float, done: threading.Event
) -> None:
    """Note when each process of `cluster` died (seconds since `started`), until `done` is set."""
    while not done.wait(0.2):
        for name in _crashes(cluster):
            deaths.setdefault(name, time.monotonic() - started)


def _crashes(cluster: ProcessCluster) -> list[str]:
    dead = [f"replica {i} exited with {p.returncode}" for i, p in cluster.nodes.items() if p.poll() is not None]
    if cluster.proxy is not None and cluster.proxy.poll() is not None:
        dead.append(f"proxy exited with {cluster.proxy.returncode}")
    return dead


def _serves(config: ClusterConfig, client_class: Any) -> tuple[bool, str | None]:
    key = f"fuzz-serves/{secrets.token_hex(8)}"
    try:
        with client_class(config.proxy, timeout_ms=15_000) as client:
            client.put(key, "yes")
            value = client.get(key)
    except Exception as error:  # any failure to serve is the finding
        return False, f"{type(error).__name__}: {error}"
    return (True, None) if value == "yes" else (False, f"read back {value!r}")


# Lines a process writes only when something went wrong on our side (not on the sender's).
_BUG_MARKERS: Final = ("our bug", "Traceback", "stopping on an unexpected error", "Assertion failed")


def _log_problems(cluster: ProcessCluster) -> list[str]:
    problems = []
    for path in sorted(cluster.root.glob("*.log")):
        with open(path, errors="replace") as log:
            for line in log:
                if any(marker in line for marker in _BUG_MARKERS):
                    problems.append(f"{path.name}: {line.strip()[:300]}")
    return problems
