'use strict';
/**
 * The zvsr wire codec: messages ⇄ msgpack bytes, validating everything on the way in.
 *
 * The client protocol of `zvsr/wire/codec.py` (docs/protocol.md §3, §4, §10): `Request` (type 20) and its
 * answers `Reply`, `Redirect`, `Error` (21–23). The replica-to-replica kinds (types below 20) are not a
 * client's business and are not implemented here: to these decoders they are `unknown_type`.
 *
 * Every message is one msgpack map: key "type" holds the kind's number, every other key is a field, spelled
 * as on the wire. The encoder writes "type" first and the fields in the documented order, with the shortest
 * int, str and bin formats, so its bytes equal zvsr's own (the golden vectors in clients/testdata/ check
 * this byte for byte).
 *
 * Messages in JavaScript are plain objects with the wire's field names:
 * `{ kind: "Request", client_id, request_number, operation }`. Numbers (view, client_id, request_number)
 * decode as bigint, `primary` (a replica id, 0..2^32-1) as number, `operation` / `result` as Buffer, `code` /
 * `message` as string. The encoder takes a number or a bigint for any numeric field.
 *
 * Decoding is the trust boundary: every decoder throws `DecodeError` (with the codec's `reason`) for any input
 * that is not a well-formed message of the kinds its socket may carry, checking in the same order as the
 * Python codec, so a malformed message is refused with the same reason.
 */

const msgpack = require('./msgpack');

const ID_MAX = (1n << 64n) - 1n;
// Replica ids are stable and never reused (docs/protocol.md §3): 0..n-1 in a cluster's first configuration,
// any uint32 after reconfigurations.
const REPLICA_ID_MAX = 2 ** 32 - 1;
const OPERATION_BYTES_MAX = 64 * 1024;
const RESULT_BYTES_MAX = 1024 * 1024;
const MESSAGE_BYTES_MAX = 256 * 1024 * 1024;
const CLIENT_MESSAGE_BYTES_MAX = OPERATION_BYTES_MAX + 1024;
const ERROR_MESSAGE_CHARS_MAX = 1024;
const LOG_ENTRIES_MAX = 4_000_000; // the Python codec's array bound, which it applies before knowing the kind
const MAP_LEN_MAX = 16;
const STR_BYTES_MAX = 4 * ERROR_MESSAGE_CHARS_MAX;
const BIN_BYTES_MAX = Math.max(OPERATION_BYTES_MAX, RESULT_BYTES_MAX);

const ERROR_CODES = new Set(['unavailable', 'busy', 'view_change', 'bad_request', 'timeout', 'session_expired']);

/** Kind name → type number and fields after "type", in encoding order. Never renumbered. */
const KINDS = {
  Request: { type: 20, fields: ['client_id', 'request_number', 'operation'] },
  Reply: { type: 21, fields: ['view', 'client_id', 'request_number', 'result'] },
  Redirect: { type: 22, fields: ['view', 'primary', 'client_id', 'request_number'] },
  Error: { type: 23, fields: ['view', 'client_id', 'request_number', 'code', 'message'] },
};
const KIND_BY_TYPE = new Map(Object.entries(KINDS).map(([name, spec]) => [spec.type, name]));
const REQUEST_KINDS = new Set(['Request']);
const CLIENT_REPLY_KINDS = new Set(['Reply', 'Redirect', 'Error']);
const ALL_KINDS = new Set(Object.keys(KINDS));
const BIN_FIELDS = new Set(['operation', 'result']);
const STR_FIELDS = new Set(['code', 'message']);

class DecodeError extends Error {
  /** `reason`: not_msgpack, not_a_map, unknown_type, unexpected_type, missing_field, unknown_field,
   *  wrong_type, out_of_range, too_large or inconsistent (docs/protocol.md §10). */
  constructor(reason, message) {
    super(`${reason}: ${message}`);
    this.name = 'DecodeError';
    this.reason = reason;
  }
}

// --- encoding -----------------------------------------------------------------------------------------------

function encodeNumber(value, name) {
  const n = typeof value === 'bigint' ? value : Number.isSafeInteger(value) ? BigInt(value) : null;
  if (n === null || n < 0n || n > ID_MAX) throw new RangeError(`${name} must be an int in 0..2^64-1, got ${value}`);
  return n;
}

