"""The agent's identity and permissions, and the operator's own ClusterRole (one place for both).

The agent may read the artifact kinds and its own Falco, write ArtifactReports, read Nodes, watch only the
ConfigMaps and ``get`` only the Secrets that artifacts applying to its Falco reference. An RBAC rule with an empty
``resourceNames`` list grants every object of its kind, so a rule with no names is left out entirely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api import Config, Falco, Plugin, Rulesfile
from ..api.oci import Verification
from ..artifacts.audience import Audience
from ..rollout.effective import snapshot_name
from .naming import (
    OWNER_NAME_LABEL,
    OWNER_NAMESPACE_LABEL,
    cluster_object_name,
    object_labels,
    owned_metadata,
)
from .options import COMPONENT_CRD, FALCO_CRD, BuildOptions
from .servicemonitor import MONITORING_GROUP, SERVICE_MONITOR_CRD

Json = dict[str, Any]
ARTIFACT_GROUP = "artifact.falcosecurity.dev"
INSTANCE_GROUP = "instance.falcosecurity.dev"
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class References:
    configmaps: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()


def artifact_references(falco: Falco, artifacts: list[Json]) -> References:
    """ConfigMaps and Secrets named by the artifacts (raw Rulesfile/Plugin/Config objects) that apply to ``falco``,
    and by the Falco's own ``artifactVerification`` (its verification key)."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    key = _key_of(falco.spec.artifact_verification)
    if key is not None:
        (configmaps if key[0] == "ConfigMap" else secrets).add(key[1])
    falco_name, falco_labels = falco.metadata.name or "", falco.metadata.labels or {}
    for raw in artifacts:
        needs = _needs_of(raw)
        if needs is not None and needs.audience.includes_falco(falco_name, falco_labels):
            configmaps.update(needs.configmaps)
            secrets.update(needs.secrets)
    return References(tuple(sorted(configmaps)), tuple(sorted(secrets)))


@dataclass(frozen=True)
class _Needs:
    """What one artifact generation asks the agents it applies to be allowed to read."""

    audience: Audience
    configmaps: tuple[str, ...]
    secrets: tuple[str, ...]


_NEEDS: dict[tuple[str, str, str], _Needs | None] = {}
_NEEDS_KEPT = 16_384
"""Artifact generations whose needs are remembered: every Falco of a namespace reads every artifact of it at each
reconcile (500 Falcos and 1,000 Rulesfiles: half a million model reads per pass without the memo)."""


def _needs_of(raw: Json) -> _Needs | None:
    metadata = raw.get("metadata") or {}
    uid, version = metadata.get("uid"), metadata.get("resourceVersion")
    if not uid or not version:
        return _read_needs(raw)
    key = (str(raw.get("kind")), str(uid), str(version))
    if key not in _NEEDS:
        if len(_NEEDS) >= _NEEDS_KEPT:
            _NEEDS.clear()
        _NEEDS[key] = _read_needs(raw)
    return _NEEDS[key]


def _read_needs(raw: Json) -> _Needs | None:
    """None for an object of another kind, or one the API server accepted but these models cannot read."""
    kind = raw.get("kind")
    configmaps: list[str] = []
    secrets: list[str] = []
    keys: list[tuple[str, str] | None] = []
    try:
        artifact: Rulesfile | Plugin | Config
        if kind == "Rulesfile":
            artifact = rulesfile = Rulesfile.model_validate(raw)
            if rulesfile.spec.config_map_ref:
                configmaps.append(rulesfile.spec.config_map_ref.name)
            oci = rulesfile.spec.oci()
            credentials = oci.credentials() if oci else None
            keys.append(_key_of(oci.verify if oci else None))
        elif kind == "Plugin":
            artifact = plugin = Plugin.model_validate(raw)
            oci_artifact = plugin.spec.oci_artifact
            credentials = oci_artifact.credentials() if oci_artifact else None
            keys.append(_key_of(oci_artifact.verify if oci_artifact else None))
        elif kind == "Config":
            artifact = config = Config.model_validate(raw)
            if config.spec.config_map_ref:
                configmaps.append(config.spec.config_map_ref.name)
            credentials = None
        else:
            return None
        audience = Audience.of(artifact)
    except ValueError:
        return None
    for found in keys:
        if found is not None:
            (configmaps if found[0] == "ConfigMap" else secrets).append(found[1])
    if (raw.get("spec") or {}).get("rollout"):
        # The stable generation of a staged rollout, which the agents outside a step deliver (docs/rollout.md).
        configmaps.append(snapshot_name(str(kind), _name_of(raw)))
    if credentials:
        secrets.append(credentials.secret_name)
    return _Needs(audience, tuple(configmaps), tuple(secrets))


