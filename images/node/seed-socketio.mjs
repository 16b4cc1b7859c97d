// The seed article's "Socket.IO + Redis Adapter" server, as a lab replica (app seed-node-socketio).
//
// Where it differs from the article's text, and only there (each place is marked "lab:" below):
// - --broker "redis-pubsub" runs it as written, with @socket.io/redis-adapter; "none" runs it with the
//   adapter off: the lines that create the Redis clients and the adapter are skipped (no Redis runs then),
//   so rooms live in this process only; "redis-streams" swaps the adapter for
//   @socket.io/redis-streams-adapter (its `maxLen` from --maxlen) and turns connection state recovery on
//   (`maxDisconnectionDuration` from --max-disconnection-ms): what a reader reaches for when PubSub's
//   at-most-once bites. Everything else stays as written. Its Redis client counts its errors (as the
//   adapter's README has it, without an 'error' listener, the process ends on a Redis restart), and every
//   session it persists or restores, and why a restore failed, is counted and logged (watchSessions).
// - The Server is attached to an HTTP server that also answers GET /healthz (lab.mjs), on the port the
//   command line gives (the article: 3000); the Redis URL comes from the command line too, and the Redis
//   clients name themselves after the replica (CLIENT SETNAME), so /healthz can see in CLIENT LIST that
//   the adapter's subscriptions hold before the lab sends anything.
// - It waits until Redis accepts connections before connecting (lab.mjs says why).
// - Every HTTP response names the replica in X-Wslab-Replica (Engine.IO's "headers" event), which nginx's
//   open-source cookie stickiness turns into the cookie; the join-room handler calls the client's ack, if
//   it sent one, with {"replica", "room"}, so the lab's clients learn where they are.
// - An unhandled promise rejection is counted and logged instead of ending the process (lab.mjs says why):
//   as written, the server exits when Redis drops the adapter's connection while a PUBLISH awaits its
//   reply (seen here on a Redis restart: all three servers, in one run of two).
// - It exits cleanly on SIGTERM: with recovery on, through io.close(), socket.io's graceful shutdown (its
//   sockets close as "server shutting down", a reason whose session is kept for recovery); else every
//   socket is disconnected by the server (a session that recovery would not keep).
// The events are the article's: join-room roomId; chat-message roomId, message -> new-message message to
// the whole room, the sender included.
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createAdapter as createStreamsAdapter } from '@socket.io/redis-streams-adapter'; // lab
import { createClient } from 'redis';
import * as lab from './lab.mjs';

const opts = lab.options(['none', 'redis-pubsub', 'redis-streams']); // lab
const recovery = opts.broker === 'redis-streams'; // lab: the Streams adapter, with connection state recovery
const counters = { connections: 0, recovered: 0, joins: 0, received: 0, redis_errors: 0 }; // lab
lab.countRejections(counters); // lab: the article's code would exit on an unhandled rejection
let ready = false; // lab
let pubClient = null; // lab: declared here, created below as in the article
const httpServer = lab.httpServer(health); // lab
const io = new Server(httpServer, { // lab: the article's new Server(3000, {...}), on the lab's HTTP server
  cors: { origin: '*' },
  transports: ['websocket', 'polling'],
  ...(recovery ? { connectionStateRecovery: { maxDisconnectionDuration: opts.maxDisconnectionMs } } : {}), // lab
});
io.engine.on('headers', (headers) => { headers[lab.REPLICA_HEADER] = opts.name; }); // lab
httpServer.listen(opts.port); // lab
lab.exitOnSignal(opts.name, async () => { // lab: a clean exit on SIGTERM
  if (recovery) await io.close(); // sessions persisted (a SET each), then the adapter closed
  else io.disconnectSockets(true);
  await Promise.allSettled(redisClients().map((c) => c.quit())); // QUIT goes after what is queued
});
if (recovery) { // lab: the Streams adapter, with recovery
  await lab.waitForRedis(opts.redis);
  pubClient = createClient({ url: opts.redis, name: opts.name });
  // as the adapter's README has it, the client has no 'error' listener, and node-redis's first error (a
  // Redis restart) would end the process: count them instead, so the run measures what recovery does
  pubClient.on('error', () => { counters.redis_errors += 1; });
  await pubClient.connect();
  io.adapter(createStreamsAdapter(pubClient, { maxLen: opts.maxLen }));
  watchSessions(io.of('/').adapter);
} else if (opts.broker === 'redis-pubsub') { // lab: the adapter on
  await lab.waitForRedis(opts.redis); // lab
  // Redis 어댑터 설정 (자동으로 PubSub 처리)
  pubClient = createClient({ url: opts.redis, name: opts.name }); // lab: name
  const subClient = pubClient.duplicate();
  await Promise.all([pubClient.connect(), subClient.connect()]);
  io.adapter(createAdapter(pubClient, subClient));
}
// 이제 Room 기능이 다중 서버에서 자동으로 동작
io.on('connection', (socket) => {
  counters.connections += 1; // lab
  if (socket.recovered) counters.recovered += 1; // lab
  socket.on('join-room', (roomId, ack) => { // lab: ack
    socket.join(roomId);
    counters.joins += 1; // lab
    if (typeof ack === 'function') ack({ replica: opts.name, room: roomId }); // lab
  });
  socket.on('chat-message', (roomId, message) => {
    counters.received += 1; // lab
    // 모든 서버의 해당 Room 클라이언트에게 전달
    io.to(roomId).emit('new-message', message);
  });
});
ready = true; // lab

