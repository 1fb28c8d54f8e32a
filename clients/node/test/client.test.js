'use strict';
// The Client against in-process fake replicas and proxies (ZeroMQ ROUTERs on 127.0.0.1 speaking the wire
// protocol through the codec): primary discovery, Redirects, retries with the same numbers, error mapping,
// one call at a time, CurveZMQ, closing. The real cluster is test/live.test.js.

const nodeTest = require('node:test');
const { execFile } = require('node:child_process');
const path = require('node:path');
const assert = require('node:assert/strict');
const zmq = require('zeromq');

const {
  Client, codec, msgpack, socketOptions, Timeout, Unavailable, Busy, BadRequest, AppError, LeaseNotFound,
} = require('..');

const NIL = Buffer.from([0xc0]);
const SESSION_IDS_BASE = 1n << 32n;

/** Every test here talks over sockets: none may hang the run. */
const test = (name, body) => nodeTest(name, { timeout: 30_000 }, body);

/** ROUTERs that record every Request and answer what `handler(index, request, count)` returns (or nothing). */
class FakeServers {
  static async start(count, handler, options = {}) {
    const servers = new FakeServers(handler);
    for (let index = 0; index < count; index++) {
      const router = new zmq.Router({ linger: 0, ...options });
      await router.bind('tcp://127.0.0.1:0');
      servers.routers.push(router);
      servers.loops.push(servers.serve(index, router));
    }
    return servers;
  }

  constructor(handler) {
    this.handler = handler;
    this.routers = [];
    this.loops = [];
    this.requests = []; // [index, request]
    this.statusQueries = []; // index of the server asked, per status query
    this.statusAnswer = null; // (index) => the status answer to send, or null
    this.registered = 0; // register requests answered
    this.waiters = [];
  }

  get endpoints() {
    return this.routers.map((router) => router.lastEndpoint);
  }

  async serve(index, router) {
    for await (const frames of router) {
      const [identity, payload] = [frames[0], frames[frames.length - 1]];
      let request;
      try {
        request = codec.decodeRequest(payload);
      } catch (error) {
        // The status query a direct client sends to learn the configuration: answered by `statusAnswer`.
        assert.deepEqual(msgpack.decode(payload), { type: 30 }, `not a Request: ${error.message}`);
        this.statusQueries.push(index);
        const answer = this.statusAnswer?.(index);
        if (answer != null) await router.send([identity, msgpack.encode(answer)]);
        continue;
      }
      if (request.request_number === 0n) {
        // A register: the fake opens a session itself (ids above any a test uses), so handlers and `requests`
        // see only operations (docs/protocol.md §5 "Registration").
        this.registered += 1;
        const session = msgpack.encode(SESSION_IDS_BASE + BigInt(this.registered));
        await router.send([identity, codec.encode(reply(request, { result: session }))]);
        continue;
      }
      this.requests.push([index, request]);
      for (const waiter of this.waiters.splice(0)) waiter();
      const answers = this.handler(index, request, this.requests.length) ?? [];
      for (const answer of Array.isArray(answers) ? answers : [answers]) {
        const data = Buffer.isBuffer(answer) ? answer : codec.encode(answer);
        await router.send([identity, data]);
      }
    }
  }

  /** Resolves once `count` requests have arrived in all. */
  received(count) {
    if (this.requests.length >= count) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => (this.requests.length >= count ? resolve() : this.waiters.push(check));
      this.waiters.push(check);
    });
  }

  close() {
    for (const router of this.routers) router.close();
    return Promise.allSettled(this.loops);
  }
}

const reply = (request, { view = 0n, result = NIL } = {}) => ({
  kind: 'Reply', view, client_id: request.client_id, request_number: request.request_number, result,
});
const redirect = (request, view, primary) => ({
  kind: 'Redirect', view, primary, client_id: request.client_id, request_number: request.request_number,
});
const error = (request, code, view = 0n) => ({
  kind: 'Error', view, client_id: request.client_id, request_number: request.request_number, code, message: code,
});

/** Runs `body(servers)` and closes the servers whatever happens. */
async function withServers(count, handler, body, options) {
  const servers = await FakeServers.start(count, handler, options);
  try {
    await body(servers);
  } finally {
    await servers.close();
  }
}

