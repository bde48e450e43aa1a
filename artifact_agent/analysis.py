"""The analysis of a rollout's candidate generation on this node: Falco's own metrics, watched for a while.

When this node delivers the candidate generation of a rollout that is Progressing or Paused (``delivery``) and
Falco confirmed it (Loaded for a Rulesfile or a Plugin; for a Config, Installed and Falco restarted after the swap
that wrote it), a watch starts. The agent then samples Falco's ``/metrics`` every few seconds
(``SAMPLE_INTERVAL``) and compares rates over the window [first sample, now] with the rollout's limits: alerts per
second of the busiest rule and of all rules (``falcosecurity_falco_rules_matches_total``), dropped events per
second (``falcosecurity_scap_n_drops_total``, absent without a driver: not checked), Falco's CPU
(``falcosecurity_falco_cpu_usage_ratio``, as Falco last reported it). A reload of Falco resets its counters
(``falcosecurity_falco_reload_timestamp_nanoseconds`` moves): the window starts over.

A limit passed once ``MIN_MEASURED`` seconds were measured fails the watch at once; the watch passes after
``analysis.duration`` within the limits. Falco refusing the reload, or not loading the candidate within
``load_wait``, fails it too (check ``Loaded``). The verdict is kept while the node delivers that generation: one
report write per verdict, none while a watch runs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import field, replace
from typing import Any

from falco_operator.api.ocirefs import parse_duration
from falco_operator.api.plain import RolloutAnalysis
from falco_operator.api.plain_report import ReportedAnalysis
from falco_operator.artifacts import ArtifactKey, Outcome
from falco_operator.records import record

from .confirmation import FalcoLoads
from .delivery import Candidate

log = logging.getLogger("artifact_agent.analysis")
RULE_MATCHES = "falcosecurity_falco_rules_matches_total"
DROPS = "falcosecurity_scap_n_drops_total"
CPU = "falcosecurity_falco_cpu_usage_ratio"
RELOAD = "falcosecurity_falco_reload_timestamp_nanoseconds"
SAMPLE_INTERVAL = 2.0
"""Seconds between two samples while a watch runs."""
MIN_MEASURED = 10.0
"""Rates are judged once the window is this long: a burst right after a reload is not a rate."""
MIN_LOAD_WAIT = 30.0
"""How long a candidate may take to be confirmed loaded (at least; ``analysis.duration`` when longer)."""

_LINE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@record(frozen=True)
class Sample:
    """What one look at Falco's ``/metrics`` says, taken at ``at`` (monotonic seconds)."""

    at: float
    rule_matches: Mapping[str, float] = field(default_factory=dict)
    """Alerts so far by rule name (a rule that never matched is absent)."""
    drops: float | None = None
    cpu: float | None = None
    reloaded_at: float | None = None
    """Falco's last (re)start, as it reports it (nanoseconds since the epoch)."""


def parse_sample(text: str, at: float) -> Sample:
    """The figures the analysis reads from Falco's Prometheus text (``at``: when it was read)."""
    rules: dict[str, float] = {}
    drops = cpu = reloaded_at = None
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        try:
            value = float(match["value"])
        except ValueError:
            continue
        name = match["name"]
        if name == RULE_MATCHES:
            labels = dict(_LABEL.findall(match["labels"] or ""))
            rule = labels.get("rule_name")
            if rule is not None:
                rules[rule] = rules.get(rule, 0.0) + value  # one series per source of a rule
        elif name == DROPS:
            drops = (drops or 0.0) + value
        elif name == CPU:
            cpu = value
        elif name == RELOAD:
            reloaded_at = value
    return Sample(at, rules, drops, cpu, reloaded_at)


def counters_reset(base: Sample, now: Sample) -> bool:
    """Whether Falco started its counters over between two samples (a reload, or a counter that went back)."""
    if base.reloaded_at != now.reloaded_at:
        return True
    if base.drops is not None and now.drops is not None and now.drops < base.drops:
        return True
    return any(now.rule_matches.get(rule, 0.0) < count for rule, count in base.rule_matches.items())


