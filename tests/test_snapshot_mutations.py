"""Mutation checks for the snapshot rules (ARCHITECTURE §5.3, as `test_mutations.py` does for the seed flaws):
each mutant bends one snapshot rule of the core by monkeypatching, and the scenario of `snapshot_scenarios.py`
that pins the rule (run as a test by `test_protocol_snapshots.py`) must then fail. A check that cannot fail is a
defect.

The mutants wrap the real code (a dispatch-table entry, or a method looked up on `self`) and change one thing,
so they keep tracking the core as it evolves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import snapshot_scenarios as snaps
from mutants import Handler, assert_caught, patch_handler, patch_method

from zvsr.protocol import snapshots
from zvsr.protocol.client_table import ClientTable
from zvsr.protocol.messages import SnapshotChunk
from zvsr.protocol.replica import Replica, Status
from zvsr.protocol.snapshots import Snapshots

MonkeyPatch = pytest.MonkeyPatch
Method = Callable[..., Any]


def mutant_snapshot_forgets_the_client_table(monkeypatch: MonkeyPatch) -> None:
    """A snapshot restores the app state only (installed from the primary or read back from disk)."""

    def make(original: Method) -> Method:
        def flawed(self: Replica, data: bytes) -> None:
            original(self, data)
            self.client_table = ClientTable(size_max=self.client_table.size_max)

        return flawed

    patch_method(monkeypatch, "_restore_snapshot", make)


def mutant_truncate_at_the_latest_snapshot(monkeypatch: MonkeyPatch) -> None:
    """The log is dropped up to the snapshot just taken, not the previous one."""

    def make(original: Method) -> Method:
        def flawed(self: Replica) -> None:
            taken = self.counters.get("snapshot taken", 0)
            original(self)
            if self.counters.get("snapshot taken", 0) > taken and not self.snapshots.pins:
                self._truncate_log(self.snapshots.op_number)

        return flawed

    patch_method(monkeypatch, "_maybe_take_snapshot", make)


def mutant_no_pins(monkeypatch: MonkeyPatch) -> None:
    """A snapshot being downloaded is not kept: the next snapshot truncates the log after it and replaces it."""

    def make(original: Method) -> Method:
        def flawed(self: Replica) -> None:
            pins, self.snapshots.pins = self.snapshots.pins, {}
            try:
                original(self)
            finally:
                self.snapshots.pins = pins

        return flawed

    patch_method(monkeypatch, "_maybe_take_snapshot", make)


def mutant_pins_never_expire(monkeypatch: MonkeyPatch) -> None:
    patch_method(monkeypatch, "expire_pins", lambda original: lambda self, *, now: None, owner=Snapshots)


def mutant_checksum_of_what_arrived(monkeypatch: MonkeyPatch) -> None:
    """The receiver checks the bytes against a checksum of themselves (nothing is verified)."""

    def make(original: Handler) -> Handler:
        def flawed(self: Replica, message: SnapshotChunk) -> None:
            if message.offset == 0 and len(message.data) == message.size:
                message = dataclasses.replace(message, checksum=snapshots.checksum(message.data))
            original(self, message)

        return flawed

    patch_handler(monkeypatch, SnapshotChunk, make)


def mutant_chunk_from_any_replica(monkeypatch: MonkeyPatch) -> None:
    def make(original: Handler) -> Handler:
        def flawed(self: Replica, message: SnapshotChunk) -> None:
            original(self, dataclasses.replace(message, replica=self.config.primary(message.view)))

        return flawed

    patch_handler(monkeypatch, SnapshotChunk, make)


def mutant_chunk_of_an_older_view(monkeypatch: MonkeyPatch) -> None:
    def make(original: Handler) -> Handler:
        def flawed(self: Replica, message: SnapshotChunk) -> None:
            if message.view < self.view_number and self.status is Status.NORMAL:
                message = dataclasses.replace(message, view=self.view_number, replica=self.primary_index())
            original(self, message)

        return flawed

    patch_handler(monkeypatch, SnapshotChunk, make)


def mutant_behind_primary_starts_the_view_with_its_own_log(monkeypatch: MonkeyPatch) -> None:
    """A new primary behind the best vote's snapshot starts the view anyway, with the log it can serve (its own)
    instead of moving on to the next view."""

    def make(original: Method) -> Method:
        def flawed(self: Replica) -> None:
            votes = self.votes.do_view_change_from
            if self.status is Status.VIEW_CHANGE and self.replica in votes and len(votes) >= self.config.quorum:
                best = max(votes.values(), key=lambda m: (m.last_normal_view, m.op_number))
                if best.op_number - len(best.log) > self.commit_number:
                    own = votes[self.replica]
                    self.votes.do_view_change_from = {r: dataclasses.replace(own, replica=r) for r in votes}
            original(self)

        return flawed

    patch_method(monkeypatch, "_maybe_start_view", make)


def mutant_state_transfer_ends_with_the_snapshot(monkeypatch: MonkeyPatch) -> None:
    """A replica fetching a newer view's state installs the snapshot as soon as it is whole, replacing its old
    log (and its last_normal_view) before it holds the rest of the view's log."""

    def make(original: Method) -> Method:
        def flawed(self: Replica, data: bytes) -> None:
            if self.state_transfer is not None and self.status is Status.NORMAL:
                self.state_transfer.take_snapshot(data)
                self._finish_state_transfer(self.state_transfer)
                self._request_state(force=True)
                return
            original(self, data)

        return flawed

    patch_method(monkeypatch, "_snapshot_downloaded", make)


