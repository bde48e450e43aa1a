"""The informer's cache: objects by key, with secondary indexes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Json = dict[str, Any]
IndexFunc = Callable[[Json], Iterable[str]]

BY_NAMESPACE = "namespace"
BY_OWNER = "owner"


def object_key(obj: Json) -> str:
    """``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if namespace else str(metadata["name"])


def index_by_namespace(obj: Json) -> list[str]:
    namespace = (obj.get("metadata") or {}).get("namespace")
    return [namespace] if namespace else []


def index_by_owner(obj: Json) -> list[str]:
    """Owner UIDs of every ownerReference."""
    return [ref["uid"] for ref in (obj.get("metadata") or {}).get("ownerReferences") or [] if "uid" in ref]


DEFAULT_INDEXERS: dict[str, IndexFunc] = {BY_NAMESPACE: index_by_namespace, BY_OWNER: index_by_owner}


class Store:
    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, Json] = {}
        self._indexers = dict(DEFAULT_INDEXERS) | dict(indexers or {})
        self._indexes: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}
        self.revision = 0
        """Counts the changes: what is computed from the store is still right while this is the same."""

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Json | None:
        return self._items.get(key)

    def get_by_name(self, name: str, namespace: str | None = None) -> Json | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def objects(self) -> list[Json]:
        return list(self._items.values())

    def keys(self) -> list[str]:
        return list(self._items)

    def by_index(self, index: str, value: str) -> list[Json]:
        return [self._items[key] for key in sorted(self._indexes[index].get(value, ()))]

    def upsert(self, obj: Json) -> Json | None:
        """Insert or replace; returns the previous object."""
        key = object_key(obj)
        previous = self._items.get(key)
        if previous is not None:
            self._unindex(key, previous)
        self._items[key] = obj
        self._index(key, obj)
        self.revision += 1
        return previous

    def delete(self, obj: Json) -> Json | None:
        key = object_key(obj)
        previous = self._items.pop(key, None)
        if previous is not None:
            self._unindex(key, previous)
            self.revision += 1
        return previous

    def _index(self, key: str, obj: Json) -> None:
        for name, function in self._indexers.items():
            for value in function(obj):
                self._indexes[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: Json) -> None:
        for name, function in self._indexers.items():
            for value in function(obj):
                keys = self._indexes[name].get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._indexes[name][value]
