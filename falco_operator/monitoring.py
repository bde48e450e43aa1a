"""Monitoring manifests: the metrics Service, Prometheus Operator monitors and alerts, the Grafana dashboard.

Pure data, rendered by ``falco_operator.manifests`` into ``manifests/prometheus/`` and ``manifests/grafana/``. Every
metric named here is one the operator or the agent serves (a test scrapes both and checks).
"""

from __future__ import annotations

from typing import Any

from .grafana import dashboard_document, panel

Json = dict[str, Any]
NAMESPACE = "falco-operator-system"
OPERATOR = "falco-operator"
LABELS = {"app.kubernetes.io/name": OPERATOR, "app.kubernetes.io/part-of": OPERATOR}
METRICS_SERVICE = "falco-operator-metrics"
DASHBOARD_FILE = "falco-operator-dashboard.json"
FALCO_DASHBOARD_FILE = "falco-dashboard.json"
"""Falco's own dashboard (``falco_operator.falco_dashboard``): its metrics are Falco's, not the operator's."""
AGENT_PORT_NAME = "agent-probes"


def _meta(name: str) -> Json:
    return {"name": name, "namespace": NAMESPACE, "labels": dict(LABELS)}


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> Json:
    return {"alert": name, "expr": expr, "for": for_, "labels": {"severity": severity},
            "annotations": {"summary": summary, "description": description}}  # fmt: skip


ALERTS: list[Json] = [
    _alert("FalcoOperatorReconcileErrors",
           "sum by (controller) (rate(controller_runtime_reconcile_errors_total[5m])) > 0", "15m", "warning",
           "The {{ $labels.controller }} controller keeps failing",
           "Reconciles of {{ $labels.controller }} have failed for 15 minutes; the operator log and the Warning "
           "Events of the objects concerned say why."),
    _alert("FalcoOperatorArtifactsNotProgrammed",
           'sum by (kind) (falco_operator_artifacts{condition="Programmed", status!="True"}) > 0', "10m", "warning",
           "{{ $value }} {{ $labels.kind }} artifacts are not programmed",
           "Artifacts have not reached their Falco pods for 10 minutes: `kubectl get {{ $labels.kind }} -A` shows "
           "which, and their Programmed condition why."),
    _alert("FalcoArtifactAgentPullsFailing",
           'sum by (namespace, pod) (rate(falco_artifact_agent_pulls_total{result="failure"}[10m])) > 0', "10m",
           "warning", "The artifact agent of {{ $labels.namespace }}/{{ $labels.pod }} cannot pull",
           "OCI pulls have failed for 10 minutes; the agent keeps the last good files unless the registry says the "
           "tag is gone or the agent refuses to ask it. The artifact's ResolvedRefs condition names the error."),
    _alert("FalcoArtifactAgentWatchFailing",
           "min by (namespace, pod) (falco_artifact_agent_informer_healthy) == 0", "5m", "warning",
           "The artifact agent of {{ $labels.namespace }}/{{ $labels.pod }} cannot watch the API server",
           "An agent watch has failed for 5 minutes: changes do not reach this Falco. Check the pod's network "
           "and its ServiceAccount's Role."),
    _alert("FalcoArtifactAgentInvalidArtifacts",
           "sum by (namespace, pod, kind) (increase(falco_artifact_agent_invalid_artifacts_total[10m])) > 0", "0m",
           "info", "An agent refused an invalid {{ $labels.kind }}",
           "A new generation of an artifact failed validation; the last good files stay. The artifact's Valid "
           "condition says why."),
]  # fmt: skip


def metrics_service() -> Json:
    """The operator's metrics Service, for any scraper (and the ServiceMonitor): part of the install."""
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(METRICS_SERVICE),
        "spec": {"selector": {"app.kubernetes.io/name": OPERATOR},
                 "ports": [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]},
    }  # fmt: skip


