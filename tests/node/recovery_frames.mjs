// Records what socket.io-client (4.8, with a server that has connectionStateRecovery on) writes and reads
// on the wire across a recovery, for tests/unit/test_recovery_wire.py.
//
//   node recovery_frames.mjs --port P [--room R]
//
// P: a lab stack's balancer in front of the seed Node server with @socket.io/redis-streams-adapter
// (`python -m labs up recovery-transport-close`). Three clients join room R with the article's events:
// - "listener" receives two messages (each event carries its offset), closes its transport itself
//   (socket.io.engine.close(): no Socket.IO DISCONNECT), misses two more, and reconnects: its CONNECT
//   carries {pid, offset}; the server replays the two and answers recovered;
// - "fresh" closes its transport before it received anything, and reconnects with its pid alone;
// - "sender" sends the four messages.
// Prints one JSON object: {"listener": {"frames": [[dir, text], ...], "recovered": bool},
//                          "fresh": {...}}, each frame an Engine.IO message as its text goes on the wire
// ("4" then the Socket.IO packet: 40{...} a CONNECT, 42[...] an EVENT), dir "out" (written) or "in" (read),
// in order.
import { Manager } from "socket.io-client";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const port = Number(args.port);
const room = args.room ?? "lobby";
if (!port) {
  console.error("usage: node recovery_frames.mjs --port P [--room R]");
  process.exit(2);
}
const url = `http://127.0.0.1:${port}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let step = "connecting";
const deadline = setTimeout(() => { console.error(`timed out while ${step}`); process.exit(1); }, 30_000);

const once = (socket, event) => new Promise((resolve) => socket.once(event, resolve));
const join = (socket) => new Promise((resolve) => socket.emit("join-room", room, resolve));

function recorded(name) {
  // the Manager's "open" listener is ours before the socket's (which writes CONNECT on it), so every frame
  // of every connection is seen
  const manager = new Manager(url, { transports: ["websocket"], reconnectionDelay: 200, reconnectionDelayMax: 200,
                                     randomizationFactor: 0, autoConnect: false });
  const frames = [];
  manager.on("open", () => {
    const engine = manager.engine;
    // as on the wire: Engine.IO's message type (4) before the Socket.IO packet
    engine.on("packetCreate", (p) => { if (p.type === "message") frames.push(["out", `4${p.data}`]); });
    engine.on("packet", (p) => { if (p.type === "message") frames.push(["in", `4${p.data}`]); });
  });
  const socket = manager.socket("/");
  const got = [];
  socket.on("new-message", (message) => got.push(message.id));
  const connected = once(socket, "connect");
  socket.connect();
  return { name, socket, frames, got, connected };
}


async function until(test) {
  while (!test()) await sleep(20);
}

const listener = recorded("listener");
const fresh = recorded("fresh");
const sender = recorded("sender");
for (const c of [listener, fresh, sender]) {
  await c.connected;
  await join(c.socket);
}
step = "fresh reconnecting";
// fresh: away before it received anything
const freshBack = once(fresh.socket, "connect");
fresh.socket.io.engine.close();
await freshBack;
await join(fresh.socket);

const send = (n) => sender.socket.emit("chat-message", room, { id: `m${n}`, sender: "sender" });
step = "listener receiving";
send(1);
send(2);
await until(() => listener.got.length >= 2);
const listenerBack = once(listener.socket, "connect");
listener.socket.io.engine.close();
send(3);
send(4);
step = "sender receiving";
await until(() => sender.got.length >= 4);
step = "listener reconnecting";
await listenerBack;
step = "listener receiving the replay";
await until(() => listener.got.length >= 4);
clearTimeout(deadline);
const out = {};
for (const c of [listener, fresh]) out[c.name] = { frames: c.frames, recovered: c.socket.recovered, got: c.got };
console.log(JSON.stringify(out));
for (const c of [listener, fresh, sender]) c.socket.disconnect();
