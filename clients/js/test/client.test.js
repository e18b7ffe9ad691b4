// PtsClient against the real local stack (`pts dev`): drive and watch exact for every kind
// of text, a dropped connection recovered, failed and cancelled streams reported as such.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { PtsClient, PtsError } from "../src/index.js";
import { sleep, startStack } from "./stack.js";

const TEXTS = {
  ascii: "Hello, world. A plain ASCII reply!\nSecond line? Yes.",
  accents: "Crème brûlée, façade, naïve coöperation — déjà vu. Ñandú, Øresund, Ærø.",
  cjk: "你好，世界。这是一个测试！日本語のテキストも。한국어 문장입니다。",
  emoji: "Emoji: 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ✨ and a family of flags 🏳️‍🌈 end.",
  code: 'def add(a, b):\n    return a + b  # sum\n\n```js\nconst s = `x=${1}`;\nif (a < b && c > d) { return "q"; }\n```\n\ttab\\backslash',
};

let stack;
let client;

before(async () => {
  stack = await startStack();
  client = new PtsClient({ httpUrl: stack.httpUrl, wsUrl: stack.wsUrl });
});

after(async () => {
  await stack?.stop();
});

async function drain(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

describe("drive and watch against the local stack", () => {
  for (const [name, text] of Object.entries(TEXTS)) {
    it(`are exact for ${name}`, async () => {
      const chat = await client.createChat(`echo:${text}`);
      assert.equal(typeof chat.chatId, "string");
      // A viewer from the start, and the driver at the same time.
      const watching = drain(client.watch(chat.streamId));
      const pieces = await drain(client.drive(chat.streamId, chat.driveToken));
      assert.equal(pieces.join(""), text);
      assert.ok(pieces.length > 1, "the reply streams in pieces");
      const states = await watching;
      const last = states.at(-1);
      assert.equal(last.text, text);
      assert.equal(last.status, "done");
      assert.equal(last.error, null);
      // Every state is the whole text so far.
      for (const state of states) assert.ok(text.startsWith(state.text));
      // A late viewer gets the stored text at once; one resuming after batch 1 gets the rest.
      const stored = await client.getStream(chat.streamId);
      assert.equal(stored.text, text);
      assert.equal(stored.status, "done");
      assert.deepEqual((await drain(client.watch(chat.streamId))).at(-1), last);
      if (stored.seq > 1) {
        const rest = (await drain(client.watch(chat.streamId, { after: 1 }))).at(-1);
        assert.ok(rest.text.length < text.length && text.endsWith(rest.text));
        assert.equal(rest.seq, stored.seq);
      }
    });
  }

  it("decodes characters split across network chunks exactly", async () => {
    // Hundreds of multi-byte characters at 1-4 characters a piece: many chunk boundaries.
    const text = "é世😀".repeat(150);
    const chat = await client.createChat(`echo:${text}`);
    const pieces = await drain(client.drive(chat.streamId, chat.driveToken));
    assert.equal(pieces.join(""), text);
    assert.ok(!pieces.join("").includes("\uFFFD"));
  });
});

describe("recovery", () => {
  it("a viewer whose connection drops mid-stream reconnects and resumes exactly", async () => {
    const sockets = [];
    class TrackedWebSocket extends WebSocket {
      constructor(url) {
        super(url);
        sockets.push(this);
      }
    }
    const viewer = new PtsClient({
      httpUrl: stack.httpUrl,
      wsUrl: stack.wsUrl,
      WebSocket: TrackedWebSocket,
      reconnectDelays: [100],
    });
    // ~600 pieces at 400 a second: long enough to cut it in the middle.
    const text = Array.from({ length: 120 }, (_, i) => `Sentence ${i}, naïve 世界.\n`).join("");
    const chat = await client.createChat(`echo:${text}`);
    const driving = drain(client.drive(chat.streamId, chat.driveToken));
    const states = [];
    let dropped = false;
    for await (const state of viewer.watch(chat.streamId)) {
      states.push(state);
      if (!dropped && state.seq >= 2 && state.status === "streaming") {
        dropped = true;
        sockets[0].close(); // as the network would: the next one resumes after `seq`
        await sleep(300); // batches are written meanwhile
      }
    }
    assert.ok(dropped, "the connection was dropped while the stream was live");
    assert.equal(sockets.length, 2, "one reconnection");
    assert.equal((await driving).join(""), text);
    assert.equal(states.at(-1).text, text);
    assert.equal(states.at(-1).status, "done");
  });
});

describe("how streams end", () => {
  it("reports a failing stream as error, with its message", async () => {
    const text = "some text that fails";
    const chat = await client.createChat(`fail-after:3:${text}`);
    const watching = drain(client.watch(chat.streamId));
    const pieces = await drain(client.drive(chat.streamId, chat.driveToken));
    const last = (await watching).at(-1);
    assert.equal(last.status, "error");
    assert.match(last.error, /failed after 3 pieces/);
    assert.equal(last.text, pieces.join(""));
    assert.ok(text.startsWith(last.text) && last.text.length < text.length);
    const stored = await client.getStream(chat.streamId);
    assert.equal(stored.status, "error");
    assert.equal(stored.error, last.error);
  });

  it("reports a cancelled stream as cancelled", async () => {
    // ~2,000 pieces at 400 a second: still streaming when cancelled.
    const text = "Words that stream for a while. ".repeat(200);
    const chat = await client.createChat(`echo:${text}`);
    const watching = drain(client.watch(chat.streamId));
    const driving = drain(client.drive(chat.streamId, chat.driveToken));
    await sleep(500);
    assert.deepEqual(await client.cancel(chat.streamId, chat.driveToken), { status: "cancelled" });
    const driven = (await driving).join("");
    const last = (await watching).at(-1);
    assert.equal(last.status, "cancelled");
    assert.equal(last.text, driven);
    assert.ok(driven.length < text.length && text.startsWith(driven));
    assert.equal(last.error, null);
    assert.equal((await client.getStream(chat.streamId)).status, "cancelled");
  });

  it("throws the server's errors as PtsError", async () => {
    const chat = await client.createChat("echo:once");
    await drain(client.drive(chat.streamId, chat.driveToken));
    const cases = [
      [() => drain(client.drive(chat.streamId, chat.driveToken)), 409, /not pending/],
      [() => drain(client.drive(chat.streamId, "wrong")), 403, /wrong drive token/],
      [() => client.getStream("no-such-stream"), 404, /unknown stream/],
      [() => client.cancel(chat.streamId, chat.driveToken), 409, /already ended/],
      [() => client.createChat(""), 400, /prompt/],
    ];
    for (const [call, status, message] of cases) {
      await assert.rejects(call, (error) => {
        assert.ok(error instanceof PtsError);
        assert.equal(error.status, status);
        assert.match(error.message, message);
        return true;
      });
    }
  });

  it("watch of a stream that does not exist ends as unknown", async () => {
    const last = (await drain(client.watch("no-such-stream"))).at(-1);
    assert.equal(last.status, "unknown");
    assert.equal(last.error, "unknown stream");
  });
});

describe("conversations", () => {
  it("continue a thread: the source gets the earlier turns, listChats lists the thread", async () => {
    const first = await client.createChat("echo:Hello\nthere");
    assert.equal(first.threadId, first.chatId);
    await drain(client.drive(first.streamId, first.driveToken));
    const second = await client.createChat("history:", { threadId: first.threadId });
    assert.equal(second.threadId, first.threadId);
    const text = (await drain(client.drive(second.streamId, second.driveToken))).join("");
    assert.equal(text, "user: echo:Hello\\nthere\nassistant: Hello\\nthere\nuser: history:");
    const { chats } = await client.listChats({ threadId: first.threadId });
    assert.deepEqual(
      chats.map((c) => [c.chatId, c.threadId]),
      [
        [first.chatId, first.threadId],
        [second.chatId, first.threadId],
      ],
    );
    await assert.rejects(
      () => client.createChat("hi", { threadId: "0".repeat(32) }),
      (error) => error instanceof PtsError && error.status === 404,
    );
  });
});
