// The seed article's Socket.IO client, from Node (`socket.io-client` 4): its events, exactly as it emits them.
//
//   node article_socketio.mjs --port P [--room R] [--clients 6] [--messages 5] [--transports polling,websocket]
//
// The article's server: socket.on('join-room', (roomId) => socket.join(roomId));
//                       socket.on('chat-message', (roomId, message) => io.to(roomId).emit('new-message', message));
// so every client in the room, the sender included, gets every message, as it was sent. Each client emits
// 'join-room' roomId and 'chat-message' roomId, message with an ack callback (the replica answers with its
// name; the article's server would not answer, and the events are the same either way), waits until every
// client joined, sends, and listens on 'new-message'. Prints one JSON object:
//   {"clients": {NAME: {"replica", "transport", "sent", "acked", "expected", "got", "missing", "duplicates",
//                       "mangled", "errors"}}, "expected_per_client": N, "timed_out": bool}
// With withCredentials: true, socket.io-client keeps cookies in Node, which cookie stickiness needs.
import { io } from "socket.io-client";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const port = Number(args.port);
const room = args.room ?? "article";
const count = Number(args.clients ?? 6);
const messages = Number(args.messages ?? 5);
const transports = (args.transports ?? "polling,websocket").split(",");
const deadlineMs = Number(args.deadline ?? 20000);
if (!port) {
  console.error("usage: node article_socketio.mjs --port P [--room R] [--clients N] [--messages M]");
  process.exit(2);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function start(name) {
  const socket = io(`http://127.0.0.1:${port}`, {
    transports, withCredentials: true, reconnection: false, forceNew: true, timeout: 10000,
  });
  const client = { name, socket, replica: null, received: [], acked: 0, errors: [] };
  socket.on("new-message", (message) => client.received.push(message));
  socket.on("connect_error", (err) => client.errors.push(`connect_error: ${err.message}`));
  socket.on("disconnect", (reason) => client.errors.push(`disconnect: ${reason}`));
  client.joined = withTimeout(new Promise((resolve, reject) => {
    socket.on("connect", () => {
      socket.emit("join-room", room, (ack) => {
        if (ack?.error) reject(new Error(`${name}: join-room refused: ${ack.error}`));
        client.replica = ack?.replica ?? null;
        resolve();
      });
    });
  }), 15000, `${name} join-room`);
  return client;
}

async function main() {
  const names = Array.from({ length: count }, (_, i) => `c${i + 1}`);
  const clients = names.map(start);
  await Promise.all(clients.map((c) => c.joined)); // everyone is in before anyone sends

  const expected = [];
  await Promise.all(clients.map(async (c) => {
    for (let i = 0; i < messages; i++) {
      const message = { user: c.name, n: i, text: `hello ${i} from ${c.name}` };
      expected.push(message);
      c.socket.emit("chat-message", room, message, (ack) => {
        if (ack?.error) c.errors.push(`chat-message refused: ${ack.error}`);
        else c.acked += 1;
      });
      await sleep(10);
    }
  }));

  const key = (m) => JSON.stringify([m?.user, m?.n, m?.text]);
  const wanted = new Set(expected.map(key));
  const complete = () => clients.every((c) => new Set(c.received.map(key)).size >= wanted.size && c.acked >= messages);
  const end = Date.now() + deadlineMs;
  while (!complete() && Date.now() < end) await sleep(50);
  const timedOut = !complete();

  const report = {};
  for (const c of clients) {
    const keys = c.received.map(key);
    const got = new Set(keys.filter((k) => wanted.has(k)));
    report[c.name] = {
      replica: c.replica,
      transport: c.socket.io.engine?.transport?.name ?? null,
      sent: messages,
      acked: c.acked,
      expected: wanted.size,
      got: got.size,
      missing: [...wanted].filter((k) => !got.has(k)).slice(0, 20),
      duplicates: keys.length - new Set(keys).size,
      // a message that is not exactly one of those sent (same keys, nothing added)
      mangled: c.received.filter((m) => !wanted.has(key(m)) || Object.keys(m).length !== 3).length,
      errors: [...c.errors],
    };
  }
  for (const c of clients) c.socket.disconnect();
  console.log(JSON.stringify({ clients: report, expected_per_client: wanted.size, timed_out: timedOut }));
}

main().catch((err) => {
  console.error(err.stack ?? String(err));
  process.exit(1);
});
