// The client rule of the WebSocket protocol (docs/protocol.md), with no I/O: the same rule as
// `pts.client.StreamView` in Python, plus the `more` snapshots of long texts.

/** The statuses a stream ends with. */
export const TERMINAL_STATUSES = Object.freeze(["done", "error", "cancelled", "timeout"]);

const TERMINAL = new Set(TERMINAL_STATUSES);

/**
 * What a viewer knows of one stream, kept exact by the client rule: apply a delta only when
 * `seq == last + 1`, ignore `seq <= last`, and on a gap, or a final status ahead of `last`,
 * subscribe again with `after = last` and append that snapshot.
 *
 * One subscribe is in flight at a time: deltas and a final status that arrive meanwhile wait
 * in `early`, since its snapshot may already hold them. After a snapshot with `more: true`
 * the rest of the text is on its way as deltas, so a gap then is awaited (see `stalled`)
 * rather than answered with a new subscribe at once.
 */
export class StreamView {
  /**
   * @param {string} streamId
   * @param {{after?: number}} [options] `after`: the batches already shown (their text is not
   *   in `text`).
   */
  constructor(streamId, { after = 0 } = {}) {
    this.streamId = streamId;
    this.last = after;
    this.text = "";
    /** `pending` or `streaming` while live; a terminal status, or `unknown`, once ended. */
    this.status = "pending";
    /** @type {string | null} */
    this.error = null;
    this.awaitingSnapshot = false;
    this.filling = false;
    this.resubscribes = 0;
    /** @type {Map<number, string>} */
    this.early = new Map();
    /** @type {{status: string, seq: number, error: string | null} | null} */
    this.final = null;
  }

  get ended() {
    return TERMINAL.has(this.status) || this.status === "unknown";
  }

  /** A gap that only a snapshot can fill, while none is asked for. */
  get stalled() {
    return !this.ended && !this.awaitingSnapshot && (this.early.size > 0 || this.final !== null);
  }

  /** Subscribe (again) after what is shown: at start, and on every new connection. */
  subscribeMessage() {
    this.awaitingSnapshot = true;
    return { action: "subscribe", streamId: this.streamId, after: this.last };
  }

  /** The connection went away: its subscribe will never be answered. */
  disconnected() {
    this.awaitingSnapshot = false;
  }

  /** Ask for a snapshot if a gap is still open (after waiting for a `more` snapshot's rest). */
  resubscribe() {
    if (!this.stalled) return null;
    this.filling = false;
    this.resubscribes += 1;
    return this.subscribeMessage();
  }

  /**
   * Take one server message (other streams' are ignored).
   * @returns {{action: "subscribe", streamId: string, after: number} | null} a message to send
   */
  apply(message) {
    if (this.ended || message === null || typeof message !== "object") return null;
    if (message.streamId !== undefined && message.streamId !== this.streamId) return null;
    switch (message.type) {
      case "error":
        if (message.streamId === undefined) return null; // about another frame, not this stream
        this.error = String(message.error || "error");
        this.status = "unknown";
        return null;
      case "snapshot": {
        if (!this.awaitingSnapshot) return null;
        this.awaitingSnapshot = false;
        this.filling = message.more === true;
        this._append(String(message.text ?? ""), Math.max(this.last, seqOf(message)));
        if (TERMINAL.has(message.status) && !this.filling) {
          this._end(message.status, message.error);
          return null;
        }
        if (message.status === "streaming" || this.filling) this.status = "streaming";
        return this._catchUp();
      }
      case "delta": {
        const seq = seqOf(message);
        if (seq <= this.last) return null;
        this.early.set(seq, String(message.text ?? ""));
        return this.awaitingSnapshot ? null : this._catchUp();
      }
      case "status":
        if (!TERMINAL.has(message.status)) return null;
        this.final = { status: message.status, seq: seqOf(message), error: message.error ?? null };
        return this.awaitingSnapshot ? null : this._catchUp();
      default:
        return null;
    }
  }

  _append(text, seq) {
    this.text += text;
    this.last = seq;
  }

  _end(status, error) {
    this.status = status;
    if (error) this.error = String(error);
    this.early.clear();
    this.final = null;
  }

  _catchUp() {
    for (const seq of [...this.early.keys()].sort((a, b) => a - b)) {
      if (seq === this.last + 1) {
        this._append(this.early.get(seq), seq);
        this.status = "streaming";
      }
      if (seq <= this.last) this.early.delete(seq);
    }
    if (this.final !== null && this.final.seq <= this.last) {
      this._end(this.final.status, this.final.error);
      return null;
    }
    if ((this.early.size > 0 || this.final !== null) && !this.filling) {
      this.resubscribes += 1;
      return this.subscribeMessage();
    }
    return null;
  }
}

function seqOf(message) {
  const seq = Number(message.seq ?? 0);
  return Number.isSafeInteger(seq) && seq >= 0 ? seq : 0;
}
