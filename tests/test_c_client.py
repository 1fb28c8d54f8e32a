"""The C client (clients/c): builds warning-free, passes the golden vectors, and drives a real cluster.

`make -C clients/c` builds libzvsr.a, the `zvsr-kv` example and the vector test; `make -C clients/c test` runs
the vectors. Then `zvsr-kv` runs against a real 3-replica cluster with a proxy (ProcessCluster, 127.0.0.1
only): through the proxy and straight to the replicas, for every coordination operation, after a failover
(a real Redirect), and against scripted fake replicas that answer junk, redirects and each error code.

Missing build tools are a failure, not a skip: run `clients/install-deps`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest
import zmq
from zmq_fakes import fake_replicas, local_config, running_proxy

from zvsr.protocol.client_table import REGISTER_REQUEST_NUMBER, register_result
from zvsr.protocol.messages import Error, Redirect, Reply, Request
from zvsr.runtime.processes import ProcessCluster, free_ports, process_cluster, wait_for
from zvsr.wire.admin import is_status_query
from zvsr.wire.codec import decode_request, encode

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "clients" / "c"
KV = C_DIR / "build" / "zvsr-kv"
INSTALL_HINT = "run clients/install-deps (gcc, make, pkg-config, libzmq3-dev, libmsgpack-dev)"

# Exit codes of zvsr-kv (clients/c/README.md).
EXIT_NO, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_BUSY, EXIT_TIMEOUT = 1, 2, 3, 4, 5
EXIT_BAD_REQUEST, EXIT_APP, EXIT_PROTOCOL = 6, 7, 8
CALL_MS = 15_000  # per zvsr-kv call against the cluster: generous, the machine is shared


def _make(*targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-C", str(C_DIR), *targets], capture_output=True, text=True, timeout=240, check=False
    )


def _preflight() -> None:
    missing = [tool for tool in ("gcc", "make", "pkg-config") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: {INSTALL_HINT}")
    for names in (("libzmq",), ("msgpack-c", "msgpack")):
        if not any(
            subprocess.run(["pkg-config", "--exists", name], check=False).returncode == 0 for name in names
        ):
            pytest.fail(f"pkg-config finds no {' or '.join(names)}: {INSTALL_HINT}")


@pytest.fixture(scope="module")
def built() -> Path:
    _preflight()
    result = _make()
    assert result.returncode == 0, f"make -C clients/c failed ({INSTALL_HINT}?):\n{result.stdout}\n{result.stderr}"
    assert KV.is_file()
    return KV


@pytest.fixture(scope="module")
def cluster(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    with process_cluster(tmp_path_factory.mktemp("c-client")) as started:
        started.wait_for_primary(timeout_s=30)
        yield started


@contextmanager
def logs_on_failure(cluster: ProcessCluster) -> Iterator[None]:
    """The replicas' and the proxy's logs with a failure (the module fixture outlives the test)."""
    try:
        yield
    except BaseException:
        print(cluster.logs())
        raise


def kv(
    *args: str, endpoints: list[str], direct: bool = False, timeout_ms: int = CALL_MS, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    command = [*prefix, str(KV), "--verbose", "--timeout-ms", str(timeout_ms)]
    if direct:
        command.append("--direct")
    for endpoint in endpoints:
        command += ["--endpoint", endpoint]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout_ms / 1000 + 60)


def expect(result: subprocess.CompletedProcess[str], code: int, stdout: str | None = None) -> str:
    detail = f"{result.args}: exit {result.returncode}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"
    assert result.returncode == code, detail
    if stdout is not None:
        assert result.stdout == stdout, detail
    return result.stdout


def _coordination_session(endpoints: list[str], *, direct: bool, tag: str) -> None:
    """Every built-in operation, its answers and zvsr-kv's exit codes; keys are unique to `tag`."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return kv(*args, endpoints=endpoints, direct=direct)

    key, counter, lock = f"{tag}/config", f"{tag}/hits", f"{tag}/leader"
    # put / get, and a missing key
    expect(run("put", key, "node-a"), 0, "OK\n")
    expect(run("get", key), 0, "node-a\n")
    missing = expect(run("get", f"{tag}/nothing-here"), EXIT_NO, "")
    assert missing == ""
    assert "not found" in run("get", f"{tag}/nothing-here").stderr
    # incr: a missing key counts as 0; BY may be negative
    expect(run("incr", counter), 0, "1\n")
    expect(run("incr", counter, "41"), 0, "42\n")
    expect(run("incr", counter, "-50"), 0, "-8\n")
    expect(run("get", counter), 0, "-8\n")  # not a str: shown as JSON
    # incr of a str is the app's type_error
    failed = run("incr", key)
    expect(failed, EXIT_APP)
    assert "type_error" in failed.stderr and "holds a str, not an int" in failed.stderr
    # cas: success, failure (with the current value), create-if-missing
    expect(run("cas", key, "node-a", "node-b"), 0, 'ok "node-b"\n')
    expect(run("cas", key, "node-a", "node-c"), EXIT_NO, 'failed "node-b"\n')
    expect(run("get", key), 0, "node-b\n")
    expect(run("cas", "--missing", f"{tag}/fresh", "1"), 0, 'ok "1"\n')
    expect(run("cas", "--missing", f"{tag}/fresh", "2"), EXIT_NO, 'failed "1"\n')
    # lock / unlock with fencing tokens
    first = expect(run("lock", lock, "worker-1"), 0)
    match = re.fullmatch(r"ok (\d+)\n", first)
    assert match, first
    token = int(match.group(1))
    expect(run("lock", lock, "worker-1"), 0, f"ok {token}\n")  # re-entrant: the same token
    expect(run("lock", lock, "worker-2"), EXIT_NO, f"held worker-1 {token}\n")
    expect(run("unlock", lock, "worker-2"), EXIT_NO, "not held\n")
    expect(run("unlock", lock, "worker-1"), 0, "ok\n")
    expect(run("unlock", lock, "worker-1"), EXIT_NO, "not held\n")
    second = expect(run("lock", lock, "worker-2"), 0)
    match = re.fullmatch(r"ok (\d+)\n", second)
    assert match and int(match.group(1)) > token, f"fencing token did not increase: {token} then {second!r}"
    # delete
    expect(run("del", key), 0, "deleted\n")
    expect(run("del", key), EXIT_NO, "not found\n")
    expect(run("get", key), EXIT_NO, "")


