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
    desc: str | None = None
    condition: Annotated[str, Field(min_length=1)]
    output: str | None = None
    priority: Annotated[str, Field(pattern=PRIORITY_PATTERN)] | None = None
    tags: list[str] | None = None
    enabled: bool = True


class FalcoRuleStatus(KubeModel):
    observed_generation: int | None = None
    conditions: Conditions | None = None


class FalcoRule(KubeObject):
    api_version: Literal["artifact.falcosecurity.dev/v1alpha1"] = "artifact.falcosecurity.dev/v1alpha1"
    kind: Literal["FalcoRule"] = "FalcoRule"
    spec: FalcoRuleSpec
    status: FalcoRuleStatus | None = None
