'use strict';
/**
 * The zvsr client for Node.js: the built-in coordination service (and any app) through proxies or straight to
 * the replicas. It mirrors the Python client, `zvsr/client.py`.
 *
 * A `Client` is one VR client: a random 64-bit client_id, request numbers 1, 2, … and at most one request
 * outstanding (calls made while one is in flight wait their turn). It speaks the client protocol — `Request`
 * out, `Reply` / `Redirect` / `Error` in (docs/protocol.md §4) — over one ZeroMQ DEALER per endpoint, so each
 * attempt goes to a chosen endpoint:
 *
 * - via proxies (`new Client({proxy: "tcp://host:7700"})`, or several): a request goes to one proxy (the list
 *   is shuffled once per client), which finds the primary, follows failover and retries toward the replicas
 *   itself, and answers by its own `request_timeout_ms`. The client keeps only its own deadline: it sends the
 *   *same* request again only when that proxy cannot answer — no connection to it (`immediate` refuses the
 *   send: the next proxy at once), an error answer (`timeout`, `unavailable`, `busy`: the next proxy, while the
 *   deadline is ahead), or 2.5 s without any answer (a proxy restarted with the request in flight);
 * - direct (`new Client({replicas: [...]})`, the replicas' client endpoints in index order): the client finds
 *   the primary itself — replica `view mod n`, following Redirects — and re-sends the same request to every
 *   replica when 200 ms (doubling up to 1.6 s) pass without an answer. It follows reconfiguration: a Redirect
 *   to a replica it cannot place, or a re-send to everyone, makes it ask the replicas for the status query
 *   (at most every 500 ms); from a later epoch's `membership` it addresses those members (ids, client
 *   endpoints; primary of view v: members[(v - start_view) mod n]) without a restart.
 *
 * The retry logic is `RelaySession` / `ClientSession` (lib/session.js), ports of the sessions the Python
 * client (and, for `ClientSession`, the proxy) runs (docs/protocol.md §5, "Who retries what"). Because every
 * retry carries the same (client_id, request_number), the replicas execute a request at most once however
 * often it is sent. A call ends in a result or an exception: `Timeout` means the outcome is unknown;
 * `Unavailable` / `Busy` are thrown only when every attempt that left was refused, so the request certainly
 * did not execute.
 */

const crypto = require('node:crypto');
const { performance } = require('node:perf_hooks');
const zmq = require('zeromq');

const codec = require('./codec');
const msgpack = require('./msgpack');
const { ClientSession, RelaySession, Attempts, BROADCAST, RELAY_QUIET_MS } = require('./session');
const { ops, resultValue } = require('./coordination');
const { errorFor, BadRequest } = require('./errors');

const DEFAULTS = {
  timeoutMs: 5000, // CLIENT_TIMEOUT_MS
  directRetryMs: 200, // CLIENT_DIRECT_RETRY_MS
  directRetryMaxMs: 1600,
  proxyQuietMs: RELAY_QUIET_MS, // CLIENT_PROXY_QUIET_MS
  sendHighWaterMark: 1000, // CLIENT_SNDHWM
  replyBytesMax: codec.RESULT_BYTES_MAX + 1024, // CLIENT_REPLY_BYTES_MAX
  heartbeatIntervalMs: 1000, // ZMTP_HEARTBEAT_IVL_MS
  heartbeatTimeoutMs: 3000, // ZMTP_HEARTBEAT_TIMEOUT_MS
  membershipAskMs: 500, // CLIENT_MEMBERSHIP_ASK_MS: at most one status query round this often
};

const STATUS_QUERY = msgpack.encode({ type: 30 }); // docs/protocol.md §11; answered by {type: 31, ...}
const TYPE_STATUS_ANSWER = 31;
const MEMBERS_MAX = 64; // a configuration's members read from a status answer; more is not a zvsr answer

const TIMER_MAX_MS = 2 ** 31 - 1; // setTimeout's limit; a longer wait just wakes up early and sleeps again
const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

