"""Client sessions are registered through the log (issue 18): a register op opens a session whose id is its op
number; the bounded client table evicts the least recently executed session when a register executes, the same
way on every replica; a request of a session the table does not hold is refused — at admission, and again when
it commits — never executed, whatever the churn of sessions in between."""

from __future__ import annotations

import random
import struct

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import scenarios
from scenarios import expired_answers, register, run_to_commit, sessions_cluster

from zvsr.protocol import snapshots
from zvsr.protocol.client_session import ClientSession
from zvsr.protocol.client_table import REFUSED_RESULT, parse_register_result, register_result, session_id
from zvsr.protocol.messages import ERROR_SESSION_EXPIRED, Error, Reply
from zvsr.protocol.replica import Status


def test_a_register_op_opens_a_session_named_by_nonce_and_op_number_and_evicts_the_same_one_everywhere() -> None:
    cluster = sessions_cluster()
    first, second, third = (register(cluster, nonce) for nonce in (101, 102, 103))
    assert (first, second, third) == (session_id(101, 1), session_id(102, 2), session_id(103, 3))
    assert session_id(101, 1) != session_id(101, 2) != session_id(102, 2), "either part changes the id"
    run_to_commit(cluster, first, 1, b"first-1")  # op 4: the first session is now the most recent
    fourth = register(cluster, 104)  # op 5: the second session, the least recently executed, goes
    assert fourth == session_id(104, 5)
    for replica in cluster.replicas:
        assert list(replica.client_table) == [third, first, fourth]
        assert replica.counters["client session evicted"] == 1


def test_a_retry_from_an_evicted_session_is_refused_and_never_executed_twice() -> None:
    scenarios.retry_from_an_evicted_session_is_refused_and_never_executed_twice()


def test_a_request_of_a_session_evicted_while_it_waits_in_the_log_is_refused_at_commit_everywhere() -> None:
    """Session A's request 1 is admitted (A is live) but a register before it in the log evicts A: every replica
    refuses it when it commits — no app call, an empty result reported — and the primary answers
    session_expired."""
    cluster = sessions_cluster()
    a = register(cluster, 101)
    register(cluster, 102)
    register(cluster, 103)
    cluster.request(client_id=104, request_number=0, op=b"", to=0)  # op 4: will evict A
    cluster.request(client_id=a, request_number=1, op=b"a1", to=0)  # op 5: admitted, A is still live
    cluster.deliver_all()
    cluster.tick(cluster.replicas[0].config.heartbeat_ticks, only={0})
    cluster.deliver_all()
    assert len(expired_answers(cluster, a)) == 1
    for index, replica in enumerate(cluster.replicas):
        assert replica.commit_number == 5 and cluster.apps[index].applied == []
        refused = [result for op, entry, result in cluster.executed[index] if op == 5]
        assert refused == [REFUSED_RESULT]


def test_a_register_retry_gets_the_cached_session_until_the_session_executes_a_request() -> None:
    cluster = sessions_cluster()
    session = register(cluster, 101)
    cluster.replies.clear()
    cluster.request(client_id=101, request_number=0, op=b"", to=0)
    assert cluster.replies == [Reply(view=0, client_id=101, request_number=0, result=register_result(session))]
    run_to_commit(cluster, session, 1, b"s1")
    cluster.replies.clear()
    cluster.request(client_id=101, request_number=0, op=b"", to=0)  # a late copy: dropped, nothing appended
    assert cluster.replies == [] and cluster.replicas[0].op_number == 2


def test_a_request_whose_register_is_in_the_primarys_log_but_not_executed_is_dropped_not_refused() -> None:
    cluster = sessions_cluster()
    cluster.request(client_id=101, request_number=0, op=b"", to=0)  # op 1, not committed yet
    early = session_id(101, 1)  # (a client cannot know it yet; a stale replica's answer could make it ask)
    cluster.request(client_id=early, request_number=1, op=b"early", to=0)
    assert expired_answers(cluster, early) == []
    cluster.request(client_id=session_id(101, 2), request_number=1, op=b"never", to=0)
    assert len(expired_answers(cluster, session_id(101, 2))) == 1, "no register of it in the log: refused"


def test_an_unregistered_client_is_refused_and_a_register_with_an_operation_is_bad() -> None:
    cluster = sessions_cluster()
    cluster.request(client_id=77, request_number=1, op=b"x", to=0)
    cluster.request(client_id=78, request_number=0, op=b"x", to=0)
    assert len(expired_answers(cluster, 77)) == 1
    assert [r.code for r in cluster.replies if isinstance(r, Error) and r.client_id == 78] == ["bad_request"]
    assert cluster.replicas[0].op_number == 0


