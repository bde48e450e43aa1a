"""The generated pod template: the falco container, the artifact agent sidecar, the driver loader, the copy of the
image's defaults, volumes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api import Falco
from ..api.falco import KERNEL_ENGINES, EngineKind
from ..wiring.render import K8SMETA_CA_DIR, CASource
from .falcoconfig import CONFIG_DIR, DRIVER_CONFIG_DIR, IMAGE_RULES_FILE, PLUGINS_DIR, RULES_DIR, WEB_PORT
from .naming import CONFIG_HASH_ANNOTATION, selector_labels
from .options import DRIVER_LOADER_REPOSITORY, FALCO_IMAGE_REPOSITORY, BuildOptions
from .registries import registry_agent_args, registry_ca_mount, registry_ca_volume
from .version import falco_version, reported_version

Json = dict[str, Any]
FALCO_CONTAINER = "falco"
AGENT_CONTAINER = "artifact-operator"
AGENT_UID = 65532
AGENT_INTERPRETER_ENV = {"PYTHONOPTIMIZE": "2"}
"""How the agent's Python runs (as ``python -OO``): without docstrings and asserts, about 1 MiB less resident; the
image carries bytecode compiled at that level (Containerfile), so nothing is compiled when the agent starts."""
DRIVER_LOADER_CONTAINER = "driver-loader"
IMAGE_DEFAULTS_CONTAINER = "image-defaults"
RESERVED_CONTAINERS = (FALCO_CONTAINER, AGENT_CONTAINER, DRIVER_LOADER_CONTAINER, IMAGE_DEFAULTS_CONTAINER)
# imageDefaults: an init container copies the image's rules into this emptyDir, the agent reads them from it.
K8SMETA_CA_VOLUME = "k8smeta-ca"
IMAGE_DEFAULTS_VOLUME = "image-defaults"
IMAGE_DEFAULTS_COPY_DIR = "/image-defaults"
IMAGE_DEFAULTS_AGENT_DIR = "/etc/falco/image-defaults"
AGENT_PORT = 8081
# Canonical quantities, as the API server writes them back, so an unchanged spec compares equal.
DEFAULT_FALCO_RESOURCES: Json = {
    "requests": {"cpu": "100m", "memory": "512Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}
CONTROL_PLANE_TOLERATIONS: tuple[Json, ...] = (
    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"},
)
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class HostMount:
    volume: str
    host_path: str
    mount_path: str
    read_only: bool

    def mount(self) -> Json:
        return _mount(self.volume, self.mount_path, self.read_only)


PROC = HostMount("proc-fs", "/proc", "/host/proc", True)
ETC = HostMount("etc-fs", "/etc", "/host/etc", True)
BOOT = HostMount("boot-fs", "/boot", "/host/boot", True)
USR = HostMount("usr-fs", "/usr", "/host/usr", True)
LIB_MODULES = HostMount("lib-modules", "/lib/modules", "/host/lib/modules", False)
DEV = HostMount("dev-fs", "/dev", "/host/dev", True)
SYS_MODULE = HostMount("sys-module", "/sys/module", "/sys/module", False)
SYS_KERNEL = HostMount("sys-kernel", "/sys/kernel", "/sys/kernel", True)
# The container engines' sockets, for the container plugin (and the directories they live in).
RUNTIME_SOCKETS = (
    HostMount("var-run", "/var/run", "/host/var/run", False),
    HostMount("containerd-run", "/run/containerd", "/host/run/containerd", False),
    HostMount("crio-run", "/run/crio", "/host/run/crio", False),
    HostMount("host-containerd-run", "/run/host-containerd", "/host/run/host-containerd", False),
    HostMount("k3s-containerd-run", "/run/k3s/containerd", "/host/run/k3s/containerd", False),
)
LOADER_MOUNTS = (PROC, BOOT, LIB_MODULES, USR, ETC)
"""What the driver loader reads to find (or build) the kernel module for the node's kernel."""
LEAST_PRIVILEGED_CAPABILITIES = ("BPF", "SYS_RESOURCE", "PERFMON", "SYS_PTRACE")
"""What modern_ebpf needs instead of privileged: load BPF programs and maps, raise the locked-memory limit, attach
to perf events, read other processes' /proc entries."""
# With engine auto the driver loader writes the engine it chose into a fragment Falco reads (see falcoconfig).
DRIVER_CONFIG_VOLUME = "driver-config"
LOADER_CONFIG_DIR = "/etc/falco/config.d"


