"""What the wire codec raises: `DecodeError` with a countable reason, and `EncodeError`.

Theory of operation
-------------------
Decoding is the trust boundary (ARCHITECTURE §4, STYLE rule 6): bytes from a socket are untrusted, and
nothing reaches the protocol core until it is a well-formed, internally consistent frozen dataclass. The
decoders of this package (`zvsr.wire.codec`, `zvsr.wire.admin`, `zvsr.wire.batch`) raise exactly one exception
type, `DecodeError`, for *any* input, with a machine-readable `reason` that the runtime counts:

- ``not_msgpack``: not one complete msgpack value (truncated, trailing bytes, bad UTF-8, ext types…);
- ``not_a_map``: valid msgpack, but not a map;
- ``unknown_type`` / ``unexpected_type``: no such type number / a real type on the wrong port (a Request fed
  to `decode_replica_message`, say);
- ``missing_field`` / ``unknown_field``: the key set differs from the class's fields;
- ``wrong_type``: a field of the wrong msgpack type (``true`` is not an int here, ``str`` is not ``bin``);
- ``out_of_range``: a number outside 0..ID_MAX, a replica id above REPLICA_ID_MAX, an unknown error code, an
  empty Prepare;
- ``too_large``: the input, a bytes field, a string or an entry list above its bound in `zvsr.constants`;
- ``inconsistent``: each field is fine but together they break an invariant (commit_number > op_number,
  non-consecutive entries, an entry from a later view than the message, half of a RecoveryResponse's log…),
  or a key appears twice (readers disagree on which one counts).

`bad_int` and `inconsistent` build the two errors the wire modules share; they are package API, not for use
outside `zvsr.wire`. Everything here is re-exported by `zvsr.wire.codec` (and `zvsr.wire`), where callers
import it from.
"""

from __future__ import annotations

from typing import Final

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


def bad_int(name: str, value: object, high: int) -> DecodeError:
    """Why `value`, field `name`, is not a number in 0..`high`: not an int at all, or out of range."""
    if type(value) is not int:
        return DecodeError(REASON_WRONG_TYPE, f"{name} is {type(value).__name__}, not int")
    return DecodeError(REASON_OUT_OF_RANGE, f"{name} = {value} not in 0..{high}")


def inconsistent(message: str) -> DecodeError:
    return DecodeError(REASON_INCONSISTENT, message)
