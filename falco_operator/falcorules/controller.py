"""The FalcoRule controller: for each Falco that selects namespaces, one generated Rulesfile per namespace with
accepted FalcoRules, carrying them inline, and each FalcoRule's status.

A namespace's file is the Rulesfile ``<falco>-falcorules-<namespace>`` in the Falco's namespace, owned by the Falco (it
goes with it), with the operator's labels, ``artifact.falcosecurity.dev/for-falco: <falco>`` so that only that Falco's
agents load it, ``artifact.falcosecurity.dev/falcorules-namespace: <namespace>``, and priority 60: after the default
rules (50), so every macro they define is there. One file per namespace keeps one team's mistake in its own file: an
agent refuses that file alone. The rules are inline, so the Rulesfile's generation names the content an agent
judged, and an agent's refusal is mapped back to the FalcoRule at the line it names (``Accepted=False`` with the
agent's words), which then leaves the file. Objects are applied only when their content changes.

The cluster's rules for a Falco are the Rulesfiles of its namespace that apply to it and load before the generated
files (priority below 60): their inline content, and their ConfigMap keys (read by name). Rulesfiles from OCI
registries are not read here; when one applies, a macro unknown to the operator is left to the agents, which check
the whole set before they write, and whose refusal comes back as above.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..api import Falco, FalcoRule, LabelSelector, Rulesfile
from ..artifacts import parse_rules, sha256_hex
from ..artifacts.audience import FOR_FALCO_LABEL, Audience
from ..artifacts.budget import BudgetedChecks, OverBudget
from ..artifacts.messages import capped
from ..artifacts.validation import Invalid
from ..artifacts.yamldoc import dump_yaml, plain
from ..instance.naming import MANAGED_BY, OPERATOR, owner_reference
from ..kube import Applier, Cache, Client, Request, Result
from ..kube.conditions import utc_now, with_transition_times
from ..kube.resources import CONFIG_MAPS, NAMESPACES
from ..resources import ARTIFACTREPORTS, FALCORULES, FALCOS, RULESFILES
from ..status.aggregate import report_entry
from ..status.reconciler import agents_in
from .render import ClusterRules, Verdict, cluster_rules, judge_off_loop, render, rule_at_line, rule_item

log = logging.getLogger("falco_operator.falcorules")
Json = dict[str, Any]
GENERATED_SUFFIX = "-falcorules"
GENERATED_PRIORITY = 60
NAMESPACE_LABEL = "artifact.falcosecurity.dev/falcorules-namespace"
"""On a generated Rulesfile: the namespace whose FalcoRules it carries."""
CONFLICT_RECHECK = 60.0
"""Seconds between looks at a name held by a user's object."""
REFUSED = "RefusedByAgent"
_LINE = re.compile(r"\bline (\d+)\b")


def generated_name(falco_name: str, namespace: str) -> str:
    """The generated Rulesfile of one namespace's FalcoRules (at most 63 + 12 + 63 characters)."""
    return f"{falco_name}{GENERATED_SUFFIX}-{namespace}"


def legacy_name(falco_name: str) -> str:
    """The one ConfigMap and Rulesfile that carried every namespace's FalcoRules before they were split."""
    return f"{falco_name}{GENERATED_SUFFIX}"


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


@dataclass(frozen=True)
class Refusal:
    """An agent refused a generated file because of one FalcoRule: that rule, as it was then, stays out."""

    generation: int
    spec: str
    cluster: Any
    verdict: Verdict


FalcoKey = tuple[str, str]
RuleKey = tuple[str, str]


