"""The watch stream (issue 7, deliverable 4): replicas publish executed ops; a watcher keeps a live copy.

Without sockets: what an op and its result change (`coordination_changes`); the Clone algorithm's ordering,
de-duplication, gaps filled from the history, compaction and resync (`CloneState`); the replica side's publishing
of what each Ready executed (`WatchPublisher`) and its snapshot answers; the wire shapes; the ``watch``
endpoint in the configuration. On real processes (`process_cluster`): a watcher sees exactly the changes under
its prefix and ends equal to a direct read after a load; a watcher that loses ops keeps a correct copy across a
kill -9 of the primary and the restart of that replica (gaps found, filled from history); a watcher started late
gets the snapshot, then the updates; CurveZMQ admits a client key to the stream.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest
import zmq

from zvsr import constants
from zvsr.apps.base import OpContext
from zvsr.apps.coordination import CoordinationApp
from zvsr.client import AppError, Client, ZvsrError, curve_for_proxy, watch
from zvsr.protocol.messages import LogEntry
from zvsr.protocol.ready import Executed
from zvsr.runtime.cluster_config import (
    ClusterConfig,
    ConfigError,
    ReplicaAddress,
    load_config,
    local_cluster,
    to_toml,
)
from zvsr.runtime.processes import ProcessCluster, process_cluster, wait_for
from zvsr.runtime.security import generate
from zvsr.runtime.watch_publisher import WatchPublisher, snapshot_answer
from zvsr.watch import (
    COMPACTED,
    NEED_HISTORY,
    NEED_SNAPSHOT,
    RESYNC,
    SNAPSHOT,
    SYNCED,
    CloneState,
    Watcher,
    WatchEvent,
    coordination_changes,
)
from zvsr.wire import admin
from zvsr.wire.codec import DecodeError

Context = zmq.Context[zmq.Socket[bytes]]


def op(kind: str, /, **fields: Any) -> bytes:
    data: bytes = msgpack.packb({"op": kind, **fields}, use_bin_type=True)
    return data


def packed(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def put(clone: CloneState, op_number: int, key: str, value: Any, now: float = 0.0) -> list[WatchEvent]:
    return clone.on_op(op_number, op("put", key=key, value=value), packed(None), now)


# --- what an op changes ---------------------------------------------------------------------------------------


def test_changes_are_read_from_the_operation_and_its_result() -> None:
    changes = coordination_changes
    assert changes(op("put", key="w/a", value=[1]), packed(None), "w/") == [("w/a", [1], False)]
    bad_put = packed({"error": "bad_request", "message": "unknown field"})
    assert changes(op("put", key="w/a", value=1, extra=2), bad_put, "w/") == []
    assert changes(op("delete", key="w/a"), packed(True), "w/") == [("w/a", None, True)]
    assert changes(op("delete", key="w/a"), packed(False), "w/") == []  # it was missing: nothing changed
    assert changes(op("cas", key="w/a", expected=1, new=2), packed({"ok": True, "value": 2}), "w/") == [
        ("w/a", 2, False)
    ]
    assert changes(op("cas", key="w/a", expected=1, new=2), packed({"ok": False, "value": 5}), "w/") == []
    assert changes(op("incr", key="w/n", by=3), packed(7), "w/") == [("w/n", 7, False)]
    type_error = packed({"error": "type_error", "message": "holds a str"})
    assert changes(op("incr", key="w/n"), type_error, "w/") == []
    assert changes(op("get", key="w/a"), packed(1), "w/") == []
    assert changes(op("lock", name="w/l", owner="me"), packed({"ok": True, "owner": "me", "token": 1}), "w/") == []
    assert changes(op("put", key="x/a", value=1), packed(None), "w/") == []  # another prefix
    assert changes(b"\xc1", packed(None), "w/") == [] and changes(packed([1]), packed(None), "") == []
    assert changes(op("put", key="w/a", value=1), b"\xc1", "w/") == []


def test_a_lease_that_ends_deletes_its_keys_under_the_prefix() -> None:
    changes = coordination_changes
    revoked = packed({"ok": True, "deleted": ["w/a", "w/b", "x/c"]})
    assert changes(op("lease_revoke", lease=1), revoked, "w/") == [("w/a", None, True), ("w/b", None, True)]
    assert changes(op("lease_revoke", lease=1), packed({"ok": False, "deleted": []}), "w/") == []
    expired = packed({"expired": [1, 2], "deleted": ["w/a", "x/c"]})
    assert changes(op("lease_expire"), expired, "") == [("w/a", None, True), ("x/c", None, True)]
    assert changes(op("lease_expire"), expired, "y/") == []
    assert changes(op("lease_expire"), packed({"expired": [], "deleted": []}), "w/") == []
    bad = packed({"error": "bad_request", "message": "lease_revoke: 'lease' must be an int, not a str"})
    assert changes(op("lease_revoke", lease="1"), bad, "w/") == []
    assert changes(op("lease_revoke", lease=1), b"\xc1", "w/") == []
    assert changes(op("lease_expire"), packed({"deleted": "w/a"}), "w/") == []
    assert changes(op("lease_expire"), packed({"deleted": [7, "w/a"]}), "w/") == [("w/a", None, True)]
    # A put with a lease is an ordinary put; the other lease ops change no key.
    assert changes(op("put", key="w/a", value=1, lease=3), packed(None), "w/") == [("w/a", 1, False)]
    not_found = packed({"error": "lease_not_found", "message": "put: no lease 9"})
    assert changes(op("put", key="w/a", value=1, lease=9), not_found, "w/") == []
    assert changes(op("lease_grant", ttl_ms=1000), packed({"lease": 1, "ttl_ms": 1000}), "") == []
    assert changes(op("lease_keepalive", lease=1), packed(1000), "") == []
    described = {"lease": 1, "ttl_ms": 1000, "remaining_ms": 5, "keys": ["w/a"], "locks": []}
    assert changes(op("lease_ttl", lease=1), packed(described), "") == []
    assert changes(op("lease_list"), packed([1]), "") == []


def test_a_copy_fed_the_apps_ops_and_results_stays_equal_to_the_app_with_leases() -> None:
    """The real app, ops with leases that end by revoke and by expiry: the watcher's copy follows it exactly."""
    app, clone, rng = CoordinationApp(), CloneState("w/"), random.Random(11)
    assert clone.on_snapshot(0, {}, 0.0) == [WatchEvent(0, "", 0, kind=SYNCED)]
    now, last_lease = 0, 0
    for op_number in range(1, 3001):
        now += rng.choice((1, 20, 300)) * 1_000_000
        key, lease = rng.choice(["w/a", "w/b", "w/c", "x/a"]), rng.randint(max(1, last_lease - 3), last_lease + 1)
        operation = app.due(now) or rng.choice(
            [
                {"op": "lease_grant", "ttl_ms": rng.choice((10, 500))},
                {"op": "lease_keepalive", "lease": lease},
                {"op": "lease_revoke", "lease": lease},
                {"op": "lease_expire"},
                {"op": "put", "key": key, "value": op_number, "lease": lease},
                {"op": "put", "key": key, "value": op_number},
                {"op": "delete", "key": key},
                {"op": "incr", "key": key},
            ]
        )
        result = app.apply(operation, OpContext(op_number, now, 0))
        if operation["op"] == "lease_grant":
            last_lease = result["lease"]
        clone.on_op(op_number, packed(operation), packed(result), 0.0)
        assert clone.state == app.items_with_prefix("w/"), (op_number, operation, result)
    assert last_lease > 50


