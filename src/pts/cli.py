"""`pts`: run the local stack, and drive, watch or read streams from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

HTTP_URL = "http://127.0.0.1:8000"
WS_URL = "ws://127.0.0.1:8001"


def _http_url() -> str:
    return os.environ.get("PTS_HTTP_URL", HTTP_URL).rstrip("/")


def _ws_url() -> str:
    return os.environ.get("PTS_WS_URL", WS_URL)


def _fail(response: httpx.Response) -> int:
    try:
        message = response.json().get("error", response.text)
    except ValueError:
        message = response.text
    print(f"pts: {response.status_code}: {message}", file=sys.stderr)
    return 1


def dev(args: argparse.Namespace) -> int:
    from pts.local.stack import LocalStack

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def ready(stack: LocalStack) -> None:
        print(f"HTTP API and chat page  {stack.http_url}", flush=True)
        if stack.ws_url:
            print(f"WebSocket               {stack.ws_url}", flush=True)
        print(f"DynamoDB (moto)         {stack.dynamodb.endpoint}", flush=True)
        print("ready — Ctrl-C stops", flush=True)

    asyncio.run(LocalStack().run(ready))
    return 0


def chat(args: argparse.Namespace) -> int:
    base = _http_url()
    with httpx.Client(timeout=httpx.Timeout(10, read=None)) as client:
        created = client.post(f"{base}/chats", json={"prompt": args.prompt})
        if created.status_code != 201:
            return _fail(created)
        ids = created.json()
        print(f"# chat {ids['chatId']} stream {ids['streamId']}", file=sys.stderr)
        with client.stream(
            "POST",
            f"{base}/chat-stream",
            json={"streamId": ids["streamId"]},
            headers={"Authorization": f"Bearer {ids['driveToken']}"},
        ) as response:
            if response.status_code != 200:
                response.read()
                return _fail(response)
            for text in response.iter_text():
                sys.stdout.write(text)
                sys.stdout.flush()
        final = client.get(f"{base}/streams/{ids['streamId']}").json()
    sys.stdout.write("\n")
    if final.get("status") != "done":
        print(f"pts: stream ended {final.get('status')}: {final.get('error', '')}", file=sys.stderr)
        return 1
    return 0


def get(args: argparse.Namespace) -> int:
    response = httpx.get(f"{_http_url()}/streams/{args.stream_id}", timeout=10)
    if response.status_code != 200:
        return _fail(response)
    body = response.json()
    if args.json:
        print(json.dumps(body, ensure_ascii=False))
    else:
        sys.stdout.write(body["text"] + "\n")
    return 0


# -- watch ------------------------------------------------------------------------------

ENDED = {"done", "error", "cancelled", "timeout"}
IDLE_RESYNC_SECONDS = 30.0
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass
class StreamFollower:
    """One stream's text, rebuilt from WebSocket messages by the SPEC §5 client rule.

    `write` gets each new piece of text exactly once, in order; `subscribe(after)` asks the
    server for a snapshot of the batches after `after`. Only one subscribe is in flight at a
    time: deltas arriving meanwhile wait in `early`, because the snapshot may contain them.
    """

    stream_id: str
    write: Callable[[str], None]
    subscribe: Callable[[int], None]
    last: int = 0
    status: str | None = None
    """Set once the stream has ended: `done`, `error`, `cancelled` or `timeout`."""
    error: str | None = None
    awaiting: bool = False
    early: dict[int, str] = field(default_factory=dict)
    final: tuple[str, int] | None = None

    def start(self) -> None:
        """(Re)subscribe after what is shown: at start, and on every new connection."""
        self.awaiting = True
        self.subscribe(self.last)

    def receive(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "error":
            self.error = str(message.get("error") or "error")
        elif kind == "snapshot" and self.awaiting:
            self.awaiting = False
            self._append(str(message.get("text") or ""), max(self.last, int(message["seq"])))
            if message.get("status") in ENDED:
                self.status = message["status"]
                return
            self._catch_up()
        elif kind == "delta":
            seq = int(message["seq"])
            if seq > self.last:
                self.early[seq] = str(message.get("text") or "")
                if not self.awaiting:
                    self._catch_up()
        elif kind == "status" and message.get("status") in ENDED:
            self.final = (str(message["status"]), int(message.get("seq") or 0))
            if not self.awaiting:
                self._catch_up()

    def _append(self, text: str, seq: int) -> None:
        if text:
            self.write(text)
        self.last = seq

    def _catch_up(self) -> None:
        """Apply waiting deltas in order; on a gap (or a status ahead of us) resubscribe."""
        for seq in sorted(self.early):
            if seq == self.last + 1:
                self._append(self.early[seq], seq)
        self.early = {seq: text for seq, text in self.early.items() if seq > self.last}
        if self.final is not None and self.final[1] <= self.last:
            self.status = self.final[0]
        elif self.early or self.final is not None:
            self.start()


def _print_live(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


class Watch:
    """`pts watch`: one WebSocket connection at a time, reconnecting after a drop."""

    def __init__(self, url: str, stream_id: str) -> None:
        self.url = url
        self.follower = StreamFollower(stream_id, _print_live, self._not_connected)
        self.connected = False

    @staticmethod
    def _not_connected(after: int) -> None:
        raise RuntimeError("subscribe before connecting")

    def run(self) -> int:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

        failures = 0
        while True:
            shown = self.follower.last
            try:
                self._follow()
                return self._result()
            except InvalidURI as error:
                print(f"pts: bad PTS_WS_URL {self.url!r}: {error}", file=sys.stderr)
                return 2
            except (ConnectionClosed, OSError, InvalidHandshake) as error:
                # A connection that made progress resets the count; one never made fails fast.
                failures = 0 if self.follower.last > shown else failures + 1
                if not self.connected or failures > len(RECONNECT_DELAYS):
                    print(f"pts: cannot reach {self.url}: {error}", file=sys.stderr)
                    return 2
                time.sleep(RECONNECT_DELAYS[failures - 1] if failures else 0.1)

    def _follow(self) -> None:
        """Follow on one connection until the stream ends, the server errs or the socket drops."""
        from websockets.sync.client import connect

        follower = self.follower
        with connect(self.url, open_timeout=10, max_size=None) as ws:
            self.connected = True

            def subscribe(after: int) -> None:
                message = {"action": "subscribe", "streamId": follower.stream_id, "after": after}
                ws.send(json.dumps(message))

            follower.subscribe = subscribe
            follower.start()
            while follower.status is None and follower.error is None:
                try:
                    raw = ws.recv(timeout=IDLE_RESYNC_SECONDS)
                except TimeoutError:
                    # Delivery is at least once, not exactly: a long silence gets a fresh look.
                    if not follower.awaiting:
                        follower.start()
                    continue
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(message, dict) and message.get("streamId") in (
                    None,
                    follower.stream_id,
                ):
                    follower.receive(message)

    def _result(self) -> int:
        follower = self.follower
        if follower.error is not None:
            print(f"pts: {follower.stream_id}: {follower.error}", file=sys.stderr)
            return 1
        sys.stdout.write("\n")
        sys.stdout.flush()
        if follower.status == "done":
            return 0
        print(f"pts: stream ended {follower.status}{self._why()}", file=sys.stderr)
        return 1

    def _why(self) -> str:
        """The error message of an `error` stream (WebSocket messages do not carry it)."""
        if self.follower.status != "error":
            return ""
        try:
            response = httpx.get(f"{_http_url()}/streams/{self.follower.stream_id}", timeout=5)
            return f": {response.json().get('error', '')}"
        except (httpx.HTTPError, ValueError):
            return ""


def watch(args: argparse.Namespace) -> int:
    try:
        return Watch(_ws_url(), args.stream_id).run()
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pts", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dev", help="run the whole stack locally").set_defaults(func=dev)
    chat_parser = commands.add_parser("chat", help="create a chat, drive it, print the reply")
    chat_parser.add_argument("prompt")
    chat_parser.set_defaults(func=chat)
    watch_parser = commands.add_parser(
        "watch", help="print a stream's text so far, then the rest live, until it ends"
    )
    watch_parser.add_argument("stream_id")
    watch_parser.set_defaults(func=watch)
    get_parser = commands.add_parser("get", help="print a stream's persisted text")
    get_parser.add_argument("stream_id")
    get_parser.add_argument("--json", action="store_true", help="the whole GET /streams answer")
    get_parser.set_defaults(func=get)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except httpx.TransportError as error:
        print(f"pts: cannot reach {_http_url()}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
