"""Leases in the coordination app (`zvsr.apps.coordination`): scenarios in cluster time, bounds, snapshots, due().

Each scenario feeds the app ops with the context the core would give them (`Log.do`): op numbers 1, 2, 3, …,
the cluster time written in seconds (``at=5.6`` is 5.6 s = 5_600_000_000 ns) and the view. Nothing here sleeps:
time is whatever the ops say.
"""

from __future__ import annotations

import random
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from zvsr import constants as c
from zvsr.apps import CoordinationApp, OpContext

NS_PER_S = 1_000_000_000
EXPIRE = {"op": "lease_expire"}


def ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


class Log:
    """One replica's app, fed ops as the core feeds them: numbered 1, 2, 3, …, each at a cluster time and view."""

    def __init__(self, app: CoordinationApp | None = None) -> None:
        self.app = app if app is not None else CoordinationApp()
        self.op_number = 0

    def do(self, op: Any, *, at: float, view: int = 0) -> Any:
        self.op_number += 1
        return self.app.apply(op, OpContext(op_number=self.op_number, timestamp_ns=ns(at), view=view))

    def grant(self, ttl_ms: int, *, at: float, view: int = 0, lock_delay_ms: int | None = None) -> int:
        op: dict[str, Any] = {"op": "lease_grant", "ttl_ms": ttl_ms}
        if lock_delay_ms is not None:
            op["lock_delay_ms"] = lock_delay_ms
        result = self.do(op, at=at, view=view)
        assert result == {"lease": result["lease"], "ttl_ms": ttl_ms}
        lease: int = result["lease"]
        return lease


def is_error(result: Any, code: str, *words: str) -> bool:
    return (
        type(result) is dict
        and result.keys() == {"error", "message"}
        and result["error"] == code
        and type(result["message"]) is str
        and all(word in result["message"] for word in words)
    )


def state(app: CoordinationApp) -> dict[str, Any]:
    decoded: dict[str, Any] = msgpack.unpackb(app.snapshot(), strict_map_key=False)
    return decoded


# --- grant, keepalive, ttl, list, revoke --------------------------------------------------------------------


def test_a_lease_is_granted_kept_alive_described_listed_and_revoked() -> None:
    log = Log()
    # Lease 1 granted with ttl 1000 ms at t=5 s: its deadline is 6 s.
    assert log.do({"op": "lease_grant", "ttl_ms": 1000}, at=5.0) == {"lease": 1, "ttl_ms": 1000}
    assert log.do({"op": "lease_ttl", "lease": 1}, at=5.3) == {
        "lease": 1,
        "ttl_ms": 1000,
        "remaining_ms": 700,
        "keys": [],
        "locks": [],
    }
    # Keepalive at 5.6 s: the deadline moves to 6.6 s; expire at 6.5 s ends nothing.
    assert log.do({"op": "lease_keepalive", "lease": 1}, at=5.6) == 1000
    assert log.do(EXPIRE, at=6.5) == {"expired": [], "deleted": []}
    assert log.do({"op": "lease_ttl", "lease": 1}, at=6.5)["remaining_ms"] == 100
    assert log.grant(30_000, at=6.6) == 2
    assert log.do({"op": "lease_list"}, at=6.7) == [1, 2]
    assert log.do({"op": "lease_revoke", "lease": 1}, at=6.8) == {"ok": True, "deleted": []}
    assert log.do({"op": "lease_revoke", "lease": 1}, at=6.9) == {"ok": False, "deleted": []}
    assert log.do({"op": "lease_revoke", "lease": 99}, at=6.9) == {"ok": False, "deleted": []}
    for name in ("lease_keepalive", "lease_ttl"):
        assert is_error(log.do({"op": name, "lease": 1}, at=7.0), "lease_not_found", f"{name}: no lease 1")
    assert log.do({"op": "lease_list"}, at=7.1) == [2]
    assert log.grant(1000, at=7.2) == 3, "ids are never reused"


def test_a_lease_past_its_deadline_lives_until_an_expire_op_ends_it() -> None:
    log = Log()
    lease = log.grant(1000, at=5.0)
    # At 7 s the deadline (6 s) has passed, but no lease_expire ran: the lease is live, with nothing left.
    assert log.do({"op": "lease_ttl", "lease": lease}, at=7.0)["remaining_ms"] == 0
    assert log.app.due(ns(7.0)) == EXPIRE
    # A keepalive now restarts it (nothing it held was released meanwhile) ...
    assert log.do({"op": "lease_keepalive", "lease": lease}, at=7.1) == 1000
    assert log.app.due(ns(7.2)) is None
    assert log.do(EXPIRE, at=7.2) == {"expired": [], "deleted": []}
    # ... and an expire op after the new deadline ends it.
    assert log.do(EXPIRE, at=8.1) == {"expired": [lease], "deleted": []}
    assert log.app.due(ns(100.0)) is None


