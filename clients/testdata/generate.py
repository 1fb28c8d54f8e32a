"""Regenerate `vectors.json`, the golden wire vectors every zvsr client is tested against.

    python3 clients/testdata/generate.py           # rewrite vectors.json
    python3 clients/testdata/generate.py --check   # exit 1 if vectors.json differs from what this produces

The vectors are committed data: tests never run this script. It exists so that a deliberate wire change
(which must also change docs/protocol.md) regenerates every byte from the codec instead of by hand. Every
vector is checked here against the codec before it is written: a valid one must decode and re-encode to the
same bytes, an invalid one must raise DecodeError with the reason it is listed under, and the coordination
sequence is the real output of `CoordinationApp` behind the msgpack adapter.

JSON rendering of msgpack values (also described in README.md beside this file):
- nil, true/false, str, arrays and maps (str keys, encoding order kept) map to their JSON counterparts;
- bin is {"$bin": "<hex>"};
- an int outside -(2**53 - 1) .. 2**53 - 1 is {"$int": "<decimal>"} (JSON numbers lose precision there);
- a float (msgpack float64) is {"$float": <number>}, so 1 and 1.0 stay different values.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]

from zvsr import constants
from zvsr.apps.adapter import MsgpackStateMachine
from zvsr.apps.coordination import CoordinationApp
from zvsr.protocol.client_table import SESSION_EXPIRED_TEXT, register_result, session_id
from zvsr.protocol.membership import Member, Membership, reconfiguration_operation, result_bytes
from zvsr.protocol.messages import (
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
    Reply,
    Request,
    SnapshotChunk,
    StartEpoch,
    StartView,
    StartViewChange,
    StartViewChangeProbe,
)
from zvsr.wire import (
    DecodeError,
    Message,
    decode,
    decode_client_reply,
    decode_replica_message,
    decode_request,
    encode,
)
from zvsr.wire.batch import decode_reply_batch, decode_request_batch, encode_reply_batch, encode_request_batch

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "vectors.json"
OUTPUT_LARGE = HERE / "vectors-large.json"

SAFE_INT = 2**53 - 1

DECODERS = {
    "any": decode,
    "replica": decode_replica_message,
    "request": decode_request,
    "client_reply": decode_client_reply,
}

# Two clients: ids are random 64-bit numbers in practice, so one is beyond JSON's safe integer range.
CLIENT_A = 0x8F3A2C61D4B70E95
CLIENT_B = 0x1D2E3F40
CLUSTER = 7
EPOCH = 1


def render(value: Any) -> Any:
    """A msgpack value as JSON (see the module docstring)."""
    if value is None or type(value) is bool or type(value) is str:
        return value
    if type(value) is int:
        return value if -SAFE_INT <= value <= SAFE_INT else {"$int": str(value)}
    if type(value) is float:
        return {"$float": value}
    if type(value) is bytes:
        return {"$bin": value.hex()}
    if type(value) in (list, tuple):
        return [render(item) for item in value]
    if type(value) is dict:
        assert all(type(key) is str for key in value), value
        return {key: render(item) for key, item in value.items()}
    raise TypeError(f"cannot render {type(value).__name__}")


def pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


# --- coordination operations (also the operations inside the messages below) --------------------------------


def op(op_name: str, /, **fields: Any) -> dict[str, Any]:
    """An operation map: "op" first, then the fields in the documented order (the order of the arguments)."""
    return {"op": op_name, **fields}


PUT_LEADER = pack(op("put", key="config/leader", value="node-a"))
GET_LEADER = pack(op("get", key="config/leader"))
INCR_HITS = pack(op("incr", key="hits"))
LOCK_JOBS = pack(op("lock", name="jobs/leader", owner="worker-1"))


STAMP = 5_004_000_000  # op 4's cluster time in LOG, for hand-built entry arrays


def entry(view: int, op_number: int, client_id: int, request_number: int, operation: bytes) -> LogEntry:
    # Cluster time ~5 s after the cluster started, 1 ms per op: above 2^32, so a uint64 on the wire.
    return LogEntry(
        view=view,
        op_number=op_number,
        client_id=client_id,
        request_number=request_number,
        operation=operation,
        timestamp=5_000_000_000 + op_number * 1_000_000,
    )


LOG = (
    entry(0, 1, CLIENT_A, 1, PUT_LEADER),
    entry(0, 2, CLIENT_B, 1, INCR_HITS),
    entry(1, 3, CLIENT_A, 2, GET_LEADER),
    entry(1, 4, CLIENT_B, 2, LOCK_JOBS),
)


def header(view: int, replica: int, *, epoch: int = EPOCH) -> dict[str, int]:
    return {"cluster": CLUSTER, "epoch": epoch, "view": view, "replica": replica}


def _address(host: int) -> bytes:
    """A member's address: opaque bytes to the protocol; here a peer endpoint."""
    return f"tcp://10.0.0.{host}:7000".encode()


# A reconfiguration appended in view 1 and committed as op 5 of epoch 1 replaces replica 1 by a new replica, id
# 3: epoch 2 has members 0, 2, 3 from view 2 (its first view, led by its first member, replica 0), and replica 0
# tells the new one with a StartEpoch.
EPOCH_2 = Membership.initial(3, epoch=EPOCH, addresses=tuple(_address(i + 1) for i in range(3))).next(
    (Member(0, _address(1)), Member(2, _address(3)), Member(3, _address(4))), 5, 2
)
assert (EPOCH_2.epoch, EPOCH_2.start_op, EPOCH_2.old, EPOCH_2.highest_id) == (2, 5, (0, 1, 2), 3)
START_EPOCH = StartEpoch(**header(0, 0, epoch=2), op_number=5, membership=EPOCH_2.encode())
# The Request operation that asked for it, and its result (the msgpack map {"epoch": 2}).
RECONFIGURE = reconfiguration_operation(EPOCH, EPOCH_2.members)
assert result_bytes(2) == pack({"epoch": 2})


# --- valid messages -------------------------------------------------------------------------------------------

