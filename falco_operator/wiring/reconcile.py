"""Apply and remove the artifacts that wire one Falco to the Components it names; its ``ComponentsReady``
condition.

Each generated artifact is named after the Falco and the reference (``<falco>-wiring-sidekick``, a Config;
``<falco>-wiring-metacollector``, a Plugin), lives in the Falco's namespace, is owned by the Falco (it goes with
it), carries the operator's labels and ``artifact.falcosecurity.dev/for-falco: <falco>``, so that only that
Falco's agents load it. Objects are applied only when their content changes (zero writes in steady state). An
object of that name the Falco does not own (a user's) is never overwritten or deleted: the condition says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from ..api import Falco, Plugin
from ..artifacts.audience import FOR_FALCO_LABEL, Audience
from ..instance.naming import MANAGED_BY, OPERATOR, owner_reference
from ..kube import Applier, Cache, Client, Resource
from ..resources import COMPONENTS, CONFIGS, PLUGINS
from .render import (
    COMPONENT_LABEL,
    K8SMETA,
    WIRING_LABEL,
    Role,
    Verdict,
    artifact_spec,
    condition,
    generated_name,
    judge,
)

Json = dict[str, Any]
log = logging.getLogger("falco_operator.wiring")
RESOURCE: dict[Role, Resource] = {"sidekick": CONFIGS, "metacollector": PLUGINS}
KIND: dict[Role, str] = {"sidekick": "Config", "metacollector": "Plugin"}


def references(falco: Falco) -> dict[Role, str]:
    """The Components a Falco names, by reference."""
    named: dict[Role, str] = {}
    if falco.spec.sidekick is not None:
        named["sidekick"] = falco.spec.sidekick.name
    if falco.spec.metacollector is not None:
        named["metacollector"] = falco.spec.metacollector.name
    return named


def owned_by(obj: Json, raw_falco: Json) -> bool:
    uid = raw_falco["metadata"].get("uid")
    return any(reference.get("uid") == uid and reference.get("controller")
               for reference in (obj.get("metadata") or {}).get("ownerReferences") or [])  # fmt: skip


def generated_object(raw_falco: Json, role: Role, component: str) -> Json:
    metadata = raw_falco["metadata"]
    namespace, falco = metadata["namespace"], metadata["name"]
    labels = {MANAGED_BY: OPERATOR, FOR_FALCO_LABEL: falco, WIRING_LABEL: role, COMPONENT_LABEL: component}
    return {
        "apiVersion": RESOURCE[role].api_version,
        "kind": KIND[role],
        "metadata": {
            "name": generated_name(falco, role),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(raw_falco)],
        },
        "spec": artifact_spec(role, component, namespace),
    }


@dataclass
class ComponentWiring:
    client: Client
    cache: Cache
    applier: Applier

    async def reconcile(self, falco: Falco, raw: Json) -> Json | None:
        """Bring the generated artifacts in line with the Falco's references; the ``ComponentsReady`` condition
        (None when it names no Component)."""
        metadata = raw["metadata"]
        namespace = metadata["namespace"]
        verdicts: list[Verdict] = []
        keep: set[str] = set()
        kept: set[Role] = set()
        for role, component in references(falco).items():
            verdict = judge(role, component, namespace, self.cache.get(COMPONENTS, component, namespace))
            name = generated_name(metadata["name"], role)
            live = self.cache.get(RESOURCE[role], name, namespace)
            if live is not None and not owned_by(live, raw):
                message = (f"{KIND[role]} {namespace}/{name} exists and does not belong to this Falco: the operator "
                           f"writes the wiring of spec.{role} under that name; rename or delete it")  # fmt: skip
                verdict = replace(verdict, ready=False, reason="GeneratedNameTaken", message=message, keep=False)
            elif verdict.ready and role == "metacollector":
                taken = self._plugin_name_taken(raw)
                if taken is not None:
                    message = (f"Plugin {namespace}/{taken} already configures plugin {K8SMETA} for this Falco "
                               f"(Falco loads one plugin of a name): remove it or spec.metacollector")  # fmt: skip
                    verdict = replace(verdict, ready=False, reason="PluginNameTaken", message=message)
            if verdict.ready:
                await self.applier.apply(RESOURCE[role], generated_object(raw, role, component), live)
                keep.add(name)
            elif (
                verdict.keep
                and live is not None
                and (live["metadata"].get("labels") or {}).get(COMPONENT_LABEL) == component
            ):
                keep.add(name)
                kept.add(role)
            verdicts.append(verdict)
        await self._remove_unneeded(raw, keep)
        return condition(verdicts, int(metadata.get("generation") or 0), frozenset(kept))

    def _plugin_name_taken(self, raw_falco: Json) -> str | None:
        """A user's Plugin (not generated) that gives this Falco an entry named k8smeta."""
        metadata = raw_falco["metadata"]
        for found in self.cache.in_namespace(PLUGINS, metadata["namespace"]):
            if WIRING_LABEL in ((found.get("metadata") or {}).get("labels") or {}):
                continue
            try:
                plugin = Plugin.model_validate(found)
            except ValueError:
                continue
            audience = Audience.of(plugin)
            if plugin.plugin_name == K8SMETA and audience.includes_falco(
                metadata["name"], metadata.get("labels") or {}
            ):
                return plugin.metadata.name
        return None

    async def _remove_unneeded(self, raw_falco: Json, keep: set[str]) -> None:
        """Delete the wiring artifacts this Falco owns and no longer needs (a reference removed or not wireable)."""
        namespace, falco = raw_falco["metadata"]["namespace"], raw_falco["metadata"]["name"]
        for resource in (CONFIGS, PLUGINS):
            for found in self.cache.in_namespace(resource, namespace):
                found_metadata = found.get("metadata") or {}
                labels = found_metadata.get("labels") or {}
                name = str(found_metadata.get("name"))
                ours = WIRING_LABEL in labels and labels.get(FOR_FALCO_LABEL) == falco
                if ours and name not in keep and owned_by(found, raw_falco):
                    log.info("deleting %s %s/%s: the wiring is no longer wanted", resource.kind, namespace, name)
                    await self.client.delete(resource, name, namespace, uid=found_metadata.get("uid"))
                    self.applier.forget(resource, namespace, name)
