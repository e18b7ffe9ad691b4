"""Lambda event filtering: the template's own patterns, and the grammar they may grow into."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pts.local.event_source_mapping import EventSourceMapping
from pts.local.filtering import FilterPattern, passes
from pts.local.template import Template

EVENTS = Path(__file__).resolve().parents[2] / "events"
SAMPLE = json.loads((EVENTS / "dynamodb-stream-batch.json").read_text())
ARN = SAMPLE["Records"][0]["eventSourceARN"]


@pytest.fixture(scope="module")
def patterns(template: Template) -> tuple[FilterPattern, ...]:
    (mapping,) = EventSourceMapping.all_from(template, {"StreamsTable": ARN})
    assert len(mapping.filters) == 2
    return mapping.filters


def batch_insert() -> dict[str, Any]:
    return copy.deepcopy(SAMPLE["Records"][0])


def meta_modify(status: str) -> dict[str, Any]:
    record = copy.deepcopy(SAMPLE["Records"][1])
    record["dynamodb"]["NewImage"]["status"] = {"S": status}
    return record


def chat_insert() -> dict[str, Any]:
    record = batch_insert()
    record["dynamodb"]["NewImage"] = {
        "pk": {"S": "CHAT#c1"},
        "sk": {"S": "CHAT"},
        "kind": {"S": "chat"},
        "prompt": {"S": "hello"},
    }
    return record


def remove() -> dict[str, Any]:
    record = batch_insert()
    record["eventName"] = "REMOVE"
    del record["dynamodb"]["NewImage"]
    return record


@pytest.mark.parametrize("status", ["done", "error", "cancelled", "timeout"])
def test_the_template_lets_batches_and_final_statuses_through(patterns, status: str):
    assert passes(batch_insert(), patterns)
    assert passes(meta_modify(status), patterns)


@pytest.mark.parametrize(
    "record",
    [chat_insert(), meta_modify("streaming"), meta_modify("pending"), remove()],
    ids=["chat insert", "modify to streaming", "modify to pending", "remove"],
)
def test_the_template_keeps_everything_else_away(patterns, record: dict[str, Any]):
    assert not passes(record, patterns)


def test_a_modified_batch_is_not_a_new_batch(patterns):
    record = batch_insert()
    record["eventName"] = "MODIFY"
    assert not passes(record, patterns)


def test_no_filters_let_everything_through():
    assert passes(remove(), ())


def matches(pattern: dict[str, Any], record: dict[str, Any]) -> bool:
    return FilterPattern(json.dumps(pattern)).matches(record)


RECORD = {
    "eventName": "INSERT",
    "dynamodb": {
        "NewImage": {
            "kind": {"S": "batch"},
            "seq": {"N": "7"},
            "tags": {"SS": ["a", "b"]},
            "gone": {"NULL": True},
        }
    },
    "size": 12,
    "flag": False,
    "nothing": None,
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"eventName": ["INSERT", "MODIFY"]}, True),
        ({"eventName": ["REMOVE"]}, False),
        ({"dynamodb": {"NewImage": {"kind": {"S": [{"prefix": "ba"}]}}}}, True),
        ({"dynamodb": {"NewImage": {"kind": {"S": [{"suffix": "ch"}]}}}}, True),
        ({"dynamodb": {"NewImage": {"kind": {"S": [{"equals-ignore-case": "BATCH"}]}}}}, True),
        ({"dynamodb": {"NewImage": {"kind": {"S": [{"anything-but": ["chat"]}]}}}}, True),
        ({"dynamodb": {"NewImage": {"kind": {"S": [{"anything-but": "batch"}]}}}}, False),
        ({"dynamodb": {"NewImage": {"kind": {"S": [{"anything-but": {"prefix": "b"}}]}}}}, False),
        ({"dynamodb": {"NewImage": {"error": [{"exists": False}]}}}, True),
        ({"dynamodb": {"NewImage": {"error": [{"exists": True}]}}}, False),
        ({"dynamodb": {"NewImage": {"kind": [{"exists": True}]}}}, True),
        ({"dynamodb": {"NewImage": {"missing": {"S": [{"anything-but": "x"}]}}}}, False),
        ({"dynamodb": {"NewImage": {"tags": {"SS": ["b"]}}}}, True),  # any element of a list
        ({"dynamodb": {"NewImage": {"seq": {"N": [7]}}}}, False),  # DynamoDB numbers are strings
        ({"dynamodb": {"NewImage": {"seq": {"N": ["7"]}}}}, True),
        ({"dynamodb": {"NewImage": {"gone": {"NULL": [True]}}}}, True),
        ({"size": [{"numeric": [">", 10, "<=", 12]}]}, True),
        ({"size": [{"numeric": ["=", 13]}]}, False),
        ({"size": [12]}, True),
        ({"flag": [False]}, True),
        ({"flag": [0]}, False),
        ({"nothing": [None]}, True),
        ({"nothing": [""]}, False),
        ({"eventName": ["INSERT"], "size": [13]}, False),  # every field must match
        ({"$or": [{"eventName": ["REMOVE"]}, {"size": [12]}]}, True),
        ({"dynamodb": ["INSERT"]}, False),  # a value list never matches an object
    ],
)
def test_filter_grammar(pattern: dict[str, Any], expected: bool):
    assert matches(pattern, RECORD) is expected


def test_unsupported_matchers_are_refused_not_ignored():
    with pytest.raises(ValueError, match="wildcard"):
        matches({"eventName": [{"wildcard": "IN*"}]}, RECORD)