// lab: the Redis clients the adapter uses (none with the adapter off; the Streams adapter closes its own
// duplicates, the client it was given is ours)
function redisClients() {
  const adapter = io.of('/').adapter;
  return [...new Set([pubClient, adapter.pubClient, adapter.subClient])].filter(Boolean);
}

// lab: what the adapter does with sessions, counted and logged (one JSON line each, with the time in ms):
// each session it persists when a socket closes, each restore and why one failed (socket.io then starts a
// new session and says only `recovered: false`)
function watchSessions(adapter) {
  counters.persisted = 0;
  counters.restored = 0;
  counters.restore_failed = {};
  const persist = adapter.persistSession.bind(adapter);
  const restore = adapter.restoreSession.bind(adapter);
  adapter.persistSession = (session) => {
    counters.persisted += 1;
    console.log(JSON.stringify({ at: Date.now(), persist: session.pid, rooms: session.rooms.length }));
    return persist(session);
  };
  adapter.restoreSession = async (pid, offset) => {
    // asked on the same connection just before the adapter's own GETDEL and XRANGE, which say only
    // "session or offset not found": whether the session, and the offset's entry, were there
    const seen = Promise.all([pubClient.exists(`sio:session:${pid}`),
                              /^[0-9]+-[0-9]+$/.test(offset) ? pubClient.xRange('socket.io', offset, offset) : []]);
    seen.catch(() => {}); // read only when the restore failed
    try {
      const session = await restore(pid, offset);
      counters.restored += 1;
      console.log(JSON.stringify({ at: Date.now(), restored: pid, offset, missed: session.missedPackets.length }));
      return session;
    } catch (err) {
      const [session, entry] = await seen.catch(() => [null, null]);
      const why = `${String(err?.message ?? err)} (session ${session ? 'present' : session === 0 ? 'absent' : '?'}, `
        + `offset ${entry === null ? '?' : entry.length ? 'present' : 'absent'})`;
      counters.restore_failed[why] = (counters.restore_failed[why] ?? 0) + 1;
      console.log(JSON.stringify({ at: Date.now(), restore_failed: pid, offset, why }));
      throw err;
    }
  };
}

// lab: this replica's Redis connections as Redis sees them (CLIENT LIST, by the name they share): the
// channels and patterns its subscriber holds, and whether one of them is blocked in XREAD (the Streams
// adapter's reader)
async function subscriptions() {
  const list = await pubClient.sendCommand(['CLIENT', 'LIST']);
  const out = { sub: 0, psub: 0, xread: false };
  for (const line of String(list).split('\n')) {
    const fields = Object.fromEntries(line.trim().split(' ').map((f) => f.split('=')));
    if (fields.name !== opts.name) continue;
    out.sub += Number(fields.sub || 0);
    out.psub += Number(fields.psub || 0);
    out.xread ||= fields.cmd === 'xread';
  }
  return out;
}

// lab: GET /healthz, ok once the adapter listens: the classic adapter's pattern and channel subscriptions,
// or the Streams adapter's two channels (this namespace's public one and this server's own) and its reader
async function health() {
  const adapter = recovery ? '@socket.io/redis-streams-adapter' : pubClient ? '@socket.io/redis-adapter' : 'in-memory';
  const subs = ready && pubClient ? await subscriptions() : null;
  const listening = !pubClient || (recovery ? subs.sub >= 2 && subs.xread : subs.psub >= 1 && subs.sub >= 1);
  const ok = ready && listening;
  return {
    replica: opts.name, app: 'seed-node-socketio', ok, adapter, subscriptions: subs, ...counters,
    recovery: recovery ? { maxDisconnectionDuration: opts.maxDisconnectionMs, maxLen: opts.maxLen } : null,
    versions: lab.versions(['socket.io', 'redis', ...(pubClient ? [adapter] : [])]),
  };
}
