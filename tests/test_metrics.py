"""Prometheus metrics (zvsr.runtime.metrics): the collectors from hand-made samples, the histogram buckets, the
reactor-side counting, and real nodes and a proxy in this process scraped over HTTP.

The real-process scenario (kill -9 of the primary, scraped from outside) is in test_metrics_processes.py.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest
import zmq
from local_cluster import TIMEOUTS, LocalCluster, operation
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from zmq_fakes import echo_result, fake_replicas, running_proxy

from zvsr.protocol.messages import ERROR_BUSY, ClientReply, Error, Redirect, Reply, Request
from zvsr.runtime.cluster_config import ClusterConfig
from zvsr.runtime.data_dir import MARKER_NAME
from zvsr.runtime.metrics import (
    LATENCY_BUCKETS,
    NODE_OUTCOMES,
    PROXY_OUTCOMES,
    Buckets,
    MetricsStartError,
    NodeCollector,
    NodeMetrics,
    NodeSample,
    ProxyCollector,
    ProxySample,
    metrics_url,
)
from zvsr.runtime.node import NodeStartError, ReplicaNode
from zvsr.runtime.processes import loopback_config, wait_for
from zvsr.runtime.proxy import Proxy, ProxyStartError
from zvsr.runtime.status import collect_status, format_status
from zvsr.wire.codec import decode_client_reply, encode

pytestmark = pytest.mark.timeout(60)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a /metrics text, by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.status == 200
        text: str = answer.read().decode()
        return text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def collected(collector: NodeCollector | ProxyCollector) -> Samples:
    registry = CollectorRegistry()
    registry.register(collector)
    return parse(generate_latest(registry).decode())


def node_sample(**changes: object) -> NodeSample:
    fields: dict[str, object] = {
        "status": "normal",
        "view": 4,
        "primary": True,
        "op_number": 120,
        "commit_number": 117,
        "cluster_time_ns": 2_500_000_000,
        "view_changes": 3,
        "client_sessions": 7,
        "snapshot_op": 100,
        "snapshot_bytes": 4096,
        "snapshots_taken": 1,
        "last_heard": {1: 50.0},
        "outcomes": dict.fromkeys(NODE_OUTCOMES, 0) | {"ok": 90, "busy": 2},
        "bad_frames": {("peer", "not_msgpack"): 5, ("client", "too_few_frames"): 1},
        "commit_durations": ((0,) * 6 + (3, 1) + (0,) * 9, 0.031),
    }
    fields.update(changes)
    return NodeSample(**fields)  # type: ignore[arg-type]


# --- the histogram buckets ------------------------------------------------------------------------------------


def test_buckets_count_each_value_in_the_first_bucket_whose_bound_it_does_not_exceed() -> None:
    buckets = Buckets((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.002, 0.01, 0.5):
        buckets.observe(seconds)
    counts, total = buckets.snapshot()
    assert counts == (2, 2, 1)  # le 0.001 holds 0.001 itself (Prometheus buckets are "less or equal")
    assert total == pytest.approx(0.5135)
    buckets.observe(0.0001)
    assert counts == (2, 2, 1)  # a snapshot is a copy: the reactor goes on counting


def test_the_collector_turns_a_buckets_snapshot_into_a_cumulative_histogram() -> None:
    sample = node_sample()
    samples = collected(NodeCollector(lambda: sample, peers=(1, 2), wal_path=Path("/none"), started=0.0))
    name = "zvsr_server_commit_duration_seconds"
    assert value(samples, f"{name}_bucket", le="0.005") == 0
    assert value(samples, f"{name}_bucket", le="0.01") == 3
    assert value(samples, f"{name}_bucket", le="0.02") == 4
    assert value(samples, f"{name}_bucket", le="10.0") == 4
    assert value(samples, f"{name}_bucket", le="+Inf") == 4
    assert value(samples, f"{name}_count") == 4 and value(samples, f"{name}_sum") == pytest.approx(0.031)
    assert len(LATENCY_BUCKETS) == 16 and list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


# --- the node's collector ---------------------------------------------------------------------------------------


def test_the_node_collector_exports_every_metric_of_a_published_sample(tmp_path: Path) -> None:
    wal = tmp_path / "wal.log"
    wal.write_bytes(b"x" * 321)
    sample = node_sample()
    collector = NodeCollector(lambda: sample, peers=(1, 2), wal_path=wal, started=time.monotonic() - 30)
    samples = collected(collector)
    assert value(samples, "zvsr_server_is_primary") == 1
    assert value(samples, "zvsr_server_view") == 4
    assert value(samples, "zvsr_server_status", status="normal") == 1
    assert value(samples, "zvsr_server_status", status="view_change") == 0
    assert value(samples, "zvsr_server_status", status="recovering") == 0
    assert value(samples, "zvsr_server_view_changes_total") == 3
    assert value(samples, "zvsr_server_op_number") == 120
    assert value(samples, "zvsr_server_commit_number") == 117
    assert value(samples, "zvsr_server_proposals_pending") == 3
    assert value(samples, "zvsr_server_requests_total", outcome="ok") == 90
    assert value(samples, "zvsr_server_requests_total", outcome="busy") == 2
    assert value(samples, "zvsr_server_requests_total", outcome="redirect") == 0  # every outcome, from the start
    assert not any(name == "zvsr_server_requests_total" and ("op", "put") in labels for name, labels in samples)
    assert value(samples, "zvsr_disk_wal_bytes") == 321
    assert value(samples, "zvsr_snapshot_op") == 100
    assert value(samples, "zvsr_snapshot_bytes") == 4096
    assert value(samples, "zvsr_snapshots_taken_total") == 1
    assert value(samples, "zvsr_client_sessions") == 7
    assert value(samples, "zvsr_bad_frames_total", socket="peer", reason="not_msgpack") == 5
    assert value(samples, "zvsr_bad_frames_total", socket="client", reason="too_few_frames") == 1
    assert value(samples, "zvsr_server_cluster_time_seconds") == 2.5
    # Ages are computed at scrape time: peer 1 was heard at monotonic 50.0 (long ago), peer 2 never (since start).
    assert value(samples, "zvsr_peer_last_heard_seconds", peer="1") == pytest.approx(time.monotonic() - 50, abs=5)
    assert value(samples, "zvsr_peer_last_heard_seconds", peer="2") == pytest.approx(30, abs=5)


def test_a_backup_has_no_proposals_pending_and_its_status_is_one_hot() -> None:
    sample = node_sample(primary=False, status="view_change")
    samples = collected(NodeCollector(lambda: sample, peers=(0,), wal_path=Path("/none"), started=0.0))
    assert value(samples, "zvsr_server_is_primary") == 0
    assert value(samples, "zvsr_server_proposals_pending") == 0
    assert [value(samples, "zvsr_server_status", status=s) for s in ("normal", "view_change", "recovering")] == [
        0,
        1,
        0,
    ]
    assert ("zvsr_disk_wal_bytes", ()) not in samples  # no wal.log (yet): no sample rather than a wrong one


def test_the_collectors_read_only_the_latest_sample_and_export_nothing_before_the_first() -> None:
    published: list[NodeSample | None] = [None]
    collector = NodeCollector(lambda: published[-1], peers=(1,), wal_path=Path("/none"), started=0.0)
    assert not any(name.startswith("zvsr_server") for name, _ in collected(collector))
    published.append(node_sample(view=9))
    assert value(collected(collector), "zvsr_server_view") == 9
    published.append(node_sample(view=10))
    assert value(collected(collector), "zvsr_server_view") == 10


# --- the node's reactor-side counting ----------------------------------------------------------------------------


@pytest.fixture
def node_metrics(tmp_path: Path) -> Iterator[NodeMetrics]:
    metrics = NodeMetrics(host="127.0.0.1", port=0, peers=(1, 2), wal_path=tmp_path / "wal.log", started=0.0)
    try:
        yield metrics
    finally:
        metrics.close()


def test_answers_are_counted_by_outcome_and_replies_timed_from_their_arrival(node_metrics: NodeMetrics) -> None:
    node_metrics.arrivals.update({1: (5, 10.0), 2: (1, 10.0), 3: (7, 10.0)})
    node_metrics.answered(
        [
            Reply(view=0, client_id=1, request_number=5, result=b""),  # timed: 0.003 s
            Reply(view=0, client_id=3, request_number=6, result=b""),  # an older number's answer: not timed
            Redirect(view=0, primary=1, client_id=2, request_number=1),
            Error(view=0, client_id=4, request_number=1, code=ERROR_BUSY, message="full"),
        ],
        10.003,
    )
    assert node_metrics.outcomes["ok"] == 2 and node_metrics.outcomes["redirect"] == 1
    assert node_metrics.outcomes[ERROR_BUSY] == 1
    counts, total = node_metrics.commit_seconds.snapshot()
    assert sum(counts) == 1 and total == pytest.approx(0.003)
    assert node_metrics.arrivals == {3: (7, 10.0)}  # answered ones are forgotten; the newer request waits


def test_the_exporter_serves_the_registry_over_http_and_releases_its_port(tmp_path: Path) -> None:
    metrics = NodeMetrics(host="127.0.0.1", port=0, peers=(1,), wal_path=tmp_path / "wal.log", started=0.0)
    try:
        assert metrics.url.startswith("http://127.0.0.1:") and metrics.url.endswith("/metrics")
        metrics.fsync_seconds.observe(0.0004)
        metrics.publish(node_sample(view=2))
        samples = parse(scrape_text(metrics.url))
        assert value(samples, "zvsr_server_view") == 2
        assert value(samples, "zvsr_disk_wal_fsync_duration_seconds_bucket", le="0.0005") == 1
        assert value(samples, "zvsr_disk_wal_fsync_duration_seconds_count") == 1
        assert ("process_resident_memory_bytes", ()) in samples  # the process collector, on our registry
        port = int(metrics.url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(MetricsStartError, match="cannot serve metrics on http://127.0.0.1:"):
            NodeMetrics(host="127.0.0.1", port=port, peers=(1,), wal_path=tmp_path / "wal.log", started=0.0)
    finally:
        metrics.close()
    again = NodeMetrics(host="127.0.0.1", port=port, peers=(1,), wal_path=tmp_path / "wal.log", started=0.0)
    again.close()


def test_metrics_urls_bracket_ipv6_hosts() -> None:
    assert metrics_url("127.0.0.1", 9100) == "http://127.0.0.1:9100/metrics"
    assert metrics_url("::1", 9100) == "http://[::1]:9100/metrics"


# --- the proxy's collector ---------------------------------------------------------------------------------------


def test_the_proxy_collector_exports_outcomes_inflight_retries_and_durations() -> None:
    sample = ProxySample(
        outcomes=dict.fromkeys(PROXY_OUTCOMES, 0) | {"ok": 40, "timeout": 1},
        inflight=6,
        retries=3,
        request_durations=((0,) * 5 + (40,) + (0,) * 10 + (1,), 15.2),
    )
    samples = collected(ProxyCollector(lambda: sample))
    assert value(samples, "zvsr_proxy_requests_total", outcome="ok") == 40
    assert value(samples, "zvsr_proxy_requests_total", outcome="timeout") == 1
    assert value(samples, "zvsr_proxy_requests_total", outcome="unavailable") == 0
    assert value(samples, "zvsr_proxy_inflight") == 6
    assert value(samples, "zvsr_proxy_retries_total") == 3
    assert value(samples, "zvsr_proxy_request_duration_seconds_bucket", le="0.005") == 40
    assert value(samples, "zvsr_proxy_request_duration_seconds_bucket", le="10.0") == 40
    assert value(samples, "zvsr_proxy_request_duration_seconds_count") == 41  # one beyond every bound
    assert value(samples, "zvsr_proxy_request_duration_seconds_sum") == pytest.approx(15.2)


# --- real nodes in this process, scraped over HTTP --------------------------------------------------------------


def metrics_config(data_dir: Path | None = None) -> ClusterConfig:
    data = None if data_dir is None else str(data_dir)
    # (raw Requests of fixed client ids, as tests/local_cluster.py's: sessions open implicitly)
    return loopback_config(3, metrics=True, data_dir=data, timeouts=dict(TIMEOUTS), require_registration=False)


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    local = LocalCluster(metrics_config())
    try:
        yield local.start()
    finally:
        local.close()


def scrape(cluster: LocalCluster, index: int) -> Samples:
    url = cluster.status(index)["metrics"]
    assert url == metrics_url("127.0.0.1", cluster.config.metrics_ports[index])
    return parse(scrape_text(url))


def scrape_until(cluster: LocalCluster, index: int, what: str, check: Callable[[Samples], bool]) -> Samples:
    """Scrape replica `index` until `check` holds: samples are published once per tick, so they trail a bit."""

    def met() -> Samples | None:
        samples = scrape(cluster, index)
        return samples if check(samples) else None

    return wait_for(met, what=f"r{index}'s metrics: {what}")


def test_a_node_serves_its_metrics_and_they_move_as_ops_commit(cluster: LocalCluster) -> None:
    before = scrape(cluster, 0)
    assert value(before, "zvsr_server_is_primary") == 1 and value(before, "zvsr_server_view") == 0
    for number in range(1, 6):
        request = Request(client_id=11, request_number=number, operation=operation("put", "k", value=number))
        assert isinstance(cluster.call(0, request), Reply)
    redirect = cluster.call(1, Request(client_id=12, request_number=1, operation=operation("get", "k")))
    assert isinstance(redirect, Redirect)
    after = scrape_until(cluster, 0, "5 ops committed", lambda s: value(s, "zvsr_server_commit_number") >= 5)
    assert value(after, "zvsr_server_op_number") >= 5
    assert value(after, "zvsr_server_requests_total", outcome="ok") >= 5
    assert value(after, "zvsr_server_commit_duration_seconds_count") >= 5
    assert value(after, "zvsr_disk_wal_fsync_duration_seconds_count") >= 1
    assert value(after, "zvsr_client_sessions") >= 1
    assert value(after, "zvsr_disk_wal_bytes") > 0
    assert value(after, "zvsr_server_cluster_time_seconds") > 0
    assert value(after, "zvsr_peer_last_heard_seconds", peer="1") < 5
    backup = scrape_until(
        cluster, 1, "a redirect", lambda s: value(s, "zvsr_server_requests_total", outcome="redirect") >= 1
    )
    assert value(backup, "zvsr_server_is_primary") == 0 and value(backup, "zvsr_server_proposals_pending") == 0
    assert value(backup, "zvsr_server_requests_total", outcome="ok") == 0
    assert value(backup, "zvsr_server_commit_duration_seconds_count") == 0  # timed on the primary only


def test_bad_frames_are_counted_by_socket_and_reason(cluster: LocalCluster) -> None:
    stranger = cluster.socket(zmq.DEALER, cluster.config.replicas[2].peer, ROUTING_ID=b"x9")
    stranger.send(encode(Request(client_id=1, request_number=1, operation=b"")))
    client = cluster.client(2)
    client.send_multipart([b"", msgpack.packb({"type": 20}, use_bin_type=True)])
    assert client.poll(5000)  # answered bad_request

    def both(samples: Samples) -> bool:
        peer = samples.get(("zvsr_bad_frames_total", (("reason", "unknown_identity"), ("socket", "peer"))), 0)
        client = samples.get(("zvsr_bad_frames_total", (("reason", "missing_field"), ("socket", "client"))), 0)
        return peer >= 1 and client >= 1

    samples = scrape_until(cluster, 2, "both bad frames", both)
    assert value(samples, "zvsr_server_requests_total", outcome="bad_request") >= 1


def test_zvsr_status_shows_each_replicas_watch_endpoint_and_metrics_url(cluster: LocalCluster) -> None:
    """Each replica reports its own watch endpoint and metrics URL; the table shows both, `-` for none."""
    report = collect_status(cluster.config)
    urls = [entry["metrics"] for entry in report["replicas"]]
    assert urls == [metrics_url("127.0.0.1", port) for port in cluster.config.metrics_ports]
    watches = [entry["endpoints"]["watch"] for entry in report["replicas"]]
    assert watches == [address.watch for address in cluster.config.replicas] and None not in watches
    table = format_status(report)
    assert table.splitlines()[0].split()[10:12] == ["watch", "metrics"]
    shown = [line.split()[10:12] for line in table.splitlines()[1 : 1 + len(watches)]]
    assert shown == [list(pair) for pair in zip(watches, urls, strict=True)]
    # A replica without metrics or a watch stream (or too old to say).
    entry = dict(report["replicas"][0], metrics=None, endpoints={"client": "tcp://127.0.0.1:1"})
    assert format_status({"replicas": [entry]}).splitlines()[1].split()[10:12] == ["-", "-"]


@pytest.mark.timeout(20)
def test_a_metrics_port_in_use_fails_the_start_and_writes_no_marker(tmp_path: Path) -> None:
    config = metrics_config(tmp_path)
    squatter = NodeMetrics(
        host="127.0.0.1", port=config.metrics_ports[0], peers=(), wal_path=tmp_path / "none", started=0.0
    )
    try:
        with pytest.raises(NodeStartError, match="replica 0: cannot serve metrics on http://127.0.0.1:"):
            ReplicaNode(config, 0, init=True)
        assert not (tmp_path / "replica-0" / MARKER_NAME).exists()  # it never ran: the next start is a first
    finally:
        squatter.close()
    with ReplicaNode(config, 0, init=True) as node:
        assert node.status()["start"] == "first_start" and node.status()["metrics"] is not None
    with ReplicaNode(loopback_config(3), 0) as node:
        assert node.status()["metrics"] is None  # off unless configured


# --- a proxy in this process, scraped over HTTP ----------------------------------------------------------------


def test_the_proxy_counts_outcomes_retries_and_request_durations() -> None:
    """The primary loses the request's first copy; the proxy's retry is answered. Then a busy refusal (a legacy
    client's second operation while its first is in flight) and a bad request."""
    config = loopback_config(3, metrics=True, tick_ms=5, request_timeout_ms=3000)
    first_copy_seen = threading.Event()
    release = threading.Event()

    def flaky_primary(request: Request) -> list[ClientReply | bytes]:
        if not first_copy_seen.is_set():
            first_copy_seen.set()
            return []
        return echo_result()(request) if release.is_set() or request.client_id == 21 else []

    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with fake_replicas(config, context, flaky_primary), running_proxy(config, context) as proxy:
            url = proxy.status()["metrics"]
            assert url == metrics_url("127.0.0.1", config.proxy_metrics_port or 0)
            with dealer(context, proxy.endpoint) as client:
                client.send(encode(Request(client_id=21, request_number=1, operation=b"\xc0")))
                assert client.poll(5000) and isinstance(decode_client_reply(client.recv()), Reply)
                client.send(b"\xc1")  # not msgpack
                assert client.poll(5000)
                client.recv()
            with dealer(context, proxy.endpoint) as legacy:
                legacy.send(msgpack.packb({"op": "get", "key": "a"}))
                legacy.send(msgpack.packb({"op": "get", "key": "b"}))
                assert legacy.poll(5000) and msgpack.unpackb(legacy.recv(), raw=False)["error"] == ERROR_BUSY

                def in_flight(samples: Samples) -> bool:
                    return value(samples, "zvsr_proxy_inflight") == 1

                scrape_url_until(url, "one request in flight", in_flight)
                release.set()
                assert legacy.poll(5000)
                legacy.recv()

            def done(samples: Samples) -> bool:
                return value(samples, "zvsr_proxy_requests_total", outcome="ok") == 2

            samples = scrape_url_until(url, "two results", done)
        assert value(samples, "zvsr_proxy_requests_total", outcome="busy") == 1
        assert value(samples, "zvsr_proxy_requests_total", outcome="bad_request") == 1
        assert value(samples, "zvsr_proxy_requests_total", outcome="timeout") == 0
        assert value(samples, "zvsr_proxy_inflight") == 0
        assert value(samples, "zvsr_proxy_retries_total") >= 1  # the lost first copy was sent again
        assert value(samples, "zvsr_proxy_request_duration_seconds_count") == 2
        assert value(samples, "zvsr_proxy_request_duration_seconds_sum") > 0
    finally:
        context.term()


def test_a_proxy_metrics_port_in_use_fails_the_start_and_releases_its_endpoint() -> None:
    config = loopback_config(3, metrics=True)
    squatter = NodeMetrics(
        host="127.0.0.1", port=config.proxy_metrics_port or 0, peers=(), wal_path=Path("/none"), started=0.0
    )
    try:
        with pytest.raises(ProxyStartError, match="cannot serve metrics on http://127.0.0.1:"):
            Proxy(config)
    finally:
        squatter.close()
    with Proxy(config) as proxy:  # the endpoint was released with everything else
        assert proxy.status()["metrics"] is not None


@contextmanager
def dealer(context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> Iterator[zmq.Socket[bytes]]:
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint)
    try:
        yield socket
    finally:
        socket.close(linger=0)


def scrape_url_until(url: str, what: str, check: Callable[[Samples], bool]) -> Samples:
    def met() -> Samples | None:
        samples = parse(scrape_text(url))
        return samples if check(samples) else None

    return wait_for(met, what=f"{url}: {what}")
