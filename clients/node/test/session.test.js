'use strict';
// lib/session.js, sans-IO with a fake clock: the retry schedule, primary discovery and what an ending means,
// as zvsr/protocol/client_session.py and zvsr/runtime/outcome.py define them.

const test = require('node:test');
const assert = require('node:assert/strict');

const { ClientSession, Attempts } = require('..');
const { BROADCAST } = require('../lib/session');

const OP = Buffer.from([0xc0]);
const CLIENT = 0xfeedn;

function session(options = {}) {
  const settings = { clientId: CLIENT, endpointCount: 3, retryMs: 200, retryMaxMs: 1600, random: () => 0 };
  return new ClientSession({ ...settings, ...options });
}

const reply = (fields) => ({ client_id: CLIENT, request_number: 1n, view: 0n, ...fields });

test('a request goes to the primary of the known view, retries go to everyone with backoff', () => {
  const s = session();
  const request = s.submit(OP, { now: 0, timeoutMs: 100_000 });
  assert.equal(request.request_number, 1n);
  assert.deepEqual(s.takeOutbox(), [[0, request]]);
  const fired = [];
  for (let now = 0; now <= 7000; now += 10) {
    s.poll(now);
    for (const [destination, r] of s.takeOutbox()) {
      assert.equal(destination, BROADCAST);
      assert.equal(r, request, 'the same request, same numbers');
      fired.push(now);
    }
  }
  // 200, then 400, 800, 1600, 1600… after each retry (jitter 0 here).
  assert.deepEqual(fired.slice(0, 6), [200, 600, 1400, 3000, 4600, 6200]);
});

test('jitter adds up to one base period', () => {
  const s = session({ random: () => 0.999999 });
  s.submit(OP, { now: 0, timeoutMs: 100_000 });
  s.takeOutbox();
  s.poll(200);
  assert.equal(s.wakeAt(), 200 + 400 + 200);
});

test('a Redirect of a newer view moves the session; older or equal ones do not', () => {
  const s = session();
  const request = s.submit(OP, { now: 0, timeoutMs: 10_000 });
  s.takeOutbox();
  s.onReply(reply({ kind: 'Redirect', view: 0n, primary: 0 }), 1);
  assert.deepEqual(s.takeOutbox(), []);
  s.onReply(reply({ kind: 'Redirect', view: 4n, primary: 1 }), 2);
  assert.equal(s.view, 4n);
  assert.deepEqual(s.takeOutbox(), [[1, request]]);
  s.onReply(reply({ kind: 'Redirect', view: 3n, primary: 0 }), 3);
  assert.equal(s.view, 4n, 'never back');
  s.onReply(reply({ kind: 'Reply', view: 7n, result: OP }), 4);
  assert.equal(s.view, 7n);
  assert.deepEqual(s.takeCompletion(), { requestNumber: 1n, result: OP });
  assert.equal(s.submit(OP, { now: 5, timeoutMs: 10 }).request_number, 2n);
  assert.deepEqual(s.takeOutbox().map(([d]) => d), [1], 'view 7 of 3 replicas: replica 1');
});

test('errors: retry soon for not-now codes (keeping our view), stop for bad_request', () => {
  const s = session({ retryMs: 1000, retryMaxMs: 4000 });
  s.submit(OP, { now: 0, timeoutMs: 100_000 });
  s.takeOutbox();
  s.onReply(reply({ kind: 'Error', view: 9n, code: 'view_change', message: '' }), 100);
  assert.equal(s.view, 0n);
  assert.equal(s.wakeAt(), 150);
  s.poll(150);
  assert.equal(s.takeOutbox()[0][0], BROADCAST);
  s.onReply(reply({ kind: 'Error', view: 0n, code: 'bad_request', message: 'no' }), 160);
  assert.deepEqual(s.takeCompletion(), { requestNumber: 1n, error: 'bad_request', message: 'no' });
  assert.equal(s.outstanding, null);
});

test('session_expired ends the request: retrying cannot help', () => {
  const s = session({ retryMs: 1000, retryMaxMs: 4000 });
  s.submit(OP, { now: 0, timeoutMs: 100_000 });
  s.takeOutbox();
  s.onReply(reply({ kind: 'Error', view: 0n, code: 'session_expired', message: 'forgotten' }), 10);
  assert.deepEqual(s.takeCompletion(), { requestNumber: 1n, error: 'session_expired', message: 'forgotten' });
  s.poll(50_000);
  assert.deepEqual(s.takeOutbox(), []);
});

test('answers of other clients and other numbers are ignored', () => {
  const s = session();
  s.submit(OP, { now: 0, timeoutMs: 1000 });
  s.onReply(reply({ kind: 'Reply', client_id: CLIENT + 1n, result: OP }), 1);
  s.onReply(reply({ kind: 'Reply', request_number: 0n, result: OP }), 1);
  assert.equal(s.takeCompletion(), null);
});

test('the deadline ends the request with timeout', () => {
  const s = session();
  s.submit(OP, { now: 0, timeoutMs: 1000 });
  s.poll(999);
  assert.equal(s.takeCompletion(), null);
  assert.equal(s.wakeAt(), 1000);
  s.poll(1000);
  assert.equal(s.takeCompletion().error, 'timeout');
  assert.equal(s.wakeAt(), Infinity);
});

test('re-submitting a number keeps it; numbers never go backwards', () => {
  const s = session();
  s.submit(OP, { now: 0, timeoutMs: 10 });
  s.abandon();
  assert.equal(s.submit(OP, { now: 0, timeoutMs: 10, requestNumber: 1n }).request_number, 1n);
  s.abandon();
  assert.throws(() => s.submit(OP, { now: 0, timeoutMs: 10, requestNumber: 0n }), RangeError);
  assert.equal(s.submit(OP, { now: 0, timeoutMs: 10 }).request_number, 2n);
  assert.throws(() => s.submit(OP, { now: 0, timeoutMs: 10 }), /at most one outstanding/);
});

test('Attempts: unknown unless every attempt that left was refused', () => {
  const a = new Attempts();
  assert.equal(a.finalError({ timeoutMs: 5, target: 'replica' })[0], 'unavailable', 'nothing left');
  a.sent = 2;
  a.onAnswer({ kind: 'Redirect' });
  assert.equal(a.finalError({ timeoutMs: 5, target: 'replica' })[0], 'timeout', 'one attempt unanswered');
  a.onAnswer({ kind: 'Error', code: 'busy', message: 'full' });
  assert.deepEqual(a.finalError({ timeoutMs: 5, target: 'replica' }), [
    'busy',
    'every attempt was refused (busy: full); the request was not executed',
  ]);
  a.onAnswer({ kind: 'Error', code: 'view_change', message: 'vc' });
  assert.equal(a.finalError({ timeoutMs: 5, target: 'replica' })[0], 'unavailable');
  a.start({ fresh: false });
  assert.equal(a.finalError({ timeoutMs: 5, target: 'proxy' })[0], 'timeout', 'a re-sent number may have executed');
});
