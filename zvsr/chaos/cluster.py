"""A cluster of real processes for `zvsr chaos`: each replica in its own network namespace behind its relay,
the proxy (and the clients) in ours.

Theory of operation
-------------------
`ChaosCluster` is a `zvsr.runtime.processes.ProcessCluster` whose nodes start inside their namespaces
(`ip netns exec`), each from a cluster file of its own: the shared file names every replica by its public
address (10.A.B.(10 + i), the same ports everywhere), and replica i's copy lists its own peer and heartbeat
ports on 127.0.0.1, where it binds them, so that only its relay (`zvsr.chaos.relay`, listening on the public
address) reaches them. Its client port stays public: the proxy talks to it directly. Everything else — kill -9,
SIGSTOP, restarts from disk, status queries, the logs — is ProcessCluster's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from zvsr.chaos.netns import Network
from zvsr.chaos.relay import RelayControl
from zvsr.runtime.cluster_config import ClusterConfig, ReplicaAddress, to_toml
from zvsr.runtime.processes import ProcessCluster, free_ports, wait_for

PEER_PORT: Final = 7100
HEARTBEAT_PORT: Final = 7101
CLIENT_PORT: Final = 7102
RELAY_START_TIMEOUT_S: Final = 10.0
PROCESS_EXIT_TIMEOUT_S: Final = 10.0


def chaos_config(network: Network, root: Path, timeouts: dict[str, int]) -> ClusterConfig:
    """The shared cluster file: public addresses in the namespaces, the proxy on our loopback."""
    replicas = tuple(
        ReplicaAddress(
            peer=f"tcp://{network.address(i)}:{PEER_PORT}",
            heartbeat=f"tcp://{network.address(i)}:{HEARTBEAT_PORT}",
            client=f"tcp://{network.address(i)}:{CLIENT_PORT}",
        )
        for i in range(network.replicas)
    )
    return ClusterConfig(
        replicas=replicas,
        proxy=f"tcp://127.0.0.1:{free_ports(1)[0]}",
        data_dir=str(root / "data"),
        timeouts=dict(timeouts),
        log_level="info",
        log_format="json",  # timestamps: a failing run's logs are read side by side
    )


class ChaosCluster(ProcessCluster):
    def __init__(self, root: Path, network: Network, *, seed: int, timeouts: dict[str, int]) -> None:
        super().__init__(root, config=chaos_config(network, root, timeouts))
        self.network = network
        self.seed = seed
        self.relays: dict[int, subprocess.Popen[bytes]] = {}
        self.node_paths: dict[int, Path] = {}
        for index, address in enumerate(self.config.replicas):
            local = replace(
                address, peer=f"tcp://127.0.0.1:{PEER_PORT}", heartbeat=f"tcp://127.0.0.1:{HEARTBEAT_PORT}"
            )
            own = replace(
                self.config, replicas=tuple(local if i == index else a for i, a in enumerate(self.config.replicas))
            )
            self.node_paths[index] = root / f"replica-{index}.toml"
            self.node_paths[index].write_text(to_toml(own))

    def node_command(self, index: int, *, init: bool) -> list[str]:
        flags = ["--init"] if init else []
        path = str(self.node_paths[index])
        return [*self.network.exec_prefix(index), sys.executable, "-m", "zvsr", "node", "--config", path,
                "--replica", str(index), *flags]  # fmt: skip

    def start(self) -> ChaosCluster:
        for index in range(len(self.config.replicas)):
            self.start_relay(index)
        for index in range(len(self.config.replicas)):
            wait_for(
                self.relay(index).ready, timeout_s=RELAY_START_TIMEOUT_S, what=f"the relay of replica {index}"
            )
        super().start()
        return self

    def start_relay(self, index: int) -> None:
        address = self.network.address(index)
        command = [
            *self.network.exec_prefix(index), sys.executable, "-m", "zvsr.chaos.relay",
            "--control", str(self.relay_socket(index)), "--seed", str(self.seed * 1000 + index),
            "--route", f"{address}:{PEER_PORT}=127.0.0.1:{PEER_PORT}:in",
            "--route", f"{address}:{HEARTBEAT_PORT}=127.0.0.1:{HEARTBEAT_PORT}:out",
        ]  # fmt: skip
        self.relays[index] = self._spawn(command, f"relay-{index}.log")

    def relay_socket(self, index: int) -> Path:
        return self.root / f"relay-{index}.sock"

    def relay(self, index: int) -> RelayControl:
        return RelayControl(self.relay_socket(index))

    def alive(self, index: int) -> bool:
        return index in self.nodes and self.nodes[index].poll() is None

    def wipe(self, index: int) -> None:
        """Replica `index`'s data directory emptied (the replica must be down): it restarts with Recovery."""
        assert not self.alive(index)
        directory = self.config.replica_data_dir(index)
        if directory is not None and directory.exists():
            shutil.rmtree(directory)
            directory.mkdir(parents=True)

    def view_state(self) -> dict[int, dict[str, Any]]:
        """Each reachable replica's status answer (a replica cut off from us is missing)."""
        return self.statuses(timeout_ms=300)

    def cleanup(self) -> None:
        try:
            super().cleanup()
        finally:
            for relay in self.relays.values():
                if relay.poll() is None:
                    relay.kill()
            for relay in self.relays.values():
                try:
                    relay.wait(timeout=PROCESS_EXIT_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    pass