async function withClient(options, body) {
  const client = new Client(options);
  try {
    await body(client);
  } finally {
    await client.closed();
  }
}

test('direct: follows a Redirect to the primary with the same request', async () => {
  await withServers(
    3,
    (index, request) => (index === 2 ? reply(request, { view: 5n }) : redirect(request, 5n, 2)),
    async (servers) => {
      await withClient({ replicas: servers.endpoints, timeoutMs: 10_000 }, async (client) => {
        assert.equal(await client.put('k', 'v'), null);
        assert.equal(client.view, 5n);
        assert.deepEqual(servers.statusQueries, [], 'a Redirect that fits the configuration asks nothing');
        const [[first, r1], [second, r2]] = servers.requests;
        assert.deepEqual([first, second], [0, 2], 'replica 0 (view 0) first, then the primary of view 5');
        assert.equal(r1.client_id, client.clientId);
        assert.deepEqual([r1.request_number, r2.request_number], [1n, 1n]);
        assert.deepEqual(r1.operation, r2.operation);
        // The next request goes straight to the primary of the view it knows.
        await client.get('k');
        assert.deepEqual(servers.requests.slice(2).map(([i, r]) => [i, r.request_number]), [[2, 2n]]);
      });
    },
  );
});

/** A status answer naming configuration `epoch` from view `startView`: members [[id, endpoint], ...] in order. */
const statusAnswer = (epoch, startView, members) => ({
  type: 31,
  epoch,
  view: startView,
  membership: {
    epoch,
    start_op: 10,
    start_view: startView,
    members: members.map(([id, client]) => ({ id, peer: 'tcp://127.0.0.1:1', heartbeat: 'tcp://127.0.0.1:2', client })),
  },
});

test('direct: a Redirect to an unknown replica id asks for the status; the client moves to the new members', async () => {
  // Servers 0-2 are replicas 0, 1, 2 of epoch 0; 0 and 1 were replaced by 5 (server 3) and 7 (server 4) in
  // epoch 1 from view 3. Replicas still in it redirect to 7, which leads view 4 = members[(4 - 3) mod 3].
  await withServers(
    5,
    (index, request) => (index === 4 ? reply(request, { view: 4n }) : redirect(request, 4n, 7)),
    async (servers) => {
      const [, , old2, new5, new7] = servers.endpoints;
      servers.statusAnswer = () => statusAnswer(1, 3, [[5, new5], [7, new7], [2, old2]]);
      await withClient({ replicas: servers.endpoints.slice(0, 3), timeoutMs: 10_000 }, async (client) => {
        assert.equal(await client.put('k', 'v'), null);
        assert.equal(client.epoch, 1);
        assert.equal(client.view, 4n);
        assert.deepEqual([...servers.statusQueries].sort(), [0, 1, 2], 'one round: every replica asked once');
        assert.deepEqual([...client._sockets.keys()].sort(), [2, 5, 7], 'departed 0 and 1 dropped, 5 and 7 added');
        const toNew = servers.requests.filter(([index]) => index === 4).map(([, r]) => r.request_number);
        assert.deepEqual(toNew, [1n], 'the same request, same numbers, at the new primary');
        const before = servers.requests.length;
        await client.get('k');
        assert.deepEqual(servers.requests.slice(before).map(([i, r]) => [i, r.request_number]), [[4, 2n]]);
        assert.equal(client.stats.configurations, 1);
      });
    },
  );
});

test('direct: after a retry round with no answer the client asks for the status and follows it', async () => {
  // The replicas given are all gone (they answer nothing but the status query); the cluster now is replica 9.
  await withServers(
    4,
    (index, request) => (index === 3 ? reply(request, { view: 12n }) : null),
    async (servers) => {
      servers.statusAnswer = (index) => (index === 0 ? statusAnswer(2, 12, [[9, servers.endpoints[3]]]) : null);
      const options = { replicas: servers.endpoints.slice(0, 3), timeoutMs: 10_000, retryMs: 50 };
      await withClient(options, async (client) => {
        assert.equal(await client.put('k', 1), null);
        assert.equal(client.epoch, 2);
        assert.ok(servers.statusQueries.length >= 1);
        assert.deepEqual([...client._sockets.keys()], [9]);
      });
    },
  );
});

