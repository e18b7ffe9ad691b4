"""Lambda event filtering (`FilterCriteria`), as applied to DynamoDB stream records.

The subset of the EventBridge pattern grammar that Lambda supports: nested objects; value
lists of exact strings, numbers, booleans and null; and the matchers `prefix`, `suffix`,
`equals-ignore-case`, `anything-but` (values or a `prefix`), `exists` and `numeric`; `$or`.
All of a pattern's fields must match; a list value in the record matches if any element
does. DynamoDB numbers are strings (`{"N": "5"}`), so, as on AWS, `numeric` and number
literals never match them. A record passes a `FilterCriteria` if any of its patterns matches.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_MISSING = object()
_COMPARE = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class FilterPattern:
    """One filter's `Pattern` (a JSON string, as in the template, or a dict)."""

    def __init__(self, pattern: str | Mapping[str, Any]) -> None:
        self.pattern: Mapping[str, Any] = (
            json.loads(pattern) if isinstance(pattern, str) else pattern
        )
        if not isinstance(self.pattern, Mapping):
            raise ValueError(f"a filter pattern is a JSON object: {pattern!r}")

    def matches(self, record: Mapping[str, Any]) -> bool:
        return _object(self.pattern, record)

    def __repr__(self) -> str:
        return f"FilterPattern({json.dumps(self.pattern)})"


def passes(record: Mapping[str, Any], patterns: Sequence[FilterPattern]) -> bool:
    """No patterns lets everything through; otherwise any one pattern must match."""
    return not patterns or any(pattern.matches(record) for pattern in patterns)


def _object(pattern: Mapping[str, Any], value: Any) -> bool:
    for key, rule in pattern.items():
        if key == "$or":
            if not any(_object(alternative, value) for alternative in rule):
                return False
            continue
        field = value.get(key, _MISSING) if isinstance(value, Mapping) else _MISSING
        if isinstance(rule, Mapping):
            if not isinstance(field, Mapping) or not _object(rule, field):
                return False
        elif isinstance(rule, list):
            if not _field(rule, field):
                return False
        else:
            raise ValueError(f"a pattern's leaves are lists of values or matchers: {rule!r}")
    return True


def _field(rules: list[Any], field: Any) -> bool:
    for rule in rules:
        if isinstance(rule, Mapping) and "exists" in rule:
            if (field is not _MISSING) == bool(rule["exists"]):
                return True
            continue
        if field is _MISSING:
            continue
        values: Iterable[Any] = field if isinstance(field, list) else (field,)
        if any(_leaf(rule, value) for value in values):
            return True
    return False


def _leaf(rule: Any, value: Any) -> bool:
    if not isinstance(rule, Mapping):
        return _equal(rule, value)
    (name, argument), *more = rule.items()
    if more:
        raise ValueError(f"one matcher per object: {rule!r}")
    if name == "prefix":
        return isinstance(value, str) and value.startswith(argument)
    if name == "suffix":
        return isinstance(value, str) and value.endswith(argument)
    if name == "equals-ignore-case":
        return isinstance(value, str) and value.casefold() == argument.casefold()
    if name == "anything-but":
        if isinstance(argument, Mapping):
            return not _leaf(argument, value)
        excluded = argument if isinstance(argument, list) else [argument]
        return not any(_equal(item, value) for item in excluded)
    if name == "numeric":
        return _numeric(argument, value)
    raise ValueError(f"unsupported filter matcher {name!r}")


def _equal(expected: Any, value: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool) or expected is None:
        return expected is value or (expected == value and type(expected) is type(value))
    if isinstance(expected, int | float):
        return isinstance(value, int | float) and expected == value
    return isinstance(value, str) and expected == value


def _numeric(conditions: list[Any], value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    pairs = zip(conditions[::2], conditions[1::2], strict=True)
    return all(_COMPARE[op](value, bound) for op, bound in pairs)
