'use strict';
/**
 * msgpack for zvsr: a canonical encoder and a strict, bounded decoder.
 *
 * Why not a general-purpose msgpack library: zvsr's wire rules (docs/protocol.md §3, §10) need things the
 * usual JavaScript libraries do not do — the shortest encoding of *every* integer including 64-bit ones
 * given as BigInt (client ids are random 64-bit numbers), float64 for a float whose value is integral
 * (`1.0` and `1` are different msgpack values), refusing invalid UTF-8 instead of replacing it, refusing int
 * map keys and ext values in protocol messages, bounds on every length checked before allocation, and a
 * decoded form that keeps bin keys apart from str keys. This module does exactly that and nothing else.
 *
 * Values (JavaScript ⇄ msgpack):
 *   null (and undefined, when encoding)  ⇄ nil
 *   boolean                              ⇄ bool
 *   number that is a safe integer        ⇄ int (shortest format)
 *   bigint (−2^63 .. 2^64−1)             →  int (shortest format)
 *   int outside ±(2^53 − 1)              →  bigint, when decoding (or always bigint: option `ints: "bigint"`)
 *   other number, or a `Float64`         →  float64
 *   float32 / float64                    →  number (or a `Float64`: option `floats: "wrap"`)
 *   string                               ⇄ str (UTF-8; a string with lone surrogates cannot be encoded)
 *   Uint8Array (Buffer), ArrayBuffer     →  bin;  bin → Buffer
 *   Array                                ⇄ array
 *   plain object                         ⇄ map with str keys, in Object.keys order
 *   Map                                  →  map with any keys;  a decoded map with a non-str key is a Map
 *                                           (option `maps: "map"`: every decoded map is a Map)
 *   Ext                                  ⇄ ext (never part of a zvsr message; the decoder can refuse it)
 */

/** Why a decode failed; the reasons are the zvsr codec's (`not_msgpack`, `too_large`). */
class MsgpackError extends Error {
  constructor(reason, message) {
    super(`${reason}: ${message}`);
    this.name = 'MsgpackError';
    this.reason = reason;
  }
}

/** A float64 value, even when it is integral: `new Float64(1)` encodes as `cb 3f f0 00 …`, not as `01`. */
class Float64 {
  constructor(value) {
    if (typeof value !== 'number') throw new TypeError(`Float64 needs a number, got ${typeof value}`);
    this.value = value;
    Object.freeze(this);
  }

  valueOf() {
    return this.value;
  }

  toJSON() {
    return this.value;
  }
}

/** A msgpack ext value (type −128..127, data bytes). zvsr messages never contain one. */
class Ext {
  constructor(type, data) {
    if (!Number.isInteger(type) || type < -128 || type > 127) throw new RangeError(`ext type ${type} not in -128..127`);
    this.type = type;
    this.data = Buffer.from(data);
  }
}

const UINT64_MAX = (1n << 64n) - 1n;
const INT64_MIN = -(1n << 63n);
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// --- encoding -----------------------------------------------------------------------------------------------

class Writer {
  constructor() {
    this.buffer = Buffer.allocUnsafe(256);
    this.length = 0;
  }

  reserve(n) {
    if (this.length + n <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + n) size *= 2;
    const bigger = Buffer.allocUnsafe(size);
    this.buffer.copy(bigger, 0, 0, this.length);
    this.buffer = bigger;
  }

  u8(v) {
    this.reserve(1);
    this.buffer[this.length++] = v;
  }

  head8(tag, v) {
    this.reserve(2);
    this.buffer[this.length++] = tag;
    this.buffer[this.length++] = v & 0xff;
  }

  head16(tag, v) {
    this.reserve(3);
    this.buffer[this.length++] = tag;
    this.buffer.writeUInt16BE(v, this.length);
    this.length += 2;
  }

  head32(tag, v) {
    this.reserve(5);
    this.buffer[this.length++] = tag;
    this.buffer.writeUInt32BE(v, this.length);
    this.length += 4;
  }

  bytes(data) {
    this.reserve(data.length);
    this.buffer.set(data, this.length);
    this.length += data.length;
  }

  result() {
    return Buffer.from(this.buffer.subarray(0, this.length));
  }
}