test('direct: unreadable status answers change nothing, and asks stay bounded (one round per 500 ms)', async () => {
  const bad = [
    { type: 31 },
    { type: 31, membership: { epoch: 1, start_view: 0, members: [] } },
    { type: 31, membership: { epoch: 1, start_view: 0, members: [{ id: 4 }] } },
    { type: 31, membership: { epoch: 1, start_view: 0, members: [{ id: -1, client: 'tcp://x:1' }] } },
    { type: 31, membership: { epoch: 1, start_view: 0, members: [{ id: 4, client: 'x' }] } },
  ];
  let next = 0;
  await withServers(
    3,
    (index, request) => redirect(request, 6n, 7), // an unknown primary, again and again
    async (servers) => {
      servers.statusAnswer = () => bad[next++ % bad.length];
      await withClient({ replicas: servers.endpoints, timeoutMs: 1500, retryMs: 100 }, async (client) => {
        await assert.rejects(client.get('k'), Unavailable); // every attempt was redirected: not executed
        assert.ok(servers.statusQueries.length >= 3, 'asked, ');
        assert.ok(servers.statusQueries.length <= 3 * 4, 'but at most one round per 500 ms');
        assert.equal(client.epoch, 0);
        assert.deepEqual([...client._sockets.keys()], [0, 1, 2]);
      });
    },
  );
});

test('direct: an older or equal view in a Redirect is ignored', async () => {
  await withServers(
    2,
    (index, request, count) => (count === 1 ? redirect(request, 0n, 1) : reply(request)),
    async (servers) => {
      await withClient({ replicas: servers.endpoints, retryMs: 100, timeoutMs: 10_000 }, async (client) => {
        await client.get('k'); // answered only after the retry to every replica
        assert.equal(client.view, 0n);
        await servers.received(3); // the retry went to every replica
        assert.deepEqual(servers.requests.map(([, r]) => r.request_number), [1n, 1n, 1n]);
      });
    },
  );
});

test('retries unavailable, busy and view_change with the same numbers, soon', async () => {
  const codes = ['unavailable', 'busy', 'view_change'];
  await withServers(
    1,
    (index, request, count) =>
      count <= codes.length ? error(request, codes[count - 1], 9n) : reply(request, { result: Buffer.from([7]) }),
    async (servers) => {
      // A retry period far above the test's patience: only the error rule (retry after 50 ms) can answer.
      await withClient({ replicas: servers.endpoints, retryMs: 60_000, timeoutMs: 30_000 }, async (client) => {
        assert.equal(await client.incr('n'), 7);
        assert.deepEqual(servers.requests.map(([, r]) => r.request_number), [1n, 1n, 1n, 1n]);
        assert.equal(client.view, 0n, "an Error's view is not adopted");
      });
    },
  );
});

test('bad_request ends the call at once with BadRequest', async () => {
  await withServers(1, (index, request) => error(request, 'bad_request'), async (servers) => {
    await withClient({ replicas: servers.endpoints, timeoutMs: 30_000 }, async (client) => {
      await assert.rejects(client.get('k'), (e) => e instanceof BadRequest && e.code === 'bad_request');
      assert.equal(servers.requests.length, 1, 'never retried');
    });
  });
});

test('no answer: Timeout (outcome unknown); retryLast re-sends the same numbers', async () => {
  let answering = false;
  await withServers(
    2,
    (index, request) => (answering && index === 0 ? reply(request, { result: Buffer.from([42]) }) : null),
    async (servers) => {
      await withClient({ replicas: servers.endpoints, retryMs: 50, timeoutMs: 400 }, async (client) => {
        await assert.rejects(client.incr('n', 5), (e) => e instanceof Timeout && e.code === 'timeout');
        await servers.received(3); // the first attempt, then retries to every replica
        assert.ok(servers.requests.every(([, r]) => r.request_number === 1n));
        answering = true;
        assert.equal(await client.retryLast(), 42);
        const last = servers.requests[servers.requests.length - 1][1];
        assert.equal(last.request_number, 1n);
        assert.deepEqual(last.operation, servers.requests[0][1].operation);
        await client.get('k');
        assert.equal(servers.requests[servers.requests.length - 1][1].request_number, 2n, 'then a new number');
      });
    },
  );
});