# A 3-replica cluster: primary(view) = view % 3.
MESSAGES: list[tuple[str, Message, str]] = [
    (
        "prepare_one_entry",
        Prepare(**header(1, 1), op_number=4, commit_number=3, entries=LOG[3:]),
        "primary 1 of view 1 prepares op 4; ops up to 3 are committed",
    ),
    (
        "prepare_batch",
        Prepare(**header(1, 1), op_number=4, commit_number=2, entries=LOG[1:]),
        "a batch: consecutive entries ending at op_number; entry 2 is from view 0",
    ),
    ("prepare_ok", PrepareOk(**header(1, 2), op_number=4), "backup 2 holds every op up to 4 of view 1"),
    (
        "prepare_ok_int_widths",
        PrepareOk(cluster=128, epoch=65535, view=65536, replica=14, op_number=2**32),
        "each msgpack uint width: uint8 128, uint16 65535, uint32 65536, uint64 2^32",
    ),
    (
        "commit_heartbeat",
        Commit(**header(1, 1), commit_number=4, op_number=4),
        "an idle primary's heartbeat (also published on PUB)",
    ),
    (
        "prepare_ok_read_round",
        PrepareOk(**header(1, 2), op_number=4, read_round=2**40 + 7),
        "backup 2 echoes read confirmation round 2^40 + 7 of the Prepare or Commit it answers",
    ),
    (
        "commit_read_round",
        Commit(**header(1, 1), commit_number=4, op_number=4, read_round=2**40 + 7),
        "a heartbeat that starts read confirmation round 2^40 + 7 (reads waiting, or a lease renewed)",
    ),
    (
        "commit_with_tail",
        Commit(**header(1, 1), commit_number=3, op_number=4),
        "commit_number < op_number: op 4 is prepared but not yet committed",
    ),
    ("start_view_change", StartViewChange(**header(2, 0)), "replica 0 votes to move to view 2"),
    (
        "start_view_change_probe",
        StartViewChangeProbe(**header(1, 2)),
        "backup 2 has not heard from the primary of view 1 for a primary timeout",
    ),
    (
        "do_view_change",
        DoViewChange(**header(2, 0), last_normal_view=1, op_number=4, commit_number=3, log=LOG),
        "replica 0's vote to the primary of view 2 (replica 2), with its whole log",
    ),
    (
        "do_view_change_empty_log",
        DoViewChange(**header(2, 1), last_normal_view=0, op_number=0, commit_number=0, log=()),
        "a replica with an empty log: op_number 0",
    ),
    (
        "start_view",
        StartView(**header(2, 2), op_number=4, commit_number=3, log=LOG),
        "the new primary 2 starts view 2 with the chosen log",
    ),
    (
        "get_state",
        GetState(**header(2, 0), op_number=2),
        "replica 0 holds view 2's log up to op 2, asks for the rest",
    ),
    (
        "new_state",
        NewState(**header(2, 2), op_number=4, commit_number=3, entries=LOG[2:]),
        "the primary's answer: ops 3..4 (its op_number is 4)",
    ),
    (
        "new_state_chunk",
        NewState(**header(2, 2), op_number=4, commit_number=4, entries=LOG[2:3]),
        "a chunk that stops short of op_number: the requester asks again from op 3",
    ),
    (
        "new_state_empty",
        NewState(**header(2, 2), op_number=4, commit_number=4, entries=()),
        "nothing after the requester's op_number",
    ),
    (
        "recovery",
        Recovery(**header(0, 1), nonce=0xC0FFEE0DDBA11),
        "replica 1 restarted without its memory; view is 0 (it does not know the view)",
    ),
    (
        "recovery_response_primary",
        RecoveryResponse(**header(2, 2), nonce=0xC0FFEE0DDBA11, log=LOG, op_number=4, commit_number=3),
        "the primary of view 2 answers with its state",
    ),
    (
        "recovery_response_backup",
        RecoveryResponse(**header(2, 0), nonce=0xC0FFEE0DDBA11, log=None, op_number=None, commit_number=None),
        "a backup answers with the nonce only: log, op_number, commit_number are nil",
    ),
    (
        "get_snapshot",
        GetSnapshot(**header(2, 1), snapshot_op=4, offset=8),
        "replica 1 asks the primary of view 2 for its snapshot at op 4 from byte 8 on (snapshot_op 0: the latest)",
    ),
    (
        "snapshot_chunk",
        SnapshotChunk(
            **header(2, 2),
            snapshot_op=4,
            size=12,
            checksum=bytes(range(16)),
            offset=8,
            data=b"\x00\x01\x02\x03",
        ),
        "the primary of view 2 sends the last 4 bytes of its 12-byte snapshot at op 4",
    ),
    (
        "start_epoch",
        START_EPOCH,
        "epoch 2 started after the reconfiguration at op 5 (members 0, 2, 3; before: 0, 1, 2): replica 0 tells "
        "the new replica 3",
    ),
    (
        "epoch_started",
        EpochStarted(**header(0, 3, epoch=2)),
        "replica 3, new in epoch 2, holds the log up to the epoch's start: its answer to replica 0's StartEpoch "
        "(and what it tells replica 1, which leaves)",
    ),
    (
        "epoch_started_replica_id_max",
        EpochStarted(**header(0, constants.REPLICA_ID_MAX, epoch=2)),
        "replica ids are stable, never reused, and 0..2^32-1 (uint32); only epoch 0 numbers them 0..n-1",
    ),
    (
        "request_register",
        Request(client_id=CLIENT_A, request_number=0, operation=b""),
        "a new session's first act: a register (request_number 0, no operation) with a random nonce as client_id",
    ),
    (
        "reply_register",
        Reply(view=1, client_id=CLIENT_A, request_number=0, result=register_result(session_id(CLIENT_A, 5))),
        "the register executed as op 5: the session id, session_id(nonce, 5), as a msgpack uint64; requests then "
        "go with it as client_id",
    ),
    (
        "request_put",
        Request(client_id=CLIENT_A, request_number=1, operation=PUT_LEADER),
        "client A's first request: a coordination put",
    ),
    (
        "request_get",
        Request(client_id=CLIENT_A, request_number=2, operation=GET_LEADER),
        "client A's next request: request_number + 1",
    ),
    (
        "request_max_numbers",
        Request(client_id=constants.ID_MAX, request_number=constants.ID_MAX, operation=INCR_HITS),
        "client_id and request_number at 2^64 - 1 (uint64)",
    ),
    (
        "request_empty_operation",
        Request(client_id=CLIENT_B, request_number=3, operation=b""),
        "an empty operation is valid on the wire (the coordination app answers bad_request)",
    ),
    (
        "request_reconfiguration",
        Request(client_id=CLIENT_B, request_number=4, operation=RECONFIGURE),
        "an operation starting with c1 is a reconfiguration, not an app op: end epoch 1, start epoch 2 with "
        "members 0, 2, 3 (the ZeroMQ runtime answers bad_request: not enabled yet)",
    ),
    (
        "reply_nil",
        Reply(view=1, client_id=CLIENT_A, request_number=1, result=pack(None)),
        "the result of the put: msgpack nil (c0)",
    ),
    (
        "reply_value",
        Reply(view=1, client_id=CLIENT_A, request_number=2, result=pack("node-a")),
        "the result of the get: the str node-a",
    ),
    (
        "reply_lock",
        Reply(
            view=2,
            client_id=CLIENT_B,
            request_number=2,
            result=pack({"ok": True, "owner": "worker-1", "token": 1}),
        ),
        "a lock result map",
    ),
    (
        "reply_reconfiguration",
        Reply(view=1, client_id=CLIENT_B, request_number=4, result=result_bytes(2)),
        'the reconfiguration executed (op 5 of epoch 1): its result is the msgpack map {"epoch": 2}',
    ),
    (
        "redirect",
        Redirect(view=2, primary=2, client_id=CLIENT_A, request_number=3),
        "not the primary: go to replica 2, primary of view 2",
    ),
    (
        "error_unavailable",
        Error(
            view=1,
            client_id=CLIENT_A,
            request_number=3,
            code="unavailable",
            message="primary cannot reach a quorum",
        ),
        "retry (same request_number)",
    ),
    (
        "error_busy",
        Error(view=1, client_id=CLIENT_A, request_number=3, code="busy", message="request queue is full"),
        "retry after a pause",
    ),
    (
        "error_view_change",
        Error(view=2, client_id=CLIENT_A, request_number=3, code="view_change", message="view change in progress"),
        "retry shortly",
    ),
    (
        "error_bad_request",
        Error(view=1, client_id=CLIENT_A, request_number=3, code="bad_request", message="malformed request"),
        "do not retry",
    ),
    (
        "error_timeout",
        Error(
            view=0,
            client_id=CLIENT_A,
            request_number=3,
            code="timeout",
            message="no answer in time; the request may or may not have been executed",
        ),
        "from a proxy or client library: outcome unknown",
    ),
    (
        "error_session_expired",
        Error(
            view=1,
            client_id=CLIENT_A,
            request_number=9,
            code="session_expired",
            message=SESSION_EXPIRED_TEXT,
        ),
        "no session with this client_id (never registered, or evicted): never executed; register a new session",
    ),
    (
        "error_unicode_message",
        Error(
            view=1, client_id=CLIENT_B, request_number=9, code="busy", message="file d'attente pleine — réessayez"
        ),
        "message is UTF-8 str; its bound counts characters (code points), not bytes",
    ),
]


