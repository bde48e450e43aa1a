"""The project's metrics and their text exposition, read back by prometheus_client's parser (a development
dependency): what Prometheus reads is what was counted, whatever the names, label values and numbers."""

from __future__ import annotations

import math
import random
import string
import threading
import time
from collections.abc import Iterable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from falco_operator.kube.promtext import (
    CONTENT_TYPE,
    Counter,
    Gauge,
    Histogram,
    MetricFamily,
    Registry,
    escape_label_value,
    exposition,
    format_value,
)

Key = tuple[str, frozenset[tuple[str, str]]]
HARD = 'back\\slash "quoted"\nnew line, ünïcode ☃ {braces} =, \\n literally'


def parsed(registry: Registry) -> tuple[dict[str, tuple[str, str]], dict[Key, float]]:
    """Per family (as the TYPE line names it): its type and help; per sample: its value."""
    families: dict[str, tuple[str, str]] = {}
    samples: dict[Key, float] = {}
    for family in text_string_to_metric_families(exposition(registry).decode()):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        families[name] = (family.type, family.documentation)
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} twice"
            samples[key] = sample.value
    return families, samples


def key(name: str, /, **labels: str) -> Key:
    return name, frozenset(labels.items())


def test_counter_gauge_and_histogram_with_labels_read_back() -> None:
    registry = Registry()
    requests = Counter("requests_total", "Requests.", ["code", "method"], registry=registry)
    requests.labels("200", "GET").inc()
    requests.labels(code="200", method="GET").inc(2)
    requests.labels(method="POST", code="500").inc(0.5)
    depth = Gauge("depth", "Depth.", ["queue"], registry=registry)
    depth.labels("a").set(7)
    depth.labels("a").dec(2)
    depth.labels("b").inc()
    latency = Histogram("latency_seconds", "Latency.", ["queue"], buckets=(0.1, 1, 10), registry=registry)
    for value in (0.05, 0.1, 0.5, 1, 3, 100):
        latency.labels("a").observe(value)
    families, samples = parsed(registry)
    assert families == {"requests_total": ("counter", "Requests."), "depth": ("gauge", "Depth."),
                        "latency_seconds": ("histogram", "Latency.")}  # fmt: skip
    assert samples == {
        key("requests_total", code="200", method="GET"): 3,
        key("requests_total", code="500", method="POST"): 0.5,
        key("depth", queue="a"): 5,
        key("depth", queue="b"): 1,
        # A bound counts the values up to and including it: 0.1 and 1 are in their own buckets.
        key("latency_seconds_bucket", queue="a", le="0.1"): 2,
        key("latency_seconds_bucket", queue="a", le="1.0"): 4,
        key("latency_seconds_bucket", queue="a", le="10.0"): 5,
        key("latency_seconds_bucket", queue="a", le="+Inf"): 6,
        key("latency_seconds_count", queue="a"): 6,
        key("latency_seconds_sum", queue="a"): 104.65,
    }


def test_metrics_without_labels_show_from_the_start() -> None:
    registry = Registry()
    Counter("writes_total", "Writes.", registry=registry)
    Gauge("temperature", "Temperature.", registry=registry)
    Histogram("size_bytes", "Sizes.", buckets=(10,), registry=registry)
    labelled = Counter("labelled_total", "Only once labelled.", ["kind"], registry=registry)
    families, samples = parsed(registry)
    assert set(families) == {"writes_total", "temperature", "size_bytes", "labelled_total"}
    assert samples == {
        key("writes_total"): 0, key("temperature"): 0, key("size_bytes_bucket", le="10.0"): 0,
        key("size_bytes_bucket", le="+Inf"): 0, key("size_bytes_count"): 0, key("size_bytes_sum"): 0,
    }  # fmt: skip
    text = exposition(registry).decode()
    assert "# TYPE labelled_total counter\n" in text
    labelled.labels("x").inc()
    assert parsed(registry)[1][key("labelled_total", kind="x")] == 1


def test_hard_label_values_and_help_text_round_trip() -> None:
    registry = Registry()
    gauge = Gauge("hard", f"Help with {HARD}", ["value", "other"], registry=registry)
    gauge.labels(HARD, "").set(1)
    gauge.labels("\\", '"').set(2)
    families, samples = parsed(registry)
    assert families["hard"] == ("gauge", f"Help with {HARD}")
    assert samples == {key("hard", value=HARD, other=""): 1, key("hard", value="\\", other='"'): 2}
    # The escapes themselves, as the format defines them.
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert 'hard{value="\\\\",other="\\""} 2.0\n' in exposition(registry).decode()