def judge(limits: RolloutAnalysis, base: Sample, now: Sample, watched: float) -> ReportedAnalysis | None:
    """The verdict on a generation watched for ``watched`` seconds, its rates measured from ``base`` to ``now``
    (the same run of Falco); None while there is none yet. Generation left at 0: the watch sets it."""
    measured = now.at - base.at
    if measured >= MIN_MEASURED:
        failed = _failed_check(limits, base, now, measured)
        if failed is not None:
            check, message = failed
            return ReportedAnalysis(generation=0, result="Failed", check=check, message=message,
                                    seconds=round(watched, 1))  # fmt: skip
    duration = parse_duration(limits.duration)
    if watched >= duration and measured >= min(MIN_MEASURED, duration):
        return ReportedAnalysis(generation=0, result="Passed", message=_summary(base, now, measured),
                                seconds=round(watched, 1))  # fmt: skip
    return None


def _rates(base: Sample, now: Sample, measured: float) -> dict[str, float]:
    return {rule: (count - base.rule_matches.get(rule, 0.0)) / measured for rule, count in now.rule_matches.items()}


def _failed_check(limits: RolloutAnalysis, base: Sample, now: Sample, measured: float) -> tuple[str, str] | None:
    rates = _rates(base, now, measured)
    over = f"over {measured:.0f}s"
    if limits.max_rule_rate is not None and rates:
        rule, rate = max(rates.items(), key=lambda item: (item[1], item[0]))
        if rate > limits.max_rule_rate:
            return "RuleRate", f'rule "{rule}" matched {rate:.1f}/s {over} (limit {limits.max_rule_rate:g}/s)'
    total = sum(rates.values())
    if limits.max_total_rate is not None and total > limits.max_total_rate:
        return "TotalRate", f"all rules matched {total:.1f}/s {over} (limit {limits.max_total_rate:g}/s)"
    if limits.max_drop_rate is not None and base.drops is not None and now.drops is not None:
        drops = (now.drops - base.drops) / measured
        if drops > limits.max_drop_rate:
            return "DropRate", f"Falco dropped {drops:.1f} events/s {over} (limit {limits.max_drop_rate:g}/s)"
    if limits.max_cpu is not None and now.cpu is not None and now.cpu > limits.max_cpu:
        return "CPU", f"Falco used {now.cpu:.2f} of a CPU (limit {limits.max_cpu:g})"
    return None


def _summary(base: Sample, now: Sample, measured: float) -> str:
    rates = _rates(base, now, measured)
    busiest = max(rates.items(), key=lambda item: (item[1], item[0]), default=None)
    figures = [f'busiest rule "{busiest[0]}" {busiest[1]:.1f}/s' if busiest else "no rule matched",
               f"all rules {sum(rates.values()):.1f}/s"]  # fmt: skip
    if now.cpu is not None:
        figures.append(f"CPU {now.cpu:.2f}")
    return f"within limits over {measured:.0f}s: " + ", ".join(figures)


@record
class Watch:
    """One candidate generation on this node, from its delivery to its verdict."""

    generation: int
    limits: RolloutAnalysis
    delivered_at: float
    started_at: float | None = None
    """When Falco was seen running it (the watch proper starts)."""
    base: Sample | None = None
    """The first sample of the current window."""
    verdict: ReportedAnalysis | None = None

    @property
    def running(self) -> bool:
        return self.started_at is not None and self.verdict is None

    @property
    def load_wait(self) -> float:
        return max(MIN_LOAD_WAIT, parse_duration(self.limits.duration))

    def conclude(self, verdict: ReportedAnalysis) -> None:
        self.verdict = replace(verdict, generation=self.generation)

    def observe(self, sample: Sample) -> bool:
        """Take a sample into account; True when it brought the verdict."""
        if not self.running or self.started_at is None:
            return False
        if self.base is None or counters_reset(self.base, sample) or sample.at < self.base.at:
            self.base = sample
            return False
        verdict = judge(self.limits, self.base, sample, sample.at - self.started_at)
        if verdict is None:
            return False
        self.conclude(verdict)
        return True


@record(frozen=True)
class Progress:
    """Where a candidate stands on this node, as the last pass saw it."""

    confirmed: bool
    """Falco runs it."""
    refused: str | None = None
    """Why Falco will not run it (a refused reload), when it will not."""


def progress_of(outcomes: Iterable[Outcome], loads: FalcoLoads) -> dict[ArtifactKey, Progress]:
    """Whether Falco runs each delivered artifact (the outcomes as Falco confirmed them): a Rulesfile or a Plugin
    Loaded; a Config, whose load Falco does not report, Installed and Falco restarted after the swap that wrote
    it. A refused reload is a refusal of the candidate."""
    progress: dict[ArtifactKey, Progress] = {}
    for outcome in outcomes:
        config_loaded = outcome.key.kind == "Config" and outcome.state == "Installed"
        confirmed = outcome.state == "Loaded" or (config_loaded and loads.loaded_as_written(outcome) is True)
        refused = (outcome.message or "Falco refused the reload") if outcome.state == "Refused" else None
        progress[outcome.key] = Progress(confirmed, refused)
    return progress