def test_a_client_sent_expire_only_ends_what_is_due_at_its_own_time() -> None:
    log = Log()
    early, late = log.grant(1000, at=1.0), log.grant(5000, at=1.0)
    assert log.do(EXPIRE, at=1.5) == {"expired": [], "deleted": []}
    assert log.do(EXPIRE, at=2.0) == {"expired": [early], "deleted": []}, "deadline <= now: due"
    assert log.do({"op": "lease_list"}, at=2.1) == [late]


# --- keys and locks on a lease ------------------------------------------------------------------------------


def test_put_with_a_lease_attaches_the_key_and_put_without_or_delete_detaches_it() -> None:
    log = Log()
    one, two = log.grant(10_000, at=1.0), log.grant(10_000, at=1.0)
    assert log.do({"op": "put", "key": "svc/a", "value": 1, "lease": one}, at=1.1) is None
    assert log.do({"op": "put", "key": "svc/b", "value": 2, "lease": one}, at=1.2) is None
    assert log.do({"op": "lease_ttl", "lease": one}, at=1.3)["keys"] == ["svc/a", "svc/b"]
    # cas and incr keep the attachment.
    assert log.do({"op": "cas", "key": "svc/a", "expected": 1, "new": 5}, at=1.4) == {"ok": True, "value": 5}
    assert log.do({"op": "incr", "key": "svc/b"}, at=1.5) == 3
    assert log.do({"op": "lease_ttl", "lease": one}, at=1.6)["keys"] == ["svc/a", "svc/b"]
    # A put without a lease detaches (as in etcd); one with another lease moves the key.
    assert log.do({"op": "put", "key": "svc/a", "value": 6}, at=1.7) is None
    assert log.do({"op": "put", "key": "svc/b", "value": 7, "lease": two}, at=1.8) is None
    assert log.do({"op": "lease_ttl", "lease": one}, at=1.9)["keys"] == []
    assert log.do({"op": "lease_ttl", "lease": two}, at=1.9)["keys"] == ["svc/b"]
    # Delete detaches: the same key put again without a lease outlives the lease.
    assert log.do({"op": "delete", "key": "svc/b"}, at=2.0) is True
    assert log.do({"op": "put", "key": "svc/b", "value": 8}, at=2.1) is None
    assert log.do({"op": "lease_revoke", "lease": two}, at=2.2) == {"ok": True, "deleted": []}
    assert log.do({"op": "get", "key": "svc/b"}, at=2.3) == 8
    assert log.do({"op": "lease_revoke", "lease": one}, at=2.4) == {"ok": True, "deleted": []}
    assert log.do({"op": "get", "key": "svc/a"}, at=2.5) == 6


def test_a_put_or_lock_naming_an_unknown_lease_is_refused_and_changes_nothing() -> None:
    log = Log()
    log.do({"op": "put", "key": "k", "value": "old"}, at=1.0)
    ended = log.grant(1000, at=1.0)
    log.do({"op": "lease_revoke", "lease": ended}, at=1.1)
    before = log.app.snapshot()
    for lease in (ended, 7, -1, 0):
        for op in (
            {"op": "put", "key": "k", "value": "new", "lease": lease},
            {"op": "put", "key": "fresh", "value": 1, "lease": lease},
            {"op": "lock", "name": "L", "owner": "o", "lease": lease},
        ):
            assert is_error(log.do(op, at=1.2), "lease_not_found", f"{op['op']}: no lease {lease}")
    assert log.app.snapshot() == before
    assert log.do({"op": "lock", "name": "L", "owner": "o"}, at=1.3)["token"] == 1, "no token was used up"


def test_locks_on_a_lease_keep_fencing_reentry_and_unlock_semantics() -> None:
    log = Log()
    lease = log.grant(10_000, at=1.0)
    granted = log.do({"op": "lock", "name": "jobs", "owner": "w1", "lease": lease}, at=1.1)
    assert granted == {"ok": True, "owner": "w1", "token": 1}
    assert log.do({"op": "lock", "name": "jobs", "owner": "w2", "lease": lease}, at=1.2) == {
        "ok": False,
        "owner": "w1",
        "token": 1,
    }
    # Re-entrant: same token, and nothing changes (with or without a lease named).
    assert log.do({"op": "lock", "name": "jobs", "owner": "w1"}, at=1.3) == granted
    assert log.do({"op": "lease_ttl", "lease": lease}, at=1.4)["locks"] == ["jobs"]
    # Unlock by the holder releases and detaches: revoking the lease later touches nothing.
    assert log.do({"op": "unlock", "name": "jobs", "owner": "w1"}, at=1.5) == {"ok": True}
    assert log.do({"op": "lease_ttl", "lease": lease}, at=1.6)["locks"] == []
    assert log.do({"op": "lock", "name": "jobs", "owner": "w2"}, at=1.7) == {"ok": True, "owner": "w2", "token": 2}
    assert log.do({"op": "lease_revoke", "lease": lease}, at=1.8) == {"ok": True, "deleted": []}
    assert log.do({"op": "lock", "name": "jobs", "owner": "w3"}, at=1.9)["owner"] == "w2"


