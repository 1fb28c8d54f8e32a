"""Fuzzing the codec and the admin decoders with the generators of `zvsr.fuzz` (hypothesis drives their Random).

tests/test_codec.py already feeds short random bytes, arbitrary msgpack values and byte mutations of
hypothesis-built messages to the four codec decoders. This file adds what it does not: the golden vectors and
fresh messages of every kind as seeds; msgpack-aware mutations (a field of another type, numbers at the edges,
keys added / removed / spelled as bin / duplicated, deep nesting, huge declared lengths in any field and inside
log entries, a lying map header); splicing and concatenating two messages; the admin decoders of the client
port (`zvsr.wire.admin`) and the proxy↔replica batches (`zvsr.wire.batch`); the frame generator the live
fuzz uses; and memory bounds.

Tests whose docstring starts with "BUG" pin defects this fuzzing found; they fail until the code is fixed.

The contract, for every input and every decoder: a `DecodeError` with a known reason, or a message that
encodes to canonical bytes which decode to the same message. When the input *was* canonical (built with the
codec's own packing, fields in order), a successful decode must re-encode to exactly the input.
"""

from __future__ import annotations

import random
import tracemalloc
from collections import Counter
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zvsr import constants
from zvsr.fuzz.generators import (
    ALL_KINDS,
    CLIENT,
    CONTENT_BOMBS,
    PEER,
    PORTS,
    PROXY,
    FrameGenerator,
    fresh_batch,
    fresh_message,
    limit_payloads,
    load_seeds,
)
from zvsr.fuzz.msgpack_bytes import EDGE_NUMBERS, HUGE_HEADERS, pack_array, pack_map, packb
from zvsr.fuzz.mutations import BYTE_MUTATIONS, STRUCTURE_MUTATIONS, mutate_bytes, mutate_structure
from zvsr.protocol import membership
from zvsr.protocol.membership import MembershipError
from zvsr.protocol.messages import REPLICA_MESSAGES, DoViewChange, LogEntry, Request, StartEpoch
from zvsr.runtime.envelope import EnvelopeError, answer_frames, parse_client_frames
from zvsr.wire import DECODE_ERROR_REASONS, TYPE_NUMBERS, DecodeError, Message, admin, unpack
from zvsr.wire.batch import decode_reply_batch, decode_request_batch
from zvsr.wire.codec import decode, decode_client_reply, decode_replica_message, decode_request, encode

SEEDS = load_seeds()
DECODERS = (decode, decode_replica_message, decode_request, decode_client_reply)
ID_MAX = constants.ID_MAX