# --- accepted but not canonical: decoders must take them; encoders produce canonical_hex ----------------------


def noncanonical() -> list[dict[str, Any]]:
    request = Request(client_id=5, request_number=1, operation=b"\x01")
    canonical = encode(request)
    key_type = bytes.fromhex("a474797065")
    cases = [
        (
            "keys_in_other_order",
            "map keys in any order",
            bytes.fromhex("84")
            + pack("operation")
            + pack(b"\x01")
            + pack("request_number")
            + pack(1)
            + key_type
            + pack(20)
            + pack("client_id")
            + pack(5),
        ),
        (
            "wide_int_formats",
            "a small number in a wider int format (uint8 type, int8 client_id, uint64 request_number)",
            bytes.fromhex("84")
            + key_type
            + bytes.fromhex("cc14")
            + pack("client_id")
            + bytes.fromhex("d005")
            + pack("request_number")
            + bytes.fromhex("cf0000000000000001")
            + pack("operation")
            + pack(b"\x01"),
        ),
        (
            "wide_containers",
            "map16 header, str8 keys, bin32 operation",
            bytes.fromhex("de0004")
            + bytes.fromhex("d904")
            + b"type"
            + pack(20)
            + bytes.fromhex("d909")
            + b"client_id"
            + pack(5)
            + bytes.fromhex("d90e")
            + b"request_number"
            + pack(1)
            + bytes.fromhex("d909")
            + b"operation"
            + bytes.fromhex("c60000000101"),
        ),
    ]
    out = []
    for name, note, data in cases:
        assert decode(data) == request, name
        out.append(
            {"name": name, "kind": "Request", "hex": data.hex(), "canonical_hex": canonical.hex(), "note": note}
        )
    # A log entry in array16 with int64-formatted numbers.
    message = Commit(cluster=CLUSTER, epoch=EPOCH, view=1, replica=1, commit_number=3, op_number=4)
    value = {"type": 3, **header(1, 1), "commit_number": 3, "op_number": 4, "read_round": 0}
    data = pack(value)
    # Re-pack with every int as int64 (d3): valid, since only the value counts.
    wide = bytes.fromhex("88") + b"".join(
        pack(key) + b"\xd3" + number.to_bytes(8, "big") for key, number in value.items()
    )
    assert decode(wide) == message and encode(message) == data
    out.append(
        {
            "name": "int64_formats",
            "kind": "Commit",
            "hex": wide.hex(),
            "canonical_hex": data.hex(),
            "note": "non-negative numbers in the signed int64 format",
        }
    )
    prepare = Prepare(**header(1, 1), op_number=4, commit_number=3, entries=LOG[3:])
    entries = (
        bytes.fromhex("dc0001")
        + bytes.fromhex("dc0006")
        + pack(1)
        + pack(4)
        + pack(CLIENT_B)
        + pack(2)
        + pack(LOCK_JOBS)
        + pack(LOG[3].timestamp)
    )
    head = {"type": 1, **header(1, 1), "op_number": 4, "commit_number": 3}
    wide = (
        bytes([0x80 | 9])
        + b"".join(pack(k) + pack(v) for k, v in head.items())
        + pack("entries")
        + entries
        + pack("read_round")
        + pack(0)
    )
    assert decode(wide) == prepare
    out.append(
        {
            "name": "array16_entries",
            "kind": "Prepare",
            "hex": wide.hex(),
            "canonical_hex": encode(prepare).hex(),
            "note": "entries and the entry arrays in array16 format",
        }
    )
    return out


