"""What an agent writes in its ArtifactReport's status, as plain typed classes (no pydantic): each mirrors the model
of the same name (``report``, ``rollout``), and ``to_wire`` is the JSON the agent applies, which the model reads
back unchanged (tests/unit/test_plain_parity.py)."""

from __future__ import annotations

from typing import Literal

from ..records import record
from .wire import REQUIRED, Fields, Wire

ArtifactState = Literal["Installed", "Loaded", "Refused", "Invalid", "Failed", "Pending"]
AnalysisResult = Literal["Passed", "Failed"]
ANALYSIS_RESULTS: tuple[AnalysisResult, ...] = ("Passed", "Failed")


@record(frozen=True, slots=True, kw_only=True)
class ReportedAnalysis(Wire):
    """This node's verdict on a rollout's candidate generation."""

    generation: int
    result: AnalysisResult
    check: str | None = None
    message: str | None = None
    seconds: float | None = None

    @classmethod
    def from_wire(cls, raw: object) -> ReportedAnalysis:
        fields = Fields(raw, "analysis")
        return cls(generation=fields.integer("generation", REQUIRED),
                   result=fields.choice("result", ANALYSIS_RESULTS, REQUIRED), check=fields.text("check"),
                   message=fields.text("message"), seconds=fields.number("seconds"))  # fmt: skip


@record(frozen=True, slots=True, kw_only=True)
class RefreshProblem(Wire):
    reason: str
    message: str


@record(frozen=True, slots=True, kw_only=True)
class ReportedArtifact(Wire):
    kind: str
    """Rulesfile, Plugin, Config or FalcoRule."""
    name: str
    generation: int | None = None
    digest: str | None = None
    signer: str | None = None
    sha256: str | None = None
    config_map_sha256: str | None = None
    files: list[str] | None = None
    state: ArtifactState
    reason: str | None = None
    message: str | None = None
    refresh_problem: RefreshProblem | None = None
    analysis: ReportedAnalysis | None = None


@record(frozen=True, slots=True, kw_only=True)
class FalcoProbe(Wire):
    version: str | None = None
    reachable: bool | None = None


@record(frozen=True, slots=True, kw_only=True)
class ReportedImageDefaults(Wire):
    rules: list[str] | None = None
    rules_sha256: str | None = None
    plugins: list[str] | None = None
    replaced_by: list[str] | None = None


@record(frozen=True, slots=True, kw_only=True)
class ArtifactReportStatus(Wire):
    artifacts: list[ReportedArtifact] | None = None
    falco: FalcoProbe | None = None
    image_defaults: ReportedImageDefaults | None = None