FUZZ = settings(
    max_examples=250,
    deadline=None,  # a loaded CI machine; the bounds that matter are checked explicitly
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

kinds = st.sampled_from(ALL_KINDS)
randoms = st.randoms(use_true_random=False)


# --- the contracts ------------------------------------------------------------------------------------------


def codec_contract(data: bytes) -> list[Message]:
    """Every decoder: DecodeError with a known reason, or a message whose canonical encoding round-trips."""
    decoded = []
    for decoder in DECODERS:
        message = decode_both_ways(decoder, data)
        if isinstance(message, DecodeError):
            continue
        assert type(message) in TYPE_NUMBERS
        canonical = encode(message)
        assert decode(canonical) == message
        assert encode(decode(canonical)) == canonical
        decoded.append(message)
    return decoded


def decode_both_ways(decoder: Any, data: bytes) -> Message | DecodeError:
    """`decoder(data)` unpacked in one call and field by field (as frames above STREAM_DECODE_ABOVE are): the
    two must agree — the same message, or both a DecodeError with a known reason."""
    outcomes: list[Message | DecodeError] = []
    saved = unpack.STREAM_DECODE_ABOVE
    for threshold in (saved, -1) if len(data) <= saved else (2**62, saved):
        unpack.STREAM_DECODE_ABOVE = threshold  # type: ignore[misc]
        try:
            outcomes.append(decoder(data))
        except DecodeError as error:
            assert error.reason in DECODE_ERROR_REASONS, error
            outcomes.append(error)
        finally:
            unpack.STREAM_DECODE_ABOVE = saved  # type: ignore[misc]
    one_call, streaming = outcomes
    if isinstance(one_call, DecodeError) or isinstance(streaming, DecodeError):
        assert isinstance(one_call, DecodeError) and isinstance(streaming, DecodeError), (one_call, streaming)
    else:
        assert one_call == streaming
    return one_call


def admin_contract(data: bytes) -> None:
    """The client port's admin readers: booleans, None or ids, and DecodeError only."""
    query = admin.is_status_query(data)
    assert type(query) is bool
    if query:
        assert msgpack.unpackb(data) == {"type": 30}
    ids = admin.request_ids(data)
    if ids is not None:
        client_id, request_number = ids
        assert 0 <= client_id <= ID_MAX and 0 <= request_number <= ID_MAX
    try:
        status = admin.decode_status(data)
    except DecodeError as error:
        assert error.reason in DECODE_ERROR_REASONS
    else:
        assert type(status) is dict and status["type"] == 31


def seed_of(rng: random.Random, kind: type) -> bytes:
    """A valid encoding of `kind`: its golden vector now and then, else a fresh random message."""
    vectors = [data for data in SEEDS.messages if _kind_of(data) is kind]
    if vectors and rng.random() < 0.3:
        return rng.choice(vectors)
    return encode(fresh_message(rng, kind, seeds=SEEDS))


def _kind_of(data: bytes) -> type | None:
    try:
        return type(decode(data))
    except DecodeError:
        return None


def fields_of(message: Message) -> dict[str, Any]:
    value: dict[str, Any] = msgpack.unpackb(encode(message), raw=False)
    return value


# --- seeds and generators are what they claim -----------------------------------------------------------------


def test_the_seeds_hold_every_message_kind_and_the_invalid_vectors() -> None:
    assert {_kind_of(data) for data in SEEDS.messages} == set(ALL_KINDS)
    assert len(SEEDS.invalid) > 50
    for data in SEEDS.invalid:
        codec_contract(data)
        admin_contract(data)


@settings(FUZZ, max_examples=190)
@given(kinds, randoms)
def test_fresh_messages_of_every_kind_are_valid_and_canonical(kind: type, rng: random.Random) -> None:
    message = fresh_message(rng, kind, avoid_cluster=7, seeds=SEEDS)
    assert type(message) is kind
    data = encode(message)
    assert decode(data) == message
    assert packb(msgpack.unpackb(data, raw=False)) == data, "the fuzzer repacks like the codec"
    if kind in REPLICA_MESSAGES:
        assert decode_replica_message(data) == message
        assert message.cluster != 7


def test_fresh_messages_carry_wide_replica_ids_and_real_configurations() -> None:
    """Replica ids beyond a first configuration's 0..14 (up to 2^32 - 1), and StartEpochs whose `membership`
    is mostly a configuration the core reads — matching the message's epoch and op — and now and then junk,
    which only the core can refuse (the codec checks the bin bound alone)."""
    rng = random.Random(5)
    wide_ids = 0
    outcomes: Counter[str] = Counter()
    for _ in range(300):
        message = fresh_message(rng, StartEpoch, seeds=SEEDS)
        assert isinstance(message, StartEpoch)
        wide_ids += message.replica >= constants.REPLICAS_MAX
        try:
            configuration = membership.decode(message.membership)
        except MembershipError:
            outcomes["junk"] += 1
        else:
            outcomes["configuration"] += 1
            assert (configuration.epoch, configuration.start_op) == (message.epoch, message.op_number)
    assert wide_ids > 20
    assert outcomes["configuration"] > 200 and outcomes["junk"] > 20, outcomes


# --- random input to every decoder -------------------------------------------------------------------------------


@settings(FUZZ, max_examples=190)
@given(st.binary(min_size=200, max_size=3000))
def test_long_random_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    # test_codec.py covers inputs up to 200 bytes; longer ones reach other msgpack paths (str/bin 16 and 32).
    codec_contract(data)
    admin_contract(data)


@settings(FUZZ, max_examples=260)
@given(kinds, randoms, st.binary(max_size=64))
def test_a_valid_prefix_followed_by_random_bytes(kind: type, rng: random.Random, tail: bytes) -> None:
    """A message cut anywhere and continued with noise: the decoder is inside a map when the noise starts."""
    data = seed_of(rng, kind)
    cut = rng.randrange(len(data) + 1)
    codec_contract(data[:cut] + tail)
    admin_contract(data[:cut] + tail)


@settings(FUZZ, max_examples=190)
@given(st.sampled_from(sorted(TYPE_NUMBERS.values()) + [30, 31]), st.binary(max_size=300))
def test_a_real_type_number_followed_by_random_bytes(type_number: int, tail: bytes) -> None:
    """A map that starts right (``{"type": n, ...``) and then holds anything."""
    for header in (b"\x82", b"\x85", b"\x8f", b"\xde\x00\x10"):
        data = header + packb("type") + packb(type_number) + tail
        codec_contract(data)
        admin_contract(data)


# --- mutations of every kind -------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=290)
@given(kinds, randoms, st.lists(st.sampled_from(BYTE_MUTATIONS), min_size=1, max_size=4))
def test_byte_mutations_of_every_kind(kind: type, rng: random.Random, mutations: list[str]) -> None:
    data = seed_of(rng, kind)
    others = [seed_of(rng, rng.choice(ALL_KINDS)) for _ in range(2)]
    for mutation in mutations:
        data = mutate_bytes(rng, data, others, kind=mutation)
    codec_contract(data)
    admin_contract(data)


@settings(FUZZ, max_examples=390)
@given(kinds, randoms, st.lists(st.sampled_from(STRUCTURE_MUTATIONS), min_size=1, max_size=3))
def test_structure_mutations_of_every_kind(kind: type, rng: random.Random, mutations: list[str]) -> None:
    """Field types, edge numbers, added / removed / bin / duplicate keys, nesting, huge lengths, entries."""
    data = seed_of(rng, kind)
    for mutation in mutations:
        data = mutate_structure(rng, data, kind=mutation)
    codec_contract(data)
    # admin.decode_status is left out here: see test_a_status_answer_nested_1000_deep_is_a_decode_error.
    assert type(admin.is_status_query(data)) is bool
    assert admin.request_ids(data) is None or len(admin.request_ids(data) or ()) == 2


@settings(FUZZ, max_examples=190)
@given(kinds, randoms)
def test_a_non_canonical_encoding_decodes_to_the_same_message(kind: type, rng: random.Random) -> None:
    """Keys shuffled, every int, length and header at its widest: §3 says any valid encoding is accepted."""
    message = fresh_message(rng, kind, seeds=SEEDS)
    data = mutate_structure(rng, encode(message), kind="reorder")
    assert decode(data) == message
    assert encode(decode(data)) == encode(message)


# 14 and 15: around the members of a configuration; 2^32 - 1 and 2^32: around the largest replica id.
EDGE_VALUES: list[Any] = [
    0, 1, 14, 15, 2**32 - 1, 2**32, 2**53 + 1, ID_MAX - 1, ID_MAX, -1, -(2**63), float(2**64), 1.0, True, False,
    None, "", "x", b"", b"\x00" * 16, [], [[1, 1, 1, 1, b"", 1]], {}, msgpack.ExtType(1, b""),
]  # fmt: skip


@settings(FUZZ, max_examples=290)
@given(kinds, randoms, st.sampled_from(EDGE_VALUES), st.data())
def test_one_field_changed_to_an_edge_value_is_refused_or_decoded_exactly(
    kind: type, rng: random.Random, value: Any, data: st.DataObject
) -> None:
    """0, 2^64-1, -1, 2^64 (no msgpack int holds it: sent as a float), wrong types — in every field.

    The map stays canonical (codec key order, shortest encodings), so whatever decodes must encode back to
    exactly these bytes, and a number must arrive unchanged.
    """
    message = fresh_message(rng, kind, seeds=SEEDS)
    value_map = fields_of(message)
    assert packb(value_map) == encode(message)
    name = data.draw(st.sampled_from(sorted(value_map)))
    value_map[name] = value
    packed = packb(value_map)
    for decoder in DECODERS:
        try:
            decoded = decoder(packed)
        except DecodeError as error:
            assert error.reason in DECODE_ERROR_REASONS
            continue
        assert encode(decoded) == packed
        if type(value) is int and name != "type":
            assert getattr(decoded, name) == value


@settings(FUZZ, max_examples=190)
@given(kinds, randoms, st.sampled_from(EDGE_NUMBERS), st.data())
def test_raw_edge_encodings_in_any_field(
    kind: type, rng: random.Random, number: bytes, data: st.DataObject
) -> None:
    """Non-canonical widths of edge numbers (0 as uint64, +1 as int64, 2^64 as uint64 plus a byte) in place."""
    value_map = fields_of(fresh_message(rng, kind, seeds=SEEDS))
    name = data.draw(st.sampled_from(sorted(value_map)))
    items = [(packb(k), number if k == name else packb(v)) for k, v in value_map.items()]
    for message in codec_contract(pack_map(items)):
        assert type(message) is kind or name == "type"


@settings(FUZZ, max_examples=190)
@given(kinds, kinds, randoms)
def test_two_messages_spliced_or_concatenated(first: type, second: type, rng: random.Random) -> None:
    a, b = seed_of(rng, first), seed_of(rng, second)
    codec_contract(a[: rng.randrange(len(a) + 1)] + b[rng.randrange(len(b) + 1) :])
    for decoder in DECODERS:  # two complete values are never one message
        with pytest.raises(DecodeError) as caught:
            decoder(a + b)
        assert caught.value.reason in ("not_msgpack", "too_large")


@settings(FUZZ, max_examples=130)
@given(kinds, randoms, st.sampled_from([2, 64, 65, 500, 1000, 1023, 1024, 1025, 100_000]), st.data())
def test_deep_nesting_in_any_field_is_refused(
    kind: type, rng: random.Random, depth: int, data: st.DataObject
) -> None:
    """No field holds arrays of arrays (entries hold 5-arrays of scalars), so every decoder must refuse."""
    value_map = fields_of(fresh_message(rng, kind, seeds=SEEDS))
    name = data.draw(st.sampled_from(sorted(value_map)))
    nested = data.draw(st.sampled_from([b"\x91" * depth + b"\xc0", b"\x81\xa1k" * depth + b"\x01"]))
    items = [(packb(k), nested if k == name else packb(v)) for k, v in value_map.items()]
    for decoder in DECODERS:
        with pytest.raises(DecodeError) as caught:
            decoder(pack_map(items))
        assert caught.value.reason in DECODE_ERROR_REASONS


@settings(FUZZ, max_examples=100)
@given(kinds, randoms, st.sampled_from(HUGE_HEADERS), st.integers(0, 32), st.booleans(), st.data())
def test_huge_declared_lengths_anywhere_cost_no_memory(
    kind: type, rng: random.Random, header: bytes, tail: int, in_entry: bool, data: st.DataObject
) -> None:
    """A container or string header declaring up to 4 GiB, in any field or inside a log entry: bounded memory.

    tests/test_codec.py checks a few fixed positions; here every field of every kind, and entry elements.
    """
    value_map = fields_of(fresh_message(rng, kind, seeds=SEEDS))
    name = data.draw(st.sampled_from(sorted(value_map)))
    hostile = header + bytes(tail)
    lists = [k for k, v in value_map.items() if type(v) is list and v]
    if in_entry and lists:
        name = lists[0]
        entries = [packb(e) for e in value_map[name]]
        entries[0] = pack_array([packb(part) for part in value_map[name][0][:4]] + [hostile])
        replacement = pack_array(entries)
    else:
        replacement = hostile
    encoded = pack_map([(packb(k), replacement if k == name else packb(v)) for k, v in value_map.items()])
    tracemalloc.start()
    try:
        for decoder in DECODERS:
            with pytest.raises(DecodeError):
                decoder(encoded)
        admin.is_status_query(encoded)
        admin.request_ids(encoded)
        with pytest.raises(DecodeError):
            admin.decode_status(encoded)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak} bytes for a {len(encoded)}-byte input"


