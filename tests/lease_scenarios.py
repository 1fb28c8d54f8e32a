"""Lease scenarios on the simulator — a helpers module, not a test module (as `scenarios.py` is for the core).

Each scenario is a plain function that raises AssertionError (a `Violation` of the simulator's checker is one)
when the promise it pins is broken: `test_sim_leases.py` runs it as a test, and `test_mutations.py` runs it with
a flaw re-introduced and checks that it fails. They drive a `Simulation` by hand — no random faults, no message
loss, only what the scenario does — with the simulator's lease holders and its checker (`LeaseChecker`) on.
"""

from __future__ import annotations

from dataclasses import dataclass

from zvsr.protocol.replica import Status
from zvsr.sim.network import NetworkOptions
from zvsr.sim.simulator import LEASE_CLIENT_BASE, LeaseHolder, SimOptions, Simulation

FOREVER_MS = 10**9


def calm_simulation(seed: int, *, ttl_ms: int, replicas: int = 3) -> Simulation:
    """One lease client, no kv clients, no random faults, a network that neither loses nor duplicates."""
    options = SimOptions(
        replicas=replicas,
        clients=0,
        lease_clients=1,
        lease_ttl_ms=ttl_ms,
        swarm=False,
        crash=False,
        pause=False,
        partition=False,
        snapshot_interval_ops=0,
        network=NetworkOptions(delay_ms_min=1, delay_ms_max=3, loss=0.0, duplicate=0.0),
    )
    return Simulation(seed, options)


def steady_holder(simulation: Simulation) -> LeaseHolder:
    """Start the run and wait until the lease client holds its lock; from then on it keeps its lease alive
    every TTL/3 and never lets go (no revoke, no dying)."""
    simulation.start()
    holder = simulation.holders[LEASE_CLIENT_BASE]
    simulation.run_until(lambda: holder.state == "holding", within_ms=5_000, what="the holder gets its lock")
    holder.dead_at, holder.release_at = None, FOREVER_MS
    return holder


@dataclass(frozen=True)
class FailoverReport:
    ttl_ms: int
    crashed: int
    new_primary: int
    refreshed_before_ms: int  # when the lease's last keepalive before the crash was proposed
    view_started_ms: int  # when the new view's first op was proposed


def holder_keeps_its_lease_through_a_failover_longer_than_its_ttl(
    seed: int = 1, *, ttl_ms: int = 300, cut_ms: int = 600
) -> FailoverReport:
    """A holder keeps its lock's lease alive every TTL/3. The primary crashes (it stays down), and the two
    backups cannot hear each other for `cut_ms` (> TTL), so no new view can start before the lease's deadline
    has passed on every clock. The holder keeps retrying its keepalive all along. When the new primary starts
    its view, it must give the lease a whole TTL from its first op (the failover refresh): the holder's
    keepalive then gets through, and it keeps its lease and its lock — no lease_expire may end it (the
    checker's "no lease ends early" holds), and its keepalives after the failover succeed."""
    simulation = calm_simulation(seed, ttl_ms=ttl_ms)
    holder = steady_holder(simulation)
    lease, leases, holding = holder.lease, simulation.leases, holder.holding
    assert lease is not None and holding is not None
    # A few keepalives in the steady state, then the failover right after one was committed.
    simulation.run_until(
        lambda: simulation.now > holding.start + ttl_ms and leases.live[lease][1] >= simulation.now - 5,
        within_ms=10 * ttl_ms,
        what="a keepalive committed after the holder held its lock for a TTL",
    )
    refreshed_before = leases.live[lease][1]
    crashed = simulation.primary()
    assert crashed is not None
    backups = [index for index in range(3) if index != crashed]
    simulation.crash(crashed, restart_after_ms=FOREVER_MS)
    for a in backups:
        for b in backups:
            if a != b:
                simulation.network.block(a, b)
    cut_until = simulation.now + cut_ms
    simulation.run_until(lambda: simulation.now >= cut_until, within_ms=cut_ms + 10, what="the cut")
    simulation.network.heal()
    simulation.run_until(
        lambda: simulation.primary() not in (None, crashed), within_ms=5_000, what="a new primary in normal status"
    )
    new_primary = simulation.primary()
    assert new_primary is not None
    replica = simulation.replicas[new_primary]
    assert replica is not None and replica.status is Status.NORMAL
    # Its first tick comes before the holder's next retry reaches it: it asks its app what is due — by its
    # clock, the lease's old deadline passed long ago — before any keepalive can refresh the lease.
    simulation.tick_now(new_primary)
    # The holder's keepalive gets through in the new view, and the next one too.
    simulation.run_until(
        lambda: leases.view > 0 and lease in leases.live and leases.live[lease][1] > leases.view_start,
        within_ms=3 * ttl_ms,
        what=f"a keepalive of lease {lease} committed in the new view",
    )
    view_started = leases.view_start
    assert view_started - refreshed_before > ttl_ms, (
        f"the failover ({view_started - refreshed_before} ms after the last keepalive) did not outlast the TTL"
    )
    simulation.run_until(lambda: simulation.now >= view_started + 2 * ttl_ms, within_ms=3 * ttl_ms, what="2 TTLs")
    assert holder.lease == lease and holder.state == "holding", f"the holder lost lease {lease} ({holder.state})"
    assert lease in leases.live, f"lease {lease} ended"
    assert leases.expired == 0, f"{leases.expired} leases expired"
    assert holder.belief_end > simulation.now, "the holder's keepalives stopped being acknowledged"
    return FailoverReport(ttl_ms, crashed, new_primary, refreshed_before, view_started)