class FalcoRulesReconciler:
    def __init__(self, client: Client, cache: Cache, clock: Callable[[], str] = utc_now) -> None:
        self.client = client
        self.cache = cache
        self.applier = Applier(client)
        self.clock = clock
        self.verdicts: dict[FalcoKey, dict[RuleKey, Verdict]] = {}
        """Per Falco (namespace, name): the verdict of each FalcoRule (namespace, name) it selects."""
        self.checks: BudgetedChecks[Verdict] = BudgetedChecks()
        """FalcoRule verdicts, reached off the event loop and remembered."""
        self.parses: BudgetedChecks[list[Any]] = BudgetedChecks(remembered=64)
        """The cluster's rules documents, parsed off the event loop and remembered by content."""
        self.documents: dict[FalcoKey, dict[str, str]] = {}
        """Per Falco and selected namespace: the SHA-256 of the rules file generated for it (what agents report)."""
        self.conflicts: dict[FalcoKey, dict[str, str]] = {}
        """Per Falco and namespace: why its generated file cannot be written (a user's object holds the name)."""
        self.refusals: dict[FalcoKey, dict[RuleKey, Refusal]] = {}
        """Per Falco: the FalcoRules an agent refused, as they were written then."""
        self.unmapped: dict[FalcoKey, dict[str, str]] = {}
        """Per Falco and namespace: an agent's refusal of the namespace's file that names none of its rules."""

    async def reconcile(self, request: Request) -> Result | None:
        raw = self.cache.get(FALCOS, request.name, request.namespace)
        key = (request.namespace, request.name)
        selector = _selector(raw) if raw is not None and not raw["metadata"].get("deletionTimestamp") else None
        if raw is None or selector is None:
            previous = self.verdicts.pop(key, {})
            for memory in (self.documents, self.conflicts, self.refusals, self.unmapped):
                memory.pop(key, None)
            if raw is not None:
                await self._remove_generated(raw, keep=set())
            await self._write_statuses(previous)
            return None
        namespaces = selected_namespaces(selector, self.cache.objects(NAMESPACES))
        by_namespace = {ns: self._falco_rules(ns) for ns in namespaces}
        cluster = await self._cluster_rules(raw)
        fingerprint = (cluster, self._unread_sources(raw))
        verdicts = await judge_off_loop(self.checks, by_namespace, cluster)
        self._learn_refusals(raw, by_namespace, fingerprint)
        refusals = self.refusals.get(key, {})
        for rule_key, refusal in refusals.items():
            verdict = verdicts.get(rule_key)
            if verdict is not None and verdict.accepted:
                verdicts[rule_key] = refusal.verdict
        rendered = render(by_namespace, cluster, verdicts)
        documents: dict[str, str] = {}
        conflicts: dict[str, str] = {}
        for namespace, document in rendered.documents.items():
            conflict = self._foreign_object(raw, namespace)
            if conflict is None:
                await self._apply_generated(raw, namespace, document)
                documents[namespace] = sha256_hex(document)
            else:
                if namespace not in self.conflicts.get(key, {}):
                    log.warning("%s", conflict)
                conflicts[namespace] = conflict
        await self._remove_generated(raw, keep={generated_name(request.name, ns) for ns in rendered.documents})
        self.documents[key], self.conflicts[key] = documents, conflicts
        self.unmapped[key] = {ns: text for ns, text in self.unmapped.get(key, {}).items() if ns in documents}
        previous = self.verdicts.get(key, {})
        self.verdicts[key] = {(v.namespace, v.name): v for v in rendered.verdicts}
        self.refusals[key] = {rule: refusal for rule, refusal in refusals.items() if rule in self.verdicts[key]}
        await self._write_statuses({**previous, **self.verdicts[key]})
        # A user's object of that name may not be watched here: look again later.
        return Result(requeue_after=CONFLICT_RECHECK) if conflicts else None

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

    def _cluster_rulesfiles(self, raw_falco: Json) -> list[Rulesfile]:
        """The Rulesfiles that apply to this Falco and load before its generated files, in load order."""
        namespace = raw_falco["metadata"]["namespace"]
        labels = dict(raw_falco["metadata"].get("labels") or {})
        found = []
        for raw in self.cache.in_namespace(RULESFILES, namespace):
            if NAMESPACE_LABEL in ((raw.get("metadata") or {}).get("labels") or {}):
                continue
            try:
                rulesfile = Rulesfile.model_validate(raw)
            except ValueError:
                continue
            if rulesfile.spec.priority >= GENERATED_PRIORITY:
                continue
            if Audience.of(rulesfile).includes_falco(raw_falco["metadata"]["name"], labels):
                found.append(rulesfile)
        return sorted(found, key=lambda r: (r.spec.priority, r.metadata.name or ""))

    def _unread_sources(self, raw_falco: Json) -> tuple[tuple[str, int, str], ...]:
        """The cluster's Rulesfiles from OCI, which the operator does not read: by name, generation and the digest
        their status reports (a change may fix what an agent refused)."""
        found = []
        for rulesfile in self._cluster_rulesfiles(raw_falco):
            if rulesfile.spec.oci() is not None:
                raw = self.cache.get(RULESFILES, rulesfile.metadata.name or "", raw_falco["metadata"]["namespace"])
                digest = str(((raw or {}).get("status") or {}).get("resolvedDigest") or "")
                found.append((rulesfile.metadata.name or "", int(rulesfile.metadata.generation or 0), digest))
        return tuple(found)

    async def _cluster_rules(self, raw_falco: Json) -> ClusterRules:
        namespace = raw_falco["metadata"]["namespace"]
        documents: list[list[Any]] = []
        complete = True
        for rulesfile in self._cluster_rulesfiles(raw_falco):
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
        reference = rulesfile.spec.config_map_ref
        if reference is not None:
            config_map = await self.client.get_or_none(CONFIG_MAPS, reference.name, namespace)
            data = (config_map or {}).get("data") or {}
            binary = (config_map or {}).get("binaryData") or {}
            if reference.key in data:
                contents.append(str(data[reference.key]).encode())
            elif reference.key in binary:
                contents.append(base64.b64decode(binary[reference.key]))
        inline = rulesfile.spec.inline()
        if isinstance(inline, str):
            contents.append(inline.encode())
        elif inline is not None:
            contents.append(dump_yaml(inline))
        return contents

    # -- agents' refusals ------------------------------------------------------------------------------------

    def _learn_refusals(self, raw_falco: Json, by_namespace: dict[str, list[FalcoRule]], cluster: Any) -> None:
        """Remember the FalcoRule an agent's refusal of a generated file names, when that refusal is of the file's
        current generation (the content the agent judged) and the rule is still as it was in it. A refusal that
        names no rule of the file is kept apart, for the status of every rule in that file."""
        falco_namespace, falco_name = raw_falco["metadata"]["namespace"], raw_falco["metadata"]["name"]
        key = (falco_namespace, falco_name)
        refusals = {rule: refusal for rule, refusal in self.refusals.get(key, {}).items() if refusal.cluster == cluster}
        unmapped: dict[str, str] = {}
        agents = [agent for agent in agents_in(self.cache, falco_namespace) if agent.falco == falco_name]
        for namespace, falco_rules in by_namespace.items():
            raw = self.cache.get(RULESFILES, generated_name(falco_name, namespace), falco_namespace)
            if raw is None or not owned_by(raw, raw_falco):
                continue
            generation = int(raw["metadata"].get("generation") or 0)
            judged = str((raw.get("spec") or {}).get("inlineRules") or "")
            for agent in agents:
                report = self.cache.get(ARTIFACTREPORTS, agent.pod, falco_namespace)
                entry = report_entry(report, "Rulesfile", raw["metadata"]["name"])
                if entry is None or entry.get("generation") != generation:
                    continue
                if entry.get("state") in ("Failed", "Refused"):
                    # The whole file is held back (a plugin the set lacks, say) or Falco refused it: no rule to blame,
                    # but every rule of the file must say why it is not loaded instead of waiting forever.
                    verb = "Falco refused it" if entry.get("state") == "Refused" else "the agent withholds it"
                    detail = entry.get("message") or entry.get("reason")
                    unmapped.setdefault(namespace, capped(f"{verb} on node {agent.node}: {detail}"))
                    continue
                if entry.get("state") != "Invalid":
                    continue
                message = f"refused by the agent on node {agent.node}: {entry.get('message') or entry.get('reason')}"
                blamed = _blamed(judged, str(entry.get("message") or ""), falco_rules, namespace)
                if blamed is None:
                    unmapped.setdefault(namespace, capped(message))
                    continue
                name, generation_then = blamed.metadata.name or "", int(blamed.metadata.generation or 0)
                verdict = Verdict(namespace, name, generation_then, False, REFUSED, capped(message))
                refusal = Refusal(generation_then, blamed.spec.model_dump_json(), cluster, verdict)
                refusals.setdefault((namespace, name), refusal)
        self.refusals[key] = {
            rule: refusal
            for rule, refusal in refusals.items()
            if _still(refusal, by_namespace.get(rule[0], []), rule[1])
        }
        self.unmapped[key] = unmapped

    # -- generated objects -----------------------------------------------------------------------------------

    def _metadata(self, raw_falco: Json, namespace: str) -> Json:
        name = raw_falco["metadata"]["name"]
        return {"name": generated_name(name, namespace), "namespace": raw_falco["metadata"]["namespace"],
                "labels": {MANAGED_BY: OPERATOR, FOR_FALCO_LABEL: name, NAMESPACE_LABEL: namespace},
                "ownerReferences": [owner_reference(raw_falco)]}  # fmt: skip

    def _foreign_object(self, raw_falco: Json, namespace: str) -> str | None:
        """Why a namespace's generated Rulesfile must not be written: one of its name that this Falco does not own
        (a user's, which a forced apply would take over and a delete would destroy); None when there is none."""
        name, falco_namespace = (
            generated_name(raw_falco["metadata"]["name"], namespace),
            raw_falco["metadata"]["namespace"],
        )
        found = self.cache.get(RULESFILES, name, falco_namespace)
        if found is not None and not owned_by(found, raw_falco):
            return (
                f"Rulesfile {falco_namespace}/{name} exists and does not belong to Falco "
                f"{raw_falco['metadata']['name']}: the operator writes the FalcoRules of namespace {namespace} for "
                f"this Falco under that name; rename or delete that Rulesfile"
            )
        return None

    async def _apply_generated(self, raw_falco: Json, namespace: str, document: bytes) -> None:
        metadata = self._metadata(raw_falco, namespace)
        spec: Json = {"priority": GENERATED_PRIORITY, "inlineRules": document.decode()}
        rollout = ((raw_falco.get("spec") or {}).get("falcoRules") or {}).get("rollout")
        if rollout:
            spec["rollout"] = rollout  # the administrator's, on the Falco: a tenant's FalcoRule cannot turn it off
        rulesfile = {"apiVersion": RULESFILES.api_version, "kind": "Rulesfile", "metadata": metadata, "spec": spec}
        await self.applier.apply(
            RULESFILES, rulesfile, self.cache.get(RULESFILES, metadata["name"], metadata["namespace"])
        )

    async def _remove_generated(self, raw_falco: Json, keep: set[str]) -> None:
        """Delete what this Falco owns of the generated objects and no longer needs: the Rulesfiles of namespaces
        without accepted FalcoRules (or no longer selected), and the pair of the single file used before."""
        falco_namespace, falco_name = raw_falco["metadata"]["namespace"], raw_falco["metadata"]["name"]
        falco_uid = str(raw_falco["metadata"].get("uid") or "")
        for resource in (RULESFILES, CONFIG_MAPS):
            for found in self.cache.owned_by(resource, falco_namespace, falco_uid):
                metadata = found.get("metadata") or {}
                labels = metadata.get("labels") or {}
                name = str(metadata.get("name"))
                ours = labels.get(FOR_FALCO_LABEL) == falco_name and labels.get(MANAGED_BY) == OPERATOR
                generated = NAMESPACE_LABEL in labels or name == legacy_name(falco_name)
                if ours and generated and name not in keep and owned_by(found, raw_falco):
                    await self.client.delete(resource, name, falco_namespace)
                    self.applier.forget(resource, falco_namespace, name)

    # -- FalcoRule status ---------------------------------------------------------------------------------

    def _delivered(self, falco: FalcoKey, namespace: str) -> bool:
        """Every agent of the Falco reports the namespace's generated rules file with the content generated last."""
        falco_namespace, falco_name = falco
        digest = self.documents.get(falco, {}).get(namespace)
        agents = [agent for agent in agents_in(self.cache, falco_namespace) if agent.falco == falco_name]
        if digest is None or not agents:
            return False
        for agent in agents:
            report = self.cache.get(ARTIFACTREPORTS, agent.pod, falco_namespace)
            entry = report_entry(report, "Rulesfile", generated_name(falco_name, namespace))
            if entry is None or entry.get("sha256") != digest or entry.get("state") not in ("Installed", "Loaded"):
                return False
        return True

    async def _write_statuses(self, verdicts: dict[RuleKey, Verdict]) -> None:
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
            _, verdict = refused[0]
            accepted = _condition("Accepted", False, verdict.reason, verdict.message, generation)
            programmed = _condition("Programmed", False, "NotAccepted", "the rule is not loaded: see Accepted",
                                    generation)  # fmt: skip
            return {"observedGeneration": generation, "conditions": [accepted, programmed]}
        accepted = _condition("Accepted", True, "Accepted", mine[0][1].message, generation)
        conflicts = [self.conflicts.get(falco, {}).get(namespace) for falco, _ in mine]
        if any(conflicts):
            message = next(text for text in conflicts if text)
            programmed = _condition("Programmed", False, "GeneratedNameTaken", message, generation)
            return {"observedGeneration": generation, "conditions": [accepted, programmed]}
        unmapped = [self.unmapped.get(falco, {}).get(namespace) for falco, _ in mine]
        if any(unmapped):
            message = next(text for text in unmapped if text)
            programmed = _condition("Programmed", False, "FileRefused", message, generation)
            return {"observedGeneration": generation, "conditions": [accepted, programmed]}
        waiting = [f"{falco_ns}/{falco_name}" for (falco_ns, falco_name), _ in mine
                   if not self._delivered((falco_ns, falco_name), namespace)]  # fmt: skip
        if waiting:
            message = f"waiting for the agents of Falco {', '.join(waiting)}"
            programmed = _condition("Programmed", False, "Pending", message, generation)
        else:
            falcos = ", ".join(f"{ns}/{n}" for (ns, n), _ in mine)
            programmed = _condition("Programmed", True, "Programmed", f"loaded by the agents of Falco {falcos}",
                                    generation)  # fmt: skip
        return {"observedGeneration": generation, "conditions": [accepted, programmed]}


def _blamed(judged: str, message: str, falco_rules: Iterable[FalcoRule], namespace: str) -> FalcoRule | None:
    """The FalcoRule an agent's refusal of a generated file is about: the rule at the line it names (else the rule
    it names), provided the FalcoRule still renders to exactly what the agent judged."""
    try:
        items = parse_rules(judged.encode())
    except Invalid:
        return None
    index = None
    line = _LINE.search(message)
    if line is not None:
        index = rule_at_line(judged, int(line.group(1)))
    if index is None:
        index = next((i for i, item in enumerate(items) if f"rule {item.get('rule')!r}" in message), None)
    if index is None or index >= len(items):
        return None
    for falco_rule in falco_rules:
        if plain(rule_item(falco_rule, namespace)) == plain(items[index]):
            return falco_rule
    return None


def _still(refusal: Refusal, falco_rules: Iterable[FalcoRule], name: str) -> bool:
    """Whether the refused FalcoRule is still written as it was when the agent refused it."""
    for falco_rule in falco_rules:
        if falco_rule.metadata.name == name:
            return (
                int(falco_rule.metadata.generation or 0) == refusal.generation
                and falco_rule.spec.model_dump_json() == refusal.spec
            )
    return False


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
