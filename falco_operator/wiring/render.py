"""What a Falco needs to use the Components it names, and whether it may have it yet (pure).

A Falco's ``spec.sidekick`` becomes a Config fragment that sends every alert as JSON to the Falcosidekick Service;
its ``spec.metacollector`` becomes a Plugin entry for the k8smeta plugin that reaches the k8s-metacollector Service.
Both are ordinary artifacts, generated per Falco: the agent delivers them, Falco hot-reloads, status counts them.

A reference is wired only once its Component exists in the Falco's namespace, has the type the reference needs
and is Available; until then nothing is rendered for it (never a half-applied configuration). A wiring rendered
before stays while its Component is only unavailable for a while (a sidekick restarting): Falco keeps sending
there and alerts flow again as soon as it is back, instead of two reloads and alerts lost to stdout in between.
A deleted Component, one of another type, or a removed reference takes the wiring away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..api.component import ComponentType

Json = dict[str, Any]
Role = Literal["sidekick", "metacollector"]
ROLES: tuple[Role, ...] = ("sidekick", "metacollector")
NEEDED_TYPE: dict[Role, ComponentType] = {"sidekick": "falcosidekick", "metacollector": "metacollector"}
SIDEKICK_PORT = 2801
METACOLLECTOR_PORT = 45000
K8SMETA = "k8smeta"
K8SMETA_LIBRARY = "libk8smeta.so"
"""Relative: Falco loads it from its image's plugins directory (``/usr/share/falco/plugins``)."""
NODE_NAME = "${FALCO_K8S_NODE_NAME}"
"""The falco container's node name from the downward API; Falco expands ``${VAR}`` in config values (and k8smeta
expands it in ``nodeName`` itself)."""
CONFIG_PRIORITY = 60
"""After users' Configs of the default priority (50): a Falco that names a sidekick sends JSON alerts to it even when
another Config sets ``json_output: false``; a Config of a higher priority can still change ``http_output``."""
WIRING_LABEL = "instance.falcosecurity.dev/wiring"
"""On a generated artifact: which reference of the Falco it carries (``sidekick`` or ``metacollector``)."""
COMPONENT_LABEL = "instance.falcosecurity.dev/component"
"""On a generated artifact: the Component it points Falco at."""
CONDITION = "ComponentsReady"


def generated_name(falco: str, role: Role) -> str:
    """``<falco>-wiring-sidekick`` (a Config) or ``<falco>-wiring-metacollector`` (a Plugin)."""
    return f"{falco}-wiring-{role}"


def service_host(component: str, namespace: str) -> str:
    """The Component's Service as any pod resolves it, whatever the cluster's domain (``<name>.<namespace>.svc``)."""
    return f"{component}.{namespace}.svc"


def sidekick_url(component: str, namespace: str) -> str:
    return f"http://{service_host(component, namespace)}:{SIDEKICK_PORT}/"


def sidekick_fragment(component: str, namespace: str) -> Json:
    """The falco.yaml fragment: JSON alerts with their output text, posted to Falcosidekick. ``http_output`` replaces
    Falco's whole mapping: its other keys take Falco's defaults."""
    return {
        "json_output": True,
        "json_include_output_property": True,
        "http_output": {"enabled": True, "url": sidekick_url(component, namespace)},
    }


def k8smeta_plugin_config(component: str, namespace: str) -> Json:
    """The Plugin's ``spec.config``: the k8smeta entry (its init_config as the plugin's schema names the keys)."""
    init_config: Json = {
        "collectorHostname": service_host(component, namespace),
        "collectorPort": METACOLLECTOR_PORT,
        "nodeName": NODE_NAME,
    }
    return {"name": K8SMETA, "libraryPath": K8SMETA_LIBRARY, "initConfig": init_config}


def artifact_spec(role: Role, component: str, namespace: str) -> Json:
    if role == "sidekick":
        return {"priority": CONFIG_PRIORITY, "config": sidekick_fragment(component, namespace)}
    return {"config": k8smeta_plugin_config(component, namespace)}


@dataclass(frozen=True)
class Verdict:
    role: Role
    component: str
    ready: bool
    reason: str
    message: str
    keep: bool = False
    """Not ready, but a wiring rendered before stays (the Component is there, only not Available now)."""


def _available(component: Json) -> tuple[bool, str]:
    for condition in (component.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Available":
            detail = condition.get("message") or condition.get("reason") or ""
            return condition.get("status") == "True", str(detail)
    return False, "it has no Available condition yet"


def judge(role: Role, name: str, namespace: str, component: Json | None) -> Verdict:
    """Whether the Component a reference names can be wired now (``component``: the live object, None if absent)."""
    needed = NEEDED_TYPE[role]
    label = f"spec.{role}: Component {namespace}/{name}"
    if component is None or (component.get("metadata") or {}).get("deletionTimestamp"):
        return Verdict(role, name, False, "ComponentNotFound", f"{label} does not exist")
    kind = ((component.get("spec") or {}).get("component") or {}).get("type")
    if kind != needed:
        return Verdict(role, name, False, "WrongComponentType", f"{label} is of type {kind}, not {needed}")
    if role == "metacollector" and ((component.get("spec") or {}).get("metacollector") or {}).get("tls"):
        message = (f"{label} serves TLS; the operator cannot wire it yet (k8smeta's caPEMBundle is a file in the "
                   "Falco pod, which the operator does not mount): nothing is delivered")  # fmt: skip
        return Verdict(role, name, False, "TLSNotSupported", message)
    available, detail = _available(component)
    if not available:
        message = f"{label} is not Available ({detail})"
        return Verdict(role, name, False, "ComponentNotAvailable", message, keep=True)
    if role == "sidekick":
        message = f"{label}: alerts go as JSON to {sidekick_url(name, namespace)}"
    else:
        host = service_host(name, namespace)
        message = f"{label}: plugin {K8SMETA} reads metadata from {host}:{METACOLLECTOR_PORT}"
    return Verdict(role, name, True, "Wired", message)


def condition(verdicts: list[Verdict], generation: int, kept: frozenset[Role] = frozenset()) -> Json | None:
    """``ComponentsReady``: True when every reference is wired; None when the Falco names no Component.
    ``kept``: the references whose earlier wiring stays while their Component is not Available."""
    if not verdicts:
        return None
    problems = [verdict for verdict in verdicts if not verdict.ready]
    shown = problems or verdicts
    message = "; ".join(
        verdict.message + (": its earlier wiring stays until it is back" if verdict.role in kept else "")
        for verdict in shown
    )
    reason = problems[0].reason if problems else "Wired"
    return {"type": CONDITION, "status": "False" if problems else "True", "reason": reason, "message": message[:4000],
            "observedGeneration": generation}  # fmt: skip
