"""A worker of the pool: takes jobs from the queue, does them in parallel with the others, and writes each
result to the shared journal one worker at a time — under a zvsr lock, fenced by the lock's token.

    python -m brokerless.worker_pool.worker --name w1 [--proxy tcp://127.0.0.1:7700]
        [--store tcp://127.0.0.1:5560] [--jobs tcp://127.0.0.1:5561] [--lease-s 5] [--work-ms 20]

For each job: ask the queue (REQ) for it, compute the result (`--work-ms` stands in for real work), then

1. **acquire** the lock ``pool/journal-writer`` with an owner name unique to this acquisition
   (``w1/3fa9c2-17``). The answer carries the fencing token: a number no earlier grant of any zvsr lock had;
2. **critical section**: ask the journal's length and write the next slot, sending the token with both
   requests (store.py refuses a token older than one it has seen);
3. **release** the lock. If the journal refused us — someone newer holds the lock, see below — do the
   critical section again from step 1; the job is never lost and never written twice.

zvsr locks have no lease (the replicated app cannot read a clock), so a holder that dies or hangs would hold the
lock for ever. Workers waiting for it therefore watch the holder: the `lock` answer names the holder and its
token, and when the same acquisition has held the lock for more than `--lease-s` seconds of this worker's
clock, it **breaks** the lock — `unlock` with the holder's owner name, then `lock` for itself, which grants a
new, higher token. (Breaking names one acquisition, so it can never release a later one by mistake.)

Breaking is only safe because of the fence: the holder we gave up on may be merely slow — paused by the
scheduler, a long GC, a stuck disk (``--stall-at-job``/``--stall-s`` simulate one) — and wake up believing it
still holds the lock. Its next request to the journal carries its old token and is refused, because the new
holder's first request raised the journal's highest token. Two holders may *believe* they hold the lock at
once; the journal only ever serves one of them.

Waiting counts only prompt answers: a `lock` call that took longer than `PROMPT_S` (the cluster was failing
over, or overloaded) restarts the watch, so losing the zvsr primary does not make every holder look dead. The
zvsr client itself rides out the failover: it re-sends the *same* request (same client_id and request
number), which the cluster executes at most once, so a retried `lock` cannot grant twice and a retried
`unlock` cannot release someone else's lock.

SIGTERM or Ctrl-C: finish the job in hand (written, or refused and re-done), then exit.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import secrets
import signal
import sys
import time
from types import FrameType
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq

from zvsr.client import Client, ZvsrError

LOCK = "pool/journal-writer"
PROMPT_S = 0.5  # a lock answer slower than this does not count towards the lease
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
    ) -> None:
        self.name = name
        self.incarnation = secrets.token_hex(3)  # owner names stay unique across restarts of this worker
        self.lease_s = lease_s
        self.work_ms = work_ms
        self.stall_at_job = stall_at_job
        self.stall_s = stall_s
        self.stopping = False
        self.jobs_taken = 0
        self.acquisitions = 0
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.zvsr = Client(proxy, timeout_ms=10_000)
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

    def acquire(self) -> tuple[str, int]:
        """Take the lock (breaking a holder that stopped making progress): (our owner name, fencing token)."""
        self.acquisitions += 1
        owner = f"{self.name}/{self.incarnation}-{self.acquisitions}"
        watched: tuple[str, int] | None = None  # the acquisition we are watching, and since when
        since = 0.0
        pause = POLL_MIN_S
        while True:
            sent = time.monotonic()
            try:
                lock = self.zvsr.lock(LOCK, owner)
            except ZvsrError as error:  # Timeout or Unavailable: try again; the same owner name is re-entrant
                self.log(f"lock: {error.code}: {error}")
                watched = None
                time.sleep(POLL_MAX_S)
                continue
            if lock.ok:
                return owner, lock.token
            answered = time.monotonic()
            holder = (lock.owner, lock.token)
            if holder != watched or answered - sent > PROMPT_S:
                watched, since = holder, answered
            elif sent - since > self.lease_s:  # it held the lock at least from `since` to `sent`
                self.log(f"breaking the lock of {lock.owner} (token {lock.token}): held for {sent - since:.1f} s")
                self.release(lock.owner)
                watched = None
                pause = POLL_MIN_S
                continue
            time.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(2 * pause, POLL_MAX_S)

    def release(self, owner: str) -> bool:
        """Unlock for `owner`; whether it still held the lock."""
        while True:
            try:
                return self.zvsr.unlock(LOCK, owner)
            except ZvsrError as error:  # a retry is safe: unlock by name only releases that acquisition
                self.log(f"unlock: {error.code}: {error}")
                time.sleep(POLL_MAX_S)

    def critical_section(self, token: int, job: dict[str, Any], result: str, first_try: bool) -> bool:
        """Append the result to the journal with our token; False if the journal refused the token."""
        length = _ask(self.store, {"cmd": "length", "token": token, "writer": self.name})
        if not length.get("ok"):
            self.log(f"job {job['job']}: fenced out before writing (token {token} < {length.get('highest')})")
            return False
        if first_try and self.jobs_taken == self.stall_at_job:
            self.log(f"job {job['job']}: stalling {self.stall_s} s inside the critical section (token {token})")
            time.sleep(self.stall_s)
        record = {"job": job["job"], "result": result, "worker": self.name}
        written = _ask(
            self.store,
            {"cmd": "write", "token": token, "writer": self.name, "slot": length["length"], "record": record},
        )
        if not written.get("ok"):
            self.log(f"job {job['job']}: write refused, token {token} < {written.get('highest')}: doing it again")
            return False
        return True

    def deliver(self, job: dict[str, Any], result: str) -> None:
        first_try = True
        while True:
            owner, token = self.acquire()
            try:
                written = self.critical_section(token, job, result, first_try)
            finally:
                still_held = self.release(owner)
            if written:
                if not still_held:
                    self.log(f"job {job['job']}: written, but the lock had been broken meanwhile (token {token})")
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
            self.zvsr.close()
            self.store.close()
            self.queue.close()
        self.log(f"done: {self.jobs_taken} jobs")
        return 0

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True


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
    parser.add_argument("--lease-s", type=float, default=5.0, help="break a lock held this long (default 5)")
    parser.add_argument("--work-ms", type=int, default=20, help="time each job takes (default 20)")
    parser.add_argument("--stall-at-job", type=int, default=0, help="stall in the critical section of job N")
    parser.add_argument("--stall-s", type=float, default=0.0, help="for this long")
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
    )
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
