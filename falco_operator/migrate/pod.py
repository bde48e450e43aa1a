"""The chart's pod settings the Falco's first-class fields do not cover -> ``spec.podTemplateSpec`` (merged over
the operator's pod: containers, volumes and env by name, volume mounts by path, the rest key by key)."""

from __future__ import annotations

import json
from typing import Any

from ..instance.options import FALCO_IMAGE_REPOSITORY
from ..instance.podtemplate import DRIVER_LOADER_CONTAINER, FALCO_CONTAINER, RUNTIME_SOCKETS
from .chart_defaults import APP_VERSION
from .engine import engine_kind
from .findings import Context, Finding
from .plugins import container_sockets

Json = dict[str, Any]
TEMPLATED = "a Helm template ({{ }}) is rendered by Helm only: write the value out"
PROBES = {"startupProbe": "startupProbe", "livenessProbe": "livenessProbe", "readinessProbe": "readinessProbe"}


class PodOverlay:
    """A podTemplateSpec built up field by field."""

    def __init__(self) -> None:
        self.template: Json = {}

    def spec(self) -> Json:
        spec: Json = self.template.setdefault("spec", {})
        return spec

    def metadata(self) -> Json:
        metadata: Json = self.template.setdefault("metadata", {})
        return metadata

    def container(self, name: str, field: str = "containers") -> Json:
        containers: list[Json] = self.spec().setdefault(field, [])
        for container in containers:
            if container["name"] == name:
                return container
        containers.append({"name": name})
        return containers[-1]

    def volume(self, volume: Json) -> None:
        self.spec().setdefault("volumes", []).append(volume)

    def mount(self, mount: Json) -> None:
        self.container(FALCO_CONTAINER).setdefault("volumeMounts", []).append(mount)


def pod_template(context: Context) -> Json:
    pod = PodOverlay()
    _image(context, pod)
    _pod_fields(context, pod)
    _falco_container(context, pod)
    _extra(context, pod)
    _certs(context, pod)
    _sockets(context, pod)
    _driver_loader(context, pod)
    return pod.template


def _templated(value: Any) -> bool:
    return "{{" in json.dumps(value)


def _image(context: Context, pod: PodOverlay) -> None:
    context.handle("image")
    registry, repository = context.get("image.registry"), context.get("image.repository")
    image = f"{registry}/{repository}" if registry else str(repository)
    if image != FALCO_IMAGE_REPOSITORY:
        pod.container(FALCO_CONTAINER)["image"] = f"{image}:{context.get('image.tag') or APP_VERSION}"
    if context.changed("image.pullPolicy"):
        pod.container(FALCO_CONTAINER)["imagePullPolicy"] = context.get("image.pullPolicy")


def _pod_fields(context: Context, pod: PodOverlay) -> None:
    context.handle(
        "imagePullSecrets", "podAnnotations", "podLabels", "podSecurityContext", "falco.podHostname", "podHostname"
    )
    secrets = context.get("imagePullSecrets") or []
    if secrets:
        pod.spec()["imagePullSecrets"] = [s if isinstance(s, dict) else {"name": str(s)} for s in secrets]
    if context.get("podAnnotations"):
        pod.metadata()["annotations"] = context.get("podAnnotations")
    if context.get("podLabels"):
        pod.metadata()["labels"] = context.get("podLabels")
    if context.get("podSecurityContext"):
        pod.spec()["securityContext"] = context.get("podSecurityContext")
    if context.get("falco.podHostname"):
        pod.spec()["hostname"] = context.get("falco.podHostname")
    if context.get("podHostname"):
        context.unmapped(
            "podHostname", "the chart's pod template reads falco.podHostname, not podHostname: ignored, as by the chart"
        )


def _falco_container(context: Context, pod: PodOverlay) -> None:
    context.handle("containerSecurityContext", "healthChecks", "tty")
    if context.get("containerSecurityContext"):
        pod.container(FALCO_CONTAINER)["securityContext"] = context.get("containerSecurityContext")
        context.findings.append(_security_context_note())
    for probe in PROBES:
        if context.changed(f"healthChecks.{probe}"):
            pod.container(FALCO_CONTAINER)[PROBES[probe]] = dict(context.get(f"healthChecks.{probe}"))
    if context.get("tty"):
        pod.container(FALCO_CONTAINER)["tty"] = True
    context.unmapped_if_changed("falcoHostnameEnv", "the operator always sets FALCO_HOSTNAME to the node's name")


