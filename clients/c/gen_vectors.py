#!/usr/bin/env python3
"""Turns the golden vectors (clients/testdata/*.json) into a C header for test_vectors.c.

Run by `make` (build/vectors.h); standard library only. The JSON rendering of clients/testdata/README.md is
read back into Python values, and each value is rendered again the way `zvsr_render` renders msgpack (Python's
json.dumps formatting, bin as {"$bin": "<hex>"}), so the C test compares its rendering of the *bytes* with an
independent rendering of the *values*.

usage: gen_vectors.py OUTPUT.h VECTORS.json [MORE.json ...]
"""

from __future__ import annotations

import json
import math
import struct
import sys
from typing import Any

CLIENT_KINDS = {"Request": 20, "Reply": 21, "Redirect": 22, "Error": 23}
OPS = {"get": 1, "put": 2, "delete": 3, "incr": 4, "cas": 5, "lock": 6, "unlock": 7}
OP_FIELDS = {
    "get": ({"key"}, set()),
    "put": ({"key", "value"}, set()),
    "delete": ({"key"}, set()),
    "incr": ({"key"}, {"by"}),
    "cas": ({"key", "expected", "new"}, set()),
    "lock": ({"name", "owner"}, set()),
    "unlock": ({"name", "owner"}, set()),
}


def from_json(value: Any) -> Any:
    """The tagged JSON rendering back to Python values ($int, $bin, $float)."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, inner),) = value.items()
            if tag == "$int":
                return int(inner)
            if tag == "$bin":
                return bytes.fromhex(inner)
            if tag == "$float":
                return float(inner)
        return {key: from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json(item) for item in value]
    return value


def render(value: Any) -> str:
    """What zvsr_render prints for the msgpack encoding of `value`."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes):
        return '{"$bin": "' + value.hex() + '"}'
    if isinstance(value, list):
        return "[" + ", ".join(render(item) for item in value) + "]"
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            shown = json.dumps(key, ensure_ascii=False) if isinstance(key, str) else json.dumps(render(key))
            parts.append(f"{shown}: {render(item)}")
        return "{" + ", ".join(parts) + "}"
    raise TypeError(f"cannot render {type(value).__name__}")


def pack(value: Any) -> bytes:
    """Canonical msgpack (docs/protocol.md §3) of a JSON-rendered value, without third-party modules."""
    if value is None:
        return b"\xc0"
    if value is True:
        return b"\xc3"
    if value is False:
        return b"\xc2"
    if isinstance(value, int):
        if 0 <= value < 0x80:
            return bytes([value])
        if value >= 0:
            for tag, fmt, top in ((0xCC, ">B", 1 << 8), (0xCD, ">H", 1 << 16), (0xCE, ">I", 1 << 32)):
                if value < top:
                    return bytes([tag]) + struct.pack(fmt, value)
            return b"\xcf" + struct.pack(">Q", value)
        if value >= -32:
            return struct.pack(">b", value)
        for tag, fmt, low in ((0xD0, ">b", -(1 << 7)), (0xD1, ">h", -(1 << 15)), (0xD2, ">i", -(1 << 31))):
            if value >= low:
                return bytes([tag]) + struct.pack(fmt, value)
        return b"\xd3" + struct.pack(">q", value)
    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, str):
        data = value.encode()
        n = len(data)
        if n < 32:
            return bytes([0xA0 | n]) + data
        if n < 256:
            return b"\xd9" + bytes([n]) + data
        if n < 65536:
            return b"\xda" + struct.pack(">H", n) + data
        return b"\xdb" + struct.pack(">I", n) + data
    if isinstance(value, bytes):
        n = len(value)
        if n < 256:
            return b"\xc4" + bytes([n]) + value
        if n < 65536:
            return b"\xc5" + struct.pack(">H", n) + value
        return b"\xc6" + struct.pack(">I", n) + value
    if isinstance(value, list):
        n = len(value)
        head = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
        return head + b"".join(pack(item) for item in value)
    if isinstance(value, dict):
        n = len(value)
        head = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
        return head + b"".join(pack(k) + pack(v) for k, v in value.items())
    raise TypeError(f"cannot pack {type(value).__name__}")


