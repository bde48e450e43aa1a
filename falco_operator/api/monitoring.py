"""`spec.monitoring`: a Prometheus Operator ServiceMonitor for Falco's own `/metrics`."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from .base import KubeModel
from .schema_types import cel, validations

PROMETHEUS_DURATION = r"^(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?(?:[0-9]+ms)?$"
"""A Prometheus duration, units in decreasing order as the ServiceMonitor CRD wants them, limited to the units CEL's
``duration()`` reads too (30s, 1m, 1m30s, 500ms; no d, w, y). ``min_length`` keeps out the empty string."""
MAX_MONITOR_LABELS = 32

Duration = Annotated[str, Field(min_length=2, max_length=32, pattern=PROMETHEUS_DURATION)]


class ServiceMonitorSettings(KubeModel):
    """Present means wanted: the operator creates the ServiceMonitor when the cluster serves the kind."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"!has(self.interval) || !has(self.scrapeTimeout) || !self.interval.matches(r'{PROMETHEUS_DURATION}')"
                f" || !self.scrapeTimeout.matches(r'{PROMETHEUS_DURATION}')"
                " || duration(self.scrapeTimeout) <= duration(self.interval)",
                "scrapeTimeout must not be longer than interval",
                ".scrapeTimeout",
            )
        )
    )

    labels: Annotated[dict[str, Annotated[str, Field(max_length=63)]], Field(max_length=MAX_MONITOR_LABELS)] | None = (
        None
    )
    """Extra labels on the ServiceMonitor, e.g. the `release` label your Prometheus selects monitors by."""
    interval: Duration | None = None
    """How often Prometheus scrapes Falco, e.g. 30s; unset means Prometheus's default."""
    scrape_timeout: Duration | None = None
    """How long a scrape may take (at most `interval`); unset means Prometheus's default."""


class FalcoMonitoring(KubeModel):
    service_monitor: ServiceMonitorSettings | None = None
    """A ServiceMonitor (`monitoring.coreos.com/v1`) `<falco>` for Falco's `/metrics` on the `web` port of the
    Service `<falco>`; created only while the cluster serves ServiceMonitors; removing the field deletes it."""
