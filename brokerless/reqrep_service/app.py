"""The ledger service as a zvsr app: the same `Ledger` handler, replicated.

    zvsr cluster up --app brokerless.reqrep_service.app:LedgerApp     # after `pip install -e .`

A zvsr app is a class with `apply(op) -> result`, `snapshot() -> bytes` and `restore(bytes)`
(`zvsr/apps/base.py`). Every replica applies the committed requests in the same order to its own `Ledger`, so
all copies agree; the proxy passes each bare request from a plain REQ client to the current primary and sends
the handler's reply back, so `client.py` keeps working unchanged when pointed at the proxy.

What the wrapper adds to the handler is only the state as bytes, for the replicas' snapshots: `snapshot`
encodes `Ledger.export_state()` (canonical: equal states give equal bytes on every replica) and `restore`
rebuilds the ledger from such bytes, refusing — with ValueError, before touching the current state — any
that are not one.

`zvsr node` imports the module by name (`zvsr.apps.adapter.load_app`), so `brokerless` must be importable by
the replica processes: `pip install -e .` installs it with zvsr (pyproject.toml), so it is, from any directory.
"""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from brokerless.reqrep_service.service import Ledger


class LedgerApp:
    """`Ledger` behind the zvsr App interface."""

    def __init__(self) -> None:
        self._ledger = Ledger()

    def apply(self, op: Any) -> Any:
        return self._ledger.handle(op)

    def snapshot(self) -> bytes:
        data: bytes = msgpack.packb(self._ledger.export_state(), use_bin_type=True)
        return data

    def restore(self, data: bytes) -> None:
        try:
            state = msgpack.unpackb(data, raw=False)
        except Exception as error:
            raise ValueError(f"ledger snapshot is not msgpack: {type(error).__name__}") from error
        self._ledger = Ledger.from_state(state)
