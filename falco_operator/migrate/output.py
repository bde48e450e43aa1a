"""The migration printed: multi-document YAML, headed by a comment block listing the values not mapped."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from .chart_defaults import APP_VERSION, CHART_VERSION
from .findings import Finding


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Block style, keys in the order written (apiVersion, kind, metadata, spec), multi-line strings as blocks."""


def _string(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def header(source: str, findings: Iterable[Finding]) -> str:
    listed = list(findings)
    lines = [f"# falco-operator migrate-helm {source} (falco chart {CHART_VERSION}, Falco {APP_VERSION})"]
    if not listed:
        lines.append("# Every value that differs from the chart's defaults is mapped.")
    else:
        lines.append(f"# Values not mapped ({len(listed)}):")
        lines += [f"#   {line}" for finding in listed for line in _wrapped(str(finding))]
    return "\n".join(lines) + "\n"


def _wrapped(text: str) -> list[str]:
    return [part if i == 0 else f"  {part}" for i, part in enumerate(text.splitlines() or [""])]


def documents(manifests: Iterable[dict[str, Any]]) -> str:
    dumped = [yaml.dump(m, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096) for m in manifests]
    return "".join(f"---\n{text}" for text in dumped)


def render(source: str, manifests: Iterable[dict[str, Any]], findings: Iterable[Finding]) -> str:
    listed = list(findings)
    return header(source, listed) + documents(manifests)
