"""What the migration could not carry over, and the bookkeeping that makes sure every changed value is accounted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .chart_defaults import CHART_DEFAULTS

Json = dict[str, Any]
_MISSING: Any = object()


@dataclass(frozen=True, order=True)
class Finding:
    """A chart value (dotted path) the operator's objects do not reproduce, and why."""

    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.value}: {self.reason}"


def lookup(values: Any, path: str, default: Any = None) -> Any:
    """The value at a dotted path (``driver.modernEbpf.leastPrivileged``); ``default`` when a step is missing."""
    current = values
    for step in path.split("."):
        if not isinstance(current, dict) or step not in current:
            return default
        current = current[step]
    return current


def changed_leaves(values: Any, defaults: Any, prefix: str = "") -> list[str]:
    """Dotted paths where ``values`` differs from ``defaults``: mappings are compared key by key, anything else
    (lists included, as Helm replaces them) whole."""
    if isinstance(values, dict) and (isinstance(defaults, dict) or defaults is _MISSING):
        known = defaults if isinstance(defaults, dict) else {}
        paths: list[str] = []
        for key in values:
            paths += changed_leaves(values[key], known.get(key, _MISSING), f"{prefix}{key}.")
        return paths
    return [] if values == defaults else [prefix.rstrip(".")]


@dataclass
class Context:
    """The merged values being migrated, the names chosen, and what was mapped or reported so far."""

    values: Json
    release: str
    name: str
    namespace: str
    findings: list[Finding] = field(default_factory=list)
    handled: set[str] = field(default_factory=set)

    def get(self, path: str, default: Any = None) -> Any:
        return lookup(self.values, path, default)

    def default(self, path: str) -> Any:
        return lookup(CHART_DEFAULTS, path)

    def changed(self, path: str) -> bool:
        """The value differs from the chart's default (a missing value counts as the default)."""
        return lookup(self.values, path, _MISSING) not in (_MISSING, lookup(CHART_DEFAULTS, path, _MISSING))

    def handle(self, *paths: str) -> None:
        """These values (and everything under them) are accounted for: mapped, or reported."""
        self.handled.update(paths)

    def unmapped(self, path: str, reason: str) -> None:
        self.findings.append(Finding(path, reason))
        self.handled.add(path)

    def unmapped_if_changed(self, path: str, reason: str, skip: tuple[str, ...] = ()) -> None:
        """Report every changed value under ``path`` (but those under ``skip``) with ``reason``; the default needs
        no migration."""
        for leaf in changed_leaves(self.get(path), self.default(path), f"{path}."):
            if not any(leaf == done or leaf.startswith(f"{done}.") for done in skip):
                self.findings.append(Finding(leaf, reason))
        self.handled.add(path)

    def is_handled(self, path: str) -> bool:
        return any(path == done or path.startswith(f"{done}.") for done in self.handled)


NO_MAPPING = "migrate-helm knows no equivalent in the operator's API"


def report_the_rest(context: Context) -> None:
    """Every changed value nothing mapped or reported: reported as having no known mapping."""
    for leaf in changed_leaves(context.values, CHART_DEFAULTS):
        if not context.is_handled(leaf):
            context.unmapped(leaf, NO_MAPPING)
