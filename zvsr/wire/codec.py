"""The wire codec: zvsr messages ⇄ msgpack bytes, validating everything on the way in.

Theory of operation
-------------------
Every message is one msgpack map. Key ``"type"`` holds a small unsigned integer naming the message class (table
below); every other key is a dataclass field of that class, spelled exactly as the field. Bytes fields
(``operation``, ``result``) are msgpack *bin*, strings (``code``, ``message``) are msgpack *str*, numbers are
msgpack unsigned ints, ``None`` is nil. A log entry is the 6-array ``[view, op_number, client_id, request_number,
operation, timestamp]``, so a 256-entry Prepare does not repeat six key names per entry. The encoder writes
``"type"`` first and then the fields in dataclass order, so equal messages encode to identical bytes (golden test
vectors rely on this).

======  ====================  ===============================================================================
type    message               fields after ``type`` (in encoding order)
======  ====================  ===============================================================================
1       Prepare               cluster, epoch, view, replica, op_number, commit_number, entries, read_round
2       PrepareOk             cluster, epoch, view, replica, op_number, read_round
3       Commit                cluster, epoch, view, replica, commit_number, op_number, read_round
4       StartViewChange       cluster, epoch, view, replica
5       DoViewChange          cluster, epoch, view, replica, last_normal_view, op_number, commit_number, log
6       StartView             cluster, epoch, view, replica, op_number, commit_number, log
7       GetState              cluster, epoch, view, replica, op_number
8       NewState              cluster, epoch, view, replica, op_number, commit_number, entries
9       Recovery              cluster, epoch, view, replica, nonce
10      RecoveryResponse      cluster, epoch, view, replica, nonce, log, op_number, commit_number
11      GetSnapshot           cluster, epoch, view, replica, snapshot_op, offset
12      SnapshotChunk         cluster, epoch, view, replica, snapshot_op, size, checksum, offset, data
13      StartEpoch            cluster, epoch, view, replica, op_number, membership
14      EpochStarted          cluster, epoch, view, replica
15      StartViewChangeProbe  cluster, epoch, view, replica
20      Request               client_id, request_number, operation
21      Reply                 view, client_id, request_number, result
22      Redirect              view, primary, client_id, request_number
23      Error                 view, client_id, request_number, code, message
======  ====================  ===============================================================================

``replica`` is the sender's replica id (`zvsr.protocol.membership`: stable, never reused; 0..n-1 until the first
reconfiguration), an unsigned 32-bit number. Replica kinds are 1..19 and client kinds 20..23, so one glance at a
captured frame says which port it belongs on. The numbers are part of the wire format: never renumber, only add.

Decoding is the trust boundary (ARCHITECTURE §4, STYLE rule 6): nothing reaches the protocol core until it is
a well-formed, internally consistent frozen dataclass, and any other input is one `DecodeError` with a
countable reason (`zvsr.wire.errors` lists them; this module re-exports the errors and reasons, and callers
import them from here or from `zvsr.wire`). A decode is three steps, one module each:

1. `zvsr.wire.unpack`: bytes → one msgpack map, with every size bounded before it is allocated (hostile
   length prefixes and hostile content alike; frames above `STREAM_DECODE_ABOVE` are unpacked field by
   field);
2. here: a dispatch on the type number to a short per-kind decoder, after one key-set check, and an inline
   check per field;
3. `zvsr.wire.entries`: the log entries of a Prepare, DoViewChange, StartView, NewState or RecoveryResponse.

Performance: this runs for every message on the hot path. Encoding builds one dict per message with short
per-class functions (no reflection) and packs it with a reused `msgpack.Packer` (one per thread: msgpack's
maintainers document that a Packer is not safe to share between threads). The four header fields of replica
messages are written by one `_encode_header` and checked by one `_decode_header`, each a single expression
rather than a loop over field names, which measured ~3x slower. Decoding is one `msgpack.unpackb` call, a dict
dispatch on the type number, one key-set comparison there for every kind, and an inline check per field. Log
entries, the bulk of large messages, are built without the dataclass `__init__` (see `zvsr.wire.entries`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import fields
from typing import Any, Final, TypeVar

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr.constants import (
    CLIENT_MESSAGE_BYTES_MAX,
    ERROR_MESSAGE_CHARS_MAX,
    ID_MAX,
    LOG_ENTRIES_MAX,
    MEMBERSHIP_BYTES_MAX,
    MESSAGE_BYTES_MAX,
    NEW_STATE_ENTRIES_MAX,
    OPERATION_BYTES_MAX,
    PREPARE_ENTRIES_MAX,
    REPLICA_ID_MAX,
    RESULT_BYTES_MAX,
    SNAPSHOT_BYTES_MAX,
    SNAPSHOT_CHUNK_BYTES,
)
from zvsr.protocol.messages import (
    ERROR_CODES,
    ClientReply,
    Commit,
    DoViewChange,
    EpochStarted,
    Error,
    GetSnapshot,
    GetState,
    LogEntry,
    NewState,
    Prepare,
    PrepareOk,
    Recovery,
    RecoveryResponse,
    Redirect,
    ReplicaMessage,
    Reply,
    Request,
    SnapshotChunk,
    StartEpoch,
    StartView,
    StartViewChange,
    StartViewChangeProbe,
)
from zvsr.protocol.snapshots import CHECKSUM_BYTES
from zvsr.wire.entries import decode_entries
from zvsr.wire.errors import DECODE_ERROR_REASONS as DECODE_ERROR_REASONS
from zvsr.wire.errors import REASON_INCONSISTENT as REASON_INCONSISTENT
from zvsr.wire.errors import REASON_MISSING_FIELD as REASON_MISSING_FIELD
from zvsr.wire.errors import REASON_NOT_A_MAP as REASON_NOT_A_MAP
from zvsr.wire.errors import REASON_NOT_MSGPACK as REASON_NOT_MSGPACK
from zvsr.wire.errors import REASON_OUT_OF_RANGE as REASON_OUT_OF_RANGE
from zvsr.wire.errors import REASON_TOO_LARGE as REASON_TOO_LARGE
from zvsr.wire.errors import REASON_UNEXPECTED_TYPE as REASON_UNEXPECTED_TYPE
from zvsr.wire.errors import REASON_UNKNOWN_FIELD as REASON_UNKNOWN_FIELD
from zvsr.wire.errors import REASON_UNKNOWN_TYPE as REASON_UNKNOWN_TYPE
from zvsr.wire.errors import REASON_WRONG_TYPE as REASON_WRONG_TYPE
from zvsr.wire.errors import DecodeError as DecodeError
from zvsr.wire.errors import EncodeError as EncodeError
from zvsr.wire.errors import bad_int, inconsistent
from zvsr.wire.unpack import unpack_map

Message = ReplicaMessage | Request | ClientReply

# --- type numbers: part of the wire format, never renumber --------------------------------------------------

TYPE_PREPARE: Final = 1
TYPE_PREPARE_OK: Final = 2
TYPE_COMMIT: Final = 3
TYPE_START_VIEW_CHANGE: Final = 4
TYPE_DO_VIEW_CHANGE: Final = 5
TYPE_START_VIEW: Final = 6
TYPE_GET_STATE: Final = 7
TYPE_NEW_STATE: Final = 8
TYPE_RECOVERY: Final = 9
TYPE_RECOVERY_RESPONSE: Final = 10
TYPE_GET_SNAPSHOT: Final = 11
TYPE_SNAPSHOT_CHUNK: Final = 12
TYPE_START_EPOCH: Final = 13
TYPE_EPOCH_STARTED: Final = 14
TYPE_START_VIEW_CHANGE_PROBE: Final = 15
TYPE_REQUEST: Final = 20
TYPE_REPLY: Final = 21
TYPE_REDIRECT: Final = 22
TYPE_ERROR: Final = 23

TYPE_NUMBERS: Final[dict[type, int]] = {
    Prepare: TYPE_PREPARE,
    PrepareOk: TYPE_PREPARE_OK,
    Commit: TYPE_COMMIT,
    StartViewChange: TYPE_START_VIEW_CHANGE,
    DoViewChange: TYPE_DO_VIEW_CHANGE,
    StartView: TYPE_START_VIEW,
    GetState: TYPE_GET_STATE,
    NewState: TYPE_NEW_STATE,
    Recovery: TYPE_RECOVERY,
    RecoveryResponse: TYPE_RECOVERY_RESPONSE,
    GetSnapshot: TYPE_GET_SNAPSHOT,
    SnapshotChunk: TYPE_SNAPSHOT_CHUNK,
    StartEpoch: TYPE_START_EPOCH,
    EpochStarted: TYPE_EPOCH_STARTED,
    StartViewChangeProbe: TYPE_START_VIEW_CHANGE_PROBE,
    Request: TYPE_REQUEST,
    Reply: TYPE_REPLY,
    Redirect: TYPE_REDIRECT,
    Error: TYPE_ERROR,
}

# --- encoding -----------------------------------------------------------------------------------------------

_local = threading.local()


def _pack(value: dict[str, Any]) -> bytes:
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    data: bytes = packer.pack(value)
    return data


def _entry_arrays(entries: tuple[LogEntry, ...]) -> list[tuple[int, int, int, int, bytes, int]]:
    return [(e.view, e.op_number, e.client_id, e.request_number, e.operation, e.timestamp) for e in entries]


def _encode_header(type_number: int, m: ReplicaMessage) -> dict[str, Any]:
    """The map of a replica message up to its four header fields (rule 1 in zvsr.protocol.messages); the
    caller adds the rest in dataclass order. A dict literal, not a loop over names: this runs per message."""
    return {"type": type_number, "cluster": m.cluster, "epoch": m.epoch, "view": m.view, "replica": m.replica}


def _encode_prepare(m: Prepare) -> dict[str, Any]:
    value = _encode_header(TYPE_PREPARE, m)
    value["op_number"] = m.op_number
    value["commit_number"] = m.commit_number
    value["entries"] = _entry_arrays(m.entries)
    value["read_round"] = m.read_round
    return value


def _encode_prepare_ok(m: PrepareOk) -> dict[str, Any]:
    value = _encode_header(TYPE_PREPARE_OK, m)
    value["op_number"] = m.op_number
    value["read_round"] = m.read_round
    return value


def _encode_commit(m: Commit) -> dict[str, Any]:
    value = _encode_header(TYPE_COMMIT, m)
    value["commit_number"] = m.commit_number
    value["op_number"] = m.op_number
    value["read_round"] = m.read_round
    return value


def _encode_start_view_change(m: StartViewChange) -> dict[str, Any]:
    return _encode_header(TYPE_START_VIEW_CHANGE, m)


def _encode_start_view_change_probe(m: StartViewChangeProbe) -> dict[str, Any]:
    return _encode_header(TYPE_START_VIEW_CHANGE_PROBE, m)


def _encode_do_view_change(m: DoViewChange) -> dict[str, Any]:
    value = _encode_header(TYPE_DO_VIEW_CHANGE, m)
    value["last_normal_view"] = m.last_normal_view
    value["op_number"] = m.op_number
    value["commit_number"] = m.commit_number
    value["log"] = _entry_arrays(m.log)
    return value


def _encode_start_view(m: StartView) -> dict[str, Any]:
    value = _encode_header(TYPE_START_VIEW, m)
    value["op_number"] = m.op_number
    value["commit_number"] = m.commit_number
    value["log"] = _entry_arrays(m.log)
    return value


def _encode_get_state(m: GetState) -> dict[str, Any]:
    value = _encode_header(TYPE_GET_STATE, m)
    value["op_number"] = m.op_number
    return value


def _encode_new_state(m: NewState) -> dict[str, Any]:
    value = _encode_header(TYPE_NEW_STATE, m)
    value["op_number"] = m.op_number
    value["commit_number"] = m.commit_number
    value["entries"] = _entry_arrays(m.entries)
    return value


def _encode_recovery(m: Recovery) -> dict[str, Any]:
    value = _encode_header(TYPE_RECOVERY, m)
    value["nonce"] = m.nonce
    return value


def _encode_recovery_response(m: RecoveryResponse) -> dict[str, Any]:
    value = _encode_header(TYPE_RECOVERY_RESPONSE, m)
    value["nonce"] = m.nonce
    value["log"] = None if m.log is None else _entry_arrays(m.log)
    value["op_number"] = m.op_number
    value["commit_number"] = m.commit_number
    return value


def _encode_get_snapshot(m: GetSnapshot) -> dict[str, Any]:
    value = _encode_header(TYPE_GET_SNAPSHOT, m)
    value["snapshot_op"] = m.snapshot_op
    value["offset"] = m.offset
    return value


def _encode_snapshot_chunk(m: SnapshotChunk) -> dict[str, Any]:
    value = _encode_header(TYPE_SNAPSHOT_CHUNK, m)
    value["snapshot_op"] = m.snapshot_op
    value["size"] = m.size
    value["checksum"] = m.checksum
    value["offset"] = m.offset
    value["data"] = m.data
    return value


def _encode_start_epoch(m: StartEpoch) -> dict[str, Any]:
    value = _encode_header(TYPE_START_EPOCH, m)
    value["op_number"] = m.op_number
    value["membership"] = m.membership
    return value


def _encode_epoch_started(m: EpochStarted) -> dict[str, Any]:
    return _encode_header(TYPE_EPOCH_STARTED, m)


def _encode_request(m: Request) -> dict[str, Any]:
    return {
        "type": TYPE_REQUEST,
        "client_id": m.client_id,
        "request_number": m.request_number,
        "operation": m.operation,
    }


def _encode_reply(m: Reply) -> dict[str, Any]:
    return {
        "type": TYPE_REPLY,
        "view": m.view,
        "client_id": m.client_id,
        "request_number": m.request_number,
        "result": m.result,
    }


def _encode_redirect(m: Redirect) -> dict[str, Any]:
    return {
        "type": TYPE_REDIRECT,
        "view": m.view,
        "primary": m.primary,
        "client_id": m.client_id,
        "request_number": m.request_number,
    }


def _encode_error(m: Error) -> dict[str, Any]:
    return {
        "type": TYPE_ERROR,
        "view": m.view,
        "client_id": m.client_id,
        "request_number": m.request_number,
        "code": m.code,
        "message": m.message,
    }


_ENCODERS: Final[dict[type, Callable[[Any], dict[str, Any]]]] = {
    Prepare: _encode_prepare,
    PrepareOk: _encode_prepare_ok,
    Commit: _encode_commit,
    StartViewChange: _encode_start_view_change,
    DoViewChange: _encode_do_view_change,
    StartView: _encode_start_view,
    GetState: _encode_get_state,
    NewState: _encode_new_state,
    Recovery: _encode_recovery,
    RecoveryResponse: _encode_recovery_response,
    GetSnapshot: _encode_get_snapshot,
    SnapshotChunk: _encode_snapshot_chunk,
    StartEpoch: _encode_start_epoch,
    EpochStarted: _encode_epoch_started,
    StartViewChangeProbe: _encode_start_view_change_probe,
    Request: _encode_request,
    Reply: _encode_reply,
    Redirect: _encode_redirect,
    Error: _encode_error,
}


def encode(message: Message) -> bytes:
    """The wire bytes of `message` (any replica or client message).

    Messages are built by our own code, so fields are not re-validated here (the receiving decoder is the
    check). Raises TypeError for a non-message, and EncodeError when msgpack cannot encode a field (an int
    beyond 64 bits, a str with lone surrogates) or the result exceeds MESSAGE_BYTES_MAX: both are our bugs.
    """
    encoder = _ENCODERS.get(type(message))
    if encoder is None:
        raise TypeError(f"not a zvsr message: {type(message).__name__}")
    try:
        data = _pack(encoder(message))
    except (OverflowError, TypeError, ValueError) as error:
        raise EncodeError(f"{type(message).__name__}: {type(error).__name__}: {error}") from error
    if len(data) > MESSAGE_BYTES_MAX:
        raise EncodeError(f"{type(message).__name__} encodes to {len(data)} bytes > MESSAGE_BYTES_MAX")
    return data


_T = TypeVar("_T")
_MISSING: Final = object()


def _dispatch(value: dict[str, Any], decoders: dict[int, Callable[[dict[str, Any]], _T]]) -> _T:
    type_number = value.get("type", _MISSING)
    # Exact int check before the dict lookup: True and 1.0 hash equal to 1.
    if type(type_number) is not int:
        if type_number is _MISSING:
            raise DecodeError(REASON_MISSING_FIELD, "no 'type'")
        raise DecodeError(REASON_WRONG_TYPE, f"'type' is {type(type_number).__name__}")
    decoder = decoders.get(type_number)
    if decoder is None:
        if type_number in _ALL_DECODERS:
            raise DecodeError(REASON_UNEXPECTED_TYPE, f"type {type_number} does not belong on this socket")
        raise DecodeError(REASON_UNKNOWN_TYPE, f"type {type_number}")
    # The key set of every kind is checked here, once, so no decoder repeats it; inline, as this runs per message.
    if value.keys() != _KEYS[type_number]:
        raise _bad_keys(value, _CLASSES[type_number])
    return decoder(value)


# --- decoding: field checks ---------------------------------------------------------------------------------


def _field_names(cls: type) -> frozenset[str]:
    return frozenset(["type", *(f.name for f in fields(cls))])


_FIELDS: Final[dict[type, frozenset[str]]] = {cls: _field_names(cls) for cls in TYPE_NUMBERS}
_CLASSES: Final[dict[int, type]] = {number: cls for cls, number in TYPE_NUMBERS.items()}
_KEYS: Final[dict[int, frozenset[str]]] = {number: _FIELDS[cls] for cls, number in TYPE_NUMBERS.items()}


def _bad_keys(value: dict[str, Any], cls: type) -> DecodeError:
    expected = _FIELDS[cls]
    missing = expected - value.keys()
    if missing:
        return DecodeError(REASON_MISSING_FIELD, f"{cls.__name__} lacks {', '.join(sorted(missing))}")
    # Keys may be str or bin (msgpack allows both): repr them, since str and bytes neither sort nor join.
    unknown = sorted(repr(key) for key in value.keys() - expected)
    return DecodeError(REASON_UNKNOWN_FIELD, f"{cls.__name__} has {', '.join(unknown)}")


def _id(value: dict[str, Any], name: str) -> int:
    """An unsigned 64-bit number. `bool` is rejected: an int subclass, but msgpack `true` is no number."""
    number = value[name]
    if type(number) is int and 0 <= number <= ID_MAX:
        return number
    raise bad_int(name, number, ID_MAX)


def _replica_id(value: dict[str, Any], name: str) -> int:
    number = value[name]
    if type(number) is int and 0 <= number <= REPLICA_ID_MAX:
        return number
    raise bad_int(name, number, REPLICA_ID_MAX)


def _bytes(value: dict[str, Any], name: str, size_max: int) -> bytes:
    data = value[name]
    if type(data) is not bytes:
        raise DecodeError(REASON_WRONG_TYPE, f"{name} is {type(data).__name__}, not bin")
    if len(data) > size_max:
        raise DecodeError(REASON_TOO_LARGE, f"{name} has {len(data)} bytes > {size_max}")
    return data


def _decode_whole_log(value: dict[str, Any], checked: dict[str, Any]) -> None:
    """Adds op_number, commit_number and the log a replica keeps (DoViewChange, StartView, RecoveryResponse) to
    `checked`: entries ending at op_number; the ops before the first are in the sender's snapshot."""
    op_number = checked["op_number"] = _id(value, "op_number")
    checked["commit_number"] = _id(value, "commit_number")
    _check_commit(checked)
    checked["log"] = decode_entries(
        value["log"], name="log", count_max=LOG_ENTRIES_MAX, last_op_number=op_number, view_max=checked["view"]
    )


