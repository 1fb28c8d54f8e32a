"""The protocol core stays sans-IO (STYLE rule 1): no IO, clock, randomness or concurrency imports."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {"zmq", "msgpack", "time", "random", "asyncio", "threading", "socket", "os", "logging", "subprocess"}
PROTOCOL = Path(__file__).resolve().parent.parent / "zvsr" / "protocol"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_protocol_core_imports_no_io_time_or_randomness() -> None:
    files = sorted(PROTOCOL.glob("*.py"))
    assert files, "the protocol package is missing"
    offenders = {f.name: sorted(imported_modules(f) & FORBIDDEN) for f in files}
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_protocol_core_imports_nothing_from_the_layers_above() -> None:
    for path in sorted(PROTOCOL.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("zvsr."):
                assert node.module.startswith(("zvsr.protocol", "zvsr.constants")), (path.name, node.module)


def test_the_purity_check_itself_can_fail(tmp_path: Path) -> None:
    impure = tmp_path / "impure.py"
    impure.write_text("import time\nfrom zmq import Context\n")
    assert imported_modules(impure) & FORBIDDEN == {"time", "zmq"}
