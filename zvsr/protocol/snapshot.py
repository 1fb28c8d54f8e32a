"""A replica's snapshot: the application state and the client table after op `op_number`, as bytes.

Snapshots let a replica drop the log before them (memory and disk stay bounded while the log grows forever)
and let a replica that is far behind catch up without the ops it missed. The client table travels with the app
state: without it, a client's retry of an op folded into the snapshot could be executed a second time on a
replica that installed the snapshot (§4.1, ARCHITECTURE rule 8).

The encoding is a fixed binary layout (the core imports no serialization library; see tests/test_purity.py):

    magic "ZVSRSNP2" | op_number u64 | client count u32
    | client count x (client_id u64 | request_number u64 | result length u32 | result)
    | expired count u32 | expired count x client_id u64
    | app state length u64 | app state

The client table is in least-recently-executed-first order and the expired client_ids oldest first, so a
replica that installs the snapshot evicts exactly as the others do.

all integers big-endian. `decode` checks every length against the input, so damaged or hostile bytes give a
`SnapshotError`, never a partial state; integrity against bit flips is the checksum's job (`checksum`), checked
by whoever moved the bytes (the storage layer, or the receiver of a snapshot transfer).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

MAGIC: Final = b"ZVSRSNP2"
CHECKSUM_BYTES: Final = 16
_HEAD: Final = struct.Struct(">8sQI")
_CLIENT: Final = struct.Struct(">QQI")
_APP: Final = struct.Struct(">Q")
_COUNT: Final = struct.Struct(">I")
_ID: Final = struct.Struct(">Q")


class SnapshotError(ValueError):
    """Bytes that are not a well-formed snapshot."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    op_number: int
    client_table: tuple[tuple[int, int, bytes], ...]  # (client_id, request_number, result)
    expired: tuple[int, ...]  # client_ids evicted from the table, oldest first
    app_state: bytes


def checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=CHECKSUM_BYTES).digest()


def encode(
    op_number: int,
    client_table: Iterable[tuple[int, int, bytes]],
    app_state: bytes,
    expired: Iterable[int] = (),
) -> bytes:
    parts: list[bytes] = []
    count = 0
    for client_id, request_number, result in client_table:
        parts.append(_CLIENT.pack(client_id, request_number, len(result)))
        parts.append(result)
        count += 1
    expired_ids = [_ID.pack(client_id) for client_id in expired]
    return b"".join(
        [
            _HEAD.pack(MAGIC, op_number, count),
            *parts,
            _COUNT.pack(len(expired_ids)),
            *expired_ids,
            _APP.pack(len(app_state)),
            app_state,
        ]
    )


def op_number_of(data: bytes) -> int:
    """The op_number a snapshot covers, read from its header."""
    if len(data) < _HEAD.size:
        raise SnapshotError(f"snapshot of {len(data)} bytes is shorter than its header")
    magic, op_number, _ = _HEAD.unpack_from(data, 0)
    if magic != MAGIC:
        raise SnapshotError("not a zvsr snapshot (bad magic)")
    return int(op_number)


def decode(data: bytes) -> Snapshot:
    op_number = op_number_of(data)
    _, _, count = _HEAD.unpack_from(data, 0)
    offset = _HEAD.size
    table: list[tuple[int, int, bytes]] = []
    for _ in range(count):
        if offset + _CLIENT.size > len(data):
            raise SnapshotError("snapshot ends inside its client table")
        client_id, request_number, length = _CLIENT.unpack_from(data, offset)
        offset += _CLIENT.size
        if offset + length > len(data):
            raise SnapshotError("snapshot ends inside a client-table result")
        table.append((client_id, request_number, data[offset : offset + length]))
        offset += length
    if offset + _COUNT.size > len(data):
        raise SnapshotError("snapshot ends before its expired sessions")
    (expired_count,) = _COUNT.unpack_from(data, offset)
    offset += _COUNT.size
    if offset + expired_count * _ID.size > len(data):
        raise SnapshotError("snapshot ends inside its expired sessions")
    expired = tuple(_ID.unpack_from(data, offset + i * _ID.size)[0] for i in range(expired_count))
    offset += expired_count * _ID.size
    if offset + _APP.size > len(data):
        raise SnapshotError("snapshot ends before its app state")
    (length,) = _APP.unpack_from(data, offset)
    offset += _APP.size
    if offset + length != len(data):
        raise SnapshotError(f"snapshot app state of {length} bytes does not end the snapshot")
    return Snapshot(op_number=op_number, client_table=tuple(table), expired=expired, app_state=data[offset:])
