"""What Falco says it loaded, and the artifact states that follow from it.

Falco's web server (in the same pod, ``localhost:8765``) serves ``/metrics`` with the SHA-256 of every rules file
it loaded (``falcosecurity_falco_sha256_rules_files_info``) and ``/versions`` with its version and the plugins
it runs (``plugin_versions``). A Rulesfile is *Loaded* only when Falco reports, for each of its files, the hash
of what was written; a Plugin when Falco runs a plugin of its name. Falco does not report which config
fragments it loaded (0.44 lists only ``falco.yaml``), so a Config stays *Installed*, and says so.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import httpx

from falco_operator.artifacts import RULES_DIR, Outcome, sha256_hex

RULES_METRIC = "falcosecurity_falco_sha256_rules_files_info"
RELOAD_METRIC = "falcosecurity_falco_reload_timestamp_nanoseconds"
MISSED_AFTER = 3.0
"""Seconds after a swap by which Falco has reloaded (it reacts within about half a second)."""
_SAMPLE = re.compile(r"^" + RULES_METRIC + r"\{(?P<labels>[^}]*)\}")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class FalcoView:
    reachable: bool
    version: str | None = None
    rules: Mapping[str, str] = field(default_factory=dict)
    """Loaded rules files: base name → sha256."""
    plugins: Mapping[str, str] = field(default_factory=dict)
    """Running plugins: name → version."""
    reloaded_at: float | None = None
    """Unix time of Falco's last (re)start."""


UNKNOWN = FalcoView(reachable=False)


def parse_reload_time(metrics: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith(RELOAD_METRIC + " "):
            try:
                return float(line.split()[1]) / 1e9
            except (IndexError, ValueError):
                return None
    return None


def missed_swap(view: FalcoView, swapped_at: float | None, now: float) -> bool:
    """Whether Falco has not reloaded since a swap made more than ``MISSED_AFTER`` seconds ago.

    Falco reads its directories early in a restart and watches them again only later: a swap in between raises
    no event, and Falco keeps its previous files until something else changes there. Making and removing an empty
    directory in the rules directory is such a change; it costs one reload.
    """
    if not view.reachable or view.reloaded_at is None or swapped_at is None:
        return False
    return now - swapped_at > MISSED_AFTER and view.reloaded_at < swapped_at


def parse_rules_hashes(metrics: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in metrics.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = dict(_LABEL.findall(match["labels"]))
            if "file_name" in labels and "sha256" in labels:
                found[labels["file_name"]] = labels["sha256"]
    return found


async def observe(http: httpx.AsyncClient, url: str, previous: FalcoView = UNKNOWN) -> FalcoView:
    """One look at Falco's web server; unreachable when it does not answer.

    Falco's version and plugins change only when it (re)starts, which moves its reload timestamp: while that
    stays as in ``previous``, ``/versions`` is not asked again (half the requests of a poll).
    """
    try:
        metrics = await http.get(f"{url}/metrics")
        if metrics.status_code != 200:
            return UNKNOWN
        reloaded_at = parse_reload_time(metrics.text)
        if previous.reachable and reloaded_at is not None and reloaded_at == previous.reloaded_at:
            return replace(previous, rules=parse_rules_hashes(metrics.text))
        versions = await http.get(f"{url}/versions")
        if versions.status_code != 200:
            return UNKNOWN
        described = json.loads(versions.text)
    except (httpx.HTTPError, ValueError):
        return UNKNOWN
    plugins = described.get("plugin_versions") if isinstance(described, dict) else None
    return FalcoView(
        reachable=True,
        version=str(described.get("falco_version")) if isinstance(described, dict) else None,
        rules=parse_rules_hashes(metrics.text),
        reloaded_at=reloaded_at,
        plugins={str(k): str(v) for k, v in plugins.items()} if isinstance(plugins, dict) else {},
    )


def confirm(outcomes: Iterable[Outcome], view: FalcoView) -> list[Outcome]:
    """Outcomes with ``Loaded`` where Falco confirms them; others as they were, with a word on why."""
    return [_confirm_one(outcome, view) for outcome in outcomes]


def _confirm_one(outcome: Outcome, view: FalcoView) -> Outcome:
    if outcome.state != "Installed" or not view.reachable:
        return outcome
    kind = outcome.key.kind
    if kind == "Rulesfile":
        rules = {name: data for (directory, name), data in outcome.delivered.files.items() if directory == RULES_DIR}
        if rules and all(view.rules.get(name) == sha256_hex(data) for name, data in rules.items()):
            return dataclasses.replace(outcome, state="Loaded", reason="Loaded", message="Falco loaded " +
                                       ", ".join(sorted(rules)))  # fmt: skip
        return dataclasses.replace(outcome, reason="NotLoaded", message=(
            (outcome.message or "") + "; not loaded by Falco (yet; if this stays, Falco refused the reload and "
            "kept its previous rules: see its log)"))  # fmt: skip
    if kind == "Plugin" and outcome.delivered.plugin_entry is not None:
        name = str(outcome.delivered.plugin_entry["name"])
        if name in view.plugins:
            return dataclasses.replace(outcome, state="Loaded", reason="Loaded",
                                       message=f"Falco runs plugin {name} {view.plugins[name]}")  # fmt: skip
        return dataclasses.replace(outcome, reason="NotLoaded",
                                   message=(outcome.message or "") + f"; Falco does not run plugin {name}")  # fmt: skip
    if kind == "Config":
        return dataclasses.replace(outcome, message=(outcome.message or "") +
                                   "; Falco does not report which config fragments it loaded")  # fmt: skip
    return outcome


def loads_expected(outcomes: Iterable[Outcome], view: FalcoView) -> bool:
    """Whether every Installed Rulesfile is confirmed (polling may slow down then)."""
    return view.reachable and all(
        outcome.state != "Installed" or outcome.key.kind != "Rulesfile" for outcome in confirm(outcomes, view)
    )
