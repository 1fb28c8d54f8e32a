"""The wire codec: zvsr messages ⇄ msgpack bytes, validating everything on the way in.

Theory of operation
-------------------
Every message is one msgpack map. Key ``"type"`` holds a small unsigned integer naming the message class
(table below); every other key is a dataclass field of that class, spelled exactly as the field. Bytes fields
(``operation``, ``result``) are msgpack *bin*, strings (``code``, ``message``) are msgpack *str*, numbers are
msgpack unsigned ints, ``None`` is nil. A log entry is the 5-array
``[view, op_number, client_id, request_number, operation]``, so a 256-entry Prepare does not repeat five key
names per entry. The encoder writes ``"type"`` first and then the fields in dataclass order, so equal messages
encode to identical bytes (golden test vectors rely on this).

======  ==================  ===============================================================================
type    message             fields after ``type`` (in encoding order)
======  ==================  ===============================================================================
1       Prepare             cluster, epoch, view, replica, op_number, commit_number, entries
2       PrepareOk           cluster, epoch, view, replica, op_number
3       Commit              cluster, epoch, view, replica, commit_number, op_number
4       StartViewChange     cluster, epoch, view, replica
5       DoViewChange        cluster, epoch, view, replica, last_normal_view, op_number, commit_number, log
6       StartView           cluster, epoch, view, replica, op_number, commit_number, log
7       GetState            cluster, epoch, view, replica, op_number
8       NewState            cluster, epoch, view, replica, op_number, commit_number, entries
9       Recovery            cluster, epoch, view, replica, nonce
10      RecoveryResponse    cluster, epoch, view, replica, nonce, log, op_number, commit_number
11      GetSnapshot         cluster, epoch, view, replica, snapshot_op, offset
12      SnapshotChunk       cluster, epoch, view, replica, snapshot_op, size, checksum, offset, data
20      Request             client_id, request_number, operation
21      Reply               view, client_id, request_number, result
22      Redirect            view, primary, client_id, request_number
23      Error               view, client_id, request_number, code, message
======  ==================  ===============================================================================

Replica kinds are 1..19 and client kinds 20..23, so one glance at a captured frame says which port it belongs
on. The numbers are part of the wire format: never renumber, only add.

Decoding is the trust boundary (ARCHITECTURE §4, STYLE rule 6): bytes from a socket are untrusted, and
nothing reaches the protocol core until it is a well-formed, internally consistent frozen dataclass. The
decoder raises exactly one exception type, `DecodeError`, for *any* input, with a machine-readable `reason`
that the runtime counts:

- ``not_msgpack``: not one complete msgpack value (truncated, trailing bytes, bad UTF-8, ext types…);
- ``not_a_map``: valid msgpack, but not a map;
- ``unknown_type`` / ``unexpected_type``: no such type number / a real type on the wrong port (a Request fed
  to `decode_replica_message`, say);
- ``missing_field`` / ``unknown_field``: the key set differs from the class's fields;
- ``wrong_type``: a field of the wrong msgpack type (``true`` is not an int here, ``str`` is not ``bin``);
- ``out_of_range``: a number outside 0..ID_MAX, a replica index ≥ REPLICAS_MAX, an unknown error code, an
  empty Prepare;
- ``too_large``: the input, a bytes field, a string or an entry list above its bound in `zvsr.constants`;
- ``inconsistent``: each field is fine but together they break an invariant (commit_number > op_number,
  non-consecutive entries, an entry from a later view than the message, half of a RecoveryResponse's log…),
  or a key appears twice (readers disagree on which one counts).

Hostile length prefixes cannot make the decoder allocate: the input length is checked against
MESSAGE_BYTES_MAX (CLIENT_MESSAGE_BYTES_MAX for client requests) before msgpack sees it, and msgpack's own
per-container limits are capped by the input length, since every element of a container takes at least one
byte (msgpack preallocates a list of the declared length otherwise). Nesting depth is bounded by msgpack's
C unpacker, and no decoder here recurses.

Hostile *content* is bounded too. One `unpackb` builds the whole value before any field is looked at, and a
one-byte empty array becomes a ~60-byte Python list: a 256 MiB frame of nested empty arrays would cost
~16 GiB. So only frames up to `STREAM_DECODE_ABOVE` bytes (every client request, every ordinary Prepare) take
that one call, costing at most a few MiB whatever they hold. Bigger frames (view-change and recovery logs,
state transfer, snapshot chunks) are unpacked field by field (`_unpack_streaming`): the first byte of every
top-level value is looked at before the value is built, so a field can only become a scalar or an array of
log entries, and each entry is checked the moment msgpack completes it (`_entry_hook`), so a wrong shape
stops the unpacking at the first bad entry. Memory is then a bounded multiple of the input (≤ ~16 bytes per
byte; tests/test_fuzz_codec.py measures every shape it knows).

Performance: this runs for every message on the hot path. Encoding builds one dict per message with short
per-class functions (no reflection) and packs it with a reused `msgpack.Packer` (one per thread: msgpack's
maintainers document that a Packer is not safe to share between threads). The four header fields of replica
messages are written by one `_encode_header` and checked by one `_decode_header`, each a single expression
rather than a loop over field names, which measured ~3x slower. Decoding is one `msgpack.unpackb` call, a dict
dispatch on the type number, one key-set comparison there for every kind, and an inline check per field. Log
entries, the bulk of large messages, are built without the dataclass `__init__` (see `_new_entry`).
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
    MESSAGE_BYTES_MAX,
    NEW_STATE_ENTRIES_MAX,
    OPERATION_BYTES_MAX,
    PREPARE_ENTRIES_MAX,
    REPLICAS_MAX,
    RESULT_BYTES_MAX,
    SNAPSHOT_BYTES_MAX,
    SNAPSHOT_CHUNK_BYTES,
    STREAM_DECODE_ABOVE,
)
from zvsr.protocol.messages import (
    ERROR_CODES,
    ClientReply,
    Commit,
    DoViewChange,
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
    StartView,
    StartViewChange,
)
from zvsr.protocol.snapshots import CHECKSUM_BYTES

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
    Request: TYPE_REQUEST,
    Reply: TYPE_REPLY,
    Redirect: TYPE_REDIRECT,
    Error: TYPE_ERROR,
}

# --- errors -------------------------------------------------------------------------------------------------

REASON_NOT_MSGPACK: Final = "not_msgpack"
REASON_NOT_A_MAP: Final = "not_a_map"
REASON_UNKNOWN_TYPE: Final = "unknown_type"
REASON_UNEXPECTED_TYPE: Final = "unexpected_type"
REASON_MISSING_FIELD: Final = "missing_field"
REASON_UNKNOWN_FIELD: Final = "unknown_field"
REASON_WRONG_TYPE: Final = "wrong_type"
REASON_OUT_OF_RANGE: Final = "out_of_range"
REASON_TOO_LARGE: Final = "too_large"
REASON_INCONSISTENT: Final = "inconsistent"
DECODE_ERROR_REASONS: Final = frozenset(
    {
        REASON_NOT_MSGPACK,
        REASON_NOT_A_MAP,
        REASON_UNKNOWN_TYPE,
        REASON_UNEXPECTED_TYPE,
        REASON_MISSING_FIELD,
        REASON_UNKNOWN_FIELD,
        REASON_WRONG_TYPE,
        REASON_OUT_OF_RANGE,
        REASON_TOO_LARGE,
        REASON_INCONSISTENT,
    }
)


class DecodeError(ValueError):
    """Bytes from outside are not a valid zvsr message. The remote side's fault, never ours.

    `reason` is one of `DECODE_ERROR_REASONS` (for counters); `str(error)` adds a human explanation.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class EncodeError(ValueError):
    """A message built by our own code cannot be encoded, or would be refused by every receiver: our bug."""


