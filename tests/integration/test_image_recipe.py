"""The Containerfile's recipe, carried out without a container engine: its COPY and RUN steps, in order, into
temporary directories (``/wheels`` and the image's Python become a directory and a fresh virtualenv). The result
must run both entry points and find its package data."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT.parent / "shared" / "testdata" / "falco-rules" / "falco_rules.yaml"


def stages(containerfile: str) -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """The global build arguments with their defaults (the ARGs before the first FROM), and the instructions of
    each stage with those arguments in FROM lines replaced by their defaults; comments and blank lines left out."""
    arguments: dict[str, str] = {}
    result: list[list[tuple[str, str]]] = []
    for line in containerfile.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, argument = line.partition(" ")
        if instruction == "ARG" and not result:
            name, _, default = argument.partition("=")
            arguments[name] = default
            continue
        if instruction == "FROM":
            for name, default in arguments.items():
                argument = argument.replace(f"${{{name}}}", default)
            result.append([])
        result[-1].append((instruction, argument))
    return arguments, result


BYTECODE_PATHS = """
import asyncio, importlib.util, artifact_agent.agent
for module in (asyncio, artifact_agent.agent):
    print(importlib.util.cache_from_source(module.__file__, optimization=2))
"""


def _without_pythonpath() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def _run(command: str, cwd: Path, python: Path, wheels: Path) -> None:
    local = command.replace("/wheels", str(wheels))
    local = re.sub(r"(?<![\w/.-])python(?![\w.-])", shlex.quote(str(python)), local)
    words = [f"{shlex.quote(str(python))} -m pip" if word == "pip" else word for word in local.split(" ")]
    subprocess.run(" ".join(words), shell=True, cwd=cwd, check=True, capture_output=True, text=True)


def test_the_image_recipe_builds_a_wheel_install_with_both_entry_points_as_user_65532(tmp_path: Path) -> None:
    containerfile = (ROOT / "Containerfile").read_text()
    arguments, (build, final) = stages(containerfile)
    # Both stages start from a base that can be replaced (`make image PYTHON_IMAGE=...`), by default the official
    # Python image.
    assert arguments == {"PYTHON_IMAGE": "docker.io/library/python:3.11-slim"}
    bases = [line.split()[1] for line in containerfile.splitlines() if line.startswith("FROM ")]
    assert bases == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    assert build[0] == ("FROM", "docker.io/library/python:3.11-slim AS build")
    assert final[0] == ("FROM", "docker.io/library/python:3.11-slim")
    assert ("USER", "65532:65532") in final
    assert ("CMD", '["falco-operator", "run"]') in final

    source, wheels, image = tmp_path / "src", tmp_path / "wheels", tmp_path / "image"
    source.mkdir()
    for instruction, argument in build[1:]:
        if instruction == "COPY":
            *paths, destination = argument.split()
            for path in paths:
                target = source / destination / Path(path).name if destination.endswith("/") else source / destination
                copy = shutil.copytree if (ROOT / path).is_dir() else shutil.copy
                copy(ROOT / path, target)
        elif instruction == "RUN":
            _run(argument, source, Path(sys.executable), wheels)
    assert any(wheel.name.startswith("falco_operator-") for wheel in wheels.iterdir())

    venv.create(image, with_pip=True)
    for instruction, argument in final[1:]:
        if instruction == "RUN":
            _run(argument, tmp_path, image / "bin" / "python", wheels)
    assert not wheels.exists(), "the wheels are removed from the final image"
    # Development dependencies stay out: prometheus-client only parses the metrics in tests.
    installed = subprocess.run([str(image / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                               capture_output=True, text=True, check=True).stdout.lower()  # fmt: skip
    assert "prometheus" not in installed, installed
    assert "falco-operator" in installed or "falco_operator" in installed, installed
    for entry_point in ("falco-operator", "falco-artifact-agent"):
        version = subprocess.run([str(image / "bin" / entry_point), "--version"], capture_output=True, text=True)
        assert version.returncode == 0, version.stderr
        assert "0.1.0" in version.stdout
    # The agent runs with PYTHONOPTIMIZE=2 as user 65532, who cannot write bytecode: the image carries it at that
    # level for its own modules and the standard library's.
    # Run outside the source tree: from it, the tree's own modules would be imported instead of the image's.
    compiled = subprocess.run([str(image / "bin" / "python"), "-c", BYTECODE_PATHS], capture_output=True, text=True,
                              check=True, cwd=tmp_path, env=_without_pythonpath()).stdout.split()  # fmt: skip
    assert len(compiled) == 2, compiled
    assert all(Path(path).is_file() for path in compiled), compiled
    # Package data (Falco's field catalogue) came along: the linter validates a real rules file.
    lint = subprocess.run([str(image / "bin" / "falco-operator"), "lint", str(RULES)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
