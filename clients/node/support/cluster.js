'use strict';
/**
 * A real zvsr cluster for the live tests: `zvsr node` × n and `zvsr proxy` processes on 127.0.0.1, like
 * `zvsr/runtime/processes.py`'s ProcessCluster.
 *
 * Ports come from the kernel (listen on port 0, read it, release it); the configuration is a cluster file in
 * a fresh temporary directory (data, logs). The interpreter is $ZVSR_PYTHON (default `python3`) with zvsr
 * importable.
 *
 * No process outlives the test, whatever happens to it: each one runs under a tiny Python watchdog in its own
 * process group; `stop()` SIGKILLs every group; a process-exit hook does the same if the test dies before its
 * after-hook; and the watchdog kills its child when its stdin (a pipe from this process) closes, which the
 * kernel does when this process dies in any way, SIGKILL included.
 */

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const { Client, ZvsrError } = require('..');

const PYTHON = process.env.ZVSR_PYTHON || 'python3';

// Runs argv[1:] as its child and exits with it; kills it when stdin reaches EOF (the test process is gone).
// Raw reads and os._exit: a daemon thread blocked in a buffered stdin read aborts interpreter shutdown.
const WATCHDOG = `
import os, subprocess, sys, threading
child = subprocess.Popen(sys.argv[1:])
def watch():
    try:
        while os.read(0, 4096):
            pass
    finally:
        child.kill()
threading.Thread(target=watch, daemon=True).start()
code = child.wait()
os._exit(code if code >= 0 else 128 - code)
`;

// The repository root: the zvsr package under test is imported from here, installed or not.
const REPO = path.resolve(__dirname, '..', '..', '..');

// Like processes.py TEST_TIMEOUTS: fast failover, but no spurious view changes on a loaded 2-core machine.
const TIMEOUTS = {
  heartbeat_ticks: 5,
  primary_timeout_ticks: 30,
  primary_timeout_jitter_ticks: 15,
  view_change_timeout_ticks: 60,
};

const live = new Set(); // every process group not yet reaped, for the exit hook
process.on('exit', () => {
  for (const child of live) killGroup(child);
});

function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // ESRCH: already gone
  }
}

