"""What Falco says it loaded, and the artifact states that follow from it.

Falco's web server (in the same pod, ``localhost:8765``) serves ``/metrics`` with the SHA-256 of every rules file
it loaded (``falcosecurity_falco_sha256_rules_files_info``) and the time of its last (re)start, and ``/versions``
with its version and the plugins it runs (``plugin_versions``). A Rulesfile is *Loaded* only when Falco reports,
for each of its files, the hash of what was written. A Plugin is *Loaded* only when Falco restarted after the swap
that wrote its entry and library and runs a plugin of its name at the version delivered: a running Falco does not
load a library again from a path it loaded before, and a reload it refused leaves the old plugin running. When the
agent does not know the version delivered (a library of Falco's image, an OCI artifact without a readable config
that says it), the name and the restart are the only evidence, and the message says the version was not checked.
An agent that started over files an earlier run wrote has seen no restart of Falco after them: a Plugin among them
is *Loaded* only when Falco runs the delivered version (known), else it stays *Installed* until Falco's next
restart. Falco does not report which config fragments it loaded (0.44 lists only
``falco.yaml``), so a Config stays *Installed*, and says so. ``/versions`` also gives the engine version
(``engine_version_semver``, or the whole number ``engine_version`` N of an older Falco, which means 0.N.0): the
planner judges ``required_engine_version`` and an OCI config's ``engine_version_semver`` against it.

A reload Falco refuses (a hot restart whose dry run fails) leaves its restart time where it was; Falco gives no
other sign of it (its log says why, which the agent cannot read). A dry run still going on looks the same, and
takes longer on a busy node or with many rules, so the agent waits for Falco as long as Falco has taken to reload
before: when Falco has not restarted after a swap ``refusal_wait`` seconds after the agent nudged it
(``missed_swap``; at least ``REFUSED_AFTER``, else ``RELOAD_MARGIN`` times the longest of Falco's recent reloads,
at most ``MAX_REFUSAL_WAIT``), it refused the files of that swap: every artifact whose content the swap changed
(compared with what Falco was last seen to load, or what was on disk when the agent started) and that Falco did
not confirm is *Refused* (``FalcoLoads``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import field, replace

from falco_operator.artifacts import (
    RULES_DIR,
    ArtifactKey,
    Delivered,
    Outcome,
    parse_plugin_library_file_name,
    sha256_hex,
)
from falco_operator.kube.http import HttpClient, TransportError
from falco_operator.records import record

RULES_METRIC = "falcosecurity_falco_sha256_rules_files_info"
FIRST_POLLS = 0.1
"""Seconds between questions to Falco in the first ``FIRST_POLLS_FOR`` seconds after a swap or a nudge: Falco
answers a swap in about 0.4 s, and what the agent waits beyond that is added to the time to ``Programmed`` (it was
up to half a second)."""
FIRST_POLLS_FOR = 2.0
FAST_POLLS = 0.5
"""Seconds between questions to Falco after that, while its answer to a swap is still awaited."""
RELOAD_METRIC = "falcosecurity_falco_reload_timestamp_nanoseconds"
MISSED_AFTER = 3.0
"""Seconds after a swap by which Falco has reloaded (it reacts within about half a second)."""
REFUSED_AFTER = 5.0
"""Seconds after the nudge by which Falco has restarted unless it refused the reload, before the agent has seen
Falco reload (a restart loads everything twice, a dry run and the restart itself: about 1.5 s with Falco's default
rules and plugins, 5.6 s with 3,000 small rules on an idle node)."""
RELOAD_MARGIN = 3.0
"""How many times the longest recent reload Falco took the agent waits before it takes a reload as refused."""
MAX_REFUSAL_WAIT = 120.0
"""The longest wait before a reload is taken as refused, however slow Falco was before."""
RELOADS_KEPT = 8
"""How many of Falco's last reload durations the wait follows (a node busy once is forgotten after that)."""
_SAMPLE = re.compile(r"^" + RULES_METRIC + r"\{(?P<labels>[^}]*)\}")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@record(frozen=True)
class FalcoView:
    reachable: bool
    version: str | None = None
    rules: Mapping[str, str] = field(default_factory=dict)
    """Loaded rules files: base name → sha256."""
    plugins: Mapping[str, str] = field(default_factory=dict)
    """Running plugins: name → version."""
    reloaded_at: float | None = None
    """Unix time of Falco's last (re)start."""
    engine_version: str | None = None
    """Falco's rules engine version, x.y.z ("0.62.0"), when it says."""