# --- the admin decoders ------------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=190)
@given(randoms, st.lists(st.sampled_from(BYTE_MUTATIONS + STRUCTURE_MUTATIONS), min_size=1, max_size=3))
def test_mutated_status_queries_and_answers(rng: random.Random, mutations: list[str]) -> None:
    status = {
        "replica": 1,
        "status": "normal",
        "view": rng.randrange(1000),
        "last_heard_ms": {0: 12, 2: None},
        "counters": {"peer: decode error (not_msgpack)": rng.randrange(10**6)},
    }
    for data in (admin.encode_status_query(), admin.encode_status(status)):
        assert admin.is_status_query(data) == (data == admin.encode_status_query())
        for mutation in mutations:
            if mutation in BYTE_MUTATIONS:
                data = mutate_bytes(rng, data, kind=mutation)
            elif mutation != "deep_nesting":  # see test_a_status_answer_nested_1000_deep_is_a_decode_error
                data = mutate_structure(rng, data, kind=mutation)
        codec_contract(data)
        admin_contract(data)


@settings(FUZZ, max_examples=130)
@given(st.text(max_size=3000))
def test_a_bare_error_of_any_text_is_readable_and_never_taken_for_an_answer(text: str) -> None:
    data = admin.encode_bare_error(text)
    value = msgpack.unpackb(data, raw=False)
    assert set(value) == {"type", "code", "message"} and value["code"] == "bad_request"
    assert len(value["message"]) <= constants.ERROR_MESSAGE_CHARS_MAX
    with pytest.raises(DecodeError) as caught:
        decode_client_reply(data)
    assert caught.value.reason == "missing_field"
    assert len(admin.clip_message(text)) <= constants.ERROR_MESSAGE_CHARS_MAX


