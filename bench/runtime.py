"""The interpreter benchmarks run the operator and the agent with: the project's runtime dependencies only, in
``.venv-runtime`` (made on first use), as the image installs them, with the bytecode the image carries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_VENV = ROOT / ".venv-runtime"


def runtime_python() -> str:
    """A virtualenv with the project and its runtime dependencies only (as the image installs it)."""
    python = RUNTIME_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(RUNTIME_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(ROOT)], check=True, cwd=RUNTIME_VENV)
    compile_bytecode(str(python))
    return str(python)


def compile_bytecode(python: str) -> None:
    """Bytecode at both levels the image carries (the Containerfile's ``compileall``) for the interpreter's path and
    for this tree, which the agent runs from (``PYTHONPATH``): a pod never compiles a module when it starts, and
    with ``PYTHONDONTWRITEBYTECODE`` set, a benchmark's agent would compile every module at every start."""
    path = subprocess.run([python, "-c", "import os, sys; print(*(p for p in sys.path if os.path.isdir(p)))"],
                          check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", "-o", "0", "-o", "2", "-x", "/(test|tests|idle_test)/",
                    *path, str(ROOT / "falco_operator"), str(ROOT / "artifact_agent")], check=True)  # fmt: skip
