"""The fan-out at AWS scale, simulated: the real planning and worker code, fake AWS.

What runs is the real thing: `pts.fanout.Fanout` (the one-level fan-out and each worker's
posting, its thread pool and its per-connection rules) and `pts.fanout_workers`
(`SliceDispatcher`'s planning and hand-off, the slice events through JSON, `post_slice`).
What is fake is AWS, with stated latencies:

- `@connections`: every post waits `post_latency` (20 ms: API Gateway's management API
  answers in about 10-30 ms) and takes `post_cpu` of its invocation's CPU. A Lambda
  invocation has its own share of a CPU (512 MB is 512/1769 of a vCPU), so each simulated
  invocation has a lock that its posts hold for `post_cpu`: CPU work is serial within an
  invocation, waiting on the network is not, and invocations do not share a CPU;
- the subscriber `Query`: `query_latency` per 1 MB page (subscription items are ~121 B);
- `lambda:Invoke` (`InvocationType=Event`): `invoke_latency` for the API call, `invoke_cpu`
  of the caller's CPU, then the worker starts `start_delay` later (a warm environment).

Workers run concurrently as Lambda runs them: each on threads of its own, from the moment
its invocation would start. At most `max_live_workers` run at once on this machine (more
would be tens of thousands of threads); every worker's timeline is measured from its own
start, so the figure is the time at which the last viewer would have the batch if all of
them ran at once, which Lambda does (each invocation its own environment). The Python
overhead of the real code runs on this machine's two cores under one interpreter lock,
shared by every simulated invocation: that only makes the figures slower than Lambda.
"""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from pts import protocol
from pts.fanout import Fanout, Outgoing
from pts.fanout_workers import SliceDispatcher, post_slice

SUBSCRIPTION_ITEM_BYTES = 121
QUERY_PAGE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Aws:
    """The simulated latencies and CPU costs, in seconds."""

    post_latency: float = 0.020
    post_cpu: float = 0.001
    query_latency: float = 0.050
    invoke_latency: float = 0.015
    invoke_cpu: float = 0.003
    start_delay: float = 0.030


LAMBDA_FULL_VCPU_MB = 1769
"""Lambda gives a function one vCPU at 1,769 MB, and CPU in proportion to memory."""


def template_memory_mb(function: str = "FanoutWorkerFunction") -> int:
    """The memory `template.yaml` gives the fan-out's worker (and the fan-out)."""
    from pts.local.template import Template

    return Template().functions()[function].memory_size


def lambda_aws(costs: dict[str, float], post_latency: float = 0.020, memory_mb: int = 512) -> Aws:
    """`Aws` with the CPU costs measured on this machine (`bench.scenarios.call_costs`),
    scaled to a `memory_mb` function's share of a vCPU."""
    scale = LAMBDA_FULL_VCPU_MB / memory_mb
    return Aws(
        post_latency=post_latency,
        post_cpu=costs["post_cpu_ms"] / 1000 * scale,
        invoke_cpu=costs["invoke_cpu_ms"] / 1000 * scale,
    )


