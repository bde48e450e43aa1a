"""Object names for what the migration writes."""

from __future__ import annotations

import re


def object_name(text: str) -> str:
    """``text`` as a Kubernetes object name: lower case, letters, digits, '-' and '.', at most 253 characters."""
    name = re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.")
    return name[:253].rstrip("-.") or "unnamed"
