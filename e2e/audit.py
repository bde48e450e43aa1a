"""Count writes at the API server from its audit log (every write is logged, at Metadata level)."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
