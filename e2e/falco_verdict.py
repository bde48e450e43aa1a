"""What ``falco -V ... -o json_output=true`` said about rules files, read into a verdict (pure: no process here)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]


@dataclass(frozen=True)
class FalcoVerdict:
    successful: bool
    results: list[Json]
    """One per file, in order, as Falco gives them (``name``, ``successful``, ``errors``, ``warnings``,
    ``schema_valid``...), each error and warning with ``file``, ``line`` and ``column`` added (counted from 1; the
    innermost place in a file, None when Falco gives none). After a file fails, Falco 0.44.1 reports every later
    file as failed too, with the same error (whose ``file`` is the earlier file)."""
    raw: Json
    """Falco's JSON as it printed it (positions there count from 0)."""
    failure: str | None = None
    """Falco's error when it stopped before judging any file (a plugin requirement, an unreadable file)."""

    def errors(self) -> list[Json]:
        """Every distinct error, in order (an error repeated for the files after it is listed once)."""
        seen: list[Json] = []
        for result in self.results:
            for error in result.get("errors") or []:
                if error not in seen:
                    seen.append(error)
        return seen

    def error_codes(self) -> list[str]:
        return [str(error["code"]) for error in self.errors()]

    def error_lines(self) -> list[tuple[str, int]]:
        """(file, line counted from 1) of every distinct error that has a place in a file."""
        return [(str(error["file"]), int(error["line"])) for error in self.errors() if error.get("file")]


def verdict_from_output(returncode: int, stdout: str, stderr: str) -> FalcoVerdict:
    raw = _last_json_object(stdout)
    if raw is None:
        # Falco stops before judging any file for some errors (a required plugin that is not loaded): no JSON,
        # exit 1, and "Error: <why>" on stderr.
        errors = [line.removeprefix("Error: ") for line in stderr.splitlines() if line.startswith("Error: ")]
        if returncode == 0 or not errors:
            raise AssertionError(f"falco -V gave no verdict (exit {returncode}):\n{stdout}\n{stderr}")
        return FalcoVerdict(False, [], {}, errors[-1])
    results = [_with_places(item) for item in copy.deepcopy(raw.get("falco_load_results") or [])]
    return FalcoVerdict(returncode == 0 and all(r.get("successful") for r in results), results, raw)


def _with_places(result: Json) -> Json:
    for item in (result.get("errors") or []) + (result.get("warnings") or []):
        locations = (item.get("context") or {}).get("locations") or []
        # The innermost location in a file (a condition expression's "name" is the expression itself, quoted).
        positions = [location.get("position") or {} for location in locations]
        in_files = [position for position in positions if not str(position.get("name", "")).startswith('"')]
        place = in_files[-1] if in_files else {}
        item["file"] = place.get("name")
        item["line"] = int(place["line"]) + 1 if "line" in place else None
        item["column"] = int(place["column"]) + 1 if "column" in place else None
    return result


def _last_json_object(text: str) -> Json | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None
