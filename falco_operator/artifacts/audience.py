"""Which Falco pods an artifact is for: the one answer the agent, the status and the operator's RBAC share.

Three things decide it: ``selector`` against the Node's labels, ``instanceSelector`` against the Falco's labels,
and the ``artifact.falcosecurity.dev/for-falco`` label (set on artifacts the operator generates for one Falco)
against the Falco's name. Questions about a Falco as a whole (which Secrets its agents may read, how many
artifacts select it) leave the Node out: an artifact that reaches any of its nodes counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..api.plain import LabelSelector
from ..api.wire import Refused
from ..records import record

FOR_FALCO_LABEL = "artifact.falcosecurity.dev/for-falco"


class Selector(Protocol):
    def matches(self, labels: dict[str, str]) -> bool: ...


class _Targeting(Protocol):
    @property
    def selector(self) -> Selector | None: ...
    @property
    def instance_selector(self) -> Selector | None: ...


class _Labelled(Protocol):
    @property
    def labels(self) -> dict[str, str] | None: ...


class Targeted(Protocol):
    """An artifact as the agent reads it (``api.plain``) or as the operator's models do: its spec's selectors and
    its labels."""

    @property
    def spec(self) -> _Targeting: ...
    @property
    def metadata(self) -> _Labelled: ...


@record(frozen=True)
class Audience:
    selector: Selector | None = None
    instance_selector: Selector | None = None
    for_falco: str | None = None
    """The only Falco (by name) the artifact is for."""

    @classmethod
    def of(cls, artifact: Targeted) -> Audience:
        return cls(
            artifact.spec.selector,
            artifact.spec.instance_selector,
            (artifact.metadata.labels or {}).get(FOR_FALCO_LABEL),
        )

    @classmethod
    def of_object(cls, raw: Mapping[str, Any]) -> Audience | None:
        """The audience of a raw object; None when its selectors cannot be read (it reaches no one)."""
        spec = raw.get("spec") or {}
        try:
            selector, instance_selector = (
                LabelSelector.from_wire(spec[key]) if spec.get(key) is not None else None
                for key in ("selector", "instanceSelector")
            )
        except Refused:
            return None
        for_falco = ((raw.get("metadata") or {}).get("labels") or {}).get(FOR_FALCO_LABEL)
        return cls(selector, instance_selector, for_falco)

    def includes_falco(self, falco: str, falco_labels: Mapping[str, str]) -> bool:
        """Whether the artifact is for this Falco (on some of its nodes, or all)."""
        if self.for_falco is not None and self.for_falco != falco:
            return False
        return self.instance_selector is None or self.instance_selector.matches(dict(falco_labels))

    def includes(self, falco: str, falco_labels: Mapping[str, str], node_labels: Mapping[str, str]) -> bool:
        """Whether the artifact is for the pod of this Falco on a node with these labels."""
        if self.selector is not None and not self.selector.matches(dict(node_labels)):
            return False
        return self.includes_falco(falco, falco_labels)
