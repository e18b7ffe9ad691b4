"""`sam build` on this machine (no Docker; a python3.13 only for bytecode, if there is one)
yields artifacts for python3.13 on arm64, and the streaming function's run.sh starts the app
from them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.coldstart import sam_build

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FUNCTIONS = {
    "StreamFunction": "run.sh",
    "WebSocketFunction": "app.py",
    "FanoutFunction": "app.py",
    "FanoutWorkerFunction": "app.py",
    "SweeperFunction": "app.py",
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `sam build` for the whole session, outside the source tree."""
    build = tmp_path_factory.mktemp("sam") / "build"
    sam_build(build)  # the benchmark's cold-start proxy builds the same way
    return build


@pytest.fixture(scope="session")
def layer(build_dir: Path) -> Path:
    return build_dir / "PtsLayer" / "python"


def test_layer_holds_the_library_and_its_dependencies(layer: Path) -> None:
    assert (layer / "pts" / "__init__.py").is_file()
    for package in ("starlette", "uvicorn", "aws_lambda_powertools", "boto3", "httpx"):
        assert (layer / package).is_dir(), package
    # Console scripts would point at this machine's interpreter.
    assert not (layer / "bin").exists()


def test_layer_holds_only_what_lambda_runs(layer: Path) -> None:
    # The local stack, the CLI and the WebSocket client are client-side (the last two import
    # `websockets`, which the layer lacks): dead weight on every cold start.
    for client_only in ("local", "cli.py", "client.py"):
        assert not (layer / "pts" / client_only).exists(), client_only
    (dist_info,) = layer.glob("persistent_text_streaming-*.dist-info")
    assert not (dist_info / "entry_points.txt").exists()
    # The package's RECORD lists exactly the files the layer holds.
    listed = {line.split(",")[0] for line in (dist_info / "RECORD").read_text().splitlines()}
    assert not {p for p in listed if p.startswith(("pts/local/", "pts/cli.", "pts/client."))}
    assert all((layer / path).is_file() for path in listed), listed
    assert {"pts/api.py", "pts/fanout.py", "pts/ws_routes.py", "pts/sweeper.py"} <= listed


def _wheel_tag_fits_lambda(tag: str) -> bool:
    interpreter, abi, platform = tag.split("-")
    if abi == "none" and platform == "any":
        return True
    on_arm = platform.startswith("manylinux") and platform.endswith("_aarch64")
    return on_arm and (
        (interpreter == "cp313" and abi == "cp313")
        or (abi == "abi3" and interpreter.startswith("cp3") and int(interpreter[3:]) <= 13)
    )


def test_every_wheel_in_the_layer_is_pure_or_for_cp313_aarch64(layer: Path) -> None:
    wheels = sorted(layer.glob("*.dist-info/WHEEL"))
    assert len(wheels) >= 10
    for wheel in wheels:
        tags = [
            line.split(":", 1)[1].strip()
            for line in wheel.read_text().splitlines()
            if line.startswith("Tag:")
        ]
        assert tags, wheel
        assert all(_wheel_tag_fits_lambda(t) for t in tags), (wheel.parent.name, tags)
        assert not any("x86_64" in t for t in tags), (wheel.parent.name, tags)
    for extension in layer.rglob("*.so"):
        assert "aarch64" in extension.name or ".abi3." in extension.name, extension
    # Bytecode of this machine's Python would be stale on 3.13: only 3.13's may be there.
    assert {p.name.split(".")[-2] for p in layer.rglob("*.pyc")} <= {"cpython-313"}


def python313() -> str | None:
    """A CPython 3.13 on this machine, found as layers/pts/Makefile finds it."""
    pyenv = shutil.which("pyenv")
    root = ""
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False).stdout
    candidates = [os.environ.get("PYTHON313", ""), shutil.which("python3.13") or ""]
    if root.strip():
        candidates += sorted(
            str(p) for p in Path(root.strip()).glob("versions/3.13*/bin/python3.13")
        )
    check = "import sys; sys.exit(sys.version_info[:2] != (3, 13))"
    for candidate in filter(None, candidates):
        if (
            subprocess.run([candidate, "-c", check], capture_output=True, check=False).returncode
            == 0
        ):
            return candidate
    return None


def test_layer_holds_bytecode_for_lambda_s_python_when_one_is_here(layer: Path) -> None:
    """Lambda's /opt is read-only: without bytecode every cold start compiles each import."""
    python = python313()
    if python is None:
        assert not list(layer.rglob("*.pyc")), "no bytecode but 3.13's belongs in the layer"
        pytest.skip("no Python 3.13 here: the layer is (correctly) built without bytecode")
    magic = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.MAGIC_NUMBER.hex())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    sources = [p for p in layer.rglob("*.py") if "__pycache__" not in p.parts]
    assert len(sources) > 500
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        header = pyc.read_bytes()[:8]
        assert header[:4].hex() == magic, pyc
        # flags 0b01: hash-based, source not checked (the zip does not keep exact mtimes).
        assert int.from_bytes(header[4:8], "little") == 0b01, pyc


def test_every_function_artifact_holds_its_entry_point(build_dir: Path) -> None:
    for function, entry in FUNCTIONS.items():
        assert (build_dir / function / entry).is_file(), function
        assert not list((build_dir / function).rglob("__pycache__")), function


def test_run_sh_is_executable(build_dir: Path) -> None:
    assert os.access(build_dir / "StreamFunction" / "run.sh", os.X_OK)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthz(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return response.status
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_run_sh_starts_the_app_from_the_artifacts(
    build_dir: Path, layer: Path, tmp_path: Path
) -> None:
    # `python` on PATH is this interpreter without site-packages (-S): only the layer and
    # the standard library are importable, as on Lambda, where /opt/python is the layer.
    shim = tmp_path / "bin" / "python"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    shim.chmod(0o755)
    port = _free_port()
    env = {
        "PATH": f"{shim.parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "PORT": str(port),
        "PYTHONPATH": str(layer),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PTS_TABLE": "x",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        app = subprocess.Popen(
            [str(build_dir / "StreamFunction" / "run.sh")],
            cwd=build_dir / "StreamFunction",
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            status = None
            while time.monotonic() < deadline and app.poll() is None:
                status = _healthz(port)
                if status is not None:
                    break
                time.sleep(0.2)
            assert status == 200, log.read_text()
        finally:
            app.terminate()
            try:
                app.wait(timeout=10)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait()
