"""Invoke the functions of `template.yaml` in-process, as Lambda would: same handler file,
same event shapes, a context object with Lambda's attributes."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

from pts.local.template import Function


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    region: str = "us-east-1"
    account: str = "000000000000"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    log_stream_name: str = "local"
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


class LocalFunction:
    """One function of the template: its handler, loaded from its `CodeUri` folder."""

    def __init__(self, function: Function) -> None:
        self.function = function
        module_name, _, attr = function.handler.rpartition(".")
        path = function.code_uri / f"{module_name}.py"
        unique = f"_pts_function_{function.logical_id}"
        spec = importlib.util.spec_from_file_location(unique, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {function.logical_id}'s handler from {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        spec.loader.exec_module(module)
        self.handler = getattr(module, attr)

    def invoke(self, event: dict[str, Any]) -> Any:
        """Call the handler once (blocking), like a synchronous Lambda invoke."""
        return self.handler(event, LambdaContext(self.function.logical_id))
