"""The client side: the replica's client table (§4.1 steps 2-3, rule 8, VR-NOTES §11.5) and the sans-IO
`ClientSession` (primary discovery, retry with the same request_number, error handling)."""

from __future__ import annotations

import random

import pytest
from test_seed_flaws import header, operations, steady_config, view_change_to_one

from zvsr.protocol.client import RETRY_AFTER_ERROR_TICKS, ClientSession, Completion
from zvsr.protocol.config import Config
from zvsr.protocol.messages import (
    ERROR_BAD_REQUEST,
    ERROR_BUSY,
    ERROR_TIMEOUT,
    ERROR_UNAVAILABLE,
    ERROR_VIEW_CHANGE,
    Error,
    Prepare,
    PrepareOk,
    Redirect,
    Reply,
    Request,
    StartViewChange,
)
from zvsr.protocol.ready import BROADCAST
from zvsr.protocol.replica import Status
from zvsr.sim.harness import Cluster, matching

# --- the client table at the replicas -----------------------------------------------------------------------


def test_duplicate_of_the_latest_request_gets_the_cached_reply_without_executing() -> None:
    cluster = Cluster(3)
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    cluster.deliver_all()
    cluster.replies.clear()
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    assert cluster.replies == [Reply(view=0, client_id=1, request_number=1, result=b"1")]
    assert cluster.replicas[0].op_number == 1 and cluster.apps[0].applied == [b"a"]
    assert cluster.replicas[0].counters["on_request: cached reply"] == 1


def test_older_request_number_gets_nothing() -> None:
    cluster = Cluster(3)
    for number in (1, 2):
        cluster.request(client_id=1, request_number=number, op=b"r%d" % number, to=0)
        cluster.deliver_all()
    cluster.replies.clear()
    cluster.request(client_id=1, request_number=1, op=b"r1", to=0)
    assert cluster.replies == [] and cluster.replicas[0].op_number == 2
    assert cluster.replicas[0].counters["on_request: older request number"] == 1


def test_retry_of_a_request_in_progress_is_not_appended_twice() -> None:
    cluster = Cluster(3)
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)  # the client retried before the reply
    assert cluster.replicas[0].op_number == 1
    assert cluster.replicas[0].counters["on_request: already in progress"] == 1
    cluster.deliver_all()
    assert len([r for r in cluster.replies if isinstance(r, Reply)]) == 1
    assert cluster.apps[0].applied == [b"a"]


def test_new_request_after_completion_is_executed() -> None:
    cluster = Cluster(3)
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    cluster.deliver_all()
    cluster.request(client_id=1, request_number=2, op=b"b", to=0)
    cluster.deliver_all()
    assert cluster.apps[0].applied == [b"a", b"b"]
    entry = cluster.replicas[0].client_table[1]
    assert (entry.request_number, entry.result) == (2, b"2")


def test_cached_reply_from_a_new_primary_after_failover() -> None:
    """Primary 0 executes client 1's request and its reply is lost; replica 0 fails; the retry reaches the new
    primary 1, which answers from its client table (the table is replicated state: built by executing the
    log)."""
    cluster = Cluster(3, config=steady_config(3))
    cluster.request(client_id=1, request_number=1, op=b"a", to=0)
    cluster.deliver_all()
    cluster.tick(cluster.replicas[0].config.heartbeat_ticks, only={0})
    cluster.deliver_all()  # the backups learn the commit
    cluster.replies.clear()
    cluster.partition({0}, {1, 2})
    view_change_to_one(cluster, without={0})
    cluster.deliver_all()
    cluster.request(client_id=1, request_number=1, op=b"a", to=1)
    assert cluster.replies == [Reply(view=1, client_id=1, request_number=1, result=b"1")]
    assert cluster.apps[1].applied == [b"a"] and cluster.replicas[1].op_number == 1


def test_request_in_progress_at_failover_is_not_appended_again_by_the_new_primary() -> None:
    scenario_request_in_progress_at_failover()


