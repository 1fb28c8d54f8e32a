"""Untrusted bytes → one bounded msgpack map: the first step of every decode in `zvsr.wire.codec`.

Theory of operation
-------------------
`unpack_map` returns the top-level map of a frame, its keys as msgpack gave them (str or bin) and its values
scalars or lists, or raises `DecodeError`. It knows nothing of message kinds: the codec's dispatch checks the
``type`` and the key set, and the per-kind decoders the fields. It is package API, not for use outside
`zvsr.wire`.

Hostile length prefixes cannot make it allocate: the input length is checked against the caller's bound
(MESSAGE_BYTES_MAX, or CLIENT_MESSAGE_BYTES_MAX for client requests) before msgpack sees it, and msgpack's
own per-container limits are capped by the input length, since every element of a container takes at least
one byte (msgpack preallocates a list of the declared length otherwise). Nesting depth is bounded by
msgpack's C unpacker, and nothing here recurses. A key that appears twice is refused (``inconsistent``):
msgpack keeps the last, other readers the first.

Hostile *content* is bounded too. One `unpackb` builds the whole value before any field is looked at, and a
one-byte empty array becomes a ~60-byte Python list: a 256 MiB frame of nested empty arrays would cost
~16 GiB. So only frames up to `STREAM_DECODE_ABOVE` bytes (every client request, every ordinary Prepare) take
that one call, costing at most a few MiB whatever they hold. Bigger frames (view-change and recovery logs,
state transfer, snapshot chunks) are unpacked field by field (`_unpack_streaming`): the first byte of every
top-level value is looked at before the value is built, so a field can only become a scalar or an array of
log entries, and each entry is checked the moment msgpack completes it (`zvsr.wire.entries.entry_hook`), so a
wrong shape stops the unpacking at the first bad entry. Memory is then a bounded multiple of the input
(≤ ~16 bytes per byte; tests/test_fuzz_codec.py measures every shape it knows, and checks that both paths
agree on every input by patching this module's `STREAM_DECODE_ABOVE`).
"""

from __future__ import annotations

from typing import Any, Final

import msgpack  # type: ignore[import-untyped]  # no stubs or py.typed upstream

from zvsr.constants import (
    ERROR_MESSAGE_CHARS_MAX,
    LOG_ENTRIES_MAX,
    OPERATION_BYTES_MAX,
    RESULT_BYTES_MAX,
    STREAM_DECODE_ABOVE,
)
from zvsr.protocol.messages import LogEntry
from zvsr.wire.entries import entry_hook
from zvsr.wire.errors import (
    REASON_NOT_A_MAP,
    REASON_NOT_MSGPACK,
    REASON_TOO_LARGE,
    REASON_WRONG_TYPE,
    DecodeError,
    inconsistent,
)

# The widest message (DoViewChange, RecoveryResponse) has 9 keys including "type".
_MAP_LEN_MAX: Final = 16
# Bin fields are operations and results; UTF-8 needs at most 4 bytes per character of an error message, and
# field names are far shorter than that.
_BIN_BYTES_MAX: Final = max(OPERATION_BYTES_MAX, RESULT_BYTES_MAX)
_STR_BYTES_MAX: Final = 4 * ERROR_MESSAGE_CHARS_MAX

_unpackb = msgpack.unpackb


def unpack_map(data: bytes, size_max: int) -> dict[str, Any]:
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
    return inconsistent("a key appears twice")


# First bytes of msgpack values (msgpack spec, "formats"): what each top-level value may start with.
_MAP_HEADS: Final = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
_ARRAY_HEADS: Final = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])
_CONTAINER_HEADS: Final = _MAP_HEADS | _ARRAY_HEADS
_KEY_HEADS: Final = frozenset([*range(0xA0, 0xC0), 0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6])  # str, bin


def _unpack_streaming(data: bytes) -> dict[str, Any]:
    """What `unpack_map` returns for `data`, built so that hostile content cannot cost more than a bounded
    multiple of its size: containers other than the top-level map and arrays of log entries are refused
    before they are built, and entries arrive as checked `LogEntry` objects (see `entry_hook`)."""
    size = len(data)
    unpacker = msgpack.Unpacker(
        None,
        raw=False,
        strict_map_key=True,
        max_buffer_size=size,
        max_bin_len=_BIN_BYTES_MAX,
        max_str_len=_STR_BYTES_MAX,
        max_array_len=6,  # the only arrays unpacked whole are log entries; their parent array is walked here
        max_map_len=0,  # the only map is the top level, read by its header
        max_ext_len=0,
        list_hook=entry_hook,
    )
    unpacker.feed(data)
    unpack, tell = unpacker.unpack, unpacker.tell
    value: dict[
        Any, Any
    ] = {}  # keys are str or bytes, as the one-call path's; the codec's dispatch sorts them out
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
                    raise DecodeError(REASON_WRONG_TYPE, f"{name!r}[{index}] is not a 6-array")
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
