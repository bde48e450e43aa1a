"""Regenerate falco_operator/artifacts/rules/{fields,events}.json.

    python scripts/falco_fields.py [--plugins-git-dir DIR]

Falco lists its built-in fields and those of the plugins it loads (``falco --list --format json``: libsinsp's
fields and the container plugin's) and its event types (``falco --list-events --format json``); the harness
finds Falco as the tests do (e2e/falco.py). The fields of plugins not run here (k8saudit, cloudtrail, json,
k8smeta) come from their published sources: a clone (or bare mirror) of github.com/falcosecurity/plugins given
with ``--plugins-git-dir``; its commit is recorded in the output.
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

from e2e.falco import FalcoBinaries, falco_config, find_falco, write_yaml  # noqa: E402

OUTPUT = ROOT / "falco_operator" / "artifacts" / "rules"


def falco_json(binaries: FalcoBinaries, *args: str) -> Any:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        for name in ("rules", "config"):
            (directory / name).mkdir()
        config = falco_config(directory / "rules", directory / "config", 0, binaries=binaries,
                              load_container_plugin=True)  # fmt: skip
        path = write_yaml(directory / "falco.yaml", config)
        done = subprocess.run([str(binaries.falco), "-c", str(path), *args, "--format", "json"], capture_output=True,
                              text=True, check=True)  # fmt: skip
        return json.loads(done.stdout)


def fields_document(listing: Any, version: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for field_class in listing["fieldclasses"]:
        plugin = None
        if str(field_class.get("name", "")).endswith("(plugin)"):
            plugin = str(field_class["name"]).removesuffix("(plugin)").strip()
        for entry in field_class["fields"]:
            argument = entry.get("argument")
            record: dict[str, Any] = {"type": entry["type"], "sources": sorted(field_class["event_sources"])}
            if plugin:
                record["plugin"] = plugin
            if argument is not None:
                record["arg"] = "required" if argument.get("required") else "allowed"
                kinds = sorted(kind.lower() for kind in argument.get("type") or [])
                if kinds:
                    record["arg_kinds"] = kinds
            fields[entry["name"]] = record
    return {"generated_by": "scripts/falco_fields.py", "falco": version, "fields": dict(sorted(fields.items()))}


def events_document(listing: Any, version: str) -> dict[str, Any]:
    events = [event for group in listing.values() if isinstance(group, list) for event in group]
    names = sorted({event["name"] for event in events})
    parameters = sorted({parameter["name"] for event in events for parameter in event.get("params") or []})
    return {"generated_by": "scripts/falco_fields.py", "falco": version, "event_types": names,
            "event_parameters": parameters}  # fmt: skip


# plugin: (source file in falcosecurity/plugins, the event sources its fields apply to)
PLUGIN_SOURCES = {
    "k8saudit": ("plugins/k8saudit/pkg/k8saudit/fields.go", ["k8s_audit"]),
    "cloudtrail": ("plugins/cloudtrail/pkg/cloudtrail/extract.go", ["aws_cloudtrail"]),
    "json": ("plugins/json/pkg/json/json.go", []),
    "k8smeta": ("plugins/k8smeta/src/plugin.cpp", ["syscall"]),
}
_GO_TYPES = {"string": "CHARBUF", "uint64": "UINT64", "reltime": "RELTIME", "abstime": "ABSTIME", "bool": "BOOL",
             "ipaddr": "IPADDR", "ipnet": "IPNET"}  # fmt: skip
_GO_ENTRY = re.compile(r'Type:\s*"(\w+)",\s*Name:\s*"([^"]+)"')
_CPP_ENTRY = re.compile(r'\{\s*ft::FTYPE_(\w+),\s*"([^"]+)"')


def plugin_fields(git_dir: Path) -> tuple[str, dict[str, Any]]:
    """(commit, fields) of the plugins in PLUGIN_SOURCES, read from their sources at HEAD."""
    git = ["git", f"--git-dir={git_dir}"] if (git_dir / "HEAD").is_file() else ["git", "-C", str(git_dir)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    fields: dict[str, Any] = {}
    for plugin, (path, sources) in PLUGIN_SOURCES.items():
        text = subprocess.run([*git, "show", f"HEAD:{path}"], capture_output=True, text=True, check=True).stdout
        pattern = _CPP_ENTRY if path.endswith(".cpp") else _GO_ENTRY
        matches = list(pattern.finditer(text))
        for index, match in enumerate(matches):
            entry = text[match.end() : matches[index + 1].start() if index + 1 < len(matches) else len(text)]
            entry = entry.split("\n\t}", 1)[0] if not path.endswith(".cpp") else entry
            raw_type = match.group(1)
            record: dict[str, Any] = {"type": _GO_TYPES.get(raw_type, raw_type.upper()) if not path.endswith(".cpp")
                                      else {"STRING": "CHARBUF"}.get(raw_type, raw_type), "sources": sources,
                                      "plugin": plugin}  # fmt: skip
            if re.search(r"Arg:|\.(key|index|required)\s*=\s*true", entry):
                required = re.search(r"IsRequired:\s*true|\.required\s*=\s*true", entry) is not None
                record["arg"] = "required" if required else "allowed"
                kinds = [kind for kind, mark in (("index", r"IsIndex:\s*true|\.index\s*=\s*true"),
                                                 ("key", r"IsKey:\s*true|\.key\s*=\s*true"))
                         if re.search(mark, entry)]  # fmt: skip
                if kinds:
                    record["arg_kinds"] = kinds
            fields[match.group(2)] = record
        fields.update(_generated_container_fields(text, sources, plugin))
    return commit, fields


def _generated_container_fields(text: str, sources: list[str], plugin: str) -> dict[str, Any]:
    """k8saudit builds the fields of init and ephemeral containers in a loop (``containerListFields``)."""
    body = text.partition("func containerListFields(")[2]
    if not body:
        return {}
    names = re.findall(r'entry\("([\w.]+)"', body)
    conditional = re.findall(r'if withHostPort \{[^}]*entry\("([\w.]+)"', body)
    fields: dict[str, Any] = {}
    for container_list, with_host_port in re.findall(
        r'containerListFields\("(\w+)",\s*"[^"]*",\s*(true|false)\)', text
    ):
        for name in names:
            if name in conditional and with_host_port != "true":
                continue
            fields[f"ka.req.pod.{container_list}.{name}"] = {"type": "CHARBUF", "sources": sources, "plugin": plugin,
                                                               "arg": "allowed", "arg_kinds": ["index"]}  # fmt: skip
    return fields


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plugins-git-dir", type=Path, default=None,
                        help="a clone or bare mirror of github.com/falcosecurity/plugins")  # fmt: skip
    args = parser.parse_args()
    binaries = find_falco()
    version = subprocess.run([str(binaries.falco), "--version"], capture_output=True, text=True).stdout.split()[2]
    fields = fields_document(falco_json(binaries, "--list"), version)
    if args.plugins_git_dir is not None:
        commit, extra = plugin_fields(args.plugins_git_dir)
        fields["plugins_commit"] = commit
        fields["fields"] = dict(sorted({**extra, **fields["fields"]}.items()))
    events = events_document(falco_json(binaries, "--list-events"), version)
    (OUTPUT / "fields.json").write_text(json.dumps(fields, indent=0, sort_keys=True) + "\n")
    (OUTPUT / "events.json").write_text(json.dumps(events, indent=0, sort_keys=True) + "\n")
    print(f"{len(fields['fields'])} fields, {len(events['event_types'])} event types from Falco {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