def scenario_request_in_progress_at_failover() -> None:
    """VR-NOTES §11.5. Client 2's request is prepared at every replica but not committed when primary 0 fails.
    The new primary's log holds it; the client's retry must not append it a second time; it commits once, and
    the new primary answers the client when it does."""
    cluster = Cluster(3, config=steady_config(3))
    cluster.request(client_id=2, request_number=1, op=b"c", to=0)
    cluster.deliver(matching(Prepare))
    cluster.queue.clear()  # the acknowledgements are lost: nothing commits in view 0
    cluster.partition({0}, {1, 2})
    cluster.tick_until(1, lambda: cluster.replicas[1].view_number == 1)
    cluster.deliver(lambda item: not isinstance(item.message, PrepareOk))  # SVC, DVC
    cluster.deliver(lambda item: not isinstance(item.message, PrepareOk))  # StartView
    new_primary = cluster.replicas[1]
    assert new_primary.status is Status.NORMAL and operations(new_primary.log) == [b"c"]
    assert new_primary.commit_number == 0
    cluster.request(client_id=2, request_number=1, op=b"c", to=1)
    assert new_primary.op_number == 1, "the retry was appended a second time"
    cluster.deliver_all()  # replica 2's PrepareOk for the StartView commits it
    assert new_primary.commit_number == 1
    assert [r for r in cluster.replies if isinstance(r, Reply)] == [
        Reply(view=1, client_id=2, request_number=1, result=b"1")
    ]
    assert cluster.apps[1].applied == [b"c"]


def test_requests_waiting_in_the_queue_are_dropped_on_view_change() -> None:
    """They were never prepared: the clients retry (with the same request_number) at the next primary."""
    config = Config(replica_count=3, pipeline_ops_max=1, primary_timeout_jitter_ticks=0)
    cluster = Cluster(3, config=config)
    primary = cluster.replicas[0]
    cluster.request(client_id=1, request_number=1, to=0)
    cluster.request(client_id=2, request_number=1, to=0)
    assert len(primary.request_queue) == 1 and primary.client_table.pending == {1: 1, 2: 1}
    cluster.inject(0, StartViewChange(**header(view=1, replica=1)))
    assert not primary.request_queue
    assert primary.client_table.pending == {1: 1}, "only the prepared request is still in progress"


# --- ClientSession ------------------------------------------------------------------------------------------


def new_session(**overrides: int) -> ClientSession:
    arguments: dict[str, int] = {"client_id": 42, "replica_count": 3}
    arguments.update(overrides)
    return ClientSession(prng=random.Random(1), **arguments)


def test_session_sends_to_the_primary_of_its_view_with_increasing_request_numbers() -> None:
    session = new_session(view=4)
    request = session.submit(b"op")
    assert request == Request(client_id=42, request_number=1, operation=b"op")
    assert session.take_outbox() == [(1, request)]
    session.on_reply(Reply(view=4, client_id=42, request_number=1, result=b"r"))
    assert session.take_completion() == Completion(request_number=1, result=b"r")
    assert session.submit(b"next").request_number == 2


def test_session_has_at_most_one_outstanding_request() -> None:
    session = new_session()
    session.submit(b"a")
    with pytest.raises(AssertionError):
        session.submit(b"b")


def test_session_follows_a_redirect_to_a_newer_view_only() -> None:
    session = new_session()
    request = session.submit(b"op")
    session.take_outbox()
    session.on_reply(Redirect(view=2, primary=2, client_id=42, request_number=1))
    assert session.view == 2 and session.take_outbox() == [(2, request)]
    session.on_reply(Redirect(view=1, primary=1, client_id=42, request_number=1))  # stale: ignored
    session.on_reply(Redirect(view=2, primary=2, client_id=42, request_number=1))  # same view: nothing new
    assert session.view == 2 and session.take_outbox() == []


