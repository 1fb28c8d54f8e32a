"""Batches between a proxy and a replica (zvsr.wire.batch): many requests in one message, many answers in one.

Batching is transport, not protocol: each element is handled exactly as if it had come alone (validated,
deduplicated by the client table, answered), and only a sender that batches gets batched answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream
import pytest
from local_cluster import LocalCluster, make_config, operation

from zvsr.constants import BATCH_MESSAGES_MAX, CLIENT_MESSAGE_BYTES_MAX
from zvsr.protocol.messages import Error, Reply, Request
from zvsr.wire.batch import (
    batches,
    decode_reply_batch,
    decode_request_batch,
    encode_reply_batch,
    encode_request_batch,
    is_reply_batch,
    is_request_batch,
)
from zvsr.wire.codec import DecodeError, decode_client_reply, encode

# --- the format ---------------------------------------------------------------------------------------------


def test_a_batch_round_trips_and_is_recognised_by_its_first_bytes() -> None:
    elements = [encode(Request(client_id=n, request_number=1, operation=b"op")) for n in range(3)]
    data = encode_request_batch(elements)
    assert is_request_batch(data) and not is_reply_batch(data)
    assert decode_request_batch(data) == elements
    replies = encode_reply_batch([b"x", b"y"])
    assert is_reply_batch(replies) and decode_reply_batch(replies) == [b"x", b"y"]
    assert not is_request_batch(elements[0])  # a single Request is not a batch


@pytest.mark.parametrize(
    "value",
    [
        {"type": 26},
        {"type": 26, "requests": []},
        {"type": 26, "requests": ["not bin"]},
        {"type": 26, "requests": [b"x"], "extra": 1},
        {"type": 26, "requests": [b"x"] * (BATCH_MESSAGES_MAX + 1)},
        [26, [b"x"]],
    ],
)
def test_malformed_batches_raise_decode_error(value: object) -> None:
    with pytest.raises(DecodeError):
        decode_request_batch(msgpack.packb(value, use_bin_type=True))


def test_splitting_keeps_order_and_bounds_and_sends_oversized_messages_alone() -> None:
    small = [b"s%03d" % n for n in range(600)]
    sent = [(batched, group) for batched, group in batches(small, CLIENT_MESSAGE_BYTES_MAX)]
    assert [m for _, group in sent for m in group] == small
    assert all(batched and len(group) <= BATCH_MESSAGES_MAX for batched, group in sent)
    assert all(len(encode_request_batch(group)) <= CLIENT_MESSAGE_BYTES_MAX for _, group in sent)
    big = b"b" * (CLIENT_MESSAGE_BYTES_MAX - 10)
    mixed = list(batches([b"a", big, b"c", b"d"], CLIENT_MESSAGE_BYTES_MAX))
    assert mixed == [(False, [b"a"]), (False, [big]), (True, [b"c", b"d"])]


# --- at a replica -------------------------------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    local = LocalCluster(make_config())
    try:
        yield local.start()
    finally:
        local.close()


@pytest.mark.timeout(30)
def test_a_request_batch_is_answered_with_reply_batches_each_request_once(cluster: LocalCluster) -> None:
    """Ten puts and a duplicate of one of them in one batch: ten executions, every request answered once in
    ReplyBatches, the duplicate from the cache (or not at all while in progress)."""
    cluster.wait_status(0, "primary", lambda s: s["role"] == "primary" and s["status"] == "normal")
    dealer = cluster.client(0)
    requests = [Request(client_id=100 + n, request_number=1, operation=operation("incr", "n")) for n in range(10)]
    wanted = {(r.client_id, r.request_number) for r in requests}
    answers: dict[tuple[int, int], Reply] = {}
    deadline = time.monotonic() + 15
    while wanted - answers.keys() and time.monotonic() < deadline:
        dealer.send(encode_request_batch([encode(r) for r in requests] + [encode(requests[3])]))
        while dealer.poll(300):
            data = dealer.recv()
            assert is_reply_batch(data), "a batch sender is answered in batches"
            for element in decode_reply_batch(data):
                reply = decode_client_reply(element)
                if isinstance(reply, Reply):
                    answers[(reply.client_id, reply.request_number)] = reply
    assert answers.keys() == wanted
    results = sorted(msgpack.unpackb(reply.result) for reply in answers.values())
    assert results == list(range(1, 11))  # each incr executed exactly once, the duplicate never
    status = cluster.status(0)
    assert status["commit_number"] == 10 and status["counters"]["client: request batches"] >= 1


@pytest.mark.timeout(30)
def test_a_bad_element_gets_its_own_error_and_the_rest_of_the_batch_runs(cluster: LocalCluster) -> None:
    cluster.wait_status(0, "primary", lambda s: s["role"] == "primary" and s["status"] == "normal")
    dealer = cluster.client(0)
    good = Request(client_id=7, request_number=1, operation=operation("put", "k", value=1))
    bad = msgpack.packb({"type": 20, "client_id": 8, "request_number": 1, "operation": "not bin"})
    dealer.send(encode_request_batch([bad, encode(good)]))
    seen: list[object] = []
    deadline = time.monotonic() + 10
    while not any(isinstance(r, Reply) for r in seen) and time.monotonic() < deadline:
        if dealer.poll(300):
            data = dealer.recv()
            for element in decode_reply_batch(data) if is_reply_batch(data) else [data]:
                seen.append(decode_client_reply(element))
    errors = [r for r in seen if isinstance(r, Error)]
    assert errors and errors[0].client_id == 8 and errors[0].code == "bad_request"
    assert any(isinstance(r, Reply) and r.client_id == 7 for r in seen)


@pytest.mark.timeout(30)
def test_a_client_that_never_batches_never_gets_a_batch(cluster: LocalCluster) -> None:
    reply = cluster.call(0, Request(client_id=9, request_number=1, operation=operation("get", "x")))
    assert isinstance(reply, Reply)
