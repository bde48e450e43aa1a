"""The chart's falcoctl (an init container installing ``refs``, a sidecar following them): the OCI sources the
operator's artifact agent pulls instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .findings import Context
from .refs import Artifact, UnresolvedRef, resolve

NO_FALCOCTL = "the operator runs no falcoctl: its artifact agent pulls the Rulesfiles' and Plugins' OCI sources"
# falcoctl settings that have no meaning for the agent; the refs, every, install/follow.enabled are mapped.
FALCOCTL_ONLY = (
    "falcoctl.image",
    "falcoctl.artifact.install.env",
    "falcoctl.artifact.install.envFrom",
    "falcoctl.artifact.install.args",
    "falcoctl.artifact.install.resources",
    "falcoctl.artifact.install.securityContext",
    "falcoctl.artifact.install.mounts",
    "falcoctl.artifact.follow.env",
    "falcoctl.artifact.follow.envFrom",
    "falcoctl.artifact.follow.args",
    "falcoctl.artifact.follow.resources",
    "falcoctl.artifact.follow.securityContext",
    "falcoctl.artifact.follow.mounts",
    "falcoctl.config.artifact.install.rulesfilesDir",
    "falcoctl.config.artifact.install.pluginsDir",
    "falcoctl.config.artifact.install.stateDir",
    "falcoctl.config.artifact.follow.rulesfilesDir",
    "falcoctl.config.artifact.follow.pluginsDir",
    "falcoctl.config.artifact.follow.stateDir",
    "falcoctl.config.artifact.follow.falcoversions",
    "falcoctl.config.artifact.install.resolveDeps",
)


@dataclass(frozen=True)
class Source:
    """An artifact falcoctl installs, and how often it follows it (None: installed once)."""

    artifact: Artifact
    follow_every: str | None

    def oci(self) -> dict[str, Any]:
        oci: dict[str, Any] = {"reference": self.artifact.reference}
        if self.follow_every:
            oci["refreshInterval"] = self.follow_every
        return oci


def falcoctl_sources(context: Context) -> dict[str, Source]:
    """The artifacts the chart's falcoctl installs or follows, by name, in the order of their references."""
    for path in FALCOCTL_ONLY:
        context.unmapped_if_changed(path, NO_FALCOCTL)
    context.unmapped_if_changed(
        "falcoctl.config.indexes",
        "short references are resolved against the "
        "falcosecurity index only; other indexes' artifacts need their full reference",
    )
    context.unmapped_if_changed(
        "falcoctl.config.artifact.allowedTypes",
        "the operator takes the artifact type from the kind: Rulesfile or Plugin",
    )
    context.handle(
        "falcoctl.artifact.install.enabled",
        "falcoctl.artifact.follow.enabled",
        "falcoctl.config.artifact.install.refs",
        "falcoctl.config.artifact.follow.refs",
        "falcoctl.config.artifact.follow.every",
    )
    installs = bool(context.get("falcoctl.artifact.install.enabled"))
    follows = bool(context.get("falcoctl.artifact.follow.enabled"))
    every = context.get("falcoctl.config.artifact.follow.every") or None
    sources: dict[str, Source] = {}
    for path, enabled, interval in (
        ("falcoctl.config.artifact.follow.refs", follows, every),
        ("falcoctl.config.artifact.install.refs", installs, None),
    ):
        for ref in (context.get(path) or []) if enabled else []:
            try:
                artifact = resolve(str(ref))
            except UnresolvedRef as error:
                context.unmapped(path, str(error))
                continue
            sources.setdefault(artifact.name, Source(artifact, str(interval) if interval else None))
    return dict(sorted(sources.items(), key=lambda item: _order(context, item[1].artifact)))


def _order(context: Context, artifact: Artifact) -> int:
    """Position of the artifact's reference in the install refs (then follow refs): the order falcoctl uses."""
    refs = [
        *(context.get("falcoctl.config.artifact.install.refs") or []),
        *(context.get("falcoctl.config.artifact.follow.refs") or []),
    ]
    for index, ref in enumerate(refs):
        try:
            if resolve(str(ref)).name == artifact.name:
                return index
        except UnresolvedRef:
            continue
    return len(refs)