UNKNOWN = FalcoView(reachable=False)


@record(frozen=True)
class FalcoVersions:
    """What ``/versions`` says: Falco's version, its engine's (x.y.z) and the plugins it runs (name → version)."""

    falco: str | None = None
    engine: str | None = None
    plugins: Mapping[str, str] = field(default_factory=dict)


_SEMVER = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+")


def parse_versions(described: object) -> FalcoVersions:
    """The versions in ``/versions``' JSON: the engine from ``engine_version_semver`` (Falco 0.44.1: ``0.62.0``),
    else from ``engine_version`` (``62``, which Falco means as 0.62.0); what is missing or not a version is None."""
    if not isinstance(described, dict):
        return FalcoVersions()
    falco = described.get("falco_version")
    plugins = described.get("plugin_versions")
    return FalcoVersions(
        falco=str(falco) if falco is not None else None,
        engine=_engine_version(described.get("engine_version_semver"), described.get("engine_version")),
        plugins={str(k): str(v) for k, v in plugins.items()} if isinstance(plugins, dict) else {},
    )


def _engine_version(semver: object, number: object) -> str | None:
    if isinstance(semver, str) and _SEMVER.match(semver):
        return semver
    text = str(number).strip() if isinstance(number, (str, int)) and not isinstance(number, bool) else ""
    if text.isascii() and text.isdigit():
        return f"0.{int(text)}.0"
    return text if _SEMVER.match(text) else None


