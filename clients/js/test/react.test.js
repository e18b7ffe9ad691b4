// useStream rendered by React DOM (in happy-dom) against the real local stack: the driving
// component, followers, several hooks on a page, re-renders, StrictMode, a failing HTTP
// stream, and exact final statuses.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Window } from "happy-dom";

import { PtsClient } from "../src/index.js";
import { sleep, startStack } from "./stack.js";

// The real network for the client; happy-dom only for the DOM React renders into.
const nativeFetch = globalThis.fetch;
const NativeWebSocket = globalThis.WebSocket;
const window = new Window();
globalThis.window = window;
globalThis.document = window.document;
globalThis.navigator ??= window.navigator;
globalThis.IS_REACT_ACT_ENVIRONMENT = false; // updates come from the network, as in an app

const { createElement: h, StrictMode, useState, useEffect } = await import("react");
const { createRoot } = await import("react-dom/client");
const { useStream } = await import("../src/react.js");

let stack;

before(async () => {
  stack = await startStack();
});

after(async () => {
  await stack?.stop();
  await window.happyDOM.close();
});

/** A client whose requests and connections are counted (and optionally tampered with). */
function countingClient({ tamper } = {}) {
  const counts = { drives: 0, sockets: 0 };
  const fetch = async (url, init) => {
    const response = await nativeFetch(url, init);
    if (String(url).endsWith("/chat-stream")) {
      counts.drives += 1;
      return tamper ? tamper(response) : response;
    }
    return response;
  };
  class CountingWebSocket extends NativeWebSocket {
    constructor(url) {
      super(url);
      counts.sockets += 1;
    }
  }
  const client = new PtsClient({
    httpUrl: stack.httpUrl,
    wsUrl: stack.wsUrl,
    fetch,
    WebSocket: CountingWebSocket,
    reconnectDelays: [100],
  });
  return { client, counts };
}

/** Renders of each labelled hook: what a user saw, in order. */
function recorder() {
  const seen = new Map();
  function Reply({ label, client, streamId, driveToken }) {
    const state = useStream({ client, streamId, driveToken });
    if (!seen.has(label)) seen.set(label, []);
    seen.get(label).push(state);
    return h("p", { "data-label": label, "data-status": state.status }, state.text);
  }
  const last = (label) => seen.get(label)?.at(-1);
  const texts = (label) => [...new Set((seen.get(label) ?? []).map((s) => s.text))];
  const statuses = (label) => (seen.get(label) ?? []).map((s) => s.status);
  /** The text shown only ever grew: each render's text starts with the previous one's. */
  const assertGrew = (label) => {
    const shown = (seen.get(label) ?? []).map((s) => s.text);
    for (let i = 1; i < shown.length; i += 1) {
      assert.ok(shown[i].startsWith(shown[i - 1]), `${label}: text shrank at render ${i}`);
    }
  };
  return { Reply, seen, last, texts, statuses, assertGrew };
}

function mount(element) {
  const container = document.createElement("div");
  document.body.appendChild(container);
  const root = createRoot(container);
  root.render(element);
  return {
    container,
    render: (next) => root.render(next),
    unmount: () => {
      root.unmount();
      container.remove();
    },
  };
}