/** The wire bytes of `message` (a client-protocol kind, named by `message.kind`). */
function encode(message) {
  const spec = KINDS[message?.kind];
  if (spec === undefined) throw new TypeError(`not a zvsr client message kind: ${message?.kind}`);
  const map = new Map([['type', spec.type]]);
  for (const field of spec.fields) {
    const value = message[field];
    if (value === undefined || value === null) throw new TypeError(`${message.kind} needs ${field}`);
    if (BIN_FIELDS.has(field)) {
      if (!(value instanceof Uint8Array)) throw new TypeError(`${field} must be a Buffer or Uint8Array`);
      map.set(field, value);
    } else if (STR_FIELDS.has(field)) {
      if (typeof value !== 'string') throw new TypeError(`${field} must be a string`);
      map.set(field, value);
    } else if (field === 'primary') {
      if (!Number.isInteger(Number(value)) || value < 0 || value > REPLICA_ID_MAX) {
        throw new RangeError(`primary must be a replica id 0..${REPLICA_ID_MAX}, got ${value}`);
      }
      map.set(field, encodeNumber(value, field));
    } else {
      map.set(field, encodeNumber(value, field));
    }
  }
  return msgpack.encode(map);
}

// --- decoding -----------------------------------------------------------------------------------------------

function unpack(data, sizeMax) {
  if (!(data instanceof Uint8Array)) throw new DecodeError('wrong_type', `expected bytes, got ${typeof data}`);
  const size = data.length;
  if (size > sizeMax) throw new DecodeError('too_large', `${size} bytes > ${sizeMax}`);
  let value;
  try {
    value = msgpack.decode(data, {
      ints: 'bigint',
      floats: 'wrap',
      maps: 'map',
      strictMapKeys: true,
      allowExt: false,
      maxStr: STR_BYTES_MAX,
      maxBin: BIN_BYTES_MAX,
      maxArray: Math.min(size, LOG_ENTRIES_MAX),
      maxMap: MAP_LEN_MAX,
    });
  } catch (error) {
    if (error instanceof msgpack.MsgpackError) throw new DecodeError(error.reason, error.message);
    throw error;
  }
  if (!(value instanceof Map)) throw new DecodeError('not_a_map', `top level is ${msgpack.describe(value)}`);
  // As the server's decoder (zvsr/wire/unpack.py): decoders differ on which of two equal keys wins, so a map
  // that names a key twice (fewer keys decoded than its header declares) is refused, never guessed at.
  if (value.size !== mapHeaderCount(data)) throw new DecodeError('inconsistent', 'a key appears twice');
  return value;
}

/** The key count the header of the map `data` holds declares (the caller knows `data` is one map). */
function mapHeaderCount(data) {
  const head = data[0];
  if (head < 0x90) return head & 0x0f;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return head === 0xde ? view.getUint16(1) : view.getUint32(1);
}

function dispatch(map, allowed) {
  if (!map.has('type')) throw new DecodeError('missing_field', "no 'type'");
  const type = map.get('type');
  if (typeof type !== 'bigint') throw new DecodeError('wrong_type', `'type' is ${msgpack.describe(type)}`);
  const kind = type >= 20n && type <= 23n ? KIND_BY_TYPE.get(Number(type)) : undefined;
  if (kind === undefined) throw new DecodeError('unknown_type', `type ${type}`);
  if (!allowed.has(kind)) throw new DecodeError('unexpected_type', `type ${type} does not belong on this socket`);
  checkFields(map, kind);
  return DECODERS[kind](map);
}

function checkFields(map, kind) {
  const expected = new Set(['type', ...KINDS[kind].fields]);
  const strKeys = new Set([...map.keys()].filter((key) => typeof key === 'string'));
  const missing = [...expected].filter((key) => !strKeys.has(key)).sort();
  if (missing.length) throw new DecodeError('missing_field', `${kind} lacks ${missing.join(', ')}`);
  const unknown = [...map.keys()].filter((key) => typeof key !== 'string' || !expected.has(key));
  if (unknown.length) {
    const names = unknown.map((key) => (typeof key === 'string' ? `'${key}'` : `b'${key.toString('latin1')}'`));
    throw new DecodeError('unknown_field', `${kind} has ${names.sort().join(', ')}`);
  }
}

