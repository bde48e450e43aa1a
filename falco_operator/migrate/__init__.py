"""``falco-operator migrate-helm``: a values file of the falcosecurity/charts ``falco`` chart (9.x, Falco 0.44) ->
the Falco, Rulesfile, Plugin and Config objects that run the same Falco, and the values that have no equivalent.

Pure functions: values in, manifests and findings out (``migrate``); the command reads and prints (``command``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import config_manifest
from .falco import falco_manifest
from .falcoctl import falcoctl_sources
from .findings import Context, Finding, report_the_rest
from .plugins import CONTAINER, plugin_manifests
from .rules import rules_manifests
from .values import chart_values, full_name

Json = dict[str, Any]
DEFAULT_RELEASE = "falco"
DEFAULT_NAMESPACE = "falco"

__all__ = ["DEFAULT_NAMESPACE", "DEFAULT_RELEASE", "Finding", "Migration", "migrate"]


@dataclass(frozen=True)
class Migration:
    manifests: list[Json]
    """Falco first, then Config, Plugins, Rulesfiles."""
    findings: list[Finding]
    """Values the manifests do not reproduce, with the reason, sorted by value."""


def migrate(user_values: Json, release: str = DEFAULT_RELEASE, namespace: str | None = None) -> Migration:
    """The objects that give the chart's result for ``user_values`` (merged over the chart's defaults) installed
    as ``release`` in ``namespace`` (unset: the values' namespaceOverride, else ``DEFAULT_NAMESPACE``)."""
    values = chart_values(user_values)
    name = full_name(values, release)
    context = Context(values, release, name, namespace or values.get("namespaceOverride") or DEFAULT_NAMESPACE)
    context.handle("nameOverride", "fullnameOverride", "namespaceOverride")
    _reported(context)
    sources = falcoctl_sources(context)
    rules = rules_manifests(context, sources)
    plugins = plugin_manifests(context, sources)
    # imageDefaults loads the image's falco_rules.yaml (which a Rulesfile of falco-rules then replaces) and the
    # image's container plugin (which a Plugin named container replaces); only when the chart loads those rules.
    image_defaults = rules.image_rules
    if image_defaults and not any(p["spec"]["config"]["name"] == CONTAINER for p in plugins):
        context.unmapped(
            "collectors",
            "imageDefaults (for the image's default rules) also loads the image's "
            "container plugin, which these values leave out",
        )
    falco = falco_manifest(context, image_defaults)
    config = config_manifest(context, name)
    report_the_rest(context)
    manifests = [falco, *([config] if config else []), *plugins, *rules.manifests]
    return Migration(manifests, sorted(set(context.findings)))


def _reported(context: Context) -> None:
    """Values that configure what the operator does not deploy or owns itself."""
    if context.get("falcosidekick.enabled"):
        context.unmapped(
            "falcosidekick.enabled",
            "the operator does not deploy Falcosidekick (a later Component "
            "kind): install its chart; the Config sends Falco's events where the chart's would "
            "(http_output)",
        )
    wired = ("falcosidekick.enabled", "falcosidekick.fullfqdn", "falcosidekick.listenport")
    context.unmapped_if_changed(
        "falcosidekick", "configures the falcosidekick subchart, which the operator does not deploy", skip=wired
    )
    if context.get("responseActions.enabled"):
        context.unmapped("responseActions.enabled", "the operator does not deploy Falco Talon: install its chart")
    context.unmapped_if_changed(
        "responseActions",
        "configures Falco Talon, which the operator does not deploy",
        skip=("responseActions.enabled",),
    )
    context.unmapped_if_changed(
        "falco-talon", "configures the falco-talon subchart, which the operator does not deploy"
    )
    context.unmapped_if_changed(
        "k8s-metacollector", "configures the k8s-metacollector subchart, which the operator does not deploy"
    )
    context.unmapped_if_changed("serviceAccount", "the operator creates each Falco's ServiceAccount and its RBAC")
    context.unmapped_if_changed("rbac", "the operator creates each Falco's ServiceAccount and its RBAC")
    context.unmapped_if_changed("scc", "the operator creates no OpenShift SecurityContextConstraints")