def test_expiry_deletes_the_keys_and_releases_the_locks_and_the_next_grant_has_a_larger_token() -> None:
    log = Log()
    lease = log.grant(1000, at=5.0)
    log.do({"op": "put", "key": "svc/b", "value": "10.0.0.2", "lease": lease}, at=5.1)
    log.do({"op": "put", "key": "svc/a", "value": "10.0.0.1", "lease": lease}, at=5.1)
    log.do({"op": "put", "key": "config", "value": "stays"}, at=5.1)
    assert log.do({"op": "lock", "name": "leader", "owner": "n1", "lease": lease}, at=5.2)["token"] == 1
    assert log.do({"op": "lock", "name": "other", "owner": "n1"}, at=5.2)["token"] == 2
    assert log.do(EXPIRE, at=5.9) == {"expired": [], "deleted": []}
    assert log.do(EXPIRE, at=6.0) == {"expired": [lease], "deleted": ["svc/a", "svc/b"]}
    assert log.do({"op": "get", "key": "svc/a"}, at=6.1) is None
    assert log.do({"op": "get", "key": "config"}, at=6.1) == "stays"
    assert log.do({"op": "lock", "name": "leader", "owner": "n2"}, at=6.2) == {
        "ok": True,
        "owner": "n2",
        "token": 3,
    }
    assert log.do({"op": "lock", "name": "other", "owner": "n2"}, at=6.2)["owner"] == "n1", "not on the lease"
    assert is_error(log.do({"op": "lease_ttl", "lease": lease}, at=6.3), "lease_not_found")
    assert log.do({"op": "lease_revoke", "lease": lease}, at=6.3) == {"ok": False, "deleted": []}


def test_revoke_deletes_the_keys_and_releases_the_locks_now() -> None:
    log = Log()
    lease = log.grant(60_000, at=1.0, lock_delay_ms=5000)
    log.do({"op": "put", "key": "b", "value": 1, "lease": lease}, at=1.1)
    log.do({"op": "put", "key": "a", "value": 1, "lease": lease}, at=1.1)
    log.do({"op": "lock", "name": "L", "owner": "o", "lease": lease}, at=1.2)
    assert log.do({"op": "lease_revoke", "lease": lease}, at=1.3) == {"ok": True, "deleted": ["a", "b"]}
    # No lock delay after an explicit revoke: the lock is free at once.
    assert log.do({"op": "lock", "name": "L", "owner": "p"}, at=1.3001) == {"ok": True, "owner": "p", "token": 2}
    assert log.app.due(ns(1000.0)) is None


# --- lock delay ---------------------------------------------------------------------------------------------


def test_an_expired_leases_locks_stay_unavailable_for_its_lock_delay() -> None:
    log = Log()
    lease = log.grant(1000, at=5.0, lock_delay_ms=500)
    assert log.do({"op": "lock", "name": "L", "owner": "w1", "lease": lease}, at=5.1)["token"] == 1
    assert log.do(EXPIRE, at=6.0) == {"expired": [lease], "deleted": []}
    # Until 6.5 s nobody gets L, not even its last holder; the answer names the last token and the wait.
    assert log.do({"op": "lock", "name": "L", "owner": "w2"}, at=6.1) == {
        "ok": False,
        "owner": None,
        "token": 1,
        "delay_ms": 400,
    }
    assert log.do({"op": "lock", "name": "L", "owner": "w1"}, at=6.4999)["delay_ms"] == 1, "rounded up"
    assert log.do({"op": "unlock", "name": "L", "owner": "w1"}, at=6.4999) == {"ok": False}
    assert state(log.app)["lock_delays"] == {"L": [ns(6.5), 1]}
    assert log.do({"op": "lock", "name": "L", "owner": "w2"}, at=6.5) == {"ok": True, "owner": "w2", "token": 2}
    assert state(log.app)["lock_delays"] == {}


def test_a_lock_delay_is_forgotten_at_the_first_op_after_it_ends() -> None:
    log = Log()
    lease = log.grant(1000, at=1.0, lock_delay_ms=c.LEASE_LOCK_DELAY_MS_MAX)
    for name in ("x", "y"):
        log.do({"op": "lock", "name": name, "owner": "o", "lease": lease}, at=1.1)
    log.do(EXPIRE, at=2.0)
    assert sorted(state(log.app)["lock_delays"]) == ["x", "y"]
    log.do({"op": "get", "key": "unrelated"}, at=2.0 + c.LEASE_LOCK_DELAY_MS_MAX / 1000 - 0.001)
    assert sorted(state(log.app)["lock_delays"]) == ["x", "y"]
    log.do({"op": "get", "key": "unrelated"}, at=2.0 + c.LEASE_LOCK_DELAY_MS_MAX / 1000)
    assert state(log.app)["lock_delays"] == {}


