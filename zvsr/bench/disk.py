"""The disk baseline: how many 100-byte appends per second survive power loss one at a time.

Each operation appends `RECORD_BYTES` to a file and calls `os.fdatasync` before the next: one fsync per
operation, what a log without group commit pays. zvsr with ``--fsync always`` syncs once per batch of records
(`zvsr.runtime.data_dir`), so its committed ops/s divided by this rate — measured on the same disk (a file in
the data directory's parent) in the same run — is its group-commit gain.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

RECORD_BYTES: Final = 100


def fdatasync_rate(directory: Path, *, duration_s: float) -> float:
    """fdatasync-per-append operations per second over about `duration_s`, in a fresh file in `directory`."""
    path = directory / f"fdatasync-probe-{os.getpid()}.bin"
    record = b"r" * RECORD_BYTES
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    try:
        os.write(descriptor, record)  # the file exists on disk before timing starts
        os.fsync(descriptor)
        operations = 0
        start = time.monotonic()
        end = start + duration_s
        now = start
        while now < end:
            os.write(descriptor, record)
            os.fdatasync(descriptor)
            operations += 1
            now = time.monotonic()
        return operations / (now - start)
    finally:
        os.close(descriptor)
        path.unlink(missing_ok=True)


def filesystem(directory: Path) -> str:
    """The type of the filesystem holding `directory` (from /proc/mounts; "?" elsewhere)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "?"
    target = str(directory.resolve())
    best, kind = "", "?"
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, kind = mount_point, fields[2]
    return kind