def _check_commit(checked: dict[str, Any]) -> None:
    commit_number, op_number = checked["commit_number"], checked["op_number"]
    if commit_number > op_number:
        raise inconsistent(f"commit_number {commit_number} > op_number {op_number}")


# --- decoding: one function per message class ---------------------------------------------------------------


def _decode_header(value: dict[str, Any]) -> dict[str, Any]:
    """The four header fields every replica message starts with (rule 1 in zvsr.protocol.messages), checked,
    as keyword arguments for its class: the caller adds the rest and calls ``cls(**checked)``. One combined
    test for the valid case (this runs per message); the per-field checks after it only name the bad field."""
    cluster, epoch, view, replica = value["cluster"], value["epoch"], value["view"], value["replica"]
    if (
        type(cluster) is int
        and type(epoch) is int
        and type(view) is int
        and type(replica) is int
        and 0 <= cluster <= ID_MAX
        and 0 <= epoch <= ID_MAX
        and 0 <= view <= ID_MAX
        and 0 <= replica <= REPLICA_ID_MAX
    ):
        return {"cluster": cluster, "epoch": epoch, "view": view, "replica": replica}
    for name in ("cluster", "epoch", "view"):
        _id(value, name)
    _replica_id(value, "replica")
    raise AssertionError("unreachable: one of the checks above fails")