def test_a_lease_without_lock_delay_frees_its_locks_at_expiry() -> None:
    log = Log()
    lease = log.grant(1000, at=1.0)
    log.do({"op": "lock", "name": "L", "owner": "o", "lease": lease}, at=1.1)
    log.do(EXPIRE, at=2.0)
    assert log.do({"op": "lock", "name": "L", "owner": "p"}, at=2.0001) == {"ok": True, "owner": "p", "token": 2}


# --- failover -----------------------------------------------------------------------------------------------


def failover_history(log: Log) -> tuple[int, Any]:
    """Lease 1 (ttl 1 s) granted and kept alive in view 0 until 5.5 s: due at 6.5 s. The primary fails; the
    first op of view 1 is a lease_expire at 7 s (the new primary's due() said so). Its answer."""
    lease = log.grant(1000, at=5.0)
    log.do({"op": "put", "key": "svc/a", "value": 1, "lease": lease}, at=5.1)
    log.do({"op": "lease_keepalive", "lease": lease}, at=5.5)
    assert log.app.due(ns(7.0)) == EXPIRE, "due() cannot know the view of the op it proposes"
    return lease, log.do(EXPIRE, at=7.0, view=1)


def test_the_first_op_of_a_new_view_refreshes_every_lease_instead_of_expiring_it() -> None:
    log = Log()
    lease, first = failover_history(log)
    assert first == {"expired": [], "deleted": []}
    # The lease got a whole ttl from 7 s; its holder reaches the new primary and keeps it alive.
    assert log.do({"op": "lease_ttl", "lease": lease}, at=7.2, view=1)["remaining_ms"] == 800
    assert log.app.due(ns(7.999)) is None
    assert log.do({"op": "lease_keepalive", "lease": lease}, at=7.9, view=1) == 1000
    assert log.do(EXPIRE, at=8.5, view=1) == {"expired": [], "deleted": []}
    # A holder that never comes back loses it a ttl later, in the new view.
    assert log.do(EXPIRE, at=8.9, view=1) == {"expired": [lease], "deleted": ["svc/a"]}


def test_without_the_refresh_the_same_history_would_expire_the_lease() -> None:
    """The contrast to the test above: the refresh, and nothing else, is what saves the lease."""
    log = Log()
    original = CoordinationApp._refresh_leases
    try:
        CoordinationApp._refresh_leases = lambda self, now: None  # type: ignore[method-assign]
        lease, first = failover_history(log)
    finally:
        CoordinationApp._refresh_leases = original  # type: ignore[method-assign]
    assert first == {"expired": [lease], "deleted": ["svc/a"]}


def test_a_malformed_first_op_of_a_new_view_still_refreshes_and_the_view_is_remembered() -> None:
    log = Log()
    lease = log.grant(1000, at=5.0)
    assert is_error(log.do({"op": "frobnicate"}, at=6.5, view=1), "bad_request")
    assert state(log.app)["last_view"] == 1
    assert log.do(EXPIRE, at=7.0, view=1) == {"expired": [], "deleted": []}, "the refresh happened at 6.5 s"
    assert log.do(EXPIRE, at=7.5, view=1) == {"expired": [lease], "deleted": []}
    # Later ops of the same view refresh nothing.
    other = log.grant(1000, at=8.0, view=1)
    assert log.do(EXPIRE, at=9.0, view=1) == {"expired": [other], "deleted": []}


def test_the_refresh_gives_every_lease_its_whole_ttl_from_the_first_op_of_the_new_view() -> None:
    log = Log()
    long, short = log.grant(60_000, at=1.0), log.grant(1000, at=1.0)
    log.do({"op": "get", "key": "k"}, at=1.5, view=3)
    assert log.do({"op": "lease_ttl", "lease": long}, at=1.5, view=3)["remaining_ms"] == 60_000
    assert log.do({"op": "lease_ttl", "lease": short}, at=1.5, view=3)["remaining_ms"] == 1000


# --- due() --------------------------------------------------------------------------------------------------


def test_due_asks_for_an_expire_exactly_when_a_live_lease_is_past_its_deadline() -> None:
    log = Log()
    assert log.app.due(ns(1e6)) is None and log.app.next_deadline_ns() is None
    lease = log.grant(1000, at=5.0)
    before = log.app.snapshot()
    assert log.app.due(ns(5.999)) is None
    assert log.app.due(ns(6.0)) == EXPIRE
    assert log.app.next_deadline_ns() == ns(6.0)
    assert log.app.snapshot() == before, "due() changes nothing replicated"
    log.do({"op": "lease_revoke", "lease": lease}, at=5.5)
    assert log.app.due(ns(6.0)) is None and log.app.next_deadline_ns() is None


