'use strict';
// The client against a real zvsr cluster: three `zvsr node` processes and a `zvsr proxy` on 127.0.0.1,
// started here with $ZVSR_PYTHON (default python3) and killed in the after-hook whatever happens
// (support/cluster.js). The tests run in order on one cluster: the first needs the app fresh, the last
// kills the primary.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const zmq = require('zeromq');

const { Client, Float64, codec, msgpack, AppError, LeaseNotFound } = require('..');
const { LiveCluster, withTimeout } = require('../support/cluster');
const { registerResult } = require('../lib/session');

const vectors = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'testdata', 'vectors.json'), 'utf8'));

let cluster = null;
const clients = [];

/** A client closed in the after-hook. */
function client(options) {
  const c = new Client({ timeoutMs: 20_000, ...options });
  clients.push(c);
  return c;
}

/** Runs a test body; on failure, adds the cluster's logs to the error. */
function live(name, body, timeout = 60_000) {
  test(name, { timeout }, async () => {
    assert.ok(cluster, 'the cluster started');
    try {
      await body();
    } catch (error) {
      error.message += `\n${cluster.logs()}`;
      throw error;
    }
  });
}

test.before(async () => {
  cluster = await LiveCluster.start({ replicas: 3 });
}, { timeout: 90_000 });

test.after(async () => {
  await Promise.allSettled(clients.map((c) => c.closed()));
  if (cluster !== null) await cluster.stop();
}, { timeout: 30_000 });

live('the coordination vectors, end to end: each op gives exactly the result bytes', async () => {
  const proxy = client({ proxy: cluster.proxy });
  for (const step of vectors.coordination.sequence) {
    const result = await proxy.executeRaw(Buffer.from(step.op.hex, 'hex'));
    assert.equal(result.toString('hex'), step.result.hex, step.name);
  }
});

for (const mode of ['proxy', 'direct']) {
  live(`${mode}: put, get, cas, incr, lock, unlock, delete, execute`, async () => {
    const c = client(mode === 'proxy' ? { proxy: cluster.proxy } : { replicas: cluster.clientEndpoints });
    const key = (name) => `${mode}/${name}`;
    const value = {
      text: 'naïve ☃ 𝄞', n: -7, big: 2n ** 64n - 1n, ratio: new Float64(1), bytes: Buffer.from([0, 255]),
      list: [null, true, [1, 2]], nested: { deep: { er: 'x' } },
    };
    assert.equal(await c.put(key('v'), value), null);
    const got = await c.get(key('v'));
    assert.deepEqual(got, { ...value, ratio: 1 }, 'float64 1.0 reads back as the number 1');
    assert.equal(await c.get(key('missing')), null);

    assert.deepEqual(await c.cas(key('c'), null, 1), { ok: true, value: 1 });
    assert.deepEqual(await c.cas(key('c'), null, 5), { ok: false, value: 1 });
    assert.deepEqual(await c.cas(key('c'), new Float64(1), 2), { ok: false, value: 1 }, '1.0 is not 1');
    assert.deepEqual(await c.cas(key('c'), 1, 2), { ok: true, value: 2 });

    assert.equal(await c.incr(key('n')), 1);
    assert.equal(await c.incr(key('n'), 41), 42);
    assert.equal(await c.incr(key('n'), -50), -8);
    assert.equal(await c.incr(key('n'), 2n ** 60n), 2n ** 60n - 8n);
    await assert.rejects(c.incr(key('v')), (e) => e instanceof AppError && e.code === 'type_error');

    const first = await c.lock(key('lock'), 'worker-1');
    assert.equal(first.ok, true);
    assert.equal(first.owner, 'worker-1');
    assert.deepEqual(await c.lock(key('lock'), 'worker-1'), first, 're-entrant, same token');
    assert.deepEqual(await c.lock(key('lock'), 'worker-2'), { ...first, ok: false });
    assert.equal(await c.unlock(key('lock'), 'worker-2'), false);
    assert.equal(await c.unlock(key('lock'), 'worker-1'), true);
    const second = await c.lock(key('lock'), 'worker-2');
    assert.equal(second.ok, true);
    assert.ok(second.token > first.token, 'fencing tokens increase');

    assert.equal(await c.delete(key('v')), true);
    assert.equal(await c.delete(key('v')), false);
    assert.deepEqual(await c.execute({ op: 'get', key: key('c') }), 2);
    await assert.rejects(c.execute({ op: 'frobnicate' }), (e) => e instanceof AppError && e.code === 'bad_request');
    assert.deepEqual(await c.execute({ op: 'frobnicate' }, { raiseAppErrors: false }), {
      error: 'bad_request', message: "'op' must be one of cas, delete, get, incr, lease_expire, lease_grant, lease_keepalive, lease_list, lease_revoke, lease_ttl, lock, put, unlock",
    });
    assert.ok(c.requestNumber >= 20n);
  });
}

live('a write through one path is read through the other', async () => {
  const direct = client({ replicas: cluster.clientEndpoints });
  const proxy = client({ proxy: cluster.proxy });
  await direct.put('cross', 'from-direct');
  assert.equal(await proxy.get('cross'), 'from-direct');
  await proxy.put('cross', 'from-proxy');
  assert.equal(await direct.get('cross'), 'from-proxy');
});

for (const mode of ['proxy', 'direct']) {
  live(`${mode}: a request re-sent with the same number executes once`, async () => {
    const c = client(mode === 'proxy' ? { proxy: cluster.proxy } : { replicas: cluster.clientEndpoints });
    const key = `once/${mode}`;
    assert.equal(await c.incr(key), 1);
    const number = c.requestNumber;
    assert.equal(await c.retryLast(), 1, 'the cached result, not a second increment');
    assert.equal(await c.retryLast(), 1);
    assert.equal(c.requestNumber, number, 'no new number was used');
    assert.equal(await c.get(key), 1);
    assert.equal(c.requestNumber, number + 1n);
  });
}