def _decode_prepare(value: dict[str, Any]) -> Prepare:
    checked = _decode_header(value)
    checked["op_number"] = _id(value, "op_number")
    checked["commit_number"] = _id(value, "commit_number")
    _check_commit(checked)
    raw = value["entries"]
    if type(raw) is list and not raw:
        raise DecodeError(REASON_OUT_OF_RANGE, "Prepare without entries")
    checked["entries"] = decode_entries(
        raw,
        name="entries",
        count_max=PREPARE_ENTRIES_MAX,
        last_op_number=checked["op_number"],
        view_max=checked["view"],
    )
    checked["read_round"] = _id(value, "read_round")
    return Prepare(**checked)


def _decode_prepare_ok(value: dict[str, Any]) -> PrepareOk:
    checked = _decode_header(value)
    checked["op_number"] = _id(value, "op_number")
    checked["read_round"] = _id(value, "read_round")
    return PrepareOk(**checked)


def _decode_commit(value: dict[str, Any]) -> Commit:
    checked = _decode_header(value)
    checked["commit_number"] = _id(value, "commit_number")
    checked["op_number"] = _id(value, "op_number")
    _check_commit(checked)
    checked["read_round"] = _id(value, "read_round")
    return Commit(**checked)


def _decode_start_view_change(value: dict[str, Any]) -> StartViewChange:
    return StartViewChange(**_decode_header(value))


