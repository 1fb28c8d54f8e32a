"""The wire codec: every message kind round-trips; any bytes give a message or a DecodeError, nothing else.

Scenarios are written from the receiver's side: "a peer sends X; the decoder says Y".
"""

from __future__ import annotations

import threading
import tracemalloc
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zvsr import constants
from zvsr.constants import SNAPSHOT_BYTES_MAX, SNAPSHOT_CHUNK_BYTES
from zvsr.protocol import membership
from zvsr.protocol.membership import Member, Membership
from zvsr.protocol.messages import (
    CLIENT_MESSAGES,
    ERROR_CODES,
    REPLICA_MESSAGES,
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
    DECODE_ERROR_REASONS,
    TYPE_NUMBERS,
    DecodeError,
    EncodeError,
    Message,
    codec,
    decode,
    decode_client_reply,
    decode_replica_message,
    decode_request,
    encode,
)
from zvsr.wire import entries as wire_entries

ID_MAX = constants.ID_MAX

# --- strategies: valid messages of every kind ---------------------------------------------------------------

ids = st.integers(0, ID_MAX)
# Stable replica ids (zvsr.protocol.membership): 0..n-1 until the first reconfiguration, then up to 2^32 - 1.
replica_ids = st.integers(0, constants.REPLICAS_MAX - 1) | st.integers(0, constants.REPLICA_ID_MAX)
# Mostly small operations; now and then one at exactly the bound.
operations = st.one_of(st.binary(max_size=40), st.just(b"\xab" * constants.OPERATION_BYTES_MAX))


@st.composite
def entry_runs(draw: st.DrawFn, *, view: int, last_op_number: int, count: int) -> tuple[LogEntry, ...]:
    """`count` entries numbered consecutively up to `last_op_number`, none from a view after `view`."""
    first = last_op_number - count + 1
    return tuple(
        LogEntry(
            view=draw(st.integers(0, view)),
            op_number=first + index,
            client_id=draw(ids),
            request_number=draw(ids),
            operation=draw(st.binary(max_size=24)),
            timestamp=draw(ids),
        )
        for index in range(count)
    )


@st.composite
def headers(draw: st.DrawFn) -> dict[str, int]:
    return {"cluster": draw(ids), "epoch": draw(ids), "view": draw(ids), "replica": draw(replica_ids)}


@st.composite
def prepares(draw: st.DrawFn) -> Prepare:
    header = draw(headers())
    count = draw(st.integers(1, 6))
    op_number = draw(st.integers(count, ID_MAX))
    entries = draw(entry_runs(view=header["view"], last_op_number=op_number, count=count))
    return Prepare(**header, op_number=op_number, commit_number=draw(st.integers(0, op_number)), entries=entries)


@st.composite
def commits(draw: st.DrawFn) -> Commit:
    op_number = draw(ids)
    return Commit(**draw(headers()), op_number=op_number, commit_number=draw(st.integers(0, op_number)))


@st.composite
def do_view_changes(draw: st.DrawFn) -> DoViewChange:
    header = draw(headers())
    op_number = draw(st.integers(0, 6))
    kept = draw(st.integers(0, op_number))  # the ops before the kept log are in the sender's snapshot
    return DoViewChange(
        **header,
        last_normal_view=draw(st.integers(0, header["view"])),
        op_number=op_number,
        commit_number=draw(st.integers(0, op_number)),
        log=draw(entry_runs(view=header["view"], last_op_number=op_number, count=kept)),
    )


@st.composite
def start_views(draw: st.DrawFn) -> StartView:
    header = draw(headers())
    op_number = draw(st.integers(0, 6))
    kept = draw(st.integers(0, op_number))
    return StartView(
        **header,
        op_number=op_number,
        commit_number=draw(st.integers(0, op_number)),
        log=draw(entry_runs(view=header["view"], last_op_number=op_number, count=kept)),
    )


@st.composite
def new_states(draw: st.DrawFn) -> NewState:
    header = draw(headers())
    count = draw(st.integers(0, 6))
    op_number = draw(st.integers(count, ID_MAX))
    return NewState(
        **header,
        op_number=op_number,
        commit_number=draw(st.integers(0, op_number)),
        entries=draw(entry_runs(view=header["view"], last_op_number=op_number, count=count)),
    )


@st.composite
def recovery_responses(draw: st.DrawFn) -> RecoveryResponse:
    header = draw(headers())
    if draw(st.booleans()):
        return RecoveryResponse(**header, nonce=draw(ids), log=None, op_number=None, commit_number=None)
    op_number = draw(st.integers(0, 6))
    kept = draw(st.integers(0, op_number))
    return RecoveryResponse(
        **header,
        nonce=draw(ids),
        op_number=op_number,
        commit_number=draw(st.integers(0, op_number)),
        log=draw(entry_runs(view=header["view"], last_op_number=op_number, count=kept)),
    )


