"""The bench run: phases, figures, ratios to baselines, the JSON report and the table.

Phases, in order (each figure is the median of `runs` repetitions; zvsr and its raw baselines are measured
round-robin within each repetition, so slow drift of a shared machine hits both sides of a ratio alike):

1. a 3-replica cluster (default timeouts, ``--fsync never``) and a proxy, a raw echo server and a Python
   forwarder in front of it (`zvsr.bench.raw`); per repetition: strict latency through the proxy (one session,
   one request at a time), the same through the forwarder, a raw one-hop round trip to the echo server, strict
   latency with the Python client library (`zvsr.client.Client`), pipelined throughput through the proxy and
   through the forwarder (C load-generator processes × W sessions in flight, `zvsr.bench.loadgen`), and both
   again with batching clients (each wake-up's requests in one RequestBatch);
2. steady load on a fresh cluster (``--fsync never``): the pipelined load for `steady_s` with no faults;
   view changes = how far the highest view any replica reports (`zvsr status --json`,
   `zvsr.runtime.status.collect_status`) moved, from before the load to the highest seen in the samples taken
   every second while it ran and after it;
3. PySyncObj (when installed and not `--quick`, or asked for): a 3-node cluster (`zvsr.bench.syncobj_node`),
   C×W writes in flight with callbacks (async) and C×W threads calling with ``sync=True`` (sync), run inside
   the leader's process;
4. a fresh cluster with ``--fsync always``: pipelined throughput, and the fdatasync-per-100-byte-append rate
   of the same disk (`zvsr.bench.disk`), round-robin;
5. the curves (`zvsr.bench.curves`, fresh ``--fsync never`` clusters): throughput and p99 against client count
   (1, 4, 16, 64 strict clients) and value size (16 B, 1 KiB, 16 KiB, pipelined), and a 5-replica cluster
   (strict latency, pipelined throughput) beside phase 1's 3 — and any further phase of its own module
   (`_extra_phases`): the read mix per read mode (`zvsr.bench.read_mix`: the pipelined load with 90% gets);
6. failover: `failover_runs` fresh clusters (default timeouts, default ``--fsync always``), kill -9 of the
   primary under a one-client write load (`zvsr.bench.failover`).

With `metrics` (``--metrics``) the clusters of phases 1, 2 and 4 serve Prometheus /metrics and the driver
scrapes every endpoint once a second (`MetricsScraper`), so a run with and one without price the metrics.

Every child process is killed and every temporary directory removed when the run ends, however it ends.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, Final

import zmq

import zvsr
from zvsr.bench import disk, failover
from zvsr.bench.procs import ChildError, Children, read_line
from zvsr.bench.progress import Progress
from zvsr.bench.stats import finite, median, percentile
from zvsr.client import Client
from zvsr.constants import READ_MODE_DEFAULT
from zvsr.runtime.cluster_config import ClusterConfig
from zvsr.runtime.metrics import metrics_url
from zvsr.runtime.processes import ProcessCluster, free_ports
from zvsr.runtime.status import collect_status

SCHEMA: Final = "zvsr-bench/1"
READY_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    quick: bool = False
    runs: int = 3  # repetitions of each measured figure; the figure is their median
    clients: int = 2  # load-generator processes (C)
    window: int = 64  # sessions in flight per load generator (W)
    warmup_s: float = 1.0  # load before each measuring window, not counted
    duration_s: float = 4.0  # measuring window of a throughput figure
    strict_duration_s: float = 3.0  # measuring window of a latency figure
    steady_s: float = 60.0
    curve_s: float = 2.0  # measuring window of each point of the curves (zvsr.bench.curves)
    curves: bool = True  # run phase 5 (the curves)
    failover_runs: int = 5
    disk_s: float = 2.0
    pysyncobj: bool | None = None  # None: when installed, except with --quick
    data_dir: str | None = None  # where clusters keep their data (and the fdatasync probe runs)
    metrics: bool = False  # clusters serve /metrics, scraped once a second (phases 1, 2 and 4)
    keep: bool = False  # keep the work directory (logs, data)

    @classmethod
    def quick_defaults(cls) -> dict[str, Any]:
        return {
            "quick": True,
            "runs": 1,
            "warmup_s": 0.5,
            "duration_s": 1.0,
            "strict_duration_s": 1.0,
            "steady_s": 3.0,
            "curve_s": 0.5,
            "failover_runs": 1,
            "disk_s": 0.5,
        }


# --- the report ----------------------------------------------------------------------------------------------


@dataclass
class Report:
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: float, *, unit: str, system: str, what: str, **extra: Any) -> None:
        """Append one repetition's value to figure `name` (its value is the median of its runs)."""
        figure = self.figures.setdefault(
            name, {"value": math.nan, "unit": unit, "system": system, "what": what, "runs": []}
        )
        figure["runs"].append(value)
        figure["value"] = median(figure["runs"])
        for key, item in extra.items():
            figure.setdefault(key, []).append(item)

    def derive(self, name: str, parts: list[str], *, unit: str, system: str, what: str) -> None:
        """Figure `name`, repetition i = the sum of repetition i of each of `parts` (when all exist)."""
        if all(part in self.figures for part in parts):
            runs = [sum(values) for values in zip(*(self.figures[part]["runs"] for part in parts), strict=True)]
            self.figures[name] = {
                "value": median(runs),
                "unit": unit,
                "system": system,
                "what": what,
                "runs": runs,
                "sum_of": parts,
            }

    def ratio(self, name: str, numerator: str, denominator: str, target: tuple[str, float] | None) -> None:
        if numerator not in self.figures or denominator not in self.figures:
            missing = [f for f in (numerator, denominator) if f not in self.figures]
            self.skipped[f"ratio:{name}"] = f"no figure {', '.join(missing)}"
            return
        top, bottom = self.figures[numerator], self.figures[denominator]
        value = top["value"] / bottom["value"]
        entry: dict[str, Any] = {
            "name": name,
            "numerator": numerator,
            "denominator": denominator,
            "value": value,
            "target": None if target is None else {"op": target[0], "value": target[1]},
            "met": None if target is None else _compare(value, *target),
        }
        if len(top.get("runs", ())) == len(bottom.get("runs", ())) > 1:
            # Repetition i of both figures ran back to back: their ratio shares that moment's machine noise.
            entry["paired_runs"] = [a / b for a, b in zip(top["runs"], bottom["runs"], strict=True)]
            entry["paired_median"] = median(entry["paired_runs"])
        self.ratios.append(entry)

    def target(self, name: str, figure: str, op: str, bound: float) -> None:
        if figure not in self.figures:
            self.skipped[f"target:{name}"] = f"no figure {figure}"
            return
        value = self.figures[figure]["value"]
        self.targets.append(
            {
                "name": name,
                "figure": figure,
                "value": value,
                "op": op,
                "bound": bound,
                "met": _compare(value, op, bound),
            }
        )


