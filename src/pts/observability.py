"""Logs, traces and metrics: one Powertools setup for every function (docs/operations.md).

- **Logs**: JSON lines through Powertools' Logger, named after `POWERTOOLS_SERVICE_NAME`
  (template.yaml's Globals). The library logs with plain `logging` (`pts.*`); `logger()`
  routes those loggers through the same handler, so every line has one shape. A line written
  while a stream is handled carries its `streamId`: `stream_context` sets it in a context
  variable, which is right per thread and per asyncio task, so the fan-out's pool threads
  and the streaming app's concurrent streams never swap ids.
- **Traces**: Powertools' Tracer for the Lambda handlers (X-Ray; boto3 calls recorded). It
  is created only by the handlers: the streaming app runs under Lambda Web Adapter, outside
  the runtime that gives a trace its segment. Locally no X-Ray daemon listens, and the
  local stack sets `POWERTOOLS_TRACE_DISABLED` in its sandboxes.
- **Metrics**: CloudWatch's embedded metric format (EMF), one JSON line on stdout that
  CloudWatch Logs turns into metrics. The Lambda handlers share `metrics`, flushed by
  `@metrics.log_metrics` once per invocation (one invocation at a time per process). The
  streaming app drives many streams at once in one long-lived process, so each stream's
  driver keeps its own totals and `emit_stream` writes them once it has ended, through an
  `EphemeralMetrics` of their own (an instance's own metric set): nothing leaks between
  streams.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import THREAD_LOCAL_KEYS
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from pts.protocol import load_json

__all__ = [
    "BATCHES_WRITTEN",
    "BYTES_PERSISTED",
    "CANCELS",
    "CONNECTIONS_GIVEN_UP",
    "DELIVERY_LAG",
    "GONE_CONNECTIONS",
    "MESSAGES_FANNED_OUT",
    "NAMESPACE",
    "SERVICE",
    "STALE_WRITES_REFUSED",
    "TIMEOUTS",
    "UNITS",
    "MetricUnit",
    "correlate",
    "count",
    "emit_stream",
    "logger",
    "metrics",
    "on_lambda",
    "stream_context",
    "stream_id_of",
    "tracer",
]

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "pts"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "PersistentTextStreaming"

# The metrics (docs/operations.md lists them with their units and meaning).
BATCHES_WRITTEN = "BatchesWritten"
BYTES_PERSISTED = "BytesPersisted"
MESSAGES_FANNED_OUT = "MessagesFannedOut"
GONE_CONNECTIONS = "GoneConnections"
CONNECTIONS_GIVEN_UP = "ConnectionsGivenUp"
DELIVERY_LAG = "DeliveryLag"
CANCELS = "Cancels"
TIMEOUTS = "Timeouts"
STALE_WRITES_REFUSED = "StaleWritesRefused"

metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
"""The Lambda handlers' metrics: flushed by `@metrics.log_metrics` after each invocation."""


UNITS = {BYTES_PERSISTED: MetricUnit.Bytes, DELIVERY_LAG: MetricUnit.Milliseconds}
"""Each metric's unit; the others are counts."""


def emit_stream(stream_id: str, totals: Mapping[str, float]) -> None:
    """One stream's metrics, as one EMF line of their own: right in a process that serves
    many streams at once. The line names the stream (`streamId`, a property to search by,
    not a dimension: one per stream would be a metric per stream)."""
    if not totals:
        return
    own = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    own.add_metadata(key="streamId", value=stream_id)
    for name, value in totals.items():
        own.add_metric(name=name, unit=UNITS.get(name, MetricUnit.Count), value=value)
    own.flush_metrics()


def count(name: str, value: float = 1) -> None:
    """Emit one count now, on its own EMF line: for work that is neither a Lambda invocation
    nor a stream's drive (a cancel answered by the streaming app)."""
    once = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    once.add_metric(name=name, unit=MetricUnit.Count, value=value)
    once.flush_metrics()


@contextmanager
def stream_context(stream_id: str | None) -> Iterator[None]:
    """Log lines written inside carry `streamId` (this thread's or task's context only)."""
    if stream_id is None:
        yield
        return
    token = THREAD_LOCAL_KEYS.set({**THREAD_LOCAL_KEYS.get(), "streamId": stream_id})
    try:
        yield
    finally:
        THREAD_LOCAL_KEYS.reset(token)


def correlate(stream_id: str) -> None:
    """`stream_context` for the rest of the current asyncio task (and the tasks it starts)."""
    THREAD_LOCAL_KEYS.set({**THREAD_LOCAL_KEYS.get(), "streamId": stream_id})


def stream_id_of(body: str | None) -> str | None:
    """The `streamId` a client's frame names, if any: only to label log lines, so anything
    malformed is simply None (the routes answer it)."""
    try:
        frame = load_json(body or "")
    except ValueError:
        return None
    stream_id = frame.get("streamId") if isinstance(frame, dict) else None
    return stream_id[:100] if isinstance(stream_id, str) else None


def on_lambda() -> bool:
    """Running as a Lambda function (or in the local stack's emulation of one)."""
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ


@cache
def logger() -> Logger:
    """This process's Logger, with the library's `pts.*` loggers written through it."""
    log = Logger(service=SERVICE)
    library = logging.getLogger("pts")
    if SERVICE.split(".")[0] != "pts":  # else the Logger is "pts" itself, or a child of it
        library.handlers = [log.logger_handler]
        library.setLevel(log.log_level)
        library.propagate = False  # the runtime's root handler would print each line again
    return log


@cache
def tracer() -> Tracer:
    """The Lambda handlers' Tracer (disabled off Lambda and in the local stack)."""
    return Tracer(service=SERVICE)
