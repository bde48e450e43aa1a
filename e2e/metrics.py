"""Read Prometheus text exposition into {(name, labels): value}, for assertions on scraped metrics."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
        response.raise_for_status()
        return parse(response.text)


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    """Sum of the samples of ``metric`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, sample_labels), v in samples.items() if n == metric and wanted <= sample_labels)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def label_names(samples: Samples, name: str) -> set[str]:
    return {key for n, labels in samples for key, _ in labels if n == name}
