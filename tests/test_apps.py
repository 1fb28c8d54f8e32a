"""Applications: the coordination service op by op, snapshots, the msgpack adapter's promises, and load_app.

Most scenarios drive `CoordinationApp` through `MsgpackStateMachine`, exactly as a replica does: msgpack bytes
in, msgpack bytes out, as log entries numbered 1, 2, 3, … one millisecond of cluster time apart in view 0 (the
adapter hands the app its `OpContext`). Leases, which read the context, have their own module
(tests/test_leases_app.py).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zvsr import constants
from zvsr.apps import (
    DEFAULT_APP_SPEC,
    App,
    AppLoadError,
    CoordinationApp,
    MsgpackStateMachine,
    OpContext,
    load_app,
)
from zvsr.constants import OPERATION_NESTING_MAX
from zvsr.protocol.messages import LogEntry
from zvsr.protocol.state_machine import StateMachine


def context(op_number: int) -> OpContext:
    """The context the core gives op `op_number` in these scenarios: 1 ms of cluster time per op, view 0."""
    return OpContext(op_number=op_number, timestamp_ns=op_number * 1_000_000, view=0)


class Replica:
    """One replica's application, driven through the adapter with msgpack bytes."""

    def __init__(self, app: App | None = None) -> None:
        self.app = app if app is not None else CoordinationApp()
        self.machine: StateMachine = MsgpackStateMachine(self.app)
        self.op_number = 0

    def do(self, op: Any) -> Any:
        return self.raw(msgpack.packb(op))

    def raw(self, operation: bytes) -> Any:
        """Apply as the next op of view 0, one ms of cluster time after the previous."""
        self.op_number += 1
        entry = as_entry(operation, op_number=self.op_number, timestamp=self.op_number * 1_000_000)
        return msgpack.unpackb(self.machine.apply(entry), strict_map_key=False)


def as_entry(operation: bytes, *, op_number: int = 1, timestamp: int = 1, view: int = 0) -> LogEntry:
    return LogEntry(
        view=view,
        op_number=op_number,
        client_id=1,
        request_number=op_number,
        operation=operation,
        timestamp=timestamp,
    )


@pytest.fixture
def replica() -> Replica:
    return Replica()


def is_error(result: Any, code: str) -> bool:
    return (
        isinstance(result, dict)
        and result.keys() == {"error", "message"}
        and result["error"] == code
        and isinstance(result["message"], str)
    )


# --- key-value operations -----------------------------------------------------------------------------------


def test_get_of_a_missing_key_is_none_and_put_then_get_returns_the_value(replica: Replica) -> None:
    assert replica.do({"op": "get", "key": "config"}) is None
    value = {"nested": [1, 2.5, b"\x00\xff", None, True], "n": -7}
    assert replica.do({"op": "put", "key": "config", "value": value}) is None
    assert replica.do({"op": "get", "key": "config"}) == value
    assert replica.do({"op": "put", "key": "config", "value": "v2"}) is None
    assert replica.do({"op": "get", "key": "config"}) == "v2"


def test_delete_reports_whether_the_key_existed(replica: Replica) -> None:
    replica.do({"op": "put", "key": "k", "value": None})
    assert replica.do({"op": "get", "key": "k"}) is None, "a stored None reads like a missing key"
    assert replica.do({"op": "delete", "key": "k"}) is True, "…but delete tells them apart"
    assert replica.do({"op": "delete", "key": "k"}) is False


def test_cas_with_expected_none_creates_a_missing_key_only(replica: Replica) -> None:
    assert replica.do({"op": "cas", "key": "leader", "expected": None, "new": "n1"}) == {
        "ok": True,
        "value": "n1",
    }
    assert replica.do({"op": "cas", "key": "leader", "expected": None, "new": "n2"}) == {
        "ok": False,
        "value": "n1",
    }


def test_cas_swaps_only_when_the_current_value_matches(replica: Replica) -> None:
    replica.do({"op": "put", "key": "leader", "value": "n1"})
    assert replica.do({"op": "cas", "key": "leader", "expected": "n2", "new": "n3"}) == {
        "ok": False,
        "value": "n1",
    }
    assert replica.do({"op": "cas", "key": "leader", "expected": "n1", "new": "n3"}) == {
        "ok": True,
        "value": "n3",
    }
    assert replica.do({"op": "cas", "key": "absent", "expected": "x", "new": "y"}) == {
        "ok": False,
        "value": None,
    }


