"""The base falco.yaml every Falco starts from: no rules (the image's own with ``imageDefaults``), hot reload of
config.d and rules.d, web server on."""

from __future__ import annotations

import hashlib
import io
from typing import Any

from ruamel.yaml import YAML

from ..api.falco import Engine
from ..artifacts.naming import DEFAULT_RULES_CONFIG_FILE
from ..artifacts.plugins import ARTIFACT_PLUGINS_DIR

WEB_PORT = 8765
RULES_DIR = "/etc/falco/rules.d"
CONFIG_DIR = "/etc/falco/config.d"
PLUGINS_DIR = ARTIFACT_PLUGINS_DIR
"""Plugin libraries the agent delivers; the image's own stay in /usr/share/falco/plugins, where Falco finds them."""
IMAGE_RULES_FILE = "/etc/falco/falco_rules.yaml"
"""The default rules the Falco image ships, loaded with ``imageDefaults``."""
DRIVER_CONFIG_DIR = "/etc/falco/driver"
"""With ``engine.kind: auto``: where Falco sees the fragment in which the driver loader names the driver it chose
(the loader writes ``config.d/`` of its own ``/etc/falco``, an emptyDir mounted here in the falco container)."""
DRIVER_CONFIG_FILE = f"{DRIVER_CONFIG_DIR}/engine-kind-falcoctl.yaml"
"""The file name falcoctl's ``driver config`` writes."""


def engine_config(engine: Engine) -> dict[str, Any]:
    """Falco's ``engine`` section. ``auto`` starts as modern_ebpf with the options of both kernel drivers; the
    loader's fragment then names the driver it chose on the node."""
    kind = "modern_ebpf" if engine.kind == "auto" else engine.kind
    config: dict[str, Any] = {"kind": kind}
    common = {"buf_size_preset": engine.buf_size_preset, "drop_failed_exit": engine.drop_failed_exit}
    sections = {"modern_ebpf": {**common, "cpus_for_each_buffer": engine.cpus_for_each_buffer}, "kmod": common}
    wanted = {"modern_ebpf": ("modern_ebpf",), "kmod": ("kmod",), "auto": ("modern_ebpf", "kmod"), "nodriver": ()}
    for section in wanted[engine.kind]:
        options = {key: value for key, value in sections[section].items() if value is not None}
        if options:
            config[section] = options
    return config


def rules_files(image_defaults: bool) -> list[str]:
    """The image's rules first, as Falco orders them, then the artifacts' directory."""
    return [IMAGE_RULES_FILE, RULES_DIR] if image_defaults else [RULES_DIR]


def config_files(image_defaults: bool, driver_fragment: bool = False) -> list[Any]:
    """The agent's fragments; with ``imageDefaults`` also the one by which the agent drops the image's rules when a
    Rulesfile delivers Falco's own (``falco-rules``): Falco appends a fragment's lists to the main config's unless
    the fragment is listed with ``strategy: override``, and skips a listed file that does not exist. With
    ``driver_fragment`` (engine ``auto``) first the driver loader's choice."""
    files: list[Any] = [DRIVER_CONFIG_FILE] if driver_fragment else []
    files.append(CONFIG_DIR)
    if image_defaults:
        files.append({"path": f"{CONFIG_DIR}/{DEFAULT_RULES_CONFIG_FILE}", "strategy": "override"})
    return files


def base_config(engine: Engine, image_defaults: bool = False) -> dict[str, Any]:
    return {
        "config_files": config_files(image_defaults, driver_fragment=engine.kind == "auto"),
        "rules_files": rules_files(image_defaults),
        "watch_config_files": True,
        "engine": engine_config(engine),
        "load_plugins": [],
        "plugins": [],
        "stdout_output": {"enabled": True},
        "json_output": False,
        # Falco logs to syslog only by default, and a container has none: `kubectl logs` would show nothing of
        # its start, its reloads or a refused rules file.
        "log_stderr": True,
        "log_syslog": False,
        "log_level": "info",
        "webserver": {
            "enabled": True,
            "listen_port": WEB_PORT,
            "k8s_healthz_endpoint": "/healthz",
            "prometheus_metrics_enabled": True,
            "ssl_enabled": False,
        },
        "metrics": {
            "enabled": True,
            "interval": "1m",
            "output_rule": False,
            "rules_counters_enabled": True,
            "resource_utilization_enabled": True,
            "state_counters_enabled": True,
            "kernel_event_counters_enabled": True,
            "libbpf_stats_enabled": True,
            "convert_memory_to_mb": True,
            "include_empty_values": False,
        },
    }


def render(config: dict[str, Any]) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    buffer = io.StringIO()
    yaml.dump(config, buffer)
    return buffer.getvalue()


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