@st.composite
def snapshot_chunks(draw: st.DrawFn) -> SnapshotChunk:
    data = draw(st.binary(max_size=64))
    offset = draw(st.integers(0, 1000))
    return SnapshotChunk(
        **draw(headers()),
        snapshot_op=draw(ids),
        size=offset + len(data) + draw(st.integers(0, 1000)),
        checksum=draw(st.binary(min_size=16, max_size=16)),
        offset=offset,
        data=data,
    )


@st.composite
def start_epochs(draw: st.DrawFn) -> StartEpoch:
    # The codec carries the configuration as opaque bytes up to its bound; the core decodes the layout.
    membership = draw(st.binary(max_size=64) | st.just(b"\x5a" * constants.MEMBERSHIP_BYTES_MAX))
    return StartEpoch(**draw(headers()), op_number=draw(ids), membership=membership)


replica_messages = st.one_of(
    prepares(),
    st.builds(PrepareOk, cluster=ids, epoch=ids, view=ids, replica=replica_ids, op_number=ids),
    commits(),
    st.builds(StartViewChange, cluster=ids, epoch=ids, view=ids, replica=replica_ids),
    st.builds(StartViewChangeProbe, cluster=ids, epoch=ids, view=ids, replica=replica_ids),
    do_view_changes(),
    start_views(),
    st.builds(GetState, cluster=ids, epoch=ids, view=ids, replica=replica_ids, op_number=ids),
    new_states(),
    st.builds(Recovery, cluster=ids, epoch=ids, view=ids, replica=replica_ids, nonce=ids),
    st.builds(GetSnapshot, cluster=ids, epoch=ids, view=ids, replica=replica_ids, snapshot_op=ids, offset=ids),
    snapshot_chunks(),
    recovery_responses(),
    start_epochs(),
    st.builds(EpochStarted, cluster=ids, epoch=ids, view=ids, replica=replica_ids),
)
requests = st.builds(Request, client_id=ids, request_number=ids, operation=operations)
client_replies = st.one_of(
    st.builds(
        Reply,
        view=ids,
        client_id=ids,
        request_number=ids,
        result=st.one_of(st.binary(max_size=40), st.just(b"\x01" * constants.RESULT_BYTES_MAX)),
    ),
    st.builds(Redirect, view=ids, primary=replica_ids, client_id=ids, request_number=ids),
    st.builds(
        Error,
        view=ids,
        client_id=ids,
        request_number=ids,
        code=st.sampled_from(sorted(ERROR_CODES)),
        message=st.text(max_size=40) | st.just("é" * constants.ERROR_MESSAGE_CHARS_MAX),
    ),
)
messages = st.one_of(replica_messages, requests, client_replies)

# --- helpers ------------------------------------------------------------------------------------------------


def fields_of(message: Message) -> dict[str, Any]:
    """The encoded map of `message`, for a test to tamper with."""
    value: dict[str, Any] = msgpack.unpackb(encode(message))
    return value


def pack(value: object) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def reason_of(data: bytes, decoder: Any = decode) -> str:
    with pytest.raises(DecodeError) as caught:
        decoder(data)
    assert caught.value.reason in DECODE_ERROR_REASONS
    return caught.value.reason


def decodes_or_rejects(data: bytes) -> None:
    """The fuzzing contract: a DecodeError, or a message that is itself valid (survives a round trip)."""
    for decoder in (decode, decode_replica_message, decode_request, decode_client_reply):
        try:
            message = decoder(data)
        except DecodeError as error:
            assert error.reason in DECODE_ERROR_REASONS
            continue
        assert type(message) in TYPE_NUMBERS
        assert decode(encode(message)) == message


def entry(op_number: int, *, view: int = 1, operation: bytes = b"op") -> LogEntry:
    return LogEntry(
        view=view,
        op_number=op_number,
        client_id=7,
        request_number=op_number,
        operation=operation,
        timestamp=op_number,
    )


def a_prepare(**changes: Any) -> dict[str, Any]:
    """A valid Prepare of op 3..5 in view 2, as its encoded map, with `changes` applied."""
    prepare = Prepare(
        cluster=1,
        epoch=0,
        view=2,
        replica=2,
        op_number=5,
        commit_number=2,
        entries=(entry(3), entry(4), entry(5)),
    )
    return fields_of(prepare) | changes


