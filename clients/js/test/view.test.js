// The client rule alone (StreamView), and `watch` over a scripted WebSocket that loses,
// repeats and reorders messages, drops connections and sends `more` snapshots.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { PtsClient, PtsError, StreamView } from "../src/index.js";
import { FakeServer } from "./fake.js";

const ID = "s1";
const delta = (seq, text) => ({ type: "delta", streamId: ID, seq, text });
const status = (value, seq) => ({ type: "status", streamId: ID, status: value, seq });
const snapshot = (text, value, seq, extra = {}) => ({
  type: "snapshot",
  streamId: ID,
  text,
  status: value,
  seq,
  ...extra,
});

describe("StreamView: the client rule", () => {
  it("applies deltas in order and ends on the final status", () => {
    const view = new StreamView(ID);
    assert.deepEqual(view.subscribeMessage(), { action: "subscribe", streamId: ID, after: 0 });
    assert.equal(view.apply(snapshot("a", "streaming", 1)), null);
    assert.equal(view.apply(delta(2, "b")), null);
    assert.equal(view.apply(delta(3, "c")), null);
    assert.equal(view.apply(status("done", 3)), null);
    assert.equal(view.text, "abc");
    assert.equal(view.status, "done");
    assert.equal(view.resubscribes, 0);
  });

  it("ignores repeated deltas and other streams' messages", () => {
    const view = new StreamView(ID);
    view.subscribeMessage();
    view.apply(snapshot("ab", "streaming", 2));
    assert.equal(view.apply(delta(2, "b")), null);
    assert.equal(view.apply(delta(1, "a")), null);
    assert.equal(view.apply({ ...delta(3, "x"), streamId: "other" }), null);
    view.apply(delta(3, "c"));
    view.apply(delta(3, "c"));
    assert.equal(view.text, "abc");
  });

  it("on a gap subscribes again after the last batch and appends that snapshot", () => {
    const view = new StreamView(ID);
    view.subscribeMessage();
    view.apply(snapshot("a", "streaming", 1));
    assert.deepEqual(view.apply(delta(3, "c")), { action: "subscribe", streamId: ID, after: 1 });
    // Deltas arriving while the subscribe is in flight wait for its snapshot.
    assert.equal(view.apply(delta(4, "d")), null);
    assert.equal(view.apply(delta(2, "b")), null);
    assert.equal(view.text, "a");
    assert.equal(view.apply(snapshot("bc", "streaming", 3)), null);
    assert.equal(view.text, "abcd");
    assert.equal(view.last, 4);
    assert.equal(view.resubscribes, 1);
  });

  it("a final status ahead of the text asks for the rest first", () => {
    const view = new StreamView(ID);
    view.subscribeMessage();
    view.apply(snapshot("a", "streaming", 1));
    assert.deepEqual(view.apply(status("done", 2)), {
      action: "subscribe",
      streamId: ID,
      after: 1,
    });
    assert.equal(view.ended, false);
    view.apply(snapshot("b", "done", 2));
    assert.equal(view.text, "ab");
    assert.equal(view.status, "done");
  });

  it("keeps exact statuses: error, cancelled and timeout are not done", () => {
    for (const value of ["error", "cancelled", "timeout"]) {
      const view = new StreamView(ID);
      view.subscribeMessage();
      view.apply(snapshot("a", "streaming", 1));
      view.apply({ ...status(value, 1), error: value === "error" ? "boom" : undefined });
      assert.equal(view.status, value);
      assert.equal(view.error, value === "error" ? "boom" : null);
    }
  });

  it("never ends on a snapshot with more, and waits for its rest before asking again", () => {
    const view = new StreamView(ID);
    view.subscribeMessage();
    assert.equal(view.apply(snapshot("ab", "done", 2, { more: true })), null);
    assert.equal(view.ended, false);
    assert.equal(view.status, "streaming");
    // The rest comes as deltas; a reordered one is a gap to wait for, not to ask about.
    assert.equal(view.apply(delta(4, "d")), null);
    assert.equal(view.stalled, true);
    assert.equal(view.apply(delta(3, "c")), null);
    assert.equal(view.stalled, false);
    assert.equal(view.apply(status("done", 4)), null);
    assert.equal(view.text, "abcd");
    assert.equal(view.status, "done");
    // Had the rest been lost, `resubscribe` asks after the last batch shown.
    const lost = new StreamView(ID);
    lost.subscribeMessage();
    lost.apply(snapshot("ab", "done", 2, { more: true }));
    lost.apply(status("done", 4));
    assert.deepEqual(lost.resubscribe(), { action: "subscribe", streamId: ID, after: 2 });
  });

  it("an error message for the stream ends it as unknown, with the message", () => {
    const view = new StreamView(ID);
    view.subscribeMessage();
    view.apply({ type: "error", error: "not valid JSON" }); // about a frame: ignored
    assert.equal(view.ended, false);
    view.apply({ type: "error", error: "unknown stream", streamId: ID });
    assert.equal(view.status, "unknown");
    assert.equal(view.error, "unknown stream");
  });

  it("resumes after a lost connection from the last batch", () => {
    const view = new StreamView(ID, { after: 5 });
    assert.deepEqual(view.subscribeMessage(), { action: "subscribe", streamId: ID, after: 5 });
    view.apply(snapshot("f", "streaming", 6));
    view.disconnected();
    assert.equal(view.awaitingSnapshot, false);
    assert.deepEqual(view.subscribeMessage(), { action: "subscribe", streamId: ID, after: 6 });
  });
});

