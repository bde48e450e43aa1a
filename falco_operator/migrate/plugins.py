"""Plugin objects for the plugins the chart's falco.yaml loads: ``falco.plugins`` filtered by ``load_plugins``,
plus the container plugin (``collectors.containerEngine``) and k8smeta (``collectors.kubernetes``) the chart adds."""

from __future__ import annotations

import copy
from typing import Any

from .chart_defaults import APP_VERSION
from .falcoctl import Source
from .findings import Context, Finding
from .naming import object_name
from .refs import RULES_DEPENDENCIES, UnresolvedRef, resolve

Json = dict[str, Any]
CONTAINER = "container"
K8SMETA = "k8smeta"
IMAGE_LIBRARIES = {CONTAINER: "libcontainer.so"}
"""Plugin libraries the Falco image ships in /usr/share/falco/plugins (Falco 0.44: the container plugin only)."""
CONTAINER_ENGINES = ("docker", "podman", "containerd", "cri", "lxc", "libvirt_lxc", "bpm")
"""The order in which the chart mounts the engines' sockets."""
METACOLLECTOR_PORT = 45000
"""The k8s-metacollector chart's gRPC broker port, the chart's default for collectors.kubernetes.collectorPort."""


def chart_plugin_entries(context: Context) -> list[Json]:
    """The plugin entries the chart's falco.yaml loads, in load order, as the chart renders them."""
    plugins: list[Json] = [copy.deepcopy(p) for p in context.get("falco.plugins") or [] if isinstance(p, dict)]
    load: list[str] = [str(name) for name in context.get("falco.load_plugins") or []]
    names = {str(p.get("name")) for p in plugins}
    driver = bool(context.get("driver.enabled"))
    if driver and context.get("collectors.kubernetes.enabled") and K8SMETA not in names:
        plugins.append(_k8smeta_entry(context))
        load.append(K8SMETA)
    engines = context.get("collectors.enabled") and context.get("collectors.containerEngine.enabled")
    if driver and engines and CONTAINER not in names:
        plugins.append(_container_entry(context))
        load.append(CONTAINER)
    loaded: list[Json] = []
    for name in dict.fromkeys(load):
        entry = next((p for p in plugins if str(p.get("name")) == name), None)
        if entry is None:
            context.unmapped(
                "falco.load_plugins",
                f"{name!r} is not configured in falco.plugins: Falco refuses to start with such a configuration",
            )
            continue
        loaded.append(entry)
    return loaded


def _container_entry(context: Context) -> Json:
    engine = context.get("collectors.containerEngine") or {}
    init = {
        "label_max_len": engine.get("labelMaxLen"),
        "with_size": engine.get("withSize"),
        "hooks": engine.get("hooks"),
        "engines": engine.get("engines"),
    }
    return {"name": CONTAINER, "library_path": "libcontainer.so", "init_config": init}


def _k8smeta_entry(context: Context) -> Json:
    kubernetes = context.get("collectors.kubernetes") or {}
    hostname = kubernetes.get("collectorHostname") or metacollector_host(context.release, context.namespace)
    port = int(kubernetes.get("collectorPort") or METACOLLECTOR_PORT)
    init = {
        "collectorHostname": hostname,
        "collectorPort": port,
        "nodeName": "${FALCO_K8S_NODE_NAME}",
        "verbosity": kubernetes.get("verbosity"),
        "hostProc": kubernetes.get("hostProc"),
    }
    return {"name": K8SMETA, "library_path": "libk8smeta.so", "init_config": init}


def metacollector_host(release: str, namespace: str) -> str:
    name = "k8s-metacollector"
    service = release if name in release else f"{release}-{name}"
    return f"{service[:63].rstrip('-')}.{namespace}.svc"