# --- the Clone algorithm, sans-IO ---------------------------------------------------------------------------


def history(first_op: int, last_op: int, *ops: tuple[int, str, Any]) -> admin.HistoryAnswer:
    """A replica's history answer holding ops first_op..last_op, listing these puts (op_number, key, value)."""
    listed = tuple(admin.WatchOp(n, op("put", key=key, value=value), packed(None)) for n, key, value in ops)
    return admin.HistoryAnswer(first_op=first_op, last_op=last_op, ops=listed)


def test_ops_before_the_snapshot_are_buffered_and_only_later_ones_applied() -> None:
    clone = CloneState("w/")
    assert put(clone, 3, "w/a", 3) == [] and put(clone, 4, "w/b", 4) == [] and put(clone, 5, "x/c", 5) == []
    assert clone.needs(0.0) == NEED_SNAPSHOT and not clone.ready
    events = clone.on_snapshot(3, {"w/a": 3, "x/z": 1}, 0.0)
    assert events == [
        WatchEvent(3, "w/a", 3, kind=SNAPSHOT),
        WatchEvent(3, "", 1, kind=SYNCED),  # the snapshot's keys are complete: one key
        WatchEvent(4, "w/b", 4),
    ]
    assert clone.state == {"w/a": 3, "w/b": 4} and clone.op_number == 5 and not clone.pending
    assert clone.needs(100.0) is None and clone.resyncs == 0 and clone.ready


def test_every_replica_publishing_the_same_op_applies_it_once() -> None:
    clone = CloneState("w/")
    clone.on_snapshot(0, {}, 0.0)
    assert put(clone, 1, "w/a", 1) == [WatchEvent(1, "w/a", 1)]
    assert put(clone, 1, "w/a", 1) == [] and put(clone, 1, "w/a", 1) == []
    assert put(clone, 3, "w/c", 3) == [] and put(clone, 3, "w/c", 3) == []  # buffered once
    assert put(clone, 2, "w/b", 2) == [WatchEvent(2, "w/b", 2), WatchEvent(3, "w/c", 3)]
    assert clone.duplicates == 3 and clone.op_number == 3


def test_ops_out_of_order_within_the_gap_bound_are_reordered_without_asking_anyone() -> None:
    clone = CloneState("w/", gap_ms=500)
    clone.on_snapshot(0, {}, 0.0)
    assert put(clone, 2, "w/b", 2, now=1.0) == []
    assert clone.needs(1.4) is None
    assert put(clone, 1, "w/a", 1, now=1.4) == [WatchEvent(1, "w/a", 1), WatchEvent(2, "w/b", 2)]
    assert clone.needs(100.0) is None and clone.gap_deadline() is None


