"""Prometheus metrics of a replica node and of a proxy: what they publish, and the exporter that serves it.

Theory of operation
-------------------
Each node and each proxy that has a metrics port (`ClusterConfig.replica_metrics` / `proxy_metrics`) serves
``/metrics`` with prometheus_client's `start_http_server`, on a `CollectorRegistry` of its own — never the
library's global one, so several nodes can run in one process (the socket tests do) — in the exporter's own
threads. The names follow etcd's (``etcd_server_is_leader`` → ``zvsr_server_is_primary``, …) so dashboards
carry over; docs/operations.md ("Metrics") lists every metric.

The reactor thread must stay cheap and the scrape must never call into the core from another thread, so:

- Once per tick (`config.tick_ms`, 10 ms by default), the reactor *publishes* a sample: a new `NodeSample` /
  `ProxySample` built from plain ints and fresh dict copies, stored with one attribute assignment. A sample is
  never changed after it is published.
- A scrape runs `NodeCollector` / `ProxyCollector` in the exporter's thread: it reads the latest sample (one
  attribute read) and builds the metric families from it. What a scrape shows is therefore at most one tick
  old; ages (`zvsr_peer_last_heard_seconds`) are computed at scrape time from the published instants.
- Per-request latencies (the primary's arrival-to-reply, the proxy's request duration) go into `Buckets`: one
  `bisect` and two additions per observation (~0.15 µs, against ~0.8 µs for prometheus_client's
  `Histogram.observe` with its locks, measured), copied into the sample once per tick. The WAL fsync
  histogram, one observation per reactor step that syncs, is a plain prometheus_client `Histogram`: its lock
  makes it safe, and at that rate its cost does not matter.

Nothing here decodes an operation: the node sees opaque bytes, so ``zvsr_server_requests_total`` has an
``outcome`` label and no ``op`` label.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from zvsr.protocol.messages import (
    ERROR_BAD_REQUEST,
    ERROR_BUSY,
    ERROR_SESSION_EXPIRED,
    ERROR_TIMEOUT,
    ERROR_UNAVAILABLE,
    ERROR_VIEW_CHANGE,
    ClientReply,
    Error,
    Redirect,
    Reply,
)
from zvsr.protocol.replica_state import Status

# Seconds, 1-2-5 steps from 0.1 ms (an fdatasync on a fast disk) to 10 s (beyond any request deadline).
LATENCY_BUCKETS: Final = (
    0.0001,
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)
OUTCOME_OK: Final = "ok"
OUTCOME_REDIRECT: Final = "redirect"
OUTCOME_DUPLICATE: Final = "duplicate"
# What a replica did with a request: answered with a result, redirected it to the primary, refused it with an
# error code, or dropped it as a duplicate of one in progress (the client's retry; the first one is answered).
NODE_OUTCOMES: Final = (
    OUTCOME_OK,
    OUTCOME_REDIRECT,
    ERROR_UNAVAILABLE,
    ERROR_VIEW_CHANGE,
    ERROR_BUSY,
    ERROR_BAD_REQUEST,
    ERROR_SESSION_EXPIRED,
    OUTCOME_DUPLICATE,
)
# What the proxy answered a client: a result, or one of its error codes (zvsr.runtime.proxy's docstring).
PROXY_OUTCOMES: Final = (
    OUTCOME_OK,
    ERROR_TIMEOUT,
    ERROR_UNAVAILABLE,
    ERROR_BUSY,
    ERROR_BAD_REQUEST,
    ERROR_SESSION_EXPIRED,
)
# The core's counters that mean "a request dropped as a duplicate" (zvsr.protocol.client_table.Admission).
_DUPLICATE_COUNTERS: Final = ("on_request: older request number", "on_request: already in progress")
_EXPORTER_JOIN_S: Final = 5.0

HistogramSnapshot = tuple[tuple[int, ...], float]  # (count per bucket, the last one above every bound; sum)


class MetricsStartError(Exception):
    """The metrics listener cannot be bound; the message names the address and why."""


def metrics_url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"


class Buckets:
    """A histogram for the reactor thread only (not thread-safe): `observe` is one bisect and two additions.
    Other threads see it through `snapshot`, taken by the reactor into a published sample."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # counts[i]: bounds[i-1] < value <= bounds[i]; last: above all
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def snapshot(self) -> HistogramSnapshot:
        return tuple(self.counts), self.total


def histogram_family(
    name: str, documentation: str, bounds: Sequence[float], snapshot: HistogramSnapshot
) -> Metric:
    """A Prometheus histogram (cumulative ``le`` buckets, ``+Inf``, sum, count) from a `Buckets` snapshot."""
    counts, total = snapshot
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


