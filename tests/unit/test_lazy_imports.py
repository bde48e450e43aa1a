"""The agent imports only what its path needs; lazily exported packages still export everything they declare."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from falco_operator.api import ALL_KINDS, VERSION
from falco_operator.lazy import declared_exports
from falco_operator.resources import PROJECT_RESOURCES, registry

ROOT = Path(__file__).resolve().parents[2]
LAZY_PACKAGES = ["falco_operator.api", "falco_operator.kube", "falco_operator.artifacts.oci"]

# Modules the agent's command must not import before it needs them: the operator's controllers and machinery,
# the models of kinds it does not read, the registry client and signature verification (only for OCI artifacts,
# and those that ask for verification), RE2 (only for regex conditions), the development and publishing tools,
# and a metrics client library with its HTTP servers (the agent renders its metrics with kube/promtext.py).
NOT_ON_THE_AGENT_PATH = [
    "cryptography",
    "prometheus_client",
    "http.server",
    "wsgiref",
    "re2",
    "falco_operator.artifacts.oci.registry",
    "falco_operator.artifacts.oci.archive",
    "falco_operator.artifacts.oci.addresses",
    "kr8s",
    "oras",
    "requests",
    "falco_operator.api.falco",
    "falco_operator.api.component",
    "falco_operator.api.falcorule",
    "falco_operator.api.schema",
    "falco_operator.api.kinds",
    "falco_operator.artifacts.oci.keyless",
    "falco_operator.kube.manager",
    "falco_operator.kube.leaderelection",
    "falco_operator.kube.controller",
    "falco_operator.kube.workqueue",
    "falco_operator.instance",
    "falco_operator.status",
]


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_declared_export_resolves(package: str) -> None:
    module = importlib.import_module(package)
    declared = declared_exports(str(module.__file__))
    assert set(declared) == set(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is getattr(importlib.import_module(declared[name], package), name)


def test_unknown_names_are_attribute_errors() -> None:
    api = importlib.import_module("falco_operator.api")
    with pytest.raises(AttributeError):
        _ = api.NoSuchModel
    assert not hasattr(api, "no_such_module")


def test_project_resources_agree_with_the_kinds() -> None:
    by_kind = {resource.kind: resource for resource in PROJECT_RESOURCES}
    assert set(by_kind) == {info.kind for info in ALL_KINDS}
    for info in ALL_KINDS:
        resource = by_kind[info.kind]
        assert (resource.group, resource.version, resource.plural, resource.namespaced) == (
            info.group, VERSION, info.plural, True,
        )  # fmt: skip
    assert registry().for_kind(f"{ALL_KINDS[0].group}/{VERSION}", ALL_KINDS[0].kind) == by_kind[ALL_KINDS[0].kind]


def test_the_agent_command_imports_only_its_path() -> None:
    probe = "import json, sys, artifact_agent.cli; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = set(json.loads(result.stdout))
    assert "artifact_agent.agent" in loaded  # the probe imports what the command runs
    unwanted = sorted(name for name in loaded for prefix in NOT_ON_THE_AGENT_PATH
                      if name == prefix or name.startswith(f"{prefix}."))  # fmt: skip
    assert unwanted == []
