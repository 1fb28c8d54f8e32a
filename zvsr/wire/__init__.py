"""The wire format: msgpack maps with a numeric ``type`` (see `zvsr.wire.codec` for the table and the rules).

Only this package turns bytes into protocol messages (STYLE rule 8); everything it lets through is a valid,
internally consistent frozen dataclass, and everything else is a `DecodeError` with a countable `reason`.
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