def _decode_start_view_change_probe(value: dict[str, Any]) -> StartViewChangeProbe:
    return StartViewChangeProbe(**_decode_header(value))


def _decode_do_view_change(value: dict[str, Any]) -> DoViewChange:
    checked = _decode_header(value)
    view = checked["view"]
    last_normal_view = checked["last_normal_view"] = _id(value, "last_normal_view")
    if last_normal_view > view:
        raise inconsistent(f"last_normal_view {last_normal_view} > view {view}")
    _decode_whole_log(value, checked)
    return DoViewChange(**checked)


def _decode_start_view(value: dict[str, Any]) -> StartView:
    checked = _decode_header(value)
    _decode_whole_log(value, checked)
    return StartView(**checked)


def _decode_get_state(value: dict[str, Any]) -> GetState:
    checked = _decode_header(value)
    checked["op_number"] = _id(value, "op_number")
    return GetState(**checked)


def _decode_new_state(value: dict[str, Any]) -> NewState:
    checked = _decode_header(value)
    op_number = checked["op_number"] = _id(value, "op_number")
    checked["commit_number"] = _id(value, "commit_number")
    _check_commit(checked)
    # A NewState carries a bounded chunk of the log after the requester's op_number; `op_number` is the
    # sender's (§5.2 NEWSTATE<v, l, n, k>), so the chunk may end before it, never after.
    raw_entries = value["entries"]
    last_op_number = op_number
    if type(raw_entries) is list and raw_entries:
        head = raw_entries[0]
        first = None
        if type(head) is LogEntry:
            first = head.op_number
        elif type(head) is list and len(head) == 6:
            first = head[1]
        if type(first) is int and 1 <= first <= op_number:
            last_op_number = first + len(raw_entries) - 1
            if last_op_number > op_number:
                raise inconsistent(f"entries end at op {last_op_number} > op_number {op_number}")
    checked["entries"] = decode_entries(
        raw_entries,
        name="entries",
        count_max=NEW_STATE_ENTRIES_MAX,
        last_op_number=last_op_number,
        view_max=checked["view"],
    )
    return NewState(**checked)