def _security_context_note() -> Finding:
    return Finding(
        "containerSecurityContext",
        "the chart replaces the falco container's securityContext with it; "
        "podTemplateSpec merges it over the operator's (privileged stays unless it sets privileged: false)",
    )


def _extra(context: Context, pod: PodOverlay) -> None:
    context.handle("extra", "mounts")
    for path, value in (
        ("extra.env", context.get("extra.env")),
        ("extra.initContainers", context.get("extra.initContainers")),
    ):
        if value and _templated(value):
            context.unmapped(path, TEMPLATED)
    env = context.get("extra.env") or []
    if env and not _templated(env):
        pod.container(FALCO_CONTAINER)["env"] = env
    args = context.get("extra.args") or []
    if args:
        pod.container(FALCO_CONTAINER)["args"] = ["/usr/bin/falco", *[str(a) for a in args]]
    init = context.get("extra.initContainers") or []
    if init and not _templated(init):
        pod.spec().setdefault("initContainers", []).extend(init)
    for volume in context.get("mounts.volumes") or []:
        pod.volume(volume)
    for mount in context.get("mounts.volumeMounts") or []:
        pod.mount(mount)


def _certs(context: Context, pod: PodOverlay) -> None:
    context.handle("certs")
    for secret_value, inline, volume, path in (
        ("existingSecret", ("server.key", "server.crt", "ca.crt"), "certs-volume", "/etc/falco/certs"),
        (
            "existingClientSecret",
            ("client.key", "client.crt", "ca.crt"),
            "client-certs-volume",
            "/etc/falco/certs/client",
        ),
    ):
        secret = context.get(f"certs.{secret_value}")
        if secret:
            pod.volume({"name": volume, "secret": {"secretName": str(secret)}})
            pod.mount({"name": volume, "mountPath": path, "readOnly": True})
            continue
        given = [key for key in inline if context.get(f"certs.{key}")]
        for key in given:
            context.unmapped(
                f"certs.{key}",
                f"migrate-helm writes no Secrets: put the certificates in a Secret "
                f"and set certs.{secret_value} (mounted at {path})",
            )


def _sockets(context: Context, pod: PodOverlay) -> None:
    """Container engines' sockets the chart mounts that the operator's host mounts do not already cover."""
    if engine_kind(context) in (None, "nodriver"):
        return
    covered = [m.host_path for m in RUNTIME_SOCKETS if m.mount_path == f"/host{m.host_path}"]
    index = 0
    for socket in container_sockets(context):
        if any(socket == root or socket.startswith(f"{root}/") for root in covered):
            continue
        name = f"container-engine-socket-{index}"
        index += 1
        pod.volume({"name": name, "hostPath": {"path": socket}})
        pod.mount({"name": name, "mountPath": f"/host{socket}"})


def _driver_loader(context: Context, pod: PodOverlay) -> None:
    context.handle("driver.loader")
    kind = engine_kind(context)
    if kind in (None, "nodriver", "modern_ebpf"):
        context.unmapped_if_changed(
            "driver.loader",
            f"the chart runs no driver loader with this driver "
            f"({context.get('driver.kind')}), and neither does the operator",
        )
        return
    if not context.get("driver.loader.enabled"):
        context.unmapped(
            "driver.loader.enabled",
            "the operator always loads the driver with its driver-loader init container for kmod and auto",
        )
    prefix = "driver.loader.initContainer"
    if (
        context.changed(f"{prefix}.image.registry")
        or context.changed(f"{prefix}.image.repository")
        or context.changed(f"{prefix}.image.tag")
    ):
        registry = context.get(f"{prefix}.image.registry")
        repository = context.get(f"{prefix}.image.repository")
        image = f"{registry}/{repository}" if registry else str(repository)
        tag = context.get(f"{prefix}.image.tag") or APP_VERSION
        pod.container(DRIVER_LOADER_CONTAINER, "initContainers")["image"] = f"{image}:{tag}"
    if context.changed(f"{prefix}.image.pullPolicy"):
        pod.container(DRIVER_LOADER_CONTAINER, "initContainers")["imagePullPolicy"] = context.get(
            f"{prefix}.image.pullPolicy"
        )
    for field in ("env", "resources", "securityContext"):
        value = context.get(f"{prefix}.{field}")
        if value and not _templated(value):
            pod.container(DRIVER_LOADER_CONTAINER, "initContainers")[field] = value
        elif value:
            context.unmapped(f"{prefix}.{field}", TEMPLATED)
    if context.get(f"{prefix}.args"):
        context.unmapped(
            f"{prefix}.args", "the operator passes the driver kind to its loader; extra arguments are not carried over"
        )