def test_a_gap_past_its_bound_is_filled_from_a_replicas_history_with_every_change_in_it() -> None:
    """Op 1 and 2 were lost by every replica's stream (op 3 came): after WATCH_GAP_MS the watcher asks the
    history; the answer's ops are applied in order and reported as changes, op 3 after them: nothing skipped."""
    clone = CloneState("w/", gap_ms=500)
    clone.on_snapshot(0, {"w/a": 1}, 0.0)
    assert put(clone, 3, "w/c", 3, now=1.0) == []
    assert clone.gap_deadline() == 1.5
    assert clone.needs(1.49) is None and clone.needs(1.5) == NEED_HISTORY
    assert clone.on_history(history(1, 5, (1, "w/b", 1)), 1.6) == [WatchEvent(1, "w/b", 1)]  # a chunk: op 1
    assert clone.needs(1.6) is None and clone.highest == 5  # op_number moved: the gap timer starts again
    events = clone.on_history(history(1, 5, (2, "w/a", None), (3, "w/c", 3), (4, "x/d", 4)), 1.7)
    assert events == [WatchEvent(2, "w/a", None), WatchEvent(3, "w/c", 3)]  # op 3 is applied once
    assert clone.op_number == 4 and clone.gap_deadline() == 2.2  # op 5 is still missing
    assert clone.resyncs == 0 and clone.duplicates == 1


def test_a_compacted_history_is_announced_then_a_snapshot_lists_every_key_as_a_resync() -> None:
    """No replica holds op 2 any more: a COMPACTED notice (the oldest op they hold), then the next snapshot lists
    every key of the prefix (RESYNC) and the keys of the copy that are gone as deleted, then SYNCED."""
    clone = CloneState("w/", gap_ms=500)
    clone.on_snapshot(0, {"w/a": 1, "w/d": 4}, 0.0)
    put(clone, 1, "w/b", 2, now=0.5)
    clone.on_commit(6, 1.0)  # ops 2..6 exist
    assert clone.needs(1.5) == NEED_HISTORY
    assert clone.on_history(history(4, 6), 1.6) is None  # that replica holds 4..6 only: compacted there
    assert clone.on_compacted(4, 1.7) == [WatchEvent(1, "", 4, kind=COMPACTED)]
    assert clone.needs(1.7) == NEED_SNAPSHOT and clone.compacted
    put(clone, 8, "w/e", 8, now=1.8)  # after the snapshot below: kept, applied after it
    events = clone.on_snapshot(7, {"w/a": 1, "w/b": 22, "w/c": 3, "x/q": 0}, 1.9)
    assert events == [
        WatchEvent(7, "w/d", None, True, RESYNC),
        WatchEvent(7, "w/a", 1, kind=RESYNC),
        WatchEvent(7, "w/b", 22, kind=RESYNC),
        WatchEvent(7, "w/c", 3, kind=RESYNC),
        WatchEvent(7, "", 3, kind=SYNCED),
        WatchEvent(8, "w/e", 8),
    ]
    assert clone.state == {"w/a": 1, "w/b": 22, "w/c": 3, "w/e": 8} and clone.op_number == 8
    assert clone.resyncs == 1 and clone.needs(100.0) is None


def test_a_lost_tail_is_found_by_a_replicas_commit_number() -> None:
    clone = CloneState("w/", gap_ms=500)
    clone.on_snapshot(3, {}, 0.0)
    clone.on_commit(3, 1.0)
    assert clone.needs(5.0) is None
    clone.on_commit(5, 6.0)  # ops 4 and 5 exist, and no replica's stream brought them
    assert clone.needs(6.4) is None and clone.needs(6.5) == NEED_HISTORY


def test_a_snapshot_older_than_the_copy_is_refused() -> None:
    clone = CloneState("w/")
    clone.on_snapshot(5, {"w/a": 5}, 0.0)
    assert clone.on_snapshot(4, {"w/a": 4}, 0.0) is None
    assert clone.state == {"w/a": 5} and clone.op_number == 5


def test_a_full_buffer_is_dropped_and_refetched_from_the_history_at_once() -> None:
    clone = CloneState("w/", pending_max=3, gap_ms=500)
    clone.on_snapshot(0, {"w/a": 1}, 0.0)
    for n in (2, 3, 4, 5):  # op 1 never comes
        put(clone, n, "w/b", n)
    assert clone.overflows == 1 and list(clone.pending) == [5] and clone.needs(0.0) == NEED_HISTORY
    answer = history(1, 5, (1, "w/a", True), (2, "w/b", 2), (3, "w/b", 3), (4, "w/b", 4))
    assert [e.op_number for e in clone.on_history(answer, 0.0) or []] == [1, 2, 3, 4, 5]
    assert clone.state == {"w/a": True, "w/b": 5} and clone.needs(0.0) is None


