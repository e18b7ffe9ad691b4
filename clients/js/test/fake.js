// A scripted WebSocket API in memory: the tests decide which messages reach the client, so
// they can lose, repeat and reorder them as API Gateway's at-least-once delivery may.

/** One stream as the server stores it: numbered batches and a status. */
export class FakeServer {
  constructor() {
    this.batches = new Map(); // streamId → [text of batch 1, 2, …]
    this.status = new Map(); // streamId → status
    this.errors = new Map(); // streamId → error message
    this.sockets = [];
    this.received = []; // every message a client sent, parsed
    this.maxSnapshotBatches = Infinity; // above it, snapshots carry `more: true`
    this.loseSnapshots = 0; // how many of the next snapshots are lost on the way
  }

  /** A WebSocket class bound to this server, to pass to PtsClient. */
  get WebSocket() {
    const server = this;
    return class extends FakeWebSocket {
      constructor(url) {
        super(url, server);
      }
    };
  }

  create(streamId, status = "streaming") {
    this.batches.set(streamId, []);
    this.status.set(streamId, status);
  }

  /** Store the next batch; returns its delta message (not sent: the test decides). */
  append(streamId, text) {
    const batches = this.batches.get(streamId);
    batches.push(text);
    return { type: "delta", streamId, seq: batches.length, text };
  }

  /** End the stream; returns its status message (not sent). */
  finish(streamId, status, error) {
    this.status.set(streamId, status);
    if (error) this.errors.set(streamId, error);
    return { type: "status", streamId, status, seq: this.batches.get(streamId).length };
  }

  /** Send a message to every open socket. */
  broadcast(message) {
    for (const socket of this.sockets) if (socket.readyState === 1) socket.deliver(message);
  }

  /** The client sent `message` on `socket`: answer a subscribe as the real route does. */
  receive(socket, message) {
    this.received.push(message);
    if (message.action !== "subscribe") return;
    const batches = this.batches.get(message.streamId);
    if (!batches) {
      socket.deliver({ type: "error", error: "unknown stream", streamId: message.streamId });
      return;
    }
    const after = message.after ?? 0;
    const owed = batches.slice(after);
    const first = owed.slice(0, this.maxSnapshotBatches);
    const snapshot = {
      type: "snapshot",
      streamId: message.streamId,
      text: first.join(""),
      status: this.status.get(message.streamId),
      seq: after + first.length,
    };
    if (first.length < owed.length) snapshot.more = true;
    if (this.loseSnapshots > 0) {
      this.loseSnapshots -= 1;
      return;
    }
    socket.deliver(snapshot);
    if (snapshot.more) this.onMore?.(socket, message.streamId, snapshot.seq);
  }
}

export class FakeWebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(url, server) {
    this.url = url;
    this.server = server;
    this.readyState = 0;
    this.listeners = { open: [], message: [], close: [], error: [] };
    server.sockets.push(this);
    queueMicrotask(() => {
      if (this.readyState !== 0) return;
      if (server.refuse) {
        this.readyState = 3;
        this.emit("error", {});
        this.emit("close", { code: 1006 });
        return;
      }
      this.readyState = 1;
      this.emit("open", {});
    });
  }

  addEventListener(type, listener) {
    this.listeners[type].push(listener);
  }

  emit(type, event) {
    for (const listener of this.listeners[type]) listener(event);
  }

  send(data) {
    if (this.readyState !== 1) throw new Error("not open");
    const message = JSON.parse(data);
    queueMicrotask(() => this.server.receive(this, message));
  }

  /** A server message reaches the client (asynchronously, as on a network). */
  deliver(message) {
    queueMicrotask(() => {
      if (this.readyState === 1) this.emit("message", { data: JSON.stringify(message) });
    });
  }

  /** The client closes. */
  close() {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    queueMicrotask(() => this.emit("close", { code: 1000 }));
  }

  /** The network drops the connection. */
  drop() {
    this.readyState = 3;
    this.emit("close", { code: 1006 });
  }
}
