"""Percentiles and medians, pure and dependency-free."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(values: Iterable[float], p: float) -> float:
    """The `p`-th percentile (0–100) with linear interpolation between closest ranks.

    The same definition as numpy's default (`method="linear"`); NaN for no values.
    """
    data = sorted(values)
    if not 0 <= p <= 100:
        raise ValueError(f"p must be within [0, 100], got {p}")
    if not data:
        return math.nan
    rank = (len(data) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def median(values: Iterable[float]) -> float:
    return percentile(values, 50)


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of `values`, for the table."""
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


def ratio(value: float, baseline: float) -> float:
    """`value / baseline`; NaN when the baseline is zero."""
    return value / baseline if baseline else math.nan


def delivery_lags(
    emitted: Sequence[tuple[int, float]], received: Sequence[tuple[int, float]]
) -> list[float]:
    """For each emitted piece, how long until a receiver had it, in seconds.

    `emitted`: `(end byte offset, time)` of each piece, in order. `received`: `(bytes held,
    time)` after each receipt, in order (bytes held never decreasing). A piece is had once
    the receiver holds its last byte; pieces never received are left out.
    """
    lags: list[float] = []
    j = 0
    for end, sent_at in emitted:
        while j < len(received) and received[j][0] < end:
            j += 1
        if j == len(received):
            break
        lags.append(received[j][1] - sent_at)
    return lags
