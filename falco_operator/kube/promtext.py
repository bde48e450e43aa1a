"""Counters, gauges and histograms with labels, and their Prometheus text exposition (format 0.0.4).

The operator and the agent need only these three types on a registry of their own, plus collectors that build
families at scrape time; this module keeps them free of a client library's HTTP servers and default collectors.
Metrics are updated from worker threads as well as the event loop: every child has its own lock, and every metric
one for its set of children.
"""

from __future__ import annotations

import math
import re
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import field
from itertools import pairwise
from typing import Generic, Literal, Protocol, TypeVar

from ..records import record

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MetricType = Literal["counter", "gauge", "histogram"]
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
INF = math.inf


@record(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@record
class MetricFamily:
    """One ``# HELP``/``# TYPE`` block: ``name`` is the name in those lines (a counter's ends in ``_total``)."""

    name: str
    documentation: str
    type: MetricType
    labelnames: tuple[str, ...] = ()
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_names(self.name, self.labelnames)

    def add(self, label_values: Sequence[str], value: float) -> None:
        """A sample named as the family, for collectors that build gauges or counters at scrape time."""
        if len(label_values) != len(self.labelnames):
            raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected, got {len(label_values)}")
        self.samples.append(Sample(self.name, dict(zip(self.labelnames, label_values, strict=True)), value))


class Collector(Protocol):
    def collect(self) -> Iterable[MetricFamily]: ...


class Registry:
    """The collectors one ``/metrics`` endpoint serves, in registration order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._collectors: list[Collector] = []
        self._names: set[str] = set()

    def register(self, collector: Collector) -> None:
        names = collector.sample_names() if isinstance(collector, _Metric) else set()
        with self._lock:
            taken = names & self._names
            if taken:
                raise ValueError(f"metric names already registered: {sorted(taken)}")
            self._names |= names
            self._collectors.append(collector)

    def collect(self) -> Iterator[MetricFamily]:
        with self._lock:
            collectors = list(self._collectors)
        for collector in collectors:
            yield from collector.collect()


def exposition(registry: Registry) -> bytes:
    """The registry's families in the text format, collected now."""
    return "".join(render(family) for family in registry.collect()).encode()


def render(family: MetricFamily) -> str:
    lines = [f"# HELP {family.name} {escape_help(family.documentation)}", f"# TYPE {family.name} {family.type}"]
    for sample in family.samples:
        labels = ",".join(f'{key}="{escape_label_value(value)}"' for key, value in sample.labels.items())
        lines.append(f"{sample.name}{{{labels}}} {format_value(sample.value)}" if labels else
                     f"{sample.name} {format_value(sample.value)}")  # fmt: skip
    return "\n".join(lines) + "\n"


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """``+Inf``, ``-Inf``, ``NaN``, else the shortest text that reads back as the same float (``1.0``, ``1e-08``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _check_names(name: str, labelnames: Iterable[str]) -> None:
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"invalid metric name {name!r}")
    seen: set[str] = set()
    for label in labelnames:
        if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
            raise ValueError(f"{name}: invalid label name {label!r}")
        if label in seen:
            raise ValueError(f"{name}: label {label!r} given twice")
        seen.add(label)


class CounterChild:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0.0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError(f"a counter only goes up (increment {amount})")
        with self._lock:
            self._value += amount

    def samples(self, name: str, labels: dict[str, str]) -> list[Sample]:
        with self._lock:
            return [Sample(name, labels, self._value)]


class GaugeChild:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0.0
        self._function: Callable[[], float] | None = None

    def set(self, value: float) -> None:
        """Store ``value`` (a function given before is forgotten)."""
        with self._lock:
            self._value, self._function = float(value), None

    def inc(self, amount: float = 1) -> None:
        with self._lock:
            self._value, self._function = self._value + amount, None

    def dec(self, amount: float = 1) -> None:
        self.inc(-amount)

    def set_to_current_time(self) -> None:
        self.set(time.time())

    def set_function(self, function: Callable[[], float]) -> None:
        """Report ``function()`` at every scrape (called outside the gauge's lock)."""
        with self._lock:
            self._function = function

    def samples(self, name: str, labels: dict[str, str]) -> list[Sample]:
        with self._lock:
            value, function = self._value, self._function
        return [Sample(name, labels, float(function()) if function is not None else value)]


class HistogramChild:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._lock = threading.Lock()
        self._bounds = bounds
        self._counts = [0] * len(bounds)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        # A value falls in the first bucket whose bound is at least the value. NaN compares false with every bound:
        # it goes to +Inf, so that the +Inf bucket still equals the count.
        index = len(self._bounds) - 1 if math.isnan(value) else bisect_left(self._bounds, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def samples(self, name: str, labels: dict[str, str]) -> list[Sample]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        result, cumulative = [], 0
        for bound, count in zip(self._bounds, counts, strict=True):
            cumulative += count
            result.append(Sample(f"{name}_bucket", {**labels, "le": format_value(bound)}, cumulative))
        result.append(Sample(f"{name}_count", labels, cumulative))
        result.append(Sample(f"{name}_sum", labels, total))
        return result


ChildT = TypeVar("ChildT", CounterChild, GaugeChild, HistogramChild)


class _Metric(Generic[ChildT]):
    type: MetricType

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (), *, registry: Registry) -> None:
        _check_names(name, labelnames)
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], ChildT] = {}
        if not self.labelnames:
            self._children[()] = self._new_child()
        registry.register(self)

    def _new_child(self) -> ChildT:
        raise NotImplementedError

    def sample_names(self) -> set[str]:
        return {self.name}

    def labels(self, *values: str, **by_name: str) -> ChildT:
        """The child of these label values (positional, in ``labelnames`` order, or all by name)."""
        if not self.labelnames:
            raise ValueError(f"{self.name} has no labels")
        if values and by_name:
            raise ValueError(f"{self.name}: give label values by position or by name, not both")
        if by_name:
            if set(by_name) != set(self.labelnames):
                raise ValueError(f"{self.name}: labels {sorted(self.labelnames)} expected, got {sorted(by_name)}")
            values = tuple(by_name[label] for label in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected, got {len(values)}")
        key = tuple(str(value) for value in values)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._new_child()
            return child

    def clear(self) -> None:
        """Forget every child (labelled metrics only): their series disappear until labelled again."""
        if not self.labelnames:
            raise ValueError(f"{self.name} has no labels")
        with self._lock:
            self._children.clear()

    def _unlabelled(self) -> ChildT:
        if self.labelnames:
            raise ValueError(f"{self.name} has labels {list(self.labelnames)}: call labels() first")
        return self._children[()]

    def collect(self) -> list[MetricFamily]:
        with self._lock:
            children = list(self._children.items())
        family = MetricFamily(self.name, self.documentation, self.type, self.labelnames)
        for values, child in children:
            family.samples.extend(child.samples(self.name, dict(zip(self.labelnames, values, strict=True))))
        return [family]


class Counter(_Metric[CounterChild]):
    """A count that only goes up; its name ends in ``_total``, as the format's convention wants."""

    type = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (), *, registry: Registry) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"a counter's name ends in _total: {name!r}")
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1) -> None:
        self._unlabelled().inc(amount)


