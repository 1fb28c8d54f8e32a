"""How the mutation tests (`test_mutations.py`, `test_snapshot_mutations.py`) bend the core and check that a
scenario catches it — a helpers module, not a test module (STYLE rule 15).

Message handlers are dispatched through `zvsr.protocol.replica._HANDLERS`, a table built at import time, so a
flawed handler replaces the table entry (patching `Replica.on_prepare` alone would change nothing). Internal
steps are looked up on `self` and are patched on the class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from zvsr.protocol import replica as replica_module
from zvsr.protocol.replica import Replica

Handler = Callable[[Replica, Any], None]


def patch_handler(monkeypatch: pytest.MonkeyPatch, kind: type, make: Callable[[Handler], Handler]) -> None:
    """Replace the dispatch-table entry for `kind` by `make(original)`."""
    original = replica_module._HANDLERS[kind]
    monkeypatch.setitem(replica_module._HANDLERS, kind, make(original))


def patch_method(monkeypatch: pytest.MonkeyPatch, name: str, make: Callable[[Any], Any]) -> None:
    monkeypatch.setattr(Replica, name, make(getattr(Replica, name)))


def assert_caught(scenario: Callable[[], object]) -> None:
    """The scenario must fail: an AssertionError, from the scenario's own checks, the harness's invariants, or
    an assertion in the core."""
    with pytest.raises(AssertionError):
        scenario()
