// Compiled by `tsc --noEmit` only: the declarations describe the API as a user calls it,
// through the package's own exports.
import { PtsClient, PtsError, StreamView, type StreamState } from "pts-client";
import { useStream, type UseStreamResult } from "pts-client/react";

export async function example(): Promise<string> {
  const client = new PtsClient({
    httpUrl: "http://127.0.0.1:8000",
    wsUrl: "ws://127.0.0.1:8001",
    token: async () => "jwt",
  });
  const { streamId, driveToken } = await client.createChat("echo:hi", { threadId: "t" });
  let text = "";
  for await (const piece of client.drive(streamId, driveToken, {
    signal: AbortSignal.timeout(5000),
  })) {
    text += piece;
  }
  let last: StreamState | undefined;
  for await (const state of client.watch(streamId, { after: 0 })) last = state;
  const stored = await client.getStream(streamId);
  try {
    await client.cancel(streamId, driveToken);
  } catch (error) {
    if (error instanceof PtsError && error.status === 409) text += error.message;
  }
  const view = new StreamView(streamId);
  const request = view.apply({ type: "delta", streamId, seq: 2, text: "x" });
  if (request !== null) request.after satisfies number;
  return `${text}${last?.status ?? ""}${stored.error ?? ""}${view.text}`;
}

export function Component(props: { client: PtsClient; streamId: string }): string {
  const { text, status, error }: UseStreamResult = useStream({
    client: props.client,
    streamId: props.streamId,
  });
  // @ts-expect-error: a stream is never "finished"; the statuses are exact.
  const wrong: typeof status = "finished";
  return `${text} ${status} ${error ?? ""} ${wrong}`;
}
