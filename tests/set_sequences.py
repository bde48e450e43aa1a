"""Random sequences of what happens to an agent's artifacts, planned pass by pass, for the set-invariant property.

A sequence starts empty; each step creates or changes a Rulesfile (inline, or from OCI with a pull that is pending,
then arrives or fails), deletes one, relabels the node (an artifact stops or starts applying), or creates, renames
or deletes a Plugin (container, k8saudit and json, with clashing plugin names). Rules files are small and tangled on
purpose: macros used across files and priorities, macros only later files define, appends, plugin fields, plugin
sources, ``required_plugin_versions``, and now and then a broken condition. After each step the pure planner
plans a pass with the real rules check, from what the previous pass left (``Plan.remembered``), as the agent does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from falco_operator.api.plain import Plugin, Rulesfile
from falco_operator.artifacts import (
    CONFIG_DIR,
    PLUGINS_CONFIG_FILE,
    RULES_DIR,
    Artifact,
    ArtifactKey,
    Content,
    Delivered,
    Medium,
    Plan,
    Resolution,
    Unavailable,
    load_yaml,
    plan,
)
from falco_operator.artifacts.rules import rules_set_check
from falco_operator.artifacts.yamldoc import plain

RULESFILES = ["base", "team", "extra", "late"]
PLUGIN_OBJECTS = ["container", "k8saudit", "json", "other"]
PLUGIN_NAMES = ["container", "k8saudit", "json"]
MACROS = ["m_a", "m_b", "m_c"]
PRIORITIES = [10, 50, 60, 70]
PLUGINS_DIR = "/usr/share/falco/plugins"
SYSCALL_CONDITIONS = ["evt.num > 0", "proc.name = sh", "fd.name startswith /etc", "container.id != host",
                      "k8s.ns.name = default", "evt.type in (open, openat)"]  # fmt: skip
AUDIT_CONDITIONS = ["ka.verb = get", "ka.user.name = admin", "json.value[/kind] = Event"]


@dataclass
class World:
    """The objects in the namespace, which of them apply to this node, and where each OCI pull stands."""

    rulesfiles: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    """name -> (generation, spec)."""
    plugins: dict[str, tuple[int, str]] = field(default_factory=dict)
    """object name -> (generation, plugin name)."""
    deselected: set[str] = field(default_factory=set)
    pulls: dict[str, Resolution] = field(default_factory=dict)
    """Rulesfile name -> what its OCI source resolves to now."""


@dataclass(frozen=True)
class Step:
    what: str
    result: Plan


def plugin_object(name: str, generation: int, plugin_name: str, libraries: Mapping[str, str] | None = None) -> Plugin:
    config: dict[str, Any] = {"name": plugin_name}
    if libraries is not None:
        config["libraryPath"] = libraries[plugin_name]
        if plugin_name == "container":
            config["initConfig"] = {"label_max_len": 100, "with_size": False}
        else:
            config["initConfig"], config["openParams"] = "", ""
    return Plugin.from_wire({"metadata": {"name": name, "generation": generation}, "spec": {"config": config}})


def _rules_text(rng: random.Random) -> str:
    items: list[str] = []
    for _ in range(rng.randint(0, 3)):
        kind = rng.random()
        macro = rng.choice(MACROS)
        if kind < 0.35:
            condition = rng.choice(SYSCALL_CONDITIONS + MACROS) if rng.random() < 0.8 else rng.choice(MACROS)
            items.append(f"- macro: {macro}\n  condition: {condition}\n")
        elif kind < 0.45:
            items.append(f"- macro: {macro}\n  condition: and evt.num > 1\n  override:\n    condition: append\n")
        elif kind < 0.8:
            name = f"rule {rng.randint(0, 5)}"
            used = " and ".join(rng.sample(SYSCALL_CONDITIONS + MACROS, rng.randint(1, 2)))
            if rng.random() < 0.08:
                used += " and ("  # broken
            items.append(f"- rule: {name}\n  desc: d\n  condition: {used}\n  output: seen %proc.name\n"
                         "  priority: NOTICE\n")  # fmt: skip
        elif kind < 0.9:
            used = rng.choice(AUDIT_CONDITIONS)
            items.append(f"- rule: audit {rng.randint(0, 3)}\n  desc: d\n  condition: {used}\n  output: seen "
                         "%ka.verb\n  priority: NOTICE\n  source: k8s_audit\n")  # fmt: skip
        else:
            plugin_name = rng.choice(PLUGIN_NAMES)
            items.append(f"- required_plugin_versions:\n  - name: {plugin_name}\n    version: 0.1.0\n")
    return "".join(items) or "[]\n"


def _step(world: World, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.4:
        name = rng.choice(RULESFILES)
        generation = world.rulesfiles.get(name, (0, {}))[0] + 1
        text = _rules_text(rng)
        spec: dict[str, Any] = {"priority": rng.choice(PRIORITIES)}
        if rng.random() < 0.3:
            spec["ociArtifact"] = {"reference": f"registry.example/rules/{name}:{generation}"}
            world.pulls[name] = Unavailable("Pending", "Resolving", "the OCI source is being read")
            spec["x-text"] = text
        else:
            spec["inlineRules"] = text
        world.rulesfiles[name] = (generation, spec)
        return f"write Rulesfile {name} (generation {generation})"
    if roll < 0.5 and world.pulls:
        name = rng.choice(sorted(world.pulls))
        spec = world.rulesfiles.get(name, (0, {}))[1]
        if rng.random() < 0.8 and "x-text" in spec:
            world.pulls[name] = Content(spec["x-text"].encode(), f"sha256:{rng.getrandbits(64):016x}")
            return f"pull of Rulesfile {name} arrives"
        world.pulls[name] = Unavailable("Failed", "NotFound", "the tag does not exist")
        return f"pull of Rulesfile {name} fails"
    if roll < 0.62 and world.rulesfiles:
        name = rng.choice(sorted(world.rulesfiles))
        del world.rulesfiles[name]
        world.pulls.pop(name, None)
        return f"delete Rulesfile {name}"
    if roll < 0.75:
        name = rng.choice(RULESFILES + PLUGIN_OBJECTS)
        world.deselected ^= {name}
        return f"relabel: {name} {'stops' if name in world.deselected else 'starts'} applying"
    if roll < 0.92:
        name = rng.choice(PLUGIN_OBJECTS)
        generation = world.plugins.get(name, (0, ""))[0] + 1
        plugin_name = name if name in PLUGIN_NAMES and rng.random() < 0.7 else rng.choice(PLUGIN_NAMES)
        world.plugins[name] = (generation, plugin_name)
        return f"write Plugin {name} (plugin {plugin_name})"
    if world.plugins:
        name = rng.choice(sorted(world.plugins))
        del world.plugins[name]
        return f"delete Plugin {name}"
    return "nothing"


def artifacts(world: World, libraries: Mapping[str, str] | None = None) -> list[Artifact]:
    found: list[Artifact] = []
    for name, (generation, spec) in sorted(world.rulesfiles.items()):
        if name not in world.deselected:
            clean = {key: value for key, value in spec.items() if key != "x-text"}
            found.append(Rulesfile.from_wire({"metadata": {"name": name, "generation": generation},
                                                   "spec": clean}))  # fmt: skip
    for name, (generation, plugin_name) in sorted(world.plugins.items()):
        if name not in world.deselected:
            found.append(plugin_object(name, generation, plugin_name, libraries))
    return found


def sequence(seed: int, steps: int = 8, libraries: Mapping[str, str] | None = None) -> Iterator[Step]:
    """The passes of one random sequence: each step and the plan the agent makes after it."""
    rng = random.Random(seed)
    world = World()
    last_good: Mapping[ArtifactKey, Delivered] = {}
    for _ in range(steps):
        what = _step(world, rng)
        resolutions = {(ArtifactKey("Rulesfile", name), Medium.OCI): resolution
                       for name, resolution in world.pulls.items()}  # fmt: skip
        result = plan(artifacts(world, libraries), resolutions, last_good, plugins_dir=PLUGINS_DIR,
                      rules_set_check=rules_set_check)  # fmt: skip
        last_good = result.remembered
        yield Step(what, result)


def written_plugins(result: Plan) -> list[str]:
    """The plugin names the written plugins fragment loads, in order."""
    fragment = result.directories[CONFIG_DIR].get(PLUGINS_CONFIG_FILE)
    if fragment is None:
        return []
    document = plain(load_yaml(fragment))
    return [str(name) for name in document["load_plugins"]]


def written_rules(result: Plan) -> list[tuple[str, bytes]]:
    """The written rules files in load order."""
    return sorted(result.directories[RULES_DIR].items())
