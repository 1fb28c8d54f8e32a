"""Log entries on the wire: msgpack arrays in, checked `LogEntry` tuples out.

Theory of operation
-------------------
A log entry is the 6-array ``[view, op_number, client_id, request_number, operation, timestamp]``, so a
256-entry Prepare does not repeat six key names per entry (`zvsr.wire.codec` writes them; this module reads them).
Entries are the bulk of large messages (a 256-entry Prepare, a whole log in DoViewChange), so reading them
is tuned for the valid case: one combined test per entry, with the diagnosis (`_bad_entry`, which names the
first bad part) run only on failure, and `LogEntry` objects built without the dataclass `__init__`
(`_new_entry`).

Two callers, both in `zvsr.wire` (package API, not for use outside it):

- `decode_entries`: the list of entries of one message field, checked as a whole: its length, consecutive
  op numbers ending where the message says, no entry from a view after the message's. The codec's per-kind
  decoders call it with raw 6-arrays (a frame unpacked in one call) or with `LogEntry` objects that
  `entry_hook` already built (a frame unpacked field by field).
- `entry_hook`: msgpack's ``list_hook`` while `zvsr.wire.unpack` streams a big frame. It checks each entry
  on its own (types and ranges) the moment msgpack completes it, so a wrong shape stops the unpacking at the
  first bad entry; how entries relate to each other is left to `decode_entries`.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Final

from zvsr.constants import ID_MAX, OPERATION_BYTES_MAX
from zvsr.protocol.messages import LogEntry
from zvsr.wire.errors import REASON_TOO_LARGE, REASON_WRONG_TYPE, DecodeError, bad_int, inconsistent

# A frozen dataclass's __init__ goes through object.__setattr__ once per field: filling the slots directly is
# ~2.5x faster. Valid only while LogEntry is exactly these six slots with no __post_init__; checked at import.
_ENTRY_SLOTS: Final = ("view", "op_number", "client_id", "request_number", "operation", "timestamp")
assert tuple(f.name for f in fields(LogEntry)) == _ENTRY_SLOTS and not hasattr(LogEntry, "__post_init__")
_object_new = object.__new__
_set_view, _set_op_number, _set_client_id, _set_request_number, _set_operation, _set_timestamp = (
    getattr(LogEntry, name).__set__ for name in _ENTRY_SLOTS
)


def _new_entry(
    view: int, op_number: int, client_id: int, request_number: int, operation: bytes, timestamp: int
) -> LogEntry:
    """LogEntry(view=…, …) without the dataclass __init__; equal in every respect (tests check)."""
    entry: LogEntry = _object_new(LogEntry)
    _set_view(entry, view)
    _set_op_number(entry, op_number)
    _set_client_id(entry, client_id)
    _set_request_number(entry, request_number)
    _set_operation(entry, operation)
    _set_timestamp(entry, timestamp)
    return entry


def decode_entries(
    raw: object, *, name: str, count_max: int, last_op_number: int, view_max: int
) -> tuple[LogEntry, ...]:
    """Log entries numbered consecutively up to `last_op_number`, none from a view after `view_max`."""
    if type(raw) is not list:
        raise DecodeError(REASON_WRONG_TYPE, f"{name} is {type(raw).__name__}, not array")
    count = len(raw)
    if count > count_max:
        raise DecodeError(REASON_TOO_LARGE, f"{name} has {count} entries > {count_max}")
    expected = last_op_number - count + 1
    if count and expected < 1:
        raise inconsistent(f"{name}: {count} entries cannot end at op {last_op_number} (ops start at 1)")
    entries: list[LogEntry] = []
    append = entries.append
    for index, item in enumerate(raw):
        # One combined test for the common, valid case; the diagnosis below runs only on failure.
        if type(item) is list and len(item) == 6:
            view, op_number, client_id, request_number, operation, timestamp = item
            if (
                type(view) is int
                and type(op_number) is int
                and type(client_id) is int
                and type(request_number) is int
                and type(operation) is bytes
                and type(timestamp) is int
                and 0 <= view <= view_max
                and op_number == expected
                and 0 <= client_id <= ID_MAX
                and 0 <= request_number <= ID_MAX
                and len(operation) <= OPERATION_BYTES_MAX
                and 0 <= timestamp <= ID_MAX
            ):
                append(_new_entry(view, op_number, client_id, request_number, operation, timestamp))
                expected += 1
                continue
        elif type(item) is LogEntry:  # from `entry_hook`: types and ranges already checked
            if item.op_number == expected and item.view <= view_max:
                append(item)
                expected += 1
                continue
            item = [item.view, item.op_number, item.client_id, item.request_number, item.operation, item.timestamp]
        raise _bad_entry(item, name=f"{name}[{index}]", expected_op_number=expected, view_max=view_max)
    return tuple(entries)


def _bad_entry(item: object, *, name: str, expected_op_number: int, view_max: int) -> DecodeError:
    if type(item) is not list or len(item) != 6:
        return DecodeError(REASON_WRONG_TYPE, f"{name} is not a 6-array")
    view, op_number, client_id, request_number, operation, timestamp = item
    for part, number in (("view", view), ("op_number", op_number), ("client_id", client_id)):
        if type(number) is not int or not 0 <= number <= ID_MAX:
            return bad_int(f"{name}.{part}", number, ID_MAX)
    if type(request_number) is not int or not 0 <= request_number <= ID_MAX:
        return bad_int(f"{name}.request_number", request_number, ID_MAX)
    if type(operation) is not bytes:
        return DecodeError(REASON_WRONG_TYPE, f"{name}.operation is {type(operation).__name__}, not bin")
    if len(operation) > OPERATION_BYTES_MAX:
        return DecodeError(REASON_TOO_LARGE, f"{name}.operation has {len(operation)} bytes")
    if type(timestamp) is not int or not 0 <= timestamp <= ID_MAX:
        return bad_int(f"{name}.timestamp", timestamp, ID_MAX)
    if op_number != expected_op_number:
        return inconsistent(f"{name}.op_number = {op_number}, expected {expected_op_number}")
    return inconsistent(f"{name}.view = {view} is after the message's view {view_max}")


def entry_hook(item: list[Any]) -> LogEntry:
    """msgpack calls this for every array it completes while streaming (innermost first): only a well-typed
    log entry survives, so nothing nested inside an entry outlives its first check."""
    if len(item) == 6:
        view, op_number, client_id, request_number, operation, timestamp = item
        if (
            type(view) is int
            and type(op_number) is int
            and type(client_id) is int
            and type(request_number) is int
            and type(operation) is bytes
            and type(timestamp) is int
            and 0 <= view <= ID_MAX
            and 0 <= op_number <= ID_MAX
            and 0 <= client_id <= ID_MAX
            and 0 <= request_number <= ID_MAX
            and len(operation) <= OPERATION_BYTES_MAX
            and 0 <= timestamp <= ID_MAX
        ):
            return _new_entry(view, op_number, client_id, request_number, operation, timestamp)
    # The same diagnosis as the one-call path; op_number is checked against its neighbours later.
    raise _bad_entry(item, name="entry", expected_op_number=item[1] if len(item) == 6 else 0, view_max=ID_MAX)
