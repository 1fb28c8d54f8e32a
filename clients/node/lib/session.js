'use strict';
/**
 * The client side of VR, sans-IO: primary discovery, idempotent retry, and what a failure means.
 *
 * A port of `zvsr/protocol/client_session.py` (`ClientSession`) and `zvsr/runtime/outcome.py` (`Attempts`), the code
 * the Python client and the proxy run (docs/protocol.md §5), with time in milliseconds instead of ticks.
 * Nothing here touches a socket or a timer: the driver (`Client`) calls `submit`, `onReply` and `poll(now)`,
 * sends what `takeOutbox()` returns, and wakes up at `wakeAt()`.
 *
 * One session is one client_id with at most one request outstanding. It keeps the highest view it has seen
 * and sends to that view's primary (`view mod n`); a Redirect of a newer view moves it there (never back); a
 * retry timeout re-sends the *same* (client_id, request_number) to every endpoint, doubling the period with
 * jitter up to a cap; an Error `unavailable`, `busy` or `view_change` makes the next retry come sooner; an
 * Error `bad_request` ends the request. When the deadline passes the request ends with `timeout` — or, when
 * every attempt that left was refused (so it certainly did not execute), with `unavailable` / `busy`.
 */

const BROADCAST = -1;
const RETRY_AFTER_ERROR_MS = 50; // 5 ticks of 10 ms in the Python client
const BACKOFF_DOUBLINGS_MAX = 16;

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

class ClientSession {
  /**
   * clientId: bigint; endpointCount: replicas (index order) or proxies; retryMs / retryMaxMs: the first retry
   * period and its cap; random: () => [0, 1) for jitter (default Math.random).
   */
  constructor({ clientId, endpointCount, retryMs, retryMaxMs, random = Math.random, requestNumber = 0n, view = 0n }) {
    if (endpointCount < 1) throw new RangeError('at least one endpoint');
    if (retryMaxMs < retryMs) throw new RangeError('retryMaxMs must be >= retryMs');
    this.clientId = clientId;
    this.endpointCount = endpointCount;
    this.retryMs = retryMs;
    this.retryMaxMs = retryMaxMs;
    this.random = random;
    this.requestNumber = requestNumber; // the last one used
    this.view = view;
    this.outstanding = null; // { client_id, request_number, operation }
    this.deadline = Infinity;
    this.retryAfter = retryMs;
    this.retryAt = Infinity;
    this.backoffs = 0;
    this.outbox = [];
    this.completion = null;
  }

  get primary() {
    return Number(this.view % BigInt(this.endpointCount));
  }

  /**
   * Start a request at time `now`, to end by `now + timeoutMs`. `requestNumber` re-submits that number
   * (it must not go backwards: the replicas ignore older numbers); by default the next one is used.
   */
  submit(operation, { now, timeoutMs, requestNumber }) {
    if (this.outstanding !== null) throw new Error('a client has at most one outstanding request');
    const number = requestNumber ?? this.requestNumber + 1n;
    if (number < this.requestNumber) throw new RangeError('request numbers never go backwards');
    this.requestNumber = number;
    this.outstanding = { kind: 'Request', client_id: this.clientId, request_number: number, operation };
    this.completion = null;
    this.deadline = now + timeoutMs;
    this.backoffs = 0;
    this.retryAfter = this.retryMs;
    this.retryAt = now + this.retryAfter;
    this.outbox.push([this.primary, this.outstanding]);
    return this.outstanding;
  }

  /** Forget the request in flight (the caller gave up); a late answer to it is then ignored. */
  abandon() {
    this.outstanding = null;
    this.outbox = [];
    this.retryAt = Infinity;
    this.deadline = Infinity;
  }

  onReply(reply, now) {
    const outstanding = this.outstanding;
    if (outstanding === null || reply.client_id !== this.clientId) return;
    if (reply.request_number !== outstanding.request_number) return; // an answer to an earlier request
    if (reply.kind === 'Reply') {
      if (reply.view > this.view) this.view = reply.view;
      this.complete({ requestNumber: reply.request_number, result: reply.result });
    } else if (reply.kind === 'Redirect') {
      // Only replicas in normal status redirect, so the view they name has started. Never go back.
      if (reply.view > this.view) {
        this.view = reply.view;
        this.outbox.push([this.primary, outstanding]);
      }
    } else if (reply.kind === 'Error') {
      // The view of an Error may be one that never starts (a replica voting in it): keep ours.
      if (reply.code === 'bad_request' || reply.code === 'session_expired') {
        this.complete({ requestNumber: reply.request_number, error: reply.code, message: reply.message });
      } else {
        // Not now: try again soon, with the same request_number, so it executes at most once.
        this.retryAfter = Math.min(this.retryAfter, RETRY_AFTER_ERROR_MS);
        this.retryAt = now + this.retryAfter;
      }
    }
  }

  /** Run the timers due at `now`: the deadline, then the retry timeout. */
  poll(now) {
    if (this.outstanding === null) return;
    if (now >= this.deadline) {
      this.complete({
        requestNumber: this.outstanding.request_number,
        error: 'timeout',
        message: 'no answer in time; the request may or may not have been executed',
      });
      return;
    }
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

  complete(completion) {
    this.outstanding = null;
    this.retryAt = Infinity;
    this.deadline = Infinity;
    this.completion = completion;
  }
}

module.exports = { ClientSession, Attempts, BROADCAST, RETRY_AFTER_ERROR_MS };
