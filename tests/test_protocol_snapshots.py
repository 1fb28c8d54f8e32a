"""Snapshots, log truncation and snapshot transfer (docs/protocol.md), as scenarios.

Every `snapshot_interval_ops` committed ops a replica snapshots its app state and client table and drops the
log before its previous snapshot. A replica behind the primary's oldest kept op fetches the snapshot in
checksummed chunks, then the log after it; the primary pins a snapshot being downloaded so that a slow download
never chases truncation. Recovery, view changes, StartView and restarts from disk all meet a truncated log.

The scenario bodies and their helpers live in `snapshot_scenarios.py`, so that `test_snapshot_mutations.py` can
re-introduce a flaw into the core and check that the same scenario catches it.
"""

from __future__ import annotations

from scenarios import counted, header
from snapshot_scenarios import (
    chunk_for,
    commit_ops,
    heartbeat,
    queued,
    same_state,
    scenario_catch_up_by_snapshot_in_chunks,
    scenario_corrupted_snapshot_is_never_installed,
    scenario_download_overtaken_by_the_log_is_dropped,
    scenario_installed_snapshot_is_persisted_before_the_log_after_it,
    scenario_no_double_execution_after_snapshot_install,
    scenario_pin_expires_without_requests,
    scenario_primary_elect_behind_the_chosen_log_skips_the_view,
    scenario_recovery_fetches_the_primarys_snapshot,
    scenario_recovery_starts_over_when_the_primary_changes_view,
    scenario_restart_from_disk_with_a_snapshot,
    scenario_restart_from_the_disk_the_readys_wrote,
    scenario_slow_download_completes_while_the_primary_keeps_snapshotting,
    scenario_snapshot_cadence,
    scenario_start_view_beyond_our_commit_keeps_the_old_log_until_the_new_one_is_whole,
    scenario_stray_chunks_are_ignored_and_counted,
    sent,
    snapshot_config,
    status,
    ten_ops_without,
)

from zvsr.protocol import snapshots
from zvsr.protocol.messages import (
    Commit,
    GetSnapshot,
    GetState,
    NewState,
    PrepareOk,
    Recovery,
    RecoveryResponse,
    SnapshotChunk,
    StartViewChange,
)
from zvsr.protocol.replica import Status
from zvsr.sim.harness import Cluster, matching

# --- helpers ------------------------------------------------------------------------------------------------

# --- 1. cadence: a snapshot every interval, the log kept from the previous one --------------------------------


def test_snapshot_every_interval_keeps_the_log_after_the_previous_snapshot() -> None:
    scenario_snapshot_cadence()


def test_an_installed_snapshot_is_persisted_before_the_log_after_it() -> None:
    scenario_installed_snapshot_is_persisted_before_the_log_after_it()


def test_no_snapshot_when_the_interval_is_zero() -> None:
    cluster = Cluster(3, config=snapshot_config(interval=0))
    commit_ops(cluster, 1, 10)
    primary = cluster.replicas[0]
    assert (primary.snapshot_op, primary.log_base, len(primary.log)) == (0, 0, 10)
    assert "snapshot taken" not in primary.counters


# --- 2. a backup behind the log's start catches up by snapshot transfer, in chunks ---------------------------


def test_backup_cut_off_through_several_snapshots_catches_up_by_chunked_snapshot_transfer() -> None:
    scenario_catch_up_by_snapshot_in_chunks()


def test_backup_behind_by_less_than_the_kept_log_catches_up_from_the_log() -> None:
    """Replica 2 misses ops 8..10 only: the primary still holds the log after op 6, so no snapshot moves."""
    cluster = Cluster(3, config=snapshot_config())
    commit_ops(cluster, 1, 7)
    heartbeat(cluster)
    cluster.partition({2}, {0, 1})
    commit_ops(cluster, 8, 10)
    cluster.heal()
    heartbeat(cluster)
    same_state(cluster, 0, 2)
    assert not sent(cluster, SnapshotChunk) and not sent(cluster, GetSnapshot)
    assert [m.op_number for m in sent(cluster, GetState, source=2)] == [7]


