"""Shared model configuration and the Kubernetes types every kind uses."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .selection import selector_matches


class KubeModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields from newer servers are ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", use_attribute_docstrings=True
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON the API server expects: aliases, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class LabelSelectorRequirement(KubeModel):
    key: str
    """Label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values."""
    values: list[str] | None = None
    """Values for In and NotIn; empty for Exists and DoesNotExist."""


class LabelSelector(KubeModel):
    """`metav1.LabelSelector`: the requirements are ANDed; an empty selector matches everything."""

    match_labels: dict[str, str] | None = None
    """Labels that must all be present with these values."""
    match_expressions: list[LabelSelectorRequirement] | None = None
    """Requirements that must all hold."""

    def matches(self, labels: dict[str, str]) -> bool:
        return selector_matches(self.match_labels, self.match_expressions, labels)


class Condition(KubeModel):
    """`metav1.Condition`."""

    type: str = Field(max_length=316)
    """Condition type, e.g. Reconciled or Programmed."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The object generation the condition was computed from."""
    last_transition_time: str
    """When the status last changed."""
    reason: str = Field(min_length=1, max_length=1024)
    """One CamelCase word for the last change."""
    message: str = Field(max_length=32768)
    """What happened, for people."""


class ObjectMeta(KubeModel):
    """The part of `metadata` the models use; the rest stays in the raw object."""

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = None


class KubeObject(KubeModel):
    """Common envelope of every kind."""

    api_version: str
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