def test_help_escapes_only_backslash_and_newline() -> None:
    registry = Registry()
    Gauge("documented", 'Say "this"\\that\nand more.', registry=registry)
    assert '# HELP documented Say "this"\\\\that\\nand more.\n' in exposition(registry).decode()


@pytest.mark.parametrize(
    ("value", "text"),
    [(math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"), (3, "3.0"), (0, "0.0"), (-2.5, "-2.5"),
     (1e-8, "1e-08"), (1e22, "1e+22"), (2**53, "9007199254740992.0"), (0.1 + 0.2, "0.30000000000000004")],
)  # fmt: skip
def test_numbers_are_written_as_the_format_reads_them(value: float, text: str) -> None:
    assert format_value(value) == text
    registry = Registry()
    Gauge("number", "A number.", registry=registry).set(value)
    read = parsed(registry)[1][key("number")]
    assert (math.isnan(read) and math.isnan(value)) or read == value


def test_histogram_buckets_end_with_inf_and_count_nan_there() -> None:
    registry = Registry()
    histogram = Histogram("h", "H.", buckets=(1, 2, math.inf), registry=registry)
    assert histogram.bounds == (1.0, 2.0, math.inf)
    histogram.observe(math.nan)
    histogram.observe(-5)
    samples = parsed(registry)[1]
    assert samples[key("h_bucket", le="1.0")] == 1
    assert samples[key("h_bucket", le="+Inf")] == 2 == samples[key("h_count")]
    assert math.isnan(samples[key("h_sum")])


def test_gauge_functions_are_read_at_scrape_time_and_set_replaces_them() -> None:
    registry = Registry()
    gauge = Gauge("live", "Live.", ["what"], registry=registry)
    readings = iter([1.0, 2.0])
    gauge.labels("f").set_function(lambda: next(readings))
    assert parsed(registry)[1][key("live", what="f")] == 1
    assert parsed(registry)[1][key("live", what="f")] == 2
    gauge.labels("f").set(9)
    assert parsed(registry)[1][key("live", what="f")] == 9
    clock = Gauge("clock", "Now.", registry=registry)
    before = time.time()
    clock.set_to_current_time()
    assert before <= parsed(registry)[1][key("clock")] <= time.time()


def test_clear_removes_every_labelled_series() -> None:
    registry = Registry()
    gauge = Gauge("states", "States.", ["state"], registry=registry)
    gauge.labels("a").inc()
    gauge.labels("b").inc()
    gauge.clear()
    gauge.labels("b").inc()
    assert parsed(registry)[1] == {key("states", state="b"): 1}


def test_collectors_build_families_at_scrape_time() -> None:
    class Items:
        def __init__(self) -> None:
            self.items = ["a", "b", "a"]

        def collect(self) -> Iterable[MetricFamily]:
            family = MetricFamily("items", "Items by name.", "gauge", ("name",))
            for name in sorted(set(self.items)):
                family.add((name,), self.items.count(name))
            yield family

    registry = Registry()
    items = Items()
    registry.register(items)
    assert parsed(registry)[1] == {key("items", name="a"): 2, key("items", name="b"): 1}
    items.items.append("c")
    assert parsed(registry)[1][key("items", name="c")] == 1


def test_mistakes_are_refused() -> None:
    registry = Registry()
    counter = Counter("done_total", "Done.", ["kind"], registry=registry)
    with pytest.raises(ValueError, match="_total"):
        Counter("done", "No suffix.", registry=registry)
    with pytest.raises(ValueError, match="already registered"):
        Gauge("done_total", "Same name.", registry=registry)
    Histogram("h", "H.", buckets=(1,), registry=registry)
    with pytest.raises(ValueError, match="already registered"):
        Gauge("h_bucket", "Clash.", registry=registry)
    with pytest.raises(ValueError, match="invalid metric name"):
        Gauge("1bad", "Bad.", registry=registry)
    with pytest.raises(ValueError, match="invalid label name"):
        Gauge("good", "Bad label.", ["__reserved"], registry=registry)
    with pytest.raises(ValueError, match="le"):
        Histogram("h2", "H.", ["le"], buckets=(1,), registry=registry)
    with pytest.raises(ValueError, match="increase"):
        Histogram("h3", "H.", buckets=(2, 1), registry=registry)
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels("x").inc(-1)
    with pytest.raises(ValueError, match="label values expected"):
        counter.labels("x", "y")
    with pytest.raises(ValueError, match="expected"):
        counter.labels(other="x")
    with pytest.raises(ValueError, match="call labels"):
        counter.inc()
    with pytest.raises(ValueError, match="no labels"):
        Gauge("plain", "Plain.", registry=registry).labels("x")


def test_updates_from_many_threads_are_all_counted() -> None:
    registry = Registry()
    counter = Counter("hits_total", "Hits.", ["worker"], registry=registry)
    histogram = Histogram("work_seconds", "Work.", buckets=(0.5,), registry=registry)
    gauge = Gauge("level", "Level.", registry=registry)

    def work() -> None:
        for index in range(2000):
            counter.labels(str(index % 3)).inc()
            histogram.observe(index % 2)
            gauge.inc()
            gauge.dec()
            gauge.inc()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples = parsed(registry)[1]
    assert sum(samples[key("hits_total", worker=str(w))] for w in range(3)) == 16000
    assert samples[key("work_seconds_count")] == 16000
    assert samples[key("work_seconds_bucket", le="0.5")] == 8000
    assert samples[key("level")] == 16000


def test_the_content_type_names_the_text_format() -> None:
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def random_name(rng: random.Random, first: str, rest: str) -> str:
    return rng.choice(first) + "".join(rng.choice(rest) for _ in range(rng.randrange(0, 12)))


def random_value(rng: random.Random) -> float:
    return rng.choice([
        rng.uniform(-1e6, 1e6), float(rng.randrange(-1000, 1000)), rng.uniform(0, 1e-9), 10.0 ** rng.randrange(-30, 30),
        math.inf, -math.inf, math.nan, 0.0,
    ])  # fmt: skip


def random_label_value(rng: random.Random) -> str:
    alphabet = string.printable + '\\\\""\n\n' + "éü☃𝄞\u2028\u00a0"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 20)))


