"""Planning, a pure function: the artifacts that apply, with their resolved sources, become the exact set of files.

An artifact is one unit: when any of its sources cannot be read or fails validation, none of its new content is
used and whatever was last delivered for it stays (``last_good``), so one bad change never removes good rules; but
not when the source refused for good what it resolved to before (``Unavailable.withdrawn``: a deleted tag, say):
then its files leave, as an artifact's that stops applying.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field, replace
from typing import Any, Literal

from ..api.plain import Config, Plugin, Rulesfile
from ..api.wire import Refused
from ..records import record
from .image_defaults import (
    CONTAINER_PLUGIN,
    DEFAULT_RULES_ARTIFACT,
    DEFAULT_RULES_CONFIG,
    DEFAULT_RULES_CONFIG_FILE,
    ImageDefaults,
    ImageDefaultsInUse,
    with_container_plugin,
)
from .model import EMPTY, ArtifactKey, Content, Delivered, FileRef, Outcome, Resolutions, Unavailable
from .naming import (
    AGENT_CONFIG_FILES,
    CONFIG_DIR,
    DIRECTORIES,
    PLUGINS_CONFIG_FILE,
    PLUGINS_DIR,
    RULES_DIR,
    Medium,
    artifact_file_name,
)
from .needs import ArtifactNeeds
from .plugins import library_file_name, plugin_entry, render_plugins_config
from .rules import standalone_problem
from .setinvariant import RulesSetCheck as RulesSetCheck
from .setinvariant import enforce_needs, enforce_rules_set, load_context
from .validation import Invalid, parse_config, parse_rules
from .yamldoc import dump_yaml

Artifact = Rulesfile | Config | Plugin
_KINDS: dict[str, type[Rulesfile] | type[Config] | type[Plugin]] = {
    "Rulesfile": Rulesfile, "Config": Config, "Plugin": Plugin,
}  # fmt: skip


def parse_artifact(raw: dict[str, Any]) -> Artifact | None:
    """A Rulesfile, Config or Plugin object read into its plain class (``api.plain``: checked as the models check
    it); None for another kind or one that does not fit its kind's schema."""
    kind = _KINDS.get(str(raw.get("kind")))
    if kind is None:
        return None
    try:
        return kind.from_wire(raw)
    except Refused:
        return None


@record(frozen=True)
class Plan:
    directories: Mapping[str, Mapping[str, bytes]]
    """For each directory, every file it must hold (name → bytes)."""
    outcomes: Sequence[Outcome]
    """One per applicable artifact, sorted by kind and name."""
    remembered: Mapping[ArtifactKey, Delivered] = field(default_factory=dict)
    """The next pass's ``last_good``: what each artifact has on disk, and the files of departed artifacts that a
    withheld dependent names (``DependencyGone``), so later passes still know why it is withheld."""
    image_defaults: ImageDefaultsInUse | None = None
    """What Falco loads from its image with this plan (None: the agent serves a Falco without ``imageDefaults``)."""


def artifact_key(artifact: Artifact) -> ArtifactKey:
    return ArtifactKey(artifact.kind, artifact.metadata.name or "")


def remote_sources(artifact: Artifact) -> list[Medium]:
    """The sources that must be fetched (ConfigMap, OCI); inline content needs no fetching."""
    if isinstance(artifact, Rulesfile):
        media = [Medium.OCI] if artifact.spec.oci() else []
        return media + ([Medium.CONFIGMAP] if artifact.spec.config_map_ref else [])
    if isinstance(artifact, Config):
        return [Medium.CONFIGMAP] if artifact.spec.config_map_ref else []
    return [Medium.OCI] if artifact.spec.oci_artifact else []


def _inline_content(artifact: Artifact) -> bytes | None:
    value: Any = None
    if isinstance(artifact, Rulesfile):
        value = artifact.spec.inline()
    elif isinstance(artifact, Config):
        value = artifact.spec.config
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else dump_yaml(value)


class _Rejected(Exception):
    def __init__(
        self, state: Literal["Invalid", "Failed", "Pending"], reason: str, message: str, withdrawn: bool = False
    ) -> None:
        super().__init__(message)
        self.state, self.reason, self.message, self.withdrawn = state, reason, message, withdrawn