# --- build and vectors ---------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_make_builds_warning_free_and_the_golden_vectors_pass(built: Path) -> None:
    result = _make("test")
    assert result.returncode == 0, f"make -C clients/c test failed:\n{result.stdout}\n{result.stderr}"
    assert re.search(r"\d+ checks, 0 failures", result.stdout), result.stdout
    for line in ("messages:", "noncanonical:", "invalid:", "coordination:", "robustness:"):
        assert line in result.stdout


# --- a real cluster ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_every_operation_through_the_proxy(cluster: ProcessCluster) -> None:
    with logs_on_failure(cluster):
        _coordination_session([cluster.config.proxy], direct=False, tag="proxy")
        if shutil.which("valgrind"):  # one live call under valgrind: no leak, no invalid access
            checked = kv(
                "put",
                "proxy/valgrind",
                "x",
                endpoints=[cluster.config.proxy],
                prefix=("valgrind", "--leak-check=full", "--error-exitcode=99", "--quiet"),
            )
            expect(checked, 0, "OK\n")


@pytest.mark.timeout(180)
def test_every_operation_straight_to_the_replicas(cluster: ProcessCluster) -> None:
    replicas = [address.client for address in cluster.config.replicas]
    with logs_on_failure(cluster):
        _coordination_session(replicas, direct=True, tag="direct")
        # both paths see one state
        expect(kv("put", "shared", "from-replicas", endpoints=replicas, direct=True), 0, "OK\n")
        expect(kv("get", "shared", endpoints=[cluster.config.proxy]), 0, "from-replicas\n")


@pytest.mark.timeout(120)
def test_bad_endpoints_and_timeouts_fail_clearly(built: Path) -> None:
    # not an endpoint at all: refused before anything is sent
    bad = kv("get", "k", endpoints=["localhost-7700"])
    expect(bad, EXIT_USAGE)
    assert "not a ZeroMQ endpoint" in bad.stderr
    bad = kv("get", "k", endpoints=["bogus://127.0.0.1:7700"])
    expect(bad, EXIT_USAGE)
    assert "cannot connect" in bad.stderr
    # nobody listens there. Straight to a replica, the request waits in the socket's queue for a connection that
    # never comes: the call ends at its deadline, outcome unknown.
    port = free_ports(1)[0]
    timed_out = kv("put", "k", "v", endpoints=[f"tcp://127.0.0.1:{port}"], direct=True, timeout_ms=400)
    expect(timed_out, EXIT_TIMEOUT, "")
    assert "timeout: no answer within 400 ms" in timed_out.stderr
    assert "may or may not have been executed" in timed_out.stderr
    # Through a proxy, a send with no connection up is refused (IMMEDIATE): nothing ever left, so the request
    # certainly did not execute.
    refused = kv("put", "k", "v", endpoints=[f"tcp://127.0.0.1:{port}"], timeout_ms=400)
    expect(refused, EXIT_UNAVAILABLE, "")
    assert "unavailable: no proxy reachable within 400 ms; the request was not executed" in refused.stderr
    # the command line is checked first
    expect(kv("incr", "k", "one", endpoints=[f"tcp://127.0.0.1:{port}"]), EXIT_USAGE)
    expect(kv("frobnicate", "k", endpoints=[f"tcp://127.0.0.1:{port}"]), EXIT_USAGE)
    expect(kv("put", "k", endpoints=[f"tcp://127.0.0.1:{port}"]), EXIT_USAGE)
    expect(kv("get", "k", endpoints=[f"tcp://127.0.0.1:{port}"], timeout_ms=0), EXIT_USAGE)


