// The load users of labs/load/users.py, in Node with `ws`: the same session of steps through the same files,
// the same frames and the same tallies, at a fraction of the CPU per delivery (no gevent, no per-frame
// Python). A load driver beside locust, chosen with LoadSpec(driver="node"); labs/load/step.py runs it.
//
//   node users.mjs --dir D --host H --port P --room R --users N --processes K [--payload B] [--drain S]
//
// The parent forks K worker processes, each with its share of the N users, and waits; the session ends
// them by signalling the process group. Each user:
//   1. connects to ws://H:P/ws?room=R&client=<name>, waits for the welcome, writes joined/<name> (its
//      replica), or users/0/<name>.json with the error;
//   2. for step n = 1, 2, … waits for go-<n>.json ({start, stop, rate} on CLOCK_MONOTONIC, which
//      process.hrtime reads too), sends rate messages/s from start to stop on its own phase of the interval,
//      each {"id": "<name>-<n>-<k>", "ts": <send time>, "sender": <name>[, "body"]};
//   3. reads until nothing arrived for QUIET_S after stop (at most --drain s) and writes users/<n>/<name>.json.
// A delivery is a "msg" frame from the lab's replica, or (the seed article's Node server, which relays the
// client's own frame) an untyped frame with an id from another sender. Latencies go into the tally as
// [microseconds, count] pairs rounded to three significant digits: what an HdrHistogram keeps.
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { crc32 } from 'node:zlib';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

// `ws` comes from the Node clients' pinned packages (tests/node, `make node-deps`)
const require = createRequire(new URL('../../tests/node/package.json', import.meta.url));
const WebSocket = require('ws');

const QUIET_S = 0.5;
const GO_POLL_MS = 10;
const LATE_S = 0.010;
const TICK_MS = 1;

const { values: opts } = parseArgs({
  options: {
    dir: { type: 'string' }, host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string' },
    room: { type: 'string', default: 'load' }, users: { type: 'string' }, processes: { type: 'string', default: '1' },
    payload: { type: 'string', default: '0' }, drain: { type: 'string', default: '5' },
    worker: { type: 'string' },
  },
});

const now = () => Number(process.hrtime.bigint()) / 1e9; // CLOCK_MONOTONIC seconds, as Python's time.monotonic()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function atomicWrite(path, text) {
  writeFileSync(`${path}.partial`, text);
  renameSync(`${path}.partial`, path); // the bench never reads half a file
}

function round3(us) { // three significant digits, as the HdrHistogram the tallies merge into keeps
  const v = Math.max(1, Math.round(us));
  const scale = 10 ** Math.max(0, Math.floor(Math.log10(v)) - 2);
  return Math.round(v / scale) * scale;
}

class User {
  constructor(name) {
    this.name = name;
    this.replica = '';
    this.dropped = false;
    this.error = '';
    this.done = false;
    this.step = 0;
    this.reset();
  }

  reset() {
    this.sent = 0; this.acked = 0; this.lateSends = 0; this.stale = 0; this.duplicates = 0;
    this.seen = new Map(); // sender -> Set of sequence numbers
    this.latency = new Map(); // rounded microseconds -> count
    this.lastActivity = 0;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const url = `ws://${opts.host}:${opts.port}/ws?room=${opts.room}&client=${this.name}`;
      const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 10000 });
      this.ws = ws;
      const timer = setTimeout(() => reject(new Error('no welcome within 10 s')), 10000);
      ws.on('message', (data) => {
        const frame = JSON.parse(data.toString());
        if (frame.type === 'welcome') {
          clearTimeout(timer);
          resolve(String(frame.replica));
        } else {
          this.frame(frame);
        }
      });
      ws.on('error', (err) => { clearTimeout(timer); this.closed(`${err.message}`); reject(err); });
      ws.on('close', (code) => this.closed(`closed ${code}`));
    });
  }

  frame(frame) {
    const t = now();
    this.lastActivity = t;
    if (frame.type === 'ack') {
      this.acked += 1;
    } else if (frame.type === 'msg' || (frame.type === undefined && frame.id !== undefined)) {
      if (frame.sender === this.name) return; // the seed article's server relays to the sender too
      const parts = String(frame.id).split('-');
      const step = Number(parts[parts.length - 2]);
      const seq = Number(parts[parts.length - 1]);
      if (!Number.isInteger(step) || !Number.isInteger(seq) || typeof frame.ts !== 'number') return;
      if (step !== this.step) { this.stale += 1; return; }
      let got = this.seen.get(String(frame.sender));
      if (got === undefined) { got = new Set(); this.seen.set(String(frame.sender), got); }
      if (got.has(seq)) { this.duplicates += 1; return; }
      got.add(seq);
      const us = round3(Math.min(Math.max((t - frame.ts) * 1e6, 1), 60e6));
      this.latency.set(us, (this.latency.get(us) ?? 0) + 1);
    }
  }

  closed(reason) {
    if (!this.done && !this.dropped) {
      this.dropped = true;
      this.error = this.error || reason.slice(0, 200);
    }
  }

  send(k, body) {
    const id = `${this.name}-${this.step}-${k}`;
    const msg = { id, ts: now(), sender: this.name };
    if (body) msg.body = body;
    this.sent += 1;
    this.ws.send(JSON.stringify(msg));
  }

  tally() {
    const received = {};
    for (const s of [...this.seen.keys()].sort()) received[s] = this.seen.get(s).size;
    return {
      name: this.name, replica: this.replica, sent: this.sent, acked: this.acked, dropped: this.dropped,
      error: this.error, late_sends: this.lateSends, stale: this.stale, received, duplicates: this.duplicates,
      latency_counts: [...this.latency.entries()],
    };
  }

  report(n) {
    const directory = join(opts.dir, 'users', String(n));
    mkdirSync(directory, { recursive: true });
    atomicWrite(join(directory, `${this.name}.json`), JSON.stringify(this.tally()));
  }
}

