"""The FalcoRule kind: one rule written by an application team in its own namespace."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import KubeModel, KubeObject
from .schema_types import Conditions

FALCO_PRIORITIES = ("EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFORMATIONAL", "DEBUG")
# Falco also accepts INFO for INFORMATIONAL. The API server matches patterns with Go's RE2, so (?i) works.
PRIORITY_PATTERN = r"^(?i)(emergency|alert|critical|error|warning|notice|informational|info|debug)$"


# Bounds on what a namespace editor may write: the operator judges every FalcoRule of every selected namespace
# and every agent loads the accepted ones, so no single rule may be large enough to slow either down.
MAX_CONDITION = 8 * 1024
MAX_OUTPUT = 8 * 1024
MAX_DESC = 4 * 1024
MAX_RULE_NAME = 1024
MAX_TAGS = 32
MAX_TAG = 128


class FalcoRuleSpec(KubeModel):
    rule: Annotated[str, Field(min_length=1, max_length=MAX_RULE_NAME)]
    """Rule name, unique within the namespace; at most 1024 characters."""
    desc: Annotated[str, Field(max_length=MAX_DESC)] | None = None
    """What the rule detects; at most 4096 characters."""
    condition: Annotated[str, Field(min_length=1, max_length=MAX_CONDITION)]
    """Falco condition; the operator scopes it to this namespace. At most 8192 characters."""
    output: Annotated[str, Field(max_length=MAX_OUTPUT)] | None = None
    """Falco output format of an alert; at most 8192 characters."""
    priority: Annotated[str, Field(pattern=PRIORITY_PATTERN, max_length=16)] | None = None
    """Falco priority, any case: EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFORMATIONAL, DEBUG."""
    tags: Annotated[list[Annotated[str, Field(max_length=MAX_TAG)]], Field(max_length=MAX_TAGS)] | None = None
    """Falco tags of the rule: at most 32, each at most 128 characters."""
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
