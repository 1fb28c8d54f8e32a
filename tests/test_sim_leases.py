"""Leases in the simulator: the lease workload runs in every default run, its checks can fail, and a holder
keeps its lease through a failover that outlasts its TTL (`lease_scenarios.py`)."""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest
from lease_scenarios import holder_keeps_its_lease_through_a_failover_longer_than_its_ttl

from zvsr.constants import SIM_CLOCK_RATE_SPREAD
from zvsr.protocol.messages import INTERNAL_CLIENT_ID, LogEntry
from zvsr.sim.invariants import LeaseChecker, Violation
from zvsr.sim.simulator import LOCKS, SimOptions, Simulation, run_seed

# --- the scenario -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_holder_keeps_its_lease_through_a_failover_longer_than_its_ttl(seed: int) -> None:
    report = holder_keeps_its_lease_through_a_failover_longer_than_its_ttl(seed)
    assert report.view_started_ms - report.refreshed_before_ms > report.ttl_ms


def test_the_failover_scenario_holds_with_a_shorter_ttl_over_more_seeds() -> None:
    """The same story with other clock rates (each seed draws its own): short TTL, long cut."""
    for seed in range(4, 10):
        holder_keeps_its_lease_through_a_failover_longer_than_its_ttl(seed, ttl_ms=200, cut_ms=500)


# --- the workload is exercised by default runs --------------------------------------------------------------


@pytest.mark.parametrize("replicas", [3, 5])
def test_default_runs_grant_lock_expire_and_hand_over(replicas: int) -> None:
    """Over a few default (swarm) seeds, leases are granted, locks granted, and the cluster expires leases
    of dead holders — every replica applying each lease_expire at the same op number with the same result
    (the checker's committed-result check), which only means something if expiries happen."""
    expire_ops = expired = grants = 0
    dead = 0
    for seed in range(30):
        simulation = Simulation(seed, SimOptions(replicas=replicas))
        result = simulation.run()
        assert result.linearizable == "ok"
        expire_ops += result.lease_expire_ops
        expired += result.leases_expired
        grants += result.lock_grants
        dead += sum(1 for _, text in simulation.trace if "stops keeping alive" in text)
        assert simulation.leases.grants == result.lock_grants
    assert expire_ops > 30 and expired > 20 and grants > 30 and dead > 5, (expire_ops, expired, grants, dead)


def test_lease_clients_stay_out_of_the_linearizability_history() -> None:
    simulation = Simulation(5)
    simulation.run()
    assert simulation.holders, "the default run has lease clients"
    kinds = {op.input["op"] for op in simulation.history}
    assert kinds <= {"get", "put", "cas", "incr"}, kinds
    assert all("lease" not in op.input for op in simulation.history)


def test_a_seed_with_leases_replays_exactly() -> None:
    first, second = Simulation(21), Simulation(21)
    assert first.run() == second.run()
    assert list(first.trace) == list(second.trace)


# --- the checks can fail ------------------------------------------------------------------------------------


def checker() -> LeaseChecker:
    return LeaseChecker(spread=SIM_CLOCK_RATE_SPREAD, violation=lambda what: Violation(0, what, what))


def commit(leases: LeaseChecker, op_number: int, view: int, proposed: int, op: object, result: object) -> None:
    """Op `op_number` of `view`, proposed at `proposed` ms, committed with `result`."""
    entry = LogEntry(
        view=view,
        op_number=op_number,
        client_id=INTERNAL_CLIENT_ID if op == {"op": "lease_expire"} else 7,
        request_number=op_number,
        operation=msgpack.packb(op),
        timestamp=proposed * 1_000_000,
    )
    leases.proposed[entry] = proposed
    leases.on_commit(entry, msgpack.packb(result))


def test_an_expiry_a_whole_ttl_after_the_last_keepalive_passes() -> None:
    leases = checker()
    commit(leases, 1, 0, 10, {"op": "lease_grant", "ttl_ms": 300}, {"lease": 1, "ttl_ms": 300})
    commit(leases, 2, 0, 100, {"op": "lease_keepalive", "lease": 1}, 300)
    commit(leases, 3, 0, 100 + 300, {"op": "lease_expire"}, {"expired": [1], "deleted": []})
    assert (leases.expire_ops, leases.expired) == (1, 1)


