"""The history query (issue 15, part 3) without sockets: what a replica keeps of the ops it executed
(`WatchHistory`), how it answers a watcher (`history_answer`), and the wire shapes of types 36/37. The watcher's
use of the answers is in test_watch.py (`CloneState`); `zvsr watch` on real processes in test_watch_cli.py."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest

from zvsr import constants
from zvsr.protocol.messages import LogEntry
from zvsr.protocol.ready import Executed
from zvsr.runtime.watch_history import WatchHistory, history_answer
from zvsr.wire import admin
from zvsr.wire.codec import DecodeError


def executed(*numbers: int, size: int = 1) -> list[Executed]:
    """What a Ready reports for ops `numbers`: operation b"o<n>" padded to `size` bytes, result b"r<n>"."""
    return [
        (
            n,
            LogEntry(
                view=0, op_number=n, client_id=1, request_number=n, operation=b"o%d" % n + b"." * size, timestamp=n
            ),
            b"r%d" % n,
        )
        for n in numbers
    ]


def numbers(history: WatchHistory) -> list[int]:
    return [op_number for op_number, _, _ in history.ops]


def answer(history: WatchHistory | None, from_op: int, *, recovering: bool = False) -> admin.HistoryAnswer:
    result = history_answer(admin.encode_history_query(from_op), history, recovering=recovering)
    assert result is not None
    return admin.decode_history_answer(result[0])


# --- what a replica keeps -------------------------------------------------------------------------------------


def test_a_fresh_replica_holds_every_op_it_executes_with_its_result() -> None:
    history = WatchHistory()
    history.record([], [], 0)  # the first Ready of a new cluster: nothing yet, the history begins at op 1
    assert (history.first_op, history.last_op) == (1, 0)
    history.record(executed(1, 2), [], 2)
    history.record(executed(3), [], 3)
    assert list(history.ops) == [(1, b"o1.", b"r1"), (2, b"o2.", b"r2"), (3, b"o3.", b"r3")]
    assert (history.first_op, history.last_op, history.size) == (1, 3, 15) and history.repairs == 0


def test_a_restarted_replica_holds_the_ops_it_re_executes_after_its_snapshot() -> None:
    """Replica 1 restarts from a snapshot at op 40 and a log up to 45: its first Ready restores the snapshot and
    re-executes 41..45, which is all it holds (40 and before are compacted for it)."""
    history = WatchHistory()
    history.record(executed(41, 42, 43, 44, 45), [40], 45)
    assert (history.first_op, history.last_op) == (41, 45)
    restarted = WatchHistory()
    restarted.record([], [40], 40)  # a snapshot and an empty log after it
    assert (restarted.first_op, restarted.last_op) == (41, 40) and not restarted.ops


def test_a_snapshot_installed_by_state_transfer_starts_a_new_run_after_it() -> None:
    history = WatchHistory()
    history.record(executed(1, 2, 3), [], 3)
    history.record(executed(4), [], 4)
    history.record(executed(21, 22), [20], 22)  # ops 5..20 came inside the snapshot: not held
    assert numbers(history) == [21, 22] and history.first_op == 21
    history.record([], [30], 30)  # a snapshot and no op after it
    assert (history.first_op, history.last_op) == (31, 30) and history.size == 0
    history.record(executed(31), [], 31)
    assert numbers(history) == [31] and history.repairs == 0


def test_the_oldest_ops_go_first_past_the_op_and_byte_bounds() -> None:
    by_count = WatchHistory(ops_max=3)
    by_count.record(executed(1, 2, 3, 4, 5), [], 5)
    assert numbers(by_count) == [3, 4, 5] and by_count.first_op == 3 and by_count.dropped == 2
    by_bytes = WatchHistory(bytes_max=250)
    by_bytes.record(executed(1, 2, 3, size=100), [], 3)  # ~104 bytes each: two fit
    assert numbers(by_bytes) == [2, 3] and by_bytes.size <= 250
    huge = WatchHistory(bytes_max=10)
    huge.record(executed(1, 2, size=100), [], 2)
    assert numbers(huge) == [2]  # the latest op stays even alone past the bound


def test_a_history_that_disagrees_with_the_core_restarts_and_counts_instead_of_failing() -> None:
    history = WatchHistory()
    history.record(executed(1, 2), [], 3)  # the core says 3: a bug somewhere, but never the node's death
    assert history.repairs == 1 and (history.first_op, history.last_op) == (4, 3)


def test_answers_come_in_chunks_bounded_by_ops_and_bytes() -> None:
    history = WatchHistory()
    total = constants.WATCH_HISTORY_CHUNK_OPS_MAX + 10
    history.record(executed(*range(1, total + 1)), [], total)
    first = answer(history, 0)
    assert [op.op_number for op in first.ops] == list(range(1, constants.WATCH_HISTORY_CHUNK_OPS_MAX + 1))
    assert (first.first_op, first.last_op) == (1, total)
    rest = answer(history, first.ops[-1].op_number)
    assert [op.op_number for op in rest.ops] == list(range(constants.WATCH_HISTORY_CHUNK_OPS_MAX + 1, total + 1))
    big = WatchHistory()
    size = constants.WATCH_HISTORY_CHUNK_BYTES // 3
    big.record(executed(1, 2, 3, 4, size=size), [], 4)
    assert [op_number for op_number, _, _ in big.after(0)] == [1, 2]  # a third would pass the chunk's bytes
    alone = WatchHistory()
    alone.record(executed(1, 2, size=constants.WATCH_HISTORY_CHUNK_BYTES + 10), [], 2)
    assert [op_number for op_number, _, _ in alone.after(0)] == [1]  # one op always goes, whatever its size


# --- how it answers -------------------------------------------------------------------------------------------


def test_the_history_query_is_answered_with_the_ops_after_from_op_or_says_they_are_compacted() -> None:
    history = WatchHistory()
    history.record(executed(11, 12, 13), [10], 13)
    full = answer(history, 10)
    assert [(op.op_number, op.operation, op.result) for op in full.ops] == [
        (11, b"o11.", b"r11"),
        (12, b"o12.", b"r12"),
        (13, b"o13.", b"r13"),
    ]
    assert [op.op_number for op in answer(history, 12).ops] == [13]
    caught_up = answer(history, 13)
    assert caught_up.ops == () and caught_up.holds_after(13)
    future = answer(history, 99)  # after what it executed: nothing yet, not compacted
    assert future.ops == () and future.holds_after(99)
    compacted = answer(history, 9)  # op 10 is inside the snapshot: gone here
    assert compacted.ops == () and (compacted.first_op, compacted.last_op) == (11, 13)
    assert not compacted.holds_after(9)


def test_a_history_query_is_refused_with_a_reason_and_other_input_is_left_alone() -> None:
    history = WatchHistory()
    assert history_answer(admin.encode_status_query(), history, recovering=False) is None
    assert history_answer(admin.encode_snapshot_query("w/"), history, recovering=False) is None
    assert history_answer(b"\xc1", history, recovering=False) is None
    bad = [
        {"type": 36},
        {"type": 36, "from_op": -1},
        {"type": 36, "from_op": "1"},
        {"type": 36, "from_op": 1, "more": 2},
    ]
    for query in bad:
        result = history_answer(msgpack.packb(query), history, recovering=False)
        assert result is not None and result[1] == admin.HISTORY_BAD_REQUEST, query
        refusal = admin.decode_history_answer(result[0])
        assert refusal.error == "bad_request" and "history query" in refusal.message
    assert answer(history, 0).error == admin.HISTORY_UNAVAILABLE  # no Ready executed yet: not started
    history.record([], [], 0)
    assert answer(history, 0, recovering=True).error == admin.HISTORY_UNAVAILABLE
    assert answer(None, 0).error == admin.HISTORY_UNSUPPORTED  # no watch endpoint: keeps nothing
    ok = history_answer(admin.encode_history_query(0), history, recovering=False)
    assert ok is not None and ok[1] == "ok"


# --- the wire shapes ------------------------------------------------------------------------------------------


def packed(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def test_history_answers_are_checked_like_every_other_input() -> None:
    good = {"type": 37, "first_op": 5, "last_op": 9, "ops": [[6, b"o", b"r"], [7, b"o", b"r"]]}
    decoded = admin.decode_history_answer(packed(good))
    assert decoded == admin.HistoryAnswer(5, 9, (admin.WatchOp(6, b"o", b"r"), admin.WatchOp(7, b"o", b"r")))
    assert admin.decode_watch_answer(packed(good)) == decoded
    snapshot = admin.encode_snapshot_answer(3, {"a": 1})
    assert admin.decode_watch_answer(snapshot) == admin.SnapshotAnswer(3, {"a": 1})
    refused = [
        dict(good, ops=[[6, b"o", b"r"], [8, b"o", b"r"]]),  # not consecutive
        dict(good, ops=[[4, b"o", b"r"]]),  # before first_op
        dict(good, ops=[[10, b"o", b"r"]]),  # after last_op
        dict(good, ops=[[6, "o", b"r"]]),  # operation not bin
        dict(good, ops=[[6, b"o"]]),  # not a triple
        dict(good, ops={}),
        dict(good, first_op=0),
        dict(good, first_op=11),  # past last_op + 1
        dict(good, extra=1),
        {"type": 37, "error": 1, "message": "x"},
        dict(good, type=33),
        dict(good, ops=[[6 + i, b"", b""] for i in range(constants.WATCH_HISTORY_CHUNK_OPS_MAX + 1)]),
    ]
    for value in refused:
        with pytest.raises(DecodeError):
            admin.decode_history_answer(packed(value))
    with pytest.raises(DecodeError):
        admin.decode_history_answer(b"\x00" * (constants.WATCH_HISTORY_ANSWER_BYTES_MAX + 1))
    with pytest.raises(DecodeError):
        admin.decode_watch_answer(admin.encode_bare_error("what?"))  # a replica without the query
    empty = admin.decode_history_answer(admin.encode_history_answer(6, 5, []))
    assert empty.ops == () and empty.holds_after(5) and not empty.holds_after(4)
    assert admin.decode_history_query(admin.encode_history_query(2**64 - 1)) == 2**64 - 1