@pytest.mark.parametrize("depth", [1000, 1020])
def test_a_status_answer_nested_1000_deep_is_a_decode_error(depth: int) -> None:
    """BUG (found by this fuzzing): `decode_status` documents DecodeError for anything that is not a status
    answer, but ``{"type": [[[…nil…]]]}`` nested about 1000 deep (msgpack's C unpacker allows up to 1023)
    raises RecursionError: the error message formats ``value.get('type')!r``, and repr recurses once per
    level. Bytes: ``81 a4 74 79 70 65`` + ``91`` × 1000 + ``c0`` (1007 bytes)."""
    data = b"\x81\xa4type" + b"\x91" * depth + b"\xc0"
    with pytest.raises(DecodeError):
        admin.decode_status(data)


# --- batches (zvsr.wire.batch): a proxy's many requests in one client-port message -----------------------------


def batch_contract(data: bytes) -> None:
    for decoder in (decode_request_batch, decode_reply_batch):
        try:
            elements = decoder(data)
        except DecodeError as error:
            assert error.reason in DECODE_ERROR_REASONS
            continue
        assert 1 <= len(elements) <= constants.BATCH_MESSAGES_MAX
        for element in elements:
            assert type(element) is bytes
            codec_contract(element)


# Mutations that reach the two batch-decoder bugs below are left to their own tests.
KNOWN_BATCH_BUGS = ("add_key", "bin_key", "duplicate_key", "deep_nesting")
BATCH_MUTATIONS = [m for m in BYTE_MUTATIONS + STRUCTURE_MUTATIONS if m not in KNOWN_BATCH_BUGS]


