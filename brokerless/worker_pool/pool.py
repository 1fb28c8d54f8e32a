"""Run the whole pool on this machine — the journal, the job queue and N workers, as processes — then check it.

    python -m brokerless.worker_pool.pool [--proxy tcp://127.0.0.1:7700] [--workers 4] [--jobs 500]
        [--lease-s 5] [--work-ms 20] [--stall WORKER:JOB:SECONDS] [--crash WORKER:JOB] [--json]

Starts store.py and jobs.py, then workers w1..wN (worker.py), and waits until the queue has run dry and every
worker has exited. Then it reads the journal and checks it: every job handed out is in exactly one slot, no
slot was written twice, and the journal served requests in fencing-token order (store.verify). It prints a
summary — or, with --json, one JSON document on stdout (the processes' logs go to stderr) — and exits 0 if all
of that holds, 1 if not.

`--jobs 0` hands out jobs until you stop the pool. Ctrl-C or SIGTERM closes the queue; the workers finish the
job in hand and exit, and the pool checks what was done. `--stall 2:5:8` pauses w2 (SIGSTOP, keepalives
included) for 8 s inside the critical section of its 5th job, long enough (with the default 5 s lease) for its
lease to expire and another worker to take the lock: watch the journal refuse w2's stale write, and w2 do the
job again under a new token and a new lease. `--crash 3:4` kills w3 (SIGKILL) inside the critical section of
its 4th job, holding the lock: its lease expires and the lock goes to the next worker. That job is lost with
its worker (the queue hands out each job once): the report lists it under `crashed`, not as missing.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from brokerless.worker_pool.store import request, verify

DEFAULT_STORE = "tcp://127.0.0.1:5560"
DEFAULT_JOBS = "tcp://127.0.0.1:5561"


def _spawn(module: str, *arguments: str) -> subprocess.Popen[bytes]:
    # Logs go to stderr, so that --json output on stdout stays one document.
    return subprocess.Popen(
        [sys.executable, "-m", f"brokerless.worker_pool.{module}", *arguments], stdout=sys.stderr.fileno()
    )


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    # The children start with SIGINT ignored: Ctrl-C in the terminal reaches the whole process group, and the
    # journal and the queue must outlive the workers' last jobs. (The workers install their own handler.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    services = [
        _spawn("store", "--endpoint", arguments.store_endpoint),
        _spawn("jobs", "--endpoint", arguments.jobs_endpoint, "--jobs", str(arguments.jobs)),
    ]
    stall: dict[str, str] = {}
    if arguments.stall:
        stall = dict(zip(("worker", "job", "seconds"), arguments.stall.split(":"), strict=True))
    crash: dict[str, str] = {}
    if arguments.crash:
        crash = dict(zip(("worker", "job"), arguments.crash.split(":"), strict=True))
    workers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for number in range(1, arguments.workers + 1):
            name = f"w{number}"
            extra: list[str] = []
            if stall.get("worker") == str(number):
                extra = ["--stall-at-job", stall["job"], "--stall-s", stall["seconds"]]
            if crash.get("worker") == str(number):
                extra += ["--crash-at-job", crash["job"]]
            workers[name] = _spawn(
                "worker",
                "--name", name,
                "--proxy", arguments.proxy,
                "--store", arguments.store_endpoint,
                "--jobs", arguments.jobs_endpoint,
                "--lease-s", str(arguments.lease_s),
                "--work-ms", str(arguments.work_ms),
                *extra,
            )  # fmt: skip
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        closed = False
        last_progress = time.monotonic()
        while any(worker.poll() is None for worker in workers.values()):
            if stopping and not closed:
                print("pool: stopping: closing the queue; the workers finish the job in hand", file=sys.stderr)
                request(arguments.jobs_endpoint, {"cmd": "close"})
                closed = True
            if time.monotonic() - last_progress >= 2:
                last_progress = time.monotonic()
                stats = request(arguments.jobs_endpoint, {"cmd": "stats"})
                print(f"pool: {stats['handed_out']} jobs handed out", file=sys.stderr, flush=True)
            time.sleep(0.1)
        dump = request(arguments.store_endpoint, {"cmd": "dump"}, timeout_ms=30_000)
        stats = request(arguments.jobs_endpoint, {"cmd": "stats"})
    finally:
        for process in [*workers.values(), *services]:
            if process.poll() is None:
                process.terminate()
        for process in [*workers.values(), *services]:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    report = verify(dump)
    written = set(report.pop("jobs"))
    handed_out = set(range(1, stats["handed_out"] + 1))
    report["handed_out"] = stats["handed_out"]
    report["by_worker"] = stats["by_worker"]
    # A worker told to crash died (SIGKILL) with its last job, which is lost with it; any other exit is a failure.
    crashed = {f"w{crash['worker']}"} if crash else set()
    report["crashed"] = {
        name: stats["last_job"].get(name) for name in crashed if workers[name].returncode == -signal.SIGKILL
    }
    report["missing_jobs"] = sorted(handed_out - written - set(report["crashed"].values()))
    report["unknown_jobs"] = sorted(written - handed_out)
    report["worker_exit_codes"] = {name: worker.returncode for name, worker in workers.items()}
    failed = {name: code for name, code in report["worker_exit_codes"].items() if code != 0}
    if report["missing_jobs"]:
        report["problems"].append(f"jobs handed out but not in the journal: {report['missing_jobs'][:20]}")
    if report["unknown_jobs"]:
        report["problems"].append(f"jobs in the journal that were never handed out: {report['unknown_jobs'][:20]}")
    if failed.keys() - report["crashed"].keys():
        report["problems"].append(f"workers failed: {report['worker_exit_codes']}")
    if crashed - report["crashed"].keys():
        report["problems"].append(f"{sorted(crashed)} told to crash, yet exited {report['worker_exit_codes']}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--proxy", default="tcp://127.0.0.1:7700", help="zvsr proxy (default tcp://127.0.0.1:7700)"
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=500, help="jobs to hand out (default 500; 0: until stopped)")
    parser.add_argument("--lease-s", type=float, default=5.0, help="the ttl of each worker's lease")
    parser.add_argument("--work-ms", type=int, default=20, help="time each job takes")
    parser.add_argument("--stall", default="", metavar="WORKER:JOB:SECONDS", help="e.g. 2:5:8, see above")
    parser.add_argument("--crash", default="", metavar="WORKER:JOB", help="e.g. 3:4, see above")
    parser.add_argument("--store-endpoint", default=DEFAULT_STORE, help=f"default {DEFAULT_STORE}")
    parser.add_argument("--jobs-endpoint", default=DEFAULT_JOBS, help=f"default {DEFAULT_JOBS}")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    arguments = parser.parse_args(argv)
    report = run(arguments)
    if arguments.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['handed_out']} jobs handed out, {report['slots']} written under {report['tokens']} fencing "
            f"tokens; {report['refused']} stale request(s) refused by the journal"
        )
        for writer, record in report["refused_writes"]:
            print(f"  refused: {writer}'s stale write of job {record.get('job')}")
        for name, job in report["crashed"].items():
            print(f"  crashed: {name}, with job {job} (lost with it; its lock was freed when its lease expired)")
        print("problems: " + ("; ".join(report["problems"]) if report["problems"] else "none"))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
