"""Kubernetes Events (``events.k8s.io/v1``), recorded for transitions only: a repeat of the last event is dropped."""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

from .client import Client
from .errors import ApiError
from .resources import EVENTS

Json = dict[str, Any]
log = logging.getLogger("falco_operator.kube.events")


class EventRecorder:
    def __init__(self, client: Client, controller: str, instance: str) -> None:
        self.client = client
        self.controller = controller
        self.instance = instance
        self._last: dict[str, tuple[str, str, str]] = {}

    async def emit(self, regarding: Json, event_type: str, reason: str, note: str, action: str = "Reconcile") -> bool:
        """Record an event about ``regarding`` unless it repeats the last one for that object; never raises."""
        metadata = regarding.get("metadata") or {}
        uid = str(metadata.get("uid") or metadata.get("name"))
        signature = (event_type, reason, note)
        if self._last.get(uid) == signature:
            return False
        namespace = metadata.get("namespace") or "default"
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{metadata.get('name')}.{time.time_ns():x}", "namespace": namespace},
            "eventTime": now,
            "reportingController": self.controller,
            "reportingInstance": self.instance,
            "action": action,
            "reason": reason,
            "note": truncate_utf8(note, MAX_NOTE_BYTES),
            "type": event_type,
            "regarding": {
                "apiVersion": regarding.get("apiVersion"),
                "kind": regarding.get("kind"),
                "name": metadata.get("name"),
                "namespace": metadata.get("namespace"),
                "uid": metadata.get("uid"),
            },
        }
        try:
            await self.client.create(EVENTS, body, namespace)
        except ApiError as error:
            log.warning("could not record event %s on %s: %s", reason, metadata.get("name"), error)
            return False
        self._last[uid] = signature
        return True

    def forget(self, regarding: Json) -> None:
        metadata = regarding.get("metadata") or {}
        self._last.pop(str(metadata.get("uid") or metadata.get("name")), None)


MAX_NOTE_BYTES = 1024
"""The API server refuses an Event whose note is longer than this many bytes (not characters)."""


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character."""
    return text.encode()[:limit].decode(errors="ignore")
