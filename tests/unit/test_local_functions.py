"""Functions in sandbox processes: own environment, Lambda's errors, one request per
sandbox, frozen between invocations, replaced when they die or time out."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pts.local.functions import FunctionError, Invocation, LocalFunction, lambda_environment
from pts.local.stack import LocalStack, StackOptions
from pts.local.template import Function, Template

HANDLER = """
import os, threading, time

ticks = []

def _tick():
    while True:
        ticks.append(time.monotonic())
        time.sleep(0.01)

def handler(event, context):
    action = event.get("action")
    if action == "env":
        return dict(os.environ)
    if action == "context":
        return {"name": context.function_name, "id": context.aws_request_id,
                "left": context.get_remaining_time_in_millis(),
                "arn": context.invoked_function_arn}
    if action == "raise":
        raise ValueError("bad input")
    if action == "exit":
        os._exit(3)
    if action == "sleep":
        time.sleep(event["seconds"])
        return os.getpid()
    if action == "background":
        threading.Thread(target=_tick, daemon=True).start()
        return len(ticks)
    if action == "ticks":
        return len(ticks)
    return os.getpid()
"""


@pytest.fixture
def code(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(HANDLER)
    return tmp_path


def function_of(code: Path, timeout: int = 3) -> Function:
    return Function("EchoFunction", code, "app.handler", {}, {}, memory_size=256, timeout=timeout)


@pytest.fixture
def echo(code: Path) -> Iterator[LocalFunction]:
    function = function_of(code)
    local = LocalFunction(function, lambda_environment(function, {"MINE": "1"}), max_sandboxes=2)
    yield local
    local.close()


def test_a_sandbox_sees_only_its_own_environment(echo: LocalFunction, monkeypatch):
    monkeypatch.setenv("PTS_LEAK", "from the parent")
    env = echo.invoke({"action": "env"})
    assert env["MINE"] == "1"
    assert "PTS_LEAK" not in env
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "EchoFunction"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["_HANDLER"] == "app.handler"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    # No X-Ray daemon listens locally: Powertools' Tracer must not try to reach one.
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true"
    context = echo.invoke({"action": "context"})
    assert context["name"] == "EchoFunction"
    assert 0 < context["left"] <= 3000
    assert context["arn"].endswith(":function:EchoFunction")


def test_errors_come_back_as_lambdas_and_the_sandbox_stays_warm(echo: LocalFunction):
    pid = echo.invoke({})
    with pytest.raises(FunctionError) as raised:
        echo.invoke({"action": "raise"})
    assert (raised.value.error_type, raised.value.error_message) == ("ValueError", "bad input")
    assert echo.invoke({}) == pid


def test_a_crashed_sandbox_is_replaced(echo: LocalFunction):
    pid = echo.invoke({})
    with pytest.raises(FunctionError) as raised:
        echo.invoke({"action": "exit"})
    assert raised.value.error_type == "Runtime.ExitError"
    assert echo.invoke({}) != pid
    assert echo.pids == [echo.invoke({})]


def test_a_timed_out_invocation_kills_its_sandbox(code: Path):
    function = function_of(code, timeout=1)
    local = LocalFunction(function, lambda_environment(function, {}))
    try:
        pid = local.invoke({})
        with pytest.raises(FunctionError) as raised:
            local.invoke({"action": "sleep", "seconds": 5})
        assert raised.value.error_type == "Sandbox.Timedout"
        assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z"
        assert local.invoke({}) != pid
    finally:
        local.close()


def test_one_request_per_sandbox_up_to_the_bound(echo: LocalFunction):
    pids: list[int] = []
    threads = [
        threading.Thread(target=lambda: pids.append(echo.invoke({"action": "sleep", "seconds": 1})))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pids) == 3
    assert len(set(pids)) == 2  # two sandboxes at most; the third request waited for one
    assert sorted(echo.pids) == sorted(set(pids))


def test_an_idle_sandbox_is_frozen_and_its_background_work_stops(echo: LocalFunction):
    echo.invoke({"action": "background"})
    (pid,) = echo.pids
    for _ in range(100):  # SIGSTOP is delivered asynchronously
        if _state(pid) == "T":
            break
        time.sleep(0.01)
    assert _state(pid) == "T"  # stopped between invocations
    first = echo.invoke({"action": "ticks"})
    time.sleep(0.5)
    second = echo.invoke({"action": "ticks"})
    assert second - first < 10  # frozen for 0.5 s: at most a tick or two while thawed


def test_observers_see_every_invocation(echo: LocalFunction):
    seen: list[Invocation] = []
    echo.observe(seen.append)
    echo.invoke({"n": 1})
    with pytest.raises(FunctionError):
        echo.invoke({"action": "raise"})
    assert [s.event for s in seen] == [{"n": 1}, {"action": "raise"}]
    assert [s.error for s in seen] == [None, "ValueError"]
    assert all(s.ended >= s.started for s in seen)


def test_init_errors_surface_when_warming(tmp_path: Path):
    (tmp_path / "app.py").write_text("import no_such_module\n")
    function = function_of(tmp_path)
    local = LocalFunction(function, lambda_environment(function, {}))
    with pytest.raises(FunctionError) as raised:
        local.warm()
    assert raised.value.error_type == "Runtime.ImportModuleError"
    assert local.pids == []


def test_each_template_function_gets_only_its_own_variables(monkeypatch):
    """What the stack computes for each function of template.yaml (no process started)."""
    monkeypatch.setenv("PTS_DEMO_REPLY_TOKENS", "7")  # a caller's knob, undeclared: passes
    monkeypatch.setenv("PTS_GENERATOR", "echo")  # overrides a parameter value
    monkeypatch.setenv("PTS_TABLE", "elsewhere")  # never beats the local table
    monkeypatch.setenv("PTS_HTTP_PORT", "9999")  # the stack's own knob: not passed on
    monkeypatch.setenv("PORT", "1234")  # not a knob
    stack = LocalStack(StackOptions(table_prefix="envtest"), Template())
    stack.dynamodb.table_names = {"StreamsTable": "local-streams", "ConnectionsTable": "local-c"}
    stack.dynamodb.endpoint = "http://127.0.0.1:1"
    functions = stack.template.functions()
    stream = stack.function_environment(functions["StreamFunction"], PORT="8123")
    fanout = stack.function_environment(functions["FanoutFunction"])
    assert stream["PORT"] == "8123" and "PORT" not in fanout
    assert stream["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert "AWS_LAMBDA_EXEC_WRAPPER" not in fanout and "PTS_CORS_ORIGINS" not in fanout
    assert stream["AWS_LAMBDA_FUNCTION_NAME"] == "StreamFunction"
    assert fanout["AWS_LAMBDA_FUNCTION_NAME"] == "FanoutFunction"
    assert fanout["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1769"  # template.yaml: one vCPU
    assert stream["PTS_GENERATOR"] == "echo"
    assert "PTS_BEDROCK_MODEL_ID" in stream and "PTS_BEDROCK_MODEL_ID" not in fanout
    assert stream["PTS_TABLE"] == fanout["PTS_TABLE"] == "local-streams"
    assert fanout["PTS_DEMO_REPLY_TOKENS"] == "7"
    assert "PTS_HTTP_PORT" not in stream
    assert fanout["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:1"
    assert fanout["AWS_ACCESS_KEY_ID"] == "local"
    assert set(stream) - set(fanout) >= {"PORT", "AWS_LWA_INVOKE_MODE", "PTS_CORS_ORIGINS"}
    assert "HOME" not in fanout and "VIRTUAL_ENV" not in fanout


def test_extra_environment_reaches_one_function(monkeypatch):
    options = StackOptions(
        function_environment={"SweeperFunction": {"PTS_X": "1", "_HANDLER": "x"}}
    )
    stack = LocalStack(options, Template())
    functions = stack.template.functions()
    sweeper = stack.function_environment(functions["SweeperFunction"])
    assert sweeper["PTS_X"] == "1"
    assert sweeper["_HANDLER"] == "app.handler"  # reserved: no function sets it
    assert "PTS_X" not in stack.function_environment(functions["FanoutFunction"])


def _state(pid: int) -> str:
    """The process's state letter from /proc (R, S, T: stopped, Z: zombie)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_no_sandbox_outlives_close(echo: LocalFunction):
    echo.invoke({})
    pids = echo.pids
    echo.close()
    assert pids and not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert os.environ.get("AWS_LAMBDA_FUNCTION_NAME") is None