def _compare(value: float, op: str, bound: float) -> bool:
    if op == "<=":
        return value <= bound
    if op == ">=":
        return value >= bound
    if op == "==":
        return value == bound
    raise ValueError(f"unknown comparison {op!r}")


# --- load ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    ops_s: float
    p50_ms: float
    p99_ms: float
    completed: int
    errors: dict[str, int]
    stale: int
    resent: int
    completed_gets: int = 0  # of `completed`, the gets (a load with a get share)


def run_load(
    children: Children,
    endpoint: str,
    *,
    mode: str,
    clients: int,
    sessions: int,
    warmup_s: float,
    duration_s: float,
    latencies: bool = True,
    batch: bool = False,
    value_bytes: int | None = None,
    connections: int = 1,
    get_share: float = 0.0,
) -> Load:
    """`clients` load-generator processes × `sessions` in flight each (over `connections` DEALERs each),
    measured over one common window; with `batch`, each sends a wake-up's requests as RequestBatches; with
    `get_share`, that share of each session's requests are gets (load generator i seeds its PRNG with i)."""
    arguments = ["--endpoint", endpoint, "--mode", mode, "--sessions", str(sessions)]
    arguments += ["--connections", str(connections)]
    arguments += ["--batch"] if batch else []
    arguments += [] if value_bytes is None else ["--value-bytes", str(value_bytes)]
    arguments += ["--latencies"] if latencies else []
    processes = [
        children.spawn(
            "zvsr.bench.loadgen",
            arguments + (["--get-share", repr(get_share), "--seed", str(i)] if get_share else []),
            name="loadgen",
            stdin=True,
        )
        for i in range(clients)
    ]
    try:
        for process in processes:
            line = read_line(process, timeout_s=READY_TIMEOUT_S, what="a load generator to start")
            if line != "ready":
                raise ChildError(f"load generator said {line!r}, not ready")
        start = time.monotonic() + warmup_s
        end = start + duration_s
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(f"go {start!r} {end!r}\n")
            process.stdin.flush()
        results = []
        for process in processes:
            out, _ = process.communicate(timeout=max(0.0, end - time.monotonic()) + 60)
            if process.returncode != 0 or not out.strip():
                raise ChildError(
                    f"load generator failed (code {process.returncode}): {children.log_tail('loadgen')}"
                )
            results.append(json.loads(out))
    finally:
        for process in processes:
            children.kill(process)
    samples = [sample / 1000 for result in results for sample in result["latencies_us"]]
    errors: dict[str, int] = {}
    for result in results:
        for code, count in result["errors"].items():
            errors[code] = errors.get(code, 0) + count
    completed = sum(result["completed"] for result in results)
    if completed == 0:
        raise ChildError(f"no request completed in {duration_s} s against {endpoint} ({mode}); errors {errors}")
    return Load(
        ops_s=completed / duration_s,
        p50_ms=percentile(samples, 0.50),
        p99_ms=percentile(samples, 0.99),
        completed=completed,
        errors=errors,
        stale=sum(result["stale"] for result in results),
        resent=sum(result["resent"] for result in results),
        completed_gets=sum(result["completed_gets"] for result in results),
    )