def a_log_message(cls: type, **changes: Any) -> dict[str, Any]:
    """A valid DoViewChange / StartView / RecoveryResponse holding log 1..3, with `changes` applied."""
    common: dict[str, Any] = {"cluster": 1, "epoch": 0, "view": 4, "replica": 1, "op_number": 3}
    log = (entry(1), entry(2), entry(3, view=4))
    if cls is DoViewChange:
        message: Message = DoViewChange(**common, last_normal_view=3, commit_number=2, log=log)
    elif cls is StartView:
        message = StartView(**common, commit_number=2, log=log)
    else:
        message = RecoveryResponse(**common, nonce=99, commit_number=2, log=log)
    return fields_of(message) | changes


# --- round trips --------------------------------------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(messages)
def test_every_message_kind_survives_a_round_trip(message: Message) -> None:
    data = encode(message)
    assert decode(data) == message
    if type(message) in REPLICA_MESSAGES:
        assert decode_replica_message(data) == message
    elif type(message) is Request:
        assert decode_request(data) == message
    else:
        assert decode_client_reply(data) == message
    assert encode(decode(data)) == data, "equal messages must encode to identical bytes"


def test_type_table_covers_every_message_class_with_replica_and_client_ranges() -> None:
    assert set(TYPE_NUMBERS) == set(REPLICA_MESSAGES) | set(CLIENT_MESSAGES)
    assert len(set(TYPE_NUMBERS.values())) == len(TYPE_NUMBERS)
    assert sorted(TYPE_NUMBERS[cls] for cls in REPLICA_MESSAGES) == list(range(1, 16))
    assert sorted(TYPE_NUMBERS[cls] for cls in CLIENT_MESSAGES) == [20, 21, 22, 23]


def test_prepare_ok_encodes_to_the_documented_golden_bytes() -> None:
    # Key "type" first, then fields in dataclass order; a change here is a wire-format change.
    message = PrepareOk(cluster=1, epoch=0, view=3, replica=2, op_number=300)
    golden = (
        b"\x87\xa4type\x02\xa7cluster\x01\xa5epoch\x00\xa4view\x03\xa7replica\x02\xa9op_number\xcd\x01\x2c"
        b"\xaaread_round\x00"
    )
    assert encode(message) == golden
    assert decode(golden) == message


def test_prepare_entries_travel_as_six_arrays_with_binary_operations_and_a_timestamp() -> None:
    value = a_prepare()
    assert value["entries"][0] == [1, 3, 7, 3, b"op", 3]


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [(-1, "out_of_range"), (1.5, "wrong_type"), (None, "wrong_type"), (True, "wrong_type"), ("7", "wrong_type")],
)
def test_an_entry_whose_timestamp_is_not_a_uint64_is_refused(timestamp: Any, reason: str) -> None:
    value = a_prepare()
    value["entries"][1][5] = timestamp
    with pytest.raises(DecodeError) as caught:
        decode_replica_message(msgpack.packb(value, use_bin_type=True))
    assert caught.value.reason == reason
    assert "entries[1].timestamp" in str(caught.value)


def test_an_entry_of_five_fields_from_before_cluster_time_is_refused() -> None:
    value = a_prepare()
    value["entries"] = [entry[:5] for entry in value["entries"]]
    with pytest.raises(DecodeError, match="6-array"):
        decode_replica_message(msgpack.packb(value, use_bin_type=True))


def test_largest_legal_messages_round_trip() -> None:
    view = ID_MAX
    full_prepare = Prepare(
        cluster=ID_MAX,
        epoch=ID_MAX,
        view=view,
        replica=constants.REPLICAS_MAX - 1,
        op_number=ID_MAX,
        commit_number=ID_MAX,
        entries=tuple(
            entry(ID_MAX - constants.PREPARE_ENTRIES_MAX + 1 + index, view=view)
            for index in range(constants.PREPARE_ENTRIES_MAX)
        ),
    )
    full_new_state = NewState(
        cluster=0,
        epoch=0,
        view=1,
        replica=0,
        op_number=constants.NEW_STATE_ENTRIES_MAX,
        commit_number=0,
        entries=tuple(entry(op_number) for op_number in range(1, constants.NEW_STATE_ENTRIES_MAX + 1)),
    )
    largest_request = Request(
        client_id=ID_MAX, request_number=ID_MAX, operation=bytes(constants.OPERATION_BYTES_MAX)
    )
    longest_error = Error(
        view=0,
        client_id=0,
        request_number=0,
        code="busy",
        message="\U0001f600" * constants.ERROR_MESSAGE_CHARS_MAX,
    )
    for message in (full_prepare, full_new_state, largest_request, longest_error):
        assert decode(encode(message)) == message
    assert len(encode(largest_request)) <= constants.CLIENT_MESSAGE_BYTES_MAX
    assert decode_request(encode(largest_request)) == largest_request


