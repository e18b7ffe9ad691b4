// A client for persistent text streaming: create a chat, drive its reply over HTTP, follow
// any stream over the WebSocket API with the client rule, cancel it. No dependency: the
// platform's `fetch`, `TextDecoder` and `WebSocket` (or ones passed to the constructor).

import { StreamView, TERMINAL_STATUSES } from "./view.js";

export { StreamView, TERMINAL_STATUSES };

const TERMINAL = new Set(TERMINAL_STATUSES);

/** Reconnect delays in milliseconds (the last one repeats), each with ±20 % jitter. */
const RECONNECT_DELAYS = [250, 500, 1000, 2000, 4000, 8000];

/** How long the rest of a `more` snapshot may take to arrive before asking again. */
const FILL_WAIT_MS = 2000;

/** How long a subscribe may go unanswered (its snapshot lost) before it is sent again. */
const SNAPSHOT_TIMEOUT_MS = 10_000;

/** An HTTP error from the API: `status` and the server's `error` message. */
export class PtsError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   * @param {unknown} [body]
   */
  constructor(status, message, body) {
    super(message);
    this.name = "PtsError";
    this.status = status;
    this.body = body;
  }
}

export class PtsClient {
  /**
   * @param {object} [options]
   * @param {string} [options.httpUrl] the HTTP API (default: relative URLs, same origin)
   * @param {string} [options.wsUrl] the WebSocket API; needed by `watch`
   * @param {string | (() => string | null | undefined | Promise<string | null | undefined>)} [options.token]
   *   a JWT (or a function returning one, called for each request and connection)
   * @param {typeof fetch} [options.fetch]
   * @param {typeof WebSocket} [options.WebSocket]
   * @param {number[]} [options.reconnectDelays]
   * @param {number} [options.snapshotTimeout]
   */
  constructor({
    httpUrl = "",
    wsUrl = "",
    token,
    fetch,
    WebSocket,
    reconnectDelays,
    snapshotTimeout = SNAPSHOT_TIMEOUT_MS,
  } = {}) {
    this.httpUrl = httpUrl.replace(/\/+$/, "");
    this.wsUrl = wsUrl;
    this._token = token;
    this._fetch = fetch;
    this._WebSocket = WebSocket;
    this.reconnectDelays = reconnectDelays?.length ? [...reconnectDelays] : RECONNECT_DELAYS;
    this.snapshotTimeout = snapshotTimeout;
  }

  // -- HTTP ------------------------------------------------------------------------------

  /**
   * Create a chat and its `pending` stream (`POST /chats`).
   * @param {string} prompt
   * @param {{threadId?: string, shared?: boolean, signal?: AbortSignal}} [options]
   */
  async createChat(prompt, { threadId, shared, signal } = {}) {
    const body = { prompt };
    if (threadId !== undefined) body.threadId = threadId;
    if (shared !== undefined) body.shared = shared;
    return this._json("POST", "/chats", { body, signal });
  }

  /**
   * The chats, oldest first (`GET /chats`), optionally one thread's.
   * @param {{threadId?: string, cursor?: string, signal?: AbortSignal}} [options]
   */
  async listChats({ threadId, cursor, signal } = {}) {
    const query = new URLSearchParams();
    if (threadId !== undefined) query.set("threadId", threadId);
    if (cursor !== undefined) query.set("cursor", cursor);
    const search = query.toString();
    return this._json("GET", search ? `/chats?${search}` : "/chats", { signal });
  }

  /**
   * A stream as stored (`GET /streams/{id}`): its whole text, status, seq and error.
   * @param {string} streamId
   * @param {{signal?: AbortSignal}} [options]
   */
  async getStream(streamId, { signal } = {}) {
    return this._json("GET", `/streams/${encodeURIComponent(streamId)}`, { signal });
  }

  /**
   * Stop a `pending` or `streaming` stream (`POST /streams/{id}/cancel`).
   * @param {string} streamId
   * @param {string} [driveToken] not needed when the client has a `token` (JWT mode)
   */
  async cancel(streamId, driveToken, { signal } = {}) {
    const path = `/streams/${encodeURIComponent(streamId)}/cancel`;
    return this._json("POST", path, { bearer: driveToken, signal });
  }

