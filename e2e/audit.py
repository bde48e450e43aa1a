"""Count writes at the API server from its audit log (every write is logged, at Metadata level)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


@dataclass(frozen=True)
class AuditMark:
    path: Path
    offset: int

    @classmethod
    def now(cls, path: Path) -> AuditMark:
        return cls(path, path.stat().st_size if path.exists() else 0)

    def writes_since(self, *, namespace: str | None = None, user: str | None = None) -> list[dict[str, Any]]:
        """Completed write requests logged after this mark, optionally only in ``namespace`` or by ``user``."""
        with self.path.open("rb") as log:
            log.seek(self.offset)
            lines = log.read().decode(errors="replace").splitlines()
        writes = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("stage") != "ResponseComplete" or event.get("verb") not in WRITE_VERBS:
                continue
            if namespace is not None and (event.get("objectRef") or {}).get("namespace") != namespace:
                continue
            if user is not None and (event.get("user") or {}).get("username") != user:
                continue
            writes.append(event)
        return writes


def describe(writes: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{w['verb']} {w.get('objectRef', {}).get('resource')}/{w.get('objectRef', {}).get('name')} "
        f"by {w.get('user', {}).get('username')}"
        for w in writes[:20]
    )


def completed_at(event: dict[str, Any]) -> float:
    """When the API server completed a logged request (seconds since the epoch, microseconds kept)."""
    return datetime.fromisoformat(str(event["stageTimestamp"]).replace("Z", "+00:00")).timestamp()


def after_last_report(writes: list[dict[str, Any]], status_writes: list[dict[str, Any]]) -> float:
    """Seconds from the last ArtifactReport write among ``writes`` to the last of ``status_writes``."""
    reports = [w for w in writes if (w.get("objectRef") or {}).get("resource") == "artifactreports"]
    return completed_at(status_writes[-1]) - max(map(completed_at, reports))
