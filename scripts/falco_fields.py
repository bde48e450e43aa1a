"""Regenerate falco_operator/artifacts/rules/{fields,events}.json from a Falco binary.

    python scripts/falco_fields.py [--falco BIN] [--container-plugin SO]

Falco lists its built-in fields and those of the plugins it loads (``falco --list --format json``) and its event
types (``falco --list-events --format json``); the harness finds Falco as the tests do (e2e/falco.py).
"""

from __future__ import annotations

import argparse
import json
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    binaries = find_falco()
    version = subprocess.run([str(binaries.falco), "--version"], capture_output=True, text=True).stdout.split()[2]
    fields = fields_document(falco_json(binaries, "--list"), version)
    events = events_document(falco_json(binaries, "--list-events"), version)
    (OUTPUT / "fields.json").write_text(json.dumps(fields, indent=0, sort_keys=True) + "\n")
    (OUTPUT / "events.json").write_text(json.dumps(events, indent=0, sort_keys=True) + "\n")
    print(f"{len(fields['fields'])} fields, {len(events['event_types'])} event types from Falco {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
