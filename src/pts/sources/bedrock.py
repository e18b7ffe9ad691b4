"""Amazon Bedrock through the Converse API (`bedrock-runtime` `converse_stream`).

boto3 is blocking, so this is a *sync* generator: the driver advances it in a worker thread.
The client is created on first use (not at import or construction), so loading the source
costs nothing and tests can inject a fake with the same `converse_stream(**kwargs)` method.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from pts.sources.base import DEFAULT_HISTORY_BUDGET, GenerationRequest

DEFAULT_MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
DEFAULT_MAX_TOKENS = 1024


class BedrockSourceError(RuntimeError):
    """An error event inside the response stream."""


class BedrockSource:
    """Streams `contentBlockDelta.delta.text` of a `converse_stream` call.

    A thread's earlier turns go in as the Converse API's alternating `user` and `assistant`
    messages (a merged turn as several text blocks of one message).
    """

    history_budget = DEFAULT_HISTORY_BUDGET

    def __init__(
        self,
        model_id: str = DEFAULT_MODEL_ID,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        *,
        region: str | None = None,
        client: Any | None = None,
    ) -> None:
        self.model_id = model_id
        self.max_tokens = max_tokens
        self.region = region
        self._client = client
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BedrockSource:
        """Read `PTS_BEDROCK_MODEL_ID`, `PTS_BEDROCK_MAX_TOKENS` and `PTS_BEDROCK_REGION`.

        Without a region the usual boto3 chain applies (`AWS_REGION` on Lambda).
        """
        raw_max = env.get("PTS_BEDROCK_MAX_TOKENS", "").strip()
        try:
            max_tokens = int(raw_max) if raw_max else DEFAULT_MAX_TOKENS
        except ValueError:
            raise ValueError(
                f"PTS_BEDROCK_MAX_TOKENS must be an integer, got {raw_max!r}"
            ) from None
        return cls(
            model_id=env.get("PTS_BEDROCK_MODEL_ID", "").strip() or DEFAULT_MODEL_ID,
            max_tokens=max_tokens,
            region=env.get("PTS_BEDROCK_REGION", "").strip() or None,
        )

    def __repr__(self) -> str:
        return f"BedrockSource(model_id={self.model_id!r}, max_tokens={self.max_tokens})"

    @property
    def client(self) -> Any:
        """The `bedrock-runtime` client, created once, on first use (thread-safe)."""
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                # A session per client: boto3's default session is not thread-safe.
                self._client = boto3.session.Session().client(
                    "bedrock-runtime",
                    region_name=self.region,
                    config=Config(
                        retries={"mode": "standard"}, connect_timeout=10, read_timeout=120
                    ),
                )
            return self._client

    def request_for(self, request: GenerationRequest) -> dict[str, Any]:
        """The `converse_stream` keyword arguments for one request."""
        return {
            "modelId": self.model_id,
            "messages": [
                {"role": message.role, "content": [{"text": text} for text in message.texts]}
                for message in request.conversation()
            ],
            "inferenceConfig": {"maxTokens": self.max_tokens},
        }

    def __call__(self, request: GenerationRequest) -> Iterator[str]:
        # The call itself must not block the event loop: everything, including the API call,
        # happens in the generator body, which the driver runs in a worker thread.
        response = self.client.converse_stream(**self.request_for(request))
        stream = response["stream"]
        try:
            for event in stream:
                delta = event.get("contentBlockDelta")
                if delta is not None:
                    text = delta.get("delta", {}).get("text")
                    if text:
                        yield text
                    continue
                for key, value in event.items():
                    # botocore raises these itself; a plain iterable of dicts (a fake, a
                    # wrapper) may carry them as events.
                    if key.endswith("Exception"):
                        message = value.get("message", "") if isinstance(value, dict) else value
                        raise BedrockSourceError(f"Bedrock {key}: {message}")
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # give the HTTP connection back even when stopped early
