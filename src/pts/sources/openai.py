"""Any OpenAI-compatible chat-completions endpoint, streamed (`"stream": true`).

Works with OpenAI itself and with the many servers speaking its wire format (vLLM, Ollama,
LiteLLM, …): POST `{base_url}/chat/completions`, then Server-Sent Events whose `data:` is a
`chat.completion.chunk` (text in `choices[0].delta.content`) until `data: [DONE]`.

An async generator on httpx. A client is opened per reply unless one is injected: an
`AsyncClient` is bound to the event loop it first ran on, and sources outlive loops in tests.

On AWS the API key is never in the environment: the function is told where it is stored (a
Secrets Manager secret or an SSM SecureString parameter) and reads it when first needed, then
again every few minutes (`StoredKey`), so a rotated key is picked up without a deploy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from pts import aws
from pts.sources.base import DEFAULT_HISTORY_BUDGET, GenerationRequest

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
KEY_MAX_AGE = 300
"""Seconds a key read from its store is reused; a key rejected with 401 is read again at once."""


class OpenAISourceError(RuntimeError):
    """The endpoint refused the request (`status` set) or sent an error inside the stream."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class StoredKey:
    """An API key kept in Secrets Manager (`secret`: a name or ARN) or in SSM Parameter Store
    (`parameter`: a SecureString's name or ARN), read through Powertools Parameters.

    Nothing is read until the first call (a cold start makes no request for it); then the value
    is cached for `max_age` seconds. The value is the key itself, or a JSON object with an
    `api_key` field (Secrets Manager's key/value form).
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        parameter: str | None = None,
        max_age: int = KEY_MAX_AGE,
    ) -> None:
        if bool(secret) == bool(parameter):
            raise ValueError("a stored key needs exactly one of a secret and a parameter")
        self.secret = secret
        self.parameter = parameter
        self.max_age = max_age
        self._provider: SecretsProvider | SSMProvider | None = None

    @property
    def where(self) -> str:
        return f"secret {self.secret}" if self.secret else f"parameter {self.parameter}"

    def __repr__(self) -> str:
        return f"StoredKey({self.where})"

    def __call__(self, *, refresh: bool = False) -> str:
        """The key; `refresh` reads it again even if the cached one is recent."""
        try:
            if self.secret:
                if self._provider is None:
                    self._provider = SecretsProvider(boto3_client=aws.client("secretsmanager"))
                value = self._provider.get(self.secret, max_age=self.max_age, force_fetch=refresh)
            else:
                assert self.parameter is not None
                if self._provider is None:
                    self._provider = SSMProvider(boto3_client=aws.client("ssm"))
                value = self._provider.get(
                    self.parameter, max_age=self.max_age, decrypt=True, force_fetch=refresh
                )
        except GetParameterError as e:  # not found, access denied …: the message says which
            raise OpenAISourceError(f"cannot read the OpenAI API key from {self.where}: {e}") from e
        return _key_text(value, self.where)


def _key_text(value: object, where: str) -> str:
    text = value.decode() if isinstance(value, bytes) else value
    if isinstance(text, str) and text.strip().startswith("{"):
        try:
            text = json.loads(text).get("api_key")
        except (ValueError, AttributeError):
            text = None
    if not isinstance(text, str) or not text.strip():
        raise OpenAISourceError(
            f"{where} holds no API key: store the key itself, or JSON with an api_key field"
        )
    return text.strip()


class OpenAISource:
    """Streams `choices[0].delta.content` of a streamed chat completion.

    `api_key` is the key itself, or a `StoredKey` (any callable taking `refresh`) to read it
    from when a request needs it. A thread's earlier turns go in as alternating `user` and
    `assistant` messages before the prompt.
    """

    history_budget = DEFAULT_HISTORY_BUDGET

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | Callable[..., str] | None = None,
        model: str = DEFAULT_MODEL,
        *,
        max_tokens: int | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.model = model
        self.max_tokens = max_tokens
        self.timeout = timeout
        self._client = client

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OpenAISource:
        """Read `PTS_OPENAI_BASE_URL`, `PTS_OPENAI_MODEL`, `PTS_OPENAI_MAX_TOKENS` (unset: the
        server's default) and the key: `PTS_OPENAI_API_KEY_SECRET` (a Secrets Manager secret's
        name or ARN, as on AWS), `PTS_OPENAI_API_KEY_PARAMETER` (an SSM SecureString's name or
        ARN) or `PTS_OPENAI_API_KEY` (the key itself, for local use); at most one of them."""
        raw_max = env.get("PTS_OPENAI_MAX_TOKENS", "").strip()
        try:
            max_tokens = int(raw_max) if raw_max else None
        except ValueError:
            raise ValueError(f"PTS_OPENAI_MAX_TOKENS must be an integer, got {raw_max!r}") from None
        return cls(
            base_url=env.get("PTS_OPENAI_BASE_URL", "").strip() or DEFAULT_BASE_URL,
            api_key=_key_from_env(env),
            model=env.get("PTS_OPENAI_MODEL", "").strip() or DEFAULT_MODEL,
            max_tokens=max_tokens,
        )

    def __repr__(self) -> str:  # never the key
        return f"OpenAISource(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def body_for(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body for one request."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {"role": message.role, "content": "\n\n".join(message.texts)}
                for message in request.conversation()
            ],
            "stream": True,
        }
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return body

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    async def key(self, *, refresh: bool = False) -> str | None:
        """The key for the next request: read from its store in a thread (boto3 blocks)."""
        if self.api_key is None or isinstance(self.api_key, str):
            return self.api_key
        return await asyncio.to_thread(self.api_key, refresh=refresh)

    async def __call__(self, request: GenerationRequest) -> AsyncIterator[str]:
        if self._client is not None:
            async for text in self._stream(self._client, request):
                yield text
            return
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            async for text in self._stream(client, request):
                yield text

    async def _stream(
        self, client: httpx.AsyncClient, request: GenerationRequest
    ) -> AsyncIterator[str]:
        response = await self._send(client, request, await self.key())
        if response.status_code == 401 and callable(self.api_key):
            # Rotated since it was cached: read the key again, once.
            await response.aclose()
            response = await self._send(client, request, await self.key(refresh=True))
        try:
            if not response.is_success:
                body = (await response.aread()).decode("utf-8", "replace")
                raise OpenAISourceError(
                    f"{self.url} answered HTTP {response.status_code}: {body[:1000]}",
                    status=response.status_code,
                    body=body,
                )
            async for data in _sse_data(response.aiter_lines()):
                if data == "[DONE]":
                    return
                text = _chunk_text(data)
                if text:
                    yield text
        finally:
            await response.aclose()

    async def _send(
        self, client: httpx.AsyncClient, request: GenerationRequest, api_key: str | None
    ) -> httpx.Response:
        outgoing = client.build_request(
            "POST", self.url, json=self.body_for(request), headers=self.headers(api_key)
        )
        return await client.send(outgoing, stream=True)


def _key_from_env(env: Mapping[str, str]) -> str | StoredKey | None:
    """The key, or where to read it, from whichever one of the three variables is set."""
    given = {
        name: value
        for name in (
            "PTS_OPENAI_API_KEY",
            "PTS_OPENAI_API_KEY_SECRET",
            "PTS_OPENAI_API_KEY_PARAMETER",
        )
        if (value := env.get(name, "").strip())
    }
    if len(given) > 1:
        raise ValueError(f"set only one of {', '.join(given)}: they all name the OpenAI key")
    if secret := given.get("PTS_OPENAI_API_KEY_SECRET"):
        return StoredKey(secret=secret)
    if parameter := given.get("PTS_OPENAI_API_KEY_PARAMETER"):
        return StoredKey(parameter=parameter)
    return given.get("PTS_OPENAI_API_KEY")


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The `data` of each Server-Sent Event (multi-line data joined; comments skipped)."""
    data: list[str] = []
    async for line in lines:
        if not line:  # a blank line ends the event
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
        # other fields (`event:`, `id:`, `retry:`) and `:` comments carry no text
    if data:  # the stream ended without the final blank line
        yield "\n".join(data)


def _chunk_text(data: str) -> str | None:
    try:
        chunk = json.loads(data)
    except ValueError:
        raise OpenAISourceError(f"unexpected server-sent event data: {data[:200]!r}") from None
    if not isinstance(chunk, dict):
        raise OpenAISourceError(f"unexpected server-sent event data: {data[:200]!r}")
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise OpenAISourceError(f"error in the stream: {message}", body=data)
    for choice in chunk.get("choices") or ():  # the usage-only chunk has none
        if choice.get("index", 0) == 0:
            return (choice.get("delta") or {}).get("content")
    return None
