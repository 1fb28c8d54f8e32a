"""Who is in the replica group, epoch by epoch (VR Revisited §7), and the reconfiguration op that changes it.

Theory of operation. A replica has a stable *id*, never reused in a cluster's life. An epoch's configuration is an
ordered tuple of member ids (with each member's address, opaque bytes to the core: the runtime puts its
endpoints there). An epoch starts in view `start_view` (0 for the first), and the primary of view v is
`members[(v - start_view) mod n]` (§4 round robin, inside the epoch): the first member leads the epoch's first
view, so whoever orders the new configuration can put a replica that already holds the state first. Epoch 0's
configuration is the cluster file's replicas 0..n-1, so ids equal indices until the first change.

Views do not restart at 0 in a new epoch (the paper's choice), they go on: the epoch's first view is the view
of its reconfiguration entry plus one, the same on every replica that executes it. So the views on log entries
never decrease along the log, across epochs too, and what reads them (an app's failover refresh of its leases,
`OpContext.view`) needs no notion of epochs. A replica's own (epoch, view) only moves forward.

The configuration changes only through the log. A reconfiguration is a client Request whose operation is
`reconfiguration_operation(epoch, members)`: it starts with the byte 0xc1, which msgpack never uses, so no
application operation (always msgpack) can be mistaken for one. The primary admits it only for its current
epoch, one at a time, and appends nothing after it: it is the last op of its epoch. A replica that executes it
enters the next epoch (no up-call into the app) — `Membership.next` — and the op's reply carries the new epoch.
The configuration in force at an op is part of the replicated state: snapshots carry it (`encode`), so a replica
that installs one knows the configuration it was taken in, and replaying the log after it repeats every change.

Encodings are fixed binary layouts (the core imports no serialization library), all integers big-endian:

    configuration: epoch u64 | start_op u64 | start_view u64 | highest_id u32 | member count u16
                   | count x (id u32 | address length u16 | address) | old count u16 | old count x id u32
    reconfiguration op: 0xc1 | "zvsr-reconfiguration" | version u8 (1) | epoch u64 | member count u16
                   | count x (id u32 | address length u16 | address)

`decode` and `parse_reconfiguration` check every length, so damaged or hostile bytes give an error, never a
partial configuration.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from zvsr.constants import MEMBER_ADDRESS_BYTES_MAX, REPLICA_ID_MAX, REPLICAS_MAX

RECONFIGURATION_MARK: Final = 0xC1  # msgpack's "never used" byte: no app operation starts with it
_OP_PREFIX: Final = bytes([RECONFIGURATION_MARK]) + b"zvsr-reconfiguration\x01"
_CONFIG_HEAD: Final = struct.Struct(">QQQIH")
_MEMBER: Final = struct.Struct(">IH")
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")


class MembershipError(ValueError):
    """Bytes that are not a well-formed configuration or reconfiguration op."""


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    address: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Membership:
    """The configuration of one epoch. `start_op` is the op_number of the reconfiguration that started it (0 for
    epoch 0), `start_view` its first view; `old` the previous epoch's member ids (empty for epoch 0), kept so
    replicas that leave and replicas that join can find each other; `highest_id` the largest id any epoch ever
    had (ids are never reused)."""

    epoch: int
    start_op: int
    members: tuple[Member, ...]
    start_view: int = 0
    old: tuple[int, ...] = ()
    highest_id: int = 0
    ids: tuple[int, ...] = field(init=False)
    quorum: int = field(init=False)

    def __post_init__(self) -> None:
        ids = tuple(member.id for member in self.members)
        assert 1 <= len(ids) <= REPLICAS_MAX and len(set(ids)) == len(ids)
        assert max(ids) <= self.highest_id
        object.__setattr__(self, "ids", ids)
        # A majority: n // 2 + 1 (for an even n, f + 1 would let two quorums miss each other).
        object.__setattr__(self, "quorum", len(ids) // 2 + 1)

    @classmethod
    def initial(cls, replica_count: int, *, epoch: int = 0, addresses: tuple[bytes, ...] = ()) -> Membership:
        """The first configuration: replicas 0..n-1, as the cluster file lists them (in its epoch, 0 unless the
        file says otherwise)."""
        members = tuple(Member(i, addresses[i] if i < len(addresses) else b"") for i in range(replica_count))
        return cls(epoch=epoch, start_op=0, members=members, highest_id=replica_count - 1)

    def primary(self, view: int) -> int:
        ids = self.ids
        return ids[(view - self.start_view) % len(ids)]

    def __contains__(self, replica: object) -> bool:
        return replica in self.ids

    def peers_of(self, replica: int) -> tuple[int, ...]:
        return tuple(i for i in self.ids if i != replica)

    def joining(self) -> tuple[int, ...]:
        """Members that were not in the previous epoch: they hold nothing until they catch up."""
        return tuple(i for i in self.ids if i not in self.old)

    def leaving(self) -> tuple[int, ...]:
        return tuple(i for i in self.old if i not in self.ids)

    def next(self, members: tuple[Member, ...], start_op: int, start_view: int) -> Membership:
        """The configuration a reconfiguration op at `start_op` (appended in view `start_view - 1`) starts."""
        highest = max(self.highest_id, *(member.id for member in members))
        return Membership(
            epoch=self.epoch + 1,
            start_op=start_op,
            members=members,
            start_view=start_view,
            old=self.ids,
            highest_id=highest,
        )

    def check_change(self, members: tuple[Member, ...]) -> str | None:
        """Why `members` cannot follow this configuration, or None: a clear reason for the admin client."""
        ids = [member.id for member in members]
        if not 1 <= len(ids) <= REPLICAS_MAX:
            return f"a configuration has 1..{REPLICAS_MAX} members, not {len(ids)}"
        if len(set(ids)) != len(ids):
            return "a replica id appears twice"
        if tuple(members) == self.members:
            return "the configuration is unchanged"
        for member in members:
            if member.id not in self.ids and member.id <= self.highest_id:
                return f"replica id {member.id} was used before; a new replica needs an id > {self.highest_id}"
        return None

    def encode(self) -> bytes:
        parts = [_CONFIG_HEAD.pack(self.epoch, self.start_op, self.start_view, self.highest_id, len(self.members))]
        parts.extend(_encode_members(self.members))
        parts.append(_U16.pack(len(self.old)))
        parts.extend(_U32.pack(i) for i in self.old)
        return b"".join(parts)


def _encode_members(members: tuple[Member, ...]) -> list[bytes]:
    parts: list[bytes] = []
    for member in members:
        assert 0 <= member.id <= REPLICA_ID_MAX and len(member.address) <= MEMBER_ADDRESS_BYTES_MAX
        parts.append(_MEMBER.pack(member.id, len(member.address)))
        parts.append(member.address)
    return parts


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def take(self, layout: struct.Struct) -> tuple[int, ...]:
        if self.offset + layout.size > len(self.data):
            raise MembershipError("configuration ends early")
        values = layout.unpack_from(self.data, self.offset)
        self.offset += layout.size
        return tuple(int(v) for v in values)

    def members(self, count: int) -> tuple[Member, ...]:
        if not 1 <= count <= REPLICAS_MAX:
            raise MembershipError(f"a configuration has 1..{REPLICAS_MAX} members, not {count}")
        out = []
        for _ in range(count):
            member_id, length = self.take(_MEMBER)
            if length > MEMBER_ADDRESS_BYTES_MAX or self.offset + length > len(self.data):
                raise MembershipError("member address too long or cut short")
            out.append(Member(member_id, self.data[self.offset : self.offset + length]))
            self.offset += length
        if len({member.id for member in out}) != len(out):
            raise MembershipError("a replica id appears twice")
        return tuple(out)

    def end(self) -> None:
        if self.offset != len(self.data):
            raise MembershipError("trailing bytes after the configuration")


def decode(data: bytes) -> Membership:
    reader = _Reader(data)
    epoch, start_op, start_view, highest_id, count = reader.take(_CONFIG_HEAD)
    members = reader.members(count)
    (old_count,) = reader.take(_U16)
    if old_count > REPLICAS_MAX:
        raise MembershipError("too many old members")
    old = tuple(reader.take(_U32)[0] for _ in range(old_count))
    reader.end()
    if max(member.id for member in members) > highest_id:
        raise MembershipError("a member id above highest_id")
    return Membership(
        epoch=epoch, start_op=start_op, members=members, start_view=start_view, old=old, highest_id=highest_id
    )


@dataclass(frozen=True, slots=True)
class Reconfiguration:
    epoch: int  # the epoch it was requested in (the one it ends)
    members: tuple[Member, ...]


def reconfiguration_operation(epoch: int, members: tuple[Member, ...]) -> bytes:
    """The Request operation asking to end `epoch` and start one with `members`, in this order."""
    return b"".join([_OP_PREFIX, _U64.pack(epoch), _U16.pack(len(members)), *_encode_members(members)])


def is_reconfiguration(operation: bytes) -> bool:
    return bool(operation) and operation[0] == RECONFIGURATION_MARK


def parse_reconfiguration(operation: bytes) -> Reconfiguration:
    if not operation.startswith(_OP_PREFIX):
        raise MembershipError("not a reconfiguration operation (unknown prefix or version)")
    reader = _Reader(operation, len(_OP_PREFIX))
    (epoch,) = reader.take(_U64)
    (count,) = reader.take(_U16)
    members = reader.members(count)
    reader.end()
    return Reconfiguration(epoch, members)


def result_bytes(epoch: int) -> bytes:
    """The reply to a reconfiguration: the msgpack map {"epoch": epoch}, written out here because the core
    imports no serialization library (tests/test_protocol_reconfiguration.py checks msgpack reads it back)."""
    if epoch < 0x80:
        number = bytes([epoch])
    else:
        number = b"\xcf" + _U64.pack(epoch)
    return b"\x81\xa5epoch" + number