def test_the_register_result_is_a_msgpack_uint_both_ways() -> None:
    for number in (1, 127, 128, 70_000, 2**40):
        assert msgpack.unpackb(register_result(number)) == number
        assert parse_register_result(msgpack.packb(number)) == number
    assert parse_register_result(b"") is None and parse_register_result(b"\xc0") is None


def test_sessions_travel_in_snapshots_and_a_restarted_replica_evicts_as_the_others() -> None:
    cluster = sessions_cluster(snapshot_interval_ops=2)
    for nonce in (101, 102, 103, 104):
        register(cluster, nonce)
    primary = cluster.replicas[0]
    snapshot = snapshots.decode(primary.snapshots.data)  # at op 4: sessions of ops 2, 3, 4 (op 1's evicted)
    assert snapshot.op_number == 4
    opened = [(session_id(nonce, op), nonce) for nonce, op in ((102, 2), (103, 3), (104, 4))]
    assert [(session, nonce) for session, nonce, _, _ in snapshot.client_table] == opened
    cluster.crash_and_restart_from_disk(0, cluster.durable_state(0))  # it leaves view 0 for view 1
    cluster.run_until(lambda: all((r.status, r.view_number) == (Status.NORMAL, 1) for r in cluster.replicas))
    register(cluster, 105, to=1)
    expected = [session_id(103, 3), session_id(104, 4), session_id(105, 5)]
    assert [list(replica.client_table) for replica in cluster.replicas] == [expected] * 3


def _v4_snapshot(op_number: int, rows: list[tuple[int, int, bytes]], expired: list[int], app: bytes) -> bytes:
    """A snapshot as the format before registration (ZVSRSNP4) wrote it."""
    parts = [struct.pack(">8sQQI", snapshots.MAGIC_V4, op_number, 5, len(rows))]
    for client_id, number, result in rows:
        parts += [struct.pack(">QQI", client_id, number, len(result)), result]
    parts += [struct.pack(">I", len(expired)), *(struct.pack(">Q", i) for i in expired)]
    parts += [struct.pack(">I", 0), struct.pack(">Q", len(app)), app]
    return b"".join(parts)


def test_a_snapshot_from_before_registration_still_decodes_and_its_expired_ids_are_dropped() -> None:
    decoded = snapshots.decode(_v4_snapshot(9, [(77, 3, b"r")], [5, 6], b"app"))
    assert (decoded.op_number, decoded.timestamp, decoded.app_state) == (9, 5, b"app")
    assert decoded.client_table == ((77, 0, 3, b"r"),)
    assert snapshots.encode(9, decoded.client_table, b"app", timestamp=5)[:8] == snapshots.MAGIC == b"ZVSRSNP5"


def test_a_registering_client_session_sends_its_operation_as_request_1_of_the_session_it_got() -> None:
    nonces = iter([555])
    session = ClientSession(
        client_id=444, replica_count=3, prng=random.Random(1), register=True, new_nonce=lambda: next(nonces)
    )
    session.submit(b"op")
    [(_, register_request)] = session.take_outbox()
    assert (register_request.client_id, register_request.request_number) == (444, 0)
    assert register_request.operation == b""
    session.on_reply(Reply(view=0, client_id=444, request_number=0, result=register_result(12)))
    [(_, request)] = session.take_outbox()
    assert (request.client_id, request.request_number, request.operation) == (12, 1, b"op")
    assert session.take_completion() is None
    session.on_reply(Error(view=0, client_id=12, request_number=1, code=ERROR_SESSION_EXPIRED, message="gone"))
    completion = session.take_completion()
    assert completion is not None and completion.error == ERROR_SESSION_EXPIRED and "unknown" in completion.message
    for _ in range(1000):
        session.tick()
    assert session.take_outbox() == [], "the expired request is never re-sent"
    session.submit(b"next")
    [(_, again)] = session.take_outbox()
    assert (again.client_id, again.request_number) == (555, 0), "a new session, under a new nonce"


def test_implicit_sessions_open_at_request_1_when_registration_is_not_required() -> None:
    """The core's default until every client registers: request 1 of an unknown client opens its session, and
    request 2 right behind it (in the log, not executed) is not refused."""
    cluster = scenarios.Cluster(3, config=scenarios.steady_config(3, client_table_max=3))
    cluster.request(client_id=5, request_number=1, op=b"first", to=0)
    cluster.request(client_id=5, request_number=2, op=b"second", to=0)
    assert expired_answers(cluster, 5) == []
    cluster.deliver_all()
    assert cluster.apps[0].applied == [b"first", b"second"]