def mutant_recovery_never_starts_over(monkeypatch: MonkeyPatch) -> None:
    """A recovering replica keeps asking the primary it began with, even once that primary left the view."""

    def make(original: Method) -> Method:
        def flawed(self: Replica) -> None:
            if self.snapshots.download is not None:
                self.snapshots.download.progress_at = self.now
            original(self)

        return flawed

    patch_method(monkeypatch, "_tick_recovering", make)


CASES: list[tuple[Callable[[MonkeyPatch], None], Callable[[], None]]] = [
    (mutant_snapshot_forgets_the_client_table, snaps.scenario_no_double_execution_after_snapshot_install),
    (mutant_snapshot_forgets_the_client_table, snaps.scenario_restart_from_disk_with_a_snapshot),
    (mutant_snapshot_forgets_the_client_table, snaps.scenario_restart_from_the_disk_the_readys_wrote),
    (mutant_truncate_at_the_latest_snapshot, snaps.scenario_snapshot_cadence),
    (mutant_no_pins, snaps.scenario_slow_download_completes_while_the_primary_keeps_snapshotting),
    (mutant_pins_never_expire, snaps.scenario_pin_expires_without_requests),
    (mutant_checksum_of_what_arrived, snaps.scenario_corrupted_snapshot_is_never_installed),
    (mutant_chunk_from_any_replica, snaps.scenario_stray_chunks_are_ignored_and_counted),
    (mutant_chunk_of_an_older_view, snaps.scenario_stray_chunks_are_ignored_and_counted),
    (
        mutant_behind_primary_starts_the_view_with_its_own_log,
        snaps.scenario_primary_elect_behind_the_chosen_log_skips_the_view,
    ),
    (
        mutant_state_transfer_ends_with_the_snapshot,
        snaps.scenario_start_view_beyond_our_commit_keeps_the_old_log_until_the_new_one_is_whole,
    ),
    (mutant_recovery_never_starts_over, snaps.scenario_recovery_starts_over_when_the_primary_changes_view),
]


@pytest.mark.parametrize(("mutant", "scenario"), CASES, ids=[f"{m.__name__}-{s.__name__}" for m, s in CASES])
def test_snapshot_mutant_is_caught(
    monkeypatch: MonkeyPatch, mutant: Callable[[MonkeyPatch], None], scenario: Callable[[], None]
) -> None:
    mutant(monkeypatch)
    assert_caught(scenario)


SCENARIOS: list[Callable[[], None]] = list(dict.fromkeys(scenario for _, scenario in CASES))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_the_scenarios_pass_without_mutants(scenario: Callable[[], None]) -> None:
    scenario()
