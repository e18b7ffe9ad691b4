"""`pts`: run the local stack, and drive, watch or read streams from a terminal.

The URLs come from `PTS_HTTP_URL` / `PTS_WS_URL` (the local stack's by default), or, with
`--stack-name NAME`, from a deployed stack's CloudFormation outputs (`StreamFunctionUrl`,
`WebSocketUrl`), read with the usual AWS credentials and region.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from botocore.exceptions import BotoCoreError, ClientError
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from pts.client import StreamView, follow

HTTP_URL = "http://127.0.0.1:8000"
WS_URL = "ws://127.0.0.1:8001"
ISSUER_URL = "http://127.0.0.1:8002"
CLIENT_ID = "pts-chat"
DEFAULT_DATA_DIR = ".pts-local"
"""`pts dev`'s data dir, in the working directory (git-ignored)."""


def _http_url() -> str:
    return os.environ.get("PTS_HTTP_URL", HTTP_URL).rstrip("/")


def _ws_url() -> str:
    return os.environ.get("PTS_WS_URL", WS_URL)


def _token() -> str | None:
    """`PTS_TOKEN`: a JWT (`pts token`) for a stack with `PTS_AUTH=jwt`."""
    return os.environ.get("PTS_TOKEN", "").strip() or None


def _auth(fallback: str | None = None) -> dict[str, str]:
    """The `Authorization` header: the JWT if there is one, else `fallback` (a drive token)."""
    token = _token() or fallback
    return {"Authorization": f"Bearer {token}"} if token else {}


def _with_token(ws_url: str) -> str:
    """The WebSocket URL with `?token=` (browsers cannot send headers on a WebSocket, so
    the `$connect` authorizer reads the query string). Never printed."""
    token = _token()
    if token is None:
        return ws_url
    parts = urlsplit(ws_url)
    query = urlencode([*parse_qsl(parts.query), ("token", token)])
    return urlunsplit(parts._replace(query=query))


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the HTTP API and the WebSocket API are."""

    http_url: str
    ws_url: str


class StackError(Exception):
    """The stack, or the outputs it should have, could not be read."""


STACK_OUTPUTS = ("StreamFunctionUrl", "WebSocketUrl")
"""The outputs of template.yaml that `--stack-name` reads, in `Endpoints` order."""


def stack_endpoints(stack_name: str, *, region: str | None = None, client: Any = None) -> Endpoints:
    """The URLs of a deployed stack, from its CloudFormation outputs."""
    if client is None:
        import boto3

        client = boto3.session.Session().client("cloudformation", region_name=region)
    try:
        stacks = client.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        raise StackError(f"stack {stack_name!r}: {message}") from error
    except BotoCoreError as error:  # no credentials, no region, no network
        raise StackError(f"stack {stack_name!r}: {error}") from error
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])}
    missing = [name for name in STACK_OUTPUTS if not outputs.get(name)]
    if missing:
        raise StackError(
            f"stack {stack_name!r} has no output {', '.join(missing)} "
            f"(status {stacks[0].get('StackStatus', 'unknown')}): is it this project's stack?"
        )
    http_url, ws_url = (outputs[name] for name in STACK_OUTPUTS)
    return Endpoints(http_url.rstrip("/"), ws_url)


def _endpoints(args: argparse.Namespace) -> Endpoints:
    if args.stack_name:
        return stack_endpoints(args.stack_name, region=args.region)
    return Endpoints(_http_url(), _ws_url())


def _fail(response: httpx.Response) -> int:
    try:
        message = response.json().get("error", response.text)
    except ValueError:
        message = response.text
    print(f"pts: {response.status_code}: {message}", file=sys.stderr)
    return 1


def dev(args: argparse.Namespace) -> int:
    # Sign with botocore's pure-Python SigV4, as on Lambda (the layer has no awscrt; the
    # venv gets it from aws-sam-cli, and botocore then signs each call ~3x slower). Read
    # when botocore is imported: before the stack's import.
    os.environ.setdefault("BOTO_DISABLE_CRT", "true")
    from pts.local.dynamodb import reset_data
    from pts.local.stack import LocalStack, StackOptions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data_dir: Path | None = None if args.in_memory else args.data_dir
    if args.reset:
        reset_data(args.data_dir)

    def ready(stack: LocalStack) -> None:
        print(f"HTTP API and chat page  {stack.http_url}", flush=True)
        if stack.ws_url:
            print(f"WebSocket               {stack.ws_url}", flush=True)
        print(f"DynamoDB (moto)         {stack.dynamodb.endpoint}", flush=True)
        if stack.issuer:
            print(f"OpenID issuer (dev)     {stack.issuer.url}", flush=True)
            print("sign in                 pts token --user NAME", flush=True)
        if data_dir is not None:
            print(f"local data              {data_dir}/ (pts dev --reset: start empty)", flush=True)
        print("ready — Ctrl-C stops", flush=True)

    options = dataclasses.replace(StackOptions.from_env(), data_dir=data_dir)
    asyncio.run(LocalStack(options).run(ready))
    return 0


def chat(args: argparse.Namespace) -> int:
    base = args.http_url
    with httpx.Client(timeout=httpx.Timeout(10, read=None)) as client:
        body = {"prompt": args.prompt}
        if args.thread:
            body["threadId"] = args.thread
        created = client.post(f"{base}/chats", json=body, headers=_auth())
        if created.status_code != 201:
            return _fail(created)
        ids = created.json()
        print(
            f"# chat {ids['chatId']} stream {ids['streamId']} thread {ids.get('threadId')}",
            file=sys.stderr,
        )
        with client.stream(
            "POST",
            f"{base}/chat-stream",
            json={"streamId": ids["streamId"]},
            headers=_auth(ids["driveToken"]),
        ) as response:
            if response.status_code != 200:
                response.read()
                return _fail(response)
            for text in response.iter_text():
                sys.stdout.write(text)
                sys.stdout.flush()
        final = client.get(f"{base}/streams/{ids['streamId']}", headers=_auth()).json()
    sys.stdout.write("\n")
    if final.get("status") != "done":
        print(f"pts: stream ended {final.get('status')}: {final.get('error', '')}", file=sys.stderr)
        return 1
    return 0


def get(args: argparse.Namespace) -> int:
    response = httpx.get(f"{args.http_url}/streams/{args.stream_id}", headers=_auth(), timeout=10)
    if response.status_code != 200:
        return _fail(response)
    body = response.json()
    if args.json:
        print(json.dumps(body, ensure_ascii=False))
    else:
        sys.stdout.write(body["text"] + "\n")
    return 0


# -- watch ------------------------------------------------------------------------------


def _print_live(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


class Watch:
    """`pts watch`: `pts.client.follow` printing as it goes, then the stream's outcome."""

    def __init__(self, url: str, stream_id: str, http_url: str | None = None) -> None:
        self.url = url
        self.stream_id = stream_id
        self.http_url = http_url or _http_url()

    def run(self) -> int:
        try:
            view = asyncio.run(follow(_with_token(self.url), self.stream_id, on_text=_print_live))
        except InvalidURI as error:
            print(f"pts: bad PTS_WS_URL {self.url!r}: {error}", file=sys.stderr)
            return 2
        except (ConnectionClosed, OSError, InvalidHandshake) as error:
            print(f"pts: cannot reach {self.url}: {error}", file=sys.stderr)
            return 2
        return self._result(view)

    def _result(self, view: StreamView) -> int:
        if view.error is not None:
            print(f"pts: {view.stream_id}: {view.error}", file=sys.stderr)
            return 1
        sys.stdout.write("\n")
        sys.stdout.flush()
        if view.status == "done":
            return 0
        print(f"pts: stream ended {view.status}{self._why(view)}", file=sys.stderr)
        return 1

    def _why(self, view: StreamView) -> str:
        """The error message of an `error` stream (WebSocket messages do not carry it)."""
        if view.status != "error":
            return ""
        try:
            response = httpx.get(
                f"{self.http_url}/streams/{view.stream_id}", headers=_auth(), timeout=5
            )
            return f": {response.json().get('error', '')}"
        except (httpx.HTTPError, ValueError):
            return ""