/** `count` distinct ports the kernel had free on 127.0.0.1. */
async function freePorts(count) {
  const servers = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((server) => server.address().port);
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

function toml(config) {
  const q = JSON.stringify;
  const lines = ['[cluster]', 'id = 1', 'epoch = 0', 'tick_ms = 10'];
  lines.push('app = "zvsr.apps.coordination:CoordinationApp"', '');
  for (const replica of config.replicas) {
    lines.push('[[replica]]', `peer = ${q(replica.peer)}`, `heartbeat = ${q(replica.heartbeat)}`,
      `client = ${q(replica.client)}`, '');
  }
  lines.push('[proxy]', `endpoint = ${q(config.proxy)}`, 'request_timeout_ms = 10000', '');
  lines.push('[node]', `data_dir = ${q(config.dataDir)}`, 'log_level = "info"', 'log_format = "text"',
    'fsync = "never"', '');
  lines.push('[timeouts]', ...Object.entries(TIMEOUTS).map(([key, value]) => `${key} = ${value}`), '');
  return lines.join('\n');
}

class LiveCluster {
  /** Start `replicas` replicas and a proxy; resolves once a read goes through the proxy. */
  static async start({ replicas = 3, readyTimeoutMs = 45_000 } = {}) {
    const cluster = new LiveCluster(replicas, await freePorts(3 * replicas + 1));
    try {
      for (let index = 0; index < replicas; index++) {
        const args = ['node', '--config', cluster.configPath, '--replica', String(index), '--init'];
        cluster.spawn(`replica-${index}`, args);
      }
      cluster.spawn('proxy', ['proxy', '--config', cluster.configPath]);
      await cluster.waitUntilServing(readyTimeoutMs);
      return cluster;
    } catch (error) {
      error.message += `\n${cluster.logs()}`;
      await cluster.stop();
      throw error;
    }
  }

  constructor(replicaCount, ports) {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'zvsr-node-client-'));
    this.replicas = Array.from({ length: replicaCount }, (_, i) => ({
      peer: `tcp://127.0.0.1:${ports[3 * i]}`,
      heartbeat: `tcp://127.0.0.1:${ports[3 * i + 1]}`,
      client: `tcp://127.0.0.1:${ports[3 * i + 2]}`,
    }));
    this.proxy = `tcp://127.0.0.1:${ports[3 * replicaCount]}`;
    this.configPath = path.join(this.root, 'cluster.toml');
    fs.writeFileSync(
      this.configPath,
      toml({ replicas: this.replicas, proxy: this.proxy, dataDir: path.join(this.root, 'data') }),
    );
    this.processes = new Map(); // name -> { child, exited: Promise<code> }
  }

  /** The replicas' client endpoints, in index order (what `new Client({replicas})` takes). */
  get clientEndpoints() {
    return this.replicas.map((replica) => replica.client);
  }

  spawn(name, args) {
    const log = fs.openSync(path.join(this.root, `${name}.log`), 'a');
    let child;
    try {
      child = spawn(PYTHON, ['-c', WATCHDOG, PYTHON, '-m', 'zvsr', ...args], {
        detached: true, // its own process group, killed as a whole
        stdio: ['pipe', log, log],
        cwd: REPO,
        env: { ...process.env, PYTHONPATH: [REPO, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) },
      });
    } finally {
      fs.closeSync(log);
    }
    live.add(child);
    const exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child);
        resolve(code ?? signal);
      });
      child.once('error', (error) => {
        live.delete(child);
        resolve(`spawn error: ${error.message}`);
      });
    });
    child.stdin.on('error', () => {}); // EPIPE once the watchdog is gone
    this.processes.set(name, { child, exited });
  }

  async waitUntilServing(timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    const client = new Client({ proxy: this.proxy, timeoutMs: 1000 });
    try {
      for (;;) {
        for (const [name, { child }] of this.processes) {
          if (child.exitCode !== null || child.signalCode !== null) {
            throw new Error(`${name} exited during start-up (${child.exitCode ?? child.signalCode})`);
          }
        }
        try {
          await client.get('zvsr:ready');
          return;
        } catch (error) {
          if (!(error instanceof ZvsrError)) throw error;
        }
        if (Date.now() > deadline) throw new Error(`the cluster did not answer within ${timeoutMs} ms`);
      }
    } finally {
      await client.closed();
    }
  }

  /** kill -9 one process group (e.g. "replica-0"); resolves when it has exited. */
  async kill(name, timeoutMs = 10_000) {
    const entry = this.processes.get(name);
    killGroup(entry.child);
    entry.child.stdin.destroy();
    await withTimeout(entry.exited, timeoutMs, `${name} to exit`);
  }

  /** Kill everything, wait for it, remove the directory. Safe to call twice. */
  async stop() {
    const waits = [];
    for (const [name, { child, exited }] of this.processes) {
      killGroup(child);
      child.stdin.destroy();
      waits.push(withTimeout(exited, 10_000, `${name} to exit`));
    }
    try {
      await Promise.all(waits);
    } finally {
      fs.rmSync(this.root, { recursive: true, force: true });
    }
  }

  /** The tail of every process's log, for a failure message. */
  logs(chars = 3000) {
    const parts = [];
    for (const name of this.processes.keys()) {
      try {
        const text = fs.readFileSync(path.join(this.root, `${name}.log`), 'utf8');
        parts.push(`--- ${name}\n${text.slice(-chars)}`);
      } catch {
        parts.push(`--- ${name}: no log`);
      }
    }
    return parts.join('\n');
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

module.exports = { LiveCluster, freePorts, withTimeout, PYTHON };