def test_decoded_log_entries_are_ordinary_frozen_log_entries() -> None:
    # The decoder builds entries without LogEntry.__init__ for speed; they must be indistinguishable.
    decoded = decode_replica_message(pack(a_prepare()))
    assert isinstance(decoded, Prepare)
    built = entry(3)
    assert decoded.entries[0] == built and hash(decoded.entries[0]) == hash(built)
    assert repr(decoded.entries[0]) == repr(built)
    with pytest.raises(AttributeError):
        decoded.entries[0].view = 9  # type: ignore[misc]


def test_encoding_from_many_threads_at_once_gives_each_its_own_bytes() -> None:
    failures: list[str] = []

    def worker(client_id: int) -> None:
        message = Request(client_id=client_id, request_number=1, operation=bytes([client_id]) * 200)
        for _ in range(300):
            if decode_request(encode(message)) != message:
                failures.append(f"client {client_id}")

    threads = [threading.Thread(target=worker, args=(client_id,)) for client_id in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failures


def test_encoding_a_non_message_or_an_oversized_message_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError):
        encode({"type": 1})  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        encode(PrepareOk(cluster=2**64, epoch=0, view=0, replica=0, op_number=0))
    with pytest.raises(EncodeError):
        encode(Error(view=0, client_id=0, request_number=0, code="busy", message="\udcff"))
    fine = PrepareOk(cluster=1, epoch=0, view=0, replica=0, op_number=0)
    assert decode(encode(fine)) == fine, "a failed encode leaves the reused packer clean"
    monkeypatch.setattr(codec, "MESSAGE_BYTES_MAX", 64)
    with pytest.raises(EncodeError):
        encode(Request(client_id=1, request_number=1, operation=bytes(100)))


# --- fuzzing: nothing but DecodeError, ever -----------------------------------------------------------------


@settings(max_examples=1500)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    decodes_or_rejects(data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), ID_MAX)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=8,
)


small_numbers = st.integers(0, 6) | st.sampled_from(
    [-1, ID_MAX, constants.REPLICAS_MAX, constants.REPLICA_ID_MAX, constants.REPLICA_ID_MAX + 1]
)
plausible_entries = st.lists(
    st.lists(small_numbers, min_size=5, max_size=5).map(lambda n: [*n[:4], b"op", n[4]]) | msgpack_values,
    max_size=5,
)


def plausible_field(name: str) -> st.SearchStrategy[Any]:
    """Values that are right or nearly right for field `name`, so fuzzing reaches the consistency checks."""
    if name in ("entries", "log"):
        return plausible_entries | st.none()
    if name in ("operation", "result", "membership"):
        return st.binary(max_size=4) | st.text(max_size=2)
    if name == "code":
        return st.sampled_from([*sorted(ERROR_CODES), "teapot"])
    if name == "message":
        return st.text(max_size=4)
    return small_numbers | st.none()


@st.composite
def plausible_maps(draw: st.DrawFn) -> dict[str, Any]:
    """A map with a real type number and (mostly) its real fields, holding (mostly) plausible values."""
    cls = draw(st.sampled_from(sorted(TYPE_NUMBERS, key=TYPE_NUMBERS.__getitem__)))
    names = sorted(codec._FIELDS[cls] - {"type"})
    value: dict[str, Any] = {"type": draw(st.sampled_from([TYPE_NUMBERS[cls]] * 6 + [True, 0, 1.0]))}
    for name in names:
        if draw(st.integers(0, 30)):
            value[name] = draw(plausible_field(name) if draw(st.integers(0, 9)) else msgpack_values)
    if not draw(st.integers(0, 15)):
        value["extra"] = 1
    return value


@settings(max_examples=400)
@given(msgpack_values | plausible_maps())
def test_arbitrary_msgpack_values_only_ever_raise_decode_error(value: object) -> None:
    decodes_or_rejects(pack(value))


mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "truncate", "insert", "delete"]), st.integers(0, 10**6), st.integers(0, 255)
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(messages, mutations)
def test_mutated_valid_encodings_decode_to_valid_messages_or_raise_decode_error(
    message: Message, changes: list[tuple[str, int, int]]
) -> None:
    data = bytearray(encode(message))
    for kind, where, byte in changes:
        position = where % (len(data) + 1)
        if kind == "flip" and position < len(data):
            data[position] ^= byte or 0x80
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = bytes([byte])
        elif kind == "delete" and position < len(data):
            del data[position]
    decodes_or_rejects(bytes(data))