def test_cas_compares_msgpack_values_not_python_equality(replica: Replica) -> None:
    replica.do({"op": "put", "key": "n", "value": 1})
    for impostor in (True, 1.0, "1", [1]):
        assert replica.do({"op": "cas", "key": "n", "expected": impostor, "new": 2})["ok"] is False
    replica.do({"op": "put", "key": "m", "value": {"a": 1, "b": [1, {"c": None}]}})
    reordered = {"b": [1, {"c": None}], "a": 1}
    assert replica.do({"op": "cas", "key": "m", "expected": reordered, "new": 0})["ok"] is True
    replica.do({"op": "put", "key": "m", "value": {"a": 1}})
    assert replica.do({"op": "cas", "key": "m", "expected": {"a": True}, "new": 0})["ok"] is False
    replica.do({"op": "put", "key": "ik", "value": {1: "x"}})
    assert replica.do({"op": "cas", "key": "ik", "expected": {True: "x"}, "new": 0})["ok"] is False
    assert replica.do({"op": "cas", "key": "ik", "expected": {1: "x"}, "new": 0})["ok"] is True


def test_incr_counts_a_missing_key_as_zero_and_accepts_negative_steps(replica: Replica) -> None:
    assert replica.do({"op": "incr", "key": "c"}) == 1
    assert replica.do({"op": "incr", "key": "c", "by": 10}) == 11
    assert replica.do({"op": "incr", "key": "c", "by": -20}) == -9
    assert replica.do({"op": "get", "key": "c"}) == -9


def test_incr_of_a_non_integer_value_is_a_type_error_and_changes_nothing(replica: Replica) -> None:
    for value in ("seven", 7.0, True, None, [7]):
        replica.do({"op": "put", "key": "c", "value": value})
        assert is_error(replica.do({"op": "incr", "key": "c"}), "type_error")
        assert replica.do({"op": "get", "key": "c"}) == value


def test_incr_with_a_non_integer_step_is_a_bad_request(replica: Replica) -> None:
    for by in (True, 1.5, "1", None):
        assert is_error(replica.do({"op": "incr", "key": "c", "by": by}), "bad_request")
    assert replica.do({"op": "get", "key": "c"}) is None


def test_incr_beyond_msgpack_integers_is_refused_and_changes_nothing(replica: Replica) -> None:
    replica.do({"op": "put", "key": "c", "value": 2**64 - 1})
    assert is_error(replica.do({"op": "incr", "key": "c"}), "out_of_range")
    replica.do({"op": "put", "key": "d", "value": -(2**63)})
    assert is_error(replica.do({"op": "incr", "key": "d", "by": -1}), "out_of_range")
    assert replica.do({"op": "get", "key": "c"}) == 2**64 - 1


# --- locks and fencing tokens -------------------------------------------------------------------------------


def test_lock_is_granted_when_free_reentrant_for_its_owner_and_refused_to_others(replica: Replica) -> None:
    granted = replica.do({"op": "lock", "name": "db", "owner": "alice"})
    assert granted == {"ok": True, "owner": "alice", "token": 1}
    assert replica.do({"op": "lock", "name": "db", "owner": "alice"}) == granted, "re-entrant: same token"
    assert replica.do({"op": "lock", "name": "db", "owner": "bob"}) == {
        "ok": False,
        "owner": "alice",
        "token": 1,
    }


def test_unlock_succeeds_only_for_the_holder(replica: Replica) -> None:
    assert replica.do({"op": "unlock", "name": "db", "owner": "alice"}) == {"ok": False}, "never locked"
    replica.do({"op": "lock", "name": "db", "owner": "alice"})
    assert replica.do({"op": "unlock", "name": "db", "owner": "bob"}) == {"ok": False}
    assert replica.do({"op": "lock", "name": "db", "owner": "bob"})["ok"] is False, "bob's unlock did nothing"
    assert replica.do({"op": "unlock", "name": "db", "owner": "alice"}) == {"ok": True}
    assert replica.do({"op": "unlock", "name": "db", "owner": "alice"}) == {"ok": False}, "one unlock releases"


