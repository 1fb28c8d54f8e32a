"""Client sessions are bounded (issue 6): the client table evicts the least recently executed session, and a
retry from an evicted session gets `session_expired` — never a second execution."""

from __future__ import annotations

import random

import scenarios
from scenarios import expired_answers, run_to_commit, sessions_cluster

from zvsr.protocol import snapshots
from zvsr.protocol.client_session import ClientSession
from zvsr.protocol.messages import ERROR_SESSION_EXPIRED, Error, Reply


def test_the_least_recently_executed_session_is_evicted_the_same_way_on_every_replica() -> None:
    cluster = sessions_cluster()
    for client_id in (1, 2, 3):
        run_to_commit(cluster, client_id, 1, b"c%d" % client_id)
    run_to_commit(cluster, 1, 2, b"c1-again")  # client 1 is now the most recent
    run_to_commit(cluster, 4, 1, b"c4")  # a fourth session: client 2, the least recently executed, goes
    for replica in cluster.replicas:
        assert list(replica.client_table) == [3, 1, 4]
        assert list(replica.client_table.expired) == [2]
        assert replica.counters["client session evicted"] == 1


def test_a_retry_from_an_evicted_session_is_refused_and_never_executed_twice() -> None:
    scenarios.retry_from_an_evicted_session_is_refused_and_never_executed_twice()


def test_a_first_request_numbered_above_one_from_an_unknown_client_is_refused() -> None:
    cluster = sessions_cluster()
    cluster.request(client_id=77, request_number=5, op=b"x", to=0)
    assert len(expired_answers(cluster, 77)) == 1 and cluster.replicas[0].op_number == 0


def test_a_session_with_a_request_in_the_log_is_not_refused() -> None:
    """Request 1 is prepared but not yet committed (the client table does not know it yet): request 2 of the
    same client is a newer request of a live session, not an expired one."""
    cluster = sessions_cluster()
    cluster.request(client_id=5, request_number=1, op=b"first", to=0)
    cluster.request(client_id=5, request_number=2, op=b"second", to=0)
    assert expired_answers(cluster, 5) == []
    cluster.deliver_all()
    assert cluster.apps[0].applied == [b"first", b"second"]


def test_the_session_bounds_travel_in_snapshots() -> None:
    """A replica that installs a snapshot refuses the evicted session exactly as the others do."""
    cluster = sessions_cluster(snapshot_interval_ops=2)
    for client_id in (1, 2, 3, 4, 5):
        run_to_commit(cluster, client_id, 1, b"c%d" % client_id)
    primary = cluster.replicas[0]
    snapshot = snapshots.decode(primary.snapshots.data)  # taken at op 4: sessions 1..4 executed, 1 evicted
    assert snapshot.op_number == 4
    assert [client_id for client_id, _, _ in snapshot.client_table] == [2, 3, 4] and snapshot.expired == (1,)
    cluster.crash_and_restart_from_disk(0, cluster.durable_state(0))
    restored = cluster.replicas[0]
    assert list(restored.client_table) == [3, 4, 5] and list(restored.client_table.expired) == [1, 2]


def test_a_client_session_stops_on_session_expired() -> None:
    """The sans-IO client does not retry `session_expired`: retrying cannot help, and must not be tried."""
    session = ClientSession(client_id=9, replica_count=3, prng=random.Random(1))
    request = session.submit(b"op")
    session.take_outbox()
    session.on_reply(
        Error(view=0, client_id=9, request_number=request.request_number, code=ERROR_SESSION_EXPIRED, message="x")
    )
    completion = session.take_completion()
    assert completion is not None and completion.error == ERROR_SESSION_EXPIRED
    for _ in range(1000):
        session.tick()
    assert session.take_outbox() == []


def test_a_cached_reply_still_answers_a_known_session() -> None:
    cluster = sessions_cluster()
    run_to_commit(cluster, 1, 1, b"a")
    cluster.replies.clear()
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    assert cluster.replies == [Reply(view=0, client_id=1, request_number=1, result=b"1")]
