"""Batches on the client port: many client messages in one ZeroMQ message, between a proxy and a replica.

Theory of operation
-------------------
Through a proxy, every request costs a send and a receive at each end of the proxy ↔ primary link, and those
calls — not the protocol — are what a Python process spends most of its time on under load (the bench's
profiles: about 40 % of the primary's and the proxy's samples in ``Socket.send``). So a proxy sends whatever
requests it has for one replica in a wake-up as one `RequestBatch`, and a replica answers every request of a
batch sender that it answers in one step as one `ReplyBatch`. Nothing else changes: each element is the exact
encoding of one message of `zvsr.wire.codec` — a Request in a RequestBatch; a Reply, Redirect or Error in a
ReplyBatch — decoded (and validated) by the usual decoder, and each gets its usual treatment.

======  ============  =========================================================================================
type    message       fields
======  ============  =========================================================================================
26      RequestBatch  ``{"type": 26, "requests": [bin, …]}``: 1..`BATCH_MESSAGES_MAX` encoded Requests
27      ReplyBatch    ``{"type": 27, "replies": [bin, …]}``: 1..`BATCH_MESSAGES_MAX` encoded Reply/Redirect/Error
======  ============  =========================================================================================

A batch is encoded canonically, ``type`` first, and is at most `CLIENT_MESSAGE_BYTES_MAX` (RequestBatch, the
client port's MAXMSGSIZE) or `CLIENT_REPLY_BYTES_MAX` (ReplyBatch) bytes: a sender puts what does not fit into
the next batch, and a message too large for any batch goes alone, unbatched. Receivers recognise a batch by its
first bytes (`is_request_batch`, `is_reply_batch`); anything else is a single message. A replica answers in
batches only a sender that sent it a batch, so clients that never batch never see one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr.constants import BATCH_MESSAGES_MAX
from zvsr.wire.codec import (
    REASON_INCONSISTENT,
    REASON_MISSING_FIELD,
    REASON_NOT_A_MAP,
    REASON_NOT_MSGPACK,
    REASON_TOO_LARGE,
    REASON_UNKNOWN_FIELD,
    REASON_WRONG_TYPE,
    DecodeError,
)

TYPE_REQUEST_BATCH: Final = 26
TYPE_REPLY_BATCH: Final = 27
# msgpack of {"type": 26, ...} and {"type": 27, ...}: a 2-entry map, key "type", then the number.
_REQUEST_PREFIX: Final = b"\x82\xa4type\x1a"
_REPLY_PREFIX: Final = b"\x82\xa4type\x1b"
# Bytes a batch adds around its elements, at most: the map, its keys, and array / bin headers.
_BATCH_OVERHEAD: Final = 32
_ELEMENT_OVERHEAD: Final = 5


def is_request_batch(data: bytes) -> bool:
    return data.startswith(_REQUEST_PREFIX)


def is_reply_batch(data: bytes) -> bool:
    return data.startswith(_REPLY_PREFIX)


def encode_request_batch(requests: Sequence[bytes]) -> bytes:
    assert 1 <= len(requests) <= BATCH_MESSAGES_MAX
    data: bytes = msgpack.packb({"type": TYPE_REQUEST_BATCH, "requests": list(requests)}, use_bin_type=True)
    return data


def encode_reply_batch(replies: Sequence[bytes]) -> bytes:
    assert 1 <= len(replies) <= BATCH_MESSAGES_MAX
    data: bytes = msgpack.packb({"type": TYPE_REPLY_BATCH, "replies": list(replies)}, use_bin_type=True)
    return data


def decode_request_batch(data: bytes) -> list[bytes]:
    return _decode(data, TYPE_REQUEST_BATCH, "requests")


def decode_reply_batch(data: bytes) -> list[bytes]:
    return _decode(data, TYPE_REPLY_BATCH, "replies")


def _decode(data: bytes, type_number: int, field: str) -> list[bytes]:
    try:
        value: Any = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as error:  # msgpack raises many kinds on garbage
        raise DecodeError(REASON_NOT_MSGPACK, f"batch: {type(error).__name__}") from error
    if type(value) is not dict:
        raise DecodeError(REASON_NOT_A_MAP, "a batch is a map")
    keys = set(value)
    if keys != {"type", field}:
        missing = {"type", field} - keys
        if missing:
            raise DecodeError(REASON_MISSING_FIELD, f"batch lacks {', '.join(sorted(missing))}")
        raise DecodeError(REASON_UNKNOWN_FIELD, f"batch has {len(keys - {'type', field})} unknown key(s)")
    if type(value["type"]) is not int or value["type"] != type_number:
        # Never the value's repr: a hostile value can nest deeper than repr can recurse.
        raise DecodeError(REASON_INCONSISTENT, f"batch type is not {type_number}")
    elements = value[field]
    if type(elements) is not list or not all(type(e) is bytes for e in elements):
        raise DecodeError(REASON_WRONG_TYPE, f"{field} must be an array of bin")
    if not 1 <= len(elements) <= BATCH_MESSAGES_MAX:
        raise DecodeError(REASON_TOO_LARGE, f"{field} has {len(elements)} elements, not 1..{BATCH_MESSAGES_MAX}")
    return elements


def batches(messages: Sequence[bytes], size_max: int) -> Iterator[tuple[bool, list[bytes]]]:
    """Split `messages` into what to send: (True, elements) for a batch, (False, [message]) for one message
    sent alone (a lone message, or one too large for a batch of `size_max` bytes). Order is kept."""
    group: list[bytes] = []
    size = _BATCH_OVERHEAD
    for message in messages:
        cost = len(message) + _ELEMENT_OVERHEAD
        if _BATCH_OVERHEAD + cost > size_max:  # never fits a batch
            if group:
                yield _flush(group)
                group, size = [], _BATCH_OVERHEAD
            yield False, [message]
            continue
        if group and (size + cost > size_max or len(group) == BATCH_MESSAGES_MAX):
            yield _flush(group)
            group, size = [], _BATCH_OVERHEAD
        group.append(message)
        size += cost
    if group:
        yield _flush(group)


def _flush(group: list[bytes]) -> tuple[bool, list[bytes]]:
    return (len(group) > 1, group)
