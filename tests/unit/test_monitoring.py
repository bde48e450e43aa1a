"""The shipped dashboard and alerts: what their PromQL asks for, and the alerts the install issue names."""

from __future__ import annotations

from pathlib import Path

from e2e.promql import exposed_names, metric_names, missing, shipped_promql

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def test_metric_names_leave_out_functions_labels_keywords_and_durations() -> None:
    expr = ('histogram_quantile(0.99, sum by (controller, le) (rate(controller_runtime_reconcile_time_seconds_bucket'
            '{controller="falco", job=~"a|b"}[5m]))) > 0 and on (pod) up_metric offset 5m')  # fmt: skip
    assert metric_names(expr) == {"controller_runtime_reconcile_time_seconds_bucket", "up_metric"}
    assert metric_names('sum(x{a="rate(y)"}) / ignoring(b) z') == {"x", "z"}


def test_exposed_names_include_families_declared_without_samples() -> None:
    text = ("# HELP a_total A.\n# TYPE a_total counter\n# HELP h H.\n# TYPE h histogram\n"
            'h_bucket{le="1.0"} 1.0\nh_count 1.0\ng{x="y"} 3.0\n')  # fmt: skip
    assert {"a_total", "h_bucket", "h_sum", "h_count", "g"} <= exposed_names(text)


def test_every_shipped_expression_names_a_metric_and_the_named_alerts_exist() -> None:
    exprs = shipped_promql(MANIFESTS)
    assert len(exprs) >= 15
    assert all(metric_names(expr) for expr in exprs)
    assert missing(exprs, set()) != {}, "the check can fail"
    names = set().union(*(metric_names(expr) for expr in exprs))
    assert {"controller_runtime_reconcile_errors_total", "falco_operator_artifacts", "workqueue_depth",
            "falco_artifact_agent_propagation_seconds_bucket", "falco_artifact_agent_pulls_total"} <= names  # fmt: skip