def watch(args: argparse.Namespace) -> int:
    try:
        return Watch(args.ws_url, args.stream_id, args.http_url).run()
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return 130


def token(args: argparse.Namespace) -> int:
    """Sign in at the local issuer as a browser would (authorization code + PKCE) and print
    the access token: `export PTS_TOKEN=$(pts token --user alice)`."""
    from pts.local.issuer import sign_in

    issuer = os.environ.get("PTS_ISSUER_URL", ISSUER_URL)
    client_id = os.environ.get("PTS_JWT_CLIENT_ID", CLIENT_ID)
    try:
        tokens = sign_in(issuer, args.user, client_id, f"{args.http_url}/")
    except (RuntimeError, httpx.HTTPStatusError) as error:
        print(f"pts: {error}", file=sys.stderr)
        return 1
    except httpx.TransportError as error:
        print(f"pts: cannot reach the issuer {issuer}: {error}", file=sys.stderr)
        return 2
    print(tokens["access_token"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pts", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stack-name",
        help="a deployed stack: its outputs give the URLs (instead of PTS_HTTP_URL/PTS_WS_URL)",
    )
    parser.add_argument("--region", help="the stack's region (default: the AWS configuration's)")
    commands = parser.add_subparsers(dest="command", required=True)
    dev_parser = commands.add_parser("dev", help="run the whole stack locally")
    dev_parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        help=f"where the local tables are kept between runs (default {DEFAULT_DATA_DIR}/)",
    )
    dev_parser.add_argument(
        "--reset", action="store_true", help="forget the local data first: start empty"
    )
    dev_parser.add_argument(
        "--in-memory", action="store_true", help="keep nothing: the data dies with the stack"
    )
    dev_parser.set_defaults(func=dev)
    chat_parser = commands.add_parser("chat", help="create a chat, drive it, print the reply")
    chat_parser.add_argument("prompt")
    chat_parser.add_argument(
        "--thread",
        metavar="THREAD_ID",
        help="continue this conversation (a threadId shown before)",
    )
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
    token_parser = commands.add_parser(
        "token", help="sign in at the local issuer (PTS_AUTH=jwt make dev) and print a JWT"
    )
    token_parser.add_argument("--user", required=True, help="who to be (becomes the sub)")
    token_parser.set_defaults(func=token)
    args = parser.parse_args(argv)
    if args.func is not dev:
        try:
            endpoints = _endpoints(args)
        except StackError as error:
            print(f"pts: {error}", file=sys.stderr)
            return 2
        args.http_url, args.ws_url = endpoints.http_url, endpoints.ws_url
    try:
        command: Callable[[argparse.Namespace], int] = args.func
        return command(args)
    except httpx.TransportError as error:
        print(f"pts: cannot reach {args.http_url}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
