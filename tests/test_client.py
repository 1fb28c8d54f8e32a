"""The Python client (`zvsr.client`): its API over the coordination app, primary discovery in direct mode,
retries with the same numbers, errors as exceptions, the asyncio twin — against scripted fake replicas and a
real proxy, then against real replica nodes.
"""

from __future__ import annotations

import asyncio
import threading
import time

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest
import zmq
import zmq.asyncio
from zmq_fakes import (
    NODES_AVAILABLE,
    FakeApp,
    FakeReplica,
    IncrementLoad,
    Script,
    fake_replicas,
    free_ports,
    local_config,
    node_cluster,
    node_config,
    running_proxy,
    silent,
    wait_for,
)

from zvsr import client as client_module
from zvsr.client import (
    AppError,
    AsyncClient,
    BadRequest,
    Busy,
    CasResult,
    Client,
    LockResult,
    Timeout,
    Unavailable,
    ZvsrError,
)
from zvsr.protocol.client_session import RelaySession
from zvsr.protocol.messages import ClientReply, Error, Redirect, Request
from zvsr.runtime.cluster_config import ClusterConfig

pytestmark = pytest.mark.timeout(30)


def redirect_to(view: int, primary: int):  # type: ignore[no-untyped-def]
    def script(request: Request) -> list[ClientReply | bytes]:
        return [
            Redirect(
                view=view, primary=primary, client_id=request.client_id, request_number=request.request_number
            )
        ]

    return script


def refuse(code: str):  # type: ignore[no-untyped-def]
    def script(request: Request) -> list[ClientReply | bytes]:
        return [
            Error(
                view=0,
                client_id=request.client_id,
                request_number=request.request_number,
                code=code,
                message=f"fake {code}",
            )
        ]

    return script


def clients(config: ClusterConfig) -> list[str]:
    return [address.client for address in config.replicas]


# --- the API over the coordination app ------------------------------------------------------------------------