def test_fencing_tokens_increase_across_lock_unlock_lock_by_different_owners(replica: Replica) -> None:
    tokens = []
    for round_number in range(6):
        owner = ["alice", "bob", "carol"][round_number % 3]
        granted = replica.do({"op": "lock", "name": "db", "owner": owner})
        assert granted["ok"] and granted["owner"] == owner
        # A competing owner learns the current holder's token, never a new one.
        assert replica.do({"op": "lock", "name": "db", "owner": "mallory"})["token"] == granted["token"]
        tokens.append(granted["token"])
        # Another lock name draws from the same counter, so tokens are never reused across names either.
        tokens.append(replica.do({"op": "lock", "name": f"other-{round_number}", "owner": owner})["token"])
        assert replica.do({"op": "unlock", "name": "db", "owner": owner}) == {"ok": True}
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


# --- malformed requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op",
    [
        "get",
        ["get", "k"],
        None,
        {},
        {"key": "k"},
        {"op": "GET", "key": "k"},
        {"op": "truncate"},
        {"op": 1, "key": "k"},
        {"op": "get"},
        {"op": "put", "key": "k"},
        {"op": "get", "key": "k", "extra": 1},
        {"op": "get", "key": 1},
        {"op": "get", "key": b"k"},
        {"op": "put", "key": None, "value": 1},
        {"op": "cas", "key": "k", "expected": None},
        {"op": "lock", "name": "db"},
        {"op": "lock", "name": 7, "owner": "alice"},
        {"op": "lock", "name": "db", "owner": ["alice"]},
        {"op": "unlock", "name": "db", "owner": None},
        {1: "get", "op": "get", "key": "k"},
    ],
)
def test_malformed_operations_are_bad_requests_and_change_nothing(replica: Replica, op: Any) -> None:
    replica.do({"op": "put", "key": "k", "value": 1})
    before = replica.app.snapshot()
    assert is_error(replica.do(op), "bad_request")
    assert replica.app.snapshot() == before


@pytest.mark.parametrize(
    ("op", "message"),
    [
        ({"op": "put", "key": "k"}, "put: missing value"),
        ({"op": "put", "value": 1, "lease": "x"}, "put: missing key"),
        ({"op": "get", "key": "k", "extra": 1}, "get: unknown field(s) 'extra'"),
        ({1: "get", "op": "get", "key": "k"}, "get: unknown field(s) 1"),
        ({"op": "get", "key": b"k"}, "get: 'key' must be a str, not bytes"),
        ({"op": "lock", "name": 1, "owner": 2}, "lock: 'name' must be a str, not an int"),
        ({"op": "unlock", "name": "db", "owner": None}, "unlock: 'owner' must be a str, not nil"),
        ({"op": "put", "key": "k", "value": 1, "lease": "l"}, "put: 'lease' must be an int, not a str"),
        (
            {"op": "lease_grant", "ttl_ms": 5, "lock_delay_ms": 1.5},
            "lease_grant: 'lock_delay_ms' must be an int, not a float",
        ),
        ([], "an operation is a map with key 'op', not an array"),
    ],
)
def test_a_malformed_operations_message_is_exactly_this_on_every_version(
    replica: Replica, op: Any, message: str
) -> None:
    """The message is part of the op's result, which every replica must compute identically: a replica of the
    next release (a rolling upgrade) must still say exactly this."""
    assert replica.do(op) == {"error": "bad_request", "message": message}


# --- snapshots ----------------------------------------------------------------------------------------------

SCENARIO: list[dict[str, Any]] = [
    {"op": "put", "key": "b", "value": {"x": [1, 2]}},
    {"op": "put", "key": "a", "value": b"bytes"},
    {"op": "incr", "key": "counter", "by": 3},
    {"op": "lock", "name": "db", "owner": "alice"},
    {"op": "lock", "name": "cache", "owner": "bob"},
    {"op": "unlock", "name": "cache", "owner": "bob"},
    {"op": "put", "key": "ik", "value": {2: "two", 1: "one"}},
]
AFTERWARDS: list[dict[str, Any]] = [
    {"op": "lock", "name": "cache", "owner": "carol"},
    {"op": "lock", "name": "db", "owner": "bob"},
    {"op": "cas", "key": "b", "expected": {"x": [1, 2]}, "new": 0},
    {"op": "incr", "key": "counter"},
    {"op": "get", "key": "ik"},
    {"op": "delete", "key": "a"},
]


