"""The load generator: W client sessions in flight over raw DEALERs (one by default), run as its own process.

`python -m zvsr.bench.loadgen --endpoint E --mode zvsr|raw --sessions W` prints ``ready``, reads one line
``go <start> <end>`` (two `time.monotonic()` instants: CLOCK_MONOTONIC is system-wide, so the driver and every
load generator share it), sends until ``end`` and prints one JSON object: what completed inside
``[start, end)`` and, with ``--latencies``, every round-trip time of those completions in microseconds.

Mode ``zvsr`` is an honest client of the protocol (docs/protocol.md §4-5): each session is registered through
the log first (a register per session, all in flight at once, before the load starts), then is one client_id
(its session id) with request numbers 1, 2, … and exactly one request outstanding; a completion is a `Reply`
(type 21) naming that client_id and the outstanding request_number, i.e. a committed, executed operation. An
`Error` re-sends the same request (same numbers: at most once) after `RETRY_PAUSE_S`; an answer for another
number is counted as stale and ignored; a request without any answer for `RESEND_AFTER_S` is re-sent. W in
flight is W sessions, because a session may have only one request outstanding.

Mode ``raw`` sends the very same bytes to an echo server (directly or through the raw forwarder,
`zvsr.bench.raw`) and counts the echo (the same Request map, type 20) as the completion: the same work on the
client side, so a ratio between the two modes compares what lies behind the endpoint.

The operation is a coordination-app ``put`` of `VALUE_BYTES` bytes (``--value-bytes``) to a key per session;
the encoded Request is about 100 bytes. The garbage collector is off while the load runs (nothing here makes
cycles).

``--get-share F`` (0 by default: puts only): a read mix. Each request after a session's first is a ``get``
(read-only: with a cluster's read_mode read_index or lease the primary answers it without a log entry) with
probability F, drawn from one PRNG per load generator seeded with ``--seed``, else the session's usual put. A get
reads the session's own key, and the session's first request is always its put: so every get reads a key that
exists (a value of `VALUE_BYTES`, what a reader of this store expects back) without a round before the load, and
without a table of other sessions' keys (a get of any other key costs the primary the same lookup). Both ops are
encoded once per session. The result counts the completions of each kind (``completed_gets``,
``completed_puts``).

The requests of one wake-up (the answers just read let those sessions send their next) are sent back to back
at its end, each a message of its own, as an asynchronous client would.

``--batch``: a pipelining client. Those requests go as one RequestBatch (type 26, docs/protocol.md "Batches")
per connection instead; the proxy then answers in ReplyBatches, and an echo server echoes the batch, which is
read element by element either way.
``--connections K``: the sessions are spread over K DEALER connections (session i on connection i mod K);
with K = W, each session is a client of its own (the client-count curve of `zvsr.bench.curves`).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import math
import random
import secrets
import sys
import time
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import zmq

from zvsr.constants import CLIENT_MESSAGE_BYTES_MAX
from zvsr.wire.batch import TYPE_REPLY_BATCH, TYPE_REQUEST_BATCH, batches, encode_request_batch
from zvsr.wire.codec import TYPE_ERROR, TYPE_REPLY, TYPE_REQUEST

MODES: Final = ("zvsr", "raw")
VALUE_BYTES: Final = 32
RETRY_PAUSE_S: Final = 0.002
RESEND_AFTER_S: Final = 15.0
# Registering the sessions is not measured: it may take longer than a short window (a cluster that has just
# started answers `unavailable` until its primary has heard a quorum), so it has a deadline of its own.
REGISTER_TIMEOUT_S: Final = 30.0
_NOBLOCK: Final = int(zmq.NOBLOCK)


def operation(session: int, value_bytes: int = VALUE_BYTES) -> bytes:
    data: bytes = msgpack.packb(
        {"op": "put", "key": f"bench/{session}", "value": b"v" * value_bytes}, use_bin_type=True
    )
    return data


def get_operation(session: int) -> bytes:
    """The read of the key `operation(session)` writes."""
    data: bytes = msgpack.packb({"op": "get", "key": f"bench/{session}"}, use_bin_type=True)
    return data


def share(text: str) -> float:
    """An argparse type: a fraction from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


def request(client_id: int, request_number: int, op: bytes) -> bytes:
    data: bytes = msgpack.packb(
        {"type": TYPE_REQUEST, "client_id": client_id, "request_number": request_number, "operation": op},
        use_bin_type=True,
    )
    return data


