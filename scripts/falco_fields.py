"""Regenerate falco_operator/artifacts/rules/{fields,events}.json.

    python scripts/falco_fields.py [--plugins-dir DIR] [--libs-git-dir DIR] [--plugins-git-dir DIR]

Falco lists its built-in fields and those of the plugins it loads (``falco --list --format json``), the name,
version and event source of each plugin (``--list-plugins``) and its event types (``falco --list-events --format
json``); the harness finds Falco as the tests do (e2e/falco.py). Falco is run once without plugins (libsinsp's
fields) and once with each plugin library of ``--plugins-dir`` (default ../shared/falco/plugins: container,
k8saudit, k8saudit-gke, json, cloudtrail, okta, github, gcpaudit; some of them cannot be loaded together) with only
the json plugin beside it, so every field records the plugins that provide it and the event sources it applies to
(json's fields and Falco's generic ``evt.*`` fields apply to every source).

Falco does not list the fields it deprecates (``evt.dir``, ``evt.latency``...), which it still accepts with a
warning. They are read from libsinsp's sources (``--libs-git-dir``: a clone or bare mirror of
github.com/falcosecurity/libs, at the tag of the libs version Falco reports) and kept when Falco accepts a rule
using each. The fields of plugins that are not built here (k8smeta) come from their published sources: a clone
(or bare mirror) of github.com/falcosecurity/plugins given with ``--plugins-git-dir``; its commit is recorded in
the output.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from e2e.falco import SHARED_FALCO, FalcoBinaries, find_falco, validate_rules, write_yaml  # noqa: E402

OUTPUT = ROOT / "falco_operator" / "artifacts" / "rules"
Json = dict[str, Any]


def falco_run(binaries: FalcoBinaries, plugins: list[Json], *args: str) -> str:
    """Falco's standard output for ``args``, run with a config that loads ``plugins``."""
    config: Json = {"engine": {"kind": "nodriver"}, "load_plugins": [plugin["name"] for plugin in plugins],
                    "plugins": plugins}  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        path = write_yaml(Path(scratch) / "falco.yaml", config)
        done = subprocess.run([str(binaries.falco), "-c", str(path), *args], capture_output=True, text=True,
                              check=True)  # fmt: skip
        return done.stdout


def plugin_entry(library: Path) -> Json:
    """The config entry of a plugin library ``lib<name>.so``: empty configs are enough to list its fields."""
    name = library.name.removeprefix("lib").removesuffix(".so")
    return {"name": name, "library_path": str(library), "init_config": "", "open_params": ""}


def listed_plugins(text: str) -> Json:
    """``{name: {"version": ..., "event_source": ...}}`` from ``falco --list-plugins``."""
    plugins: Json = {}
    for block in text.split("\nName: ")[1:]:
        name = block.split("\n", 1)[0].strip()
        version = re.search(r"^Version: (\S+)", block, re.MULTILINE)
        source = re.search(r"source='([^']+)'", block)
        plugins[name] = {"version": version.group(1) if version else None,
                         "event_source": source.group(1) if source else None}  # fmt: skip
    return plugins


def listed_fields(listing: Any) -> Json:
    fields: Json = {}
    for field_class in listing["fieldclasses"]:
        plugin = None
        if str(field_class.get("name", "")).endswith("(plugin)"):
            plugin = str(field_class["name"]).removesuffix("(plugin)").strip()
        for entry in field_class["fields"]:
            argument = entry.get("argument")
            record: Json = {"type": entry["type"], "sources": sorted(field_class["event_sources"])}
            if plugin:
                record["plugins"] = [plugin]
            if argument is not None:
                record["arg"] = "required" if argument.get("required") else "allowed"
                kinds = sorted(kind.lower() for kind in argument.get("type") or [])
                if kinds:
                    record["arg_kinds"] = kinds
            fields[entry["name"]] = record
    return fields


def merge_fields(into: Json, more: Json) -> None:
    """Fields of one more run: a field two plugins provide (k8saudit and k8saudit-gke) names both."""
    for name, record in more.items():
        known = into.get(name)
        if known is None:
            into[name] = record
            continue
        known["sources"] = sorted(set(known["sources"]) | set(record["sources"]))
        if "plugins" in record:
            known["plugins"] = sorted(set(known.get("plugins", [])) | set(record["plugins"]))


def events_document(listing: Any, version: str) -> Json:
    events = [event for group in listing.values() if isinstance(group, list) for event in group]
    names = sorted({event["name"] for event in events})
    parameters = sorted({parameter["name"] for event in events for parameter in event.get("params") or []})
    return {"generated_by": "scripts/falco_fields.py", "falco": version, "event_types": names,
            "event_parameters": parameters}  # fmt: skip


# -- deprecated fields (libsinsp sources) ------------------------------------------------------------------

_DEPRECATED_ENTRY = re.compile(r'\{\s*PT_(\w+),\s*[^,{}]*EPF_DEPRECATED[^,{}]*,\s*\w+,\s*"([^"]+)"')
_PT_TYPES = {"CHARBUF": "CHARBUF", "RELTIME": "RELTIME", "UINT64": "UINT64", "INT64": "INT64", "UINT32": "UINT32"}