def test_a_lost_chunk_is_asked_for_again_after_the_repair_timeout() -> None:
    config = snapshot_config()
    cluster = Cluster(3, config=config)
    ten_ops_without(cluster, behind=2)
    cluster.heal()
    cluster.tick(config.heartbeat_ticks, only={0})
    cluster.deliver(matching(Commit, to=2))
    cluster.deliver(matching(GetState, to=0))
    cluster.deliver(matching(SnapshotChunk, to=2))
    assert cluster.drop(matching(GetSnapshot, source=2)) == 1  # lost
    backup = cluster.replicas[2]
    assert backup.snapshots.download is not None and len(backup.snapshots.download.data) == 16
    cluster.tick(backup.config.repair_ticks, only={2})
    assert [m.offset for m in queued(cluster, GetSnapshot, source=2)] == [16]
    cluster.deliver_all()
    same_state(cluster, 0, 2)


# --- 3. the client table travels in the snapshot: no double execution ----------------------------------------


def test_a_retry_of_a_request_folded_into_an_installed_snapshot_gets_the_cached_reply() -> None:
    scenario_no_double_execution_after_snapshot_install()


# --- 4. no livelock: the snapshot being downloaded is pinned, and the pin expires ----------------------------


def test_a_slow_snapshot_download_completes_although_the_primary_keeps_snapshotting() -> None:
    scenario_slow_download_completes_while_the_primary_keeps_snapshotting()


def test_a_pin_expires_after_snapshot_pin_ticks_without_requests() -> None:
    scenario_pin_expires_without_requests()


def test_a_download_overtaken_by_the_log_is_dropped_and_unpins_the_primarys_log() -> None:
    scenario_download_overtaken_by_the_log_is_dropped()


# --- 5. a snapshot that does not arrive whole is never installed --------------------------------------------


def test_a_snapshot_with_a_checksum_mismatch_is_never_installed() -> None:
    scenario_corrupted_snapshot_is_never_installed()


def test_a_snapshot_longer_than_announced_is_dropped() -> None:
    cluster = Cluster(3, config=snapshot_config(chunk=1024))
    ten_ops_without(cluster, behind=2)
    good = cluster.replicas[0].snapshots.data
    cluster.inject(2, chunk_for(cluster, 2, data=good + b"x", checksum=snapshots.checksum(good), size=len(good)))
    backup = cluster.replicas[2]
    assert counted(backup, "on_snapshot_chunk", "more bytes than announced") == 1
    assert backup.snapshots.download is None and backup.commit_number == 0


def test_a_well_checksummed_malformed_snapshot_is_never_installed() -> None:
    cluster = Cluster(3, config=snapshot_config(chunk=1024))
    ten_ops_without(cluster, behind=2)
    junk = b"NOTASNAPSHOT" * 3
    cluster.inject(2, chunk_for(cluster, 2, data=junk, checksum=snapshots.checksum(junk)))
    backup = cluster.replicas[2]
    assert counted(backup, "on_snapshot_chunk", "malformed snapshot") == 1
    assert backup.commit_number == 0 and cluster.apps[2].applied == []


# --- 6. recovery from a primary whose log is truncated ------------------------------------------------------


def test_recovery_from_a_primary_with_a_truncated_log_fetches_its_snapshot() -> None:
    scenario_recovery_fetches_the_primarys_snapshot()


def test_recovery_whose_primary_changes_view_midway_starts_over_and_completes() -> None:
    scenario_recovery_starts_over_when_the_primary_changes_view()


def test_recovery_from_a_primary_that_snapshotted_but_kept_its_whole_log_needs_no_snapshot() -> None:
    cluster = Cluster(3, config=snapshot_config())
    commit_ops(cluster, 1, 4)  # one snapshot (op 3): nothing dropped yet
    heartbeat(cluster)
    assert cluster.replicas[0].log_base == 0 and cluster.replicas[0].snapshot_op == 3
    cluster.crash_and_recover(2)
    cluster.deliver_all()
    assert cluster.replicas[2].status is Status.NORMAL and not sent(cluster, GetSnapshot)
    same_state(cluster, 0, 2)


# --- 7. a new primary behind the chosen log's snapshot skips the view -----------------------------------------


def test_a_new_primary_behind_the_chosen_logs_snapshot_skips_to_the_next_view() -> None:
    scenario_primary_elect_behind_the_chosen_log_skips_the_view()


