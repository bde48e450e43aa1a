"""Product metrics of the artifact status controllers, read from the caches at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

Json = dict[str, Any]
CONDITIONS = ("ResolvedRefs", "Programmed", "Valid")


class ArtifactMetrics(Collector):
    """``falco_operator_artifacts{kind,condition,status}`` and ``falco_operator_artifact_reports``."""

    def __init__(self, artifacts: Callable[[], Iterable[Json]], reports: Callable[[], Iterable[Json]]) -> None:
        self._artifacts = artifacts
        self._reports = reports

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        counts: Counter[tuple[str, str, str]] = Counter()
        for artifact in self._artifacts():
            by_type = {c.get("type"): c.get("status") for c in (artifact.get("status") or {}).get("conditions") or []}
            for condition in CONDITIONS:
                counts[(str(artifact.get("kind")), condition, str(by_type.get(condition, "Unknown")))] += 1
        artifacts = GaugeMetricFamily("falco_operator_artifacts", "Artifacts by kind and condition status.",
                                      labels=["kind", "condition", "status"])  # fmt: skip
        for labels, value in sorted(counts.items()):
            artifacts.add_metric(list(labels), value)
        yield artifacts
        reports = GaugeMetricFamily("falco_operator_artifact_reports", "ArtifactReports the operator sees.")
        reports.add_metric([], sum(1 for _ in self._reports()))
        yield reports
