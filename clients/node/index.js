'use strict';
/**
 * zvsr-client: a Node.js client for zvsr clusters (Viewstamped Replication over ZeroMQ).
 *
 *   const { Client } = require('zvsr-client');
 *   const client = new Client({ proxy: 'tcp://127.0.0.1:7700' });
 *   await client.put('config/leader', 'node-a');
 *   await client.get('config/leader'); // 'node-a'
 *   client.close();
 *
 * See README.md; the wire protocol is docs/protocol.md in the zvsr repository.
 */

const { Client, socketOptions } = require('./lib/client');
const errors = require('./lib/errors');
const codec = require('./lib/codec');
const msgpack = require('./lib/msgpack');
const { ClientSession, RelaySession, Attempts } = require('./lib/session');

module.exports = {
  Client,
  ZvsrError: errors.ZvsrError,
  Unavailable: errors.Unavailable,
  Busy: errors.Busy,
  BadRequest: errors.BadRequest,
  Timeout: errors.Timeout,
  SessionExpired: errors.SessionExpired,
  AppError: errors.AppError,
  LeaseNotFound: errors.LeaseNotFound,
  Float64: msgpack.Float64,
  Ext: msgpack.Ext,
  codec,
  msgpack,
  ClientSession,
  RelaySession,
  Attempts,
  socketOptions,
};
