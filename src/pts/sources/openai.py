"""Any OpenAI-compatible chat-completions endpoint, streamed (`"stream": true`).

Works with OpenAI itself and with the many servers speaking its wire format (vLLM, Ollama,
LiteLLM, …): POST `{base_url}/chat/completions`, then Server-Sent Events whose `data:` is a
`chat.completion.chunk` (text in `choices[0].delta.content`) until `data: [DONE]`.

An async generator on httpx. A client is opened per reply unless one is injected: an
`AsyncClient` is bound to the event loop it first ran on, and sources outlive loops in tests.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from pts.sources.base import GenerationRequest

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)


class OpenAISourceError(RuntimeError):
    """The endpoint refused the request (`status` set) or sent an error inside the stream."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class OpenAISource:
    """Streams `choices[0].delta.content` of a streamed chat completion."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
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
        """Read `PTS_OPENAI_BASE_URL`, `PTS_OPENAI_API_KEY`, `PTS_OPENAI_MODEL` and
        `PTS_OPENAI_MAX_TOKENS` (unset: the server's default)."""
        raw_max = env.get("PTS_OPENAI_MAX_TOKENS", "").strip()
        try:
            max_tokens = int(raw_max) if raw_max else None
        except ValueError:
            raise ValueError(f"PTS_OPENAI_MAX_TOKENS must be an integer, got {raw_max!r}") from None
        return cls(
            base_url=env.get("PTS_OPENAI_BASE_URL", "").strip() or DEFAULT_BASE_URL,
            api_key=env.get("PTS_OPENAI_API_KEY", "").strip() or None,
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
            "messages": [{"role": "user", "content": request.prompt}],
            "stream": True,
        }
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return body

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

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
        async with client.stream(
            "POST", self.url, json=self.body_for(request), headers=self.headers()
        ) as response:
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
