"""The wire format: msgpack maps with a numeric ``type`` (see `zvsr.wire.codec` for the table and the rules).

Only this package turns bytes into protocol messages (STYLE rule 8); everything it lets through is a valid,
internally consistent frozen dataclass, and everything else is a `DecodeError` with a countable `reason`.

Modules: `codec` (messages ⇄ bytes: the type numbers, encoders, per-kind decoders and public entry points),
with `unpack` (bytes → one bounded msgpack map), `entries` (log entries on the wire) and `errors` (the
exceptions and reasons, re-exported by `codec`) beside it; `admin` (the status query and the reply to
unreadable input) and `batch` (the proxy↔replica batches) build on `codec`.
"""

from zvsr.wire.codec import (
    DECODE_ERROR_REASONS,
    TYPE_NUMBERS,
    DecodeError,
    EncodeError,
    Message,
    decode,
    decode_client_reply,
    decode_replica_message,
    decode_request,
    encode,
)

__all__ = [
    "DECODE_ERROR_REASONS",
    "TYPE_NUMBERS",
    "DecodeError",
    "EncodeError",
    "Message",
    "decode",
    "decode_client_reply",
    "decode_replica_message",
    "decode_request",
    "encode",
]