# --- encoding -----------------------------------------------------------------------------------------------

_local = threading.local()


def _pack(value: dict[str, Any]) -> bytes:
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    data: bytes = packer.pack(value)
    return data


def _entry_arrays(entries: tuple[LogEntry, ...]) -> list[tuple[int, int, int, int, bytes]]:
    return [(e.view, e.op_number, e.client_id, e.request_number, e.operation) for e in entries]


def _encode_header(type_number: int, m: ReplicaMessage) -> dict[str, Any]:
    """The map of a replica message up to its four header fields (rule 1 in zvsr.protocol.messages); the
    caller adds the rest in dataclass order. A dict literal, not a loop over names: this runs per message."""
    return {"type": type_number, "cluster": m.cluster, "epoch": m.epoch, "view": m.view, "replica": m.replica}


def _encode_prepare(m: Prepare) -> dict[str, Any]:
    value = _encode_header(TYPE_PREPARE, m)
    value["op_number"] = m.op_number
    value["commit_number"] = m.commit_number
    value["entries"] = _entry_arrays(m.entries)
    return value


def _encode_prepare_ok(m: PrepareOk) -> dict[str, Any]:
    value = _encode_header(TYPE_PREPARE_OK, m)
    value["op_number"] = m.op_number
    return value


def _encode_commit(m: Commit) -> dict[str, Any]:
    value = _encode_header(TYPE_COMMIT, m)
    value["commit_number"] = m.commit_number
    value["op_number"] = m.op_number
    return value


