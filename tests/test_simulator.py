"""The simulator: deterministic per seed, catches what it claims to, and its CLI reports as documented."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from click.testing import CliRunner

from zvsr.protocol.ready import Ready
from zvsr.protocol.replica import DurableState, Replica
from zvsr.sim.cli import sim_command
from zvsr.sim.simulator import SimOptions, Simulation, Violation, run_seed


def test_the_same_seed_replays_the_same_run() -> None:
    first = Simulation(11)
    second = Simulation(11)
    assert first.run() == second.run()
    assert list(first.trace) == list(second.trace)
    assert first.history == second.history


def test_different_seeds_differ() -> None:
    assert Simulation(1).run() != Simulation(2).run()


@pytest.mark.parametrize("replicas", [3, 5])
def test_many_seeds_with_faults_hold_every_invariant(replicas: int) -> None:
    options = SimOptions(replicas=replicas)
    for seed in range(40):
        result = run_seed(seed, options)
        assert result.linearizable == "ok"
        assert result.ops_ok > 0


# Seeds beyond the usual 1,000 that found bugs, each kept as a regression: (seed, replicas, events).
FOUND_SEEDS = [
    # A joining replica's catch-up across an epoch's end, torn: its restart held ops after its epoch's end.
    (1482, 5, 2000),
    # A member fetching its own epoch's view log from a primary that had moved on ignored the later epoch's
    # catch-up while it waited, and the new epoch never had a quorum again (liveness).
    (12308, 3, None),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("seed", "replicas", "events"), FOUND_SEEDS)
def test_seeds_that_found_bugs_pass(seed: int, replicas: int, events: int | None) -> None:
    options = SimOptions(replicas=replicas) if events is None else SimOptions(replicas=replicas, events=events)
    result = run_seed(seed, options)
    assert result.linearizable == "ok" and result.ops_ok > 0


def test_faults_really_happen_view_changes_and_recoveries() -> None:
    # 60 seeds: with pre-vote a replica cut off alone no longer changes view, so view changes are rarer per seed.
    views = 0
    recoveries = 0
    for seed in range(60):
        simulation = Simulation(seed)
        simulation.run()
        views += max(r.view_number for r in simulation.replicas if r is not None)
        recoveries += sum(1 for _, text in simulation.trace if "recovered from" in text)
    assert views > 30
    assert recoveries > 0


def test_a_broken_core_is_reported_with_its_seed_and_a_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    # Mutant: a backup executes a Prepare's ops without waiting for the commit: state diverges from commits.
    original = Replica._commit_up_to

    def eager(self: Replica, op_number: int) -> None:
        original(self, self.op_number)

    monkeypatch.setattr(Replica, "_commit_up_to", eager)
    with pytest.raises(Violation) as caught:
        for seed in range(30):
            run_seed(seed)
    assert f"seed={caught.value.seed}" in caught.value.report
    assert "last events:" in caught.value.report


def test_cli_prints_the_summary_line_and_exits_zero() -> None:
    result = CliRunner().invoke(sim_command, ["--seeds", "3", "--replicas", "3"])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert re.match(r"seeds=3 violations=0 events=\d+ ops=\d+", last)


def test_cli_reports_the_lease_workload() -> None:
    """The summary counts lease_expire ops committed and lock grants: the lease invariants were exercised."""
    result = CliRunner().invoke(sim_command, ["--seeds", "10", "--verbose"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    found = re.search(r" lease_expire_ops=(\d+) lock_grants=(\d+) ", lines[-1])
    assert found is not None, lines[-1]
    assert int(found[1]) > 0 and int(found[2]) > 0
    assert all("lease_expire_ops=" in line and "leases_expired=" in line for line in lines[:-1])


def test_cli_exits_nonzero_on_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    def always_fails(seed: int, options: SimOptions | None = None) -> None:
        raise Violation(seed, "test", f"seed={seed}: injected")

    monkeypatch.setattr("zvsr.sim.cli.run_seed", always_fails)
    result = CliRunner().invoke(sim_command, ["--seeds", "2"])
    assert result.exit_code == 1
    assert "violations=1" in result.output
    assert "replay: zvsr sim --seeds 1 --seed 0" in result.output


def test_restarts_from_disk_really_happen_and_keep_every_promise() -> None:
    restored = 0
    for seed in range(40):
        simulation = Simulation(seed)
        simulation.run()
        restored += sum(1 for _, text in simulation.trace if "restored from disk" in text)
    assert restored > 20


def test_a_restart_that_forgets_its_disk_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: restart from disk with the view state but an empty log (amnesia about acknowledged prepares)."""
    original = Replica._restore

    def forgetful(self: Replica, durable: DurableState) -> None:
        original(
            self, replace(durable, log=durable.log[: durable.commit_number], commit_number=durable.commit_number)
        )

    monkeypatch.setattr(Replica, "_restore", forgetful)
    with pytest.raises(Violation):
        for seed in range(200):
            run_seed(seed)


@pytest.mark.parametrize("flaw", ["skips an op", "misnumbers an op", "forgets a restore"])
def test_a_core_whose_ready_misreports_what_it_executed_is_caught(
    monkeypatch: pytest.MonkeyPatch, flaw: str
) -> None:
    """The checker reads what the core says it executed (`Ready.executed`, `Ready.restored`), which is all the
    watch stream knows: a report that drops an op, numbers one wrong or hides a snapshot restore is a
    violation, even though the core's own state is right."""
    original = Replica.ready

    def misreporting(self: Replica) -> Ready:
        ready = original(self)
        if flaw == "skips an op" and len(ready.executed) >= 2:
            del ready.executed[1]
        elif flaw == "misnumbers an op" and ready.executed:
            op_number, entry, result = ready.executed[0]
            ready.executed[0] = (op_number + 1, entry, result)
        elif flaw == "forgets a restore":
            ready.restored.clear()
        return ready

    monkeypatch.setattr(Replica, "ready", misreporting)
    with pytest.raises(Violation) as caught:
        for seed in range(200):
            run_seed(seed)
    assert "executed" in caught.value.invariant or "executed" in caught.value.report