def _name_of(raw: Json) -> str:
    return str((raw.get("metadata") or {}).get("name"))


def _key_of(verification: Verification | None) -> tuple[str, str] | None:
    """(kind, name) of the ConfigMap or Secret holding a verification key."""
    if verification is None:
        return None
    source = verification.key_source()
    return source.kind, source.name


def agent_rules(falco_name: str, references: References) -> list[Json]:
    rules: list[Json] = [
        {"apiGroups": [ARTIFACT_GROUP], "resources": ["rulesfiles", "plugins", "configs", "falcorules"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [ARTIFACT_GROUP], "resources": ["artifactreports"],
         "verbs": ["get", "create", "update", "patch"]},
        {"apiGroups": [ARTIFACT_GROUP], "resources": ["artifactreports/status"], "verbs": ["get", "update", "patch"]},
        {"apiGroups": [INSTANCE_GROUP], "resources": ["falcos"], "resourceNames": [falco_name],
         "verbs": ["get", "list", "watch"]},
    ]  # fmt: skip
    if references.configmaps:
        # list and watch too: the agent watches each ConfigMap by name (a metadata.name field selector).
        rules.append({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": list(references.configmaps),
                      "verbs": ["get", "list", "watch"]})  # fmt: skip
    if references.secrets:
        rules.append({"apiGroups": [""], "resources": ["secrets"], "resourceNames": list(references.secrets),
                      "verbs": ["get"]})  # fmt: skip
    return rules


AGENT_CLUSTER_RULES: list[Json] = [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]


def _namespaced_metadata(falco: Falco, raw: Json, options: BuildOptions) -> Json:
    metadata = falco.metadata
    return owned_metadata(metadata.name or "", metadata.namespace or "", metadata.labels, options.excluded_labels, raw)


def _cluster_metadata(falco: Falco, options: BuildOptions) -> Json:
    # Only the operator's own labels: a user's label on a cluster-scoped role could change what it means for the
    # whole cluster (``rbac.authorization.k8s.io/aggregate-to-view`` would add the agent's rules to ``view``).
    namespace, name = falco.metadata.namespace or "", falco.metadata.name or ""
    labels = object_labels(name, None, ())
    labels |= {OWNER_NAMESPACE_LABEL: namespace, OWNER_NAME_LABEL: name}
    metadata: Json = {"name": cluster_object_name(namespace, name), "labels": labels}
    if options.falco_crd_uid:
        # A namespaced Falco cannot own a cluster-scoped object; the CRD can, so uninstalling removes these too.
        metadata["ownerReferences"] = [{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                                        "name": FALCO_CRD, "uid": options.falco_crd_uid}]  # fmt: skip
    return metadata


def _subject(falco: Falco) -> Json:
    return {"kind": "ServiceAccount", "name": falco.metadata.name, "namespace": falco.metadata.namespace}


def build_service_account(falco: Falco, raw: Json, options: BuildOptions) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _namespaced_metadata(falco, raw, options),
        "automountServiceAccountToken": False,
    }


def build_role(falco: Falco, raw: Json, options: BuildOptions, references: References) -> Json:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "Role",
        "metadata": _namespaced_metadata(falco, raw, options),
        "rules": agent_rules(falco.metadata.name or "", references),
    }


def build_role_binding(falco: Falco, raw: Json, options: BuildOptions) -> Json:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": _namespaced_metadata(falco, raw, options),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": falco.metadata.name},
        "subjects": [_subject(falco)],
    }


def build_cluster_role(falco: Falco, options: BuildOptions) -> Json:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": _cluster_metadata(falco, options),
        "rules": AGENT_CLUSTER_RULES,
    }