async function until(predicate, what, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const ENDED = new Set(["done", "error", "cancelled", "timeout", "unknown"]);
const ended = (state) => state !== undefined && ENDED.has(state.status);
const longText = (n) => Array.from({ length: n }, (_, i) => `Line ${i}: crème 世界 😀.\n`).join("");

describe("useStream", () => {
  it("drives over HTTP token by token in the tab that holds the drive token", async () => {
    const { client, counts } = countingClient();
    const text = longText(20);
    const chat = await client.createChat(`echo:${text}`);
    const view = recorder();
    const page = mount(h(view.Reply, { label: "me", client, ...chat }));
    await until(() => ended(view.last("me")), "the end");
    assert.deepEqual(view.last("me"), { text, status: "done", error: null });
    assert.ok(view.texts("me").length > 10, "the text grew piece by piece");
    view.assertGrew("me");
    assert.equal(page.container.textContent, text);
    assert.equal(page.container.firstChild.dataset.status, "done");
    assert.equal(counts.drives, 1);
    assert.equal(counts.sockets, 0, "the driving tab needs no WebSocket");
    page.unmount();
  });

  it("follows over the WebSocket elsewhere; several hooks on one page", async () => {
    const { client, counts } = countingClient();
    const first = await client.createChat(`echo:${longText(10)}`);
    const second = await client.createChat(`echo:${"Second reply, 第二. ".repeat(20)}`);
    const view = recorder();
    const page = mount(
      h(
        "div",
        null,
        h(view.Reply, { label: "driver", client, ...first }),
        h(view.Reply, { label: "follower", client, streamId: first.streamId }),
        h(view.Reply, { label: "other", client, streamId: second.streamId }),
      ),
    );
    // The second stream is driven elsewhere (another tab): this page only follows it.
    const other = new PtsClient({ httpUrl: stack.httpUrl });
    for await (const piece of other.drive(second.streamId, second.driveToken)) void piece;
    await until(
      () => ["driver", "follower", "other"].every((l) => ended(view.last(l))),
      "all three",
    );
    assert.deepEqual(view.last("driver"), { text: `${longText(10)}`, status: "done", error: null });
    assert.deepEqual(view.last("follower"), view.last("driver"));
    for (const label of ["driver", "follower", "other"]) view.assertGrew(label);
    assert.equal(view.last("other").text, "Second reply, 第二. ".repeat(20));
    assert.equal(view.last("other").status, "done");
    assert.equal(counts.drives, 1);
    assert.equal(counts.sockets, 2, "one per followed stream");
    page.unmount();
  });

  it("never restarts a live stream on a re-render", async () => {
    const { client, counts } = countingClient();
    const text = longText(40);
    const chat = await client.createChat(`echo:${text}`);
    const view = recorder();
    let renders = 0;
    function Page() {
      const [tick, setTick] = useState(0);
      useEffect(() => {
        const timer = setInterval(() => setTick((t) => t + 1), 15);
        return () => clearInterval(timer);
      }, []);
      renders += 1;
      // Fresh objects at every render: new props, a new (equal) client wrapper object.
      const ids = { streamId: `${chat.streamId}`, driveToken: `${chat.driveToken}` };
      return h(
        "div",
        { "data-tick": tick },
        h(view.Reply, { label: "driver", client, ...ids }),
        h(view.Reply, { label: "follower", client: Object.create(client), streamId: ids.streamId }),
      );
    }
    const page = mount(h(Page));
    await until(() => ended(view.last("driver")) && ended(view.last("follower")), "the end");
    assert.ok(renders > 20, `the page re-rendered while streaming (${renders})`);
    assert.deepEqual(view.last("driver"), { text, status: "done", error: null });
    assert.deepEqual(view.last("follower"), { text, status: "done", error: null });
    assert.equal(counts.drives, 1, "one HTTP drive");
    assert.equal(counts.sockets, 1, "one WebSocket, for the follower");
    page.unmount();
  });

  it("under StrictMode drives once and still shows every token", async () => {
    const { client, counts } = countingClient();
    const text = longText(15);
    const chat = await client.createChat(`echo:${text}`);
    const view = recorder();
    const page = mount(h(StrictMode, null, h(view.Reply, { label: "me", client, ...chat })));
    await until(() => ended(view.last("me")), "the end");
    assert.deepEqual(view.last("me"), { text, status: "done", error: null });
    assert.ok(view.texts("me").length > 10, "token by token, not one jump at the end");
    assert.equal(counts.drives, 1);
    page.unmount();
  });

  it("switches to the WebSocket when the HTTP stream fails, and ends exact", async () => {
    // The response body breaks after a few chunks, as a dropped network would.
    const tamper = (response) => {
      const reader = response.body.getReader();
      let chunks = 0;
      const body = new ReadableStream({
        async pull(controller) {
          if (chunks++ === 5) {
            await reader.cancel();
            controller.error(new TypeError("network error"));
            return;
          }
          const { done, value } = await reader.read();
          if (done) controller.close();
          else controller.enqueue(value);
        },
      });
      return new Response(body, { status: response.status, headers: response.headers });
    };
    const { client, counts } = countingClient({ tamper });
    const text = longText(60);
    const chat = await client.createChat(`echo:${text}`);
    const view = recorder();
    const warn = console.warn;
    console.warn = () => {};
    try {
      const page = mount(h(view.Reply, { label: "me", client, ...chat }));
      await until(() => ended(view.last("me")), "the end");
      page.unmount();
    } finally {
      console.warn = warn;
    }
    assert.deepEqual(view.last("me"), { text, status: "done", error: null });
    view.assertGrew("me");
    assert.equal(counts.drives, 1);
    assert.equal(counts.sockets, 1, "followed the rest over the WebSocket");
  });

  it("shows exact statuses: error with its message, cancelled; never done", async () => {
    const { client } = countingClient();
    const failing = await client.createChat("fail-after:3:some text that fails");
    const cancelled = await client.createChat(`echo:${longText(200)}`);
    const view = recorder();
    const page = mount(
      h(
        "div",
        null,
        h(view.Reply, { label: "failing-driver", client, ...failing }),
        h(view.Reply, { label: "failing-follower", client, streamId: failing.streamId }),
        h(view.Reply, { label: "cancelled-driver", client, ...cancelled }),
        h(view.Reply, { label: "cancelled-follower", client, streamId: cancelled.streamId }),
      ),
    );
    await until(() => view.last("cancelled-driver")?.text.length > 50, "some text");
    await client.cancel(cancelled.streamId, cancelled.driveToken);
    const labels = ["failing-driver", "failing-follower", "cancelled-driver", "cancelled-follower"];
    await until(() => labels.every((label) => ended(view.last(label))), "every end");
    for (const label of ["failing-driver", "failing-follower"]) {
      assert.equal(view.last(label).status, "error", label);
      assert.match(view.last(label).error, /failed after 3 pieces/, label);
      assert.ok("some text that fails".startsWith(view.last(label).text), label);
    }
    for (const label of ["cancelled-driver", "cancelled-follower"]) {
      assert.equal(view.last(label).status, "cancelled", label);
      assert.equal(view.last(label).error, null, label);
    }
    assert.equal(view.last("cancelled-follower").text, view.last("cancelled-driver").text);
    for (const label of labels) assert.ok(!view.statuses(label).includes("done"), label);
    page.unmount();
  });

  it("starts over for a new streamId, and shows nothing without one", async () => {
    const { client } = countingClient();
    const one = await client.createChat("echo:first reply");
    const two = await client.createChat("echo:second reply");
    for (const chat of [one, two]) {
      for await (const piece of client.drive(chat.streamId, chat.driveToken)) void piece;
    }
    const view = recorder();
    const page = mount(h(view.Reply, { label: "r", client, streamId: null }));
    await sleep(50);
    assert.deepEqual(view.last("r"), { text: "", status: "pending", error: null });
    page.render(h(view.Reply, { label: "r", client, streamId: one.streamId }));
    await until(() => ended(view.last("r")), "the first");
    assert.equal(view.last("r").text, "first reply");
    page.render(h(view.Reply, { label: "r", client, streamId: two.streamId }));
    await until(
      () => view.last("r").text === "second reply" && ended(view.last("r")),
      "the second",
    );
    assert.equal(view.last("r").status, "done");
    page.unmount();
  });
});

describe("useStream with a scripted server", () => {
  it("after a broken HTTP stream never shows less than the HTTP text already showed", async () => {
    const { FakeServer } = await import("./fake.js");
    const server = new FakeServer();
    server.create("s1");
    server.append("s1", "ab");
    server.append("s1", "cd"); // stored: "abcd"; the HTTP stream had shown "abcdef"
    const encoder = new TextEncoder();
    const fetch = async (url) => {
      if (url.endsWith("/chat-stream")) {
        const pieces = ["abc", "def"];
        const body = new ReadableStream({
          async pull(controller) {
            await sleep(20);
            if (pieces.length) controller.enqueue(encoder.encode(pieces.shift()));
            else controller.error(new TypeError("network error"));
          },
        });
        return new Response(body, { status: 200 });
      }
      return Response.json({ streamId: "s1", text: "ab", status: "streaming", seq: 1 });
    };
    const client = new PtsClient({
      httpUrl: "http://api.test",
      wsUrl: "ws://ws.test/",
      fetch,
      WebSocket: server.WebSocket,
    });
    const view = recorder();
    const warn = console.warn;
    console.warn = () => {};
    const page = mount(h(view.Reply, { label: "me", client, streamId: "s1", driveToken: "t" }));
    try {
      await until(() => server.received.length === 1, "the subscribe");
      assert.deepEqual(server.received[0], { action: "subscribe", streamId: "s1", after: 1 });
      await sleep(50);
      assert.equal(view.last("me").text, "abcdef", "still the HTTP text, ahead of the stored");
      server.broadcast(server.append("s1", "ef"));
      server.broadcast(server.append("s1", "gh"));
      server.broadcast(server.finish("s1", "done"));
      await until(() => ended(view.last("me")), "the end");
    } finally {
      console.warn = warn;
      page.unmount();
    }
    assert.deepEqual(view.last("me"), { text: "abcdefgh", status: "done", error: null });
    view.assertGrew("me");
  });
});
