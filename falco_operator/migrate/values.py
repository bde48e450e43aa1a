"""A values file read safely and merged over the chart's defaults as Helm merges them."""

from __future__ import annotations

import copy
from typing import Any

from ..artifacts.yamldoc import YamlProblem, load_yaml, plain
from .chart_defaults import CHART_DEFAULTS

Json = dict[str, Any]


class ValuesProblem(ValueError):
    """The values file cannot be migrated (unreadable, not YAML, not a mapping)."""


def read_values(data: bytes) -> Json:
    """A values file's mapping, read with the project's bounded YAML loader (no anchors or aliases, capped size
    and depth), as plain builtin values. An empty file is no values."""
    try:
        document = load_yaml(data)
    except YamlProblem as error:
        raise ValuesProblem(str(error)) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ValuesProblem("a values file is a mapping of the chart's values")
    values: Json = builtin(plain(document))
    return values


def builtin(value: Any) -> Any:
    """The loaded value with builtin scalars (the YAML reader's int and float subclasses become int and float)."""
    if isinstance(value, dict):
        return {str(key): builtin(item) for key, item in value.items()}
    if isinstance(value, list):
        return [builtin(item) for item in value]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def helm_merge(defaults: Any, overrides: Any) -> Any:
    """``overrides`` over ``defaults`` as Helm coalesces values: mappings merge key by key, a null removes the
    default's key, anything else (lists included) replaces the default whole. The inputs are not changed."""
    if not isinstance(defaults, dict) or not isinstance(overrides, dict):
        return copy.deepcopy(overrides)
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def chart_values(user: Json) -> Json:
    """The values the chart renders with: the user's over the chart's defaults."""
    merged: Json = helm_merge(CHART_DEFAULTS, user)
    return merged


def full_name(values: Json, release: str) -> str:
    """The chart's name for its objects: fullnameOverride, else the release name when it contains the chart's name
    (nameOverride or falco), else release-name; at most 63 characters, no trailing dash."""
    override = values.get("fullnameOverride")
    if override:
        return str(override)[:63].rstrip("-")
    name = str(values.get("nameOverride") or "falco")
    return (release if name in release else f"{release}-{name}")[:63].rstrip("-")
