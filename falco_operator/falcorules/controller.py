"""The FalcoRule controller: for each Falco that selects namespaces, one generated ConfigMap and Rulesfile that
carry the accepted FalcoRules of those namespaces, and each FalcoRule's status.

The generated pair is named ``<falco>-falcorules``, lives in the Falco's namespace, is owned by the Falco (it goes
with it), carries the operator's labels and ``artifact.falcosecurity.dev/for-falco: <falco>`` so that only that
Falco's agents load it, and has priority 60: after the default rules (50), so every macro they define is there.
The agents load it like any ConfigMap-sourced Rulesfile. Objects are applied only when their content changes.

The cluster's rules for a Falco are the Rulesfiles of its namespace that apply to it: their inline content, and
their ConfigMap keys (read by name). Rulesfiles from OCI registries are not read here; when one applies, a macro
unknown to the operator is left to the agents, which check the whole set before they write.
"""

from __future__ import annotations

import base64
import datetime
import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from ..api import Falco, FalcoRule, LabelSelector, Rulesfile
from ..artifacts import parse_rules, sha256_hex
from ..artifacts.audience import FOR_FALCO_LABEL, Audience
from ..artifacts.budget import BudgetedChecks, OverBudget
from ..artifacts.validation import Invalid
from ..instance.naming import MANAGED_BY, OPERATOR, owner_reference
from ..kube import Applier, Cache, Client, Request, Result
from ..kube.conditions import with_transition_times
from ..kube.resources import CONFIG_MAPS, NAMESPACES
from ..resources import ARTIFACTREPORTS, FALCORULES, FALCOS, RULESFILES
from ..status.aggregate import report_entry
from ..status.reconciler import agents_in
from .render import ClusterRules, Verdict, cluster_rules, judge_off_loop, render

log = logging.getLogger("falco_operator.falcorules")
Json = dict[str, Any]
GENERATED_SUFFIX = "-falcorules"
GENERATED_PRIORITY = 60
RULES_KEY = "rules.yaml"
CONFLICT_RECHECK = 60.0
"""Seconds between looks at a name held by a user's object."""


def generated_name(falco_name: str) -> str:
    return f"{falco_name}{GENERATED_SUFFIX}"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def selected_namespaces(selector: LabelSelector | None, namespaces: Iterable[Json]) -> list[str]:
    if selector is None:
        return []
    chosen = []
    for namespace in namespaces:
        metadata = namespace.get("metadata") or {}
        if metadata.get("deletionTimestamp"):
            continue
        if selector.matches(dict(metadata.get("labels") or {})):
            chosen.append(str(metadata["name"]))
    return sorted(chosen)


def _selector(raw_falco: Json) -> LabelSelector | None:
    try:
        falco = Falco.model_validate(raw_falco)
    except ValueError:
        return None
    return falco.spec.falco_rules.namespace_selector if falco.spec.falco_rules else None