async function awaitGo(n) {
  const go = join(opts.dir, `go-${n}.json`);
  const end = join(opts.dir, 'end');
  while (!existsSync(go)) {
    if (existsSync(end)) return null;
    await sleep(GO_POLL_MS);
  }
  return JSON.parse(readFileSync(go, 'utf8'));
}

/** Every user's sends of one step, from one timer: each tick sends what is due (a user on its own phase). */
async function sendAll(users, go, body) {
  const interval = 1 / go.rate;
  const count = Math.round((go.stop - go.start) * go.rate);
  const plan = users.map((u) => ({ user: u, k: 1, offset: (crc32(u.name) % 1000) / 1000 * interval }));
  while (plan.length) {
    const t = now();
    for (let i = plan.length - 1; i >= 0; i -= 1) {
      const p = plan[i];
      while (p.k <= count && go.start + p.offset + (p.k - 1) * interval <= t) {
        if (p.user.dropped) { p.k = count + 1; break; }
        if (t - (go.start + p.offset + (p.k - 1) * interval) > LATE_S) p.user.lateSends += 1;
        p.user.send(p.k, body);
        p.k += 1;
      }
      if (p.k > count) plan.splice(i, 1);
    }
    // sleep until the next send is due (timers fire after >= 1 ms)
    const next = Math.min(...plan.map((p) => go.start + p.offset + (p.k - 1) * interval));
    if (plan.length) await sleep(Math.max(TICK_MS, (next - now()) * 1000));
  }
}

async function worker(count) {
  const users = Array.from({ length: count }, (_, i) => new User(`u${process.pid}n${i + 1}`));
  const body = 'x'.repeat(Number(opts.payload));
  mkdirSync(join(opts.dir, 'joined'), { recursive: true });
  await Promise.all(users.map(async (u) => {
    try {
      u.replica = await u.connect();
      writeFileSync(join(opts.dir, 'joined', u.name), u.replica);
    } catch (err) {
      u.error = u.error || `${err.message}`.slice(0, 200);
      u.report(0);
    }
  }));
  const live = users.filter((u) => u.replica);
  for (let n = 1; ; n += 1) {
    const go = await awaitGo(n);
    if (go === null) break;
    for (const u of live) { u.step = n; u.reset(); }
    await sleep(Math.max(0, (go.start - now()) * 1000));
    await sendAll(live, go, body);
    const deadline = now() + Number(opts.drain);
    for (const u of live) u.lastActivity = Math.max(u.lastActivity, now());
    while (now() < deadline && live.some((u) => now() - u.lastActivity < QUIET_S)) await sleep(50);
    for (const u of live) u.report(n);
  }
  for (const u of live) { u.done = true; u.ws.close(1000); }
  process.exit(0);
}

if (opts.worker !== undefined) {
  await worker(Number(opts.worker));
} else {
  const total = Number(opts.users);
  const processes = Math.max(1, Math.min(Number(opts.processes), total));
  const args = process.argv.slice(2);
  const children = [];
  for (let i = 0; i < processes; i += 1) {
    const share = Math.floor(total / processes) + (i < total % processes ? 1 : 0);
    children.push(fork(new URL(import.meta.url).pathname, [...args, '--worker', String(share)]));
  }
  process.on('SIGTERM', () => { for (const c of children) c.kill('SIGKILL'); process.exit(0); });
  let left = children.length;
  for (const c of children) c.on('exit', () => { left -= 1; if (left === 0) process.exit(0); });
}
