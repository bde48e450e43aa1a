"""Product metrics of the artifact status controllers, read from the caches at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from ..kube.promtext import MetricFamily, Registry

Json = dict[str, Any]
CONDITIONS = ("ResolvedRefs", "Programmed", "Valid")


class ArtifactMetrics:
    """``falco_operator_artifacts{kind,condition,status}`` and ``falco_operator_artifact_reports``."""

    def __init__(self, artifacts: Callable[[], Iterable[Json]], reports: Callable[[], Iterable[Json]]) -> None:
        self._artifacts = artifacts
        self._reports = reports

    def register(self, registry: Registry) -> None:
        registry.register(self)

    def collect(self) -> Iterable[MetricFamily]:
        counts: Counter[tuple[str, str, str]] = Counter()
        for artifact in self._artifacts():
            by_type = {c.get("type"): c.get("status") for c in (artifact.get("status") or {}).get("conditions") or []}
            for condition in CONDITIONS:
                counts[(str(artifact.get("kind")), condition, str(by_type.get(condition, "Unknown")))] += 1
        artifacts = MetricFamily("falco_operator_artifacts", "Artifacts by kind and condition status.", "gauge",
                                 ("kind", "condition", "status"))  # fmt: skip
        for labels, value in sorted(counts.items()):
            artifacts.add(labels, value)
        yield artifacts
        reports = MetricFamily("falco_operator_artifact_reports", "ArtifactReports the operator sees.", "gauge")
        reports.add((), sum(1 for _ in self._reports()))
        yield reports
