"""The artifact status reconciler: one per artifact kind, the only writer of that kind's ``status``."""

from __future__ import annotations

import base64
import json
import logging
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

from ..artifacts import Artifact, inline_problem, parse_artifact, sha256_hex
from ..artifacts.audience import Audience
from ..artifacts.budget import BudgetedChecks, OverBudget
from ..kube import Cache, Client, EventRecorder, Request, Resource, Result
from ..kube.conditions import utc_now
from ..kube.promtext import Counter
from ..kube.resources import CONFIG_MAPS, NODES, PODS
from ..resources import ARTIFACTREPORTS, FALCOS
from ..rollout.driver import RolloutDriver
from .aggregate import Agent, Target, artifact_status, targeted, warnings_to_record, with_rollout
from .coalescing import StatusCoalescer, awaited, settled

Json = dict[str, Any]
log = logging.getLogger("falco_operator.status")
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
FALCO_PODS = f"{NAME_LABEL}=falco"
CONFIG_MAP_RECHECK = 300.0
"""Seconds between looks at the ConfigMap of an artifact that has one, when nothing else changed."""


def pod_placement(pod: Json) -> Json:
    """What the operator keeps of a Falco pod (``agents_in`` reads no more): its metadata and its node. A cached
    pod is otherwise mostly its spec and status, repeated for every pod of every Falco."""
    return {"metadata": pod.get("metadata") or {}, "spec": {"nodeName": (pod.get("spec") or {}).get("nodeName")}}


def node_metadata(node: Json) -> Json:
    """What the operator keeps of a Node: its metadata (labels select agents); its status (images, conditions)
    can be tens of kilobytes."""
    return {"metadata": node.get("metadata") or {}}


_AGENTS: weakref.WeakKeyDictionary[Cache, dict[str, tuple[tuple[int, int, int], tuple[Agent, ...]]]] = (
    weakref.WeakKeyDictionary()
)


def agents_in(cache: Cache, namespace: str) -> tuple[Agent, ...]:
    """The agent of every scheduled, not terminating Falco pod on an existing node in ``namespace`` (ready or not).

    Every artifact of the namespace asks, for each reconcile; the answer is kept until a pod, a node or a Falco
    changes in the cache (their revisions), so a thousand artifacts reconciled after one report each read the
    pods once."""
    stamp = (cache.revision(PODS), cache.revision(NODES), cache.revision(FALCOS))
    kept = _AGENTS.setdefault(cache, {})
    known = kept.get(namespace)
    if known is not None and known[0] == stamp:
        return known[1]
    agents = _read_agents(cache, namespace)
    if agents:
        kept[namespace] = (stamp, agents)
    else:
        kept.pop(namespace, None)
    return agents


def _read_agents(cache: Cache, namespace: str) -> tuple[Agent, ...]:
    agents = []
    for pod in cache.in_namespace(PODS, namespace):
        metadata = pod.get("metadata") or {}
        node = (pod.get("spec") or {}).get("nodeName")
        falco_name = (metadata.get("labels") or {}).get(INSTANCE_LABEL)
        if not node or not falco_name or metadata.get("deletionTimestamp"):
            continue
        node_obj = cache.get(NODES, node)
        if node_obj is None:
            continue  # the node was deleted: its pods are not agents any more, even before pod GC removes them
        falco = cache.get(FALCOS, falco_name, namespace)
        if falco is None:
            continue  # a pod labelled like ours but of no Falco resource (another installation): no agent
        agents.append(Agent(
            pod=str(metadata["name"]), node=str(node),
            node_labels=(node_obj.get("metadata") or {}).get("labels") or {},
            falco_labels=(falco.get("metadata") or {}).get("labels") or {}, falco=str(falco_name),
        ))  # fmt: skip
    return tuple(agents)