@settings(FUZZ, max_examples=190)
@given(randoms, st.lists(st.sampled_from(BATCH_MUTATIONS), min_size=1, max_size=3))
def test_mutated_batches_only_raise_decode_error(rng: random.Random, mutations: list[str]) -> None:
    data = fresh_batch(rng, seeds=SEEDS)
    batch_contract(data)
    for mutation in mutations:
        if mutation in BYTE_MUTATIONS:
            data = mutate_bytes(rng, data, kind=mutation)
        else:
            data = mutate_structure(rng, data, kind=mutation)
    batch_contract(data)
    codec_contract(data)
    admin_contract(data)


def test_a_batch_with_a_bin_key_is_a_decode_error() -> None:
    """BUG (found by this fuzzing): `decode_request_batch` / `decode_reply_batch` raise TypeError, not
    DecodeError, for a map with a bin key besides the two fields: the unknown_field message does
    ``", ".join(sorted(keys))`` over str and bytes keys (the bug test_codec.py pins for the codec itself).
    Bytes: ``83 a4 "type" 1a a8 "requests" 91 c4 01 78 c4 01 6b 01`` = {"type": 26, "requests": [b"x"],
    b"k": 1}. Not reachable through a replica today: the node routes a payload to the batch decoder only when
    it starts with ``82 a4 "type" 1a`` (a 2-entry map), and such a map cannot hold a third key."""
    data = msgpack.packb({"type": 26, "requests": [b"x"], b"k": 1}, use_bin_type=True)
    with pytest.raises(DecodeError):
        decode_request_batch(data)
    with pytest.raises(DecodeError):
        decode_reply_batch(msgpack.packb({"type": 27, "replies": [b"x"], b"k": 1}, use_bin_type=True))


