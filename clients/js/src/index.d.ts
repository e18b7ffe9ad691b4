import { StreamView, TERMINAL_STATUSES } from "./view.js";
import type { StreamStatus, SubscribeMessage, TerminalStatus } from "./view.js";

export { StreamView, TERMINAL_STATUSES };
export type { StreamStatus, SubscribeMessage, TerminalStatus };

/** A JWT, or a function returning one (called for each request and connection). */
export type TokenSource =
  string | (() => string | null | undefined | Promise<string | null | undefined>);

export interface PtsClientOptions {
  /** The HTTP API, e.g. `http://127.0.0.1:8000` (default: relative URLs, same origin). */
  httpUrl?: string;
  /** The WebSocket API, e.g. `ws://127.0.0.1:8001`; needed by `watch`. */
  wsUrl?: string;
  /** Sent as `Authorization: Bearer` and as `?token=` on the WebSocket URL. */
  token?: TokenSource;
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket;
  /** Milliseconds before each reconnect (the last repeats); jittered by ±20 %. */
  reconnectDelays?: number[];
  /** Milliseconds a subscribe may go unanswered before it is sent again (default 10,000). */
  snapshotTimeout?: number;
}

export interface CreateChatOptions {
  /** Continue this conversation. */
  threadId?: string;
  /** Let anybody signed in follow the stream (JWT mode). */
  shared?: boolean;
  signal?: AbortSignal;
}

export interface CreatedChat {
  chatId: string;
  streamId: string;
  driveToken: string;
  /** The conversation: the `threadId` given, or a new one (the chat's own id). */
  threadId: string;
  [key: string]: unknown;
}

export interface ChatSummary {
  chatId: string;
  prompt: string;
  streamId: string;
  createdAt: string;
  threadId: string;
  [key: string]: unknown;
}

export interface ChatList {
  chats: ChatSummary[];
  cursor?: string | null;
  [key: string]: unknown;
}

export interface StoredStream {
  streamId: string;
  text: string;
  status: Exclude<StreamStatus, "unknown">;
  seq: number;
  /** The message, when `status` is `error`. */
  error?: string;
}

/** What `watch` yields: the whole text so far (after `after`) and where the stream is. */
export interface StreamState {
  text: string;
  status: StreamStatus;
  /** The last batch applied. */
  seq: number;
  error: string | null;
}

export interface SignalOptions {
  signal?: AbortSignal;
}

/** An HTTP error from the API: its status and the server's `error` message. */
export declare class PtsError extends Error {
  constructor(status: number, message: string, body?: unknown);
  readonly name: "PtsError";
  status: number;
  body: unknown;
}

export declare class PtsClient {
  constructor(options?: PtsClientOptions);
  readonly httpUrl: string;
  readonly wsUrl: string;
  reconnectDelays: number[];
  snapshotTimeout: number;
  /** `POST /chats`: a chat and its `pending` stream. */
  createChat(prompt: string, options?: CreateChatOptions): Promise<CreatedChat>;
  /** `GET /chats`, oldest first; one thread's with `threadId`. */
  listChats(options?: {
    threadId?: string;
    cursor?: string;
    signal?: AbortSignal;
  }): Promise<ChatList>;
  /** `GET /streams/{id}`. */
  getStream(streamId: string, options?: SignalOptions): Promise<StoredStream>;
  /** `POST /streams/{id}/cancel`. */
  cancel(
    streamId: string,
    driveToken?: string,
    options?: SignalOptions,
  ): Promise<{ status: "cancelled" }>;
  /** `DELETE /chats/{id}`. */
  deleteChat(
    chatId: string,
    driveToken?: string,
    options?: SignalOptions,
  ): Promise<{ deleted: string } | null>;
  /** `POST /chat-stream`: generate the reply and yield its text as it arrives. */
  drive(
    streamId: string,
    driveToken?: string,
    options?: SignalOptions,
  ): AsyncGenerator<string, void, undefined>;
  /** Follow a stream over the WebSocket API until it ends. */
  watch(
    streamId: string,
    options?: { after?: number; signal?: AbortSignal },
  ): AsyncGenerator<StreamState, void, undefined>;
}
