"""Prometheus metrics of the runtime, named and bucketed as controller-runtime's so dashboards carry over.

Each manager owns one ``RuntimeMetrics`` (its own registry): nothing registers globally at import time, so
several managers can run in one process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from .promtext import Counter, Gauge, Histogram, Registry

RECONCILE_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
)  # fmt: skip
# 10 ns .. 1000 s, ten per decade step, as the work queue histograms of client-go.
WORKQUEUE_BUCKETS = tuple(1e-8 * 10**exponent for exponent in range(12))
LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOOP_LAG_PERIOD = 0.5
"""Seconds between two looks at the event loop's lag (``LoopLag``)."""


class RuntimeMetrics:
    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        r = self.registry
        self.reconcile_total = Counter(
            "controller_runtime_reconcile_total", "Total number of reconciliations per controller",
            ["controller", "result"], registry=r,
        )  # fmt: skip
        self.reconcile_errors = Counter(
            "controller_runtime_reconcile_errors_total", "Total number of reconciliation errors per controller",
            ["controller"], registry=r,
        )  # fmt: skip
        self.terminal_errors = Counter(
            "controller_runtime_terminal_reconcile_errors_total",
            "Total number of terminal reconciliation errors per controller", ["controller"], registry=r,
        )  # fmt: skip
        self.reconcile_panics = Counter(
            "controller_runtime_reconcile_panics_total", "Total number of reconciliation panics per controller",
            ["controller"], registry=r,
        )  # fmt: skip
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds", "Length of time per reconciliation per controller",
            ["controller"], buckets=RECONCILE_BUCKETS, registry=r,
        )  # fmt: skip
        self.max_concurrent = Gauge(
            "controller_runtime_max_concurrent_reconciles", "Maximum number of concurrent reconciles per controller",
            ["controller"], registry=r,
        )  # fmt: skip
        self.active_workers = Gauge(
            "controller_runtime_active_workers", "Number of currently used workers per controller",
            ["controller"], registry=r,
        )  # fmt: skip
        queue_labels = ["name", "controller"]
        self.queue_depth = Gauge("workqueue_depth", "Current depth of workqueue", queue_labels, registry=r)
        self.queue_adds = Counter("workqueue_adds_total", "Total number of adds handled by workqueue",
                                  queue_labels, registry=r)  # fmt: skip
        self.queue_latency = Histogram(
            "workqueue_queue_duration_seconds", "How long in seconds an item stays in workqueue before being requested",
            queue_labels, buckets=WORKQUEUE_BUCKETS, registry=r,
        )  # fmt: skip
        self.work_duration = Histogram(
            "workqueue_work_duration_seconds", "How long in seconds processing an item from workqueue takes",
            queue_labels, buckets=WORKQUEUE_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_retries = Counter("workqueue_retries_total", "Total number of retries handled by workqueue",
                                     queue_labels, registry=r)  # fmt: skip
        self.unfinished_work = Gauge(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been observed by work_duration",
            queue_labels, registry=r,
        )  # fmt: skip
        self.longest_running = Gauge(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running",
            queue_labels, registry=r,
        )  # fmt: skip
        self.rest_requests = Counter(
            "rest_client_requests_total", "Number of HTTP requests, partitioned by status code, method, and host",
            ["code", "method", "host"], registry=r,
        )  # fmt: skip
        self.leader_status = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master",
            ["name"], registry=r,
        )  # fmt: skip

    def queue_metrics(self, name: str) -> QueueMetricsRecorder:
        return QueueMetricsRecorder(self, name)

    def watch_queue(self, name: str, unfinished: Callable[[], float], longest_running: Callable[[], float]) -> None:
        """Expose a queue's in-progress gauges, computed at scrape time."""
        self.unfinished_work.labels(name, name).set_function(unfinished)
        self.longest_running.labels(name, name).set_function(longest_running)


class QueueMetricsRecorder:
    """The work queue's metric hooks, bound to one queue (labels ``name`` and ``controller`` both its name)."""

    def __init__(self, metrics: RuntimeMetrics, name: str) -> None:
        self._depth = metrics.queue_depth.labels(name, name)
        self._adds = metrics.queue_adds.labels(name, name)
        self._latency = metrics.queue_latency.labels(name, name)
        self._work = metrics.work_duration.labels(name, name)
        self._retries = metrics.queue_retries.labels(name, name)

    def add(self) -> None:
        self._adds.inc()

    def depth(self, value: int) -> None:
        self._depth.set(value)

    def queue_latency(self, seconds: float) -> None:
        self._latency.observe(seconds)

    def work_duration(self, seconds: float) -> None:
        self._work.observe(seconds)

    def retry(self) -> None:
        self._retries.inc()


class LoopLag:
    """How late the event loop runs a timer it has set (``falco_operator_event_loop_lag_seconds``): synchronous
    work that holds the loop delays every request and timer, the Lease renewal among them."""

    def __init__(self, registry: Registry, period: float = LOOP_LAG_PERIOD) -> None:
        self.period = period
        self.histogram = Histogram(
            "falco_operator_event_loop_lag_seconds",
            "How much later than asked the event loop woke a task that slept (checked every 0.5 s)",
            buckets=LOOP_LAG_BUCKETS, registry=registry,
        )  # fmt: skip

    async def run(self) -> None:
        """Observe the lag every ``period`` seconds until cancelled."""
        while True:
            asked = time.monotonic() + self.period
            await anyio.sleep(self.period)
            self.histogram.observe(max(0.0, time.monotonic() - asked))
