'use strict';
// lib/session.js, sans-IO with a fake clock: the retry schedule, primary discovery and what an ending means,
// as zvsr/protocol/client_session.py and zvsr/runtime/outcome.py define them. The RelaySession cases mirror
// tests/test_protocol_client.py's (one tick there is 1 ms here).

const test = require('node:test');
const assert = require('node:assert/strict');

const { ClientSession, RelaySession, Attempts } = require('..');
const { BROADCAST, RETRY_AFTER_ERROR_MS } = require('../lib/session');

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

test('reconfiguration: members [5, 7, 2] from view 3 — the primary of view v is members[(v - 3) mod 3]', () => {
  const s = session();
  const request = s.submit(OP, { now: 0, timeoutMs: 100_000 });
  assert.deepEqual(s.takeOutbox(), [[0, request]]);
  s.learnConfiguration([5, 7, 2], 3n);
  assert.equal(s.view, 3n, 'the configuration has started by its first view');
  assert.deepEqual(s.takeOutbox(), [[5, request]], 'the request in flight goes to the new primary at once');
  assert.deepEqual([3n, 4n, 5n, 6n].map((v) => s.primaryOf(v)), [5, 7, 2, 5]);
  s.onReply(reply({ kind: 'Redirect', view: 4n, primary: 7n }), 10);
  assert.deepEqual(s.takeOutbox(), [[7, request]]);
  s.learnConfiguration([0, 1, 2], 0n); // an older configuration (an earlier first view): never back
  assert.deepEqual(s.members, [5, 7, 2]);
  assert.equal(s.view, 4n);
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

// --- RelaySession: through proxies ------------------------------------------------------------------------

function relaySession(options = {}) {
  return new RelaySession({ clientId: CLIENT, relayCount: 3, quietMs: 250, ...options });
}

const relayError = (code, number = 1n) =>
  reply({ kind: 'Error', request_number: number, code, message: `proxy says ${code}` });

/** Polls every ms in (from, to], collecting [time, destination, request] of what is sent. */
function run(s, from, to) {
  const sent = [];
  for (let now = from + 1; now <= to; now++) {
    s.poll(now);
    for (const [destination, request] of s.takeOutbox()) sent.push([now, destination, request]);
  }
  return sent;
}

test('relay: each request goes once to one proxy while it answers, however long it takes', () => {
  // Proxy 1 answers every request, one after 200 ms (a failover behind it): nothing is ever sent twice, nor to
  // another proxy — the proxy retries toward the replicas, not the client.
  const s = relaySession({ relay: 1 });
  const sent = [];
  let now = 0;
  for (const number of [1n, 2n, 3n]) {
    const request = s.submit(OP, { now, timeoutMs: 500 });
    assert.equal(request.request_number, number);
    sent.push(...s.takeOutbox().map(([d, r]) => [d, r.request_number]));
    const wait = number === 2n ? 200 : 1;
    sent.push(...run(s, now, now + wait).map(([, d, r]) => [d, r.request_number]));
    now += wait;
    s.onReply(reply({ kind: 'Reply', request_number: number, result: OP }), now);
    assert.deepEqual(s.takeCompletion(), { requestNumber: number, result: OP });
  }
  assert.deepEqual(sent, [[1, 1n], [1, 2n], [1, 3n]]);
});

test('relay: only its own deadline ends a request in timeout', () => {
  // A silent proxy: no re-send before the quiet period, and the request ends exactly at the client's deadline,
  // with timeout (outcome unknown) — not earlier, and not at any timer of the proxy's.
  const s = relaySession({ quietMs: 1000 });
  const request = s.submit(OP, { now: 0, timeoutMs: 100 });
  assert.deepEqual(s.takeOutbox(), [[0, request]]);
  assert.deepEqual(run(s, 0, 99), []);
  assert.equal(s.takeCompletion(), null);
  assert.equal(s.wakeAt(), 100);
  s.poll(100);
  const completion = s.takeCompletion();
  assert.equal(completion.error, 'timeout');
  assert.equal(s.outstanding, null);
  assert.equal(s.wakeAt(), Infinity);
});

test('relay: one re-send to the next proxy after a proxy gives up, while the deadline is ahead', () => {
  // Proxy 0's own session ended (timeout, unavailable or busy): after a short pause the same request goes once
  // to proxy 1; the proxy's answer does not end the call.
  for (const code of ['timeout', 'unavailable', 'busy']) {
    const s = relaySession();
    const request = s.submit(OP, { now: 0, timeoutMs: 500 });
    s.takeOutbox();
    s.onReply(relayError(code), 0);
    s.onReply(relayError(code), 1); // a second error during the pause asks for nothing more
    assert.equal(s.takeCompletion(), null);
    assert.equal(s.outstanding, request);
    const pause = RETRY_AFTER_ERROR_MS;
    assert.deepEqual(run(s, 0, pause - 1), [], code);
    assert.deepEqual(run(s, pause - 1, pause), [[pause, 1, request]], code);
    assert.deepEqual(run(s, pause, pause + 100), [], 'one re-send per answer, not a timer');
  }
});

test('relay: a final error ends the request at once', () => {
  for (const code of ['bad_request', 'session_expired']) {
    const s = relaySession();
    s.submit(OP, { now: 0, timeoutMs: 500 });
    s.onReply(relayError(code), 1);
    assert.deepEqual(s.takeCompletion(), { requestNumber: 1n, error: code, message: `proxy says ${code}` });
    assert.equal(s.wakeAt(), Infinity);
  }
});

test('relay: a refused send moves to the next proxy at once; all refused, try again soon', () => {
  // Proxy 0 has no connection (the driver's send was refused): the request goes to proxy 1 at once. When all
  // three refuse, nothing leaves until connectRetryMs later, which tries again; the next request starts at the
  // proxy that took the last one.
  const s = relaySession({ connectRetryMs: 10 });
  const request = s.submit(Buffer.from('a'), { now: 0, timeoutMs: 500 });
  assert.deepEqual(s.takeOutbox(), [[0, request]]);
  s.onSendRefused(0, 0);
  assert.deepEqual(s.takeOutbox(), [[1, request]]);
  s.onSendRefused(1, 0);
  assert.deepEqual(s.takeOutbox(), [[2, request]]);
  s.onSendRefused(2, 0);
  assert.deepEqual(s.takeOutbox(), []);
  assert.equal(s.wakeAt(), 10);
  assert.deepEqual(run(s, 0, 10), [[10, 0, request]], 'a local attempt: the connection may be up by now');
  s.onSendRefused(0, 10);
  assert.deepEqual(s.takeOutbox(), [[1, request]]); // proxy 1 took it
  s.onReply(reply({ kind: 'Reply', result: OP }), 11);
  assert.notEqual(s.takeCompletion(), null);
  const next = s.submit(Buffer.from('b'), { now: 12, timeoutMs: 500 });
  assert.equal(next.request_number, 2n);
  assert.equal(s.takeOutbox()[0][0], 1);
});

test('relay: a re-send after each quiet period, the loss a restarted proxy cannot report', () => {
  // Proxy 0 restarts with the request in flight and forgets it; nothing says so. After quietMs without any
  // answer the request goes to the next proxy, once per quiet period, until the deadline.
  const s = relaySession({ quietMs: 50, relayCount: 2 });
  const request = s.submit(OP, { now: 0, timeoutMs: 160 });
  s.takeOutbox();
  assert.deepEqual(run(s, 0, 159).map(([t, d]) => [t, d]), [[50, 1], [100, 0], [150, 1]]);
  s.poll(160);
  assert.equal(s.takeCompletion().error, 'timeout');
  // With an answer before the quiet period ends, nothing is sent again.
  const t = relaySession({ quietMs: 50 });
  t.submit(OP, { now: 0, timeoutMs: 500 });
  t.takeOutbox();
  assert.deepEqual(run(t, 0, 49), []);
  t.onReply(reply({ kind: 'Reply', request_number: request.request_number, result: OP }), 49);
  t.poll(50);
  assert.deepEqual(t.takeOutbox(), []);
  assert.notEqual(t.takeCompletion(), null);
});

test('relay: abandon forgets the request, keeps the numbering and the proxy; answers of others are ignored', () => {
  const s = relaySession({ relay: 2 });
  s.submit(OP, { now: 0, timeoutMs: 500 });
  s.onReply(reply({ kind: 'Reply', client_id: CLIENT + 1n, result: OP }), 1);
  s.onReply(reply({ kind: 'Reply', request_number: 0n, result: OP }), 1);
  s.onReply(reply({ kind: 'Redirect', view: 4n, primary: 1 }), 1);
  assert.equal(s.takeCompletion(), null);
  assert.deepEqual(s.takeOutbox().map(([d]) => d), [2], 'a Redirect sends nothing');
  s.abandon();
  assert.equal(s.wakeAt(), Infinity);
  s.onSendRefused(2, 2); // a refusal arriving after the call ended changes nothing
  assert.deepEqual(s.takeOutbox(), []);
  assert.equal(s.submit(OP, { now: 3, timeoutMs: 500, requestNumber: 1n }).request_number, 1n);
  assert.equal(s.takeOutbox()[0][0], 2);
  s.abandon();
  assert.throws(() => s.submit(OP, { now: 4, timeoutMs: 500, requestNumber: 0n }), RangeError);
  assert.equal(s.submit(OP, { now: 4, timeoutMs: 500 }).request_number, 2n);
});

test('a registering session sends its register first, then the operation as request 1 of the session it got', () => {
  const nonces = [0x5555n];
  for (const make of [
    (o) => session(o),
    (o) => new RelaySession({ clientId: CLIENT, relayCount: 2, ...o }),
  ]) {
    const s = make({ register: true, newNonce: () => nonces[0] });
    const register = s.submit(OP, { now: 0, timeoutMs: 100_000 });
    assert.deepEqual([register.client_id, register.request_number, register.operation.length], [CLIENT, 0n, 0]);
    assert.equal(s.takeOutbox().length, 1);
    const session12 = Buffer.from([0xcf, 0, 0, 0, 0, 0, 0, 0, 12]); // the register executed as op 12
    s.onReply({ kind: 'Reply', client_id: CLIENT, request_number: 0n, view: 0n, result: session12 }, 5);
    const [[, request]] = s.takeOutbox();
    assert.deepEqual([request.client_id, request.request_number, request.operation], [12n, 1n, OP]);
    assert.equal(s.takeCompletion(), null, 'the caller sees one completion, for its operation');
    s.onReply({ kind: 'Error', client_id: 12n, request_number: 1n, view: 0n, code: 'session_expired', message: 'x' }, 6);
    const completion = s.takeCompletion();
    assert.equal(completion.error, 'session_expired');
    assert.match(completion.message, /outcome of this request is unknown/);
    for (let now = 7; now < 10_000; now += 50) s.poll(now);
    assert.deepEqual(s.takeOutbox(), [], 'the expired request is never re-sent');
    const again = s.submit(OP, { now: 10_000, timeoutMs: 100_000 });
    assert.deepEqual([again.client_id, again.request_number], [0x5555n, 0n], 'a new session, under a new nonce');
  }
});
