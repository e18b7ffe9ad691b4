// `useChat({resume: true})` against a running stack: `node ai-sdk-resume.mjs HTTP_URL STREAM_ID`.
//
// After a reload the page knows the id of the stream it was reading (kept in sessionStorage,
// say) and nothing else; `resume: true` makes `useChat` call `resumeStream()` on mount, which
// asks its transport to reconnect. The transport is the SDK's default one with the
// `prepareReconnectToStreamRequest` of docs/protocol.md, pointing it at
// `GET /streams/{streamId}/events`. Prints what the chat ended with as one JSON line.

import { Chat, PlainState, RecordingTransport } from "./chat-harness.mjs";

const [httpUrl, streamId] = process.argv.slice(2);


// What the page kept before the reload (docs/protocol.md keeps it in sessionStorage).
const chatId = "a-chat-after-a-reload";
const storage = new Map([[`pts:${chatId}`, { streamId }]]);
const saved = (id) => storage.get(`pts:${id}`) ?? {};

const transport = new RecordingTransport({
  api: `${httpUrl}/chat-stream`,
  // The documented lines: resume the stream this chat was reading.
  prepareReconnectToStreamRequest: ({ id }) => ({
    api: `${httpUrl}/streams/${saved(id).streamId}/events`,
  }),
});
let finished = null;
const chat = new Chat({
  id: chatId,
  transport,
  state: new PlainState(),
  onFinish: ({ isError, isAbort, finishReason }) => { finished = { isError, isAbort, finishReason }; },
});
await chat.resumeStream();
const reply = chat.messages.at(-1);
console.log(JSON.stringify({
  messages: chat.messages.length,
  messageId: reply?.id ?? null,
  text: reply ? reply.parts.filter((p) => p.type === "text").map((p) => p.text).join("") : null,
  status: chat.status,
  error: chat.error?.message ?? null,
  parts: transport.parts,
  finished,
}));
