"""A Falco's ``status.artifacts`` counts alone wait ``ARTIFACT_COUNTS_HOLD`` before they are written: an artifact
change's dip in ``programmed`` that comes back within that time is never written."""

from __future__ import annotations

from typing import Any

from falco_operator.instance.status import ARTIFACT_COUNTS_HOLD, counts_hold, counts_only

Json = dict[str, Any]
LIVE: Json = {"observedGeneration": 3, "conditions": [{"type": "Reconciled", "status": "True"}],
              "artifacts": {"selected": 2, "programmed": 2, "failed": 0}}  # fmt: skip


def test_a_difference_in_the_counts_alone_is_told_apart() -> None:
    dip = {**LIVE, "artifacts": {"selected": 2, "programmed": 1, "failed": 0}}
    assert counts_only(LIVE, dip)
    assert not counts_only(LIVE, dict(LIVE)), "no difference"
    assert not counts_only(None, dip), "a first status is written at once"
    assert not counts_only(LIVE, {**dip, "observedGeneration": 4}), "with another difference"
    assert not counts_only(LIVE, {**dip, "conditions": [{"type": "Reconciled", "status": "False"}]})
    assert counts_only({k: v for k, v in LIVE.items() if k != "artifacts"}, LIVE), "the counts appear"


def test_the_hold_runs_from_when_the_difference_was_first_seen() -> None:
    assert counts_hold(None, 100.0) == ARTIFACT_COUNTS_HOLD
    assert counts_hold(100.0, 100.0) == ARTIFACT_COUNTS_HOLD
    assert counts_hold(100.0, 102.0) == ARTIFACT_COUNTS_HOLD - 2.0
    assert counts_hold(100.0, 100.0 + ARTIFACT_COUNTS_HOLD) is None
    assert counts_hold(100.0, 200.0) is None