# --- invalid inputs ---------------------------------------------------------------------------------------------


def with_fields(message: Message, /, **changes: Any) -> dict[str, Any]:
    """The wire map of `message` with some keys replaced (value _DROP removes a key)."""
    value: dict[str, Any] = unpack(encode(message))
    for key, new in changes.items():
        if new is _DROP:
            del value[key]
        else:
            value[key] = new
    return value


_DROP = object()

REQ = Request(client_id=CLIENT_A, request_number=1, operation=PUT_LEADER)
PREP = Prepare(**header(1, 1), op_number=4, commit_number=2, entries=LOG[1:])
COMMIT = Commit(**header(1, 1), commit_number=3, op_number=4)
DVC = DoViewChange(**header(2, 0), last_normal_view=1, op_number=4, commit_number=3, log=LOG)
SV = StartView(**header(2, 2), op_number=4, commit_number=3, log=LOG)
NS = NewState(**header(2, 2), op_number=4, commit_number=3, entries=LOG[2:])
RR = RecoveryResponse(**header(2, 2), nonce=99, log=LOG, op_number=4, commit_number=3)
REPLY = Reply(view=1, client_id=CLIENT_A, request_number=1, result=pack(None))
REDIRECT = Redirect(view=2, primary=2, client_id=CLIENT_A, request_number=3)
ERR = Error(view=1, client_id=CLIENT_A, request_number=3, code="busy", message="request queue is full")


def arrays(entries: tuple[LogEntry, ...]) -> list[list[Any]]:
    return [[e.view, e.op_number, e.client_id, e.request_number, e.operation, e.timestamp] for e in entries]


