"""What a config fragment must keep of the ``webserver`` and ``metrics`` mappings of the base falco.yaml.

Falco merges a config fragment into its configuration top-level key by top-level key: a fragment that sets
``webserver`` replaces the whole ``webserver`` mapping of the base file, and every key the fragment leaves out
takes Falco's built-in default, not the base file's value (observed with Falco 0.44.1,
``tests/integration/test_config_fragment_keys.py``). Falco's defaults are not what a Falco pod needs: without
``webserver.enabled`` the web server is off (no ``/healthz`` for the probes, no ``/metrics`` for the agent),
without ``webserver.prometheus_metrics_enabled`` Falco refuses to start (``Metrics are enabled with no output
configured``), without ``metrics.enabled`` the SHA-256 metrics the agent reads are gone, without
``metrics.interval`` Falco refuses to start.

A fragment may set these mappings (to change ``threadiness`` or a metrics option, say) as long as it keeps what
the probes and the agent rely on; ``kept_config_problem`` says what it drops.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .messages import quoted

FALCO_WEB_PORT = 8765
"""The port of Falco's web server in a Falco pod: the probes, the headless Service and the agent use it."""
HEALTHZ_PATH = "/healthz"
LISTEN_ADDRESSES = ("0.0.0.0", "::")
"""Addresses that reach both the pod's IP (the kubelet's probes) and loopback (the agent)."""
MIN_INTERVAL_MS = 100
_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNIT_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
Check = Callable[[Mapping[str, Any]], str | None]


def _is(key: str, wanted: Any, default: Any, why: str) -> Check:
    """``key`` must be ``wanted``; absent, it takes Falco's ``default``."""

    def check(mapping: Mapping[str, Any]) -> str | None:
        value = mapping.get(key, default)
        if type(value) is type(wanted) and value == wanted:
            return None
        shown = f"is {_shown(value)}" if key in mapping else f"is left out (Falco's default is {_shown(default)})"
        return f"{key} must be {_shown(wanted)}: {why}; it {shown}"

    return check


def _one_of(key: str, allowed: tuple[str, ...], why: str) -> Check:
    def check(mapping: Mapping[str, Any]) -> str | None:
        if key not in mapping or mapping[key] in allowed:
            return None
        return f"{key} must be one of {', '.join(allowed)} or left out: {why}; it is {_shown(mapping[key])}"

    return check


def _interval(mapping: Mapping[str, Any]) -> str | None:
    value = mapping.get("interval")
    if value is None:
        return "interval must be set (such as 1m): without it Falco does not start"
    milliseconds = duration_ms(str(value))
    if milliseconds is None or milliseconds < MIN_INTERVAL_MS:
        shown = _shown(value)
        return f"interval must be a duration of at least 100ms (such as 30s or 1m): Falco does not start with {shown}"
    return None


def _shown(value: Any) -> str:
    """A value as YAML writes it: true, 8765, '/health'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else quoted(value)


def duration_ms(text: str) -> int | None:
    """A Prometheus duration (``1m``, ``1h30m``, ``500ms``) in milliseconds; None when it is not one."""
    match = _DURATION.match(text)
    if not text or match is None:
        return None
    return sum(int(part) * unit for part, unit in zip(match.groups(), _UNIT_MS, strict=True) if part)


WEB = "the Falco pod's probes and the agent use Falco's web server"
KEPT: Mapping[str, tuple[Check, ...]] = {
    "webserver": (
        _is("enabled", True, False, WEB),
        _is("listen_port", FALCO_WEB_PORT, FALCO_WEB_PORT, "the probes, the Service and the agent use that port"),
        _is("k8s_healthz_endpoint", HEALTHZ_PATH, HEALTHZ_PATH, "the probes ask that path"),
        _is("prometheus_metrics_enabled", True, False, "the agent reads /metrics (without it Falco does not start)"),
        _is("ssl_enabled", False, False, "the probes and the agent speak plain HTTP to Falco"),
        _one_of("listen_address", LISTEN_ADDRESSES, "the probes come to the pod's IP and the agent to loopback"),
    ),
    "metrics": (
        _is("enabled", True, False, "the agent reads the SHA-256 of every rules file Falco loaded from the metrics"),
        _interval,
    ),
}


def kept_config_problem(document: Mapping[str, Any]) -> tuple[str, str] | None:
    """(key, message) of the first mapping a fragment sets without what the Falco pod relies on; None when fine."""
    for key, checks in KEPT.items():
        if key not in document:
            continue
        value = document[key]
        lead = (f"a config fragment that sets {key} replaces the whole {key} mapping of falco.yaml "
                "(keys it leaves out take Falco's defaults)")  # fmt: skip
        if not isinstance(value, dict):
            return key, f"{lead}, and {key} must be a mapping"
        for check in checks:
            problem = check(value)
            if problem:
                return key, f"{lead}: {key}.{problem}"
    return None
