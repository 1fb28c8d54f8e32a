'use strict';
// lib/msgpack.js: canonical encoding of every value JavaScript can hand it, a strict bounded decoder, and
// agreement with an independent implementation (@msgpack/msgpack) wherever both can express the value.

const test = require('node:test');
const assert = require('node:assert/strict');
const reference = require('@msgpack/msgpack');

const { msgpack, Float64, Ext } = require('..');

const hexOf = (value) => msgpack.encode(value).toString('hex');
const fromHex = (text, options) => msgpack.decode(Buffer.from(text, 'hex'), options);

test('ints take the shortest format, numbers and bigints alike', () => {
  const cases = [
    [0, '00'], [127, '7f'], [128, 'cc80'], [255, 'ccff'], [256, 'cd0100'], [65535, 'cdffff'],
    [65536, 'ce00010000'], [2 ** 32 - 1, 'ceffffffff'], [2 ** 32, 'cf0000000100000000'],
    [Number.MAX_SAFE_INTEGER, 'cf001fffffffffffff'],
    [-1, 'ff'], [-32, 'e0'], [-33, 'd0df'], [-128, 'd080'], [-129, 'd1ff7f'], [-32768, 'd18000'],
    [-32769, 'd2ffff7fff'], [-(2 ** 31), 'd280000000'], [-(2 ** 31) - 1, 'd3ffffffff7fffffff'],
  ];
  for (const [value, hex] of cases) {
    assert.equal(hexOf(value), hex, `number ${value}`);
    assert.equal(hexOf(BigInt(value)), hex, `bigint ${value}`);
  }
  assert.equal(hexOf(2n ** 64n - 1n), 'cfffffffffffffffff');
  assert.equal(hexOf(0x8f3a2c61d4b70e95n), 'cf8f3a2c61d4b70e95');
  assert.equal(hexOf(-(2n ** 63n)), 'd38000000000000000');
  assert.equal(hexOf(-0), '00');
  assert.throws(() => msgpack.encode(2n ** 64n), RangeError);
  assert.throws(() => msgpack.encode(-(2n ** 63n) - 1n), RangeError);
});

test('floats are float64; Float64 keeps an integral float a float', () => {
  assert.equal(hexOf(0.5), 'cb3fe0000000000000');
  assert.equal(hexOf(new Float64(1)), 'cb3ff0000000000000');
  assert.equal(hexOf(1), '01');
  assert.equal(hexOf(2 ** 53), 'cb4340000000000000', 'an unsafe integer number is a double');
  assert.equal(hexOf(Infinity), 'cb7ff0000000000000');
  assert.equal(fromHex('cb3ff0000000000000'), 1);
  assert.deepEqual(fromHex('cb3ff0000000000000', { floats: 'wrap' }), new Float64(1));
  assert.equal(fromHex('ca3f000000'), 0.5, 'float32 decodes too');
});

test('decoded ints: number when safe, bigint beyond (or always, on request)', () => {
  assert.equal(fromHex('cf001fffffffffffff'), Number.MAX_SAFE_INTEGER);
  assert.equal(fromHex('cf0020000000000000'), 2n ** 53n);
  assert.equal(fromHex('d3ffe0000000000001'), -(2 ** 53) + 1);
  assert.equal(fromHex('d3ffe0000000000000'), -(2n ** 53n));
  assert.equal(fromHex('01', { ints: 'bigint' }), 1n);
  assert.equal(fromHex('d0df', { ints: 'bigint' }), -33n);
});

test('str, bin, arrays and maps use the shortest headers', () => {
  assert.equal(hexOf(''), 'a0');
  assert.equal(hexOf('a'.repeat(31)).slice(0, 2), 'bf');
  assert.equal(hexOf('a'.repeat(32)).slice(0, 4), 'd920');
  assert.equal(hexOf('a'.repeat(256)).slice(0, 6), 'da0100');
  assert.equal(hexOf('a'.repeat(65536)).slice(0, 10), 'db00010000');
  assert.equal(hexOf('é'), 'a2c3a9');
  assert.equal(hexOf(Buffer.alloc(0)), 'c400');
  assert.equal(hexOf(new Uint8Array(256)).slice(0, 6), 'c50100');
  assert.equal(hexOf(new ArrayBuffer(65536)).slice(0, 10), 'c600010000');
  assert.equal(hexOf([]), '90');
  assert.equal(hexOf(new Array(16).fill(null)).slice(0, 6), 'dc0010');
  assert.equal(hexOf({}), '80');
  assert.equal(hexOf({ b: 1, a: 2 }), '82a16201a16102', 'keys in insertion order');
  const wide = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i]));
  assert.equal(hexOf(wide).slice(0, 6), 'de0010');
  assert.equal(hexOf(new Map([[1, 'a'], ['b', null]])), '8201a161a162c0');
  assert.equal(hexOf([undefined, null, true, false]), '94c0c0c3c2');
});

