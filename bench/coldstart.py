"""Cold-start proxy: the built artifact's size, and how long its code takes to import.

`sam build` runs into a temporary directory (never the source tree). The streaming
function is its folder plus the `PtsLayer` layer; both are measured unzipped and zipped (what
Lambda downloads). Import time is measured in fresh interpreters started with `-S` (no site
packages: only the layer is importable) on this machine's Python, not Lambda's 3.13 on
arm64, so it is a proxy. Lambda's code directory is read-only, so a module without bytecode
is compiled on every cold start: the import is timed without `.pyc` for this Python (the
layer holds 3.13's when the build had a Python 3.13, which this one ignores) and with
bytecode compiled beforehand; `import_seconds(python=…)` times another interpreter.
"""

from __future__ import annotations

import compileall
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from bench.stats import median

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

IMPORTS = {
    # What run.sh starts: uvicorn with the app factory.
    "StreamFunction": "import uvicorn, pts.api; pts.api.create_app()",
    # The fan-out handler module, as Lambda's runtime loads it.
    "FanoutFunction": "import runpy; runpy.run_path({app!r})",
}
_TIMED = (
    "import sys, time; sys.path[:0] = [{layer!r}, {function!r}]; t = time.perf_counter(); "
    "{body}; print(time.perf_counter() - t)"
)


def sam_build(build_dir: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SAM_CLI_TELEMETRY": "0",
    }
    result = subprocess.run(
        [str(BIN / "sam"), "build", "--build-dir", str(build_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"sam build failed:\n{result.stdout}\n{result.stderr}")


def tree_bytes(path: Path) -> tuple[int, int]:
    """(bytes unzipped, files) under `path`."""
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def zipped_bytes(path: Path) -> int:
    """Size of `path` zipped (deflate, as `sam deploy` packages it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(path))
    return buffer.tell()


def import_seconds(
    layer: Path, function: Path, body: str, *, bytecode: bool, python: str = sys.executable
) -> float:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "us-east-1",
        "PTS_TABLE": "t",
        "PTS_CONNECTIONS_TABLE": "c",
        "PTS_WS_MANAGEMENT_URL": "https://example.invalid/live",
        "POWERTOOLS_SERVICE_NAME": "pts",
    }
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # read-only code, as on Lambda
    code = _TIMED.format(layer=str(layer), function=str(function), body=body)
    result = subprocess.run(
        [python, "-S", "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"importing from the artifact failed:\n{result.stderr}")
    return float(result.stdout.strip().splitlines()[-1])


def measure(runs: int = 5) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pts-bench-") as tmp:
        build = Path(tmp) / "build"
        sam_build(build)
        layer = build / "PtsLayer" / "python"
        layer_bytes, layer_files = tree_bytes(build / "PtsLayer")
        out: dict[str, Any] = {
            "layer_bytes": layer_bytes,
            "layer_files": layer_files,
            "layer_zipped_bytes": zipped_bytes(build / "PtsLayer"),
        }
        functions: dict[str, Any] = {}
        for name, template in IMPORTS.items():
            function = build / name
            body = template.format(app=str(function / "app.py"))
            size, _ = tree_bytes(function)
            cold = [import_seconds(layer, function, body, bytecode=False) for _ in range(runs)]
            functions[name] = {"function_bytes": size, "import_ms_no_bytecode": median(cold) * 1000}
        # Same imports once bytecode exists (compiled here, for this Python).
        compiled = Path(tmp) / "compiled"
        shutil.copytree(layer, compiled)
        compileall.compile_dir(compiled, quiet=1, workers=2)
        for name, template in IMPORTS.items():
            function = build / name
            body = template.format(app=str(function / "app.py"))
            warm = [import_seconds(compiled, function, body, bytecode=True) for _ in range(runs)]
            functions[name]["import_ms_with_bytecode"] = median(warm) * 1000
        out["functions"] = functions
        out["python"] = sys.version.split()[0]
        return out
