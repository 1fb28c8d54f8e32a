'use strict';
/**
 * The client side of VR, sans-IO: primary discovery, idempotent retry, and what a failure means.
 *
 * A port of `zvsr/protocol/client_session.py` (`ClientSession`, `RelaySession`) and `zvsr/runtime/outcome.py`
 * (`Attempts`), the code the Python client and the proxy run (docs/protocol.md §5, "Who retries what"), with
 * time in milliseconds instead of ticks. Nothing here touches a socket or a timer: the driver (`Client`) calls
 * `submit`, `onReply` and `poll(now)`, sends what `takeOutbox()` returns, and wakes up at `wakeAt()`.
 *
 * Direct to the replicas (`ClientSession`). One session is one client_id with at most one request outstanding.
 * It keeps the highest view it has seen and sends to that view's primary (`members[(view - startView) mod n]`,
 * replica ids; `learnConfiguration` follows a reconfiguration); a Redirect of a newer
 * view moves it there (never back); a retry timeout re-sends the *same* (client_id, request_number) to every
 * endpoint, doubling the period with jitter up to a cap; an Error `unavailable`, `busy` or `view_change` makes
 * the next retry come sooner; an Error `bad_request` ends the request. When the deadline passes the request
 * ends with `timeout` — or, when every attempt that left was refused (so it certainly did not execute), with
 * `unavailable` / `busy`.
 *
 * Via proxies (`RelaySession`). A proxy retries toward the replicas itself and answers every request it holds
 * by its own deadline, so the client keeps only its own deadline and sends a request to **one** proxy, sending
 * the same (client_id, request_number) again only when that proxy cannot answer:
 * - the send was refused because there is no connection to it (the driver says so with `onSendRefused`): the
 *   next proxy at once; when every proxy refused, the next one is tried again `connectRetryMs` later (a local
 *   attempt, nothing on the network);
 * - it answered an error other than a final one (`timeout`, `unavailable`, `busy`): while the deadline is
 *   ahead, once more to the next proxy after a short pause;
 * - nothing came back for `quietMs` after the last send (a proxy that restarted forgot the request, and
 *   nothing reports that): once more to the next proxy (with one proxy, the same one), and again after each
 *   further quiet period.
 * `bad_request` and `session_expired` end the request; otherwise only the deadline does, with `timeout`.
 *
 * Registration (`register: true`; docs/protocol.md §5 "Registration"). A session registers before its first
 * request, and again after `session_expired`, transparently for the caller: `submit` sends the register
 * (request_number 0, no operation, the session's random nonce as client_id) and keeps the operation; the
 * register's Reply carries the session id (a msgpack uint), which becomes the session's clientId, and the
 * operation goes out as request 1 of it. A register that fails completes the operation with the register's
 * error (the operation was never sent). `session_expired` completes the operation in flight — its outcome is
 * unknown, it is never re-sent — and the next `submit` registers a new session under a new nonce (`newNonce`).
 */

const BROADCAST = -1;
const EMPTY = Buffer.alloc(0); // a register's operation
const RETRY_AFTER_ERROR_MS = 50; // 5 ticks of 10 ms in the Python client
const BACKOFF_DOUBLINGS_MAX = 16;
const RELAY_QUIET_MS = 2500; // CLIENT_PROXY_QUIET_MS in zvsr/constants.py
const RELAY_CONNECT_RETRY_MS = 10; // CLIENT_TICK_MS: when every proxy refused a send, try again this soon
const FINAL_ERRORS = new Set(['bad_request', 'session_expired']); // retrying cannot help
const TIMEOUT_MESSAGE = 'no answer in time; the request may or may not have been executed';

// Error codes that refuse an attempt without executing it, and what the caller is told if all attempts got one.
const REFUSALS = { busy: 'busy', unavailable: 'unavailable', view_change: 'unavailable' };

/** Counts the attempts of one request that left, and the answers that refused one (`zvsr.runtime.outcome`). */
class Attempts {
  constructor() {
    this.start({ fresh: true });
  }