function encodeInt(w, value) {
  // `value` is a bigint in −2^63 .. 2^64−1, or a safe-integer number.
  if (typeof value === 'number') {
    if (value >= 0) {
      if (value < 0x80) return w.u8(value);
      if (value < 0x100) return w.head8(0xcc, value);
      if (value < 0x10000) return w.head16(0xcd, value);
      if (value < 0x100000000) return w.head32(0xce, value);
    } else {
      if (value >= -0x20) return w.u8(value & 0xff);
      if (value >= -0x80) return w.head8(0xd0, value);
      if (value >= -0x8000) return w.head16(0xd1, value & 0xffff);
      if (value >= -0x80000000) return w.head32(0xd2, value >>> 0);
    }
    value = BigInt(value);
  } else if (value >= -0x80000000n && value < 0x100000000n) {
    return encodeInt(w, Number(value));
  }
  if (value > UINT64_MAX || value < INT64_MIN) {
    throw new RangeError(`integer ${value} is outside msgpack's range -2^63 .. 2^64-1`);
  }
  w.reserve(9);
  if (value >= 0n) {
    w.buffer[w.length++] = 0xcf;
    w.buffer.writeBigUInt64BE(value, w.length);
  } else {
    w.buffer[w.length++] = 0xd3;
    w.buffer.writeBigInt64BE(value, w.length);
  }
  w.length += 8;
}

function encodeFloat(w, value) {
  w.reserve(9);
  w.buffer[w.length++] = 0xcb;
  w.buffer.writeDoubleBE(value, w.length);
  w.length += 8;
}

function encodeStr(w, value) {
  if (!value.isWellFormed()) throw new TypeError('a string with lone surrogates is not valid UTF-8');
  const data = Buffer.from(value, 'utf8');
  const n = data.length;
  if (n < 32) w.u8(0xa0 | n);
  else if (n < 0x100) w.head8(0xd9, n);
  else if (n < 0x10000) w.head16(0xda, n);
  else if (n <= 0xffffffff) w.head32(0xdb, n);
  else throw new RangeError('str too long for msgpack');
  w.bytes(data);
}

function encodeBin(w, data) {
  const n = data.length;
  if (n < 0x100) w.head8(0xc4, n);
  else if (n < 0x10000) w.head16(0xc5, n);
  else if (n <= 0xffffffff) w.head32(0xc6, n);
  else throw new RangeError('bin too long for msgpack');
  w.bytes(data);
}

function encodeExt(w, ext) {
  const n = ext.data.length;
  const fixed = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }[n];
  if (fixed !== undefined) w.u8(fixed);
  else if (n < 0x100) w.head8(0xc7, n);
  else if (n < 0x10000) w.head16(0xc8, n);
  else w.head32(0xc9, n);
  w.u8(ext.type & 0xff);
  w.bytes(ext.data);
}

function arrayHeader(w, n) {
  if (n < 16) w.u8(0x90 | n);
  else if (n < 0x10000) w.head16(0xdc, n);
  else w.head32(0xdd, n);
}

function mapHeader(w, n) {
  if (n < 16) w.u8(0x80 | n);
  else if (n < 0x10000) w.head16(0xde, n);
  else w.head32(0xdf, n);
}

const MAX_ENCODE_DEPTH = 512;

function encodeValue(w, value, depth) {
  if (depth > MAX_ENCODE_DEPTH) throw new RangeError(`value nests deeper than ${MAX_ENCODE_DEPTH} levels`);
  switch (typeof value) {
    case 'undefined':
      return w.u8(0xc0);
    case 'boolean':
      return w.u8(value ? 0xc3 : 0xc2);
    case 'number':
      return Number.isSafeInteger(value) ? encodeInt(w, value === 0 ? 0 : value) : encodeFloat(w, value);
    case 'bigint':
      return encodeInt(w, value);
    case 'string':
      return encodeStr(w, value);
    case 'object':
      break;
    default:
      throw new TypeError(`cannot encode a ${typeof value} as msgpack`);
  }
  if (value === null) return w.u8(0xc0);
  if (value instanceof Float64) return encodeFloat(w, value.value);
  if (value instanceof Uint8Array) return encodeBin(w, value);
  if (value instanceof ArrayBuffer) return encodeBin(w, new Uint8Array(value));
  if (Array.isArray(value)) {
    arrayHeader(w, value.length);
    for (const item of value) encodeValue(w, item, depth + 1);
    return undefined;
  }
  if (value instanceof Map) {
    mapHeader(w, value.size);
    for (const [key, item] of value) {
      encodeValue(w, key, depth + 1);
      encodeValue(w, item, depth + 1);
    }
    return undefined;
  }
  if (value instanceof Ext) return encodeExt(w, value);
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError(`cannot encode a ${proto?.constructor?.name ?? 'object'} as msgpack`);
  }
  const keys = Object.keys(value);
  mapHeader(w, keys.length);
  for (const key of keys) {
    encodeStr(w, key);
    encodeValue(w, value[key], depth + 1);
  }
  return undefined;
}

/** The canonical msgpack bytes of `value` (docs/protocol.md §3), as a Buffer. */
function encode(value) {
  const w = new Writer();
  encodeValue(w, value, 1);
  return w.result();
}