# --- scripted fake replicas: redirects, retries, junk -------------------------------------------------------


class FakeReplicas:
    """ROUTER sockets on 127.0.0.1 that the test answers by hand."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], count: int) -> None:
        self.sockets: list[zmq.Socket[bytes]] = []
        self.endpoints: list[str] = []
        self.status_queries = 0
        self.registered = 0
        for _ in range(count):
            socket = context.socket(zmq.ROUTER)
            socket.setsockopt(zmq.LINGER, 0)
            port = socket.bind_to_random_port("tcp://127.0.0.1")
            self.sockets.append(socket)
            self.endpoints.append(f"tcp://127.0.0.1:{port}")

    def receive(self, index: int, timeout_ms: int = 20_000) -> tuple[bytes, Request]:
        """The next Request to fake replica `index`; status queries (the client asking for the configuration
        after a Redirect it cannot place or a retry round) are counted in `status_queries` and left unanswered;
        registers are answered with a new session (so a test sees the operations, as request 1 on)."""
        socket = self.sockets[index]
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            assert left_ms > 0 and socket.poll(left_ms), f"fake replica {index} got no request"
            frames = socket.recv_multipart()
            assert len(frames) == 2, frames  # [routing id, payload]: the client is a raw DEALER
            if is_status_query(frames[1]):
                self.status_queries += 1
                continue
            request = decode_request(frames[1])
            if request.request_number == REGISTER_REQUEST_NUMBER:
                self.registered += 1
                session = register_result((1 << 32) + self.registered)
                answer = Reply(view=0, client_id=request.client_id, request_number=0, result=session)
                socket.send_multipart([frames[0], encode(answer)])
                continue
            return frames[0], request

    def drain(self, index: int) -> None:
        while self.sockets[index].poll(0):
            self.sockets[index].recv_multipart()

    def close(self) -> None:
        for socket in self.sockets:
            socket.close(linger=0)


@pytest.fixture
def fakes(built: Path) -> Iterator[tuple[zmq.Context[zmq.Socket[bytes]], list[FakeReplicas]]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    made: list[FakeReplicas] = []
    try:
        yield context, made
    finally:
        for fake in made:
            fake.close()
        context.term()


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(KV), "--verbose", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.timeout(120)
def test_junk_is_ignored_redirects_are_followed_and_retries_repeat_the_request(
    fakes: tuple[zmq.Context[zmq.Socket[bytes]], list[FakeReplicas]],
) -> None:
    context, made = fakes
    fake = FakeReplicas(context, 2)
    made.append(fake)
    process = _start(
        ["--direct", "--timeout-ms", "20000", "-e", fake.endpoints[0], "-e", fake.endpoints[1], "get", "k"]
    )
    try:
        # view 0: replica 0 is asked first
        identity, request = fake.receive(0)
        assert request.request_number == 1
        assert msgpack.unpackb(request.operation) == {"op": "get", "key": "k"}
        me = request.client_id
        junk = [
            b"",
            b"\xc1",
            b"\x93\x01\x02",
            msgpack.packb({"type": 23, "code": "bad_request", "message": "bare"}),  # names no request
            encode(Reply(view=9, client_id=me ^ 1, request_number=1, result=b"\xa5wrong")),  # another client
            encode(Reply(view=9, client_id=me, request_number=7, result=b"\xa5wrong")),  # another request
            encode(Redirect(view=0, primary=1, client_id=me, request_number=1)),  # not a newer view: ignored
        ]
        for payload in junk:
            fake.sockets[0].send_multipart([identity, payload])
        fake.sockets[0].send_multipart([identity, b"", b"\xc1"])  # multipart junk too
        fake.sockets[0].send_multipart(
            [identity, encode(Redirect(view=1, primary=1, client_id=me, request_number=1))]
        )
        # the redirect moves the client to replica 1 with the same request
        identity1, again = fake.receive(1)
        assert (again.client_id, again.request_number, again.operation) == (me, 1, request.operation)
        # not now: the client re-sends the same request shortly, to every replica
        fake.sockets[1].send_multipart(
            [
                identity1,
                encode(Error(view=2, client_id=me, request_number=1, code="view_change", message="voting")),
            ]
        )
        identity1, retry = fake.receive(1)
        assert (retry.client_id, retry.request_number) == (me, 1)
        fake.drain(0)
        fake.sockets[1].send_multipart(
            [identity1, encode(Reply(view=1, client_id=me, request_number=1, result=msgpack.packb("value")))]
        )
        done = _finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    expect(done, 0, "value\n")
    # the view of the Error (2) is not adopted; the Redirect's and Reply's (1) is
    assert "request_number=1 view=1 status=ok" in done.stderr, done.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("code", "exit_code", "text"),
    [
        (
            "unavailable",
            EXIT_UNAVAILABLE,
            "every attempt was refused (unavailable: nope); the request was not executed",
        ),
        ("busy", EXIT_BUSY, "every attempt was refused (busy: nope); the request was not executed"),
        ("bad_request", EXIT_BAD_REQUEST, "bad_request: nope"),
    ],
)
def test_error_codes_end_the_call_as_documented(
    fakes: tuple[zmq.Context[zmq.Socket[bytes]], list[FakeReplicas]], code: str, exit_code: int, text: str
) -> None:
    context, made = fakes
    fake = FakeReplicas(context, 1)
    made.append(fake)
    process = _start(["--timeout-ms", "1500", "-e", fake.endpoints[0], "put", "k", "v"])
    answered = 0
    try:
        while process.poll() is None:  # answer every attempt (retries included) until the client gives up
            if not fake.sockets[0].poll(100):
                continue
            identity, request = fake.receive(0)
            assert request.request_number == 1
            answer = encode(
                Error(view=0, client_id=request.client_id, request_number=1, code=code, message="nope")
            )
            # The first attempt also gets spare refusals: the client counts answers that refuse its attempts,
            # so the attempt still in flight at the deadline is refused too, and the outcome is certain (not
            # executed) rather than racing this loop (unknown: timeout).
            for _ in range(1 if code == "bad_request" or answered else 200):
                fake.sockets[0].send_multipart([identity, answer])
            answered += 1
        done = _finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    expect(done, exit_code, "")
    assert text in done.stderr, done.stderr
    assert answered == 1 if code == "bad_request" else answered >= 2  # bad_request is never retried


@pytest.mark.timeout(120)
def test_a_result_that_is_not_the_apps_is_a_protocol_error(
    fakes: tuple[zmq.Context[zmq.Socket[bytes]], list[FakeReplicas]],
) -> None:
    context, made = fakes
    for result, args in ((b"\xc1", ["put", "k", "v"]), (msgpack.packb("yes"), ["del", "k"])):
        fake = FakeReplicas(context, 1)
        made.append(fake)
        process = _start(["--timeout-ms", "10000", "-e", fake.endpoints[0], *args])
        try:
            identity, request = fake.receive(0)
            reply = Reply(view=0, client_id=request.client_id, request_number=1, result=result)
            fake.sockets[0].send_multipart([identity, encode(reply)])
            done = _finish(process)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        expect(done, EXIT_PROTOCOL, "")
        assert "protocol_error" in done.stderr


# --- via proxies: the proxy retries toward the replicas, the client keeps only its deadline ----------------------
# (docs/protocol.md §5, "Who retries what"; the RelaySession of zvsr/protocol/client_session.py). The fakes above
# stand in for proxies: a client speaks the same Request / Reply to both.

QUIET_S = 2.5  # CLIENT_PROXY_QUIET_MS: via proxies, the client re-sends after this long without any answer


@dataclass
class Copy:
    at: float  # time.monotonic() when the test took it
    proxy: int
    identity: bytes
    request: Request


def _run_until_exit(
    fake: FakeReplicas, args: list[str], answer: Callable[[Copy], bytes | None] | None = None
) -> tuple[list[Copy], subprocess.CompletedProcess[str]]:
    """Run `zvsr-kv args` against the fakes until it exits (killed if the test fails first): see
    `_copies_until_exit`."""
    process = _start(args)
    try:
        return _copies_until_exit(fake, process, answer)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _copies_until_exit(
    fake: FakeReplicas, process: subprocess.Popen[str], answer: Callable[[Copy], bytes | None] | None = None
) -> tuple[list[Copy], subprocess.CompletedProcess[str]]:
    """Every request the fakes receive until `process` exits (plus any still on the way), each answered by
    `answer` (None or no answer: silence)."""
    copies: list[Copy] = []
    poller = zmq.Poller()
    for socket in fake.sockets:
        poller.register(socket, zmq.POLLIN)
    deadline = time.monotonic() + 60
    while True:
        running = process.poll() is None
        assert time.monotonic() < deadline, "the client did not end"
        for socket, _ in poller.poll(20 if running else 200):
            index = fake.sockets.index(socket)
            identity, request = fake.receive(index)
            copy = Copy(time.monotonic(), index, identity, request)
            copies.append(copy)
            reply = answer(copy) if answer is not None else None
            if reply is not None:
                socket.send_multipart([identity, reply])
        if not running:
            return copies, _finish(process)


@pytest.mark.timeout(120)
def test_through_proxies_a_silent_proxy_gets_one_copy_and_the_next_one_after_the_quiet_period(
    fakes: tuple[zmq.Context[zmq.Socket[bytes]], list[FakeReplicas]],
) -> None:
    """Two proxies that never answer, a 4 s call: the request goes to one proxy, and only after the quiet period
    (2.5 s: it may have restarted and forgotten the request) once to the other. No re-send on a short timer
    (the client used to re-send to every proxy after 1 s, 3 s, ...). At the deadline: timeout, outcome unknown."""
    context, made = fakes
    fake = FakeReplicas(context, 2)
    made.append(fake)
    copies, done = _run_until_exit(
        fake, ["--timeout-ms", "4000", "-e", fake.endpoints[0], "-e", fake.endpoints[1], "put", "k", "v"]
    )
    expect(done, EXIT_TIMEOUT, "")
    assert "no answer within 4000 ms; the request may or may not have been executed" in done.stderr
    assert len(copies) == 2, [(round(c.at - copies[0].at, 3), c.proxy) for c in copies]
    first, second = copies
    assert {first.proxy, second.proxy} == {0, 1}  # the next proxy
    assert first.request == second.request and first.request.request_number == 1  # the same request
    assert second.at - first.at >= QUIET_S - 0.5, second.at - first.at


@pytest.mark.timeout(120)
def test_through_proxies_a_late_answer_is_waited_for_without_a_copy(
    fakes: tuple[zmq.Context[zmq.Socket[bytes]], list[FakeReplicas]],
) -> None:
    """The proxy holding the request answers 1.5 s later (past the 1 s after which the client used to re-send
    to every proxy, short of the quiet period): no proxy sees a second copy, and the late answer is the result."""
    context, made = fakes
    fake = FakeReplicas(context, 2)
    made.append(fake)
    process = _start(["--timeout-ms", "10000", "-e", fake.endpoints[0], "-e", fake.endpoints[1], "get", "k"])
    try:
        poller = zmq.Poller()
        for socket in fake.sockets:
            poller.register(socket, zmq.POLLIN)
        first = dict(poller.poll(20_000))
        assert len(first) == 1, "one proxy got the request"
        (index,) = (fake.sockets.index(socket) for socket in first)
        identity, request = fake.receive(index)
        # An observation window, not synchronisation: nothing may arrive in it.
        assert poller.poll(1500) == [], "a second copy of the request"
        reply = Reply(view=0, client_id=request.client_id, request_number=1, result=msgpack.packb("late"))
        fake.sockets[index].send_multipart([identity, encode(reply)])
        copies, done = _copies_until_exit(fake, process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    expect(done, 0, "late\n")
    assert copies == []


@pytest.mark.timeout(120)
def test_through_proxies_a_proxy_that_is_down_is_skipped_at_once(
    fakes: tuple[zmq.Context[zmq.Socket[bytes]], list[FakeReplicas]],
) -> None:
    """One proxy is not running, the other answers. The proxies are shuffled per client, so over 8 clients the
    dead one comes first for some (all but surely): its send is refused (no connection, IMMEDIATE) and the
    request goes to the live one at once — well within a 900 ms call, shorter than the 1 s after which the
    client used to re-send — once."""
    context, made = fakes
    live = FakeReplicas(context, 1)
    made.append(live)
    (dead_port,) = free_ports(1)
    endpoints = [f"tcp://127.0.0.1:{dead_port}", live.endpoints[0]]

    def answer(copy: Copy) -> bytes:
        return encode(Reply(view=0, client_id=copy.request.client_id, request_number=1, result=msgpack.packb(1)))

    for run in range(8):
        first, second = endpoints[run % 2], endpoints[1 - run % 2]
        copies, done = _run_until_exit(
            live, ["--timeout-ms", "900", "-e", first, "-e", second, "incr", "n"], answer
        )
        expect(done, 0, "1\n")
        assert len(copies) == 1, copies


@pytest.mark.timeout(120)
@pytest.mark.parametrize("code", ["timeout", "unavailable", "busy"])
def test_through_proxies_an_error_answer_sends_the_request_once_to_the_next_proxy(
    fakes: tuple[zmq.Context[zmq.Socket[bytes]], list[FakeReplicas]], code: str
) -> None:
    """The proxy holding the request answers `timeout` (its own deadline passed), `unavailable` or `busy`: its
    session ended without a result. The client's deadline is ahead, so after a short pause the same request goes
    once to the next proxy — long before the quiet period — and that one's answer is the result."""
    context, made = fakes
    fake = FakeReplicas(context, 2)
    made.append(fake)

    answered: list[Copy] = []

    def answer(copy: Copy) -> bytes:
        """The first copy gets the error, any other the result."""
        answered.append(copy)
        me = copy.request.client_id
        if len(answered) == 1:
            return encode(Error(view=0, client_id=me, request_number=1, code=code, message="no"))
        return encode(Reply(view=0, client_id=me, request_number=1, result=msgpack.packb("v")))

    copies, done = _run_until_exit(
        fake, ["--timeout-ms", "10000", "-e", fake.endpoints[0], "-e", fake.endpoints[1], "get", "k"], answer
    )
    expect(done, 0, "v\n")
    assert len(copies) == 2, [(c.proxy, c.request.request_number) for c in copies]
    first, second = copies
    assert first.proxy != second.proxy and first.request == second.request
    assert second.at - first.at < QUIET_S - 0.5, second.at - first.at  # the pause, not the quiet period


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("code", "exit_code"), [("bad_request", EXIT_BAD_REQUEST), ("session_expired", EXIT_TIMEOUT)]
)
def test_through_proxies_a_final_error_ends_the_call(
    fakes: tuple[zmq.Context[zmq.Socket[bytes]], list[FakeReplicas]], code: str, exit_code: int
) -> None:
    """`bad_request` and `session_expired` are final: no other proxy is asked."""
    context, made = fakes
    fake = FakeReplicas(context, 2)
    made.append(fake)

    def answer(copy: Copy) -> bytes:
        request = copy.request
        return encode(Error(view=0, client_id=request.client_id, request_number=1, code=code, message="final"))

    copies, done = _run_until_exit(
        fake, ["--timeout-ms", "10000", "-e", fake.endpoints[0], "-e", fake.endpoints[1], "put", "k", "v"], answer
    )
    expect(done, exit_code, "")
    assert f"{code}: final" in done.stderr, done.stderr
    assert len(copies) == 1


