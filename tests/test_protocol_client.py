"""The client side: the replica's client table (§4.1 steps 2-3, rule 8, VR-NOTES §11.5), the sans-IO
`ClientSession` (primary discovery, retry with the same request_number, error handling) and the sans-IO
`RelaySession` (a client through proxies: one proxy at a time, only its own deadline)."""

from __future__ import annotations

import random

import pytest
import scenarios
from scenarios import header, steady_config, view_change_to_one

from zvsr.constants import RETRY_AFTER_ERROR_TICKS
from zvsr.protocol.client_session import ClientSession, Completion, RelaySession
from zvsr.protocol.config import Config
from zvsr.protocol.messages import (
    ERROR_BAD_REQUEST,
    ERROR_BUSY,
    ERROR_SESSION_EXPIRED,
    ERROR_TIMEOUT,
    ERROR_UNAVAILABLE,
    ERROR_VIEW_CHANGE,
    Error,
    Redirect,
    Reply,
    Request,
    StartViewChange,
)
from zvsr.protocol.ready import BROADCAST
from zvsr.sim.harness import Cluster

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
    scenarios.request_in_progress_at_failover()


def test_requests_waiting_in_the_queue_are_dropped_on_view_change() -> None:
    """They were never prepared: the clients retry (with the same request_number) at the next primary."""
    config = Config(replica_count=3, pipeline_ops_max=1, primary_timeout_jitter_ticks=0)
    cluster = Cluster(3, config=config)
    primary = cluster.replicas[0]
    cluster.request(client_id=1, request_number=1, to=0)
    cluster.request(client_id=2, request_number=1, to=0)
    assert len(primary.pipeline.request_queue) == 1 and primary.client_table.pending == {1: 1, 2: 1}
    cluster.inject(0, StartViewChange(**header(view=1, replica=1)))
    assert not primary.pipeline.request_queue
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


def test_a_session_ticked_only_when_due_acts_exactly_like_one_ticked_every_tick() -> None:
    """The proxy ticks a session only at `ticks_until_due` and covers the ticks between with `advance`. Two
    sessions with the same seed, one ticked every tick and one driven that way, through silence (backed-off
    re-sends), a `busy` Error (the retry timer restarts) and the deadline: the same sends at the same ticks and
    the same completion at the same tick."""

    def run(lazy: bool) -> list[tuple[int, object]]:
        session = ClientSession(client_id=9, replica_count=3, prng=random.Random(4), deadline_ticks=400)
        events: list[tuple[int, object]] = []
        session.submit(b"op")
        events += [(0, destination) for destination, _ in session.take_outbox()]
        synced, due = 0, session.ticks_until_due()
        for now in range(1, 500):
            if now == 90:  # a busy answer: the retry timer restarts (the driver brings the session up to now)
                if lazy:
                    session.advance(now - 1 - synced)
                    synced = now - 1
                session.on_reply(Error(view=0, client_id=9, request_number=1, code=ERROR_BUSY, message=""))
                if lazy:
                    due = synced + session.ticks_until_due()
            if lazy and now != due:
                continue
            if lazy:
                session.advance(now - 1 - synced)
            session.tick()
            synced = now
            events += [(now, destination) for destination, _ in session.take_outbox()]
            completion = session.take_completion()
            if completion is not None:
                return [*events, (now, completion.error)]
            if lazy:
                due = now + session.ticks_until_due()
        raise AssertionError("the deadline never came")

    every_tick = run(lazy=False)
    assert every_tick[-1] == (400, ERROR_TIMEOUT) and len(every_tick) > 3
    assert run(lazy=True) == every_tick


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


# --- RelaySession: through proxies ------------------------------------------------------------------------------


def new_relay_session(**overrides: int) -> RelaySession:
    arguments: dict[str, int] = {"client_id": 42, "relay_count": 3, "deadline_ticks": 500, "quiet_ticks": 250}
    arguments.update(overrides)
    return RelaySession(**arguments)


def relay_error(code: str, number: int = 1) -> Error:
    return Error(view=0, client_id=42, request_number=number, code=code, message=f"proxy says {code}")


def test_relay_session_sends_each_request_once_to_one_relay_while_it_answers() -> None:
    """Proxy 1 answers every request, one after 200 ticks (a failover behind it): nothing is ever sent twice,
    nor to another proxy — the proxy retries toward the replicas, not the client."""
    session = new_relay_session(relay=1)
    sent: list[tuple[int, Request]] = []
    for number in (1, 2, 3):
        request = session.submit(b"op")
        for _ in range(200 if number == 2 else 1):
            session.tick()
            sent += session.take_outbox()
        sent += session.take_outbox()
        session.on_reply(Reply(view=0, client_id=42, request_number=number, result=b"r"))
        assert session.take_completion() == Completion(request_number=number, result=b"r")
        assert request.request_number == number
    assert [(relay, request.request_number) for relay, request in sent] == [(1, 1), (1, 2), (1, 3)]


