"""Grafana dashboard documents: the shape shared by the operator's dashboard and Falco's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Json = dict[str, Any]
DATASOURCE_VARIABLE: Json = {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus",
                             "current": {}}  # fmt: skip


def panel(panel_id: int, title: str, unit: str, grid: tuple[int, int, int, int], targets: Sequence[tuple[str, str]],
          kind: str = "timeseries", description: str = "") -> Json:  # fmt: skip
    """One panel at ``grid`` (x, y, width, height), a query per (PromQL, legend) target; a table shows instant
    values."""
    x, y, w, h = grid
    result: Json = {"id": panel_id, "type": kind, "title": title}
    if description:
        result["description"] = description
    result |= {
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
    }
    if kind == "timeseries":
        result["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}}
    result["targets"] = [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                          **({"instant": True, "format": "table"} if kind == "table" else {})}
                         for i, (expr, legend) in enumerate(targets)]  # fmt: skip
    return result


def dashboard_document(title: str, uid: str, panels: list[Json], variables: Sequence[Json] = ()) -> Json:
    """A dashboard of ``panels`` over the Prometheus picked at its top, then ``variables``."""
    return {
        "title": title,
        "uid": uid,
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "tags": ["falco", "kubernetes"],
        "templating": {"list": [dict(DATASOURCE_VARIABLE), *variables]},
        "panels": panels,
    }