def parse_reload_time(metrics: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith(RELOAD_METRIC + " "):
            try:
                return float(line.split()[1]) / 1e9
            except (IndexError, ValueError):
                return None
    return None


def poll_interval(since_change: float | None, awaited: bool, idle: float) -> float:
    """Seconds until Falco is asked again: every ``FIRST_POLLS`` for ``FIRST_POLLS_FOR`` seconds after the last swap
    or nudge (``since_change``), then every ``FAST_POLLS`` while its answer is ``awaited``, else ``idle``. A look
    is one request to Falco's web server in the pod (and ``/versions`` after a restart): at most 20 in the first
    burst, a handful when Falco confirms within its usual half second (then nothing is awaited any more)."""
    if not awaited:
        return idle
    if since_change is not None and since_change < FIRST_POLLS_FOR:
        return FIRST_POLLS
    return FAST_POLLS


def missed_swap(view: FalcoView, swapped_at: float | None, now: float) -> bool:
    """Whether Falco has not reloaded since a swap made more than ``MISSED_AFTER`` seconds ago.

    Falco reads its directories early in a restart and watches them again only later: a swap in between raises
    no event, and Falco keeps its previous files until something else changes there. Making and removing an empty
    directory in the rules directory is such a change; it costs one reload.
    """
    if not view.reachable or view.reloaded_at is None or swapped_at is None:
        return False
    return now - swapped_at > MISSED_AFTER and view.reloaded_at < swapped_at


Deliveries = Mapping[ArtifactKey, Delivered]


@record
class FalcoLoads:
    """What the agent knows of Falco's restarts after its swaps: what Falco loaded, what it refused.

    ``swapped`` records what a swap left on disk and which artifacts it changed, compared with ``baseline`` (what
    Falco was last seen to load; at first what was on disk when the agent started, ``started_with``). A restart of
    Falco at or after that time means Falco loaded it (``loaded``), and how long Falco took is remembered; so does a
    restart after the agent started while no swap of its own is pending (Falco read what the agent found on disk).
    A swap Falco has not restarted for although it was nudged ``refusal_wait`` seconds ago was refused
    (``refused``) until a later swap or restart; only what it changed is refused (``refused_content``).
    """

    loaded: Deliveries | None = None
    """What was on disk at the last restart of Falco the agent saw follow a swap or its start; None until then."""
    started_at: float | None = None
    """Unix time by which the agent had read the disk it started with (``started_with``)."""
    pending: Deliveries | None = None
    """What the last swap Falco has not restarted for left on disk."""
    swapped_at: float | None = None
    nudged_at: float | None = None
    baseline: Deliveries | None = None
    """What Falco is taken to run: what was on disk at the agent's start, then what each loaded swap left."""
    changed: frozenset[ArtifactKey] = frozenset()
    """The artifacts whose content the pending swaps changed, compared with ``baseline``."""
    reloads: list[float] = field(default_factory=list)
    """How long Falco took from a change it saw (a swap, a nudge) to answering with a new restart time, the last
    ``RELOADS_KEPT`` times."""

    def started_with(self, on_disk: Deliveries, at: float) -> None:
        """What was on disk when the agent started (before its first swap; read by ``at``, Unix time): the content
        Falco is taken to run, which it is known to have loaded only once it restarts at or after ``at``."""
        if self.baseline is None:
            self.baseline, self.started_at = dict(on_disk), at

    def swapped(self, at: float, deliveries: Deliveries) -> None:
        baseline = self.baseline
        self.changed = frozenset(key for key, delivered in deliveries.items()
                                 if baseline is None or not _same_content(delivered, baseline.get(key)))  # fmt: skip
        self.pending, self.swapped_at, self.nudged_at = dict(deliveries), at, None

    def nudged(self, at: float) -> None:
        if self.pending is not None:
            self.nudged_at = at

    def observed(self, view: FalcoView, now: float | None = None) -> None:
        """Take a look at Falco into account (``now``: when, Unix time): a restart at or after the pending swap
        loaded it, and took Falco from the last change it saw before (the swap, or the nudge) until now. With no swap
        pending, a first restart at or after the agent's start loaded what the agent found on disk."""
        if not view.reachable or view.reloaded_at is None:
            return
        if self.pending is None:
            if self.loaded is None and self.started_at is not None and view.reloaded_at >= self.started_at:
                self.loaded = self.baseline
            return
        if self.swapped_at is None:
            return
        if view.reloaded_at >= self.swapped_at:
            if now is not None:
                nudged = self.nudged_at is not None and view.reloaded_at >= self.nudged_at
                seen = self.nudged_at if nudged and self.nudged_at is not None else self.swapped_at
                self.reloads = [*self.reloads, max(0.0, now - seen)][-RELOADS_KEPT:]
            self.loaded = self.baseline = self.pending
            self.pending, self.swapped_at, self.nudged_at, self.changed = None, None, None, frozenset()

    @property
    def refusal_wait(self) -> float:
        """Seconds after the nudge before a swap Falco has not restarted for counts as refused: ``REFUSED_AFTER``,
        or ``RELOAD_MARGIN`` times the longest of Falco's recent reloads when longer, up to ``MAX_REFUSAL_WAIT``."""
        slowest = max(self.reloads, default=0.0)
        return min(MAX_REFUSAL_WAIT, max(REFUSED_AFTER, RELOAD_MARGIN * slowest))

    def refused(self, view: FalcoView, now: float) -> bool:
        """Whether Falco refused the pending swap: reachable, nudged ``refusal_wait`` seconds ago, not restarted."""
        if self.pending is None or self.nudged_at is None or self.swapped_at is None:
            return False
        if not view.reachable or view.reloaded_at is None or view.reloaded_at >= self.swapped_at:
            return False  # no answer, or Falco restarted after the swap
        return now - self.nudged_at > self.refusal_wait

    def refused_content(self, outcome: Outcome) -> bool:
        """Whether this outcome's content is what the pending swaps changed (what a refusal keeps from Falco)."""
        return (self.pending is not None and outcome.key in self.changed
                and _same_content(outcome.delivered, self.pending.get(outcome.key)))  # fmt: skip

    def loaded_as_written(self, outcome: Outcome) -> bool | None:
        """Whether Falco restarted after the swap that wrote this outcome's content. None when that is unknown: the
        content is what the agent found on disk at its start, and it has seen no restart of Falco since."""
        if self.loaded is not None:
            loaded = self.loaded.get(outcome.key)
            return loaded is not None and _same_content(outcome.delivered, loaded)
        if self.baseline is not None and not self.recovered(outcome):
            return False  # written by a swap of this agent, which Falco has not restarted for
        return None

    def recovered(self, outcome: Outcome) -> bool:
        """Whether this outcome's content is what the agent found on disk for it at its start."""
        found = self.baseline.get(outcome.key) if self.baseline is not None else None
        return found is not None and _same_content(outcome.delivered, found)


def _same_content(delivered: Delivered, other: Delivered | None) -> bool:
    """The same files (by name and bytes, so by SHA-256) and the same plugin entry: what Falco reads. The OCI digest
    is left out: a tag pushed again around the same bytes (a new manifest) changes nothing Falco loads."""
    if other is None:
        return delivered.empty
    return delivered.files == other.files and delivered.plugin_entry == other.plugin_entry


def parse_rules_hashes(metrics: str) -> dict[str, str]:
    found: dict[str, str] = {}
    start = RULES_METRIC + "{"
    for line in metrics.splitlines():
        if not line.startswith(start):  # most lines: other metrics
            continue
        match = _SAMPLE.match(line)
        if match:
            sample = _rules_sample(match["labels"])
            if sample is not None:
                found[sample[0]] = sample[1]
    return found


@functools.lru_cache(maxsize=4096)
def _rules_sample(labels: str) -> tuple[str, str] | None:
    """A rules file's name and SHA-256 from a sample's labels (the same labels come back on every look at Falco
    until it loads other files)."""
    pairs = dict(_LABEL.findall(labels))
    if "file_name" in pairs and "sha256" in pairs:
        return pairs["file_name"], pairs["sha256"]
    return None


async def observe(http: HttpClient, url: str, previous: FalcoView = UNKNOWN) -> FalcoView:
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
    except (TransportError, ValueError):
        return UNKNOWN
    versions_said = parse_versions(described)
    return FalcoView(
        reachable=True,
        version=versions_said.falco,
        rules=parse_rules_hashes(metrics.text),
        reloaded_at=reloaded_at,
        plugins=versions_said.plugins,
        engine_version=versions_said.engine,
    )


def confirm(
    outcomes: Iterable[Outcome], view: FalcoView, loads: FalcoLoads | None = None,
    versions: Mapping[str, str] | None = None, now: float | None = None,
) -> list[Outcome]:  # fmt: skip
    """Outcomes with ``Loaded`` where Falco confirms them and ``Refused`` where it refused the reload that would
    load them; others as they were, with a word on why. ``versions``: a plugin's version by the OCI digest it was
    delivered from, when the artifact says it; ``now``: Unix time (to tell a refusal)."""
    refused = loads is not None and now is not None and loads.refused(view, now)
    return [_confirm_one(outcome, view, loads, versions or {}, refused) for outcome in outcomes]


def _confirm_one(
    outcome: Outcome, view: FalcoView, loads: FalcoLoads | None, versions: Mapping[str, str], refused: bool
) -> Outcome:
    if outcome.state != "Installed" or not view.reachable:
        return outcome
    kind = outcome.key.kind
    confirmed = _confirmed(outcome, view, loads, versions)
    if isinstance(confirmed, Outcome):
        return confirmed
    if refused and loads is not None and loads.refused_content(outcome):
        return _refused(outcome)
    if kind == "Config":
        return dataclasses.replace(outcome, message=(outcome.message or "") +
                                   "; Falco does not report which config fragments it loaded")  # fmt: skip
    return dataclasses.replace(outcome, reason="NotLoaded", message=(outcome.message or "") + (confirmed or ""))


def _confirmed(
    outcome: Outcome, view: FalcoView, loads: FalcoLoads | None, versions: Mapping[str, str]
) -> Outcome | str | None:
    """The Loaded outcome when Falco confirms it, else why not (for a Rulesfile or a Plugin)."""
    kind = outcome.key.kind
    if kind == "Rulesfile":
        loaded = _rules_loaded(outcome, view)
        if loaded is not None:
            return dataclasses.replace(outcome, state="Loaded", reason="Loaded", message="Falco loaded " +
                                       ", ".join(sorted(loaded)))  # fmt: skip
        return ("; not loaded by Falco (yet; if this stays, Falco refused the reload and kept its previous rules: "
                "see its log)")  # fmt: skip
    if kind == "Plugin" and outcome.delivered.plugin_entry is not None:
        name = str(outcome.delivered.plugin_entry["name"])
        return _plugin_confirmed(outcome, name, view, loads, versions.get(outcome.delivered.digest or ""))
    return None


def _rules_loaded(outcome: Outcome, view: FalcoView) -> list[str] | None:
    """The names of a Rulesfile's rules files when Falco reports each of them with the SHA-256 written, else None."""
    names = []
    for (directory, name), data in outcome.delivered.files.items():
        if directory == RULES_DIR:
            if view.rules.get(name) != _sha256(data):
                return None
            names.append(name)
    return names or None


class _Digests:
    """SHA-256 of the rules files by their bytes: Falco is asked every half second after a swap, and each answer
    is checked against every Rulesfile's files, which change only when a swap writes them. Keyed by the bytes
    (Python keeps a bytes object's hash: the same object is looked up without reading it again); forgotten all at
    once when the bytes kept pass ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._digests: dict[bytes, str] = {}
        self._bytes = 0

    def __call__(self, data: bytes) -> str:
        digest = self._digests.get(data)
        if digest is None:
            digest = sha256_hex(data)
            if self._bytes + len(data) > self.max_bytes:
                self._digests.clear()
                self._bytes = 0
            if len(data) <= self.max_bytes:
                self._digests[data] = digest
                self._bytes += len(data)
        return digest


_sha256 = _Digests(max_bytes=8 * 1024 * 1024)


def _plugin_confirmed(
    outcome: Outcome, name: str, view: FalcoView, loads: FalcoLoads | None, delivered: str | None
) -> Outcome | str:
    """Loaded on evidence only: Falco runs plugin ``name`` at the version ``delivered`` (when the agent knows it)
    and restarted after the swap that wrote this entry and library; or, for what the agent found on disk at its
    start, with no restart of Falco seen since, Falco runs the delivered version (known)."""
    running = view.plugins.get(name)
    if running is None:
        return f"; Falco does not run plugin {name}"
    if delivered is not None and running != delivered:
        return f"; Falco runs plugin {name} {running}, not the delivered {delivered}{_why_not(outcome.delivered)}"
    restarted = loads.loaded_as_written(outcome) if loads is not None else None
    if restarted is False:
        return f"; Falco runs plugin {name} {running} and has not restarted since this version was written (yet)"
    unchecked = "" if delivered is not None else f"the version could not be checked ({_version_unknown(outcome)})"
    if restarted is None and (unchecked or loads is None or not loads.recovered(outcome)):
        return (f"; Falco runs plugin {name} {running}, but the agent has not seen Falco restart since these files "
                f"were written{' and ' + unchecked if unchecked else ''}: it confirms them at Falco's next "
                "restart")  # fmt: skip
    message = f"Falco runs plugin {name} {running}" + (f"; {unchecked}" if unchecked else "")
    return dataclasses.replace(outcome, state="Loaded", reason="Loaded", message=message)


def _version_unknown(outcome: Outcome) -> str:
    """Why the agent does not know the version delivered, to compare it with the one Falco runs."""
    if outcome.delivered.digest is None:
        return "the library is not delivered from an OCI artifact"
    return "the OCI artifact has no readable config that gives it"


def _why_not(delivered: Delivered) -> str:
    """Why Falco may run another version than the one delivered: a library named after its content is loaded at
    Falco's next restart; one at a path the user chose (``libraryPath``) that Falco loaded before is not loaded
    again from there."""
    named_by_content = all(
        (parsed := parse_plugin_library_file_name(name)) is not None and parsed.names(data)
        for (_, name), data in delivered.files.items()
    )
    if named_by_content:
        return " (yet)"
    return (" (a running Falco does not load a library again from a path it loaded before, and the Plugin's "
            "libraryPath keeps its library at one path: restart the Falco pod, or leave libraryPath unset so that "
            "each library gets a name of its own)")  # fmt: skip


def _refused(outcome: Outcome) -> Outcome:
    names = sorted(name for _, name in outcome.delivered.files)
    if outcome.delivered.plugin_entry is not None:
        names.append("its entry in the plugins fragment")
    message = (f"Falco refused the reload that would load {', '.join(names)} and keeps running what it loaded "
               "before (its log says why: 'hot restart failure'); no later change reaches Falco until the files "
               "written are ones it accepts")  # fmt: skip
    return dataclasses.replace(outcome, state="Refused", reason="Refused", message=message)


def loads_expected(outcomes: Iterable[Outcome], view: FalcoView) -> bool:
    """Whether every Installed Rulesfile is confirmed (polling may slow down then)."""
    # What ``confirm`` says of them, without building the confirmed outcomes: an Installed Rulesfile is
    # confirmed exactly when Falco reports its files as written.
    return view.reachable and all(
        outcome.state != "Installed" or outcome.key.kind != "Rulesfile" or _rules_loaded(outcome, view) is not None
        for outcome in outcomes
    )