def test_relay_session_only_its_own_deadline_ends_a_request_in_timeout() -> None:
    """A silent proxy: no re-send before the quiet period, and the request ends exactly at the client's
    deadline, with `timeout` (outcome unknown) — not earlier, and not at any timer of the proxy's."""
    session = new_relay_session(deadline_ticks=100, quiet_ticks=1000)
    request = session.submit(b"op")
    assert session.take_outbox() == [(0, request)]
    for _ in range(99):
        session.tick()
    assert session.take_outbox() == [] and session.take_completion() is None
    session.tick()
    completion = session.take_completion()
    assert completion is not None and completion.error == ERROR_TIMEOUT and session.outstanding is None


def test_relay_session_asks_the_next_relay_once_after_a_relay_gives_up_and_its_deadline_is_ahead() -> None:
    """Proxy 0's own session ended (`timeout`, `unavailable` or `busy`): the client's deadline is still ahead,
    so after a short pause the same request goes once to proxy 1; the proxy's answer does not end the call."""
    for code in (ERROR_TIMEOUT, ERROR_UNAVAILABLE, ERROR_BUSY):
        session = new_relay_session()
        request = session.submit(b"op")
        session.take_outbox()
        session.on_reply(relay_error(code))
        session.on_reply(relay_error(code))  # a second error during the pause asks for nothing more
        assert session.take_completion() is None and session.outstanding == request
        for _ in range(RETRY_AFTER_ERROR_TICKS - 1):
            session.tick()
        assert session.take_outbox() == [], code
        session.tick()
        assert session.take_outbox() == [(1, request)], code
        for _ in range(100):
            session.tick()
        assert session.take_outbox() == [], "one re-send per answer, not a timer"


def test_relay_session_ends_at_once_on_a_final_error() -> None:
    for code in (ERROR_BAD_REQUEST, ERROR_SESSION_EXPIRED):
        session = new_relay_session()
        session.submit(b"op")
        session.on_reply(relay_error(code))
        completion = session.take_completion()
        assert completion is not None and completion.error == code and completion.message == f"proxy says {code}"


def test_relay_session_moves_to_the_next_relay_when_a_send_is_refused() -> None:
    """Proxy 0 has no connection (the driver's send was refused): the request goes to proxy 1 at once. When all
    three refuse, nothing leaves until the next tick, which tries again; the next request starts at the proxy
    that took the last one."""
    session = new_relay_session()
    request = session.submit(b"a")
    assert session.take_outbox() == [(0, request)]
    session.on_send_refused(0)
    assert session.take_outbox() == [(1, request)]
    session.on_send_refused(1)
    assert session.take_outbox() == [(2, request)]
    session.on_send_refused(2)
    assert session.take_outbox() == []
    session.tick()
    assert session.take_outbox() == [(0, request)]  # a local attempt: the connection may be up by now
    session.on_send_refused(0)
    assert session.take_outbox() == [(1, request)]  # proxy 1 took it
    session.on_reply(Reply(view=0, client_id=42, request_number=1, result=b"r"))
    assert session.take_completion() is not None
    assert session.submit(b"b").request_number == 2 and session.take_outbox()[0][0] == 1


def test_relay_session_sends_again_after_a_quiet_period_the_loss_a_restarted_proxy_cannot_report() -> None:
    """Proxy 0 restarts with the request in flight and forgets it; nothing says so. After `quiet_ticks` without
    any answer the request goes to the next proxy, once per quiet period, until the deadline."""
    session = new_relay_session(quiet_ticks=50, deadline_ticks=160, relay_count=2)
    request = session.submit(b"op")
    session.take_outbox()
    sent: list[tuple[int, int]] = []
    for tick in range(1, 160):
        session.tick()
        sent += [(tick, relay) for relay, _ in session.take_outbox()]
    assert sent == [(50, 1), (100, 0), (150, 1)]
    session.tick()
    completion = session.take_completion()
    assert completion is not None and completion.error == ERROR_TIMEOUT
    # With an answer before the quiet period ends, nothing is sent again.
    session = new_relay_session(quiet_ticks=50)
    session.submit(b"op")
    session.take_outbox()
    for _ in range(49):
        session.tick()
    session.on_reply(Reply(view=0, client_id=42, request_number=request.request_number, result=b"r"))
    session.tick()
    assert session.take_outbox() == [] and session.take_completion() is not None