def test_due_stays_cheap_and_right_after_many_keepalives_grants_and_revokes() -> None:
    log = Log()
    rng = random.Random(20_260_101)
    deadlines: dict[int, int] = {}  # the model: live lease -> deadline
    now = 1.0
    for _ in range(20_000):
        now += rng.choice((0.001, 0.01, 0.1))
        roll = rng.random()
        if roll < 0.05 or not deadlines:
            ttl = rng.choice((100, 1000, 10_000))
            deadlines[log.grant(ttl, at=now)] = ns(now) + ttl * 1_000_000
        elif roll < 0.08:
            lease = rng.choice(sorted(deadlines))
            log.do({"op": "lease_revoke", "lease": lease}, at=now)
            del deadlines[lease]
        else:
            lease = rng.choice(sorted(deadlines))
            ttl = log.do({"op": "lease_keepalive", "lease": lease}, at=now)
            deadlines[lease] = ns(now) + ttl * 1_000_000
        assert log.app.next_deadline_ns() == min(deadlines.values(), default=None)
        assert (log.app.due(ns(now)) is not None) == any(d <= ns(now) for d in deadlines.values())
        if log.app.due(ns(now)) is not None:  # the primary's loop: propose the expire op it asks for
            ended = log.do(EXPIRE, at=now)["expired"]
            assert ended == sorted(lease for lease, deadline in deadlines.items() if deadline <= ns(now))
            for lease in ended:
                del deadlines[lease]
        # Stale heap entries (one per keepalive) never pile up: the heap is rebuilt before they outnumber.
        assert len(log.app._deadlines) <= 2 * len(deadlines) + 64


# --- batches ------------------------------------------------------------------------------------------------


def test_an_expire_ends_at_most_a_batch_smallest_deadline_first_and_ties_by_id() -> None:
    log = Log()
    batch = c.LEASE_EXPIRE_BATCH_MAX
    # Leases 1..batch+1 all due at exactly 5 s (granted later with a shorter ttl); the last one granted, at
    # 1.5 s with ttl 1 ms, is due first of all.
    for lease in range(1, batch + 2):
        assert log.grant(5000 - lease, at=lease / 1000) == lease
    first = log.grant(1, at=1.5)
    assert log.do(EXPIRE, at=10.0) == {"expired": [*range(1, batch), first], "deleted": []}
    assert log.app.due(ns(10.0)) == EXPIRE, "the rest stay due"
    assert log.do(EXPIRE, at=10.1) == {"expired": [batch, batch + 1], "deleted": []}
    assert log.app.due(ns(10.1)) is None


def test_an_expire_stops_before_its_deleted_names_would_not_fit_one_result() -> None:
    log = Log()
    big = 60_000  # four such keys take 240_020 bytes: two leases' fit LEASE_NAMES_BYTES_MAX, three do not
    leases = [log.grant(1000, at=1.0) for _ in range(3)]
    for index, lease in enumerate(leases):
        for key in range(4):
            log.do({"op": "put", "key": f"{index}{key}".ljust(big, "x"), "value": 0, "lease": lease}, at=1.1)
    first = log.do(EXPIRE, at=3.0)
    assert first["expired"] == leases[:2] and len(first["deleted"]) == 8
    assert sum(len(key) + 5 for key in first["deleted"]) <= c.LEASE_NAMES_BYTES_MAX
    assert log.do(EXPIRE, at=3.1)["expired"] == leases[2:]


# --- bounds: each gives its error and changes nothing --------------------------------------------------------


def refused(log: Log, op: dict[str, Any], code: str, *words: str, at: float) -> None:
    before = log.app.snapshot()
    result = log.do(op, at=at)
    assert is_error(result, code, *words), result
    assert log.app.snapshot() == before


def test_grant_bounds_on_ttl_and_lock_delay_are_out_of_range() -> None:
    log = Log()
    for ttl in (c.LEASE_TTL_MS_MIN - 1, -5, c.LEASE_TTL_MS_MAX + 1, 2**64 - 1):
        op = {"op": "lease_grant", "ttl_ms": ttl}
        refused(log, op, "out_of_range", "LEASE_TTL_MS_MIN..LEASE_TTL_MS_MAX", at=100.0)
    for delay in (-1, c.LEASE_LOCK_DELAY_MS_MAX + 1):
        op = {"op": "lease_grant", "ttl_ms": 1000, "lock_delay_ms": delay}
        refused(log, op, "out_of_range", "LEASE_LOCK_DELAY_MS_MAX", at=100.0)
    assert log.grant(c.LEASE_TTL_MS_MIN, at=200.0) == 1
    assert log.grant(c.LEASE_TTL_MS_MAX, at=200.0, lock_delay_ms=c.LEASE_LOCK_DELAY_MS_MAX) == 2
    assert log.grant(1000, at=200.0, lock_delay_ms=0) == 3


def test_more_than_leases_max_live_leases_is_a_lease_limit() -> None:
    log = Log()
    for _ in range(c.LEASES_MAX):
        log.do({"op": "lease_grant", "ttl_ms": 1000}, at=1.0)
    refused(log, {"op": "lease_grant", "ttl_ms": 1000}, "lease_limit", "LEASES_MAX", at=1.2)
    listed = log.do({"op": "lease_list"}, at=1.5)
    assert listed == list(range(1, c.LEASES_MAX + 1))
    assert len(msgpack.packb(listed)) <= c.RESULT_BYTES_MAX
    log.do({"op": "lease_revoke", "lease": 7}, at=1.6)
    assert log.grant(1000, at=1.7) == c.LEASES_MAX + 1