def prometheus_objects() -> dict[str, Json]:
    """For the Prometheus Operator: monitors of the operator's Service and the agents' pods, and alert rules."""
    monitor_labels = {"app.kubernetes.io/name": OPERATOR}
    return {
        "prometheus/service_monitor.yaml": {
            "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": _meta(OPERATOR),
            "spec": {"selector": {"matchLabels": monitor_labels},
                     "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}]},
        },
        "prometheus/pod_monitor.yaml": {
            "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": _meta("falco-artifact-agents"),
            "spec": {"namespaceSelector": {"any": True},
                     "selector": {"matchLabels": {"app.kubernetes.io/managed-by": OPERATOR}},
                     "podMetricsEndpoints": [{"port": AGENT_PORT_NAME, "path": "/metrics", "interval": "30s"}]},
        },
        "prometheus/prometheus_rule.yaml": {
            "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": _meta(OPERATOR),
            "spec": {"groups": [{"name": "falco-operator", "rules": ALERTS}]},
        },
    }  # fmt: skip


def _panel(panel_id: int, title: str, unit: str, x: int, y: int, *targets: tuple[str, str]) -> Json:
    return panel(panel_id, title, unit, (x, y, 12, 8), targets)


def _quantile(q: float, metric: str, by: str = "") -> str:
    group = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[5m])))"


def dashboard() -> Json:
    """Reconciles, queues and API traffic of the operator; artifacts, propagation and pulls of the agents."""
    panels = [
        _panel(1, "Reconciles per second by controller", "ops", 0, 0,
               ("sum by (controller) (rate(controller_runtime_reconcile_total[5m]))", "{{controller}}")),
        _panel(2, "Reconcile errors per second by controller", "ops", 12, 0,
               ("sum by (controller) (rate(controller_runtime_reconcile_errors_total[5m]))", "{{controller}}")),
        _panel(3, "Reconcile latency (p50, p99) by controller", "s", 0, 8,
               (_quantile(0.5, "controller_runtime_reconcile_time_seconds", "controller"), "p50 {{controller}}"),
               (_quantile(0.99, "controller_runtime_reconcile_time_seconds", "controller"), "p99 {{controller}}")),
        _panel(4, "Work queue depth", "short", 12, 8, ("sum by (name) (workqueue_depth)", "{{name}}")),
        _panel(5, "Artifacts programmed vs not", "short", 0, 16,
               ('sum by (kind) (falco_operator_artifacts{condition="Programmed", status="True"})',
                "{{kind}} programmed"),
               ('sum by (kind) (falco_operator_artifacts{condition="Programmed", status!="True"})',
                "{{kind}} not programmed")),
        _panel(6, "Propagation: change seen to files on disk (p50, p95, p99)", "s", 12, 16,
               (_quantile(0.5, "falco_artifact_agent_propagation_seconds"), "p50"),
               (_quantile(0.95, "falco_artifact_agent_propagation_seconds"), "p95"),
               (_quantile(0.99, "falco_artifact_agent_propagation_seconds"), "p99")),
        _panel(7, "Agent pulls per second by result", "ops", 0, 24,
               ("sum by (result) (rate(falco_artifact_agent_pulls_total[5m]))", "{{result}}")),
        _panel(8, "Agent pull duration (p95)", "s", 12, 24,
               (_quantile(0.95, "falco_artifact_agent_pull_duration_seconds"), "p95")),
        _panel(9, "Operator API requests per second", "reqps", 0, 32,
               ("sum by (method, code) (rate(rest_client_requests_total[5m]))", "{{method}} {{code}}")),
        _panel(10, "Leader", "short", 12, 32, ("max(leader_election_master_status)", "leader")),
    ]  # fmt: skip
    return dashboard_document("Falco operator", "falco-operator", panels)


def grafana_kustomization() -> Json:
    """The dashboards (the operator's and Falco's) as ConfigMaps that Grafana's dashboard sidecar picks up (label
    ``grafana_dashboard``)."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "generatorOptions": {"disableNameSuffixHash": True, "labels": {**LABELS, "grafana_dashboard": "1"}},
        "configMapGenerator": [
            {"name": "falco-operator-dashboard", "files": [DASHBOARD_FILE]},
            {"name": "falco-dashboard", "files": [FALCO_DASHBOARD_FILE]},
        ],
    }


def all_promql() -> list[str]:
    """Every PromQL expression of the alerts and the dashboard (the metric check reads them from the files)."""
    exprs = [str(rule["expr"]) for rule in ALERTS]
    exprs += [str(t["expr"]) for panel in dashboard()["panels"] for t in panel["targets"]]
    return exprs
