"""Snapshot the pinned Kubernetes version's PodTemplateSpec schema as a structural CRD schema.

Reads ``/openapi/v3/api/v1`` from a running local control plane and writes
``falco_operator/api/pod_template_schema.json``, which the CRD generator embeds into the Falco CRD. The file is
committed and reviewed; ``make manifests`` never needs a cluster.

Run: ``python -m e2e.pod_template_schema --kubeconfig PATH`` (``make pod-template-schema`` starts a cluster).
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path
from typing import Any

from .controlplane import KUBERNETES_VERSION
from .controlplane.cluster import kubeconfig_tls

OUTPUT = Path(__file__).resolve().parents[1] / "falco_operator" / "api" / "pod_template_schema.json"
_ROOT = "io.k8s.api.core.v1.PodTemplateSpec"
_INT_OR_STRING = {"io.k8s.apimachinery.pkg.util.intstr.IntOrString", "io.k8s.apimachinery.pkg.api.resource.Quantity"}
# Keys a CRD structural schema accepts; the rest of the OpenAPI vocabulary is dropped.
_KEPT = {
    "type", "properties", "items", "required", "enum", "format", "additionalProperties", "minimum", "maximum",
    "pattern", "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
}  # fmt: skip
# Template metadata: only what a pod template overlay can meaningfully set.
_TEMPLATE_METADATA = {
    "type": "object",
    "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _reference_name(node: dict[str, Any]) -> str | None:
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and "$ref" in all_of[0]:
        return str(all_of[0]["$ref"]).rsplit("/", 1)[-1]
    return None


def structural(schemas: dict[str, Any], node: dict[str, Any], trail: tuple[str, ...] = ()) -> dict[str, Any]:
    """Inline references and reduce ``node`` to what a structural CRD schema allows.

    Descriptions go (the Falco CRD must stay small enough for client-side ``kubectl apply``), and so do
    defaults, except on list-map keys, where the API server requires a key to be required or defaulted.
    """
    name = _reference_name(node)
    if name in _INT_OR_STRING:
        return {"x-kubernetes-int-or-string": True}
    if name is not None:
        if name in trail:
            raise ValueError(f"recursive schema through {' -> '.join((*trail, name))}")
        return structural(schemas, schemas[name], (*trail, name))
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEPT:
            continue
        if key == "properties":
            result[key] = {prop: structural(schemas, sub, trail) for prop, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            result[key] = structural(schemas, value, trail)
        else:
            result[key] = value
    for list_key in node.get("x-kubernetes-list-map-keys", []):
        item = result.get("items", {})
        if list_key in item.get("required", []):
            continue
        original = schemas[_reference_name(node["items"]) or ""]["properties"][list_key]
        if "default" in original:
            item["properties"][list_key]["default"] = original["default"]
    return result


def pod_template_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    schemas = openapi["components"]["schemas"]
    template = structural(schemas, schemas[_ROOT], (_ROOT,))
    template["properties"]["metadata"] = _TEMPLATE_METADATA
    pod_spec = template["properties"]["spec"]
    # Users override parts of a generated template; they need not restate the containers.
    pod_spec["required"] = [field for field in pod_spec.get("required", []) if field != "containers"]
    if not pod_spec["required"]:
        del pod_spec["required"]
    return {"kubernetesVersion": KUBERNETES_VERSION, "schema": template}


def fetch_openapi(kubeconfig: Path) -> dict[str, Any]:
    server, context = kubeconfig_tls(kubeconfig)
    with urllib.request.urlopen(f"{server}/openapi/v3/api/v1", context=context, timeout=60) as response:
        document: dict[str, Any] = json.loads(response.read())
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True, help="admin kubeconfig of a local control plane")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    snapshot = pod_template_schema(fetch_openapi(args.kubeconfig))
    args.output.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