# --- targeted rules -----------------------------------------------------------------------------------------


def test_a_peer_sends_true_where_a_number_belongs() -> None:
    assert reason_of(pack(a_prepare(view=True))) == "wrong_type"
    assert reason_of(pack(a_prepare(type=True))) == "wrong_type", "True must not pass as type 1"
    assert reason_of(pack(a_prepare(type=1.0))) == "wrong_type"
    bool_in_entry = a_prepare()
    bool_in_entry["entries"][0][2] = False
    assert reason_of(pack(bool_in_entry)) == "wrong_type"


def test_a_peer_sends_negative_numbers() -> None:
    assert reason_of(pack(a_prepare(cluster=-1))) == "out_of_range"
    negative_client = a_prepare()
    negative_client["entries"][1][2] = -5
    assert reason_of(pack(negative_client)) == "out_of_range"


def test_numbers_above_id_max_are_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    # msgpack cannot carry an integer above 2**64 - 1 == ID_MAX at all, so the check can only fire with a
    # smaller bound; lower it to show the check is live, for headers and entries alike.
    assert decode(pack(a_prepare(epoch=ID_MAX))).epoch == ID_MAX  # type: ignore[union-attr]
    monkeypatch.setattr(codec, "ID_MAX", 1000)  # where headers are checked
    monkeypatch.setattr(wire_entries, "ID_MAX", 1000)  # where log entries are
    assert reason_of(pack(a_prepare(epoch=1001))) == "out_of_range"
    big_client = a_prepare()
    big_client["entries"][0][2] = 1001
    assert reason_of(pack(big_client)) == "out_of_range"


def test_a_replica_id_beyond_2_to_the_32_minus_1_is_out_of_range() -> None:
    """Replica ids are stable and never reused, so they outgrow a configuration's 15 members: a sender or a
    primary with id 15 (or 2^32 - 1) is fine on the wire, and whether it is a member is the replica's check."""
    for replica in (constants.REPLICAS_MAX, constants.REPLICA_ID_MAX):
        assert decode(pack(a_prepare(replica=replica))).replica == replica  # type: ignore[union-attr]
    assert reason_of(pack(a_prepare(replica=constants.REPLICA_ID_MAX + 1))) == "out_of_range"
    assert reason_of(pack(a_prepare(replica=ID_MAX))) == "out_of_range"
    redirect = fields_of(Redirect(view=1, primary=0, client_id=1, request_number=1))
    decoded = decode_client_reply(pack(redirect | {"primary": constants.REPLICA_ID_MAX}))
    assert isinstance(decoded, Redirect) and decoded.primary == constants.REPLICA_ID_MAX
    assert reason_of(pack(redirect | {"primary": constants.REPLICA_ID_MAX + 1})) == "out_of_range"
    with pytest.raises(DecodeError, match="0..4294967295"):
        decode(pack(a_prepare(replica=constants.REPLICA_ID_MAX + 1)))


def test_unknown_and_misplaced_type_numbers() -> None:
    for type_number in (0, 16, 19, 24, 255, ID_MAX):
        assert reason_of(pack(a_prepare(type=type_number))) == "unknown_type"
    request = encode(Request(client_id=1, request_number=1, operation=b"x"))
    reply = encode(Reply(view=1, client_id=1, request_number=1, result=b"y"))
    prepare = pack(a_prepare())
    assert reason_of(request, decode_replica_message) == "unexpected_type"
    assert reason_of(prepare, decode_request) == "unexpected_type"
    assert reason_of(reply, decode_request) == "unexpected_type"
    assert reason_of(prepare, decode_client_reply) == "unexpected_type"
    epoch_started = encode(EpochStarted(cluster=1, epoch=2, view=0, replica=3))
    assert decode_replica_message(epoch_started) == decode(epoch_started)
    assert reason_of(epoch_started, decode_request) == "unexpected_type"
    assert reason_of(epoch_started, decode_client_reply) == "unexpected_type"


def test_unknown_and_missing_fields() -> None:
    assert reason_of(pack(a_prepare(checksum=0))) == "unknown_field"
    missing = a_prepare()
    del missing["commit_number"]
    assert reason_of(pack(missing)) == "missing_field"
    no_type = a_prepare()
    del no_type["type"]
    assert reason_of(pack(no_type)) == "missing_field"
    # RecoveryResponse's optional fields are nil, never absent.
    backup_answer = fields_of(
        RecoveryResponse(
            cluster=1, epoch=0, view=1, replica=0, nonce=5, log=None, op_number=None, commit_number=None
        )
    )
    del backup_answer["log"]
    assert reason_of(pack(backup_answer)) == "missing_field"


