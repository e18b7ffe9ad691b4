"""The JavaScript client (`clients/js`): its own suite under Node's test runner, so one
`pytest` run reports Python and JavaScript alike.

The Node suite starts the real local stack (`pts dev`) itself, covers the client rule, drive
and watch against the stack, the React hook rendered by React DOM, the declarations
(`tsc --noEmit`) and the packed tarball. Its dev dependencies come from the committed lock
file (`npm ci`) when they are missing or older than it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "clients" / "js"
NODE_TIMEOUT = 420


def _run(command: list[str], *, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run `command` in the package; fail the test with its whole output if it fails.

    It runs in a session of its own, so that a timeout stops it and everything it started
    (the Node test files and their `pts dev`) at once."""
    with subprocess.Popen(
        command,
        cwd=PACKAGE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            pytest.fail(f"{' '.join(command)} took over {timeout} s:\n{output}", pytrace=False)
        except BaseException:  # interrupted (Ctrl-C, pytest's own timeout): leave nothing
            os.killpg(process.pid, signal.SIGKILL)
            raise
    if process.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited with {process.returncode}:\n{output}", pytrace=False
        )
    return output


def _install(npm: str) -> None:
    """`npm ci` when node_modules is missing or older than the lock file."""
    installed = PACKAGE / "node_modules" / ".package-lock.json"
    lock = PACKAGE / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    _run([npm, "ci", "--no-audit", "--no-fund"], timeout=120)


@pytest.mark.timeout(NODE_TIMEOUT + 180)
def test_js_client_suite() -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are not installed")
    _install(npm)
    has_websocket = subprocess.run(
        [node, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"], check=False
    )
    flags = [] if has_websocket.returncode == 0 else ["--experimental-websocket"]
    files = sorted(str(path) for path in (PACKAGE / "test").glob("*.test.js"))
    assert files, "no JavaScript test files"
    env = {**os.environ, "PTS_REPO": str(REPO)}  # the suite runs `pts dev` with REPO/src first
    pts = Path(sys.executable).with_name("pts")  # the interpreter's own, whichever venv it is
    if pts.exists():
        env["PTS_BIN"] = str(pts)
    command = [node, *flags, "--test", "--test-reporter=tap", *files]
    output = _run(command, timeout=NODE_TIMEOUT, env=env)
    assert "\n# fail 0\n" in output, output
    assert "\n# pass 0\n" not in output, output