def test_started_after_an_op_it_asks_the_history_and_reports_only_later_ops_exactly_once() -> None:
    """`zvsr watch --from-op 3`: ops 1..3 are never reported; 4.. are, once each, whether they come from the
    history or from the stream (which repeats some), in order."""
    clone = CloneState("w/", from_op=3)
    assert clone.synced and not clone.ready and clone.needs(0.0) == NEED_HISTORY
    assert put(clone, 2, "w/a", 2) == [] and put(clone, 6, "w/f", 6) == []  # stream: 2 is old, 6 buffered
    assert clone.on_history(history(2, 3), 0.1) == []  # this replica lags: it holds 2..3, nothing after 3
    assert clone.ready and clone.highest == 6  # caught up as far as that replica knows; op 6 shows a gap
    events = clone.on_history(history(1, 7, (4, "w/d", 4), (5, "x/e", 5), (6, "w/f", 6), (7, "w/g", 7)), 0.2)
    assert events == [WatchEvent(4, "w/d", 4), WatchEvent(6, "w/f", 6), WatchEvent(7, "w/g", 7)]
    assert put(clone, 7, "w/g", 7) == [] and clone.op_number == 7 and clone.state == {"w/d": 4, "w/f": 6, "w/g": 7}
    with pytest.raises(ValueError, match="op number"):
        CloneState("w/", from_op=-1)


def test_started_after_a_compacted_op_the_resync_lists_every_key() -> None:
    clone = CloneState("w/", from_op=1)
    assert clone.on_history(history(10, 12), 0.0) is None and not clone.ready
    assert clone.on_compacted(10, 0.1) == [WatchEvent(1, "", 10, kind=COMPACTED)]
    assert clone.needs(0.1) == NEED_SNAPSHOT
    events = clone.on_snapshot(12, {"w/a": 1, "w/b": 2}, 0.2)
    assert events == [
        WatchEvent(12, "w/a", 1, kind=RESYNC),
        WatchEvent(12, "w/b", 2, kind=RESYNC),
        WatchEvent(12, "", 2, kind=SYNCED),
    ]
    assert clone.ready and clone.needs(0.2) is None and clone.resyncs == 1


# --- the Watcher's rounds of history queries, driven by hand (its sockets connect to nobody) -------------------


def silent_watcher(context: Context, **options: Any) -> tuple[Watcher, list[tuple[int, bytes]]]:
    """A Watcher of three replicas that never answer by themselves: the test feeds it answers and times; the
    queries it sends are recorded as (replica, query)."""
    ports = range(1, 4)
    endpoints = [f"tcp://127.0.0.1:{port}" for port in ports]
    watcher = Watcher(endpoints, endpoints, "w/", context=context, **options)
    sent: list[tuple[int, bytes]] = []
    watcher._send_query = lambda index, query: sent.append((index, query))  # type: ignore[method-assign]
    return watcher, sent


def test_a_watcher_resuming_after_an_op_follows_a_chunked_history_from_the_replica_that_has_it(
    context: Context,
) -> None:
    """From op 5: replica 0 restarted (holds 10.. only), replica 1 lags (up to 4), replica 2 holds 1..9 and sends
    6 and 7: applied at once, and the next chunk is asked of replica 2 alone; no compaction is announced."""
    watcher, sent = silent_watcher(context, from_op=5, notices=True)
    with watcher:
        start = watcher._started + c_join_s()
        watcher._step(start)
        assert sorted(index for index, _ in sent) == [0, 1, 2]
        assert {admin.decode_history_query(query) for _, query in sent} == {5}
        sent.clear()
        watcher._on_answer(0, admin.encode_history_answer(10, 20, []), start + 0.01)
        watcher._on_answer(1, admin.encode_history_answer(1, 4, []), start + 0.02)
        chunk = [(6, op("put", key="w/a", value=6), packed(None)), (7, op("put", key="x", value=7), packed(None))]
        watcher._on_answer(2, admin.encode_history_answer(1, 9, chunk), start + 0.03)
        assert list(watcher._events) == [WatchEvent(6, "w/a", 6)] and watcher.op_number == 7 and watcher.synced
        assert [(index, admin.decode_history_query(query)) for index, query in sent] == [(2, 7)]
        watcher._step(start + 1.0)  # the round is over: no gap known beyond 9 is overdue yet
        assert all(event.kind != COMPACTED for event in watcher._events)