def _sources(artifact: Artifact, resolutions: Resolutions) -> list[tuple[Medium, Content]]:
    key = artifact_key(artifact)
    sources: list[tuple[Medium, Content]] = []
    for medium in remote_sources(artifact):
        resolution = resolutions.get((key, medium))
        if resolution is None:
            resolution = Unavailable("Pending", "Resolving", f"the {medium.label} source is being read")
        if isinstance(resolution, Unavailable):
            raise _Rejected(resolution.state, resolution.reason, resolution.message, resolution.withdrawn)
        sources.append((medium, resolution))
    inline = _inline_content(artifact)
    if inline is not None:
        sources.append((Medium.INLINE, Content(inline)))
    return sorted(sources, key=lambda source: source[0].sub_priority)


def _validated_files(artifact: Rulesfile | Config, sources: list[tuple[Medium, Content]]) -> dict[FileRef, bytes]:
    directory = RULES_DIR if isinstance(artifact, Rulesfile) else CONFIG_DIR
    check = parse_rules if isinstance(artifact, Rulesfile) else parse_config
    files: dict[FileRef, bytes] = {}
    for medium, content in sources:
        name = artifact_file_name(artifact.spec.priority, artifact.metadata.name or "", medium)
        if directory == CONFIG_DIR and name in AGENT_CONFIG_FILES:
            what = "plugins fragment" if name == PLUGINS_CONFIG_FILE else "config fragment for the default rules"
            raise _Rejected("Invalid", "NameConflict", f"{name} is the agent's {what}; rename this Config")
        try:
            check(content.data)
        except Invalid as error:
            raise _Rejected("Invalid", "InvalidContent", f"{medium.label} source: {error.problem}") from None
        files[(directory, name)] = content.data
    return files


def _deliver(artifact: Artifact, resolutions: Resolutions, plugins_dir: str) -> Delivered:
    sources = _sources(artifact, resolutions)
    if not isinstance(artifact, Plugin):
        digest = next((content.digest for medium, content in sources if medium is Medium.OCI), None)
        return Delivered(_validated_files(artifact, sources), digest=digest)
    files: dict[FileRef, bytes] = {}
    digest = library = None
    for _, content in sources:  # at most the OCI library
        library = library_file_name(artifact, content.data, plugins_dir)
        files[(PLUGINS_DIR, library)] = content.data
        digest = content.digest
    return Delivered(files, plugin_entry(artifact, plugins_dir, library), digest)


def inline_problem(artifact: Artifact, config_map_content: bytes | None = None) -> str | None:
    """What is wrong with an artifact's own content (inline, and the ConfigMap key's when given), checked as
    every agent checks it, rules files on their own (references to other files are the agents' to judge)."""
    if isinstance(artifact, Plugin):
        return None
    sources = []
    content = _inline_content(artifact)
    if content is not None:
        sources.append((Medium.INLINE, Content(content)))
    if config_map_content is not None:
        sources.append((Medium.CONFIGMAP, Content(config_map_content)))
    for source in sources:
        try:
            files = _validated_files(artifact, [source])
        except _Rejected as rejected:
            return rejected.message
        for (directory, name), data in files.items():
            problem = None
            if directory == RULES_DIR:
                problem = standalone_problem(name, parse_rules(data), data.decode(errors="replace"))
            if problem is not None:
                return f"{source[0].label} source: {problem}"
    return None


