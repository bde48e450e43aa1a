"""The agent: watch what applies to this Falco pod, plan the files, write them as one generation, report.

Informers watch the artifact kinds in the pod's namespace, the pod's Node (labels only) and its Falco (labels
only), and the ConfigMaps that artifacts name. Any change marks the state dirty; a burst of changes is coalesced
within the debounce window into one pass: resolve sources, plan (pure), swap the directories that changed,
publish the report if it changed. The first complete pass makes ``/readyz`` succeed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from falco_operator.api.plain_report import FalcoProbe
from falco_operator.artifacts import Artifact, ArtifactKey, Delivered, Medium, Outcome, Plan, RulesSetCheck
from falco_operator.artifacts.image_defaults import ImageDefaults
from falco_operator.kube import ApiError, Backoff, Client, EventHandler, Informer, RuntimeMetrics
from falco_operator.kube.endpoints import HttpEndpoints, metrics_handler, probe_handler
from falco_operator.kube.http import HttpClient, TransportError
from falco_operator.kube.informer import strip_last_applied
from falco_operator.kube.resources import NODES
from falco_operator.records import record
from falco_operator.resources import CONFIGS, FALCOS, PLUGINS, RULESFILES

from .analysis import SAMPLE_INTERVAL, AnalysisWatches, parse_sample, progress_of, reported_analyses
from .confirmation import UNKNOWN, FalcoLoads, confirm, loads_expected, missed_swap, observe, poll_interval
from .delivery import Deliveries, choose
from .layout import PRESERVED
from .materializer import Directories, Materializer
from .metrics import AgentMetrics
from .oci_sources import OCISources
from .planner import PassPlanner
from .pull_settings import PullSettings
from .recovery import recover_last_good
from .report import Identity, ReportedEntries, Reporter, report_status
from .report_hold import ReportHold
from .selection import select
from .sources import ConfigMapWatches, resolve

log = logging.getLogger("artifact_agent")
OCI_CACHE = next(iter(PRESERVED))
Json = dict[str, Any]


@record(frozen=True)
class Settings:
    identity: Identity
    directories: Directories
    probe_address: str | None = ":8081"
    debounce: float = 0.3
    """Quiet time that ends a burst of changes."""
    max_delay: float = 3.0
    """A burst that never goes quiet is still written this long after it began."""
    first_pass_wait: float = 10.0
    """At start, how long to wait for referenced ConfigMaps to be listed before the first write."""
    stuck_after: float = 180.0
    """``/healthz`` fails once an informer has failed this long without a success."""
    falco_url: str | None = "http://127.0.0.1:8765"
    """Falco's web server (same pod); None: do not ask Falco what it loaded."""
    falco_poll_interval: float = 30.0
    """How often Falco is asked when nothing changed."""
    falco_fast_window: float = 30.0
    """After a swap, Falco is asked often for this long (or until it confirms everything): ``poll_interval``."""
    confirm_window: float = 2.0
    """After a swap Falco is expected to confirm, the report waits this long for it (``report_hold``); 0: never."""
    pulls: PullSettings | None = None
    """OCI pulls; None: the defaults, with the digest cache in the plugins volume."""
    image_defaults: ImageDefaults | None = None
    """What Falco loads from its image (``--image-defaults-dir``); None: only the agent's files."""


