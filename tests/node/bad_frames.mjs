// Bad frames at the WebSocket replica, from an independent client (Node's `ws`), while healthy clients chat.
//
//   node bad_frames.mjs --port P [--room R] [--healthy 3] [--messages 20] [--interval 10]
//
// Protocol (labs/app/server.py): connect to ws://127.0.0.1:P/ws?room=R&client=C, wait for
// {"type":"welcome","replica":…}, send {"id","ts"}, get {"type":"ack","id",…}; every other member of the room
// gets {"type":"msg","id","sender",…}. Each kind of bad frame is sent by its own client, on its own connection,
// while the healthy clients are sending. Prints one JSON object:
//   {"bad": {KIND: {"replica", "code", "reason", "frames": [frames received after the bad one]}},
//    "healthy": {CLIENT: {"replica", "sent", "acked", "expected", "got", "missing", "duplicates", "closed"}},
//    "acks": [the first few acks], "timed_out": bool}
import WebSocket from "ws";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const port = Number(args.port);
const room = args.room ?? "frames";
const healthyCount = Number(args.healthy ?? 3);
const messages = Number(args.messages ?? 20);
const interval = Number(args.interval ?? 10);
const deadlineMs = Number(args.deadline ?? 20000);
if (!port) {
  console.error("usage: node bad_frames.mjs --port P [--room R] [--healthy N] [--messages M]");
  process.exit(2);
}

const BAD = {
  "binary": Buffer.from([0x7b, 0x7d]), // "{}" as bytes: valid JSON, but in a binary frame
  "not-json": "hello, this is not JSON",
  "json-array": JSON.stringify([{ id: "x1", ts: 1 }]),
  "no-id": JSON.stringify({ ts: 1 }),
  "id-null": JSON.stringify({ id: null, ts: 1 }),
  "id-object": JSON.stringify({ id: { a: 1 }, ts: 1 }),
  "id-bad-chars": JSON.stringify({ id: "a b/c", ts: 1 }),
  "ts-string": JSON.stringify({ id: "t1", ts: "now" }),
  "body-number": JSON.stringify({ id: "b1", ts: 1, body: 42 }),
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const url = (client) => `ws://127.0.0.1:${port}/ws?room=${room}&client=${client}`;

/** Open a connection and resolve once the server's welcome arrived; the returned object keeps every frame. */
function connect(client) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url(client));
    const conn = { client, ws, replica: null, frames: [], closed: null };
    conn.closedP = new Promise((done) => {
      ws.on("close", (code, reason) => {
        conn.closed = { code, reason: reason.toString() };
        done(conn.closed);
      });
    });
    ws.on("error", (err) => reject(new Error(`${client}: ${err.message}`)));
    ws.on("message", (data, isBinary) => {
      const frame = isBinary ? { binary: data.length } : JSON.parse(data.toString());
      if (frame.type === "welcome" && conn.replica === null) {
        conn.replica = frame.replica;
        resolve(conn);
      } else {
        conn.frames.push(frame);
      }
    });
    conn.closedP.then((c) => reject(new Error(`${client} closed before its welcome: ${c.code} ${c.reason}`)));
  });
}

async function badClient(kind) {
  const conn = await connect(`bad-${kind}`);
  conn.frames.length = 0; // only what comes after the bad frame matters
  conn.ws.send(BAD[kind]);
  const closed = await Promise.race([conn.closedP, sleep(5000).then(() => null)]);
  if (closed === null) conn.ws.terminate();
  return [kind, { replica: conn.replica, code: closed?.code ?? null, reason: closed?.reason ?? null,
                  frames: conn.frames.filter((f) => f.type !== "msg") }];
}

async function main() {
  const names = Array.from({ length: healthyCount }, (_, i) => `h${i + 1}`);
  const healthy = await Promise.all(names.map(connect)); // everyone is in before anyone sends
  const sent = Object.fromEntries(names.map((n) => [n, []]));

  const sending = healthy.map(async (conn) => {
    for (let i = 0; i < messages; i++) {
      const id = `${conn.client}-${i}`;
      conn.ws.send(JSON.stringify({ id, ts: performance.now() / 1000, body: `hello ${i}` }));
      sent[conn.client].push(id);
      await sleep(interval);
    }
  });
  await sleep(interval * Math.floor(messages / 3)); // bad frames arrive while the room is busy
  const bad = Object.fromEntries(await Promise.all(Object.keys(BAD).map(badClient)));
  await Promise.all(sending);

  const expectedFor = (client) => names.filter((n) => n !== client).flatMap((n) => sent[n]);
  const complete = () => healthy.every((c) => {
    const got = new Set(c.frames.filter((f) => f.type === "msg").map((f) => f.id));
    const acked = c.frames.filter((f) => f.type === "ack").length;
    return acked >= messages && expectedFor(c.client).every((id) => got.has(id));
  });
  const end = Date.now() + deadlineMs;
  while (!complete() && Date.now() < end) await sleep(50);
  const timedOut = !complete();

  const report = {};
  for (const c of healthy) {
    const ids = c.frames.filter((f) => f.type === "msg").map((f) => f.id);
    const got = new Set(ids);
    const expected = expectedFor(c.client);
    report[c.client] = {
      replica: c.replica,
      sent: sent[c.client].length,
      acked: c.frames.filter((f) => f.type === "ack").length,
      nacked: c.frames.filter((f) => f.type === "nack").length,
      expected: expected.length,
      got: expected.filter((id) => got.has(id)).length,
      missing: expected.filter((id) => !got.has(id)),
      duplicates: ids.length - got.size,
      closed: c.closed, // null: still open when the run ended, as it should be
    };
  }
  const acks = healthy.flatMap((c) => c.frames.filter((f) => f.type === "ack")).slice(0, 3);
  for (const c of healthy) c.ws.close(1000, "done");
  await Promise.all(healthy.map((c) => Promise.race([c.closedP, sleep(2000)])));
  console.log(JSON.stringify({ bad, healthy: report, acks, timed_out: timedOut }));
}

main().catch((err) => {
  console.error(err.stack ?? String(err));
  process.exit(1);
});