def deprecated_fields(git_dir: Path, libs_version: str) -> Json:
    """Fields libsinsp marks deprecated, from its filtercheck tables at the tag ``libs_version``."""
    git = _git(git_dir)
    listing = subprocess.run([*git, "ls-tree", "--name-only", f"{libs_version}:userspace/libsinsp"],
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    fields: Json = {}
    for file_name in listing:
        if not (file_name.startswith("sinsp_filtercheck") and file_name.endswith(".cpp")):
            continue
        text = subprocess.run([*git, "show", f"{libs_version}:userspace/libsinsp/{file_name}"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
        for match in _DEPRECATED_ENTRY.finditer(text):
            fields[match.group(2)] = {"type": _PT_TYPES.get(match.group(1), match.group(1)), "sources": ["syscall"],
                                      "deprecated": True}  # fmt: skip
    return fields


def accepted_by_falco(binaries: FalcoBinaries, names: list[str]) -> list[str]:
    """The fields of ``names`` Falco accepts in a condition and an output (with a warning for deprecated ones)."""
    accepted = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, name in enumerate(names):
            path = Path(scratch) / f"field-{index}.yaml"
            rule = {"rule": "uses a field", "desc": "d", "condition": f"evt.type = open and {name} exists",
                    "output": f"%{name}", "priority": "INFO"}  # fmt: skip
            path.write_text(json.dumps([rule]))
            if validate_rules([path], binaries=binaries, load_container_plugin=False).successful:
                accepted.append(name)
    return accepted


# -- plugins not built here (published sources) ------------------------------------------------------------

# plugin: (source file in falcosecurity/plugins, the event sources its fields apply to)
PLUGIN_SOURCES = {
    "k8smeta": ("plugins/k8smeta/src/plugin.cpp", ["syscall"]),
}
_CPP_ENTRY = re.compile(r'\{\s*ft::FTYPE_(\w+),\s*"([^"]+)"')


def _git(git_dir: Path) -> list[str]:
    return ["git", f"--git-dir={git_dir}"] if (git_dir / "HEAD").is_file() else ["git", "-C", str(git_dir)]


def plugin_source_fields(git_dir: Path) -> tuple[str, Json]:
    """(commit, fields) of the plugins in PLUGIN_SOURCES, read from their sources at HEAD."""
    git = _git(git_dir)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    fields: Json = {}
    for plugin, (path, sources) in PLUGIN_SOURCES.items():
        text = subprocess.run([*git, "show", f"HEAD:{path}"], capture_output=True, text=True, check=True).stdout
        matches = list(_CPP_ENTRY.finditer(text))
        for index, match in enumerate(matches):
            entry = text[match.end() : matches[index + 1].start() if index + 1 < len(matches) else len(text)]
            record: Json = {"type": {"STRING": "CHARBUF"}.get(match.group(1), match.group(1)), "sources": sources,
                            "plugins": [plugin]}  # fmt: skip
            if re.search(r"\.(key|index|required)\s*=\s*true", entry):
                required = re.search(r"\.required\s*=\s*true", entry) is not None
                record["arg"] = "required" if required else "allowed"
                kinds = [kind for kind, mark in (("index", r"\.index\s*=\s*true"), ("key", r"\.key\s*=\s*true"))
                         if re.search(mark, entry)]  # fmt: skip
                if kinds:
                    record["arg_kinds"] = kinds
            fields[match.group(2)] = record
    return commit, fields


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plugins-dir", type=Path, default=SHARED_FALCO / "plugins",
                        help="plugin libraries lib<name>.so to list fields of (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--libs-git-dir",
        type=Path,
        default=None,
        help="a clone or bare mirror of github.com/falcosecurity/libs (deprecated fields)",
    )
    parser.add_argument(
        "--plugins-git-dir",
        type=Path,
        default=None,
        help="a clone or bare mirror of github.com/falcosecurity/plugins (k8smeta's fields)",
    )
    args = parser.parse_args()
    binaries = find_falco()
    about = subprocess.run([str(binaries.falco), "--version"], capture_output=True, text=True, check=True).stdout
    version = about.split()[2]
    fields = listed_fields(json.loads(falco_run(binaries, [], "--list", "--format", "json")))
    plugins: Json = {}
    libraries = sorted(args.plugins_dir.glob("lib*.so"))
    companion = [plugin_entry(library) for library in libraries if library.name == "libjson.so"]
    for library in libraries:
        # With json beside it: json extracts from every source, and lists each source loaded with it.
        entries = [plugin_entry(library), *(entry for entry in companion if entry["library_path"] != str(library))]
        merge_fields(fields, listed_fields(json.loads(falco_run(binaries, entries, "--list", "--format", "json"))))
        plugins.update(listed_plugins(falco_run(binaries, entries[:1], "--list-plugins")))
    document: Json = {"generated_by": "scripts/falco_fields.py", "falco": version, "plugins": plugins}
    if args.libs_git_dir is not None:
        libs_version = re.search(r"Libs version:\s*(\S+)", about)
        assert libs_version, about
        deprecated = deprecated_fields(args.libs_git_dir, libs_version.group(1))
        for name in accepted_by_falco(binaries, sorted(deprecated)):
            fields.setdefault(name, deprecated[name])
    if args.plugins_git_dir is not None:
        commit, extra = plugin_source_fields(args.plugins_git_dir)
        document["plugins_commit"] = commit
        for name, record in extra.items():
            fields.setdefault(name, record)
            plugins.setdefault(record["plugins"][0], {"version": None, "event_source": None})
    document["fields"] = dict(sorted(fields.items()))
    events = events_document(json.loads(falco_run(binaries, [], "--list-events", "--format", "json")), version)
    (OUTPUT / "fields.json").write_text(json.dumps(document, indent=0, sort_keys=True) + "\n")
    (OUTPUT / "events.json").write_text(json.dumps(events, indent=0, sort_keys=True) + "\n")
    print(f"{len(fields)} fields of Falco {version} and {len(plugins)} plugins, {len(events['event_types'])} "
          "event types")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
