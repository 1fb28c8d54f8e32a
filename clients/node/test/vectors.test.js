'use strict';
// The golden wire vectors of clients/testdata/ (README there): every client-protocol message (Request, Reply,
// Redirect, Error) byte for byte, the non-canonical encodings, every input a client's decoders must refuse,
// and the coordination app's operations and results. Replica-to-replica kinds are not a client's business:
// their vectors are left to the replica implementations.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { codec, msgpack, Float64 } = require('..');
const { ops, resultValue } = require('../lib/coordination');

const TESTDATA = path.join(__dirname, '..', '..', 'testdata');
const vectors = JSON.parse(fs.readFileSync(path.join(TESTDATA, 'vectors.json'), 'utf8'));
const large = JSON.parse(fs.readFileSync(path.join(TESTDATA, 'vectors-large.json'), 'utf8'));

const KIND_BY_TYPE = new Map(Object.entries(codec.KINDS).map(([name, spec]) => [spec.type, name]));
const CLIENT_KINDS = new Set(['Request', 'Reply', 'Redirect', 'Error']);
const clientVectors = (list) => list.filter((v) => CLIENT_KINDS.has(v.kind));
const hex = (text) => Buffer.from(text, 'hex');
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

// --- the JSON rendering of msgpack values (testdata/README.md) ---

function isTagged(value, tag) {
  return value !== null && typeof value === 'object' && !Array.isArray(value) &&
    Object.keys(value).length === 1 && tag in value;
}

function fromJson(value) {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return value;
  if (typeof value === 'number') {
    assert.ok(Number.isInteger(value), `an untagged JSON number is an int: ${value}`);
    return value;
  }
  if (Array.isArray(value)) return value.map(fromJson);
  if (isTagged(value, '$int')) return BigInt(value.$int);
  if (isTagged(value, '$bin')) return hex(value.$bin);
  if (isTagged(value, '$float')) return new Float64(value.$float);
  const out = {};
  for (const [key, item] of Object.entries(value)) out[key] = fromJson(item);
  return out;
}

function toJson(value) {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return value;
  if (typeof value === 'bigint') return value >= -SAFE && value <= SAFE ? Number(value) : { $int: value.toString() };
  if (typeof value === 'number') {
    assert.ok(Number.isInteger(value), 'floats decode as Float64 here');
    return value;
  }
  if (value instanceof Float64) return { $float: value.value };
  if (Buffer.isBuffer(value)) return { $bin: value.toString('hex') };
  if (Array.isArray(value)) return value.map(toJson);
  if (value instanceof Map) {
    const out = {};
    for (const [key, item] of value) {
      assert.equal(typeof key, 'string');
      out[key] = toJson(item);
    }
    return out;
  }
  const out = {};
  for (const [key, item] of Object.entries(value)) out[key] = toJson(item);
  return out;
}

/** A decoded message as the vectors render it: "type" first, then the fields in order. */
function messageToJson(message) {
  const spec = codec.KINDS[message.kind];
  const out = { type: spec.type };
  for (const field of spec.fields) {
    out[field] = toJson(message[field]);
  }
  return out;
}

/** A message object from its rendering (the input to the encoder). */
function messageFromJson(value) {
  const kind = KIND_BY_TYPE.get(value.type);
  assert.ok(kind, `type ${value.type}`);
  const message = { kind };
  for (const field of codec.KINDS[kind].fields) {
    assert.ok(field in value, `${kind}.${field}`);
    message[field] = fromJson(value[field]);
  }
  assert.deepEqual(Object.keys(value), ['type', ...codec.KINDS[kind].fields], 'the rendering keeps wire order');
  return message;
}

/** Equal as values and in key order. */
function assertRendering(actual, expected, what) {
  assert.deepStrictEqual(actual, expected, what);
  assert.equal(JSON.stringify(actual), JSON.stringify(expected), `${what}: key order`);
}

const DECODERS = {
  request: codec.decodeRequest,
  client_reply: codec.decodeClientReply,
  any: codec.decode,
};

function socketDecoder(kind) {
  return kind === 'Request' ? codec.decodeRequest : codec.decodeClientReply;
}

// --- tests ---

test('the vector files are the format this test reads', () => {
  for (const file of [vectors, large]) {
    assert.equal(file.format, 'zvsr-golden-vectors');
    assert.equal(file.version, 1);
  }
  const kinds = new Set(clientVectors(vectors.messages).map((v) => v.kind));
  assert.deepEqual([...kinds].sort(), Object.keys(codec.KINDS).sort(), 'at least one vector of every client kind');
  assert.ok(clientVectors(vectors.noncanonical).length > 0);
  const decoders = new Set([...vectors.invalid, ...large.invalid].map((v) => v.decoder));
  for (const decoder of Object.keys(DECODERS)) assert.ok(decoders.has(decoder), decoder);
});