def register_sessions(socket: zmq.Socket[bytes], count: int, *, until: float) -> list[int]:
    """Register `count` sessions through the log (docs/protocol.md §5, "Registration"); their session ids.
    Unanswered registers are re-sent every second (same nonces: a repeat is answered from the table)."""
    nonces = [secrets.randbits(64) or 1 for _ in range(count)]
    waiting = {nonce: request(nonce, 0, b"") for nonce in nonces}
    sessions: dict[int, int] = {}
    resend_at = 0.0
    while waiting:
        now = time.monotonic()
        if now >= until:
            raise RuntimeError(f"{len(waiting)} of {count} sessions could not register in time")
        if now >= resend_at:
            resend_at = now + 1.0
            for wire in waiting.values():
                try:
                    socket.send(wire, _NOBLOCK)
                except zmq.Again:  # not connected yet: the next round sends it
                    break
        if not socket.poll(100):
            continue
        while True:
            try:
                answer = msgpack.unpackb(socket.recv(_NOBLOCK), raw=False, strict_map_key=False)
            except zmq.Again:
                break
            except (ValueError, msgpack.UnpackException):
                continue
            nonce = answer.get("client_id") if type(answer) is dict else None
            if answer.get("type") == TYPE_REPLY and answer.get("request_number") == 0 and nonce in waiting:
                sessions[nonce] = msgpack.unpackb(answer["result"])
                del waiting[nonce]
    return [sessions[nonce] for nonce in nonces]


