// What the lab adds around the seed article's Node servers, kept out of them so that seed-ws.mjs and
// seed-socketio.mjs stay close to the article's text: the command line the lab's Stack gives every replica
// (--name app-N --port P --broker B --redis URL, and for the Redis Streams adapter --maxlen N
// --max-disconnection-ms MS), a /healthz endpoint, a wait for Redis at start-up, the
// versions that ran, and a clean exit on SIGTERM.
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
const REDIS_RE = /^redis:\/\/([a-z0-9.-]{1,253}):([0-9]{1,5})(\/[0-9]{1,2})?$/;
// the response header nginx's open-source cookie stickiness turns into the cookie (as labs/app/sio.py)
export const REPLICA_HEADER = 'X-Wslab-Replica';

function refuse(message) {
  console.error(`bad arguments: ${message}`);
  process.exit(2);
}

/** The replica's options, validated: one line on stderr and exit 2 otherwise. `brokers`: those it takes. */
export function options(brokers) {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        name: { type: 'string' }, port: { type: 'string', default: '8000' },
        broker: { type: 'string' }, redis: { type: 'string', default: 'redis://redis:6379/0' },
        maxlen: { type: 'string', default: '10000' },
        'max-disconnection-ms': { type: 'string', default: '120000' },
      },
    }));
  } catch (err) {
    refuse(err.message);
  }
  const port = Number(values.port);
  if (!NAME_RE.test(values.name ?? '')) refuse('--name must match [A-Za-z0-9_-]{1,64}');
  if (!Number.isInteger(port) || port < 1 || port > 65535) refuse('--port must be 1..65535');
  if (!brokers.includes(values.broker)) refuse(`--broker must be one of ${brokers.join(', ')}`);
  if (!REDIS_RE.test(values.redis)) refuse('--redis must be redis://HOST:PORT[/DB]');
  const maxLen = integer(values.maxlen, 1, 10_000_000, '--maxlen');
  const maxDisconnectionMs = integer(values['max-disconnection-ms'], 1, 3_600_000, '--max-disconnection-ms');
  return { name: values.name, port, broker: values.broker, redis: values.redis, maxLen, maxDisconnectionMs };
}

function integer(text, min, max, flag) {
  const value = /^[0-9]{1,8}$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) refuse(`${flag} must be an integer ${min}..${max}`);
  return value;
}

/** Resolve once Redis accepts a TCP connection (it starts beside the replicas); fail after `timeout` ms.
 * node-redis emits 'error' for a refused first connection, and a client without an 'error' listener (the
 * article's) throws it: the process would exit whenever Redis came up a moment after it. */
export async function waitForRedis(url, timeout = 30_000) {
  const [, host, port] = REDIS_RE.exec(url);
  const deadline = Date.now() + timeout;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const socket = connect({ host, port: Number(port) });
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => { socket.destroy(); resolve(false); });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis at ${host}:${port} not reachable after ${timeout} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** An HTTP server answering GET /healthz with `health()` (an object with `ok`): 200 when ok, else 503. */
export function httpServer(health) {
  return createServer(async (req, res) => {
    if (new URL(req.url, 'http://localhost').pathname !== '/healthz') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    let body;
    try {
      body = await health();
    } catch (err) {
      body = { ok: false, error: String(err) };
    }
    res.writeHead(body.ok ? 200 : 503, { 'Content-Type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
  });
}

/** node's version and those of the packages that ran, read from their package.json. */
export function versions(packages) {
  const out = { node: process.versions.node };
  for (const name of packages) {
    const url = new URL(`./node_modules/${name}/package.json`, import.meta.url);
    out[name] = JSON.parse(readFileSync(url, 'utf8')).version;
  }
  return out;
}

/** On SIGTERM or SIGINT: log, run `close`, exit 0 (Node as PID 1 has no default handler: docker stop
 * would wait its full timeout, then SIGKILL). Exit after 1 s even if `close` has not finished. */
export function exitOnSignal(name, close) {
  const stop = () => {
    console.log(`${name} stopping on signal`);
    setTimeout(() => process.exit(0), 1000).unref();
    Promise.resolve().then(close).catch(() => {}).finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

/** Count unhandled promise rejections, log each, and keep running. Node (since 15) exits on the first one
 * by default; the article's Socket.IO server meets one whenever Redis drops the adapter's connection while
 * a PUBLISH awaits its reply, so whether it survives a Redis restart is a race. Counting them keeps the
 * process up, so that a run measures what the adapter loses, and says how often the article's code would
 * have exited (`unhandled_rejections` in /healthz). */
export function countRejections(counters) {
  counters.unhandled_rejections = 0;
  process.on('unhandledRejection', (err) => {
    counters.unhandled_rejections += 1;
    console.error(`unhandled rejection (the article's code exits here): ${err?.message ?? err}`);
  });
}
