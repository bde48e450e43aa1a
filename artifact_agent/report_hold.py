"""Hold the report after a swap until Falco confirms it, so that one change is one report write.

After a swap Falco is expected to confirm (the agent asks Falco, and Falco answered before the swap), the report
that says ``Installed`` is not written at once: Falco is asked often meanwhile (``poll_interval``), and the report is
written when Falco has confirmed every Rulesfile and Plugin the change touched (``Loaded``: one write with both
facts) or when the window ends (``Installed``; ``Loaded`` follows in a second write). A report that says anything
else a reader must not wait for is written at once: a failure (``Invalid``, ``Failed``, ``Refused``), a source
still being read (``Pending``), an artifact leaving the report, a report that was never written. Only what
changed is judged against what the report holds, so an artifact that has long been failing holds nothing back,
and a change of a Config alone (never ``Loaded``) makes nothing wait.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from falco_operator.records import record

Json = dict[str, Any]
CONFIRMED_KINDS = frozenset({"Rulesfile", "Plugin"})
"""The kinds Falco confirms (a Config stays ``Installed``: Falco does not say which fragments it loaded)."""
MAY_WAIT = frozenset({"Installed", "Loaded"})
"""The states a changed entry may have while the report waits for Falco."""
RELOAD_MARGIN = 1.0
"""Seconds added to Falco's slowest recent reload: the next half-second poll, the debounce, the pass."""
MAX_STRETCH = 5.0
"""However slow Falco's recent reloads were, the window is at most this many times ``confirm_window``."""


def confirm_wait(window: float, reloads: Sequence[float]) -> float:
    """How long a report waits for Falco after a swap: ``window``, or, when Falco's recent reloads took longer,
    the slowest of them plus ``RELOAD_MARGIN``, at most ``MAX_STRETCH`` times ``window``; 0 when ``window`` is."""
    if window <= 0:
        return 0.0
    slowest = max(reloads, default=0.0)
    return min(window * MAX_STRETCH, max(window, slowest + RELOAD_MARGIN))


def _entries(status: Mapping[str, Any] | None) -> dict[tuple[str, str], Json]:
    artifacts = (status or {}).get("artifacts") or []
    return {(str(entry.get("kind")), str(entry.get("name"))): entry for entry in artifacts}


def awaits_confirmation(status: Mapping[str, Any], written: Mapping[str, Any] | None) -> bool:
    """Whether ``status`` may wait for Falco rather than replace ``written`` (what the report holds) now: a
    Rulesfile or Plugin entry it changes is ``Installed`` (not confirmed yet), every entry it changes is
    ``Installed`` or ``Loaded``, and none leaves."""
    if written is None:
        return False
    new, old = _entries(status), _entries(written)
    if old.keys() - new.keys():
        return False
    changed = [entry for key, entry in new.items() if old.get(key) != entry]
    if any(entry.get("state") not in MAY_WAIT for entry in changed):
        return False
    return any(entry.get("state") == "Installed" and entry.get("kind") in CONFIRMED_KINDS for entry in changed)


@record
class ReportHold:
    """The report a pass did not write because Falco may still confirm it, and until when it waits (monotonic)."""

    window: float
    """``confirm_window``: seconds after a swap; 0 never holds."""
    deadline: float | None = None
    held: Json | None = None

    def arm(self, now: float, reloads: Sequence[float]) -> None:
        """A swap Falco is expected to confirm: reports may wait from now. A window already running is kept (a
        change in the middle of it does not put off what the report would have said)."""
        if self.deadline is None or now >= self.deadline:
            wait = confirm_wait(self.window, reloads)
            self.deadline = now + wait if wait > 0 else None

    def hold(self, status: Json, written: Mapping[str, Any] | None, now: float) -> bool:
        """True (and ``status`` kept) when it waits for Falco; False when it is to be written now (the hold ends)."""
        if self.deadline is not None and now < self.deadline and awaits_confirmation(status, written):
            self.held = status
            return True
        self.deadline = self.held = None
        return False

    def remaining(self, now: float) -> float | None:
        """Seconds until the held report is due; None when none is held."""
        if self.held is None or self.deadline is None:
            return None
        return max(0.0, self.deadline - now)

    def release(self) -> Json | None:
        """The held report, now due; the hold ends."""
        held, self.deadline, self.held = self.held, None, None
        return held
