"""Which resources of the template a property points at, through CloudFormation intrinsics.

Enough to follow `!GetAtt Fn.Arn`, `!Ref Fn` and `!Sub "...${Fn.Arn}..."` from routes,
integrations and event source mappings to functions, tables and queues.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any


def function_ids(value: Any, candidates: Iterable[str]) -> set[str]:
    """The logical ids among `candidates` that `value` refers to."""
    return {name for name in candidates if refers_to(value, name)}


def refers_to(value: Any, logical_id: str) -> bool:
    """Whether `value` mentions resource `logical_id` (Ref, GetAtt, or inside a Sub string)."""
    if isinstance(value, dict):
        if value.get("Ref") == logical_id:
            return True
        if "Fn::GetAtt" in value and value["Fn::GetAtt"][0] == logical_id:
            return True
        return any(refers_to(item, logical_id) for item in value.values())
    if isinstance(value, list):
        return any(refers_to(item, logical_id) for item in value)
    if isinstance(value, str):
        return re.search(rf"\$\{{{re.escape(logical_id)}(\.[A-Za-z]+)?\}}", value) is not None
    return False


def attribute_of(value: Any) -> tuple[str, str] | None:
    """`(logical id, attribute)` of a `!GetAtt X.Attr`, else None."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        if isinstance(target, str):
            target = target.split(".", 1)
        if len(target) == 2 and all(isinstance(part, str) for part in target):
            return target[0], target[1]
    return None
