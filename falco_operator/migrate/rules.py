"""Rulesfile objects: the rulesfiles falcoctl installs (OCI) and the chart's customRules (inline), and whether the
Falco loads the image's own default rules (``imageDefaults``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .falcoctl import Source
from .findings import Context
from .naming import object_name

Json = dict[str, Any]
DEFAULT_RULES = "falco-rules"
IMAGE_RULES_FILE = "/etc/falco/falco_rules.yaml"
RULES_DIR = "/etc/falco/rules.d"
OCI_PRIORITY = 10
"""OCI rulesfiles load first (in the order of their references, as the chart's rules_files lists them first)..."""
CUSTOM_PRIORITY = 50
"""...then customRules, which the chart mounts in /etc/falco/rules.d, the last entry of its rules_files."""


@dataclass(frozen=True)
class Rules:
    manifests: list[Json]
    image_rules: bool
    """The chart's Falco loads the image's own falco_rules.yaml (falcoctl hides it only when it installs rulesfiles)."""


def rules_manifests(context: Context, sources: dict[str, Source]) -> Rules:
    rules_files = [str(path) for path in context.get("falco.rules_files") or []]
    context.handle("falco.rules_files", "customRules")
    for path in rules_files:
        if path != "/etc/falco" and not path.startswith("/etc/falco/"):
            context.unmapped(
                "falco.rules_files",
                f"{path} is outside /etc/falco, where falcoctl and customRules put "
                "rules: deliver such files as Rulesfiles",
            )
    installs_rules = bool(
        context.get("falcoctl.artifact.install.enabled") or context.get("falcoctl.artifact.follow.enabled")
    ) and "rulesfile" in (context.get("falcoctl.config.artifact.allowedTypes") or [])
    default_listed = IMAGE_RULES_FILE in rules_files or "/etc/falco" in rules_files
    manifests: list[Json] = []
    delivers_defaults = False
    priority = OCI_PRIORITY
    for source in sources.values():
        if source.artifact.type != "rulesfile" or not installs_rules:
            continue
        if source.artifact.name == DEFAULT_RULES:
            if not default_listed:
                context.unmapped(
                    "falcoctl.config.artifact",
                    f"{DEFAULT_RULES} is installed but rules_files does not "
                    f"list {IMAGE_RULES_FILE}: Falco does not load it, so no Rulesfile is written",
                )
                continue
            delivers_defaults = True
        manifests.append(_rulesfile(context, source.artifact.name, {"ociArtifact": source.oci()}, priority))
        priority += 1
    custom = context.get("customRules") or {}
    if custom and RULES_DIR not in rules_files:
        context.unmapped(
            "customRules",
            f"rules_files does not list {RULES_DIR}: the chart's Falco does not load "
            "them; Rulesfiles are written anyway",
        )
    for file_name, content in sorted(custom.items()):
        name = object_name(str(file_name).removesuffix(".yaml").removesuffix(".yml"))
        if any(m["metadata"]["name"] == name for m in manifests):
            name = object_name(f"custom-{name}")
        manifests.append(_rulesfile(context, name, {"inlineRules": content}, CUSTOM_PRIORITY))
    image_rules = default_listed and (delivers_defaults or not installs_rules)
    return Rules(manifests, image_rules)


def _rulesfile(context: Context, name: str, source: Json, priority: int) -> Json:
    return {
        "apiVersion": "artifact.falcosecurity.dev/v1alpha1",
        "kind": "Rulesfile",
        "metadata": {"name": object_name(name), "namespace": context.namespace},
        "spec": {**source, "priority": priority},
    }
