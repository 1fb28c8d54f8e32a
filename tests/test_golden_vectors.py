"""The golden wire vectors in clients/testdata/ agree with the codec, the coordination app and docs/protocol.md.

Every client in clients/ is tested against the same files, so these tests are what ties the other languages to
the Python implementation: if the codec changes a byte, a vector fails here first, and the vectors (and the
doc) must be regenerated on purpose (`python3 clients/testdata/generate.py`). Nothing here imports the
generator: the vectors are data, and this file re-derives everything from them.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from zvsr.apps.adapter import MsgpackStateMachine
from zvsr.apps.coordination import CoordinationApp
from zvsr.protocol.messages import CLIENT_MESSAGES, ERROR_CODES, REPLICA_MESSAGES, LogEntry
from zvsr.wire import (
    DECODE_ERROR_REASONS,
    TYPE_NUMBERS,
    DecodeError,
    Message,
    decode,
    decode_client_reply,
    decode_replica_message,
    decode_request,
    encode,
)
from zvsr.wire.batch import (
    decode_reply_batch,
    decode_request_batch,
    encode_reply_batch,
    encode_request_batch,
    is_reply_batch,
    is_request_batch,
)

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = ROOT / "clients" / "testdata"
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"

VECTORS: dict[str, Any] = json.loads((TESTDATA / "vectors.json").read_text(encoding="utf-8"))
LARGE: dict[str, Any] = json.loads((TESTDATA / "vectors-large.json").read_text(encoding="utf-8"))

MESSAGE_VECTORS: list[dict[str, Any]] = VECTORS["messages"]
NONCANONICAL_VECTORS: list[dict[str, Any]] = VECTORS["noncanonical"]
BATCH_VECTORS: list[dict[str, Any]] = VECTORS["batches"]
INVALID_VECTORS: list[dict[str, Any]] = VECTORS["invalid"] + LARGE["invalid"]
COORDINATION_STEPS: list[dict[str, Any]] = VECTORS["coordination"]["sequence"]

DECODERS = {
    "any": decode,
    "replica": decode_replica_message,
    "request": decode_request,
    "client_reply": decode_client_reply,
}
CLASSES = {cls.__name__: cls for cls in TYPE_NUMBERS}
CLASS_BY_TYPE = {number: cls for cls, number in TYPE_NUMBERS.items()}
SAFE_INT = 2**53 - 1


def kind_decoder(kind: str) -> str:
    if kind == "Request":
        return "request"
    if CLASSES[kind] in REPLICA_MESSAGES:
        return "replica"
    return "client_reply"


# --- the JSON rendering of msgpack values (clients/testdata/README.md) -----------------------------------------


def render(value: Any) -> Any:
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
        return {key: render(item) for key, item in value.items()}
    raise TypeError(type(value).__name__)


def parse(value: Any) -> Any:
    """The msgpack value a JSON rendering stands for."""
    if type(value) is list:
        return [parse(item) for item in value]
    if type(value) is dict:
        if len(value) == 1:
            (tag, inner), *_ = value.items()
            if tag == "$bin":
                return bytes.fromhex(inner)
            if tag == "$int":
                number = int(inner)
                assert abs(number) > SAFE_INT, "a $int must be outside the safe range (else plain JSON)"
                return number
            if tag == "$float":
                return float(inner)
        return {key: parse(item) for key, item in value.items()}
    return value


def same(a: Any, b: Any) -> bool:
    """Equal JSON renderings, key order included (encoders write keys in that order)."""
    return json.dumps(a) == json.dumps(b)


def to_message(value: dict[str, Any]) -> Message:
    """Rebuild the dataclass from a decoded wire map (the inverse of what the codec writes)."""
    value = dict(value)
    cls = CLASS_BY_TYPE[value.pop("type")]
    for name in ("entries", "log"):
        if value.get(name) is not None:
            value[name] = tuple(
                LogEntry(
                    view=e[0], op_number=e[1], client_id=e[2], request_number=e[3], operation=e[4], timestamp=e[5]
                )
                for e in value[name]
            )
    message: Message = cls(**value)
    return message


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


# --- valid messages -------------------------------------------------------------------------------------------


def test_every_message_kind_has_a_vector() -> None:
    kinds = {vector["kind"] for vector in MESSAGE_VECTORS}
    assert kinds == set(CLASSES)
    for vector in MESSAGE_VECTORS:
        assert vector["value"]["type"] == TYPE_NUMBERS[CLASSES[vector["kind"]]], vector["name"]
    names = [vector["name"] for vector in MESSAGE_VECTORS + NONCANONICAL_VECTORS + INVALID_VECTORS]
    assert len(names) == len(set(names)), "vector names are unique"


@pytest.mark.parametrize("vector", MESSAGE_VECTORS, ids=lambda v: v["name"])
def test_valid_vector_decodes_to_its_value_and_encodes_to_its_bytes(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    expected = to_message(parse(vector["value"]))
    # Decoding: the socket's own decoder and the generic one agree with the documented value.
    decoded = DECODERS[kind_decoder(vector["kind"])](data)
    assert decoded == expected
    assert decode(data) == expected
    assert type(decoded).__name__ == vector["kind"]
    # The raw msgpack map, key order included, is the documented value: "type" first, then dataclass order.
    raw = unpack(data)
    assert same(render(raw), vector["value"])
    assert list(raw) == ["type", *(f.name for f in fields(CLASSES[vector["kind"]]))]
    # Encoding the value rebuilt into the dataclass gives exactly these bytes.
    assert encode(expected) == data


@pytest.mark.parametrize("vector", NONCANONICAL_VECTORS, ids=lambda v: v["name"])
def test_noncanonical_vector_is_accepted_and_encodes_canonically(vector: dict[str, Any]) -> None:
    data, canonical = bytes.fromhex(vector["hex"]), bytes.fromhex(vector["canonical_hex"])
    assert data != canonical
    decoded = DECODERS[kind_decoder(vector["kind"])](data)
    assert type(decoded).__name__ == vector["kind"]
    assert decoded == decode(canonical)
    assert encode(decoded) == canonical


# --- invalid inputs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", INVALID_VECTORS, ids=lambda v: v["name"])
def test_invalid_vector_is_refused_with_its_reason(vector: dict[str, Any]) -> None:
    with pytest.raises(DecodeError) as caught:
        DECODERS[vector["decoder"]](bytes.fromhex(vector["hex"]))
    assert caught.value.reason == vector["reason"], str(caught.value)


def test_invalid_vectors_cover_every_reason_and_every_decoder() -> None:
    assert {vector["reason"] for vector in INVALID_VECTORS} == DECODE_ERROR_REASONS
    assert {vector["decoder"] for vector in INVALID_VECTORS} == set(DECODERS)
    assert all(vector["rule"] for vector in INVALID_VECTORS)


# --- the coordination app -------------------------------------------------------------------------------------


def test_coordination_sequence_gives_the_documented_results() -> None:
    """Applied in order to one fresh app (behind the msgpack adapter, as on a replica): the same bytes out."""
    machine = MsgpackStateMachine(CoordinationApp())
    for index, step in enumerate(COORDINATION_STEPS):
        operation = bytes.fromhex(step["op"]["hex"])
        if "value" in step["op"]:
            # The bytes are the documented op map, and encoding that map gives the same bytes ("op" first).
            assert same(render(unpack(operation)), step["op"]["value"]), step["name"]
            assert msgpack.packb(parse(step["op"]["value"]), use_bin_type=True) == operation, step["name"]
        # Step n is op n of view 0 at cluster time 5 s + n s (clients/testdata/README.md).
        entry = LogEntry(
            view=0,
            op_number=index + 1,
            client_id=1,
            request_number=index + 1,
            operation=operation,
            timestamp=5_000_000_000 + (index + 1) * 1_000_000_000,
        )
        result = machine.apply(entry)
        assert result.hex() == step["result"]["hex"], step["name"]
        assert same(render(unpack(result)), step["result"]["value"]), step["name"]


def test_coordination_sequence_covers_every_op_and_result_shape() -> None:
    ops = {step["op"]["value"].get("op") for step in COORDINATION_STEPS if type(step["op"].get("value")) is dict}
    assert {"get", "put", "delete", "cas", "incr", "lock", "unlock"} <= ops
    # Every lease op whose answer does not depend on the time (lease_ttl's remaining_ms does; lease_expire is
    # the primary's own op).
    assert {"lease_grant", "lease_keepalive", "lease_revoke", "lease_list"} <= ops
    results = [step["result"]["value"] for step in COORDINATION_STEPS]
    errors = {r["error"] for r in results if type(r) is dict and set(r) == {"error", "message"}}
    assert errors == {"bad_request", "type_error", "out_of_range", "lease_not_found"}
    shapes = {tuple(r) for r in results if type(r) is dict and "ok" in r}
    assert shapes == {("ok", "value"), ("ok", "owner", "token"), ("ok",), ("ok", "deleted")}
    assert {tuple(r) for r in results if type(r) is dict and "lease" in r} == {("lease", "ttl_ms")}
    assert any(step["op"].get("value") is None for step in COORDINATION_STEPS), "an op that is not msgpack"


# --- docs/protocol.md cannot drift from messages.py -----------------------------------------------------------

DOC = PROTOCOL_DOC.read_text(encoding="utf-8")


def doc_sections() -> dict[str, tuple[int, str]]:
    """Message name -> (type number, section text) for every `### Name (type N)` heading."""
    headings = list(re.finditer(r"^### (\w+) \(type (\d+)\)\s*$", DOC, flags=re.MULTILINE))
    next_heading = re.compile(r"^#{1,3} ", flags=re.MULTILINE)
    sections = {}
    for heading in headings:
        following = next_heading.search(DOC, heading.end())
        end = len(DOC) if following is None else following.start()
        sections[heading.group(1)] = (int(heading.group(2)), DOC[heading.end() : end])
    return sections


def test_protocol_doc_documents_every_message_and_field() -> None:
    sections = doc_sections()
    for cls in (*REPLICA_MESSAGES, *CLIENT_MESSAGES):
        assert cls.__name__ in sections, f"docs/protocol.md has no '### {cls.__name__} (type N)' section"
        number, text = sections[cls.__name__]
        assert number == TYPE_NUMBERS[cls], f"{cls.__name__} is type {TYPE_NUMBERS[cls]}, the doc says {number}"
        for field in fields(cls):
            assert f"`{field.name}`" in text, f"docs/protocol.md: {cls.__name__} does not describe `{field.name}`"
    assert set(sections) == set(CLASSES), "the doc describes a message kind that does not exist"
    for field in fields(LogEntry):
        assert f"`{field.name}`" in DOC


def test_protocol_doc_names_every_error_code_and_decode_reason() -> None:
    for code in ERROR_CODES | DECODE_ERROR_REASONS:
        assert f"`{code}`" in DOC, code


@pytest.mark.parametrize("vector", BATCH_VECTORS, ids=lambda vector: vector["name"])
def test_batch_vector_decodes_to_its_elements_and_each_element_to_a_message(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    elements = [bytes.fromhex(element) for element in vector["elements"]]
    if vector["kind"] == "RequestBatch":
        assert is_request_batch(data) and decode_request_batch(data) == elements
        assert encode_request_batch(elements) == data
        assert all(encode(decode_request(element)) == element for element in elements)
    else:
        assert is_reply_batch(data) and decode_reply_batch(data) == elements
        assert encode_reply_batch(elements) == data
        assert all(encode(decode_client_reply(element)) == element for element in elements)


def test_protocol_doc_examples_are_vectors() -> None:
    """Each `<!-- vector: name -->` marker in the doc is followed by that vector's bytes, exactly."""
    by_name = {
        vector["name"]: vector
        for vector in MESSAGE_VECTORS + INVALID_VECTORS + NONCANONICAL_VECTORS + BATCH_VECTORS
    }
    by_name.update({f"coordination.{step['name']}": step["op"] for step in COORDINATION_STEPS})
    by_name.update({f"coordination.{step['name']}.result": step["result"] for step in COORDINATION_STEPS})
    examples = re.findall(r"<!-- vector: ([\w.]+) -->\s*```[a-z]*\n(.*?)```", DOC, flags=re.DOTALL)
    assert len(examples) >= 5
    for name, block in examples:
        assert name in by_name, f"docs/protocol.md cites unknown vector {name}"
        assert re.fullmatch(r"(?:[0-9a-f]{2}\s*)+", block), f"example {name}: only hex bytes in the block"
        shown = "".join(block.split())
        assert shown == by_name[name]["hex"], f"docs/protocol.md example {name} differs from the vector"