def test_prepare_whose_entries_do_not_end_at_its_op_number_is_inconsistent() -> None:
    assert reason_of(pack(a_prepare(op_number=6))) == "inconsistent"
    gap = a_prepare()
    gap["entries"][1][1] = 9
    assert reason_of(pack(gap)) == "inconsistent"
    assert reason_of(pack(a_prepare(commit_number=6))) == "inconsistent"
    from_a_later_view = a_prepare()
    from_a_later_view["entries"][2][0] = 3
    assert reason_of(pack(from_a_later_view)) == "inconsistent"
    before_op_one = a_prepare(op_number=2, commit_number=0)
    before_op_one["entries"] = [[1, 0, 7, 0, b"", 0], [1, 1, 7, 1, b"", 1], [1, 2, 7, 2, b"", 2]]
    assert reason_of(pack(before_op_one)) == "inconsistent"


def test_prepare_entry_count_must_be_between_one_and_the_batch_bound() -> None:
    assert reason_of(pack(a_prepare(entries=[]))) == "out_of_range"
    count = constants.PREPARE_ENTRIES_MAX + 1
    too_many = a_prepare(op_number=count, entries=[[1, n, 7, n, b"", n] for n in range(1, count + 1)])
    assert reason_of(pack(too_many)) == "too_large"
    assert reason_of(pack(a_prepare(entries={"0": 1}))) == "wrong_type"
    assert reason_of(pack(a_prepare(entries=[[1, 5, 7, 5]]))) == "wrong_type"
    assert reason_of(pack(a_prepare(entries=[[1, 5, 7, 5, "op"]]))) == "wrong_type"


def test_commit_heartbeat_with_commit_number_beyond_op_number_is_inconsistent() -> None:
    heartbeat = fields_of(Commit(cluster=1, epoch=0, view=1, replica=1, commit_number=4, op_number=4))
    assert reason_of(pack(heartbeat | {"commit_number": 5})) == "inconsistent"


@pytest.mark.parametrize("cls", [DoViewChange, StartView, RecoveryResponse])
def test_logs_must_be_numbered_consecutively_up_to_op_number(cls: type) -> None:
    assert type(decode(pack(a_log_message(cls)))) is cls
    # A log that starts after a snapshot (ops 2..3 of 3) is fine; one that does not end at op_number is not.
    suffix = a_log_message(cls)
    suffix["log"] = suffix["log"][1:]
    assert decode(pack(suffix)).log == (entry(2), entry(3, view=4))  # type: ignore[union-attr]
    assert reason_of(pack(a_log_message(cls, op_number=4))) == "inconsistent"
    assert reason_of(pack(a_log_message(cls, op_number=2, commit_number=1))) == "inconsistent"
    assert reason_of(pack(a_log_message(cls, commit_number=4))) == "inconsistent"
    renumbered = a_log_message(cls)
    renumbered["log"] = [[1, n + 1, 7, n, b"", n] for n in range(1, 4)]
    assert reason_of(pack(renumbered)) == "inconsistent"
    later_view = a_log_message(cls)
    later_view["log"][0][0] = 5
    assert reason_of(pack(later_view)) == "inconsistent"


def test_do_view_change_whose_last_normal_view_is_after_its_view_is_inconsistent() -> None:
    assert reason_of(pack(a_log_message(DoViewChange, last_normal_view=5))) == "inconsistent"
    assert decode(pack(a_log_message(DoViewChange, last_normal_view=4))).last_normal_view == 4  # type: ignore


def test_recovery_response_with_half_a_log_is_inconsistent() -> None:
    for absent in ("log", "op_number", "commit_number"):
        assert reason_of(pack(a_log_message(RecoveryResponse, **{absent: None}))) == "inconsistent"
    backup_answer = a_log_message(RecoveryResponse, log=None, op_number=None, commit_number=None)
    assert decode(pack(backup_answer)).log is None  # type: ignore[union-attr]


def test_log_longer_than_the_bound_is_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "LOG_ENTRIES_MAX", 2)
    assert reason_of(pack(a_log_message(StartView))) == "too_large"


