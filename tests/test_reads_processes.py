"""Reads without a log entry on real processes (127.0.0.1): the default read_mode (read_index) answers gets through
the proxy and straight from the replicas, and the primary's log grows only by the writes.

Each client's first request goes through the log (its session starts: zvsr.protocol.reads), so every path starts
with a put; the gets after it must add nothing to op_number. The Node and C clients' live tests
(test_node_client.py, test_c_client.py) run their gets against the same default.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from zvsr.client import Client
from zvsr.runtime.processes import ProcessCluster, process_cluster, wait_for

GETS = 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    with process_cluster(tmp_path_factory.mktemp("reads")) as cluster:
        yield cluster


def _op_number(cluster: ProcessCluster) -> int:
    primary = cluster.wait_for_primary()
    answer = wait_for(lambda: cluster.status(primary), what="the primary's status")
    op_number: int = answer["op_number"]
    return op_number


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", ["proxy", "replicas"])
def test_gets_are_answered_without_log_entries(cluster: ProcessCluster, path: str) -> None:
    """A client puts k (logged: its first request), then reads k GETS times through `path`: every get sees the
    put, and the primary's op_number is where the put left it."""
    if path == "proxy":
        client = Client(cluster.config.proxy, timeout_ms=10_000)
    else:
        client = Client(replicas=[address.client for address in cluster.config.replicas], timeout_ms=10_000)
    with client:
        client.put(f"reads-{path}", "v1")
        after_put = _op_number(cluster)
        answers = [client.get(f"reads-{path}") for _ in range(GETS)]
        after_gets = _op_number(cluster)
    assert answers == ["v1"] * GETS
    assert after_gets == after_put, f"{after_gets - after_put} gets went through the log"


@pytest.mark.timeout(120)
def test_read_mode_log_puts_gets_in_the_log(tmp_path: Path) -> None:
    with process_cluster(tmp_path, replicas=3, read_mode="log") as cluster:
        with Client(cluster.config.proxy, timeout_ms=10_000) as client:
            client.put("reads-log", "v1")
            after_put = _op_number(cluster)
            assert [client.get("reads-log") for _ in range(3)] == ["v1"] * 3
            assert _op_number(cluster) == after_put + 3