def client_library_latency(endpoint: str, *, warmup_s: float, duration_s: float) -> Load:
    """Strict latency with `zvsr.client.Client` (one thread, one request at a time) through the proxy."""
    samples: list[float] = []
    completed = 0
    with Client(endpoint, timeout_ms=10_000) as client:
        start = time.monotonic() + warmup_s
        end = start + duration_s
        n = 0
        while (now := time.monotonic()) < end:
            client.put("bench/library", n)
            done = time.monotonic()
            n += 1
            if done >= start and done < end:
                completed += 1
                samples.append((done - now) * 1000)
    return Load(completed / duration_s, percentile(samples, 0.5), percentile(samples, 0.99), completed, {}, 0, 0)


# --- processes -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def zvsr_cluster(
    root: Path, *, fsync: str, metrics: bool = False, replicas: int = 3, read_mode: str = READ_MODE_DEFAULT
) -> Iterator[ProcessCluster]:
    """A started cluster with a primary; with `metrics`, serving /metrics and scraped once a second; `read_mode`
    as `failover.make_cluster`."""
    cluster = failover.make_cluster(root, fsync=fsync, metrics=metrics, replicas=replicas, read_mode=read_mode)
    try:
        cluster.start()
        cluster.wait_for_primary(timeout_s=30)
        if metrics:
            with MetricsScraper(metrics_urls(cluster.config)) as scraper:
                yield cluster
            sys.stderr.write(f"metrics: {scraper.scrapes} scrapes, {scraper.failures} failed\n")
        else:
            yield cluster
    except BaseException:
        sys.stderr.write(cluster.logs()[-8000:] + "\n")
        raise
    finally:
        cluster.cleanup()


def pipelined_zvsr_load(
    children: Children,
    cluster: ProcessCluster,
    *,
    clients: int,
    window: int,
    warmup_s: float,
    duration_s: float,
    batch: bool = False,
    get_share: float = 0.0,
) -> Load:
    """The bench's pipelined load (clients x window sessions, throughput only) through `cluster`'s proxy; with
    `get_share`, that share of the requests are gets (`zvsr.bench.loadgen`)."""
    return run_load(
        children,
        cluster.config.proxy,
        mode="zvsr",
        clients=clients,
        sessions=window,
        warmup_s=warmup_s,
        duration_s=duration_s,
        latencies=False,
        batch=batch,
        get_share=get_share,
    )


def start_raw_servers(children: Children) -> tuple[str, str]:
    """(echo endpoint, forwarder endpoint): an echo server and a Python forwarder in front of it."""
    echo_port, forward_port = free_ports(2)
    echo = f"tcp://127.0.0.1:{echo_port}"
    forward = f"tcp://127.0.0.1:{forward_port}"
    server = children.spawn("zvsr.bench.raw", ["echo", "--bind", echo], name="raw-echo")
    read_line(server, timeout_s=READY_TIMEOUT_S, what="the raw echo server")
    forwarder = children.spawn(
        "zvsr.bench.raw", ["forward", "--bind", forward, "--connect", echo], name="raw-forward"
    )
    read_line(forwarder, timeout_s=READY_TIMEOUT_S, what="the raw forwarder")
    return echo, forward


