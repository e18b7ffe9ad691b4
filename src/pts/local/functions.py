"""The functions of `template.yaml`, each in execution environments of its own, as on Lambda.

A `LocalFunction` is a pool of sandboxes (`python -m pts.local.sandbox`), one process each,
started with the function's environment and nothing else. As on Lambda:

- one invocation at a time per sandbox: an idle warm one is reused (the most recent first),
  another is started when all are busy, up to `max_sandboxes` (then invocations wait: locally
  that is kinder than Lambda's throttling, and bounded memory matters more);
- a sandbox is frozen (SIGSTOP) between invocations and thawed (SIGCONT) for the next, so
  work a handler leaves running after its response makes no progress meanwhile;
- a handler's exception comes back as Lambda's `{"errorMessage", "errorType"}` and is raised
  here as `FunctionError`; the sandbox stays warm. A sandbox that exits, or runs past the
  function's `Timeout`, is killed and replaced by the next invocation that needs one.

The web function (Lambda Web Adapter running an ASGI app under uvicorn) is `WebFunction`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pts.local.template import Function

logger = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per readiness probe otherwise

REGION = "us-east-1"

_SPAWNER = ThreadPoolExecutor(1, thread_name_prefix="sandbox-spawner")
"""Starts every sandbox. Linux's parent-death signal fires when the *thread* that started a
process ends: one thread that lives as long as the process makes it mean the process."""


def _spawn(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """A sandbox process (`pts.local.sandbox`) that dies with this one."""
    launcher = [sys.executable, "-m", "pts.local.sandbox", str(os.getpid())]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([*launcher, *command], **options)

    return _SPAWNER.submit(start).result()


class FunctionError(Exception):
    """An invocation that failed: the handler raised, timed out, or its sandbox died."""

    def __init__(self, function: str, error_type: str, message: str) -> None:
        super().__init__(f"{function}: {error_type}: {message}")
        self.error_type = error_type
        self.error_message = message


@dataclass(frozen=True, slots=True)
class Invocation:
    """One invocation, for whoever observes a function (`LocalFunction.observe`)."""

    function: str
    request_id: str
    event: Mapping[str, Any]
    started: float
    """`time.monotonic()` when it was handed to a sandbox."""
    ended: float
    error: str | None = None
    """The error type, if it failed."""


def lambda_environment(function: Function, variables: Mapping[str, str]) -> dict[str, str]:
    """The environment Lambda gives `function`: its variables, then the reserved ones (which
    a function cannot set), with the parent's interpreter and the `pts` package on the path
    in place of the runtime and the layer."""
    name = function.logical_id
    pts_root = str(Path(__file__).resolve().parents[2])
    caller_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    python_path = dict.fromkeys([str(function.code_uri), pts_root, *caller_path])
    return {
        **variables,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "_HANDLER": function.handler,
        "LAMBDA_TASK_ROOT": str(function.code_uri),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin:/usr/bin:/bin"]),
        "PYTHONPATH": os.pathsep.join(python_path),
        "PYTHONUNBUFFERED": "1",
        # The layer has no awscrt: botocore signs in pure Python on Lambda, so here too.
        "BOTO_DISABLE_CRT": "true",
        # No X-Ray daemon listens here (`Tracing: Active` gives Lambda one): Powertools'
        # Tracer records nothing, as it does under `sam local`.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


class Sandbox:
    """One execution environment: a `pts.local.sandbox` process and its two pipes."""

    def __init__(self, function: Function, env: Mapping[str, str]) -> None:
        self.function = function
        requests_read, self._requests = os.pipe()
        self._responses, responses_write = os.pipe()
        self.process = _spawn(
            [str(requests_read), str(responses_write)],
            env=dict(env),
            pass_fds=(requests_read, responses_write),
            stdin=subprocess.DEVNULL,
        )
        os.close(requests_read)
        os.close(responses_write)
        self._buffer = b""
        self.frozen = False
        ready = self._read_line(deadline=time.monotonic() + 60)
        if "ready" not in ready:
            self.kill()
            error_type = ready.get("errorType", "Runtime.Unknown")
            raise FunctionError(function.logical_id, error_type, ready["errorMessage"])

    @property
    def pid(self) -> int:
        return self.process.pid

    def invoke(self, event: Mapping[str, Any], request_id: str) -> Any:
        timeout = self.function.timeout
        deadline_ms = int(time.time() * 1000) + timeout * 1000
        request = {"event": event, "requestId": request_id, "deadlineMs": deadline_ms}
        self.thaw()
        try:
            os.write(self._requests, json.dumps(request).encode() + b"\n")
        except BrokenPipeError:
            self._exited()
        answer = self._read_line(deadline=time.monotonic() + timeout)
        if "result" in answer:
            return answer["result"]
        raise FunctionError(self.function.logical_id, answer["errorType"], answer["errorMessage"])

    def _read_line(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            # poll, not select: with a thousand viewers connected, pipe fds pass FD_SETSIZE.
            ready = select.poll()
            ready.register(self._responses, select.POLLIN)
            if left <= 0 or not ready.poll(left * 1000):
                self.kill()
                raise FunctionError(
                    self.function.logical_id,
                    "Sandbox.Timedout",
                    f"Task timed out after {self.function.timeout} seconds",
                )
            chunk = os.read(self._responses, 1 << 16)
            if not chunk:
                self._exited()
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _exited(self) -> None:
        code = self.process.wait()
        self.kill()
        raise FunctionError(
            self.function.logical_id, "Runtime.ExitError", f"the runtime exited with {code}"
        )

    def freeze(self) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        if self.frozen and self.alive:
            self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL (which a frozen process gets too), then release the pipes."""
        if self.alive:
            self.process.kill()
        self.process.wait()
        for fd in (self._requests, self._responses):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._requests = self._responses = -1


