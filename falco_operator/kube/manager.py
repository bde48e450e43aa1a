"""The manager: owns the client, informers, controllers, metrics and probes; runs controllers while leader.

Informers (caches) run on every replica; controllers and leader-only runnables start after the caches synced
and, with leader election, once this replica holds the lease. A lost lease ends ``run`` with ``LeaderLost``
so that the process exits and two leaders never act.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from .client import Client
from .controller import Controller
from .endpoints import HttpEndpoints, metrics_handler, probe_handler
from .informer import Informer, Transform
from .leaderelection import LeaderElector, LeaderLost
from .metrics import LoopLag, RuntimeMetrics
from .resources import Resource
from .store import IndexFunc

log = logging.getLogger("falco_operator.kube.manager")


class CacheSyncTimeout(Exception):
    pass


@dataclass
class ManagerOptions:
    metrics_address: str | None = ":8080"
    probe_address: str | None = ":8081"
    leader_election: bool = False
    leader_election_namespace: str = "default"
    leader_election_id: str = "falco-operator"
    identity: str = "falco-operator"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    cache_sync_timeout: float = 120.0
    graceful_shutdown: float = 30.0


Runnable = Callable[[], Coroutine[Any, Any, None]]


class Manager:
    def __init__(self, client: Client, options: ManagerOptions, metrics: RuntimeMetrics) -> None:
        self.client = client
        self.options = options
        self.metrics = metrics
        self.loop_lag = LoopLag(metrics.registry)
        self.informers: dict[tuple[object, ...], Informer] = {}
        self.controllers: list[Controller] = []
        self.leader_runnables: list[Runnable] = []
        self.elector: LeaderElector | None = None
        if options.leader_election:
            self.elector = LeaderElector(
                client, namespace=options.leader_election_namespace, name=options.leader_election_id,
                identity=options.identity, metrics=metrics, lease_duration=options.lease_duration,
                renew_deadline=options.renew_deadline, retry_period=options.retry_period,
            )  # fmt: skip
        self.synced = False
        self.ports: dict[str, int] = {}
        self._stop = anyio.Event()
        self._controllers_done = anyio.Event()
        self._runnables_scope = anyio.CancelScope()

    def informer(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        metadata_only: bool = False,
        resync_period: float | None = None,
        indexers: dict[str, IndexFunc] | None = None,
        transform: Transform | None = None,
    ) -> Informer:
        """The shared informer for this resource and scope (created on first use)."""
        key = (resource, namespace, label_selector, field_selector, metadata_only, transform)
        informer = self.informers.get(key)
        if informer is None:
            informer = Informer(
                self.client, resource, namespace=namespace, label_selector=label_selector,
                field_selector=field_selector, metadata_only=metadata_only, resync_period=resync_period,
                indexers=indexers, transform=transform,
            )  # fmt: skip
            self.informers[key] = informer
        elif resync_period and (informer.resync_period is None or resync_period < informer.resync_period):
            # Shared by several controllers: the shortest resync any of them asked for (a resync only delivers
            # the cache again); the informer starts with the manager, after every controller was set up.
            informer.resync_period = resync_period
        return informer

    def add_controller(self, controller: Controller) -> Controller:
        self.controllers.append(controller)
        return controller

    def add_leader_runnable(self, runnable: Runnable) -> None:
        self.leader_runnables.append(runnable)

    def healthy(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.synced

    def stop(self) -> None:
        """Ask ``run`` to finish: controllers drain within the grace period, then everything stops."""
        self._stop.set()

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as root:
                root.start_soon(self.loop_lag.run)
                await self._start_endpoints(root)
                # A stop while the caches sync (they may never, without RBAC) ends the run at once.
                await self._until_stopped(self._start_informers(root))
                if self._stop.is_set():
                    root.cancel_scope.cancel()
                    return
                if self.elector:
                    await self._until_stopped(self.elector.acquire())
                    if self._stop.is_set():
                        root.cancel_scope.cancel()
                        return
                    root.start_soon(self.elector.keep_renewing)
                root.start_soon(self._run_controllers)
                await self._stop.wait()
                for controller in self.controllers:
                    controller.queue.shutdown()
                self._runnables_scope.cancel()
                with anyio.move_on_after(self.options.graceful_shutdown):
                    await self._controllers_done.wait()
                root.cancel_scope.cancel()
        finally:
            if self.elector and self.elector.leading:
                with anyio.CancelScope(shield=True):
                    await self.elector.release()

    async def run_until_signalled(self) -> None:
        """``run``, stopping cleanly on SIGTERM or SIGINT."""
        async with anyio.create_task_group() as group:

            async def watch_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for received in signals:
                        log.info("received %s, shutting down", signal.Signals(received).name)
                        self.stop()
                        return

            group.start_soon(watch_signals)
            await self.run()
            group.cancel_scope.cancel()

    async def _until_stopped(self, work: Awaitable[None]) -> None:
        async with anyio.create_task_group() as group:

            async def wait_stop() -> None:
                await self._stop.wait()
                group.cancel_scope.cancel()

            group.start_soon(wait_stop)
            await work
            group.cancel_scope.cancel()

    async def _start_endpoints(self, group: anyio.abc.TaskGroup) -> None:
        if self.options.metrics_address:
            metrics = HttpEndpoints(self.options.metrics_address, {"/metrics": metrics_handler(self.metrics.registry)})
            self.ports["metrics"] = await group.start(metrics.run)
        if self.options.probe_address:
            probes = HttpEndpoints(
                self.options.probe_address,
                {"/healthz": probe_handler(self.healthy, "process"), "/readyz": probe_handler(self.ready, "caches")},
            )
            self.ports["probes"] = await group.start(probes.run)

    async def _start_informers(self, group: anyio.abc.TaskGroup) -> None:
        timeout = self.options.cache_sync_timeout
        try:
            with anyio.fail_after(timeout):
                async with anyio.create_task_group() as starting:
                    for informer in list(self.informers.values()):
                        starting.start_soon(self._start_one, group, informer)
        except TimeoutError:
            waiting = [informer.name for informer in self.informers.values() if not informer.has_synced]
            raise CacheSyncTimeout(
                f"caches did not sync within {timeout:.0f}s: {', '.join(waiting)}; "
                "check that the API server is reachable and that RBAC allows list and watch on them"
            ) from None
        self.synced = True
        log.info("caches synced", extra={"informers": len(self.informers)})

    @staticmethod
    async def _start_one(group: anyio.abc.TaskGroup, informer: Informer) -> None:
        await group.start(informer.run)

    async def _run_controllers(self) -> None:
        try:
            async with anyio.create_task_group() as group:
                for controller in self.controllers:
                    await group.start(controller.run)
                group.start_soon(self._run_leader_runnables)
        finally:
            self._controllers_done.set()

    async def _run_leader_runnables(self) -> None:
        with self._runnables_scope:
            async with anyio.create_task_group() as group:
                for runnable in self.leader_runnables:
                    group.start_soon(runnable)


def run_process(main: Callable[[], Awaitable[None]]) -> int:
    """Run ``main`` to completion and give the process exit code: 1, with one plain log line, when the leader
    lease was lost (the process must exit so that a standby takes over); other errors propagate."""
    try:
        anyio.run(main)
    except BaseExceptionGroup as group:
        lost, rest = group.split(LeaderLost)
        if lost is None or rest is not None:
            raise
        log.error("%s; exiting so that a standby takes over", _first_leaf(lost))
        return 1
    except LeaderLost as lost:
        log.error("%s; exiting so that a standby takes over", lost)
        return 1
    return 0


def _first_leaf(group: BaseExceptionGroup[LeaderLost]) -> BaseException:
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first