/** Run `watch` to its end, collecting every state it yields. */
async function collect(iterable) {
  const states = [];
  for await (const state of iterable) states.push(state);
  return states;
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

async function until(predicate, what, ms = 3000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await tick();
  }
}

function fakeClient(server, extra = {}) {
  return new PtsClient({
    httpUrl: "http://api.test",
    wsUrl: "ws://ws.test/",
    WebSocket: server.WebSocket,
    reconnectDelays: [10],
    fetch: async () => new Response("{}", { status: 200 }),
    ...extra,
  });
}

describe("watch over a scripted WebSocket", () => {
  it("recovers a lost delta with a snapshot after the last batch", async () => {
    const server = new FakeServer();
    server.create(ID);
    server.append(ID, "α");
    const client = fakeClient(server);
    const states = collect(client.watch(ID));
    await until(() => server.received.length === 1, "the subscribe");
    await tick();
    server.append(ID, "β"); // lost on the way
    server.broadcast(server.append(ID, "γ"));
    server.broadcast(server.append(ID, "δ")); // arrives while the resubscribe is in flight
    server.broadcast(server.append(ID, "δ")); // and one repeated: seq 4 and 5 both "δ"
    await until(() => server.received.length === 2, "the resubscribe");
    assert.deepEqual(server.received[1], { action: "subscribe", streamId: ID, after: 1 });
    server.broadcast(server.finish(ID, "done"));
    const result = await states;
    const last = result.at(-1);
    assert.equal(last.text, "αβγδδ");
    assert.equal(last.status, "done");
    assert.equal(last.seq, 5);
    assert.equal(server.sockets[0].readyState, 3, "the socket is closed at the end");
    // Every state is the whole text so far, growing.
    for (let i = 1; i < result.length; i += 1)
      assert.ok(result[i].text.startsWith(result[i - 1].text));
  });

  it("reconnects after a dropped connection and resumes after the last batch", async () => {
    const server = new FakeServer();
    server.create(ID);
    const client = fakeClient(server);
    const states = collect(client.watch(ID));
    await until(() => server.received.length === 1, "the subscribe");
    server.broadcast(server.append(ID, "one "));
    await tick();
    server.sockets[0].drop();
    server.append(ID, "two "); // written while the viewer was away
    await until(() => server.received.length === 2, "the second subscribe");
    assert.deepEqual(server.received[1], { action: "subscribe", streamId: ID, after: 1 });
    assert.equal(server.sockets.length, 2);
    await tick();
    server.broadcast(server.append(ID, "three"));
    server.broadcast(server.finish(ID, "cancelled"));
    const last = (await states).at(-1);
    assert.deepEqual(last, { text: "one two three", status: "cancelled", seq: 3, error: null });
  });

  it("asks again when a snapshot is lost", async () => {
    const server = new FakeServer();
    server.create(ID);
    server.append(ID, "kept");
    server.loseSnapshots = 1;
    const client = fakeClient(server, { snapshotTimeout: 50 });
    const states = collect(client.watch(ID));
    await until(() => server.received.length === 2, "the second subscribe");
    assert.deepEqual(server.received[1], { action: "subscribe", streamId: ID, after: 0 });
    server.broadcast(server.append(ID, " and more"));
    server.broadcast(server.finish(ID, "done"));
    assert.deepEqual((await states).at(-1), {
      text: "kept and more",
      status: "done",
      seq: 2,
      error: null,
    });
  });

  it("keeps retrying while the server refuses connections", async () => {
    const server = new FakeServer();
    server.create(ID);
    server.append(ID, "x");
    server.finish(ID, "done");
    server.refuse = true;
    const client = fakeClient(server);
    const states = collect(client.watch(ID));
    await until(() => server.sockets.length >= 3, "three attempts");
    server.refuse = false;
    assert.deepEqual((await states).at(-1), { text: "x", status: "done", seq: 1, error: null });
  });

  it("follows a snapshot with more until its rest and the final status arrive", async () => {
    const server = new FakeServer();
    server.create(ID);
    for (const piece of ["a", "b", "c", "d"]) server.append(ID, piece);
    server.finish(ID, "done");
    server.maxSnapshotBatches = 2;
    server.onMore = (socket, streamId, seq) => {
      // The rest as deltas (the last two swapped), then the status.
      socket.deliver({ type: "delta", streamId, seq: seq + 2, text: "d" });
      socket.deliver({ type: "delta", streamId, seq: seq + 1, text: "c" });
      socket.deliver({ type: "status", streamId, status: "done", seq: seq + 2 });
    };
    const client = fakeClient(server);
    const states = await collect(client.watch(ID));
    assert.equal(states.at(-1).text, "abcd");
    assert.equal(states.at(-1).status, "done");
    assert.ok(states.every((state, i) => i === states.length - 1 || state.status !== "done"));
    assert.equal(server.received.length, 1, "no second subscribe was needed");
  });

  it("fetches the error message when the status does not carry it", async () => {
    const server = new FakeServer();
    server.create(ID);
    server.append(ID, "partial");
    server.finish(ID, "error");
    const requests = [];
    const client = fakeClient(server, {
      fetch: async (url, init) => {
        requests.push({ url, init });
        return Response.json({
          streamId: ID,
          text: "partial",
          status: "error",
          seq: 1,
          error: "model failed",
        });
      },
    });
    const last = (await collect(client.watch(ID))).at(-1);
    assert.deepEqual(last, { text: "partial", status: "error", seq: 1, error: "model failed" });
    assert.equal(requests[0].url, `http://api.test/streams/${ID}`);
  });

  it("ends with unknown for a stream that does not exist", async () => {
    const server = new FakeServer();
    const last = (await collect(fakeClient(server).watch("nope"))).at(-1);
    assert.equal(last.status, "unknown");
    assert.equal(last.error, "unknown stream");
  });

  it("stops when aborted, closing its connection", async () => {
    const server = new FakeServer();
    server.create(ID);
    const controller = new AbortController();
    const states = collect(fakeClient(server).watch(ID, { signal: controller.signal }));
    await until(() => server.received.length === 1, "the subscribe");
    controller.abort();
    await assert.rejects(states, { name: "AbortError" });
    await tick();
    assert.equal(server.sockets[0].readyState, 3);
  });

  it("puts the token on the WebSocket URL and in the Authorization header", async () => {
    const server = new FakeServer();
    server.create(ID);
    server.finish(ID, "done");
    const headers = [];
    const client = fakeClient(server, {
      token: async () => "jwt.value",
      fetch: async (url, init) => {
        headers.push(init.headers);
        return Response.json({ error: "wrong state" }, { status: 409 });
      },
    });
    await collect(client.watch(ID));
    assert.equal(new URL(server.sockets[0].url).searchParams.get("token"), "jwt.value");
    const error = await client.cancel(ID, "drive-token").catch((e) => e);
    assert.ok(error instanceof PtsError);
    assert.equal(error.status, 409);
    assert.equal(error.message, "wrong state");
    // With a JWT the JWT authorizes; the drive token is for the open mode.
    assert.equal(headers[0].Authorization, "Bearer jwt.value");
  });
});

describe("watch misconfigured", () => {
  it("throws at once without a wsUrl or a WebSocket, instead of retrying for ever", async () => {
    const noUrl = new PtsClient({ httpUrl: "http://api.test" });
    await assert.rejects(collect(noUrl.watch(ID)), /no wsUrl/);
    const noSocket = new PtsClient({ wsUrl: "ws://ws.test/", WebSocket: "nope" });
    await assert.rejects(collect(noSocket.watch(ID)), /no WebSocket/);
  });
});