test('every attempt refused: Unavailable or Busy, known not executed', async () => {
  for (const [code, Kind] of [['unavailable', Unavailable], ['view_change', Unavailable], ['busy', Busy]]) {
    await withServers(2, (index, request) => error(request, code), async (servers) => {
      await withClient({ replicas: servers.endpoints, retryMs: 50, timeoutMs: 400 }, async (client) => {
        await assert.rejects(client.get('k'), (e) => e instanceof Kind && /not executed/.test(e.message));
      });
    });
  }
  // A mix of refusals and silence is a Timeout: a silent attempt may have executed.
  await withServers(2, (index, request) => (index === 0 ? error(request, 'busy') : null), async (servers) => {
    await withClient({ replicas: servers.endpoints, retryMs: 50, timeoutMs: 400 }, async (client) => {
      await assert.rejects(client.get('k'), Timeout);
    });
  });
});

test('answers for other clients, older numbers, and garbage are ignored', async () => {
  await withServers(
    1,
    (index, request) => [
      Buffer.from('not msgpack'),
      msgpack.encode({ type: 23, code: 'bad_request', message: 'bare error: names no request' }),
      { ...reply(request, { result: Buffer.from([1]) }), client_id: request.client_id ^ 1n },
      { ...reply(request, { result: Buffer.from([2]) }), request_number: request.request_number - 1n },
      error({ ...request, request_number: request.request_number + 1n }, 'bad_request'),
      reply(request, { result: Buffer.from([3]) }),
    ],
    async (servers) => {
      await withClient({ replicas: servers.endpoints, timeoutMs: 10_000 }, async (client) => {
        assert.equal(await client.execute({ op: 'get', key: 'k' }), 3);
        assert.equal(client.stats.undecodable, 2);
        assert.equal(client.stats.ignored, 3);
      });
    },
  );
});

test('via a proxy: one endpoint, same numbers on a re-send after a quiet period, results decoded', async () => {
  const map = msgpack.encode({ ok: true, owner: 'w', token: 3 });
  await withServers(
    1,
    (index, request, count) => (count === 1 ? null : reply(request, { view: 2n, result: map })),
    async (servers) => {
      // The first copy is lost (the proxy restarted with it in flight): after quietMs the same request again.
      await withClient({ proxy: servers.endpoints[0], quietMs: 100, timeoutMs: 10_000 }, async (client) => {
        assert.deepEqual(await client.lock('l', 'w'), { ok: true, owner: 'w', token: 3 });
        assert.deepEqual(servers.requests.map(([, r]) => r.request_number), [1n, 1n]);
        assert.equal(client.view, 2n);
      });
    },
  );
  // The shorthand constructor, and several proxies: the next is tried when the first stays silent.
  await withServers(2, (index, request) => (index === 1 ? reply(request) : null), async (servers) => {
    await withClient(servers.endpoints, async (client) => {
      assert.equal(client.viaProxies, true);
    });
    const client = new Client(servers.endpoints, { quietMs: 100, timeoutMs: 10_000 });
    try {
      assert.equal(await client.put('k', 1), null);
      const sent = servers.requests.map(([index, r]) => [index, r.request_number]);
      // The list is shuffled: proxy 1 first (one copy), or silent proxy 0 and, a quiet period later, proxy 1.
      assert.ok(sent.length === 1 || (sent.length === 2 && sent[0][0] === 0), JSON.stringify(sent, (k, v) => `${v}`));
      assert.deepEqual(sent[sent.length - 1], [1, 1n]);
    } finally {
      client.close();
    }
  });
});

test('via proxies: one send per request while the proxy answers, to the proxy that took the last one', async () => {
  await withServers(3, (index, request) => reply(request), async (servers) => {
    await withClient({ proxy: servers.endpoints, timeoutMs: 10_000 }, async (client) => {
      for (let i = 0; i < 4; i++) await client.put('k', i);
      const [[first]] = servers.requests;
      assert.deepEqual(
        servers.requests.map(([index, r]) => [index, r.request_number]),
        [[first, 1n], [first, 2n], [first, 3n], [first, 4n]],
      );
    });
  });
});