def invalid() -> list[tuple[str, str, str, bytes | dict[str, Any] | Any, str]]:
    """(name, decoder, reason, input, rule): bytes are used as they are, any other value is msgpack-packed."""
    request_bytes = encode(REQ)
    key_type = pack("type")
    big_op = b"\xab" * (constants.OPERATION_BYTES_MAX + 1)
    many = constants.PREPARE_ENTRIES_MAX + 1
    many_new = constants.NEW_STATE_ENTRIES_MAX + 1
    op = b"\x90"
    return [
        # not_msgpack
        ("empty_input", "any", "not_msgpack", b"", "input is one complete msgpack value"),
        ("truncated", "request", "not_msgpack", request_bytes[:-1], "input is one complete msgpack value"),
        ("trailing_bytes", "request", "not_msgpack", request_bytes + b"\xc0", "nothing may follow the map"),
        ("reserved_byte", "any", "not_msgpack", b"\xc1", "0xc1 is never valid msgpack"),
        (
            "invalid_utf8_str",
            "client_reply",
            "not_msgpack",
            pack(with_fields(ERR, message="XX")).replace(b"\xa2XX", b"\xa2\xff\xfe"),
            "str must be valid UTF-8",
        ),
        (
            "int_map_key",
            "any",
            "not_msgpack",
            bytes.fromhex("82") + key_type + pack(20) + b"\x01\x02",
            "map keys are str (an int key is refused by the unpacker)",
        ),
        # not_a_map
        ("top_level_array", "request", "not_a_map", [20, CLIENT_A, 1, PUT_LEADER], "a message is a map"),
        ("top_level_nil", "any", "not_a_map", None, "a message is a map"),
        ("top_level_int", "any", "not_a_map", 20, "a message is a map"),
        (
            "top_level_ext_empty",
            "any",
            "not_a_map",
            bytes.fromhex("c70005"),
            "a message is a map (an empty ext value passes the unpacker)",
        ),
        # unknown_type
        ("type_0", "any", "unknown_type", {"type": 0}, "type is one of 1..15, 20..23"),
        ("type_16", "replica", "unknown_type", with_fields(COMMIT, type=16), "type is one of 1..15, 20..23"),
        ("type_24", "client_reply", "unknown_type", with_fields(REPLY, type=24), "type is one of 1..15, 20..23"),
        (
            "type_30_status_query",
            "any",
            "unknown_type",
            {"type": 30},
            "the status query (type 30) is not a codec message: the node answers it before decoding",
        ),
        ("type_negative", "any", "unknown_type", {"type": -1}, "type is one of 1..15, 20..23"),
        # unexpected_type
        (
            "request_on_replica_port",
            "replica",
            "unexpected_type",
            encode(REQ),
            "replica port takes types 1..15 only",
        ),
        ("commit_on_client_port", "request", "unexpected_type", encode(COMMIT), "client port takes type 20 only"),
        (
            "start_epoch_as_answer",
            "client_reply",
            "unexpected_type",
            encode(START_EPOCH),
            "a client receives types 21..23 only (StartEpoch, type 13, is a replica kind)",
        ),
        ("reply_on_client_port", "request", "unexpected_type", encode(REPLY), "client port takes type 20 only"),
        (
            "request_as_answer",
            "client_reply",
            "unexpected_type",
            encode(REQ),
            "a client receives types 21..23 only",
        ),
        # missing_field
        ("no_type", "any", "missing_field", with_fields(REQ, type=_DROP), 'every message has "type"'),
        (
            "type_key_is_bin",
            "request",
            "missing_field",
            bytes.fromhex("84") + pack(b"type") + request_bytes[6:],
            'keys are str: a bin "type" key is no "type"',
        ),
        (
            "bare_error_from_replica",
            "client_reply",
            "missing_field",
            {"type": 23, "code": "bad_request", "message": "payload is not one msgpack value"},
            "a replica's bare Error for unreadable input (zvsr/wire/admin.py) names no request: not an answer",
        ),
        (
            "request_without_operation",
            "request",
            "missing_field",
            with_fields(REQ, operation=_DROP),
            "every field is present",
        ),
        (
            "prepare_without_entries",
            "replica",
            "missing_field",
            with_fields(PREP, entries=_DROP),
            "every field is present",
        ),
        (
            "recovery_response_without_log",
            "replica",
            "missing_field",
            with_fields(RR, log=_DROP),
            "every field is present (an absent log is nil, not a missing key)",
        ),
        # unknown_field
        ("request_extra_field", "request", "unknown_field", {**with_fields(REQ), "priority": 1}, "no other keys"),
        (
            "extra_bin_key",
            "request",
            "unknown_field",
            {**with_fields(REQ), b"client_id": 1},
            "keys are str: a bin key is not a field, even when it spells one",
        ),
        ("commit_extra_field", "replica", "unknown_field", {**with_fields(COMMIT), "leader": 1}, "no other keys"),
        (
            "epoch_started_with_membership",
            "replica",
            "unknown_field",
            {**with_fields(EpochStarted(**header(0, 3, epoch=2))), "membership": EPOCH_2.encode()},
            "EpochStarted is the common header only: the configuration travels in StartEpoch",
        ),
        # wrong_type
        ("type_is_str", "request", "wrong_type", with_fields(REQ, type="20"), "type is an int"),
        ("type_is_true", "replica", "wrong_type", with_fields(COMMIT, type=True), "true is not an int"),
        ("type_is_float", "request", "wrong_type", with_fields(REQ, type=20.0), "a float is not an int"),
        ("client_id_is_true", "request", "wrong_type", with_fields(REQ, client_id=True), "true is not an int"),
        (
            "request_number_is_nil",
            "request",
            "wrong_type",
            with_fields(REQ, request_number=None),
            "nil is not an int",
        ),
        ("view_is_str", "replica", "wrong_type", with_fields(COMMIT, view="1"), "numbers are ints"),
        ("replica_is_float", "replica", "wrong_type", with_fields(COMMIT, replica=1.0), "numbers are ints"),
        (
            "operation_is_str",
            "request",
            "wrong_type",
            with_fields(REQ, operation="put"),
            "operation is bin, not str",
        ),
        ("result_is_str", "client_reply", "wrong_type", with_fields(REPLY, result="ok"), "result is bin, not str"),
        ("code_is_bin", "client_reply", "wrong_type", with_fields(ERR, code=b"busy"), "code is str, not bin"),
        (
            "message_is_bin",
            "client_reply",
            "wrong_type",
            with_fields(ERR, message=b"full"),
            "message is str, not bin",
        ),
        (
            "start_epoch_membership_is_str",
            "replica",
            "wrong_type",
            with_fields(START_EPOCH, membership=EPOCH_2.encode().hex()),
            "membership is bin (the encoded configuration), not str",
        ),
        ("entries_is_map", "replica", "wrong_type", with_fields(PREP, entries={"1": 1}), "entries is an array"),
        (
            "entry_is_4_array",
            "replica",
            "wrong_type",
            with_fields(PREP, entries=[[1, 4, 5, 2]], op_number=4),
            "a log entry is a 6-array",
        ),
        (
            "entry_is_5_array",
            "replica",
            "wrong_type",
            with_fields(PREP, entries=[[1, 4, 5, 2, op]], op_number=4),
            "a log entry is a 6-array: the 5-array of before cluster time (no timestamp) is refused",
        ),
        (
            "entry_timestamp_is_str",
            "replica",
            "wrong_type",
            with_fields(PREP, entries=[[1, 4, 5, 2, op, "5000000000"]]),
            "an entry's timestamp is an int",
        ),
        (
            "entry_operation_is_str",
            "replica",
            "wrong_type",
            with_fields(PREP, entries=[[1, 4, 5, 2, "x", STAMP]]),
            "an entry's operation is bin",
        ),
        (
            "entry_op_number_is_str",
            "replica",
            "wrong_type",
            with_fields(PREP, entries=[[1, "4", 5, 2, op, STAMP]]),
            "an entry's numbers are ints",
        ),
        (
            "log_is_nil",
            "replica",
            "wrong_type",
            with_fields(DVC, log=None),
            "only RecoveryResponse's log may be nil",
        ),
        (
            "commit_number_is_nil",
            "replica",
            "wrong_type",
            with_fields(SV, commit_number=None),
            "only RecoveryResponse's numbers may be nil",
        ),
        (
            "top_level_ext_in_type",
            "any",
            "wrong_type",
            bytes.fromhex("81") + key_type + bytes.fromhex("c70005"),
            "type is an int (an empty ext value passes the unpacker)",
        ),
        # out_of_range
        ("client_id_negative", "request", "out_of_range", with_fields(REQ, client_id=-1), "numbers are 0..2^64-1"),
        ("view_int64_min", "replica", "out_of_range", with_fields(COMMIT, view=-(2**63)), "numbers are 0..2^64-1"),
        (
            "replica_2_32",
            "replica",
            "out_of_range",
            with_fields(COMMIT, replica=2**32),
            "replica is a replica id, 0..2^32-1",
        ),
        (
            "primary_2_32",
            "client_reply",
            "out_of_range",
            with_fields(REDIRECT, primary=2**32),
            "primary is a replica id, 0..2^32-1",
        ),
        (
            "entry_client_id_negative",
            "replica",
            "out_of_range",
            with_fields(PREP, entries=[[1, 4, -5, 2, op, STAMP]]),
            "an entry's numbers are 0..2^64-1",
        ),
        (
            "entry_timestamp_negative",
            "replica",
            "out_of_range",
            with_fields(PREP, entries=[[1, 4, 5, 2, op, -1]]),
            "an entry's timestamp is 0..2^64-1",
        ),
        (
            "unknown_error_code",
            "client_reply",
            "out_of_range",
            with_fields(ERR, code="oops"),
            "code is one of unavailable, busy, view_change, bad_request, timeout",
        ),
        (
            "prepare_no_entries",
            "replica",
            "out_of_range",
            with_fields(PREP, entries=[]),
            "a Prepare carries 1.. entries",
        ),
        # too_large
        (
            "error_message_1025_chars",
            "client_reply",
            "too_large",
            with_fields(ERR, message="x" * 1025),
            "message is at most ERROR_MESSAGE_CHARS_MAX (1024) characters",
        ),
        (
            "error_message_str_bytes",
            "client_reply",
            "too_large",
            with_fields(ERR, message="\U0001f600" * 1025),
            "at most 4 * 1024 bytes of UTF-8 reach the str check",
        ),
        (
            "prepare_257_entries",
            "replica",
            "too_large",
            with_fields(
                PREP, op_number=many, commit_number=0, entries=[[1, n, 5, n, b"", n] for n in range(1, many + 1)]
            ),
            "a Prepare carries at most PREPARE_ENTRIES_MAX (256) entries",
        ),
        (
            "new_state_1025_entries",
            "replica",
            "too_large",
            with_fields(
                NS,
                op_number=many_new,
                commit_number=0,
                entries=[[1, n, 5, n, b"", n] for n in range(1, many_new + 1)],
            ),
            "a NewState carries at most NEW_STATE_ENTRIES_MAX (1024) entries",
        ),
        (
            "array_length_prefix_beyond_input",
            "replica",
            "too_large",
            pack(with_fields(DVC, log=[]))[:-1] + b"\xdd" + (constants.LOG_ENTRIES_MAX + 1).to_bytes(4, "big"),
            "an array may not declare more elements than the input has bytes (hostile length prefix)",
        ),
        (
            "map_17_keys",
            "any",
            "too_large",
            {"type": 20, **{f"k{n}": n for n in range(16)}},
            "a map has at most 16 keys (the widest message has 9)",
        ),
        (
            "request_operation_over_64kib",
            "request",
            "too_large",
            with_fields(REQ, operation=big_op),
            "operation is at most OPERATION_BYTES_MAX (65536) bytes",
        ),
        (
            "entry_operation_over_64kib",
            "replica",
            "too_large",
            with_fields(PREP, op_number=4, entries=[[1, 4, 5, 2, big_op, STAMP]]),
            "every entry's operation too",
        ),
        (
            "start_epoch_membership_too_large",
            "replica",
            "too_large",
            with_fields(START_EPOCH, membership=bytes(constants.MEMBERSHIP_BYTES_MAX + 1)),
            f"membership is at most MEMBERSHIP_BYTES_MAX ({constants.MEMBERSHIP_BYTES_MAX}) bytes: 15 members "
            "with 2048-byte addresses",
        ),
        (
            "request_input_over_client_bound",
            "request",
            "too_large",
            with_fields(REQ, operation=b"\xab" * (constants.CLIENT_MESSAGE_BYTES_MAX - 20)),
            "a client request is at most CLIENT_MESSAGE_BYTES_MAX (66560) bytes, checked before unpacking",
        ),
        (
            "ext_value",
            "any",
            "too_large",
            bytes.fromhex("81") + key_type + bytes.fromhex("d40100"),
            "ext types are refused (the unpacker reports a non-empty ext as over its length limit 0)",
        ),
        # inconsistent
        (
            "reply_duplicate_key",
            "client_reply",
            "inconsistent",
            bytes([0x86]) + pack(with_fields(REPLY, view=1))[1:] + pack("view") + pack(2),
            "a map names each key once (decoders differ on which of two equal keys wins: refused)",
        ),
        (
            "request_duplicate_key",
            "request",
            "inconsistent",
            bytes([0x85]) + pack(with_fields(REQ, request_number=1))[1:] + pack("request_number") + pack(2),
            "a map names each key once (decoders differ on which of two equal keys wins: refused)",
        ),
        (
            "prepare_commit_after_op",
            "replica",
            "inconsistent",
            with_fields(PREP, commit_number=5),
            "commit_number <= op_number",
        ),
        (
            "commit_commit_after_op",
            "replica",
            "inconsistent",
            with_fields(COMMIT, commit_number=5),
            "commit_number <= op_number",
        ),
        (
            "do_view_change_commit_after_op",
            "replica",
            "inconsistent",
            with_fields(DVC, commit_number=5),
            "commit_number <= op_number",
        ),
        (
            "start_view_commit_after_op",
            "replica",
            "inconsistent",
            with_fields(SV, commit_number=5),
            "commit_number <= op_number",
        ),
        (
            "new_state_commit_after_op",
            "replica",
            "inconsistent",
            with_fields(NS, commit_number=5),
            "commit_number <= op_number",
        ),
        (
            "recovery_response_commit_after_op",
            "replica",
            "inconsistent",
            with_fields(RR, commit_number=5),
            "commit_number <= op_number",
        ),
        (
            "prepare_entries_end_early",
            "replica",
            "inconsistent",
            with_fields(PREP, op_number=5, commit_number=2),
            "a Prepare's entries end at op_number",
        ),
        (
            "prepare_entries_gap",
            "replica",
            "inconsistent",
            with_fields(PREP, entries=[arrays(LOG)[1], arrays(LOG)[3], arrays(LOG)[3]]),
            "entries are consecutive",
        ),
        (
            "prepare_entry_from_later_view",
            "replica",
            "inconsistent",
            with_fields(PREP, entries=[[2, 4, 5, 2, op, STAMP]]),
            "no entry's view is after the message's view",
        ),
        (
            "prepare_entry_op_0",
            "replica",
            "inconsistent",
            with_fields(PREP, op_number=0, commit_number=0, entries=[[1, 0, 5, 2, op, STAMP]]),
            "op numbers start at 1",
        ),
        (
            "do_view_change_last_normal_after_view",
            "replica",
            "inconsistent",
            with_fields(DVC, last_normal_view=3),
            "last_normal_view <= view",
        ),
        (
            "do_view_change_log_length",
            "replica",
            "inconsistent",
            with_fields(DVC, op_number=5),
            "a whole log has op_number entries",
        ),
        (
            "start_view_log_not_from_1",
            "replica",
            "inconsistent",
            with_fields(SV, op_number=2, commit_number=2, log=arrays(LOG)[2:]),
            "a whole log is numbered from 1",
        ),
        (
            "recovery_response_half_nil",
            "replica",
            "inconsistent",
            with_fields(RR, op_number=None),
            "log, op_number, commit_number are all nil or all present",
        ),
        (
            "recovery_response_entry_from_later_view",
            "replica",
            "inconsistent",
            with_fields(RR, view=0, replica=0),
            "no entry's view is after the message's view",
        ),
        (
            "new_state_entries_beyond_op",
            "replica",
            "inconsistent",
            with_fields(NS, op_number=3, commit_number=3),
            "a NewState's entries end at or before op_number",
        ),
        (
            "new_state_entry_op_0",
            "replica",
            "inconsistent",
            with_fields(NS, entries=[[1, 0, 5, 2, op, STAMP]]),
            "op numbers start at 1",
        ),
    ]


