"""The analysis of a rollout candidate on a node: Falco's metrics parsed, rates judged, one verdict per watch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from artifact_agent.analysis import (
    MIN_LOAD_WAIT,
    AnalysisWatches,
    Progress,
    Sample,
    judge,
    parse_sample,
    progress_of,
    reported_analyses,
)
from artifact_agent.confirmation import FalcoLoads, FalcoView
from artifact_agent.delivery import Candidate
from artifact_agent.report import report_status
from falco_operator.api.plain import RolloutAnalysis
from falco_operator.api.plain_report import ReportedAnalysis
from falco_operator.artifacts import ArtifactKey, Delivered, Outcome

SCRAPE = (Path(__file__).parent / "data" / "falco-0.44.1-metrics.txt").read_text()
NODRIVER = """\
# TYPE falcosecurity_falco_rules_matches_total counter
falcosecurity_falco_rules_matches_total{priority="4",rule_name="every event",source="syscall"} 30
falcosecurity_falco_rules_matches_total{priority="4",rule_name="quiet \\"one\\"",source="syscall"} 1
# TYPE falcosecurity_falco_cpu_usage_ratio gauge
falcosecurity_falco_cpu_usage_ratio 0.006000
# TYPE falcosecurity_falco_reload_timestamp_nanoseconds gauge
falcosecurity_falco_reload_timestamp_nanoseconds 1796552418730396498
"""
KEY = ArtifactKey("Rulesfile", "web")
LIMITS = RolloutAnalysis(duration="20s", max_rule_rate=1.0, max_total_rate=50.0, max_cpu=0.5)


def sample(at: float, rules: dict[str, float], reloaded_at: float = 1.0, cpu: float = 0.01) -> Sample:
    return Sample(at, rules, None, cpu, reloaded_at)


def test_falcos_metrics_give_matches_per_rule_cpu_and_reload_time() -> None:
    parsed = parse_sample(NODRIVER, 7.0)
    assert parsed.rule_matches == {"every event": 30.0, 'quiet \\"one\\"': 1.0}
    assert (parsed.cpu, parsed.reloaded_at, parsed.drops, parsed.at) == (0.006, 1796552418730396498.0, None, 7.0)
    scraped = parse_sample(SCRAPE, 0.0)
    assert scraped.rule_matches == {"Read sensitive file untrusted": 2.0}
    assert scraped.cpu is not None
    assert scraped.reloaded_at is not None


def test_a_flooding_rule_fails_once_ten_seconds_were_measured_with_the_figures() -> None:
    base = sample(0.0, {"every event": 5})
    assert judge(LIMITS, base, sample(9.0, {"every event": 95}), 9.0) is None  # too short to judge a rate
    verdict = judge(LIMITS, base, sample(12.0, {"every event": 126, "quiet": 1}), 12.0)
    assert verdict is not None
    assert (verdict.result, verdict.check) == ("Failed", "RuleRate")
    assert verdict.message == 'rule "every event" matched 10.1/s over 12s (limit 1/s)'


def test_total_rate_and_cpu_limits_are_checked_too() -> None:
    rules = {f"r{index}": 0.0 for index in range(60)}
    busy = {rule: 10.0 for rule in rules}
    total = judge(replace(LIMITS, max_rule_rate=None), sample(0, rules), sample(10, busy), 10)
    assert total is not None
    assert total.check == "TotalRate"
    assert "matched 60.0/s" in (total.message or "")
    cpu = judge(LIMITS, sample(0, {}), sample(10, {}, cpu=0.9), 10)
    assert cpu is not None
    assert cpu.check == "CPU"
    assert "0.90" in (cpu.message or "")


def test_a_quiet_candidate_passes_after_the_duration() -> None:
    base = sample(0.0, {"quiet": 1})
    assert judge(LIMITS, base, sample(15.0, {"quiet": 2}), 15.0) is None
    verdict = judge(LIMITS, base, sample(20.0, {"quiet": 2}), 20.0)
    assert verdict is not None
    assert verdict.result == "Passed"
    assert verdict.check is None
    assert verdict.seconds == 20.0
    assert "within limits" in (verdict.message or "")


def test_a_watch_starts_when_falco_runs_the_candidate_and_a_reload_starts_the_rates_over() -> None:
    watches = AnalysisWatches()
    candidates = {KEY: Candidate(4, LIMITS)}
    assert not watches.follow(candidates, {KEY: Progress(confirmed=False)}, 0.0)
    assert watches.sampling
    assert not watches.observe(sample(1.0, {"every event": 10}), 1.0)
    assert watches.follow(candidates, {KEY: Progress(confirmed=True)}, 2.0)
    assert not watches.observe(sample(2.0, {"every event": 20}), 2.0)  # the window's first sample
    assert not watches.observe(sample(11.0, {"every event": 3}, reloaded_at=2.0), 11.0)  # reloaded: over again
    assert not watches.observe(sample(20.0, {"every event": 92}, reloaded_at=2.0), 20.0)
    assert watches.observe(sample(22.0, {"every event": 112}, reloaded_at=2.0), 22.0)
    verdict = watches.verdicts()[KEY]
    assert (verdict.generation, verdict.result, verdict.check, verdict.seconds) == (4, "Failed", "RuleRate", 20.0)
    assert not watches.sampling
    assert not watches.observe(sample(30.0, {}), 30.0)
    # The verdict stays while that generation is delivered; a new candidate starts a new watch.
    watches.follow(candidates, {KEY: Progress(confirmed=True)}, 31.0)
    assert watches.verdicts()[KEY].generation == 4
    watches.follow({KEY: Candidate(5, LIMITS)}, {KEY: Progress(confirmed=True)}, 32.0)
    assert watches.verdicts() == {}
    watches.follow({}, {}, 33.0)
    assert watches.watches == {}
    assert not watches.sampling


def test_a_refused_or_never_loaded_candidate_fails_the_loaded_check() -> None:
    watches = AnalysisWatches()
    assert watches.follow({KEY: Candidate(4, LIMITS)}, {KEY: Progress(False, "Falco refused the reload")}, 0.0)
    assert watches.verdicts()[KEY].check == "Loaded"
    slow = AnalysisWatches()
    slow.follow({KEY: Candidate(4, LIMITS)}, {}, 0.0)
    assert not slow.observe(None, MIN_LOAD_WAIT - 1)
    assert slow.observe(None, MIN_LOAD_WAIT + 1)
    verdict = slow.verdicts()[KEY]
    assert (verdict.result, verdict.check) == ("Failed", "Loaded")
    assert "has not loaded" in (verdict.message or "")


def test_a_restarted_agent_keeps_the_verdict_its_report_holds_for_the_generation_it_still_delivers() -> None:
    verdict = ReportedAnalysis(generation=4, result="Passed", message="within limits", seconds=20.0)
    status = report_status([Outcome(KEY, 4, "Loaded", Delivered(), "Loaded")], {}, analyses={KEY: verdict})
    other = ArtifactKey("Rulesfile", "other")
    watches = AnalysisWatches()
    watches.adopt({**reported_analyses(status), other: verdict})
    assert not watches.follow({KEY: Candidate(4, LIMITS), other: Candidate(5, LIMITS)}, {}, 0.0)
    assert watches.verdicts() == {KEY: verdict}  # other's verdict judged generation 4: it is watched again
    assert watches.sampling


def test_falco_runs_a_rulesfile_it_loaded_and_a_config_once_it_restarted_after_its_swap() -> None:
    config_key = ArtifactKey("Config", "tuning")
    fragment = Delivered(files={("config", "50-03-tuning-inline.yaml"): b"buffered_outputs: true\n"})
    config = Outcome(config_key, 2, "Installed", fragment, "Installed")
    loaded = Outcome(KEY, 4, "Loaded", Delivered(), "Loaded")
    refused = Outcome(ArtifactKey("Rulesfile", "bad"), 2, "Refused", Delivered(), "Refused", "Falco refused it")
    loads = FalcoLoads()
    loads.swapped(100.0, {config_key: fragment})
    before = progress_of([config, loaded, refused], loads)
    assert before[KEY] == Progress(confirmed=True)
    assert before[config_key] == Progress(confirmed=False)
    assert before[refused.key] == Progress(confirmed=False, refused="Falco refused it")
    loads.observed(FalcoView(reachable=True, reloaded_at=101.0), 102.0)
    assert progress_of([config], loads)[config_key] == Progress(confirmed=True)
