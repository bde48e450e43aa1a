"""The fleet simulation reports what a real agent would: the same file names and SHA-256 as the planner's."""

from __future__ import annotations

from typing import Any

import pytest

from bench.fleet_simulation import samples
from bench.simulated_agents import rendered
from e2e.agent import rule, rulesfile
from falco_operator.artifacts import parse_artifact
from falco_operator.artifacts.planning import artifact_key, plan
from falco_operator.artifacts.plugins import ARTIFACT_PLUGINS_DIR

Json = dict[str, Any]


def _config(name: str, config: Json) -> Json:
    return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Config",
            "metadata": {"name": name, "generation": 1}, "spec": {"config": config}}  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    [
        {**rulesfile("shared", rule("shared")), "metadata": {"name": "shared", "generation": 3}},
        _config("outputs", {"json_output": True, "buffered_outputs": False}),
    ],
)
def test_a_simulated_delivery_is_what_the_planner_delivers(raw: Json) -> None:
    artifact = parse_artifact(raw)
    assert artifact is not None
    planned = plan([artifact], {}, {}, plugins_dir=ARTIFACT_PLUGINS_DIR)
    outcome = next(outcome for outcome in planned.outcomes if outcome.key == artifact_key(artifact))
    assert outcome.state == "Installed"
    assert rendered(artifact) == outcome.delivered


def test_metric_samples_are_read_by_name_and_labels() -> None:
    text = (
        "# HELP apiserver_longrunning_requests ...\n"
        'apiserver_longrunning_requests{resource="nodes",verb="WATCH"} 12\n'
        'apiserver_longrunning_requests{resource="pods",verb="LIST"} 3\n'
        "etcd_mvcc_db_total_size_in_bytes 2.097152e+06\n"
    )
    assert samples(text, "apiserver_longrunning_requests") == [
        ({"resource": "nodes", "verb": "WATCH"}, 12.0),
        ({"resource": "pods", "verb": "LIST"}, 3.0),
    ]
    assert samples(text, "etcd_mvcc_db_total_size_in_bytes") == [({}, 2097152.0)]