def test_a_replica_restored_from_a_snapshot_continues_identically() -> None:
    original = Replica()
    for op in SCENARIO:
        original.do(op)
    snapshot = original.app.snapshot()
    restored = Replica()
    restored.app.restore(snapshot)
    assert restored.app.snapshot() == snapshot
    for op in AFTERWARDS:
        assert restored.do(op) == original.do(op)
    assert restored.app.snapshot() == original.app.snapshot()
    # The token counter travelled too: carol's grant after the restore is token 3, not a reused 1 or 2.
    assert restored.do({"op": "lock", "name": "cache", "owner": "carol"})["token"] == 3


def test_snapshot_bytes_do_not_depend_on_insertion_order() -> None:
    forwards, backwards = Replica(), Replica()
    for op in SCENARIO[:3]:
        forwards.do(op)
    for op in reversed(SCENARIO[:3]):
        backwards.do(op)
    assert forwards.app.snapshot() == backwards.app.snapshot()


def test_snapshot_through_the_adapter_is_bytes_and_restores() -> None:
    original = Replica()
    for op in SCENARIO:
        original.do(op)
    copy = Replica()
    copy.machine.restore(original.machine.snapshot())
    assert copy.machine.snapshot() == original.machine.snapshot()


def good_snapshot_state() -> dict[str, Any]:
    app = CoordinationApp()
    for op_number, op in enumerate(SCENARIO, start=1):
        app.apply(op, context(op_number))
    state: dict[str, Any] = msgpack.unpackb(app.snapshot(), strict_map_key=False)
    return state


@pytest.mark.parametrize(
    "change",
    [
        {"format": "someone.else"},
        {"version": 3},
        {"version": 1},  # the keys of version 2
        {"last_token": -1},
        {"last_token": True},
        {"data": [1, 2]},
        {"data": {1: "int key"}},
        {"locks": {"db": ["alice", 99]}},
        {"locks": {"db": ["alice", 0]}},
        {"locks": {"db": ["alice", 1], "cache": ["bob", 1]}},
        {"locks": {"db": ["alice"]}},
        {"locks": {"db": [7, 1]}},
        {"locks": {"db": "alice"}},
        {"extra": 1},
    ],
)
def test_restoring_a_malformed_snapshot_raises_and_keeps_the_state(change: dict[str, Any]) -> None:
    app = CoordinationApp()
    app.apply({"op": "put", "key": "keep", "value": "me"}, context(1))
    before = app.snapshot()
    with pytest.raises(ValueError, match="coordination snapshot"):
        app.restore(msgpack.packb(good_snapshot_state() | change))
    with pytest.raises(ValueError, match="coordination snapshot"):
        app.restore(b"\xc1 not msgpack")
    assert app.snapshot() == before


coordination_ops = st.one_of(
    st.builds(lambda k: {"op": "get", "key": k}, st.sampled_from("abc")),
    st.builds(lambda k, v: {"op": "put", "key": k, "value": v}, st.sampled_from("abc"), st.integers(-3, 3)),
    st.builds(lambda k: {"op": "delete", "key": k}, st.sampled_from("abc")),
    st.builds(
        lambda k, e, n: {"op": "cas", "key": k, "expected": e, "new": n},
        st.sampled_from("abc"),
        st.none() | st.integers(-3, 3),
        st.integers(-3, 3),
    ),
    st.builds(lambda k, b: {"op": "incr", "key": k, "by": b}, st.sampled_from("abc"), st.integers(-2, 2)),
    st.builds(lambda n, o: {"op": "lock", "name": n, "owner": o}, st.sampled_from("xy"), st.sampled_from("pq")),
    st.builds(lambda n, o: {"op": "unlock", "name": n, "owner": o}, st.sampled_from("xy"), st.sampled_from("pq")),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(coordination_ops, max_size=30), st.lists(coordination_ops, max_size=15))
def test_any_history_survives_snapshot_and_restore_midway(before: list[Any], after: list[Any]) -> None:
    original = Replica()
    granted: set[int] = set()

    def check_fencing(op: dict[str, Any], result: Any) -> None:
        # A token is either the current holder's (seen before) or fresh, and fresh ones only ever grow.
        if op["op"] == "lock" and result["ok"] and result["token"] not in granted:
            assert result["token"] > max(granted, default=0)
            granted.add(result["token"])

    for op in before:
        check_fencing(op, original.do(op))
    restored = Replica()
    restored.machine.restore(original.machine.snapshot())
    for op in after:
        result = original.do(op)
        assert restored.do(op) == result
        check_fencing(op, result)
    assert restored.machine.snapshot() == original.machine.snapshot()