def test_a_watcher_announces_compaction_when_no_replica_that_answers_holds_the_op(context: Context) -> None:
    """Replica 0 holds 10.. only, replica 1 lags, replica 2 is down: after the grace, COMPACTED (oldest 10), then
    a snapshot round; the snapshot's keys come as RESYNC, then SYNCED."""
    watcher, sent = silent_watcher(context, from_op=5, notices=True)
    with watcher:
        start = watcher._started + c_join_s()
        watcher._step(start)
        watcher._on_answer(0, admin.encode_history_answer(10, 20, []), start + 0.01)
        watcher._on_answer(1, admin.encode_history_answer(1, 4, []), start + 0.02)
        watcher._step(start + 0.05)  # within the grace: replica 2 may still answer
        assert not watcher._events
        watcher._step(start + 0.2)
        assert list(watcher._events) == [WatchEvent(5, "", 10, kind=COMPACTED)]
        sent.clear()
        watcher._step(start + 0.2)
        assert {admin.decode_snapshot_query(query) for _, query in sent} == {"w/"}
        watcher._on_answer(0, admin.encode_snapshot_answer(20, {"w/a": 1}), start + 0.3)
        watcher._step(start + 0.5)
        resync = [WatchEvent(20, "w/a", 1, kind=RESYNC), WatchEvent(20, "", 1, kind=SYNCED)]
        assert list(watcher._events)[1:] == resync
        assert watcher.op_number == 20 and watcher.resyncs == 1


def c_join_s() -> float:
    return constants.WATCH_JOIN_MS / 1000


# --- the replica side, without sockets -----------------------------------------------------------------------


def executed(*ops: tuple[int, bytes]) -> list[Executed]:
    """What a Ready reports for these (op_number, operation) pairs, each with the result b"r" + operation."""
    return [
        (
            number,
            LogEntry(view=0, op_number=number, client_id=1, request_number=number, operation=op, timestamp=number),
            b"r" + op,
        )
        for number, op in ops
    ]


class FakeXPub:
    def __init__(self, received: list[bytes]) -> None:
        self.sent: list[tuple[bytes, ...]] = []
        self.received = received

    def send_multipart(self, frames: tuple[bytes, ...], flags: int = 0) -> None:
        self.sent.append(tuple(frames))

    def recv(self, flags: int = 0) -> bytes:
        if not self.received:
            raise zmq.Again()
        return self.received.pop(0)


def test_the_publisher_sends_each_op_in_order_then_its_commit_number_now_and_then() -> None:
    socket, counted = FakeXPub([b"\x01"]), {}

    def count(reason: str, amount: int) -> None:
        counted[reason] = counted.get(reason, 0) + amount

    publisher = WatchPublisher(socket, count, commit_interval_ms=200, step_ops_max=3)  # type: ignore[arg-type]
    publisher.drain_subscriptions(0.0)  # a first subscription, to everything
    assert publisher.topics == {b""}
    publisher.publish(executed((1, b"a"), (2, b"b")), 2, now=10.0)
    messages = [admin.decode_watch_message(*frames) for frames in socket.sent]
    assert messages == [admin.WatchOp(1, b"a", b"ra"), admin.WatchOp(2, b"b", b"rb"), admin.WatchCommit(2)]
    socket.sent.clear()
    publisher.publish([], 2, now=10.1)
    assert socket.sent == []
    # After a snapshot restore the ops go on from the snapshot's op_number: published as numbered (a watcher
    # sees the gap and asks the history, or resyncs).
    publisher.publish(executed((11, b"c")), 11, now=10.25)
    assert [admin.decode_watch_message(*frames) for frames in socket.sent] == [
        admin.WatchOp(11, b"c", b"rc"),
        admin.WatchCommit(11),
    ]
    assert counted == {"watch: ops published": 3}
    # A step beyond the bound (a restart re-executing a long log) is not published, and counted.
    socket.sent.clear()
    publisher.publish(executed((12, b"d"), (13, b"e"), (14, b"f"), (15, b"g")), 15, now=10.3)
    assert socket.sent == [] and counted["watch: ops not published"] == 4


def test_with_no_subscriber_nothing_is_encoded_or_sent() -> None:
    socket = FakeXPub([b"\x01op", b"\x00op", b"garbage"])
    publisher = WatchPublisher(socket, lambda reason, amount: None)  # type: ignore[arg-type]
    publisher.drain_subscriptions(0.0)  # subscribed, then unsubscribed (the last subscriber went away)
    assert publisher.topics == set() and socket.received == []
    publisher.publish(executed((1, b"a")), 1, now=1.0)
    assert socket.sent == []
    socket.received.append(b"\x01")
    publisher.drain_subscriptions(1.0)
    publisher.publish(executed((2, b"b")), 2, now=1.1)
    assert [admin.decode_watch_message(*frames) for frames in socket.sent] == [
        admin.WatchOp(2, b"b", b"rb"),
        admin.WatchCommit(2),
    ]