/**
 * Sends the encoded Request `wire` from new DEALERs to every replica (again every 300 ms, as a client
 * would), and resolves to the first Reply. New sockets each time: no answer of an earlier exchange is read.
 */
async function firstReply(wire) {
  const sockets = cluster.clientEndpoints.map((endpoint) => {
    const socket = new zmq.Dealer({ linger: 0 });
    socket.connect(endpoint);
    return socket;
  });
  let resend = null;
  try {
    const reply = new Promise((resolve) => {
      for (const socket of sockets) {
        (async () => {
          for await (const [frame] of socket) {
            const answer = codec.decodeClientReply(frame);
            if (answer.kind === 'Reply') resolve(answer); // Redirects and view_change Errors: wait for the resend
          }
        })().catch(() => {}); // the socket closed
      }
    });
    const sendAll = () => sockets.forEach((socket) => socket.send(wire).catch(() => {}));
    sendAll();
    resend = setInterval(sendAll, 300);
    return await withTimeout(reply, 20_000, 'a Reply');
  } finally {
    clearInterval(resend);
    for (const socket of sockets) socket.close();
  }
}

live('raw Requests: a registered session sends the same (client_id, request_number) again: one increment', async () => {
  // Register first (docs/protocol.md §5, "Registration"): the reply names the session id, the client_id from then on.
  const nonce = 0x8f3a2c61d4b70e95n ^ BigInt(Date.now());
  const register = codec.encode({ kind: 'Request', client_id: nonce, request_number: 0n, operation: Buffer.alloc(0) });
  const clientId = registerResult((await firstReply(register)).result);
  assert.ok(clientId > 0n, 'a session id');
  const operation = msgpack.encode({ op: 'incr', key: 'raw/once', by: 10 });
  const wire = codec.encode({ kind: 'Request', client_id: clientId, request_number: 1n, operation });
  const first = await firstReply(wire);
  assert.equal(msgpack.decode(first.result), 10);
  const again = await firstReply(wire);
  assert.equal(again.request_number, 1n);
  assert.deepEqual(again.result, first.result, 'the cached result');
  // The cluster does not compare operations: request 1 is request 1.
  const get = msgpack.encode({ op: 'get', key: 'x' });
  const other = codec.encode({ kind: 'Request', client_id: clientId, request_number: 1n, operation: get });
  assert.deepEqual((await firstReply(other)).result, first.result);
  assert.equal(await client({ proxy: cluster.proxy }).get('raw/once'), 10);
});

live('leases: grant, keepalive, a key and a lock on a lease, revoke; a key on a lease left to expire', async () => {
  const c = client({ proxy: cluster.proxy });
  const { lease, ttlMs } = await c.leaseGrant(5000);
  assert.equal(ttlMs, 5000);
  const remaining = await c.leaseKeepalive(lease);
  assert.ok(remaining > 4000 && remaining <= 5000, `remaining ${remaining}`);
  await c.put('lease/eph', 'x', { lease });
  const held = await c.lock('lease/lock', 'me', { lease });
  assert.deepEqual({ ok: held.ok, owner: held.owner, lease: held.lease }, { ok: true, owner: 'me', lease });
  const status = await c.leaseTtl(lease);
  assert.deepEqual([status.lease, status.keys, status.locks], [lease, ['lease/eph'], ['lease/lock']]);
  assert.ok((await c.leaseList()).includes(lease));
  assert.deepEqual(await c.leaseRevoke(lease), { ok: true, deleted: ['lease/eph'] });
  assert.equal(await c.get('lease/eph'), null);
  const next = await c.lock('lease/lock', 'other');
  assert.ok(next.ok && next.token > held.token, 'the revoked lease released the lock; a newer token');
  await assert.rejects(c.leaseKeepalive(lease), (e) => e instanceof LeaseNotFound && e.code === 'lease_not_found');
  await assert.rejects(c.put('lease/late', 1, { lease }), LeaseNotFound);

  // Nobody keeps this one alive: its key goes within the ttl (and a few polls).
  const sent = performance.now(); // the lease starts after this, when the primary stamps the grant
  const short = await c.leaseGrant(1000);
  await c.put('lease/short', 1, { lease: short.lease });
  while ((await c.get('lease/short')) !== null) {
    assert.ok(performance.now() - sent < 10_000, 'the key outlived its lease by far');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(performance.now() - sent >= 1000 * 0.95, 'not before the ttl (less the clock drift bound)');
  await assert.rejects(c.leaseKeepalive(short.lease), LeaseNotFound);
});

live('the primary is killed: the direct client finds the new one, nothing runs twice', async () => {
  const direct = client({ replicas: cluster.clientEndpoints, timeoutMs: 30_000 });
  const proxy = client({ proxy: cluster.proxy, timeoutMs: 30_000 });
  assert.equal(await direct.incr('failover'), 1);
  const primary = Number(direct.view % 3n);
  const viewBefore = direct.view;
  await cluster.kill(`replica-${primary}`);
  // The first attempt goes to the dead primary; the retry reaches the others, which elect a new one.
  assert.equal(await direct.incr('failover'), 2);
  assert.ok(direct.view > viewBefore, `view ${direct.view} after ${viewBefore}`);
  assert.notEqual(Number(direct.view % 3n), primary);
  assert.equal(await proxy.incr('failover'), 3);
  assert.equal(await direct.get('failover'), 3);
}, 90_000);