class SyncObjCluster:
    """Three PySyncObj node processes on free loopback ports; commands go to the leader's process."""

    def __init__(self, children: Children) -> None:
        self.children = children
        addresses = [f"127.0.0.1:{port}" for port in free_ports(3)]
        self.processes = []
        for index, address in enumerate(addresses):
            arguments = ["--self", address, "--batch", "off"]
            for other in addresses:
                if other != address:
                    arguments += ["--partner", other]
            self.processes.append(
                children.spawn("zvsr.bench.syncobj_node", arguments, name=f"pysyncobj-{index}", stdin=True)
            )
        self.addresses = addresses
        for index, process in enumerate(self.processes):
            line = read_line(process, timeout_s=READY_TIMEOUT_S, what=f"PySyncObj node {index} to be ready")
            if line != "ready":
                raise ChildError(f"PySyncObj node {index}: {line!r} {children.log_tail(f'pysyncobj-{index}')}")
        deadline = time.monotonic() + 30
        while True:
            leader = self._ask(self.processes[0], "leader").get("leader")
            if leader in addresses:
                self.leader = self.processes[addresses.index(leader)]
                return
            if time.monotonic() > deadline:
                raise ChildError("PySyncObj elected no leader in 30 s")
            time.sleep(0.2)

    def _ask(self, process: Any, command: str, timeout_s: float = 30) -> dict[str, Any]:
        process.stdin.write(command + "\n")
        process.stdin.flush()
        answer: dict[str, Any] = json.loads(read_line(process, timeout_s=timeout_s, what=f"PySyncObj {command!r}"))
        return answer

    def load(self, mode: str, callers: int, *, warmup_s: float, duration_s: float) -> Load:
        start = time.monotonic() + warmup_s
        end = start + duration_s
        result = self._ask(
            self.leader, f"load {mode} {callers} {start!r} {end!r}", timeout_s=warmup_s + duration_s + 60
        )
        if "error" in result:
            raise ChildError(f"PySyncObj: {result['error']}")
        samples = [sample / 1000 for sample in result["latencies_us"]]
        return Load(
            result["completed"] / duration_s,
            percentile(samples, 0.5),
            percentile(samples, 0.99),
            result["completed"],
            result["errors"],
            0,
            0,
        )

    def close(self) -> None:
        for process in self.processes:
            self.children.kill(process)


def _views(report: dict[str, Any]) -> list[int | None]:
    return [entry["view"] if isinstance(entry.get("view"), int) else None for entry in report["replicas"]]


def status_with_retry(config: ClusterConfig, *, timeout_s: float) -> dict[str, Any]:
    """`zvsr status --json`'s report once every replica answers, or the last one at the deadline (a replica busy
    with a view change over a long log may take seconds to answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = collect_status(config, timeout_ms=1000)
        if all(entry["reachable"] for entry in report["replicas"]) or time.monotonic() > deadline:
            return report


def metrics_urls(config: ClusterConfig) -> list[str]:
    """Every /metrics URL of a cluster (replicas, then the proxy)."""
    places = [config.replica_metrics(i) for i in range(len(config.replicas))] + [config.proxy_metrics()]
    return [metrics_url(*place) for place in places if place is not None]


class MetricsScraper:
    """Scrapes each URL once per `interval_s` from a thread, as a Prometheus server would (every 15 s by
    default: once a second is the harsher case). Counts scrapes and failures."""

    def __init__(self, urls: list[str], *, interval_s: float = 1.0) -> None:
        self.urls = urls
        self.interval_s = interval_s
        self.scrapes = self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-scraper", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for url in self.urls:
                try:
                    with urllib.request.urlopen(url, timeout=5) as answer:
                        answer.read()
                    self.scrapes += 1
                except OSError:
                    self.failures += 1

    def __enter__(self) -> MetricsScraper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class ViewSampler:
    """Every replica's view and status once a second, from a thread, while the load runs."""

    def __init__(self, config: ClusterConfig, *, interval_s: float = 1.0) -> None:
        self.config = config
        self.interval_s = interval_s
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="view-sampler", daemon=True)
        self._started = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            report = collect_status(self.config, timeout_ms=500)
            self.samples.append(
                {
                    "t_s": round(time.monotonic() - self._started, 2),
                    "views": _views(report),
                    "status": [entry.get("status") for entry in report["replicas"]],
                }
            )

    def __enter__(self) -> ViewSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# --- the run -------------------------------------------------------------------------------------------------


def pysyncobj_available() -> bool:
    return importlib.util.find_spec("pysyncobj") is not None


def plan(settings: Settings, with_pysyncobj: bool) -> int:
    steps = 1 + 8 * settings.runs + 2  # cluster + raw servers; per repetition; steady cluster and load
    if with_pysyncobj:
        steps += 1 + 2 * settings.runs
    steps += 1 + 2 * settings.runs  # fsync-always cluster; disk and pipelined per repetition
    steps += sum(phase_steps(settings) for phase_steps, _, _ in _extra_phases(settings))
    return steps + settings.failover_runs


