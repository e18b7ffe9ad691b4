"""Settings, read once from the environment.

The same variable names are set by `template.yaml` on AWS and by the local stack, which
copies them from the template, so code never asks which of the two it runs in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

N = TypeVar("N", int, float)

DEFAULT_ACTIVE_LIMIT = 3
"""Live streams per user in `PTS_AUTH=jwt` mode, unless `PTS_MAX_ACTIVE_STREAMS_PER_USER`."""


def _number(env: Mapping[str, str], name: str, default: N, kind: Callable[[str], N]) -> N:
    """`env[name]` as an `int` or a `float`; unset or empty is `default`."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{name} must be {what}, got {raw!r}") from None


@dataclass(frozen=True)  # no slots: from_env reads the class-level defaults
class Settings:
    table: str = "pts-streams"
    """DynamoDB table holding chats, streams and their batches (`PTS_TABLE`)."""
    connections_table: str = "pts-connections"
    """DynamoDB table of WebSocket subscriptions (`PTS_CONNECTIONS_TABLE`)."""
    source: str = "demo"
    """Text source: `demo`, `bedrock`, `openai` or `package.module:factory` (`PTS_SOURCE`;
    `PTS_GENERATOR`, its older name, still works)."""
    retention_days: int = 30
    idle_timeout: float = 120.0
    pending_timeout: float = 600.0
    batch_min_interval: float = 0.5
    """Least time between two batches cut at sentence boundaries (`PTS_BATCH_MIN_INTERVAL_SECONDS`):
    every batch is one message per viewer, so fewer batches are the cheapest lever."""
    batch_max_delay: float = 1.0
    batch_max_bytes: int = 4096
    cors_origins: tuple[str, ...] = ("*",)
    fanout_worker_function: str | None = None
    """The fan-out's second level (`PTS_FANOUT_WORKER_FUNCTION`): the function invoked for
    each slice of a big audience; unset, one invocation posts to every viewer."""
    fanout_viewers_per_invocation: int = 250
    """Viewers one fan-out invocation posts to (`PTS_FANOUT_VIEWERS_PER_INVOCATION`); a
    stream with more is handed to workers in slices of this size."""
    ws_management_url: str | None = None
    """`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}` for `@connections`."""
    ws_url: str | None = None
    """Public WebSocket URL the chat page connects to (`PTS_WS_URL`)."""
    auth: str = "none"
    """`none` (the open demo) or `jwt` (OpenID Connect tokens, `pts.auth`) (`PTS_AUTH`)."""
    max_active_streams_per_user: int | None = None
    """Streams `pending` or `streaming` one user may have at once (`429` beyond;
    `PTS_MAX_ACTIVE_STREAMS_PER_USER`): 3 unless set with `PTS_AUTH=jwt`, no limit unless set
    with `none` (everybody is one user there), 0 = no limit."""
    sign_in_client_id: str | None = None
    """The chat page's client id at the issuer: the first of `PTS_JWT_AUDIENCE`."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """The whole environment, for sources that read their own variables."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        origins = env.get("PTS_CORS_ORIGINS", "*")
        auth = (env.get("PTS_AUTH") or cls.auth).strip().lower()
        if auth not in ("none", "jwt"):
            raise ValueError(f"PTS_AUTH must be 'none' or 'jwt', not {auth!r}")
        limit = _number(
            env,
            "PTS_MAX_ACTIVE_STREAMS_PER_USER",
            DEFAULT_ACTIVE_LIMIT if auth == "jwt" else 0,
            int,
        )
        return cls(
            table=env.get("PTS_TABLE", cls.table),
            connections_table=env.get("PTS_CONNECTIONS_TABLE", cls.connections_table),
            source=env.get("PTS_SOURCE") or env.get("PTS_GENERATOR") or cls.source,
            retention_days=_number(env, "PTS_RETENTION_DAYS", cls.retention_days, int),
            idle_timeout=_number(env, "PTS_IDLE_TIMEOUT_SECONDS", cls.idle_timeout, float),
            pending_timeout=_number(env, "PTS_PENDING_TIMEOUT_SECONDS", cls.pending_timeout, float),
            batch_min_interval=_number(
                env, "PTS_BATCH_MIN_INTERVAL_SECONDS", cls.batch_min_interval, float
            ),
            batch_max_delay=_number(env, "PTS_BATCH_MAX_DELAY_SECONDS", cls.batch_max_delay, float),
            batch_max_bytes=_number(env, "PTS_BATCH_MAX_BYTES", cls.batch_max_bytes, int),
            cors_origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
            ws_management_url=env.get("PTS_WS_MANAGEMENT_URL") or None,
            fanout_worker_function=env.get("PTS_FANOUT_WORKER_FUNCTION") or None,
            fanout_viewers_per_invocation=_number(
                env,
                "PTS_FANOUT_VIEWERS_PER_INVOCATION",
                cls.fanout_viewers_per_invocation,
                int,
            ),
            ws_url=env.get("PTS_WS_URL") or None,
            auth=auth,
            sign_in_client_id=(env.get("PTS_JWT_AUDIENCE") or "").split(",")[0].strip() or None,
            max_active_streams_per_user=limit if limit > 0 else None,
            extra=dict(env),
        )