class FalcoRulesReconciler:
    def __init__(self, client: Client, cache: Cache, clock: Callable[[], str] = _now) -> None:
        self.client = client
        self.cache = cache
        self.applier = Applier(client)
        self.clock = clock
        self.verdicts: dict[tuple[str, str], dict[tuple[str, str], Verdict]] = {}
        """Per Falco (namespace, name): the verdict of each FalcoRule (namespace, name) it selects."""
        self.checks: BudgetedChecks[Verdict] = BudgetedChecks()
        """FalcoRule verdicts, reached off the event loop and remembered."""
        self.parses: BudgetedChecks[list[Any]] = BudgetedChecks(remembered=64)
        """The cluster's rules documents, parsed off the event loop and remembered by content."""
        self.documents: dict[tuple[str, str], str] = {}
        """Per Falco: the SHA-256 of the rules file generated for it (what its agents must report)."""
        self.conflicts: dict[tuple[str, str], str] = {}
        """Per Falco: why its generated objects cannot be written (a user's object holds their name)."""

    async def reconcile(self, request: Request) -> Result | None:
        raw = self.cache.get(FALCOS, request.name, request.namespace)
        key = (request.namespace, request.name)
        selector = _selector(raw) if raw is not None and not raw["metadata"].get("deletionTimestamp") else None
        if raw is None or selector is None:
            previous = self.verdicts.pop(key, {})
            self.documents.pop(key, None)
            self.conflicts.pop(key, None)
            if raw is not None:
                await self._remove_generated(request)
            await self._write_statuses(previous)
            return None
        namespaces = selected_namespaces(selector, self.cache.objects(NAMESPACES))
        by_namespace = {ns: self._falco_rules(ns) for ns in namespaces}
        cluster = await self._cluster_rules(raw)
        rendered = render(by_namespace, cluster, await judge_off_loop(self.checks, by_namespace, cluster))
        conflict = await self._foreign_object(raw)
        if conflict is None:
            await self._apply_generated(raw, rendered.document)
            self.documents[key] = sha256_hex(rendered.document)
            self.conflicts.pop(key, None)
        else:
            if key not in self.conflicts:
                log.warning("%s", conflict)
            self.conflicts[key] = conflict
            self.documents.pop(key, None)
        previous = self.verdicts.get(key, {})
        self.verdicts[key] = {(v.namespace, v.name): v for v in rendered.verdicts}
        await self._write_statuses({**previous, **self.verdicts[key]})
        # A user's object of that name sends no event here (it may be an unwatched ConfigMap): look again later.
        return Result(requeue_after=CONFLICT_RECHECK) if conflict else None

    def _falco_rules(self, namespace: str) -> list[FalcoRule]:
        rules = []
        for raw in self.cache.in_namespace(FALCORULES, namespace):
            if (raw.get("metadata") or {}).get("deletionTimestamp"):
                continue
            try:
                rules.append(FalcoRule.model_validate(raw))
            except ValueError:
                log.warning("cannot read FalcoRule %s/%s", namespace, raw["metadata"].get("name"))
        return rules

    async def _cluster_rules(self, raw_falco: Json) -> ClusterRules:
        namespace = raw_falco["metadata"]["namespace"]
        labels = dict(raw_falco["metadata"].get("labels") or {})
        documents: list[list[Any]] = []
        complete = True
        for raw in self.cache.in_namespace(RULESFILES, namespace):
            metadata = raw.get("metadata") or {}
            if metadata.get("name") == generated_name(raw_falco["metadata"]["name"]):
                continue
            try:
                rulesfile = Rulesfile.model_validate(raw)
            except ValueError:
                continue
            if not Audience.of(rulesfile).includes_falco(raw_falco["metadata"]["name"], labels):
                continue
            if rulesfile.spec.oci() is not None:
                complete = False
            for content in await self._contents(rulesfile, namespace):
                try:
                    documents.append(await self.parses.run(sha256_hex(content), partial(parse_rules, content)))
                except (Invalid, OverBudget):
                    continue
        return cluster_rules(documents, complete=complete)

    async def _contents(self, rulesfile: Rulesfile, namespace: str) -> list[bytes]:
        contents = []
        inline = rulesfile.spec.inline()
        if isinstance(inline, str):
            contents.append(inline.encode())
        elif inline is not None:
            from ..artifacts.yamldoc import dump_yaml

            contents.append(dump_yaml(inline))
        reference = rulesfile.spec.config_map_ref
        if reference is not None:
            config_map = await self.client.get_or_none(CONFIG_MAPS, reference.name, namespace)
            data = (config_map or {}).get("data") or {}
            binary = (config_map or {}).get("binaryData") or {}
            if reference.key in data:
                contents.append(str(data[reference.key]).encode())
            elif reference.key in binary:
                contents.append(base64.b64decode(binary[reference.key]))
        return contents

    def _metadata(self, raw_falco: Json) -> Json:
        name = raw_falco["metadata"]["name"]
        return {"name": generated_name(name), "namespace": raw_falco["metadata"]["namespace"],
                "labels": {MANAGED_BY: OPERATOR, FOR_FALCO_LABEL: name},
                "ownerReferences": [owner_reference(raw_falco)]}  # fmt: skip

    async def _foreign_object(self, raw_falco: Json) -> str | None:
        """Why the generated objects must not be written: an object of their name that this Falco does not own
        (a user's, which a forced apply would take over and a delete would destroy); None when there is none."""
        name, namespace = generated_name(raw_falco["metadata"]["name"]), raw_falco["metadata"]["namespace"]
        for resource in (CONFIG_MAPS, RULESFILES):
            found = self.cache.get(resource, name, namespace)
            if found is None and resource is CONFIG_MAPS:
                # Only labelled ConfigMaps are cached: an unlabelled one of that name is asked for by name.
                found = await self.client.get_or_none(CONFIG_MAPS, name, namespace)
            if found is not None and not owned_by(found, raw_falco):
                return (
                    f"{resource.kind} {namespace}/{name} exists and does not belong to Falco "
                    f"{raw_falco['metadata']['name']}: the operator writes the FalcoRules of this Falco under that "
                    f"name; rename or delete that {resource.kind}"
                )
        return None

    async def _apply_generated(self, raw_falco: Json, document: bytes) -> None:
        metadata = self._metadata(raw_falco)
        namespace, name = metadata["namespace"], metadata["name"]
        config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
                      "data": {RULES_KEY: document.decode()}}  # fmt: skip
        await self.applier.apply(CONFIG_MAPS, config_map, self.cache.get(CONFIG_MAPS, name, namespace))
        spec = {"priority": GENERATED_PRIORITY, "configMapRef": {"name": name, "key": RULES_KEY}}
        rulesfile = {"apiVersion": RULESFILES.api_version, "kind": "Rulesfile", "metadata": metadata, "spec": spec}
        await self.applier.apply(RULESFILES, rulesfile, self.cache.get(RULESFILES, name, namespace))

    async def _remove_generated(self, request: Request) -> None:
        name = generated_name(request.name)
        raw_falco = self.cache.get(FALCOS, request.name, request.namespace)
        for resource in (RULESFILES, CONFIG_MAPS):
            found = self.cache.get(resource, name, request.namespace)
            if found is not None and raw_falco is not None and owned_by(found, raw_falco):
                await self.client.delete(resource, name, request.namespace)
                self.applier.forget(resource, request.namespace, name)

    # -- FalcoRule status ---------------------------------------------------------------------------------

    def _delivered(self, namespace: str, falco_name: str) -> bool:
        """Every agent of the Falco reports the generated rules file with the content generated last."""
        digest = self.documents.get((namespace, falco_name))
        agents = [agent for agent in agents_in(self.cache, namespace) if agent.falco == falco_name]
        if digest is None or not agents:
            return False
        for agent in agents:
            report = self.cache.get(ARTIFACTREPORTS, agent.pod, namespace)
            entry = report_entry(report, "Rulesfile", generated_name(falco_name))
            if entry is None or entry.get("sha256") != digest or entry.get("state") not in ("Installed", "Loaded"):
                return False
        return True

    async def _write_statuses(self, verdicts: dict[tuple[str, str], Verdict]) -> None:
        for namespace, name in sorted(verdicts):
            raw = self.cache.get(FALCORULES, name, namespace)
            if raw is None or (raw.get("metadata") or {}).get("deletionTimestamp"):
                continue
            desired = self._status(raw)
            live = raw.get("status") or {}
            if _comparable(live) == _comparable(desired):
                continue
            desired["conditions"] = with_transition_times(desired["conditions"], live.get("conditions"), self.clock())
            await self.client.patch_status(FALCORULES, name, desired, namespace)

    def _status(self, raw: Json) -> Json:
        metadata = raw["metadata"]
        namespace, name, generation = metadata["namespace"], metadata["name"], int(metadata.get("generation") or 0)
        mine = [(falco, by_rule[(namespace, name)]) for falco, by_rule in sorted(self.verdicts.items())
                if (namespace, name) in by_rule]  # fmt: skip
        if not mine:
            accepted = _condition("Accepted", True, "NotSelected", "no Falco selects this namespace", generation)
            programmed = _condition("Programmed", False, "NotSelected", "no Falco selects this namespace", generation)
            return {"observedGeneration": generation, "conditions": [accepted, programmed]}
        refused = [(falco, verdict) for falco, verdict in mine if not verdict.accepted]
        if refused:
            (falco_ns, falco_name), verdict = refused[0]
            accepted = _condition("Accepted", False, verdict.reason, verdict.message, generation)
            programmed = _condition("Programmed", False, "NotAccepted", "the rule is not loaded: see Accepted",
                                    generation)  # fmt: skip
            return {"observedGeneration": generation, "conditions": [accepted, programmed]}
        accepted = _condition("Accepted", True, "Accepted", mine[0][1].message, generation)
        conflicts = [self.conflicts[falco] for falco, _ in mine if falco in self.conflicts]
        if conflicts:
            programmed = _condition("Programmed", False, "GeneratedNameTaken", conflicts[0], generation)
            return {"observedGeneration": generation, "conditions": [accepted, programmed]}
        waiting = []
        for (falco_ns, falco_name), _ in mine:
            if not self._delivered(falco_ns, falco_name):
                waiting.append(f"{falco_ns}/{falco_name}")
        if waiting:
            message = f"waiting for the agents of Falco {', '.join(waiting)}"
            programmed = _condition("Programmed", False, "Pending", message, generation)
        else:
            falcos = ", ".join(f"{ns}/{n}" for (ns, n), _ in mine)
            programmed = _condition("Programmed", True, "Programmed", f"loaded by the agents of Falco {falcos}",
                                    generation)  # fmt: skip
        return {"observedGeneration": generation, "conditions": [accepted, programmed]}


def owned_by(obj: Json, raw_falco: Json) -> bool:
    """Whether ``obj`` is controlled by this Falco (its owner reference carries the Falco's uid)."""
    uid = raw_falco["metadata"].get("uid")
    references = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(reference.get("uid") == uid and reference.get("controller") for reference in references)


def _condition(kind: str, ok: bool, reason: str, message: str, generation: int) -> Json:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message,
            "observedGeneration": generation}  # fmt: skip


def _comparable(status: Json) -> Any:
    conditions = sorted(
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"), c.get("observedGeneration"))
        for c in status.get("conditions") or []
    )
    return status.get("observedGeneration"), conditions
