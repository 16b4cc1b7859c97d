// The seed article's "Redis PubSub 브로커 패턴" server (ws + node-redis), as a lab replica (app seed-node-ws).
//
// Where it differs from the article's text, and only there (each place is marked "lab:" below):
// - --broker picks the subscribe call: "seed-subscribe-glob" runs the article as written,
//   subscriber.subscribe('chat:*', ...), which subscribes to the literal channel named "chat:*" and so
//   hears nothing published to "chat:<room>"; "redis-pubsub" runs the fix, subscriber.pSubscribe(...).
// - The port and the Redis URL come from the command line (the article: 8080, redis://redis:6379), and the
//   WebSocketServer shares its port with an HTTP server that answers GET /healthz (lab.mjs).
// - It waits until Redis accepts connections before connecting (lab.mjs says why).
// - On connection it sends {"type": "welcome", "replica", "client", "room"}, and after each publish
//   {"type": "ack", "id"} with the id of the client's JSON message: the lab's clients learn their replica
//   and that Redis has their message. It counts publishes that reached no subscriber (PUBLISH's reply).
// - It exits cleanly on SIGTERM.
// What it relays is unchanged: the client's frame, as text, to every open connection of the room on this
// server, the sender's own included.
// As in the article, the Redis clients have no 'error' listener: node-redis then throws a connection
// error, and the process exits if Redis goes away while it runs.
import { WebSocketServer } from 'ws';
import { createClient } from 'redis';
import * as lab from './lab.mjs';

const opts = lab.options(['seed-subscribe-glob', 'redis-pubsub']); // lab
const counters = { connections: 0, received: 0, published: 0, published_to_nobody: 0 }; // lab
let ready = false; // lab
const server = lab.httpServer(health); // lab
const wss = new WebSocketServer({ server }); // lab: the article's { port: 8080 }, sharing the port with /healthz
server.listen(opts.port); // lab
const redisClients = []; // lab: quit on SIGTERM
lab.exitOnSignal(opts.name, async () => { // lab: a clean exit on SIGTERM
  for (const ws of wss.clients) ws.close(1001, 'server stopping');
  await Promise.allSettled(redisClients.map((c) => c.quit()));
});
await lab.waitForRedis(opts.redis); // lab
const publisher = createClient({ url: opts.redis });
const subscriber = publisher.duplicate();
await publisher.connect();
await subscriber.connect();
redisClients.push(publisher, subscriber); // lab
// 로컬 연결 관리
const localConnections = new Map(); // roomId -> Set<WebSocket>
// Redis 구독: 다른 서버에서 발행한 메시지 수신
const subscribe = opts.broker === 'redis-pubsub' ? 'pSubscribe' : 'subscribe'; // lab: the fix, or as written
await subscriber[subscribe]('chat:*', (message, channel) => {
  const roomId = channel.split(':')[1];
  const clients = localConnections.get(roomId) || new Set();
  for (const ws of clients) {
    if (ws.readyState === 1) { // OPEN
      ws.send(message);
    }
  }
});
wss.on('connection', (ws, req) => {
  const roomId = new URL(req.url, 'http://localhost').searchParams.get('room');
  const client = new URL(req.url, 'http://localhost').searchParams.get('client'); // lab
  counters.connections += 1; // lab
  ws.send(JSON.stringify({ type: 'welcome', replica: opts.name, client, room: roomId })); // lab
  // 로컬 연결 등록
  if (!localConnections.has(roomId)) {
    localConnections.set(roomId, new Set());
  }
  localConnections.get(roomId).add(ws);
  ws.on('message', async (data) => {
    counters.received += 1; // lab
    // Redis로 발행 -> 모든 서버가 수신
    const receivers = await publisher.publish(`chat:${roomId}`, data.toString());
    ack(ws, data, receivers); // lab
  });
  ws.on('close', () => {
    localConnections.get(roomId)?.delete(ws);
  });
});
ready = true; // lab

// lab: {"type": "ack", "id"} once Redis has the message (no ack for a frame that is not a JSON message)
function ack(ws, data, receivers) {
  counters.published += 1;
  if (receivers === 0) counters.published_to_nobody += 1;
  let id;
  try {
    id = JSON.parse(data.toString()).id;
  } catch {
    return;
  }
  if ((typeof id === 'string' || typeof id === 'number') && ws.readyState === 1) {
    ws.send(JSON.stringify({ type: 'ack', id: String(id) }));
  }
}

// lab: GET /healthz
function health() {
  const ok = ready && redisClients.every((c) => c.isReady);
  const rooms = ready ? Object.fromEntries([...localConnections].map(([room, set]) => [room, set.size])) : {};
  return { replica: opts.name, app: 'seed-node-ws', ok, ...counters, rooms, versions: lab.versions(['ws', 'redis']) };
}
