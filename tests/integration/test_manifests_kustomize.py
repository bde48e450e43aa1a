"""The kustomize bases build with the kubectl users have, and ``default`` is exactly ``dist/install.yaml``."""

from __future__ import annotations

from typing import Any

import pytest
from ruamel.yaml import YAML

from e2e.controlplane import ControlPlane
from e2e.operator import MANIFESTS


def _objects(text: str) -> dict[tuple[str, str, str], Any]:
    documents = [d for d in YAML(typ="safe").load_all(text) if d]
    return {(d["kind"], (d["metadata"] or {}).get("namespace", ""), d["metadata"]["name"]): d for d in documents}


def test_the_default_kustomization_is_the_install_manifest(control_plane: ControlPlane) -> None:
    built = _objects(control_plane.kubectl("kustomize", str(MANIFESTS / "default")).stdout)
    assert built == _objects((MANIFESTS / "dist" / "install.yaml").read_text())


@pytest.mark.parametrize("base", ["crd", "rbac", "policy", "manager", "prometheus", "grafana", "samples"])
def test_every_base_builds(control_plane: ControlPlane, base: str) -> None:
    built = _objects(control_plane.kubectl("kustomize", str(MANIFESTS / base)).stdout)
    assert built
    if base == "grafana":
        # The operator's dashboard and Falco's own, one ConfigMap each, both picked up by Grafana's sidecar.
        assert {name: set(d["data"]) for (_, _, name), d in built.items()} == {
            "falco-operator-dashboard": {"falco-operator-dashboard.json"},
            "falco-dashboard": {"falco-dashboard.json"},
        }
        assert all(d["metadata"]["labels"]["grafana_dashboard"] == "1" for d in built.values())
