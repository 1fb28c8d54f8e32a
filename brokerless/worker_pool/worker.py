"""A worker of the pool: takes jobs from the queue, does them in parallel with the others, and writes each
result to the shared journal one worker at a time — under a zvsr lock held with a lease, fenced by the lock's
token.

    python -m brokerless.worker_pool.worker --name w1 [--proxy tcp://127.0.0.1:7700]
        [--store tcp://127.0.0.1:5560] [--jobs tcp://127.0.0.1:5561] [--lease-s 5] [--work-ms 20]

The worker holds one zvsr lease for as long as it runs (`Client.lease`: granted at start, kept alive every
`--lease-s`/3 by a background thread, revoked at exit). For each job: ask the queue (REQ) for it, compute the
result (`--work-ms` stands in for real work), then

1. **acquire** the lock ``pool/journal-writer`` for this worker, attached to its lease. The answer carries the
   fencing token: a number no earlier grant of any zvsr lock had. While another worker holds the lock, poll;
2. **critical section**: ask the journal's length and write the next slot, sending the token with both
   requests (store.py refuses a token older than one it has seen);
3. **release** the lock. If the journal refused us — someone newer holds the lock, see below — do the
   critical section again from step 1; the job is never lost and never written twice.

A worker that dies holding the lock does not hold it for ever, and nobody has to guess that it died: its lease
stops being kept alive and **expires through the log** — the zvsr primary proposes the expiry when the lease's
deadline has passed in cluster time, every replica applies it at the same point, and the lock is free for the
next worker, with a larger token. No worker ever releases another's lock.

The fence still matters, because a lease only says when the *cluster* stops counting the holder in. A holder
that is merely paused — a long GC, the scheduler, a stuck disk, SIGSTOP (``--stall-at-job``/``--stall-s``
stop this whole process, keepalive thread included) — can outlive its lease without noticing and wake up
believing it holds the lock, with the length it read before the pause. Checking `valid_for()` before acting
cannot close that window: the pause can come right after the check. Its next request to the journal carries
its old token and is refused, because the new holder's first request raised the journal's highest token. Two
holders may *believe* they hold the lock at once; the journal only ever serves one of them.

The zvsr client rides out a failover of the zvsr primary: it re-sends the *same* request (same client_id and
request number), which the cluster executes at most once, so a retried `lock` cannot grant twice and a retried
`unlock` cannot release a lock taken since. A new primary gives every lease a whole ttl before it can expire
one, so the failover alone does not take a live worker's lock away.

SIGTERM or Ctrl-C: finish the job in hand (written, or refused and re-done), then exit.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq

from zvsr.client import Client, Lease, LeaseNotFound, ZvsrError

LOCK = "pool/journal-writer"
POLL_MIN_S = 0.005
POLL_MAX_S = 0.05
DEFAULT_PROXY = "tcp://127.0.0.1:7700"
DEFAULT_STORE = "tcp://127.0.0.1:5560"
DEFAULT_JOBS = "tcp://127.0.0.1:5561"
LOCAL_TIMEOUT_MS = 10_000  # the queue and the journal are local services: no answer means they are gone


class Worker:
    def __init__(
        self,
        name: str,
        *,
        proxy: str,
        store: str,
        jobs: str,
        lease_s: float,
        work_ms: int,
        stall_at_job: int = 0,
        stall_s: float = 0.0,
        crash_at_job: int = 0,
    ) -> None:
        self.name = name
        self.owner = f"{name}/{secrets.token_hex(3)}"  # unique across restarts of this worker
        self.lease_s = lease_s
        self.work_ms = work_ms
        self.stall_at_job = stall_at_job
        self.stall_s = stall_s
        self.crash_at_job = crash_at_job
        self.stopping = False
        self.jobs_taken = 0
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.zvsr = Client(proxy, timeout_ms=10_000)
        self.lease: Lease | None = None
        self.store = _connect(context, store)
        self.queue = _connect(context, jobs)

    def log(self, text: str) -> None:
        print(f"{self.name}: {text}", flush=True)

    # --- the pool's ordinary ZeroMQ parts ---

    def next_job(self) -> dict[str, Any] | None:
        reply = _ask(self.queue, {"cmd": "next", "worker": self.name})
        return reply if reply.get("job") is not None else None

    def work(self, job: dict[str, Any]) -> str:
        time.sleep(self.work_ms / 1000)  # stands in for the real work
        return hashlib.sha256(f"job {job['input']}".encode()).hexdigest()[:16]

    # --- the coordination ---

    def live_lease(self) -> Lease:
        """This worker's lease, granted anew if the one it had is gone or can no longer be counted on."""
        if self.lease is not None and self.lease.valid_for() > 0:
            return self.lease
        if self.lease is not None:
            self.log(f"lease {self.lease.id} can no longer be counted on: granting a new one")
            self.drop_lease()
        while True:
            try:
                self.lease = self.zvsr.lease(self.lease_s).start()
                return self.lease
            except ZvsrError as error:  # Timeout or Unavailable: the cluster is failing over; try again
                self.log(f"lease_grant: {error.code}: {error}")
                time.sleep(POLL_MAX_S)

    def drop_lease(self) -> None:
        """Stop keeping the lease alive and revoke it (the cluster may still count it: that frees its lock)."""
        if self.lease is not None:
            self.lease.close()
            self.lease = None

    def acquire(self) -> int:
        """Take the lock with this worker's lease, waiting while another worker holds it: the fencing token."""
        pause = POLL_MIN_S
        waited_for: tuple[str | None, int] | None = None  # the holder we saw, while we wait
        since = time.monotonic()
        while True:
            lease = self.live_lease()
            try:
                lock = self.zvsr.lock(LOCK, self.owner, lease=lease.id)
            except LeaseNotFound:  # it ended between the check and the lock: a new lease, then again
                self.drop_lease()
                continue
            except ZvsrError as error:  # Timeout or Unavailable: try again; a lock by its owner is re-entrant
                self.log(f"lock: {error.code}: {error}")
                time.sleep(POLL_MAX_S)
                continue
            if lock.ok:
                waited = time.monotonic() - since
                if waited_for is not None and waited >= self.lease_s / 2:  # not the usual few milliseconds
                    holder, token = waited_for
                    self.log(
                        f"took the lock with token {lock.token} after {holder} (token {token}) held it for "
                        f"{waited:.1f} s while we waited: it let go, or its lease ended"
                    )
                return lock.token
            if lock.owner is None:  # a lock delay: nobody may take it for delay_ms
                time.sleep(lock.delay_ms / 1000)
                continue
            if waited_for is None or waited_for != (lock.owner, lock.token):
                waited_for, since = (lock.owner, lock.token), time.monotonic()
            time.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(2 * pause, POLL_MAX_S)

    def release(self) -> bool:
        """Unlock; whether this worker still held the lock."""
        while True:
            try:
                return self.zvsr.unlock(LOCK, self.owner)
            except ZvsrError as error:  # a retry is safe: unlock releases the lock only if we hold it
                self.log(f"unlock: {error.code}: {error}")
                time.sleep(POLL_MAX_S)

    def critical_section(self, token: int, job: dict[str, Any], result: str, first_try: bool) -> bool:
        """Append the result to the journal with our token; False if the journal refused the token."""
        length = _ask(self.store, {"cmd": "length", "token": token, "writer": self.name})
        if not length.get("ok"):
            self.log(f"job {job['job']}: fenced out before writing (token {token} < {length.get('highest')})")
            return False
        if first_try and self.jobs_taken == self.crash_at_job:
            self.crash(job, token)
        if first_try and self.jobs_taken == self.stall_at_job:
            self.log(
                f"job {job['job']}: pausing this process {self.stall_s} s in the critical section (token {token})"
            )
            _pause_process(self.stall_s)
            assert self.lease is not None
            self.log(f"job {job['job']}: resumed; the lease can be counted on for {self.lease.valid_for():.1f} s")
        record = {"job": job["job"], "result": result, "worker": self.name}
        written = _ask(
            self.store,
            {"cmd": "write", "token": token, "writer": self.name, "slot": length["length"], "record": record},
        )
        if not written.get("ok"):
            self.log(f"job {job['job']}: write refused, token {token} < {written.get('highest')}: doing it again")
            return False
        return True

    def crash(self, job: dict[str, Any], token: int) -> None:
        """Die holding the lock (SIGKILL: no unlock, no revoke), right after renewing the lease: the worst case,
        the lock stays unavailable for a whole ttl. (--crash-at-job, for the tests.)"""
        assert self.lease is not None
        remaining_ms = self.zvsr.lease_keepalive(self.lease.id)
        self.log(
            f"job {job['job']}: dying with the lock (token {token}, lease {self.lease.id}, {remaining_ms} ms)"
        )
        os.kill(os.getpid(), signal.SIGKILL)

    def deliver(self, job: dict[str, Any], result: str) -> None:
        first_try = True
        while True:
            token = self.acquire()
            try:
                written = self.critical_section(token, job, result, first_try)
            finally:
                still_held = self.release()
            if written:
                if not still_held:
                    self.log(f"job {job['job']}: written, but the lock had moved on meanwhile (token {token})")
                return
            first_try = False

    def run(self) -> int:
        self.log(f"started (lease {self.lease_s} s)")
        try:
            while not self.stopping:
                job = self.next_job()
                if job is None:
                    break
                self.jobs_taken += 1
                self.deliver(job, self.work(job))
        finally:
            self.drop_lease()  # revoked: nothing of ours lingers until the lease would have expired
            self.zvsr.close()
            self.store.close()
            self.queue.close()
        self.log(f"done: {self.jobs_taken} jobs")
        return 0

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True


