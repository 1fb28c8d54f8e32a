"""Planned maintenance: the transfer query (types 38 → 39) and `zvsr member transfer N` (issue 14, deliverable 6).

The frames are checked alone; then a real 3-replica cluster under a 4-writer load hands the primary role over
with the CLI: the new primary is the one asked for, no acknowledged write is lost, and the write pause stays
far below a failover's."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import msgpack  # type: ignore[import-untyped]
import pytest
from reconfiguration_scenarios import reconfigurable
from scenarios import commit_in_view_zero

from zvsr.bench.rolling_restart import longest_pause
from zvsr.constants import TRANSFER_ANSWER_BYTES_MAX
from zvsr.fuzz.workload import Workload
from zvsr.lincheck import Operation
from zvsr.protocol.replica import Replica, Status
from zvsr.runtime.processes import ProcessCluster, wait_for
from zvsr.runtime.status import ask
from zvsr.runtime.transfer import answer
from zvsr.wire import admin
from zvsr.wire.errors import DecodeError


def pack(value: object) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


# --- frames ----------------------------------------------------------------------------------------------------


def test_a_transfer_query_round_trips_and_other_maps_are_not_ours() -> None:
    assert admin.decode_transfer_query(admin.encode_transfer_query(2)) == 2
    assert admin.decode_transfer_query(admin.encode_status_query()) is None
    assert admin.decode_transfer_query(pack({"type": 38.0, "to": 1})) is None  # a float type is not type 38
    assert admin.decode_transfer_query(b"\xc1") is None


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"type": 38}, "unknown_field"),
        ({"type": 38, "to": 1, "extra": 0}, "unknown_field"),
        ({"type": 38, "to": "1"}, "wrong_type"),
        ({"type": 38, "to": -1}, "out_of_range"),
        ({"type": 38, "to": 2**32}, "out_of_range"),
    ],
)
def test_a_transfer_query_of_another_shape_is_a_decode_error(query: dict[str, object], reason: str) -> None:
    with pytest.raises(DecodeError) as raised:
        admin.decode_transfer_query(pack(query))
    assert raised.value.reason == reason


def test_transfer_answers_round_trip_and_bad_ones_are_refused() -> None:
    assert admin.decode_transfer_answer(admin.encode_transfer_answer(5)) == admin.TransferAnswer(view=5)
    refused = admin.decode_transfer_answer(admin.encode_transfer_error(admin.TRANSFER_REFUSED, "behind"))
    assert (refused.error, refused.message) == ("refused", "behind")
    long = admin.encode_transfer_error(admin.TRANSFER_NOT_PRIMARY, "\U0001f600" * 5000)  # clipped to the bound
    assert len(long) <= TRANSFER_ANSWER_BYTES_MAX
    assert admin.decode_transfer_answer(long).error == "not_primary"
    for bad in (
        pack({"type": 39}),
        pack({"type": 39, "view": -1}),
        pack({"type": 39, "view": 1, "error": "x"}),
        pack({"type": 39, "error": 1, "message": "m"}),
        pack({"type": 23, "code": "bad_request", "message": "m"}),  # a replica that does not know the query
        b"\x00" * (TRANSFER_ANSWER_BYTES_MAX + 1),
    ):
        with pytest.raises(DecodeError):
            admin.decode_transfer_answer(bad)
    with pytest.raises(AssertionError):
        admin.encode_transfer_error("no_such_code", "m")


def test_the_primary_answers_each_transfer_query_with_the_outcome_it_counts() -> None:
    """Primary 0 of three commits A, then B with replica 1's acknowledgements lost: a query to backup 1 is
    not_primary naming replica 0; to 0 for 1 is behind, for 7 refused, garbage bad_request, a status query not
    ours; for 2 it starts the view change to view 2 and answers that view."""
    cluster = reconfigurable(3)
    commit_in_view_zero(cluster, b"A")
    cluster.drop(lambda m: m.source == 1)
    cluster.request(client_id=5, request_number=1, op=b"B", to=0)
    cluster.deliver_all(where=lambda m: m.source != 1)
    primary, backup = cluster.replicas[0], cluster.replicas[1]

    def ask_core(core: Replica, payload: bytes) -> tuple[admin.TransferAnswer, str]:
        answered = answer(payload, core)
        assert answered is not None
        return admin.decode_transfer_answer(answered[0]), answered[1]

    refused, outcome = ask_core(backup, admin.encode_transfer_query(2))
    assert (refused.error, outcome) == ("not_primary", "not_primary")
    assert "believes replica 0 leads view 0" in refused.message
    behind, outcome = ask_core(primary, admin.encode_transfer_query(1))
    assert (behind.error, outcome) == ("behind", "behind") and "replica 1 is behind" in behind.message
    assert ask_core(primary, admin.encode_transfer_query(7))[0].error == "refused"
    assert ask_core(primary, admin.encode_transfer_query(0))[0].error == "refused"  # already the primary
    assert ask_core(primary, pack({"type": 38, "to": "x"}))[1] == "bad_request"
    assert answer(admin.encode_status_query(), primary) is None
    assert primary.status is Status.NORMAL and primary.view_number == 0  # no refusal changed anything

    started, outcome = ask_core(primary, admin.encode_transfer_query(2))
    assert (started, outcome) == (admin.TransferAnswer(view=2), "ok")
    assert primary.status is Status.VIEW_CHANGE and primary.view_number == 2


def test_longest_pause_counts_from_the_start_between_acknowledgements_and_to_the_end() -> None:
    history = [Operation(0, {}, 1, 0.0, t) for t in (1.0, 1.2, 2.5, 2.6)] + [Operation(1, {}, None, 0.5)]
    assert longest_pause(history, 0.9, 3.0) == pytest.approx((1.3, 1.2))
    assert longest_pause(history, 0.0, 1.1) == pytest.approx((1.0, 0.0))
    assert longest_pause([], 1.0, 4.0) == pytest.approx((3.0, 1.0))


# --- a real cluster ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_primary_hands_its_role_to_replica_n_under_load_without_losing_a_write(tmp_path: Path) -> None:
    """Three replicas and a proxy, 4 writers. A backup asked to transfer answers not_primary naming the primary;
    a transfer to a non-member is refused; then `zvsr member transfer N` makes backup N primary in normal status,
    every acknowledged write survives, and the longest write pause is well under 2 s (printed)."""
    cluster = ProcessCluster(tmp_path)
    load: Workload | None = None
    try:
        cluster.start()
        primary = cluster.wait_for_primary(timeout_s=30)
        target = max(r for r in cluster.config.ids if r != primary)
        other = next(r for r in cluster.config.ids if r not in (primary, target))

        answer = ask(
            cluster.config.replicas[other].client,
            admin.encode_transfer_query(target),
            admin.TYPE_TRANSFER_ANSWER,
            size_max=TRANSFER_ANSWER_BYTES_MAX,
            timeout_ms=2000,
            context=cluster.context,
        )
        assert answer is not None
        refused = admin.read_transfer_answer(answer)
        assert refused.error == admin.TRANSFER_NOT_PRIMARY
        assert f"believes replica {primary} leads" in refused.message

        outcome = cluster.cli("member", "transfer", "7")
        assert outcome.returncode == 1
        assert "replica 7 is not a member" in outcome.stderr

        load = Workload(cluster.config.proxy, clients=4, timeout_ms=10_000)
        load.run()
        wait_for(lambda: load.acknowledged() >= 200, timeout_s=60, what="a steady write load")
        start = time.monotonic() - load.started
        outcome = cluster.cli("member", "transfer", str(target), "--json")
        assert outcome.returncode == 0, outcome.stderr
        document = json.loads(outcome.stdout)
        assert (document["old_primary"], document["primary"]) == (primary, target)
        assert document["view"] > document["old_view"]
        mark = load.acknowledged() + 200
        wait_for(lambda: load.acknowledged() >= mark, timeout_s=60, what="writes after the transfer")
        end = time.monotonic() - load.started
        load.finish()
        with load.lock:
            pause, _ = longest_pause(load.history, start, end)
        elapsed = document["elapsed_ms"]
        print(f"transfer r{primary} -> r{target}: {elapsed} ms; longest write pause {pause * 1000:.0f} ms")
        assert pause < 2.0, f"write pause {pause:.2f} s during a planned transfer"

        status = cluster.status(target)
        assert status is not None and (status["status"], status["role"]) == ("normal", "primary")
        assert status["view"] == document["view"]
        old = cluster.status(primary)
        assert old is not None and old["counters"].get("client: transfer queries (ok)") == 1
        assert load.lost_writes() == []

        again = cluster.cli("member", "transfer", str(target))
        assert again.returncode == 1 and "already the primary" in again.stderr
        assert status["acknowledged"].keys() == {primary, other}  # the new primary's view of its backups

        back = cluster.cli("member", "transfer", str(primary))
        assert back.returncode == 0, back.stderr
        shown = re.fullmatch(r"primary (\d+) -> (\d+) \(view (\d+) -> (\d+)\) in \d+ ms\n", back.stdout)
        assert shown is not None, back.stdout
        assert (int(shown[1]), int(shown[2]), int(shown[3])) == (target, primary, document["view"])
        assert int(shown[4]) > document["view"]
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        if load is not None:
            load.finish()
        cluster.cleanup()


@pytest.mark.timeout(60)
def test_a_transfer_with_no_replica_answering_exits_1_naming_the_endpoints(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path)  # never started
    try:
        outcome = cluster.cli("member", "transfer", "1", "--timeout-ms", "300")
        assert outcome.returncode == 1
        assert cluster.config.replicas[0].client in outcome.stderr
    finally:
        cluster.cleanup()