function badInt(name, value, high) {
  if (typeof value !== 'bigint') return new DecodeError('wrong_type', `${name} is ${msgpack.describe(value)}, not int`);
  return new DecodeError('out_of_range', `${name} = ${value} not in 0..${high}`);
}

function id(map, name) {
  const value = map.get(name);
  if (typeof value === 'bigint' && value >= 0n && value <= ID_MAX) return value;
  throw badInt(name, value, ID_MAX);
}

function replicaId(map, name) {
  const value = map.get(name);
  if (typeof value === 'bigint' && value >= 0n && value <= BigInt(REPLICA_ID_MAX)) return Number(value);
  throw badInt(name, value, REPLICA_ID_MAX);
}

function bytes(map, name, sizeMax) {
  const value = map.get(name);
  if (!Buffer.isBuffer(value)) throw new DecodeError('wrong_type', `${name} is ${msgpack.describe(value)}, not bin`);
  if (value.length > sizeMax) throw new DecodeError('too_large', `${name} has ${value.length} bytes > ${sizeMax}`);
  return value;
}

// One function per kind. The order of the checks is the Python codec's (keyword arguments evaluate in order).
const DECODERS = {
  Request(m) {
    return {
      kind: 'Request',
      client_id: id(m, 'client_id'),
      request_number: id(m, 'request_number'),
      operation: bytes(m, 'operation', OPERATION_BYTES_MAX),
    };
  },
  Reply(m) {
    return {
      kind: 'Reply',
      view: id(m, 'view'),
      client_id: id(m, 'client_id'),
      request_number: id(m, 'request_number'),
      result: bytes(m, 'result', RESULT_BYTES_MAX),
    };
  },
  Redirect(m) {
    return {
      kind: 'Redirect',
      view: id(m, 'view'),
      primary: replicaId(m, 'primary'),
      client_id: id(m, 'client_id'),
      request_number: id(m, 'request_number'),
    };
  },
  Error(m) {
    const code = m.get('code');
    const message = m.get('message');
    if (typeof code !== 'string') throw new DecodeError('wrong_type', `code is ${msgpack.describe(code)}, not str`);
    if (!ERROR_CODES.has(code)) throw new DecodeError('out_of_range', `unknown error code ${JSON.stringify(code)}`);
    if (typeof message !== 'string') {
      throw new DecodeError('wrong_type', `message is ${msgpack.describe(message)}, not str`);
    }
    let chars = 0;
    for (const _ of message) chars++; // code points, as Python's len()
    if (chars > ERROR_MESSAGE_CHARS_MAX) {
      throw new DecodeError('too_large', `message has ${chars} chars > ${ERROR_MESSAGE_CHARS_MAX}`);
    }
    return {
      kind: 'Error',
      view: id(m, 'view'),
      client_id: id(m, 'client_id'),
      request_number: id(m, 'request_number'),
      code,
      message,
    };
  },
};

/** What a client may receive: Reply, Redirect or Error (types 21..23). */
function decodeClientReply(data) {
  return dispatch(unpack(data, MESSAGE_BYTES_MAX), CLIENT_REPLY_KINDS);
}

/** A client Request (type 20), at most CLIENT_MESSAGE_BYTES_MAX bytes. */
function decodeRequest(data) {
  return dispatch(unpack(data, CLIENT_MESSAGE_BYTES_MAX), REQUEST_KINDS);
}

/** Any client-protocol message, types 20..23 (tools, tests, captures). */
function decode(data) {
  return dispatch(unpack(data, MESSAGE_BYTES_MAX), ALL_KINDS);
}

module.exports = {
  encode,
  decode,
  decodeClientReply,
  decodeRequest,
  DecodeError,
  KINDS,
  ERROR_CODES,
  ID_MAX,
  REPLICA_ID_MAX,
  OPERATION_BYTES_MAX,
  RESULT_BYTES_MAX,
  CLIENT_MESSAGE_BYTES_MAX,
  MESSAGE_BYTES_MAX,
};
