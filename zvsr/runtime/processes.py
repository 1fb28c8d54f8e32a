"""Real zvsr processes on 127.0.0.1, for end-to-end tests and benchmarks: start, kill -9, SIGSTOP/SIGCONT,
restart, inspect.

Ports come from the kernel (bind to port 0, read it, release it) so parallel runs don't collide; every process
is started in its own session and is SIGKILLed at cleanup, whatever the test did. Waiting is always for a
condition with a deadline (`wait_for`), never a fixed sleep.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import zmq

from zvsr.runtime.cluster_config import ClusterConfig, ReplicaAddress, to_toml
from zvsr.runtime.security import client_options
from zvsr.runtime.status import query

T = TypeVar("T")

# Timeouts small enough for fast failover in tests, large enough for a loaded 2-core CI machine.
TEST_TIMEOUTS = {
    "heartbeat_ticks": 5,
    "primary_timeout_ticks": 30,
    "primary_timeout_jitter_ticks": 15,
    "view_change_timeout_ticks": 60,
}


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_base_port(replicas: int = 3) -> int:
    """A `zvsr cluster up --base-port` whose every port is free now: the proxy's and its /metrics (base, base + 4)
    and each replica's peer, heartbeat, client, watch and /metrics (base + 10(i+1) + 0..4)."""
    offsets = (0, 4, *(10 * (i + 1) + j for i in range(replicas) for j in range(5)))
    while True:
        base = free_ports(1)[0]
        if base + offsets[-1] <= 65000 and all(port_is_free(f"tcp://127.0.0.1:{base + o}") for o in offsets):
            return base


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout_s: float = 10.0,
    what: str = "a condition",
    interval_s: float = 0.01,
) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout_s`.

    The interval is a polling period, not synchronisation: the condition decides when to go on.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.1f} s waiting for {what}")
        time.sleep(interval_s)


def loopback_config(replicas: int = 3, *, metrics: bool = False, **settings: Any) -> ClusterConfig:
    """A cluster on 127.0.0.1 with ports the kernel had free: four per replica and one for the proxy; with
    `metrics`, one more for each replica's /metrics and one for the proxy's."""
    ports = free_ports(4 * replicas + 1 + (replicas + 1 if metrics else 0))
    addresses = tuple(
        ReplicaAddress(
            peer=f"tcp://127.0.0.1:{ports[3 * i]}",
            heartbeat=f"tcp://127.0.0.1:{ports[3 * i + 1]}",
            client=f"tcp://127.0.0.1:{ports[3 * i + 2]}",
            watch=f"tcp://127.0.0.1:{ports[3 * replicas + i]}",
        )
        for i in range(replicas)
    )
    if metrics:
        extra = ports[4 * replicas + 1 :]
        settings = {"metrics_ports": tuple(extra[:replicas]), "proxy_metrics_port": extra[replicas], **settings}
    return ClusterConfig(replicas=addresses, proxy=f"tcp://127.0.0.1:{ports[4 * replicas]}", **settings)


class ProcessCluster:
    def __init__(
        self, root: Path, *, replicas: int = 3, timeouts: dict[str, int] | None = None, **settings: Any
    ) -> None:
        self.config = loopback_config(
            replicas,
            data_dir=str(root / "data"),
            timeouts=dict(TEST_TIMEOUTS if timeouts is None else timeouts),
            request_timeout_ms=10_000,
            log_level="info",
            **settings,
        )
        self.root = root
        self.path = root / "cluster.toml"
        self.path.write_text(to_toml(self.config))
        # Every replica id ever started, and where it listens (the file's, then new replicas', `join`).
        self.addresses: dict[int, ReplicaAddress] = dict(zip(self.config.ids, self.config.replicas, strict=True))
        self.nodes: dict[int, subprocess.Popen[bytes]] = {}
        self.proxy: subprocess.Popen[bytes] | None = None
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()

    # --- processes ----------------------------------------------------------------------------------------

    def _spawn(self, arguments: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.root / log_name, "ab")  # noqa: SIM115  # closed by the child's exit; kept for diagnosis
        return subprocess.Popen(
            [sys.executable, "-m", "zvsr", *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self) -> ProcessCluster:
        for index in range(len(self.config.replicas)):
            self.start_node(index)
        self.start_proxy()
        return self

    def start_node(self, index: int) -> None:
        """The first start of a replica initialises it (`--init`); later ones restart it from its data dir."""
        assert index not in self.nodes or self.nodes[index].poll() is not None
        init = [] if index in self.nodes else ["--init"]
        self.nodes[index] = self._spawn(
            ["node", "--config", str(self.path), "--replica", str(index), *init], f"replica-{index}.log"
        )

    def join(self, replica: int, address: ReplicaAddress) -> None:
        """Start a brand-new replica `replica` listening at `address` (`zvsr node --join --address`): it waits
        until a reconfiguration adds it (`zvsr member add` / `replace`)."""
        assert replica not in self.nodes
        self.addresses[replica] = address
        endpoints = f"peer={address.peer},heartbeat={address.heartbeat},client={address.client}"
        if address.watch is not None:
            endpoints += f",watch={address.watch}"
        self.nodes[replica] = self._spawn(
            ["node", "--config", str(self.path), "--replica", str(replica), "--join", "--address", endpoints],
            f"replica-{replica}.log",
        )

    def cli(self, *arguments: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `zvsr ARGUMENTS` as an operator would, with this cluster's file; its exit code and output."""
        return subprocess.run(
            [sys.executable, "-m", "zvsr", *arguments, "--config", str(self.path)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def start_proxy(self) -> None:
        self.proxy = self._spawn(["proxy", "--config", str(self.path)], "proxy.log")

    def kill(self, index: int) -> None:
        """kill -9: no chance to clean up."""
        node = self.nodes[index]
        node.send_signal(signal.SIGKILL)
        node.wait(timeout=10)

    def stop(self, index: int, *, timeout_s: float = 10) -> None:
        """A planned stop (SIGTERM, as an operator's service manager sends): the node closes cleanly."""
        node = self.nodes[index]
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=timeout_s)

    def pause(self, index: int) -> None:
        self.nodes[index].send_signal(signal.SIGSTOP)

    def resume(self, index: int) -> None:
        self.nodes[index].send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        processes = list(self.nodes.values()) + ([self.proxy] if self.proxy else [])
        for process in processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGCONT)
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for process in processes:
            process.wait(timeout=10)
        self.context.term()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.root.glob("*.log"))
        )

    # --- inspection ---------------------------------------------------------------------------------------

    def status(self, index: int, *, timeout_ms: int = 500) -> dict[str, Any] | None:
        keys, pair = self.config.keys(), self.config.client_pair()
        curve = None if keys is None or pair is None else client_options(pair, keys.replicas[index])
        return query(self.addresses[index].client, timeout_ms=timeout_ms, context=self.context, curve=curve)

    def statuses(self, *, timeout_ms: int = 500) -> dict[int, dict[str, Any]]:
        answers = {}
        for index in sorted(self.addresses):
            if index in self.nodes and self.nodes[index].poll() is None:
                answer = self.status(index, timeout_ms=timeout_ms)
                if answer is not None:
                    answers[index] = answer
        return answers

    def primary(self) -> int | None:
        """The replica that says it is primary in normal status, in the highest such view."""
        best: tuple[int, int] | None = None
        for index, answer in self.statuses().items():
            if answer.get("status") == "normal" and answer.get("role") == "primary":
                if best is None or answer["view"] > best[0]:
                    best = (answer["view"], index)
        return None if best is None else best[1]

    def wait_for_primary(self, *, timeout_s: float = 20, other_than: int | None = None) -> int:
        def found() -> int | None:
            index = self.primary()
            if index is None or index == other_than:
                return None
            return index + 1  # truthy even for replica 0

        return wait_for(found, timeout_s=timeout_s, what="a primary") - 1


@contextmanager
def process_cluster(root: Path, **options: Any) -> Iterator[ProcessCluster]:
    cluster = ProcessCluster(root, **options)
    try:
        yield cluster.start()
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.cleanup()


def port_is_free(endpoint: str) -> bool:
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError:
            return False
    return True