test('via proxies: the deadline alone ends a call; a silent proxy gets one copy', async () => {
  await withServers(2, () => null, async (servers) => {
    // Longer than the 1 s retry timer the client once had through proxies: that timer is gone.
    await withClient({ proxy: servers.endpoints, quietMs: 60_000, timeoutMs: 1500 }, async (client) => {
      const started = performance.now();
      await assert.rejects(client.get('k'), (e) => e instanceof Timeout && /may or may not/.test(e.message));
      assert.ok(performance.now() - started >= 1490, 'not before the deadline');
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(servers.requests.length, 1, 'no retry timer through proxies');
    });
  });
});

test('via proxies: an error answer sends once more to the next proxy, while the deadline is ahead', async () => {
  for (const code of ['timeout', 'unavailable', 'busy']) {
    const answered = [];
    await withServers(
      2,
      (index, request) => {
        answered.push(index);
        return answered.length === 1 ? error(request, code) : reply(request, { result: msgpack.encode('v') });
      },
      async (servers) => {
        await withClient({ proxy: servers.endpoints, quietMs: 60_000, timeoutMs: 10_000 }, async (client) => {
          assert.equal(await client.get('k'), 'v', code);
          const sent = servers.requests.map(([index, r]) => [index, r.request_number]);
          assert.deepEqual(sent, [[sent[0][0], 1n], [1 - sent[0][0], 1n]], `${code}: once more, to the other proxy`);
        });
      },
    );
  }
  // A proxy that keeps refusing: the caller hears what every attempt said (not executed), at its own deadline.
  await withServers(1, (index, request) => error(request, 'busy'), async (servers) => {
    await withClient({ proxy: servers.endpoints, timeoutMs: 400 }, async (client) => {
      await assert.rejects(client.get('k'), (e) => e instanceof Busy && /not executed/.test(e.message));
      assert.ok(servers.requests.length >= 2, 'asked again after each answer');
      assert.ok(servers.requests.length <= 12, `one copy per 50 ms pause, not a spin: ${servers.requests.length}`);
    });
  });
});

test('via proxies: a final error ends the call at once', async () => {
  await withServers(2, (index, request) => error(request, 'bad_request'), async (servers) => {
    await withClient({ proxy: servers.endpoints, timeoutMs: 10_000 }, async (client) => {
      await assert.rejects(client.get('k'), BadRequest);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(servers.requests.length, 1, 'never retried');
    });
  });
});

test('via proxies: a proxy with no connection refuses the send at once, and the next one takes it', async () => {
  await withServers(1, (index, request) => reply(request, { result: msgpack.encode('up') }), async (servers) => {
    // Nothing listens on port 9: with `immediate` its socket refuses every send; the request never waits there.
    const proxies = ['tcp://127.0.0.1:9', servers.endpoints[0]];
    await withClient({ proxy: proxies, quietMs: 60_000, timeoutMs: 20_000 }, async (client) => {
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        assert.equal(await client.get('k'), 'up');
        assert.ok(performance.now() - started < 2000, 'not the quiet period');
      }
      assert.equal(servers.requests.length, 3, 'one copy per request');
      assert.equal(servers.registered, 1, 'one register, before the first request');
      assert.equal(client.stats.sent, 4, 'nothing was queued toward the proxy that is not there');
    });
  });
  // No proxy reachable at all: nothing left, so the request certainly did not execute.
  await withClient({ proxy: ['tcp://127.0.0.1:9', 'tcp://127.0.0.1:10'], timeoutMs: 300 }, async (client) => {
    await assert.rejects(client.get('k'), (e) => e instanceof Unavailable && /no proxy reachable/.test(e.message));
    assert.equal(client.stats.sent, 0);
  });
});

