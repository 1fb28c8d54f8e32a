"""The superblock: the few numbers a replica must never forget or move backwards across a restart.

Theory of operation
-------------------
`SuperblockState` holds the view state the core asks to persist (`PersistViewState`: view_number,
last_normal_view, commit_number, rule 12, and the epoch it belongs to, VR Revisited §7), the identity it belongs
to (cluster_id, replica) and a `sequence` that grows by one with every write. (epoch, view_number) never goes
backwards (`Storage` checks it before writing). A copy written before reconfiguration existed holds the epoch of
the cluster file (0 unless the file said otherwise), which is the epoch its view state belongs to; a copy
without the key reads as epoch 0.

It is kept in two copies, ``superblock.a`` and ``superblock.b``. A write never touches the copy that holds the
newest valid state: it goes to the *other* copy (the older one, or a damaged or missing one), as a temporary
file that is fsynced, renamed over that copy, and followed by an fsync of the directory. A crash at any point
therefore leaves the newest valid state intact in one copy and, at worst, an old or stale copy in the other
(the rename is atomic; a leftover ``.tmp`` file is ignored and overwritten next time).

Each copy is ``blake2b-16(payload) | payload`` where the payload is a msgpack map ``{"format":
"zvsr.superblock", "version": 1, "sequence": ..., "view_number": ..., ...}``. `Superblock.read` takes the
valid copy with the highest sequence, so a damaged newest copy falls back to the older one (which is the state
before the last write — still a state this replica really persisted; the caller decides whether that is
acceptable). Neither file present is a fresh directory (None); files present but none valid is
`SuperblockCorruption`: damage must never be mistaken for a first start.

Cost: each write reads both copies, writes one small file and fsyncs it and the directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr.constants import SUPERBLOCK_COPY_BYTES_MAX

COPY_NAMES: Final = ("superblock.a", "superblock.b")
FORMAT: Final = "zvsr.superblock"
VERSION: Final = 1
CHECKSUM_BYTES: Final = 16

_FIELDS: Final = (
    "sequence",
    "view_number",
    "last_normal_view",
    "commit_number",
    "epoch",
    "cluster_id",
    "replica",
)
_DEFAULTS: Final = {"epoch": 0}  # fields a copy may lack: what it meant when it was written


class SuperblockCorruption(Exception):
    """Superblock files exist but none of them is valid: refuse to start rather than forget."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SuperblockState:
    view_number: int
    last_normal_view: int
    commit_number: int
    epoch: int
    cluster_id: int
    replica: int
    sequence: int = 0


def encode(state: SuperblockState) -> bytes:
    document: dict[str, object] = {"format": FORMAT, "version": VERSION}
    document.update({name: getattr(state, name) for name in _FIELDS})
    payload: bytes = msgpack.packb(document, use_bin_type=True)
    return hashlib.blake2b(payload, digest_size=CHECKSUM_BYTES).digest() + payload


def decode(data: bytes) -> SuperblockState | None:
    """The state in one copy's bytes, or None if they are not a valid superblock copy."""
    if len(data) > SUPERBLOCK_COPY_BYTES_MAX or len(data) <= CHECKSUM_BYTES:
        return None
    stored, payload = data[:CHECKSUM_BYTES], data[CHECKSUM_BYTES:]
    if hashlib.blake2b(payload, digest_size=CHECKSUM_BYTES).digest() != stored:
        return None
    try:
        document = msgpack.unpackb(payload, raw=False)
    except Exception:  # msgpack raises a variety of errors on garbage
        return None
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != VERSION:
        return None
    values: dict[str, int] = {}
    for name in _FIELDS:
        value = document.get(name, _DEFAULTS.get(name))
        if type(value) is not int or value < 0:
            return None
        values[name] = value
    return SuperblockState(**values)


class Superblock:
    """Reads and writes the two superblock copies of a directory (stateless: every call looks at the disk)."""

    @staticmethod
    def read(directory: Path) -> SuperblockState | None:
        """The newest valid state; None if neither copy exists. Raises `SuperblockCorruption` if copies exist
        but none is valid."""
        newest, _index, present = _newest(directory)
        if newest is None and present:
            raise SuperblockCorruption(
                f"{directory}: superblock copies exist but none is valid: refusing to start on a damaged "
                "data directory"
            )
        return newest

    @staticmethod
    def write(directory: Path, state: SuperblockState, *, fsync: bool = True) -> SuperblockState:
        """Durably store `state` with the next sequence (one more than both `state.sequence` and the newest
        valid copy's), over the copy that does not hold the newest valid state. Returns what was written."""
        newest, index, _present = _newest(directory)
        sequence = max(state.sequence, newest.sequence if newest is not None else 0) + 1
        written = dataclasses.replace(state, sequence=sequence)
        target = directory / COPY_NAMES[1 - index if newest is not None else 0]
        write_atomically(target, encode(written), fsync=fsync)
        return written


def _newest(directory: Path) -> tuple[SuperblockState | None, int, bool]:
    """(the valid copy with the highest sequence or None, its index, whether any copy file exists)."""
    newest: SuperblockState | None = None
    newest_index = 0
    present = False
    for index, name in enumerate(COPY_NAMES):
        try:
            with open(directory / name, "rb") as file:
                data = file.read(SUPERBLOCK_COPY_BYTES_MAX + 1)
        except FileNotFoundError:
            continue
        present = True
        state = decode(data)
        if state is not None and (newest is None or state.sequence > newest.sequence):
            newest, newest_index = state, index
    return newest, newest_index, present


def write_atomically(path: Path, data: bytes, *, fsync: bool) -> None:
    """Temporary file, fsync, rename over `path`, fsync the directory: after a crash, all of it or none."""
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        if fsync:
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
    if fsync:
        descriptor = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
