"""Tests of the linearizability checker (zvsr.lincheck).

The labelled public histories in tests/data/linearizability are the main evidence that the search is
right; the hand-made histories pin down the semantics (unknown and failed outcomes, ties, partitions),
and a brute-force reference checker cross-checks the search on small random histories.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from zvsr.lincheck import (
    FAILED,
    UNKNOWN,
    CheckResult,
    HistoryRecorder,
    KVInput,
    KVModel,
    Model,
    Operation,
    ParseError,
    RegisterInput,
    RegisterModel,
    ZvsrModel,
    check,
    check_file,
    parse_jepsen_kv,
    parse_jepsen_register,
    parse_zvsr,
    zvsr_operation,
)
from zvsr.lincheck.cli import lincheck_command

DATA = Path(__file__).parent / "data" / "linearizability"
INF = math.inf

# Rows known to take more than ~5 s get the informative "slow" marker (they still run by default).  None
# does at present: the slowest history takes well under a second.
SLOW_ROWS: frozenset[str] = frozenset()


def _verdict_rows() -> list[Any]:
    with open(DATA / "VERDICTS.tsv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    params = []
    for row in rows:
        marks = [pytest.mark.slow] if row["file"] in SLOW_ROWS else []
        params.append(pytest.param(row["file"], row["linearizable"] == "true", marks=marks, id=row["file"]))
    return params


def _format_for(rel: str) -> str:
    return "jepsen-register" if rel.startswith("jepsen-etcd/") else "jepsen-kv"


def test_verdicts_table_covers_every_data_file() -> None:
    listed = {p.values[0] for p in _verdict_rows()}
    on_disk = {str(p.relative_to(DATA)) for p in DATA.glob("*/*") if p.suffix in (".log", ".txt")}
    assert len(listed) == 108
    assert listed == on_disk


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("rel", "linearizable"), _verdict_rows())
def test_labelled_history(rel: str, linearizable: bool) -> None:
    result = check_file(str(DATA / rel), _format_for(rel), timeout_s=60)
    assert result.verdict == ("ok" if linearizable else "illegal"), result.summary()
    if not linearizable:
        failure = result.failure
        assert failure is not None
        assert failure.first_unlinearizable is not None
        assert failure.longest_prefix_events is not None
        assert 0 <= failure.longest_prefix_events < failure.events


# --- helpers -------------------------------------------------------------------------------------------


def op(client: int, input: Any, output: Any, call: float, ret: float = INF) -> Operation:
    return Operation(client, input, output, call, ret)


def read(client: int, value: Any, call: float, ret: float) -> Operation:
    return op(client, RegisterInput("read"), value, call, ret)


def write(client: int, value: Any, call: float, ret: float = INF) -> Operation:
    return op(client, RegisterInput("write", value), None if ret != INF else UNKNOWN, call, ret)


def cas(client: int, a: Any, b: Any, out: Any, call: float, ret: float = INF) -> Operation:
    return op(client, RegisterInput("cas", a, b), out, call, ret)


def zv(client: int, call: float, ret: float | None, o: dict[str, Any], result: Any, status: str) -> Operation:
    return zvsr_operation(
        {"client": client, "call": call, "return": ret, "op": o, "result": result, "status": status}
    )


def verdict(history: Sequence[Operation], model: Model) -> str:
    return check(history, model, timeout_s=30).verdict


# --- models --------------------------------------------------------------------------------------------


def test_register_model_steps() -> None:
    m = RegisterModel()
    s = m.init()
    assert s is None
    assert m.step(s, RegisterInput("read"), None) == (True, None)
    assert m.step(s, RegisterInput("read"), 1)[0] is False
    assert m.step(s, RegisterInput("read"), UNKNOWN) == (True, None)
    assert m.step(s, RegisterInput("write", 3), None) == (True, 3)
    assert m.step(3, RegisterInput("cas", 3, 4), True) == (True, 4)
    assert m.step(3, RegisterInput("cas", 3, 4), False)[0] is False
    assert m.step(2, RegisterInput("cas", 3, 4), False) == (True, 2)
    assert m.step(2, RegisterInput("cas", 3, 4), True)[0] is False
    assert m.step(3, RegisterInput("cas", 3, 4), UNKNOWN) == (True, 4)
    assert m.step(2, RegisterInput("cas", 3, 4), UNKNOWN) == (True, 2)


def test_kv_model_steps() -> None:
    m = KVModel()
    s = m.init()
    assert s == ""
    assert m.step(s, KVInput("get", "k"), "") == (True, "")
    assert m.step(s, KVInput("get", "k"), None) == (True, ""), "nil reads as an untouched key"
    s = m.step(s, KVInput("append", "k", "ab"), None)[1]
    s = m.step(s, KVInput("append", "k", "cd"), None)[1]
    assert s == "abcd"
    assert m.step(s, KVInput("get", "k"), "ab")[0] is False
    assert m.step(s, KVInput("put", "k", "z"), None) == (True, "z")


def test_zvsr_model_steps() -> None:
    m = ZvsrModel()
    s = m.init()
    get = {"op": "get", "key": "k"}
    assert m.step(s, get, None) == (True, None)
    _, s = m.step(s, {"op": "put", "key": "k", "value": "v"}, None)
    assert m.step(s, get, "v")[0] and not m.step(s, get, None)[0]
    # cas: dict result, bare bool, and the reported current value on failure
    cas_op = {"op": "cas", "key": "k", "expected": "v", "new": "w"}
    assert m.step(s, cas_op, {"ok": True, "value": "w"}) == (True, "w")
    assert m.step(s, cas_op, True) == (True, "w")
    assert m.step(s, cas_op, {"ok": False, "value": "v"})[0] is False
    other = {"op": "cas", "key": "k", "expected": "x", "new": "w"}
    assert m.step(s, other, {"ok": False, "value": "v"}) == (True, "v")
    assert m.step(s, other, {"ok": False, "value": "q"})[0] is False
    assert m.step(None, {"op": "cas", "key": "k", "expected": None, "new": 1}, True) == (True, 1)
    # delete, incr
    assert m.step(s, {"op": "delete", "key": "k"}, None) == (True, None)
    incr = {"op": "incr", "key": "k", "by": 5}
    assert m.step(None, incr, 5) == (True, 5)
    assert m.step(5, incr, 10) == (True, 10)
    assert m.step(5, incr, 6)[0] is False
    assert m.step("v", incr, 5)[0] is False, "incr of a string cannot succeed"
    assert m.step("v", incr, UNKNOWN) == (True, "v")
    # JSON equality: true is not 1, 1 is 1.0
    _, b = m.step(None, {"op": "put", "key": "k", "value": True}, None)
    assert not m.step(b, get, 1)[0] and m.step(b, get, True)[0]
    _, one = m.step(None, {"op": "put", "key": "k", "value": 1}, None)
    assert m.step(one, get, 1.0)[0] and not m.step(one, get, True)[0]


# --- semantics of unknown and failed outcomes ----------------------------------------------------------


def test_timed_out_write_may_or_may_not_be_visible() -> None:
    m = RegisterModel()
    base = [write(0, 1, 0, 1), write(1, 2, 2)]  # the second write timed out: return = inf
    assert verdict([*base, read(2, 2, 3, 4)], m) == "ok"  # it took effect
    assert verdict([*base, read(2, 1, 3, 4)], m) == "ok"  # it did not (yet)
    assert verdict([*base, read(2, 1, 3, 4), read(2, 2, 5, 6)], m) == "ok"  # it landed late
    # once visible it cannot be undone
    assert verdict([*base, read(2, 2, 3, 4), read(2, 1, 5, 6)], m) == "illegal"
    # it cannot take effect before it was called
    assert verdict([write(0, 1, 0, 1), read(2, 2, 1.5, 1.8), write(1, 2, 2)], m) == "illegal"


def test_unknown_outcome_with_finite_return_still_may_land_later() -> None:
    m = ZvsrModel()
    history = [
        zv(0, 0, 1, {"op": "put", "key": "k", "value": "a"}, None, "ok"),
        # the client gave up at t=3, but the put can still be applied afterwards
        zv(1, 2, 3, {"op": "put", "key": "k", "value": "b"}, None, "unknown"),
        zv(2, 4, 5, {"op": "get", "key": "k"}, "a", "ok"),
        zv(2, 6, 7, {"op": "get", "key": "k"}, "b", "ok"),
    ]
    assert history[1].return_ == INF and history[1].output is UNKNOWN
    assert verdict(history, m) == "ok"


def test_pending_ops_need_not_be_linearized() -> None:
    # A pending cas that cannot succeed in any state and a pending incr of a string: both are simply
    # left out of the linearization.
    m = ZvsrModel()
    history = [
        zv(0, 0, 1, {"op": "put", "key": "k", "value": "s"}, None, "ok"),
        zv(1, 2, None, {"op": "incr", "key": "k", "by": 1}, None, "unknown"),
        zv(2, 3, 4, {"op": "get", "key": "k"}, "s", "ok"),
    ]
    assert verdict(history, m) == "ok"
    # and a history made only of pending operations is trivially linearizable
    assert verdict([write(0, 1, 0), write(1, 2, 0)], RegisterModel()) == "ok"


class _PoisonModel(Model):
    """Rejects "poison" in every state, even with an unknown output (which real models must accept).

    This isolates the search's own rule: a pending operation never has to be linearized.
    """

    def init(self) -> Any:
        return 0

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        return input != "poison", state


def test_search_may_leave_pending_ops_out() -> None:
    m = _PoisonModel()
    assert verdict([op(0, "noop", None, 0, 1), op(1, "poison", UNKNOWN, 0.5)], m) == "ok"
    assert verdict([op(0, "noop", None, 0, 1), op(1, "poison", None, 0.5, 2)], m) == "illegal"


def test_output_of_op_without_return_is_ignored() -> None:
    # No return means no answer was seen, so whatever output the record carries is not an observation.
    assert verdict([Operation(0, RegisterInput("read"), 7, 0.0, INF)], RegisterModel()) == "ok"
    assert verdict([Operation(0, RegisterInput("cas", 3, 4), True, 0.0, INF)], RegisterModel()) == "ok"


def test_failed_operation_never_takes_effect() -> None:
    m = ZvsrModel()
    put_fail = zv(1, 2, 3, {"op": "put", "key": "k", "value": "b"}, None, "fail")
    assert put_fail.output is FAILED
    assert verdict([put_fail, zv(2, 4, 5, {"op": "get", "key": "k"}, "b", "ok")], m) == "illegal"
    assert verdict([put_fail, zv(2, 4, 5, {"op": "get", "key": "k"}, None, "ok")], m) == "ok"


def test_failed_jepsen_cas_is_an_observation() -> None:
    # ":fail :cas" means the cas ran and answered "value differs" -- it constrains the history.
    m = RegisterModel()
    assert verdict([write(0, 1, 0, 1), cas(1, 1, 2, False, 2, 3)], m) == "illegal"
    assert verdict([write(0, 1, 0, 1), cas(1, 0, 2, False, 2, 3)], m) == "ok"


# --- hand-made illegal histories and diagnostics -------------------------------------------------------


def test_stale_read_after_completed_write_is_illegal() -> None:
    m = RegisterModel()
    history = [write(0, 1, 0, 1), write(0, 2, 2, 3), read(1, 1, 4, 5)]
    result = check(history, m)
    assert result.verdict == "illegal"
    assert result.failure is not None
    assert result.failure.first_unlinearizable == history[2]
    # Everything up to the read's call fits (5 events: the read is still open there); its return does not.
    assert result.failure.longest_prefix_events == 5
    assert result.failure.partial_linearization == (history[0], history[1])
    assert "NOT linearizable" in result.summary()
    json.dumps(result.to_json())
    # the same read concurrent with the second write is fine
    assert verdict([write(0, 1, 0, 1), write(0, 2, 2, 5), read(1, 1, 3, 4)], m) == "ok"


def test_read_of_never_written_value_is_illegal() -> None:
    assert verdict([read(0, 7, 0, 1)], RegisterModel()) == "illegal"
    assert verdict([read(0, None, 0, 1)], RegisterModel()) == "ok"


def test_touching_intervals_are_concurrent() -> None:
    # A return at the same instant as a call does not precede it (documented in search.py).
    m = RegisterModel()
    assert verdict([write(0, 1, 0, 1), read(1, None, 1, 2)], m) == "ok"
    assert verdict([write(0, 1, 0, 1), read(1, None, 1.5, 2)], m) == "illegal"


def test_kv_partition_of_failure_is_reported() -> None:
    m = KVModel()
    history = [
        op(0, KVInput("append", "a", "x"), None, 0, 1),
        op(1, KVInput("get", "a"), "x", 2, 3),
        op(0, KVInput("append", "b", "y"), None, 0, 1),
        op(1, KVInput("get", "b"), "", 2, 3),  # stale
    ]
    result = check(history, m)
    assert result.verdict == "illegal"
    assert result.partition_count == 2
    assert result.failure is not None and result.failure.label == "key 'b'"


def test_zvsr_history_in_memory() -> None:
    rec = HistoryRecorder()
    h1 = rec.invoke(0, {"op": "incr", "key": "n", "by": 2}, 0.0)
    h2 = rec.invoke(1, {"op": "incr", "key": "n", "by": 3}, 0.5)
    rec.complete(h2, 3, 1.0)
    rec.complete(h1, 5, 1.5)
    h3 = rec.invoke(1, {"op": "cas", "key": "n", "expected": 5, "new": 0}, 2.0)
    rec.complete(h3, {"ok": True, "value": 0}, 3.0)
    rec.invoke(2, {"op": "put", "key": "m", "value": "never answered"}, 2.5)
    h4 = rec.invoke(0, {"op": "get", "key": "m"}, 4.0)
    rec.complete(h4, "never answered", 5.0)
    history = rec.history()
    assert history[-1].output is UNKNOWN and history[-1].return_ == INF
    result = check(history, ZvsrModel(), timeout_s=5)
    assert result.verdict == "ok", result.summary()
    assert result.partition_count == 2
    # the incr answers are inconsistent if the order is forced the other way round
    bad = [
        zv(0, 0, 1, {"op": "incr", "key": "n", "by": 2}, 5, "ok"),
        zv(1, 2, 3, {"op": "incr", "key": "n", "by": 3}, 3, "ok"),
    ]
    assert verdict(bad, ZvsrModel()) == "illegal"


def test_operation_validation() -> None:
    with pytest.raises(ValueError):
        Operation(0, None, None, 2.0, 1.0)
    with pytest.raises(ValueError):
        Operation(0, None, None, INF, INF)
    assert Operation(0, None, UNKNOWN, 1.0, 2.0).pending


# --- time budget ---------------------------------------------------------------------------------------


def _hard_history(n: int) -> list[Operation]:
    # n concurrent writes followed by a read of a value none of them wrote: refuting it means trying every
    # subset of the writes, 2^n states.
    return [*(write(i, i, 0, 10) for i in range(n)), read(n, -1, 11, 12)]


@pytest.mark.timeout(30)
def test_time_budget_gives_unknown() -> None:
    result = check(_hard_history(40), RegisterModel(), timeout_s=0.2)
    assert result.verdict == "unknown"
    assert result.failure is not None and result.failure.verdict == "unknown"
    assert result.timeout_s == 0.2 and result.elapsed_s >= 0.2, "gave up before the budget ran out"
    assert 0 < result.failure.states_explored < 2**40, "searched, and stopped short of the whole space"
    assert "time budget" in result.summary()


def test_small_hard_history_is_refuted_without_budget() -> None:
    assert check(_hard_history(8), RegisterModel()).verdict == "illegal"


# --- parsers -------------------------------------------------------------------------------------------


def test_parse_jepsen_register_variants() -> None:
    text = [
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil",
        "INFO  jepsen.util - 1   :invoke   :cas   [1 4]",  # spaces instead of tabs
        "INFO  jepsen.util - 2\t:invoke\t:write\t3",
        "INFO  jepsen.util - 3\t:invoke\t:read\tnil",
        "INFO  jepsen.util - 0\t:ok\t:read\tnil",
        "INFO  jepsen.util - 1\t:fail\t:cas\t[1 4]",
        "INFO  jepsen.util - 2\t:info\t:write\t:timed-out",
        "INFO  jepsen.util - 3\t:fail\t:read\t:timed-out",
        "INFO  jepsen.util - 4\t:invoke\t:write\t7",  # never answered
        "",
    ]
    ops = {o.client_id: o for o in parse_jepsen_register(text)}
    assert ops[0].output is None and ops[0].return_ == 5
    assert ops[1].input == RegisterInput("cas", 1, 4) and ops[1].output is False and ops[1].return_ == 6
    assert ops[2].output is UNKNOWN and ops[2].return_ == INF
    assert ops[3].output is UNKNOWN
    assert ops[4].input == RegisterInput("write", 7) and ops[4].pending
    with pytest.raises(ParseError, match="line 1"):
        parse_jepsen_register(["INFO  jepsen.util - 0\t:invoke\t:frobnicate\tnil"])
    with pytest.raises(ParseError, match="never invoked"):
        parse_jepsen_register(["INFO  jepsen.util - 0\t:ok\t:read\t3"])


def test_parse_jepsen_kv_variants() -> None:
    text = [
        '{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}',
        '{:process 1, :type :invoke, :f :get, :key "0", :value nil}',
        "{:process :nemesis, :type :info, :f :start, :value nil}",
        '{:process 2, :type :invoke, :f :put, :key "1", :value "z"}',
        '{:process 3, :type :invoke, :f :put, :key "1", :value "q \\"quoted\\""}',
        '{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}',
        '{:process 1, :type :ok, :f :get, :key "0", :value ""}',
        '{:process 2, :type :fail, :f :put, :key "1", :value "z"}',
        '{:process 3, :type :info, :f :put, :key "1", :value "q \\"quoted\\""}',
    ]
    ops = {o.client_id: o for o in parse_jepsen_kv(text)}
    assert ops[0].input == KVInput("append", "0", "x 0 0 y") and ops[0].return_ == 6
    assert ops[1].output == ""
    assert ops[2].output is FAILED
    assert ops[3].input.value == 'q "quoted"' and ops[3].pending
    with pytest.raises(ParseError):
        parse_jepsen_kv(["{:process 0, :type :invoke"])


def test_parse_zvsr() -> None:
    lines = [
        json.dumps(
            {
                "client": 0,
                "call": 0,
                "return": 1,
                "op": {"op": "put", "key": "k", "value": 1},
                "result": None,
                "status": "ok",
            }
        ),
        json.dumps(
            {
                "client": 1,
                "call": 0.5,
                "return": None,
                "op": {"op": "get", "key": "k"},
                "result": None,
                "status": "unknown",
            }
        ),
        json.dumps(
            {
                "client": 2,
                "call": 2,
                "return": 3,
                "op": {"op": "delete", "key": "k"},
                "result": None,
                "status": "fail",
            }
        ),
        "",
        json.dumps({"client": 2, "call": 4, "return": 5, "op": {"op": "get", "key": "k"}, "result": 1}),
    ]
    ops = parse_zvsr(lines)
    assert [o.output for o in ops] == [None, UNKNOWN, FAILED, 1]
    assert ops[1].return_ == INF
    assert verdict(ops, ZvsrModel()) == "ok"
    bad_lines = [
        "not json",
        json.dumps({"client": 0, "call": 0, "return": 1, "op": {"op": "frob", "key": "k"}, "result": 1}),
        json.dumps({"client": 0, "call": 0, "return": 1, "op": {"op": "get"}, "result": 1}),
        json.dumps({"client": 0, "call": 2, "return": 1, "op": {"op": "get", "key": "k"}, "result": 1}),
        json.dumps({"client": 0, "call": 0, "return": 1, "op": {"op": "get", "key": "k"}, "status": "?"}),
        json.dumps([1, 2]),
    ]
    for line in bad_lines:
        with pytest.raises(ParseError, match="line 1"):
            parse_zvsr([line])


# --- CLI -----------------------------------------------------------------------------------------------


def _zvsr_file(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_cli_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(lincheck_command, [str(DATA / "jepsen-etcd/etcd_002.log"), "--format", "jepsen-register"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("linearizable")

    bad = runner.invoke(lincheck_command, [str(DATA / "kv/c10-bad.txt"), "--format", "jepsen-kv"])
    assert bad.exit_code == 1, bad.output
    assert bad.output.startswith("NOT linearizable")

    as_json = runner.invoke(lincheck_command, [str(DATA / "kv/c01-bad.txt"), "--format", "jepsen-kv", "--json"])
    assert as_json.exit_code == 1
    payload = json.loads(as_json.output)
    assert payload["verdict"] == "illegal" and payload["failure"]["label"].startswith("key ")

    missing = runner.invoke(lincheck_command, [str(tmp_path / "nope.jsonl"), "--format", "zvsr"])
    assert missing.exit_code == 2

    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{not json\n", encoding="utf-8")
    parse_err = runner.invoke(lincheck_command, [str(garbage), "--format", "zvsr", "--json"])
    assert parse_err.exit_code == 2
    assert json.loads(parse_err.output)["verdict"] == "error"

    wrong_format = runner.invoke(lincheck_command, [str(DATA / "kv/c01-ok.txt"), "--format", "jepsen-register"])
    assert wrong_format.exit_code == 2

    hard = _zvsr_file(
        tmp_path,
        [
            *(
                {
                    "client": i,
                    "call": 0,
                    "return": 10,
                    "op": {"op": "put", "key": "k", "value": i},
                    "result": None,
                    "status": "ok",
                }
                for i in range(40)
            ),
            {
                "client": 99,
                "call": 11,
                "return": 12,
                "op": {"op": "get", "key": "k"},
                "result": -1,
                "status": "ok",
            },
        ],
    )
    timed_out = runner.invoke(lincheck_command, [str(hard), "--format", "zvsr", "--timeout", "0.1"])
    assert timed_out.exit_code == 2, timed_out.output
    assert timed_out.output.startswith("unknown")


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "zvsr.lincheck", str(DATA / "kv/c01-ok.txt"), "--format", "jepsen-kv"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("linearizable")


# --- cross-check against brute force -------------------------------------------------------------------


def _brute_force(history: Sequence[Operation], model: Model) -> bool:
    """Linearizable iff some subset of the pending ops plus all completed ops has a legal real-time order.

    Knows nothing of partitions: a multi-key state is a dict of per-key model states.
    """
    relevant = [o for o in history if o.output is not FAILED]
    completed = [o for o in relevant if not o.pending]
    pending = [o for o in relevant if o.pending]

    def ret(o: Operation) -> float:
        return INF if o.pending else o.return_

    def key_of(o: Operation) -> Any:
        if isinstance(model, KVModel):
            return o.input.key
        if isinstance(model, ZvsrModel):
            return o.input["key"]
        return None

    for k in range(len(pending) + 1):
        for chosen in itertools.combinations(pending, k):
            ops = [*completed, *chosen]
            for order in itertools.permutations(ops):
                if any(ret(order[j]) < order[i].call for i in range(len(order)) for j in range(i + 1, len(order))):
                    continue
                states: dict[Any, Any] = {}
                legal = True
                for o in order:
                    key = key_of(o)
                    legal, states[key] = model.step(states.get(key, model.init()), o.input, o.output)
                    if not legal:
                        break
                if legal:
                    return True
    return False


@st.composite
def _register_histories(draw: st.DrawFn) -> list[Operation]:
    n = draw(st.integers(1, 6))
    values = st.sampled_from([None, 0, 1, 2])
    ops = []
    for client in range(n):
        call = draw(st.integers(0, 8))
        ret: float = call + draw(st.integers(0, 4))  # zero-length and touching intervals test the ties
        kind = draw(st.sampled_from(["read", "write", "cas"]))
        pending = draw(st.integers(0, 3)) == 0
        out: Any
        if kind == "read":
            inp, out = RegisterInput("read"), draw(values)
        elif kind == "write":
            inp, out = RegisterInput("write", draw(values)), None
        else:
            inp, out = RegisterInput("cas", draw(values), draw(values)), draw(st.booleans())
        if pending:
            out, ret = UNKNOWN, INF
        ops.append(Operation(client, inp, out, float(call), float(ret)))
    return ops


@st.composite
def _zvsr_histories(draw: st.DrawFn) -> list[Operation]:
    n = draw(st.integers(1, 6))
    values = st.sampled_from([None, 0, 1, "a", True])
    ops = []
    for client in range(n):
        call = draw(st.integers(0, 8))
        ret: float = call + draw(st.integers(0, 4))
        key = draw(st.sampled_from(["x", "y"]))
        kind = draw(st.sampled_from(["get", "put", "delete", "cas", "incr"]))
        status = draw(st.sampled_from(["ok", "ok", "ok", "fail", "unknown"]))
        o: dict[str, Any] = {"op": kind, "key": key}
        result: Any
        if kind == "put":
            o["value"] = draw(values)
        elif kind == "cas":
            o["expected"], o["new"] = draw(values), draw(values)
        elif kind == "incr":
            o["by"] = draw(st.integers(1, 2))
        if kind == "get":
            result = draw(values)
        elif kind == "cas":
            result = {"ok": draw(st.booleans()), "value": draw(values)}
        elif kind == "incr":
            result = draw(st.integers(0, 4))
        else:
            result = None
        ops.append(zv(client, float(call), float(ret), o, result, status))
    return ops


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None)
@given(_register_histories())
def test_search_agrees_with_brute_force_on_register(history: list[Operation]) -> None:
    assert (check(history, RegisterModel()).verdict == "ok") == _brute_force(history, RegisterModel())


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None)
@given(_zvsr_histories())
def test_search_agrees_with_brute_force_on_zvsr(history: list[Operation]) -> None:
    assert (check(history, ZvsrModel()).verdict == "ok") == _brute_force(history, ZvsrModel())


def test_check_result_is_frozen() -> None:
    result = check([], RegisterModel())
    assert isinstance(result, CheckResult) and result.verdict == "ok"
    with pytest.raises(AttributeError):
        result.verdict = "illegal"  # type: ignore[misc]
