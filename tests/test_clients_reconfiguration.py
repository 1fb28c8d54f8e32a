"""The Node.js client follows a reconfiguration without a restart (issue 14), against real processes.

A direct client (clients/node/support/line-client.js, one process for the whole test) writes to a 3-replica
cluster; a backup is killed and replaced by a new replica at new endpoints (`zvsr node --join`, `zvsr member
replace`), then the primary is killed. The client's next calls time out toward the replicas it knows, ask them
for the status query, and go on in epoch 1 — with the new replica, which it was never told of.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_reconfiguration_processes import in_epoch, member, named, new_address

from zvsr.runtime.processes import ProcessCluster, process_cluster, wait_for

NODE_CLIENT = Path(__file__).resolve().parent.parent / "clients" / "node"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    with process_cluster(tmp_path) as started:
        started.wait_for_primary()
        yield started


class LineClient:
    """The Node line client as a child process: `call` sends one JSON line and reads the answer line."""

    def __init__(self, replicas: list[str]) -> None:
        node = shutil.which("node")
        assert node is not None, "node (Node.js 20+) is not on PATH: run clients/install-deps"
        assert (NODE_CLIENT / "node_modules" / "zeromq").is_dir(), "run clients/install-deps"
        self.process = subprocess.Popen(
            [node, str(NODE_CLIENT / "support" / "line-client.js"), json.dumps(replicas)],
            cwd=NODE_CLIENT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()  # the client's own deadline (20 s) bounds the wait
        assert line, f"the line client exited ({self.process.poll()})"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.mark.timeout(240)
def test_node_client_direct_follows_a_replace_then_a_failover_without_a_restart(cluster: ProcessCluster) -> None:
    """r{backup} is killed -9 and replaced by r3 at new endpoints (epoch 1); then the primary is killed. The
    same client process writes before, in between and after: it learns epoch 1 (members and r3's endpoint) from
    the status query and reads back everything it wrote."""
    client = LineClient([address.client for address in cluster.config.replicas])
    try:
        assert client.call(op="put", key="a", value="1") == {"ok": True, "result": None, "epoch": 0, "view": "0"}
        primary = cluster.wait_for_primary()
        dead = next(i for i in (0, 1, 2) if i != primary)
        cluster.kill(dead)
        address = new_address()
        cluster.join(3, address)
        member(cluster, "replace", str(dead), "--address", named(address))
        wait_for(lambda: in_epoch(cluster, 3, 1), timeout_s=60, what="r3 normal in epoch 1")
        answer = client.call(op="put", key="b", value="2")
        assert answer["ok"], answer
        cluster.kill(primary)  # the new view's primary is a survivor or r3; only epoch 1's members can elect it
        answer = client.call(op="put", key="c", value="3")
        assert answer["ok"] and answer["epoch"] == 1, answer
        for key, value in (("a", "1"), ("b", "2"), ("c", "3")):
            answer = client.call(op="get", key=key)
            assert answer["ok"] and answer["result"] == value, (key, answer)
        status = cluster.status(3)
        assert status is not None and 3 in [m["id"] for m in status["membership"]["members"]]
    finally:
        client.close()
