"""The core's output says what it executed (STYLE rule 13): `Ready.executed` lists every op applied to the
state machine in the step, with its op number and result, and `Ready.restored` every snapshot installed over
the app state. The node's watch stream and the simulator's checker read only that, so these scenarios pin it:
each replica reports each op once, in order, numbered right, also across a restart from disk and a snapshot
transfer, and the report matches what its app did (`Cluster.check_reported`)."""

from __future__ import annotations

from scenarios import steady_config
from snapshot_scenarios import DiskCluster, commit_ops, heartbeat, snapshot_config, ten_ops_without

from zvsr.protocol.messages import Request
from zvsr.protocol.replica import Status
from zvsr.sim.harness import Cluster


def reported(cluster: Cluster, index: int) -> list[tuple[int, bytes, bytes]]:
    return [(op_number, entry.operation, result) for op_number, entry, result in cluster.executed[index]]


def test_primary_and_backups_report_each_op_once_with_its_number_and_result() -> None:
    """Primary 0 commits A, B, C; a heartbeat brings the backups' commit_number along. Every replica reports
    ops 1..3 once each, in order, with the result its app gave (EchoLog answers the op count)."""
    cluster = Cluster(3, config=steady_config(3))
    for number, op in enumerate((b"A", b"B", b"C"), start=1):
        cluster.request(client_id=1, request_number=number, op=op)
        cluster.deliver_all()
    assert reported(cluster, 0) == [(1, b"A", b"1"), (2, b"B", b"2"), (3, b"C", b"3")]
    heartbeat(cluster)
    for index in (0, 1, 2):
        assert reported(cluster, index) == [(1, b"A", b"1"), (2, b"B", b"2"), (3, b"C", b"3")]
        assert cluster.restored[index] == []
    cluster.check_applied()


def test_a_ready_holds_only_what_its_step_executed() -> None:
    """Taking a Ready clears it: ops executed in an earlier step are not reported again."""
    cluster = Cluster(1, config=steady_config(1))
    primary = cluster.replicas[0]
    cluster.request(client_id=1, request_number=1, op=b"A")  # one replica: committed at once
    assert [op_number for op_number, _, _ in cluster.executed[0]] == [1]
    primary.on_request(Request(client_id=1, request_number=2, operation=b"B"))
    ready = primary.ready()
    assert [(n, entry.operation, result) for n, entry, result in ready.executed] == [(2, b"B", b"2")]
    assert primary.ready().executed == []


def test_a_restart_from_disk_reports_the_snapshot_restored_then_the_ops_re_executed() -> None:
    """Primary 0 commits ten ops with snapshots every three; restarted from its disk (snapshot 9, log after op 6,
    commit_number 10) its first Ready reports the restore at op 9 and op 10 re-executed, numbered 10 (and it
    leaves view 0 for view 1: a restarted primary does not go on proposing in its view)."""
    cluster = Cluster(3, config=snapshot_config())
    commit_ops(cluster, 1, 10)
    cluster.crash_and_restart_from_disk(0, cluster.durable_state(0))
    assert cluster.restored[0] == [9]
    assert reported(cluster, 0) == [(10, b"op10", b"10")]
    assert (cluster.replicas[0].status, cluster.replicas[0].view_number) == (Status.VIEW_CHANGE, 1)
    cluster.check_applied()


def test_a_backup_that_installs_the_primarys_snapshot_reports_it_and_numbers_later_ops_after_it() -> None:
    """Replica 2 misses ops 1..10 (snapshots at 3, 6, 9 elsewhere); healed, it downloads snapshot 9 and fetches
    op 10: it reports the restore at op 9, then op 10; op 11 that follows is reported as 11."""
    cluster = DiskCluster(3, config=snapshot_config())
    ten_ops_without(cluster, behind=2)
    cluster.heal()
    heartbeat(cluster)
    assert cluster.restored[2] == [9]
    assert reported(cluster, 2) == [(10, b"op10", b"10")]
    commit_ops(cluster, 11, 11)
    heartbeat(cluster)
    assert reported(cluster, 2) == [(10, b"op10", b"10"), (11, b"op11", b"11")]
    cluster.check_applied()