def test_session_retries_the_same_request_number_to_everyone_on_timeout() -> None:
    session = new_session(request_timeout_ticks=3, request_timeout_max_ticks=12)
    request = session.submit(b"op")
    session.take_outbox()
    for _ in range(2):
        session.tick()
    assert session.take_outbox() == []
    session.tick()
    assert session.take_outbox() == [(BROADCAST, request)]
    for _ in range(3):  # backoff: the next retry waits longer than the first period
        session.tick()
    assert session.take_outbox() == []
    for _ in range(30):
        session.tick()
    retries = session.take_outbox()
    assert retries and all(entry == (BROADCAST, request) for entry in retries)
    assert session.take_completion() is None


def test_session_completes_on_bad_request_and_retries_on_busy_unavailable_view_change() -> None:
    session = new_session(request_timeout_ticks=100, request_timeout_max_ticks=100)
    request = session.submit(b"op")
    session.take_outbox()
    for code in (ERROR_BUSY, ERROR_UNAVAILABLE, ERROR_VIEW_CHANGE):
        session.on_reply(Error(view=0, client_id=42, request_number=1, code=code, message="later"))
        assert session.take_completion() is None and session.outstanding == request
        for _ in range(RETRY_AFTER_ERROR_TICKS):
            session.tick()
        assert session.take_outbox() == [(BROADCAST, request)], code
    session.on_reply(Error(view=0, client_id=42, request_number=1, code=ERROR_BAD_REQUEST, message="no"))
    assert session.take_completion() == Completion(request_number=1, error=ERROR_BAD_REQUEST, message="no")
    assert session.outstanding is None


def test_session_ignores_answers_for_other_requests_or_clients() -> None:
    session = new_session()
    session.submit(b"a")
    session.on_reply(Reply(view=0, client_id=42, request_number=0, result=b"old"))
    session.on_reply(Reply(view=0, client_id=7, request_number=1, result=b"other client"))
    assert session.take_completion() is None and session.outstanding is not None


def test_session_gives_up_at_its_deadline_with_an_unknown_outcome() -> None:
    session = new_session(deadline_ticks=5)
    session.submit(b"a")
    for _ in range(5):
        session.tick()
    completion = session.take_completion()
    assert completion is not None and completion.error == ERROR_TIMEOUT and session.outstanding is None


def test_session_against_a_cluster_whose_primary_fails() -> None:
    """End to end: primary 0 executes the session's request but the reply is lost, and replica 0 is cut off.
    The session times out and broadcasts the same request; until view 1 runs, replicas redirect or answer
    `view_change`; then the new primary answers it. The operation is executed once."""
    cluster = Cluster(3, config=steady_config(3))
    session = new_session(request_timeout_ticks=25, request_timeout_max_ticks=50)
    cut_off: set[int] = set()

    def exchange() -> None:
        for to, request in session.take_outbox():
            for target in range(3) if to == BROADCAST else (to,):
                if target not in cut_off:
                    cluster.request(
                        client_id=request.client_id,
                        request_number=request.request_number,
                        op=request.operation,
                        to=target,
                    )
        cluster.deliver_all()

    session.submit(b"op")
    exchange()
    assert cluster.replicas[0].commit_number == 1
    cluster.replies.clear()  # lost
    cut_off.add(0)
    cluster.partition({0}, {1, 2})
    seen: set[type] = set()
    for _ in range(400):
        session.tick()
        cluster.tick(only={1, 2})
        exchange()
        for reply in cluster.replies:
            seen.add(type(reply))
            session.on_reply(reply)
        cluster.replies.clear()
        outcome = session.take_completion()
        if outcome is not None:
            break
    assert outcome == Completion(request_number=1, result=b"1")
    assert session.view == 1 and Reply in seen
    cluster.tick(cluster.replicas[1].config.heartbeat_ticks, only={1})
    cluster.deliver_all()
    assert [app.applied for app in cluster.apps] == [[b"op"]] * 3, "executed exactly once everywhere"
