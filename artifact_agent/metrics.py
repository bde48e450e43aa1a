"""The agent's own Prometheus metrics, beside the runtime's (REST client requests)."""

from __future__ import annotations

from collections.abc import Callable

from falco_operator.kube.promtext import Counter, Gauge, Histogram, Registry

PREFIX = "falco_artifact_agent"


class AgentMetrics:
    def __init__(self, registry: Registry) -> None:
        self.swaps = Counter(
            f"{PREFIX}_generation_swaps_total", "Atomic generation swaps, by directory.", ["directory"],
            registry=registry,
        )  # fmt: skip
        self.invalid = Counter(
            f"{PREFIX}_invalid_artifacts_total",
            "Times an artifact was found invalid (counted once per invalid generation), by kind.", ["kind"],
            registry=registry,
        )  # fmt: skip
        self.last_swap = Gauge(
            f"{PREFIX}_last_swap_timestamp_seconds", "Unix time of the last generation swap.", registry=registry
        )
        self.propagation = Histogram(
            f"{PREFIX}_propagation_seconds",
            "Time from the first change the agent saw (an artifact, a ConfigMap, its node or Falco) to the swap "
            "that put it on disk: debounce, fetch, validation and write.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300), registry=registry,
        )  # fmt: skip
        self.artifacts = Gauge(
            f"{PREFIX}_artifacts", "Applicable artifacts, by kind and state.", ["kind", "state"], registry=registry
        )
        self.nudges = Counter(
            f"{PREFIX}_falco_nudges_total", "Times Falco had missed a swap and its rules directory was nudged.",
            registry=registry,
        )  # fmt: skip
        self.report_writes = Counter(
            f"{PREFIX}_report_writes_total", "Writes of this agent's ArtifactReport.", registry=registry
        )
        self.pulls = Counter(
            f"{PREFIX}_pulls_total",
            "OCI pulls by result: success (downloaded), cached (the digest was on disk), failure.", ["result"],
            registry=registry,
        )  # fmt: skip
        self.pull_duration = Histogram(
            f"{PREFIX}_pull_duration_seconds", "Time of one OCI pull, resolution to file, failures included.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=registry,
        )  # fmt: skip
        self.pull_bytes = Counter(
            f"{PREFIX}_pull_downloaded_bytes_total", "Bytes of OCI layers downloaded.", registry=registry
        )
        self._informer_health = Gauge(
            f"{PREFIX}_informer_healthy", "1 while an informer lists and watches without failing, else 0.",
            ["informer"], registry=registry,
        )  # fmt: skip

    def watch_informer(self, name: str, healthy: Callable[[], bool]) -> None:
        self._informer_health.labels(name).set_function(lambda: 1.0 if healthy() else 0.0)