  /** A new request_number (`fresh`), or a re-submission of one already tried (never "known"). */
  start({ fresh }) {
    this.sent = 0;
    this.refused = 0;
    this.lastError = null;
    this.fresh = fresh;
  }

  /** An answer to the outstanding request_number (the caller has checked client_id and number). */
  onAnswer(reply) {
    if (reply.kind === 'Redirect') {
      this.refused += 1;
    } else if (reply.kind === 'Error') {
      this.lastError = reply;
      if (reply.code in REFUSALS) this.refused += 1;
    }
  }

  /** [code, message] for a request that got no result within `timeoutMs`; `target` names the peers. */
  finalError({ timeoutMs, target }) {
    const last = this.lastError;
    const seen = last !== null && last.message ? ` (last answer: ${last.code}: ${last.message})` : '';
    if (this.fresh && this.sent === 0) {
      return ['unavailable', `no ${target} reachable within ${timeoutMs} ms; the request was not executed`];
    }
    if (this.fresh && this.refused >= this.sent) {
      const code = last !== null ? (REFUSALS[last.code] ?? 'unavailable') : 'unavailable';
      const reason = last !== null ? `${last.code}: ${last.message}` : 'no primary reachable';
      return [code, `every attempt was refused (${reason}); the request was not executed`];
    }
    return ['timeout', `no answer within ${timeoutMs} ms; the request may or may not have been executed${seen}`];
  }
}

/**
 * What both sessions share: one client_id, its request numbers, at most one request outstanding (§4), the
 * caller's deadline, the outbox and the completion the driver takes.
 */
class Session {
  constructor({ clientId, requestNumber, view, register = false, registered = false, newNonce = null }) {
    this.clientId = clientId; // the session id once registered; before, the register's nonce
    this.nonce = clientId;
    this.register = register;
    this.registered = registered || !register;
    this.newNonce = newNonce;
    this.waiting = null; // the operation that goes out once the register answers
    this.requestNumber = requestNumber; // the last one used
    this.view = view;
    this.outstanding = null; // { kind, client_id, request_number, operation }
    this.deadline = Infinity;
    this.outbox = [];
    this.completion = null;
  }

  /**
   * Number a new request, started at `now`, to end by `now + timeoutMs`. `requestNumber` re-submits that
   * number (it must not go backwards: the replicas ignore older numbers); by default the next one is used.
   */
  start(operation, { now, timeoutMs, requestNumber }) {
    if (this.outstanding !== null) throw new Error('a client has at most one outstanding request');
    this.completion = null;
    this.deadline = now + timeoutMs;
    if (!this.registered) {
      this.waiting = operation;
      this.requestNumber = 0n;
      this.outstanding = { kind: 'Request', client_id: this.clientId, request_number: 0n, operation: EMPTY };
      return this.outstanding;
    }
    return this.number(operation, requestNumber);
  }

  number(operation, requestNumber) {
    const number = requestNumber ?? this.requestNumber + 1n;
    if (number < this.requestNumber) throw new RangeError('request numbers never go backwards');
    this.requestNumber = number;
    this.outstanding = { kind: 'Request', client_id: this.clientId, request_number: number, operation };
    return this.outstanding;
  }

  /**
   * The register answered: go on as its session with the operation kept, as its request 1 (returned). Null if
   * the answer names no session (the operation then completes `unavailable`, never sent).
   */
  registeredBy(reply) {
    const session = registerResult(reply.result);
    const operation = this.waiting;
    this.waiting = null;
    this.outstanding = null;
    if (session === null || session === 0n) {
      this.complete({ requestNumber: 1n, error: 'unavailable', message: 'bad register reply; not executed' });
      return null;
    }
    this.clientId = session;
    this.requestNumber = 0n;
    this.registered = true;
    return this.number(operation, undefined);
  }

  /** A completion, reworded if it ends a register that got no session (the operation was never sent). */
  registering(completion) {
    if (this.waiting === null) return completion;
    this.waiting = null;
    this.requestNumber = 0n;
    return { ...completion, message: `${completion.message} (while registering a session: the operation was not sent)` };
  }

