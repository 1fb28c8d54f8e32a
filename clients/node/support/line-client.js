'use strict';
// A direct client driven line by line, for tests that change the cluster between calls (tests/
// test_clients_reconfiguration.py): argv[2] is a JSON array of replica client endpoints; each stdin line is a
// JSON call {op: "put", key, value} or {op: "get", key}; each answer is one stdout line
// {ok, result | error, epoch, view}. The client lives as long as the process: it is never restarted.

const readline = require('node:readline');
const { Client } = require('..');

const client = new Client({ replicas: JSON.parse(process.argv[2]), timeoutMs: 20_000 });
const lines = readline.createInterface({ input: process.stdin });

lines.on('line', async (line) => {
  const call = JSON.parse(line);
  let answer;
  try {
    const result = call.op === 'put' ? await client.put(call.key, call.value) : await client.get(call.key);
    answer = { ok: true, result };
  } catch (error) {
    answer = { ok: false, error: `${error.name}: ${error.message}` };
  }
  answer.epoch = client.epoch;
  answer.view = client.view.toString();
  process.stdout.write(`${JSON.stringify(answer)}\n`);
});
lines.on('close', () => client.close());