def _decode_recovery(value: dict[str, Any]) -> Recovery:
    checked = _decode_header(value)
    checked["nonce"] = _id(value, "nonce")
    return Recovery(**checked)


def _decode_recovery_response(value: dict[str, Any]) -> RecoveryResponse:
    checked = _decode_header(value)
    checked["nonce"] = _id(value, "nonce")
    raw_log, raw_op_number, raw_commit_number = value["log"], value["op_number"], value["commit_number"]
    # §4.3: only the primary of `view` sends its state; backups send the nonce alone. Half of each is garbage.
    if raw_log is None and raw_op_number is None and raw_commit_number is None:
        return RecoveryResponse(**checked, log=None, op_number=None, commit_number=None)
    if raw_log is None or raw_op_number is None or raw_commit_number is None:
        raise inconsistent("RecoveryResponse: log, op_number, commit_number must be all present or all nil")
    _decode_whole_log(value, checked)
    return RecoveryResponse(**checked)


def _decode_get_snapshot(value: dict[str, Any]) -> GetSnapshot:
    checked = _decode_header(value)
    checked["snapshot_op"] = _id(value, "snapshot_op")
    checked["offset"] = _id(value, "offset")
    return GetSnapshot(**checked)


def _decode_snapshot_chunk(value: dict[str, Any]) -> SnapshotChunk:
    checked = _decode_header(value)
    snapshot_op = _id(value, "snapshot_op")
    size = _id(value, "size")
    if size > SNAPSHOT_BYTES_MAX:
        raise DecodeError(REASON_TOO_LARGE, f"snapshot of {size} bytes > {SNAPSHOT_BYTES_MAX}")
    offset = _id(value, "offset")
    data = _bytes(value, "data", SNAPSHOT_CHUNK_BYTES)
    if offset + len(data) > size:
        raise inconsistent(f"chunk at {offset} of {len(data)} bytes ends beyond the snapshot's {size}")
    checksum = _bytes(value, "checksum", CHECKSUM_BYTES)
    if len(checksum) != CHECKSUM_BYTES:
        raise inconsistent(f"checksum has {len(checksum)} bytes, not {CHECKSUM_BYTES}")
    return SnapshotChunk(
        **checked, snapshot_op=snapshot_op, size=size, checksum=checksum, offset=offset, data=data
    )


