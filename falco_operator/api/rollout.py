"""Staged rollouts of an artifact: which nodes may run a new generation, for how long it is watched, what stops it.

An artifact with ``spec.rollout`` reaches the nodes of one step at a time; the agents of the other nodes keep the
*stable* generation, whose exact content the operator keeps in a snapshot ConfigMap. The operator is the only
writer of ``status.rollout``; the agents on a step's nodes watch their Falco and report a verdict per generation.
See docs/rollout.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from .base import KubeModel
from .ocirefs import DURATION_PATTERN
from .plain import (
    DEFAULT_ANALYSIS_DURATION,
    MAX_ANALYSIS_DURATION,
    MAX_CPU,
    MAX_RATE,
    MAX_STEP_NODES,
    MAX_STEPS,
    MIN_ANALYSIS_DURATION,
)
from .schema_types import cel, validations

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=64, json_schema_extra=validations(cel(
    f"duration(self) >= duration('{MIN_ANALYSIS_DURATION}') && duration(self) <= duration('{MAX_ANALYSIS_DURATION}')",
    f"analysis.duration must be between {MIN_ANALYSIS_DURATION} and {MAX_ANALYSIS_DURATION}, for example 2m",
)))]  # fmt: skip
Rate = Annotated[float, Field(ge=0, le=MAX_RATE)]


class RolloutStep(KubeModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.nodes) != has(self.percent)", "a rollout step sets exactly one of nodes or percent"),
        )
    )

    nodes: Annotated[int, Field(ge=1, le=MAX_STEP_NODES)] | None = None
    """This many of the targeted nodes run the new generation during the step (all of them when fewer)."""
    percent: Annotated[int, Field(ge=1, le=100)] | None = None
    """This share of the targeted nodes, rounded up, runs the new generation during the step."""


class RolloutAnalysis(KubeModel):
    duration: Duration = DEFAULT_ANALYSIS_DURATION
    """How long each node of a step runs the new generation under watch before the step may pass (10s to 24h)."""
    max_rule_rate: Rate | None = None
    """Highest rate of alerts per second of any one rule on a node (Falco's `falcosecurity_falco_rules_matches_total`);
    unset: not checked."""
    max_total_rate: Rate | None = None
    """Highest rate of alerts per second of all rules together on a node; unset: not checked."""
    max_drop_rate: Rate | None = None
    """Highest rate of dropped events per second on a node (Falco's `falcosecurity_scap_n_drops_total`, which it
    reports with a driver); unset: not checked."""
    max_cpu: Annotated[float, Field(ge=0, le=MAX_CPU)] | None = None
    """Highest CPU usage of Falco on a node as a share of one CPU (`falcosecurity_falco_cpu_usage_ratio`, 0.5 = half
    a CPU); unset: not checked."""


class Rollout(KubeModel):
    steps: Annotated[list[RolloutStep], Field(min_length=1, max_length=MAX_STEPS)]
    """The steps in order; after the last one passes the new generation goes to every node (a last step of
    `percent: 100` says so explicitly)."""
    analysis: RolloutAnalysis = Field(default_factory=RolloutAnalysis)
    """What each step's nodes are watched for, and for how long."""


RolloutPhase = Literal["Progressing", "Paused", "Halted", "Aborted", "Succeeded"]


class RolloutStatus(KubeModel):
    phase: RolloutPhase
    """Progressing (a step runs), Paused (held by the annotation), Halted (a check failed: every node runs the
    stable generation), Aborted (by the annotation: likewise), Succeeded (the stable generation is the current one)."""
    stable_generation: int | None = None
    """The generation every node outside the step runs, kept in `snapshot`."""
    candidate_generation: int | None = None
    """The generation being rolled out (unset once Succeeded)."""
    step: int | None = None
    """The current step, from 1."""
    steps: int | None = None
    """How many steps the rollout has."""
    nodes: list[str] | None = None
    """The nodes that may run the candidate generation now (only while Progressing or Paused)."""
    step_started_at: str | None = None
    """When the current step began."""
    snapshot: str | None = None
    """Name of the ConfigMap (same namespace, owned by the artifact) that holds the stable generation."""
    message: str | None = None
    """What the rollout waits for, or which check failed on which node with the figures."""


AnalysisResult = Literal["Passed", "Failed"]


class ReportedAnalysis(KubeModel):
    generation: int
    """The generation watched."""
    result: AnalysisResult
    """Passed once the node ran it for the whole `analysis.duration` within the limits; Failed at the first sign
    of a limit passed, of a reload failure, or of Falco not loading it."""
    check: str | None = None
    """Which check failed: `Loaded`, `RuleRate`, `TotalRate`, `DropRate` or `CPU`."""
    message: str | None = None
    """The figures: what was measured, over how long, against which limit."""
    seconds: float | None = None
    """How long the node ran it under watch."""