test('messages: decode gives the documented value, encode gives exactly the bytes', async (t) => {
  for (const vector of clientVectors(vectors.messages)) {
    await t.test(vector.name, () => {
      const data = hex(vector.hex);
      for (const decodeWith of [socketDecoder(vector.kind), codec.decode]) {
        const message = decodeWith(data);
        assert.equal(message.kind, vector.kind);
        assertRendering(messageToJson(message), vector.value, 'decoded');
        assert.equal(codec.encode(message).toString('hex'), vector.hex, 're-encoded');
      }
      assert.equal(codec.encode(messageFromJson(vector.value)).toString('hex'), vector.hex, 'encoded from value');
    });
  }
});

test('client messages: numbers as JavaScript sees them', () => {
  const request = codec.decodeRequest(hex(vectors.messages.find((v) => v.name === 'request_put').hex));
  assert.equal(request.client_id, 0x8f3a2c61d4b70e95n);
  assert.equal(request.request_number, 1n);
  // A number or a bigint encodes the same.
  const asNumbers = { ...request, request_number: 1, client_id: 0x8f3a2c61d4b70e95n };
  assert.deepEqual(codec.encode(asNumbers), codec.encode(request));
  const redirect = codec.decodeClientReply(hex(vectors.messages.find((v) => v.name === 'redirect').hex));
  assert.equal(redirect.primary, 2);
  assert.equal(redirect.view, 2n);
  // primary is a replica id: after reconfigurations any uint32, never reused, still a plain number.
  for (const primary of [15, codec.REPLICA_ID_MAX, BigInt(codec.REPLICA_ID_MAX)]) {
    const far = codec.decodeClientReply(codec.encode({ ...redirect, primary }));
    assert.equal(far.primary, Number(primary));
  }
  for (const primary of [codec.REPLICA_ID_MAX + 1, -1, 1.5]) {
    assert.throws(() => codec.encode({ ...redirect, primary }), RangeError, `primary ${primary}`);
  }
});

test('noncanonical encodings decode to the canonical message', async (t) => {
  for (const vector of clientVectors(vectors.noncanonical)) {
    await t.test(vector.name, () => {
      const message = socketDecoder(vector.kind)(hex(vector.hex));
      assert.equal(message.kind, vector.kind);
      assert.deepStrictEqual(message, codec.decode(hex(vector.canonical_hex)));
      assert.equal(codec.encode(message).toString('hex'), vector.canonical_hex);
    });
  }
});

test('invalid inputs are refused by the client decoders, with the codec reason', async (t) => {
  // `any` vectors must be refused by every decoder; `replica` vectors are for the peer port, not a client's.
  const all = [...vectors.invalid, ...large.invalid].filter((v) => v.decoder in DECODERS);
  for (const vector of all) {
    await t.test(`${vector.decoder}: ${vector.name}`, () => {
      const data = hex(vector.hex);
      const decoders = vector.decoder === 'any'
        ? [codec.decode, codec.decodeClientReply, codec.decodeRequest]
        : [DECODERS[vector.decoder]];
      // A replica kind on a client port is unexpected_type to zvsr, which knows every kind; this codec knows
      // only the client kinds, so to it that type number is unknown_type. Any other reason must match.
      const reasons = vector.reason === 'unexpected_type' ? ['unexpected_type', 'unknown_type'] : [vector.reason];
      for (const decodeWith of decoders) {
        assert.throws(
          () => decodeWith(data),
          (error) => error instanceof codec.DecodeError && reasons.includes(error.reason),
          `${decodeWith.name} must refuse it as ${vector.reason} (${vector.rule})`,
        );
      }
    });
  }
});

test('coordination: ops encode to the vector bytes, results decode to the vector values', async (t) => {
  for (const step of vectors.coordination.sequence) {
    await t.test(step.name, () => {
      if (step.op.value !== undefined) {
        assert.equal(msgpack.encode(fromJson(step.op.value)).toString('hex'), step.op.hex);
        assert.deepStrictEqual(toJson(msgpack.decode(hex(step.op.hex), { floats: 'wrap' })), step.op.value);
      } else {
        assert.throws(() => msgpack.decode(hex(step.op.hex)), msgpack.MsgpackError);
      }
      const result = msgpack.decode(hex(step.result.hex), { floats: 'wrap' });
      assertRendering(toJson(result), step.result.value, 'result');
      assert.equal(msgpack.encode(fromJson(step.result.value)).toString('hex'), step.result.hex);
    });
  }
});

