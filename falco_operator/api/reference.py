"""A Markdown field reference for every kind, rendered from the same schemas the CRDs carry."""

from __future__ import annotations

from typing import Any

from .kinds import ALL_KINDS, KindInfo
from .schema import spec_schema, status_schema

_OPAQUE = {"podTemplateSpec": "Kubernetes `PodTemplateSpec` (the pinned version's schema; `containers` optional)"}


def _type_of(schema: dict[str, Any]) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "int or string"
    if schema.get("x-kubernetes-preserve-unknown-fields") and "type" not in schema:
        return "any"
    kind = str(schema.get("type", "object"))
    if kind == "array":
        return f"[]{_type_of(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map[string]{_type_of(schema['additionalProperties'])}"
    return kind


def _rules(schema: dict[str, Any], required: bool) -> str:
    notes = []
    if required:
        notes.append("required")
    if "enum" in schema:
        notes.append("one of " + ", ".join(f"`{value}`" for value in schema["enum"]))
    if "minimum" in schema or "maximum" in schema:
        notes.append(f"{schema.get('minimum', '')}..{schema.get('maximum', '')}")
    if "pattern" in schema:
        notes.append("pattern `" + schema["pattern"].replace("|", "\\|") + "`")
    if "default" in schema:
        notes.append(f"default `{schema['default']}`")
    notes += [f"rule: {entry['message']}" for entry in schema.get("x-kubernetes-validations", [])]
    return "; ".join(notes)


def _rows(schema: dict[str, Any], prefix: str, required: bool = False) -> list[str]:
    rows = []
    name = prefix.rsplit(".", 1)[-1]
    description = " ".join(str(schema.get("description", "")).split()).replace("|", "\\|")
    if name in _OPAQUE:
        return [f"| `{prefix}` | object | | {_OPAQUE[name]} |"]
    rows.append(f"| `{prefix}` | {_type_of(schema)} | {_rules(schema, required)} | {description} |")
    children = schema.get("properties") or schema.get("items", {}).get("properties") or {}
    child_required = schema.get("required") or schema.get("items", {}).get("required") or []
    suffix = "[]" if schema.get("type") == "array" else ""
    for child, child_schema in children.items():
        rows += _rows(child_schema, f"{prefix}{suffix}.{child}", child in child_required)
    return rows


def kind_reference(info: KindInfo) -> str:
    header = "| field | type | validation and default | description |\n|---|---|---|---|"
    spec_rows = _rows(spec_schema(info), "spec", info.spec_required)
    status_rows = _rows(status_schema(info), "status")
    columns = ", ".join(column.name for column in info.columns)
    names = f"short names: {', '.join(info.short_names)}; " if info.short_names else ""
    return (
        f"### {info.kind} (`{info.api_version}`)\n\n{info.description}\n\n"
        f"Plural `{info.plural}`; {names}categories: {', '.join(info.categories)}; printer columns: {columns}.\n\n"
        f"{header}\n" + "\n".join(spec_rows + status_rows) + "\n"
    )


def field_reference() -> str:
    return "\n".join(kind_reference(info) for info in ALL_KINDS)
