// What both AI SDK scripts need to run `useChat`'s logic in Node, without React.

import { AbstractChat, DefaultChatTransport } from "ai";

/** `DefaultChatTransport`, also keeping the type of each part its parser let through. */
export class RecordingTransport extends DefaultChatTransport {
  parts = [];

  processResponseStream(stream) {
    const parts = this.parts;
    return super.processResponseStream(stream).pipeThrough(
      new TransformStream({
        transform(part, controller) {
          parts.push(part.type);
          controller.enqueue(part);
        },
      }),
    );
  }
}

/** The smallest `ChatState`: what `useChat` keeps in React state, kept in plain fields. */
export class PlainState {
  status = "ready";
  error = undefined;
  messages = [];
  pushMessage = (message) => { this.messages = [...this.messages, message]; };
  popMessage = () => { this.messages = this.messages.slice(0, -1); };
  replaceMessage = (index, message) => {
    this.messages = this.messages.map((m, i) => (i === index ? message : m));
  };
  snapshot = (thing) => structuredClone(thing);
}

export class Chat extends AbstractChat {}