def _encode_start_view_change(m: StartViewChange) -> dict[str, Any]:
    return _encode_header(TYPE_START_VIEW_CHANGE, m)


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


# --- decoding: unpacking ------------------------------------------------------------------------------------

# The widest message (DoViewChange, RecoveryResponse) has 9 keys including "type".
_MAP_LEN_MAX: Final = 16
# Bin fields are operations and results; UTF-8 needs at most 4 bytes per character of an error message, and
# field names are far shorter than that.
_BIN_BYTES_MAX: Final = max(OPERATION_BYTES_MAX, RESULT_BYTES_MAX)
_STR_BYTES_MAX: Final = 4 * ERROR_MESSAGE_CHARS_MAX

_unpackb = msgpack.unpackb


def _unpack(data: bytes, size_max: int) -> dict[str, Any]:
    """One msgpack map from `data`, or DecodeError."""
    if type(data) is not bytes:
        # zmq hands us bytes; accept other byte buffers, but never call bytes() on an int (it allocates).
        if not isinstance(data, (bytearray, memoryview)):
            raise DecodeError(REASON_WRONG_TYPE, f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
    size = len(data)
    if size > size_max:
        raise DecodeError(REASON_TOO_LARGE, f"{size} bytes > {size_max}")
    if size > STREAM_DECODE_ABOVE:
        return _unpack_streaming(data)
    try:
        # msgpack preallocates a list of an array's *declared* length, so the array limit is capped by the
        # input length (every element takes at least one byte): a 5-byte input cannot cost 32 MB. Bin and str
        # are only created once their bytes are present, and maps are tiny, so fixed limits suffice there.
        value = _unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=_BIN_BYTES_MAX,
            max_str_len=_STR_BYTES_MAX,
            max_array_len=size if size < LOG_ENTRIES_MAX else LOG_ENTRIES_MAX,
            max_map_len=_MAP_LEN_MAX,
            max_ext_len=0,
        )
    except Exception as error:  # msgpack raises ValueError subclasses, UnicodeDecodeError, StackError…
        # Our limits surface as "N exceeds max_xxx_len(M)": report them as size violations.
        reason = REASON_TOO_LARGE if "exceeds max_" in str(error) else REASON_NOT_MSGPACK
        raise DecodeError(reason, f"{type(error).__name__}: {error}") from error
    if type(value) is not dict:
        raise DecodeError(REASON_NOT_A_MAP, f"top level is {type(value).__name__}")
    head = data[0]
    if len(value) != (head & 0x0F if head < 0x90 else _map_header_count(data)):
        raise _duplicate_keys()
    return value


def _map_header_count(data: bytes) -> int:
    """The key count a map's header declares (the caller knows `data` is one map)."""
    head = data[0]
    if head < 0x90:
        return head & 0x0F
    return int.from_bytes(data[1:3] if head == 0xDE else data[1:5], "big")


def _duplicate_keys() -> DecodeError:
    # msgpack lets the last of two equal keys win, other decoders the first: a frame that two readers would
    # read differently is refused, not guessed at.
    return DecodeError(REASON_INCONSISTENT, "a key appears twice")


# First bytes of msgpack values (msgpack spec, "formats"): what each top-level value may start with.
_MAP_HEADS: Final = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
_ARRAY_HEADS: Final = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])
_CONTAINER_HEADS: Final = _MAP_HEADS | _ARRAY_HEADS
_KEY_HEADS: Final = frozenset([*range(0xA0, 0xC0), 0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6])  # str, bin