# --- 8. StartView whose log starts after our commit_number: state transfer with a snapshot -------------------


def test_start_view_whose_log_starts_after_our_commit_number_transfers_a_snapshot() -> None:
    scenario_start_view_beyond_our_commit_keeps_the_old_log_until_the_new_one_is_whole()


# --- 9. restart from disk with a snapshot --------------------------------------------------------------------


def test_restart_from_disk_with_a_snapshot_restores_app_state_and_client_table() -> None:
    scenario_restart_from_disk_with_a_snapshot()


def test_restart_from_the_records_the_readys_persisted_after_a_snapshot_install() -> None:
    scenario_restart_from_the_disk_the_readys_wrote()


# --- 10. chunks from the wrong sender, an old view, or out of order ---------------------------------------------


def test_chunks_from_a_backup_an_old_view_or_out_of_order_are_ignored_and_counted() -> None:
    scenario_stray_chunks_are_ignored_and_counted()


def test_get_snapshot_is_answered_only_by_the_primary_of_that_view_with_a_snapshot() -> None:
    cluster = Cluster(3, config=snapshot_config())
    cluster.inject(0, GetSnapshot(**header(view=0, replica=2), snapshot_op=0, offset=0))
    assert counted(cluster.replicas[0], "on_get_snapshot", "no snapshot yet") == 1
    commit_ops(cluster, 1, 10)
    cluster.queue.clear()
    cluster.inject(1, GetSnapshot(**header(view=0, replica=2), snapshot_op=9, offset=0))
    assert counted(cluster.replicas[1], "on_get_snapshot", "not primary") == 1
    cluster.inject(0, GetSnapshot(**header(view=1, replica=2), snapshot_op=9, offset=0))
    assert counted(cluster.replicas[0], "on_get_snapshot", "other view") == 1
    assert not cluster.queue
    cluster.inject(0, GetSnapshot(**header(view=0, replica=2), snapshot_op=3, offset=40))
    answer = queued(cluster, SnapshotChunk, to=2)[0]
    assert (answer.snapshot_op, answer.offset) == (9, 0), "a snapshot no longer kept: the latest, from 0"
    assert not cluster.queued(PrepareOk) and not cluster.queued(NewState)


def test_chunks_a_recovering_replica_did_not_ask_for_are_ignored_and_counted() -> None:
    """Replica 2 recovers from primary 0 of view 0, whose answer holds the log after op 6. A chunk from the
    primary of another view, and one of a snapshot older than that log, are dropped: neither could complete
    the recovery with the answer it has. A replica voting in a view change takes no chunk either."""
    cluster = Cluster(3, config=snapshot_config(chunk=1024))
    commit_ops(cluster, 1, 10)
    heartbeat(cluster)
    good = cluster.replicas[0].snapshots.data
    cluster.crash_and_recover(2)
    recovering = cluster.replicas[2]
    cluster.deliver(matching(Recovery))
    cluster.deliver(matching(RecoveryResponse))
    assert recovering.recovery.primary is not None and recovering.recovery.primary.view == 0

    def chunk(*, view: int, sender: int, snapshot_op: int) -> SnapshotChunk:
        return SnapshotChunk(
            **header(view=view, replica=sender),
            snapshot_op=snapshot_op,
            size=len(good),
            checksum=snapshots.checksum(good),
            offset=0,
            data=good,
        )

    cluster.inject(2, chunk(view=1, sender=1, snapshot_op=9))
    assert counted(recovering, "on_snapshot_chunk", "recovering, not fetching from this view") == 1
    cluster.inject(2, chunk(view=0, sender=0, snapshot_op=3))
    assert counted(recovering, "on_snapshot_chunk", "older than the log the primary recovers us with") == 1
    assert status(recovering) is Status.RECOVERING and recovering.snapshots.download is None
    cluster.deliver_all()
    assert status(recovering) is Status.NORMAL
    same_state(cluster, 0, 2)

    cluster.inject(1, StartViewChange(**header(view=1, replica=0)))
    assert cluster.replicas[1].status is Status.VIEW_CHANGE
    cluster.inject(1, chunk(view=0, sender=0, snapshot_op=9))
    assert counted(cluster.replicas[1], "on_snapshot_chunk", "view change") == 1
