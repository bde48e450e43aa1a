"""The agent's report body (pure): what it says of each artifact stays within what the API server accepts."""

from __future__ import annotations

from artifact_agent.report import MAX_MESSAGE_CHARS, report_status
from falco_operator.artifacts import ArtifactKey, Delivered, Outcome


def test_a_long_validation_message_is_clipped_in_the_report_and_says_so() -> None:
    outcome = Outcome(ArtifactKey("Rulesfile", "big"), 1, "Invalid", Delivered(), "InvalidContent", "x" * 1_000_000)
    entry = report_status([outcome], {})["artifacts"][0]
    assert len(entry["message"]) == MAX_MESSAGE_CHARS
    assert entry["message"].endswith("(clipped)")


def test_a_short_message_is_reported_as_is() -> None:
    outcome = Outcome(ArtifactKey("Rulesfile", "small"), 1, "Invalid", Delivered(), "InvalidContent", "line 2: bad")
    assert report_status([outcome], {})["artifacts"][0]["message"] == "line 2: bad"
