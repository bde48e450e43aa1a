"""Source resolution: each fetched source of an artifact becomes bytes (``Content``) or a reason (``Unavailable``).

ConfigMaps are watched one by one, by name (a field selector on ``metadata.name``), because the agent's Role
grants ``list`` and ``watch`` on exactly the ConfigMaps its artifacts name. OCI sources are pulled in the
background (``pulls``); a pass takes whatever they have answered so far.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import anyio.abc

from falco_operator.api.plain import Config, Rulesfile
from falco_operator.artifacts import Artifact, ArtifactKey, Content, Medium, Resolution, Unavailable, artifact_key
from falco_operator.kube import Client, EventHandler, Forbidden, Informer
from falco_operator.kube.resources import CONFIG_MAPS

log = logging.getLogger("artifact_agent.sources")
Json = dict[str, Any]


def config_map_reference(artifact: Artifact) -> tuple[str, str] | None:
    """(ConfigMap name, key) an artifact reads, if any."""
    if isinstance(artifact, (Rulesfile, Config)) and artifact.spec.config_map_ref:
        return artifact.spec.config_map_ref.name, artifact.spec.config_map_ref.key
    return None


class ConfigMapWatches:
    """One informer per referenced ConfigMap, started and stopped as the set of references changes."""

    def __init__(self, client: Client, namespace: str, on_change: Callable[[], None]) -> None:
        self._client = client
        self._namespace = namespace
        self._on_change = on_change
        self._watches: dict[str, tuple[Informer, anyio.CancelScope]] = {}
        self._group: anyio.abc.TaskGroup | None = None
        self._settled = anyio.Event()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as group:
            self._group = group
            task_status.started()
            await anyio.sleep_forever()

    @property
    def informers(self) -> list[Informer]:
        return [informer for informer, _ in self._watches.values()]

    def watch_only(self, names: Iterable[str]) -> None:
        wanted = set(names)
        for name in set(self._watches) - wanted:
            _, scope = self._watches.pop(name)
            scope.cancel()
        for name in sorted(wanted - set(self._watches)):
            self._start(name)

    def settled(self) -> bool:
        """Every watched ConfigMap was listed, or its list failed (the failure is then reported)."""
        return all(informer.has_synced or informer.last_error for informer, _ in self._watches.values())

    async def wait_settled(self) -> None:
        if not self.settled():
            await self._settled.wait()

    def _changed_and_check(self) -> None:
        self._on_change()
        if self.settled():
            self._settled.set()

    def _start(self, name: str) -> None:
        assert self._group is not None, "run() first"
        selector = f"metadata.name={name}"
        informer = Informer(self._client, CONFIG_MAPS, namespace=self._namespace, field_selector=selector)
        changed = self._on_change
        informer.add_handler(EventHandler(lambda _: changed(), lambda _, __: changed(), lambda _: changed()))
        informer.add_error_handler(lambda _: self._changed_and_check())
        scope = anyio.CancelScope()
        self._watches[name] = (informer, scope)
        self._settled = anyio.Event()

        async def run() -> None:
            with scope:
                async with anyio.create_task_group() as group:
                    await group.start(informer.run)
                    self._changed_and_check()

        self._group.start_soon(run)

    def resolve(self, name: str, key: str) -> Resolution:
        watch = self._watches.get(name)
        if watch is None:
            return Unavailable("Pending", "Resolving", f"ConfigMap {name} is not watched yet")
        informer, _ = watch
        if not informer.has_synced:
            error = informer.last_error
            if isinstance(error, Forbidden):
                return Unavailable(
                    "Failed", "Forbidden",
                    f"the agent may not read ConfigMap {name}: its Role lists the ConfigMaps that artifacts of "
                    "this Falco name, and the operator updates it; check that the operator runs",
                )  # fmt: skip
            if error is not None:
                return Unavailable("Pending", "Unreachable", f"ConfigMap {name} cannot be read yet: {error}")
            return Unavailable("Pending", "Resolving", f"ConfigMap {name} is being read")
        config_map = informer.store.get_by_name(name, self._namespace)
        if config_map is None:
            return Unavailable("Failed", "ConfigMapNotFound", f"ConfigMap {name} does not exist in {self._namespace}")
        return _key_content(config_map, name, key)


def _key_content(config_map: Json, name: str, key: str) -> Resolution:
    data = config_map.get("data") or {}
    binary = config_map.get("binaryData") or {}
    if key in data:
        return Content(str(data[key]).encode())
    if key in binary:
        return Content(base64.b64decode(binary[key]))
    keys = ", ".join(sorted([*data, *binary])) or "none"
    return Unavailable("Failed", "ConfigMapKeyNotFound", f"ConfigMap {name} has no key {key!r} (its keys: {keys})")


def resolve(
    artifacts: Iterable[Artifact], config_maps: ConfigMapWatches, oci: Callable[[ArtifactKey], Resolution | None]
) -> dict[tuple[ArtifactKey, Medium], Resolution]:
    """Every fetched source of every artifact (``oci``: the OCI pull's answer so far for an artifact)."""
    resolutions: dict[tuple[ArtifactKey, Medium], Resolution] = {}
    for artifact in artifacts:
        key = artifact_key(artifact)
        reference = config_map_reference(artifact)
        if reference:
            resolutions[(key, Medium.CONFIGMAP)] = config_maps.resolve(*reference)
        pulled = oci(key)
        if pulled is not None:
            resolutions[(key, Medium.OCI)] = pulled
    return resolutions
