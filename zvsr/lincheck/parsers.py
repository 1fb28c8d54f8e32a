"""Readers for the history formats the checker understands.

Each reader turns a text into a list of :class:`~zvsr.lincheck.history.Operation` for one model:

* ``jepsen-register`` -- Jepsen's etcd logs (``INFO  jepsen.util - 3<TAB>:invoke<TAB>:cas<TAB>[1 4]``),
  register model.  Fields are separated by tabs or runs of spaces.  ``:ok`` completes an operation (a
  read carries ``nil`` or a number); ``:fail :cas`` is a compare-and-set that answered "no" (an ordinary
  output, ``False``); ``:fail :read :timed-out`` and any ``:info`` line leave the outcome unknown, as does
  an invoke with no answer by the end of the log.  Times are line numbers.
* ``jepsen-kv`` -- one EDN map per line (``{:process 0, :type :invoke, :f :append, :key "0", :value "x"}``),
  kv model.  ``:ok`` completes; ``:fail`` means the operation did not take effect; ``:info`` and a missing
  answer leave it unknown.  Lines whose ``:process`` is not an integer (Jepsen's nemesis) are skipped.
  Times are line numbers.
* ``zvsr`` -- JSON lines, zvsr model; the format is specified in :mod:`zvsr.lincheck.models`.

Malformed input raises :class:`ParseError` naming the line, rather than being skipped: a checker that
silently drops operations could call a broken history linearizable.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from zvsr.lincheck.history import FAILED, UNKNOWN, Operation, zvsr_operation
from zvsr.lincheck.models import KVInput, KVModel, Model, RegisterInput, RegisterModel, ZvsrModel

__all__ = [
    "FORMATS",
    "ParseError",
    "load_history",
    "parse_jepsen_kv",
    "parse_jepsen_register",
    "parse_zvsr",
]


class ParseError(ValueError):
    """A history text that does not follow its format."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


class _Pairing:
    """Matches invocations to completions per process and closes what is left open as unknown."""

    def __init__(self) -> None:
        self.open: dict[int, tuple[Any, float]] = {}
        self.ops: list[Operation] = []

    def invoke(self, process: int, input: Any, time: float, line: int) -> None:
        if process in self.open:
            raise ParseError(f"process {process} invokes again before its previous operation completed", line)
        self.open[process] = (input, time)

    def complete(self, process: int, output: Any, time: float, line: int) -> Any:
        """Close the process's open operation; returns its input."""
        if process not in self.open:
            raise ParseError(f"process {process} completes an operation it never invoked", line)
        input, call = self.open.pop(process)
        self.ops.append(Operation(process, input, output, call, math.inf if output is UNKNOWN else time))
        return input

    def finish(self) -> list[Operation]:
        for process, (input, call) in self.open.items():
            self.ops.append(Operation(process, input, UNKNOWN, call, math.inf))
        self.open.clear()
        self.ops.sort(key=lambda op: op.call)
        return self.ops


# --- jepsen-register ---------------------------------------------------------------------------------

_NUM = r"-?\d+"
_REGISTER_LINE = re.compile(
    rf"^INFO\s+jepsen\.util\s+-\s+(?P<proc>\d+)\s+:(?P<type>invoke|ok|fail|info)\s+:(?P<f>read|write|cas)\s+"
    rf"(?P<arg>nil|{_NUM}|\[\s*(?:nil|{_NUM})\s+(?:nil|{_NUM})\s*\]|:[\w-]+)\s*$"
)


def _register_value(text: str) -> int | None:
    return None if text == "nil" else int(text)


def parse_jepsen_register(lines: Iterable[str]) -> list[Operation]:
    """Parse a Jepsen etcd log into register operations (see the module docstring)."""
    pairing = _Pairing()
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        m = _REGISTER_LINE.match(line)
        if m is None:
            raise ParseError(f"not a jepsen register line: {line!r}", lineno)
        proc, typ, f, arg = int(m["proc"]), m["type"], m["f"], m["arg"]
        t = float(lineno)
        if typ == "invoke":
            if f == "read":
                input = RegisterInput("read")
            elif f == "write":
                input = RegisterInput("write", _register_value(arg))
            else:
                pair = arg.strip("[]").split()
                if len(pair) != 2 or arg[0] != "[":
                    raise ParseError(f"cas needs [expected new], got {arg!r}", lineno)
                input = RegisterInput("cas", _register_value(pair[0]), _register_value(pair[1]))
            pairing.invoke(proc, input, t, lineno)
            continue
        invoked = pairing.open.get(proc)
        if invoked is not None and invoked[0].kind != f:
            raise ParseError(f"process {proc} completes :{f} but invoked :{invoked[0].kind}", lineno)
        if typ == "info" or arg.startswith(":"):
            # :info, or a :fail carrying a reason such as :timed-out: the client does not know the outcome.
            pairing.complete(proc, UNKNOWN, t, lineno)
        elif f == "read":
            if typ != "ok":
                raise ParseError(f"unexpected :{typ} :read with a value", lineno)
            pairing.complete(proc, _register_value(arg), t, lineno)
        elif f == "write":
            pairing.complete(proc, None if typ == "ok" else FAILED, t, lineno)
        else:
            # A :fail'd cas answered "the value differs": an observation, not a non-event.
            pairing.complete(proc, typ == "ok", t, lineno)
    return pairing.finish()


