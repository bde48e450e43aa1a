"""Falco's own Grafana dashboard asks only for what Falco 0.44 serves (checked against a recorded scrape)."""

from __future__ import annotations

import json
from pathlib import Path

from e2e.promql import exposed_names, metric_names, missing, shipped_promql
from falco_operator.falco_dashboard import FALCO_DASHBOARD_FILE, falco_dashboard, falco_dashboard_promql

ROOT = Path(__file__).resolve().parents[2]
SCRAPE = Path(__file__).parent / "data" / "falco-0.44.1-metrics.txt"
"""``/metrics`` of the real Falco 0.44.1 (modern_ebpf, the operator's metrics settings, default rules and the
container plugin) after a rule matched: see the file's first line."""


def served() -> set[str]:
    return exposed_names(SCRAPE.read_text())


def test_the_recorded_scrape_is_falco_0_44_1() -> None:
    assert 'falcosecurity_falco_version_info{version="0.44.1"} 1' in SCRAPE.read_text()


def test_every_metric_the_falco_dashboard_asks_for_is_served_by_falco() -> None:
    exprs = falco_dashboard_promql()
    assert len(exprs) >= 12
    assert missing(exprs, served()) == {}
    assert missing(["rate(falcosecurity_falco_events_total[5m])"], served()) != {}, "the check can fail"


def test_the_committed_dashboard_is_the_generated_one_and_says_what_the_issue_asks() -> None:
    committed = json.loads((ROOT / "manifests" / "grafana" / FALCO_DASHBOARD_FILE).read_text())
    assert committed == falco_dashboard()
    names = set().union(*(metric_names(expr) for expr in falco_dashboard_promql()))
    assert {
        "falcosecurity_scap_n_evts_total",
        "falcosecurity_scap_n_drops_total",
        "falcosecurity_falco_rules_matches_total",
        "falcosecurity_falco_cpu_usage_ratio",
        "falcosecurity_falco_memory_rss_bytes",
        "falcosecurity_falco_reload_timestamp_nanoseconds",
        "falcosecurity_falco_sha256_rules_files_info",
    } <= names
    assert [panel["id"] for panel in committed["panels"]] == list(range(1, len(committed["panels"]) + 1))


def test_the_operator_metric_check_leaves_falco_s_dashboard_to_this_one() -> None:
    operator_names = set().union(*(metric_names(expr) for expr in shipped_promql(ROOT / "manifests")))
    assert not {name for name in operator_names if name.startswith("falcosecurity_")}
