"""Leases in the Python client (`zvsr.client`): the lease operations, `put` / `lock` with a lease, `lock` with a
ttl, and the lease kept alive in the background (`client.lease(ttl)`, sync and asyncio) — first against a scripted
fake primary whose leases never expire by themselves (the test decides when one is gone, or when keepalives go
unanswered), then against real replica nodes, where leases expire through the log.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest
import zmq
import zmq.asyncio
from click.testing import CliRunner, Result
from zmq_fakes import (
    NODES_AVAILABLE,
    fake_replicas,
    local_config,
    node_cluster,
    node_config,
    running_proxy,
    wait_for,
)

from zvsr.cli import main
from zvsr.client import (
    AppError,
    AsyncClient,
    Client,
    LeaseGrant,
    LeaseNotFound,
    LeaseStatus,
    LockResult,
    RevokeResult,
    Timeout,
    ZvsrError,
)
from zvsr.constants import LEASE_CLOCK_DRIFT
from zvsr.protocol.messages import ClientReply, Reply, Request
from zvsr.runtime.cluster_config import ClusterConfig

pytestmark = pytest.mark.timeout(60)


# --- a fake primary with leases ---------------------------------------------------------------------------------


class FakeLeases:
    """Answers the coordination app's lease operations (and put / get / lock / unlock) like a primary would,
    executing each (client_id, request_number) once. Leases never expire here: `forget(id)` ends one, `mute`
    leaves keepalives unanswered, `delay_s` holds every answer back. `received` records (arrival time,
    client_id, op) for every request executed."""

    def __init__(self) -> None:
        self.leases: dict[int, int] = {}  # id -> ttl_ms
        self.keys: dict[str, tuple[Any, int | None]] = {}  # key -> (value, lease)
        self.locks: dict[str, tuple[str, int, int | None]] = {}  # name -> (owner, token, lease)
        self.received: list[tuple[float, int, dict[str, Any]]] = []
        self.mute = False
        self.delay_s = 0.0
        self.fail_locks = False  # lock requests go unanswered (the caller times out)
        self._next_lease = 100
        self._last_token = 0
        self._answers: dict[tuple[int, int], bytes] = {}
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> list[ClientReply | bytes]:
        op = msgpack.unpackb(request.operation, raw=False)
        with self._lock:
            key = (request.client_id, request.request_number)
            if key not in self._answers:
                if self.mute and op.get("op") == "lease_keepalive":
                    return []
                if self.fail_locks and op.get("op") == "lock":
                    return []
                self.received.append((time.monotonic(), request.client_id, op))
                self._answers[key] = msgpack.packb(self._apply(op), use_bin_type=True)
            result = self._answers[key]
            delay = self.delay_s
        if delay:
            time.sleep(delay)
        return [Reply(view=0, client_id=request.client_id, request_number=request.request_number, result=result)]

    def ops(self, name: str) -> list[tuple[float, int, dict[str, Any]]]:
        with self._lock:
            return [entry for entry in self.received if entry[2].get("op") == name]

    def forget(self, lease: int) -> None:
        with self._lock:
            self._end(lease)

    def _end(self, lease: int) -> list[str]:
        self.leases.pop(lease)
        deleted = sorted(k for k, (_, owner) in self.keys.items() if owner == lease)
        for k in deleted:
            del self.keys[k]
        for name in [n for n, (_, _, owner) in self.locks.items() if owner == lease]:
            del self.locks[name]
        return deleted

    def _apply(self, op: dict[str, Any]) -> Any:
        name = op["op"]
        lease = op.get("lease")
        if lease is not None and lease not in self.leases and name != "lease_revoke":
            return {"error": "lease_not_found", "message": f"{name}: lease {lease} is not live"}
        if name == "lease_grant":
            if not 1 <= op["ttl_ms"] <= 86_400_000:
                return {"error": "out_of_range", "message": "lease_grant: ttl_ms out of range"}
            self._next_lease += 1
            self.leases[self._next_lease] = op["ttl_ms"]
            return {"lease": self._next_lease, "ttl_ms": op["ttl_ms"]}
        if name == "lease_keepalive":
            return self.leases[lease]
        if name == "lease_revoke":
            if lease not in self.leases:
                return {"ok": False, "deleted": []}
            return {"ok": True, "deleted": self._end(lease)}
        if name == "lease_ttl":
            ttl = self.leases[lease]
            keys = sorted(k for k, (_, owner) in self.keys.items() if owner == lease)
            locks = sorted(n for n, (_, _, owner) in self.locks.items() if owner == lease)
            return {"lease": lease, "ttl_ms": ttl, "remaining_ms": ttl, "keys": keys, "locks": locks}
        if name == "lease_list":
            return sorted(self.leases)
        if name == "put":
            self.keys[op["key"]] = (op["value"], lease)
            return None
        if name == "get":
            return self.keys.get(op["key"], (None, None))[0]
        if name == "lock":
            holder = self.locks.get(op["name"])
            if holder is None:
                self._last_token += 1
                holder = self.locks[op["name"]] = (op["owner"], self._last_token, lease)
            return {"ok": holder[0] == op["owner"], "owner": holder[0], "token": holder[1]}
        if name == "unlock":
            holder = self.locks.get(op["name"])
            if holder is None or holder[0] != op["owner"]:
                return {"ok": False}
            del self.locks[op["name"]]
            return {"ok": True}
        return {"error": "bad_request", "message": f"unknown op {name!r}"}


def replicas(config: ClusterConfig) -> list[str]:
    return [address.client for address in config.replicas]


@contextmanager
def fake_primary(context: zmq.Context[zmq.Socket[bytes]]) -> Iterator[tuple[FakeLeases, ClusterConfig]]:
    """A FakeLeases as replica 0 (the primary of view 0) of a 3-replica configuration; the others are silent."""
    config = local_config()
    app = FakeLeases()
    with fake_replicas(config, context, app):
        yield app, config


# --- the operations ---------------------------------------------------------------------------------------------


def test_lease_operations_send_the_documented_maps_and_read_their_results(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    with fake_primary(context) as (app, config), Client(replicas=replicas(config), context=context) as client:
        grant = client.lease_grant(5000)
        assert grant == LeaseGrant(id=101, ttl_ms=5000)
        assert client.lease_grant(2000, lock_delay_ms=300).id == 102
        assert client.lease_keepalive(grant.id) == 5000
        client.put("eph", "x", lease=grant.id)
        client.put("plain", "y")
        locked = client.lock("L", "me", lease=grant.id)
        assert locked == LockResult(ok=True, owner="me", token=1, lease=grant.id, delay_ms=0)
        assert client.lock("L", "you", lease=102) == LockResult(ok=False, owner="me", token=1)
        assert client.lease_ttl(grant.id) == LeaseStatus(grant.id, 5000, 5000, ["eph"], ["L"])
        assert client.lease_list() == [101, 102]
        assert client.lease_revoke(grant.id) == RevokeResult(ok=True, deleted=["eph"])
        assert client.lease_revoke(grant.id) == RevokeResult(ok=False, deleted=[])
        assert client.get("eph") is None and client.get("plain") == "y"
        # An ended lease is LeaseNotFound, an AppError with the app's code.
        for call in (
            lambda: client.lease_keepalive(grant.id),
            lambda: client.lease_ttl(grant.id),
            lambda: client.put("k", 1, lease=grant.id),
            lambda: client.lock("M", "me", lease=grant.id),
        ):
            with pytest.raises(LeaseNotFound) as raised:
                call()
            assert isinstance(raised.value, AppError) and raised.value.code == "lease_not_found"
        with pytest.raises(AppError) as out_of_range:
            client.lease_grant(0)
        assert out_of_range.value.code == "out_of_range" and not isinstance(out_of_range.value, LeaseNotFound)
    sent = [op for _, _, op in app.received]
    assert sent[:7] == [
        {"op": "lease_grant", "ttl_ms": 5000},  # no lock_delay_ms: 0 is the app's default
        {"op": "lease_grant", "ttl_ms": 2000, "lock_delay_ms": 300},
        {"op": "lease_keepalive", "lease": 101},
        {"op": "put", "key": "eph", "value": "x", "lease": 101},
        {"op": "put", "key": "plain", "value": "y"},
        {"op": "lock", "name": "L", "owner": "me", "lease": 101},
        {"op": "lock", "name": "L", "owner": "you", "lease": 102},
    ]


def test_a_lock_in_its_lock_delay_reads_as_not_held_with_the_time_left(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    config = local_config()

    def in_lock_delay(request: Request) -> list[ClientReply | bytes]:
        result = msgpack.packb({"ok": False, "owner": None, "token": 7, "delay_ms": 250})
        return [Reply(view=0, client_id=request.client_id, request_number=request.request_number, result=result)]

    with fake_replicas(config, context, in_lock_delay), Client(replicas=replicas(config), context=context) as c:
        assert c.lock("L", "me") == LockResult(ok=False, owner=None, token=7, lease=None, delay_ms=250)


def test_lease_arguments_are_checked_before_anything_is_sent(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    with fake_primary(context) as (app, config), Client(replicas=replicas(config), context=context) as client:
        with pytest.raises(ValueError, match="not both"):
            client.lock("L", "me", lease=101, ttl=1)
        for bad in (lambda: client.lease_grant("5000"), lambda: client.lease_grant(True)):  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                bad()
        with pytest.raises(TypeError):
            client.lease_grant(1000, lock_delay_ms=1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.put("k", 1, lease="101")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.lock("L", 7, ttl=1)  # type: ignore[arg-type]
        for ttl in (0, -1, float("nan"), float("inf"), "10"):
            with pytest.raises(ValueError):
                client.lease(ttl)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            client.lease(1, lock_delay=-1)
        with pytest.raises(RuntimeError, match="not granted yet"):
            _ = client.lease(1).id
    assert app.received == []


def test_lock_with_a_ttl_grants_a_lease_and_revokes_it_when_the_lock_is_not_taken(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    with fake_primary(context) as (app, config), Client(replicas=replicas(config), context=context) as client:
        mine = client.lock("L", "me", ttl=2.5)
        assert mine.ok and mine.lease in app.leases and app.leases[mine.lease] == 2500
        theirs = client.lock("L", "you", ttl=1)
        assert theirs == LockResult(ok=False, owner="me", token=mine.token, lease=None)
        assert list(app.leases) == [mine.lease], "the lease granted for a lock not taken was revoked"
        # A lock call that times out (outcome unknown: it may hold the lock) revokes its lease too.
        app.fail_locks = True
        with Client(replicas=replicas(config), context=context, timeout_ms=300) as impatient:
            with pytest.raises(Timeout):
                impatient.lock("M", "me", ttl=1)
        assert list(app.leases) == [mine.lease]
    names = [op["op"] for _, _, op in app.received]
    assert names == ["lease_grant", "lock", "lease_grant", "lock", "lease_revoke", "lease_grant", "lease_revoke"]


# --- a lease kept alive in the background ------------------------------------------------------------------------


def test_a_kept_lease_is_renewed_every_third_of_its_ttl_on_its_own_session_and_revoked_on_exit(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    with fake_primary(context) as (app, config), Client(replicas=replicas(config), context=context) as client:
        with client.lease(ttl=0.9) as lease:
            assert lease.id in app.leases and lease.ttl == 0.9
            assert 0 < lease.valid_for() <= 0.9 * (1 - LEASE_CLOCK_DRIFT)
            client.put("eph", 1, lease=lease.id)  # the holder's own client is free for its work meanwhile
            wait_for(lambda: len(app.ops("lease_keepalive")) >= 5, timeout_s=10, what="5 keepalives")
            assert not lease.lost.is_set()
            assert lease.valid_for() > 0.9 * (1 - LEASE_CLOCK_DRIFT) - 0.3 - 0.3, "renewed about every 0.3 s"
        assert lease.valid_for() == 0 and not lease.lost.is_set()
        assert app.leases == {} and app.keys == {}, "revoked on exit"
        keepalives = app.ops("lease_keepalive")
        assert {op["lease"] for _, _, op in keepalives} == {lease.id}
        assert {sender for _, sender, _ in keepalives} != {client.client_id}, "on a session of its own"
        grant_at = app.ops("lease_grant")[0][0]
        times = [grant_at] + [at for at, _, _ in keepalives]
        # ttl/3 apart, not faster. Sends are spaced from the previous send; what the fake primary sees is the
        # arrival, which a loaded machine delays by a varying amount, so the spacing is checked on average.
        assert (times[-1] - times[0]) / (len(times) - 1) >= 0.25, times
        assert not [t for t in threading.enumerate() if t.name.startswith("zvsr-lease-")], "the thread ended"


def test_a_kept_lease_that_the_cluster_ended_is_lost(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    with fake_primary(context) as (app, config), Client(replicas=replicas(config), context=context) as client:
        with client.lease(ttl=0.6) as lease:
            wait_for(lambda: app.ops("lease_keepalive"), what="a first keepalive")
            app.forget(lease.id)
            assert lease.lost.wait(5), "a keepalive answered lease_not_found"
            assert lease.valid_for() == 0
            count = len(app.ops("lease_keepalive"))
            time.sleep(0.5)  # not synchronisation: time for keepalives that must not come
            assert len(app.ops("lease_keepalive")) == count, "keepalives stop once the lease is lost"
        assert app.ops("lease_revoke"), "exit still revokes (harmless for a lease already gone)"


def test_a_kept_lease_whose_keepalives_go_unanswered_for_a_ttl_is_lost(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    """valid_for() reaches 0 by ttl × (1 - drift) after the last acknowledged send, `lost` by a whole ttl."""
    with fake_primary(context) as (app, config), Client(replicas=replicas(config), context=context) as client:
        with client.lease(ttl=0.6) as lease:
            wait_for(lambda: app.ops("lease_keepalive"), what="a first keepalive")
            app.mute = True
            last_acknowledged = app.ops("lease_keepalive")[-1][0]
            assert lease.lost.wait(5)
            lost_at = time.monotonic()
            assert lost_at - last_acknowledged >= 0.6 - 0.05, "lost only after a whole ttl without an answer"
            assert lease.valid_for() == 0
            app.mute = False


def test_valid_for_counts_from_the_send_time_of_the_acknowledged_request(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    """The grant's answer takes 0.3 s: the lease may have started any time in those 0.3 s, so right after the
    grant the holder may count on at most ttl × (1 - drift) - 0.3 s."""
    with fake_primary(context) as (app, config), Client(replicas=replicas(config), context=context) as client:
        app.delay_s = 0.3
        with client.lease(ttl=2) as lease:
            app.delay_s = 0.0
            assert lease.valid_for() <= 2 * (1 - LEASE_CLOCK_DRIFT) - 0.3


def test_the_async_lease_is_kept_alive_by_a_task_lost_when_ended_and_revoked_on_exit(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    async def scenario(app: FakeLeases, endpoints: list[str]) -> None:
        async with AsyncClient(replicas=endpoints, context=zmq.asyncio.Context(context)) as client:
            async with client.lease(ttl=0.6) as lease:
                assert lease.id in app.leases and 0 < lease.valid_for() <= 0.6 * (1 - LEASE_CLOCK_DRIFT)
                await client.put("eph", 1, lease=lease.id)
                while len(app.ops("lease_keepalive")) < 4:
                    await asyncio.sleep(0.02)
                assert not lease.lost.is_set()
            assert app.leases == {} and app.keys == {}
            async with client.lease(ttl=0.6) as doomed:
                app.forget(doomed.id)
                await asyncio.wait_for(doomed.lost.wait(), 5)
                assert doomed.valid_for() == 0
            locked = await client.lock("L", "me", ttl=1)
            assert locked.ok and locked.lease in app.leases
            with pytest.raises(LeaseNotFound):
                await client.lease_keepalive(doomed.id)
            assert await client.lease_revoke(locked.lease) == RevokeResult(True, [])
            assert await client.lease_list() == []

    with fake_primary(context) as (app, config):
        asyncio.run(asyncio.wait_for(scenario(app, replicas(config)), 30))
    assert issubclass(LeaseNotFound, ZvsrError)


# --- real replica nodes: leases end through the log -----------------------------------------------------------

requires_nodes = pytest.mark.skipif(not NODES_AVAILABLE, reason="zvsr.runtime.node is not importable")


@contextmanager
def real_cluster(context: zmq.Context[zmq.Socket[bytes]]) -> Iterator[str]:
    """Three replica nodes (threads of this process) and a proxy; yields the proxy's endpoint."""
    config = node_config()
    with node_cluster(config, context), running_proxy(config, context) as proxy:
        yield proxy.endpoint


