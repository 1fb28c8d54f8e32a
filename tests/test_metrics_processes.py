"""End to end: real replica and proxy processes serving Prometheus /metrics, scraped with a plain HTTP GET.

The metrics move as ops commit, and after a kill -9 of the primary a new primary says so and counts the
view change; `--metrics-port` beats ZVSR_METRICS_PORT. Every process is killed and waited for at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from zvsr.client import Client
from zvsr.runtime.cluster_config import to_toml
from zvsr.runtime.metrics import metrics_url
from zvsr.runtime.processes import ProcessCluster, free_ports, loopback_config, process_cluster, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples | None:
    """Every sample of `url`, by (name, sorted labels); None if nothing answers there (yet, or any more)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


VIEW = ("zvsr_server_view", ())


def published(samples: Samples) -> bool:
    """The node's first sample is out (before it, the exporter serves only the process's own metrics)."""
    return VIEW in samples


def scrape_until(url: str, what: str, check: Callable[[Samples], bool], timeout_s: float = 20) -> Samples:
    """Scrape until `check` holds: a sample is published once per tick, so what a scrape shows trails a bit."""

    def met() -> Samples | None:
        samples = scrape(url)
        return samples if samples is not None and check(samples) else None

    return wait_for(met, timeout_s=timeout_s, what=f"{url}: {what}")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    with process_cluster(tmp_path, metrics=True) as started:
        started.wait_for_primary()
        yield started


def node_url(cluster: ProcessCluster, index: int) -> str:
    return metrics_url("127.0.0.1", cluster.config.metrics_ports[index])


@pytest.mark.timeout(120)
def test_every_node_and_the_proxy_serve_metrics_that_follow_commits_and_a_failover(
    cluster: ProcessCluster,
) -> None:
    proxy_url = metrics_url("127.0.0.1", cluster.config.proxy_metrics_port or 0)
    primary = cluster.wait_for_primary()
    urls = {index: node_url(cluster, index) for index in cluster.nodes}
    before = {index: scrape_until(url, "a first sample", published) for index, url in urls.items()}
    old_view = value(before[primary], "zvsr_server_view")
    assert value(before[primary], "zvsr_server_is_primary") == 1
    for index, samples in before.items():  # a deposed primary may not know yet: never in the newest view
        assert index == primary or not value(samples, "zvsr_server_is_primary") or samples[VIEW] < old_view

    with Client(cluster.config.proxy, timeout_ms=10_000) as client:
        for n in range(20):
            client.put(f"k{n}", n)
    committed = value(before[primary], "zvsr_server_commit_number") + 20

    def caught_up(samples: Samples) -> bool:
        return value(samples, "zvsr_server_commit_number") >= committed

    after = scrape_until(urls[primary], "20 more ops committed", caught_up)
    assert value(after, "zvsr_server_op_number") >= committed
    ok_before = value(before[primary], "zvsr_server_requests_total", outcome="ok")
    assert value(after, "zvsr_server_requests_total", outcome="ok") >= ok_before + 20
    assert value(after, "zvsr_server_commit_duration_seconds_count") >= 20
    assert value(after, "zvsr_disk_wal_fsync_duration_seconds_count") >= 1  # fsync = always by default
    for index in urls:
        if index != primary:  # the backups learn the commits from the primary's next Prepare or heartbeat
            scrape_until(urls[index], "the commits", caught_up)
    proxy = scrape_until(
        proxy_url, "20 results", lambda s: value(s, "zvsr_proxy_requests_total", outcome="ok") >= 20
    )
    assert value(proxy, "zvsr_proxy_request_duration_seconds_count") >= 20
    assert value(proxy, "zvsr_proxy_inflight") == 0

    cluster.kill(primary)  # kill -9: its metrics go with it
    assert scrape(urls[primary]) is None
    new_primary = cluster.wait_for_primary(other_than=primary, timeout_s=30)
    with Client(cluster.config.proxy, timeout_ms=10_000) as client:
        client.put("after", 1)

    def leads(samples: Samples) -> bool:
        newer = value(samples, "zvsr_server_view") > old_view
        after_failover = value(samples, "zvsr_server_commit_number") >= committed + 1  # the write "after"
        return newer and after_failover and value(samples, "zvsr_server_is_primary") == 1

    led = scrape_until(urls[new_primary], "primary of a newer view", leads)
    assert value(led, "zvsr_server_view_changes_total") > value(
        before[new_primary], "zvsr_server_view_changes_total"
    )
    assert value(led, "zvsr_server_status", status="normal") == 1
    assert value(led, "zvsr_peer_last_heard_seconds", peer=str(primary)) > 0  # the dead one's age only grows
    proxy = scrape_until(
        proxy_url,
        "the write after the failover",
        lambda s: value(s, "zvsr_proxy_requests_total", outcome="ok") >= 21,
    )

    # `zvsr status` shows each replica's metrics URL; the killed one is unreachable.
    command = [sys.executable, "-m", "zvsr", "status", "--config", str(cluster.path)]
    report = json.loads(subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=30).stdout)
    for entry in report["replicas"]:
        assert entry.get("metrics") == (None if entry["replica"] == primary else urls[entry["replica"]])
    table = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
    assert all(urls[index] in table for index in urls if index != primary), table


@pytest.mark.timeout(60)
def test_the_metrics_port_flag_beats_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    """A one-replica cluster whose file has no [metrics]: the node gets --metrics-port and ZVSR_METRICS_PORT (the
    flag wins), the proxy only ZVSR_METRICS_PORT."""
    config = loopback_config(1, data_dir=str(tmp_path / "data"))
    path = tmp_path / "cluster.toml"
    path.write_text(to_toml(config))
    flag, ignored, proxy_port = free_ports(3)
    environment = dict(os.environ, ZVSR_METRICS_PORT=str(ignored))
    base = [sys.executable, "-m", "zvsr"]
    arguments = {
        "node": [*base, "node", "--config", str(path), "--replica", "0", "--init", "--metrics-port", str(flag)],
        "proxy": [*base, "proxy", "--config", str(path)],
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, command in arguments.items():
            env = environment if name == "node" else dict(os.environ, ZVSR_METRICS_PORT=str(proxy_port))
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115  # closed by the child's exit
            processes.append(
                subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
        node = scrape_until(metrics_url("127.0.0.1", flag), "the node", published)
        assert value(node, "zvsr_server_is_primary") == 1  # a cluster of one: its own primary
        assert scrape(metrics_url("127.0.0.1", ignored)) is None
        proxy = scrape_until(
            metrics_url("127.0.0.1", proxy_port), "the proxy", lambda s: ("zvsr_proxy_inflight", ()) in s
        )
        assert value(proxy, "zvsr_proxy_inflight") == 0
    except BaseException:
        for log_path in sorted(tmp_path.glob("*.log")):
            print(f"--- {log_path.name}\n{log_path.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