@pytest.mark.timeout(120)
def test_through_a_proxy_a_request_lost_in_a_restart_is_sent_again_after_the_quiet_period(
    fakes: tuple[zmq.Context[zmq.Socket[bytes]], list[FakeReplicas]],
) -> None:
    """The only proxy takes request 1 and restarts before answering: the request is gone with it, and nothing
    tells the client. After the quiet period without an answer the client sends the same request again (to the
    same proxy: there is no other), and the restarted proxy answers it within the client's deadline."""
    context, made = fakes
    before = FakeReplicas(context, 1)
    made.append(before)
    endpoint = before.endpoints[0]
    process = _start(["--timeout-ms", "10000", "-e", endpoint, "get", "k"])
    try:
        _, lost = before.receive(0)
        lost_at = time.monotonic()
        before.close()
        after = wait_for(lambda: _bound_at(context, endpoint), what="the restarted proxy")
        made.append(after)
        assert after.sockets[0].poll(20_000), "no copy after the restart"
        identity, again = after.receive(0)
        resent_at = time.monotonic()
        reply = Reply(view=0, client_id=again.client_id, request_number=1, result=msgpack.packb("again"))
        after.sockets[0].send_multipart([identity, encode(reply)])
        done = _finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    expect(done, 0, "again\n")
    assert again == lost
    assert resent_at - lost_at >= QUIET_S - 0.5, resent_at - lost_at