def build_cluster_role_binding(falco: Falco, options: BuildOptions) -> Json:
    metadata = _cluster_metadata(falco, options)
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": metadata,
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": metadata["name"]},
        "subjects": [_subject(falco)],
    }


_CRUD = ["get", "list", "watch", "create", "update", "patch", "delete"]
_READ = ["get", "list", "watch"]

OPERATOR_RULES: list[Json] = [
    {"apiGroups": [INSTANCE_GROUP], "resources": ["falcos"], "verbs": ["get", "list", "watch", "update", "patch"]},
    {"apiGroups": [INSTANCE_GROUP], "resources": ["falcos/status"], "verbs": ["get", "update", "patch"]},
    {"apiGroups": [INSTANCE_GROUP], "resources": ["falcos/finalizers"], "verbs": ["update"]},
    {"apiGroups": [ARTIFACT_GROUP], "resources": ["falcorules"], "verbs": _READ},
    # Read all; write the Rulesfile generated for each Falco from the FalcoRules it selects, and the Config and
    # Plugin that wire a Falco to the Components it names.
    {"apiGroups": [ARTIFACT_GROUP], "resources": ["rulesfiles", "plugins", "configs"], "verbs": _CRUD},
    # The Component controller's own kind; a Falco's spec.sidekick and spec.metacollector name Components too
    # (their type and availability decide the wiring).
    {"apiGroups": [INSTANCE_GROUP], "resources": ["components"], "verbs": _READ},
    {"apiGroups": [INSTANCE_GROUP], "resources": ["components/status"], "verbs": ["get", "update", "patch"]},
    {"apiGroups": [INSTANCE_GROUP], "resources": ["components/finalizers"], "verbs": ["update"]},
    {"apiGroups": [ARTIFACT_GROUP],
     "resources": ["rulesfiles/status", "plugins/status", "configs/status", "falcorules/status"],
     "verbs": ["get", "update", "patch"]},
    {"apiGroups": [ARTIFACT_GROUP], "resources": ["artifactreports"], "verbs": ["get", "list", "watch", "create",
                                                                                 "update", "patch"]},
    {"apiGroups": [ARTIFACT_GROUP], "resources": ["artifactreports/status"], "verbs": ["get", "update", "patch"]},
    {"apiGroups": [""], "resources": ["serviceaccounts", "services", "configmaps"], "verbs": _CRUD},
    # Only to hand it on: the agent may read the Secrets its artifacts name (RBAC forbids granting what one lacks).
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": _READ},
    # Three CRDs by name: the Falco and Component CRDs' UIDs, named as the owners of the per-Falco and
    # per-Component cluster objects, and the ServiceMonitor CRD, watched (with a metadata.name selector) to know
    # whether ServiceMonitors are served.
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
     "resourceNames": [FALCO_CRD, COMPONENT_CRD, SERVICE_MONITOR_CRD], "verbs": _READ},
    # The ServiceMonitors of spec.monitoring.serviceMonitor: read by name, applied, deleted (never listed).
    {"apiGroups": [MONITORING_GROUP], "resources": ["servicemonitors"],
     "verbs": ["get", "create", "patch", "delete"]},
    # A Falco selects the namespaces whose FalcoRules it loads by their labels.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": _READ},
    # Falco pods are the agents an artifact targets (its status counts them).
    {"apiGroups": [""], "resources": ["pods"], "verbs": _READ},
    {"apiGroups": ["apps"], "resources": ["daemonsets", "deployments"], "verbs": _CRUD},
    # The claim of the Redis a falcosidekick-ui Component deploys with storage: applied, never deleted (its data
    # goes with the Component, by garbage collection).
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "list", "watch", "create", "patch"]},
    # Held only to grant them: the metacollector's ClusterRole reads these (with daemonsets, deployments,
    # namespaces, pods and services, held above); RBAC forbids granting what one lacks.
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": _READ},
    {"apiGroups": [""], "resources": ["endpoints", "replicationcontrollers"], "verbs": _READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
    {"apiGroups": [RBAC_GROUP], "resources": ["roles", "rolebindings", "clusterroles", "clusterrolebindings"],
     "verbs": _CRUD},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]  # fmt: skip
