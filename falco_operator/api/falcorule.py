"""The FalcoRule kind: one rule written by an application team in its own namespace."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import KubeModel, KubeObject
from .schema_types import Conditions

FALCO_PRIORITIES = ("EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFORMATIONAL", "DEBUG")
# Falco also accepts INFO for INFORMATIONAL. The API server matches patterns with Go's RE2, so (?i) works.
PRIORITY_PATTERN = r"^(?i)(emergency|alert|critical|error|warning|notice|informational|info|debug)$"


class FalcoRuleSpec(KubeModel):
    rule: Annotated[str, Field(min_length=1, max_length=1024)]
    """Rule name, unique within the namespace."""
    desc: str | None = None
    """What the rule detects."""
    condition: Annotated[str, Field(min_length=1)]
    """Falco condition; the operator scopes it to this namespace."""
    output: str | None = None
    """Falco output format of an alert."""
    priority: Annotated[str, Field(pattern=PRIORITY_PATTERN, max_length=16)] | None = None
    """Falco priority, any case: EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFORMATIONAL, DEBUG."""
    tags: list[str] | None = None
    """Falco tags of the rule."""
    enabled: bool = True
    """Load the rule enabled."""


class FalcoRuleStatus(KubeModel):
    observed_generation: int | None = None
    """The generation this status describes."""
    conditions: Conditions | None = None
    """Accepted, Programmed."""


class FalcoRule(KubeObject):
    api_version: Literal["artifact.falcosecurity.dev/v1alpha1"] = "artifact.falcosecurity.dev/v1alpha1"
    kind: Literal["FalcoRule"] = "FalcoRule"
    spec: FalcoRuleSpec
    status: FalcoRuleStatus | None = None