def test_a_batch_whose_type_nests_1000_deep_is_a_decode_error() -> None:
    """BUG (found by this fuzzing): ``{"type": [[[…1000 deep…]]], "requests": [b""]}`` makes the batch decoders
    raise RecursionError: the inconsistent-type message formats ``value['type']!r``. Not reachable through
    a replica today (the prefix gate above fixes "type" to 26)."""
    data = b"\x82\xa4type" + b"\x91" * 1000 + b"\xc0" + b"\xa8requests\x91\xc4\x00"
    with pytest.raises(DecodeError):
        decode_request_batch(data)


# --- the live fuzz's generators keep the contract too ------------------------------------------------------------


@pytest.mark.parametrize("port", PORTS)
def test_generated_frames_keep_every_contract(port: str) -> None:
    """2 000 frames per port from the generator `zvsr fuzz` uses: codec, admin and envelope contracts."""
    generator = FrameGenerator(20240601 + PORTS.index(port), avoid_cluster=99)
    for _ in range(2000):
        frames = generator.frames(port)
        payload = frames[-1]
        codec_contract(payload)
        assert type(admin.is_status_query(payload)) is bool
        admin.request_ids(payload)
        if port != PEER:
            routed = [b"\x01id", *frames]
            try:
                envelope, body = parse_client_frames(routed)
            except EnvelopeError:
                continue
            assert body == payload and answer_frames(envelope, body) == routed
    assert generator.stats["structure mutation"] > 500 and generator.stats["byte mutation"] > 300


def test_the_generator_is_deterministic_for_a_seed() -> None:
    for port in PORTS:
        first, second = FrameGenerator(7), FrameGenerator(7)
        assert [first.frames(port) for _ in range(300)] == [second.frames(port) for _ in range(300)]


def test_frames_at_the_size_limits_are_refused_by_the_decoders() -> None:
    limits = ((constants.CLIENT_MESSAGE_BYTES_MAX, decode_request), (constants.PROXY_FRAME_BYTES_MAX, decode))
    for limit, decoder in limits:
        under, at, over = limit_payloads(limit)
        assert (len(under), len(at), len(over)) == (limit - 1, limit, limit + 1)
        for data in (under, at, over):
            with pytest.raises(DecodeError) as caught:
                decoder(data)
            assert caught.value.reason == "too_large"
    assert FrameGenerator(1).fresh(CLIENT) and FrameGenerator(1).fresh(PROXY)
    request = Request(client_id=1, request_number=1, operation=b"")
    assert decode_request(encode(request)) == request


