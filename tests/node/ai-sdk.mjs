// The Vercel AI SDK against a running stack: `node ai-sdk.mjs HTTP_URL PROMPT...`.
//
// Each prompt is sent the way `useChat` sends it: `AbstractChat` (the class `useChat` wraps)
// with its default transport, `DefaultChatTransport`, mapped onto `POST /chats` +
// `POST /chat-stream` by the `prepareSendMessagesRequest` that the README shows. The SDK parses
// our server-sent events with its own schema and reader; this script only reports what the
// chat ended with, one JSON line per prompt, for tests/integration/test_ai_sdk.py to check.

import { Chat, PlainState, RecordingTransport } from "./chat-harness.mjs";

// With `--one-chat`, every prompt is sent in one chat (one thread), as a conversation.
const args = process.argv.slice(2);
const oneChat = args.includes("--one-chat");
const [httpUrl, ...prompts] = args.filter((arg) => arg !== "--one-chat");

// What docs/protocol.md keeps in sessionStorage: each chat's thread and latest stream.
const storage = new Map();
const saved = (id) => storage.get(`pts:${id}`) ?? {};
const save = (id, value) => storage.set(`pts:${id}`, value);

/** The transport as docs/protocol.md documents it (plus a record of the parts it parsed). */
function ptsTransport(base, created) {
  return new RecordingTransport({
    api: `${base}/chat-stream`,
    async prepareSendMessagesRequest({ id, messages }) {
      const prompt = messages
        .at(-1)
        .parts.filter((part) => part.type === "text")
        .map((part) => part.text)
        .join("");
      const response = await fetch(`${base}/chats`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ prompt, threadId: saved(id).threadId }),
      });
      if (!response.ok) throw new Error((await response.json()).error);
      const { streamId, driveToken, threadId } = await response.json();
      save(id, { threadId, streamId });
      created.push(streamId);
      return {
        headers: { Accept: "text/event-stream", Authorization: `Bearer ${driveToken}` },
        body: { streamId },
      };
    },
  });
}


let chat = null;
let transport = null;
let created = [];
let finished = null;
for (const prompt of prompts) {
  if (!oneChat || chat === null) {
    created = [];
    transport = ptsTransport(httpUrl, created);
    chat = new Chat({
      transport,
      state: new PlainState(),
      onFinish: ({ isError, isAbort, finishReason }) => { finished = { isError, isAbort, finishReason }; },
    });
  }
  finished = null;
  transport.parts.length = 0;
  await chat.sendMessage({ text: prompt });
  const reply = chat.messages.at(-1);
  console.log(JSON.stringify({
    prompt,
    streamId: created.at(-1) ?? null,
    threadId: saved(chat.id).threadId ?? null,
    messageId: reply?.role === "assistant" ? reply.id : null,
    text: reply?.role === "assistant"
      ? reply.parts.filter((p) => p.type === "text").map((p) => p.text).join("")
      : null,
    status: chat.status,
    error: chat.error?.message ?? null,
    parts: transport.parts,
    finished,
  }));
}