# --- the adapter's promises ---------------------------------------------------------------------------------


class Exploding:
    """An app whose every operation goes wrong in a way chosen by the operation."""

    def apply(self, op: Any) -> Any:
        if op == "raise":
            raise ValueError(f"boom for {object()!r}")
        if op == "long":
            raise RuntimeError("x" * 10_000)
        if op == "surrogate":
            raise ValueError("bad \udcff text")
        if op == "unprintable":
            raise Unprintable()
        if op == "set":
            return {1, 2}
        if op == "object":
            return object()
        if op == "huge":
            return b"\x00" * (constants.RESULT_BYTES_MAX + 1)
        return op

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        pass


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_undecodable_operations_are_bad_requests_and_never_reach_the_app() -> None:
    replica = Replica(Exploding())
    for operation in (b"", b"\xc1", msgpack.packb("raise") + b"\x00", b"\xa2\xff\xfe", b"\x81\x91\x01\x02"):
        assert is_error(replica.raw(operation), "bad_request")
    too_large = msgpack.packb(b"\x00" * constants.OPERATION_BYTES_MAX)
    assert is_error(replica.raw(too_large), "bad_request")


def test_operations_nested_too_deep_are_bad_requests() -> None:
    replica = Replica(Exploding())
    ok: Any = "leaf"
    for _ in range(OPERATION_NESTING_MAX):
        ok = [ok]
    assert replica.do(ok) == ok
    assert is_error(replica.do([ok]), "bad_request")
    assert is_error(replica.do({"k": ok}), "bad_request")


def test_an_exception_in_the_app_becomes_a_deterministic_app_error() -> None:
    first, second = Replica(Exploding()), Replica(Exploding())
    result = first.do("raise")
    assert is_error(result, "app_error")
    assert result["message"].startswith("ValueError: boom for <object")
    assert "0x" not in result["message"], "addresses differ between replicas"
    assert second.do("raise") == result


def test_long_unencodable_or_unprintable_exception_text_still_gives_an_app_error() -> None:
    replica = Replica(Exploding())
    long_result = replica.do("long")
    assert is_error(long_result, "app_error")
    assert len(long_result["message"]) <= constants.ERROR_MESSAGE_CHARS_MAX
    assert is_error(replica.do("surrogate"), "app_error")
    assert replica.do("unprintable") == {"error": "app_error", "message": "Unprintable: <unprintable>"}


def test_results_that_cannot_be_encoded_or_are_too_large_are_app_errors() -> None:
    replica = Replica(Exploding())
    for op in ("set", "object", "huge"):
        assert is_error(replica.do(op), "app_error")
    assert replica.do({"plain": [1, "two"]}) == {"plain": [1, "two"]}


@settings(max_examples=300)
@given(st.binary(max_size=100))
def test_random_operation_bytes_never_crash_the_state_machine(operation: bytes) -> None:
    result = msgpack.unpackb(
        MsgpackStateMachine(CoordinationApp()).apply(as_entry(operation)), strict_map_key=False
    )
    assert isinstance(result, dict) and "error" in result


def test_snapshot_must_be_bytes() -> None:
    class Sloppy(Exploding):
        def snapshot(self) -> bytes:
            return "state"  # type: ignore[return-value]

    class Buffered(Exploding):
        def snapshot(self) -> bytes:
            return bytearray(b"state")  # type: ignore[return-value]

    with pytest.raises(TypeError, match="not bytes"):
        MsgpackStateMachine(Sloppy()).snapshot()
    assert MsgpackStateMachine(Buffered()).snapshot() == b"state"


# --- load_app -----------------------------------------------------------------------------------------------


