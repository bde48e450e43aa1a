"""A drop of a Falco's ``status.artifacts.programmed`` alone waits ``ARTIFACT_COUNTS_HOLD`` before it is written: an
artifact change's dip that comes back within that time is never written."""

from __future__ import annotations

from typing import Any

from falco_operator.instance.status import ARTIFACT_COUNTS_HOLD, counts_hold, programmed_dropped

Json = dict[str, Any]
LIVE: Json = {"observedGeneration": 3, "conditions": [{"type": "Reconciled", "status": "True"}],
              "artifacts": {"selected": 2, "programmed": 2, "failed": 0}}  # fmt: skip


def test_a_drop_of_programmed_alone_is_held_and_anything_else_written_at_once() -> None:
    dip = {**LIVE, "artifacts": {"selected": 2, "programmed": 1, "failed": 0}}
    assert programmed_dropped(LIVE, dip)
    assert not programmed_dropped(LIVE, dict(LIVE)), "no difference"
    assert not programmed_dropped(None, dip), "a first status is written at once"
    assert not programmed_dropped(dip, LIVE), "more programmed: at once"
    assert not programmed_dropped(LIVE, {**dip, "observedGeneration": 4}), "with another difference"
    assert not programmed_dropped(LIVE, {**dip, "conditions": [{"type": "Reconciled", "status": "False"}]})
    assert not programmed_dropped(LIVE, {**LIVE, "artifacts": {"selected": 2, "programmed": 1, "failed": 1}}), (
        "a failure"
    )
    assert not programmed_dropped(LIVE, {**LIVE, "artifacts": {"selected": 3, "programmed": 1, "failed": 0}}), (
        "selected"
    )
    without = {k: v for k, v in LIVE.items() if k != "artifacts"}
    assert not programmed_dropped(without, LIVE), "the counts appear"


def test_the_hold_runs_from_when_the_difference_was_first_seen() -> None:
    assert counts_hold(100.0, 100.0) == ARTIFACT_COUNTS_HOLD
    assert counts_hold(100.0, 102.0) == ARTIFACT_COUNTS_HOLD - 2.0
    assert counts_hold(100.0, 100.0 + ARTIFACT_COUNTS_HOLD) is None
    assert counts_hold(100.0, 200.0) is None
