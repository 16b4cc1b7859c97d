// socket.io-client's connection state recovery against the lab's Socket.IO replicas, from Node.
//
//   node recovery_socketio.mjs --port P --away-ms MS [--messages 200] [--interval-ms 20] [--room R]
//
// Three clients, socket.io-client's defaults but WebSocket only (no stickiness needed behind round-robin):
//   sender  joins the room and sends --messages chat messages, one every --interval-ms, on a replica other
//           than the receiver's;
//   receiver joins, receives; once 40 messages are sent it prints {"kill": REPLICA} (the replica holding its
//           session) and waits for a line on stdin (the caller killed it); it reconnects by itself. Once it
//           has a message sent after it came back, it closes its own transport and comes back a second time;
//   away    joins, receives 5 messages, closes its transport and comes back only after --away-ms (its
//           reconnection delay): past max_disconnection_duration its session must be gone;
//   cut     joins; once the receiver is back the second time, it closes its transport, the script prints
//           {"trim": "sio:stream", "minid": ID} and waits for a line on stdin (the caller trimmed the entries
//           before ID: the first one it missed among them), and it comes back 2 s after it left: it must get
//           a new session, not a replay with a hole.
// At the end the receiver's replica is stopped gracefully ({"stop": REPLICA}, then a line on stdin) while 20
// more messages are sent: it recovers a third time.
// Prints one JSON object: for each client its connects (sid, recovered), what it got, missing and duplicated
// message ids, and whether every event carried a string offset as its last argument.
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const port = Number(args.port);
const awayMs = Number(args["away-ms"]);
const total = Number(args.messages ?? 200);
const intervalMs = Number(args["interval-ms"] ?? 20);
const room = args.room ?? "recovery";
const deadlineMs = Number(args.deadline ?? 30000);
if (!port || !awayMs) {
  console.error("usage: node recovery_socketio.mjs --port P --away-ms MS [--messages N] [--interval-ms MS]");
  process.exit(2);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));
async function until(check, what, ms = deadlineMs) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`${what}: not after ${ms} ms`);
    await sleep(10);
  }
}

const clients = [];
function client(name, options = {}) {
  const socket = io(`http://127.0.0.1:${port}`, { transports: ["websocket"], forceNew: true, ...options });
  const c = { name, socket, replica: null, connects: [], got: [], offsets: [], untagged: 0, errors: [] };
  clients.push(c);
  let droppedAt = null;
  socket.on("disconnect", () => { droppedAt = Date.now(); });
  socket.on("connect", () => c.connects.push({
    sid: socket.id, recovered: socket.recovered === true, away_ms: droppedAt === null ? null : Date.now() - droppedAt,
  }));
  socket.on("new-message", (frame, offset) => {
    c.got.push(frame?.id);
    if (typeof offset === "string") c.offsets.push(offset);
    else c.untagged += 1;
  });
  socket.on("connect_error", (err) => c.errors.push(`connect_error: ${err.message}`));
  return c;
}

function join(c) {
  return new Promise((resolve, reject) => {
    const go = () => c.socket.emit("join-room", { room, client: c.name }, (ack) => {
      if (ack?.error) reject(new Error(`${c.name}: join-room refused: ${ack.error}`));
      c.replica = ack?.replica ?? null;
      resolve(c.replica);
    });
    if (c.socket.connected) go();
    else c.socket.once("connect", go);
  });
}

function summary(c, expected) {
  const seen = new Set(c.got);
  return {
    replica: c.replica, connects: c.connects, got: c.got.length,
    missing: expected.filter((id) => !seen.has(id)), duplicates: c.got.length - seen.size,
    untagged: c.untagged, offsets_increase: c.offsets.every((o, i) => i === 0 || later(o, c.offsets[i - 1])),
    errors: c.errors,
  };
}

function later(a, b) {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return am > bm || (am === bm && as > bs);
}

