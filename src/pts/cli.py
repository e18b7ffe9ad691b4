"""`pts`: run the local stack, and drive, watch or read streams from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pts", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dev", help="run the whole stack locally").set_defaults(func=dev)
    chat_parser = commands.add_parser("chat", help="create a chat, drive it, print the reply")
    chat_parser.add_argument("prompt")
    chat_parser.set_defaults(func=chat)
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