@pytest.mark.parametrize("seed", range(20))
def test_random_metrics_read_back_unchanged(seed: int) -> None:
    """Random names, labels, values and observations: the parser reads back what the metrics hold."""
    rng = random.Random(seed)
    registry = Registry()
    expected: dict[Key, float] = {}
    expected_families: dict[str, tuple[str, str]] = {}
    letters = string.ascii_letters + "_"
    for index in range(12):
        kind = rng.choice(["counter", "gauge", "histogram"])
        name = f"m{index}_{random_name(rng, letters + ':', letters + string.digits + ':')}"
        drawn = {random_name(rng, letters, letters + string.digits) for _ in range(rng.randrange(0, 4))}
        labels = sorted(label for label in drawn if label != "le" and not label.startswith("__"))
        help_text = random_label_value(rng).strip()  # the parser drops whitespace around HELP text
        children = [tuple(random_label_value(rng) for _ in labels) for _ in range(rng.randrange(1, 4))] if labels \
            else [()]  # fmt: skip
        children = list(dict.fromkeys(children))
        expected_families[f"{name}_total" if kind == "counter" else name] = (kind, help_text)
        if kind == "counter":
            counter = Counter(f"{name}_total", help_text, labels, registry=registry)
            for values in children:
                child = counter.labels(*values) if labels else counter
                total = 0.0
                for _ in range(rng.randrange(0, 5)):
                    amount = abs(random_value(rng)) if rng.random() < 0.9 else rng.randrange(0, 5)
                    child.inc(amount)
                    total += amount
                expected[(f"{name}_total", frozenset(zip(labels, values, strict=True)))] = total
        elif kind == "gauge":
            gauge = Gauge(name, help_text, labels, registry=registry)
            for values in children:
                value = random_value(rng)
                (gauge.labels(*values) if labels else gauge).set(value)
                expected[(name, frozenset(zip(labels, values, strict=True)))] = value
        else:
            bounds = sorted({rng.choice([rng.uniform(-100, 100), float(rng.randrange(-5, 50))])
                             for _ in range(rng.randrange(1, 6))})  # fmt: skip
            histogram = Histogram(name, help_text, labels, buckets=bounds, registry=registry)
            for values in children:
                observed = histogram.labels(*values) if labels else histogram
                observations = [rng.uniform(-150, 150) for _ in range(rng.randrange(0, 30))]
                for observation in observations:
                    observed.observe(observation)
                pairs = frozenset(zip(labels, values, strict=True))
                for bound in [*bounds, math.inf]:
                    le = format_value(bound)
                    expected[(f"{name}_bucket", pairs | {("le", le)})] = sum(1 for o in observations if o <= bound)
                expected[(f"{name}_count", pairs)] = len(observations)
                expected[(f"{name}_sum", pairs)] = sum(observations, 0.0)
    families, samples = parsed(registry)
    assert families == expected_families
    assert samples.keys() == expected.keys()
    for sample_key, value in expected.items():
        read = samples[sample_key]
        assert (math.isnan(read) and math.isnan(value)) or read == value, (sample_key, read, value)
