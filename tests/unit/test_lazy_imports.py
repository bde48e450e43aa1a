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
# pydantic and every model (the agent reads and writes through ``api.plain`` and ``api.plain_report``), the pull
# machinery, the registry client and signature verification (only for OCI artifacts, and those that ask for
# verification), RE2 (only for regex conditions), the development and publishing tools, httpx and what it brings
# (the agent's own HTTP client speaks to the API server and Falco; httpx is for pulls), and a metrics client library
# with its HTTP servers (the agent renders its metrics with ``kube/promtext.py``).
NOT_ON_THE_AGENT_PATH = [
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "falco_operator.api.artifacts",
    "falco_operator.api.base",
    "falco_operator.api.oci",
    "falco_operator.api.report",
    "falco_operator.api.rollout",
    "falco_operator.api.schema_types",
    "falco_operator.api.registries",
    "falco_operator.api.services",
    "falco_operator.api.monitoring",
    "httpx",
    "httpcore",
    "h2",
    "idna",
    "cryptography",
    "prometheus_client",
    "http.server",
    "wsgiref",
    "urllib.request",
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
    # ruamel reads only what libyaml's fast path leaves to it, and writes only values PyYAML writes otherwise
    # (artifacts/yamldoc.py): common rules files, Configs and Plugins need neither.
    "ruamel",
    # The pull machinery: imported by the first artifact with an OCI source (artifact_agent/oci_sources.py).
    "artifact_agent.pulls",
    "artifact_agent.oci_cache",
    "falco_operator.artifacts.oci.credentials",
    "falco_operator.artifacts.oci.signatures",
    "falco_operator.artifacts.oci.ed25519ph",
    "falco_operator.artifacts.oci.failures",
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


def unwanted(loaded: set[str]) -> list[str]:
    return sorted(name for name in loaded for prefix in NOT_ON_THE_AGENT_PATH
                  if name == prefix or name.startswith(f"{prefix}."))  # fmt: skip


def test_the_agent_command_imports_only_its_path() -> None:
    probe = "import json, sys, artifact_agent.cli; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = set(json.loads(result.stdout))
    assert "artifact_agent.agent" in loaded  # the probe imports what the command runs
    assert unwanted(loaded) == []


# A whole pass in-process, as bench.agent_pass drives one: the artifacts selected from raw objects, planned (rules
# set checked), a Plugin and a Config among them, the delivery rule, a verdict read back, and the report's status.
WHOLE_PASS = """
import json, sys
from pathlib import Path
import anyio
import artifact_agent.cli
from artifact_agent.analysis import reported_analyses
from artifact_agent.delivery import choose
from artifact_agent.oci_sources import OCISources
from artifact_agent.metrics import AgentMetrics
from artifact_agent.pull_settings import PullSettings
from artifact_agent.planner import PassPlanner
from artifact_agent.pull_settings import oci_source
from artifact_agent.recovery import recover_last_good
from artifact_agent.report import report_status
from artifact_agent.selection import select
from bench.agent_pass import DIRECTORIES, rulesfile
from falco_operator.artifacts import Unavailable, artifact_key
from falco_operator.artifacts.rules import rules_set_check
from falco_operator.kube import Client, promtext
from falco_operator.kube.transport import Credentials, DirectTransport

PLUGIN = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Plugin",
          "metadata": {"name": "json", "uid": "p", "resourceVersion": "1", "generation": 1},
          "spec": {"config": {"libraryPath": "libjson.so", "initConfig": {"a": 1}},
                   "selector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
                   "ociArtifact": {"reference": "ghcr.io/falcosecurity/plugins/plugin/json:0.7",
                                   "refreshInterval": "1h", "verify": {"key": {"configMapRef": {"name": "keys"}}}}}}
CONFIG = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Config",
          "metadata": {"name": "out", "uid": "c", "resourceVersion": "1", "generation": 2},
          "spec": {"config": {"json_output": True}, "priority": 60,
                   "rollout": {"steps": [{"nodes": 1}], "analysis": {"duration": "30s"}}},
          "status": {"rollout": {"phase": "Progressing", "candidateGeneration": 2, "nodes": ["node1"]}}}
INLINE_PLUGIN = {**PLUGIN, "metadata": {**PLUGIN["metadata"], "name": "local", "uid": "l"},
                 "spec": {key: value for key, value in PLUGIN["spec"].items() if key != "ociArtifact"}}

async def main():
    objects = [rulesfile(0, 100, 0), rulesfile(1, 101, 0), PLUGIN, CONFIG]
    chosen, unreadable = select(objects, {"tier": "web"}, {}, "falco")
    assert len(chosen) == 4 and not unreadable, (chosen, unreadable)
    deliveries = choose(chosen, "node1", lambda name, key: Unavailable("Pending", "Resolving", "unread"))
    assert len(deliveries.candidates) == 1
    assert [oci_source(artifact) is not None for artifact in chosen].count(True) == 1
    planner = PassPlanner(str(DIRECTORIES["plugins"]), rules_set_check)
    result = await planner.plan(deliveries.artifacts, {}, {})
    recover_last_good({}, chosen, str(DIRECTORIES["plugins"]))
    verdicts = reported_analyses({"artifacts": [{"kind": "Config", "name": "out",
                                                 "analysis": {"generation": 2, "result": "Passed"}}]})
    status = report_status(result.outcomes, DIRECTORIES, analyses=verdicts)
    assert len(status["artifacts"]) == 4 and status["artifacts"][0]["analysis"]["result"] == "Passed", status
    # The agent's OCI sources are given every artifact without an OCI source: nothing to pull, nothing imported.
    inline, _ = select([INLINE_PLUGIN], {"tier": "web"}, {}, "falco")
    client = Client(DirectTransport(Credentials(server="https://127.0.0.1:9")), field_manager="agent")
    sources = OCISources(client, "bench", PullSettings(cache_dir=Path("/nonexistent")),
                         AgentMetrics(promtext.Registry()), lambda: None)
    async with anyio.create_task_group() as group:
        await group.start(sources.run)
        sources.want([*(artifact for artifact in chosen if oci_source(artifact) is None), *inline],
                     policy_generation=1)
        await sources.wait_settled()
        assert sources.pulls is None and sources.settled() and sources.resolve(artifact_key(chosen[0])) is None
        group.cancel_scope.cancel()

anyio.run(main)
print(json.dumps(sorted(sys.modules)))
"""


def test_a_whole_agent_pass_reads_and_writes_without_pydantic() -> None:
    result = subprocess.run([sys.executable, "-c", WHOLE_PASS], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert {"artifact_agent.planner", "falco_operator.api.plain", "falco_operator.api.plain_report"} <= loaded
    assert unwanted(loaded) == []


# The first artifact with an OCI source imports the pull machinery and starts its pull: here one of a registry at a
# loopback address, which the pulls refuse (private addresses are not allowed) without a connection.
OCI_WANT = """
import json, sys, tempfile
from pathlib import Path
import anyio
from artifact_agent.metrics import AgentMetrics
from artifact_agent.oci_sources import OCISources
from artifact_agent.pull_settings import PullSettings
from falco_operator.api.plain import Rulesfile
from falco_operator.artifacts import ArtifactKey, Unavailable
from falco_operator.kube import Client, promtext
from falco_operator.kube.transport import Credentials, DirectTransport

OCI = Rulesfile.from_wire({"metadata": {"name": "pulled", "generation": 1},
                           "spec": {"ociArtifact": {"reference": "127.0.0.1:9/rules/falco-rules:1"}}})
INLINE = Rulesfile.from_wire({"metadata": {"name": "inline", "generation": 1}, "spec": {"inlineRules": "- list: a"}})

async def main():
    client = Client(DirectTransport(Credentials(server="https://127.0.0.1:9")), field_manager="agent")
    cache = Path(tempfile.mkdtemp()) / "cache"
    sources = OCISources(client, "default", PullSettings(cache_dir=cache, retry_initial=60),
                         AgentMetrics(promtext.Registry()), lambda: None)
    async with anyio.create_task_group() as group:
        await group.start(sources.run)
        sources.want([INLINE])
        assert "artifact_agent.pulls" not in sys.modules and sources.pulls is None
        sources.want([INLINE, OCI])
        assert "artifact_agent.pulls" in sys.modules and sources.pulls is not None
        assert not sources.settled()
        with anyio.fail_after(10):
            await sources.wait_settled()
        answer = sources.resolve(ArtifactKey("Rulesfile", "pulled"))
        assert isinstance(answer, Unavailable) and answer.state == "Failed", answer
        group.cancel_scope.cancel()

anyio.run(main)
print(json.dumps(sorted(sys.modules)))
"""


def test_the_first_oci_source_imports_and_starts_the_pulls() -> None:
    result = subprocess.run([sys.executable, "-c", OCI_WANT], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert {"artifact_agent.pulls", "artifact_agent.oci_cache", "falco_operator.artifacts.oci.credentials"} <= loaded
