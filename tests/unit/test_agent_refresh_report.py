"""The report entry of an artifact whose OCI source could not be resolved again: its state says what is
delivered, ``refreshProblem`` why it may be stale."""

from __future__ import annotations

from pathlib import Path

from artifact_agent.report import report_status
from falco_operator.artifacts import ArtifactKey, Delivered, Outcome, Unavailable

KEY = ArtifactKey("Rulesfile", "pulled")
DIRECTORIES = {"rules": Path("/etc/falco/rules.d")}


def _installed() -> Outcome:
    delivered = Delivered(files={("rules", "50-01-pulled-oci.yaml"): b"- list: a\n  items: []\n"},
                          digest="sha256:" + "a" * 64)  # fmt: skip
    return Outcome(KEY, 2, "Installed", delivered, "Installed", "written")


def test_a_refresh_problem_is_reported_beside_the_delivered_state() -> None:
    problem = Unavailable("Failed", "Unauthorized", "registry.example refused the credentials of Secret pull (401)")
    status = report_status([_installed()], DIRECTORIES, refresh_problems={KEY: problem})
    (entry,) = status["artifacts"]
    assert (entry["state"], entry["reason"], entry["digest"]) == ("Installed", "Installed", "sha256:" + "a" * 64)
    assert entry["refreshProblem"] == {
        "reason": "Unauthorized",
        "message": "registry.example refused the credentials of Secret pull (401); the content pulled before stays",
    }


def test_no_refresh_problem_no_field() -> None:
    (entry,) = report_status([_installed()], DIRECTORIES)["artifacts"]
    assert "refreshProblem" not in entry
    (entry,) = report_status([_installed()], DIRECTORIES, refresh_problems={})["artifacts"]
    assert "refreshProblem" not in entry