def test_more_than_lease_keys_max_keys_and_locks_on_a_lease_is_a_lease_keys_limit() -> None:
    log = Log()
    lease = log.grant(60_000, at=1.0)
    for index in range(c.LEASE_KEYS_MAX - 1):
        log.do({"op": "put", "key": f"k{index}", "value": index, "lease": lease}, at=1.1)
    assert log.do({"op": "lock", "name": "L", "owner": "o", "lease": lease}, at=1.2)["token"] == 1
    op = {"op": "put", "key": "one-more", "value": 0, "lease": lease}
    refused(log, op, "lease_keys_limit", "LEASE_KEYS_MAX", at=100.0)
    op = {"op": "lock", "name": "M", "owner": "o", "lease": lease}
    refused(log, op, "lease_keys_limit", "LEASE_KEYS_MAX", at=100.0)
    # A full lease still takes a new value for a key it already holds, and its lock re-entry.
    assert log.do({"op": "put", "key": "k0", "value": "again", "lease": lease}, at=200.0) is None
    assert log.do({"op": "lock", "name": "L", "owner": "o", "lease": lease}, at=200.0)["token"] == 1
    assert log.do({"op": "lock", "name": "M", "owner": "o"}, at=200.0)["token"] == 2, "the refusal used no token"
    assert len(log.do({"op": "lease_revoke", "lease": lease}, at=201.0)["deleted"]) == c.LEASE_KEYS_MAX - 1


def test_names_beyond_lease_names_bytes_max_on_a_lease_are_a_lease_keys_limit() -> None:
    log = Log()
    lease = log.grant(60_000, at=1.0)
    size = 60_000 - 5  # 60_000 bytes each as a msgpack str, at most: 8 fit in 512 KiB, a 9th does not
    for index in range(8):
        log.do({"op": "put", "key": str(index).ljust(size, "x"), "value": 0, "lease": lease}, at=1.1)
    op = {"op": "put", "key": "9".ljust(size, "x"), "value": 0, "lease": lease}
    refused(log, op, "lease_keys_limit", "LEASE_NAMES_BYTES_MAX", at=100.0)
    op = {"op": "lock", "name": "9".ljust(size, "x"), "owner": "o", "lease": lease}
    refused(log, op, "lease_keys_limit", "LEASE_NAMES_BYTES_MAX", at=100.0)
    assert log.do({"op": "lock", "name": "small", "owner": "o", "lease": lease}, at=200.0)["ok"] is True


@pytest.mark.parametrize(
    "op",
    [
        {"op": "lease_grant"},
        {"op": "lease_grant", "ttl_ms": "1000"},
        {"op": "lease_grant", "ttl_ms": True},
        {"op": "lease_grant", "ttl_ms": 1000.0},
        {"op": "lease_grant", "ttl_ms": 1000, "lock_delay_ms": None},
        {"op": "lease_grant", "ttl_ms": 1000, "lease": 1},
        {"op": "lease_keepalive"},
        {"op": "lease_keepalive", "lease": "1"},
        {"op": "lease_keepalive", "lease": True},
        {"op": "lease_revoke", "lease": 1.0},
        {"op": "lease_ttl", "lease": [1]},
        {"op": "lease_list", "lease": 1},
        {"op": "lease_expire", "now": 10**12},
        {"op": "put", "key": "k", "value": 1, "lease": None},
        {"op": "put", "key": "k", "value": 1, "lease": b"\x01"},
        {"op": "lock", "name": "L", "owner": "o", "lease": "1"},
        {"op": "unlock", "name": "L", "owner": "o", "lease": 1},
        {"op": "delete", "key": "k", "lease": 1},
    ],
)
def test_malformed_lease_fields_are_bad_requests_and_change_nothing(op: dict[str, Any]) -> None:
    log = Log()
    log.grant(1000, at=1.0)
    log.do({"op": "put", "key": "k", "value": 0, "lease": 1}, at=1.0)
    refused(log, op, "bad_request", at=2.0)


def test_the_bounds_keep_every_lease_result_within_one_result() -> None:
    # A lease_expire lists at most LEASE_EXPIRE_BATCH_MAX ids (9 bytes each at most) and key names within
    # LEASE_NAMES_BYTES_MAX; lease_list at most LEASES_MAX ids. Room for the maps around them: 64 bytes.
    assert c.LEASE_NAMES_BYTES_MAX + 9 * c.LEASE_EXPIRE_BATCH_MAX + 64 <= c.RESULT_BYTES_MAX
    assert 9 * c.LEASES_MAX + 64 <= c.RESULT_BYTES_MAX
    assert c.LEASE_TTL_MS_MAX == 86_400_000 and c.LEASE_TTL_MS_MIN == 1