class AnalysisWatches:
    """The watches of every candidate this node delivers (usually none)."""

    def __init__(self) -> None:
        self.watches: dict[ArtifactKey, Watch] = {}
        self._adopted: dict[ArtifactKey, ReportedAnalysis] = {}

    @property
    def sampling(self) -> bool:
        """Whether a watch needs samples (or a clock, for a candidate Falco has not loaded yet)."""
        return any(watch.verdict is None for watch in self.watches.values())

    def follow(
        self, candidates: Mapping[ArtifactKey, Candidate], progress: Mapping[ArtifactKey, Progress], now: float
    ) -> bool:
        """Watch exactly these candidates, as far as Falco runs them (``progress``);
        True when a watch started or a verdict was reached (a sample is due, or a report)."""
        for key in set(self.watches) - set(candidates):
            del self.watches[key]
        changed = False
        adopted, self._adopted = self._adopted, {}
        for key, candidate in candidates.items():
            generation, limits = candidate.generation, candidate.analysis
            watch = self.watches.get(key)
            if watch is None or watch.generation != generation or watch.limits != limits:
                watch = self.watches[key] = Watch(generation, limits, now)
                earlier = adopted.get(key)
                if earlier is not None and earlier.generation == generation:
                    watch.started_at, watch.verdict = now, earlier
            if watch.verdict is not None:
                continue
            state = progress.get(key, Progress(confirmed=False))
            if state.refused is not None:
                watch.conclude(ReportedAnalysis(generation=generation, result="Failed", check="Loaded",
                                                message=state.refused, seconds=0.0))  # fmt: skip
                _log_verdict(key, watch)
                changed = True
            elif state.confirmed and watch.started_at is None:
                log.info("watching %s generation %d for %s", key, generation, limits.duration)
                watch.started_at = now
                changed = True
        return changed

    def observe(self, sample: Sample | None, now: float) -> bool:
        """One look at Falco (None: it did not answer); True when a verdict was reached."""
        changed = False
        for key, watch in self.watches.items():
            if watch.verdict is not None:
                continue
            if watch.started_at is None:
                if now - watch.delivered_at > watch.load_wait:
                    message = f"Falco has not loaded generation {watch.generation} within {watch.load_wait:.0f}s"
                    watch.conclude(ReportedAnalysis(generation=watch.generation, result="Failed", check="Loaded",
                                                    message=message, seconds=0.0))  # fmt: skip
                    _log_verdict(key, watch)
                    changed = True
            elif sample is not None and watch.observe(sample):
                _log_verdict(key, watch)
                changed = True
        return changed

    def verdicts(self) -> dict[ArtifactKey, ReportedAnalysis]:
        return {key: watch.verdict for key, watch in self.watches.items() if watch.verdict is not None}

    def adopt(self, reported: Mapping[ArtifactKey, ReportedAnalysis]) -> None:
        """The verdicts a previous run of this agent reported: a candidate this node still delivers at the first
        ``follow`` keeps its verdict instead of being watched again (an agent restart neither delays a step nor
        costs a write)."""
        self._adopted = dict(reported)


def reported_analyses(status: Mapping[str, Any] | None) -> dict[ArtifactKey, ReportedAnalysis]:
    """The verdicts a report's status holds, by artifact."""
    verdicts: dict[ArtifactKey, ReportedAnalysis] = {}
    for item in (status or {}).get("artifacts") or []:
        if isinstance(item, dict) and isinstance(item.get("analysis"), dict):
            try:
                verdicts[ArtifactKey(str(item["kind"]), str(item["name"]))] = ReportedAnalysis.from_wire(
                    item["analysis"]
                )
            except (KeyError, ValueError):
                continue
    return verdicts


def _log_verdict(key: ArtifactKey, watch: Watch) -> None:
    verdict = watch.verdict
    if verdict is not None:
        check = f" ({verdict.check})" if verdict.check else ""
        log.info("%s generation %d: %s%s: %s", key, watch.generation, verdict.result, check, verdict.message)