def gone(client: Client, key: str) -> bool:
    return client.get(key) is None


@requires_nodes
@pytest.mark.timeout(60)
def test_grant_keepalive_revoke_round_trip_on_real_replicas(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    with real_cluster(context) as proxy, Client(proxy, context=context, timeout_ms=10_000) as client:
        grant = client.lease_grant(10_000)
        assert grant.ttl_ms == 10_000 and grant.id >= 1
        assert client.lease_keepalive(grant.id) == 10_000
        client.put("eph", {"n": 1}, lease=grant.id)
        held = client.lock("job", "me", lease=grant.id)
        assert held.ok and held.lease == grant.id
        status = client.lease_ttl(grant.id)
        assert (status.id, status.ttl_ms, status.keys, status.locks) == (grant.id, 10_000, ["eph"], ["job"])
        assert 0 < status.remaining_ms <= 10_000
        assert grant.id in client.lease_list()
        assert client.lease_revoke(grant.id) == RevokeResult(ok=True, deleted=["eph"])
        assert client.get("eph") is None
        after = client.lock("job", "other")
        assert after.ok and after.token > held.token, "revoking released the lock at once (no lock delay)"
        assert grant.id not in client.lease_list()
        assert client.lease_revoke(grant.id) == RevokeResult(ok=False, deleted=[])
        with pytest.raises(LeaseNotFound):
            client.lease_keepalive(grant.id)
        with pytest.raises(LeaseNotFound):
            client.put("late", 1, lease=grant.id)
        with pytest.raises(AppError) as out_of_range:
            client.lease_grant(0)
        assert out_of_range.value.code == "out_of_range"


@requires_nodes
@pytest.mark.timeout(60)
def test_a_key_put_with_a_lease_goes_when_the_lease_is_revoked_and_when_it_expires(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    with real_cluster(context) as proxy, Client(proxy, context=context, timeout_ms=10_000) as client:
        revoked = client.lease_grant(30_000)
        client.put("a", 1, lease=revoked.id)
        client.lease_revoke(revoked.id)
        assert client.get("a") is None
        # Nobody keeps this one alive: the primary expires it through the log about a second after its grant,
        # never before ttl × (1 - drift) after the grant was sent.
        sent = time.monotonic()
        expiring = client.lease_grant(1000)
        client.put("b", 2, lease=expiring.id)
        client.put("kept", 3)
        assert client.get("b") == 2
        wait_for(lambda: gone(client, "b"), timeout_s=1 + 5, what="the key of the expired lease to go")
        assert time.monotonic() - sent >= 1.0 * (1 - LEASE_CLOCK_DRIFT)
        assert client.get("kept") == 3
        with pytest.raises(LeaseNotFound):
            client.lease_ttl(expiring.id)


@requires_nodes
@pytest.mark.timeout(60)
def test_a_kept_lease_outlives_its_ttl_three_times_and_is_revoked_on_exit(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    with real_cluster(context) as proxy, Client(proxy, context=context, timeout_ms=10_000) as client:
        with client.lease(ttl=1) as lease:
            client.put("held", "yes", lease=lease.id)
            assert client.lock("L", "me", lease=lease.id).ok
            time.sleep(3)  # the point of the test: three ttls with only the background keepalives
            assert not lease.lost.is_set()
            assert client.get("held") == "yes"
            assert client.lease_ttl(lease.id).keys == ["held"]
            assert 0 < lease.valid_for() <= 1 * (1 - LEASE_CLOCK_DRIFT)
        assert client.get("held") is None, "revoked on exit: its key went at once"
        with pytest.raises(LeaseNotFound):
            client.lease_keepalive(lease.id)
        assert client.lock("L", "other").ok


@requires_nodes
@pytest.mark.timeout(60)
def test_a_lock_whose_holder_stops_keeping_alive_is_taken_after_its_ttl_with_a_larger_token(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    with (
        real_cluster(context) as proxy,
        Client(proxy, context=context, timeout_ms=10_000) as holder,
        Client(proxy, context=context, timeout_ms=10_000) as waiter,
    ):
        sent = time.monotonic()
        first = holder.lock("job", "holder", ttl=1)
        assert first.ok and first.lease is not None
        refused = waiter.lock("job", "waiter")
        assert (refused.ok, refused.owner, refused.token) == (False, "holder", first.token)
        # The holder stops keeping its lease alive (it died, or hangs): the waiter polls.
        taken = wait_for(
            lambda: (result := waiter.lock("job", "waiter")).ok and result,
            timeout_s=1 + 1 - (time.monotonic() - sent),
            interval_s=0.05,
            what="the lock, once the holder's lease expired",
        )
        assert time.monotonic() - sent >= 1.0 * (1 - LEASE_CLOCK_DRIFT)
        assert taken.token > first.token
        with pytest.raises(LeaseNotFound):
            holder.lease_keepalive(first.lease)


@requires_nodes
@pytest.mark.timeout(60)
def test_the_async_kept_lease_on_real_replicas(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    async def scenario(proxy: str) -> None:
        async with AsyncClient(proxy, context=zmq.asyncio.Context(context), timeout_ms=10_000) as client:
            async with client.lease(ttl=1) as lease:
                await client.put("async-held", 1, lease=lease.id)
                await asyncio.sleep(2.5)  # more than two ttls, kept alive by the task alone
                assert not lease.lost.is_set() and await client.get("async-held") == 1
            assert await client.get("async-held") is None
            locked = await client.lock("async-lock", "me", ttl=5)
            assert locked.ok and locked.lease in await client.lease_list()
            assert (await client.lease_revoke(locked.lease)).ok

    with real_cluster(context) as proxy:
        asyncio.run(asyncio.wait_for(scenario(proxy), 40))


# --- the CLI: zvsr kv lease ..., kv put --lease, kv lock --ttl | --lease -----------------------------------------


def kv(proxy: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["kv", "--proxy", proxy, "--timeout-ms", "10000", *args])


def ok(result: Result) -> Any:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return json.loads(result.output)


@requires_nodes
@pytest.mark.timeout(60)
def test_the_kv_lease_commands_on_real_replicas(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    with real_cluster(context) as proxy:
        grant = ok(kv(proxy, "lease", "grant", "--ttl", "30"))
        assert grant == {"lease": grant["lease"], "ttl_ms": 30_000}
        lease = str(grant["lease"])
        assert ok(kv(proxy, "put", "cli/eph", '{"a": 1}', "--lease", lease)) is None
        assert ok(kv(proxy, "lease", "keepalive", lease)) == 30_000
        status = ok(kv(proxy, "lease", "ttl", lease))
        assert status == {**status, "lease": int(lease), "ttl_ms": 30_000, "keys": ["cli/eph"], "locks": []}
        assert 0 < status["remaining_ms"] <= 30_000
        assert int(lease) in ok(kv(proxy, "lease", "list"))
        held = ok(kv(proxy, "lock", "cli/job", "w1", "--lease", lease))
        assert held["ok"] is True and held["owner"] == "w1"
        assert ok(kv(proxy, "lease", "revoke", lease)) == {"ok": True, "deleted": ["cli/eph"]}
        assert ok(kv(proxy, "get", "cli/eph")) is None
        # A lease that is not live: the app's error code, exit 1.
        missing = kv(proxy, "lease", "keepalive", lease)
        assert missing.exit_code == 1 and "lease_not_found" in missing.output
        assert ok(kv(proxy, "lease", "revoke", lease)) == {"ok": False, "deleted": []}

        # lock --ttl grants the lease itself and prints it with the token; nobody keeps it alive here.
        mine = ok(kv(proxy, "lock", "cli/ttl", "w2", "--ttl", "1"))
        assert mine["ok"] is True and type(mine["lease"]) is int and mine["token"] > held["token"]
        theirs = ok(kv(proxy, "lock", "cli/ttl", "w3", "--ttl", "1"))
        assert theirs == {"ok": False, "owner": "w2", "token": mine["token"]}, "not taken: no lease printed"
        wait_for(lambda: ok(kv(proxy, "lock", "cli/ttl", "w3"))["ok"], timeout_s=6, what="w2's lease to expire")
        # A lock delay keeps an expired holder's lock from anyone for a while.
        delayed = ok(kv(proxy, "lease", "grant", "--ttl", "0.5", "--lock-delay", "30"))
        assert ok(kv(proxy, "lock", "cli/delayed", "w4", "--lease", str(delayed["lease"])))["ok"]
        answer = wait_for(
            lambda: (a := ok(kv(proxy, "lock", "cli/delayed", "w5")))["owner"] is None and a,
            timeout_s=6,
            what="the lock delay",
        )
        assert answer["ok"] is False and 0 < answer["delay_ms"] <= 30_000

        usage = kv(proxy, "lock", "cli/x", "w6", "--ttl", "1", "--lease", "1")
        assert usage.exit_code == 2 and "not both" in usage.output
        for bad in (["lease", "grant"], ["lease", "grant", "--ttl", "0"], ["lease", "keepalive", "x"]):
            assert kv(proxy, *bad).exit_code == 2, bad
        out_of_range = kv(proxy, "lease", "grant", "--ttl", "100000")
        assert out_of_range.exit_code == 1 and "out_of_range" in out_of_range.output
