"""Reads without a log entry on real processes (127.0.0.1): the default read_mode (read_index) answers gets through
the proxy and straight from the replicas, and the primary's log grows only by the writes.

Each client's first request goes through the log (its session starts: zvsr.protocol.reads), so every path starts
with a put; the gets after it must add nothing to op_number. The Node and C clients' live tests
(test_node_client.py, test_c_client.py) run their gets against the same default.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest
import zmq

from zvsr.client import Client
from zvsr.lincheck import Operation, ZvsrModel, check
from zvsr.protocol.client_table import REGISTER_REQUEST_NUMBER, parse_register_result
from zvsr.protocol.messages import Reply, Request
from zvsr.runtime.processes import TEST_TIMEOUTS, ProcessCluster, process_cluster, wait_for
from zvsr.wire.codec import decode_client_reply, encode

GETS = 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    with process_cluster(tmp_path_factory.mktemp("reads")) as cluster:
        yield cluster


def _op_number(cluster: ProcessCluster) -> int:
    primary = cluster.wait_for_primary()
    answer = wait_for(lambda: cluster.status(primary), what="the primary's status")
    op_number: int = answer["op_number"]
    return op_number


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", ["proxy", "replicas"])
def test_gets_are_answered_without_log_entries(cluster: ProcessCluster, path: str) -> None:
    """A client puts k (logged: its first request), then reads k GETS times through `path`: every get sees the
    put, and the primary's op_number is where the put left it."""
    if path == "proxy":
        client = Client(cluster.config.proxy, timeout_ms=10_000)
    else:
        client = Client(replicas=[address.client for address in cluster.config.replicas], timeout_ms=10_000)
    with client:
        client.put(f"reads-{path}", "v1")
        after_put = _op_number(cluster)
        answers = [client.get(f"reads-{path}") for _ in range(GETS)]
        after_gets = _op_number(cluster)
    assert answers == ["v1"] * GETS
    assert after_gets == after_put, f"{after_gets - after_put} gets went through the log"


@pytest.mark.timeout(120)
def test_read_mode_log_puts_gets_in_the_log(tmp_path: Path) -> None:
    with process_cluster(tmp_path, replicas=3, read_mode="log") as cluster:
        with Client(cluster.config.proxy, timeout_ms=10_000) as client:
            client.put("reads-log", "v1")
            after_put = _op_number(cluster)
            assert [client.get("reads-log") for _ in range(3)] == ["v1"] * 3
            assert _op_number(cluster) == after_put + 3


# --- the Node and C clients: one session each, a put then gets, through the proxy and straight to the replicas ---

REPO = Path(__file__).resolve().parent.parent
C_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "zvsr.h"