test('coordination: the client API builds exactly the vector operations', () => {
  const byName = Object.fromEntries(vectors.coordination.sequence.map((s) => [s.name, s]));
  const opHex = (call) => call.operation.toString('hex');
  assert.equal(opHex(ops.get('config/leader')), byName.get_missing.op.hex);
  assert.equal(opHex(ops.put('config/leader', 'node-a')), byName.put.op.hex);
  assert.equal(opHex(ops.put('ratio', 0.5)), byName.put_float.op.hex);
  assert.equal(opHex(ops.put('empty', null)), byName.put_nil.op.hex);
  assert.equal(opHex(ops.put('big', 2n ** 64n - 1n)), byName.put_uint64_max.op.hex);
  assert.equal(opHex(ops.delete('svc/web')), byName.delete_present.op.hex);
  assert.equal(opHex(ops.cas('version', null, 1)), byName.cas_create_if_absent.op.hex);
  assert.equal(opHex(ops.cas('version', 2, 3)), byName.cas_mismatch.op.hex);
  assert.equal(opHex(ops.cas('flag', new Float64(1), 0)), byName.cas_float_vs_int.op.hex);
  assert.equal(opHex(ops.cas('svc/db', { b: 2, a: 1 }, { a: 3 })), byName.cas_map_match.op.hex);
  assert.equal(opHex(ops.incr('hits', 41)), byName.incr_by.op.hex);
  assert.equal(opHex(ops.incr('hits', -50)), byName.incr_negative.op.hex);
  assert.equal(opHex(ops.lock('jobs/leader', 'worker-1')), byName.lock_free.op.hex);
  assert.equal(opHex(ops.unlock('jobs/leader', 'worker-2')), byName.unlock_not_owner.op.hex);
  const structured = byName.put_structured.op.value.value;
  assert.equal(opHex(ops.put('svc/web', fromJson(structured))), byName.put_structured.op.hex);
});

test('coordination: the client API reads the vector results', () => {
  const byName = Object.fromEntries(vectors.coordination.sequence.map((s) => [s.name, s]));
  const read = (call, name) => resultValue(call, hex(byName[name].result.hex));
  assert.equal(read(ops.get('config/leader'), 'get_present'), 'node-a');
  assert.equal(read(ops.get('config/leader'), 'get_missing'), null);
  assert.equal(read(ops.get('ratio'), 'get_float'), 0.5);
  assert.deepEqual(read(ops.get('svc/web'), 'get_structured'), {
    hosts: ['10.0.0.1', '10.0.0.2'], port: 8080, tls: true, blob: Buffer.from([0x00, 0xff]),
  });
  assert.equal(read(ops.put('x', 1), 'put'), null);
  assert.equal(read(ops.delete('svc/web'), 'delete_present'), true);
  assert.equal(read(ops.delete('svc/web'), 'delete_missing'), false);
  assert.deepEqual(read(ops.cas('version', 2, 3), 'cas_mismatch'), { ok: false, value: 1 });
  assert.deepEqual(read(ops.cas('version', 1, 2), 'cas_match'), { ok: true, value: 2 });
  assert.equal(read(ops.incr('hits', 41), 'incr_by'), 42);
  assert.equal(read(ops.incr('hits', -50), 'incr_negative'), -8);
  assert.deepEqual(read(ops.lock('jobs/leader', 'worker-2'), 'lock_held_by_other'), {
    ok: false, owner: 'worker-1', token: 1,
  });
  assert.equal(read(ops.unlock('jobs/leader', 'worker-1'), 'unlock_owner'), true);
  assert.equal(read(ops.unlock('jobs/leader', 'worker-2'), 'unlock_not_owner'), false);
  assert.throws(() => read(ops.incr('config/leader', 1), 'incr_not_int'), {
    name: 'AppError', code: 'type_error', message: "incr: key 'config/leader' holds a str, not an int",
  });
  assert.throws(() => read(ops.incr('big', 1), 'incr_overflow'), { name: 'AppError', code: 'out_of_range' });
  assert.throws(() => read(ops.execute(['get', 'config/leader'], true), 'bad_not_a_map'), {
    name: 'AppError', code: 'bad_request',
  });
  // Without raiseAppErrors the error result is the value.
  assert.deepEqual(read(ops.execute(['get', 'config/leader'], false), 'bad_not_a_map'), {
    error: 'bad_request', message: 'an operation is a map with key \'op\', not an array',
  });
});