  /** Is `reply` an answer to the request in flight (not to an earlier attempt of an earlier request)? */
  answersOutstanding(reply) {
    const outstanding = this.outstanding;
    if (outstanding === null || reply.client_id !== this.clientId) return false;
    return reply.request_number === outstanding.request_number;
  }

  /** Complete the request if `reply` ends it — a result, or an error retrying cannot help; true if it did. */
  finishes(reply) {
    if (reply.kind === 'Reply') {
      if (reply.view > this.view) this.view = reply.view;
      this.complete({ requestNumber: reply.request_number, result: reply.result });
      return true;
    }
    if (reply.kind === 'Error' && FINAL_ERRORS.has(reply.code)) {
      let message = reply.message;
      if (reply.code === 'session_expired' && this.register) {
        // The next submit registers a new session, under a new nonce (one this session's id never answers).
        this.registered = false;
        if (this.newNonce !== null) this.nonce = this.newNonce();
        this.clientId = this.nonce;
        message += '; the outcome of this request is unknown (an earlier attempt may have executed)';
      }
      this.complete({ requestNumber: reply.request_number, error: reply.code, message });
      return true;
    }
    return false;
  }

  /** At the caller's deadline the request ends with `timeout`; true if it did. */
  timedOut(now) {
    if (now < this.deadline) return false;
    this.complete({ requestNumber: this.outstanding.request_number, error: 'timeout', message: TIMEOUT_MESSAGE });
    return true;
  }

  takeOutbox() {
    const out = this.outbox;
    this.outbox = [];
    return out;
  }

  takeCompletion() {
    const completion = this.completion;
    this.completion = null;
    return completion;
  }
}

class ClientSession extends Session {
  /**
   * clientId: bigint; endpointCount: replicas (index order) or proxies; retryMs / retryMaxMs: the first retry
   * period and its cap; random: () => [0, 1) for jitter (default Math.random).
   */
  constructor({
    clientId,
    endpointCount,
    retryMs,
    retryMaxMs,
    random = Math.random,
    requestNumber = 0n,
    view = 0n,
    register = false,
    registered = false,
    newNonce = null,
  }) {
    if (endpointCount < 1) throw new RangeError('at least one endpoint');
    if (retryMaxMs < retryMs) throw new RangeError('retryMaxMs must be >= retryMs');
    super({ clientId, requestNumber, view, register, registered, newNonce });
    this.endpointCount = endpointCount;
    // The configuration it addresses (VR Revisited §7): replica ids in order, and the view its first member
    // leads. The endpoints as given are ids 0..n-1 from view 0; `learnConfiguration` moves to a later epoch's.
    this.members = Array.from({ length: endpointCount }, (_, i) => i);
    this.startView = 0n;
    this.retryMs = retryMs;
    this.retryMaxMs = retryMaxMs;
    this.random = random;
    this.retryAfter = retryMs;
    this.retryAt = Infinity;
    this.backoffs = 0;
  }

  /** The replica id that leads `view` (default: the highest seen): members[(view - startView) mod n]. */
  primaryOf(view = this.view) {
    const n = BigInt(this.members.length);
    return this.members[Number((((view - this.startView) % n) + n) % n)];
  }

  get primary() {
    return this.primaryOf(this.view);
  }

  /**
   * A later epoch's configuration (members: replica ids in order; startView: its first view, a bigint), learnt
   * by the driver from a status answer. Views go on across epochs, so the session never goes back to an older
   * one. If a request is in flight it goes to the new primary at once (the retry timer would only add a pause).
   */
  learnConfiguration(members, startView) {
    if (!members.length || startView < this.startView) return;
    this.members = [...members];
    this.endpointCount = members.length;
    this.startView = startView;
    if (startView > this.view) this.view = startView;
    if (this.outstanding !== null) this.outbox.push([this.primary, this.outstanding]);
  }

