"""Mark streams that stopped, or never started, `timeout` (docs/protocol.md, lifecycle).

A driver that dies (a crashed Lambda, a lost container) leaves its stream `streaming`
forever; a chat nobody drives stays `pending`. The sweeper runs on a schedule, reads only
live streams (the sparse `ActiveStreams` index) and ends the stale ones. Alive is not idle:
a driver bumps its stream's `updatedAt` with every batch and, while its source is silent,
with a heartbeat, so a stale `updatedAt` means the driver is gone (or frozen). Each end is
conditional on `updatedAt` being still the one read, so it never races a live driver; and a
frozen driver that thaws afterwards can store nothing more (`StreamStore.append`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pts import observability
from pts.config import Settings
from pts.storage import Status, StreamStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SweepResult:
    timed_out: list[str]
    checked: int

    def as_dict(self) -> dict[str, object]:
        return {"timedOut": self.timed_out, "checked": self.checked}


def sweep(
    store: StreamStore, *, idle_timeout: float, pending_timeout: float, now: float | None = None
) -> SweepResult:
    now = time.time() if now is None else now
    timed_out: list[str] = []
    checked = 0
    for stream_id, updated_at in store.active_streams(Status.PENDING, now - pending_timeout):
        checked += 1
        if store.time_out(stream_id, Status.PENDING, updated_at):
            timed_out.append(stream_id)
    silent = f"no sign of its driver for {idle_timeout:g} s"
    for stream_id, updated_at in store.active_streams(Status.STREAMING, now - idle_timeout):
        checked += 1
        if store.time_out(stream_id, Status.STREAMING, updated_at, silent):
            timed_out.append(stream_id)
    for stream_id in timed_out:
        logger.info("timed out stream %s", stream_id, extra={"streamId": stream_id})
    observability.metrics.add_metric(
        name=observability.TIMEOUTS, unit=observability.MetricUnit.Count, value=len(timed_out)
    )
    return SweepResult(timed_out, checked)


def sweep_from_env(settings: Settings | None = None) -> SweepResult:
    settings = settings or Settings.from_env()
    store = StreamStore(settings.table, retention_days=settings.retention_days)
    return sweep(
        store, idle_timeout=settings.idle_timeout, pending_timeout=settings.pending_timeout
    )