def test_the_snapshot_query_is_answered_from_the_app_or_refused_with_a_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = CoordinationApp()
    for op_number, (key, value) in enumerate((("w/b", 2), ("w/a", [1]), ("x/a", 3)), start=1):
        app.apply({"op": "put", "key": key, "value": value}, OpContext(op_number, op_number * 1_000_000, 0))
    app.apply({"op": "lock", "name": "w/lock", "owner": "me"}, OpContext(4, 4_000_000, 0))
    query = admin.encode_snapshot_query("w/")
    answer = admin.decode_snapshot_answer(snapshot_answer(query, app, 7, recovering=False) or b"")
    assert answer == admin.SnapshotAnswer(op_number=7, items={"w/a": [1], "w/b": 2})
    assert list(answer.items) == ["w/a", "w/b"]  # sorted: equal states, identical answers

    def refusal(payload: bytes, target: Any = app, recovering: bool = False) -> str | None:
        data = snapshot_answer(payload, target, 7, recovering=recovering)
        return None if data is None else admin.decode_snapshot_answer(data).error

    assert refusal(admin.encode_status_query()) is None and refusal(packed({"type": 20})) is None
    assert refusal(b"\xc1") is None
    assert refusal(packed({"type": 32, "prefix": 1})) == "bad_request"
    assert refusal(packed({"type": 32})) == "bad_request"
    assert refusal(query, recovering=True) == "unavailable"
    assert refusal(query, target=object()) == "unsupported"
    monkeypatch.setattr(constants, "SNAPSHOT_ANSWER_BYTES_MAX", 16)
    too_large = admin.decode_snapshot_answer(snapshot_answer(query, app, 7, recovering=False) or b"")
    assert too_large.error == "too_large" and "narrower prefix" in too_large.message


def test_watch_messages_are_checked_like_every_other_input() -> None:
    data = admin.encode_watch_op(5, b"op", b"result")
    assert admin.decode_watch_message(b"op", data) == admin.WatchOp(5, b"op", b"result")
    assert admin.decode_watch_message(b"commit", admin.encode_watch_commit(9)) == admin.WatchCommit(9)
    bad = [
        (b"other", data),
        (b"commit", data),
        (b"op", admin.encode_watch_op(0, b"op", b"result")),
        (b"op", packed({"type": 40, "op_number": 1, "operation": "str", "result": b""})),
        (b"op", packed({"type": 40, "op_number": 1, "operation": b"", "result": b"", "more": 1})),
        (b"op", packed({"type": 40, "op_number": -1, "operation": b"", "result": b""})),
        (b"commit", b"\xc1"),
        (b"commit", packed([41])),
    ]
    deep: Any = 0
    for _ in range(1000):
        deep = [deep]
    bad += [(b"op", packed({"type": deep})), (b"commit", packed({"type": deep}))]
    for topic, payload in bad:
        with pytest.raises(DecodeError):
            admin.decode_watch_message(topic, payload)
    with pytest.raises(DecodeError):
        admin.decode_snapshot_answer(packed({"type": deep}))
    assert coordination_changes(packed({"op": "put", "key": "w/a", "value": deep}), packed(None), "w/") != []
    with pytest.raises(DecodeError):  # a replica that does not know the query answers with a bare Error
        admin.decode_snapshot_answer(admin.encode_bare_error("cannot read the request"))
    assert admin.decode_snapshot_query(admin.encode_snapshot_query("p")) == "p"


# --- configuration ------------------------------------------------------------------------------------------


def test_watch_endpoints_are_optional_checked_and_written_back(tmp_path: Path) -> None:
    config = local_cluster()
    assert [r.watch for r in config.replicas] == [f"tcp://127.0.0.1:{p}" for p in (7713, 7723, 7733)]
    path = tmp_path / "cluster.toml"
    path.write_text(to_toml(config))
    assert 'watch = "tcp://127.0.0.1:7713"' in path.read_text() and load_config(path) == config
    path.write_text("\n".join(line for line in to_toml(config).splitlines() if not line.startswith("watch")))
    assert all(r.watch is None for r in load_config(path).replicas)  # no watch endpoint: no stream
    with pytest.raises(ConfigError, match="endpoints used twice"):
        path.write_text(to_toml(config).replace(":7723", ":7712", 1))
        load_config(path)
    with pytest.raises(ConfigError, match="replica 0 watch must be a ZeroMQ endpoint"):
        ClusterConfig(
            replicas=(
                ReplicaAddress(peer="tcp://a:1", heartbeat="tcp://a:2", client="tcp://a:3", watch="nowhere"),
            )
        )
    with pytest.raises(ConfigError, match="watch: optional"):
        path.write_text(to_toml(config).replace("watch =", "wach =", 1))
        load_config(path)


# --- real processes -----------------------------------------------------------------------------------------

