"""The protocol rules the seed review found broken: one regression test per flaw of the review (S1-S14,
numbered as the review lists them; see VR-NOTES §12), plus the paper's own holes in state transfer
(VR-NOTES §11.1, ARCHITECTURE §3 rule 3).

Each test is named for the rule it checks; its docstring keeps the review's number. The scenario bodies live
in `scenarios.py`, so that `test_mutations.py` can re-introduce each flaw into the core and check that the same
scenario catches it.
"""

from __future__ import annotations

import pytest
import scenarios
from scenarios import VOTES_BEST_BY_OP_NUMBER, VOTES_BEST_BY_VIEW, ZVSR_REPLICA_MESSAGES

from zvsr.constants import ID_MAX, REPLICAS_MAX
from zvsr.protocol.config import Config, primary_of
from zvsr.protocol.messages import CLIENT_MESSAGES, REPLICA_MESSAGES, LogEntry

# --- message routing / view tracking ------------------------------------------------------------------------


def test_prepare_ok_goes_to_primary_of_the_prepares_view() -> None:
    """Seed review flaw 1: PrepareOk went to the primary of the receiver's own (older) view, not to the sender."""
    scenarios.prepare_ok_goes_to_the_sender()


def test_heartbeat_of_older_view_or_non_primary_does_not_reset_primary_timeout() -> None:
    """Seed review flaw 2: heartbeats carried no view, so a stale primary's kept the backups from suspecting."""
    scenarios.stale_heartbeats_do_not_reset_the_primary_timeout()


# --- commit application & state transfer --------------------------------------------------------------------


def test_new_primary_executes_ops_committed_before_the_view_change() -> None:
    """Seed review flaw 3: after a view change, ops known to be committed were not executed (new primary)."""
    scenarios.new_primary_executes_committed_ops()


def test_backup_executes_committed_ops_when_installing_start_view() -> None:
    """Seed review flaw 3: after a view change, ops known to be committed were not executed (backups)."""
    scenarios.backup_executes_committed_ops_on_start_view()


def test_new_state_from_non_primary_other_view_or_lower_commit_is_ignored() -> None:
    """Seed review flaw 4: NewState was trusted from any sender in any view at least ours."""
    scenarios.new_state_only_from_the_primary_of_our_view()


# --- view change ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("replica_count", [3, 5])
def test_view_change_completes_with_f_peer_do_view_changes_plus_own(replica_count: int) -> None:
    """Seed review flaw 5: the DoViewChange quorum counted only the other replicas, not the new primary."""
    scenarios.do_view_change_quorum_counts_self(replica_count)


@pytest.mark.parametrize("votes", [VOTES_BEST_BY_VIEW, VOTES_BEST_BY_OP_NUMBER], ids=["by-view", "by-op-number"])
def test_log_chosen_by_max_last_normal_view_then_op_number_over_all_votes(
    votes: tuple[tuple[int, int, int, tuple[LogEntry, ...]], ...],
) -> None:
    """Seed review flaw 6: the new log was chosen from the last DoViewChange received and the own log only."""
    scenarios.log_chosen_from_all_do_view_changes(votes)


def test_new_primary_starts_heartbeats() -> None:
    """Seed review flaw 7: timers were not reset on role change (the new primary sent no heartbeats)."""
    scenarios.new_primary_starts_heartbeats()


def test_backup_primary_timer_restarts_when_it_installs_start_view() -> None:
    """Seed review flaw 7: timers were not reset on role change (a backup kept its old primary timer)."""
    scenarios.backup_timer_restarts_on_start_view()


def test_message_set_is_closed_and_has_no_view_change_ok() -> None:
    """Seed review flaw 8: a vestigial ViewChangeOk message that was sent and ignored."""
    scenarios.message_set_is_closed()
    assert scenarios.message_kinds_sent_by_every_sub_protocol() == ZVSR_REPLICA_MESSAGES