int main(int argc, char **argv) {
    /* argv: key, gets, direct (0/1), endpoints... */
    zvsr_options options;
    zvsr_options_init(&options);
    options.timeout_ms = 10000;
    options.direct = atoi(argv[3]) != 0;
    zvsr_client *client;
    zvsr_status status = zvsr_client_new((const char *const *)&argv[4], (size_t)(argc - 4), &options, &client);
    if (status != ZVSR_OK) return 2;
    if (zvsr_put(client, argv[1], "v1") != ZVSR_OK) return 3;
    printf("put\n");
    fflush(stdout);
    if (getchar() == EOF) return 4; /* the test has read op_number */
    zvsr_buffer value = ZVSR_BUFFER_INIT;
    zvsr_value_kind kind;
    int gets = atoi(argv[2]);
    for (int i = 0; i < gets; i++) {
        if (zvsr_get(client, argv[1], &value, &kind) != ZVSR_OK) return 5;
        if (kind != ZVSR_VALUE_STR || strcmp((const char *)value.data, "v1") != 0) return 6;
    }
    printf("gets\n");
    zvsr_buffer_free(&value);
    zvsr_client_free(client);
    return 0;
}
"""
NODE_PROGRAM = """
const { Client } = require(process.argv[1]);
const readline = require('readline');
(async () => {
  const [key, gets, direct, ...endpoints] = process.argv.slice(2);
  const client = new Client(direct === '1' ? { replicas: endpoints, timeoutMs: 10000 }
                                           : { proxy: endpoints, timeoutMs: 10000 });
  await client.put(key, 'v1');
  console.log('put');
  const lines = readline.createInterface({ input: process.stdin });
  await new Promise((resolve) => lines.once('line', resolve));
  for (let i = 0; i < Number(gets); i++) {
    if (await client.get(key) !== 'v1') process.exit(6);
  }
  console.log('gets');
  lines.close();
  await client.close();
})().catch((error) => { console.error(error); process.exit(1); });
"""


def _c_client(tmp_path: Path) -> list[str]:
    make = subprocess.run(["make", "-C", str(REPO / "clients" / "c")], capture_output=True, text=True, check=False)
    assert make.returncode == 0, make.stdout + make.stderr
    source = tmp_path / "reads.c"
    source.write_text(C_PROGRAM)
    binary = tmp_path / "reads"
    libs = (
        subprocess.run(
            ["pkg-config", "--libs", "libzmq", "msgpack-c"], capture_output=True, text=True, check=False
        ).stdout.split()
        or subprocess.run(
            ["pkg-config", "--libs", "libzmq", "msgpack"], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    build = [
        "cc", "-std=c11", f"-I{REPO / 'clients' / 'c'}", str(source),
        str(REPO / "clients" / "c" / "build" / "libzvsr.a"), *libs, "-lm", "-o", str(binary),
    ]  # fmt: skip
    compiled = subprocess.run(build, capture_output=True, text=True, check=False)
    assert compiled.returncode == 0, compiled.stderr
    return [str(binary)]


def _node_client() -> list[str]:
    node = shutil.which("node")
    assert node is not None, "node (Node.js 20+) is not on PATH: run clients/install-deps"
    return [node, "-e", NODE_PROGRAM, str(REPO / "clients" / "node")]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("language", ["c", "node"])
@pytest.mark.parametrize("path", ["proxy", "replicas"])
def test_other_language_clients_get_without_log_entries(
    cluster: ProcessCluster, tmp_path: Path, language: str, path: str
) -> None:
    """The Node or C client puts a key (its session's first request: logged), then gets it GETS times through
    `path`: the replicas classify the gets, the client needs no change, and op_number stays where the put left
    it."""
    command = _c_client(tmp_path) if language == "c" else _node_client()
    direct = path == "replicas"
    endpoints = [a.client for a in cluster.config.replicas] if direct else [cluster.config.proxy]
    key = f"reads-{language}-{path}"
    process = subprocess.Popen(
        [*command, key, str(GETS), "1" if direct else "0", *endpoints],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline().strip() == "put", process.stderr.read() if process.stderr else ""
        after_put = _op_number(cluster)
        process.stdin.write("go\n")
        process.stdin.flush()
        output, errors = process.communicate(timeout=120)
        assert process.returncode == 0, f"exit {process.returncode}: {output} {errors}"
        assert output.strip() == "gets"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert _op_number(cluster) == after_put, "gets went through the log"


# --- a deposed primary, frozen and resumed, never answers a stale read -----------------------------------------


def _op(key: str, value: int | None = None) -> dict[str, Any]:
    return {"op": "get", "key": key} if value is None else {"op": "put", "key": key, "value": value}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("read_mode", ["read_index", "lease"])
def test_resumed_old_primary_never_answers_a_stale_read(tmp_path: Path, read_mode: str) -> None:
    """The primary is SIGSTOPped; the others elect a new one, which acknowledges puts x=1..5. After each, a reader
    sends a get of x to the frozen old primary (its socket buffers it). The old primary is resumed with those gets
    waiting: it must not answer any of them from its old state (it answers none: its rounds reach no backup, its
    lease has run out on its own clock, and it learns the new view and drops them or redirects them). The recorded
    history of every answered operation is checked for linearizability (zvsr.lincheck). On real processes the
    resumed node usually drains the new view's messages queued for it before the gets, so this is an end-to-end
    check of the whole stack; the read path's own guard is isolated in test_protocol_reads.py."""
    # A quorum timeout far longer than the pause: the resumed primary still believes it leads when the gets reach
    # it (check-quorum would otherwise answer them `unavailable` first and hide what the read path does).
    timeouts = {**TEST_TIMEOUTS, "quorum_timeout_ticks": 2000}
    with process_cluster(tmp_path, read_mode=read_mode, timeouts=timeouts) as cluster:
        old = cluster.wait_for_primary(timeout_s=30)
        started = time.monotonic()
        history: list[Operation] = []

        def now() -> float:
            return time.monotonic() - started

        reader = cluster.context.socket(zmq.DEALER)
        reader.setsockopt(zmq.LINGER, 0)
        reader.connect(cluster.addresses[old].client)
        reader.send(encode(Request(client_id=4242, request_number=REGISTER_REQUEST_NUMBER, operation=b"")))
        assert reader.poll(10_000), "the primary answered no register"
        reader_id = parse_register_result(decode_client_reply(reader.recv()).result)  # type: ignore[union-attr]
        assert reader_id is not None, "the reader's session is registered through the log"

        def ask(number: int, operation: dict[str, Any]) -> None:
            reader.send(
                encode(Request(client_id=reader_id, request_number=number, operation=msgpack.packb(operation)))
            )

        ask(1, _op("reader-session", 0))  # the reader's session starts through the log
        assert reader.poll(10_000), "the old primary answered nothing before it was stopped"
        assert isinstance(decode_client_reply(reader.recv()), Reply)
        endpoints = [address.client for address in cluster.config.replicas]
        with Client(replicas=endpoints, timeout_ms=20_000) as writer:
            call = now()
            writer.put("x", 0)
            history.append(Operation(1, _op("x", 0), None, call, now()))
            cluster.pause(old)
            try:
                cluster.wait_for_primary(timeout_s=30, other_than=old)
                sent: dict[int, float] = {}
                for value in range(1, 6):
                    call = now()
                    writer.put("x", value)
                    history.append(Operation(1, _op("x", value), None, call, now()))
                    sent[value + 1] = now()  # after that put was acknowledged
                    ask(value + 1, _op("x"))
            finally:
                cluster.resume(old)
            answers: dict[int, tuple[Any, float]] = {}
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if reader.poll(200):
                    answer = decode_client_reply(reader.recv())
                    answers[answer.request_number] = (answer, now())
            stale = []
            for number, call in sent.items():
                answer, returned = answers.get(number, (None, 0.0))
                if isinstance(answer, Reply):
                    output = msgpack.unpackb(answer.result)
                    history.append(Operation(2, _op("x"), output, call, returned))
                    stale.append((number, output))
            call = now()
            final = writer.get("x")
            history.append(Operation(1, _op("x"), final, call, now()))
        reader.close()
        assert final == 5
        verdict = check(history, ZvsrModel(), 10.0)
        assert verdict.verdict == "ok", f"not linearizable: {verdict}"
        assert stale == [], f"the resumed old primary answered reads from its old view: {stale}"
