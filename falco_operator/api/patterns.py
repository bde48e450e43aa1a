"""Patterns a user can hit, said in words.

The API server answers a failed `pattern` with the regular expression itself (`should match '^(?:[A-Za-z0-9.-]+…'`),
which tells a user nothing. Every pattern listed here is turned into CEL rules with a message instead: the same
check (CEL's `matches` is the RE2 the API server uses for `pattern`), a readable answer. A rule set may start with
rules for common mistakes, so that the user reads the precise one (a URL scheme in a reference) instead of the
general one. The models keep their `pattern`, so Python-side validation stays the same.
"""

from __future__ import annotations

from typing import Any

from .falcorule import PRIORITY_PATTERN
from .monitoring import PROMETHEUS_DURATION
from .ocirefs import DURATION_PATTERN, REFERENCE_PATTERN, REGISTRY_HOST_PATTERN, REPOSITORY_PATTERN, TAG_PATTERN
from .registries import CONFIG_MAP_KEY_PATTERN
from .schema_types import DNS_LABEL, QUANTITY_PATTERN

_NO_SCHEME = (
    "!self.contains('://')",
    "must not start with a scheme such as https:// or http://: write host/repository:tag (for a registry "
    "served over plain HTTP, set registry.plainHTTP: true)",
)

READABLE: dict[str, tuple[tuple[str, str], ...]] = {
    REFERENCE_PATTERN: (
        _NO_SCHEME,
        (
            "self.contains('://') || self.matches(PATTERN)",
            "must be an OCI reference such as ghcr.io/falcosecurity/rules/falco-rules:3 or "
            "registry.local:5000/team/rules@sha256:<64 hex digits>: an optional host[:port]/, a lowercase "
            "repository path, an optional :tag and an optional @sha256 digest",
        ),
    ),
    REGISTRY_HOST_PATTERN: (
        _NO_SCHEME,
        (
            "self.contains('://') || self.matches(PATTERN)",
            "must be a registry host with an optional port, such as ghcr.io or registry.local:5000 (no path)",
        ),
    ),
    REPOSITORY_PATTERN: (
        (
            "self.matches(PATTERN)",
            "must be a lowercase repository path such as falcosecurity/rules/falco-rules: parts of a-z and 0-9 "
            "joined by '.', '_', '__' or '-', separated by '/' (no host, no tag)",
        ),
    ),
    TAG_PATTERN: (
        (
            "self.matches(PATTERN)",
            "must be a tag (up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-') or a digest "
            "sha256:<64 lowercase hex digits>",
        ),
    ),
    DURATION_PATTERN: (("self.matches(PATTERN)", "must be a duration such as 90s, 5m or 1h30m"),),
    CONFIG_MAP_KEY_PATTERN: (
        ("self.matches(PATTERN)", "must be a ConfigMap key such as ca.crt: letters, digits, '-', '_' and '.'"),
    ),
    PROMETHEUS_DURATION: (
        ("self.matches(PATTERN)", "must be a duration such as 30s, 1m or 1m30s: whole h, m, s, ms, in that order"),
    ),
    PRIORITY_PATTERN: (
        (
            "self.matches(PATTERN)",
            "must be one of emergency, alert, critical, error, warning, notice, informational, info, debug (any case)",
        ),
    ),
    DNS_LABEL: (
        (
            "self.matches(PATTERN)",
            "must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit",
        ),
    ),
    QUANTITY_PATTERN: (
        (
            "type(self) != string || self.matches(PATTERN)",
            "must be a quantity such as 500m, 2, 512Mi or 1Gi",
        ),
    ),
}


def cel_string(text: str) -> str:
    """``text`` as a CEL raw string literal."""
    if "'" in text:
        raise ValueError(f"a pattern with a quote cannot be written as a CEL raw string: {text}")
    return f"r'{text}'"


def readable_pattern(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with a listed ``pattern`` replaced by CEL rules that say what is wrong in words.

    CEL's cost estimate needs a bound on the string, so a listed pattern on an unbounded string is refused here,
    when the CRDs are generated, rather than by the API server when they are installed.
    """
    pattern = node.get("pattern")
    rules = READABLE.get(pattern) if isinstance(pattern, str) else None
    if pattern is None or rules is None:
        return node
    if "maxLength" not in node:
        raise ValueError(f"a string with pattern {pattern} needs a maxLength for its CEL rules")
    result = {key: value for key, value in node.items() if key != "pattern"}
    literal = cel_string(str(pattern))
    # The node's own rules assume the pattern holds (``duration(self)`` fails on "soon"): they judge only
    # values that match it, and the pattern's message speaks for the rest.
    guarded = [
        {**rule, "rule": f"!self.matches({literal}) || ({rule['rule']})"}
        for rule in node.get("x-kubernetes-validations", [])
    ]
    result["x-kubernetes-validations"] = [
        *({"rule": rule.replace("PATTERN", literal), "message": message} for rule, message in rules),
        *guarded,
    ]
    return result