test('app error results throw AppError; execute can return them instead', async () => {
  const errorResult = msgpack.encode({ error: 'type_error', message: "incr: key 'k' holds a str, not an int" });
  await withServers(1, (index, request) => reply(request, { result: errorResult }), async (servers) => {
    await withClient({ replicas: servers.endpoints }, async (client) => {
      await assert.rejects(client.incr('k'), (e) => e instanceof AppError && e.code === 'type_error');
      assert.deepEqual(await client.execute({ op: 'incr', key: 'k' }, { raiseAppErrors: false }), {
        error: 'type_error', message: "incr: key 'k' holds a str, not an int",
      });
      // A well-formed get never fails: a stored value shaped like an error result is the value.
      assert.deepEqual((await client.get('k')).error, 'type_error');
      assert.deepEqual(await client.executeRaw(Buffer.from([0xc1])), errorResult);
      await assert.rejects(client.delete('k'), (e) => e instanceof AppError && e.code === 'type_error');
    });
  });
  await withServers(1, (index, request) => reply(request, { result: Buffer.from([0xc1]) }), async (servers) => {
    await withClient({ replicas: servers.endpoints }, async (client) => {
      await assert.rejects(client.get('k'), (e) => e instanceof AppError && e.code === 'unexpected_result');
    });
  });
});

test('leases: each call sends the documented map, reads its result; lease_not_found is LeaseNotFound', async () => {
  // A fake primary answering each lease op as the coordination app does, with lease 7 live.
  const answers = {
    lease_grant: (op) => ({ lease: 7, ttl_ms: op.ttl_ms }),
    lease_keepalive: () => 4990,
    lease_revoke: () => ({ ok: true, deleted: ['eph'] }),
    lease_ttl: () => ({ lease: 7, ttl_ms: 5000, remaining_ms: 4000, keys: ['eph'], locks: ['L'] }),
    lease_list: () => [7, 9],
    put: (op) => (op.lease === 8 ? { error: 'lease_not_found', message: 'put: lease 8 is not live' } : null),
    lock: (op) =>
      op.name === 'delayed'
        ? { ok: false, owner: null, token: 4, delay_ms: 250 }
        : { ok: op.owner === 'me', owner: 'me', token: 3 },
  };
  const sent = [];
  await withServers(
    1,
    (index, request) => {
      const op = msgpack.decode(request.operation);
      sent.push(Buffer.from(request.operation).toString('hex'));
      return reply(request, { result: msgpack.encode(answers[op.op](op)) });
    },
    async (servers) => {
      await withClient({ replicas: servers.endpoints }, async (client) => {
        assert.deepEqual(await client.leaseGrant(5000), { lease: 7, ttlMs: 5000 });
        assert.deepEqual(await client.leaseGrant(5000, { lockDelayMs: 300 }), { lease: 7, ttlMs: 5000 });
        assert.equal(await client.leaseKeepalive(7), 4990);
        assert.deepEqual(await client.leaseRevoke(7), { ok: true, deleted: ['eph'] });
        assert.deepEqual(await client.leaseTtl(7), {
          lease: 7, ttlMs: 5000, remainingMs: 4000, keys: ['eph'], locks: ['L'],
        });
        assert.deepEqual(await client.leaseList(), [7, 9]);
        assert.equal(await client.put('eph', 'x', { lease: 7 }), null);
        assert.equal(await client.put('plain', 'y'), null);
        await assert.rejects(
          client.put('eph', 'x', { lease: 8 }),
          (e) => e instanceof LeaseNotFound && e instanceof AppError && e.code === 'lease_not_found',
        );
        assert.deepEqual(await client.lock('L', 'me', { lease: 7 }), { ok: true, owner: 'me', token: 3, lease: 7 });
        assert.deepEqual(await client.lock('L', 'you', { lease: 9 }), { ok: false, owner: 'me', token: 3 });
        assert.deepEqual(await client.lock('L', 'me'), { ok: true, owner: 'me', token: 3 });
        assert.deepEqual(await client.lock('delayed', 'me'), { ok: false, owner: null, token: 4, delayMs: 250 });
        // Arguments are checked before anything is sent.
        const before = sent.length;
        await assert.rejects(client.leaseGrant('5000'), TypeError);
        await assert.rejects(client.leaseGrant(1.5), TypeError);
        await assert.rejects(client.leaseGrant(1000, { lockDelayMs: 0.5 }), TypeError);
        await assert.rejects(client.leaseKeepalive('7'), TypeError);
        await assert.rejects(client.put('k', 1, { lease: '7' }), TypeError);
        await assert.rejects(client.lock('L', 'me', { lease: 1.5 }), TypeError);
        assert.equal(sent.length, before);
      });
    },
  );
  // The canonical bytes: "op" first, then the fields in the documented order, the lease last.
  const canonical = [
    { op: 'lease_grant', ttl_ms: 5000 },
    { op: 'lease_grant', ttl_ms: 5000, lock_delay_ms: 300 },
    { op: 'lease_keepalive', lease: 7 },
    { op: 'lease_revoke', lease: 7 },
    { op: 'lease_ttl', lease: 7 },
    { op: 'lease_list' },
    { op: 'put', key: 'eph', value: 'x', lease: 7 },
    { op: 'put', key: 'plain', value: 'y' },
    { op: 'put', key: 'eph', value: 'x', lease: 8 },
    { op: 'lock', name: 'L', owner: 'me', lease: 7 },
    { op: 'lock', name: 'L', owner: 'you', lease: 9 },
  ];
  const hex = (op) => Buffer.from(msgpack.encode(op)).toString('hex');
  assert.deepEqual(sent.slice(0, canonical.length), canonical.map(hex));
});