def _extra_phases(
    settings: Settings,
) -> list[tuple[Callable[[Settings], int], Callable[[Any], None], Callable[[Report], None]]]:
    """Phases in their own modules, run after phase 4 on clusters of their own: (progress steps, run, ratios).
    The curves (`zvsr.bench.curves`) and the read mix per read mode (`zvsr.bench.read_mix`); `--no-curves` drops
    both."""
    from zvsr.bench import curves, read_mix  # imported here: they build on this module

    if not settings.curves:
        return []
    return [
        (curves.steps, curves.run_phase, curves.conclude),
        (read_mix.steps, read_mix.run_phase, read_mix.conclude),
    ]


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C (so every `finally` runs and every child is killed)."""
    if threading.current_thread() is threading.main_thread():

        def interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        previous = signal.signal(signal.SIGTERM, interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
    else:
        yield


def _child_environment() -> None:
    """Children run `python -m zvsr…`: make sure they import this very zvsr, however it was installed."""
    root = str(Path(zvsr.__file__).resolve().parent.parent)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])


def run(settings: Settings, *, progress: Progress | None = None) -> dict[str, Any]:
    """Run every phase; the report as a JSON-ready dict."""
    started_wall = datetime.datetime.now(datetime.UTC)
    started = time.monotonic()
    with_pysyncobj = (
        settings.pysyncobj if settings.pysyncobj is not None else (not settings.quick and pysyncobj_available())
    )
    report = Report()
    if not with_pysyncobj:
        report.skipped["pysyncobj"] = (
            "pysyncobj is not installed (pip install zvsr[bench])"
            if not pysyncobj_available()
            else "skipped with --quick (ask with --pysyncobj)"
            if settings.quick
            else "skipped (--no-pysyncobj)"
        )
    elif not pysyncobj_available():
        raise RuntimeError("--pysyncobj: pysyncobj is not installed (pip install zvsr[bench])")
    progress = progress or Progress(plan(settings, with_pysyncobj), enabled=False)
    _child_environment()
    parent = Path(settings.data_dir) if settings.data_dir else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="zvsr-bench-", dir=parent))
    try:
        with _terminate_as_interrupt(), Children(work) as children:
            _phases(settings, report, children, work, progress, with_pysyncobj)
    finally:
        if settings.keep:
            progress.note(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    progress.finish()
    _conclude(report, settings)
    return {
        "schema": SCHEMA,
        "zvsr_version": zvsr.__version__,
        "started": started_wall.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "quick": settings.quick,
        "settings": asdict(settings) | {"pysyncobj": with_pysyncobj},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "pyzmq": zmq.pyzmq_version(),
            "libzmq": zmq.zmq_version(),
            "data_filesystem": disk.filesystem(work.parent),
        },
        "figures": report.figures,
        "ratios": report.ratios,
        "targets": report.targets,
        "skipped": report.skipped,
        "details": report.details,
    }


def _phases(
    settings: Settings, report: Report, children: Children, work: Path, progress: Progress, with_pysyncobj: bool
) -> None:
    runs, clients, window = settings.runs, settings.clients, settings.window
    warm, duration, strict = settings.warmup_s, settings.duration_s, settings.strict_duration_s
    errors: dict[str, dict[str, int]] = {}

    def note_errors(name: str, load: Load) -> None:
        if load.errors or load.stale or load.resent:
            entry = errors.setdefault(name, {})
            for code, count in load.errors.items():
                entry[code] = entry.get(code, 0) + count
            entry["stale"] = entry.get("stale", 0) + load.stale
            entry["resent"] = entry.get("resent", 0) + load.resent

    def strict_figures(name: str, load: Load, system: str, what: str) -> None:
        report.add(f"{name}_p50_ms", load.p50_ms, unit="ms", system=system, what=f"{what}: median round trip")
        report.add(f"{name}_p99_ms", load.p99_ms, unit="ms", system=system, what=f"{what}: 99th percentile")
        report.add(f"{name}_ops_s", load.ops_s, unit="ops/s", system=system, what=f"{what}: requests per second")

    def pipelined_figures(name: str, load: Load, system: str, what: str) -> None:
        report.add(f"{name}_ops_s", load.ops_s, unit="ops/s", system=system, what=what, completed=load.completed)
        report.add(f"{name}_p50_ms", load.p50_ms, unit="ms", system=system, what=f"{what}: median latency")
        report.add(f"{name}_p99_ms", load.p99_ms, unit="ms", system=system, what=f"{what}: 99th percentile")

    pipelined = f"{clients} clients x {window} in flight"

    # 1. zvsr (--fsync never) and the raw baselines, round-robin.
    progress.step("starting a 3-replica cluster (--fsync never), a proxy, raw echo and forwarder")
    with zvsr_cluster(work / "cluster-never", fsync="never", metrics=settings.metrics) as cluster:
        proxy = cluster.config.proxy
        echo, forward = start_raw_servers(children)
        for r in range(1, runs + 1):
            of = f"(run {r}/{runs})"
            progress.step(f"zvsr strict latency {of}")
            load = run_load(children, proxy, mode="zvsr", clients=1, sessions=1, warmup_s=warm, duration_s=strict)
            note_errors("zvsr_strict", load)
            strict_figures("zvsr_strict", load, "zvsr", "zvsr through the proxy, one request at a time")
            progress.step(f"raw forwarder strict latency {of}")
            load = run_load(children, forward, mode="raw", clients=1, sessions=1, warmup_s=warm, duration_s=strict)
            strict_figures("raw_forwarder_strict", load, "baseline", "client -> Python forwarder -> echo server")
            progress.step(f"raw one-hop round trip {of}")
            load = run_load(children, echo, mode="raw", clients=1, sessions=1, warmup_s=warm, duration_s=strict)
            strict_figures("raw_hop", load, "baseline", "client -> echo server (one raw round trip)")
            progress.step(f"zvsr strict latency with the Python client library {of}")
            load = client_library_latency(proxy, warmup_s=warm, duration_s=strict)
            strict_figures(
                "zvsr_client_strict", load, "zvsr", "zvsr.client.Client through the proxy, one at a time"
            )
            progress.step(f"zvsr pipelined throughput {of}")
            load = run_load(
                children, proxy, mode="zvsr", clients=clients, sessions=window, warmup_s=warm, duration_s=duration
            )
            note_errors("zvsr_pipelined", load)
            pipelined_figures("zvsr_pipelined", load, "zvsr", f"committed ops/s through the proxy, {pipelined}")
            progress.step(f"raw forwarder pipelined throughput {of}")
            load = run_load(
                children, forward, mode="raw", clients=clients, sessions=window, warmup_s=warm, duration_s=duration
            )
            pipelined_figures(
                "raw_forwarder_pipelined", load, "baseline", f"echoes/s through the Python forwarder, {pipelined}"
            )
            progress.step(f"zvsr pipelined throughput, batching clients {of}")
            load = run_load(
                children,
                proxy,
                mode="zvsr",
                clients=clients,
                sessions=window,
                warmup_s=warm,
                duration_s=duration,
                batch=True,
            )
            note_errors("zvsr_batched", load)
            pipelined_figures(
                "zvsr_batched", load, "zvsr", f"committed ops/s, {pipelined}, each wake-up's requests in one batch"
            )
            progress.step(f"raw forwarder pipelined throughput, batching clients {of}")
            load = run_load(
                children,
                forward,
                mode="raw",
                clients=clients,
                sessions=window,
                warmup_s=warm,
                duration_s=duration,
                batch=True,
            )
            pipelined_figures(
                "raw_forwarder_batched", load, "baseline", f"echoes/s through the forwarder, {pipelined}, batched"
            )

    # 2. steady load on a fresh cluster, no faults: view changes.
    progress.step("starting a fresh 3-replica cluster (--fsync never) for the steady load")
    with zvsr_cluster(work / "cluster-steady", fsync="never", metrics=settings.metrics) as cluster:
        progress.step(f"steady load for {settings.steady_s:.0f} s, counting view changes")
        before = status_with_retry(cluster.config, timeout_s=10)
        with ViewSampler(cluster.config) as sampler:
            load = run_load(
                children,
                cluster.config.proxy,
                mode="zvsr",
                clients=clients,
                sessions=window,
                warmup_s=warm,
                duration_s=settings.steady_s,
                latencies=False,
            )
        after = status_with_retry(cluster.config, timeout_s=30)
        note_errors("zvsr_steady", load)
        views_before = _views(before)
        views_after = _views(after)
        seen = [
            v for v in views_after + [v for sample in sampler.samples for v in sample["views"]] if v is not None
        ]
        if not any(v is not None for v in views_before) or not seen:
            raise RuntimeError(
                f"no replica answered the status query (before {views_before}, after {views_after})"
            )
        report.add(
            "zvsr_steady_view_changes",
            float(max(seen) - max(v for v in views_before if v is not None)),
            unit="views",
            system="zvsr",
            what=f"views started during {settings.steady_s:.0f} s of steady pipelined load, no faults",
        )
        report.add("zvsr_steady_ops_s", load.ops_s, unit="ops/s", system="zvsr", what=f"steady load, {pipelined}")
        report.details["steady"] = {
            "duration_s": settings.steady_s,
            "views_before": views_before,
            "views_after": views_after,
            "status_after": [
                {
                    key: entry.get(key)
                    for key in ("replica", "reachable", "status", "role", "view", "commit_number")
                }
                for entry in after["replicas"]
            ],
            # One sample a second while the load ran: seconds since it started, each replica's view (None:
            # no answer within 500 ms) and status.
            "samples": sampler.samples,
        }

    # 3. PySyncObj.
    if with_pysyncobj:
        progress.step("starting a 3-node PySyncObj cluster")
        try:
            syncobj = SyncObjCluster(children)
        except ChildError as error:
            report.skipped["pysyncobj"] = f"failed to start: {error}"
            progress.note(f"PySyncObj skipped: {error}")
            for _ in range(2 * runs):
                progress.step("PySyncObj skipped")
        else:
            try:
                for r in range(1, runs + 1):
                    of = f"(run {r}/{runs})"
                    progress.step(f"PySyncObj async callers {of}")
                    load = syncobj.load("async", clients * window, warmup_s=warm, duration_s=duration)
                    pipelined_figures(
                        "pysyncobj_async",
                        load,
                        "baseline",
                        f"PySyncObj writes/s, {clients * window} in flight (callbacks)",
                    )
                    progress.step(f"PySyncObj sync callers {of}")
                    load = syncobj.load("sync", clients * window, warmup_s=warm, duration_s=duration)
                    pipelined_figures(
                        "pysyncobj_sync",
                        load,
                        "baseline",
                        f"PySyncObj writes/s, {clients * window} threads, sync=True",
                    )
            finally:
                syncobj.close()

    # 4. --fsync always: group commit against one fdatasync per append on the same disk.
    progress.step("starting a 3-replica cluster (--fsync always)")
    with zvsr_cluster(work / "cluster-always", fsync="always", metrics=settings.metrics) as cluster:
        for r in range(1, runs + 1):
            of = f"(run {r}/{runs})"
            progress.step(f"fdatasync per 100-byte append on the data disk {of}")
            rate = disk.fdatasync_rate(work, duration_s=settings.disk_s)
            report.add(
                "disk_fdatasync_ops_s",
                rate,
                unit="ops/s",
                system="baseline",
                what="100-byte appends per second, one fdatasync each, on the data dir's disk",
            )
            progress.step(f"zvsr pipelined throughput, --fsync always {of}")
            load = run_load(
                children,
                cluster.config.proxy,
                mode="zvsr",
                clients=clients,
                sessions=window,
                warmup_s=warm,
                duration_s=duration,
            )
            note_errors("zvsr_fsync_pipelined", load)
            pipelined_figures(
                "zvsr_fsync_pipelined", load, "zvsr", f"committed ops/s with --fsync always, {pipelined}"
            )

    # 5. the curves (zvsr.bench.curves) and any other phase of its own module.
    from zvsr.bench.curves import PhaseContext  # imported here: it builds on this module

    context = PhaseContext(settings, report, children, work, progress, note_errors)
    for _, run_phase, _ in _extra_phases(settings):
        run_phase(context)

    # 6. failover.
    for r in range(1, settings.failover_runs + 1):
        progress.step(f"failover: kill -9 of the primary (run {r}/{settings.failover_runs})")
        seconds = failover.one_run(work / f"failover-{r}", fsync="always")
        report.add(
            "zvsr_failover_s",
            seconds,
            unit="s",
            system="zvsr",
            what="kill -9 of the primary -> first write issued and acknowledged after it (default timeouts)",
        )
        progress.note(f"failover run {r}: {seconds * 1000:.0f} ms")
    report.details["errors"] = errors


def _conclude(report: Report, settings: Settings) -> None:
    report.derive(
        "raw_forwarder_plus_hop_p50_ms",
        ["raw_forwarder_strict_p50_ms", "raw_hop_p50_ms"],
        unit="ms",
        system="baseline",
        what="raw forwarder round trip + raw one-hop round trip (p50s): the network path of one VR request",
    )
    report.ratio("pipelined_vs_pysyncobj_async", "zvsr_pipelined_ops_s", "pysyncobj_async_ops_s", (">=", 2.5))
    report.ratio(
        "pipelined_vs_raw_forwarder", "zvsr_pipelined_ops_s", "raw_forwarder_pipelined_ops_s", (">=", 0.8)
    )
    report.ratio("strict_p50_vs_raw_path", "zvsr_strict_p50_ms", "raw_forwarder_plus_hop_p50_ms", ("<=", 1.2))
    report.ratio("fsync_group_commit", "zvsr_fsync_pipelined_ops_s", "disk_fdatasync_ops_s", (">=", 3.0))
    report.ratio("pipelined_vs_pysyncobj_sync", "zvsr_pipelined_ops_s", "pysyncobj_sync_ops_s", None)
    report.ratio("fsync_always_vs_never", "zvsr_fsync_pipelined_ops_s", "zvsr_pipelined_ops_s", None)
    report.ratio("client_library_vs_raw_client_p50", "zvsr_client_strict_p50_ms", "zvsr_strict_p50_ms", None)
    report.ratio("batched_vs_pysyncobj_async", "zvsr_batched_ops_s", "pysyncobj_async_ops_s", None)
    report.ratio("batched_vs_raw_forwarder_batched", "zvsr_batched_ops_s", "raw_forwarder_batched_ops_s", None)
    report.ratio("batched_vs_unbatched", "zvsr_batched_ops_s", "zvsr_pipelined_ops_s", None)
    for _, _, conclude in _extra_phases(settings):
        conclude(report)
    report.target("strict_p99", "zvsr_strict_p99_ms", "<=", 3.0)
    report.target("failover", "zvsr_failover_s", "<=", 0.3)
    report.target("steady_view_changes", "zvsr_steady_view_changes", "==", 0.0)


# --- output --------------------------------------------------------------------------------------------------


RATIO_LABELS: Final = {
    "pipelined_vs_pysyncobj_async": "pipelined ops/s vs PySyncObj async",
    "pipelined_vs_raw_forwarder": "pipelined ops/s vs raw forwarder",
    "strict_p50_vs_raw_path": "strict p50 vs raw fwd + hop",
    "fsync_group_commit": "--fsync always ops/s vs fdatasync/op",
    "pipelined_vs_pysyncobj_sync": "pipelined ops/s vs PySyncObj sync",
    "fsync_always_vs_never": "--fsync always vs never ops/s",
    "client_library_vs_raw_client_p50": "client library p50 vs raw client",
    "batched_vs_pysyncobj_async": "batching clients vs PySyncObj async",
    "batched_vs_raw_forwarder_batched": "batching clients vs raw fwd, batched",
    "batched_vs_unbatched": "batching clients vs plain clients",
    "five_replicas_pipelined": "5 replicas vs 3, pipelined ops/s",
    "five_replicas_strict_p50": "5 replicas vs 3, strict p50",
    "read_mix_read_index_vs_log": "90% reads: read_index vs log ops/s",
    "read_mix_lease_vs_log": "90% reads: lease vs log ops/s",
}
TARGET_LABELS: Final = {
    "strict_p99": "strict p99 latency",
    "failover": "failover after kill -9 (median)",
    "steady_view_changes": "view changes, steady load, no faults",
}


def _number(value: float, unit: str) -> str:
    if not finite(value):
        return "-"
    if unit == "ops/s":
        return f"{value:,.0f} ops/s"
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:g} {unit}"


def format_table(result: dict[str, Any]) -> str:
    figures = result["figures"]
    lines = [
        f"zvsr bench {result['zvsr_version']} - {result['started']} - {result['machine']['cpus']} CPUs - "
        f"{'quick' if result['quick'] else 'full'} run, medians of {result['settings']['runs']} "
        f"({result['duration_s']:.0f} s)",
        "",
        f"{'measure':<38} {'zvsr':>15} {'baseline':>15} {'ratio':>7} {'paired':>7} {'target':>8}  status",
    ]
    for ratio in result["ratios"]:
        numerator, denominator = figures[ratio["numerator"]], figures[ratio["denominator"]]
        target = ratio["target"]
        lines.append(
            f"{RATIO_LABELS.get(ratio['name'], ratio['name']):<38} "
            f"{_number(numerator['value'], numerator['unit']):>15} "
            f"{_number(denominator['value'], denominator['unit']):>15} {ratio['value']:>6.2f}x "
            f"{format(ratio['paired_median'], '6.2f') + 'x' if 'paired_median' in ratio else '':>7} "
            f"{'' if target is None else target['op'] + ' ' + format(target['value'], 'g') + 'x':>8}  "
            f"{'' if ratio['met'] is None else 'met' if ratio['met'] else 'MISSED'}"
        )
    for target in result["targets"]:
        figure = figures[target["figure"]]
        lines.append(
            f"{TARGET_LABELS.get(target['name'], target['name']):<38} "
            f"{_number(target['value'], figure['unit']):>15} {'':>15} {'':>7} {'':>7} "
            f"{target['op'] + ' ' + format(target['bound'], 'g'):>8}  {'met' if target['met'] else 'MISSED'}"
        )
    lines += ["", f"{'figure':<34} {'median':>15}  runs"]
    for name, figure in figures.items():
        runs = figure.get("runs")
        shown = "" if runs is None else " ".join(_short(value, figure["unit"]) for value in runs)
        lines.append(f"{name:<34} {_number(figure['value'], figure['unit']):>15}  {shown}")
    for name, reason in result["skipped"].items():
        lines.append(f"skipped {name}: {reason}")
    return "\n".join(lines)


def _short(value: float, unit: str) -> str:
    if unit == "ops/s":
        return f"{value:.0f}"
    if unit in ("ms", "s"):
        return f"{value:.3f}"
    return f"{value:g}"


def results_path(out: str | None, started: str) -> Path:
    if out:
        return Path(out)
    stamp = started.replace("-", "").replace(":", "").replace("+0000", "Z").replace("+00:00", "Z")
    return Path.cwd() / "bench" / "results" / f"{stamp}.json"


def write_results(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False, allow_nan=False) + "\n")


def clean_for_json(value: Any) -> Any:
    """NaN / infinity (a figure with no samples) become null: the JSON stays standard."""
    if isinstance(value, float) and not finite(value):
        return None
    if isinstance(value, dict):
        return {key: clean_for_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clean_for_json(item) for item in value]
    return value


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    return replace(settings, **{key: value for key, value in overrides.items() if value is not None})