def falco_host_mounts(kind: EngineKind) -> tuple[HostMount, ...]:
    """The host paths the falco container sees, per engine: /proc and /etc for every kernel engine, the runtimes'
    sockets, /sys/kernel for the eBPF programs (modern_ebpf, auto), /dev and /sys/module for the kernel module (kmod,
    auto). Nothing with nodriver."""
    if kind not in KERNEL_ENGINES:
        return ()
    mounts = [PROC, ETC, *RUNTIME_SOCKETS]
    if kind in ("modern_ebpf", "auto"):
        mounts.append(SYS_KERNEL)
    if kind in ("kmod", "auto"):
        mounts += [DEV, SYS_MODULE]
    return tuple(mounts)


def uses_driver_loader(kind: EngineKind) -> bool:
    """kmod and auto need a kernel module built or downloaded for the node's kernel; modern_ebpf is in Falco."""
    return kind in ("kmod", "auto")


# Shared with the agent: it writes, Falco reads and hot-reloads.
SHARED_DIRS: tuple[tuple[str, str], ...] = (("rules-d", RULES_DIR), ("config-d", CONFIG_DIR), ("plugins", PLUGINS_DIR))
DRIVER_MOUNTS = ("boot-fs", "lib-modules", "usr-fs", "proc-fs", "etc-fs", "dev-fs")


def user_container(falco: Falco, name: str) -> Json | None:
    """The user's override of container ``name`` (among containers or initContainers), if any."""
    spec = (falco.spec.pod_template_spec or {}).get("spec") or {}
    for field in ("containers", "initContainers"):
        for container in spec.get(field) or []:
            if isinstance(container, dict) and container.get("name") == name:
                return container
    return None


def resolved_version(falco: Falco, options: BuildOptions) -> str:
    image = (user_container(falco, FALCO_CONTAINER) or {}).get("image")
    return falco_version(image, falco.spec.version, options.default_falco_version)


def status_version(falco: Falco, options: BuildOptions) -> str:
    """The version in the Falco's status: the image's digest when it is pinned by digest alone."""
    image = (user_container(falco, FALCO_CONTAINER) or {}).get("image")
    return reported_version(image, falco.spec.version, options.default_falco_version)


def needs_host_access(falco: Falco) -> bool:
    """Every engine but ``nodriver`` watches the kernel: with the host mounted."""
    return falco.spec.engine_kind in KERNEL_ENGINES


def falco_security_context(falco: Falco) -> Json | None:
    """Privileged for a kernel engine, but for modern_ebpf in least-privileged mode: its capabilities and an
    unconfined AppArmor profile (the runtime's default profile denies BPF). None with nodriver."""
    engine = falco.spec.effective_engine
    if engine.kind not in KERNEL_ENGINES:
        return None
    if engine.kind == "modern_ebpf" and engine.least_privileged:
        return {
            "capabilities": {"add": list(LEAST_PRIVILEGED_CAPABILITIES)},
            "appArmorProfile": {"type": "Unconfined"},
        }
    return {"privileged": True}


def _mount(name: str, path: str, read_only: bool) -> Json:
    return {"name": name, "mountPath": path, "readOnly": True} if read_only else {"name": name, "mountPath": path}


def _field_env(name: str, path: str) -> Json:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _http_probe(path: str, port: int, period: int, failure_threshold: int = 3) -> Json:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failure_threshold}


def falco_container(falco: Falco, options: BuildOptions) -> Json:
    version = resolved_version(falco, options)
    host = needs_host_access(falco)
    mounts: list[Json] = [{"name": name, "mountPath": path} for name, path in SHARED_DIRS]
    mounts += [
        {"name": "root-falco", "mountPath": "/root/.falco"},
        {"name": "falco-yaml", "mountPath": "/etc/falco/falco.yaml", "subPath": "falco.yaml", "readOnly": True},
    ]
    kind = falco.spec.engine_kind
    mounts += [host_mount.mount() for host_mount in falco_host_mounts(kind)]
    if kind == "auto":
        mounts.append(_mount(DRIVER_CONFIG_VOLUME, DRIVER_CONFIG_DIR, True))
    container: Json = {
        "name": FALCO_CONTAINER,
        "image": f"{FALCO_IMAGE_REPOSITORY}:{version}",
        "args": ["/usr/bin/falco"],
        "env": [
            # Falco reads the host's /proc under HOST_ROOT; without the host mounts that is its own /proc. Set empty,
            # not left out: the official image sets HOST_ROOT=/host itself, and Falco exits when /host/proc is absent.
            {"name": "HOST_ROOT", "value": "/host" if host else ""},
            _field_env("FALCO_HOSTNAME", "spec.nodeName"),
            _field_env("FALCO_K8S_NODE_NAME", "spec.nodeName"),
        ],
        "ports": [{"name": "web", "containerPort": WEB_PORT, "protocol": "TCP"}],
        "resources": falco.spec.resources or DEFAULT_FALCO_RESOURCES,
        "startupProbe": _http_probe("/healthz", WEB_PORT, 5, 20),
        "livenessProbe": _http_probe("/healthz", WEB_PORT, 15),
        "readinessProbe": _http_probe("/healthz", WEB_PORT, 15),
        "volumeMounts": mounts,
    }
    security_context = falco_security_context(falco)
    if security_context:
        container["securityContext"] = security_context
    return container


