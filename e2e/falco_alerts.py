"""Falco's alerts as it prints them, in text (``<time>: <Priority> <output>``) or JSON (``json_output``).

Used by ``make e2e`` to find the alert a ``kubectl exec`` raises, and checked in CI against what the real Falco
of the harness prints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

PRIORITIES = ("Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug")
# Falco's text output: a timestamp (clock time, or ISO 8601 with a zone), a colon, the priority, the output.
_TEXT = re.compile(
    r"^(?P<time>\d{2}:\d{2}:\d{2}\.\d+|\d{4}-\d{2}-\d{2}T[\d:.]+(?:[+-]\d{4}|Z)?): "
    r"(?P<priority>" + "|".join(PRIORITIES) + r") (?P<output>.*)$"
)


@dataclass(frozen=True)
class Alert:
    priority: str
    output: str
    rule: str | None = None
    """Only JSON output names the rule."""


def parse_alerts(log: str) -> list[Alert]:
    """Every alert line of a Falco log; other lines (start-up messages, warnings of the engine) are skipped."""
    alerts = []
    for line in log.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "output" in event and "priority" in event:
                alerts.append(Alert(str(event["priority"]).capitalize(), str(event["output"]), event.get("rule")))
            continue
        match = _TEXT.match(line)
        if match:
            alerts.append(Alert(match["priority"], match["output"]))
    return alerts


def shell_alerts(log: str, container_name: str) -> list[Alert]:
    """Alerts of the second seed's shell-in-container rule (seed example 05) for one container."""
    return [a for a in parse_alerts(log) if "shell in a container" in a.output and container_name in a.output]