class Agent:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        metrics: RuntimeMetrics,
        rules_set_check: RulesSetCheck | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.runtime_metrics = metrics
        self.metrics = AgentMetrics(metrics.registry)
        self.materializer = Materializer(settings.directories)
        self.reporter = Reporter(client, settings.identity)
        self.reported_entries = ReportedEntries()
        self.planner = PassPlanner(
            str(settings.directories.plugins), rules_set_check, image_defaults=settings.image_defaults
        )
        self.ready = False
        self._dirty = anyio.Event()
        self._changes = 0
        self._first_change_at: float | None = None
        self._last_good: dict[ArtifactKey, Delivered] = {}
        self._disk_at_start: dict[str, dict[str, bytes]] | None = None
        self._backoff = Backoff(initial=1.0, cap=30.0)
        self._invalid_generations: set[tuple[ArtifactKey, int | None]] = set()
        self.analysis = AnalysisWatches()
        """The watches of the rollout candidates this node delivers."""
        identity = settings.identity
        namespace = identity.namespace
        # kubectl's last-applied copy of each artifact is dropped from the cache: the agent never reads it.
        self.artifact_informers = [Informer(client, resource, namespace=namespace, transform=strip_last_applied)
                                   for resource in (RULESFILES, PLUGINS, CONFIGS)]  # fmt: skip
        self.node_informer = Informer(
            client, NODES, field_selector=f"metadata.name={identity.node_name}", metadata_only=True
        ) if identity.node_name else None  # fmt: skip
        self.falco_informer = Informer(
            client, FALCOS, namespace=namespace, field_selector=f"metadata.name={identity.instance}", metadata_only=True
        ) if identity.instance else None  # fmt: skip
        self.config_maps = ConfigMapWatches(client, namespace, self._mark_dirty)
        pulls = settings.pulls or PullSettings(cache_dir=settings.directories.plugins / OCI_CACHE)
        self.pulls = OCISources(client, namespace, pulls, self.metrics, self._mark_dirty, instance=identity.instance)
        self.falco_view = UNKNOWN
        self.engine_version: str | None = None
        """The engine version Falco last reported: kept while Falco does not answer (it changes only with Falco's
        image, and a Falco restarting, or refusing to start, must not let rules it cannot load through)."""
        self._fast_polls_until = 0.0
        self._falco_changed_at: float | None = None
        """Monotonic time of the last swap or nudge: Falco is asked most often right after it."""
        self._answer_awaited = False
        """Falco answered while a report waits for its answer: the next pass runs without the debounce."""
        self._replan = True
        """Something the pass plans from changed since the last plan (or that pass failed); when only Falco's answer
        did, the next pass confirms the last plan's outcomes again without planning or swapping."""
        self._planned: tuple[Deliveries, Plan] | None = None
        self._poll_now = anyio.Event()
        self._report_wanted = anyio.Event()
        self._report_pending: Json = {}
        """The latest status the passes produced, written by ``_write_reports``."""
        self._outcomes: list[Outcome] = []
        self._swapped_at: float | None = None
        """Unix time of the last swap Falco has not been nudged for."""
        self.falco_loads = FalcoLoads()
        """Which swap Falco loaded, which it refused."""
        self._refused = False
        self.report_hold = ReportHold(settings.confirm_window)

    # -- lifecycle ----------------------------------------------------------------------------------------

    @property
    def informers(self) -> list[Informer]:
        """The informers that exist for the whole run (ConfigMap watches come and go with references)."""
        fixed = [*self.artifact_informers, self.node_informer, self.falco_informer]
        return [informer for informer in fixed if informer is not None]

    def healthy(self) -> bool:
        """False once an informer has failed for ``stuck_after`` seconds (a ConfigMap the agent may not read is
        reported on its artifact instead: a restart would not help it)."""
        return all(informer.failing_for() < self.settings.stuck_after for informer in self.informers)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as group:
            if self.settings.probe_address:
                endpoints = HttpEndpoints(self.settings.probe_address, {
                    "/healthz": probe_handler(self.healthy, "informers"),
                    "/readyz": probe_handler(lambda: self.ready, "first materialization"),
                    "/metrics": metrics_handler(self.runtime_metrics.registry),
                })  # fmt: skip
                await group.start(endpoints.run)
            await group.start(self.config_maps.run)
            await group.start(self.pulls.run)
            for informer in self.informers:
                self.metrics.watch_informer(informer.name, _healthy_check(informer))
                informer.add_handler(EventHandler(self._on_add, self._on_update, self._on_delete))
            async with anyio.create_task_group() as starting:
                for informer in self.informers:
                    starting.start_soon(_start_informer, group, informer)
            await anyio.to_thread.run_sync(self._adopt)
            await self.reporter.load()
            self.analysis.adopt(reported_analyses(self.reporter.written))
            if self.settings.falco_url:
                group.start_soon(self._watch_falco, self.settings.falco_url)
            group.start_soon(self._write_reports)
            task_status.started()
            await self._loop()

    async def _loop(self) -> None:
        first = True
        while True:
            self._dirty = anyio.Event()
            try:
                await self._pass(first)
                first = False
                self._backoff.reset()
            except (ApiError, OSError) as error:
                delay = self._backoff.next_delay()
                log.warning("pass failed, retrying in %.1fs: %s", delay, error)
                await anyio.sleep(delay)
                self._dirty.set()
            await self._next_change()
            await self._coalesce()

    async def _next_change(self) -> None:
        """Wait for a change; a report held for Falco's confirmation is written when its window ends first."""
        while (wait := self.report_hold.remaining(time.monotonic())) is not None:
            with anyio.move_on_after(wait):
                await self._dirty.wait()
                return
            log.debug("Falco has not confirmed the swap in time: writing what is on disk")
            self._publish(self.report_hold.release())
        await self._dirty.wait()

    async def _coalesce(self) -> None:
        if self._answer_awaited:
            return  # Falco's answer to a swap comes alone (no burst to gather), and the held report waits for it
        deadline = time.monotonic() + self.settings.max_delay
        while time.monotonic() < deadline:
            seen = self._changes
            await anyio.sleep(min(self.settings.debounce, max(0.0, deadline - time.monotonic())))
            if self._changes == seen:
                return

    # -- one pass -----------------------------------------------------------------------------------------

    def _selected(self) -> list[Artifact]:
        objects = [obj for informer in self.artifact_informers for obj in informer.store.objects()]
        artifacts, unreadable = select(objects, _labels(self.node_informer), _labels(self.falco_informer),
                                       self.settings.identity.instance)  # fmt: skip
        for raw in unreadable:
            log.warning("cannot read %s %s", raw.get("kind"), (raw.get("metadata") or {}).get("name"))
        return artifacts

    async def _pass(self, first: bool) -> None:
        changed_at, self._first_change_at = self._first_change_at, None
        self._answer_awaited = False
        if first or self._replan or self._planned is None:
            self._replan = False
            try:
                self._planned = await self._plan_and_swap(first, changed_at)
            except BaseException:
                self._replan = True
                raise
        deliveries, result = self._planned
        self._remember(result.outcomes, result.remembered)
        self._outcomes = list(result.outcomes)
        await self._report(deliveries, result)

    async def _plan_and_swap(self, first: bool, changed_at: float | None) -> tuple[Deliveries, Plan]:
        deliveries = await self._deliveries(self._selected(), first)
        artifacts = deliveries.artifacts
        # A new generation of the Falco may change its artifactVerification: every source is checked again.
        self.pulls.want(artifacts, policy_generation=_generation(self.falco_informer))
        if first:
            with anyio.move_on_after(self.settings.first_pass_wait):
                await self.config_maps.wait_settled()
                await self.pulls.wait_settled()
            if self._disk_at_start is not None:  # once per process: later passes know what they wrote
                self._last_good = recover_last_good(self._disk_at_start, artifacts, self.planner.plugins_dir)
                # A refusal judges what swaps change from here; a Falco restart from now on loaded this disk.
                self.falco_loads.started_with(self._last_good, time.time())
                self._disk_at_start = None
        resolutions = resolve(artifacts, self.config_maps, self.pulls.resolve)
        resolutions.update({(key, Medium.CONFIGMAP): kept for key, kept in deliveries.config_map_content.items()})
        swapped: list[str] = []

        def write(planned: Plan) -> None:  # in the planning thread, right after the plan
            swapped.extend(self.materializer.apply(planned.directories))

        result = await self.planner.plan(artifacts, resolutions, self._last_good,
                                         plugin_versions=self.pulls.plugin_versions(),
                                         engine_version=self.engine_version,
                                         artifact_needs=self.pulls.artifact_needs(),
                                         withheld=deliveries.withheld,
                                         then=write)  # fmt: skip
        self._after_swap(swapped, result, first, changed_at)
        return deliveries, result

    def _after_swap(self, swapped: list[str], result: Plan, first: bool, changed_at: float | None) -> None:
        if swapped:
            for directory in swapped:
                self.metrics.swaps.labels(directory).inc()
            self.metrics.last_swap.set_to_current_time()
            if changed_at is not None and not first:
                self.metrics.propagation.observe(time.monotonic() - changed_at)
            log.info("swapped %s", ", ".join(swapped))
            self._falco_changed_at = time.monotonic()
            self._fast_polls_until = self._falco_changed_at + self.settings.falco_fast_window
            self._swapped_at = time.time()
            self.falco_loads.swapped(self._swapped_at, {outcome.key: outcome.delivered for outcome in result.outcomes})
            self._poll_now.set()
            if not first and self.settings.falco_url and self.falco_view.reachable:
                self.report_hold.arm(time.monotonic(), self.falco_loads.reloads)

    async def _report(self, deliveries: Deliveries, result: Plan) -> None:
        if not self.ready:
            # Ready means the files are on disk: Falco may start even while the report cannot be written yet.
            self.ready = True
            log.info("first materialization done", extra={"artifacts": len(result.outcomes)})
        outcomes = (confirm(result.outcomes, self.falco_view, self.falco_loads, self.pulls.plugin_versions(),
                            time.time()) if self.settings.falco_url else result.outcomes)  # fmt: skip
        self._count_states(outcomes)
        if self.analysis.follow(deliveries.candidates, progress_of(outcomes, self.falco_loads), time.monotonic()):
            self._poll_now.set()  # a watch's first sample, now
        status = report_status(outcomes, self.settings.directories.by_kind(), self._falco_probe(),
                               self.pulls.refresh_problems(), result.image_defaults,
                               self.pulls.signers(), self.analysis.verdicts(), self.reported_entries)  # fmt: skip
        if self.report_hold.hold(status, self.reporter.written, time.monotonic()):
            return  # written once Falco confirms it, or when the window ends (``_next_change``)
        self._publish(status)

    def _publish(self, status: Json | None) -> None:
        """Hand the status to the report writer: the pass goes on while the write is made (or refused, retried)."""
        if status is not None:
            self._report_pending = status
            self._report_wanted.set()

    async def _write_reports(self) -> None:
        """Write the latest status handed over; a refused write is retried with whatever is latest by then, so
        files keep reaching the disk however long the API server refuses reports."""
        backoff = Backoff(initial=1.0, cap=30.0)
        while True:
            await self._report_wanted.wait()
            self._report_wanted = anyio.Event()
            try:
                if await self.reporter.publish(lambda: self._report_pending):
                    self.metrics.report_writes.inc()
                backoff.reset()
            except (ApiError, OSError) as error:
                delay = backoff.next_delay()
                log.warning("writing the report failed, retrying in %.1fs: %s", delay, error)
                await anyio.sleep(delay)
                self._report_wanted.set()

    async def _deliveries(self, selected: list[Artifact], first: bool) -> Deliveries:
        """What this node delivers of each selected artifact (a staged rollout's stable generation from its
        snapshot); the ConfigMaps that takes are watched. A snapshot whose watch has not listed it yet is waited for."""
        node = self.settings.identity.node_name or ""
        deliveries = choose(selected, node, self.config_maps.resolve)
        self.config_maps.watch_only(deliveries.config_maps)
        if deliveries.withheld:  # a snapshot whose watch only began (at start, or the first in this run)
            with anyio.move_on_after(self.settings.first_pass_wait):
                await self.config_maps.wait_settled()
            deliveries = choose(selected, node, self.config_maps.resolve)
        return deliveries

    def _remember(self, outcomes: Sequence[Outcome], remembered: Mapping[ArtifactKey, Delivered]) -> None:
        self._last_good = dict(remembered)
        current = {(outcome.key, outcome.generation) for outcome in outcomes}
        self._invalid_generations &= current
        for outcome in outcomes:
            if outcome.state == "Invalid" and (outcome.key, outcome.generation) not in self._invalid_generations:
                self._invalid_generations.add((outcome.key, outcome.generation))
                self.metrics.invalid.labels(outcome.key.kind).inc()
                log.warning("%s is invalid: %s", outcome.key, outcome.message)

    def _count_states(self, outcomes: Sequence[Outcome]) -> None:
        self.metrics.artifacts.clear()
        for outcome in outcomes:
            self.metrics.artifacts.labels(outcome.key.kind, outcome.state).inc()

    def _falco_probe(self) -> FalcoProbe | None:
        if not self.settings.falco_url:
            return None
        view = self.falco_view
        return FalcoProbe(reachable=view.reachable, version=view.version)

    async def _watch_falco(self, url: str) -> None:
        """Ask Falco what it loaded: often right after a swap, then slowly; a new answer starts a pass."""
        # Falco's web server is plain HTTP in the pod: no CA bundle is loaded (3 MiB) unless it is served over TLS.
        async with HttpClient(timeout=5, max_idle=1) as http:
            while True:
                self._poll_now = anyio.Event()
                view = await observe(http, url, self.falco_view)
                self.falco_loads.observed(view, time.time())
                if view != self.falco_view:
                    engine = view.engine_version or self.engine_version
                    self.falco_view, planned_with, self.engine_version = view, self.engine_version, engine
                    self._answer_awaited = self._answer_awaited or self.report_hold.held is not None
                    self._mark_dirty(replan=engine != planned_with)  # the planner judges the engine version
                if self.falco_loads.refused(view, time.time()) != self._refused:
                    self._refused = not self._refused  # a new state to report: Refused, or no longer
                    self._mark_dirty()
                if missed_swap(view, self._swapped_at, time.time()):
                    log.info("Falco has not reloaded since the last swap; nudging its rules directory")
                    self._swapped_at = None  # once per swap: a reload Falco refuses would be refused again
                    self.falco_loads.nudged(time.time())
                    await anyio.to_thread.run_sync(self.materializer.nudge_rules)
                    self.metrics.nudges.inc()
                    # Fast until Falco answers the nudge or the wait for it ends (longer after slow reloads).
                    wait = max(self.settings.falco_fast_window, self.falco_loads.refusal_wait + 1.0)
                    self._fast_polls_until = time.monotonic() + wait
                    self._falco_changed_at = time.monotonic()
                if self._swapped_at is not None and (view.reloaded_at or 0.0) >= self._swapped_at:
                    self._swapped_at = None  # Falco reloaded after the last swap
                # Falco's answer to a swap is awaited (loaded, or refused a few seconds after the nudge).
                if loads_expected(self._outcomes, view) and self._swapped_at is None and not self.falco_loads.pending:
                    self._fast_polls_until = 0.0
                if self.analysis.sampling:
                    await self._sample_for_analysis(http, url)
                now = time.monotonic()
                since = now - self._falco_changed_at if self._falco_changed_at is not None else None
                interval = poll_interval(since, now < self._fast_polls_until, self.settings.falco_poll_interval)
                with anyio.move_on_after(min(interval, SAMPLE_INTERVAL) if self.analysis.sampling else interval):
                    await self._poll_now.wait()

    async def _sample_for_analysis(self, http: HttpClient, url: str) -> None:
        """One sample of Falco's metrics for the running watches; a verdict starts a pass (which reports it)."""
        try:
            response = await http.get(f"{url}/metrics")
            sample = parse_sample(response.text, time.monotonic()) if response.status_code == 200 else None
        except TransportError:
            sample = None
        if self.analysis.observe(sample, time.monotonic()):
            self._mark_dirty()

    def _adopt(self) -> None:
        self._disk_at_start = self.materializer.read()

    # -- events -------------------------------------------------------------------------------------------

    def _mark_dirty(self, replan: bool = True) -> None:
        self._replan = self._replan or replan
        if self._first_change_at is None:
            self._first_change_at = time.monotonic()
        self._changes += 1
        self._dirty.set()

    def _on_add(self, _: Json) -> None:
        self._mark_dirty()

    def _on_update(self, old: Json, new: Json) -> None:
        if _meaningful_change(old, new):
            self._mark_dirty()

    def _on_delete(self, _: Json) -> None:
        self._mark_dirty()