def test_snapshot_chunk_stays_inside_its_snapshot_and_bounds() -> None:
    chunk = SnapshotChunk(
        cluster=1, epoch=0, view=2, replica=2, snapshot_op=40, size=10, checksum=bytes(16), offset=4, data=b"abcdf"
    )
    value = fields_of(chunk)
    assert decode_replica_message(pack(value)) == chunk
    assert reason_of(pack(value | {"offset": 6})) == "inconsistent"  # would end past the snapshot
    assert reason_of(pack(value | {"checksum": b"short"})) == "inconsistent"
    assert reason_of(pack(value | {"checksum": "text"})) == "wrong_type"
    assert reason_of(pack(value | {"size": SNAPSHOT_BYTES_MAX + 1})) == "too_large"
    assert reason_of(pack(value | {"data": bytes(SNAPSHOT_CHUNK_BYTES + 1), "size": 2**31})) == "too_large"
    ask = GetSnapshot(cluster=1, epoch=0, view=2, replica=1, snapshot_op=0, offset=0)
    assert decode_replica_message(encode(ask)) == ask


def test_new_state_chunk_ends_at_or_before_its_op_number_and_respects_its_bound() -> None:
    chunk = NewState(
        cluster=1, epoch=0, view=2, replica=2, op_number=5, commit_number=5, entries=(entry(4), entry(5))
    )
    value = fields_of(chunk)
    assert decode(pack(value)) == chunk
    assert decode(pack(value | {"entries": []})).entries == ()  # type: ignore[union-attr]
    # The sender's op_number may lie beyond the chunk: the requester asks again for the rest (§5.2).
    assert decode(pack(value | {"op_number": 9, "commit_number": 6})).op_number == 9  # type: ignore[union-attr]
    assert reason_of(pack(value | {"op_number": 4, "commit_number": 4})) == "inconsistent"
    assert reason_of(pack(value | {"commit_number": 6})) == "inconsistent"
    gap = value | {"entries": [[1, 4, 7, 4, b"", 4], [1, 6, 7, 6, b"", 6]]}
    assert reason_of(pack(gap)) == "inconsistent"
    count = constants.NEW_STATE_ENTRIES_MAX + 1
    oversized = value | {"op_number": count, "entries": [[1, n, 7, n, b"", n] for n in range(1, count + 1)]}
    assert reason_of(pack(oversized)) == "too_large"


def test_oversized_operations_results_and_error_messages_are_too_large() -> None:
    request = fields_of(Request(client_id=1, request_number=1, operation=b""))
    too_big = bytes(constants.OPERATION_BYTES_MAX + 1)
    assert reason_of(pack(request | {"operation": too_big}), decode_request) == "too_large"
    big_entry = a_prepare()
    big_entry["entries"][2][4] = too_big
    assert reason_of(pack(big_entry)) == "too_large"
    reply = fields_of(Reply(view=1, client_id=1, request_number=1, result=b""))
    assert reason_of(pack(reply | {"result": bytes(constants.RESULT_BYTES_MAX + 1)})) == "too_large"
    error = fields_of(Error(view=1, client_id=1, request_number=1, code="busy", message=""))
    long_message = "x" * (constants.ERROR_MESSAGE_CHARS_MAX + 1)
    assert reason_of(pack(error | {"message": long_message}), decode_client_reply) == "too_large"


def test_start_epoch_carries_a_configuration_as_bin_up_to_its_bound() -> None:
    """Replica 0 tells new replica 3 that epoch 2 started after op 5 with members 0, 2, 3; the configuration is
    bin of at most MEMBERSHIP_BYTES_MAX bytes. Its layout is the core's to check (membership.decode), so the
    codec passes bytes that are no configuration and the replica drops them."""
    configuration = Membership.initial(3, epoch=1).next((Member(0), Member(2), Member(3, b"tcp://d")), 5, 2)
    start_epoch = StartEpoch(cluster=1, epoch=2, view=0, replica=0, op_number=5, membership=configuration.encode())
    decoded = decode_replica_message(encode(start_epoch))
    assert decoded == start_epoch
    assert isinstance(decoded, StartEpoch) and membership.decode(decoded.membership) == configuration
    value = fields_of(start_epoch)
    largest = bytes(constants.MEMBERSHIP_BYTES_MAX)
    assert decode(pack(value | {"membership": largest})).membership == largest  # type: ignore[union-attr]
    assert decode(pack(value | {"membership": b"not a configuration"})) is not None
    assert reason_of(pack(value | {"membership": largest + b"\x00"})) == "too_large"
    assert reason_of(pack(value | {"membership": configuration.encode().hex()})) == "wrong_type"
    assert reason_of(pack(value | {"membership": None})) == "wrong_type"
    assert reason_of(pack({k: v for k, v in value.items() if k != "membership"})) == "missing_field"
    assert reason_of(pack(fields_of(EpochStarted(cluster=1, epoch=2, view=0, replica=3)) | {"op_number": 5})) == (
        "unknown_field"
    )


