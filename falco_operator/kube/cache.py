"""Informers for a set of namespaces (or all), read as one cache."""

from __future__ import annotations

from typing import Any

from .informer import Informer, Transform
from .manager import Manager
from .resources import Resource
from .store import BY_OWNER

Json = dict[str, Any]


class Cache:
    """One informer per resource and watched namespace; cluster-scoped resources get one informer."""

    def __init__(self, manager: Manager, namespaces: tuple[str, ...] = ()) -> None:
        self.manager = manager
        self.namespaces = namespaces
        self._informers: dict[Resource, dict[str | None, Informer]] = {}

    def watch(
        self, resource: Resource, *, label_selector: str | None = None, resync_period: float | None = None,
        transform: Transform | None = None,
    ) -> list[Informer]:  # fmt: skip
        scopes: tuple[str | None, ...] = self.namespaces if (resource.namespaced and self.namespaces) else (None,)
        informers: dict[str | None, Informer] = {}
        for scope in scopes:
            informers[scope] = self.manager.informer(resource, namespace=scope, label_selector=label_selector,
                                                     resync_period=resync_period, transform=transform)  # fmt: skip
        self._informers[resource] = informers
        return list(informers.values())

    def _informer(self, resource: Resource, namespace: str | None) -> Informer | None:
        informers = self._informers.get(resource)
        if informers is None:
            raise KeyError(f"{resource.kind} is not watched")
        return informers.get(None) or (informers.get(namespace) if namespace else None)

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> Json | None:
        informer = self._informer(resource, namespace)
        if informer is None:
            return None
        return informer.store.get_by_name(name, namespace if resource.namespaced else None)

    def in_namespace(self, resource: Resource, namespace: str) -> list[Json]:
        informer = self._informer(resource, namespace)
        return informer.store.by_index("namespace", namespace) if informer else []

    def owned_by(self, resource: Resource, namespace: str, owner_uid: str) -> list[Json]:
        """The cached objects of ``resource`` in ``namespace`` with an ownerReference to ``owner_uid``."""
        informer = self._informer(resource, namespace)
        if informer is None:
            return []
        owned = informer.store.by_index(BY_OWNER, owner_uid)
        return [obj for obj in owned if (obj.get("metadata") or {}).get("namespace") == namespace]

    def revision(self, resource: Resource) -> int:
        """Changes so far to the cached objects of ``resource``: the same number, the same objects."""
        informers = self._informers.get(resource)
        if informers is None:
            raise KeyError(f"{resource.kind} is not watched")
        return sum(informer.store.revision for informer in informers.values())

    def objects(self, resource: Resource) -> list[Json]:
        """Every cached object of ``resource``, in every watched namespace."""
        informers = self._informers.get(resource)
        if informers is None:
            raise KeyError(f"{resource.kind} is not watched")
        return [obj for informer in informers.values() for obj in informer.store.objects()]
