"""Generated CRDs: structural, committed as generated, documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from e2e.scenarios.admission import BAD_OBJECTS
from falco_operator.api import ALL_KINDS, custom_resource_definition
from falco_operator.manifests import API_DOC, generated_files, with_field_reference

ROOT = Path(__file__).resolve().parents[2]
FREE_FORM = {"spec.inlineRules", "spec.config", "spec.config.initConfig"}


def _walk(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, schema)]
    for name, child in (schema.get("properties") or {}).items():
        nodes += _walk(child, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        nodes += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        nodes += _walk(schema["additionalProperties"], f"{path}{{}}")
    return nodes


def test_committed_manifests_and_api_doc_equal_what_the_models_generate() -> None:
    for relative, content in generated_files().items():
        assert (ROOT / "manifests" / relative).read_text() == content, f"{relative} is stale: run make manifests"
    document = (ROOT / API_DOC).read_text()
    assert with_field_reference(document) == document, "docs/api.md field reference is stale: run make manifests"


def test_every_schema_is_structural() -> None:
    for info in ALL_KINDS:
        schema = custom_resource_definition(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema, ""):
            assert not {"$ref", "anyOf", "oneOf", "allOf", "$defs", "title"} & node.keys(), (info.kind, path)
            assert node.get("type") != "null", (info.kind, path)
            free = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
            assert free or "type" in node, f"{info.kind} {path} has no type"
            if node.get("x-kubernetes-preserve-unknown-fields"):
                assert path in FREE_FORM, f"{info.kind} {path} keeps unknown fields but is not free-form"


def test_pod_template_spec_uses_the_kubernetes_schema_without_requiring_containers() -> None:
    falco = next(info for info in ALL_KINDS if info.kind == "Falco")
    spec = custom_resource_definition(falco)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    pod_spec = spec["properties"]["podTemplateSpec"]["properties"]["spec"]
    assert "containers" not in pod_spec.get("required", [])
    container = pod_spec["properties"]["containers"]["items"]
    assert container["required"] == ["name"]
    assert pod_spec["properties"]["containers"]["x-kubernetes-list-map-keys"] == ["name"]
    assert "imagePullPolicy" in container["properties"]


def test_api_doc_lists_every_rejected_object() -> None:
    document = (ROOT / API_DOC).read_text()
    for case in BAD_OBJECTS:
        assert f"`{case.id}`" in document, f"{case.id} missing from docs/api.md"
    assert len(BAD_OBJECTS) >= 20


def test_samples_are_the_seed_examples() -> None:
    """manifests/samples carries the seed examples as users paste them (the seed sits beside the repo in CI)."""
    seed = ROOT.parent / "shared" / "examples" / "seed"
    samples = sorted((ROOT / "manifests" / "samples").glob("0*.yaml"))
    assert len(samples) == 9
    for path in samples:
        original = seed / path.name
        if original.exists():
            assert path.read_text() == original.read_text(), path.name


def test_kubectl_get_shows_how_many_falcos_loaded_a_rulesfile_or_plugin() -> None:
    for kind in ALL_KINDS:
        version = custom_resource_definition(kind)["spec"]["versions"][0]
        columns = {column["name"]: column for column in version.get("additionalPrinterColumns", [])}
        if kind.kind in ("Rulesfile", "Plugin"):
            assert columns["Loaded"] == {"name": "Loaded", "type": "integer", "jsonPath": ".status.nodes.loaded"}
            assert list(columns).index("Loaded") == list(columns).index("Nodes") + 1
        else:
            assert "Loaded" not in columns  # Falco reports no config fragment: a Config is never Loaded