  /**
   * Start a request at time `now`, to end by `now + timeoutMs`. `requestNumber` re-submits that number
   * (it must not go backwards: the replicas ignore older numbers); by default the next one is used.
   */
  submit(operation, { now, timeoutMs, requestNumber }) {
    const request = this.start(operation, { now, timeoutMs, requestNumber });
    this.backoffs = 0;
    this.retryAfter = this.retryMs;
    this.retryAt = now + this.retryAfter;
    this.outbox.push([this.primary, request]);
    return request;
  }

  /** Forget the request in flight (the caller gave up); a late answer to it is then ignored. */
  abandon() {
    this.outstanding = null;
    this.waiting = null;
    this.outbox = [];
    this.retryAt = Infinity;
    this.deadline = Infinity;
  }

  onReply(reply, now) {
    if (!this.answersOutstanding(reply)) return;
    if (reply.kind === 'Reply' && this.waiting !== null) {
      if (reply.view > this.view) this.view = reply.view;
      const request = this.registeredBy(reply);
      if (request !== null) {
        this.backoffs = 0;
        this.retryAfter = this.retryMs;
        this.retryAt = now + this.retryAfter;
        this.outbox.push([this.primary, request]);
      }
      return;
    }
    if (reply.kind === 'Redirect') {
      // Only replicas in normal status redirect, so the view they name has started. Never go back.
      if (reply.view > this.view) {
        this.view = reply.view;
        this.outbox.push([this.primary, this.outstanding]);
      }
    } else if (!this.finishes(reply)) {
      // An Error meaning "not now" (its view may be one that never starts: keep ours): try again soon, with the
      // same request_number, so it executes at most once.
      this.retryAfter = Math.min(this.retryAfter, RETRY_AFTER_ERROR_MS);
      this.retryAt = now + this.retryAfter;
    }
  }

  /** Run the timers due at `now`: the deadline, then the retry timeout. */
  poll(now) {
    if (this.outstanding === null || this.timedOut(now)) return;
    if (now >= this.retryAt) {
      // Double the period (up to the cap), add up to one base period of jitter, and send to everyone.
      this.backoffs = Math.min(this.backoffs + 1, BACKOFF_DOUBLINGS_MAX);
      const period = Math.min(this.retryMs * 2 ** this.backoffs, this.retryMaxMs);
      this.retryAfter = period + Math.floor(this.random() * (this.retryMs + 1));
      this.retryAt = now + this.retryAfter;
      this.outbox.push([BROADCAST, this.outstanding]);
    }
  }

  /** When `poll` has something to do next (ms, same clock as `now`), or Infinity. */
  wakeAt() {
    return this.outstanding === null ? Infinity : Math.min(this.deadline, this.retryAt);
  }

  complete(completion) {
    this.outstanding = null;
    this.retryAt = Infinity;
    this.deadline = Infinity;
    this.completion = this.registering(completion);
  }
}

/**
 * One client_id going through `relayCount` proxies (relays), at most one request outstanding. `relay` is the
 * proxy the request in flight went to last, and where the next request goes first. `submit`, `onReply`,
 * `poll`, `wakeAt`, `takeOutbox`, `takeCompletion` and `abandon` work as in `ClientSession`; outbox
 * destinations are proxy indexes. `view` is only the highest view a Reply named (the proxy follows views).
 */
class RelaySession extends Session {
  constructor({
    clientId,
    relayCount,
    quietMs = RELAY_QUIET_MS,
    pauseMs = RETRY_AFTER_ERROR_MS,
    connectRetryMs = RELAY_CONNECT_RETRY_MS,
    requestNumber = 0n,
    relay = 0,
    view = 0n,
    register = false,
    registered = false,
    newNonce = null,
  }) {
    if (!(relayCount >= 1)) throw new RangeError('at least one proxy');
    if (!(Number.isInteger(relay) && relay >= 0 && relay < relayCount)) throw new RangeError('relay out of range');
    super({ clientId, requestNumber, view, register, registered, newNonce });
    this.relayCount = relayCount;
    this.quietMs = quietMs;
    this.pauseMs = pauseMs;
    this.connectRetryMs = connectRetryMs;
    this.relay = relay;
    this.quietAt = Infinity; // the quiet period since the last send ends
    this.pauseAt = Infinity; // the pause after a proxy's error answer ends
    this.connectAt = Infinity; // every proxy refused this round's send: try again then
    this.refused = new Set(); // proxies that refused this round's send (not connected)
  }