# --- snapshots ----------------------------------------------------------------------------------------------


def busy_log() -> Log:
    """A history with every kind of lease state: live leases with keys and locks, a lock delay, views."""
    log = Log()
    one = log.grant(1000, at=1.0, lock_delay_ms=2000)
    two = log.grant(5000, at=1.0)
    log.do({"op": "put", "key": "svc/b", "value": {"port": 2}, "lease": two}, at=1.1)
    log.do({"op": "put", "key": "svc/a", "value": [1], "lease": two}, at=1.1)
    log.do({"op": "put", "key": "plain", "value": b"x"}, at=1.1)
    log.do({"op": "lock", "name": "z", "owner": "o", "lease": two}, at=1.2)
    log.do({"op": "lock", "name": "a", "owner": "o", "lease": two}, at=1.2)
    log.do({"op": "lock", "name": "delayed", "owner": "o", "lease": one}, at=1.2)
    log.do({"op": "lock", "name": "free-standing", "owner": "p"}, at=1.2)
    log.do(EXPIRE, at=2.0, view=1)  # the first op of view 1 refreshes: lease one is due at 3 s
    log.do(EXPIRE, at=3.0, view=1)  # ... and ends then: "delayed" is in its lock delay until 5 s
    log.grant(10_000, at=3.1, view=2)  # the first op of view 2: lease two is due at 8.1 s
    return log


def test_a_snapshot_restores_byte_identical_and_continues_identically() -> None:
    original = busy_log()
    data = original.app.snapshot()
    decoded = msgpack.unpackb(data, strict_map_key=False)
    assert decoded["version"] == 2 and decoded["last_view"] == 2 and decoded["last_lease_id"] == 3
    assert decoded["leases"][2] == [5000, ns(8.1), 0, ["svc/a", "svc/b"], ["a", "z"]]
    assert decoded["lock_delays"] == {"delayed": [ns(5.0), 3]}
    restored = Log(CoordinationApp())
    restored.app.restore(data)
    restored.op_number = original.op_number
    assert restored.app.snapshot() == data
    assert restored.app.next_deadline_ns() == original.app.next_deadline_ns()
    later = [
        ({"op": "lock", "name": "delayed", "owner": "q"}, 4.0, 2),
        ({"op": "lease_keepalive", "lease": 2}, 4.5, 2),
        (EXPIRE, 9.4, 2),
        ({"op": "lock", "name": "delayed", "owner": "q"}, 9.5, 2),
        (EXPIRE, 20.0, 3),
        (EXPIRE, 30.0, 3),
        ({"op": "lease_list"}, 30.1, 3),
        ({"op": "lease_grant", "ttl_ms": 1}, 30.2, 3),
    ]
    for op, at, view in later:
        assert restored.do(op, at=at, view=view) == original.do(op, at=at, view=view), op
        assert restored.app.due(ns(at)) == original.app.due(ns(at))
    assert restored.app.snapshot() == original.app.snapshot()


V1_SNAPSHOT: dict[str, Any] = {
    "format": "zvsr.coordination",
    "version": 1,
    "data": {"a": 1, "b": [2]},
    "locks": {"db": ["alice", 3]},
    "last_token": 4,
}


def test_a_version_1_snapshot_restores_without_leases_in_view_0() -> None:
    log = busy_log()
    log.app.restore(msgpack.packb(V1_SNAPSHOT, use_bin_type=True))
    decoded = state(log.app)
    assert decoded["version"] == 2
    assert {key: decoded[key] for key in V1_SNAPSHOT if key != "version"} == {
        key: V1_SNAPSHOT[key] for key in V1_SNAPSHOT if key != "version"
    }
    assert (decoded["leases"], decoded["lock_delays"], decoded["last_lease_id"], decoded["last_view"]) == (
        {},
        {},
        0,
        0,
    )
    assert log.app.due(ns(1e6)) is None and log.app.next_deadline_ns() is None
    assert log.do({"op": "lease_list"}, at=50.0) == []
    assert log.grant(1000, at=50.0) == 1
    assert log.do({"op": "lock", "name": "delayed", "owner": "q"}, at=50.1)["token"] == 5


def v2_state() -> dict[str, Any]:
    return state(busy_log().app)