def _pause_process(seconds: float) -> None:
    """Stop this whole process — every thread, the lease's keepalives too — for `seconds`, as a long GC pause, the
    scheduler or a stuck disk would: a helper process sends SIGCONT when the time is up."""
    wake_up = (
        "import os, signal, sys, time; time.sleep(float(sys.argv[2])); os.kill(int(sys.argv[1]), signal.SIGCONT)"
    )
    helper = subprocess.Popen([sys.executable, "-c", wake_up, str(os.getpid()), str(seconds)])
    os.kill(os.getpid(), signal.SIGSTOP)
    helper.wait()


def _connect(context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> zmq.Socket[bytes]:
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint)
    return socket


def _ask(socket: zmq.Socket[bytes], message: dict[str, Any]) -> dict[str, Any]:
    socket.send(msgpack.packb(message, use_bin_type=True))
    if not socket.poll(LOCAL_TIMEOUT_MS, zmq.POLLIN):
        raise SystemExit(f"no answer from {socket.getsockopt_string(zmq.LAST_ENDPOINT)} to {message['cmd']}")
    reply: dict[str, Any] = msgpack.unpackb(socket.recv(), raw=False)
    if "error" in reply:
        raise SystemExit(f"{message['cmd']}: {reply['error']}: {reply.get('message')}")
    return reply


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="this worker's name, e.g. w1")
    parser.add_argument("--proxy", default=DEFAULT_PROXY, help=f"zvsr proxy (default {DEFAULT_PROXY})")
    parser.add_argument("--store", default=DEFAULT_STORE, help=f"the journal (default {DEFAULT_STORE})")
    parser.add_argument("--jobs", default=DEFAULT_JOBS, help=f"the job queue (default {DEFAULT_JOBS})")
    parser.add_argument("--lease-s", type=float, default=5.0, help="this worker's lease ttl (default 5)")
    parser.add_argument("--work-ms", type=int, default=20, help="time each job takes (default 20)")
    parser.add_argument("--stall-at-job", type=int, default=0, help="pause in the critical section of job N")
    parser.add_argument("--stall-s", type=float, default=0.0, help="for this long (SIGSTOP, then SIGCONT)")
    parser.add_argument("--crash-at-job", type=int, default=0, help="die (SIGKILL) holding the lock, job N")
    arguments = parser.parse_args(argv)
    worker = Worker(
        arguments.name,
        proxy=arguments.proxy,
        store=arguments.store,
        jobs=arguments.jobs,
        lease_s=arguments.lease_s,
        work_ms=arguments.work_ms,
        stall_at_job=arguments.stall_at_job,
        stall_s=arguments.stall_s,
        crash_at_job=arguments.crash_at_job,
    )
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
