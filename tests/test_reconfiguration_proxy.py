"""The proxy and the operator's commands across reconfigurations (VR Revisited §7): real nodes and a real proxy in
this process. Clients through the proxy see a pause, never an error; `zvsr member` changes the configuration
and says what happened; a file written for the new configuration points the tools at it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from local_cluster import LocalCluster, make_config
from test_reconfiguration_node import new_address
from zmq_fakes import running_proxy

from zvsr.cli import main
from zvsr.client import Client
from zvsr.fuzz.workload import Workload
from zvsr.runtime.cluster_config import load_config, to_toml
from zvsr.runtime.processes import wait_for
from zvsr.runtime.proxy import Proxy
from zvsr.runtime.reconfigure import config_of, current, plan_add, plan_remove, plan_replace, submit

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(make_config(tmp_path / "data")).start()
    try:
        local.wait_status(0, "primary of view 0", lambda s: s["role"] == "primary" and s["status"] == "normal")
        yield local
    finally:
        local.close()


def proxy_knows(proxy: Proxy, epoch: int, members: tuple[int, ...]) -> bool:
    status = proxy.status()
    return bool(status["epoch"] == epoch and tuple(status["members"]) == members)


def more_writes(load: Workload, count: int, what: str) -> None:
    target = load.acknowledged() + count
    wait_for(lambda: load.acknowledged() >= target, timeout_s=30, what=what)


def test_writers_through_the_proxy_see_no_error_while_the_cluster_grows_is_replaced_and_shrinks(
    cluster: LocalCluster,
) -> None:
    """Four clients write through the proxy while, through the same proxy, r3 and r4 are added (epochs 1, 2),
    r0 — the primary — is replaced by r5 (epoch 3) and r1 removed (epoch 4). The proxy learns each
    configuration without a restart; the clients get no error; every acknowledged write is there and the history
    is linearizable."""
    with running_proxy(cluster.config, cluster.context) as proxy:
        load = Workload(proxy.endpoint, clients=4, timeout_ms=10_000)
        load.run()
        try:
            wait_for(lambda: load.acknowledged() >= 50, timeout_s=30, what="50 acknowledged ops")
            steps = []
            for replica in (3, 4):
                address = new_address()
                cluster.join(replica, address)
                steps.append(plan_add(current(cluster.config, timeout_ms=2000), address))
                assert submit(cluster.config, steps[-1], timeout_ms=15_000) == len(steps)
                more_writes(load, 30, "writes after the change")
            address = new_address()
            cluster.join(5, address)
            now = current(cluster.config, timeout_ms=2000)
            assert now.primary == 0
            assert submit(cluster.config, plan_replace(now, 0, address), timeout_ms=15_000) == 3
            cluster.wait_left(0)
            assert submit(
                cluster.config, plan_remove(current(cluster.config, timeout_ms=2000), 1), timeout_ms=15_000
            )
            cluster.wait_left(1)
            wait_for(lambda: proxy_knows(proxy, 4, (2, 3, 4, 5)), timeout_s=15, what="the proxy in epoch 4")
            more_writes(load, 30, "writes in epoch 4")
        finally:
            load.finish()
        assert not load.errors, f"clients through the proxy got errors: {dict(load.errors)}"
        assert load.lost_writes() == []
        verdict = load.linearizability()
        assert verdict.verdict == "ok", verdict.summary()
        assert proxy.status()["counters"].get("configurations learnt", 0) >= 4


def test_a_proxy_started_from_a_file_written_after_the_change_serves_at_once(cluster: LocalCluster) -> None:
    """After r1 is replaced by r3 (epoch 1 = {0, 2, 3}), `member list --write-config` writes a file naming
    r0, r2 and r3 with their ids; a proxy started from it asks them for the configuration and serves."""
    address = new_address()
    cluster.join(3, address)
    assert (
        submit(
            cluster.config,
            plan_replace(current(cluster.config, timeout_ms=2000), 1, address),
            timeout_ms=15_000,
            direct=True,
        )
        == 1
    )
    written = config_of(cluster.config, current(cluster.config, timeout_ms=2000).membership)
    assert written.ids == (0, 2, 3) and written.initial_count == 3
    with running_proxy(written, cluster.context) as proxy:
        with Client(proxy.endpoint, timeout_ms=10_000) as client:
            client.put("after", 1)
            assert client.get("after") == 1
        wait_for(lambda: proxy_knows(proxy, 1, (0, 2, 3)), timeout_s=5, what="the proxy to read the configuration")


def run_cli(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(arguments), catch_exceptions=False)
    return result.exit_code, result.output


def test_member_commands_print_what_happened_and_refuse_clearly(cluster: LocalCluster, tmp_path: Path) -> None:
    """`zvsr member list`, `add`, `replace`, `remove` through the proxy, as an operator types them: each prints
    the epoch change and the members; a refusal exits 1 with the reason; `--write-config` writes a file that
    `zvsr status` reads."""
    path = tmp_path / "cluster.toml"
    path.write_text(to_toml(cluster.config))
    with running_proxy(cluster.config, cluster.context):
        code, out = run_cli("member", "list", "--config", str(path))
        assert code == 0 and out.startswith("epoch 0 (from op 0, view 0): members 0, 1, 2\n"), out
        assert out.splitlines()[1].split()[:3] == ["r0", "normal", "primary"], out

        address = new_address()
        cluster.join(3, address)
        code, out = run_cli("member", "add", "--address", "127.0.0.1:7750", "--config", str(path))
        assert code == 2 and "expected tcp://HOST:PORT" in out, out
        named = f"peer={address.peer},heartbeat={address.heartbeat},client={address.client},watch={address.watch}"
        code, out = run_cli("member", "add", "--address", named, "--config", str(path))
        assert code == 0, out
        assert out.splitlines()[0] == "epoch 0 -> 1: members 0, 1, 2 -> 0, 1, 2, 3", out
        assert f"added r3: peer {address.peer}" in out and "--replica 3 --join" in out

        code, out = run_cli("member", "remove", "7", "--config", str(path))
        assert code == 1 and "replica 7 is not a member of epoch 1 (members 0, 1, 2, 3)" in out, out
        code, out = run_cli(
            "member", "add", "--address", "tcp://127.0.0.1:7750", "--id", "2", "--config", str(path)
        )
        assert code == 1 and "replica id 2 was used before" in out, out
        code, out = run_cli("member", "add", "--address", named, "--config", str(path))
        assert code == 1 and "replica 3 uses" in out, out

        replacement = new_address()
        cluster.join(4, replacement)
        newer = tmp_path / "newer.toml"
        code, out = run_cli(
            "member",
            "replace",
            "2",
            "--address",
            f"peer={replacement.peer},heartbeat={replacement.heartbeat},client={replacement.client}",
            "--config",
            str(path),
            "--write-config",
            str(newer),
        )
        assert code == 0, out
        assert out.splitlines()[0] == "epoch 1 -> 2: members 0, 1, 2, 3 -> 0, 1, 3, 4", out
        assert "removed r2: it stops by itself" in out and f"wrote {newer}: epoch 2, replicas 0, 1, 3, 4" in out
        assert load_config(newer).ids == (0, 1, 3, 4)
        cluster.wait_left(2)

        code, out = run_cli("member", "remove", "1", "--config", str(newer), "--json")
        assert code == 0, out
        document = json.loads(out)
        assert (document["old_epoch"], document["epoch"], document["removed"]) == (2, 3, [1])
        for replica in (0, 3, 4):
            cluster.wait_status(replica, "epoch 3", lambda s: s["epoch"] == 3 and s["status"] == "normal")
        code, out = run_cli("status", "--config", str(newer))
        assert code == 0 and "epoch 3 (from op" in out and "members 0, 3, 4" in out, out
