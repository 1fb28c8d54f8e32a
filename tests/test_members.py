"""Replica addresses in configurations (zvsr.runtime.members): the encoding, the operator's spellings, the book."""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest

from zvsr.constants import NODE_ADDRESS_BOOK_MAX
from zvsr.protocol.membership import Member, Membership
from zvsr.runtime.cluster_config import ReplicaAddress, local_cluster
from zvsr.runtime.members import (
    AddressBook,
    AddressError,
    decode_address,
    describe,
    encode_address,
    from_status,
    initial_membership,
    member,
    parse_address,
)

A = ReplicaAddress(peer="tcp://h:1", heartbeat="tcp://h:2", client="tcp://h:3", watch="tcp://h:4")
B = ReplicaAddress(peer="tcp://k:1", heartbeat="tcp://k:2", client="tcp://k:3")


def test_an_address_round_trips_and_its_encoding_is_canonical() -> None:
    """The same endpoints always encode to the same bytes (a rebuilt configuration keeps a member's address
    byte for byte), keys in the cluster file's order, watch only when there is one."""
    assert decode_address(encode_address(A)) == A and decode_address(encode_address(B)) == B
    assert encode_address(A) == encode_address(ReplicaAddress(**{k: getattr(A, k) for k in A.__slots__}))
    assert list(msgpack.unpackb(encode_address(A))) == ["peer", "heartbeat", "client", "watch"]
    assert "watch" not in msgpack.unpackb(encode_address(B))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"peer": "tcp://a:1", "heartbeat": "tcp://a:2"}),
        msgpack.packb({"peer": "tcp://a:1", "heartbeat": "tcp://a:2", "client": 3}),
        msgpack.packb({"peer": "tcp://a:1", "heartbeat": "tcp://a:2", "client": "nowhere"}),
        msgpack.packb({"peer": "tcp://a:1", "heartbeat": "tcp://a:2", "client": "tcp://a:3", "x": "tcp://a:4"}),
        b"\x84" + b"\xa4peer" * 2000,
    ],
)
def test_a_damaged_or_foreign_address_is_an_error_never_half_an_endpoint(data: bytes) -> None:
    with pytest.raises(AddressError):
        decode_address(data)


def test_an_operator_gives_endpoints_as_a_base_port_or_by_name() -> None:
    assert parse_address("tcp://10.0.0.5:7750") == ReplicaAddress(
        peer="tcp://10.0.0.5:7750",
        heartbeat="tcp://10.0.0.5:7751",
        client="tcp://10.0.0.5:7752",
        watch="tcp://10.0.0.5:7753",
    )
    assert parse_address("peer=tcp://k:1, heartbeat=tcp://k:2,client=tcp://k:3") == B
    for bad, why in [
        ("10.0.0.5:7750", "expected tcp://HOST:PORT"),
        ("tcp://h:65534", "expected tcp://HOST:PORT"),
        ("peer=tcp://k:1,client=tcp://k:3", "missing heartbeat"),
        ("peer=tcp://k:1,heartbeat=tcp://k:2,client=tcp://k:3,peer=tcp://k:9", "peer given twice"),
        ("peer=tcp://k:1,heartbeat=k:2,client=tcp://k:3", "heartbeat is not a ZeroMQ endpoint"),
        ("peer=tcp://k:1,heartbeat=tcp://k:2,client=tcp://k:3,metrics=tcp://k:4", "unknown endpoint name"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_address(bad)


def test_the_first_configuration_comes_from_the_file_and_reads_back_from_a_status_answer() -> None:
    config = local_cluster(replicas=3, base_port=9000)
    first = initial_membership(config)
    assert first.ids == (0, 1, 2) and first.epoch == 0 and first.start_view == 0
    assert [decode_address(m.address) for m in first.members] == list(config.replicas)
    shown = describe(first)
    assert shown["members"][1]["client"] == config.replicas[1].client and shown["epoch"] == 0
    assert from_status({"membership": shown}) == first
    assert from_status({"membership": {**shown, "encoded": "zz"}}) is None
    assert from_status({}) is None


def test_the_book_takes_a_later_epochs_endpoints_and_is_bounded() -> None:
    config = local_cluster(replicas=3, base_port=9000)
    book = AddressBook(config)
    assert book.get(1) == config.replicas[1] and book.get(7) is None
    moved = Membership(epoch=2, start_op=9, start_view=3, members=(member(1, A), member(7, B)), highest_id=7)
    assert book.learn(moved) and book.get(1) == A and book.get(7) == B
    older = Membership(epoch=1, start_op=5, start_view=2, members=(member(1, B),), highest_id=7)
    assert book.learn(older) and book.get(1) == A, "an earlier epoch's endpoints never override a later one's"
    unreadable = Membership(epoch=3, start_op=9, members=(Member(8, b"junk"),), highest_id=8)
    assert book.learn(unreadable) and book.get(8) is None
    many = [
        Membership(epoch=4, start_op=9, members=(member(100 + i, B),), highest_id=100 + i)
        for i in range(NODE_ADDRESS_BOOK_MAX)
    ]
    assert not all(book.learn(one) for one in many), "the book is full before all of them"
    assert book.get(100) == B and book.get(100 + NODE_ADDRESS_BOOK_MAX - 1) is None
