"""Memory and disk under a long steady load: do replica RSS and data-dir size stay flat after warm-up?

    python -m zvsr.bench.steady_state --ops 1000000 [--fsync always|never] [--sessions 64] [--json out.json]

Starts a local 3-replica cluster and a proxy (real processes, `zvsr.runtime.processes`), drives it with the
benchmark load generator (`zvsr.bench.loadgen`: W client sessions pipelined through the proxy, each a put of a
32-byte value to its own key) in windows of `--window-s` seconds, and after each window samples every
replica's RSS (``VmRSS`` of /proc/<pid>/status), its data directory's size, its commit number and its log
range (status query). It stops once the primary's commit number reaches `--ops`.

What "flat" means here: the app state is small and fixed (one key per session), so everything that could grow
with history — the in-memory log, the WAL, the snapshots, DoViewChange/StartView payloads — must stop growing
once the first snapshots have been taken. The script prints the samples, then the change of each figure
between the sample at 10 % of the ops (after warm-up) and the last one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from zvsr import constants as c
from zvsr.runtime.processes import process_cluster


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1_000_000)
    parser.add_argument("--fsync", choices=("always", "never"), default="always")
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--snapshot-interval", type=int, default=c.SNAPSHOT_INTERVAL_OPS)
    parser.add_argument("--json", dest="json_path", default=None)
    arguments = parser.parse_args()
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="zvsr-steady-") as root, process_cluster(
        Path(root), fsync=arguments.fsync, snapshot_interval_ops=arguments.snapshot_interval
    ) as cluster:
        cluster.wait_for_primary()
        started = time.monotonic()
        while True:
            load = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "zvsr.bench.loadgen",
                    "--endpoint",
                    cluster.config.proxy,
                    "--sessions",
                    str(arguments.sessions),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert load.stdout is not None and load.stdin is not None
            assert load.stdout.readline().strip() == "ready"
            now = time.monotonic()
            load.stdin.write(f"go {now} {now + arguments.window_s}\n")
            load.stdin.flush()
            result = json.loads(load.stdout.read())
            load.wait(timeout=60)
            statuses = cluster.statuses(timeout_ms=2000)
            commit = max((s["commit_number"] for s in statuses.values()), default=0)
            sample = {
                "elapsed_s": round(time.monotonic() - started, 1),
                "ops_per_s": round(result["completed"] / result["window_s"]),
                "commit_number": commit,
                "views": sorted({s["view"] for s in statuses.values()}),
                "replicas": {
                    index: {
                        "rss_kib": rss_kib(cluster.nodes[index].pid),
                        "data_bytes": directory_bytes(cluster.root / "data" / f"replica-{index}"),
                        "log_ops": s["log_last_op"] - s["log_first_op"] + 1 if s["log_first_op"] else 0,
                        "snapshot_op": s["snapshot_op"],
                    }
                    for index, s in sorted(statuses.items())
                },
            }
            samples.append(sample)
            replicas = sample["replicas"]
            print(
                f"{sample['elapsed_s']:>7}s ops={commit:>8} {sample['ops_per_s']:>6}/s "
                + " ".join(
                    f"r{i}: rss={r['rss_kib'] // 1024}MiB disk={r['data_bytes'] // 1024}KiB log={r['log_ops']}"
                    for i, r in replicas.items()
                ),
                flush=True,
            )
            if commit >= arguments.ops:
                break
    warm = next(s for s in samples if s["commit_number"] >= arguments.ops // 10)
    last = samples[-1]
    print(f"\nfrom op {warm['commit_number']} to op {last['commit_number']}:")
    summary = {}
    for index in last["replicas"]:
        before, after = warm["replicas"][index], last["replicas"][index]
        summary[index] = {key: [before[key], after[key]] for key in ("rss_kib", "data_bytes", "log_ops")}
        print(
            f"  r{index}: RSS {before['rss_kib'] / 1024:.1f} -> {after['rss_kib'] / 1024:.1f} MiB, "
            f"data dir {before['data_bytes'] / 1e6:.2f} -> {after['data_bytes'] / 1e6:.2f} MB, "
            f"log {before['log_ops']} -> {after['log_ops']} ops"
        )
    if arguments.json_path:
        Path(arguments.json_path).write_text(json.dumps({"samples": samples, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
