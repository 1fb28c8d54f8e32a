"""Answers a replica gives outside the VR protocol: the status query, and the reply to unreadable input.

Theory of operation
-------------------
A replica's client port speaks the client protocol of `zvsr.wire.codec` (Request in; Reply, Redirect, Error
out). Two more shapes share that port, numbered after the protocol's kinds (replica 1..10, client 20..23) so
they can never be mistaken for one:

======  ===============  ==================================================================================
type    message          fields
======  ===============  ==================================================================================
30      StatusQuery      none: exactly ``{"type": 30}``
31      Status           ``type`` plus the fields of `zvsr.runtime.node.ReplicaNode.status` (see there):
                         replica, cluster, epoch, status, view, role, primary, op_number, commit_number,
                         last_normal_view, state_transfer, start, last_heard_ms, counters, traffic,
                         uptime_s, endpoints, data_dir
23      Error (bare)     ``{"type": 23, "code": "bad_request", "message": str}``
======  ===============  ==================================================================================

The status answer is diagnostics, not protocol: nothing in it is an acknowledgement, it may be read at any
moment, and its fields may grow (readers must ignore keys they do not know). Map keys are str, except in
``last_heard_ms``, which maps a peer's replica index (int) to the age in ms of the last valid message from it
(nil if none yet); msgpack readers need ``strict_map_key=False`` for it.

Unreadable input on the client port. A client that sent something other than a Request or a StatusQuery gets
an answer rather than silence, so a REQ socket is never left waiting:
- if the payload is a msgpack map whose ``client_id`` and ``request_number`` are valid numbers, a full
  `Error` (type 23, every field) with code ``bad_request`` for that request, which every client decodes;
- otherwise a *bare* Error: type 23 with only ``code`` (always ``bad_request``) and ``message`` — no view,
  client_id or request_number, because there is no request to name. `decode_client_reply` refuses it
  (missing fields): to a client it is "the replica could not read what you sent", and it can never be taken
  for the answer to one of its requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr.constants import CLIENT_MESSAGE_BYTES_MAX, ERROR_MESSAGE_CHARS_MAX, ID_MAX, STATUS_ANSWER_BYTES_MAX
from zvsr.protocol.messages import ERROR_BAD_REQUEST
from zvsr.wire.codec import (
    REASON_NOT_A_MAP,
    REASON_NOT_MSGPACK,
    REASON_TOO_LARGE,
    REASON_UNEXPECTED_TYPE,
    TYPE_ERROR,
    DecodeError,
)

TYPE_STATUS_QUERY: Final = 30
TYPE_STATUS_ANSWER: Final = 31

_STATUS_QUERY: Final = {"type": TYPE_STATUS_QUERY}


def encode_status_query() -> bytes:
    data: bytes = msgpack.packb(_STATUS_QUERY, use_bin_type=True)
    return data


def is_status_query(data: bytes) -> bool:
    """Whether `data` is exactly the map ``{"type": 30}`` (any valid msgpack spelling of it)."""
    if len(data) > CLIENT_MESSAGE_BYTES_MAX:
        return False
    value = _unpack_or_none(data)
    return type(value) is dict and value == _STATUS_QUERY and type(value["type"]) is int


def encode_status(status: Mapping[str, Any]) -> bytes:
    """``{"type": 31, **status}``; `status` holds only msgpack-native values."""
    data: bytes = msgpack.packb({"type": TYPE_STATUS_ANSWER, **status}, use_bin_type=True)
    return data


def decode_status(data: bytes) -> dict[str, Any]:
    """A status answer as a dict (with its ``type``); DecodeError if `data` is not one."""
    if len(data) > STATUS_ANSWER_BYTES_MAX:
        raise DecodeError(REASON_TOO_LARGE, f"status answer of {len(data)} bytes > {STATUS_ANSWER_BYTES_MAX}")
    value = _unpack_or_none(data, strict_map_key=False)
    if value is None:
        raise DecodeError(REASON_NOT_MSGPACK, "status answer is not one msgpack value")
    if type(value) is not dict:
        raise DecodeError(REASON_NOT_A_MAP, f"status answer is {type(value).__name__}")
    if value.get("type") != TYPE_STATUS_ANSWER or type(value.get("type")) is not int:
        raise DecodeError(REASON_UNEXPECTED_TYPE, f"not a status answer: type {value.get('type')!r}")
    return value


def encode_bare_error(message: str) -> bytes:
    """The bare ``bad_request`` Error for input that names no request (see the module docstring)."""
    data: bytes = msgpack.packb(
        {"type": TYPE_ERROR, "code": ERROR_BAD_REQUEST, "message": _clip(message)}, use_bin_type=True
    )
    return data


def request_ids(data: bytes) -> tuple[int, int] | None:
    """(client_id, request_number) of an unreadable request, if it names them validly; else None."""
    if len(data) > CLIENT_MESSAGE_BYTES_MAX:
        return None
    value = _unpack_or_none(data)
    if type(value) is not dict:
        return None
    client_id, request_number = value.get("client_id"), value.get("request_number")
    if type(client_id) is int and type(request_number) is int:
        if 0 <= client_id <= ID_MAX and 0 <= request_number <= ID_MAX:
            return client_id, request_number
    return None


def clip_message(message: str) -> str:
    """An error message cut to ERROR_MESSAGE_CHARS_MAX characters (what the codec lets through)."""
    return _clip(message)


def _clip(message: str) -> str:
    if len(message) > ERROR_MESSAGE_CHARS_MAX:
        message = message[: ERROR_MESSAGE_CHARS_MAX - 3] + "..."
    # Lone surrogates cannot be encoded as UTF-8 (msgpack str): replace them.
    return message.encode("utf-8", "replace").decode("utf-8")


def _unpack_or_none(data: bytes, *, strict_map_key: bool = True) -> Any:
    size = len(data)
    try:
        # Every element takes at least one byte, so the input size bounds every container honestly.
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=strict_map_key,
            max_bin_len=size,
            max_str_len=size,
            max_array_len=size,
            max_map_len=size,
            max_ext_len=0,
        )
    except Exception:  # ValueError subclasses, UnicodeDecodeError, TypeError (unhashable key), StackError…
        return None
