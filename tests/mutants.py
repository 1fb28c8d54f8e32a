"""How the mutation tests (`test_mutations.py`, `test_snapshot_mutations.py`) bend the core and check that a
scenario catches it — a helpers module, not a test module (STYLE rule 15).

`Replica.on_message` dispatches with a `match` on the message's class and calls `self.on_<kind>`, so a flawed
handler is patched on the class, like internal steps (`_maybe_start_view`, ...) and the methods of the
replica's parts (`RoleTimers.enter_backup`, `Snapshots.expire_pins`, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from zvsr.protocol.replica import Replica

Handler = Callable[[Replica, Any], None]


def handler_name(kind: type) -> str:
    """`PrepareOk` -> `on_prepare_ok`: the handler the dispatch calls for a message kind."""
    return "on_" + re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower()


def patch_handler(monkeypatch: pytest.MonkeyPatch, kind: type, make: Callable[[Handler], Handler]) -> None:
    """Replace the handler of `kind` by `make(original)`."""
    patch_method(monkeypatch, handler_name(kind), make)


def patch_method(
    monkeypatch: pytest.MonkeyPatch, name: str, make: Callable[[Any], Any], *, owner: type = Replica
) -> None:
    """Replace `owner.name` (a method of the replica, or of one of its parts) by `make(original)`."""
    monkeypatch.setattr(owner, name, make(getattr(owner, name)))


def assert_caught(scenario: Callable[[], object]) -> None:
    """The scenario must fail: an AssertionError, from the scenario's own checks, the harness's invariants, or
    an assertion in the core."""
    with pytest.raises(AssertionError):
        scenario()
