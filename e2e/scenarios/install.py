"""Install, upgrade-in-place and uninstall scenarios, written once for the local suite and ``make e2e`` (kind).

Each step talks to the cluster through ``kubectl`` (as users do) and judges by what the API server holds. What
differs between the two suites — whether agents are pods or local processes, how the operator is stopped — stays
with the caller.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

Json = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "manifests" / "dist" / "install.yaml"
OPERATOR_NAMESPACE = "falco-operator-system"
PROJECT_GROUP_SUFFIX = "falcosecurity.dev"
MANAGED_BY = ("app.kubernetes.io/managed-by", "falco-operator")
# Events name the objects they are about and expire on their own (the API server's event TTL, one hour by
# default); they are the one kind an uninstall leaves for the API server to clear.
IGNORED_KINDS = frozenset({"events", "events.events.k8s.io"})


class Kubectl(Protocol):
    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the cluster under test."""


def install(kubectl: Kubectl, *, server_side: bool = False) -> None:
    """``kubectl apply -f install.yaml`` (client-side or ``--server-side``) and wait until the CRDs are served."""
    kubectl("apply", *(["--server-side"] if server_side else []), "-f", str(INSTALL))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "-l",
            "app.kubernetes.io/part-of=falco-operator")  # fmt: skip


def uninstall_command(timeout: str = "180s") -> list[str]:
    """What users run to uninstall (kubectl waits until every object and what it owns is gone)."""
    return ["delete", "-f", str(INSTALL), "--ignore-not-found", f"--timeout={timeout}"]


def identities(kubectl: Kubectl, objects: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """UID of each (kind, namespace, name): an upgrade in place must keep every object (and so every CR)."""
    found: dict[str, str] = {}
    for kind, namespace, name in objects:
        obj = json.loads(kubectl("get", kind, name, *(["-n", namespace] if namespace else []), "-o", "json").stdout)
        found[f"{kind}/{namespace}/{name}"] = obj["metadata"]["uid"]
    return found


def pods(kubectl: Kubectl, namespaces: Iterable[str]) -> dict[str, str]:
    """Pod name to UID in ``namespaces``: an upgrade that changed nothing in a pod template restarts no pod.

    (A Deployment's generation is no guide: it also moves when only its annotations change, as the
    last-applied-configuration annotation does between client-side and server-side applies.)
    """
    found: dict[str, str] = {}
    for namespace in namespaces:
        listing = json.loads(kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)
        found |= {f"{namespace}/{p['metadata']['name']}": p["metadata"]["uid"] for p in listing["items"]}
    return found


def listable_resources(kubectl: Kubectl) -> list[str]:
    out = kubectl("api-resources", "--verbs=list", "-o", "name").stdout
    return sorted(name for name in out.split() if name not in IGNORED_KINDS)


def is_of_the_project(obj: Json, falco_names: frozenset[str] = frozenset()) -> bool:
    """Whether ``obj`` was made by the project: its kinds, its labels, its names, its finalizers, its namespace."""
    api_version = str(obj.get("apiVersion") or "")
    metadata = obj.get("metadata") or {}
    labels: dict[str, str] = metadata.get("labels") or {}
    name = str(metadata.get("name") or "")
    namespace = metadata.get("namespace")
    if api_version.split("/")[0].endswith(PROJECT_GROUP_SUFFIX):
        return True
    if labels.get(MANAGED_BY[0]) == MANAGED_BY[1] or labels.get("app.kubernetes.io/part-of") == "falco-operator":
        return True
    if any(key.split("/")[0].endswith(PROJECT_GROUP_SUFFIX) for key in labels):
        return True
    if any(str(f).split("/")[0].endswith(PROJECT_GROUP_SUFFIX) for f in metadata.get("finalizers") or []):
        return True
    if name.endswith(f".{PROJECT_GROUP_SUFFIX}") or name.startswith(("falco-operator", "falco:")):
        return True  # CRDs, the operator's cluster roles and bindings, per-Falco cluster objects
    if namespace == OPERATOR_NAMESPACE or (obj.get("kind") == "Namespace" and name == OPERATOR_NAMESPACE):
        return True
    # Pods and ReplicaSets of a Falco's workload: named after the Falco.
    return namespace is not None and any(name == f or name.startswith(f"{f}-") for f in falco_names)


def leftovers(kubectl: Kubectl, falco_names: frozenset[str] = frozenset()) -> list[str]:
    """Every object of every listable API resource, in every namespace, that is of the project."""
    resources = listable_resources(kubectl)
    result = kubectl("get", ",".join(resources), "-A", "-o", "json", "--ignore-not-found", check=False)
    if result.returncode != 0:  # a resource that went away between the two calls (a CRD being deleted)
        result = kubectl("get", ",".join(resources), "-A", "-o", "json", "--ignore-not-found")
    items: list[Json] = json.loads(result.stdout or '{"items": []}').get("items", [])
    return sorted(describe(obj) for obj in items if is_of_the_project(obj, falco_names))


def describe(obj: Json) -> str:
    metadata = obj.get("metadata") or {}
    where = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
    terminating = " (terminating)" if metadata.get("deletionTimestamp") else ""
    return f"{obj.get('kind')} {where}{metadata.get('name')}{terminating}"
