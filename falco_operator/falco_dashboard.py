"""The Grafana dashboard for Falco itself: what the Falco pods serve on ``/metrics`` (``web`` port), as scraped
through the ServiceMonitor of ``spec.monitoring.serviceMonitor``.

Every metric named here is one Falco 0.44 serves with the operator's ``falco.yaml`` (a unit test checks them
against a recorded scrape of the real Falco). Rendered into ``manifests/grafana/`` by ``falco_operator.manifests``.
"""

from __future__ import annotations

from typing import Any

from .grafana import dashboard_document, panel
from .monitoring import FALCO_DASHBOARD_FILE

Json = dict[str, Any]
__all__ = ["FALCO_DASHBOARD_FILE", "falco_dashboard", "falco_dashboard_promql"]
SCOPE = '{namespace=~"$namespace", pod=~"$pod"}'
"""Every query is narrowed to the namespaces and pods picked at the top of the dashboard."""


def _panel(panel_id: int, title: str, unit: str, grid: tuple[int, int, int, int], *targets: tuple[str, str],
           kind: str = "timeseries", description: str = "") -> Json:  # fmt: skip
    return panel(panel_id, title, unit, grid, targets, kind, description)


def _rate(metric: str, by: str = "pod") -> str:
    return f"sum by ({by}) (rate({metric}{SCOPE}[5m]))"


def _variable(name: str, label: str, query: str) -> Json:
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    return {"name": name, "label": label, "type": "query", "datasource": datasource, "query": query, "refresh": 2,
            "includeAll": True, "multi": True, "allValue": ".*", "current": {}}  # fmt: skip


def falco_dashboard() -> Json:
    """Events, drops, rule matches, CPU, memory, reloads and the rules files each pod loaded."""
    panels = [
        _panel(1, "Events per second by pod", "ops", (0, 0, 12, 8),
               (_rate("falcosecurity_scap_n_evts_total"), "{{pod}}"),
               description="Kernel events the driver delivered to Falco."),
        _panel(2, "Drops per second by pod", "ops", (12, 0, 12, 8),
               (_rate("falcosecurity_scap_n_drops_total"), "{{pod}} kernel buffer"),
               (_rate("falcosecurity_falco_outputs_queue_num_drops_total"), "{{pod}} outputs queue"),
               description="Events lost before Falco saw them (ring buffer full) and alerts lost in the outputs "
               "queue. Any sustained value means blind spots."),
        _panel(3, "Rule matches per second by rule", "ops", (0, 8, 12, 8),
               (_rate("falcosecurity_falco_rules_matches_total", "rule_name"), "{{rule_name}}")),
        _panel(4, "Drop ratio by pod", "percentunit", (12, 8, 12, 8),
               (f"{_rate('falcosecurity_scap_n_drops_total')} / {_rate('falcosecurity_scap_n_evts_total')}",
                "{{pod}}")),
        _panel(5, "CPU by pod", "percentunit", (0, 16, 12, 8),
               (f"max by (pod) (falcosecurity_falco_cpu_usage_ratio{SCOPE})", "{{pod}}"),
               description="Falco's CPU usage as a fraction of one CPU."),
        _panel(6, "Memory by pod", "bytes", (12, 16, 12, 8),
               (f"max by (pod) (falcosecurity_falco_memory_rss_bytes{SCOPE})", "{{pod}} RSS"),
               (f"max by (pod) (falcosecurity_falco_memory_pss_bytes{SCOPE})", "{{pod}} PSS")),
        _panel(7, "Reloads in the last hour by pod", "short", (0, 24, 12, 8),
               (f"max by (pod) (changes(falcosecurity_falco_reload_timestamp_nanoseconds{SCOPE}[1h]))", "{{pod}}"),
               description="Falco restarts its engine in place when its rules or configuration files change."),
        _panel(8, "Falco versions", "short", (12, 24, 12, 8),
               (f"count by (version) (falcosecurity_falco_version_info{SCOPE})", "{{version}}"), kind="table"),
        _panel(9, "Rules files loaded: pods per sha256", "short", (0, 32, 24, 8),
               (f"count by (file_name, sha256) (falcosecurity_falco_sha256_rules_files_info{SCOPE})", ""),
               kind="table",
               description="One line per rules file and content: two lines for one file mean that pods run "
               "different versions of it (a rollout in progress, or a pod that refused a reload)."),
    ]  # fmt: skip
    variables = [
        _variable("namespace", "Namespace", "label_values(falcosecurity_falco_version_info, namespace)"),
        _variable("pod", "Pod", 'label_values(falcosecurity_falco_version_info{namespace=~"$namespace"}, pod)'),
    ]
    return dashboard_document("Falco", "falco", panels, variables)


def falco_dashboard_promql() -> list[str]:
    """Every PromQL expression of the dashboard: its panels' and its variables'."""
    dashboard = falco_dashboard()
    exprs = [str(t["expr"]) for panel in dashboard["panels"] for t in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        query = str(variable.get("query", ""))
        if query.startswith("label_values("):
            exprs.append(query.removeprefix("label_values(").rsplit(",", 1)[0])
    return exprs