def test_codec_rejects_unknown_message_types() -> None:
    """Seed review flaw 8, on the wire: a message type outside the closed set does not decode."""
    wire = pytest.importorskip("zvsr.wire")
    import msgpack

    assert set(wire.TYPE_NUMBERS) == set(REPLICA_MESSAGES) | set(CLIENT_MESSAGES)
    unused = max(wire.TYPE_NUMBERS.values()) + 1
    for type_number in (unused, 11, 99, -1):
        if type_number in wire.TYPE_NUMBERS.values():
            continue
        data = msgpack.packb({"type": type_number, "cluster": 0, "epoch": 0, "view": 1, "replica": 0})
        with pytest.raises(wire.DecodeError):
            wire.decode_replica_message(data)
        with pytest.raises(wire.DecodeError):
            wire.decode(data)


# --- prepare/ack accounting across views ----------------------------------------------------------------------


def test_prepare_ok_of_older_view_does_not_commit_in_newer_view() -> None:
    """Seed review flaw 9: PrepareOk counts were keyed by op number only, not by (view, op number)."""
    scenarios.old_view_acks_do_not_commit()


def test_backup_receiving_prepare_of_newer_view_fetches_the_views_log_then_acks() -> None:
    """Seed review flaw 10: a Prepare of a newer view was accepted without adopting the view (and the review's
    fix, adopting it and carrying on with the old log, is not enough: the view's log must be fetched first)."""
    scenarios.newer_view_prepare_fetches_the_views_log_first()


# --- client semantics, quorums, leader identity ---------------------------------------------------------------


def test_duplicate_request_executes_once_and_gets_cached_reply_also_after_failover() -> None:
    """Seed review flaw 11: no client table, so a retried request could execute twice."""
    scenarios.duplicate_request_executes_once()


def test_primary_without_quorum_answers_unavailable() -> None:
    """Seed review flaw 12: the quorum check was always true."""
    scenarios.isolated_primary_answers_unavailable()


def test_quorum_is_a_majority_and_quorums_intersect_for_n_1_to_7() -> None:
    """Seed review flaw 12: the quorum size is what makes quorums intersect; checked for every n from 1 to 7."""
    scenarios.quorums_are_intersecting_majorities()


def test_the_primary_of_view_v_is_replica_v_mod_n_everywhere() -> None:
    """§4: the primary of view v is replica v mod n. The core's `Config.primary` writes the arithmetic out (it is
    asked about a dozen times per op); the proxy and the client sessions use `primary_of`: they must agree."""
    for replica_count in range(1, REPLICAS_MAX + 1):
        config = Config(replica_count=replica_count)
        for view in (*range(3 * replica_count), ID_MAX - 1, ID_MAX):
            assert config.primary(view) == primary_of(view, replica_count) == view % replica_count


@pytest.mark.parametrize("index", range(4), ids=["Prepare", "Commit", "StartView", "NewState"])
def test_leader_messages_from_a_replica_that_is_not_primary_of_the_view_are_dropped(index: int) -> None:
    """Seed review flaw 13: leader-to-follower messages carried no leader identity that the receiver checked."""
    scenarios.leader_messages_from_non_primary_are_dropped(index)


def test_new_state_with_shorter_log_or_lower_commit_is_a_no_op() -> None:
    """Seed review flaw 14: state transfer could move a replica backwards."""
    scenarios.new_state_cannot_regress()


def test_get_state_answered_only_by_the_primary_in_normal_status_in_that_view() -> None:
    """Seed review flaw 14: GetState was answered by replicas other than the primary of the view."""
    scenarios.get_state_answered_only_by_primary_in_normal_status()


# --- the paper's holes in state transfer ----------------------------------------------------------------------


def test_last_normal_view_advances_only_when_the_views_log_is_installed() -> None:
    """The paper's hole (VR-NOTES §11.1, ARCHITECTURE rule 3): a replica adopting a newer view from its Prepare
    must not report it as its last normal view before it holds that view's log — whether it truncated its log
    (Vanlightly's trace) or kept a stale suffix."""
    scenarios.last_normal_view_kept_until_the_views_log_arrives()
    scenarios.last_normal_view_kept_with_a_stale_suffix()


def test_truncation_on_a_newer_view_does_not_lose_an_acknowledged_op() -> None:
    """The paper's second hole (docs/design.md; tests/test_state_transfer_truncation_hole.py builds it step by
    step): truncating to commit_number on learning of a newer view can drop an op committed in an older view."""
    scenarios.truncation_on_newer_view_keeps_committed_ops()