class Exporter:
    """prometheus_client's HTTP server for one registry, on (host, port); `close` releases the port."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        try:
            self._server: WSGIServer
            self._thread: threading.Thread
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as error:
            raise MetricsStartError(f"cannot serve metrics on {metrics_url(host, port)}: {error}") from error
        self.url = metrics_url(host, self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()  # returns once serve_forever has (it polls every 0.5 s)
        self._server.server_close()
        self._thread.join(_EXPORTER_JOIN_S)


# --- the replica node ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSample:
    """What a node's reactor publishes once per tick; never changed after."""

    status: str
    view: int
    primary: bool
    op_number: int
    commit_number: int
    cluster_time_ns: int
    view_changes: int
    client_sessions: int
    snapshot_op: int
    snapshot_bytes: int
    snapshots_taken: int
    last_heard: Mapping[int, float]  # peer -> time.monotonic() when last heard; absent: never
    outcomes: Mapping[str, int]
    bad_frames: Mapping[tuple[str, str], int]  # (socket, reason) -> frames dropped
    commit_durations: HistogramSnapshot
    peers: tuple[int, ...] | None = None  # the configuration's peers now (reconfiguration); None: those at start


class NodeMetrics:
    """One replica's metrics: its registry and exporter, the reactor's counting state, the latest sample.

    The reactor thread fills `arrivals` as requests come in and calls `answered` and `publish`; the exporter's
    threads only read `sample` (through `NodeCollector`) and the fsync histogram."""

    def __init__(self, *, host: str, port: int, peers: Sequence[int], wal_path: Path, started: float) -> None:
        self.registry = CollectorRegistry()
        self.fsync_seconds = Histogram(
            "zvsr_disk_wal_fsync_duration_seconds",
            "Write and fdatasync of one reactor step's log records (group commit), with fsync = always.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Buckets()
        self.outcomes: dict[str, int] = dict.fromkeys(NODE_OUTCOMES, 0)
        # client_id -> (request_number, arrival) of its latest request, until it is answered.
        self.arrivals: dict[int, tuple[int, float]] = {}
        self.sample: NodeSample | None = None
        self.registry.register(NodeCollector(lambda: self.sample, peers=peers, wal_path=wal_path, started=started))
        ProcessCollector(registry=self.registry)
        self._exporter = Exporter(self.registry, host, port)  # last: from here on it is scraped
        self.url = self._exporter.url

    def answered(self, answers: Sequence[ClientReply], now: float) -> None:
        """Count what each answer says, and observe arrival-to-reply for each Reply (only a primary replies).
        Written for the reactor's hot path: one pass, the bucket increments inlined, totals added once."""
        arrivals = self.arrivals
        pop = arrivals.pop
        histogram = self.commit_seconds
        bounds, counts = histogram.bounds, histogram.counts
        replies = 0
        total = 0.0
        for answer in answers:
            if type(answer) is Reply:
                replies += 1
                arrival = pop(answer.client_id, None)
                if arrival is not None:
                    if arrival[0] == answer.request_number:
                        elapsed = now - arrival[1]
                        counts[bisect_left(bounds, elapsed)] += 1
                        total += elapsed
                    else:
                        arrivals[answer.client_id] = arrival  # the answer to an older request: the newer waits
            else:
                self._refused(answer)
        self.outcomes[OUTCOME_OK] += replies
        histogram.total += total

    def _refused(self, answer: ClientReply) -> None:  # a Redirect or an Error
        arrival = self.arrivals.get(answer.client_id)
        if arrival is not None and arrival[0] == answer.request_number:
            del self.arrivals[answer.client_id]
        outcome = OUTCOME_REDIRECT if type(answer) is Redirect else cast(Error, answer).code
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def publish(self, sample: NodeSample) -> None:
        self.sample = sample

    def close(self) -> None:
        self._exporter.close()


class NodeCollector:
    """Builds a node's metric families from its latest published sample, in the exporter's thread."""

    def __init__(
        self, latest: Callable[[], NodeSample | None], *, peers: Sequence[int], wal_path: Path, started: float
    ) -> None:
        self._latest = latest  # the latest published sample (one attribute read)
        self._peers = tuple(peers)
        self._wal_path = wal_path
        self._started = started

    def collect(self) -> Iterable[Metric]:
        sample = self._latest()
        if sample is None:
            return []
        now = time.monotonic()
        families: list[Metric] = [
            GaugeMetricFamily(
                "zvsr_server_is_primary", "1 if this replica is the primary of its view, else 0.", sample.primary
            ),
            GaugeMetricFamily("zvsr_server_view", "The replica's view number.", sample.view),
        ]
        status = GaugeMetricFamily(
            "zvsr_server_status",
            "1 for the replica's status (normal, view_change, recovering), 0 for the others.",
            labels=["status"],
        )
        for value in Status:
            status.add_metric([value.value], 1 if value.value == sample.status else 0)
        families.append(status)
        families.append(
            CounterMetricFamily(
                "zvsr_server_view_changes_total",
                "Times this replica's view number went up since it started (view changes; recovery adopting one).",
                sample.view_changes,
            )
        )
        families.append(GaugeMetricFamily("zvsr_server_op_number", "The replica's op_number.", sample.op_number))
        families.append(
            GaugeMetricFamily("zvsr_server_commit_number", "The replica's commit_number.", sample.commit_number)
        )
        pending = sample.op_number - sample.commit_number if sample.primary else 0
        families.append(
            GaugeMetricFamily(
                "zvsr_server_proposals_pending",
                "On the primary, ops in the log not yet committed (op_number - commit_number); 0 on a backup.",
                pending,
            )
        )
        requests = CounterMetricFamily(
            "zvsr_server_requests_total",
            "Client requests by what the replica did with them (ok, redirect, an error code, duplicate).",
            labels=["outcome"],
        )
        for outcome, count in sample.outcomes.items():
            requests.add_metric([outcome], count)
        families.append(requests)
        families.append(
            histogram_family(
                "zvsr_server_commit_duration_seconds",
                "On the primary: from a request's arrival to its reply being sent.",
                LATENCY_BUCKETS,
                sample.commit_durations,
            )
        )
        try:
            wal_bytes = os.stat(self._wal_path).st_size
        except OSError:
            pass  # not created yet, or the temporary data dir is gone: no sample
        else:
            families.append(GaugeMetricFamily("zvsr_disk_wal_bytes", "Size of wal.log in bytes.", wal_bytes))
        families.append(
            GaugeMetricFamily(
                "zvsr_snapshot_op", "The op the latest snapshot covers (0: none).", sample.snapshot_op
            )
        )
        families.append(
            GaugeMetricFamily(
                "zvsr_snapshot_bytes",
                "Size of the snapshot the log names, in bytes (0: none).",
                sample.snapshot_bytes,
            )
        )
        families.append(
            CounterMetricFamily(
                "zvsr_snapshots_taken_total", "Snapshots this replica took of its app.", sample.snapshots_taken
            )
        )
        families.append(
            GaugeMetricFamily(
                "zvsr_client_sessions", "Client sessions in the replica's client table.", sample.client_sessions
            )
        )
        bad = CounterMetricFamily(
            "zvsr_bad_frames_total",
            "Inbound messages dropped as malformed or from the wrong sender, by socket and reason.",
            labels=["socket", "reason"],
        )
        for (socket, reason), count in sorted(sample.bad_frames.items()):
            bad.add_metric([socket, reason], count)
        families.append(bad)
        heard = GaugeMetricFamily(
            "zvsr_peer_last_heard_seconds",
            "Seconds since a valid message from the peer (since this replica started, if never).",
            labels=["peer"],
        )
        for peer in self._peers if sample.peers is None else sample.peers:
            heard.add_metric([str(peer)], max(0.0, now - sample.last_heard.get(peer, self._started)))
        families.append(heard)
        families.append(
            GaugeMetricFamily(
                "zvsr_server_cluster_time_seconds",
                "The replica's cluster clock (the stamp a primary would give an op now), in seconds.",
                sample.cluster_time_ns / 1e9,
            )
        )
        return families


def node_sample_counters(counters: Mapping[str, int]) -> tuple[int, int]:
    """(snapshots taken, requests dropped as duplicates) from the core's counters."""
    return counters.get("snapshot taken", 0), sum(counters.get(name, 0) for name in _DUPLICATE_COUNTERS)


# --- the proxy -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxySample:
    """What a proxy's reactor publishes once per tick; never changed after."""

    outcomes: Mapping[str, int]
    inflight: int
    retries: int
    request_durations: HistogramSnapshot


class ProxyMetrics:
    """A proxy's metrics: its registry and exporter, the reactor's histogram, the latest sample."""

    def __init__(self, *, host: str, port: int) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Buckets()
        self.sample: ProxySample | None = None
        self.registry.register(ProxyCollector(lambda: self.sample))
        ProcessCollector(registry=self.registry)
        self._exporter = Exporter(self.registry, host, port)
        self.url = self._exporter.url

    def publish(self, sample: ProxySample) -> None:
        self.sample = sample

    def close(self) -> None:
        self._exporter.close()


class ProxyCollector:
    """Builds a proxy's metric families from its latest published sample, in the exporter's thread."""

    def __init__(self, latest: Callable[[], ProxySample | None]) -> None:
        self._latest = latest

    def collect(self) -> Iterable[Metric]:
        sample = self._latest()
        if sample is None:
            return []
        requests = CounterMetricFamily(
            "zvsr_proxy_requests_total",
            "Client requests answered by the proxy, by outcome (ok or the error code the client got).",
            labels=["outcome"],
        )
        for outcome, count in sample.outcomes.items():
            requests.add_metric([outcome], count)
        return [
            requests,
            GaugeMetricFamily(
                "zvsr_proxy_inflight", "Requests relayed to the replicas, not yet answered.", sample.inflight
            ),
            CounterMetricFamily(
                "zvsr_proxy_retries_total",
                "Sends of a request to a replica after its first (timeouts, redirects, view changes); counted "
                "when the request is answered.",
                sample.retries,
            ),
            histogram_family(
                "zvsr_proxy_request_duration_seconds",
                "From a relayed request's arrival at the proxy to its answer.",
                LATENCY_BUCKETS,
                sample.request_durations,
            ),
        ]
