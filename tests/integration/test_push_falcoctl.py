"""falcoctl itself (v0.13.0, built from its Go module and cached, e2e/falcoctl.py) reads what `falco-operator push`
wrote: `registry pull` fetches the rules and the plugin layers (by the printed digest; a plugin for its platform),
`artifact config` reads the config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.falco import FalcoBinaries
from e2e.falcoctl import ensure_falcoctl
from e2e.registry import Registry, start_registry
from falco_operator.artifacts.oci.registry import machine_architecture

ROOT = Path(__file__).resolve().parents[2]
RULES = b"""\
- required_engine_version: 0.50.0
- required_plugin_versions:
  - name: k8saudit
    version: 0.7.0
    alternatives:
      - name: k8saudit-eks
        version: 0.4.0
- list: falcoctl_reads_this
  items: [bash]
"""


@pytest.fixture(scope="module")
def falcoctl() -> Path:
    return ensure_falcoctl()


@pytest.fixture
def plain_registry(tmp_path: Path) -> Iterator[Registry]:
    registry = start_registry(tmp_path / "registry", tls=False, auth=False)
    try:
        yield registry
    finally:
        registry.stop()


def push(*arguments: str, home: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    result = subprocess.run([sys.executable, "-m", "falco_operator", "push", *arguments, "--plain-http"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def run_falcoctl(falcoctl: Path, home: Path, *arguments: str) -> str:
    config = home / "falcoctl.yaml"
    config.write_text("indexes: []\n")  # no public index to fetch: references go straight to the registry
    result = subprocess.run([str(falcoctl), *arguments, "--plain-http", "--config", str(config)],
                            env={**os.environ, "HOME": str(home)}, cwd=home, capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def layer_files(directory: Path) -> dict[str, dict[str, bytes]]:
    """Each tar.gz falcoctl saved, with the regular files it holds."""
    found: dict[str, dict[str, bytes]] = {}
    for path in sorted(directory.iterdir()):
        with tarfile.open(path, mode="r:gz") as archive:
            found[path.name] = {member.name: archive.extractfile(member).read()  # type: ignore[union-attr]
                                for member in archive.getmembers() if member.isfile()}  # fmt: skip
    return found


@pytest.mark.timeout(1800)  # the first run builds falcoctl
def test_falcoctl_pulls_the_rules_file_and_reads_its_config(
    falcoctl: Path, plain_registry: Registry, tmp_path: Path
) -> None:  # fmt: skip
    rules = tmp_path / "team_rules.yaml"
    rules.write_bytes(RULES)
    reference = f"{plain_registry.host}/pipelines/team-rules:1.0.0"
    pinned = push(reference, str(rules), home=tmp_path)
    destination = tmp_path / "pulled"
    destination.mkdir()
    run_falcoctl(falcoctl, tmp_path, "registry", "pull", pinned, "--dest-dir", str(destination))
    # `registry pull` saves the layer under its title, as falcoctl named it when it pushed.
    assert layer_files(destination) == {"team_rules.tar.gz": {"team_rules.yaml": RULES}}

    printed = run_falcoctl(falcoctl, tmp_path, "artifact", "config", reference)
    config = json.loads(printed[printed.index("{") :])
    assert config["name"] == "team-rules"
    assert config["version"] == "1.0.0"
    assert config["dependencies"] == [{"name": "k8saudit", "version": "0.7.0",
                                       "alternatives": [{"name": "k8saudit-eks", "version": "0.4.0"}]}]  # fmt: skip
    assert config["requirements"] == [{"name": "engine_version_semver", "version": "0.50.0"}]


@pytest.mark.timeout(1800)
def test_falcoctl_pulls_the_plugin_library_for_its_platform(
    falcoctl: Path, plain_registry: Registry, tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:  # fmt: skip
    library = falco_binaries.container_plugin
    platform = f"linux/{machine_architecture()}"
    reference = f"{plain_registry.host}/pipelines/container:0.2.4"
    pinned = push(reference, "--type=plugin", f"--platform={platform}={library}", home=tmp_path)
    destination = tmp_path / "pulled"
    destination.mkdir()
    run_falcoctl(falcoctl, tmp_path, "registry", "pull", pinned, "--platform", platform, "--dest-dir",
                 str(destination))  # fmt: skip
    assert layer_files(destination) == {"libcontainer.tar.gz": {library.name: library.read_bytes()}}
