"""The driver of a chaos run: build the network, start the cluster and the workload, run the schedule of
faults, heal everything, check, and always clean up.

Theory of operation
-------------------
`run_chaos` sweeps away what dead runs left (`netns.sweep_stale`), builds the namespaces (`netns.Network`),
starts relays, replicas and the proxy (`cluster.ChaosCluster`) and a client workload through the proxy
(`zvsr.fuzz.workload.Workload`: every call recorded, timeouts as unknown). Then, for each step of the seeded
schedule (`schedule.schedule`): wait until every replica is normal in one view; make the fault
(`nemesis.NEMESES`); let it last; note the highest view reachable — for a fault of one replica, wait until the
others are normal in one view (with a primary of their own if they had to replace it) and note that view; heal
it; wait for the next acknowledged write (from the heal, or from the kill for process deaths) — the recovery
time — and for the cluster to settle, and note the highest view again: a heal of a one-replica fault should not
have changed it. After the last step everything is healed and the checks run: every process alive, no
acknowledged write lost and the counter between the acknowledged and the acknowledged plus unknown increments
(`Workload.lost_writes`), the history linearizable (`zvsr.lincheck`).

Everything made is removed in `finally` — processes, namespaces, links — also on Ctrl-C or SIGTERM (the command
turns both into KeyboardInterrupt). The run's directory (history.jsonl, every process's log, the data) is kept
when a check failed, or when asked, and its path printed.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

from zvsr.chaos.cluster import ChaosCluster
from zvsr.chaos.nemesis import NEMESES, Fault, Target
from zvsr.chaos.netns import Network, check_available, sweep_stale
from zvsr.chaos.report import ChaosReport, FaultRecord
from zvsr.chaos.schedule import kinds_for, schedule
from zvsr.constants import (
    CHAOS_CLIENTS,
    CHAOS_RECOVERY_TIMEOUT_S,
    CHAOS_SETTLE_TIMEOUT_S,
    CHAOS_START_TIMEOUT_S,
    CHAOS_VIEW_SETTLE_S,
)
from zvsr.fuzz.workload import Workload

POLL_S = 0.02  # how often the driver looks at the history or the replicas' status while it waits

Progress = Callable[[str], None]
T = TypeVar("T")


class _Stopped(Exception):
    """The run cannot go on (the cluster did not recover): the checks still run on what happened."""


def _quiet(_: str) -> None:
    pass


def run_chaos(
    *,
    replicas: int,
    seed: int,
    duration_s: float,
    keep: bool = False,
    kinds: list[str] | None = None,
    progress: Progress = _quiet,
) -> ChaosReport:
    """Run a chaos schedule; raises NetworkUnavailable (before anything is made) when namespaces cannot be."""
    check_available()
    removed = sweep_stale()
    if removed:
        progress(f"removed what an earlier run left: {', '.join(removed)}")
    root = Path(tempfile.mkdtemp(prefix="zvsr-chaos-"))
    report = ChaosReport(seed=seed, replicas=replicas, run_dir=str(root))
    network = Network(replicas)
    cluster: ChaosCluster | None = None
    workload: Workload | None = None
    started = time.monotonic()
    try:
        network.up()
        cluster = ChaosCluster(root, network, seed=seed, timeouts={})
        cluster.start()
        workload = Workload(proxy=cluster.config.proxy, clients=CHAOS_CLIENTS)
        workload.run()
        try:
            _await(lambda: workload.first_write_acknowledged(after=0), CHAOS_START_TIMEOUT_S, "a first write")
            _faults(cluster, network, workload, report, seed, duration_s, kinds, progress)
        except _Stopped as stopped:
            report.problems.append(str(stopped))
        _heal_everything(cluster, network, report)
        _check(cluster, workload, report, progress)
    except KeyboardInterrupt:
        report.problems.append("interrupted")
        raise
    finally:
        with _no_interrupts():
            report.elapsed_s = time.monotonic() - started
            if workload is not None:
                workload.stop.set()
                workload.write_history(root / "history.jsonl")
            if cluster is not None:
                cluster.cleanup()
            network.down()
            if report.ok and not keep:
                shutil.rmtree(root, ignore_errors=True)
    return report


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Cleanup runs to the end: a second Ctrl-C must not leave namespaces or processes behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _await(condition: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll `condition` until it answers something other than None; _Stopped after `timeout_s` (the cluster
    did not get there)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise _Stopped(f"no {what} within {timeout_s:.0f} s")
        time.sleep(POLL_S)


def _settled(cluster: ChaosCluster) -> int | None:
    """The primary, once every replica answers normal in one view (and none is fetching its log)."""
    answers = cluster.view_state()
    if len(answers) != len(cluster.config.replicas):
        return None
    views = {answer["view"] for answer in answers.values()}
    if len(views) != 1 or any(a["status"] != "normal" or a["state_transfer"] for a in answers.values()):
        return None
    return next((i for i, a in answers.items() if a["role"] == "primary"), None)


def _rest_settled(cluster: ChaosCluster, fault: Fault) -> int | None:
    """The view of the replicas other than the one `fault` cut off, once they are all normal in it (none fetching
    its log) — with a primary among them when they had to replace theirs."""
    assert fault.alone is not None
    answers = cluster.view_state()
    rest = {i: a for i, a in answers.items() if i != fault.alone}
    if len(rest) != len(cluster.config.replicas) - 1:
        return None
    views = {answer["view"] for answer in rest.values()}
    if len(views) != 1 or any(a["status"] != "normal" or a["state_transfer"] for a in rest.values()):
        return None
    if fault.replaced and not any(a["role"] == "primary" for a in rest.values()):
        return None
    return int(views.pop())


def _highest_view(cluster: ChaosCluster) -> int | None:
    views = [answer["view"] for answer in cluster.view_state().values()]
    return max(views, default=None)


def _faults(
    cluster: ChaosCluster,
    network: Network,
    workload: Workload,
    report: ChaosReport,
    seed: int,
    duration_s: float,
    kinds: list[str] | None,
    progress: Progress,
) -> None:
    rng = random.Random(seed)
    first_round = len(kinds if kinds is not None else kinds_for(cluster.network.replicas))
    begun = time.monotonic()
    for number, step in enumerate(schedule(rng, cluster.network.replicas, kinds)):
        if number >= first_round and time.monotonic() - begun >= duration_s:
            return
        primary = _await(lambda: _settled(cluster), CHAOS_SETTLE_TIMEOUT_S, "settled cluster")
        started = workload.now()
        fault = NEMESES[step.kind][0](Target(cluster, network, rng, primary))
        progress(f"{started:7.1f} s  {fault.kind:<19} {fault.target} for {step.fault_s:.1f} s")
        time.sleep(step.fault_s)  # the fault's duration: nothing to wait for
        _heal(cluster, workload, report, fault, started, progress)


def _heal(
    cluster: ChaosCluster,
    workload: Workload,
    report: ChaosReport,
    fault: Fault,
    started: float,
    progress: Progress,
) -> None:
    """Heal `fault` and record it in `report`: _Stopped if the cluster does not recover (recorded first)."""
    if fault.alone is None:
        view_before = _highest_view(cluster)
    else:
        # Heal only once the rest are settled: otherwise a view change the fault started (a primary cut off a
        # moment ago, and not yet replaced) ends after the heal and reads as one the heal made.
        what = f"the replicas other than r{fault.alone} to settle before the heal"
        view_before = _await(lambda: _rest_settled(cluster, fault), CHAOS_SETTLE_TIMEOUT_S, what)
    healed = workload.now()
    fault.heal()
    since = started if fault.measure_from_start else healed
    recovered: float | None = None
    outage: float | None = None
    with contextlib.suppress(_Stopped):
        done = _await(lambda: workload.first_write_acknowledged(after=since), CHAOS_RECOVERY_TIMEOUT_S, "write")
        recovered = done - since
        times = [started, *workload.writes_acknowledged(after=started, until=done)]
        outage = max(later - earlier for earlier, later in zip(times, times[1:], strict=False))
    record = FaultRecord(
        kind=fault.kind,
        target=fault.target,
        started_s=started,
        healed_s=healed,
        recovery_s=recovered,
        outage_s=outage,
        view_before_heal=view_before,
        view_after_heal=None,
        measure_from_start=fault.measure_from_start,
        one_replica=fault.alone is not None,
    )
    report.faults.append(record)
    if recovered is None:
        timeout = CHAOS_RECOVERY_TIMEOUT_S
        raise _Stopped(f"{fault.kind} {fault.target}: no acknowledged write within {timeout:.0f} s of the heal")
    # A replica that comes back may start (or drag the others into) a view change a moment after the heal: look
    # at the views once that moment has passed and the cluster is whole again.
    time.sleep(CHAOS_VIEW_SETTLE_S)
    _await(lambda: _settled(cluster), CHAOS_SETTLE_TIMEOUT_S, f"settled cluster after {fault.kind}")
    record.view_after_heal = _highest_view(cluster)
    progress(
        f"{workload.now():7.1f} s  healed: write after {recovered:.2f} s, longest outage {outage:.2f} s, "
        f"views +{record.views_by_heal}"
    )


def _heal_everything(cluster: ChaosCluster, network: Network, report: ChaosReport) -> None:
    """Whatever a stopped run left: links up, no blocks, no rate limits, relays passive, every replica running."""
    actions: list[tuple[str, Callable[[], None]]] = [
        ("unblock", network.unblock_all),
        ("unshape", network.unshape_all),
    ]
    for index in range(network.replicas):
        actions.append((f"link r{index} up", partial(network.set_link, index, up=True)))
        actions.append((f"relay r{index} clear", cluster.relay(index).clear))
        if cluster.alive(index):
            actions.append((f"resume r{index}", partial(cluster.resume, index)))
        else:
            actions.append((f"start r{index}", partial(cluster.start_node, index)))
    for what, action in actions:
        try:
            action()
        except Exception as error:  # keep healing the rest; the run fails with the reason
            report.problems.append(f"could not {what}: {type(error).__name__}: {error}")


def _check(cluster: ChaosCluster, workload: Workload, report: ChaosReport, progress: Progress) -> None:
    progress("healed; checking")
    try:
        _await(lambda: _settled(cluster), CHAOS_SETTLE_TIMEOUT_S, "settled cluster after the last heal")
        healed = workload.now()
        _await(lambda: workload.first_write_acknowledged(after=healed), CHAOS_RECOVERY_TIMEOUT_S, "final write")
    except _Stopped as stopped:
        report.problems.append(str(stopped))
    workload.finish()
    for index, process in cluster.nodes.items():
        if process.poll() is not None:
            report.problems.append(f"replica {index} exited on its own (code {process.returncode})")
    history = list(workload.history)
    report.ops_ok = sum(1 for op in history if not op.pending)
    report.ops_unknown = len(history) - report.ops_ok
    report.errors = dict(workload.errors)
    try:
        report.lost_writes = workload.lost_writes()
    except Exception as error:  # the read-back itself failed: say so, never pass silently
        report.problems.append(f"could not read the writes back: {type(error).__name__}: {error}")
    result = workload.linearizability()
    report.linearizable = str(result.verdict)
    if report.linearizable != "ok":
        report.problems.append(f"history not proven linearizable: {result}")
