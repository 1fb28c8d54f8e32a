"""Replica ids and where to find them: the runtime's side of the configuration (VR Revisited §7).

Theory of operation
-------------------
The core's configuration (`zvsr.protocol.membership.Membership`) lists each member's id and an *address*: bytes
the core never reads. The runtime puts there the member's endpoints, so that every replica, proxy and operator
tool learns where a new member listens from the reconfiguration itself (it goes through the log) rather than
from a file that each host would have to be given:

    Member.address = msgpack map, keys in this order, values str (ZeroMQ endpoints):
                     {"peer": …, "heartbeat": …, "client": …[, "watch": …]}

the same keys as a cluster file's ``[[replica]]`` table (``watch`` only when the replica publishes one). The
encoding is canonical (fixed key order, `encode_address`), so encoding the same endpoints twice gives the same
bytes: a tool that rebuilds a configuration from the endpoints it was shown keeps a retained member's address
byte for byte, which the core's "configuration unchanged" check compares. `decode_address` checks the shape and
the size, so a damaged or foreign address is an `AddressError`, never a half-read endpoint.

The first configuration (epoch ``[cluster] epoch``, replicas 0..initial_replicas-1) comes from the cluster file
(`initial_membership`): every replica replays its log from there, so it must be the same everywhere. Later
ones come from the replicas' durable state; `describe` turns one into the plain map the status query shows
(ids, endpoints, the exact encoding in hex for tools that build the next one), and `from_status` reads it back.

`AddressBook` is where a node looks up a replica id's endpoints: the cluster file's entries, overridden by every
configuration the node has been in or been told of (a later epoch's entry wins), bounded in size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr.constants import MEMBER_ADDRESS_BYTES_MAX, NODE_ADDRESS_BOOK_MAX
from zvsr.protocol import membership as membership_codec
from zvsr.protocol.membership import Member, Membership, MembershipError
from zvsr.runtime.cluster_config import ClusterConfig, ReplicaAddress

ADDRESS_KEYS: Final = ("peer", "heartbeat", "client", "watch")
_REQUIRED: Final = frozenset({"peer", "heartbeat", "client"})


class AddressError(ValueError):
    """Bytes that are not a member address of this encoding."""


def encode_address(address: ReplicaAddress) -> bytes:
    """The canonical `Member.address` of a replica listening at `address`."""
    document = {"peer": address.peer, "heartbeat": address.heartbeat, "client": address.client}
    if address.watch is not None:
        document["watch"] = address.watch
    data: bytes = msgpack.packb(document, use_bin_type=True)
    if len(data) > MEMBER_ADDRESS_BYTES_MAX:
        raise AddressError(f"endpoints of {len(data)} bytes encoded; at most {MEMBER_ADDRESS_BYTES_MAX}")
    return data


def decode_address(data: bytes) -> ReplicaAddress:
    if not data:
        raise AddressError("no address")
    if len(data) > MEMBER_ADDRESS_BYTES_MAX:
        raise AddressError(f"address of {len(data)} bytes > {MEMBER_ADDRESS_BYTES_MAX}")
    size = len(data)
    try:
        document = msgpack.unpackb(
            data, raw=False, max_str_len=size, max_bin_len=0, max_array_len=0, max_map_len=len(ADDRESS_KEYS)
        )
    except Exception as error:  # msgpack raises a variety of errors on garbage
        raise AddressError(f"not a msgpack map of endpoints ({type(error).__name__})") from error
    if not isinstance(document, dict) or not _REQUIRED <= set(document) <= set(ADDRESS_KEYS):
        raise AddressError("an address is a map with peer, heartbeat, client (and optional watch)")
    for key, value in document.items():
        if not isinstance(value, str) or "://" not in value:
            raise AddressError(f"{key} is not a ZeroMQ endpoint: {value!r:.80}")
    return ReplicaAddress(
        peer=document["peer"],
        heartbeat=document["heartbeat"],
        client=document["client"],
        watch=document.get("watch"),
    )


def address_or_none(data: bytes) -> ReplicaAddress | None:
    try:
        return decode_address(data)
    except AddressError:
        return None


def initial_membership(config: ClusterConfig) -> Membership:
    """The cluster's first configuration: replicas 0..initial_replicas-1 in epoch `config.epoch`, with the
    endpoints the file gives them (none for one it no longer lists)."""
    addresses = []
    for replica in range(config.initial_count):
        address = config.address_of(replica)
        addresses.append(b"" if address is None else encode_address(address))
    return Membership.initial(config.initial_count, epoch=config.epoch, addresses=tuple(addresses))


def describe(configuration: Membership) -> dict[str, Any]:
    """A configuration as the status query shows it (msgpack and JSON friendly: no bytes)."""
    members = []
    for member in configuration.members:
        entry: dict[str, Any] = {"id": member.id}
        address = address_or_none(member.address)
        if address is not None:
            entry.update({"peer": address.peer, "heartbeat": address.heartbeat, "client": address.client})
            if address.watch is not None:
                entry["watch"] = address.watch
        members.append(entry)
    return {
        "epoch": configuration.epoch,
        "start_op": configuration.start_op,
        "start_view": configuration.start_view,
        "members": members,
        "old": list(configuration.old),
        "highest_id": configuration.highest_id,
        "encoded": configuration.encode().hex(),  # exact, for tools that build the next configuration
    }


def from_status(document: Mapping[str, Any]) -> Membership | None:
    """The configuration in a status answer's ``membership`` (`describe`), or None if absent or unreadable."""
    encoded = document.get("membership")
    encoded = encoded.get("encoded") if isinstance(encoded, Mapping) else None
    if not isinstance(encoded, str):
        return None
    try:
        return membership_codec.decode(bytes.fromhex(encoded))
    except (ValueError, MembershipError):
        return None


