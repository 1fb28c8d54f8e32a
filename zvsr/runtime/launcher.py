"""`zvsr cluster up`: a local cluster of N replicas and a proxy, as child processes of one foreground command.

The launcher writes the embedded default configuration (`local_cluster`) to `<dir>/cluster.toml`, starts
`python -m zvsr node --replica i` for each replica and `python -m zvsr proxy`, waits until a read goes through
the proxy, prints the endpoints (every Prometheus ``/metrics`` URL too: metrics are on in a local cluster),
and then supervises: Ctrl-C (SIGINT to the process group) or SIGTERM stops every child — SIGTERM first,
SIGKILL after a grace period — and removes the directory if it was temporary.

Finding the cluster from another shell. While it runs, the launcher keeps a copy of the cluster file in
``./.zvsr/cluster.toml`` of the directory it was started in (written atomically), where the client-side
commands run in that directory look first after --config and ZVSR_CONFIG (`zvsr.cli_options`); it prints
``export ZVSR_CONFIG=…`` for shells elsewhere. However it stops (Ctrl-C, SIGTERM, a failed start), it removes
the copy — unless another `zvsr cluster up` in the same directory has replaced it since — so a file left there
means a launcher that was killed with SIGKILL (its children may then still run), and a command that times out
against it says where it read the endpoints.
A child that exits on its own is reported; the cluster keeps running while a majority of replicas and the
proxy are alive (a majority is all VR needs), and the launcher exits non-zero when that is no longer so.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from zvsr.constants import (
    LAUNCHER_READY_POLL_S,
    LAUNCHER_READY_QUERY_TIMEOUT_MS,
    LAUNCHER_READY_TIMEOUT_S,
    LAUNCHER_STOP_GRACE_S,
    LAUNCHER_SUPERVISE_INTERVAL_S,
)
from zvsr.runtime.cluster_config import DISCOVERY_FILE, ClusterConfig, local_cluster, to_toml
from zvsr.runtime.data_dir import write_atomically
from zvsr.runtime.metrics import metrics_url


class _Stop(Exception):
    pass


def run_local_cluster(
    *,
    replicas: int,
    base_port: int,
    data_dir: Path | None,
    settings: Mapping[str, Any],
    echo: Callable[[str], None],
) -> int:
    temporary = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="zvsr-")) if data_dir is None else data_dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    config = local_cluster(
        replicas=replicas, base_port=base_port, data_dir=str(root / "data"), metrics=True, **settings
    )
    path = root / "cluster.toml"
    path.write_text(to_toml(config))
    published = _publish(config, path, echo)
    # A brand-new cluster (no replica has ever run here) is initialised; an existing one restarts from disk,
    # and a replica whose directory was wiped recovers from the others instead of starting empty.
    new_cluster = not any((root / "data").glob("replica-*/replica.json"))
    init = ["--init"] if new_cluster else []
    children: dict[str, subprocess.Popen[bytes]] = {}
    # SIGINT too: a launcher started in the background by a script has SIGINT ignored by default.
    previous = {number: signal.signal(number, _raise_stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(replicas):
            children[f"replica {index}"] = _spawn(["node", "--config", str(path), "--replica", str(index), *init])
        children["proxy"] = _spawn(["proxy", "--config", str(path)])
        _describe(config, path, echo)
        if not _wait_until_serving(config, children, echo):
            return 1
        _tell_how_to_reach(path, published is not None, echo)
        return _supervise(children, replicas, echo)
    except (KeyboardInterrupt, _Stop):
        echo("stopping the cluster")
        return 0
    finally:
        for number in previous:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(number, signal.SIG_IGN)
        _stop_all(children)
        if published is not None:
            _withdraw(*published)
        for number, handler in previous.items():
            signal.signal(number, handler)
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def _publish(config: ClusterConfig, path: Path, echo: Callable[[str], None]) -> tuple[Path, bytes] | None:
    """Copy the cluster file to ./.zvsr/cluster.toml for the commands run in this directory; (where, what)
    to withdraw at the end, or None if it could not be written (the export line still works)."""
    target = Path.cwd() / DISCOVERY_FILE
    # The pid makes each launcher's copy unique, so `_withdraw` never removes another launcher's.
    content = (
        f"# Written by `zvsr cluster up` (pid {os.getpid()}), which runs its cluster from {path}, for the\n"
        "# commands run in this directory (zvsr kv, status, backup, watch); removed when it stops.\n"
        f"{to_toml(config)}"
    ).encode()
    try:
        target.parent.mkdir(exist_ok=True)
        write_atomically(target, content)
    except OSError as error:
        echo(f"could not write {target} ({error.strerror}): use the export line below to reach the cluster")
        return None
    return target, content


def _withdraw(target: Path, content: bytes) -> None:
    try:
        if target.read_bytes() == content:  # not replaced by another `zvsr cluster up` run here since
            target.unlink()
    except OSError:
        return
    try:
        target.parent.rmdir()  # only if nothing else is in it
    except OSError:
        pass


def _tell_how_to_reach(path: Path, published: bool, echo: Callable[[str], None]) -> None:
    here = f"another shell in this directory finds it (./{DISCOVERY_FILE}); " if published else ""
    echo(f"cluster is up; Ctrl-C stops it. To use it, {here}from anywhere else first run:")
    echo(f"export ZVSR_CONFIG={shlex.quote(str(path))}")
    echo("then e.g. `zvsr kv put a 1`, `zvsr kv get a`, `zvsr status`")


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def _spawn(arguments: list[str]) -> subprocess.Popen[bytes]:
    # Children inherit stdout/stderr: their logs show in this terminal, each line prefixed by its replica.
    # ZVSR_METRICS_PORT names one process's port: given to all of them, they would all try to bind it.
    environment = {key: value for key, value in os.environ.items() if key != "ZVSR_METRICS_PORT"}
    return subprocess.Popen([sys.executable, "-m", "zvsr", *arguments], env=environment)


def _describe(config: ClusterConfig, path: Path, echo: Callable[[str], None]) -> None:
    echo(f"config: {path}")
    echo(f"proxy:  {config.proxy}{_metrics_text(config.proxy_metrics())}")
    for index, address in enumerate(config.replicas):
        echo(
            f"replica {index}: client {address.client}  peer {address.peer}  heartbeat {address.heartbeat}"
            f"{'' if address.watch is None else f'  watch {address.watch}'}"
            f"{_metrics_text(config.replica_metrics(index))}"
        )


def _metrics_text(where: tuple[str, int] | None) -> str:
    return "" if where is None else f"  metrics {metrics_url(*where)}"


def _wait_until_serving(
    config: ClusterConfig, children: Mapping[str, subprocess.Popen[bytes]], echo: Callable[[str], None]
) -> bool:
    # Ready = a primary in normal status and a proxy that answers, both by status query: asking the app
    # (a read) would put an operation of ours into the user's replicated log.
    import zmq

    from zvsr.runtime.status import collect_status, query

    deadline = time.monotonic() + LAUNCHER_READY_TIMEOUT_S
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        while time.monotonic() < deadline:
            for name, child in children.items():
                if child.poll() is not None:
                    echo(f"{name} exited with code {child.returncode} during start-up")
                    return False
            replicas = collect_status(config, timeout_ms=LAUNCHER_READY_QUERY_TIMEOUT_MS)["replicas"]
            led = any(r.get("role") == "primary" and r.get("status") == "normal" for r in replicas)
            if (
                led
                and query(config.proxy, timeout_ms=LAUNCHER_READY_QUERY_TIMEOUT_MS, context=context) is not None
            ):
                return True
            time.sleep(LAUNCHER_READY_POLL_S)  # polling a start-up: there is no event to wait for across processes
    finally:
        context.destroy(linger=0)
    echo(f"the cluster did not answer within {LAUNCHER_READY_TIMEOUT_S:.0f} s")
    return False


def _supervise(children: Mapping[str, subprocess.Popen[bytes]], replicas: int, echo: Callable[[str], None]) -> int:
    reported: set[str] = set()
    while True:
        for name, child in children.items():
            if child.poll() is not None and name not in reported:
                reported.add(name)
                echo(f"{name} exited with code {child.returncode}")
        alive = sum(1 for name, child in children.items() if name != "proxy" and child.poll() is None)
        if children["proxy"].poll() is not None or alive < replicas // 2 + 1:
            echo("no longer a majority of replicas and a proxy: stopping")
            return 1
        time.sleep(LAUNCHER_SUPERVISE_INTERVAL_S)


def _stop_all(children: Mapping[str, subprocess.Popen[bytes]]) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + LAUNCHER_STOP_GRACE_S
    for child in children.values():
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