def _meaningful_change(old: Json, new: Json) -> bool:
    """Status-only updates of artifacts (the operator writes them) change nothing the agent writes, but for
    ``status.rollout``: which generation this node delivers follows it."""
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return (
        _rollout_delivery(old) != _rollout_delivery(new)
        or old_meta.get("generation") != new_meta.get("generation")
        or old_meta.get("labels") != new_meta.get("labels")
        or old_meta.get("deletionTimestamp") != new_meta.get("deletionTimestamp")
        or old.get("data") != new.get("data")
        or old.get("binaryData") != new.get("binaryData")
    )


ROLLOUT_DELIVERY_FIELDS = ("phase", "stableGeneration", "candidateGeneration", "nodes", "snapshot")


def _rollout_delivery(artifact: Json) -> list[Any]:
    """The fields of ``status.rollout`` that decide which generation a node delivers (not its message)."""
    rollout = (artifact.get("status") or {}).get("rollout") or {}
    return [rollout.get(name) for name in ROLLOUT_DELIVERY_FIELDS] if isinstance(rollout, dict) else []


def _labels(informer: Informer | None) -> dict[str, str]:
    if informer is None:
        return {}
    objects = informer.store.objects()
    return dict((objects[0].get("metadata") or {}).get("labels") or {}) if objects else {}


def _generation(informer: Informer | None) -> int | None:
    objects = informer.store.objects() if informer is not None else []
    generation = (objects[0].get("metadata") or {}).get("generation") if objects else None
    return generation if isinstance(generation, int) else None


def _healthy_check(informer: Informer) -> Callable[[], bool]:
    return lambda: informer.failing_for() == 0


async def _start_informer(group: anyio.abc.TaskGroup, informer: Informer) -> None:
    await group.start(informer.run)
