"""``required_engine_version`` and ``required_plugin_versions`` judged against what a Falco provides, as Falco judges
them (libsinsp's ``sinsp_version``):

- a version is three numbers ``x.y.z`` at the start of the text (``0.7.0-rc1`` is 0.7.0); ``required_engine_version``
  may also be a whole number N, which means 0.N.0;
- a version meets a requirement when the major numbers are equal and it is not lower (0.18.0 meets 0.10.0, 1.0.0
  does not meet 0.10.0, 0.9.0 does not meet 0.10.0);
- a requirement with alternatives is decided by its first alternative whose plugin is loaded (Falco does not try
  the next alternative when that plugin's version is too old); none loaded: not met.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ...records import record
from ..messages import quoted

Version = tuple[int, int, int]
_VERSION = re.compile(r"^\s*([0-9]+)\.([0-9]+)\.([0-9]+)")


def parse_version(text: str) -> Version | None:
    match = _VERSION.match(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def engine_requirement(value: Any) -> Version | None:
    """The version a ``required_engine_version`` value asks for (a whole number N is 0.N.0)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (0, value, 0) if value >= 0 else None
    return parse_version(str(value))


def meets(have: Version, need: Version) -> bool:
    return have[0] == need[0] and have >= need


def shown(version: Version) -> str:
    return ".".join(str(part) for part in version)


def engine_problem(required: Any, engine_version: str) -> str | None:
    """Why an engine of ``engine_version`` cannot load rules with this ``required_engine_version``; None if it can."""
    need = engine_requirement(required)
    have = parse_version(engine_version)
    if need is None or have is None or meets(have, need):
        return None
    return (f"the rules require Falco engine version {shown(need)}, but this Falco's engine is {engine_version}: "
            "run a Falco whose engine meets it, or use a version of these rules made for this Falco")  # fmt: skip


@record(frozen=True)
class Requirement:
    name: str
    version: str


@record(frozen=True)
class RequirementVerdict:
    severity: Literal["error", "warning"]
    message: str


def plugin_requirement_verdict(
    alternatives: Sequence[Requirement], plugins: Mapping[str, str | None]
) -> RequirementVerdict | None:
    """Whether a Falco that loads ``plugins`` (name -> version, None = unknown) meets one requirement of
    ``required_plugin_versions`` with its alternatives: None when it does, a warning when a version is unknown."""
    for requirement in alternatives:
        if requirement.name not in plugins:
            continue
        version = plugins[requirement.name]
        wanted = f"{requirement.name} >= {requirement.version}"
        if version is None:
            return RequirementVerdict("warning", f"the rules require plugin {wanted}; the version of "
                                                 f"{requirement.name} this Falco loads is not known, so that is not "
                                                 "checked")  # fmt: skip
        have, need = parse_version(version), parse_version(requirement.version)
        if have is None:
            return RequirementVerdict("error", f"plugin {requirement.name} has the version {quoted(version)}, which "
                                               "is not a version x.y.z")  # fmt: skip
        if need is not None and not meets(have, need):
            return RequirementVerdict("error", f"the rules require plugin {wanted} (same major version), but this "
                                               f"Falco loads {requirement.name} {version}: deliver a version that "
                                               "meets it")  # fmt: skip
        return None
    wanted = ", ".join(f"{requirement.name} (>= {requirement.version})" for requirement in alternatives)
    one_of = "one of " if len(alternatives) > 1 else ""
    return RequirementVerdict("error", f"the rules require a plugin this Falco does not load: add a Plugin for "
                                       f"{one_of}{wanted}")  # fmt: skip