def invalid_vectors() -> list[dict[str, Any]]:
    out = []
    names = set()
    for name, decoder, reason, raw, rule in invalid():
        assert name not in names, name
        names.add(name)
        if isinstance(raw, bytes):
            data = raw
        else:
            data = pack(raw)
        try:
            DECODERS[decoder](data)
        except DecodeError as error:
            assert error.reason == reason, f"{name}: expected {reason}, codec says {error}"
        else:
            raise AssertionError(f"{name}: decoded without error")
        out.append({"name": name, "decoder": decoder, "hex": data.hex(), "reason": reason, "rule": rule})
    return out


# --- valid message vectors ------------------------------------------------------------------------------------

KIND_DECODER = {
    "Request": "request",
    "Reply": "client_reply",
    "Redirect": "client_reply",
    "Error": "client_reply",
}


def message_vectors() -> list[dict[str, Any]]:
    out = []
    for name, message, note in MESSAGES:
        data = encode(message)
        kind = type(message).__name__
        decoded = DECODERS[KIND_DECODER.get(kind, "replica")](data)
        assert decoded == message and encode(decoded) == data, name
        out.append({"name": name, "kind": kind, "hex": data.hex(), "value": render(unpack(data)), "note": note})
    kinds = {vector["kind"] for vector in out}
    assert len(kinds) == 19, kinds
    return out