def plan(
    artifacts: Iterable[Artifact],
    resolutions: Resolutions,
    last_good: Mapping[ArtifactKey, Delivered],
    *,
    plugins_dir: str,
    rules_set_check: RulesSetCheck | None = None,
    plugin_versions: Mapping[str, str] | None = None,
    engine_version: str | None = None,
    artifact_needs: Mapping[str, ArtifactNeeds] | None = None,
    image_defaults: ImageDefaults | None = None,
    withheld: Mapping[ArtifactKey, Unavailable] | None = None,
) -> Plan:
    """The files every directory must hold and each artifact's outcome.

    ``last_good`` holds what was delivered for each artifact before; it stays on disk for an artifact that is
    invalid, failed or pending now, as long as the set still loads with it and its source did not withdraw it.
    ``plugins_dir`` is the plugins directory as Falco sees it (default library paths point there). With
    ``rules_set_check`` the rules files are checked as one set (``setinvariant``), with the plugins this set
    configures (``plugin_versions``: a plugin library's version by its OCI digest, when its artifact config names
    one) and the engine Falco reports (``engine_version``). ``artifact_needs``: what each OCI artifact's config
    needs, by digest; an artifact whose needs the set does not meet is withheld (``setinvariant.enforce_needs``).
    ``image_defaults``: what this Falco loads from its image (``spec.imageDefaults``): the plugins fragment always
    configures the image's container plugin (unless a Plugin delivers an entry named ``container``), and the set
    is judged after the image's rules file, with that plugin loaded; while a Rulesfile delivers Falco's default
    rules from OCI (its config's name is ``falco-rules``), a config fragment leaves the image's rules file out of
    ``rules_files`` and the set is judged without it. ``withheld``: artifacts whose content cannot be known now
    (the stable generation of a staged rollout whose snapshot cannot be read): they get that state and keep their
    last good files, as an artifact whose source cannot be read.
    """
    artifacts = sorted(artifacts, key=artifact_key)
    outcomes: dict[ArtifactKey, Outcome] = {}
    for artifact in artifacts:
        key = artifact_key(artifact)
        try:
            if withheld and key in withheld:
                held = withheld[key]
                raise _Rejected(held.state, held.reason, held.message)
            delivered = _deliver(artifact, resolutions, plugins_dir)
            outcome = Outcome(
                key, artifact.metadata.generation, "Installed", delivered, "Installed", _summary(delivered)
            )
        except _Rejected as rejected:
            kept = last_good.get(key, EMPTY)
            if rejected.withdrawn:
                suffix = "; the files delivered before are removed (a refusal, not a passing failure)"
                message = rejected.message + (suffix if not kept.empty else "")
                kept = EMPTY
            else:
                message = rejected.message + ("; the last good files stay" if not kept.empty else "")
            outcome = Outcome(key, artifact.metadata.generation, rejected.state, kept, rejected.reason, message)
        outcomes[key] = outcome
    _reject_plugin_name_clashes(outcomes, last_good)
    _reject_library_clashes(outcomes)
    if artifact_needs:
        enforce_needs(outcomes, last_good, artifact_needs, plugin_versions or {}, engine_version, image_defaults)
    needed: dict[ArtifactKey, Delivered] = {}
    replaced = _default_rules_source(outcomes.values(), artifact_needs or {}) if image_defaults is not None else None
    if rules_set_check:
        priorities = {artifact_key(a): a.spec.priority for a in artifacts if isinstance(a, Rulesfile)}
        while True:
            image = replace(image_defaults, rules=None) if image_defaults is not None and replaced else image_defaults
            context = load_context(outcomes.values(), plugin_versions or {}, engine_version, image)
            needed |= enforce_rules_set(outcomes, last_good, rules_set_check, context, priorities)
            if not replaced:
                break
            replaced = _default_rules_source(outcomes.values(), artifact_needs or {})
            if replaced:
                break
            # the default rules were withheld: the image's file loads again, judge with it
    remembered = {key: outcome.delivered for key, outcome in outcomes.items() if not outcome.delivered.empty}
    directories = _directories(outcomes.values(), image_defaults is not None)
    if replaced:
        directories[CONFIG_DIR][DEFAULT_RULES_CONFIG_FILE] = DEFAULT_RULES_CONFIG
    in_use = None
    if image_defaults is not None:
        in_use = ImageDefaultsInUse(image_defaults.rules_sha256, replaced, _container_plugin_source(outcomes.values()))
    return Plan(directories, list(outcomes.values()), remembered | needed, in_use)


def _default_rules_source(outcomes: Iterable[Outcome], needs: Mapping[str, ArtifactNeeds]) -> ArtifactKey | None:
    """The first Rulesfile writing rules files from an OCI artifact whose config names Falco's default rules."""
    for outcome in sorted(outcomes, key=lambda outcome: outcome.key):
        digest, files = outcome.delivered.digest, outcome.delivered.files
        if outcome.key.kind != "Rulesfile" or digest is None or digest not in needs:
            continue
        if needs[digest].name == DEFAULT_RULES_ARTIFACT and any(directory == RULES_DIR for directory, _ in files):
            return outcome.key
    return None