@pytest.mark.parametrize(
    "change",
    [
        {"version": 3},
        {"version": 1},  # version 1 has no leases: the keys do not match
        {"version": True},
        {"format": "zvsr.other"},
        {"extra": 1},
        {"last_view": -1},
        {"last_view": True},
        {"last_lease_id": -1},
        {"last_lease_id": 2},  # lease 3 is live
        {"leases": [1]},
        {"leases": {0: [1000, 0, 0, [], []]}},
        {"leases": {"2": [1000, 0, 0, [], []]}},
        {"leases": {2: [1000, 0, 0, []]}},
        {"leases": {2: [0, 0, 0, [], []]}},
        {"leases": {2: [True, 0, 0, [], []]}},
        {"leases": {2: [1000, -1, 0, [], []]}},
        {"leases": {2: [1000, 0, -1, [], []]}},
        {"leases": {2: [1000, 0, 0, ["svc/b", "svc/a"], []]}},  # not sorted
        {"leases": {2: [1000, 0, 0, ["svc/a", "svc/a"], []]}},  # not distinct
        {"leases": {2: [1000, 0, 0, [7], []]}},
        {"leases": {2: [1000, 0, 0, ["missing"], []]}},  # a key that does not exist
        {"leases": {2: [1000, 0, 0, [], ["free-lock"]]}},  # a lock nobody holds
        {"leases": {2: [1000, 0, 0, ["svc/a"], []], 3: [1000, 0, 0, ["svc/a"], []]}},  # a key on two leases
        {"leases": {2: [1000, 0, 0, [], ["a"]], 3: [1000, 0, 0, [], ["a"]]}},  # a lock on two leases
        {"lock_delays": [1]},
        {"lock_delays": {"a": [0, 3]}},  # "a" is held
        {"lock_delays": {"x": [0, 1]}},  # token 1 is the held lock "z"'s
        {"lock_delays": {"x": [0, 0]}},
        {"lock_delays": {"x": [0, 99]}},  # above last_token
        {"lock_delays": {"x": [-1, 3]}},
        {"lock_delays": {"x": [0]}},
        {"lock_delays": {7: [0, 3]}},
    ],
)
def test_a_corrupt_version_2_snapshot_is_refused_and_the_state_stays(change: dict[str, Any]) -> None:
    log = busy_log()
    before, deadline = log.app.snapshot(), log.app.next_deadline_ns()
    with pytest.raises(ValueError, match="coordination snapshot"):
        log.app.restore(msgpack.packb(v2_state() | change, use_bin_type=True))
    assert log.app.snapshot() == before
    assert log.app.next_deadline_ns() == deadline


def test_the_corrupt_snapshots_are_corrupt_only_by_their_change() -> None:
    """The unchanged state restores, so each refusal above is due to its change alone."""
    app = CoordinationApp()
    app.restore(msgpack.packb(v2_state(), use_bin_type=True))
    assert app.snapshot() == busy_log().app.snapshot()


# --- determinism --------------------------------------------------------------------------------------------


def random_op(rng: random.Random, last_lease: int) -> dict[str, Any]:
    lease = rng.randint(max(0, last_lease - 6), last_lease + 1)  # recent ones, mostly live; some never granted
    key, name, owner = rng.choice("abcde"), rng.choice("LM"), rng.choice("pq")
    choices: list[dict[str, Any]] = [
        {"op": "lease_grant", "ttl_ms": rng.choice((1, 50, 300, 2000)), "lock_delay_ms": rng.choice((0, 0, 100))},
        {"op": "lease_keepalive", "lease": lease},
        {"op": "lease_revoke", "lease": lease},
        {"op": "lease_ttl", "lease": lease},
        {"op": "lease_list"},
        EXPIRE,
        {"op": "put", "key": key, "value": rng.randint(0, 9), "lease": lease},
        {"op": "put", "key": key, "value": rng.randint(0, 9)},
        {"op": "delete", "key": key},
        {"op": "cas", "key": key, "expected": None, "new": 1},
        {"op": "incr", "key": key},
        {"op": "lock", "name": name, "owner": owner, "lease": lease},
        {"op": "lock", "name": name, "owner": owner},
        {"op": "unlock", "name": name, "owner": owner},
        {"op": "lease_grant", "ttl_ms": 0},
        {"op": "lease_keepalive", "lease": "1"},
    ]
    return rng.choice(choices)


def test_replicas_fed_the_same_ops_and_contexts_give_the_same_results_and_snapshot_bytes() -> None:
    rng = random.Random(7)
    primary, backup, late = CoordinationApp(), CoordinationApp(), CoordinationApp()
    now, view, last_lease = 1_000_000_000, 0, 0
    for op_number in range(1, 4001):
        now += rng.choice((1, 10, 100, 1000)) * 1_000_000
        if rng.random() < 0.01:
            view += 1
        # The primary's loop: the op due() asks for, or a client's.
        op = primary.due(now) or random_op(rng, last_lease)
        ctx = OpContext(op_number, now, view)
        result = primary.apply(op, ctx)
        msgpack.packb(result, use_bin_type=True)  # every result encodes
        if op["op"] == "lease_grant" and "lease" in result:
            last_lease = result["lease"]
        assert backup.apply(op, ctx) == result
        if rng.random() < 0.3:
            backup.next_deadline_ns()  # a backup's local heap differs; its results may not
        if op_number == 2000:
            late.restore(primary.snapshot())
        elif op_number > 2000:
            assert late.apply(op, ctx) == result
        if op_number % 250 == 0:
            assert backup.snapshot() == primary.snapshot()
    assert backup.snapshot() == primary.snapshot() == late.snapshot()
    assert state(primary)["last_lease_id"] > 50, "the history exercised leases"