class Header:
    def __init__(self) -> None:
        self.arrays: list[str] = []
        self.count = 0

    def data(self, data: bytes) -> str:
        """A static byte array (with a trailing 0, so never empty and usable as a C string)."""
        self.count += 1
        name = f"d{self.count}"
        body = ",".join(f"0x{b:02x}" for b in data + b"\0")
        lines = [body[i : i + 120] for i in range(0, len(body), 120)]
        self.arrays.append(f"static const uint8_t {name}[] = {{\n" + "\n".join(lines) + "};")
        return name

    def blob(self, data: bytes | None) -> str:
        return "NULL, 0" if data is None else f"{self.data(data)}, {len(data)}"

    def text(self, text: str | None) -> str:
        """A NUL-terminated C string (as a byte array, so any UTF-8 survives) or NULL."""
        return "NULL" if text is None else f"(const char *){self.data(text.encode())}"


def uint(value: Any) -> str:
    return f"UINT64_C({value})" if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else "0"


def builder(header: Header, op: Any) -> str:
    """How test_vectors.c can rebuild `op` with the zvsr_op_* functions; op 0 when it cannot."""
    none = "{0, NULL, NULL, NULL, 0, NULL, 0, 0, 0, NULL, NULL, 0}"
    if not isinstance(op, dict) or type(op.get("op")) is not str or op["op"] not in OPS:
        return none
    name = op["op"]
    required, optional = OP_FIELDS[name]
    fields = set(op) - {"op"}
    if not required <= fields or not fields <= required | optional or list(op)[0] != "op":
        return none
    first, second = ("name", "owner") if name in ("lock", "unlock") else ("key", None)
    strings = [op[first]] + ([op[second]] if second else [])
    if not all(type(s) is str and "\0" not in s for s in strings):
        return none
    if name == "incr" and "by" in op and type(op["by"]) is not int:
        return none
    order = ["op", *([first, second] if second else [first])]
    order += {"put": ["value"], "cas": ["expected", "new"], "incr": ["by"] if "by" in op else []}.get(name, [])
    if list(op) != order:  # the builders write the documented order only
        return none
    raw1 = raw2 = None
    str1 = str2 = None
    nil1 = 0
    if name == "put":
        raw1 = pack(op["value"])
        str1 = op["value"] if type(op["value"]) is str and "\0" not in op["value"] else None
    if name == "cas":
        raw1, raw2 = pack(op["expected"]), pack(op["new"])
        str1 = op["expected"] if type(op["expected"]) is str and "\0" not in op["expected"] else None
        nil1 = int(op["expected"] is None)
        str2 = op["new"] if type(op["new"]) is str and "\0" not in op["new"] else None
    has_by = int(name == "incr" and "by" in op)
    by = op.get("by", 0) if name == "incr" else 0
    return (
        f"{{{OPS[name]}, {header.text(strings[0])}, {header.text(strings[1] if second else None)}, "
        f"{header.blob(raw1)}, {header.blob(raw2)}, {has_by}, INT64_C({by}), "
        f"{header.text(str1)}, {header.text(str2)}, {nil1}}}"
    )


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    output, inputs = sys.argv[1], sys.argv[2:]
    documents = []
    for path in inputs:
        with open(path, encoding="utf-8") as file:
            documents.append(json.load(file))
    header = Header()
    messages, noncanonical, invalid, coordination = [], [], [], []
    for document in documents:
        for v in document.get("messages", []):
            value = from_json(v["value"])
            data = bytes.fromhex(v["hex"])
            if v["kind"] in CLIENT_KINDS:
                payload = value.get("operation", value.get("result"))
                message = value["message"].encode() if "message" in value else None
                messages.append(
                    f'{{"{v["name"]}", "{v["kind"]}", {header.blob(data)}, {value["type"]}, '
                    f"{uint(value.get('view', 0))}, {uint(value.get('primary', 0))}, "
                    f"{uint(value['client_id'])}, {uint(value['request_number'])}, {header.blob(payload)}, "
                    f"{header.text(value.get('code'))}, {header.blob(message)}}}"
                )
            else:
                messages.append(
                    f'{{"{v["name"]}", "{v["kind"]}", {header.blob(data)}, {value["type"]}, 0, 0, 0, 0, '
                    f"NULL, 0, NULL, NULL, 0}}"
                )
        for v in document.get("noncanonical", []):
            noncanonical.append(
                f'{{"{v["name"]}", "{v["kind"]}", {header.blob(bytes.fromhex(v["hex"]))}, '
                f"{header.blob(bytes.fromhex(v['canonical_hex']))}}}"
            )
        for v in document.get("invalid", []):
            invalid.append(
                f'{{"{v["name"]}", "{v["decoder"]}", {header.blob(bytes.fromhex(v["hex"]))}, "{v["reason"]}"}}'
            )
        for step in document.get("coordination", {}).get("sequence", []):
            op = step["op"]
            op_value = from_json(op["value"]) if "value" in op else None
            op_rendering = render(op_value) if "value" in op else None
            result_value = from_json(step["result"]["value"])
            coordination.append(
                f'{{"{step["name"]}", {header.blob(bytes.fromhex(op["hex"]))}, {header.text(op_rendering)}, '
                f"{builder(header, op_value) if 'value' in op else builder(header, None)}, "
                f"{header.blob(bytes.fromhex(step['result']['hex']))}, {header.text(render(result_value))}}}"
            )

    out = [
        "/* Generated by gen_vectors.py from " + ", ".join(inputs) + ". Do not edit. */",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        "typedef struct {",
        "    const char *name, *kind;",
        "    const uint8_t *bytes; size_t len;",
        "    unsigned type;",
        "    uint64_t view, primary, client_id, request_number;",
        "    const uint8_t *payload; size_t payload_len;",
        "    const char *code;",
        "    const uint8_t *message; size_t message_len;",
        "} vec_message;",
        "",
        "typedef struct { const char *name, *kind; const uint8_t *bytes; size_t len;"
        " const uint8_t *canonical; size_t canonical_len; } vec_noncanonical;",
        "",
        "typedef struct { const char *name, *decoder; const uint8_t *bytes; size_t len; const char *reason; }"
        " vec_invalid;",
        "",
        "/* op: 0 not buildable by zvsr_op_*, 1 get, 2 put, 3 delete, 4 incr, 5 cas, 6 lock, 7 unlock */",
        "typedef struct {",
        "    int op;",
        "    const char *a, *b;                 /* key, or name and owner */",
        "    const uint8_t *raw1; size_t raw1_len; /* put: value; cas: expected (msgpack) */",
        "    const uint8_t *raw2; size_t raw2_len; /* cas: new */",
        "    int has_by; int64_t by;",
        "    const char *str1, *str2;           /* the same values when they are str (else NULL) */",
        "    int nil1;                          /* cas: expected is nil */",
        "} vec_builder;",
        "",
        "typedef struct {",
        "    const char *name;",
        "    const uint8_t *op; size_t op_len;",
        "    const char *op_rendering;          /* NULL: the op bytes are not msgpack */",
        "    vec_builder builder;",
        "    const uint8_t *result; size_t result_len;",
        "    const char *result_rendering;",
        "} vec_step;",
        "",
        *header.arrays,
        "",
        "static const vec_message MESSAGES[] = {\n    " + ",\n    ".join(messages) + "\n};",
        "static const vec_noncanonical NONCANONICAL[] = {\n    " + ",\n    ".join(noncanonical) + "\n};",
        "static const vec_invalid INVALID[] = {\n    " + ",\n    ".join(invalid) + "\n};",
        "static const vec_step STEPS[] = {\n    " + ",\n    ".join(coordination) + "\n};",
        "#define COUNT(a) (sizeof(a) / sizeof((a)[0]))",
        "",
    ]
    with open(output, "w", encoding="utf-8") as file:
        file.write("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