def _container_plugin_source(outcomes: Iterable[Outcome]) -> ArtifactKey | None:
    """The Plugin whose delivered entry takes the image's container plugin's name (one at most: names clash)."""
    for outcome in sorted(outcomes, key=lambda outcome: outcome.key):
        entry = outcome.delivered.plugin_entry
        if entry is not None and str(entry.get("name")) == CONTAINER_PLUGIN:
            return outcome.key
    return None


def _summary(delivered: Delivered) -> str:
    names = sorted(name for _, name in delivered.files)
    if delivered.plugin_entry is not None:
        names.append(f"plugin {delivered.plugin_entry['name']}")
    return "wrote " + ", ".join(names) if names else "nothing to write"


def _reject_plugin_name_clashes(
    outcomes: dict[ArtifactKey, Outcome], last_good: Mapping[ArtifactKey, Delivered]
) -> None:
    """One entry per plugin name (Falco refuses two): the first Plugin by object name keeps it, the others are
    ``Invalid`` and their kept entry leaves too when it has the same name."""
    owners: dict[str, ArtifactKey] = {}
    for key, outcome in sorted(outcomes.items()):
        entry = outcome.delivered.plugin_entry
        if entry is None:
            continue
        name = str(entry["name"])
        owner = owners.setdefault(name, key)
        if owner == key:
            continue
        message = f"plugin name {name!r} is already configured by Plugin {owner.name}; give this one another name"
        kept = last_good.get(key, EMPTY) if outcome.state == "Installed" else outcome.delivered
        kept_entry = kept.plugin_entry
        if kept_entry is not None and str(kept_entry["name"]) in owners:
            kept = EMPTY  # its last good entry clashes too: it leaves in this swap
        suffix = "; the last good files stay" if not kept.empty else ""
        outcomes[key] = Outcome(key, outcome.generation, "Invalid", kept, "NameConflict", message + suffix)
        if kept_entry is not None and not kept.empty:
            owners[str(kept_entry["name"])] = key


def _reject_library_clashes(outcomes: dict[ArtifactKey, Outcome]) -> None:
    """One library per file name: a Plugin whose library would take the name of another Plugin's library, with
    other bytes (two ``libraryPath``s naming one file), is ``Invalid`` and writes nothing (its entry would load the
    other library)."""
    owners: dict[str, tuple[ArtifactKey, bytes]] = {}
    for key, outcome in sorted(outcomes.items()):
        for (directory, name), data in outcome.delivered.files.items():
            owner, owned = owners.setdefault(name, (key, data)) if directory == PLUGINS_DIR else (key, data)
            if owner != key and owned != data:
                message = (f"library file {name} is already delivered by Plugin {owner.name}, with other content; "
                           "give this one another libraryPath")  # fmt: skip
                outcomes[key] = Outcome(key, outcome.generation, "Invalid", EMPTY, "NameConflict", message)
                break


def _directories(outcomes: Iterable[Outcome], image_plugins: bool = False) -> dict[str, dict[str, bytes]]:
    """``image_plugins``: the fragment configures the image's container plugin too (a Plugin's entry of that
    name replaces it)."""
    directories: dict[str, dict[str, bytes]] = {directory: {} for directory in DIRECTORIES}
    entries: list[Mapping[str, Any]] = []
    library_digests: dict[str, str] = {}
    for outcome in outcomes:
        for (directory, name), data in outcome.delivered.files.items():
            directories[directory][name] = data
            if directory == PLUGINS_DIR and outcome.delivered.plugin_entry is not None:
                library_digests[str(outcome.delivered.plugin_entry["name"])] = outcome.sha256 or ""
        if outcome.delivered.plugin_entry is not None:
            entries.append(outcome.delivered.plugin_entry)
    if image_plugins:
        entries = with_container_plugin(entries)
    if entries:
        directories[CONFIG_DIR][PLUGINS_CONFIG_FILE] = render_plugins_config(entries, library_digests)
    return directories