class ArtifactStatusReconciler:
    def __init__(
        self,
        client: Client,
        cache: Cache,
        resource: Resource,
        events: EventRecorder,
        clock: Callable[[], str] = utc_now,
        rollouts: Counter | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.resource = resource
        self.events = events
        self.clock = clock
        self.checks: BudgetedChecks[str | None] = BudgetedChecks()
        self.rollout_driver = RolloutDriver(client)
        self.rollouts = rollouts
        self.coalescer = StatusCoalescer()

    async def reconcile(self, request: Request) -> Result | None:
        raw = self.cache.get(self.resource, request.name, request.namespace)
        if raw is None or (raw.get("metadata") or {}).get("deletionTimestamp"):
            self.coalescer.forget(request)
            return None
        if (wait := self.coalescer.hold_off(request)) is not None:
            return Result(requeue_after=wait)
        artifact = parse_artifact(raw)
        if artifact is None:
            log.warning("cannot read %s %s with this operator's models", self.resource.kind, request)
            return None
        content = await self._config_map_content(artifact, request.namespace)
        target = Target(
            kind=self.resource.kind, name=request.name, generation=int(artifact.metadata.generation or 0),
            audience=Audience.of(artifact), invalid=await self._problem(artifact, content),
            config_map_sha256=sha256_hex(content) if content is not None else None,
        )  # fmt: skip
        self.coalescer.started(request)
        reports = {str(report["metadata"]["name"]): report
                   for report in self.cache.in_namespace(ARTIFACTREPORTS, request.namespace)}  # fmt: skip
        live = self.coalescer.believed(request, raw)
        agents, now = agents_in(self.cache, request.namespace), self.clock()
        desired = artifact_status(target, agents, reports, live, now)
        # Read from the same cache as the reports, before any await: a report handled later is not missed.
        self.coalescer.awaiting(request, awaited(target, agents, reports, (live or {}).get("rollout")))
        rollout = await self.rollout_driver.advance(raw, now, [(agent.pod, agent.node) for agent in
                                                    targeted(target, agents)], reports, desired, content)  # fmt: skip
        desired = with_rollout(desired, rollout.rollout, live, now)
        # The operator does not watch ConfigMaps: an edit shows up with the agents' reports of the new content;
        # the periodic look also catches agents that never report it (stopped ones).
        recheck = [CONFIG_MAP_RECHECK] if getattr(artifact.spec, "config_map_ref", None) else []
        recheck += [rollout.requeue_after] if rollout.requeue_after else []
        decision = self.coalescer.decide(request, live, desired, partial(settled, target, agents, reports, desired))
        if not decision.write:
            recheck += [decision.recheck_after] if decision.recheck_after is not None else []
            return Result(requeue_after=min(recheck)) if recheck else None
        again = Result(requeue_after=min(recheck)) if recheck else None
        await self.client.patch_status(self.resource, request.name, desired, request.namespace)
        self.coalescer.wrote(request, decision, raw, desired)
        log.debug("wrote the status of %s %s (%s)", self.resource.kind, request, decision.why)
        for reason, note in warnings_to_record(live, desired):
            await self.events.emit(raw, "Warning", reason, note)
        await rollout.announce(self.events, self.rollouts)
        return again

    async def _problem(self, artifact: Artifact, config_map_content: bytes | None) -> str | None:
        """``inline_problem`` off the event loop within the check budget, remembered by the content it judges
        (reports, node labels and Falco answers trigger reconciles; the content rarely changes between them)."""
        spec = json.dumps(artifact.spec.to_wire(), sort_keys=True).encode()
        key = (artifact.kind, artifact.metadata.name, sha256_hex(spec),
               sha256_hex(config_map_content) if config_map_content is not None else None)  # fmt: skip
        try:
            return await self.checks.run(key, partial(inline_problem, artifact, config_map_content))
        except OverBudget as over:
            return str(over)

    async def _config_map_content(self, artifact: Artifact, namespace: str) -> bytes | None:
        """The key an artifact reads from its ConfigMap, read by name (the operator does not cache ConfigMaps);
        None when there is none to judge (a missing ConfigMap or key is the agents' ResolvedRefs to report)."""
        reference = getattr(artifact.spec, "config_map_ref", None)
        if reference is None:
            return None
        config_map = await self.client.get_or_none(CONFIG_MAPS, reference.name, namespace)
        if config_map is None:
            return None
        data, binary = config_map.get("data") or {}, config_map.get("binaryData") or {}
        if reference.key in data:
            return str(data[reference.key]).encode()
        if reference.key in binary:
            return base64.b64decode(binary[reference.key])
        return None