  /**
   * Delete a chat, its stream and its text (`DELETE /chats/{id}`); a live stream is
   * cancelled first.
   * @param {string} chatId
   * @param {string} [driveToken]
   */
  async deleteChat(chatId, driveToken, { signal } = {}) {
    const path = `/chats/${encodeURIComponent(chatId)}`;
    return this._json("DELETE", path, { bearer: driveToken, signal });
  }

  /**
   * Generate the reply (`POST /chat-stream`) and yield its text as it arrives. Only one
   * caller can drive a stream (the others get a 409 `PtsError`). Stopping early (`break`,
   * `signal`) closes the connection; the generation goes on and is stored all the same.
   * @param {string} streamId
   * @param {string} [driveToken]
   * @param {{signal?: AbortSignal}} [options]
   * @returns {AsyncGenerator<string, void, undefined>}
   */
  async *drive(streamId, driveToken, { signal } = {}) {
    const response = await this._send("POST", "/chat-stream", {
      body: { streamId },
      bearer: driveToken,
      signal,
    });
    if (!response.ok) throw await errorOf(response);
    if (!response.body) return;
    // Stream mode: a character split across two chunks is decoded whole, never as U+FFFD.
    const decoder = new TextDecoder("utf-8");
    const reader = response.body.getReader();
    let finished = false;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const text = decoder.decode(value, { stream: true });
        if (text) yield text;
      }
      finished = true;
      const rest = decoder.decode();
      if (rest) yield rest;
    } finally {
      if (!finished) await reader.cancel().catch(() => {});
    }
  }

  // -- WebSocket -------------------------------------------------------------------------

  /**
   * Follow a stream over the WebSocket API: yields `{text, status, seq, error}` with the
   * whole text so far (after `after`) at each change, and ends after the final status
   * (`done`, `error`, `cancelled`, `timeout`, or `unknown` when there is no such stream).
   * A dropped connection is reopened with backoff and the stream resumed after the last
   * batch shown. Each watch holds a connection of its own, closed when it ends.
   * @param {string} streamId
   * @param {{after?: number, signal?: AbortSignal}} [options]
   */
  watch(streamId, { after = 0, signal } = {}) {
    return watchStream(this, streamId, after, signal);
  }

  // -- internals -------------------------------------------------------------------------

  async _bearer(fallback) {
    const token = typeof this._token === "function" ? await this._token() : this._token;
    return token || fallback || null;
  }

  async _send(method, path, { body, bearer, signal } = {}) {
    const fetchImpl = this._fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== "function") throw new TypeError("no fetch: pass one to PtsClient");
    const headers = { Accept: "application/json" };
    const token = await this._bearer(bearer);
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetchImpl(`${this.httpUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  }

  async _json(method, path, options) {
    const response = await this._send(method, path, options);
    if (!response.ok) throw await errorOf(response);
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  async _socketUrl() {
    if (!this.wsUrl) throw new TypeError("no wsUrl: pass one to PtsClient to watch streams");
    const token = await this._bearer();
    if (!token) return this.wsUrl;
    const url = new URL(this.wsUrl);
    url.searchParams.set("token", token);
    return url.toString();
  }

  _openSocket(url) {
    const Socket = this._WebSocket ?? globalThis.WebSocket;
    if (typeof Socket !== "function") {
      throw new TypeError(
        "no WebSocket: pass one to PtsClient (Node 20: --experimental-websocket)",
      );
    }
    return new Socket(url);
  }
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON
  }
  const message =
    body && typeof body === "object" && typeof body.error === "string"
      ? body.error
      : response.statusText || `HTTP ${response.status}`;
  return new PtsError(response.status, message, body);
}

function abortError(signal) {
  return signal.reason ?? new DOMException("The operation was aborted.", "AbortError");
}

/** The state a watcher shows: a fresh object each time it changes. */
function stateOf(view) {
  return { text: view.text, status: view.status, seq: view.last, error: view.error };
}

async function* watchStream(client, streamId, after, signal) {
  if (signal?.aborted) throw abortError(signal);
  const view = new StreamView(streamId, { after });
  let latest = null; // the newest state not yet yielded
  let published = null;
  let wake = null;
  let finished = false;
  let failure = null;
  let socket = null;
  let attempt = 0;
  let retryTimer = null;
  let fillTimer = null;
  let snapshotTimer = null;

  const notify = () => {
    const resume = wake;
    wake = null;
    resume?.();
  };
  const publish = () => {
    const state = stateOf(view);
    if (
      published &&
      published.text === state.text &&
      published.status === state.status &&
      published.seq === state.seq &&
      published.error === state.error
    ) {
      return;
    }
    published = state;
    latest = state;
    notify();
  };
  const stop = () => {
    finished = true;
    clearTimeout(retryTimer);
    clearTimeout(fillTimer);
    clearTimeout(snapshotTimer);
    const open = socket;
    socket = null;
    if (open) {
      try {
        open.close(1000);
      } catch {
        // already closing
      }
    }
  };
  const send = (message) => {
    if (!message || !socket || socket.readyState !== 1) return;
    socket.send(JSON.stringify(message));
    if (message.action === "subscribe") {
      // Delivery is at least once, not certain: a snapshot lost on the way is asked again.
      clearTimeout(snapshotTimer);
      snapshotTimer = setTimeout(() => {
        snapshotTimer = null;
        if (!finished && view.awaitingSnapshot) send({ ...message, after: view.last });
      }, client.snapshotTimeout);
    }
  };
  const finish = async () => {
    stop();
    // Status messages need not carry the error: the stored stream has it.
    if (view.status === "error" && !view.error) {
      try {
        view.error = (await client.getStream(streamId)).error ?? null;
      } catch {
        // keep the status without its message
      }
      if (!view.error) view.error = "error";
    }
    publish();
  };
  const onMessage = (event) => {
    if (finished || typeof event.data !== "string") return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    send(view.apply(message));
    if (view.ended) {
      finish();
      return;
    }
    publish();
    if (view.stalled && view.filling) {
      fillTimer ??= setTimeout(() => {
        fillTimer = null;
        if (!finished) send(view.resubscribe());
      }, FILL_WAIT_MS);
    } else if (fillTimer !== null) {
      clearTimeout(fillTimer);
      fillTimer = null;
    }
  };
  const reconnect = () => {
    if (finished) return;
    const delays = client.reconnectDelays;
    const delay = delays[Math.min(attempt, delays.length - 1)] * (0.8 + Math.random() * 0.4);
    attempt += 1;
    retryTimer = setTimeout(connect, delay);
  };
  const connect = async () => {
    if (finished) return;
    let url;
    try {
      url = await client._socketUrl();
    } catch (error) {
      if (error instanceof TypeError) fail(error);
      else reconnect(); // the token function failed: try again later
      return;
    }
    if (finished) return;
    let ws;
    try {
      ws = client._openSocket(url);
    } catch (error) {
      fail(error); // no WebSocket, or a malformed URL: retrying cannot help
      return;
    }
    if (finished) {
      ws.close(1000);
      return;
    }
    socket = ws;
    ws.addEventListener("open", () => {
      if (socket === ws) send(view.subscribeMessage());
    });
    ws.addEventListener("message", (event) => {
      if (socket !== ws) return;
      attempt = 0; // the server answers: back to short delays (not merely on open)
      onMessage(event);
    });
    ws.addEventListener("close", () => {
      if (socket !== ws) return;
      socket = null;
      view.disconnected();
      clearTimeout(fillTimer);
      clearTimeout(snapshotTimer);
      fillTimer = null;
      snapshotTimer = null;
      reconnect();
    });
    ws.addEventListener("error", () => {
      // `close` follows and reconnects.
    });
  };
  const fail = (error) => {
    failure = error;
    stop();
    notify();
  };
  const onAbort = () => {
    stop();
    notify();
  };

  signal?.addEventListener("abort", onAbort, { once: true });
  connect();
  try {
    for (;;) {
      if (signal?.aborted) throw abortError(signal);
      if (latest !== null) {
        const state = latest;
        latest = null;
        yield state;
        if (TERMINAL.has(state.status) || state.status === "unknown") return;
        continue;
      }
      if (failure) throw failure;
      await new Promise((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    stop();
  }
}