class LocalFunction:
    """A function of the template: `invoke(event)` runs it in one of its sandboxes."""

    def __init__(
        self, function: Function, env: Mapping[str, str], *, max_sandboxes: int = 4
    ) -> None:
        self.function = function
        self.env = dict(env)
        """The whole environment of its sandboxes."""
        self.max_sandboxes = max_sandboxes
        self._idle: list[Sandbox] = []
        self._busy: set[Sandbox] = set()
        self._starting = 0
        self._changed = threading.Condition()
        self._observers: list[Callable[[Invocation], None]] = []
        self._closed = False

    @property
    def name(self) -> str:
        return self.function.logical_id

    @property
    def pids(self) -> list[int]:
        """The process ids of its live sandboxes."""
        with self._changed:
            return [s.pid for s in [*self._idle, *self._busy] if s.alive]

    def observe(self, observer: Callable[[Invocation], None]) -> None:
        """Call `observer` after every invocation (in the invoking thread)."""
        self._observers.append(observer)

    def warm(self) -> None:
        """Start one sandbox now, as a first request would: init errors surface here."""
        sandbox = self._acquire()
        self._release(sandbox)

    def invoke(self, event: Mapping[str, Any]) -> Any:
        """Run the handler once (blocking), like a synchronous Lambda invoke."""
        sandbox = self._acquire()
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        error: str | None = None
        try:
            return sandbox.invoke(event, request_id)
        except FunctionError as failure:
            error = failure.error_type
            raise
        finally:
            self._release(sandbox)
            if self._observers:
                done = Invocation(self.name, request_id, event, started, time.monotonic(), error)
                for observer in self._observers:
                    observer(done)

    def _acquire(self) -> Sandbox:
        with self._changed:
            while True:
                if self._closed:
                    raise FunctionError(self.name, "Local.Stopped", "the local stack is stopping")
                while self._idle:
                    sandbox = self._idle.pop()
                    if sandbox.alive:
                        self._busy.add(sandbox)
                        return sandbox
                    logger.warning("%s: sandbox %d had exited", self.name, sandbox.pid)
                    sandbox.kill()
                if len(self._busy) + self._starting < self.max_sandboxes:
                    self._starting += 1
                    break
                self._changed.wait()
        try:
            sandbox = Sandbox(self.function, self.env)
        finally:
            with self._changed:
                self._starting -= 1
                self._changed.notify()
        with self._changed:
            if self._closed:
                sandbox.kill()
                raise FunctionError(self.name, "Local.Stopped", "the local stack is stopping")
            self._busy.add(sandbox)
        return sandbox

    def _release(self, sandbox: Sandbox) -> None:
        with self._changed:
            self._busy.discard(sandbox)
            if sandbox.alive and not self._closed:
                sandbox.freeze()
                self._idle.append(sandbox)
            else:
                sandbox.kill()
            self._changed.notify()

    def close(self) -> None:
        """Kill every sandbox; a running invocation fails (its sandbox dies under it)."""
        with self._changed:
            self._closed = True
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
            self._changed.notify_all()
        for sandbox in idle:
            sandbox.kill()
        for sandbox in busy:  # its invoking thread cleans up
            if sandbox.alive:
                sandbox.process.kill()


class WebFunction:
    """A function Lambda Web Adapter runs (`Handler: run.sh`, `AWS_LAMBDA_EXEC_WRAPPER`): its
    `run.sh` in a process of its own, listening on `PORT` of 127.0.0.1, as the adapter starts
    it; ready once its readiness path (`AWS_LWA_READINESS_CHECK_PATH`) answers.

    Locally one process serves every request (the adapter's per-request environments are not
    emulated): it is never frozen, and requests share it concurrently.
    """

    def __init__(self, function: Function, env: Mapping[str, str]) -> None:
        self.function = function
        self.env = dict(env)
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def runs(function: Function) -> bool:
        return function.handler == "run.sh" and "AWS_LAMBDA_EXEC_WRAPPER" in function.environment

    @property
    def name(self) -> str:
        return self.function.logical_id

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    @property
    def pids(self) -> list[int]:
        return [self.process.pid] if self.process and self.process.poll() is None else []

    def start(self, timeout: float = 60) -> None:
        script = self.function.code_uri / self.function.handler
        self.process = _spawn(["--exec", "/bin/sh", str(script)], env=self.env)
        path = self.env.get("AWS_LWA_READINESS_CHECK_PATH", "/")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise FunctionError(self.name, "Runtime.ExitError", "run.sh exited at start")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + path, timeout=1).status_code < 500:
                    return
            time.sleep(0.05)
        self.stop()
        raise FunctionError(self.name, "Sandbox.Timedout", f"{path} did not answer in time")

    def stop(self, grace: float = 5) -> None:
        """SIGTERM (uvicorn ends its responses), SIGKILL after `grace` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