# --- memory and time for hostile *content* (not declared lengths) ------------------------------------------------


# Per input byte, the most memory decoding one frame may take: a 256 MiB peer frame (MESSAGE_BYTES_MAX) then
# needs at most 4 GiB, and in practice far less (a legal DoViewChange of that size: ~1.5 GiB).
BYTES_PER_INPUT_BYTE_MAX = 16


def peak_memory_of(decoder: Any, data: bytes) -> tuple[int, object]:
    tracemalloc.start()
    try:
        try:
            outcome: object = decoder(data)
        except DecodeError as error:
            outcome = error
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, outcome


@pytest.mark.parametrize("shape", sorted(CONTENT_BOMBS))
def test_no_hostile_peer_frame_costs_more_than_a_bounded_multiple_of_its_size(shape: str) -> None:
    """Found by this fuzzing: one unpackb call builds the whole value before the codec looks at a field, and a
    one-byte empty array becomes a ~60-byte list, so a 256 MiB peer frame of them cost ~16 GiB (measured:
    64 MiB → 4.5 GB RSS). Frames above STREAM_DECODE_ABOVE are now unpacked field by field, refusing every
    container but a log entry before it is built: each shape here is refused at ≤ 16 bytes per input byte."""
    size = 512 * 1024
    data = CONTENT_BOMBS[shape](size)
    assert len(data) > unpack.STREAM_DECODE_ABOVE
    peak, outcome = peak_memory_of(decode_replica_message, data)
    assert isinstance(outcome, DecodeError) and outcome.reason in DECODE_ERROR_REASONS
    assert peak / len(data) <= BYTES_PER_INPUT_BYTE_MAX, (
        f"{shape}: {peak / len(data):.1f} bytes of memory per input byte: a "
        f"{constants.MESSAGE_BYTES_MAX >> 20} MiB peer frame would need "
        f"~{peak / len(data) * constants.MESSAGE_BYTES_MAX / 2**30:.1f} GiB to decode"
    )


def test_a_legal_view_change_log_decodes_within_the_same_bound() -> None:
    """The streaming path is for the big legal messages too: a DoViewChange with 40 000 entries (~1.3 MiB)."""
    entries = tuple(
        LogEntry(view=3, op_number=op, client_id=70_000 + op, request_number=op, operation=b"x" * 16, timestamp=op)
        for op in range(1, 40_001)
    )
    message = DoViewChange(
        cluster=1,
        epoch=0,
        view=4,
        replica=2,
        last_normal_view=3,
        op_number=40_000,
        commit_number=39_000,
        log=entries,
    )
    data = encode(message)
    assert len(data) > unpack.STREAM_DECODE_ABOVE
    peak, outcome = peak_memory_of(decode_replica_message, data)
    assert outcome == message
    assert peak / len(data) <= BYTES_PER_INPUT_BYTE_MAX


@pytest.mark.parametrize("shape", sorted(CONTENT_BOMBS))
def test_a_frame_unpacked_in_one_call_costs_a_few_mib_at_most(shape: str) -> None:
    """Below STREAM_DECODE_ABOVE (every client request, every ordinary Prepare) the one fast unpackb call is
    kept: the worst shape there costs a few MiB, once per frame."""
    data = CONTENT_BOMBS[shape](unpack.STREAM_DECODE_ABOVE - 64)
    assert len(data) <= unpack.STREAM_DECODE_ABOVE
    peak, outcome = peak_memory_of(decode_replica_message, data)
    assert isinstance(outcome, DecodeError)
    assert peak <= 16 * 2**20, f"{shape}: {peak / 2**20:.1f} MiB"