def plugin_manifests(context: Context, sources: dict[str, Source]) -> list[Json]:
    """A Plugin per loaded plugin: its falco.yaml entry, its library from a falcoctl reference (or the image)."""
    context.handle(
        "falco.plugins",
        "falco.load_plugins",
        "collectors.enabled",
        "collectors.containerEngine",
        "collectors.kubernetes",
    )
    if context.get("collectors.kubernetes.enabled") and context.get("driver.enabled"):
        context.findings.append(_metacollector_finding(context))
    manifests = []
    for entry in chart_plugin_entries(context):
        name = str(entry.get("name"))
        spec: Json = {}
        oci = _library_source(context, name, sources)
        if oci is not None:
            spec["ociArtifact"] = oci
        spec["config"] = _config(entry)
        manifests.append(_plugin(context, name, spec))
    return manifests


def _config(entry: Json) -> Json:
    config: Json = {"name": str(entry.get("name"))}
    if entry.get("library_path") is not None:
        config["libraryPath"] = str(entry["library_path"])
    if "init_config" in entry:
        config["initConfig"] = entry["init_config"]
    if entry.get("open_params") is not None:
        config["openParams"] = str(entry["open_params"])
    return config


def _library_source(context: Context, name: str, sources: dict[str, Source]) -> Json | None:
    """Where the plugin's library comes from: a falcoctl reference, the pluginRef the chart adds, a dependency
    falcoctl resolves, or the image (None)."""
    if name in sources and sources[name].artifact.type == "plugin":
        return sources[name].oci()
    chart_ref = {CONTAINER: "collectors.containerEngine.pluginRef", K8SMETA: "collectors.kubernetes.pluginRef"}
    if name in chart_ref:
        path = chart_ref[name]
        image_version = context.get("image.tag") or APP_VERSION
        if name in IMAGE_LIBRARIES and not context.changed(path) and image_version == APP_VERSION:
            # The chart's default pluginRef is the version the Falco image of the chart's appVersion ships.
            return None
        try:
            return {"reference": resolve(str(context.get(path))).reference}
        except UnresolvedRef as error:
            context.unmapped(path, str(error))
            return None
    for rules, dependencies in RULES_DEPENDENCIES.items():
        for dependency, tag in dependencies:
            if dependency == name and rules in sources and context.get("falcoctl.config.artifact.install.resolveDeps"):
                return {"reference": resolve(f"{dependency}:{tag}").reference}
    if name not in IMAGE_LIBRARIES:
        context.unmapped(
            f"falco.plugins.{name}",
            f"no falcoctl reference installs this plugin and the Falco "
            f"{APP_VERSION} image ships only {', '.join(IMAGE_LIBRARIES.values())}: add its "
            "ociArtifact to the Plugin",
        )
    return None


def _metacollector_finding(context: Context) -> Finding:
    return Finding(
        "collectors.kubernetes.enabled",
        "the chart also installs the k8s-metacollector chart, the "
        "operator does not: install it, the k8smeta Plugin connects to "
        f"{metacollector_host(context.release, context.namespace)}",
    )


def _plugin(context: Context, name: str, spec: Json) -> Json:
    return {
        "apiVersion": "artifact.falcosecurity.dev/v1alpha1",
        "kind": "Plugin",
        "metadata": {"name": object_name(name), "namespace": context.namespace},
        "spec": spec,
    }


def container_sockets(context: Context) -> list[str]:
    """The host sockets of the enabled container engines the chart mounts (under /host) for the container plugin."""
    entries = chart_plugin_entries_quiet(context)
    if not any(str(e.get("name")) == CONTAINER for e in entries):
        return []
    engines = context.get("collectors.containerEngine.engines") or {}
    sockets: list[str] = []
    for engine in CONTAINER_ENGINES:
        settings = engines.get(engine) or {}
        if settings.get("enabled"):
            sockets += [str(s) for s in settings.get("sockets") or [] if str(s) not in sockets]
    return sockets


def chart_plugin_entries_quiet(context: Context) -> list[Json]:
    """``chart_plugin_entries`` without recording findings."""
    quiet = Context(context.values, context.release, context.name, context.namespace)
    return chart_plugin_entries(quiet)