test('calls made together run one at a time, numbered in order', async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  await withServers(
    1,
    (index, request) => {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      inFlight -= 1;
      return reply(request, { result: msgpack.encode(Number(request.request_number)) });
    },
    async (servers) => {
      await withClient({ replicas: servers.endpoints }, async (client) => {
        const results = await Promise.all([client.incr('a'), client.incr('b'), client.incr('c')]);
        assert.deepEqual(results, [1, 2, 3]);
        assert.deepEqual(servers.requests.map(([, r]) => r.request_number), [1n, 2n, 3n]);
        assert.equal(client.requestNumber, 3n);
      });
    },
  );
});

test('arguments are checked before anything is sent', async () => {
  await withServers(1, (index, request) => reply(request), async (servers) => {
    await withClient({ replicas: servers.endpoints }, async (client) => {
      await assert.rejects(client.get(1), TypeError);
      await assert.rejects(client.incr('k', 1.5), TypeError);
      await assert.rejects(client.lock('l', null), TypeError);
      await assert.rejects(client.put('k', new Date()), TypeError);
      await assert.rejects(client.executeRaw('not bytes'), TypeError);
      await assert.rejects(client.put('k', Buffer.alloc(70_000)), BadRequest);
      assert.equal(servers.requests.length, 0);
    });
  });
  assert.throws(() => new Client({}), TypeError);
  assert.throws(() => new Client({ proxy: 'a', replicas: ['b'] }), TypeError);
  assert.throws(() => new Client({ replicas: ['localhost:1'] }), TypeError);
  assert.throws(() => new Client({ replicas: ['tcp://127.0.0.1:1'], timeoutMs: 0 }), RangeError);
  assert.throws(() => new Client({ proxy: 'tcp://127.0.0.1:1', retryMs: 100 }), /no retry timer/);
  assert.throws(() => new Client({ replicas: ['tcp://127.0.0.1:1'], quietMs: 100 }), /quietMs is for proxies/);
  assert.throws(() => new Client({ proxy: 'tcp://127.0.0.1:1', quietMs: 0 }), RangeError);
});

test('close: the call in flight fails, later calls fail, nothing hangs', async () => {
  await withServers(1, () => null, async (servers) => {
    const client = new Client({ replicas: servers.endpoints, timeoutMs: 60_000 });
    const pending = client.get('k');
    await servers.received(1);
    client.close();
    await assert.rejects(pending, /closed/);
    await assert.rejects(client.get('k'), /closed/);
    client.close(); // idempotent
    await client.closed();
  });
});

