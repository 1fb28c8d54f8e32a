"""The asyncio client pipelines concurrent calls through proxies (zvsr.client_pipeline): each call on a session of
its own, the requests of one event-loop turn in one RequestBatch, each answer (or error) to its own caller.

Real replica and proxy processes, except where a scripted fake replica behind an in-process proxy is what the
scenario needs (a request that is never answered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest
import zmq
import zmq.asyncio
from zmq_fakes import echo_result, fake_replicas, local_config, running_proxy

from zvsr.client import AppError, AsyncClient, LeaseNotFound, Timeout
from zvsr.client_pipeline import Pipeline
from zvsr.constants import CLIENT_PIPELINE_MAX
from zvsr.protocol.messages import ClientReply, Request
from zvsr.runtime.processes import ProcessCluster, process_cluster, wait_for
from zvsr.runtime.status import query


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    with process_cluster(tmp_path) as started:
        started.wait_for_primary()
        yield started


def proxy_counter(cluster: ProcessCluster, name: str) -> int:
    status = query(cluster.config.proxy, timeout_ms=2000, context=cluster.context)
    assert status is not None, "the proxy does not answer its status query"
    return int(status["counters"].get(name, 0))


def pipeline_of(client: AsyncClient) -> Pipeline:
    pipeline = client._pipeline
    assert pipeline is not None
    return pipeline


@pytest.mark.timeout(120)
def test_500_concurrent_increments_go_in_batches_and_each_caller_gets_its_value(cluster: ProcessCluster) -> None:
    """500 coroutines increment one counter through one AsyncClient at once: the requests leave in RequestBatches
    (the proxy counts them: as many as the client sent, for its 500 operations and the registers of its
    CLIENT_PIPELINE_MAX sessions, at least 15 requests a message on average), every increment ran once, and each
    caller got a different value: exactly 1..500."""
    before = proxy_counter(cluster, "request batches received")

    async def run() -> tuple[list[int], dict[str, int], Any]:
        async with AsyncClient(cluster.config.proxy, timeout_ms=20_000) as client:
            values = await asyncio.gather(*(client.incr("n") for _ in range(500)))
            return values, dict(pipeline_of(client).counters), await client.get("n")

    values, counters, final = asyncio.run(run())
    assert sorted(values) == list(range(1, 501))
    assert final == 500
    batches = counters["request batches sent"]
    requests = 500 + CLIENT_PIPELINE_MAX
    assert counters["requests sent"] == requests and 2 <= batches <= requests // 15
    assert proxy_counter(cluster, "request batches received") - before == batches


@pytest.mark.timeout(120)
def test_calls_one_at_a_time_go_unbatched_on_one_session(cluster: ProcessCluster) -> None:
    """A caller that awaits each call before the next sends plain Requests, all on the client's one session (one
    register, then five operations): the proxy receives no batch."""
    before = proxy_counter(cluster, "request batches received")

    async def run() -> tuple[list[int], set[int], dict[str, int]]:
        async with AsyncClient(cluster.config.proxy, timeout_ms=20_000) as client:
            values, ids = [], set()
            for _ in range(5):
                values.append(await client.incr("seq"))
                ids.add(client.client_id)
            return values, ids, dict(pipeline_of(client).counters)

    values, ids, counters = asyncio.run(run())
    assert values == [1, 2, 3, 4, 5]
    assert len(ids) == 1
    assert counters["request batches sent"] == 0 and counters["requests sent"] == 1 + 5
    assert proxy_counter(cluster, "request batches received") == before


@pytest.mark.timeout(120)
def test_an_app_error_in_a_batch_is_raised_only_for_its_own_caller(cluster: ProcessCluster) -> None:
    """One batch holds 30 good increments, an increment of a key holding a string (type_error) and a keepalive
    of a lease that does not exist: those two callers get their AppErrors, every other caller its value."""

    async def run() -> list[Any]:
        async with AsyncClient(cluster.config.proxy, timeout_ms=20_000) as client:
            await client.put("text", "not a number")
            calls: list[Any] = [client.incr("good") for _ in range(15)]
            calls += [client.incr("text"), client.lease_keepalive(987_654_321)]
            calls += [client.incr("good") for _ in range(15)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert pipeline_of(client).counters["request batches sent"] >= 1
            return results

    results = asyncio.run(run())
    good = results[:15] + results[17:]
    assert sorted(good) == list(range(1, 31))
    assert isinstance(results[15], AppError) and results[15].code == "type_error"
    assert isinstance(results[16], LeaseNotFound)


@pytest.mark.timeout(180)
def test_kill_9_of_the_primary_mid_batch_loses_nothing_and_runs_nothing_twice(cluster: ProcessCluster) -> None:
    """Ten waves of 64 concurrent increments through one AsyncClient; in the fourth, once its batch has left,
    the primary is killed with SIGKILL. The proxy carries each element to the new primary with its own
    (client_id, request_number): every call is acknowledged, the values are exactly 1..640 (none ran twice,
    none was lost) and the counter ends at 640."""
    primary = cluster.wait_for_primary()

    async def run() -> list[int]:
        values: list[int] = []
        async with AsyncClient(cluster.config.proxy, timeout_ms=60_000) as client:
            counters = pipeline_of(client).counters
            for wave in range(10):
                sent = counters["requests sent"]
                calls = asyncio.gather(*(client.incr("failover") for _ in range(64)))
                if wave == 3:
                    while counters["requests sent"] < sent + 64:  # the wave's batch is on its way
                        await asyncio.sleep(0)
                    cluster.kill(primary)
                values += await calls
        return values

    values = asyncio.run(run())
    assert sorted(values) == list(range(1, 641))
    assert cluster.wait_for_primary(other_than=primary) != primary

    async def final() -> Any:
        async with AsyncClient(cluster.config.proxy, timeout_ms=20_000) as client:
            return await client.get("failover")

    assert asyncio.run(final()) == 640


@pytest.mark.timeout(120)
def test_batch_false_and_direct_mode_send_one_request_at_a_time(cluster: ProcessCluster) -> None:
    """`batch=False` (through the proxy) and a client direct to the replicas run concurrent calls one after
    another on one session, as before: all values right, no batch at the proxy."""
    before = proxy_counter(cluster, "request batches received")
    replicas = [address.client for address in cluster.config.replicas]

    async def run() -> tuple[list[int], list[int]]:
        async with AsyncClient(cluster.config.proxy, timeout_ms=20_000, batch=False) as unbatched:
            assert unbatched._pipeline is None
            first = await asyncio.gather(*(unbatched.incr("one") for _ in range(20)))
        async with AsyncClient(replicas=replicas, timeout_ms=20_000) as direct:
            assert direct._pipeline is None
            second = await asyncio.gather(*(direct.incr("one") for _ in range(20)))
        return first, second

    first, second = asyncio.run(run())
    assert first == list(range(1, 21)) and second == list(range(21, 41))  # one at a time: in call order
    assert proxy_counter(cluster, "request batches received") == before


def _silent_for_key(key: str) -> Any:
    """A primary that answers every request except those whose operation names `key`."""
    echo = echo_result(msgpack.packb(1))

    def script(request: Request) -> list[ClientReply | bytes]:
        op = msgpack.unpackb(request.operation, raw=False)
        return [] if op.get("key") == key else echo(request)

    return script


@pytest.mark.timeout(60)
def test_a_call_cancelled_or_timed_out_in_a_batch_ends_alone_and_its_session_is_reused(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    """The replicas never answer key "lost". In one batch: a call on it cancelled by asyncio.wait_for, one that
    runs into the client's deadline (Timeout), and two good calls, which get their results. The next turn's
    calls reuse the sessions those calls held and get answers."""
    config = local_config(tick_ms=5, request_timeout_ms=200)
    with fake_replicas(config, context, _silent_for_key("lost")), running_proxy(config, context) as proxy:

        async def run() -> tuple[list[Any], list[Any], int]:
            async with AsyncClient(proxy.endpoint, timeout_ms=600, context=zmq.asyncio.Context(context)) as client:
                first = await asyncio.gather(
                    asyncio.wait_for(client.get("lost"), 0.1),
                    client.get("lost"),
                    client.get("a"),
                    client.get("b"),
                    return_exceptions=True,
                )
                second = await asyncio.gather(*(client.get(k) for k in "abcd"), return_exceptions=True)
                return first, second, len(pipeline_of(client)._lanes)

        first, second, lanes = asyncio.run(run())
        assert isinstance(first[0], asyncio.TimeoutError)
        assert isinstance(first[1], Timeout)
        assert first[2:] == [1, 1]
        assert second == [1, 1, 1, 1]
        assert lanes == 4
        wait_for(lambda: proxy.counters["request batches received"] >= 2 or None, timeout_s=5)
