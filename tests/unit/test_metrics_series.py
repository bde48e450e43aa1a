"""The series the operator and the agent expose: names, labels, HELP and TYPE lines stay what dashboards, alerts
and users know. The recorded lists in tests/unit/data were scraped from the same calls when prometheus_client
rendered the metrics; its ``*_created`` series are left out on purpose (operations.md, Metrics)."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from artifact_agent.metrics import AgentMetrics
from falco_operator.kube.metrics import LoopLag, RuntimeMetrics
from falco_operator.kube.promtext import exposition
from falco_operator.rollout.driver import rollout_counter
from falco_operator.status.metrics import ArtifactMetrics

DATA = Path(__file__).parent / "data"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def runtime_metrics() -> RuntimeMetrics:
    """Every runtime metric with one child, through the hooks the runtime calls."""
    metrics = RuntimeMetrics()
    queue = metrics.queue_metrics("queue")
    queue.add()
    queue.depth(2)
    queue.queue_latency(0.1)
    queue.work_duration(0.2)
    queue.retry()
    metrics.watch_queue("queue", lambda: 1.0, lambda: 2.0)
    metrics.reconcile_total.labels("ctl", "success").inc()
    metrics.reconcile_errors.labels("ctl").inc()
    metrics.terminal_errors.labels("ctl").inc()
    metrics.reconcile_panics.labels("ctl").inc()
    metrics.reconcile_time.labels("ctl").observe(0.3)
    metrics.max_concurrent.labels("ctl").set(2)
    metrics.active_workers.labels("ctl").inc()
    metrics.rest_requests.labels("200", "GET", "host").inc()
    metrics.leader_status.labels("lease").set(1)
    return metrics


def operator_metrics() -> RuntimeMetrics:
    metrics = runtime_metrics()
    LoopLag(metrics.registry).histogram.observe(0.01)
    rollout_counter(metrics.registry).labels(kind="Rulesfile", result="succeeded").inc()
    artifact = {"kind": "Rulesfile", "status": {"conditions": [{"type": "Programmed", "status": "True"}]}}
    ArtifactMetrics(lambda: [artifact], lambda: [{}]).register(metrics.registry)
    return metrics


def agent_metrics() -> RuntimeMetrics:
    metrics = runtime_metrics()
    agent = AgentMetrics(metrics.registry)
    agent.swaps.labels("rules").inc()
    agent.invalid.labels("Rulesfile").inc()
    agent.last_swap.set_to_current_time()
    agent.propagation.observe(1)
    agent.artifacts.labels("Rulesfile", "Loaded").inc()
    agent.nudges.inc()
    agent.report_writes.inc()
    agent.pulls.labels("success").inc()
    agent.pull_duration.observe(3)
    agent.pull_bytes.inc(100)
    agent.watch_informer("artifacts", lambda: True)
    return metrics


def series(text: str) -> list[str]:
    """HELP and TYPE lines as written, and one line per sample: its name and labels (sorted), without the value."""
    lines = sorted(line for line in text.splitlines() if line.startswith(("# HELP ", "# TYPE ")))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{key}={value!r}" for key, value in sorted(sample.labels.items()))
            lines.append(f"{sample.name}{{{labels}}}")
    return sorted(lines)


def recorded(name: str) -> list[str]:
    return (DATA / f"metrics-{name}-series.txt").read_text().splitlines()


def test_the_operator_exposes_the_recorded_series() -> None:
    assert series(exposition(operator_metrics().registry).decode()) == recorded("operator")


def test_the_agent_exposes_the_recorded_series() -> None:
    assert series(exposition(agent_metrics().registry).decode()) == recorded("agent")


def test_every_documented_metric_is_exposed() -> None:
    documented = set(re.findall(r"`((?:controller_runtime|workqueue|rest_client|leader_election|falco_operator|"
                                r"falco_artifact_agent)_[a-z_]+)", (DOCS / "operations.md").read_text()))  # fmt: skip
    exposed = {line.split()[2] for line in recorded("operator") + recorded("agent") if line.startswith("# TYPE ")}
    assert documented, "the metrics table of operations.md was not found"
    assert documented <= exposed, sorted(documented - exposed)