class _Invocation:
    """One simulated Lambda invocation's CPU: its work is serial, its waits are not.

    Work is booked on the invocation's CPU timeline (absolute times), so a late wake-up of
    this busy machine's scheduler delays one post, not every post after it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.free_at = 0.0

    def spend(self, seconds: float) -> None:
        with self.lock:
            self.free_at = max(time.monotonic(), self.free_at) + seconds
            done = self.free_at
        time.sleep(max(0.0, done - time.monotonic()))


class _Connections:
    def __init__(self, aws: Aws, invocation: _Invocation, log: list[float]) -> None:
        self.aws = aws
        self.invocation = invocation
        self.log = log

    def send(self, connection_id: str, message: bytes) -> bool:
        self.invocation.spend(self.aws.post_cpu)
        time.sleep(self.aws.post_latency)
        self.log.append(time.monotonic())
        return True


class _Subscriptions:
    def __init__(self, aws: Aws, viewers: list[str]) -> None:
        self.aws = aws
        self.viewers = viewers

    def subscribers(self, stream_id: str) -> list[str]:
        pages = max(1, math.ceil(len(self.viewers) * SUBSCRIPTION_ITEM_BYTES / QUERY_PAGE_BYTES))
        time.sleep(pages * self.aws.query_latency)
        return list(self.viewers)

    def remove_connection(self, connection_id: str) -> int:
        return 0


@dataclass
class SimResult:
    viewers: int
    per_invocation: int | None
    """None: one level."""
    ms: float
    """From the fan-out invocation's start to the last viewer's post answered."""
    workers: int
    coordinator_ms: float
    slowest_worker_ms: float
    posts: int


def simulate(
    viewers: int,
    per_invocation: int | None,
    aws: Aws | None = None,
    max_live_workers: int = 8,
) -> SimResult:
    """One batch to `viewers` viewers of one stream; `per_invocation=None`: one level."""
    aws = aws or Aws()
    ids = [f"c{i:06d}=" for i in range(viewers)]
    subscriptions = _Subscriptions(aws, ids)
    message = protocol.encode(
        protocol.delta_message("s" * 32, 7, "The quick brown fox jumps over the lazy dog. " * 3)
    )
    event = {"Records": [_record("s" * 32, message)]}
    runner = ThreadPoolExecutor(max_live_workers, thread_name_prefix="sim-worker")
    lock = threading.Lock()
    worker_spans: list[tuple[float, float]] = []  # (its Lambda start, its last post) offsets
    pending: list[Future[None]] = []
    coordinator = _Invocation()
    coordinator_posts: list[float] = []
    t0 = 0.0

    def run_worker(payload: dict[str, Any], due: float) -> None:
        """A worker from its own start; its span is recorded relative to when it was due."""
        invocation = _Invocation()
        posts: list[float] = []
        fanout = Fanout(subscriptions, _Connections(aws, invocation, posts))  # type: ignore[arg-type]
        started = time.monotonic()
        post_slice(fanout, payload)
        fanout.pool.shutdown(wait=False)
        with lock:
            worker_spans.append((due, due + (max(posts) - started if posts else 0.0)))

    def invoke(payload: dict[str, Any]) -> None:
        coordinator.spend(aws.invoke_cpu)
        time.sleep(aws.invoke_latency)
        due = time.monotonic() - t0 + aws.start_delay
        travelled = json.loads(json.dumps(payload))
        with lock:
            pending.append(runner.submit(run_worker, travelled, due))

    dispatcher = SliceDispatcher(invoke, per_invocation) if per_invocation is not None else None
    fanout = Fanout(
        subscriptions,  # type: ignore[arg-type]
        _Connections(aws, coordinator, coordinator_posts),  # type: ignore[arg-type]
        workers=dispatcher,
    )
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
        DynamoDBStreamEvent,
    )

    t0 = time.monotonic()
    fanout.deliver(DynamoDBStreamEvent(event))
    coordinator_end = time.monotonic() - t0
    own = max(coordinator_posts) - t0 if coordinator_posts else 0.0
    for future in list(pending):
        future.result()
    runner.shutdown()
    fanout.pool.shutdown()
    if dispatcher is not None:
        dispatcher.pool.shutdown()
    last = max([own, *(end for _, end in worker_spans)])
    return SimResult(
        viewers=viewers,
        per_invocation=per_invocation,
        ms=last * 1000,
        workers=len(worker_spans),
        coordinator_ms=coordinator_end * 1000,
        slowest_worker_ms=max((end - due for due, end in worker_spans), default=0.0) * 1000,
        posts=len(coordinator_posts) + viewers - len(coordinator_posts),
    )


def _ms(result: SimResult) -> float:
    return result.ms


def _record(stream_id: str, message: bytes) -> dict[str, Any]:
    """A DynamoDB stream record of a batch insert, as the fan-out gets it."""
    body = json.loads(message)
    image = {
        "pk": {"S": f"STREAM#{stream_id}"},
        "sk": {"S": f"BATCH#{body['seq']:010d}"},
        "kind": {"S": "batch"},
        "streamId": {"S": stream_id},
        "seq": {"N": str(body["seq"])},
        "text": {"S": body["text"]},
    }
    return {
        "eventID": "1",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": {"pk": image["pk"], "sk": image["sk"]},
            "NewImage": image,
            "SequenceNumber": "100",
            "StreamViewType": "NEW_IMAGE",
        },
    }


def sweep(
    counts: tuple[int, ...],
    per_invocation: int,
    aws: Aws,
    one_level_up_to: int = 10_000,
    repeats: int = 3,
    repeat_up_to: int = 20_000,
) -> dict[str, Any]:
    """Both designs at each audience size (one level only up to `one_level_up_to`: it takes
    that long in real time). Two levels: the median run of `repeats` (up to `repeat_up_to`
    viewers; once beyond): this machine's other work only ever adds time."""
    out: dict[str, Any] = {"aws": asdict(aws), "per_invocation": per_invocation, "rows": []}
    for viewers in counts:
        row: dict[str, Any] = {"viewers": viewers}
        times = repeats if viewers <= repeat_up_to else 1
        runs = sorted((simulate(viewers, per_invocation, aws) for _ in range(times)), key=_ms)
        two = runs[len(runs) // 2]
        row["two_level_ms_runs"] = [r.ms for r in runs]
        row["two_level_ms"] = two.ms
        row["workers"] = two.workers
        row["coordinator_ms"] = two.coordinator_ms
        row["slowest_worker_ms"] = two.slowest_worker_ms
        if viewers <= one_level_up_to:
            row["one_level_ms"] = simulate(viewers, None, aws).ms
        out["rows"].append(row)
    return out


_ = Outgoing  # re-exported for readers of the docstring
