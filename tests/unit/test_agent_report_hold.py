"""Holding the report after a swap until Falco confirms it (pure): what may wait, for how long, and what may not."""

from __future__ import annotations

from artifact_agent.report import report_status
from artifact_agent.report_hold import MAX_STRETCH, RELOAD_MARGIN, ReportHold, awaits_confirmation, confirm_wait
from falco_operator.api.plain_report import FalcoProbe
from falco_operator.artifacts import ArtifactKey, Delivered, Outcome

Json = dict[str, object]
UP = FalcoProbe(reachable=True, version="0.44.1")


def outcome(kind: str, name: str, generation: int, state: str, reason: str | None = None) -> Outcome:
    return Outcome(ArtifactKey(kind, name), generation, state, Delivered(), reason or state, f"{name} {state}")  # type: ignore[arg-type]


def status(*outcomes: Outcome, falco: FalcoProbe | None = UP) -> Json:
    return report_status(outcomes, {}, falco)


LOADED_1 = status(outcome("Rulesfile", "a", 1, "Loaded"), outcome("Config", "c", 1, "Installed"))


def test_a_changed_rulesfile_not_confirmed_yet_waits_and_its_confirmation_does_not() -> None:
    installed = status(outcome("Rulesfile", "a", 2, "Installed", "NotLoaded"), outcome("Config", "c", 1, "Installed"))
    assert awaits_confirmation(installed, LOADED_1)
    confirmed = status(outcome("Rulesfile", "a", 2, "Loaded"), outcome("Config", "c", 1, "Installed"))
    assert not awaits_confirmation(confirmed, LOADED_1)


def test_a_new_plugin_waits_and_so_do_entries_falco_cannot_confirm_while_it_restarts() -> None:
    restarting = status(outcome("Rulesfile", "a", 1, "Installed"), outcome("Config", "c", 1, "Installed"),
                        outcome("Plugin", "p", 1, "Installed"), falco=FalcoProbe(reachable=False))  # fmt: skip
    assert awaits_confirmation(restarting, LOADED_1)


def test_a_config_alone_never_waits_falco_does_not_confirm_it() -> None:
    config_changed = status(outcome("Rulesfile", "a", 1, "Loaded"), outcome("Config", "c", 2, "Installed"))
    assert not awaits_confirmation(config_changed, LOADED_1)


def test_a_failure_in_the_change_is_written_at_once_even_beside_an_entry_that_could_wait() -> None:
    for state, reason in (("Invalid", "InvalidRules"), ("Failed", "ConfigMapNotFound"), ("Refused", "Refused"),
                          ("Pending", "Resolving")):  # fmt: skip
        changed = status(outcome("Rulesfile", "a", 2, "Installed", "NotLoaded"), outcome("Config", "c", 1, "Installed"),
                         outcome("Rulesfile", "b", 1, state, reason))  # fmt: skip
        assert not awaits_confirmation(changed, LOADED_1), state


def test_a_failure_that_was_already_reported_holds_nothing_back() -> None:
    broken = outcome("Rulesfile", "b", 1, "Invalid", "InvalidRules")
    written = status(outcome("Rulesfile", "a", 1, "Loaded"), broken)
    assert awaits_confirmation(status(outcome("Rulesfile", "a", 2, "Installed"), broken), written)


def test_an_artifact_leaving_the_report_is_written_at_once() -> None:
    assert not awaits_confirmation(status(outcome("Rulesfile", "a", 2, "Installed")), LOADED_1)


def test_a_report_never_written_and_a_report_saying_the_same_do_not_wait() -> None:
    installed = status(outcome("Rulesfile", "a", 1, "Installed"))
    assert not awaits_confirmation(installed, None)
    assert not awaits_confirmation(installed, installed)


def test_the_window_follows_falcos_slower_reloads_within_bounds() -> None:
    assert confirm_wait(2.0, []) == 2.0
    assert confirm_wait(2.0, [0.4, 0.6]) == 2.0
    assert confirm_wait(2.0, [0.5, 2.6]) == 2.6 + RELOAD_MARGIN
    assert confirm_wait(2.0, [60.0]) == 2.0 * MAX_STRETCH
    assert confirm_wait(0.0, [3.0]) == 0.0


INSTALLED_2 = status(outcome("Rulesfile", "a", 2, "Installed", "NotLoaded"), outcome("Config", "c", 1, "Installed"))


def test_a_held_report_waits_until_the_window_ends_then_is_released_once() -> None:
    hold = ReportHold(2.0)
    assert not hold.hold(INSTALLED_2, LOADED_1, 100.0), "no swap armed it: written at once"
    hold.arm(100.0, [])
    assert hold.hold(INSTALLED_2, LOADED_1, 100.1)
    assert hold.remaining(100.5) == 1.5
    hold.arm(101.0, [])  # a second swap inside the window does not put the report off
    assert hold.remaining(101.0) == 1.0
    assert hold.release() == INSTALLED_2
    assert hold.remaining(101.0) is None
    assert hold.release() is None


def test_falco_confirming_in_the_window_ends_the_hold_with_one_write() -> None:
    hold = ReportHold(2.0)
    hold.arm(100.0, [])
    assert hold.hold(INSTALLED_2, LOADED_1, 100.1)
    confirmed = status(outcome("Rulesfile", "a", 2, "Loaded"), outcome("Config", "c", 1, "Installed"))
    assert not hold.hold(confirmed, LOADED_1, 100.9)
    assert hold.remaining(100.9) is None
    assert not hold.hold(INSTALLED_2, confirmed, 101.0), "the next pass without a swap is not held"


def test_a_pass_after_the_window_writes_at_once() -> None:
    hold = ReportHold(2.0)
    hold.arm(100.0, [])
    assert hold.hold(INSTALLED_2, LOADED_1, 100.1)
    assert not hold.hold(INSTALLED_2, LOADED_1, 102.0)
    assert hold.remaining(102.0) is None


def test_a_zero_window_never_holds() -> None:
    hold = ReportHold(0.0)
    hold.arm(100.0, [5.0])
    assert not hold.hold(INSTALLED_2, LOADED_1, 100.0)