def _unpack_streaming(data: bytes) -> dict[str, Any]:
    """What `_unpack` returns for `data`, built so that hostile content cannot cost more than a bounded
    multiple of its size: containers other than the top-level map and arrays of log entries are refused
    before they are built, and entries arrive as checked `LogEntry` objects (see `_entry_hook`)."""
    size = len(data)
    unpacker = msgpack.Unpacker(
        None,
        raw=False,
        strict_map_key=True,
        max_buffer_size=size,
        max_bin_len=_BIN_BYTES_MAX,
        max_str_len=_STR_BYTES_MAX,
        max_array_len=5,  # the only arrays unpacked whole are log entries; their parent array is walked here
        max_map_len=0,  # the only map is the top level, read by its header
        max_ext_len=0,
        list_hook=_entry_hook,
    )
    unpacker.feed(data)
    unpack, tell = unpacker.unpack, unpacker.tell
    value: dict[Any, Any] = {}  # keys are str or bytes, as the one-call path's; _dispatch sorts them out
    name: object = "?"
    try:
        if data[0] not in _MAP_HEADS:
            raise DecodeError(REASON_NOT_A_MAP, "top level is not a map")
        count = unpacker.read_map_header()
        if count > _MAP_LEN_MAX:
            raise DecodeError(REASON_TOO_LARGE, f"a map of {count} keys > {_MAP_LEN_MAX}")
        for _ in range(count):
            if data[tell()] not in _KEY_HEADS:
                raise DecodeError(REASON_NOT_MSGPACK, "a map key is neither str nor bin")
            name = unpack()
            head = data[tell()]
            if head not in _CONTAINER_HEADS:
                value[name] = unpack()  # a scalar: bounded by the str/bin limits above
                continue
            if head in _MAP_HEADS:
                raise DecodeError(REASON_WRONG_TYPE, f"{name!r} is a map")
            length = unpacker.read_array_header()
            if length > LOG_ENTRIES_MAX or length > size:
                raise DecodeError(REASON_TOO_LARGE, f"{name!r} has {length} elements")
            items: list[object] = []
            append = items.append
            for index in range(length):
                item = unpack()
                if type(item) is not LogEntry:
                    raise DecodeError(REASON_WRONG_TYPE, f"{name!r}[{index}] is not a 5-array")
                append(item)
            value[name] = items
        if tell() != size:
            raise DecodeError(REASON_NOT_MSGPACK, f"{size - tell()} bytes after the map")
        if len(value) != count:
            raise _duplicate_keys()
    except DecodeError as error:
        detail = str(error).removeprefix(f"{error.reason}: ")
        where = "" if detail.startswith(repr(name)) else f"{name!r}: "
        raise DecodeError(error.reason, where + detail) from None
    except IndexError:  # data[tell()] past the end
        raise DecodeError(REASON_NOT_MSGPACK, "truncated") from None
    except Exception as error:  # msgpack: OutOfData, ExtraData, FormatError, limits, UnicodeDecodeError…
        reason = REASON_TOO_LARGE if "exceeds max_" in str(error) else REASON_NOT_MSGPACK
        raise DecodeError(reason, f"{name!r}: {type(error).__name__}: {error}") from None
    return value


def _entry_hook(item: list[Any]) -> LogEntry:
    """msgpack calls this for every array it completes while streaming (innermost first): only a well-typed
    log entry survives, so nothing nested inside an entry outlives its first check."""
    if len(item) == 5:
        view, op_number, client_id, request_number, operation = item
        if (
            type(view) is int
            and type(op_number) is int
            and type(client_id) is int
            and type(request_number) is int
            and type(operation) is bytes
            and 0 <= view <= ID_MAX
            and 0 <= op_number <= ID_MAX
            and 0 <= client_id <= ID_MAX
            and 0 <= request_number <= ID_MAX
            and len(operation) <= OPERATION_BYTES_MAX
        ):
            return _new_entry(view, op_number, client_id, request_number, operation)
    # The same diagnosis as the one-call path; op_number is checked against its neighbours later.
    raise _bad_entry(item, name="entry", expected_op_number=item[1] if len(item) == 5 else 0, view_max=ID_MAX)


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


def _bad_int(name: str, value: object, high: int) -> DecodeError:
    if type(value) is not int:
        return DecodeError(REASON_WRONG_TYPE, f"{name} is {type(value).__name__}, not int")
    return DecodeError(REASON_OUT_OF_RANGE, f"{name} = {value} not in 0..{high}")


def _id(value: dict[str, Any], name: str) -> int:
    """An unsigned 64-bit number. `bool` is rejected: an int subclass, but msgpack `true` is no number."""
    number = value[name]
    if type(number) is int and 0 <= number <= ID_MAX:
        return number
    raise _bad_int(name, number, ID_MAX)


def _replica_index(value: dict[str, Any], name: str) -> int:
    number = value[name]
    if type(number) is int and 0 <= number < REPLICAS_MAX:
        return number
    raise _bad_int(name, number, REPLICAS_MAX - 1)


