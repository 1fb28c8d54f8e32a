'use strict';
/**
 * The built-in coordination app (docs/protocol.md §7): building its operations and reading its results.
 *
 * Each builder returns `{ operation, parse }`: the operation's canonical msgpack bytes ("op" first, then the
 * fields in the documented order, exactly as the golden vectors hold them) and a function from the decoded
 * result to what the call returns. An error result `{error, message}` becomes an `AppError` — except for
 * `get`, which never fails when well-formed, so a stored value shaped like an error result is returned as is.
 */

const msgpack = require('./msgpack');
const { OPERATION_BYTES_MAX } = require('./codec');
const { AppError, BadRequest, appErrorFor } = require('./errors');

const UNEXPECTED_RESULT = 'unexpected_result';

function pack(op) {
  const data = msgpack.encode(op);
  if (data.length > OPERATION_BYTES_MAX) {
    throw new BadRequest('bad_request', `operation is ${data.length} bytes > ${OPERATION_BYTES_MAX}`);
  }
  return data;
}

function str(name, value) {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string, not ${kindOf(value)}`);
  return value;
}

function kindOf(value) {
  return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
}

function isPlainObject(value) {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function isErrorResult(value) {
  if (!isPlainObject(value)) return false;
  const keys = Object.keys(value);
  return keys.length === 2 && 'error' in value && 'message' in value && typeof value.error === 'string';
}

/** `value`, unless it is the app's error result: then AppError. */
function checked(value) {
  if (isErrorResult(value)) throw appErrorFor(value.error, String(value.message));
  return value;
}

function unexpected(what, value) {
  let shown;
  try {
    shown = JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    shown = String(value);
  }
  return new AppError(UNEXPECTED_RESULT, `${what}: unexpected result ${String(shown).slice(0, 200)}`);
}

const isInt = (value) => typeof value === 'bigint' || Number.isInteger(value);

function parseAny(value) {
  return value;
}

function parseNull(value) {
  checked(value);
  return null;
}

function parseBool(what) {
  return (value) => {
    if (typeof checked(value) !== 'boolean') throw unexpected(what, value);
    return value;
  };
}

function parseInt(value) {
  if (!isInt(checked(value))) throw unexpected('incr', value);
  return value;
}

function parseCas(value) {
  if (!isPlainObject(checked(value)) || typeof value.ok !== 'boolean') throw unexpected('cas', value);
  return { ok: value.ok, value: value.value ?? null };
}

/**
 * `{ok, owner, token}`; with `lease` (the lease the lock was asked with) `lease` too when ok, and `delayMs` when
 * the lock is in its lock delay (its holder's lease expired: nobody may take it yet; `owner` is null).
 */
function parseLock(lease) {
  return (value) => {
    if (
      !isPlainObject(checked(value)) ||
      typeof value.ok !== 'boolean' ||
      !isInt(value.token) ||
      (value.delay_ms !== undefined && !isInt(value.delay_ms))
    ) {
      throw unexpected('lock', value);
    }
    const result = { ok: value.ok, owner: value.owner ?? null, token: value.token };
    if (lease !== undefined && value.ok) result.lease = lease;
    if (value.delay_ms !== undefined) result.delayMs = value.delay_ms;
    return result;
  };
}

const isStrList = (value) => Array.isArray(value) && value.every((item) => typeof item === 'string');

function parseLeaseGrant(value) {
  if (!isPlainObject(checked(value)) || !isInt(value.lease) || !isInt(value.ttl_ms)) {
    throw unexpected('lease_grant', value);
  }
  return { lease: value.lease, ttlMs: value.ttl_ms };
}

function parseLeaseKeepalive(value) {
  if (!isInt(checked(value))) throw unexpected('lease_keepalive', value);
  return value;
}

function parseLeaseRevoke(value) {
  if (!isPlainObject(checked(value)) || typeof value.ok !== 'boolean' || !isStrList(value.deleted)) {
    throw unexpected('lease_revoke', value);
  }
  return { ok: value.ok, deleted: value.deleted };
}

function parseLeaseTtl(value) {
  if (
    !isPlainObject(checked(value)) ||
    !isInt(value.lease) ||
    !isInt(value.ttl_ms) ||
    !isInt(value.remaining_ms) ||
    !isStrList(value.keys) ||
    !isStrList(value.locks)
  ) {
    throw unexpected('lease_ttl', value);
  }
  const { lease, keys, locks } = value;
  return { lease, ttlMs: value.ttl_ms, remainingMs: value.remaining_ms, keys, locks };
}

function parseLeaseList(value) {
  if (!Array.isArray(checked(value)) || !value.every(isInt)) throw unexpected('lease_list', value);
  return value;
}

/** An integer (number or bigint) argument, or TypeError. */
function int(name, value) {
  if (!(typeof value === 'bigint' || Number.isSafeInteger(value))) {
    throw new TypeError(`${name} must be an integer (number or bigint), not ${kindOf(value)}`);
  }
  return value;
}

/** `op` with the optional `lease` field (an integer lease id) added last, when given. */
function withLease(op, lease) {
  if (lease !== undefined && lease !== null) op.lease = int('lease', lease);
  return op;
}

function parseUnlock(value) {
  if (!isPlainObject(checked(value)) || typeof value.ok !== 'boolean') throw unexpected('unlock', value);
  return value.ok;
}

const ops = {
  get: (key) => ({ operation: pack({ op: 'get', key: str('key', key) }), parse: parseAny }),
  put: (key, value, lease) => ({
    operation: pack(withLease({ op: 'put', key: str('key', key), value }, lease)),
    parse: parseNull,
  }),
  delete: (key) => ({ operation: pack({ op: 'delete', key: str('key', key) }), parse: parseBool('delete') }),
  cas: (key, expected, next) => ({
    operation: pack({ op: 'cas', key: str('key', key), expected, new: next }),
    parse: parseCas,
  }),
  incr: (key, by) => {
    if (!(typeof by === 'bigint' || Number.isSafeInteger(by))) {
      throw new TypeError(`by must be an integer (number or bigint), not ${kindOf(by)}`);
    }
    return { operation: pack({ op: 'incr', key: str('key', key), by }), parse: parseInt };
  },
  lock: (name, owner, lease) => ({
    operation: pack(withLease({ op: 'lock', name: str('name', name), owner: str('owner', owner) }, lease)),
    parse: parseLock(lease ?? undefined),
  }),
  unlock: (name, owner) => ({
    operation: pack({ op: 'unlock', name: str('name', name), owner: str('owner', owner) }),
    parse: parseUnlock,
  }),
  leaseGrant: (ttlMs, lockDelayMs = 0) => {
    const op = { op: 'lease_grant', ttl_ms: int('ttlMs', ttlMs) };
    // 0 is the app's default: the field is sent only when it is not.
    if (BigInt(int('lockDelayMs', lockDelayMs)) !== 0n) op.lock_delay_ms = lockDelayMs;
    return { operation: pack(op), parse: parseLeaseGrant };
  },
  leaseKeepalive: (lease) => ({
    operation: pack({ op: 'lease_keepalive', lease: int('lease', lease) }),
    parse: parseLeaseKeepalive,
  }),
  leaseRevoke: (lease) => ({
    operation: pack({ op: 'lease_revoke', lease: int('lease', lease) }),
    parse: parseLeaseRevoke,
  }),
  leaseTtl: (lease) => ({ operation: pack({ op: 'lease_ttl', lease: int('lease', lease) }), parse: parseLeaseTtl }),
  leaseList: () => ({ operation: pack({ op: 'lease_list' }), parse: parseLeaseList }),
  execute: (op, raiseAppErrors) => ({ operation: pack(op), parse: raiseAppErrors ? checked : parseAny }),
};

/** The value a call returns, from the result bytes of its Reply. */
function resultValue(call, result) {
  let value;
  try {
    value = msgpack.decode(result);
  } catch (error) {
    // The adapter always encodes results; anything else is not from a zvsr app.
    throw new AppError(UNEXPECTED_RESULT, `result is not msgpack (${error.message})`);
  }
  return call.parse(value);
}

module.exports = { ops, resultValue, isErrorResult, UNEXPECTED_RESULT };
