"""One execution environment of a function: `python -m pts.local.sandbox PARENT IN_FD OUT_FD`.

What Lambda's Python runtime does, over a pair of pipes instead of the Runtime API: import
the handler named by `_HANDLER` from `LAMBDA_TASK_ROOT` (the function's `CodeUri`) once, at
init, then run one invocation at a time. The parent (`pts.local.functions`) writes one JSON
line per invocation on IN_FD, `{"event", "requestId", "deadlineMs"}`, and reads one line on
OUT_FD: `{"result": …}`, or Lambda's `{"errorMessage", "errorType", "stackTrace"}`. The first
line out says whether init succeeded (`{"ready": true}` or an init error).

The process's environment is the function's own and nothing else (the parent builds it);
stdout and stderr are the parent's, so the handlers' logs reach `make dev`'s output as they
reach CloudWatch on AWS. SIGINT is ignored: a terminal's Ctrl-C goes to the whole process
group, and it is the stack that stops its sandboxes. On Linux the sandbox dies with the
stack's process (even a SIGKILLed one, and even while frozen).

`python -m pts.local.sandbox PARENT --exec COMMAND…` only arranges the same and runs COMMAND
(the streaming function's `run.sh`).
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, BinaryIO


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    function_version: str
    memory_limit_in_mb: int
    log_group_name: str
    log_stream_name: str
    aws_request_id: str
    invoked_function_arn: str
    deadline_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def load_handler(spec: str, task_root: str) -> Any:
    """`module.attr` from `task_root`, which Lambda puts first on `sys.path`."""
    module_name, _, attr = spec.rpartition(".")
    if task_root not in sys.path:
        sys.path.insert(0, task_root)
    return getattr(importlib.import_module(module_name), attr)


def error_of(error: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """An error as Lambda's Python runtime reports it."""
    return {
        "errorMessage": str(error),
        "errorType": error_type or type(error).__name__,
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


def _context(env: os._Environ[str], request: dict[str, Any]) -> LambdaContext:
    name = env["AWS_LAMBDA_FUNCTION_NAME"]
    region = env["AWS_REGION"]
    return LambdaContext(
        function_name=name,
        function_version=env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        memory_limit_in_mb=int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")),
        log_group_name=env.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{name}"),
        log_stream_name=env.get("AWS_LAMBDA_LOG_STREAM_NAME", "local"),
        aws_request_id=request["requestId"],
        invoked_function_arn=f"arn:aws:lambda:{region}:000000000000:function:{name}",
        deadline_ms=int(request["deadlineMs"]),
    )


def serve(requests: BinaryIO, responses: BinaryIO) -> None:
    """Init, then answer invocations until the parent closes the pipe."""

    def send(message: dict[str, Any]) -> None:
        responses.write(json.dumps(message).encode() + b"\n")
        responses.flush()

    try:
        handler = load_handler(os.environ["_HANDLER"], os.environ["LAMBDA_TASK_ROOT"])
    except Exception as error:
        send(error_of(error, "Runtime.ImportModuleError"))
        return
    send({"ready": True})
    for line in requests:
        request = json.loads(line)
        try:
            result = handler(request["event"], _context(os.environ, request))
            answer = json.dumps({"result": result}).encode()
        except Exception as error:
            answer = json.dumps(error_of(error)).encode()
        # Flush the handler's own output first, so its log lines precede the next request's.
        sys.stdout.flush()
        sys.stderr.flush()
        responses.write(answer + b"\n")
        responses.flush()


def die_with_parent(parent: int) -> None:
    """Be killed when the process that started us ends: Linux's parent-death signal, which
    survives `exec` and reaches a stopped process too."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # it ended before we asked
        os._exit(1)


def main(argv: list[str]) -> None:
    die_with_parent(int(argv[1]))
    if argv[2] == "--exec":
        os.execv(argv[3], argv[3:])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = os.fdopen(int(argv[2]), "rb")
    responses = os.fdopen(int(argv[3]), "wb")
    serve(requests, responses)


if __name__ == "__main__":
    main(sys.argv)