  /** Start a request at time `now`, to end by `now + timeoutMs` (see `ClientSession.submit`). */
  submit(operation, { now, timeoutMs, requestNumber }) {
    const request = this.start(operation, { now, timeoutMs, requestNumber });
    this.newRound(this.relay, now); // the proxy that took the last request
    return request;
  }

  /** Forget the request in flight (the caller gave up); a late answer to it is then ignored. */
  abandon() {
    this.outstanding = null;
    this.waiting = null;
    this.outbox = [];
    this.stopTimers();
  }

  /** The driver could not hand the request to proxy `relay` (no connection to it): it never left. */
  onSendRefused(relay, now) {
    if (this.outstanding === null) return;
    this.refused.add(relay);
    for (let step = 1; step < this.relayCount; step++) {
      const candidate = (relay + step) % this.relayCount;
      if (!this.refused.has(candidate)) {
        this.send(candidate, now);
        return;
      }
    }
    this.connectAt = now + this.connectRetryMs;
  }

  onReply(reply, now) {
    // A Redirect never comes from a proxy (it follows them itself): nothing to learn from one.
    if (!this.answersOutstanding(reply) || reply.kind === 'Redirect') return;
    if (reply.kind === 'Reply' && this.waiting !== null) {
      if (reply.view > this.view) this.view = reply.view;
      if (this.registeredBy(reply) !== null) this.newRound(this.relay, now);
      return;
    }
    if (!this.finishes(reply) && this.pauseAt === Infinity) {
      // The proxy's own session ended without a result, or it refused the request: ask the next proxy, after a
      // pause (a proxy refusing at once must not make us spin). Further errors meanwhile ask nothing more.
      this.pauseAt = now + this.pauseMs;
    }
  }

  /** Run the timers due at `now`: the deadline, then a re-send to the next proxy if one is due. */
  poll(now) {
    if (this.outstanding === null || this.timedOut(now)) return;
    if (now >= this.connectAt || now >= this.pauseAt || now >= this.quietAt) {
      this.newRound((this.relay + 1) % this.relayCount, now);
    }
  }

  /** When `poll` has something to do next (ms, same clock as `now`), or Infinity. */
  wakeAt() {
    if (this.outstanding === null) return Infinity;
    return Math.min(this.deadline, this.connectAt, this.pauseAt, this.quietAt);
  }

  newRound(relay, now) {
    this.refused.clear();
    this.connectAt = Infinity;
    this.send(relay, now);
  }

  send(relay, now) {
    this.relay = relay;
    this.outbox.push([relay, this.outstanding]);
    this.pauseAt = Infinity;
    this.quietAt = now + this.quietMs; // the quiet period counts from the last send
  }

  stopTimers() {
    this.deadline = Infinity;
    this.quietAt = Infinity;
    this.pauseAt = Infinity;
    this.connectAt = Infinity;
    this.refused.clear();
  }

  complete(completion) {
    this.outstanding = null;
    this.stopTimers();
    this.completion = this.registering(completion);
  }
}

/** The session id in a register's result (any msgpack unsigned int), or null if it is not one. */
function registerResult(result) {
  if (!Buffer.isBuffer(result) || result.length === 0) return null;
  const head = result[0];
  if (head < 0x80) return result.length === 1 ? BigInt(head) : null;
  const sizes = { 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8 };
  const size = sizes[head];
  if (size === undefined || result.length !== 1 + size) return null;
  let value = 0n;
  for (let i = 1; i <= size; i++) value = (value << 8n) | BigInt(result[i]);
  return value;
}

module.exports = {
  ClientSession,
  RelaySession,
  Attempts,
  registerResult,
  BROADCAST,
  RETRY_AFTER_ERROR_MS,
  RELAY_QUIET_MS,
  RELAY_CONNECT_RETRY_MS,
};
