"""A service's configuration agent: keeps a local copy of the keys under a prefix in sync with the cluster.

    python -m brokerless.config_distribution.agent --config CLUSTER.toml --prefix config/web/ --out web.json

It follows the zvsr watch stream (the zguide Clone pattern: snapshot, then only later updates, gaps resynced;
`zvsr.watch`), and after every change rewrites ``--out`` atomically (temporary file, rename) as one JSON object
``{"op_number": n, "config": {key without the prefix: value}}``, so the service it sits next to reads a
consistent whole — never half an update — and can tell how fresh it is. Each change is also printed as a line.
SIGTERM / Ctrl-C stop it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from zvsr.client import watch


def _json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_atomically(path: Path, document: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, default=_json, sort_keys=True) + "\n")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the cluster file (TOML) naming the replicas' endpoints")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--out", required=True, type=Path)
    arguments = parser.parse_args(argv)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    prefix = arguments.prefix
    with watch(arguments.config, prefix) as watcher:
        while not stopping and not watcher.wait_synced(500):
            pass
        written: dict[str, Any] | None = None
        while not stopping:
            for event in watcher.poll(200):
                change = "deleted" if event.deleted else f"= {event.value!r}"
                print(f"op {event.op_number}: {event.key} {change}", flush=True)
            config = {key[len(prefix) :]: value for key, value in watcher.state.items()}
            if config != written:
                write_atomically(arguments.out, {"op_number": watcher.clone.op_number, "config": config})
                written = config
    return 0


if __name__ == "__main__":
    sys.exit(main())
