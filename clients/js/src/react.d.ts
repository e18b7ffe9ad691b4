import type { PtsClient, StreamStatus } from "./index.js";

export interface UseStreamOptions {
  client: PtsClient;
  /** Nothing to show yet while null or undefined. */
  streamId?: string | null;
  /** This component drives the stream over HTTP; without it, it follows over the WebSocket. */
  driveToken?: string | null;
}

export interface UseStreamResult {
  text: string;
  status: StreamStatus;
  /** The error message, when the stream failed (or does not exist). */
  error: string | null;
}

/** One stream's text as it grows, driven or followed; restarts only for a new streamId/driveToken. */
export declare function useStream(options: UseStreamOptions): UseStreamResult;
