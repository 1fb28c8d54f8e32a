"""Sequential specifications ("models") the checker compares histories against.

A model is a deterministic state machine: ``init()`` gives the initial state and
``step(state, input, output)`` says whether an operation with that input may return that output in that
state, and what the state becomes.  States must be hashable and compare by value, because the search
memoises (set of linearized operations, state) pairs.  ``partition`` splits a history into independent
sub-histories (for instance one per key); a history is linearizable iff every part is, which turns one
exponential search into several much smaller ones.

An output of :data:`~zvsr.lincheck.history.UNKNOWN` must be accepted in every state (the operation's
effect is applied, its answer is simply not known).  Operations with output
:data:`~zvsr.lincheck.history.FAILED` never reach a model: the checker drops them.

Models provided
---------------

``register`` (:class:`RegisterModel`)
    One register, initially ``None`` (Jepsen's ``nil``).  Inputs are :class:`RegisterInput`:
    ``read`` (output: the value read), ``write(v)`` (output ignored), ``cas(a, b)`` which sets the
    register to ``b`` iff it holds ``a`` (output: ``True``/``False``).

``kv`` (:class:`KVModel`)
    Independent string keys, each initially ``""``.  Inputs are :class:`KVInput`: ``get`` (output: the
    value; ``None`` is read as ``""`` because Jepsen reports an untouched key either way), ``put(v)`` and
    ``append(v)`` (string concatenation); outputs of put/append are ignored.  Partitioned by key.

``zvsr`` (:class:`ZvsrModel`) -- the history format written by zvsr's simulator and process tests
    JSON lines, one operation per line::

        {"client": 3, "call": 12.5, "return": 13.25, "op": {...}, "result": ..., "status": "ok"}

    ``call``/``return`` are times in any unit on one clock; ``return`` is ``null`` when the client never
    got an answer.  ``status`` is ``"ok"`` (completed, ``result`` is the answer), ``"fail"`` (the operation
    definitely did not take effect; the record is ignored) or ``"unknown"`` (it may or may not have taken
    effect, at any time after ``call``; ``result`` and ``return`` are ignored).  A missing ``status`` means
    ``"ok"`` when ``return`` is set and ``"unknown"`` otherwise.

    The store maps string keys to JSON scalars (string, number, boolean).  ``null`` means "no value": a
    key holding ``null`` is the same as a missing key, so putting ``null`` deletes.  Every key starts
    missing.  ``op`` is one of:

    * ``{"op": "get", "key": k}`` -- result: the value, or ``null`` when missing.
    * ``{"op": "put", "key": k, "value": v}`` -- result ignored.
    * ``{"op": "delete", "key": k}`` -- result ignored.
    * ``{"op": "cas", "key": k, "expected": e, "new": n}`` -- sets ``k`` to ``n`` iff its value equals
      ``e`` (``e = null`` matches a missing key).  Result: ``{"ok": bool, "value": current}`` where
      ``current`` is the value the key holds after the operation; a bare boolean is also accepted.
      ``value`` is checked only when ``ok`` is false (it must be the unchanged value), because after a
      successful cas it is ``n`` by definition.
    * ``{"op": "incr", "key": k, "by": n}`` -- adds the integer ``n`` to an integer value, a missing key
      counting as ``0``.  Result: the new value.  An incr of a key holding a non-integer leaves it
      unchanged; such an incr can only have an unknown outcome or ``"fail"``.

    Values compare as JSON does: ``1`` equals ``1.0`` but ``true`` is not ``1``.  Partitioned by key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar, Literal, NamedTuple

from zvsr.lincheck.history import UNKNOWN, Operation

__all__ = [
    "KVInput",
    "KVModel",
    "MODELS",
    "Model",
    "RegisterInput",
    "RegisterModel",
    "ZvsrModel",
]


class Model(ABC):
    """A sequential specification; subclasses define ``init`` and ``step`` (see the module docstring)."""

    name: ClassVar[str] = "model"

    @abstractmethod
    def init(self) -> Hashable:
        """The initial state."""

    @abstractmethod
    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        """``(legal, next_state)`` for applying ``input`` in ``state`` and observing ``output``."""

    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]:
        """Independent sub-histories; the default is the whole history as one part."""
        return [list(history)] if history else []

    def describe_partition(self, part: Sequence[Operation]) -> str:
        """A short label for a part, e.g. ``key 'x'``, used in reports."""
        return "whole history"

    def is_read_only(self, input: Any) -> bool:
        """True when the operation never changes the state.

        Lets the checker drop such operations when their output is unknown: they then constrain nothing.
        """
        return False

    def describe_operation(self, input: Any, output: Any) -> str:
        return f"{input!r} -> {output!r}"


# --- register ---------------------------------------------------------------------------------------


class RegisterInput(NamedTuple):
    """``read`` | ``write`` (``arg`` = value) | ``cas`` (``arg`` = expected, ``new`` = new value)."""

    kind: Literal["read", "write", "cas"]
    arg: Any = None
    new: Any = None


class RegisterModel(Model):
    """A single register, initially ``None``."""

    name = "register"

    def init(self) -> Hashable:
        return None

    def step(self, state: Any, input: RegisterInput, output: Any) -> tuple[bool, Any]:
        kind = input.kind
        if kind == "read":
            return output is UNKNOWN or output == state, state
        if kind == "write":
            return True, input.arg
        if kind == "cas":
            matches = state == input.arg
            if output is UNKNOWN or output is matches:
                return True, input.new if matches else state
            return False, state
        raise ValueError(f"unknown register operation {kind!r}")

    def is_read_only(self, input: RegisterInput) -> bool:
        return input.kind == "read"

    def describe_operation(self, input: RegisterInput, output: Any) -> str:
        if input.kind == "read":
            return f"read() -> {output!r}"
        if input.kind == "write":
            return f"write({input.arg!r})"
        return f"cas({input.arg!r}, {input.new!r}) -> {output!r}"


# --- key/value store with append --------------------------------------------------------------------


class KVInput(NamedTuple):
    """``get`` | ``put`` | ``append`` on ``key`` (``value`` unused by ``get``)."""

    kind: Literal["get", "put", "append"]
    key: str
    value: str | None = None


class KVModel(Model):
    """Independent string keys, initially ``""``; the state of a part is the value of its one key."""

    name = "kv"

    def init(self) -> Hashable:
        return ""

    def step(self, state: str, input: KVInput, output: Any) -> tuple[bool, Any]:
        kind = input.kind
        if kind == "get":
            # Jepsen's kv tests report an untouched key as "" or nil; both mean empty.
            return output is UNKNOWN or (output if output is not None else "") == state, state
        if kind == "put":
            return True, input.value
        if kind == "append":
            return True, state + (input.value or "")
        raise ValueError(f"unknown kv operation {kind!r}")

    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]:
        return _partition_by(history, lambda op: op.input.key)

    def describe_partition(self, part: Sequence[Operation]) -> str:
        return f"key {part[0].input.key!r}" if part else "empty"

    def is_read_only(self, input: KVInput) -> bool:
        return input.kind == "get"

    def describe_operation(self, input: KVInput, output: Any) -> str:
        if input.kind == "get":
            return f"get({input.key!r}) -> {output!r}"
        return f"{input.kind}({input.key!r}, {input.value!r})"


# --- zvsr's own history format ----------------------------------------------------------------------


def _canon(value: Any) -> Hashable:
    """Map a JSON value to a hashable state that compares as JSON does.

    Python says ``True == 1``; JSON does not, and letting them collide would make the memo table prune
    states that differ, so booleans are tagged.  Containers become tuples so they can be hashed.
    """
    if isinstance(value, bool):
        return ("$bool", value)
    if isinstance(value, list | tuple):
        return ("$list", tuple(_canon(v) for v in value))
    if isinstance(value, Mapping):
        return ("$dict", tuple(sorted((str(k), _canon(v)) for k, v in value.items())))
    return value  # type: ignore[no-any-return]


def _is_int(state: Hashable) -> bool:
    return isinstance(state, int) and not isinstance(state, bool)


class ZvsrModel(Model):
    """The ``zvsr`` key/value model; the state of a part is the canonical value of its key (None = missing).

    Inputs are the ``op`` objects of the history format, outputs the ``result`` values.
    """

    name = "zvsr"

    def init(self) -> Hashable:
        return None

    def step(self, state: Hashable, input: Mapping[str, Any], output: Any) -> tuple[bool, Any]:
        kind = input["op"]
        unknown = output is UNKNOWN
        if kind == "get":
            return unknown or _canon(output) == state, state
        if kind == "put":
            return True, _canon(input.get("value"))
        if kind == "delete":
            return True, None
        if kind == "cas":
            matches = _canon(input.get("expected")) == state
            after = _canon(input.get("new")) if matches else state
            if unknown:
                return True, after
            if isinstance(output, Mapping):
                ok = output.get("ok")
                if ok is False and "value" in output and _canon(output["value"]) != state:
                    return False, state
            else:
                ok = output
            return ok is matches, after
        if kind == "incr":
            by = input.get("by", 1)
            if state is None:
                after = by
            elif _is_int(state):
                after = state + by
            else:
                return unknown, state
            return unknown or (_is_int(output) and output == after), after
        raise ValueError(f"unknown zvsr operation {kind!r}")

    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]:
        return _partition_by(history, lambda op: op.input["key"])

    def describe_partition(self, part: Sequence[Operation]) -> str:
        return f"key {part[0].input['key']!r}" if part else "empty"

    def is_read_only(self, input: Mapping[str, Any]) -> bool:
        return bool(input["op"] == "get")

    def describe_operation(self, input: Mapping[str, Any], output: Any) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in input.items() if k != "op")
        return f"{input['op']}({args}) -> {output!r}"


def _partition_by(history: Sequence[Operation], key: Any) -> list[list[Operation]]:
    parts: dict[Hashable, list[Operation]] = {}
    for op in history:
        parts.setdefault(key(op), []).append(op)
    return list(parts.values())


MODELS: dict[str, type[Model]] = {m.name: m for m in (RegisterModel, KVModel, ZvsrModel)}
