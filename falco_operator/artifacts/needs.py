"""What an OCI artifact's config says it needs, and whether the set being written provides it.

falcoctl writes a config blob next to each rules and plugin artifact: ``name``, ``version``, ``dependencies`` (other
artifacts, in practice plugins, each ``name`` and ``version`` with ``alternatives``) and ``requirements``
(``engine_version_semver`` for rules, ``plugin_api_version`` for plugins). The agent reads it by the digest it
delivers; the plugins it depends on must be configured by the same set (and, when their versions are known, of
the same major version and not older, as Falco judges ``required_plugin_versions``), and the engine must meet
``engine_version_semver`` when Falco's engine version is known. The plugin API version Falco offers is not known
to the agent: ``plugin_api_version`` is not judged (Falco refuses such a plugin at load, and the agent reports the
refusal).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..records import record
from .rules import LoadContext
from .rules.requirements import Requirement, engine_problem, plugin_requirement_verdict

ENGINE_REQUIREMENTS = ("engine_version_semver", "engine_version")


@record(frozen=True)
class ArtifactNeeds:
    """The dependencies and requirements of one artifact's config."""

    dependencies: tuple[tuple[Requirement, ...], ...] = ()
    """Each dependency with its alternatives, first the dependency itself."""
    engine: str | None = None
    """The engine version the artifact requires, when it says."""
    name: str | None = None
    """The artifact's name in its config (``falco-rules``: Falco's default rules, see ``image_defaults``)."""

    @property
    def empty(self) -> bool:
        return not self.dependencies and self.engine is None and self.name is None


NOTHING = ArtifactNeeds()


def artifact_needs(config: Mapping[str, Any] | None) -> ArtifactNeeds:
    """The needs an artifact config states; what it does not state in falcoctl's form is left out."""
    if not isinstance(config, Mapping):
        return NOTHING
    dependencies = []
    for dependency in _entries(config.get("dependencies")):
        alternatives = [dependency, *_entries(dependency.get("alternatives"))]
        requirements = tuple(
            Requirement(str(entry["name"]), str(entry["version"]))
            for entry in alternatives
            if entry.get("name") and entry.get("version")
        )
        if requirements:
            dependencies.append(requirements)
    engine = next((str(entry["version"]) for entry in _entries(config.get("requirements"))
                   if entry.get("name") in ENGINE_REQUIREMENTS and entry.get("version")), None)  # fmt: skip
    name = config.get("name")
    return ArtifactNeeds(tuple(dependencies), engine, name if isinstance(name, str) and name else None)


def needs_problem(needs: ArtifactNeeds, context: LoadContext) -> str | None:
    """Why the Falco of ``context`` cannot load an artifact with these needs; None when it can (or cannot tell)."""
    for alternatives in needs.dependencies:
        if context.plugins is None:
            break
        verdict = plugin_requirement_verdict(alternatives, context.plugins)
        if verdict is not None and verdict.severity == "error":
            return "its OCI artifact's config (dependencies): " + _as_needs(verdict.message)
    if needs.engine is not None and context.engine_version is not None:
        problem = engine_problem(needs.engine, context.engine_version)
        if problem is not None:
            return "its OCI artifact's config (requirements): " + _as_needs(problem)
    return None


def _as_needs(message: str) -> str:
    return message.replace("the rules require", "it needs")


def _entries(value: Any) -> list[Mapping[str, Any]]:
    return [entry for entry in value if isinstance(entry, Mapping)] if isinstance(value, list) else []
