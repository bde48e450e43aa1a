"""The agent container's Python runs as ``python -OO`` (docstrings and asserts dropped: about 1 MiB less resident);
``e2e.agent.AgentProcess`` starts agents with the same settings, so the agent tests cover the mode pods run in."""

from __future__ import annotations

import os
import subprocess
import sys

from falco_operator.api import Falco
from falco_operator.instance.options import BuildOptions
from falco_operator.instance.podtemplate import AGENT_INTERPRETER_ENV, agent_container


def test_the_agent_container_sets_pythonoptimize_2() -> None:
    falco = Falco.model_validate({"metadata": {"name": "f", "namespace": "n"}, "spec": {}})
    container = agent_container(falco, BuildOptions(agent_image="a:1"))
    env = {entry["name"]: entry.get("value") for entry in container["env"]}
    assert env["PYTHONOPTIMIZE"] == "2"
    assert AGENT_INTERPRETER_ENV == {"PYTHONOPTIMIZE": "2"}


def test_the_agent_command_runs_under_oo() -> None:
    result = subprocess.run([sys.executable, "-OO", "-m", "artifact_agent", "--help"], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=os.getcwd()), timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "falco-artifact-agent" in result.stdout