test('values that msgpack cannot carry are refused', () => {
  assert.throws(() => msgpack.encode('\ud800'), TypeError, 'a lone surrogate is not UTF-8');
  assert.throws(() => msgpack.encode(new Date()), TypeError);
  assert.throws(() => msgpack.encode(Symbol('s')), TypeError);
  assert.throws(() => msgpack.encode(() => 1), TypeError);
  const cycle = [];
  cycle.push(cycle);
  assert.throws(() => msgpack.encode(cycle), RangeError);
});

test('maps: str keys give plain objects, other keys a Map; __proto__ stays data', () => {
  assert.deepEqual(fromHex('82a16101a16202'), { a: 1, b: 2 });
  const mixed = fromHex('820102a16103');
  assert.ok(mixed instanceof Map);
  assert.deepEqual([...mixed], [[1, 2], ['a', 3]]);
  assert.ok(fromHex('81a16101', { maps: 'map' }) instanceof Map);
  const proto = fromHex('81a95f5f70726f746f5f5f01');
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.deepEqual(Object.keys(proto), ['__proto__']);
  assert.equal(hexOf(proto), '81a95f5f70726f746f5f5f01');
  assert.throws(() => fromHex('820102a16103', { strictMapKeys: true }), { reason: 'not_msgpack' });
  assert.ok(fromHex('81c4016103', { strictMapKeys: true }) instanceof Map, 'a bin key is allowed');
});

test('ext values decode as Ext, or are refused', () => {
  const ext = fromHex('d40105');
  assert.ok(ext instanceof Ext);
  assert.deepEqual([ext.type, [...ext.data]], [1, [5]]);
  assert.equal(hexOf(ext), 'd40105');
  assert.equal(hexOf(new Ext(-1, Buffer.alloc(3))), 'c703ff000000');
  assert.throws(() => fromHex('d40105', { allowExt: false }), { reason: 'too_large' });
  assert.ok(fromHex('c70005', { allowExt: false }) instanceof Ext, 'an empty ext passes, as in msgpack-python');
});

test('malformed input is refused with a reason', () => {
  const cases = [
    ['', 'not_msgpack'], ['c1', 'not_msgpack'], ['a2c3', 'not_msgpack'], ['0101', 'not_msgpack'],
    ['a2c328', 'not_msgpack'], ['a3eda080', 'not_msgpack'], ['cd01', 'not_msgpack'], ['92', 'not_msgpack'],
    ['dd000fffff', 'not_msgpack'], ['df0000ffff', 'not_msgpack'], ['c6ffffffff', 'not_msgpack'],
  ];
  for (const [hex, reason] of cases) {
    assert.throws(() => fromHex(hex), (e) => e instanceof msgpack.MsgpackError && e.reason === reason, hex);
  }
  assert.throws(() => fromHex('a3616263', { maxStr: 2 }), { reason: 'too_large' });
  assert.throws(() => fromHex('c403616263', { maxBin: 2 }), { reason: 'too_large' });
  assert.throws(() => fromHex('93010203', { maxArray: 2 }), { reason: 'too_large' });
  assert.throws(() => fromHex('82a16101a16202', { maxMap: 1 }), { reason: 'too_large' });
  assert.throws(() => fromHex('919190', { maxDepth: 2 }), { reason: 'not_msgpack' });
  assert.throws(() => msgpack.decode('c0'), TypeError);
  assert.equal(fromHex('c0'), null);
});

test('decoded bin is a copy, independent of the input buffer', () => {
  const input = Buffer.from('c4020102', 'hex');
  const bin = msgpack.decode(input);
  input.fill(0);
  assert.deepEqual([...bin], [1, 2]);
});

test('agrees with @msgpack/msgpack on values both can express', () => {
  const values = [
    null, true, false, 0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER,
    -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, Number.MIN_SAFE_INTEGER,
    0.5, -1.25, 1e300, '', 'zvsr', 'x'.repeat(40), 'x'.repeat(300), 'snow ☃ and 𝄞', new Uint8Array([1, 2, 3]),
    [], [1, [2, [3]]], {}, { op: 'put', key: 'k', value: { nested: [1, 'two', null] } },
    Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`key${i}`, i * 1000])),
  ];
  for (const value of values) {
    const mine = msgpack.encode(value);
    const theirs = reference.encode(value);
    assert.equal(Buffer.from(mine).toString('hex'), Buffer.from(theirs).toString('hex'), JSON.stringify(value));
    const back = msgpack.decode(Buffer.from(theirs));
    assert.deepEqual(value instanceof Uint8Array ? new Uint8Array(back) : back, reference.decode(theirs));
  }
  // 64-bit ints: theirs as bigint with useBigInt64 (always 8 bytes); ours decode them the same.
  for (const value of [2n ** 64n - 1n, 0x8f3a2c61d4b70e95n, -(2n ** 63n)]) {
    const theirs = reference.encode(value, { useBigInt64: true });
    assert.deepEqual(msgpack.encode(value), Buffer.from(theirs));
    assert.equal(msgpack.decode(Buffer.from(theirs)), value);
  }
});