W_KEYS = [f"w/{i}" for i in range(10)]
OTHER_KEYS = ["x/0", "x/1", "wx"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    with process_cluster(tmp_path) as started:
        started.wait_for_primary(timeout_s=30)
        yield started


def random_op(client: Client, rng: random.Random) -> None:
    key = rng.choice(W_KEYS + OTHER_KEYS)
    kind = rng.random()
    try:
        if kind < 0.35:
            client.put(key, rng.choice([rng.randrange(100), f"s{rng.randrange(100)}", None, [1, {"k": b"v"}]]))
        elif kind < 0.5:
            client.delete(key)
        elif kind < 0.75:
            client.cas(key, rng.choice([None, rng.randrange(100)]), rng.randrange(100))
        else:
            client.incr(key, rng.randrange(-3, 4))
    except AppError:  # incr of a key that holds no int: changes nothing, published all the same
        pass


def read_all(client: Client) -> dict[str, Any]:
    """The cluster's state of the watched keys, by linearizable reads (None: missing or holding None)."""
    return {key: client.get(key) for key in W_KEYS}


def same_as(watcher: Watcher, expected: dict[str, Any]) -> bool:
    copy = {key: watcher.state.get(key) for key in W_KEYS}
    return set(watcher.state) <= set(W_KEYS) and copy == expected


def pump(watchers: list[Watcher], condition: Callable[[], Any], *, timeout_s: float, what: str) -> None:
    """Drive the watchers until `condition` holds (checked every ~0.1 s)."""

    def done() -> Any:
        for watcher in watchers:
            watcher.poll(30)
        return condition()

    wait_for(done, timeout_s=timeout_s, what=what, interval_s=0)


def collect(watcher: Watcher, condition: Callable[[], bool], timeout_s: float = 10) -> list[WatchEvent]:
    """The watcher's events until `condition` holds."""
    events: list[WatchEvent] = []

    def done() -> bool:
        events.extend(watcher.poll(30))
        return condition()

    wait_for(done, timeout_s=timeout_s, what="the watcher's events", interval_s=0)
    return events


class Load:
    """Random ops on the watched and other keys from a thread, until stopped; failures are expected."""

    def __init__(self, cluster: ProcessCluster, context: Context, seed: int) -> None:
        self.client = Client(cluster.config.proxy, timeout_ms=5000, context=context)
        self.stop = threading.Event()
        self.done = 0
        self.failed = 0
        self.rng = random.Random(seed)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                random_op(self.client, self.rng)
                self.done += 1
            except ZvsrError:
                self.failed += 1

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.client.close()


@pytest.mark.timeout(120)
def test_a_watcher_sees_the_changes_under_its_prefix_and_nothing_else(
    cluster: ProcessCluster, context: Context
) -> None:
    with Client(cluster.config.proxy, timeout_ms=10_000, context=context) as client:
        with watch(cluster.config, "w/", context=context) as watcher:
            assert watcher.wait_synced(10_000) and watcher.poll(0) == []  # nothing under w/ yet
            client.put("w/1", 1)
            client.put("x/1", 1)
            client.put("wx", 1)
            client.put("w/2", "two")
            client.incr("w/3", 5)
            assert client.cas("w/1", 1, 10).ok and not client.cas("w/1", 1, 11).ok
            assert client.delete("w/2") and not client.delete("w/4")
            client.incr("w/1")
            client.put("w/5", b"\x00\x01")
            with pytest.raises(AppError):
                client.incr("w/5")
            expected = {"w/1": 11, "w/3": 5, "w/5": b"\x00\x01"}
            events = collect(watcher, lambda: watcher.state == expected)
            assert [(e.key, e.value, e.deleted) for e in events] == [
                ("w/1", 1, False),
                ("w/2", "two", False),
                ("w/3", 5, False),
                ("w/1", 10, False),
                ("w/2", None, True),
                ("w/1", 11, False),
                ("w/5", b"\x00\x01", False),
            ]
            numbers = [e.op_number for e in events]
            assert numbers == sorted(set(numbers))
            # A load of random ops on watched and other keys: the copy ends equal to a direct read.
            rng = random.Random(7)
            for _ in range(300):
                random_op(client, rng)
                watcher.poll(0)
            final = read_all(client)
            pump([watcher], lambda: same_as(watcher, final), timeout_s=20, what="the copy to equal the reads")
            assert not any(key.startswith("x") for key in watcher.state)
            assert watcher.clone.duplicates > 0  # three replicas published each op


class LossyWatcher(Watcher):
    """Loses every op whose number ends in 3 from every replica's stream: each is a gap it must resync over."""

    lost = 0

    def _on_watch_message(self, index: int, frames: list[bytes], now: float) -> None:
        if len(frames) == 2 and frames[0] == admin.TOPIC_OP:
            message = admin.decode_watch_message(frames[0], frames[1])
            if isinstance(message, admin.WatchOp) and message.op_number % 10 == 3:
                self.lost += 1
                return
        super()._on_watch_message(index, frames, now)


@pytest.mark.timeout(180)
def test_watchers_keep_a_correct_copy_across_a_kill_9_of_the_primary_and_its_restart(
    cluster: ProcessCluster, context: Context
) -> None:
    config = cluster.config
    plain = watch(config, "w/", context=context)
    lossy = LossyWatcher(
        [r.watch or "" for r in config.replicas], [r.client for r in config.replicas], "w/", context=context
    )
    watchers: list[Watcher] = [plain, lossy]
    load = Load(cluster, context, seed=11)
    try:
        pump(watchers, lambda: load.done >= 100, timeout_s=60, what="100 ops before the kill")
        primary = cluster.wait_for_primary()
        cluster.kill(primary)
        before = load.done
        pump(watchers, lambda: load.done >= before + 100, timeout_s=90, what="100 ops after the failover")
        cluster.start_node(primary)  # back from disk: it re-executes (and re-publishes) its committed log
        pump(
            watchers,
            lambda: (cluster.status(primary) or {}).get("status") == "normal",
            timeout_s=60,
            what="the old primary back in normal status",
        )
        before = load.done
        pump(watchers, lambda: load.done >= before + 50, timeout_s=60, what="50 ops after the restart")
    finally:
        load.finish()
    with Client(config.proxy, timeout_ms=10_000, context=context) as client:
        final: dict[str, Any] = {}

        def converged() -> bool:
            # Re-read each time: a request that timed out at the client may still commit through the proxy.
            final.update(read_all(client))
            return same_as(plain, final) and same_as(lossy, final)

        try:
            pump(watchers, converged, timeout_s=30, what="both copies to equal the cluster's state")
        finally:
            plain.close()
            lossy.close()
    # Gaps were found and filled from the replicas' history, change by change: no snapshot after the first.
    assert lossy.lost > 0 and lossy.counters["history: ops applied"] >= lossy.lost
    assert lossy.resyncs == 0 and lossy.counters["snapshots taken"] == 1
    assert "history: compacted" not in lossy.counters


@pytest.mark.timeout(120)
def test_a_watcher_started_late_gets_the_snapshot_then_the_updates(
    cluster: ProcessCluster, context: Context
) -> None:
    with Client(cluster.config.proxy, timeout_ms=10_000, context=context) as client:
        for index, key in enumerate(W_KEYS):
            client.put(key, index)
        client.put("x/0", "elsewhere")
        # Every replica answers the snapshot query; once they caught up, with the same op_number and items.
        dealers = []
        for address in cluster.config.replicas:
            dealer = context.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(address.client)
            dealers.append(dealer)

        def answers() -> set[tuple[int, str]] | None:
            seen = set()
            for dealer in dealers:
                dealer.send_multipart([b"", admin.encode_snapshot_query("w/")])
                if not dealer.poll(2000):
                    return None
                answer = admin.decode_snapshot_answer(dealer.recv_multipart()[-1])
                seen.add((answer.op_number, repr(answer.items)))
            return seen if len(seen) == 1 else None

        try:
            ((op_number, items),) = wait_for(answers, timeout_s=10, what="every replica to answer alike")
        finally:
            for dealer in dealers:
                dealer.close(linger=0)
        assert op_number >= len(W_KEYS) + 1 and items == repr({key: i for i, key in enumerate(W_KEYS)})
        with watch(cluster.config, "w/", context=context) as watcher:
            assert watcher.wait_synced(10_000)
            first = watcher.poll(0)
            assert {(e.key, e.value) for e in first} == {(key, i) for i, key in enumerate(W_KEYS)}
            assert {e.op_number for e in first} == {watcher.op_number} and watcher.op_number >= op_number
            client.put("w/new", "later")
            client.put("x/1", "elsewhere")
            events = collect(watcher, lambda: watcher.op_number > first[0].op_number + 1)
            assert [(e.key, e.value) for e in events] == [("w/new", "later")]
            assert events[0].op_number > first[0].op_number
            assert watcher.counters["snapshots taken"] == 1


@pytest.mark.timeout(120)
def test_with_curvezmq_a_client_key_may_watch_and_a_keyless_watcher_hears_nothing(
    tmp_path: Path, context: Context
) -> None:
    keys = tmp_path / "keys"
    generate(keys, replicas=3)
    secure = {"keys_dir": str(keys), "client_key": str(keys / "clients" / "admin.key_secret")}
    with process_cluster(tmp_path, **secure) as cluster:
        cluster.wait_for_primary(timeout_s=30)
        config = cluster.config
        curve = curve_for_proxy(config)
        with Client(config.proxy, timeout_ms=10_000, context=context, curve=curve) as client:
            client.put("w/secret", 1)
            with watch(config, "w/", context=context) as watcher:  # keys from the configuration
                assert watcher.wait_synced(10_000)
                assert watcher.state == {"w/secret": 1}
                client.put("w/secret", 2)
                pump([watcher], lambda: watcher.state == {"w/secret": 2}, timeout_s=10, what="the update")
            endpoints = ([r.watch or "" for r in config.replicas], [r.client for r in config.replicas])
            with Watcher(*endpoints, "w/", context=context) as stranger:
                assert not stranger.wait_synced(1500) and stranger.state == {}


def test_a_watcher_needs_one_watch_and_one_client_endpoint_per_replica(context: Context) -> None:
    with pytest.raises(ValueError, match="every replica"):
        Watcher(["tcp://127.0.0.1:1"], [], "w/", context=context)
    with pytest.raises(ValueError, match="ZeroMQ endpoints"):
        Watcher(["nowhere"], ["tcp://127.0.0.1:1"], "w/", context=context)
    addresses = tuple(
        ReplicaAddress(peer=r.peer, heartbeat=r.heartbeat, client=r.client) for r in local_cluster().replicas
    )
    with pytest.raises(ValueError, match="no watch endpoint"):
        watch(ClusterConfig(replicas=addresses), "w/", context=context)