test('a process exits once its client is closed, even with requests still queued (linger 0)', async () => {
  // Nothing listens on the endpoint: the request stays queued in the DEALER. With a non-zero linger,
  // libzmq would keep the process alive at exit trying to deliver it.
  const script = `
    const { Client, Timeout } = require(${JSON.stringify(path.join(__dirname, '..'))});
    const client = new Client({ replicas: ['tcp://127.0.0.1:9'], timeoutMs: 300 });
    client.put('k', 'v').then(
      () => process.exit(3),
      (error) => { console.log(error instanceof Timeout ? 'timeout' : error.message); client.close(); },
    );
  `;
  const { stdout } = await new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script], { timeout: 20_000, killSignal: 'SIGKILL' }, (error, out, err) =>
      error ? reject(Object.assign(error, { stderr: err })) : resolve({ stdout: out }));
  });
  assert.equal(stdout.trim(), 'timeout');
});

test('CurveZMQ: the options are applied to every socket', () => {
  const server = zmq.curveKeyPair();
  const mine = zmq.curveKeyPair();
  assert.deepEqual(
    socketOptions({ curveServerKey: server.publicKey, curvePublicKey: mine.publicKey, curveSecretKey: mine.secretKey }),
    {
      ...socketOptions(),
      curveServerKey: server.publicKey,
      curvePublicKey: mine.publicKey,
      curveSecretKey: mine.secretKey,
    },
  );
  const ephemeral = socketOptions({ curveServerKey: server.publicKey });
  assert.match(ephemeral.curvePublicKey, /^.{40}$/);
  assert.notEqual(ephemeral.curvePublicKey, mine.publicKey);
  assert.equal(socketOptions().linger, 0);
  assert.equal(socketOptions().curveServerKey, undefined);
  assert.equal(socketOptions().immediate, undefined, 'direct: a first request waits for the connection');
  assert.equal(socketOptions({}, { viaProxies: true }).immediate, true, 'via proxies: refused when not connected');
  assert.equal(socketOptions({}, { viaProxies: true }).sendTimeout, 0);
  assert.throws(() => socketOptions({ curvePublicKey: mine.publicKey, curveSecretKey: mine.secretKey }), TypeError);
  assert.throws(() => socketOptions({ curveServerKey: server.publicKey, curvePublicKey: mine.publicKey }), TypeError);
  assert.throws(() => socketOptions({ curveServerKey: 'short' }), TypeError);

  const client = new Client({
    replicas: ['tcp://127.0.0.1:9', 'tcp://127.0.0.1:10'],
    curveServerKey: server.publicKey,
  });
  try {
    for (const socket of client._sockets.values()) {
      assert.equal(socket.securityMechanism, 'curve');
      assert.equal(socket.curveServer, false);
      assert.equal(socket.linger, 0);
    }
  } finally {
    client.close();
  }
  const plain = new Client({ replicas: ['tcp://127.0.0.1:9'] });
  try {
    assert.equal(plain._sockets.get(0).securityMechanism, null);
    assert.equal(plain._sockets.get(0).immediate, false);
  } finally {
    plain.close();
  }
  const viaProxy = new Client({ proxy: 'tcp://127.0.0.1:9', curveServerKey: server.publicKey });
  try {
    assert.equal(viaProxy._sockets.get(0).immediate, true);
    assert.equal(viaProxy._sockets.get(0).securityMechanism, 'curve');
  } finally {
    viaProxy.close();
  }
});

test('CurveZMQ: talks to a CURVE server with its key, and not without it', async () => {
  const server = zmq.curveKeyPair();
  const serverOptions = { curveServer: true, curveSecretKey: server.secretKey };
  await withServers(1, (index, request) => reply(request, { result: msgpack.encode('secret') }), async (servers) => {
    const right = { replicas: servers.endpoints, curveServerKey: server.publicKey, timeoutMs: 10_000 };
    await withClient(right, async (client) => {
      assert.equal(await client.get('k'), 'secret');
    });
    const wrong = { replicas: servers.endpoints, curveServerKey: zmq.curveKeyPair().publicKey, retryMs: 50, timeoutMs: 500 };
    await withClient(wrong, async (client) => {
      await assert.rejects(client.get('k'), Timeout);
    });
    await withClient({ replicas: servers.endpoints, retryMs: 50, timeoutMs: 500 }, async (client) => {
      await assert.rejects(client.get('k'), Timeout);
    });
    assert.equal(servers.requests.length, 1, 'only the client with the right key got through');
  }, serverOptions);
});