def run_load(
    endpoint: str,
    *,
    mode: str,
    sessions: int,
    start: float,
    end: float,
    latencies: bool,
    sockets: list[zmq.Socket[bytes]],
    batch: bool = False,
    value_bytes: int = VALUE_BYTES,
    get_share: float = 0.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Keep `sessions` requests in flight on `sockets` (connections to `endpoint`; session i uses socket
    i mod their number) until `end`; with `batch`, the requests of one wake-up go as RequestBatches (the
    answers then come in ReplyBatches; an echo server echoes the batch); with `get_share`, that share of the
    requests after each session's first are gets of its key (PRNG seeded with `seed`)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not 0.0 <= get_share <= 1.0:
        raise ValueError(f"get_share must be from 0 to 1, got {get_share!r}")
    expected = TYPE_REPLY if mode == "zvsr" else TYPE_REQUEST
    if mode == "zvsr":
        # A session is not bound to its connection: all register on the first.
        ids = register_sessions(sockets[0], sessions, until=max(end, time.monotonic() + REGISTER_TIMEOUT_S))
    else:
        ids = [secrets.randbits(64) for _ in range(sessions)]
    ops = {cid: operation(index, value_bytes) for index, cid in enumerate(ids)}
    gets = {cid: get_operation(index) for index, cid in enumerate(ids)} if get_share else {}
    numbers = dict.fromkeys(ids, 0)
    reading = dict.fromkeys(ids, False)  # whether the outstanding request is a get
    mixed = get_share > 0.0
    draw = random.Random(seed).random
    wires: dict[int, bytes] = {}
    sent_at: dict[int, float] = {}  # when the outstanding request was first sent (its latency starts there)
    last_sent: dict[int, float] = {}  # when it was last sent (the watchdog's clock)
    retries: collections.deque[tuple[float, int]] = collections.deque()
    recorded: list[int] = []
    errors: collections.Counter[str] = collections.Counter()
    counts = {"completed": 0, "completed_total": 0, "sent": 0, "stale": 0, "resent": 0, "unexpected": 0}
    monotonic = time.monotonic
    unpackb = msgpack.unpackb
    completed = 0
    completed_gets = 0
    completed_total = 0
    # Each socket's requests of this wake-up, sent back to back at its end (as RequestBatches with `batch`):
    # sent one by one as answers came in, each would wake libzmq's I/O thread on its own.
    outgoing: list[list[bytes]] = [[] for _ in sockets]
    send_of = {cid: outgoing[index % len(sockets)].append for index, cid in enumerate(ids)}

    def send(cid: int) -> None:
        send_of[cid](wires[cid])

    def send_next(cid: int, now: float) -> None:
        number = numbers[cid] + 1
        numbers[cid] = number
        # Without a get share no draw is made; a session's first request is its put (its key then exists).
        is_get = reading[cid] = mixed and number > 1 and draw() < get_share
        wires[cid] = request(cid, number, gets[cid] if is_get else ops[cid])
        sent_at[cid] = last_sent[cid] = now
        send(cid)
        counts["sent"] += 1

    def send_outgoing() -> None:
        for socket, queued in zip(sockets, outgoing, strict=True):
            if not queued:
                continue
            if batch:
                for batched, group in batches(queued, CLIENT_MESSAGE_BYTES_MAX):
                    socket.send(encode_request_batch(group) if batched else group[0], _NOBLOCK)
            else:
                send = socket.send
                for wire in queued:
                    send(wire, _NOBLOCK)
            queued.clear()

    def on_answer(data: bytes, now: float) -> None:
        nonlocal completed, completed_gets, completed_total
        try:
            answer = unpackb(data, raw=False, strict_map_key=False)
            kind = answer["type"]
            if kind in (TYPE_REPLY_BATCH, TYPE_REQUEST_BATCH):  # from the proxy, or echoed
                for element in answer["replies" if kind == TYPE_REPLY_BATCH else "requests"]:
                    on_answer(element, now)
                return
            cid = answer["client_id"]
            number = answer["request_number"]
        except (ValueError, KeyError, TypeError, msgpack.UnpackException):
            counts["unexpected"] += 1
            return
        if numbers.get(cid) != number:
            counts["stale"] += 1
            return
        if kind == expected:
            completed_total += 1
            if start <= now < end:
                completed += 1
                completed_gets += reading[cid]
                if latencies:
                    recorded.append(int((now - sent_at[cid]) * 1_000_000))
            send_next(cid, now)
        elif kind == TYPE_ERROR:
            code = str(answer.get("code"))
            errors[code] += 1
            if code == "bad_request":
                del numbers[cid], last_sent[cid]  # this session is finished: the request never succeeds
                return
            last_sent[cid] = now + RETRY_PAUSE_S
            retries.append((now + RETRY_PAUSE_S, cid))
        else:
            counts["unexpected"] += 1

    now = monotonic()
    only = sockets[0]
    poller = None
    if len(sockets) > 1:
        poller = zmq.Poller()
        for socket in sockets:
            poller.register(socket, zmq.POLLIN)
    for cid in ids:
        send_next(cid, now)
    send_outgoing()
    next_check = now + 1.0
    while True:
        now = monotonic()
        if now >= end:
            break
        timeout_ms = max(1, int((min(end, next_check, retries[0][0] if retries else end) - now) * 1000) + 1)
        if poller is not None:
            ready = [socket for socket, _ in poller.poll(timeout_ms)]
        else:
            ready = [only] if only.poll(timeout_ms) else []
        now = monotonic()
        for socket in ready:
            recv = socket.recv
            while True:
                try:
                    data = recv(_NOBLOCK)
                except zmq.Again:
                    break
                on_answer(data, monotonic())
        while retries and retries[0][0] <= now:
            _, cid = retries.popleft()
            if cid in numbers:
                send(cid)
                counts["resent"] += 1
        if now >= next_check:
            next_check = now + 1.0
            for cid, when in last_sent.items():
                if now - when > RESEND_AFTER_S:
                    last_sent[cid] = now
                    send(cid)
                    counts["resent"] += 1
        send_outgoing()
    counts["completed"] = completed
    counts["completed_total"] = completed_total
    return {
        **counts,
        "completed_gets": completed_gets,
        "completed_puts": completed - completed_gets,
        "get_share": get_share,
        "seed": seed,
        "window_s": end - start,
        "sessions": sessions,
        "errors": dict(errors),
        "latencies_us": recorded,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--mode", choices=MODES, default="zvsr")
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--latencies", action="store_true")
    parser.add_argument("--batch", action="store_true", help="send each wake-up's requests as RequestBatches")
    parser.add_argument("--value-bytes", type=int, default=VALUE_BYTES, help="bytes of each put's value")
    parser.add_argument("--connections", type=int, default=1, help="DEALER connections the sessions share")
    parser.add_argument(
        "--get-share", type=share, default=0.0, help="share of requests that are gets of the session's key (0..1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the PRNG choosing get or put")
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.connections <= arguments.sessions:
        parser.error("--connections must be 1..--sessions")
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sockets = []
    try:
        for _ in range(arguments.connections):
            socket = context.socket(zmq.DEALER)
            sockets.append(socket)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.SNDHWM, 0)
            socket.setsockopt(zmq.RCVHWM, 0)
            socket.connect(arguments.endpoint)
        print("ready", flush=True)
        line = sys.stdin.readline().split()
        if len(line) != 3 or line[0] != "go":
            return 2
        gc.disable()
        result = run_load(
            arguments.endpoint,
            mode=arguments.mode,
            sessions=arguments.sessions,
            start=float(line[1]),
            end=float(line[2]),
            latencies=arguments.latencies,
            sockets=sockets,
            batch=arguments.batch,
            value_bytes=arguments.value_bytes,
            get_share=arguments.get_share,
            seed=arguments.seed,
        )
    finally:
        for socket in sockets:
            socket.close(linger=0)
        context.term()
    sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
