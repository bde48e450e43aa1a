"""Config fragments that set ``webserver`` or ``metrics`` replace the whole mapping (Falco's merge): refused when they
drop what the probes and the agent rely on, accepted when they keep it."""

from __future__ import annotations

import pytest

from falco_operator.api import Engine
from falco_operator.artifacts import Invalid, parse_config
from falco_operator.artifacts.kept_config import FALCO_WEB_PORT, duration_ms, kept_config_problem
from falco_operator.instance.falcoconfig import WEB_PORT, base_config, render

KEPT_WEB = "webserver:\n  enabled: true\n  prometheus_metrics_enabled: true\n"


def test_the_operators_base_config_keeps_every_key_it_relies_on() -> None:
    assert FALCO_WEB_PORT == WEB_PORT
    assert kept_config_problem(base_config(Engine(kind="nodriver"))) is None
    assert parse_config(render({"webserver": base_config(Engine(kind="nodriver"))["webserver"]}))


@pytest.mark.parametrize(
    ("fragment", "words"),
    [
        (
            "webserver:\n  threadiness: 1\n",
            "webserver.enabled must be true: .* is left out \\(Falco's default is false",
        ),
        ("webserver:\n  enabled: true\n  threadiness: 1\n", "webserver.prometheus_metrics_enabled must be true"),
        (KEPT_WEB + "  listen_port: 9000\n", "webserver.listen_port must be 8765: .* it is 9000"),
        (KEPT_WEB + "  k8s_healthz_endpoint: /health\n", "webserver.k8s_healthz_endpoint must be '/healthz'"),
        (KEPT_WEB + "  ssl_enabled: true\n", "webserver.ssl_enabled must be false"),
        (KEPT_WEB + "  listen_address: 127.0.0.1\n", "webserver.listen_address must be one of 0.0.0.0, ::"),
        ("webserver:\n  enabled: 'true'\n  prometheus_metrics_enabled: true\n", "enabled must be true: .* is 'true'"),
        ("webserver: false\n", "webserver must be a mapping"),
        ("metrics:\n  interval: 30s\n", "metrics.enabled must be true: .* SHA-256"),
        ("metrics:\n  enabled: true\n", "metrics.interval must be set"),
        ("metrics:\n  enabled: true\n  interval: 50ms\n", "at least 100ms .* with '50ms'"),
        ("metrics:\n  enabled: true\n  interval: soon\n", "at least 100ms"),
        (
            "json_output: true\nmetrics:\n  enabled: false\n  interval: 1m\n",
            "metrics.enabled must be true: .* is false",
        ),
    ],
)
def test_a_fragment_that_drops_what_the_pod_relies_on_is_refused_with_the_reason(fragment: str, words: str) -> None:
    with pytest.raises(Invalid, match=words) as refused:
        parse_config(fragment)
    assert "replaces the whole" in str(refused.value)
    assert "keys it leaves out take Falco's defaults" in str(refused.value)


def test_the_refusal_names_the_line_of_the_mapping() -> None:
    with pytest.raises(Invalid) as refused:
        parse_config("json_output: true\nmetrics:\n  interval: 1m\n")
    assert refused.value.problem.line == 2


@pytest.mark.parametrize(
    "fragment",
    [
        KEPT_WEB + "  threadiness: 1\n",
        KEPT_WEB
        + "  listen_port: 8765\n  listen_address: '::'\n  k8s_healthz_endpoint: /healthz\n  ssl_enabled: false\n",
        "metrics:\n  enabled: true\n  interval: 30s\n  rules_counters_enabled: false\n",
        "metrics:\n  enabled: true\n  interval: 1h30m\n",
        "json_output: true\n",
    ],
)
def test_a_fragment_that_keeps_those_keys_is_accepted(fragment: str) -> None:
    assert parse_config(fragment)


def test_durations_read_as_prometheus_writes_them() -> None:
    assert [duration_ms(text) for text in ("1m", "30s", "100ms", "1h30m", "2d", "1m5s")] == [
        60_000, 30_000, 100, 5_400_000, 172_800_000, 65_000]  # fmt: skip
    assert [duration_ms(text) for text in ("", "m", "1.5m", "1s1m", "10")] == [None] * 5
