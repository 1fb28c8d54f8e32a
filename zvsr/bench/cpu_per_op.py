"""CPU time per committed op of every process under the pipelined load of `zvsr bench`, and of the machine.

    python -m zvsr.bench.cpu_per_op [--seconds 8] [--clients 2] [--window 64] [--fsync never] [--metrics]
        [--batch] [--get-share F] [--read-mode log|read_index|lease]

Starts a 3-replica cluster and a proxy (default timeouts, as `zvsr bench` does), drives it with the bench's
load generators, and reads /proc (Linux) around a window in the middle of the load: each process's user +
system CPU time (all its threads: libzmq's I/O thread included) per committed op, and the machine's split
into user, system, idle, softirq and steal. Unlike a sampling profiler, this counts CPU actually used: a
thread preempted inside a send is not charged for the wait. With ``--metrics`` every replica and the proxy
serve Prometheus /metrics, scraped once a second (runs with and without it price the metrics). With
``--get-share F`` that share of the requests are gets (the read mix of `zvsr.bench.read_mix`), served as the
cluster's ``--read-mode`` says; "committed ops" are then completed ops, gets included.

What it showed at 6de7d2c (docs/benchmarks.md): ~130-150 us of CPU per op in all (proxy ~40, primary ~35,
each backup ~20, each load generator ~10), with a third to a half of the two CPUs idle. The stages of one
batch run one after another (proxy, primary, backups, primary, proxy), so the chain, not the total, bounds
throughput; more requests in flight barely raise it (2 x 128: no change; 2 x 256: +15%).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from zvsr.bench.loadgen import share
from zvsr.bench.procs import Children
from zvsr.bench.runner import pipelined_zvsr_load, zvsr_cluster
from zvsr.constants import READ_MODE_DEFAULT, READ_MODES

_TICKS_S = os.sysconf("SC_CLK_TCK")
_MACHINE_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of `pid` (all threads), or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS_S  # utime, stime (proc(5), counted after the name)


def machine_ticks() -> list[int]:
    return [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def descendants() -> set[int]:
    """Every process below this one (the cluster, the proxy, the load generators), and no one else's: other
    zvsr processes on a shared machine (another cluster, another bench) must not be charged to this run."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found: set[int] = set()
    frontier = [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in found]
        found.update(children)
        frontier += children
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--fsync", choices=("always", "never"), default="never")
    parser.add_argument("--metrics", action="store_true", help="serve /metrics, scraped once a second")
    parser.add_argument("--batch", action="store_true", help="load generators send RequestBatches")
    parser.add_argument("--get-share", type=share, default=0.0, help="share of requests that are gets (0..1)")
    parser.add_argument("--read-mode", choices=READ_MODES, default=READ_MODE_DEFAULT, help="how gets are served")
    arguments = parser.parse_args()
    if not Path("/proc/stat").exists():
        print("needs Linux /proc", file=sys.stderr)
        return 1
    samples: dict[str, tuple[float, list[int], dict[int, float]]] = {}

    def sample(name: str) -> None:
        cpu = {pid: used for pid in descendants() if (used := process_cpu_s(pid)) is not None}
        samples[name] = (time.monotonic(), machine_ticks(), cpu)

    def sampler() -> None:
        time.sleep(1.5)  # load generators started, warm-up (1 s) done
        sample("start")
        time.sleep(max(1.0, arguments.seconds - 1.0))
        sample("end")

    with tempfile.TemporaryDirectory(prefix="zvsr-cpu-") as work:
        root = Path(work)
        cluster_context = zvsr_cluster(
            root / "cluster", fsync=arguments.fsync, metrics=arguments.metrics, read_mode=arguments.read_mode
        )
        with cluster_context as cluster, Children(root) as children:
            primary = cluster.wait_for_primary(timeout_s=30)
            assert cluster.proxy is not None
            names = {child.pid: f"replica {index}" for index, child in cluster.nodes.items()}
            names[cluster.nodes[primary].pid] += " (primary)"
            names[cluster.proxy.pid] = "proxy"
            thread = threading.Thread(target=sampler)
            thread.start()
            load = pipelined_zvsr_load(
                children,
                cluster,
                clients=arguments.clients,
                window=arguments.window,
                warmup_s=1.0,
                duration_s=arguments.seconds,
                batch=arguments.batch,
                get_share=arguments.get_share,
            )
            thread.join()
    (t0, ticks0, cpu0), (t1, ticks1, cpu1) = samples["start"], samples["end"]
    elapsed = t1 - t0
    ops = load.ops_s * elapsed
    print(f"{load.ops_s:,.0f} committed ops/s ({arguments.clients} x {arguments.window} in flight)")
    machine = [(after - before) / _TICKS_S / elapsed * 100 for before, after in zip(ticks0, ticks1, strict=True)]
    shares = zip(_MACHINE_FIELDS, machine, strict=True)
    print("machine: " + ", ".join(f"{name} {share:.0f}%" for name, share in shares))
    total = cluster_total = 0.0
    for pid, after in sorted(cpu1.items(), key=lambda item: names.get(item[0], "~")):
        used = after - cpu0.get(pid, after)
        total += used
        if pid in names:
            cluster_total += used
        name = names.get(pid, "load generator")
        print(f"  {name:24} {used / elapsed * 100:5.1f}% CPU  {used / ops * 1e6:6.1f} us/op")
    cluster_share = cluster_total / elapsed * 100
    print(f"  {'cluster (replicas+proxy)':24} {cluster_share:5.1f}% CPU  {cluster_total / ops * 1e6:6.1f} us/op")
    print(f"  {'all':24} {total / elapsed * 100:5.1f}% CPU  {total / ops * 1e6:6.1f} us/op")
    return 0


if __name__ == "__main__":
    sys.exit(main())