class Gauge(_Metric[GaugeChild]):
    type = "gauge"

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def set(self, value: float) -> None:
        self._unlabelled().set(value)

    def inc(self, amount: float = 1) -> None:
        self._unlabelled().inc(amount)

    def dec(self, amount: float = 1) -> None:
        self._unlabelled().dec(amount)

    def set_to_current_time(self) -> None:
        self._unlabelled().set_to_current_time()

    def set_function(self, function: Callable[[], float]) -> None:
        self._unlabelled().set_function(function)


class Histogram(_Metric[HistogramChild]):
    """Observations counted in cumulative buckets (``le``, ending with ``+Inf``), with their sum and count."""

    type = "histogram"

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), *, buckets: Sequence[float],
        registry: Registry,
    ) -> None:  # fmt: skip
        bounds = tuple(float(bound) for bound in buckets)
        if not bounds or bounds[-1] != INF:
            bounds += (INF,)
        if any(later <= earlier for earlier, later in pairwise(bounds)):
            raise ValueError(f"{name}: buckets must increase: {list(buckets)}")
        if any(math.isnan(bound) for bound in bounds):
            raise ValueError(f"{name}: a bucket bound is NaN")
        if "le" in labelnames:
            raise ValueError(f"{name}: 'le' is the bucket label of a histogram")
        self.bounds = bounds
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def sample_names(self) -> set[str]:
        return {self.name, f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum"}

    def observe(self, value: float) -> None:
        self._unlabelled().observe(value)