def _bytes(value: dict[str, Any], name: str, size_max: int) -> bytes:
    data = value[name]
    if type(data) is not bytes:
        raise DecodeError(REASON_WRONG_TYPE, f"{name} is {type(data).__name__}, not bin")
    if len(data) > size_max:
        raise DecodeError(REASON_TOO_LARGE, f"{name} has {len(data)} bytes > {size_max}")
    return data


# Log entries are the bulk of large messages (a 256-entry Prepare, a whole log in DoViewChange), and a frozen
# dataclass's __init__ goes through object.__setattr__ once per field: filling the slots directly is ~2.5x
# faster. Valid only while LogEntry is exactly these five slots with no __post_init__; checked at import.
_ENTRY_SLOTS: Final = ("view", "op_number", "client_id", "request_number", "operation")
assert tuple(f.name for f in fields(LogEntry)) == _ENTRY_SLOTS and not hasattr(LogEntry, "__post_init__")
_object_new = object.__new__
_set_view, _set_op_number, _set_client_id, _set_request_number, _set_operation = (
    getattr(LogEntry, name).__set__ for name in _ENTRY_SLOTS
)


def _new_entry(view: int, op_number: int, client_id: int, request_number: int, operation: bytes) -> LogEntry:
    """LogEntry(view=…, …) without the dataclass __init__; equal in every respect (tests check)."""
    entry: LogEntry = _object_new(LogEntry)
    _set_view(entry, view)
    _set_op_number(entry, op_number)
    _set_client_id(entry, client_id)
    _set_request_number(entry, request_number)
    _set_operation(entry, operation)
    return entry


def _inconsistent(message: str) -> DecodeError:
    return DecodeError(REASON_INCONSISTENT, message)


def _entries(
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
        raise _inconsistent(f"{name}: {count} entries cannot end at op {last_op_number} (ops start at 1)")
    entries: list[LogEntry] = []
    append = entries.append
    for index, item in enumerate(raw):
        # One combined test for the common, valid case; the diagnosis below runs only on failure.
        if type(item) is list and len(item) == 5:
            view, op_number, client_id, request_number, operation = item
            if (
                type(view) is int
                and type(op_number) is int
                and type(client_id) is int
                and type(request_number) is int
                and type(operation) is bytes
                and 0 <= view <= view_max
                and op_number == expected
                and 0 <= client_id <= ID_MAX
                and 0 <= request_number <= ID_MAX
                and len(operation) <= OPERATION_BYTES_MAX
            ):
                append(_new_entry(view, op_number, client_id, request_number, operation))
                expected += 1
                continue
        elif type(item) is LogEntry:  # from `_unpack_streaming`: types and ranges already checked
            if item.op_number == expected and item.view <= view_max:
                append(item)
                expected += 1
                continue
            item = [item.view, item.op_number, item.client_id, item.request_number, item.operation]
        raise _bad_entry(item, name=f"{name}[{index}]", expected_op_number=expected, view_max=view_max)
    return tuple(entries)


def _bad_entry(item: object, *, name: str, expected_op_number: int, view_max: int) -> DecodeError:
    if type(item) is not list or len(item) != 5:
        return DecodeError(REASON_WRONG_TYPE, f"{name} is not a 5-array")
    view, op_number, client_id, request_number, operation = item
    for part, number in (("view", view), ("op_number", op_number), ("client_id", client_id)):
        if type(number) is not int or not 0 <= number <= ID_MAX:
            return _bad_int(f"{name}.{part}", number, ID_MAX)
    if type(request_number) is not int or not 0 <= request_number <= ID_MAX:
        return _bad_int(f"{name}.request_number", request_number, ID_MAX)
    if type(operation) is not bytes:
        return DecodeError(REASON_WRONG_TYPE, f"{name}.operation is {type(operation).__name__}, not bin")
    if len(operation) > OPERATION_BYTES_MAX:
        return DecodeError(REASON_TOO_LARGE, f"{name}.operation has {len(operation)} bytes")
    if op_number != expected_op_number:
        return _inconsistent(f"{name}.op_number = {op_number}, expected {expected_op_number}")
    return _inconsistent(f"{name}.view = {view} is after the message's view {view_max}")


def _decode_whole_log(value: dict[str, Any], checked: dict[str, Any]) -> None:
    """Adds op_number, commit_number and the log a replica keeps (DoViewChange, StartView, RecoveryResponse) to
    `checked`: entries ending at op_number; the ops before the first are in the sender's snapshot."""
    op_number = checked["op_number"] = _id(value, "op_number")
    checked["commit_number"] = _id(value, "commit_number")
    _check_commit(checked)
    checked["log"] = _entries(
        value["log"], name="log", count_max=LOG_ENTRIES_MAX, last_op_number=op_number, view_max=checked["view"]
    )


def _check_commit(checked: dict[str, Any]) -> None:
    commit_number, op_number = checked["commit_number"], checked["op_number"]
    if commit_number > op_number:
        raise _inconsistent(f"commit_number {commit_number} > op_number {op_number}")


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
        and 0 <= replica < REPLICAS_MAX
    ):
        return {"cluster": cluster, "epoch": epoch, "view": view, "replica": replica}
    for name in ("cluster", "epoch", "view"):
        _id(value, name)
    _replica_index(value, "replica")
    raise AssertionError("unreachable: one of the checks above fails")