def member_addresses(configuration: Membership) -> dict[int, ReplicaAddress]:
    """The endpoints of each member whose address reads."""
    out = {}
    for member in configuration.members:
        address = address_or_none(member.address)
        if address is not None:
            out[member.id] = address
    return out


def member(replica: int, address: ReplicaAddress) -> Member:
    return Member(replica, encode_address(address))


class AddressBook:
    """Replica id -> endpoints: the cluster file's, then those of each configuration learnt (`learn`), a later
    epoch's entry over an earlier one's. Bounded (`NODE_ADDRESS_BOOK_MAX` ids): beyond, new ids are not kept
    (counted by the caller through `learn`'s answer)."""

    def __init__(self, config: ClusterConfig) -> None:
        self._entries: dict[int, tuple[int, ReplicaAddress]] = {}
        for replica, address in zip(config.ids, config.replicas, strict=True):
            self._entries[replica] = (-1, address)  # the file is older than any epoch

    def get(self, replica: int) -> ReplicaAddress | None:
        entry = self._entries.get(replica)
        return None if entry is None else entry[1]

    def learn(self, configuration: Membership) -> bool:
        """Take the members' endpoints; False if some were left out (the book is full)."""
        complete = True
        for replica, address in member_addresses(configuration).items():
            known = self._entries.get(replica)
            if known is not None and known[0] > configuration.epoch:
                continue
            if known is None and len(self._entries) >= NODE_ADDRESS_BOOK_MAX:
                complete = False
                continue
            self._entries[replica] = (configuration.epoch, address)
        return complete


def parse_address(text: str) -> ReplicaAddress:
    """A replica's endpoints as an operator types them (`zvsr member add --address`, `zvsr node --address`):

    - ``tcp://HOST:PORT``: four consecutive ports, as `zvsr cluster up` lays a replica out — peer PORT,
      heartbeat PORT+1, client PORT+2, watch PORT+3;
    - ``peer=EP,heartbeat=EP,client=EP[,watch=EP]``: each endpoint named.

    ValueError with the reason for anything else."""
    text = text.strip()
    if "=" in text:
        fields: dict[str, str] = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if key not in ADDRESS_KEYS:
                raise ValueError(f"unknown endpoint name {key!r}: use {', '.join(ADDRESS_KEYS)}")
            if key in fields:
                raise ValueError(f"{key} given twice")
            if "://" not in value:
                raise ValueError(f"{key} is not a ZeroMQ endpoint like tcp://host:port: {value!r}")
            fields[key] = value
        missing = _REQUIRED - set(fields)
        if missing:
            raise ValueError(f"missing {', '.join(sorted(missing))} (watch is optional)")
        return ReplicaAddress(
            peer=fields["peer"], heartbeat=fields["heartbeat"], client=fields["client"], watch=fields.get("watch")
        )
    transport, _, rest = text.partition("://")
    host, _, port = rest.rpartition(":")
    if transport != "tcp" or not host or not port.isdigit() or not 1 <= int(port) <= 65535 - 3:
        raise ValueError(
            f"expected tcp://HOST:PORT (peer PORT, heartbeat +1, client +2, watch +3) or "
            f"peer=EP,heartbeat=EP,client=EP[,watch=EP], got {text!r}"
        )
    base = int(port)
    peer, heartbeat, client, watch = (f"tcp://{host}:{base + offset}" for offset in range(4))
    return ReplicaAddress(peer=peer, heartbeat=heartbeat, client=client, watch=watch)
