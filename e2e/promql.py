"""Metric names in PromQL, and in what a ``/metrics`` endpoint serves: the check that the shipped dashboard and
alerts ask only for series the operator and the agent expose."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from ruamel.yaml import YAML

KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                      "unless", "offset", "inf", "nan"})  # fmt: skip
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, labels, durations and numbers left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def exposed_names(exposition: str) -> set[str]:
    """Every name in Prometheus text: sample names and the families declared by ``# TYPE`` (a labelled family with
    no sample yet is declared all the same)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            family, kind = line.split()[2:4]
            names.add(family)
            if kind == "counter":
                names.add(family if family.endswith("_total") else f"{family}_total")
            if kind == "histogram":
                names.update(family + suffix for suffix in HISTOGRAM_SUFFIXES)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def shipped_promql(manifests: Path) -> list[str]:
    """The expressions of ``prometheus/prometheus_rule.yaml`` and of the operator's Grafana dashboard, read from the
    files (Falco's own dashboard, ``falco-dashboard.json``, asks for what Falco serves: checked apart)."""
    rule = YAML(typ="safe").load((manifests / "prometheus" / "prometheus_rule.yaml").read_text())
    exprs = [str(r["expr"]) for group in rule["spec"]["groups"] for r in group["rules"]]
    for path in (manifests / "grafana").glob("falco-operator-*.json"):
        exprs += [str(t["expr"]) for panel in json.loads(path.read_text())["panels"] for t in panel["targets"]]
    return exprs


def missing(exprs: Iterable[str], exposed: set[str]) -> dict[str, set[str]]:
    """Expression -> the names it uses that no endpoint exposes."""
    result = {}
    for expr in exprs:
        absent = metric_names(expr) - exposed
        if absent:
            result[expr] = absent
    return result