def test_an_expiry_before_a_ttl_after_the_last_keepalive_is_caught() -> None:
    leases = checker()
    commit(leases, 1, 0, 10, {"op": "lease_grant", "ttl_ms": 300}, {"lease": 1, "ttl_ms": 300})
    commit(leases, 2, 0, 100, {"op": "lease_keepalive", "lease": 1}, 300)
    with pytest.raises(Violation, match="expired early"):
        commit(leases, 3, 0, 100 + 250, {"op": "lease_expire"}, {"expired": [1], "deleted": []})


def test_an_expiry_before_a_ttl_after_the_view_began_is_caught() -> None:
    """The failover refresh: a new view's first op gives every lease a whole TTL again."""
    leases = checker()
    commit(leases, 1, 0, 10, {"op": "lease_grant", "ttl_ms": 300}, {"lease": 1, "ttl_ms": 300})
    commit(leases, 2, 3, 900, {"op": "get", "key": "k"}, None)  # the new view's first op, long after
    with pytest.raises(Violation, match="expired early"):
        commit(leases, 3, 3, 950, {"op": "lease_expire"}, {"expired": [1], "deleted": []})


def test_a_fencing_token_that_does_not_grow_is_caught() -> None:
    leases = checker()
    a_locks, b_locks = {"op": "lock", "name": "l0", "owner": "a"}, {"op": "lock", "name": "l1", "owner": "b"}
    commit(leases, 1, 0, 10, a_locks, {"ok": True, "owner": "a", "token": 5})
    commit(leases, 2, 0, 11, a_locks, {"ok": True, "owner": "a", "token": 5})
    assert leases.grants == 1  # re-entrant: the same grant
    with pytest.raises(Violation, match="fencing token"):
        commit(leases, 3, 0, 12, b_locks, {"ok": True, "owner": "b", "token": 4})


def test_a_grant_while_another_holder_believes_is_caught() -> None:
    leases = checker()
    leases.lock_granted(LOCKS[0], "a", 100, leases.belief(90, 300))
    with pytest.raises(Violation, match="two holders"):
        leases.lock_granted(LOCKS[0], "b", 300, leases.belief(280, 300))


def test_a_grant_after_the_holder_revoked_or_its_belief_ended_passes() -> None:
    leases = checker()
    first = leases.lock_granted(LOCKS[0], "a", 100, leases.belief(90, 300))
    leases.released(first, 150)
    leases.lock_granted(LOCKS[0], "b", 160, leases.belief(155, 300))
    leases.lock_granted(LOCKS[0], "c", 155 + 286, leases.belief(400, 300))  # b's belief ended at 155 + 285.7


def test_a_grant_answered_after_the_holders_lease_may_have_ended_starts_no_belief() -> None:
    """Seed 50716: a lock grant's answer was held up so long that the lease it was granted under had expired,
    and the lock granted to another client, before it arrived; the late holder has nothing to act on."""
    leases = checker()
    leases.lock_granted(LOCKS[1], "h1501.3", 745, leases.belief(730, 200))
    late = leases.lock_granted(LOCKS[1], "h1500.2", 762, leases.belief(526, 200))
    with pytest.raises(Violation, match="two holders"):  # ... unless its lease is acknowledged again
        leases.belief_extended(late, leases.belief(700, 200))


def test_a_belief_extended_past_another_grant_is_caught() -> None:
    """A keepalive acknowledged late says the lease lived: a grant to another client meanwhile is a violation."""
    leases = checker()
    first = leases.lock_granted(LOCKS[0], "a", 100, leases.belief(90, 300))
    leases.lock_granted(LOCKS[0], "b", 400, leases.belief(395, 300))
    with pytest.raises(Violation, match="two holders"):
        leases.belief_extended(first, leases.belief(350, 300))


def test_default_runs_keep_every_lease_invariant() -> None:
    for seed in range(20):
        run_seed(seed)