def _decode_start_epoch(value: dict[str, Any]) -> StartEpoch:
    checked = _decode_header(value)
    checked["op_number"] = _id(value, "op_number")
    # The configuration's own layout is checked by the core (membership.decode) when it acts on it.
    checked["membership"] = _bytes(value, "membership", MEMBERSHIP_BYTES_MAX)
    return StartEpoch(**checked)


def _decode_epoch_started(value: dict[str, Any]) -> EpochStarted:
    return EpochStarted(**_decode_header(value))


def _decode_request(value: dict[str, Any]) -> Request:
    return Request(
        client_id=_id(value, "client_id"),
        request_number=_id(value, "request_number"),
        operation=_bytes(value, "operation", OPERATION_BYTES_MAX),
    )


def _decode_reply(value: dict[str, Any]) -> Reply:
    return Reply(
        view=_id(value, "view"),
        client_id=_id(value, "client_id"),
        request_number=_id(value, "request_number"),
        result=_bytes(value, "result", RESULT_BYTES_MAX),
    )


def _decode_redirect(value: dict[str, Any]) -> Redirect:
    return Redirect(
        view=_id(value, "view"),
        primary=_replica_id(value, "primary"),
        client_id=_id(value, "client_id"),
        request_number=_id(value, "request_number"),
    )