// --- decoding -----------------------------------------------------------------------------------------------

const DEFAULT_LIMIT = 0xffffffff;
const DEFAULT_DEPTH = 1024; // msgpack-python's C unpacker stack

/**
 * Options (all optional):
 *   ints:   "auto" (number when |x| ≤ 2^53 − 1, else bigint; default) or "bigint" (every int a bigint)
 *   floats: "number" (default) or "wrap" (every float a Float64)
 *   maps:   "auto" (plain object when every key is a str, else Map; default) or "map" (every map a Map)
 *   strictMapKeys: only str and bin map keys (msgpack-python's strict_map_key); default false
 *   allowExt: decode ext values as Ext (default true); false refuses them as too_large, except an empty
 *             ext, which passes (as in msgpack-python with max_ext_len=0)
 *   maxStr, maxBin, maxArray, maxMap, maxExt (bytes / elements), maxDepth (nesting levels)
 */
function decode(data, options = {}) {
  if (!(data instanceof Uint8Array)) {
    throw new TypeError(`expected a Buffer or Uint8Array, got ${data === null ? 'null' : typeof data}`);
  }
  const reader = new Reader(Buffer.from(data.buffer, data.byteOffset, data.byteLength), options);
  if (reader.bytes.length === 0) throw new MsgpackError('not_msgpack', 'empty input');
  const value = reader.value(1);
  if (reader.pos !== reader.bytes.length) {
    throw new MsgpackError('not_msgpack', `${reader.bytes.length - reader.pos} extra bytes after the value`);
  }
  return value;
}

class Reader {
  constructor(bytes, options) {
    this.bytes = bytes;
    this.pos = 0;
    this.bigints = options.ints === 'bigint';
    this.wrapFloats = options.floats === 'wrap';
    this.alwaysMap = options.maps === 'map';
    this.strictMapKeys = Boolean(options.strictMapKeys);
    this.allowExt = options.allowExt !== false;
    this.maxStr = options.maxStr ?? DEFAULT_LIMIT;
    this.maxBin = options.maxBin ?? DEFAULT_LIMIT;
    this.maxArray = options.maxArray ?? DEFAULT_LIMIT;
    this.maxMap = options.maxMap ?? DEFAULT_LIMIT;
    this.maxExt = options.maxExt ?? DEFAULT_LIMIT;
    this.maxDepth = options.maxDepth ?? DEFAULT_DEPTH;
  }

  need(n) {
    if (this.pos + n > this.bytes.length) {
      throw new MsgpackError('not_msgpack', `truncated input: ${n} more bytes needed at offset ${this.pos}`);
    }
  }

  u8() {
    this.need(1);
    return this.bytes[this.pos++];
  }

