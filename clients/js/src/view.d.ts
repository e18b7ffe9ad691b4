/** The statuses a stream ends with. */
export declare const TERMINAL_STATUSES: readonly ["done", "error", "cancelled", "timeout"];

export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];
/** A stream's status; `unknown` when a viewer was told there is no such stream. */
export type StreamStatus = "pending" | "streaming" | TerminalStatus | "unknown";

export interface SubscribeMessage {
  action: "subscribe";
  streamId: string;
  after: number;
}

/** The client rule of the WebSocket protocol, with no I/O. */
export declare class StreamView {
  constructor(streamId: string, options?: { after?: number });
  readonly streamId: string;
  /** The highest batch applied. */
  last: number;
  /** The text of the batches after `after`, in order. */
  text: string;
  status: StreamStatus;
  error: string | null;
  awaitingSnapshot: boolean;
  /** After a snapshot with `more: true`, until the next snapshot. */
  filling: boolean;
  resubscribes: number;
  readonly ended: boolean;
  /** A gap only a snapshot can fill, while none is asked for. */
  readonly stalled: boolean;
  subscribeMessage(): SubscribeMessage;
  disconnected(): void;
  resubscribe(): SubscribeMessage | null;
  /** Take one server message; returns a message to send, if one is needed. */
  apply(message: unknown): SubscribeMessage | null;
}