def restricted_security_context() -> Json:
    """The agent's user, no privilege, no capability, a read-only root filesystem (Pod Security "restricted")."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": AGENT_UID,
        "runAsGroup": AGENT_UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def agent_container(falco: Falco, options: BuildOptions) -> Json:
    name = falco.metadata.name or ""
    container: Json = {
        "name": AGENT_CONTAINER,
        "image": options.agent_image,
        "command": ["falco-artifact-agent"],
        "env": [
            _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace"),
            _field_env("POD_UID", "metadata.uid"),
            _field_env("NODE_NAME", "spec.nodeName"),
            {"name": "FALCO_INSTANCE", "value": name},
            *({"name": key, "value": value} for key, value in AGENT_INTERPRETER_ENV.items()),
        ],
        "ports": [{"name": "agent-probes", "containerPort": AGENT_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "readinessProbe": _http_probe("/readyz", AGENT_PORT, 10),
        "livenessProbe": _http_probe("/healthz", AGENT_PORT, 20),
        # The agent needs no privilege: it talks to the API server and writes into the pod's emptyDirs.
        "securityContext": restricted_security_context(),
        "volumeMounts": [{"name": n, "mountPath": p} for n, p in SHARED_DIRS]
        + [{"name": "agent-token", "mountPath": TOKEN_PATH, "readOnly": True}],
    }
    args: list[str] = []
    if options.allow_private_registries:
        args.append("--allow-private-registries")
    if falco.spec.loads_image_defaults:
        args.append(f"--image-defaults-dir={IMAGE_DEFAULTS_AGENT_DIR}")
        container["volumeMounts"].append(_mount(IMAGE_DEFAULTS_VOLUME, IMAGE_DEFAULTS_AGENT_DIR, True))
    args += registry_agent_args(falco)
    if registry_ca_volume(falco) is not None:
        container["volumeMounts"].append(registry_ca_mount())
    if args:
        container["args"] = args
    if options.native_sidecar:
        # Falco starts only once the agent has materialized every artifact (its /readyz).
        container["restartPolicy"] = "Always"
        container["startupProbe"] = _http_probe("/readyz", AGENT_PORT, 2, 150)
    return container


def driver_loader_container(falco: Falco, options: BuildOptions) -> Json:
    """Finds (downloads or builds) and loads the kernel module. With ``auto`` it first picks the driver for the node
    and writes its choice where Falco reads it; with ``kmod`` the engine is set already, so it writes nothing."""
    version = resolved_version(falco, options)
    kind = falco.spec.engine_kind
    mounts: list[Json] = [{"name": "root-falco", "mountPath": "/root/.falco"}] + [m.mount() for m in LOADER_MOUNTS]
    env: list[Json] = [{"name": "HOST_ROOT", "value": "/host"}]
    if kind == "auto":
        # falcoctl reads engine.kind of /etc/falco/falco.yaml (it writes only for a Falco set to a kernel driver) and
        # writes config.d/ next to it: our falco.yaml, and an emptyDir of its own that Falco mounts read-only.
        mounts += [
            {"name": "falco-yaml", "mountPath": "/etc/falco/falco.yaml", "subPath": "falco.yaml", "readOnly": True},
            _mount(DRIVER_CONFIG_VOLUME, LOADER_CONFIG_DIR, False),
        ]
    else:
        env.append({"name": "FALCOCTL_DRIVER_CONFIG_UPDATE_FALCO", "value": "false"})
    return {
        "name": DRIVER_LOADER_CONTAINER,
        "image": f"{DRIVER_LOADER_REPOSITORY}:{version}",
        "args": [kind],
        "env": env,
        "securityContext": {"privileged": True},
        "volumeMounts": mounts,
    }


def falco_image(falco: Falco, options: BuildOptions) -> Json:
    """The falco container's image as the merged template will have it (a user's override wins), with the user's
    pull policy if they set one."""
    override = user_container(falco, FALCO_CONTAINER) or {}
    image: Json = {"image": override.get("image") or f"{FALCO_IMAGE_REPOSITORY}:{resolved_version(falco, options)}"}
    if override.get("imagePullPolicy"):
        image["imagePullPolicy"] = override["imagePullPolicy"]
    return image


def image_defaults_container(falco: Falco, options: BuildOptions) -> Json:
    """Copies the Falco image's default rules where the agent sees them: the agent checks every set Falco will load,
    and rules of artifacts may use the macros and lists of the image's rules."""
    rules_name = IMAGE_RULES_FILE.rsplit("/", 1)[-1]
    return {
        "name": IMAGE_DEFAULTS_CONTAINER,
        **falco_image(falco, options),
        "command": ["/bin/sh", "-c", f"cp {IMAGE_RULES_FILE} {IMAGE_DEFAULTS_COPY_DIR}/{rules_name}"],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
        # cp needs no privilege: the image's rules are world-readable and an emptyDir is world-writable. The agent's
        # user, so the copy is the agent's own file.
        "securityContext": restricted_security_context(),
        "volumeMounts": [_mount(IMAGE_DEFAULTS_VOLUME, IMAGE_DEFAULTS_COPY_DIR, False)],
    }