  u16() {
    this.need(2);
    const v = this.bytes.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u32() {
    this.need(4);
    const v = this.bytes.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  int(v) {
    if (typeof v === 'bigint') {
      if (this.bigints) return v;
      return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
    }
    return this.bigints ? BigInt(v) : v;
  }

  float(v) {
    return this.wrapFloats ? new Float64(v) : v;
  }

  take(n) {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  str(n) {
    const raw = this.take(n); // the bytes must be there before the length bound is looked at (as msgpack-python)
    if (n > this.maxStr) throw new MsgpackError('too_large', `str of ${n} bytes exceeds ${this.maxStr}`);
    try {
      return UTF8.decode(raw);
    } catch {
      throw new MsgpackError('not_msgpack', 'str is not valid UTF-8');
    }
  }

  bin(n) {
    const raw = this.take(n);
    if (n > this.maxBin) throw new MsgpackError('too_large', `bin of ${n} bytes exceeds ${this.maxBin}`);
    return Buffer.from(raw); // a copy: the input buffer may be reused by its owner
  }

  ext(n) {
    const type = (this.u8() << 24) >> 24;
    const raw = this.take(n);
    if (n > this.maxExt || (!this.allowExt && n > 0)) {
      throw new MsgpackError('too_large', `ext of ${n} bytes exceeds ${this.allowExt ? this.maxExt : 0}`);
    }
    return new Ext(type, raw);
  }

  array(n, depth) {
    if (n > this.maxArray) throw new MsgpackError('too_large', `array of ${n} elements exceeds ${this.maxArray}`);
    if (n > this.bytes.length - this.pos) {
      // Every element takes at least one byte: never allocate for a length the input cannot hold.
      throw new MsgpackError('not_msgpack', `array of ${n} elements is longer than the input`);
    }
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }

  map(n, depth) {
    if (n > this.maxMap) throw new MsgpackError('too_large', `map of ${n} pairs exceeds ${this.maxMap}`);
    if (2 * n > this.bytes.length - this.pos) {
      throw new MsgpackError('not_msgpack', `map of ${n} pairs is longer than the input`);
    }
    const pairs = [];
    let strKeys = true;
    for (let i = 0; i < n; i++) {
      const key = this.value(depth + 1);
      if (typeof key !== 'string') {
        strKeys = false;
        if (this.strictMapKeys && !Buffer.isBuffer(key)) {
          throw new MsgpackError('not_msgpack', `a ${describe(key)} is not allowed as a map key`);
        }
      }
      pairs.push([key, this.value(depth + 1)]);
    }
    if (this.alwaysMap || !strKeys) {
      // Bin keys compare by content, like msgpack-python's bytes keys: a later equal key replaces an earlier one.
      const out = new Map();
      const seen = new Map();
      for (const [key, value] of pairs) {
        if (Buffer.isBuffer(key)) {
          const id = key.toString('latin1');
          if (seen.has(id)) out.delete(seen.get(id));
          seen.set(id, key);
        }
        out.set(key, value);
      }
      return out;
    }
    const out = {};
    for (const [key, value] of pairs) {
      // defineProperty: a "__proto__" key is data, not the prototype.
      Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
    }
    return out;
  }

  value(depth) {
    if (depth > this.maxDepth) throw new MsgpackError('not_msgpack', `nesting deeper than ${this.maxDepth}`);
    const b = this.u8();
    if (b < 0x80) return this.int(b);
    if (b < 0x90) return this.map(b & 0x0f, depth);
    if (b < 0xa0) return this.array(b & 0x0f, depth);
    if (b < 0xc0) return this.str(b & 0x1f);
    if (b >= 0xe0) return this.int(b - 0x100);
    switch (b) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.bin(this.u8());
      case 0xc5:
        return this.bin(this.u16());
      case 0xc6:
        return this.bin(this.u32());
      case 0xc7:
        return this.ext(this.u8());
      case 0xc8:
        return this.ext(this.u16());
      case 0xc9:
        return this.ext(this.u32());
      case 0xca: {
        this.need(4);
        const v = this.bytes.readFloatBE(this.pos);
        this.pos += 4;
        return this.float(v);
      }
      case 0xcb: {
        this.need(8);
        const v = this.bytes.readDoubleBE(this.pos);
        this.pos += 8;
        return this.float(v);
      }
      case 0xcc:
        return this.int(this.u8());
      case 0xcd:
        return this.int(this.u16());
      case 0xce:
        return this.int(this.u32());
      case 0xcf: {
        this.need(8);
        const v = this.bytes.readBigUInt64BE(this.pos);
        this.pos += 8;
        return this.int(v);
      }
      case 0xd0: {
        this.need(1);
        return this.int(this.bytes.readInt8(this.pos++));
      }
      case 0xd1: {
        this.need(2);
        const v = this.bytes.readInt16BE(this.pos);
        this.pos += 2;
        return this.int(v);
      }
      case 0xd2: {
        this.need(4);
        const v = this.bytes.readInt32BE(this.pos);
        this.pos += 4;
        return this.int(v);
      }
      case 0xd3: {
        this.need(8);
        const v = this.bytes.readBigInt64BE(this.pos);
        this.pos += 8;
        return this.int(v);
      }
      case 0xd4:
        return this.ext(1);
      case 0xd5:
        return this.ext(2);
      case 0xd6:
        return this.ext(4);
      case 0xd7:
        return this.ext(8);
      case 0xd8:
        return this.ext(16);
      case 0xd9:
        return this.str(this.u8());
      case 0xda:
        return this.str(this.u16());
      case 0xdb:
        return this.str(this.u32());
      case 0xdc:
        return this.array(this.u16(), depth);
      case 0xdd:
        return this.array(this.u32(), depth);
      case 0xde:
        return this.map(this.u16(), depth);
      case 0xdf:
        return this.map(this.u32(), depth);
      default: // 0xc1
        throw new MsgpackError('not_msgpack', `byte 0x${b.toString(16)} at offset ${this.pos - 1} is never valid`);
    }
  }
}

/** The kind of a decoded value, in the words of zvsr's messages ("an int", "a str", …). */
function describe(value) {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'bigint' || Number.isInteger(value)) return 'int';
  if (typeof value === 'number' || value instanceof Float64) return 'float';
  if (typeof value === 'string') return 'str';
  if (value instanceof Uint8Array) return 'bin';
  if (Array.isArray(value)) return 'array';
  if (value instanceof Ext) return 'ext';
  return 'map';
}

module.exports = { encode, decode, describe, Float64, Ext, MsgpackError };
