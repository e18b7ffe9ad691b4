// `useStream`: the seed's hook. The tab holding the drive token drives the reply over HTTP
// and shows it token by token (switching to the WebSocket if that stream fails); every
// other tab follows over the WebSocket. React is this module's only import (a peer).

import { useEffect, useRef, useState } from "react";

import { TERMINAL_STATUSES } from "./index.js";

const TERMINAL = new Set(TERMINAL_STATUSES);
const IDLE = Object.freeze({ text: "", status: "pending", error: null });

/**
 * The drives in progress, per client and stream. A drive outlives the component that began
 * it (a re-mount, React's StrictMode, a list re-keyed): the HTTP stream is never aborted
 * mid-reply, and a component mounted again joins it instead of being refused with a 409.
 * @type {WeakMap<object, Map<string, Drive>>}
 */
const drives = new WeakMap();

class Drive {
  constructor(client, streamId, driveToken, forget) {
    this.client = client;
    this.streamId = streamId;
    this.driveToken = driveToken;
    this.forget = forget;
    this.state = IDLE;
    this.listeners = new Set();
    this.follow = null; // the WebSocket fallback's AbortController, once it runs
    this.run().finally(() => this.forget(this));
  }

  subscribe(listener) {
    this.listeners.add(listener);
    listener(this.state);
    return () => {
      this.listeners.delete(listener);
      // Nobody looks any more: the HTTP stream may finish, but stop following (a later
      // mount starts afresh: the stored text, then the WebSocket).
      if (this.listeners.size === 0 && this.follow) {
        this.follow.abort();
        this.forget(this);
      }
    };
  }

  set(state) {
    this.state = Object.freeze({ ...this.state, ...state });
    for (const listener of this.listeners) listener(this.state);
  }

  async run() {
    const { client, streamId } = this;
    let text = "";
    try {
      for await (const piece of client.drive(streamId, this.driveToken)) {
        text += piece;
        this.set({ text, status: "streaming" });
      }
    } catch (error) {
      // 409: driven already (another tab, an earlier page load); otherwise the HTTP stream
      // failed. The generation goes on without us either way: follow it.
      if (error?.status !== 409) console.warn("pts: driving", streamId, "failed:", error);
    }
    // The response ends once the final batch and status are stored: read how it ended.
    let stored = { text: "", seq: 0 };
    try {
      stored = await client.getStream(streamId);
      if (TERMINAL.has(stored.status)) {
        this.set({ text: stored.text, status: stored.status, error: stored.error ?? null });
        return;
      }
    } catch (error) {
      if (error?.status === 404) {
        this.set({ status: "unknown", error: error.message });
        return;
      }
    }
    if (this.listeners.size === 0) return;
    // Follow the rest over the WebSocket. The HTTP text ran ahead of what is stored: keep
    // showing it until the stored text overtakes it (both are prefixes of one reply); at the
    // end the stored text is the one shown.
    this.follow = new AbortController();
    const { signal } = this.follow;
    try {
      for await (const update of client.watch(streamId, { after: stored.seq, signal })) {
        const whole = stored.text + update.text;
        const ahead = !TERMINAL.has(update.status) && text.startsWith(whole);
        this.set({ text: ahead ? text : whole, status: update.status, error: update.error });
      }
    } catch (error) {
      // Aborted: nobody is looking. Otherwise the client cannot follow (no wsUrl, say).
      if (!signal.aborted) this.set({ error: String(error?.message ?? error) });
    }
  }
}

function joinDrive(client, streamId, driveToken) {
  let byStream = drives.get(client);
  if (!byStream) {
    byStream = new Map();
    drives.set(client, byStream);
  }
  const key = `${streamId}\n${driveToken}`;
  let drive = byStream.get(key);
  if (!drive) {
    drive = new Drive(client, streamId, driveToken, (done) => {
      if (byStream.get(key) === done) byStream.delete(key);
    });
    byStream.set(key, drive);
  }
  return drive;
}

/**
 * Show one stream's text as it grows: `{text, status, error}`.
 *
 * With `driveToken` this component drives the reply over HTTP; without it, it follows the
 * stream over the WebSocket. The effect depends on the `streamId` and `driveToken` strings
 * only: re-renders, a new `client` object or new option objects never restart a stream.
 * @param {{client: import("./index.js").PtsClient, streamId?: string | null, driveToken?: string | null}} options
 */
export function useStream({ client, streamId, driveToken }) {
  const [state, setState] = useState(IDLE);
  const clientRef = useRef(client);
  clientRef.current = client;

  useEffect(() => {
    setState(IDLE);
    if (!streamId) return undefined;
    const current = clientRef.current;
    if (driveToken) {
      return joinDrive(current, streamId, driveToken).subscribe(setState);
    }
    const controller = new AbortController();
    (async () => {
      try {
        for await (const update of current.watch(streamId, { signal: controller.signal })) {
          setState(
            Object.freeze({ text: update.text, status: update.status, error: update.error }),
          );
        }
      } catch (error) {
        // Not aborted: the client cannot follow (no wsUrl, say); the status stays as it was.
        if (!controller.signal.aborted) {
          setState((previous) =>
            Object.freeze({ ...previous, error: String(error?.message ?? error) }),
          );
        }
      }
    })();
    return () => controller.abort();
  }, [streamId, driveToken]);

  return state;
}