def test_client_request_larger_than_the_client_bound_is_refused_before_unpacking() -> None:
    padded = pack({"type": 20, "client_id": 1, "request_number": 1, "operation": b"", "pad": b"x" * 70_000})
    assert reason_of(padded, decode_request) == "too_large"


def test_any_message_larger_than_the_message_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pack(a_prepare())
    monkeypatch.setattr(codec, "MESSAGE_BYTES_MAX", len(data) - 1)
    assert reason_of(data) == "too_large"
    assert reason_of(data, decode_replica_message) == "too_large"


def test_wrong_field_types_for_bytes_and_strings() -> None:
    request = fields_of(Request(client_id=1, request_number=1, operation=b"x"))
    assert reason_of(pack(request | {"operation": "x"}), decode_request) == "wrong_type"
    error = fields_of(Error(view=1, client_id=1, request_number=1, code="busy", message="m"))
    assert reason_of(pack(error | {"code": b"busy"})) == "wrong_type"
    assert reason_of(pack(error | {"message": b"m"})) == "wrong_type"
    assert reason_of(pack(error | {"code": "teapot"})) == "out_of_range"


@pytest.mark.parametrize(
    "header",
    [
        b"\xdd\xff\xff\xff\xff",  # array 32 of 4 billion elements
        b"\xdc\xff\xff",  # array 16
        b"\xdf\xff\xff\xff\xff",  # map 32
        b"\xc6\xff\xff\xff\xff",  # bin 32
        b"\xdb\xff\xff\xff\xff",  # str 32
        b"\xc9\xff\xff\xff\xff\x05",  # ext 32
    ],
)
def test_huge_declared_lengths_are_refused_without_allocating(header: bytes) -> None:
    inside_a_prepare = pack(a_prepare(entries=None))[:-1] + header  # the nil was the last byte
    tracemalloc.start()
    try:
        for data in (header, header + b"\x00" * 16, inside_a_prepare):
            for decoder in (decode, decode_replica_message, decode_request, decode_client_reply):
                reason_of(data, decoder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_malformed_msgpack_is_reported_as_not_msgpack() -> None:
    valid = pack(a_prepare())
    assert reason_of(valid + b"\xc0") == "not_msgpack", "trailing bytes"
    assert reason_of(valid[:-1]) == "not_msgpack", "truncated"
    assert reason_of(b"") == "not_msgpack"
    assert reason_of(b"\xc1") == "not_msgpack", "reserved byte"
    assert reason_of(b"\x81\xa2\xff\xfe\x01") == "not_msgpack", "invalid UTF-8 key"
    assert reason_of(b"\x81\x01\x02") == "not_msgpack", "integer map key"
    assert reason_of(b"\x91" * 100_000 + b"\xc0") == "not_msgpack", "nesting deeper than msgpack allows"
    assert reason_of(b"\xd6\xff\x00\x00\x00\x00") in {"not_msgpack", "too_large"}, "timestamp ext"


def test_valid_msgpack_that_is_not_a_map_is_reported() -> None:
    for value in (None, 1, "Prepare", [1, 2], b"\x01"):
        assert reason_of(pack(value)) == "not_a_map"


def test_non_bytes_input_is_a_decode_error_and_byte_buffers_are_accepted() -> None:
    for value in ("text", 10**9, None, [1]):
        assert reason_of(value) == "wrong_type"  # type: ignore[arg-type]
    data = pack(a_prepare())
    assert decode(bytearray(data)) == decode(memoryview(data)) == decode(data)  # type: ignore[arg-type]


def test_decode_error_is_a_value_error_with_a_reason_and_a_readable_message() -> None:
    with pytest.raises(ValueError) as caught:
        decode(pack(a_prepare(op_number=6)))
    error = caught.value
    assert isinstance(error, DecodeError) and error.reason == "inconsistent"
    assert str(error).startswith("inconsistent: ")


def test_a_bin_key_among_unknown_fields_is_a_decode_error_not_a_crash() -> None:
    # Found by the node's bad-input tests: sorting/joining a mix of str and bytes keys raised TypeError.
    request = {"type": 20, "client_id": 1, "request_number": 1, "operation": b"", b"x": 1, "y": 2}
    prepare_ok = {
        "type": 2, "cluster": 1, "epoch": 0, "view": 0, "replica": 1, "op_number": 1, "read_round": 0, b"z": 1
    }  # fmt: skip
    for decoder, value in ((decode_request, request), (decode_replica_message, prepare_ok)):
        with pytest.raises(DecodeError) as caught:
            decoder(msgpack.packb(value, use_bin_type=True))
        assert caught.value.reason == "unknown_field"