def volumes(falco: Falco) -> list[Json]:
    name = falco.metadata.name or ""
    result: list[Json] = [{"name": n, "emptyDir": {}} for n, _ in SHARED_DIRS]
    result += [
        {"name": "root-falco", "emptyDir": {}},
        {"name": "falco-yaml", "configMap": {"name": name, "items": [{"key": "falco.yaml", "path": "falco.yaml"}]}},
        {
            "name": "agent-token",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                                 "fieldPath": "metadata.namespace"}}]}},
                ]
            },
        },
    ]  # fmt: skip
    if falco.spec.loads_image_defaults:
        result.append({"name": IMAGE_DEFAULTS_VOLUME, "emptyDir": {}})
    registry_ca = registry_ca_volume(falco)
    if registry_ca is not None:
        result.append(registry_ca)
    kind = falco.spec.engine_kind
    if kind == "auto":
        result.append({"name": DRIVER_CONFIG_VOLUME, "emptyDir": {}})
    host_mounts = list(falco_host_mounts(kind))
    if uses_driver_loader(kind):
        host_mounts += [m for m in LOADER_MOUNTS if m not in host_mounts]
    result += [{"name": m.volume, "hostPath": {"path": m.host_path}} for m in host_mounts]
    return result


def scheduling(falco: Falco) -> Json:
    """Where the pods run: the spec's scheduling fields, and by default a DaemonSet on control-plane nodes too."""
    fields: Json = {}
    if falco.spec.tolerations is not None:
        if falco.spec.tolerations:
            fields["tolerations"] = falco.spec.tolerations
    elif falco.spec.workload_type == "DaemonSet":
        fields["tolerations"] = list(CONTROL_PLANE_TOLERATIONS)
    if falco.spec.node_selector:
        fields["nodeSelector"] = falco.spec.node_selector
    if falco.spec.affinity:
        fields["affinity"] = falco.spec.affinity
    if falco.spec.priority_class_name:
        fields["priorityClassName"] = falco.spec.priority_class_name
    return fields


def k8smeta_ca_volume(source: CASource) -> Json:
    """The metacollector's CA bundle as a volume of the pod (one file, ``ca.crt``)."""
    items = [{"key": source.key, "path": "ca.crt"}]
    if source.kind == "secret":
        return {"name": K8SMETA_CA_VOLUME, "secret": {"secretName": source.name, "items": items}}
    return {"name": K8SMETA_CA_VOLUME, "configMap": {"name": source.name, "items": items}}


def default_pod_template(
    falco: Falco, options: BuildOptions, config_hash: str, k8smeta_ca: CASource | None = None
) -> Json:
    """The template before the user's ``podTemplateSpec`` is merged over it."""
    name = falco.metadata.name or ""
    init_containers: list[Json] = []
    if uses_driver_loader(falco.spec.engine_kind):
        init_containers.append(driver_loader_container(falco, options))
    if falco.spec.loads_image_defaults:
        # Before the agent: a native sidecar starts in order, and it checks artifacts against the image's rules.
        init_containers.append(image_defaults_container(falco, options))
    containers = [falco_container(falco, options)]
    volume_list = volumes(falco)
    if k8smeta_ca is not None:
        volume_list.append(k8smeta_ca_volume(k8smeta_ca))
        containers[0]["volumeMounts"].append(_mount(K8SMETA_CA_VOLUME, K8SMETA_CA_DIR, True))
    if options.native_sidecar:
        init_containers.append(agent_container(falco, options))
    else:
        containers.append(agent_container(falco, options))
    spec: Json = {
        "serviceAccountName": name,
        # Only the agent gets API credentials (a projected token); the falco process holds none.
        "automountServiceAccountToken": False,
        "containers": containers,
        "volumes": volume_list,
    }
    if init_containers:
        spec["initContainers"] = init_containers
    spec.update(scheduling(falco))
    return {
        "metadata": {"labels": selector_labels(name), "annotations": {CONFIG_HASH_ANNOTATION: config_hash}},
        "spec": spec,
    }