# --- batches (types 26, 27): a pipelining client's (or a proxy's) requests and their answers ----------------

BATCHES: list[tuple[str, str, list[Message], str]] = [
    (
        "request_batch",
        "RequestBatch",
        [
            Request(client_id=CLIENT_A, request_number=1, operation=PUT_LEADER),
            Request(client_id=CLIENT_B, request_number=7, operation=GET_LEADER),
        ],
        "two sessions' requests in one message: each element is the exact encoding of one Request",
    ),
    (
        "reply_batch",
        "ReplyBatch",
        [
            Reply(view=1, client_id=CLIENT_A, request_number=1, result=pack(None)),
            Error(view=1, client_id=CLIENT_B, request_number=7, code="busy", message="try again"),
        ],
        "their answers in one message: a Reply and an Error, each the exact encoding of one",
    ),
]


def batch_vectors() -> list[dict[str, Any]]:
    out = []
    for name, kind, messages, note in BATCHES:
        elements = [encode(message) for message in messages]
        data = encode_request_batch(elements) if kind == "RequestBatch" else encode_reply_batch(elements)
        decoded = decode_request_batch(data) if kind == "RequestBatch" else decode_reply_batch(data)
        assert decoded == elements, name
        value = {"hex": data.hex(), "value": render(unpack(data)), "elements": [e.hex() for e in elements]}
        out.append({"name": name, "kind": kind, **value, "note": note})
    return out


# --- the coordination app: a sequence applied to one fresh app ------------------------------------------------