def test_load_app_builds_the_builtin_coordination_service() -> None:
    app = load_app(DEFAULT_APP_SPEC)
    assert isinstance(app, CoordinationApp)
    assert isinstance(app, App)
    assert load_app("zvsr.apps:CoordinationApp") is not app, "a fresh instance every time"


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    source = """
        class Good:
            def apply(self, op):
                return op
            def snapshot(self):
                return b""
            def restore(self, data):
                pass

        class Incomplete:
            def apply(self, op):
                return op
            snapshot = "not callable"

        class Refuses:
            def __init__(self):
                raise RuntimeError("needs a config file")

        class Outer:
            Inner = Good

        NOT_A_CLASS = 42
    """
    (tmp_path / "zvsr_user_app.py").write_text(textwrap.dedent(source))
    (tmp_path / "zvsr_broken_app.py").write_text("raise ImportError('missing dependency')\n")
    (tmp_path / "zvsr_syntax_app.py").write_text("def (\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("zvsr_user_app", "zvsr_broken_app", "zvsr_syntax_app"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return "zvsr_user_app"


def test_load_app_accepts_a_user_class_and_a_dotted_attribute(user_module: str) -> None:
    assert type(load_app(f"{user_module}:Good")).__name__ == "Good"
    assert type(load_app(f"{user_module}:Outer.Inner")).__name__ == "Good"


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("zvsr_user_app", "must look like"),
        ("zvsr_user_app:", "must look like"),
        (":Good", "must look like"),
        ("no_such_module_zvsr:App", "cannot import module"),
        ("zvsr_user_app:Missing", "has no attribute"),
        ("zvsr_user_app:Outer.Missing", "has no attribute"),
        ("zvsr_user_app:NOT_A_CLASS", "not a class"),
        ("zvsr_user_app:Refuses", "RuntimeError: needs a config file"),
        ("zvsr_user_app:Incomplete", "lacks snapshot, restore"),
        ("zvsr_broken_app:App", "missing dependency"),
        ("zvsr_syntax_app:App", "SyntaxError"),
    ],
)
def test_load_app_explains_what_is_wrong(user_module: str, spec: str, complaint: str) -> None:
    with pytest.raises(AppLoadError, match=complaint):
        load_app(spec)


# --- the op's context and the app's timers through the adapter ------------------------------------------------


class _Recorder:
    """An app with the two-parameter apply and a timer."""

    def __init__(self) -> None:
        self.contexts: list[OpContext] = []
        self.answer: Any = None

    def apply(self, op: Any, ctx: OpContext) -> Any:
        self.contexts.append(ctx)
        return op

    def due(self, timestamp_ns: int) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        pass


class _OneParameter:
    """An app written before cluster time: apply(op) only, no timer."""

    def apply(self, op: Any) -> Any:
        return op

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        pass


def test_an_app_taking_a_context_gets_the_entrys_op_number_cluster_time_and_view() -> None:
    app = _Recorder()
    machine = MsgpackStateMachine(app)
    result = machine.apply(as_entry(msgpack.packb("x"), op_number=7, timestamp=123_456, view=2))
    assert msgpack.unpackb(result) == "x"
    [context] = app.contexts
    assert type(context) is OpContext and context == OpContext(op_number=7, timestamp_ns=123_456, view=2)
    assert (context.op_number, context.timestamp_ns, context.view) == (7, 123_456, 2)


def test_an_app_written_against_apply_op_runs_unchanged_and_has_nothing_due() -> None:
    machine = MsgpackStateMachine(_OneParameter())
    assert msgpack.unpackb(machine.apply(as_entry(msgpack.packb([1, 2])))) == [1, 2]
    assert machine.due(10**12) is None


def test_an_apps_due_answer_is_encoded_and_a_failing_or_unencodable_timer_counts_as_nothing_due() -> None:
    app = _Recorder()
    machine = MsgpackStateMachine(app)
    assert machine.due(5) is None
    app.answer = {"op": "lease_expire"}
    assert machine.due(5) == msgpack.packb({"op": "lease_expire"}, use_bin_type=True)
    app.answer = RuntimeError("timer bug")
    assert machine.due(5) is None
    app.answer = object()  # not a msgpack value
    assert machine.due(5) is None
    app.answer = "x" * (constants.OPERATION_BYTES_MAX + 1)
    assert machine.due(5) is None
    assert machine.due_failures == 3


# --- read-only operations (zvsr.protocol.state_machine.ReadOnlyQueries) -----------------------------------------


