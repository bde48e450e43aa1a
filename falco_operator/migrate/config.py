"""A Config artifact with the falco.yaml keys whose values differ from the chart's defaults.

Falco merges a config fragment top-level key by top-level key (a fragment's ``http_output`` replaces the whole
mapping), so each changed key goes into the fragment whole, as the chart renders it. Keys the operator owns are
reported instead: those a Config may not set (``RESERVED_CONFIG_KEYS``), ``engine`` (``spec.engine``), and a
``webserver`` or ``metrics`` that drops what the Falco pod relies on (``kept_config``).
"""

from __future__ import annotations

import copy
from typing import Any

from ..api.falco import Engine
from ..artifacts.kept_config import kept_config_problem
from ..artifacts.validation import RESERVED_CONFIG_KEYS
from ..instance.falcoconfig import base_config
from .findings import Context

Json = dict[str, Any]
MAPPED_ELSEWHERE = {
    "rules_files": "Rulesfiles",
    "plugins": "Plugins",
    "load_plugins": "Plugins",
    "podHostname": "podTemplateSpec",
}
SIDEKICK_PORT = "2801"
METRICS_KEYS = {
    "interval": "interval",
    "output_rule": "outputRule",
    "rules_counters_enabled": "rulesCountersEnabled",
    "resource_utilization_enabled": "resourceUtilizationEnabled",
    "state_counters_enabled": "stateCountersEnabled",
    "kernel_event_counters_enabled": "kernelEventCountersEnabled",
    "kernel_event_counters_per_cpu_enabled": "kernelEventCountersPerCPUEnabled",
    "libbpf_stats_enabled": "libbpfStatsEnabled",
    "plugins_metrics_enabled": "pluginsMetricsEnabled",
    "kernel_iter_event_counters_enabled": "kernelIterEventCountersEnabled",
    "jemalloc_stats_enabled": "jemallocStatsEnabled",
    "convert_memory_to_mb": "convertMemoryToMB",
    "include_empty_values": "includeEmptyValues",
}
"""falco.yaml's metrics keys and the chart's metrics.* values that set them (when metrics.enabled)."""


def rendered_falco(context: Context, full_name: str) -> tuple[Json, Json]:
    """(the falco mapping the chart renders, the one it renders from its defaults): with what falcosidekick.enabled
    and metrics.enabled set, as the chart's helpers do."""
    rendered = copy.deepcopy(context.get("falco") or {})
    defaults = copy.deepcopy(context.default("falco"))
    if context.get("falcosidekick.enabled"):
        rendered["json_output"] = True
        rendered["json_include_output_property"] = True
        http = dict(rendered.get("http_output") or {})
        http["enabled"] = True
        http["url"] = http.get("url") or _sidekick_url(context, full_name)
        rendered["http_output"] = http
    if context.get("metrics.enabled"):
        metrics = dict(rendered.get("metrics") or {})
        metrics["enabled"] = True
        metrics.update({key: context.get(f"metrics.{value}") for key, value in METRICS_KEYS.items()})
        rendered["metrics"] = metrics
        rendered["webserver"] = {
            **(rendered.get("webserver") or {}),
            "enabled": True,
            "prometheus_metrics_enabled": True,
        }
    return rendered, defaults


def _sidekick_url(context: Context, full_name: str) -> str:
    # The chart's helper reads falcosidekick.listenport (lower case), which its values never set: 2801 in practice.
    port = str(context.get("falcosidekick.listenport") or SIDEKICK_PORT)
    if context.get("falcosidekick.fullfqdn"):
        return f"http://{full_name}-falcosidekick.{context.namespace}.svc.cluster.local:{port}"
    return f"http://{full_name}-falcosidekick:{port}"


def config_fragment(context: Context, full_name: str) -> Json:
    """The falco.yaml fragment of the changed keys (empty when nothing changed)."""
    context.handle("falco", "metrics", "falcosidekick.fullfqdn", "falcosidekick.listenport")
    rendered, defaults = rendered_falco(context, full_name)
    base = base_config(Engine(kind="nodriver"))
    fragment: Json = {}
    for key, value in rendered.items():
        if key in defaults and defaults[key] == value:
            continue
        if key in MAPPED_ELSEWHERE:
            continue
        if key in RESERVED_CONFIG_KEYS:
            context.unmapped(f"falco.{key}", f"a Config cannot set it: {RESERVED_CONFIG_KEYS[key]}")
            continue
        if key == "engine":
            context.unmapped("falco.engine", "the chart sets it from driver.*, and so does the operator (spec.engine)")
            continue
        if key in ("webserver", "metrics"):
            value = _over_base(base[key], value, defaults.get(key) or {})
            problem = kept_config_problem({key: value})
            if problem:
                context.unmapped(f"falco.{key}", problem[1])
                continue
            if value == base[key]:
                continue
        fragment[key] = value
    if not context.get("metrics.enabled"):
        context.unmapped_if_changed(
            "metrics",
            "ignored while metrics.enabled is false, as by the chart (the operator always enables Falco's metrics)",
        )
    return fragment


def _over_base(base: Json, value: Any, chart_default: Json) -> Any:
    """The operator's own mapping with the keys the values changed from the chart's default."""
    if not isinstance(value, dict):
        return value
    merged = dict(base)
    merged.update({k: v for k, v in value.items() if chart_default.get(k, object()) != v})
    return merged


def config_manifest(context: Context, full_name: str) -> Json | None:
    fragment = config_fragment(context, full_name)
    if not fragment:
        return None
    return {
        "apiVersion": "artifact.falcosecurity.dev/v1alpha1",
        "kind": "Config",
        "metadata": {"name": f"{full_name}-values", "namespace": context.namespace},
        "spec": {"config": fragment},
    }