def _bound_at(context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> FakeReplicas | None:
    """A fake bound at `endpoint`, or None while the socket just closed there still holds it."""
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.bind(endpoint)
    except zmq.ZMQError:
        socket.close(linger=0)
        return None
    fake = FakeReplicas(context, 0)
    fake.sockets.append(socket)
    fake.endpoints.append(endpoint)
    return fake


@pytest.mark.timeout(120)
def test_through_a_real_proxy_the_clients_own_deadline_decides(built: Path) -> None:
    """A real proxy over silent replicas gives up after its 300 ms and answers `timeout`. The client's deadline
    (2000 ms) is ahead, so it asks again — one copy at a time, never joining a copy the proxy still holds — and
    the call ends at the client's own deadline with its own timeout (outcome unknown)."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        config = local_config(tick_ms=5, request_timeout_ms=300)
        with fake_replicas(config, context), running_proxy(config, context) as proxy:
            done = kv("put", "k", "v", endpoints=[proxy.endpoint], timeout_ms=2000)
            counters = dict(proxy.counters)
    finally:
        context.term()
    expect(done, EXIT_TIMEOUT, "")
    assert "no answer within 2000 ms; the request may or may not have been executed" in done.stderr
    assert counters["answered timeout"] >= 2 and counters["requests"] >= 3, counters
    assert counters.get("client retries joined", 0) == 0, counters


# --- last: a failover, so a real replica redirects ---------------------------------------------------------


@pytest.mark.timeout(300)
def test_after_a_failover_the_client_follows_the_new_primary(cluster: ProcessCluster) -> None:
    with logs_on_failure(cluster):
        replicas = [address.client for address in cluster.config.replicas]
        expect(kv("put", "failover/before", "1", endpoints=replicas, direct=True), 0, "OK\n")
        old = cluster.wait_for_primary()
        cluster.kill(old)
        new = cluster.wait_for_primary(other_than=old, timeout_s=60)
        # Back as a backup of the new view. The client starts from view 0, so it asks replica 0 first: a backup
        # now (unless it leads the new view), which answers with a Redirect to `new`.
        cluster.start_node(old)

        def rejoined() -> bool:
            answer = cluster.status(old)
            leader = cluster.status(new)
            return bool(answer and leader and answer["status"] == "normal" and answer["view"] == leader["view"])

        wait_for(rejoined, timeout_s=60, what=f"replica {old} to rejoin as a backup")
        view = cluster.status(new)
        assert view is not None and view["view"] >= 1
        done = kv("get", "failover/before", endpoints=replicas, direct=True)
        expect(done, 0, "1\n")
        seen = re.search(r"view=(\d+) status=ok", done.stderr)
        assert seen and int(seen.group(1)) == view["view"], done.stderr
        expect(kv("incr", "failover/count", endpoints=[cluster.config.proxy]), 0, "1\n")


# --- leases ------------------------------------------------------------------------------------------------------


def _answered(
    fake: FakeReplicas, args: list[str], result: Any
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run `zvsr-kv args` against one fake proxy answering `result` (a msgpack value): the op sent, the run."""
    ops: list[dict[str, Any]] = []

    def answer(copy: Copy) -> bytes:
        ops.append(msgpack.unpackb(copy.request.operation, raw=False))
        packed = msgpack.packb(result, use_bin_type=True)
        return encode(Reply(view=0, client_id=copy.request.client_id, request_number=1, result=packed))

    _, done = _run_until_exit(fake, ["--timeout-ms", "10000", "-e", fake.endpoints[0], *args], answer)
    assert len(ops) == 1, ops
    return ops[0], done


@pytest.mark.timeout(120)
def test_lease_commands_send_the_lease_operations_and_print_their_answers(
    fakes: tuple[zmq.Context[zmq.Socket[bytes]], list[FakeReplicas]],
) -> None:
    context, made = fakes
    fake = FakeReplicas(context, 1)
    made.append(fake)
    not_found = {"error": "lease_not_found", "message": "lease_keepalive: lease 43 is not live"}
    cases: list[tuple[list[str], Any, dict[str, Any], int, str]] = [
        (
            ["lease", "grant", "5000"],
            {"lease": 42, "ttl_ms": 5000},
            {"op": "lease_grant", "ttl_ms": 5000},
            0,
            "42\n",
        ),
        (
            ["lease", "grant", "5000", "250"],
            {"lease": 43, "ttl_ms": 5000},
            {"op": "lease_grant", "ttl_ms": 5000, "lock_delay_ms": 250},
            0,
            "43\n",
        ),
        (["lease", "keepalive", "42"], 4990, {"op": "lease_keepalive", "lease": 42}, 0, "4990\n"),
        (["lease", "keepalive", "43"], not_found, {"op": "lease_keepalive", "lease": 43}, EXIT_APP, ""),
        (
            ["lease", "revoke", "42"],
            {"ok": True, "deleted": ["a", "b"]},
            {"op": "lease_revoke", "lease": 42},
            0,
            'revoked ["a", "b"]\n',
        ),
        (
            ["lease", "revoke", "43"],
            {"ok": False, "deleted": []},
            {"op": "lease_revoke", "lease": 43},
            EXIT_NO,
            "not live\n",
        ),
        (
            ["put", "--lease", "42", "k", "v"],
            None,
            {"op": "put", "key": "k", "value": "v", "lease": 42},
            0,
            "OK\n",
        ),
        (
            ["lock", "--lease", "42", "L", "me"],
            {"ok": True, "owner": "me", "token": 9},
            {"op": "lock", "name": "L", "owner": "me", "lease": 42},
            0,
            "ok 9\n",
        ),
        (  # its holder's lease expired, and the lock delay is running: nobody holds it, nobody may take it
            ["lock", "L", "you"],
            {"ok": False, "owner": None, "token": 9, "delay_ms": 250},
            {"op": "lock", "name": "L", "owner": "you"},
            EXIT_NO,
            "delayed 9\n",
        ),
    ]
    for args, result, op, code, stdout in cases:
        sent, done = _answered(fake, args, result)
        assert sent == op, (args, sent)
        expect(done, code, stdout)
    _, done = _answered(fake, ["lease", "keepalive", "43"], not_found)
    assert "app error lease_not_found: lease_keepalive: lease 43 is not live" in done.stderr
    # The command line is checked before anything is sent.
    for bad in (
        ["lease"],
        ["lease", "grant"],
        ["lease", "grant", "soon"],
        ["lease", "grant", "5000", "-1"],
        ["lease", "keepalive"],
        ["lease", "revoke", "1", "2"],
        ["lease", "renew", "1"],
        ["put", "--lease", "x", "k", "v"],
        ["put", "--lease", "7", "k"],
        ["lock", "--lease"],
    ):
        expect(kv(*bad, endpoints=fake.endpoints), EXIT_USAGE)
    assert not fake.sockets[0].poll(0), "a usage error sent something"


@pytest.mark.timeout(180)
def test_leases_on_a_real_cluster(cluster: ProcessCluster) -> None:
    """A key and a lock on a lease nobody keeps alive go when it expires; the lock is then taken with a larger
    token. Revoke deletes a lease's keys at once."""
    proxy = [cluster.config.proxy]
    with logs_on_failure(cluster):
        lease = expect(kv("lease", "grant", "1000", endpoints=proxy), 0).strip()
        assert lease.isdigit(), lease
        expect(kv("lease", "keepalive", lease, endpoints=proxy), 0, "1000\n")
        expect(kv("put", "--lease", lease, "c-lease/eph", "x", endpoints=proxy), 0, "OK\n")
        held = re.fullmatch(
            r"ok (\d+)\n", expect(kv("lock", "--lease", lease, "c-lease/job", "a", endpoints=proxy), 0)
        )
        assert held, "the lock on the lease"
        expect(kv("lock", "c-lease/job", "b", endpoints=proxy), EXIT_NO, f"held a {held.group(1)}\n")

        def taken() -> str | None:
            result = kv("lock", "c-lease/job", "b", endpoints=proxy)
            return result.stdout if result.returncode == 0 else None

        after = wait_for(taken, timeout_s=20, what="the lock of the expired lease")
        token = re.fullmatch(r"ok (\d+)\n", after)
        assert token and int(token.group(1)) > int(held.group(1)), after
        expect(kv("get", "c-lease/eph", endpoints=proxy), EXIT_NO, "")
        expired = expect(kv("lease", "keepalive", lease, endpoints=proxy), EXIT_APP)
        assert expired == ""
        assert "lease_not_found" in kv("lease", "keepalive", lease, endpoints=proxy).stderr
        expect(kv("lease", "revoke", lease, endpoints=proxy), EXIT_NO, "not live\n")

        other = expect(kv("lease", "grant", "60000", "500", endpoints=proxy), 0).strip()
        expect(kv("put", "--lease", other, "c-lease/a", "1", endpoints=proxy), 0, "OK\n")
        expect(kv("put", "--lease", other, "c-lease/b", "2", endpoints=proxy), 0, "OK\n")
        expect(kv("lease", "revoke", other, endpoints=proxy), 0, 'revoked ["c-lease/a", "c-lease/b"]\n')
        expect(kv("get", "c-lease/a", endpoints=proxy), EXIT_NO, "")
