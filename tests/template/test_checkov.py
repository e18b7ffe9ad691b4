"""checkov finds nothing to fix in template.yaml, nor in what the SAM transform makes of it;
every check it skips is skipped in the template, with the reason written next to it.

checkov pins its own boto3 and cannot share the project's environment: `make test` installs
it into `.venv/checkov` (pinned in pyproject.toml's `checkov` dependency group).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode
from samtranslator.translator.transform import transform

from tests.template.test_template_cfn import REGION, TEMPLATE, _NoManagedPolicies, _packaged

pytestmark = pytest.mark.slow


def checkov_executable() -> str:
    """`$CHECKOV`, else the one `make test` installs beside this venv, else one on PATH."""
    candidates = [
        os.environ.get("CHECKOV"),
        str(Path(sys.executable).parent.parent / "checkov" / "bin" / "checkov"),
        shutil.which("checkov"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("checkov is not installed: `make test` puts it in .venv/checkov")


def scan(path: Path) -> dict[str, Any]:
    """checkov's CloudFormation report on one file, offline."""
    run = subprocess.run(
        [
            checkov_executable(),
            "--file",
            str(path),
            "--framework",
            "cloudformation",
            "--skip-download",  # no guidelines from Prisma Cloud: no network here, nor in CI
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "LOG_LEVEL": "ERROR"},
    )
    assert run.returncode in (0, 1), run.stderr[-3000:]  # 1: failed checks, reported below
    report = json.loads(run.stdout)
    assert isinstance(report, dict), report  # one framework, one report
    return report


def failures(report: dict[str, Any]) -> list[str]:
    return [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]


def assert_clean(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, report["results"].get("parsing_errors")
    assert summary["resource_count"] > 0
    assert summary["failed"] == 0, "\n".join(failures(report))
    for check in report["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment", "")
        assert reason and reason != "No comment provided", (check["check_id"], check["resource"])


def with_inherited_skips(source: dict[str, Any], transformed: dict[str, Any]) -> dict[str, Any]:
    """The transformed template, each resource SAM generated carrying the checkov skips of the
    SAM resource it came from (`StreamFunction` → `StreamFunctionUrl`, `StreamFunctionRole`):
    a skip is written once, on the resource the template declares."""
    declared = source["Resources"]
    for name, resource in transformed["Resources"].items():
        if name in declared:
            continue
        origins = [d for d in declared if name.startswith(d)]
        if not origins:
            continue
        skips = declared[max(origins, key=len)].get("Metadata", {}).get("checkov", {})
        if skips:
            resource.setdefault("Metadata", {})["checkov"] = skips
    return transformed


def test_template_has_no_failed_checks() -> None:
    assert_clean(scan(TEMPLATE))


def test_transformed_template_has_no_failed_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resources SAM generates (roles, the function URL, the WebSocket stage …) are what
    gets deployed, and checkov sees far more of them than of the SAM resources."""
    source, problems = decode(str(TEMPLATE))
    assert not problems, problems
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    transformed = transform(_packaged(source), {}, _NoManagedPolicies())
    path = tmp_path / "transformed.json"
    path.write_text(json.dumps(with_inherited_skips(source, transformed), indent=1))
    report = scan(path)
    assert_clean(report)
    assert report["summary"]["resource_count"] > len(source["Resources"])