def _decode_error(value: dict[str, Any]) -> Error:
    code, message = value["code"], value["message"]
    if type(code) is not str:
        raise DecodeError(REASON_WRONG_TYPE, f"code is {type(code).__name__}, not str")
    if code not in ERROR_CODES:
        raise DecodeError(REASON_OUT_OF_RANGE, f"unknown error code {code!r}")
    if type(message) is not str:
        raise DecodeError(REASON_WRONG_TYPE, f"message is {type(message).__name__}, not str")
    if len(message) > ERROR_MESSAGE_CHARS_MAX:
        raise DecodeError(REASON_TOO_LARGE, f"message has {len(message)} chars > {ERROR_MESSAGE_CHARS_MAX}")
    return Error(
        view=_id(value, "view"),
        client_id=_id(value, "client_id"),
        request_number=_id(value, "request_number"),
        code=code,
        message=message,
    )


_REPLICA_DECODERS: Final[dict[int, Callable[[dict[str, Any]], ReplicaMessage]]] = {
    TYPE_PREPARE: _decode_prepare,
    TYPE_PREPARE_OK: _decode_prepare_ok,
    TYPE_COMMIT: _decode_commit,
    TYPE_START_VIEW_CHANGE: _decode_start_view_change,
    TYPE_DO_VIEW_CHANGE: _decode_do_view_change,
    TYPE_START_VIEW: _decode_start_view,
    TYPE_GET_STATE: _decode_get_state,
    TYPE_NEW_STATE: _decode_new_state,
    TYPE_RECOVERY: _decode_recovery,
    TYPE_RECOVERY_RESPONSE: _decode_recovery_response,
    TYPE_GET_SNAPSHOT: _decode_get_snapshot,
    TYPE_SNAPSHOT_CHUNK: _decode_snapshot_chunk,
    TYPE_START_EPOCH: _decode_start_epoch,
    TYPE_EPOCH_STARTED: _decode_epoch_started,
    TYPE_START_VIEW_CHANGE_PROBE: _decode_start_view_change_probe,
}
_REQUEST_DECODERS: Final[dict[int, Callable[[dict[str, Any]], Request]]] = {TYPE_REQUEST: _decode_request}
_CLIENT_REPLY_DECODERS: Final[dict[int, Callable[[dict[str, Any]], ClientReply]]] = {
    TYPE_REPLY: _decode_reply,
    TYPE_REDIRECT: _decode_redirect,
    TYPE_ERROR: _decode_error,
}
_ALL_DECODERS: Final[dict[int, Callable[[dict[str, Any]], Message]]] = {
    **_REPLICA_DECODERS,
    **_REQUEST_DECODERS,
    **_CLIENT_REPLY_DECODERS,
}


# --- decoding: public entry points --------------------------------------------------------------------------


def decode_replica_message(data: bytes) -> ReplicaMessage:
    """A replica-to-replica message (types 1..15) from the replica port; DecodeError for anything else."""
    return _dispatch(unpack_map(data, MESSAGE_BYTES_MAX), _REPLICA_DECODERS)


def decode_request(data: bytes) -> Request:
    """A client Request (type 20), at most CLIENT_MESSAGE_BYTES_MAX bytes; DecodeError for anything else."""
    return _dispatch(unpack_map(data, CLIENT_MESSAGE_BYTES_MAX), _REQUEST_DECODERS)


def decode_client_reply(data: bytes) -> ClientReply:
    """What a client may receive: Reply, Redirect or Error (types 21..23); DecodeError for anything else."""
    return _dispatch(unpack_map(data, MESSAGE_BYTES_MAX), _CLIENT_REPLY_DECODERS)


def decode(data: bytes) -> Message:
    """Any zvsr message (tools, tests, captures). Sockets should use the narrower decoders above."""
    return _dispatch(unpack_map(data, MESSAGE_BYTES_MAX), _ALL_DECODERS)
