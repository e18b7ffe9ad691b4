"""Settings, read once from the environment.

The same variable names are set by `template.yaml` on AWS and by the local stack, which
copies them from the template, so code never asks which of the two it runs in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    return default if raw in (None, "") else float(raw)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    return default if raw in (None, "") else int(raw)


@dataclass(frozen=True)  # no slots: from_env reads the class-level defaults
class Settings:
    table: str = "pts-streams"
    """DynamoDB table holding chats, streams and their batches (`PTS_TABLE`)."""
    connections_table: str = "pts-connections"
    """DynamoDB table of WebSocket subscriptions (`PTS_CONNECTIONS_TABLE`)."""
    generator: str = "demo"
    """Text source: `demo`, `bedrock`, `openai` or `package.module:factory` (`PTS_GENERATOR`)."""
    retention_days: int = 30
    idle_timeout: float = 120.0
    pending_timeout: float = 600.0
    batch_max_delay: float = 1.0
    batch_max_bytes: int = 4096
    cors_origins: tuple[str, ...] = ("*",)
    ws_management_url: str | None = None
    """`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}` for `@connections`."""
    ws_url: str | None = None
    """Public WebSocket URL the chat page connects to (`PTS_WS_URL`)."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """The whole environment, for sources that read their own variables."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        origins = env.get("PTS_CORS_ORIGINS", "*")
        return cls(
            table=env.get("PTS_TABLE", cls.table),
            connections_table=env.get("PTS_CONNECTIONS_TABLE", cls.connections_table),
            generator=env.get("PTS_GENERATOR") or cls.generator,
            retention_days=_int(env, "PTS_RETENTION_DAYS", cls.retention_days),
            idle_timeout=_float(env, "PTS_IDLE_TIMEOUT_SECONDS", cls.idle_timeout),
            pending_timeout=_float(env, "PTS_PENDING_TIMEOUT_SECONDS", cls.pending_timeout),
            batch_max_delay=_float(env, "PTS_BATCH_MAX_DELAY_SECONDS", cls.batch_max_delay),
            batch_max_bytes=_int(env, "PTS_BATCH_MAX_BYTES", cls.batch_max_bytes),
            cors_origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
            ws_management_url=env.get("PTS_WS_MANAGEMENT_URL") or None,
            ws_url=env.get("PTS_WS_URL") or None,
            extra=dict(env),
        )