def test_every_operation_through_a_proxy(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    config = local_config(tick_ms=5)
    app = FakeApp()
    with fake_replicas(config, context, app), running_proxy(config, context) as proxy:
        with Client(proxy.endpoint, context=context) as client:
            assert client.get("a") is None
            client.put("a", {"x": [1, 2]})
            assert client.get("a") == {"x": [1, 2]}
            assert client.cas("a", {"x": [1, 2]}, "b") == CasResult(ok=True, value="b")
            ok, value = client.cas("a", "nope", "c")
            assert (ok, value) == (False, "b")
            assert client.incr("n") == 1 and client.incr("n", by=41) == 42
            assert client.lock("L", "me") == LockResult(ok=True, owner="me", token=1)
            assert client.lock("L", "you") == LockResult(ok=False, owner="me", token=1)
            assert client.unlock("L", "you") is False and client.unlock("L", "me") is True
            assert client.delete("a") is True and client.delete("a") is False
            assert client.execute({"op": "get", "key": "n"}) == 42
            # The app's error result is an exception (unless asked for the raw value)...
            client.put("s", "text")
            with pytest.raises(AppError) as raised:
                client.incr("s")
            assert raised.value.code == "type_error"
            raw = client.execute({"op": "nope"}, raise_app_errors=False)
            assert raw["error"] == "bad_request"
            # ... but a stored value that looks like one is just a value for get.
            client.put("e", {"error": "x", "message": "y"})
            assert client.get("e") == {"error": "x", "message": "y"}
        # One client id, numbered 1, 2, 3, ... with no gaps and no repeats.
        numbers = [r.request_number for r in app.executed]
        assert numbers == list(range(1, len(numbers) + 1))
        assert len({r.client_id for r in app.executed}) == 1


def test_arguments_are_checked_before_anything_is_sent() -> None:
    with pytest.raises(ValueError):
        Client()
    with pytest.raises(ValueError):
        Client("tcp://127.0.0.1:1", replicas=["tcp://127.0.0.1:2"])
    with pytest.raises(ValueError):
        Client([])
    with pytest.raises(ValueError):
        Client("tcp://127.0.0.1:1", timeout_ms=0)
    with Client("tcp://127.0.0.1:1") as client:
        with pytest.raises(TypeError):
            client.get(1)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.incr("n", by=1.5)  # type: ignore[arg-type]
        with pytest.raises(BadRequest):
            client.put("big", b"x" * 100_000)


# --- direct mode: primary discovery and retries ---------------------------------------------------------------


def test_direct_mode_follows_the_redirect_and_remembers_the_primary(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    config = local_config()
    app = FakeApp(view=2)
    with fake_replicas(config, context, redirect_to(2, 2), redirect_to(2, 2), app) as fakes:
        with Client(replicas=clients(config), context=context) as client:
            client.put("k", "v")
            assert client.get("k") == "v"
        assert [r.request_number for r in fakes[0].requests()] == [1]  # asked once, then went to replica 2
        assert [r.request_number for r in fakes[2].requests()] == [1, 2]


def test_a_lost_request_is_retried_with_the_same_numbers_and_executed_once(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    config = local_config()
    app = FakeApp()
    answered: list[Request] = []

    def loses_the_first_answer(request: Request) -> list[ClientReply | bytes]:
        replies = app(request)  # executes it...
        answered.append(request)
        return replies if len(answered) > 1 else []  # ... but the first answer is lost

    with fake_replicas(config, context, loses_the_first_answer) as fakes:
        with Client(replicas=clients(config), context=context) as client:
            assert client.incr("n") == 1
        assert answered[0] == answered[1]  # the same (client_id, request_number, operation)
        assert len(app.executed) == 1  # and the client table kept it at once
        # The retry went to every replica (the others may read it after the primary's answer arrived).
        assert wait_for(fakes[1].requests, what="the retry at replica 1") == [answered[0]]


def test_timeout_says_the_outcome_is_unknown_and_the_client_carries_on(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    config = local_config()
    app = FakeApp()
    with fake_replicas(config, context, lambda request: []) as fakes:  # registers, then answers nothing
        with Client(replicas=clients(config), timeout_ms=300, context=context) as client:
            started = time.monotonic()
            with pytest.raises(Timeout) as raised:
                client.put("k", 1)
            assert time.monotonic() - started >= 0.29, "gave up before its deadline"
            assert 1 in [r.request_number for r in fakes[0].requests()], "timed out without asking the primary"
            assert raised.value.code == "timeout" and "may or may not have been executed" in str(raised.value)
            fakes[0].script = app
            client.put("k", 2)
            assert client.get("k") == 2
        assert [r.request_number for r in app.executed] == [2, 3]  # numbers move on after an abandoned one


def test_refusals_of_every_attempt_are_not_a_timeout(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    """When every attempt was refused the request was certainly not executed: the specific error, not Timeout."""
    config = local_config()
    with fake_replicas(config, context, *[refuse("unavailable")] * 3) as fakes:
        with Client(replicas=clients(config), timeout_ms=300, context=context) as client:
            with pytest.raises(Unavailable, match="not executed"):
                client.get("k")
            for fake in fakes:
                fake.script = refuse("busy")
            with pytest.raises(Busy):
                client.get("k")
            for fake in fakes:
                fake.script = refuse("bad_request")
            with pytest.raises(BadRequest, match="fake bad_request"):
                client.get("k")
            numbers = [r.request_number for fake in fakes for r in fake.requests()]
            assert numbers.count(max(numbers)) == 1, "bad_request is final: sent once, not retried"
    assert issubclass(Unavailable, ZvsrError) and issubclass(AppError, ZvsrError)


def test_one_client_shared_by_threads_sends_one_request_at_a_time(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    config = local_config()
    app = FakeApp()
    with fake_replicas(config, context, app):
        with Client(replicas=clients(config), context=context) as client:
            threads = [threading.Thread(target=lambda: [client.incr("n") for _ in range(25)]) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=20)
            assert client.get("n") == 100
    assert [r.request_number for r in app.executed] == list(range(1, 102))


# --- via proxies: the proxy retries toward the replicas, the client keeps only its deadline -------------------


def fake_proxies(context: zmq.Context[zmq.Socket[bytes]], *scripts: Script) -> list[FakeReplica]:
    """Fakes at free ports that answer like proxies: the client speaks the same Request / Reply to both."""
    ports = free_ports(len(scripts))
    return [
        FakeReplica(f"tcp://127.0.0.1:{port}", context, script).start()
        for port, script in zip(ports, scripts, strict=True)
    ]


def test_through_proxies_each_request_goes_once_to_one_proxy(
    context: zmq.Context[zmq.Socket[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two proxies, both alive. Request 2 is answered only after the client's clock has run 150 ticks (1.5 s of
    its time, past the 1 s after which it used to re-send to every proxy): still, every request number reaches
    exactly one proxy, once."""
    ticks = [0]
    tick = RelaySession.tick

    def counting_tick(session: RelaySession) -> None:
        ticks[0] += 1
        tick(session)

    monkeypatch.setattr(RelaySession, "tick", counting_tick)
    app = FakeApp()

    def slow_for_request_2(request: Request) -> list[ClientReply | bytes]:
        if request.request_number == 2:
            wait_for(lambda: ticks[0] >= 150, what="150 ticks of the client")
        return app(request)

    proxies = fake_proxies(context, slow_for_request_2, slow_for_request_2)
    try:
        with Client([p.endpoint for p in proxies], timeout_ms=5000, context=context) as client:
            for _ in range(3):
                client.incr("n")
        assert ticks[0] >= 150
        received = sorted(r.request_number for p in proxies for r in p.requests())
        assert received == [1, 2, 3]
    finally:
        for fake in proxies:
            fake.stop()


def test_through_a_proxy_the_clients_own_deadline_decides_when_the_caller_gets_timeout(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    """The proxy gives up after its 300 ms (silent replicas) and answers `timeout`; the client's deadline,
    1000 ms, is still ahead, so it asks again, and the caller gets Timeout at the client's deadline: the
    exception is the client's own ("within 1000 ms"), not the proxy's answer passed on."""
    config = local_config(tick_ms=5, request_timeout_ms=300)
    unanswered = [lambda request: []] * 3  # the fakes register sessions, and answer no operation
    with fake_replicas(config, context, *unanswered), running_proxy(config, context) as proxy:
        with Client(proxy.endpoint, timeout_ms=1000, context=context) as client:
            with pytest.raises(Timeout) as raised:
                client.get("k")
        assert "no answer within 1000 ms" in str(raised.value)
        assert proxy.counters["answered timeout"] >= 1 and proxy.counters["requests"] >= 2


def test_a_request_lost_in_a_proxy_restart_is_sent_again_after_the_quiet_period(
    context: zmq.Context[zmq.Socket[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy takes request 1 and restarts before answering: its table of requests in flight is gone, and
    nothing tells the client. After `CLIENT_PROXY_QUIET_MS` without an answer the client sends the same request
    again, and the restarted proxy answers it within the client's deadline."""
    monkeypatch.setattr(client_module, "CLIENT_PROXY_QUIET_MS", 300)
    (before,) = fake_proxies(context, lambda request: [])  # registers the session, loses the operation
    app = FakeApp()
    after: list[FakeReplica] = []

    def restart() -> None:
        wait_for(before.requests, what="request 1 at the proxy")
        before.stop()
        after.append(wait_for(lambda: _bound(FakeReplica(before.endpoint, context, app)), what="the new proxy"))

    restarter = threading.Thread(target=restart)
    restarter.start()
    try:
        with Client(before.endpoint, timeout_ms=5000, context=context) as client:
            assert client.incr("n") == 1
    finally:
        restarter.join(timeout=10)
        for fake in after:
            fake.stop()
    assert [r.request_number for r in before.requests()] == [1]
    assert [r.request_number for r in app.executed] == [1]


def _bound(fake: FakeReplica) -> FakeReplica | None:
    """`fake` started, or None while its endpoint is still held by the socket just closed there."""
    try:
        return fake.start()
    except zmq.ZMQError:
        return None


def test_a_proxy_that_is_down_is_skipped_at_once(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    """Two proxies, one not running: a send to it is refused (no connection), so every request goes to the
    other, once each."""
    (live,) = fake_proxies(context, FakeApp())
    (dead_port,) = free_ports(1)
    try:
        with Client([f"tcp://127.0.0.1:{dead_port}", live.endpoint], timeout_ms=5000, context=context) as client:
            for expected in (1, 2, 3):
                assert client.incr("n") == expected
        assert [r.request_number for r in live.requests()] == [1, 2, 3]
    finally:
        live.stop()


def test_the_proxy_recovers_a_lost_request_and_the_client_sent_it_once(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    """The primary loses the first copy: the proxy's own retry recovers it, and the client, which sent the request
    once, gets the result."""
    config = local_config(tick_ms=5)
    app = FakeApp()
    seen: list[Request] = []

    def loses_the_first_copy(request: Request) -> list[ClientReply | bytes]:
        seen.append(request)
        return app(request) if len(seen) >= 2 else []

    with fake_replicas(config, context, loses_the_first_copy), running_proxy(config, context) as proxy:
        with Client(proxy.endpoint, context=context) as client:
            assert client.incr("n") == 1
        assert len(seen) >= 2 and seen[0] == seen[1]  # the proxy's retry, with the same numbers
        # the register and the operation, each once
        assert proxy.counters["requests"] == 2 and proxy.counters["client retries joined"] == 0


# --- asyncio ----------------------------------------------------------------------------------------------------


def test_async_client_has_the_same_api(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    config = local_config(tick_ms=5)
    app = FakeApp()

    async def scenario(endpoint: str) -> None:
        async with AsyncClient(endpoint, context=zmq.asyncio.Context(context)) as client:
            await client.put("a", 1)
            assert await client.get("a") == 1
            assert await client.cas("a", 1, 2) == (True, 2)
            assert list(await asyncio.gather(client.incr("n"), client.incr("n"), client.incr("n"))) == [1, 2, 3]
            assert (await client.lock("L", "me")).ok and await client.unlock("L", "me")
            assert await client.delete("a") and await client.execute({"op": "get", "key": "n"}) == 3
            # A cancelled call (asyncio.wait_for) leaves the client usable.
            app_script = fakes[0].script
            fakes[0].script = silent
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.get("n"), timeout=0.05)
            fakes[0].script = app_script
            assert await client.get("n") == 3

    with fake_replicas(config, context, app) as fakes, running_proxy(config, context) as proxy:
        asyncio.run(scenario(proxy.endpoint))


# --- legacy clients next to zvsr clients ----------------------------------------------------------------------


def test_a_plain_req_socket_and_a_client_share_the_cluster(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    config = local_config(tick_ms=5)
    with fake_replicas(config, context, FakeApp()), running_proxy(config, context) as proxy:
        with Client(proxy.endpoint, context=context) as client:
            client.put("a", "from zvsr")
        legacy = context.socket(zmq.REQ)
        legacy.setsockopt(zmq.LINGER, 0)
        try:
            legacy.connect(proxy.endpoint)
            legacy.send(msgpack.packb({"op": "get", "key": "a"}))
            assert legacy.poll(5000)
            assert msgpack.unpackb(legacy.recv(), raw=False) == "from zvsr"
        finally:
            legacy.close()


# --- real replica nodes -------------------------------------------------------------------------------------

requires_nodes = pytest.mark.skipif(not NODES_AVAILABLE, reason="zvsr.runtime.node is not importable")


@requires_nodes
def test_direct_client_on_real_replicas_keeps_writing_through_a_failover(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    """A client talking straight to the replicas increments a counter while the primary of view 0 is shut
    down; it finds the new primary itself. The counter equals the acknowledged increments (up to the ones
    reported unknown), and a new client, which starts out believing in view 0, finds the new primary too."""
    config = node_config()
    with node_cluster(config, context) as cluster:
        with Client(replicas=clients(config), context=context, timeout_ms=5000) as client:
            assert client.cas("n", None, 0) == (True, 0)
            load = IncrementLoad.across_loss_of_replica_0(
                lambda: client.incr("n"), Timeout, lambda: cluster.stop(0)
            )
        with Client(replicas=clients(config), context=context, timeout_ms=5000) as fresh:
            total = fresh.get("n")  # found the new primary before its deadline, or this raised Timeout
            fresh.put("after", "failover")
            assert fresh.get("after") == "failover"
    assert load.acknowledged <= total <= load.acknowledged + load.unknown
    if load.unknown == 0:
        assert total == load.acknowledged