def _decode_prepare(value: dict[str, Any]) -> Prepare:
    checked = _decode_header(value)
    checked["op_number"] = _id(value, "op_number")
    checked["commit_number"] = _id(value, "commit_number")
    _check_commit(checked)
    raw = value["entries"]
    if type(raw) is list and not raw:
        raise DecodeError(REASON_OUT_OF_RANGE, "Prepare without entries")
    checked["entries"] = _entries(
        raw,
        name="entries",
        count_max=PREPARE_ENTRIES_MAX,
        last_op_number=checked["op_number"],
        view_max=checked["view"],
    )
    return Prepare(**checked)


def _decode_prepare_ok(value: dict[str, Any]) -> PrepareOk:
    checked = _decode_header(value)
    checked["op_number"] = _id(value, "op_number")
    return PrepareOk(**checked)


def _decode_commit(value: dict[str, Any]) -> Commit:
    checked = _decode_header(value)
    checked["commit_number"] = _id(value, "commit_number")
    checked["op_number"] = _id(value, "op_number")
    _check_commit(checked)
    return Commit(**checked)


def _decode_start_view_change(value: dict[str, Any]) -> StartViewChange:
    return StartViewChange(**_decode_header(value))


def _decode_do_view_change(value: dict[str, Any]) -> DoViewChange:
    checked = _decode_header(value)
    view = checked["view"]
    last_normal_view = checked["last_normal_view"] = _id(value, "last_normal_view")
    if last_normal_view > view:
        raise _inconsistent(f"last_normal_view {last_normal_view} > view {view}")
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
        elif type(head) is list and len(head) == 5:
            first = head[1]
        if type(first) is int and 1 <= first <= op_number:
            last_op_number = first + len(raw_entries) - 1
            if last_op_number > op_number:
                raise _inconsistent(f"entries end at op {last_op_number} > op_number {op_number}")
    checked["entries"] = _entries(
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
        raise _inconsistent("RecoveryResponse: log, op_number, commit_number must be all present or all nil")
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
        raise _inconsistent(f"chunk at {offset} of {len(data)} bytes ends beyond the snapshot's {size}")
    checksum = _bytes(value, "checksum", CHECKSUM_BYTES)
    if len(checksum) != CHECKSUM_BYTES:
        raise _inconsistent(f"checksum has {len(checksum)} bytes, not {CHECKSUM_BYTES}")
    return SnapshotChunk(
        **checked, snapshot_op=snapshot_op, size=size, checksum=checksum, offset=offset, data=data
    )


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
        primary=_replica_index(value, "primary"),
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
    """A replica-to-replica message (types 1..12) from the replica port; DecodeError for anything else."""
    return _dispatch(_unpack(data, MESSAGE_BYTES_MAX), _REPLICA_DECODERS)


def decode_request(data: bytes) -> Request:
    """A client Request (type 20), at most CLIENT_MESSAGE_BYTES_MAX bytes; DecodeError for anything else."""
    return _dispatch(_unpack(data, CLIENT_MESSAGE_BYTES_MAX), _REQUEST_DECODERS)


def decode_client_reply(data: bytes) -> ClientReply:
    """What a client may receive: Reply, Redirect or Error (types 21..23); DecodeError for anything else."""
    return _dispatch(_unpack(data, MESSAGE_BYTES_MAX), _CLIENT_REPLY_DECODERS)


def decode(data: bytes) -> Message:
    """Any zvsr message (tools, tests, captures). Sockets should use the narrower decoders above."""
    return _dispatch(_unpack(data, MESSAGE_BYTES_MAX), _ALL_DECODERS)