# --- jepsen-kv ---------------------------------------------------------------------------------------

_EDN_TOKEN = re.compile(
    r'\s*(?:(?P<kw>:[\w\-.?!*+/<>=]+)|(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)'
    r"|(?P<sym>nil|true|false))\s*,?"
)


def _parse_edn_map(text: str, lineno: int) -> dict[str, Any]:
    """A flat EDN map of keyword keys to scalar values, which is all Jepsen's kv logs contain."""
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ParseError(f"not an EDN map: {text!r}", lineno)
    body, pos, tokens = text[1:-1], 0, []
    while pos < len(body.rstrip()):
        m = _EDN_TOKEN.match(body, pos)
        if m is None or m.end() == pos:
            raise ParseError(f"cannot read EDN at {body[pos : pos + 20]!r}", lineno)
        pos = m.end()
        if m["kw"]:
            tokens.append(m["kw"])
        elif m["str"]:
            tokens.append(json.loads(m["str"]))
        elif m["num"]:
            tokens.append(float(m["num"]) if "." in m["num"] else int(m["num"]))
        else:
            tokens.append({"nil": None, "true": True, "false": False}[m["sym"]])
    if len(tokens) % 2:
        raise ParseError("EDN map with an odd number of forms", lineno)
    result: dict[str, Any] = {}
    for k, v in zip(tokens[::2], tokens[1::2], strict=True):
        if not (isinstance(k, str) and k.startswith(":")):
            raise ParseError(f"EDN map key is not a keyword: {k!r}", lineno)
        result[k[1:]] = v
    return result


def parse_jepsen_kv(lines: Iterable[str]) -> list[Operation]:
    """Parse a Jepsen kv history (EDN lines) into kv operations (see the module docstring)."""
    pairing = _Pairing()
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        rec = _parse_edn_map(raw, lineno)
        proc, typ, f, key, value = (rec.get(k) for k in ("process", "type", "f", "key", "value"))
        if not isinstance(proc, int) or isinstance(proc, bool):
            continue
        if f not in (":get", ":put", ":append") or not isinstance(key, str):
            raise ParseError(f"unsupported kv operation {f!r} on key {key!r}", lineno)
        kind = f[1:]
        t = float(lineno)
        if typ == ":invoke":
            if kind != "get" and not isinstance(value, str):
                raise ParseError(f"{kind} needs a string value, got {value!r}", lineno)
            pairing.invoke(proc, KVInput(kind, key, value if kind != "get" else None), t, lineno)
        elif typ == ":ok":
            if kind == "get" and value is not None and not isinstance(value, str):
                raise ParseError(f"get returned a non-string {value!r}", lineno)
            pairing.complete(proc, value if kind == "get" else None, t, lineno)
        elif typ == ":fail":
            pairing.complete(proc, FAILED, t, lineno)
        elif typ == ":info":
            pairing.complete(proc, UNKNOWN, t, lineno)
        else:
            raise ParseError(f"unknown :type {typ!r}", lineno)
    return pairing.finish()


# --- zvsr ---------------------------------------------------------------------------------------------


def parse_zvsr(lines: Iterable[str]) -> list[Operation]:
    """Parse zvsr JSON lines (format in :mod:`zvsr.lincheck.models`)."""
    ops: list[Operation] = []
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("a history line must be a JSON object")
            op = zvsr_operation(record)
            if op.input["op"] not in ("get", "put", "delete", "cas", "incr"):
                raise ValueError(f"unknown operation {op.input['op']!r}")
            if not isinstance(op.input.get("key"), str):
                raise ValueError("'key' must be a string")
            if op.input["op"] == "incr" and not _is_json_int(op.input.get("by", 1)):
                raise ValueError("'by' must be an integer")
        except (ValueError, KeyError, TypeError) as exc:
            raise ParseError(str(exc), lineno) from exc
        ops.append(op)
    return ops


def _is_json_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- dispatch -----------------------------------------------------------------------------------------

FORMATS: dict[str, tuple[Callable[[Iterable[str]], list[Operation]], Callable[[], Model]]] = {
    "jepsen-register": (parse_jepsen_register, RegisterModel),
    "jepsen-kv": (parse_jepsen_kv, KVModel),
    "zvsr": (parse_zvsr, ZvsrModel),
}


def load_history(path: str | Path, fmt: str) -> tuple[list[Operation], Model]:
    """Read ``path`` in format ``fmt``; returns the history and the model to check it against.

    Raises ``OSError`` when the file cannot be read, :class:`ParseError` when it is malformed and
    ``KeyError`` for an unknown format.
    """
    parser, model_factory = FORMATS[fmt]
    with open(path, encoding="utf-8") as fh:
        return parser(fh), model_factory()