async function main() {
  const receiver = client("receiver");
  const holder = await join(receiver);
  let sender;
  for (let attempt = 0; ; attempt++) {
    sender = client("sender");
    if ((await join(sender)) !== holder) break;
    sender.socket.close();
    if (attempt === 5) throw new Error(`every sender landed on ${holder}`);
  }
  const away = client("away", { reconnectionDelay: awayMs, reconnectionDelayMax: awayMs, randomizationFactor: 0 });
  await join(away);
  const cut = client("cut", { reconnectionDelay: 2000, reconnectionDelayMax: 2000, randomizationFactor: 0 });
  await join(cut);

  const sent = [];
  let acked = 0;
  async function send(from, to) {
    for (let i = from; i <= to; i++) {
      const id = `m${i}`;
      sent.push(id);
      sender.socket.emit("chat-message", { id, ts: Date.now() }, (ack) => {
        if (ack?.error) sender.errors.push(`chat-message refused: ${ack.error}`);
        else acked += 1;
      });
      await sleep(intervalMs);
    }
  }
  const sending = send(1, total);
  const awayTrip = (async () => {
    await until(() => away.got.length >= 5, "away: 5 messages");
    away.socket.io.engine.close(); // a transport close: it comes back after awayMs
    await until(() => away.connects.length >= 2, "away: back", awayMs + 15000);
  })();

  await until(() => sent.length >= 40, "40 messages sent");
  console.log(JSON.stringify({ kill: holder }));
  await nextLine();
  await until(() => receiver.connects.length >= 2, "receiver: back after the kill");
  const backAt = Math.min(sent.length + 1, total); // live again: in its room without joining it anew
  await until(() => receiver.got.includes(`m${backAt}`), "receiver: a message sent after it came back");
  receiver.socket.io.engine.close(); // a second drop, while messages keep coming
  await until(() => receiver.connects.length >= 3, "receiver: back after its own close");
  await until(() => cut.socket.connected, "cut: connected"); // it may be coming back from the kill
  const cutFrom = cut.connects.length;
  const gotBefore = cut.got.length;
  await until(() => cut.got.length > gotBefore, "cut: a message on this connection");
  cut.socket.io.engine.close();
  const cutAt = sent.length;
  await until(() => sent.length >= Math.min(total, cutAt + 5), "5 messages sent while cut is away");
  // the entry after its offset goes (entries are numbered "<n>-0"), long read by every replica by now
  const minid = `${BigInt(cut.offsets.at(-1).split("-")[0]) + 2n}-0`;
  console.log(JSON.stringify({ trim: "sio:stream", minid }));
  await nextLine();
  await until(() => cut.connects.length > cutFrom, "cut: back");

  await sending;
  await awayTrip;

  // a graceful stop (SIGTERM) of the receiver's replica, and 20 more messages meanwhile (the sender, if it
  // was there too, comes back and sends what it buffered)
  const last = await join(receiver); // where it is now (the same room: nothing changes)
  const before = receiver.connects.length;
  console.log(JSON.stringify({ stop: last }));
  await nextLine();
  if (last === sender.replica) {
    // it was there too: it comes back, recovered unless its session's start was trimmed (it never got an
    // event: its session replays from where the stream was when it began), and then joins anew
    await until(() => sender.connects.length > 1 && sender.socket.connected, "sender: back after the stop");
    if (!sender.connects.at(-1).recovered) await join(sender);
  }
  await send(total + 1, total + 20);
  await until(() => receiver.connects.length > before, "receiver: back after the graceful stop");
  await until(() => acked >= sent.length, "sender: every message acked");
  await until(() => new Set(receiver.got).size >= sent.length, "receiver: every message", 10000)
    .catch((e) => receiver.errors.push(e.message));
  const out = { holder, sent: sent.length, acked, receiver: summary(receiver, sent), away: summary(away, sent), cut: summary(cut, sent),
                sender: { replica: sender.replica, connects: sender.connects, errors: sender.errors } };
  for (const c of [receiver, sender, away, cut]) c.socket.close();
  lines.close();
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.error(err.stack ?? String(err));
  for (const c of clients) console.error(JSON.stringify({ name: c.name, replica: c.replica, connects: c.connects, got: c.got.length, errors: c.errors }));
  process.exit(1);
});