def test_get_and_lease_list_are_read_only_and_query_answers_what_apply_would() -> None:
    """The coordination app declares well-formed get and lease_list read-only; query gives the bytes apply would
    give at the same state, and changes nothing (the snapshot is the same before and after)."""
    replica = Replica()
    machine = MsgpackStateMachine(replica.app)
    replica.do({"op": "put", "key": "k", "value": [1, {"a": 2}]})
    replica.do({"op": "lease_grant", "ttl_ms": 1000})
    for op in ({"op": "get", "key": "k"}, {"op": "get", "key": "missing"}, {"op": "lease_list"}):
        operation = msgpack.packb(op)
        assert machine.read_only(operation), op
        before = replica.app.snapshot()
        answer = machine.query(operation)
        assert replica.app.snapshot() == before, f"query {op} changed the state"
        assert answer == replica.machine.apply(as_entry(operation, op_number=99, timestamp=99_000_000))


@pytest.mark.parametrize(
    "operation",
    [
        msgpack.packb({"op": "put", "key": "k", "value": 1}),
        msgpack.packb({"op": "lease_ttl", "lease": 1}),  # its answer depends on the op's time
        msgpack.packb({"op": "get", "key": 7}),  # malformed: the log gives its error, as before
        msgpack.packb({"op": "get", "key": "k", "extra": 1}),
        b"\xc1",  # not msgpack
    ],
)
def test_everything_else_goes_through_the_log(operation: bytes) -> None:
    assert not MsgpackStateMachine(CoordinationApp()).read_only(operation)


def test_an_app_that_declares_nothing_has_no_read_only_op() -> None:
    class Plain:
        def apply(self, op: Any) -> Any:
            return op

        def snapshot(self) -> bytes:
            return b""

        def restore(self, data: bytes) -> None:
            pass

    machine = MsgpackStateMachine(Plain())
    assert not machine.read_only(msgpack.packb({"op": "get", "key": "k"}))


def test_a_raising_declaration_means_the_log() -> None:
    class Broken(CoordinationApp):
        def read_only(self, op: Any) -> bool:
            raise RuntimeError("no")

    assert not MsgpackStateMachine(Broken()).read_only(msgpack.packb({"op": "get", "key": "k"}))


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every operation the app adapter decodes from now on, in order."""
    from zvsr.apps import adapter

    seen: list[bytes] = []
    real = adapter._decode_operation

    def counting(operation: bytes) -> Any:
        seen.append(operation)
        return real(operation)

    monkeypatch.setattr(adapter, "_decode_operation", counting)
    return seen


def test_a_write_is_not_decoded_to_ask_whether_it_only_reads(decoded: list[bytes]) -> None:
    """The coordination app names the strings every read-only op holds (`read_only_strings`): a put holding
    neither "get" nor "lease_list" is answered "not read-only" without a decode; a get is decoded and checked;
    a get whose "get" is encoded as str 8 (legal msgpack, but not what a msgpack packer writes) is not
    recognised and goes through the log, which is always safe."""
    machine = MsgpackStateMachine(CoordinationApp())
    put = msgpack.packb({"op": "put", "key": "k", "value": "v" * 32})
    assert not machine.read_only(put) and decoded == []
    get = msgpack.packb({"op": "get", "key": "k"})
    assert machine.read_only(get) and decoded == [get]
    str8_get = b"\x82\xa2op\xd9\x03get\xa3key\xa1k"  # {"op": "get", "key": "k"}, "get" as str 8
    assert msgpack.unpackb(str8_get) == {"op": "get", "key": "k"}
    assert not machine.read_only(str8_get), "not recognised: it goes through the log"
    assert decoded == [get]


def test_a_read_is_decoded_once_for_its_check_and_its_query(
    decoded: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The primary asks whether a get only reads when it arrives and queries it once its round is confirmed: the
    operation decoded for the first is what the second uses. A query nobody asked about first (or asked twice)
    decodes for itself, and what is kept for dropped reads stays bounded."""
    app = CoordinationApp()
    machine = MsgpackStateMachine(app)
    Replica(app).do({"op": "put", "key": "k", "value": 7})
    decoded.clear()
    get = msgpack.packb({"op": "get", "key": "k"})
    assert machine.read_only(get)
    assert msgpack.unpackb(machine.query(get)) == 7 and decoded == [get]
    assert msgpack.unpackb(machine.query(get)) == 7 and decoded == [get, get], "not kept after its query"
    monkeypatch.setattr("zvsr.apps.adapter.READS_PENDING_MAX", 4)
    for n in range(10):  # reads checked, then dropped (a view change): never queried
        assert machine.read_only(msgpack.packb({"op": "get", "key": f"dropped-{n}"}))
    assert len(machine._decoded_reads) <= 4