function randomClientId() {
  return crypto.randomBytes(8).readBigUInt64BE(0);
}

function shuffle(list) {
  for (let i = list.length - 1; i > 0; i--) {
    const j = crypto.randomInt(i + 1);
    [list[i], list[j]] = [list[j], list[i]];
  }
  return list;
}

function positiveInt(name, value) {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/**
 * The socket options a client's DEALERs get (exported for tests): linger 0, bounds, heartbeats, CURVE, and
 * `immediate` on sockets to proxies (`viaProxies`).
 */
function socketOptions(options = {}, { viaProxies = false } = {}) {
  const socket = {
    linger: 0, // close() never waits for unsent requests: no hanging process
    // Never block. zeromq.js 6 then sends with ZMQ_DONTWAIT at the call and returns a promise already settled:
    // rejected with code EAGAIN when libzmq cannot queue the message (a full queue; with `immediate`, no
    // connection up). It never waits for the socket to become writable.
    sendTimeout: 0,
    sendHighWaterMark: DEFAULTS.sendHighWaterMark,
    maxMessageSize: DEFAULTS.replyBytesMax,
    heartbeatInterval: DEFAULTS.heartbeatIntervalMs,
    heartbeatTimeout: DEFAULTS.heartbeatTimeoutMs,
  };
  if (viaProxies) {
    // ZMQ_IMMEDIATE: a send to a proxy with no connection up is refused at once (the EAGAIN above), which is
    // how the client knows that proxy cannot answer and moves to the next (RelaySession.onSendRefused); when
    // every proxy refused, the next is tried again 10 ms later, so a new client's first request leaves as soon
    // as a connection is up.
    socket.immediate = true;
  }
  // Direct to replicas, no `immediate`: the first request of a new client waits in the queue until the
  // connection is up, instead of being refused and retried a retry period later (the queue is bounded).
  const { curveServerKey, curvePublicKey, curveSecretKey } = options;
  if (curveServerKey == null) {
    if (curvePublicKey != null || curveSecretKey != null) {
      throw new TypeError('curvePublicKey / curveSecretKey need curveServerKey (the server public key)');
    }
    return socket;
  }
  if ((curvePublicKey == null) !== (curveSecretKey == null)) {
    throw new TypeError('give both curvePublicKey and curveSecretKey, or neither (a fresh key pair)');
  }
  const keys = curvePublicKey == null ? zmq.curveKeyPair() : { publicKey: curvePublicKey, secretKey: curveSecretKey };
  for (const [name, key] of [
    ['curveServerKey', curveServerKey],
    ['curvePublicKey', keys.publicKey],
    ['curveSecretKey', keys.secretKey],
  ]) {
    if (typeof key !== 'string' || !Z85_KEY.test(key)) throw new TypeError(`${name} must be a 40-character Z85 key`);
  }
  if (!zmq.capability.curve) throw new Error('this libzmq was built without CURVE');
  return {
    ...socket,
    curveServerKey,
    curvePublicKey: keys.publicKey,
    curveSecretKey: keys.secretKey,
  };
}

function endpointsOf(options) {
  const { proxy, replicas } = options;
  if ((proxy == null) === (replicas == null)) {
    throw new TypeError('give either proxy endpoint(s) or replicas: [client endpoints], not both or neither');
  }
  const endpoints = proxy != null ? shuffle(typeof proxy === 'string' ? [proxy] : [...proxy]) : [...replicas];
  if (!endpoints.length || !endpoints.every((e) => typeof e === 'string' && e.includes('://'))) {
    throw new TypeError(`endpoints must be ZeroMQ endpoints like tcp://host:port, got ${JSON.stringify(endpoints)}`);
  }
  return { endpoints, viaProxies: proxy != null };
}

class Client {
  /**
   * `new Client("tcp://127.0.0.1:7700")`, `new Client({proxy: [...]})` or `new Client({replicas: [...]})`.
   *
   * Options:
   *   proxy: a proxy endpoint or several; or replicas: every replica's client endpoint, in index order
   *   timeoutMs: how long a call may take before it throws Timeout (default 5000)
   *   curveServerKey, curvePublicKey, curveSecretKey: CurveZMQ (Z85 strings): the server's public key, and
   *     this client's key pair (default: a fresh pair)
   *   retryMs, retryMaxMs (direct only): the first retry period and its cap (default 200 / 1600)
   *   quietMs (via proxies only): how long a proxy may stay silent before the request goes to the next one
   *     (default 2500); proxies retry toward the replicas themselves, so there is no retry timer
   */
  constructor(proxyOrOptions, moreOptions = {}) {
    const options =
      typeof proxyOrOptions === 'string' || Array.isArray(proxyOrOptions)
        ? { ...moreOptions, proxy: proxyOrOptions }
        : { ...proxyOrOptions };
    const { endpoints, viaProxies } = endpointsOf(options);
    this.timeoutMs = positiveInt('timeoutMs', options.timeoutMs ?? DEFAULTS.timeoutMs);
    if (viaProxies) {
      if (options.retryMs != null || options.retryMaxMs != null) {
        throw new TypeError('retryMs / retryMaxMs are for replicas: through proxies the client has no retry timer');
      }
      const quietMs = positiveInt('quietMs', options.quietMs ?? DEFAULTS.proxyQuietMs);
      this._sessionSettings = { relayCount: endpoints.length, quietMs };
    } else {
      if (options.quietMs != null) throw new TypeError('quietMs is for proxies');
      const retryMs = positiveInt('retryMs', options.retryMs ?? DEFAULTS.directRetryMs);
      const retryMaxMs = positiveInt('retryMaxMs', options.retryMaxMs ?? Math.max(retryMs, DEFAULTS.directRetryMaxMs));
      this._sessionSettings = { endpointCount: endpoints.length, retryMs, retryMaxMs };
    }
    const settings = socketOptions(options, { viaProxies });
    this.endpoints = endpoints;
    this.viaProxies = viaProxies;
    this._target = viaProxies ? 'proxy' : 'replica';
    this._session = this._newSession(randomClientId());
    this._settings = settings;
    // Proxy index, or replica id -> DEALER. Direct, the endpoints as given are replicas 0..n-1 (epoch 0's ids);
    // a later configuration learnt from a status answer replaces them (`_learnConfiguration`).
    this._sockets = new Map();
    this._receivers = [];
    try {
      endpoints.forEach((endpoint, index) => this._connect(index, endpoint));
    } catch (error) {
      for (const socket of this._sockets.values()) socket.close();
      throw error;
    }
    // Follow reconfigurations (direct only; with CurveZMQ the server key is the one given, so keep the replicas).
    this._follow = !viaProxies && options.curveServerKey == null;
    this.epoch = 0; // of the configuration addressed (0: the endpoints as given)
    this._nextAsk = -Infinity;
    this._closed = false;
    this._queue = Promise.resolve(); // calls run one at a time, in order
    this._call = null; // the call in flight: { wire, request, attempts, resolve, reject }
    this._timer = null;
    this._last = null; // the latest request: { requestNumber, operation, parse }
    this._receiveError = null;
    this.stats = { sent: 0, received: 0, undecodable: 0, ignored: 0, statusAsks: 0, configurations: 0 };
  }

  _connect(id, endpoint) {
    const socket = new zmq.Dealer(this._settings);
    this._sockets.set(id, socket);
    socket.connect(endpoint);
    this._receivers.push(this._receive(socket));
  }

  /** This client's session id (a bigint, named by its register's reply), or its random nonce until registered. */
  get clientId() {
    return this._session.clientId;
  }

  /** The number of the latest request (0n before the first). */
  get requestNumber() {
    return this._session.requestNumber;
  }

  /** The highest view this client has seen (through proxies: the highest a Reply named). */
  get view() {
    return this._session.view;
  }

  // --- the coordination app ---

  /** The value of `key`, or null if it is missing (or holds nil). */
  async get(key) {
    return this._run(ops.get(key));
  }

  /**
   * Set `key` to `value` (any msgpack value). Resolves to null.
   *
   * @param {string} key
   * @param {*} value
   * @param {{lease?: number|bigint}} [options] `lease`: attach the key to that lease (`leaseGrant`): the key is
   *   deleted when the lease ends. A lease that is not live rejects with LeaseNotFound.
   * @returns {Promise<null>}
   */
  async put(key, value, { lease } = {}) {
    return this._run(ops.put(key, value, lease));
  }

  /** Delete `key`; whether it existed. */
  async delete(key) {
    return this._run(ops.delete(key));
  }

  /** Set `key` to `next` iff it holds `expected` (null: iff it is missing): `{ok, value}` (the value after). */
  async cas(key, expected, next) {
    return this._run(ops.cas(key, expected, next));
  }

  /** Add `by` (default 1) to the integer at `key` (missing counts as 0); the new value. */
  async incr(key, by = 1) {
    return this._run(ops.incr(key, by));
  }

  /**
   * Take lock `name` for `owner` (re-entrant): `{ok, owner, token}`; ok false names the holder and its token.
   *
   * @param {string} name
   * @param {string} owner
   * @param {{lease?: number|bigint}} [options] `lease`: the lock is released when that lease ends; the result
   *   then has `lease` too (when ok). A lock whose holder's lease expired may be in its lock delay: ok false,
   *   owner null, and `delayMs`, the time left before anyone may take it.
   * @returns {Promise<{ok: boolean, owner: ?string, token: number|bigint, lease?: number|bigint,
   *   delayMs?: number}>}
   */
  async lock(name, owner, { lease } = {}) {
    return this._run(ops.lock(name, owner, lease));
  }

  /** Release lock `name` if `owner` holds it; whether it did. */
  async unlock(name, owner) {
    return this._run(ops.unlock(name, owner));
  }

  // --- leases ---

  /**
   * A new lease that ends `ttlMs` milliseconds of cluster time after its grant or latest keepalive (or when
   * revoked); keys and locks attached to it end with it. Out of the app's bounds: AppError `out_of_range`; too
   * many live leases: `lease_limit`.
   *
   * @param {number|bigint} ttlMs
   * @param {{lockDelayMs?: number|bigint}} [options] `lockDelayMs`: when the lease expires (not when it is
   *   revoked), its locks stay unavailable this long (default 0).
   * @returns {Promise<{lease: number|bigint, ttlMs: number|bigint}>} the lease id and its ttl
   */
  async leaseGrant(ttlMs, { lockDelayMs = 0 } = {}) {
    return this._run(ops.leaseGrant(ttlMs, lockDelayMs));
  }

  /**
   * Renew lease `id` for a full ttl. Keep a lease alive every ttl/3; count on it for at most ttl × 0.95 from
   * the *send* time of the last keepalive that was answered (replicas' clocks may run 5% apart in rate).
   *
   * @param {number|bigint} id
   * @returns {Promise<number|bigint>} the milliseconds it now has left; LeaseNotFound if it is not live
   */
  async leaseKeepalive(id) {
    return this._run(ops.leaseKeepalive(id));
  }

  /**
   * End lease `id` now: its keys are deleted and its locks released (without lock delay).
   *
   * @param {number|bigint} id
   * @returns {Promise<{ok: boolean, deleted: string[]}>} whether it was live, and the keys deleted
   */
  async leaseRevoke(id) {
    return this._run(ops.leaseRevoke(id));
  }

  /**
   * Lease `id`'s ttl, the time it has left, and the keys and locks attached to it.
   *
   * @param {number|bigint} id
   * @returns {Promise<{lease: number|bigint, ttlMs: number|bigint, remainingMs: number|bigint, keys: string[],
   *   locks: string[]}>} LeaseNotFound if it is not live
   */
  async leaseTtl(id) {
    return this._run(ops.leaseTtl(id));
  }

  /**
   * The ids of every live lease.
   *
   * @returns {Promise<Array<number|bigint>>}
   */
  async leaseList() {
    return this._run(ops.leaseList());
  }

  /**
   * Run any operation (a msgpack value) and return the app's result value. With `raiseAppErrors` (default),
   * a result `{error, message}` throws AppError.
   */
  async execute(op, { raiseAppErrors = true } = {}) {
    return this._run(ops.execute(op, raiseAppErrors));
  }

  /**
   * Send `operation` (bytes, opaque to the protocol: any app's operation) and return the result bytes of the
   * Reply, undecoded. The coordination app's operations and results are msgpack values (docs/protocol.md §7).
   */
  async executeRaw(operation) {
    if (!(operation instanceof Uint8Array)) throw new TypeError('operation must be a Buffer or Uint8Array');
    if (operation.length > codec.OPERATION_BYTES_MAX) {
      throw new BadRequest('bad_request', `operation is ${operation.length} bytes > ${codec.OPERATION_BYTES_MAX}`);
    }
    return this._run({ operation: Buffer.from(operation), parse: null });
  }

  /**
   * Re-send the latest request with the same (client_id, request_number, operation) and return its result,
   * read as the original call would. For after a Timeout: the cluster executes a request at most once, so
   * this either executes it now or answers the cached result of its earlier execution — provided this
   * client has made no newer request since.
   */
  async retryLast() {
    if (this._last === null) throw new Error('no request to retry');
    const { requestNumber, operation, parse } = this._last;
    return this._run({ operation, parse }, requestNumber);
  }

  // --- plumbing ---

  /**
   * A session for `clientId`: a `RelaySession` via proxies (they retry toward the replicas; the client keeps its
   * deadline), a `ClientSession` direct to the replicas (the client finds the primary and retries itself). Via
   * proxies a new session starts at the proxy the last one used, as the Python client's does.
   */
  _newSession(clientId) {
    const registration = { register: true, newNonce: randomClientId };
    if (this.viaProxies) {
      const relay = this._session instanceof RelaySession ? this._session.relay : 0;
      return new RelaySession({ clientId, relay, ...this._sessionSettings, ...registration });
    }
    const session = new ClientSession({ clientId, ...this._sessionSettings, ...registration });
    const previous = this._session;
    if (previous instanceof ClientSession && this.epoch > 0) {
      session.learnConfiguration(previous.members, previous.startView);
    }
    return session;
  }

  _run(call, requestNumber) {
    const run = () =>
      this._request(call, requestNumber).then((result) => (call.parse === null ? result : resultValue(call, result)));
    const promise = this._queue.then(run, run);
    this._queue = promise.catch(() => {});
    return promise;
  }

  _request(call, requestNumber) {
    if (this._closed) return Promise.reject(new Error('the client is closed'));
    if (this._receiveError !== null) return Promise.reject(this._receiveError);
    return new Promise((resolve, reject) => {
      const now = performance.now();
      const request = this._session.submit(call.operation, { now, timeoutMs: this.timeoutMs, requestNumber });
      const attempts = new Attempts();
      attempts.start({ fresh: requestNumber === undefined }); // a re-sent number may have executed before
      this._last = { requestNumber: request.request_number, operation: call.operation, parse: call.parse };
      this._call = { wire: codec.encode(request), request, attempts, resolve, reject };
      this._flush();
      this._schedule();
    });
  }

  async _receive(socket) {
    try {
      for await (const frames of socket) {
        this._onMessage(frames);
      }
    } catch (error) {
      // (A departed replica's socket, closed by `_learnConfiguration`, is no failure of the client.)
      if (!this._closed && [...this._sockets.values()].includes(socket)) {
        // Not expected from a DEALER: fail the call in flight and every later one.
        this._receiveError = error;
        this._finish(null, error);
      }
    }
  }

  _onMessage(frames) {
    this.stats.received += 1;
    let reply;
    const data = frames[frames.length - 1];
    try {
      reply = codec.decodeClientReply(data);
    } catch (error) {
      if (error instanceof codec.DecodeError) {
        // A status answer (asked by `_askConfiguration`), or not from a zvsr peer: nothing to answer.
        if (!this._onStatusAnswer(data)) this.stats.undecodable += 1;
        return;
      }
      throw error;
    }
    if (reply.kind === 'Redirect' && !this.viaProxies && !this._places(reply)) {
      this._askConfiguration(); // a primary we do not know, or not where we expect it: a configuration we do not know
    }
    const call = this._call;
    if (call === null || reply.client_id !== this.clientId || reply.request_number !== call.request.request_number) {
      this.stats.ignored += 1; // a late answer to an earlier attempt of an earlier request
      return;
    }
    call.attempts.onAnswer(reply);
    this._session.onReply(reply, performance.now());
    this._flush();
    this._complete();
  }

  _onTimer() {
    this._timer = null;
    if (this._call === null) return;
    this._session.poll(performance.now());
    this._flush();
    this._complete();
  }

  _schedule() {
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
    const at = this._session.wakeAt();
    if (this._call === null || at === Infinity) return;
    const delay = Math.min(Math.max(0, Math.ceil(at - performance.now())), TIMER_MAX_MS);
    this._timer = setTimeout(() => this._onTimer(), delay);
  }

  _flush() {
    const call = this._call;
    const session = this._session;
    if (call !== null && session.outstanding !== null && session.outstanding !== call.request) {
      // The session registered: its operation goes out now, as request 1 of the session, with attempts of its own.
      call.request = session.outstanding;
      call.wire = codec.encode(call.request);
      call.attempts.start({ fresh: true });
      if (this._last !== null) this._last.requestNumber = call.request.request_number;
    }
    for (const [destination, request] of session.takeOutbox()) {
      if (call === null || request !== call.request) continue;
      let targets;
      if (destination === BROADCAST) {
        this._askConfiguration(); // no answer in time: maybe the replicas changed
        targets = [...this._sockets.values()];
      } else if (this._sockets.has(destination)) {
        targets = [this._sockets.get(destination)];
      } else {
        this._askConfiguration(); // cannot happen with a configuration learnt whole; ask rather than fail
        continue;
      }
      for (const socket of targets) {
        socket.send(call.wire).then(
          () => {
            call.attempts.sent += 1;
            this.stats.sent += 1;
          },
          (error) => {
            // EAGAIN (sendTimeout 0: known at the call, reported here). Replica: its queue is full; this attempt
            // is lost, a later one may not be. Proxy (`immediate`): no connection to it; the session names
            // another proxy at once, or one to try again shortly — each refusal names a proxy not yet tried
            // this round, so this ends.
            if (error?.code !== 'EAGAIN' || !(session instanceof RelaySession)) return;
            if (this._call !== call || this._session !== session) return; // the call ended meanwhile
            session.onSendRefused(destination, performance.now());
            this._flush();
            this._schedule();
          },
        );
      }
    }
  }

  // --- the replicas' configuration (direct mode; docs/clients.md, "Following reconfiguration") ---

  /** Whether a Redirect fits the configuration addressed: it names a replica we know, the one we'd expect. */
  _places(redirect) {
    const primary = Number(redirect.primary);
    return this._sockets.has(primary) && this._session.primaryOf(redirect.view) === primary;
  }

  /** Send the status query to every replica addressed, at most once per `membershipAskMs`. */
  _askConfiguration() {
    if (!this._follow || this._closed) return;
    const now = performance.now();
    if (now < this._nextAsk) return;
    this._nextAsk = now + DEFAULTS.membershipAskMs;
    this.stats.statusAsks += 1;
    for (const socket of this._sockets.values()) socket.send(STATUS_QUERY).catch(() => {}); // EAGAIN: lost
  }

  /**
   * A status answer's configuration (`membership`: epoch, start_view, members [{id, client, ...}]), if it is a
   * later epoch than the one addressed: connect to new members, close departed ones' sockets, and address the
   * new primary. Returns whether `data` was a status answer. Anything unreadable is ignored.
   */
  _onStatusAnswer(data) {
    let answer;
    try {
      answer = msgpack.decode(data, { ints: 'bigint' });
    } catch {
      return false;
    }
    if (answer === null || typeof answer !== 'object' || answer.type !== BigInt(TYPE_STATUS_ANSWER)) return false;
    const configuration = readMembership(answer.membership);
    if (!this._follow || configuration === null || configuration.epoch <= this.epoch) return true;
    this._learnConfiguration(configuration);
    return true;
  }

  _learnConfiguration({ epoch, startView, members }) {
    const ids = new Set(members.map((m) => m.id));
    for (const [id, socket] of [...this._sockets]) {
      if (!ids.has(id)) {
        socket.close(); // its receive loop ends
        this._sockets.delete(id);
      }
    }
    for (const { id, client } of members) if (!this._sockets.has(id)) this._connect(id, client);
    this.epoch = epoch;
    this.endpoints = members.map((m) => m.client);
    this.stats.configurations += 1;
    this._session.learnConfiguration(
      members.map((m) => m.id),
      startView,
    );
    this._flush();
  }

  _complete() {
    const completion = this._session.takeCompletion();
    if (completion === null) {
      this._schedule();
      return;
    }
    const call = this._call;
    if (completion.result !== undefined) {
      this._finish(completion.result, null);
      return;
    }
    let code = completion.error;
    let message = completion.message;
    if (code === 'timeout') {
      // The outcome is unknown, unless every attempt that left was refused.
      [code, message] = call.attempts.finalError({ timeoutMs: this.timeoutMs, target: this._target });
    }
    if (code === 'session_expired') {
      // The session registers a new one for the next call by itself; the expired request is never re-sent.
      this._last = null; // nothing to retry: the new session cannot resend the old one's request
    }
    this._finish(null, errorFor(code, message));
  }

  _finish(result, error) {
    const call = this._call;
    if (call === null) return;
    this._call = null;
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
    if (error !== null) {
      this._session.abandon();
      call.reject(error);
    } else {
      call.resolve(result);
    }
  }

  /** Close the sockets (linger 0: nothing waits). A call in flight, and any queued, fails. Idempotent. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._finish(null, new Error('the client is closed'));
    for (const socket of this._sockets.values()) socket.close();
  }

  /** Close, and wait until every socket's receive loop has ended. */
  async closed() {
    this.close();
    await Promise.allSettled(this._receivers);
  }
}

/**
 * The configuration in a status answer's `membership`, or null if absent or unreadable: {epoch (a number),
 * startView (a bigint), members: [{id (a number), client (an endpoint)}]}, members in order. Every member must
 * have a client endpoint (a configuration with a member we cannot reach is not one we can address).
 */
function readMembership(membership) {
  if (membership === null || typeof membership !== 'object' || membership instanceof Map) return null;
  const { epoch, start_view: startView, members } = membership;
  if (typeof epoch !== 'bigint' || typeof startView !== 'bigint' || epoch < 0n || startView < 0n) return null;
  if (!Array.isArray(members) || members.length < 1 || members.length > MEMBERS_MAX) return null;
  const out = [];
  for (const member of members) {
    if (member === null || typeof member !== 'object' || member instanceof Map) return null;
    const { id, client } = member;
    if (typeof id !== 'bigint' || id < 0n || id > BigInt(Number.MAX_SAFE_INTEGER)) return null;
    if (typeof client !== 'string' || !client.includes('://')) return null;
    if (out.some((m) => m.id === Number(id))) return null;
    out.push({ id: Number(id), client });
  }
  if (epoch > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return { epoch: Number(epoch), startView, members: out };
}

// `using client = …` / `await using` where the runtime has explicit resource management.
if (typeof Symbol.dispose === 'symbol') Client.prototype[Symbol.dispose] = Client.prototype.close;
if (typeof Symbol.asyncDispose === 'symbol') Client.prototype[Symbol.asyncDispose] = Client.prototype.closed;

module.exports = { Client, socketOptions, readMembership, DEFAULTS };
