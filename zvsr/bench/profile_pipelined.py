"""Profile the primary, a backup and the proxy under the pipelined load of `zvsr bench`, with py-spy.

    pip install py-spy
    python -m zvsr.bench.profile_pipelined [--seconds 15] [--clients 2] [--window 64] [--fsync never]
        [--batch] [--get-share F] [--read-mode log|read_index|lease] [--out DIR]

Starts a 3-replica cluster and a proxy (as `zvsr bench` does: default timeouts), drives it with the bench's
load generators (`zvsr.bench.loadgen`), samples the primary's, a backup's and the proxy's Python stacks with
``py-spy record --format raw`` while the load runs (`--native` off; the GIL-holding Python frames are what we
can change), and prints for each process the functions with the most samples on top of the stack ("self")
and anywhere on the stack ("total"), as percentages of that process's samples. The collapsed stacks are kept
in --out (default: a temporary directory) for flame graphs (e.g. speedscope, flamegraph.pl). ``--get-share`` and
``--read-mode`` profile the read mix instead (as `zvsr.bench.cpu_per_op`).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zvsr.bench.loadgen import share
from zvsr.bench.procs import Children
from zvsr.bench.runner import pipelined_zvsr_load, zvsr_cluster
from zvsr.constants import READ_MODE_DEFAULT, READ_MODES


def summarise(collapsed: Path, top: int) -> str:
    """Self and total sample shares per function, and who calls the hottest leaf functions."""
    self_samples: collections.Counter[str] = collections.Counter()
    total_samples: collections.Counter[str] = collections.Counter()
    callers: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in (_short(frame) for frame in stack.split(";")) if frame]
        if not frames:
            continue
        samples += count
        self_samples[frames[-1]] += count
        if len(frames) > 1:
            callers[frames[-1]][frames[-2]] += count
        for frame in set(frames):
            total_samples[frame] += count
    if samples == 0:
        return "  no samples"
    share = 100 / samples
    lines = [f"  {samples} samples (busy only: py-spy leaves out idle waits)", "  self%  function"]
    for name, n in self_samples.most_common(top):
        lines.append(f"  {n * share:5.1f}  {name}")
        if n * share >= 5:
            lines += [f"           {m * share:5.1f} from {caller}" for caller, m in callers[name].most_common(4)]
    # Frames on (almost) every stack are the run loop and its launchers: no news, left out.
    lines += ["  total%  function (frames on >= 90% of the stacks left out)"]
    shown = [(name, n) for name, n in total_samples.most_common() if n * share < 90][:top]
    lines += [f"  {n * share:5.1f}   {name}" for name, n in shown]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """py-spy's ``function (path/to/file.py:line)`` -> ``function (file.py)``, lines merged."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    marker = "/zvsr/"
    if marker in path:
        path = "zvsr/" + path.rsplit(marker, 1)[1]
    else:
        path = path.rsplit("/", 1)[-1]
    return f"{name} ({path})" if path else name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--fsync", choices=("always", "never"), default="never")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--batch", action="store_true", help="load generators send RequestBatches")
    parser.add_argument("--get-share", type=share, default=0.0, help="share of requests that are gets (0..1)")
    parser.add_argument("--read-mode", choices=READ_MODES, default=READ_MODE_DEFAULT, help="how gets are served")
    parser.add_argument("--out", default=None)
    arguments = parser.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 1
    out = Path(arguments.out) if arguments.out else Path(tempfile.mkdtemp(prefix="zvsr-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zvsr-profile-work-") as work:
        root = Path(work)
        cluster_context = zvsr_cluster(root / "cluster", fsync=arguments.fsync, read_mode=arguments.read_mode)
        with cluster_context as cluster, Children(root) as children:
            primary = cluster.wait_for_primary(timeout_s=30)
            assert cluster.proxy is not None
            backup = (primary + 1) % len(cluster.nodes)
            targets = {"primary": cluster.nodes[primary].pid, "backup": cluster.nodes[backup].pid}
            targets["proxy"] = cluster.proxy.pid
            recorders = {
                name: subprocess.Popen(
                    [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--nonblocking"]
                    + ["--duration", str(int(arguments.seconds)), "--output", str(out / f"{name}.txt")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for name, pid in targets.items()
            }
            time.sleep(0.5)
            load = pipelined_zvsr_load(
                children,
                cluster,
                clients=arguments.clients,
                window=arguments.window,
                warmup_s=0.5,
                duration_s=arguments.seconds,
                batch=arguments.batch,
                get_share=arguments.get_share,
            )
            for name, recorder in recorders.items():
                _, error = recorder.communicate(timeout=60)
                if recorder.returncode != 0:
                    print(f"py-spy on the {name} failed: {error.strip()[-500:]}", file=sys.stderr)
    in_flight = f"{arguments.clients} x {arguments.window} in flight"
    mix = f", {arguments.get_share:.0%} gets, read_mode {arguments.read_mode}" if arguments.get_share else ""
    print(f"pipelined load: {load.ops_s:,.0f} completed ops/s ({in_flight}, --fsync {arguments.fsync}{mix})")
    for name in targets:
        path = out / f"{name}.txt"
        print(f"\n{name} ({path}):")
        print(summarise(path, arguments.top) if path.exists() else "  no profile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