def deep_value(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# (name, operation: a msgpack value, or raw bytes given as ("raw", bytes))
COORDINATION: list[tuple[str, Any]] = [
    ("get_missing", op("get", key="config/leader")),
    ("put", op("put", key="config/leader", value="node-a")),
    ("get_present", op("get", key="config/leader")),
    ("put_overwrites", op("put", key="config/leader", value="node-b")),
    ("get_overwritten", op("get", key="config/leader")),
    (
        "put_structured",
        op(
            "put",
            key="svc/web",
            value={"hosts": ["10.0.0.1", "10.0.0.2"], "port": 8080, "tls": True, "blob": b"\x00\xff"},
        ),
    ),
    ("get_structured", op("get", key="svc/web")),
    ("put_float", op("put", key="ratio", value=0.5)),
    ("get_float", op("get", key="ratio")),
    ("put_nil", op("put", key="empty", value=None)),
    ("get_nil_value", op("get", key="empty")),
    ("delete_nil_value", op("delete", key="empty")),
    ("delete_present", op("delete", key="svc/web")),
    ("delete_missing", op("delete", key="svc/web")),
    ("cas_create_if_absent", op("cas", key="version", expected=None, new=1)),
    ("cas_create_if_absent_again", op("cas", key="version", expected=None, new=5)),
    ("cas_mismatch", op("cas", key="version", expected=2, new=3)),
    ("cas_match", op("cas", key="version", expected=1, new=2)),
    ("cas_create_flag", op("cas", key="flag", expected=None, new=1)),
    ("cas_true_vs_1", op("cas", key="flag", expected=True, new=0)),
    ("cas_float_vs_int", op("cas", key="flag", expected=1.0, new=0)),
    ("cas_map_any_key_order", op("cas", key="svc/db", expected=None, new={"a": 1, "b": 2})),
    ("cas_map_match", op("cas", key="svc/db", expected={"b": 2, "a": 1}, new={"a": 3})),
    ("incr_missing", op("incr", key="hits")),
    ("incr_by", op("incr", key="hits", by=41)),
    ("incr_negative", op("incr", key="hits", by=-50)),
    ("incr_not_int", op("incr", key="config/leader")),
    ("incr_by_not_int", op("incr", key="hits", by="1")),
    ("put_uint64_max", op("put", key="big", value=2**64 - 1)),
    ("incr_overflow", op("incr", key="big")),
    ("lock_free", op("lock", name="jobs/leader", owner="worker-1")),
    ("lock_reentrant", op("lock", name="jobs/leader", owner="worker-1")),
    ("lock_held_by_other", op("lock", name="jobs/leader", owner="worker-2")),
    ("unlock_not_owner", op("unlock", name="jobs/leader", owner="worker-2")),
    ("unlock_owner", op("unlock", name="jobs/leader", owner="worker-1")),
    ("unlock_again", op("unlock", name="jobs/leader", owner="worker-1")),
    ("lock_next_token", op("lock", name="jobs/leader", owner="worker-2")),
    ("lock_other_name", op("lock", name="db/migrate", owner="worker-1")),
    ("unlock_never_held", op("unlock", name="nobody", owner="worker-1")),
    # Leases: only ops whose answers do not depend on the time (a live cluster gives the same bytes).
    ("lease_grant", op("lease_grant", ttl_ms=60_000)),
    ("put_with_lease", op("put", key="svc/worker-1", value="alive", lease=1)),
    ("lock_with_lease", op("lock", name="jobs/reaper", owner="worker-1", lease=1)),
    ("lease_keepalive", op("lease_keepalive", lease=1)),
    ("lease_list", op("lease_list")),
    ("lease_revoke", op("lease_revoke", lease=1)),
    ("get_deleted_with_its_lease", op("get", key="svc/worker-1")),
    ("lock_released_with_its_lease", op("lock", name="jobs/reaper", owner="worker-2")),
    ("lease_keepalive_ended", op("lease_keepalive", lease=1)),
    ("lease_revoke_ended", op("lease_revoke", lease=1)),
    ("put_unknown_lease", op("put", key="svc/worker-9", value="x", lease=99)),
    ("lease_grant_ttl_0", op("lease_grant", ttl_ms=0)),
    ("lease_grant_with_lock_delay", op("lease_grant", ttl_ms=10_000, lock_delay_ms=500)),
    ("bad_not_a_map", ["get", "config/leader"]),
    ("bad_no_op", {"key": "config/leader"}),
    ("bad_unknown_op", op("frobnicate", key="x")),
    ("bad_missing_field", op("put", key="x")),
    ("bad_unknown_field", op("get", key="x", consistent=True)),
    ("bad_key_not_str", op("get", key=7)),
    ("bad_owner_not_str", op("lock", name="jobs/leader", owner=b"worker-1")),
    # A cut-off array, not the reserved byte c1: a Request operation starting with c1 is a reconfiguration
    # (docs/protocol.md §6), which the replicas answer themselves and never pass to the app.
    ("bad_not_msgpack", ("raw", b"\x92\x01")),
    ("bad_empty_operation", ("raw", b"")),
    ("bad_two_values", ("raw", pack(op("get", key="x")) + b"\xc0")),
    ("bad_nested_too_deep", op("put", key="deep", value=deep_value(constants.OPERATION_NESTING_MAX))),
    ("put_nested_at_limit", op("put", key="deep", value=deep_value(constants.OPERATION_NESTING_MAX - 1))),
]


def coordination_entry(index: int, operation: bytes) -> LogEntry:
    """Step `index` of the coordination sequence as the log entry a replica applies: op index + 1 of view 0, at
    cluster time 5 s + 1 s per step (so a lease granted in one step has aged in the next)."""
    return LogEntry(
        view=0,
        op_number=index + 1,
        client_id=CLIENT_A,
        request_number=index + 1,
        operation=operation,
        timestamp=5_000_000_000 + (index + 1) * 1_000_000_000,
    )


def coordination_vectors() -> list[dict[str, Any]]:
    machine = MsgpackStateMachine(CoordinationApp())
    out = []
    for index, (name, operation) in enumerate(COORDINATION):
        if type(operation) is tuple:
            data = operation[1]
            op_vector: dict[str, Any] = {"hex": data.hex()}
        else:
            data = pack(operation)
            op_vector = {"hex": data.hex(), "value": render(operation)}
        result = machine.apply(coordination_entry(index, data))
        out.append(
            {"name": name, "op": op_vector, "result": {"hex": result.hex(), "value": render(unpack(result))}}
        )
    return out


# Vectors this long (the 64 KiB size bounds) go to vectors-large.json, so vectors.json stays readable.
LARGE_HEX_CHARS = 100_000


def build() -> tuple[dict[str, Any], dict[str, Any]]:
    """(vectors.json, vectors-large.json)."""
    invalid_all = invalid_vectors()
    head = {
        "format": "zvsr-golden-vectors",
        "version": 1,
        "generated_by": "clients/testdata/generate.py (from zvsr.wire.codec and zvsr.apps.coordination)",
        "json_rendering": {
            "$bin": "msgpack bin, as lowercase hex",
            "$int": "an integer outside -(2^53-1)..2^53-1, as a decimal string",
            "$float": "a msgpack float64",
        },
    }
    small = {
        **head,
        "messages": message_vectors(),
        "batches": batch_vectors(),
        "noncanonical": noncanonical(),
        "invalid": [vector for vector in invalid_all if len(vector["hex"]) <= LARGE_HEX_CHARS],
        "coordination": {
            "app": "zvsr.apps.coordination:CoordinationApp behind zvsr.apps.adapter.MsgpackStateMachine",
            "note": "apply the steps in order to one fresh app; each result depends on the steps before it",
            "sequence": coordination_vectors(),
        },
    }
    large = {**head, "invalid": [vector for vector in invalid_all if len(vector["hex"]) > LARGE_HEX_CHARS]}
    return small, large


def main(argv: list[str]) -> int:
    small, large = build()
    outputs = {OUTPUT: small, OUTPUT_LARGE: large}
    stale = False
    for path, document in outputs.items():
        text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
        if argv[1:] == ["--check"]:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                print(f"{path} is stale: run {Path(argv[0]).name}", file=sys.stderr)
                stale = True
        else:
            path.write_text(text, encoding="utf-8")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
