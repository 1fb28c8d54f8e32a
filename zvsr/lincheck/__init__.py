"""Linearizability checking for zvsr histories (and Jepsen's published ones).

``check(history, model, timeout_s)`` decides whether a history of concurrent operations could have come
from one atomic copy of the model's state machine, using Wing & Gong's search with Lowe's memoisation
(the design of the Porcupine checker), partitioned by key.  See :mod:`zvsr.lincheck.search` for the
algorithm, :mod:`zvsr.lincheck.models` for the models and the zvsr history format, and
:mod:`zvsr.lincheck.parsers` for the file formats.
"""

from zvsr.lincheck.history import FAILED, UNKNOWN, HistoryRecorder, Operation, Outcome, zvsr_operation
from zvsr.lincheck.models import (
    MODELS,
    KVInput,
    KVModel,
    Model,
    RegisterInput,
    RegisterModel,
    ZvsrModel,
)
from zvsr.lincheck.parsers import (
    FORMATS,
    ParseError,
    load_history,
    parse_jepsen_kv,
    parse_jepsen_register,
    parse_zvsr,
)
from zvsr.lincheck.search import CheckResult, PartitionReport, Verdict, check

__all__ = [
    "FAILED",
    "FORMATS",
    "MODELS",
    "UNKNOWN",
    "CheckResult",
    "HistoryRecorder",
    "KVInput",
    "KVModel",
    "Model",
    "Operation",
    "Outcome",
    "ParseError",
    "PartitionReport",
    "RegisterInput",
    "RegisterModel",
    "Verdict",
    "ZvsrModel",
    "check",
    "check_file",
    "load_history",
    "parse_jepsen_kv",
    "parse_jepsen_register",
    "parse_zvsr",
    "zvsr_operation",
]


def check_file(path: str, fmt: str, timeout_s: float | None = None) -> CheckResult:
    """Load ``path`` in format ``fmt`` (a key of :data:`FORMATS`) and check it."""
    history, model = load_history(path, fmt)
    return check(history, model, timeout_s)
